//! The alerts of deploy/prometheus/rules.yaml, checked and unit-tested by Prometheus' own
//! `promtool` (Debian's `prometheus` package; `.ci/run` installs it and sets
//! `REQUIRE_PROMTOOL=1`, so CI fails rather than skips without it).

use std::process::Command;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// `promtool` with `args` in deploy/prometheus; `None` when promtool does not run here (and
/// it is not required).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(RULES)
        .output()
    {
        Ok(output) => Some(output),
        Err(error) => {
            assert!(
                std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is required (REQUIRE_PROMTOOL=1) but does not run: {error}"
            );
            eprintln!("skipped: promtool is not available ({error})");
            None
        }
    }
}

#[test]
fn the_rules_are_valid_and_each_alert_fires_and_stays_silent_as_its_tests_say() {
    for args in [
        &["check", "rules", "rules.yaml"][..],
        &["test", "rules", "rules.test.yaml"],
    ] {
        let Some(output) = promtool(args) else {
            return;
        };
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every alert of the rules file has a test that makes it fire.
#[test]
fn every_alert_is_tested_firing() {
    let read = |name: &str| {
        let text = std::fs::read_to_string(format!("{RULES}/{name}")).expect(name);
        serde_yaml::from_str::<serde_yaml::Value>(&text).expect("yaml")
    };
    let rules = read("rules.yaml");
    let tests = read("rules.test.yaml");
    let alerts: Vec<&str> = rules["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let fired: Vec<&str> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| {
            t["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|case| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
        })
        .filter_map(|case| case["alertname"].as_str().map(str::to_string))
        .map(|name| alerts.iter().copied().find(|a| *a == name).unwrap_or("?"))
        .collect();
    for alert in &alerts {
        assert!(fired.contains(alert), "{alert} has no test that fires it");
    }
}
