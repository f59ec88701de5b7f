//! One sweep's runs (cells x seeds) merged into per-cell statistics: for
//! each metric the mean, min and max across seeds (and each seed's value),
//! and latency percentiles from the sum of the runs' HDR histograms, never
//! from averaged percentiles. The result (`merged.json`) is what the sweep
//! charts draw and what the regression gate compares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contrast::{self, ContrastResult};
use crate::hdr::{self, HdrError};
use crate::view::{CellParam, Latency};

pub const MERGED_SCHEMA_VERSION: u32 = 1;

/// Per-broadcast-summary metrics (in a run's `broadcast` and each phase's
/// `broadcast`): merged name and path inside the summary.
const SUMMARY_METRICS: [(&str, &str); 7] = [
    ("reliability_mean", "reliability.mean"),
    ("reliability_min", "reliability.min"),
    ("fully_delivered", "fully_delivered"),
    ("rmr_mean", "rmr.mean"),
    ("ldh_mean", "ldh.mean"),
    ("payload_msgs", "payload_msgs"),
    ("control_msgs", "control_msgs"),
];

/// Whole-run metrics: merged name and path in the report. Each is merged
/// when every run of the cell has it (a boolean counts as 1 or 0), so a
/// scenario's merge holds the headline figures of the protocols it runs:
/// what the regression gate can hold each protocol to.
const RUN_METRICS: [(&str, &str); 25] = [
    ("alive_at_end", "nodes.alive_at_end"),
    ("components", "overlay.components"),
    ("isolated", "overlay.isolated"),
    (
        "largest_component_fraction",
        "overlay.largest_component_fraction",
    ),
    ("average_shortest_path", "overlay.average_shortest_path"),
    ("clustering_coefficient", "overlay.clustering_coefficient"),
    ("messages_per_node_mean", "messages_per_node.mean"),
    ("duplicate_deliveries", "integrity.duplicate_deliveries"),
    ("repeated_neighbor_up", "integrity.repeated_neighbor_up"),
    // NAT traversal.
    ("holepunch_success_rate", "nat.holepunch.success_rate"),
    ("links_direct_fraction", "nat.links.direct_fraction"),
    ("pairs_direct_fraction", "nat.pairs.direct_fraction"),
    ("pairs_connected_fraction", "nat.pairs.connected_fraction"),
    // GossipSub.
    ("pubsub_honest_delivery_rate", "pubsub.honest.delivery_rate"),
    ("pubsub_latency_p50_ms", "pubsub.latency_ms.p50"),
    ("pubsub_latency_p99_ms", "pubsub.latency_ms.p99"),
    (
        "pubsub_attacker_mesh_share_end",
        "pubsub.attack.mesh_attacker_share_end",
    ),
    // Kademlia.
    ("dht_lookup_success_rate", "dht.lookup.success_rate"),
    ("dht_lookup_latency_p50_ms", "dht.lookup.latency_ms.p50"),
    ("dht_lookup_latency_p99_ms", "dht.lookup.latency_ms.p99"),
    ("dht_lookup_hops_mean", "dht.lookup.hops.mean"),
    ("dht_lookup_msgs_mean", "dht.lookup.msgs_mean"),
    // The knowledge commons.
    ("knowledge_converged", "knowledge.converged"),
    ("knowledge_convergence_ms", "knowledge.convergence_ms"),
    ("knowledge_writes_lost", "knowledge.writes_lost"),
];

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no runs to merge")]
    Empty,
    #[error("cell {cell}: {what}")]
    Mismatch { cell: usize, what: String },
    #[error("cell {cell}, seed {seed}: `{path}` is missing from the report")]
    Missing {
        cell: usize,
        seed: u64,
        path: String,
    },
    #[error(transparent)]
    Hdr(#[from] HdrError),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub schema_version: u32,
    pub scenario: ScenarioRef,
    pub seeds: Vec<u64>,
    pub reproduce: String,
    /// Every run passed its scenario's `[[checks]]`, and every contrast
    /// held on every seed.
    pub passed: bool,
    pub cells: Vec<MergedCell>,
    /// The scenario's `[[contrasts]]` between cells, seed by seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contrasts: Vec<ContrastResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRef {
    pub name: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedCell {
    pub param: Option<CellParam>,
    pub runs: usize,
    pub runs_passed: usize,
    pub metrics: BTreeMap<String, Spread>,
    /// All broadcasts of the run.
    pub all: MergedPhase,
    pub phases: Vec<MergedPhase>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedPhase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    pub metrics: BTreeMap<String, Spread>,
    /// From the merged histogram.
    pub latency_ms: Latency,
    pub latency_us_hdr: String,
}

/// One metric across seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub per_seed: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Spread {
        let n = values.len().max(1) as f64;
        Spread {
            mean: round6(values.iter().sum::<f64>() / n),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            per_seed: values,
        }
    }
}

pub fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

/// The value at a dotted `path` (array elements by index).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Array(a) => a.get(part.parse::<usize>().ok()?),
        _ => v.get(part),
    })
}

/// One run of a sweep: its cell, seed and parsed `report.json`.
pub struct Run {
    pub cell: usize,
    pub seed: u64,
    pub report: Value,
}

/// Merge `runs` (sorted by cell, then seed; every cell with the same seeds).
pub fn merge(runs: &[Run], reproduce: String) -> Result<Merged, MergeError> {
    let first = runs.first().ok_or(MergeError::Empty)?;
    let text = |v: &Value, path: &str| {
        lookup(v, path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let scenario = ScenarioRef {
        name: text(&first.report, "scenario.name"),
        file: text(&first.report, "scenario.file"),
        sha256: text(&first.report, "scenario.sha256"),
    };
    let seeds: Vec<u64> = runs
        .iter()
        .filter(|r| r.cell == first.cell)
        .map(|r| r.seed)
        .collect();
    let mut cells = Vec::new();
    let mut cell_ids: Vec<usize> = runs.iter().map(|r| r.cell).collect();
    cell_ids.dedup();
    for cell in cell_ids {
        let group: Vec<&Run> = runs.iter().filter(|r| r.cell == cell).collect();
        let got: Vec<u64> = group.iter().map(|r| r.seed).collect();
        if got != seeds {
            return Err(MergeError::Mismatch {
                cell,
                what: format!("seeds {got:?}, expected {seeds:?}"),
            });
        }
        cells.push(merge_cell(cell, &group)?);
    }
    // Each seed's reports in cell order, for the contrasts between cells.
    let by_seed: Vec<Vec<&Value>> = seeds
        .iter()
        .map(|&seed| {
            let mut cells: Vec<&Run> = runs.iter().filter(|r| r.seed == seed).collect();
            cells.sort_by_key(|r| r.cell);
            cells.iter().map(|r| &r.report).collect()
        })
        .collect();
    let contrasts = contrast::of_report(&first.report)
        .map_err(|what| MergeError::Mismatch {
            cell: first.cell,
            what,
        })?
        .iter()
        .map(|c| c.evaluate_seeds(&by_seed))
        .collect::<Vec<_>>();
    Ok(Merged {
        schema_version: MERGED_SCHEMA_VERSION,
        scenario,
        seeds,
        reproduce,
        passed: cells.iter().all(|c| c.runs_passed == c.runs) && contrasts.iter().all(|c| c.passed),
        cells,
        contrasts,
    })
}

fn merge_cell(cell: usize, runs: &[&Run]) -> Result<MergedCell, MergeError> {
    let reports: Vec<&Value> = runs.iter().map(|r| &r.report).collect();
    let param = lookup(reports[0], "scenario.cell")
        .map(|v| serde_json::from_value(v.clone()).expect("a cell is param and value"));
    let phase_names = |v: &Value| -> Vec<String> {
        lookup(v, "phases")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let names = phase_names(reports[0]);
    for (r, v) in runs.iter().zip(&reports) {
        if phase_names(v) != names {
            return Err(MergeError::Mismatch {
                cell,
                what: format!(
                    "seed {} has other phases than seed {}",
                    r.seed, runs[0].seed
                ),
            });
        }
    }
    let mut metrics = BTreeMap::new();
    for (name, path) in RUN_METRICS {
        let values: Option<Vec<f64>> = reports
            .iter()
            .map(|v| {
                lookup(v, path).and_then(|v| {
                    v.as_f64()
                        .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                })
            })
            .collect();
        if let Some(values) = values {
            metrics.insert(name.to_owned(), Spread::of(values));
        }
    }
    let phases = (0..names.len())
        .map(|p| merge_summary(cell, runs, &format!("phases.{p}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MergedCell {
        param,
        runs: runs.len(),
        runs_passed: reports
            .iter()
            .filter(|v| v["passed"] == Value::Bool(true))
            .count(),
        metrics,
        all: merge_summary(cell, runs, "")?,
        phases,
    })
}

/// Merge the summary at `at` (a phase, or the whole run when empty).
fn merge_summary(cell: usize, runs: &[&Run], at: &str) -> Result<MergedPhase, MergeError> {
    let full = |path: &str| {
        if at.is_empty() {
            path.to_owned()
        } else {
            format!("{at}.{path}")
        }
    };
    fn get<'a>(cell: usize, run: &'a Run, path: &str) -> Result<&'a Value, MergeError> {
        lookup(&run.report, path).ok_or_else(|| MergeError::Missing {
            cell,
            seed: run.seed,
            path: path.to_owned(),
        })
    }
    let mut metrics = BTreeMap::new();
    for (name, path) in SUMMARY_METRICS {
        let path = full(&format!("broadcast.{path}"));
        let values = runs
            .iter()
            .map(|r| Ok(get(cell, r, &path)?.as_f64().unwrap_or(0.0)))
            .collect::<Result<Vec<_>, MergeError>>()?;
        metrics.insert(name.to_owned(), Spread::of(values));
    }
    let hdr_path = full("broadcast.latency_us_hdr");
    let texts = runs
        .iter()
        .map(|r| Ok(get(cell, r, &hdr_path)?.as_str().unwrap_or_default()))
        .collect::<Result<Vec<_>, MergeError>>()?;
    let histogram = hdr::merge(texts)?.expect("at least one run");
    let q = |p: f64| {
        if histogram.is_empty() {
            0.0
        } else {
            round6(histogram.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let f = |path: &str| lookup(&runs[0].report, &full(path)).and_then(Value::as_f64);
    Ok(MergedPhase {
        name: lookup(&runs[0].report, &full("name"))
            .and_then(Value::as_str)
            .unwrap_or("all")
            .to_owned(),
        start_s: f("start_s").unwrap_or(0.0),
        end_s: f("end_s").or_else(|| f("duration_s")).unwrap_or(0.0),
        metrics,
        latency_ms: Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: if histogram.is_empty() {
                0.0
            } else {
                round6(histogram.max() as f64 / 1000.0)
            },
        },
        latency_us_hdr: hdr::encode(&histogram),
    })
}
