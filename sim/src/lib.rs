//! Grove's simulator: scenario files, the simulated world on madsim, metrics
//! and reports.

pub mod attack;
pub mod bench;
pub mod churn;
#[cfg(madsim)]
pub mod commands;
pub mod dht;
pub mod host_set;
pub mod isolation;
pub mod knowledge;
pub mod overlay;
pub mod pubsub;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod transport;
pub mod traversal;
#[cfg(madsim)]
pub mod world;
