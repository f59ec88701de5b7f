//! Charts for design reviews, drawn with plotters from report data and
//! written as SVG (inlined in the HTML page) and PNG. Text is drawn with
//! the Liberation Sans font shipped in `assets/fonts/` (SIL OFL 1.1),
//! through plotters' `ab_glyph` backend: no system font library is
//! involved, so the output is the same on every machine, and the same data
//! always gives the same bytes.
//!
//! Each chart is a module with its data as plain numbers and a `draw` over
//! any plotters backend; [`Figure`] names them and [`render`] writes them.

pub mod latency_cdf;
pub mod liveness;
pub mod messages;
pub mod nat_matrix;
pub mod redundancy;
pub mod reliability;

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

/// The font every chart uses, under the family name `sans-serif`.
const FONT: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf");
pub(crate) const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 520);

/// Line colours, in series order (colour-blind-safe Okabe-Ito palette).
pub(crate) const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

pub(crate) type DrawResult = Result<(), Box<dyn Error>>;

/// One chart's data.
pub enum Figure {
    Reliability(reliability::Data),
    LatencyCdf(latency_cdf::Data),
    Redundancy(redundancy::Data),
    Liveness(liveness::Data),
    Messages(messages::Data),
    NatMatrix(nat_matrix::Data),
}

/// A chart as written: its file stem, title and SVG text.
pub struct Rendered {
    pub name: &'static str,
    pub title: &'static str,
    pub svg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot draw chart `{name}`: {message}")]
    Draw { name: &'static str, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the chart font does not load")]
    Font,
}

impl Figure {
    /// File stem.
    pub fn name(&self) -> &'static str {
        match self {
            Figure::Reliability(_) => "reliability-vs-failure",
            Figure::LatencyCdf(_) => "latency-cdf",
            Figure::Redundancy(_) => "rmr-ldh",
            Figure::Liveness(_) => "live-connected",
            Figure::Messages(_) => "messages-per-node",
            Figure::NatMatrix(_) => "nat-matrix",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Figure::Reliability(_) => "Broadcast reliability against failed nodes",
            Figure::LatencyCdf(_) => "Delivery latency (CDF)",
            Figure::Redundancy(_) => "RMR and last delivery hop per broadcast",
            Figure::Liveness(_) => "Live and connected nodes over time",
            Figure::Messages(_) => "Datagrams sent per node",
            Figure::NatMatrix(_) => "Direct connectivity by NAT type",
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        match self {
            Figure::Reliability(d) => reliability::draw(d, self.title(), root),
            Figure::LatencyCdf(d) => latency_cdf::draw(d, self.title(), root),
            Figure::Redundancy(d) => redundancy::draw(d, self.title(), root),
            Figure::Liveness(d) => liveness::draw(d, self.title(), root),
            Figure::Messages(d) => messages::draw(d, self.title(), root),
            Figure::NatMatrix(d) => nat_matrix::draw(d, self.title(), root),
        }?;
        root.present()?;
        Ok(())
    }
}

fn register_font() -> Result<(), ChartError> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ok.then_some(()).ok_or(ChartError::Font)
}

/// Draw `figures` into `dir` as `<name>.svg` and `<name>.png`.
pub fn render(figures: &[Figure], dir: &Path) -> Result<Vec<Rendered>, ChartError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| ChartError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for f in figures {
        let name = f.name();
        let fail = |e: Box<dyn Error>| ChartError::Draw {
            name,
            message: e.to_string(),
        };
        let mut svg = String::new();
        f.draw(&SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())
            .map_err(fail)?;
        let svg_path = dir.join(format!("{name}.svg"));
        std::fs::write(&svg_path, &svg).map_err(|source| ChartError::Write {
            path: svg_path.display().to_string(),
            source,
        })?;
        let png_path = dir.join(format!("{name}.png"));
        f.draw(&BitMapBackend::new(&png_path, SIZE).into_drawing_area())
            .map_err(fail)?;
        out.push(Rendered {
            name,
            title: f.title(),
            svg,
        });
    }
    Ok(out)
}

/// A range around `values` with a little room, never empty.
pub(crate) fn span(
    values: impl IntoIterator<Item = f64>,
    floor_zero: bool,
) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    (if floor_zero && lo >= 0.0 {
        lo
    } else {
        lo - pad
    })..hi + pad
}

/// Caption and label fonts.
/// The legend of a chart's labelled series, in a box at `position`.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(label())
        .draw()?;
    Ok(())
}

pub(crate) fn caption() -> TextStyle<'static> {
    (FAMILY, 22).into_font().into()
}

pub(crate) fn label() -> TextStyle<'static> {
    (FAMILY, 14).into_font().into()
}

/// Vertical dashed-looking markers with labels at fault instants.
pub(crate) fn fault_marks<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    events: &[(f64, String)],
    y: std::ops::Range<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let red = RGBColor(200, 30, 30);
    for (t, name) in events {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, y.start), (*t, y.end)],
            red.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            name.clone(),
            (*t, y.end),
            label().color(&red),
        )))?;
    }
    Ok(())
}
