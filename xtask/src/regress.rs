//! `cargo xtask regress`: the CI regression gate. For every scenario in the
//! gate file (`reports/baselines/gate.toml`) it runs the sweep over the
//! listed seeds, and compares the merged metrics with the committed
//! baseline (`grove_analysis::gate`): exit 0 when nothing regressed, 1 when
//! something did (a metric the run no longer has included), 2 on an error
//! (a metric the baseline lacks, a missing baseline).
//! `--update` rewrites the baselines from this run instead.
//!
//! A gated scenario file whose SHA-256 differs from the one its baseline
//! was recorded from fails the gate before anything runs (exit 1): an
//! edited scenario (say, an easier `quickstart.toml`) must come with a
//! baseline recorded from it, by `cargo xtask regress --update`, committed
//! beside it. `--only NAME` gates the named scenarios alone (by baseline
//! stem, e.g. `quickstart`), for a quick look or an update of one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use grove_analysis::gate::{self, Gate, GateScenario, Verdict};

use crate::sweep::{self, SweepArgs};

pub fn regress(gate_file: &Path, update: bool, only: &[String]) -> Result<ExitCode> {
    let started = std::time::Instant::now(); // harness wall time, printed only
    let text = std::fs::read_to_string(gate_file)
        .with_context(|| format!("cannot read {}", gate_file.display()))?;
    let gate = Gate::parse(&text).with_context(|| gate_file.display().to_string())?;
    let dir = gate_file.parent().unwrap_or(Path::new("."));
    let stem = |s: &GateScenario| s.baseline.trim_end_matches(".json").to_owned();
    if let Some(name) = only
        .iter()
        .find(|n| !gate.scenario.iter().any(|s| &stem(s) == *n))
    {
        let names: Vec<String> = gate.scenario.iter().map(stem).collect();
        bail!(
            "--only {name}: the gate has no such scenario (it has: {})",
            names.join(", ")
        );
    }
    let scenarios: Vec<&GateScenario> = gate
        .scenario
        .iter()
        .filter(|s| only.is_empty() || only.contains(&stem(s)))
        .collect();
    if !update {
        let edited = edited_scenarios(&scenarios, dir)?;
        if !edited.is_empty() {
            for e in &edited {
                println!("gate: {e}");
            }
            println!(
                "gate: {} scenario(s) edited since their baselines were recorded: run \
                 `cargo xtask regress --update` and commit the new baseline(s) with the change",
                edited.len()
            );
            return Ok(ExitCode::from(1));
        }
    }
    let bin = &crate::build_simulator()?;
    let (mut regressed, mut missing) = (0, 0);
    for s in &scenarios {
        let stem = stem(s);
        let out = PathBuf::from("reports/regress").join(&stem);
        if out.exists() {
            std::fs::remove_dir_all(&out)
                .with_context(|| format!("cannot clear {}", out.display()))?;
        }
        let outcome = sweep::sweep(
            bin,
            SweepArgs {
                scenario: PathBuf::from(&s.file),
                seeds: s.seeds,
                first_seed: None,
                out: Some(out),
                jobs: None,
                shard_index: None,
                shard_count: None,
                quiet: false,
            },
        )?;
        let merged_path = outcome.out.join("merged.json");
        let baseline_path = dir.join(&s.baseline);
        if update {
            std::fs::copy(&merged_path, &baseline_path)
                .with_context(|| format!("cannot write {}", baseline_path.display()))?;
            eprintln!("updated {}", baseline_path.display());
            continue;
        }
        let read = |p: &Path| -> Result<serde_json::Value> {
            let t = std::fs::read_to_string(p).with_context(|| {
                format!(
                    "cannot read {} (run `cargo xtask regress --update`)",
                    p.display()
                )
            })?;
            Ok(serde_json::from_str(&t)?)
        };
        let baseline = read(&baseline_path)?;
        let now = read(&merged_path)?;
        let rows = gate::compare(&s.metric, &baseline, &now);
        print!(
            "{}",
            gate::table(
                &format!(
                    "{} ({} seeds) against {}",
                    s.file,
                    s.seeds,
                    baseline_path.display()
                ),
                &rows
            )
        );
        regressed += rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed)
            .count();
        missing += rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missing)
            .count();
    }
    eprintln!(
        "gate: {} scenario(s), {:.0} s wall",
        scenarios.len(),
        started.elapsed().as_secs_f64()
    );
    if missing > 0 {
        bail!("{missing} metric(s) missing from a baseline (run `cargo xtask regress --update`)");
    }
    Ok(if regressed > 0 {
        println!("gate: {regressed} metric(s) REGRESSED");
        ExitCode::from(1)
    } else {
        println!("gate: passed");
        ExitCode::SUCCESS
    })
}

/// The gated scenarios whose file no longer hashes to what their baseline
/// was recorded from, each described in a line. A missing baseline is an
/// error that says how to make one.
fn edited_scenarios(scenarios: &[&GateScenario], dir: &Path) -> Result<Vec<String>> {
    let mut edited = Vec::new();
    for s in scenarios {
        let text = std::fs::read_to_string(&s.file)
            .with_context(|| format!("cannot read the gated scenario {}", s.file))?;
        let baseline_path = dir.join(&s.baseline);
        let baseline: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&baseline_path).with_context(|| {
                format!(
                    "cannot read {} (run `cargo xtask regress --update`)",
                    baseline_path.display()
                )
            })?)
            .with_context(|| format!("{} is not JSON", baseline_path.display()))?;
        let recorded = baseline["scenario"]["sha256"]
            .as_str()
            .with_context(|| format!("{}: no `scenario.sha256`", baseline_path.display()))?;
        let now = grove_analysis::sweep::sha256_hex(&text);
        if recorded != now {
            edited.push(format!(
                "{} has SHA-256 {}, but {} was recorded from {}",
                s.file,
                &now[..12],
                baseline_path.display(),
                &recorded[..recorded.len().min(12)]
            ));
        }
    }
    Ok(edited)
}
