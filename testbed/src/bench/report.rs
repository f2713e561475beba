//! What a run measured, and the Markdown tables `BENCHMARKS.md` is regenerated from.

use std::collections::BTreeMap;
use std::time::Duration;

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub label: String,
    pub decisions: usize,
    pub accounts: usize,
    pub rate: f64,
    pub startup: Duration,
    /// From the first create to the last one answered.
    pub created: Duration,
    pub wall: Duration,
    pub cpu: Duration,
    /// The embedded API server's CPU from the first create to all Ready.
    pub apiserver_cpu: Duration,
    pub peak_rss_kib: u64,
    /// Live heap bytes once converged, less those at the first reconcile, per decision.
    pub heap_per_decision: f64,
    pub quicksight: BTreeMap<String, u64>,
    pub floor_updates: u64,
    pub floor_pages: u64,
    pub api_requests: BTreeMap<String, u64>,
    pub idle: Duration,
    pub idle_quicksight: u64,
    pub idle_api_requests: BTreeMap<String, u64>,
}

impl Figures {
    fn calls(&self, operation: &str) -> u64 {
        self.quicksight.get(operation).copied().unwrap_or(0)
    }

    pub fn calls_per_floor(&self) -> f64 {
        let calls = self.calls("UpdateSelfUpgrade") + self.calls("ListSelfUpgrades");
        calls as f64 / (self.floor_updates + self.floor_pages) as f64
    }

    /// Updates beyond one per decision.
    pub fn duplicate_updates(&self) -> u64 {
        self.calls("UpdateSelfUpgrade")
            .saturating_sub(self.floor_updates)
    }

    /// The pacing floor: decisions ÷ (rate × accounts).
    pub fn pacing_floor(&self) -> Duration {
        Duration::from_secs_f64(self.decisions as f64 / (self.rate * self.accounts as f64))
    }

    pub fn cpu_per_decision_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.decisions as f64
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// The configurations' table: one row each.
pub fn table(runs: &[Figures]) -> String {
    let mut text = String::from(
        "| configuration | decisions / accounts | startup → first reconcile | wall to all Ready (pacing floor) | operator CPU / decision | peak RSS | heap / decision | UpdateSelfUpgrade | ListSelfUpgrades pages | calls / floor | API requests / decision | idle: QuickSight calls | idle: API requests |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let per_decision: Vec<String> = run
            .api_requests
            .iter()
            .map(|(verb, n)| format!("{verb} {:.2}", *n as f64 / run.decisions as f64))
            .collect();
        let idle_api: Vec<String> = run
            .idle_api_requests
            .iter()
            .map(|(verb, n)| format!("{verb} {n}"))
            .collect();
        text.push_str(&format!(
            "| {} | {} / {} | {:.2} s | {:.1} s ({:.1} s) | {:.0} µs | {:.1} MiB | {:.2} KB | {} (floor {}) | {} (floor {}) | {:.3} | {} | {} in {:?} | {} |\n",
            run.label,
            run.decisions,
            run.accounts,
            run.startup.as_secs_f64(),
            run.wall.as_secs_f64(),
            run.pacing_floor().as_secs_f64(),
            run.cpu_per_decision_us(),
            run.peak_rss_mib(),
            run.heap_per_decision / 1000.0,
            run.calls("UpdateSelfUpgrade"),
            run.floor_updates,
            run.calls("ListSelfUpgrades"),
            run.floor_pages,
            run.calls_per_floor(),
            per_decision.join(", "),
            run.idle_quicksight,
            run.idle,
            if idle_api.is_empty() { "none".to_string() } else { idle_api.join(", ") },
        ));
    }
    text
}

/// The scale curve's table: one row per size.
pub fn curve_table(points: &[Figures]) -> String {
    let mut text = String::from(
        "| decisions / accounts | peak RSS | heap / decision | CPU / decision | wall to all Ready | pacing floor | wall / floor | creates answered after | API server CPU | calls / floor | duplicate updates |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for point in points {
        let floor = point.pacing_floor().as_secs_f64();
        text.push_str(&format!(
            "| {} / {} | {:.1} MiB | {:.2} KB | {:.0} µs | {:.1} s | {:.1} s | {:.2} | {:.1} s | {:.1} s | {:.3} | {} |\n",
            point.decisions,
            point.accounts,
            point.peak_rss_mib(),
            point.heap_per_decision / 1000.0,
            point.cpu_per_decision_us(),
            point.wall.as_secs_f64(),
            floor,
            point.wall.as_secs_f64() / floor,
            point.created.as_secs_f64(),
            point.apiserver_cpu.as_secs_f64(),
            point.calls_per_floor(),
            point.duplicate_updates(),
        ));
    }
    text
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    use procfs::Current;
    let memory = procfs::Meminfo::current()
        .map(|m| format!("{:.0} GiB", m.mem_total as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|_| "unknown memory".into());
    format!("{cores} cores ({cpu}), {memory}")
}

/// The heading from which a `BENCHMARKS.md` is written by people (profiles, analysis): a
/// regenerated file keeps it and everything after it.
const KEPT_FROM: &str = "\n## Profile";

/// The regenerated results followed by the hand-written part of the existing file, if any.
pub fn with_kept_sections(results: &str, existing: &str) -> String {
    match existing.find(KEPT_FROM) {
        Some(start) => format!("{}\n{}", results.trim_end(), &existing[start..]),
        None => results.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regenerating_keeps_the_profile_written_by_people() {
        let old = "# Benchmarks\n\n| old table |\n\n## Profile\n\nWhere the time goes.\n";
        let new = with_kept_sections("# Benchmarks\n\n| new table |\n", old);
        assert_eq!(
            new,
            "# Benchmarks\n\n| new table |\n\n## Profile\n\nWhere the time goes.\n"
        );
        assert_eq!(
            with_kept_sections("# Benchmarks\n", "# Benchmarks\n| only results |\n"),
            "# Benchmarks\n"
        );
    }
}
