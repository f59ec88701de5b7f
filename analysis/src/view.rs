//! The parts of a run's `report.json` (written by `grove-sim`) that the
//! charts, the page, the merge and the gate read. Unknown fields are
//! ignored: the report is the contract, this is one reader of it.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct RunReport {
    pub scenario: ScenarioInfo,
    pub seed: u64,
    pub reproduce: String,
    pub duration_s: f64,
    pub nodes: Nodes,
    pub broadcast: Summary,
    pub overlay: Overlay,
    pub messages_per_node: MessagesPerNode,
    #[serde(default)]
    pub nat: Option<Nat>,
    pub phases: Vec<Phase>,
    pub broadcasts: Vec<Broadcast>,
    /// Sampled node counts over time (added by issue 4); the live and
    /// connected chart is drawn when it is present.
    #[serde(default)]
    pub timeseries: Option<TimeSeries>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub file: String,
    #[serde(default)]
    pub cell: Option<CellParam>,
}

/// The swept parameter and its value in one cell.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
pub struct CellParam {
    pub param: String,
    pub value: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Nodes {
    pub total: usize,
    pub alive_at_end: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub reliability: Stat3,
    pub latency_ms: Latency,
    pub latency_us_hdr: String,
    pub rmr: MeanMax,
    pub ldh: MeanMax,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Stat3 {
    pub mean: f64,
    pub min: f64,
}

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MeanMax {
    pub mean: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Overlay {
    pub components: usize,
    pub isolated: usize,
    pub largest_component_fraction: f64,
    pub average_shortest_path: f64,
    pub clustering_coefficient: f64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MessagesPerNode {
    pub mean: f64,
    /// Evenly spaced percentiles, min to max.
    pub quantiles: Vec<u64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Nat {
    pub matrix: BTreeMap<String, MatrixCell>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MatrixCell {
    pub pairs: usize,
    pub direct_fraction: f64,
    pub failed: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Phase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    pub broadcast: Summary,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Broadcast {
    pub at_s: f64,
    pub reliability: f64,
    pub ldh: u16,
    pub rmr: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TimeSeries {
    pub t_s: Vec<f64>,
    pub live: Vec<u32>,
    pub connected: Vec<u32>,
    #[serde(default)]
    pub largest_component: Vec<u32>,
    #[serde(default)]
    pub reliability: Vec<Option<f64>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Check {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub value: Option<f64>,
    pub passed: bool,
}

impl RunReport {
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Fault instants: every phase after the first starts at a timeline
    /// event, and is named after it.
    pub fn fault_events(&self) -> Vec<(f64, String)> {
        self.phases
            .iter()
            .skip(1)
            .map(|p| (p.start_s, p.name.clone()))
            .collect()
    }

    /// Partition windows (start, end): phases opened by a partition.
    pub fn fault_windows(&self) -> Vec<(f64, f64)> {
        self.phases
            .iter()
            .filter(|p| p.name.starts_with("partition"))
            .map(|p| (p.start_s, p.end_s))
            .collect()
    }
}
