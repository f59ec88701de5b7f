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
//! - `bench [--skip-100k] [--skip-soak]`: the simulated network against a
//!   plain discrete-event loop at 1,000, 10,000 and 100,000 nodes, memory
//!   per idle node, the wall time and peak memory of `residential-95.toml`
//!   and `scale-100k.toml`, and the live heap and RSS at the start and end
//!   of `soak-24h-1k.toml`; writes `reports/bench/bench.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

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
            sweep::merge(&dirs, out.map(|o| cwd.join(o))).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Regress { update, gate } => regress::regress(&cwd.join(gate), update),
        Cmd::Test => test(),
        Cmd::Bench {
            nodes,
            skip_100k,
            skip_soak,
        } => bench(nodes, skip_100k, skip_soak),
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
    c.env("RUSTFLAGS", flags.trim())
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

/// One `grove-sim bench` run: the DES and the simulator on the same
/// traffic, best of `rounds` interleaved rounds.
struct NetBench {
    des_ns: f64,
    sim_ns: f64,
    json: serde_json::Value,
}

fn net_bench(bin: &Path, nodes: usize, seconds: f64, rounds: usize) -> Result<NetBench> {
    eprintln!(
        "== network: {nodes} nodes x 5 datagrams/s x {seconds} virtual s (best of {rounds} interleaved rounds)"
    );
    let out = Command::new(bin)
        .args(["bench", "--nodes", &nodes.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--rounds", &rounds.to_string()])
        .output()
        .context("cannot run grove-sim bench")?;
    if !out.status.success() {
        bail!(
            "grove-sim bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("bench output")?;
    let des_ns = json["des"]["ns_per_datagram"]
        .as_f64()
        .context("des figure")?;
    let sim_ns = json["sim"]["ns_per_datagram"]
        .as_f64()
        .context("sim figure")?;
    eprintln!(
        "   DES {des_ns:.0} ns/datagram, simulator {sim_ns:.0} ns/datagram, ratio {:.2}x",
        sim_ns / des_ns
    );
    Ok(NetBench {
        des_ns,
        sim_ns,
        json,
    })
}

/// Wall seconds and peak RSS (MB) of a scenario run.
fn scenario_bench(bin: &Path, scenario: &Path, name: &str) -> Result<(f64, f64)> {
    let (wall, stats) = scenario_stats(bin, scenario, name)?;
    let rss = stats["peak_rss_mb"].as_f64().unwrap_or(0.0);
    eprintln!("   {wall:.1} s wall, peak RSS {rss:.0} MB");
    Ok((wall, rss))
}

/// Memory at the start and end of a long run: the live heap and the
/// resident set (MB) at the first and last of the simulator's samples.
struct Soak {
    wall_s: f64,
    heap_mb: (f64, f64),
    rss_mb: (f64, f64),
}

fn soak_bench(bin: &Path) -> Result<Soak> {
    let (wall_s, stats) =
        scenario_stats(bin, Path::new("scenarios/soak-24h-1k.toml"), "soak-24h-1k")?;
    let ends = |key: &str| -> Result<(f64, f64)> {
        let series = stats[key]
            .as_array()
            .with_context(|| format!("no {key} in the run stats"))?;
        let mb = |s: Option<&serde_json::Value>| s.and_then(|p| p[1].as_f64());
        match (mb(series.first()), mb(series.last())) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => bail!("{key} is empty"),
        }
    };
    let soak = Soak {
        wall_s,
        heap_mb: ends("heap_mb_by_virtual_s")?,
        rss_mb: ends("rss_mb_by_virtual_s")?,
    };
    eprintln!(
        "   {wall_s:.1} s wall; heap {:.1} -> {:.1} MB, RSS {:.1} -> {:.1} MB",
        soak.heap_mb.0, soak.heap_mb.1, soak.rss_mb.0, soak.rss_mb.1
    );
    Ok(soak)
}

/// Run `scenario` with `--stats`: its wall time and the stats.
fn scenario_stats(bin: &Path, scenario: &Path, name: &str) -> Result<(f64, serde_json::Value)> {
    eprintln!("== {}", scenario.display());
    let stats = PathBuf::from(format!("reports/bench/{name}.stats.json"));
    let report_dir = PathBuf::from(format!("reports/bench/{name}"));
    let started = std::time::Instant::now();
    let status = run(Command::new(bin)
        .arg("run")
        .arg(scenario)
        .args(["--quiet", "--out"])
        .arg(&report_dir)
        .arg("--stats")
        .arg(&stats))?;
    // Exit status 1 is a failed check: the run itself is what is timed.
    if !matches!(status.code(), Some(0 | 1)) {
        bail!("{} failed ({status})", scenario.display());
    }
    let wall = started.elapsed().as_secs_f64();
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).context("run stats")?)?;
    Ok((wall, stats))
}

/// An idle overlay of `nodes` public hosts: they join 1 ms apart through
/// random running nodes, then 10 s with no workload.
fn idle_scenario(nodes: usize) -> String {
    let duration_s = nodes.div_ceil(1000) + 10;
    format!(
        r#"name = "idle-{nodes}"
description = "{nodes} nodes join and idle (bench: memory per node)"
seed = 1
duration_s = {duration_s}

[node.nat]
enabled = false

[join]
interval_ms = 1
contact = "random"

[[groups]]
name = "residential"
count = {nodes}
latency_ms = [5, 50]
jitter = "exponential"
jitter_ms = 2
"#
    )
}

/// Bytes of peak RSS per idle node: the difference between an idle run of
/// `large` nodes and one of `small` (which carries the process's fixed
/// cost), over the difference in nodes.
fn idle_node_bytes(bin: &Path, small: usize, large: usize) -> Result<f64> {
    let dir = Path::new("reports/bench/idle");
    std::fs::create_dir_all(dir)?;
    let mut rss = Vec::new();
    for n in [small, large] {
        let file = dir.join(format!("idle-{n}.toml"));
        std::fs::write(&file, idle_scenario(n))?;
        rss.push(scenario_bench(bin, &file, &format!("idle/idle-{n}"))?.1);
    }
    Ok((rss[1] - rss[0]) * 1024.0 * 1024.0 / (large - small) as f64)
}

fn bench(nodes: usize, skip_100k: bool, skip_soak: bool) -> Result<ExitCode> {
    let bin = build_simulator()?;
    std::fs::create_dir_all("reports/bench")?;
    let net_1k = net_bench(&bin, 1_000, 60.0, 3)?;
    let net = net_bench(&bin, nodes, 60.0, 3)?;
    // 20 virtual s (10M datagrams) per round keeps the 100k part to minutes.
    let net_100k = (!skip_100k)
        .then(|| net_bench(&bin, 100_000, 20.0, 2))
        .transpose()?;
    let idle_bytes = idle_node_bytes(&bin, 1_000, 10_000)?;
    eprintln!("   {idle_bytes:.0} bytes of peak RSS per idle node");
    let (wall, rss) = scenario_bench(
        &bin,
        Path::new("scenarios/residential-95.toml"),
        "residential-95",
    )?;
    let scale = (!skip_100k)
        .then(|| scenario_bench(&bin, Path::new("scenarios/scale-100k.toml"), "scale-100k"))
        .transpose()?;

    let soak = (!skip_soak).then(|| soak_bench(&bin)).transpose()?;

    let ratio = |n: &NetBench| n.sim_ns / n.des_ns;
    let result = serde_json::json!({
        "nodes": nodes,
        "des_ns_per_datagram": net.des_ns,
        "sim_ns_per_datagram": net.sim_ns,
        "ratio": ratio(&net),
        "datagrams": net.json["sim"]["datagrams"],
        "residential95_wall_s": wall,
        "residential95_peak_rss_mb": rss,
        "network": net.json,
        "sim_ns_per_datagram_1k": net_1k.sim_ns,
        "sim_ns_per_datagram_10k": net.sim_ns,
        "sim_ns_per_datagram_100k": net_100k.as_ref().map(|n| n.sim_ns),
        "ratio_1k": ratio(&net_1k),
        "ratio_10k": ratio(&net),
        "ratio_100k": net_100k.as_ref().map(ratio),
        "network_1k": net_1k.json,
        "network_100k": net_100k.as_ref().map(|n| &n.json),
        "idle_node_bytes": idle_bytes,
        "scale100k_wall_s": scale.map(|s| s.0),
        "scale100k_peak_rss_mb": scale.map(|s| s.1),
        "soak24h_wall_s": soak.as_ref().map(|s| s.wall_s),
        "soak24h_heap_mb_start": soak.as_ref().map(|s| s.heap_mb.0),
        "soak24h_heap_mb_end": soak.as_ref().map(|s| s.heap_mb.1),
        "soak24h_rss_mb_start": soak.as_ref().map(|s| s.rss_mb.0),
        "soak24h_rss_mb_end": soak.as_ref().map(|s| s.rss_mb.1),
    });
    std::fs::write(
        "reports/bench/bench.json",
        serde_json::to_string_pretty(&result)? + "\n",
    )?;

    let na = || "skipped".to_owned();
    let rows = [
        (
            "ns/datagram at 1k nodes: DES / simulator",
            format!("{:.0} / {:.0}", net_1k.des_ns, net_1k.sim_ns),
            "",
        ),
        (
            &*format!("ns/datagram at {nodes} nodes: DES / simulator"),
            format!("{:.0} / {:.0}", net.des_ns, net.sim_ns),
            "",
        ),
        (
            "ns/datagram at 100k nodes: DES / simulator",
            net_100k
                .as_ref()
                .map_or_else(na, |n| format!("{:.0} / {:.0}", n.des_ns, n.sim_ns)),
            "",
        ),
        (
            &*format!("ratio at {nodes} nodes"),
            format!("{:.2}x", ratio(&net)),
            "<= 3x at 10k",
        ),
        (
            "ratio at 100k nodes",
            net_100k
                .as_ref()
                .map_or_else(na, |n| format!("{:.2}x", ratio(n))),
            "<= 4x",
        ),
        (
            "peak RSS per idle node",
            format!("{idle_bytes:.0} bytes"),
            "",
        ),
        (
            "residential-95.toml wall / peak RSS",
            format!("{wall:.1} s / {rss:.0} MB"),
            "",
        ),
        (
            "scale-100k.toml wall / peak RSS",
            scale.map_or_else(na, |(w, r)| format!("{w:.1} s / {r:.0} MB")),
            "<= 300 s / 2048 MB",
        ),
        (
            "soak-24h-1k.toml heap / RSS, start -> end",
            soak.as_ref().map_or_else(na, |s| {
                format!(
                    "{:.0}->{:.0} / {:.0}->{:.0} MB",
                    s.heap_mb.0, s.heap_mb.1, s.rss_mb.0, s.rss_mb.1
                )
            }),
            "flat",
        ),
    ];
    eprintln!();
    eprintln!("{:<46} {:>22}  goal", "measure", "result");
    for (what, value, goal) in rows {
        eprintln!("{what:<46} {value:>22}  {goal}");
    }
    eprintln!("wrote reports/bench/bench.json");
    Ok(ExitCode::SUCCESS)
}
