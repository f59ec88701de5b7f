//! `cargo xtask regress`: the CI regression gate. For every scenario in the
//! gate file (`reports/baselines/gate.toml`) it runs the sweep over the
//! listed seeds, and compares the merged metrics with the committed
//! baseline (`grove_analysis::gate`): exit 0 when nothing regressed, 1 when
//! something did, 2 on an error (a missing metric or baseline included).
//! `--update` rewrites the baselines from this run instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use grove_analysis::gate::{self, Gate, Verdict};

use crate::sweep::{self, SweepArgs};

pub fn regress(gate_file: &Path, update: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now(); // harness wall time, printed only
    let text = std::fs::read_to_string(gate_file)
        .with_context(|| format!("cannot read {}", gate_file.display()))?;
    let gate = Gate::parse(&text).with_context(|| gate_file.display().to_string())?;
    let bin = &crate::build_simulator()?;
    let dir = gate_file.parent().unwrap_or(Path::new("."));
    let (mut regressed, mut missing) = (0, 0);
    for s in &gate.scenario {
        let stem = s.baseline.trim_end_matches(".json");
        let out = PathBuf::from("reports/regress").join(stem);
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
        if baseline["scenario"]["sha256"] != now["scenario"]["sha256"] {
            eprintln!("note: {} changed since its baseline was recorded", s.file);
        }
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
        gate.scenario.len(),
        started.elapsed().as_secs_f64()
    );
    if missing > 0 {
        bail!("{missing} metric(s) missing from a baseline or this run");
    }
    Ok(if regressed > 0 {
        println!("gate: {regressed} metric(s) REGRESSED");
        ExitCode::from(1)
    } else {
        println!("gate: passed");
        ExitCode::SUCCESS
    })
}
