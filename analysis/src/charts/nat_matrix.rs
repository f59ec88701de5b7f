//! The NAT matrix as a heat map: for each (initiator, responder) pair of
//! NAT labels, the fraction of host pairs that reached a direct path (red
//! none, green all), with the fraction written in the cell and `x` where
//! some pairs had no path at all.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, label, DrawResult};

pub struct Data {
    /// Labels in order; rows are initiators, columns responders.
    pub labels: Vec<String>,
    /// (row, column, direct fraction, any pair without a path).
    pub cells: Vec<(usize, usize, f64, bool)>,
}

fn heat(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(215.0, 26.0), mix(48.0, 150.0), mix(39.0, 65.0))
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = d.labels.len().max(1);
    let labels = &d.labels;
    // `(0..n - 1).into_segmented()` has the n segments 0..=n-1.
    // Rows run top to bottom: row r is drawn at y = n - 1 - r.
    let name = |flip: bool| {
        move |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < n => {
                let i = if flip { n - 1 - i } else { *i };
                labels
                    .get(i)
                    .map(|l| l.replace("port-restricted", "port-restr."))
                    .unwrap_or_default()
            }
            _ => String::new(),
        }
    };
    let (col_name, row_name) = (name(false), name(true));
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption())
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(130)
        .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n)
        .y_labels(n)
        .x_label_formatter(&col_name)
        .y_label_formatter(&row_name)
        .x_desc("responder")
        .y_desc("initiator")
        .label_style(label())
        .axis_desc_style(label())
        .draw()?;
    let at = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
    chart.draw_series(d.cells.iter().map(|&(r, c, f, _)| {
        let y = n - 1 - r;
        Rectangle::new([at(c, y), at(c + 1, y + 1)], heat(f).filled())
    }))?;
    chart.draw_series(d.cells.iter().map(|&(r, c, f, failed)| {
        Text::new(
            format!(" {f:.2}{}", if failed { " x" } else { "" }),
            at(c, n - r),
            label().color(&WHITE),
        )
    }))?;
    Ok(())
}
