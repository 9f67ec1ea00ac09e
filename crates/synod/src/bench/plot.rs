//! The SVG written beside a run's JSON: throughput in each second of the
//! window, and the latency CDF on a log scale.

use super::stats::Summary;
use plotters::prelude::*;
use std::path::Path;

/// Draw `summary` to an SVG file at `path`.
pub fn write_svg(summary: &Summary, title: &str, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(draw_error)?;
    let (left, right) = root.split_horizontally(600);
    throughput(summary, &left)?;
    latency_cdf(summary, &right)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn throughput(summary: &Summary, area: &Area) -> anyhow::Result<()> {
    let seconds = summary.per_second.len().max(1) as f64;
    let peak = summary.per_second.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput (commands/s)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, 0f64..peak * 1.1)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("second of the measured window")
        .x_labels((seconds as usize + 1).min(21))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw_error)?;
    let points = summary
        .per_second
        .iter()
        .enumerate()
        .flat_map(|(second, &n)| [(second as f64, n as f64), (second as f64 + 1.0, n as f64)]);
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(draw_error)?;
    Ok(())
}

fn latency_cdf(summary: &Summary, area: &Area) -> anyhow::Result<()> {
    let lowest = summary.cdf.first().map_or(0.01, |&(_, ms)| ms).max(0.001);
    let highest = summary
        .cdf
        .last()
        .map_or(1.0, |&(_, ms)| ms)
        .max(lowest * 2.0);
    let mut chart = ChartBuilder::on(area)
        .caption("latency CDF", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d((lowest * 0.9..highest * 1.1).log_scale(), 0f64..1f64)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|v| {
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        })
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction answered")
        .draw()
        .map_err(draw_error)?;
    let points = summary.cdf.iter().map(|&(fraction, ms)| (ms, fraction));
    chart
        .draw_series(LineSeries::new(points, &RED))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the SVG: {error:?}")
}
