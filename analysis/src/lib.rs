//! Reading Grove's simulation reports: charts (plotters, SVG and PNG), a
//! self-contained HTML page per run or sweep, sweep plans with shards and
//! their merge across processes and machines, and the regression gate
//! against committed baselines.
//!
//! Everything here is a function of report data: the same report gives
//! the same chart, page and merge bytes (no clock, no hash-map order).

pub mod charts;
pub mod contrast;
pub mod figures;
pub mod gate;
pub mod hdr;
pub mod html;
pub mod merge;
pub mod output;
pub mod sweep;
pub mod view;
