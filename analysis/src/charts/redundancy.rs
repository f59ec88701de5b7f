//! Per broadcast, in send order over time: relative message redundancy
//! (RMR, top) and last delivery hop (LDH, bottom), with the timeline's fault
//! events marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, fault_marks, label, span, DrawResult, COLORS};

pub struct Data {
    /// (sent at s, RMR) for broadcasts delivered by more than the origin.
    pub rmr: Vec<(f64, f64)>,
    /// (sent at s, LDH).
    pub ldh: Vec<(f64, f64)>,
    /// (instant s, event name).
    pub events: Vec<(f64, String)>,
    pub duration_s: f64,
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let root = root.titled(title, caption())?;
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    for (area, pts, name, color) in [
        (&top, &d.rmr, "RMR", COLORS[0]),
        (&bottom, &d.ldh, "LDH (hops)", COLORS[1]),
    ] {
        let ys = span(pts.iter().map(|p| p.1), true);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..d.duration_s.max(1.0), ys.clone())?;
        chart
            .configure_mesh()
            .x_desc("broadcast sent at, virtual s")
            .y_desc(name)
            .label_style(label())
            .axis_desc_style(label())
            .draw()?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 2, color.filled())))?;
        fault_marks(&mut chart, &d.events, ys)?;
    }
    Ok(())
}
