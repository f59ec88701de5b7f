//! Broadcast reliability against the fraction of failed nodes: one line per
//! series (a phase of a failure sweep: before and after the failure), the
//! mean across seeds, with a band from the worst to the best seed when
//! several seeds ran.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{caption, label, legend, span, DrawResult, COLORS};

pub struct Data {
    /// What the x axis sweeps (the scenario parameter).
    pub param: String,
    pub series: Vec<Series>,
}

pub struct Series {
    pub name: String,
    /// (failed %, mean, min, max), in x order.
    pub points: Vec<(f64, f64, f64, f64)>,
}

pub fn draw<DB: DrawingBackend>(d: &Data, title: &str, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let xs = span(
        d.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        true,
    );
    let ys = span(
        d.series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.2, p.3])),
        false,
    );
    let ys = ys.start.max(0.0)..ys.end.min(1.02);
    let mut chart = ChartBuilder::on(root)
        .caption(title, caption())
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)?;
    chart
        .configure_mesh()
        .x_desc(format!("failed nodes, % ({})", d.param))
        .y_desc("reliability (mean over broadcasts)")
        .label_style(label())
        .axis_desc_style(label())
        .draw()?;
    for (i, s) in d.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if s.points.iter().any(|p| p.3 > p.2) {
            let band: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (p.0, p.3))
                .chain(s.points.iter().rev().map(|p| (p.0, p.2)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2))))?;
        }
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            s.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}
