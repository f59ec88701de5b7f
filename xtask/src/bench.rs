//! `cargo xtask bench`: the simulator's speed and memory, and what
//! sessions cost; writes `reports/bench/bench.json` and prints a table.
//!
//! - the simulated network against a plain discrete-event loop at 1,000,
//!   `--nodes` and 100,000 nodes (`grove-sim bench`);
//! - sessions: handshake CPU (each side), seal and open CPU per 200-byte
//!   datagram, heap bytes per established idle session, with real and null
//!   crypto (`grove-sim session-bench`);
//! - peak RSS per idle node, with real and null crypto;
//! - `residential-95.toml` wall time and peak RSS with real crypto (the
//!   file as it is) and null crypto (an override), and the handshakes and
//!   acks per node-hour its report counts;
//! - handshakes and acks per node-hour under churn: `churn-residential.toml`
//!   cut to its first hour (the whole file is 6 virtual hours, tens of
//!   minutes of wall time), with null crypto (which sends the same
//!   datagrams as real);
//! - `scale-100k.toml` with null crypto (the budget is for that mode);
//! - the live heap and RSS at the start and end of `soak-24h-1k.toml`.
//!
//! Overridden scenarios are written to `reports/bench/overrides/`; the
//! canonical files are never changed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{build_simulator, run};

/// What to run; see [`crate::Cmd::Bench`].
pub struct BenchArgs {
    pub nodes: usize,
    pub skip_100k: bool,
    pub skip_soak: bool,
    pub skip_churn: bool,
    /// Runs of `residential-95.toml` in each crypto mode (interleaved; the
    /// median is reported).
    pub runs: usize,
}

/// Virtual seconds of `churn-residential.toml` the bench runs.
const CHURN_SECONDS: u64 = 3600;

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let bin = build_simulator()?;
    std::fs::create_dir_all("reports/bench/overrides")?;
    let net_1k = net_bench(&bin, 1_000, 60.0, 3)?;
    let net = net_bench(&bin, args.nodes, 60.0, 3)?;
    // 20 virtual s (10M datagrams) per round keeps the 100k part to minutes.
    let net_100k = (!args.skip_100k)
        .then(|| net_bench(&bin, 100_000, 20.0, 2))
        .transpose()?;
    let sessions = session_bench(&bin)?;
    let idle_real = idle_node_bytes(&bin, Crypto::Real, 1_000, 10_000)?;
    let idle_null = idle_node_bytes(&bin, Crypto::Null, 1_000, 10_000)?;
    let residential = residential_bench(&bin, args.runs.max(1))?;
    let churn = (!args.skip_churn).then(|| churn_bench(&bin)).transpose()?;
    let scale = (!args.skip_100k)
        .then(|| {
            let file = with_overrides(
                Path::new("scenarios/scale-100k.toml"),
                "scale-100k-null",
                Some(Crypto::Null),
                None,
            )?;
            scenario_run(&bin, &file, "scale-100k-null")
        })
        .transpose()?;
    let soak = (!args.skip_soak).then(|| soak_bench(&bin)).transpose()?;

    let ratio = |n: &NetBench| n.sim_ns / n.des_ns;
    let (r_real, r_null) = (&residential.real, &residential.null);
    let result = json!({
        "nodes": args.nodes,
        "des_ns_per_datagram": net.des_ns,
        "sim_ns_per_datagram": net.sim_ns,
        "ratio": ratio(&net),
        "datagrams": net.json["sim"]["datagrams"],
        "residential95_runs": residential.runs,
        "residential95_wall_s": r_real.wall_s,
        "residential95_peak_rss_mb": r_real.peak_rss_mb,
        "residential95_null_wall_s": r_null.wall_s,
        "residential95_null_peak_rss_mb": r_null.peak_rss_mb,
        "residential95_transport": r_real.transport,
        "network": net.json,
        "sim_ns_per_datagram_1k": net_1k.sim_ns,
        "sim_ns_per_datagram_10k": net.sim_ns,
        "sim_ns_per_datagram_100k": net_100k.as_ref().map(|n| n.sim_ns),
        "ratio_1k": ratio(&net_1k),
        "ratio_10k": ratio(&net),
        "ratio_100k": net_100k.as_ref().map(ratio),
        "network_1k": net_1k.json,
        "network_100k": net_100k.as_ref().map(|n| &n.json),
        "sessions": sessions,
        "idle_node_bytes": idle_real.peak_rss_bytes,
        "idle_node_bytes_null": idle_null.peak_rss_bytes,
        "idle_node_heap_bytes": idle_real.end_heap_bytes,
        "idle_node_heap_bytes_null": idle_null.end_heap_bytes,
        "churn_residential_virtual_s": churn.as_ref().map(|_| CHURN_SECONDS),
        "churn_residential_wall_s": churn.as_ref().map(|c| c.wall_s),
        "churn_residential_transport": churn.as_ref().map(|c| &c.transport),
        "scale100k_crypto": scale.as_ref().map(|_| "null"),
        "scale100k_wall_s": scale.as_ref().map(|s| s.wall_s),
        "scale100k_peak_rss_mb": scale.as_ref().map(|s| s.peak_rss_mb),
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
    print_table(&result);
    eprintln!("wrote reports/bench/bench.json");
    Ok(ExitCode::SUCCESS)
}

/// The summary table, from what was written to `bench.json`.
fn print_table(r: &Value) {
    let na = || "skipped".to_owned();
    let f = |key: &str| r[key].as_f64();
    let s = &r["sessions"];
    let hs = |mode: &str| s[mode]["handshake"]["both_us"].as_f64().unwrap_or(0.0);
    let dg = |mode: &str, what: &str| s[mode]["datagram"][what].as_f64().unwrap_or(0.0);
    let per_session = |mode: &str| {
        s[mode]["bytes_per_session"]
            .as_f64()
            .map_or("-".to_owned(), |b| format!("{b:.0}"))
    };
    let rates = |t: &Value| {
        format!(
            "{:.0} / {:.0} ({:.0}%)",
            t["handshakes_per_node_hour"].as_f64().unwrap_or(0.0),
            t["acks_per_node_hour"].as_f64().unwrap_or(0.0),
            100.0 * t["acks_share"].as_f64().unwrap_or(0.0),
        )
    };
    let nodes = r["nodes"].as_u64().unwrap_or(0);
    let net = |key: &str| {
        let n = &r[key];
        match (
            n["des"]["ns_per_datagram"].as_f64(),
            n["sim"]["ns_per_datagram"].as_f64(),
        ) {
            (Some(d), Some(s)) => format!("{d:.0} / {s:.0}"),
            _ => na(),
        }
    };
    let rows: Vec<(String, String, &str)> = vec![
        (
            "ns/datagram at 1k nodes: DES / simulator".into(),
            net("network_1k"),
            "",
        ),
        (
            format!("ns/datagram at {nodes} nodes: DES / simulator"),
            net("network"),
            "",
        ),
        (
            "ns/datagram at 100k nodes: DES / simulator".into(),
            net("network_100k"),
            "",
        ),
        (
            format!("ratio at {nodes} nodes"),
            f("ratio").map_or_else(na, |x| format!("{x:.2}x")),
            "<= 3x at 10k",
        ),
        (
            "ratio at 100k nodes".into(),
            f("ratio_100k").map_or_else(na, |x| format!("{x:.2}x")),
            "<= 4x",
        ),
        (
            "handshake CPU, both sides: real / null".into(),
            format!("{:.0} / {:.1} us", hs("real"), hs("null")),
            "",
        ),
        (
            "seal + open of 200 bytes: real / null".into(),
            format!(
                "{:.0}+{:.0} / {:.0}+{:.0} ns",
                dg("real", "seal_ns"),
                dg("real", "open_ns"),
                dg("null", "seal_ns"),
                dg("null", "open_ns")
            ),
            "",
        ),
        (
            "heap bytes per idle session: real / null".into(),
            format!("{} / {}", per_session("real"), per_session("null")),
            "",
        ),
        (
            "peak RSS per idle node: real / null".into(),
            format!(
                "{:.0} / {:.0} bytes",
                f("idle_node_bytes").unwrap_or(0.0),
                f("idle_node_bytes_null").unwrap_or(0.0)
            ),
            "<= 24 KB / 16 KB",
        ),
        (
            "live heap per idle node at the end: real / null".into(),
            format!(
                "{:.0} / {:.0} bytes",
                f("idle_node_heap_bytes").unwrap_or(0.0),
                f("idle_node_heap_bytes_null").unwrap_or(0.0)
            ),
            "",
        ),
        (
            "residential-95 wall, real / null".into(),
            format!(
                "{:.1} / {:.1} s",
                f("residential95_wall_s").unwrap_or(0.0),
                f("residential95_null_wall_s").unwrap_or(0.0)
            ),
            "<= 60 s / 20 s",
        ),
        (
            "residential-95 peak RSS, real / null".into(),
            format!(
                "{:.0} / {:.0} MB",
                f("residential95_peak_rss_mb").unwrap_or(0.0),
                f("residential95_null_peak_rss_mb").unwrap_or(0.0)
            ),
            "",
        ),
        (
            "residential-95 handshakes / acks per node-hour".into(),
            rates(&r["residential95_transport"]),
            "",
        ),
        (
            format!("churn-residential, first {CHURN_SECONDS} s: same"),
            if r["churn_residential_transport"].is_null() {
                na()
            } else {
                rates(&r["churn_residential_transport"])
            },
            "",
        ),
        (
            "scale-100k (null crypto) wall / peak RSS".into(),
            match (f("scale100k_wall_s"), f("scale100k_peak_rss_mb")) {
                (Some(w), Some(m)) => format!("{w:.1} s / {m:.0} MB"),
                _ => na(),
            },
            "<= 300 s / 2560 MB",
        ),
        (
            "soak-24h-1k heap / RSS, start -> end".into(),
            match (
                f("soak24h_heap_mb_start"),
                f("soak24h_heap_mb_end"),
                f("soak24h_rss_mb_start"),
                f("soak24h_rss_mb_end"),
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => {
                    format!("{a:.0}->{b:.0} / {c:.0}->{d:.0} MB")
                }
                _ => na(),
            },
            "flat",
        ),
    ];
    eprintln!();
    eprintln!("{:<50} {:>26}  goal", "measure", "result");
    for (what, value, goal) in rows {
        eprintln!("{what:<50} {value:>26}  {goal}");
    }
}

/// Crypto modes of `[node.transport] crypto`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Crypto {
    Real,
    Null,
}

impl Crypto {
    fn name(self) -> &'static str {
        match self {
            Crypto::Real => "real",
            Crypto::Null => "null",
        }
    }
}

/// One `grove-sim bench` run: the DES and the simulator on the same
/// traffic, best of `rounds` interleaved rounds.
struct NetBench {
    des_ns: f64,
    sim_ns: f64,
    json: Value,
}

fn net_bench(bin: &Path, nodes: usize, seconds: f64, rounds: usize) -> Result<NetBench> {
    eprintln!(
        "== network: {nodes} nodes x 5 datagrams/s x {seconds} virtual s (best of {rounds} interleaved rounds)"
    );
    let json = json_output(
        Command::new(bin)
            .args(["bench", "--nodes", &nodes.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .args(["--rounds", &rounds.to_string()]),
    )?;
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

/// `grove-sim session-bench`: handshake and datagram CPU, heap per session.
fn session_bench(bin: &Path) -> Result<Value> {
    eprintln!("== sessions: 200 handshakes and 200 x 1,000 datagrams per crypto mode (medians)");
    let json = json_output(Command::new(bin).args(["session-bench", "--rounds", "200"]))?;
    for mode in ["real", "null"] {
        let m = &json[mode];
        eprintln!(
            "   {mode}: handshake {:.1} us (initiator {:.1}, responder {:.1}); seal {:.0} ns, open {:.0} ns per 200 bytes; {} heap bytes per session",
            m["handshake"]["both_us"].as_f64().unwrap_or(0.0),
            m["handshake"]["initiator_us"].as_f64().unwrap_or(0.0),
            m["handshake"]["responder_us"].as_f64().unwrap_or(0.0),
            m["datagram"]["seal_ns"].as_f64().unwrap_or(0.0),
            m["datagram"]["open_ns"].as_f64().unwrap_or(0.0),
            m["bytes_per_session"],
        );
    }
    Ok(json)
}

/// Run `cmd` and parse its standard output as JSON.
fn json_output(cmd: &mut Command) -> Result<Value> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("output of {cmd:?}"))
}

/// One scenario run: wall time, peak RSS, and its report's `transport`
/// section.
struct ScenarioRun {
    wall_s: f64,
    peak_rss_mb: f64,
    /// The live heap at the last sample (every 5 virtual s).
    end_heap_mb: f64,
    transport: Value,
}

fn scenario_run(bin: &Path, scenario: &Path, name: &str) -> Result<ScenarioRun> {
    let (wall_s, stats) = scenario_stats(bin, scenario, name)?;
    let peak_rss_mb = stats["peak_rss_mb"].as_f64().unwrap_or(0.0);
    let end_heap_mb = stats["heap_mb_by_virtual_s"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|sample| sample[1].as_f64())
        .unwrap_or(0.0);
    let report = format!("reports/bench/{name}/report.json");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report).with_context(|| format!("cannot read {report}"))?,
    )?;
    let transport = report["transport"].clone();
    eprintln!(
        "   {wall_s:.1} s wall, peak RSS {peak_rss_mb:.0} MB; {:.0} handshakes and {:.0} acks per node-hour",
        transport["handshakes_per_node_hour"].as_f64().unwrap_or(0.0),
        transport["acks_per_node_hour"].as_f64().unwrap_or(0.0),
    );
    Ok(ScenarioRun {
        wall_s,
        peak_rss_mb,
        end_heap_mb,
        transport,
    })
}

/// `residential-95.toml` in both crypto modes, `runs` times each,
/// interleaved so that both see the same machine: medians.
struct Residential {
    runs: usize,
    real: ScenarioRun,
    null: ScenarioRun,
}

fn residential_bench(bin: &Path, runs: usize) -> Result<Residential> {
    let canonical = Path::new("scenarios/residential-95.toml");
    let null = with_overrides(canonical, "residential-95-null", Some(Crypto::Null), None)?;
    let (mut real_runs, mut null_runs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        real_runs.push(scenario_run(bin, canonical, "residential-95")?);
        null_runs.push(scenario_run(bin, &null, "residential-95-null")?);
    }
    Ok(Residential {
        runs,
        real: median_run(real_runs),
        null: median_run(null_runs),
    })
}

/// The run of median wall time, with the largest peak RSS of all.
fn median_run(mut runs: Vec<ScenarioRun>) -> ScenarioRun {
    let peak = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
    runs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
    let mut median = runs.swap_remove(runs.len() / 2);
    median.peak_rss_mb = peak;
    median
}

/// `churn-residential.toml`'s first [`CHURN_SECONDS`], null crypto.
fn churn_bench(bin: &Path) -> Result<ScenarioRun> {
    let file = with_overrides(
        Path::new("scenarios/churn-residential.toml"),
        "churn-residential-1h-null",
        Some(Crypto::Null),
        Some(CHURN_SECONDS),
    )?;
    scenario_run(bin, &file, "churn-residential-1h-null")
}

/// `scenario` with `[node.transport] crypto` and `duration_s` replaced,
/// written to `reports/bench/overrides/<name>.toml`.
fn with_overrides(
    scenario: &Path,
    name: &str,
    crypto: Option<Crypto>,
    duration_s: Option<u64>,
) -> Result<PathBuf> {
    let text = std::fs::read_to_string(scenario)
        .with_context(|| format!("cannot read {}", scenario.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if let Some(seconds) = duration_s {
        let line = lines
            .iter_mut()
            .find(|l| l.trim_start().starts_with("duration_s"))
            .with_context(|| format!("no duration_s in {}", scenario.display()))?;
        *line = format!("duration_s = {seconds}");
        cap_workloads(&mut lines, seconds as f64);
    }
    if let Some(crypto) = crypto {
        let setting = format!("crypto = \"{}\"", crypto.name());
        match lines.iter().position(|l| l.trim() == "[node.transport]") {
            // The table is there: its crypto key replaced, or added first.
            Some(header) => {
                let end = lines[header + 1..]
                    .iter()
                    .position(|l| l.trim_start().starts_with('['))
                    .map_or(lines.len(), |i| header + 1 + i);
                match (header + 1..end).find(|&i| lines[i].trim_start().starts_with("crypto")) {
                    Some(i) => lines[i] = setting,
                    None => lines.insert(header + 1, setting),
                }
            }
            None => {
                lines.push(String::new());
                lines.push("[node.transport]".into());
                lines.push(setting);
            }
        }
    }
    let file = PathBuf::from(format!("reports/bench/overrides/{name}.toml"));
    std::fs::write(&file, lines.join("\n") + "\n")?;
    Ok(file)
}

/// Cut each `[[workload]]`'s `count` to the broadcasts that start before
/// `end_s` (the scenario check refuses a workload that outlasts the run).
fn cap_workloads(lines: &mut [String], end_s: f64) {
    let value = |line: &str, key: &str| -> Option<f64> {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.split('#').next()?.trim().parse().ok())?
    };
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "[[workload]]" {
            i += 1;
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |j| i + 1 + j);
        let block = &lines[i + 1..end];
        let start = block.iter().find_map(|l| value(l, "start_s"));
        let interval = block.iter().find_map(|l| value(l, "interval_ms"));
        let count = (i + 1..end).find(|&j| value(&lines[j], "count").is_some());
        if let (Some(start), Some(interval), Some(j)) = (start, interval, count) {
            let fits = ((end_s - start) * 1000.0 / interval).ceil().max(1.0) as u64;
            let n = value(&lines[j], "count").unwrap_or(0.0) as u64;
            lines[j] = format!("count = {}", n.min(fits));
        }
        i = end;
    }
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
        let mb = |s: Option<&Value>| s.and_then(|p| p[1].as_f64());
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

/// Run `scenario` with `--stats` into `reports/bench/<name>/`: its wall
/// time and the stats.
fn scenario_stats(bin: &Path, scenario: &Path, name: &str) -> Result<(f64, Value)> {
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
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).context("run stats")?)?;
    Ok((wall, stats))
}

/// An idle overlay of `nodes` public hosts: they join 1 ms apart through
/// random running nodes, then [`IDLE_S`] with no workload.
fn idle_scenario(nodes: usize, crypto: Crypto) -> String {
    let duration_s = nodes.div_ceil(1000) + IDLE_S;
    let crypto = crypto.name();
    format!(
        r#"name = "idle-{nodes}"
description = "{nodes} nodes join and idle (bench: memory per node)"
seed = 1
duration_s = {duration_s}

[node.nat]
enabled = false

[node.transport]
crypto = "{crypto}"

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

/// Virtual seconds an idle overlay runs after its last join: long enough
/// for the sessions of the join burst's one-off exchanges to expire (30 s
/// idle timeout, swept every 7.5 s) and for the shuffles' sessions to
/// reach their steady state, so that what is measured is a node that has
/// been idle for a while, not one that just joined.
const IDLE_S: usize = 75;

/// What an idle node costs: the difference between an idle run of
/// `large` nodes and one of `small` (which carries the process's fixed
/// cost), over the difference in nodes.
struct IdleNode {
    /// Peak RSS (the join burst or the steady state, whichever is higher).
    peak_rss_bytes: f64,
    /// The live heap at the end (the steady state).
    end_heap_bytes: f64,
}

fn idle_node_bytes(bin: &Path, crypto: Crypto, small: usize, large: usize) -> Result<IdleNode> {
    let dir = Path::new("reports/bench/idle");
    std::fs::create_dir_all(dir)?;
    let mut runs = Vec::new();
    for n in [small, large] {
        let name = format!("idle-{n}-{}", crypto.name());
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, idle_scenario(n, crypto))?;
        runs.push(scenario_run(bin, &file, &format!("idle/{name}"))?);
    }
    let per_node = |mb: fn(&ScenarioRun) -> f64| {
        (mb(&runs[1]) - mb(&runs[0])) * 1024.0 * 1024.0 / (large - small) as f64
    };
    let idle = IdleNode {
        peak_rss_bytes: per_node(|r| r.peak_rss_mb),
        end_heap_bytes: per_node(|r| r.end_heap_mb),
    };
    eprintln!(
        "   per idle node ({} crypto): {:.0} bytes of peak RSS, {:.0} bytes of live heap at the end",
        crypto.name(),
        idle.peak_rss_bytes,
        idle.end_heap_bytes
    );
    Ok(idle)
}

#[cfg(test)]
mod tests {
    use super::cap_workloads;

    #[test]
    fn a_shortened_run_keeps_only_the_broadcasts_that_start_in_it() {
        let text = "duration_s = 3600\n\n[[workload]]\nstart_s = 150\ncount = 715 # one every 30 s\ninterval_ms = 30000\n\n[[workload]]\nstart_s = 10\ncount = 3\ninterval_ms = 1000\n\n[measure]\nwindow_s = 20\n";
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        cap_workloads(&mut lines, 3600.0);
        assert_eq!(lines[4], "count = 115", "150 s + 114 x 30 s = 3,570 s");
        assert_eq!(lines[9], "count = 3", "short enough already");
        assert_eq!(lines[13], "window_s = 20");
    }
}
