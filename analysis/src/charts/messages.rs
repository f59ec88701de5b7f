//! Datagrams sent per node over the run, as a quantile curve: nodes sorted
//! by what they sent (x: percent of nodes), so the mean and the tail (hubs,
//! relays) read off one line.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, label, legend, span, DrawResult, COLORS};

pub struct Data {
    /// (percent of nodes, datagrams sent), evenly spaced from 0 to 100.
    pub quantiles: Vec<(f64, f64)>,
    pub mean: f64,
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let ys = span(d.quantiles.iter().map(|p| p.1).chain([d.mean]), true);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption())
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..100.0, ys)?;
    chart
        .configure_mesh()
        .x_desc("nodes, % (sorted by datagrams sent)")
        .y_desc("datagrams sent")
        .label_style(label())
        .axis_desc_style(label())
        .draw()?;
    let color = COLORS[0];
    chart
        .draw_series(LineSeries::new(
            d.quantiles.iter().copied(),
            color.stroke_width(2),
        ))?
        .label("per node")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    let mean = COLORS[1];
    chart
        .draw_series(LineSeries::new(
            [(0.0, d.mean), (100.0, d.mean)],
            mean.stroke_width(1),
        ))?
        .label(format!("mean {:.0}", d.mean))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], mean));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}
