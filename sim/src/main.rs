//! `grove-sim`: run a scenario file and write its report.
//!
//! Built with `--cfg madsim` by `cargo xtask simulate`, which is the usual
//! way in; `grove-sim check` (validate a scenario) works in any build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use grove_sim::scenario::{Cell, ScenarioError, Source};

#[derive(Parser)]
#[command(name = "grove-sim", about = "Grove's deterministic network simulator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario (every cell of its sweep) and write the report(s).
    Run {
        scenario: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write (default: reports/<name>/<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Also write wall time and peak memory here (not in the report,
        /// which must not depend on the machine).
        #[arg(long)]
        stats: Option<PathBuf>,
        /// Run only this cell of the sweep (0-based), into --out itself.
        #[arg(long)]
        cell: Option<usize>,
    },
    /// Print a scenario's name, seed, sweep cell count and SHA-256 as JSON
    /// (what `cargo xtask sweep` plans with).
    Cells { scenario: PathBuf },
    /// Parse and validate a scenario without running it.
    Check { scenario: PathBuf },
    /// Measure what a session costs: handshake and datagram CPU, heap
    /// bytes per session, with real and null crypto (JSON on stdout).
    SessionBench {
        /// Handshakes, and batches of 1,000 datagrams, per measurement.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// Measure the simulated network against a plain discrete-event loop.
    Bench {
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Interleaved rounds of each; the best of each is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Check { scenario } => check(&scenario),
        Cmd::Cells { scenario } => cells(&scenario),
        Cmd::Run {
            scenario,
            seed,
            out,
            quiet,
            stats,
            cell,
        } => run(&scenario, seed, out, quiet, stats, cell),
        Cmd::Bench {
            nodes,
            rate,
            seconds,
            rounds,
        } => bench(nodes, rate, seconds, rounds),
        Cmd::SessionBench { rounds } => session_bench(rounds),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<ScenarioError>() {
                Some(se) => eprintln!("error: {se}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn load(path: &Path) -> anyhow::Result<(Source, Vec<Cell>)> {
    let source = Source::read(path)?;
    let cells = source.load()?;
    Ok((source, cells))
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let (_, cells) = load(path)?;
    let s = &cells[0].1;
    let hosts: usize = s.groups.iter().map(|g| g.count).sum();
    println!(
        "{}: ok ({} hosts, {} s, {} timeline events, {} cell(s))",
        path.display(),
        hosts,
        s.duration_s,
        s.timeline.len(),
        cells.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn cells(path: &Path) -> anyhow::Result<ExitCode> {
    let (source, cells) = load(path)?;
    let value = serde_json::json!({
        "name": cells[0].1.name,
        "seed": cells[0].1.seed,
        "cells": cells.len(),
        "sha256": grove_analysis::sweep::sha256_hex(&source.text),
    });
    println!("{value}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(madsim))]
fn run(
    _: &Path,
    _: Option<u64>,
    _: Option<PathBuf>,
    _: bool,
    _: Option<PathBuf>,
    _: Option<usize>,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this grove-sim was built without --cfg madsim; run scenarios with `cargo xtask simulate`"
    )
}

#[cfg(madsim)]
fn run(
    path: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    stats: Option<PathBuf>,
    only_cell: Option<usize>,
) -> anyhow::Result<ExitCode> {
    use grove_sim::report::{CellParam, ScenarioInfo};
    use grove_sim::world::{self, RunInfo};

    let (source, cells) = load(path)?;
    if let Some(c) = only_cell.filter(|&c| c >= cells.len()) {
        anyhow::bail!("--cell {c}: the scenario has {} cell(s)", cells.len());
    }
    let base = &cells[0].1;
    let seed = seed.unwrap_or(base.seed);
    let out = out.unwrap_or_else(|| Path::new("reports").join(&base.name).join(seed.to_string()));
    use anyhow::Context;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let sha256 = grove_analysis::sweep::sha256_hex(&source.text);
    let file = path.display().to_string();
    let reproduce = match only_cell {
        Some(c) => format!("cargo xtask simulate {file} --seed {seed} --cell {c}"),
        None => format!("cargo xtask simulate {file} --seed {seed}"),
    };
    // Harness wall time (real clock, outside the simulation): printed and
    // written to --stats, never into a report.
    let started = std::time::Instant::now();
    // Memory over virtual time: (virtual s, live heap MB, RSS MB).
    let memory: std::rc::Rc<std::cell::RefCell<Vec<MemorySample>>> = Default::default();
    let mut reports = Vec::new();
    let mut all_passed = true;
    for (i, (cell, scenario)) in cells.iter().enumerate() {
        if only_cell.is_some_and(|c| c != i) {
            continue;
        }
        let param = cell.as_ref().map(|(p, v)| CellParam {
            param: p.clone(),
            value: serde_json::to_value(v).expect("TOML values are JSON values"),
        });
        let label = match &param {
            Some(p) => format!("cell {}/{} {}={}", i + 1, cells.len(), p.param, p.value),
            None => scenario.name.clone(),
        };
        let bar = progress_bar(quiet, scenario.duration_s, label.clone());
        let tick = bar.clone();
        // Resident memory over virtual time, for --stats (48 samples a run):
        // a long run must keep it flat. Only then: a sample hands the
        // allocator's free pages back to the system, and the run faults
        // them in again (zeroed by the kernel) as it allocates.
        let rss_every = (scenario.duration_s / 48.0).ceil().max(1.0) as u64;
        let sample_memory = stats.is_some();
        let memory_log = memory.clone();
        let info = RunInfo {
            scenario: ScenarioInfo {
                name: scenario.name.clone(),
                file: file.clone(),
                sha256: sha256.clone(),
                description: scenario.description.clone(),
                cell: param.clone(),
                contrasts: scenario.contrasts.clone(),
            },
            reproduce: reproduce.clone(),
        };
        // Harness wall time (real clock, outside the simulation): printed
        // and written to --stats, never into a report.
        let cell_started = std::time::Instant::now();
        let report = world::run(
            scenario,
            seed,
            info,
            Box::new(move |sec| {
                tick.set_position(sec);
                if sample_memory && sec % rss_every == 0 {
                    let sample = (sec, heap_in_use_mb(), current_rss_mb());
                    memory_log.borrow_mut().push(sample);
                }
            }),
        );
        bar.finish_and_clear();
        let dir = if cells.len() > 1 && only_cell.is_none() {
            out.join(format!("cell-{i:02}"))
        } else {
            out.clone()
        };
        let text = write_json(&dir.join("report.json"), &report)?;
        grove_analysis::output::write_run(&dir, &text, Some(&source.text))?;
        eprint!("{}", report.summary());
        eprintln!(
            "  ({label}: {:.1} s wall)",
            cell_started.elapsed().as_secs_f64()
        );
        all_passed &= report.passed;
        reports.push((param, report));
    }
    if cells.len() > 1 && only_cell.is_none() {
        #[derive(serde::Serialize)]
        struct Cell<'a> {
            params: &'a Option<CellParam>,
            report: &'a grove_sim::report::Report,
        }
        #[derive(serde::Serialize)]
        struct Combined<'a> {
            schema_version: u32,
            scenario: &'a str,
            file: &'a str,
            sha256: &'a str,
            seed: u64,
            reproduce: &'a str,
            passed: bool,
            cells: Vec<Cell<'a>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            contrasts: Vec<grove_analysis::contrast::ContrastResult>,
        }
        let values: Vec<serde_json::Value> = reports
            .iter()
            .map(|(_, r)| serde_json::to_value(r).expect("a report is JSON"))
            .collect();
        let by_cell: Vec<&serde_json::Value> = values.iter().collect();
        let contrasts: Vec<_> = base
            .contrasts
            .iter()
            .map(|c| c.evaluate_seeds(std::slice::from_ref(&by_cell)))
            .collect();
        for c in &contrasts {
            eprintln!("  contrast {c}");
            all_passed &= c.passed;
        }
        let combined = Combined {
            schema_version: grove_sim::report::SCHEMA_VERSION,
            scenario: &base.name,
            file: &file,
            sha256: &sha256,
            seed,
            reproduce: &reproduce,
            passed: all_passed,
            cells: reports
                .iter()
                .map(|(params, report)| Cell { params, report })
                .collect(),
            contrasts,
        };
        write_json(&out.join("report.json"), &combined)?;
        // The cells as a sweep of one seed: merged.json, charts, page.
        let runs = values
            .into_iter()
            .enumerate()
            .map(|(cell, report)| grove_analysis::merge::Run { cell, seed, report })
            .collect::<Vec<_>>();
        let merged = grove_analysis::merge::merge(&runs, reproduce.clone())?;
        grove_analysis::output::write_sweep(&out, &merged, Some(&source.text))?;
    }
    if let Some(stats) = stats {
        let memory = memory.borrow();
        let series = |pick: fn(&MemorySample) -> Option<(u64, f64)>| {
            memory.iter().filter_map(pick).collect::<Vec<_>>()
        };
        let value = serde_json::json!({
            "wall_s": started.elapsed().as_secs_f64(),
            "peak_rss_mb": grove_sim::bench::peak_rss_mb(),
            "rss_mb_by_virtual_s": series(|&(s, _, rss)| Some((s, rss?))),
            "heap_mb_by_virtual_s": series(|&(s, heap, _)| Some((s, heap?))),
        });
        write_json(&stats, &value)?;
    }
    eprintln!(
        "report: {} ({:.1} s wall)",
        out.join("report.json").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Memory at a virtual second: (virtual s, live heap MB, RSS MB).
#[cfg(madsim)]
type MemorySample = (u64, Option<f64>, Option<f64>);

/// The live heap in MiB ([`grove_sim::bench::heap_in_use_bytes`]).
#[cfg(madsim)]
fn heap_in_use_mb() -> Option<f64> {
    grove_sim::bench::heap_in_use_bytes().map(|b| b as f64 / (1024.0 * 1024.0))
}

/// The resident set size now (Linux `/proc/self/statm`, in pages of 4 KiB),
/// after handing the allocator's free pages back to the system (glibc keeps
/// freed memory otherwise, and RSS would drift up with fragmentation while
/// the live heap stays flat).
#[cfg(madsim)]
fn current_rss_mb() -> Option<f64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

#[cfg(madsim)]
fn progress_bar(quiet: bool, duration_s: f64, label: String) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(duration_s.floor() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} virtual s ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}

/// Write `value` as pretty JSON; returns the text written.
#[cfg(madsim)]
fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(text)
}

#[cfg(not(madsim))]
fn bench(_: usize, _: f64, _: f64, _: usize) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the benchmark compares the simulator, which needs a --cfg madsim build")
}

#[cfg(madsim)]
fn bench(nodes: usize, rate: f64, seconds: f64, rounds: usize) -> anyhow::Result<ExitCode> {
    use grove_sim::bench::{self, Measurement, TrafficConfig};
    let cfg = TrafficConfig {
        nodes,
        rate_per_s: rate,
        seconds,
        ..TrafficConfig::default()
    };
    // Interleaved rounds, best of each: the two halves see the same
    // machine, and a passing load on a shared machine hurts neither more.
    let mut des: Vec<Measurement> = Vec::new();
    let mut sim: Vec<Measurement> = Vec::new();
    for _ in 0..rounds.max(1) {
        des.push(bench::des(&cfg));
        sim.push(bench::sim(&cfg));
    }
    let best = |m: &[Measurement]| {
        m.iter()
            .min_by(|a, b| a.ns_per_datagram.total_cmp(&b.ns_per_datagram))
            .cloned()
    };
    let out = serde_json::json!({
        "config": cfg,
        "rounds": rounds,
        "des": best(&des),
        "sim": best(&sim),
        "des_rounds": des,
        "sim_rounds": sim,
        "peak_rss_mb": bench::peak_rss_mb(),
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn session_bench(rounds: usize) -> anyhow::Result<ExitCode> {
    let costs = grove_sim::bench::sessions::measure(rounds);
    println!("{}", serde_json::to_string(&costs)?);
    Ok(ExitCode::SUCCESS)
}
