//! The distribution of delivery latency (every non-origin delivery), one
//! curve per phase or sweep cell, from the report's HDR histograms: the
//! latency at fixed percent points from 0 to 100.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, label, legend, span, DrawResult, COLORS};

pub struct Data {
    /// (curve name, points (latency ms, fraction of deliveries)).
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
}

/// The CDF's points: latency at 0%, 1%, .., 99%, 99.9% and 100%.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..100)
        .map(|p| f64::from(p) / 100.0)
        .chain([0.999, 1.0])
        .map(|q| (h.value_at_quantile(q) as f64 / 1000.0, q))
        .collect()
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let xs = span(d.curves.iter().flat_map(|c| c.1.iter().map(|p| p.0)), true);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption())
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms")
        .y_desc("fraction of deliveries")
        .label_style(label())
        .axis_desc_style(label())
        .draw()?;
    for (i, (name, pts)) in d.curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}
