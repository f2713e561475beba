//! The scale curve as a PNG beside `BENCHMARKS.md`: peak RSS, heap per decision and CPU per
//! decision against the number of decisions (people read a curve faster than a table).

use super::report::Figures;
use anyhow::{Context as _, anyhow};
use plotters::prelude::*;
use std::path::Path;

/// The font the labels are drawn in: DejaVu Sans, which Debian's `fonts-dejavu-core` installs.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

type Measure = fn(&Figures) -> f64;

const PANELS: [(&str, Measure); 3] = [
    ("peak RSS (MiB)", |f| f.peak_rss_mib()),
    ("live heap per decision (KB)", |f| {
        f.heap_per_decision / 1000.0
    }),
    ("operator CPU per decision (µs)", |f| {
        f.cpu_per_decision_us()
    }),
];

pub fn draw(points: &[Figures], path: &Path, font: &Path) -> anyhow::Result<()> {
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(
        std::fs::read(font)
            .with_context(|| format!("reading the font {} (--font)", font.display()))?
            .into_boxed_slice(),
    );
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a font plotters can read", font.display()))?;
    let root = BitMapBackend::new(path, (1500, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = points.iter().map(|p| p.decisions).max().unwrap_or(1) as f64 * 1.05;
    for (area, (title, measure)) in root.split_evenly((1, 3)).iter().zip(PANELS) {
        let max_y = points.iter().map(measure).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart
            .configure_mesh()
            .x_desc("decisions")
            .x_labels(6)
            .x_label_formatter(&|x| thousands(*x))
            .draw()?;
        let at = |p: &Figures| (p.decisions as f64, measure(p));
        chart.draw_series(LineSeries::new(points.iter().map(at), &BLUE))?;
        chart.draw_series(points.iter().map(|p| Circle::new(at(p), 4, BLUE.filled())))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `25000` as `25k`, `2500` as `2.5k`, `250` as `250`.
fn thousands(x: f64) -> String {
    let k = x / 1000.0;
    match () {
        _ if x < 1000.0 => format!("{x:.0}"),
        _ if k.fract() == 0.0 => format!("{k:.0}k"),
        _ => format!("{k:.1}k"),
    }
}
