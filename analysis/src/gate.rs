//! The regression gate: metrics of merged sweeps (`merged.json`) against
//! committed baselines. `reports/baselines/gate.toml` lists the scenarios
//! (file, seeds, baseline) and, per scenario, the metrics with the
//! direction that is better and a tolerance; a metric regresses when it
//! moves the wrong way by more than `max(abs, rel * |baseline|)`.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use crate::merge::lookup;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub scenario: Vec<GateScenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateScenario {
    /// Scenario file, relative to the project root.
    pub file: String,
    /// Seeds: the scenario's seed and the next `seeds - 1`.
    pub seeds: usize,
    /// Baseline file name in the gate's directory.
    pub baseline: String,
    pub metric: Vec<Metric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Dotted path into `merged.json`, e.g. `cells.0.phases.1.latency_ms.p99`.
    pub path: String,
    pub better: Direction,
    #[serde(default)]
    pub abs: f64,
    #[serde(default)]
    pub rel: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Higher,
    Lower,
    /// Any move beyond the tolerance is a regression.
    Equal,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("gate file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("gate file: {0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Better,
    /// Moved the wrong way beyond the tolerance, or the baseline measured
    /// it and the new run no longer has it (a convergence time where
    /// nothing converged).
    Regressed,
    /// The metric is missing from the baseline: the gate file asks for
    /// something that was never measured (an error, not a regression).
    Missing,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub metric: String,
    pub baseline: Option<f64>,
    pub now: Option<f64>,
    pub verdict: Verdict,
}

impl Gate {
    /// Parse and validate a gate file.
    pub fn parse(text: &str) -> Result<Gate, GateError> {
        let gate: Gate = toml::from_str(text)?;
        let bad = |m: String| Err(GateError::Invalid(m));
        if gate.scenario.is_empty() {
            return bad("no [[scenario]]".into());
        }
        let mut baselines = Vec::new();
        for s in &gate.scenario {
            if s.seeds == 0 {
                return bad(format!("{}: seeds must be at least 1", s.file));
            }
            if s.metric.is_empty() {
                return bad(format!("{}: no [[scenario.metric]]", s.file));
            }
            if s.baseline.contains('/') || !s.baseline.ends_with(".json") {
                return bad(format!(
                    "{}: baseline `{}` must be a .json file name in the gate's directory",
                    s.file, s.baseline
                ));
            }
            if baselines.contains(&&s.baseline) {
                return bad(format!("baseline `{}` is used twice", s.baseline));
            }
            baselines.push(&s.baseline);
            for m in &s.metric {
                if !(m.abs >= 0.0 && m.rel >= 0.0 && m.abs.is_finite() && m.rel.is_finite()) {
                    return bad(format!(
                        "{}: `{}`: tolerances must be finite and >= 0",
                        s.file, m.path
                    ));
                }
                if m.path.is_empty() {
                    return bad(format!("{}: a metric has an empty path", s.file));
                }
            }
        }
        Ok(gate)
    }
}

/// Compare `now` with `baseline` on `metrics`.
pub fn compare(metrics: &[Metric], baseline: &Value, now: &Value) -> Vec<Row> {
    metrics
        .iter()
        .map(|m| {
            let b = lookup(baseline, &m.path).and_then(Value::as_f64);
            let n = lookup(now, &m.path).and_then(Value::as_f64);
            let verdict = match (b, n) {
                (Some(b), Some(n)) => judge(m, b, n),
                (Some(_), None) => Verdict::Regressed,
                (None, _) => Verdict::Missing,
            };
            Row {
                metric: m.path.clone(),
                baseline: b,
                now: n,
                verdict,
            }
        })
        .collect()
}

fn judge(m: &Metric, baseline: f64, now: f64) -> Verdict {
    let tol = m.abs.max(m.rel * baseline.abs());
    let delta = now - baseline;
    let (worse, better) = match m.better {
        Direction::Higher => (-delta, delta),
        Direction::Lower => (delta, -delta),
        Direction::Equal => (delta.abs(), 0.0),
    };
    if worse > tol {
        Verdict::Regressed
    } else if better > tol {
        Verdict::Better
    } else {
        Verdict::Pass
    }
}

/// The rows as a table for the terminal.
pub fn table(title: &str, rows: &[Row]) -> String {
    let num = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.4}"));
    let width = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!("{title}\n");
    let _ = writeln!(
        s,
        "  {:<width$}  {:>12}  {:>12}  {:>10}  verdict",
        "metric", "baseline", "now", "delta"
    );
    for r in rows {
        let delta = match (r.baseline, r.now) {
            (Some(b), Some(n)) => format!("{:+.4}", n - b),
            _ => "-".into(),
        };
        let verdict = match r.verdict {
            Verdict::Pass => "ok",
            Verdict::Better => "better",
            Verdict::Regressed => "REGRESSED",
            Verdict::Missing => "MISSING",
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {:>12}  {:>12}  {:>10}  {verdict}",
            r.metric,
            num(r.baseline),
            num(r.now),
            delta
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: &str = r#"
[[scenario]]
file = "scenarios/quickstart.toml"
seeds = 3
baseline = "quickstart.json"
[[scenario.metric]]
path = "cells.0.all.metrics.reliability_mean.mean"
better = "higher"
abs = 0.01
[[scenario.metric]]
path = "cells.0.all.latency_ms.p99"
better = "lower"
rel = 0.1
[[scenario.metric]]
path = "cells.0.runs"
better = "equal"
"#;

    fn merged(reliability: f64, p99: f64) -> Value {
        serde_json::json!({"cells": [{"runs": 3, "all": {
            "metrics": {"reliability_mean": {"mean": reliability}},
            "latency_ms": {"p99": p99}}}]})
    }

    #[test]
    fn a_regressed_report_is_caught_and_noise_is_not() {
        let gate = Gate::parse(GATE).unwrap();
        let m = &gate.scenario[0].metric;
        let base = merged(0.999, 2000.0);
        let same = compare(m, &base, &merged(0.995, 2150.0));
        assert!(same.iter().all(|r| r.verdict == Verdict::Pass), "{same:?}");
        let worse = compare(m, &base, &merged(0.95, 2500.0));
        assert_eq!(worse[0].verdict, Verdict::Regressed);
        assert_eq!(worse[1].verdict, Verdict::Regressed);
        assert_eq!(worse[2].verdict, Verdict::Pass);
        let better = compare(m, &base, &merged(0.999, 1000.0));
        assert_eq!(better[1].verdict, Verdict::Better);
        // What the run lost (no convergence time: nothing converged) is a
        // regression; what the baseline never had is the gate file's error.
        let lost = compare(m, &base, &serde_json::json!({}));
        assert!(lost.iter().all(|r| r.verdict == Verdict::Regressed));
        let missing = compare(m, &serde_json::json!({}), &base);
        assert!(missing.iter().all(|r| r.verdict == Verdict::Missing));
        assert!(table("quickstart", &worse).contains("REGRESSED"));
    }

    #[test]
    fn bad_gate_files_are_named() {
        let err = |t: &str| Gate::parse(t).unwrap_err().to_string();
        assert!(err("").contains("missing field `scenario`"));
        assert!(err(&GATE.replace("seeds = 3", "seeds = 0")).contains("seeds"));
        assert!(err(&GATE.replace("abs = 0.01", "abs = -1")).contains("tolerances"));
        assert!(err(&GATE.replace("\"higher\"", "\"up\"")).contains("unknown variant"));
        assert!(err(&GATE.replace("rel = 0.1", "rel = 0.1\ntol = 1")).contains("unknown field"));
    }
}
