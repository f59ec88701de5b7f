//! `cargo xtask sweep` and `cargo xtask merge`: a scenario's cells times
//! seeds, one simulator process per run (madsim wants one runtime per
//! process, and one seed per process keeps runs reproducible), in parallel
//! on the local cores, or one shard of them for a batch engine; then the
//! merge into `merged.json`, charts and `report.html`. The plan, shards and
//! merge are `grove_analysis::sweep`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use grove_analysis::sweep::{self, Job, Plan, Shard};
use rayon::prelude::*;

/// What `cargo xtask sweep` was asked.
pub struct SweepArgs {
    pub scenario: PathBuf,
    pub seeds: usize,
    pub first_seed: Option<u64>,
    pub out: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub shard_index: Option<usize>,
    pub shard_count: Option<usize>,
    pub quiet: bool,
}

/// The outcome of the runs: did every run pass its checks, and (when the
/// sweep ran whole) every contrast between its cells hold.
pub struct Outcome {
    pub out: PathBuf,
    pub all_passed: bool,
}

/// Plan, run (a shard of) the sweep, and merge it when it ran whole.
pub fn sweep(bin: &Path, a: SweepArgs) -> Result<Outcome> {
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let info = scenario_info(bin, &a.scenario)?;
    let name = info["name"].as_str().context("scenario name")?.to_owned();
    let first = a
        .first_seed
        .or_else(|| info["seed"].as_u64())
        .context("scenario seed")?;
    let plan = Plan {
        scenario: a.scenario.display().to_string(),
        sha256: info["sha256"].as_str().context("scenario hash")?.to_owned(),
        cells: info["cells"].as_u64().context("cell count")? as usize,
        seeds: (first..first + a.seeds as u64).collect(),
    };
    let shard = Shard::resolve(a.shard_index, a.shard_count, |k| std::env::var(k).ok())?;
    let out = a
        .out
        .unwrap_or_else(|| Path::new("reports").join(&name).join("sweep"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let plan_text = serde_json::to_string_pretty(&plan)? + "\n";
    std::fs::write(out.join("sweep.json"), plan_text)?;
    let jobs = plan.shard(shard);
    let threads = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!(
        "== sweep {}: {} cell(s) x {} seed(s) = {} runs{}, {threads} at a time, into {}",
        plan.scenario,
        plan.cells,
        plan.seeds.len(),
        plan.jobs().len(),
        shard.map_or(String::new(), |s| format!(
            "; shard {}/{}: {} runs",
            s.index,
            s.count,
            jobs.len()
        )),
        out.display()
    );
    let mut all_passed = run_jobs(bin, &a.scenario, &out, &jobs, threads, a.quiet)?;
    if shard.is_none() {
        let (_, merged) = merge(std::slice::from_ref(&out), None)?;
        for c in merged.contrasts.iter().filter(|c| !c.passed) {
            eprintln!("contrast {c} (seeds {:?})", merged.seeds);
        }
        all_passed &= merged.passed;
    } else {
        eprintln!(
            "shard done; when every shard is, run `cargo xtask merge DIR...` over their output directories"
        );
    }
    Ok(Outcome { out, all_passed })
}

/// `grove-sim cells`: name, seed, cell count and hash of a scenario.
fn scenario_info(bin: &Path, scenario: &Path) -> Result<serde_json::Value> {
    let out = Command::new(bin)
        .arg("cells")
        .arg(scenario)
        .output()
        .context("cannot run grove-sim cells")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Run `jobs` with `threads` processes at a time; true when every run's
/// checks passed. A run that fails outright is an error naming its log.
fn run_jobs(
    bin: &Path,
    scenario: &Path,
    out: &Path,
    jobs: &[Job],
    threads: usize,
    quiet: bool,
) -> Result<bool> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(jobs.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[{bar:40}] {pos}/{len} runs ({elapsed}, ETA {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let results: Vec<Result<bool>> = pool.install(|| {
        jobs.par_iter()
            .map(|&job| {
                let passed = run_one(bin, scenario, &out.join(sweep::run_dir(job)), job);
                bar.inc(1);
                passed
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut all = true;
    for r in results {
        all &= r?;
    }
    Ok(all)
}

fn run_one(bin: &Path, scenario: &Path, dir: &Path, job: Job) -> Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("run.log");
    let log = std::fs::File::create(&log_path)?;
    let status = Command::new(bin)
        .arg("run")
        .arg(scenario)
        .args(["--quiet", "--seed", &job.seed.to_string()])
        .args(["--cell", &job.cell.to_string()])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .context("cannot run grove-sim")?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!(
            "cell {} seed {} failed ({status}); see {}",
            job.cell,
            job.seed,
            log_path.display()
        ),
    }
}

/// Merge the runs in `dirs` into `out` (default: the first directory).
pub fn merge(
    dirs: &[PathBuf],
    out: Option<PathBuf>,
) -> Result<(PathBuf, grove_analysis::merge::Merged)> {
    let (plan, merged) = sweep::merge_dirs(dirs)?;
    let out = out.unwrap_or_else(|| dirs[0].clone());
    std::fs::create_dir_all(&out)?;
    // The scenario text goes into the page when the file is the one run.
    let text = std::fs::read_to_string(&plan.scenario)
        .ok()
        .filter(|t| sweep::sha256_hex(t) == plan.sha256);
    grove_analysis::output::write_sweep(&out, &merged, text.as_deref())?;
    eprintln!(
        "merged {} runs: {}",
        plan.jobs().len(),
        out.join("merged.json").display()
    );
    Ok((out, merged))
}
