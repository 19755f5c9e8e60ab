//! Rate against flow count, one line per mode, as an SVG (plotters).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::options::{FlowSet, Mode};
use super::report::Cell;

const COLORS: [RGBColor; 7] = [
    RGBColor(128, 128, 128),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Writes the plot of `cells` (median kpps per flow set and mode) to `path`.
pub fn write(path: &Path, flows: &[FlowSet], modes: &[Mode], cells: &[Cell]) -> Result<()> {
    let ymax = cells.iter().map(|c| c.max_kpps).fold(100.0, f64::max) * 1.1;
    let n = flows.len().max(1);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "64-byte UDP through the gateway: median rate per flow count",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), 0f64..ymax)
        .map_err(|e| anyhow!("plot: {e}"))?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            match flows[i as usize] {
                FlowSet::Fixed(f) => format!("{f} flows"),
                FlowSet::AllNew => "all new flows".to_owned(),
            }
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc("kpps at the sink (verified)")
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    for (k, mode) in modes.iter().enumerate() {
        let color = COLORS[Mode::ALL.iter().position(|m| m == mode).unwrap_or(k) % COLORS.len()];
        let pts: Vec<(f64, f64)> = flows
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                cells
                    .iter()
                    .find(|c| c.flows == *f && c.mode == *mode)
                    .map(|c| (i as f64, c.median_kpps))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(mode.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_every_mode() {
        let flows = [FlowSet::Fixed(64), FlowSet::AllNew];
        let modes = [Mode::Limit, Mode::Kawaii];
        let mut cells = Vec::new();
        for f in flows {
            for (m, k) in modes.iter().zip([3000.0, 2000.0]) {
                cells.push(Cell {
                    flows: f,
                    mode: *m,
                    median_kpps: k,
                    min_kpps: k,
                    max_kpps: k,
                    median_ns_per_packet: 300.0,
                    median_napi_ns_per_packet: 280.0,
                    median_offered_kpps: 4000.0,
                    verified: 1,
                    reps: 1,
                });
            }
        }
        let path = std::env::temp_dir().join(format!("live-plot-{}.svg", std::process::id()));
        write(&path, &flows, &modes, &cells).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read");
        std::fs::remove_file(&path).expect("cleanup");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        for text in ["kawaii", "limit", "all new flows", "64 flows"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
