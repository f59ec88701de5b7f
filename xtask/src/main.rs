//! Repository automation: `cargo xtask <command>`.
//!
//! - `simulate <scenario.toml> [--seed N] [--out DIR] [--quiet]`: build the
//!   simulator with `--cfg madsim` (in its own target dir, `target-sim/`)
//!   and run a scenario; exits non-zero when a check fails.
//! - `sweep <scenario.toml> --seeds N [--shard-index I --shard-count N]`:
//!   cells x seeds, one process per run, in parallel; merged with charts.
//! - `merge DIR...`: merge the shards of a sweep.
//! - `regress [--update]`: the regression gate against committed baselines.
//! - `test`: every test, native and under `--cfg madsim`.
//! - `bench [--skip-100k] [--skip-soak] [--skip-churn] [--runs N]`: the
//!   simulated network against a plain discrete-event loop at 1,000, 10,000
//!   and 100,000 nodes, what a session costs (handshake and datagram CPU,
//!   heap bytes), memory per idle node, `residential-95.toml` and
//!   `scale-100k.toml` wall time and peak memory, handshakes and acks per
//!   node-hour, and the live heap and RSS at the start and end of
//!   `soak-24h-1k.toml`; writes `reports/bench/bench.json` (`bench.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod regress;
mod sweep;

#[derive(Parser)]
#[command(name = "xtask", about = "Grove's repository automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario in the deterministic simulator.
    Simulate {
        scenario: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
        /// Only this cell of the scenario's sweep (0-based).
        #[arg(long)]
        cell: Option<usize>,
    },
    /// Run a scenario's cells x seeds in parallel (or one shard of them)
    /// and merge them.
    Sweep {
        scenario: PathBuf,
        /// Number of seeds, from the scenario's seed (or --first-seed) up.
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        #[arg(long)]
        first_seed: Option<u64>,
        /// Output directory (default: reports/<name>/sweep).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs at a time (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// This shard (0-based); else JOB_COMPLETION_INDEX or
        /// SLURM_ARRAY_TASK_ID from the environment.
        #[arg(long)]
        shard_index: Option<usize>,
        /// Shards in all; else GROVE_SHARD_COUNT or SLURM_ARRAY_TASK_COUNT.
        #[arg(long)]
        shard_count: Option<usize>,
        #[arg(long)]
        quiet: bool,
    },
    /// Merge a sweep's shards (their output directories) into one report.
    Merge {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write (default: the first directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the regression gate: exit 0 pass, 1 regression, 2 error.
    Regress {
        /// Rewrite the baselines from this run.
        #[arg(long)]
        update: bool,
        #[arg(long, default_value = "reports/baselines/gate.toml")]
        gate: PathBuf,
        /// Gate only this scenario (its baseline's stem, e.g. `quickstart`);
        /// repeatable.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Run every test: native, then under --cfg madsim.
    Test,
    /// Measure the simulator's speed and memory.
    Bench {
        /// Nodes in the main network benchmark (`ratio`).
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Skip the 100,000-node parts (network and scale-100k.toml), the
        /// bulk of the bench's time.
        #[arg(long)]
        skip_100k: bool,
        /// Skip the 24-hour soak (soak-24h-1k.toml: memory over a day).
        #[arg(long)]
        skip_soak: bool,
        /// Skip the first hour of churn-residential.toml (handshakes and
        /// acks per node-hour under churn).
        #[arg(long)]
        skip_churn: bool,
        /// Runs of residential-95.toml per crypto mode (median reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

const SIM_TARGET: &str = "target-sim";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = project_root();
    // Paths given on the command line are relative to where the user is.
    let cwd = std::env::current_dir().expect("a current directory");
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("error: cannot enter {}: {e}", root.display());
        return ExitCode::from(2);
    }
    huge_pages_for_children();
    let result = match cli.command {
        Cmd::Simulate {
            scenario,
            seed,
            out,
            quiet,
            cell,
        } => simulate(
            &relative_to_root(&cwd, &root, &scenario),
            seed,
            out.map(|o| cwd.join(o)),
            quiet,
            cell,
        ),
        Cmd::Sweep {
            scenario,
            seeds,
            first_seed,
            out,
            jobs,
            shard_index,
            shard_count,
            quiet,
        } => build_simulator().and_then(|bin| {
            let outcome = sweep::sweep(
                &bin,
                sweep::SweepArgs {
                    scenario: relative_to_root(&cwd, &root, &scenario),
                    seeds,
                    first_seed,
                    out: out.map(|o| cwd.join(o)),
                    jobs,
                    shard_index,
                    shard_count,
                    quiet,
                },
            )?;
            Ok(if outcome.all_passed {
                ExitCode::SUCCESS
            } else {
                eprintln!("some runs failed their checks");
                ExitCode::from(1)
            })
        }),
        Cmd::Merge { dirs, out } => {
            let dirs: Vec<PathBuf> = dirs.iter().map(|d| cwd.join(d)).collect();
            sweep::merge(&dirs, out.map(|o| cwd.join(o))).map(|(_, merged)| {
                if merged.passed {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("some runs failed their checks, or a contrast did not hold");
                    ExitCode::from(1)
                }
            })
        }
        Cmd::Regress { update, gate, only } => regress::regress(&cwd.join(gate), update, &only),
        Cmd::Test => test(),
        Cmd::Bench {
            nodes,
            skip_100k,
            skip_soak,
            skip_churn,
            runs,
        } => bench::bench(bench::BenchArgs {
            nodes,
            skip_100k,
            skip_soak,
            skip_churn,
            runs,
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// `path` as given from `cwd`, relative to the project root when it lies
/// inside it (so reports name the same file on every machine).
fn relative_to_root(cwd: &Path, root: &Path, path: &Path) -> PathBuf {
    let abs = cwd.join(path);
    let abs = abs.canonicalize().unwrap_or(abs);
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    abs.strip_prefix(&root).map(Path::to_owned).unwrap_or(abs)
}

/// Let the processes this starts (the simulator, and the test binaries
/// that run it in-process) back glibc's heap with transparent huge pages.
///
/// A large run is hundreds of MB of node state touched at random: each
/// datagram wakes a different node, whose state is cold. With 4 KiB pages
/// nearly every cold line also misses the TLB, and the page-table walk
/// misses the cache too. `glibc.malloc.hugetlb=1` makes malloc `madvise`
/// its heap for huge pages (the kernel still decides): measured on
/// `residential-95.toml` and 10,000 idle nodes, 8-24% less wall time,
/// the same peak RSS within 1%, and byte-identical reports (nothing in a
/// run depends on addresses).
/// The tunable is read when a process starts, so it is set here for the
/// children; a value the user already set for it is kept.
fn huge_pages_for_children() {
    const TUNABLE: &str = "glibc.malloc.hugetlb";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(TUNABLE) {
        return;
    }
    let value = if current.is_empty() {
        format!("{TUNABLE}=1")
    } else {
        format!("{current}:{TUNABLE}=1")
    };
    // Single-threaded here: nothing else reads the environment yet.
    std::env::set_var("GLIBC_TUNABLES", value);
}

fn run(cmd: &mut Command) -> Result<std::process::ExitStatus> {
    cmd.status().with_context(|| format!("cannot run {cmd:?}"))
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = run(cmd)?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo` with `--cfg madsim` and the simulator's own target dir.
fn cargo_sim() -> Command {
    let mut c = cargo();
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    flags.push_str(" --cfg madsim");
    // Doctests are compiled by rustdoc, which reads RUSTDOCFLAGS, not
    // RUSTFLAGS: without the cfg there too it would build the real-mode-only
    // modules (`#[cfg(not(madsim))]`) against dependencies cargo left out.
    let mut doc_flags = std::env::var("RUSTDOCFLAGS").unwrap_or_default();
    doc_flags.push_str(" --cfg madsim");
    c.env("RUSTFLAGS", flags.trim())
        .env("RUSTDOCFLAGS", doc_flags.trim())
        .env("CARGO_TARGET_DIR", SIM_TARGET);
    c
}

fn build_simulator() -> Result<PathBuf> {
    eprintln!("building the simulator (--cfg madsim, release, {SIM_TARGET}/)...");
    check(cargo_sim().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "grove-sim",
        "--bin",
        "grove-sim",
    ]))?;
    Ok(Path::new(SIM_TARGET).join("release/grove-sim"))
}

fn simulate(
    scenario: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    cell: Option<usize>,
) -> Result<ExitCode> {
    if !scenario.exists() {
        bail!("no scenario file at {}", scenario.display());
    }
    let bin = build_simulator()?;
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg(scenario);
    if let Some(seed) = seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    if let Some(out) = out {
        cmd.arg("--out").arg(out);
    }
    if quiet {
        cmd.arg("--quiet");
    }
    if let Some(cell) = cell {
        cmd.args(["--cell", &cell.to_string()]);
    }
    let status = run(&mut cmd)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::from(2),
    })
}

fn test() -> Result<ExitCode> {
    let mut totals = Totals::default();
    eprintln!("== native tests");
    cargo_test(cargo().args(["test", "--workspace"]), &mut totals)?;
    eprintln!("== simulator tests (--cfg madsim)");
    cargo_test(
        // Optimised (the sim-test profile: release without LTO): these tests
        // run whole scenarios; debug assertions run in the native half.
        cargo_sim().args([
            "test",
            "--profile",
            "sim-test",
            "-p",
            "grove-netsim",
            "-p",
            "grove-sim",
            "-p",
            "grove-node",
        ]),
        &mut totals,
    )?;
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Run a `cargo test` command, echoing its output and adding up the
/// `test result:` lines of every test binary.
fn cargo_test(cmd: &mut Command, totals: &mut Totals) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            totals.passed += count(" passed");
            totals.failed += count(" failed");
            totals.ignored += count(" ignored");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
