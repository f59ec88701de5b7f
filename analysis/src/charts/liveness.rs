//! Live nodes, connected nodes (at least one live active peer) and the
//! largest component of the overlay as fractions of all nodes over time,
//! with the reliability of the broadcasts sent in each interval, fault
//! windows (partitions) shaded and instantaneous faults marked. Drawn from
//! the report's time series.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, fault_marks, label, legend, DrawResult, COLORS};

pub struct Data {
    pub t_s: Vec<f64>,
    pub live: Vec<f64>,
    pub connected: Vec<f64>,
    pub largest_component: Vec<f64>,
    /// (t, mean reliability) where broadcasts were sent.
    pub reliability: Vec<(f64, f64)>,
    /// (from s, to s) shaded.
    pub windows: Vec<(f64, f64)>,
    /// (instant s, event name).
    pub events: Vec<(f64, String)>,
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let end = d.t_s.last().copied().unwrap_or(1.0).max(1.0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption())
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("virtual s")
        .y_desc("fraction of all nodes")
        .label_style(label())
        .axis_desc_style(label())
        .draw()?;
    chart.draw_series(d.windows.iter().map(|&(a, b)| {
        Rectangle::new(
            [(a, 0.0), (b, 1.05)],
            RGBColor(200, 30, 30).mix(0.12).filled(),
        )
    }))?;
    let at =
        |ys: &[f64]| -> Vec<(f64, f64)> { d.t_s.iter().copied().zip(ys.iter().copied()).collect() };
    let lines = [
        ("live", at(&d.live)),
        ("connected", at(&d.connected)),
        ("largest component", at(&d.largest_component)),
        ("broadcast reliability", d.reliability.clone()),
    ];
    for (i, (name, points)) in lines.into_iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = COLORS[i];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    fault_marks(&mut chart, &d.events, 0.0..1.05)?;
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}
