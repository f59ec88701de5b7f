//! Grove's simulator: scenario files, the simulated world on madsim, metrics
//! and reports.

pub mod bench;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod overlay;
#[cfg(madsim)]
pub mod world;
