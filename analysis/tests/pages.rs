//! The charts and pages written from committed fixture reports (a small NAT
//! run with a crash, and a merged two-cell, two-seed failure sweep; made by
//! the simulator from `fixtures/*.toml`): every chart is drawn, the same
//! report gives the same bytes, the page refers to nothing outside itself,
//! and, with `GROVE_CHROMIUM=1`, headless Chromium loads each page with
//! every chart present and no script error. Without that variable the
//! browser half says it is skipped; with it, any setup problem fails.
//!
//! When the report format changes, regenerate the fixtures:
//! `cargo xtask simulate analysis/tests/fixtures/run.toml --out DIR` (copy
//! `DIR/report.json` to `run-report.json`) and `cargo xtask sweep
//! analysis/tests/fixtures/sweep.toml --seeds 2 --out DIR` (copy
//! `DIR/merged.json` to `sweep-merged.json`).

use std::path::{Path, PathBuf};
use std::process::Command;

use grove_analysis::merge::Merged;
use grove_analysis::output;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("grove-pages-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The run fixture with a time series added, as issue 4's reports carry.
fn run_report() -> String {
    let mut v: serde_json::Value = serde_json::from_str(&fixture("run-report.json")).unwrap();
    let t_s: Vec<f64> = (0..=60).map(f64::from).collect();
    let live: Vec<u32> = t_s
        .iter()
        .map(|&t| if t < 40.0 { 166 } else { 133 })
        .collect();
    let connected: Vec<u32> = live.iter().map(|l| l - 3).collect();
    v["timeseries"] = serde_json::json!({ "t_s": t_s, "live": live, "connected": connected });
    serde_json::to_string(&v).unwrap()
}

fn write_run(dir: &Path) {
    output::write_run(dir, &run_report(), Some(&fixture("run.toml"))).unwrap();
}

fn write_sweep(dir: &Path) {
    let merged: Merged = serde_json::from_str(&fixture("sweep-merged.json")).unwrap();
    output::write_sweep(dir, &merged, Some(&fixture("sweep.toml"))).unwrap();
}

const RUN_CHARTS: [&str; 5] = [
    "latency-cdf",
    "rmr-ldh",
    "live-connected",
    "messages-per-node",
    "nat-matrix",
];
const SWEEP_CHARTS: [&str; 2] = ["reliability-vs-failure", "latency-cdf"];

fn files(dir: &Path, charts: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut names = vec!["report.html".to_owned()];
    for c in charts {
        names.push(format!("charts/{c}.svg"));
        names.push(format!("charts/{c}.png"));
    }
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, bytes)
        })
        .collect()
}

#[test]
fn every_chart_is_drawn_the_same_way_twice_and_pages_are_self_contained() {
    for (name, write, charts) in [
        ("run", write_run as fn(&Path), &RUN_CHARTS[..]),
        ("sweep", write_sweep, &SWEEP_CHARTS[..]),
    ] {
        let (a, b) = (temp(&format!("{name}-a")), temp(&format!("{name}-b")));
        write(&a);
        write(&b);
        let (fa, fb) = (files(&a, charts), files(&b, charts));
        for ((n, x), (_, y)) in fa.iter().zip(&fb) {
            assert!(x == y, "{name}: {n} differs between two renderings");
            assert!(x.len() > 1000, "{name}: {n} is nearly empty");
        }
        let html = String::from_utf8(fa[0].1.clone()).unwrap();
        for external in ["http://", "https://", " src=", " href=", "@import", "url("] {
            assert!(
                !html.contains(external),
                "{name}: page contains `{external}`"
            );
        }
        assert_eq!(html.matches("<figure").count(), charts.len(), "{name}");
        assert_eq!(html.matches("<svg").count(), charts.len(), "{name}");
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
}

/// Load `page` in headless Chromium; the DOM after the load event.
fn chromium_dom(page: &Path, profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("GROVE_CHROMIUM=1 but `chromium` does not run (apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is text")
}

#[test]
fn pages_load_in_headless_chromium_with_every_chart() {
    if std::env::var("GROVE_CHROMIUM").as_deref() != Ok("1") {
        eprintln!("skipped: set GROVE_CHROMIUM=1 to load the HTML reports in headless Chromium (needs `chromium`)");
        return;
    }
    for (name, write, charts) in [
        ("run", write_run as fn(&Path), RUN_CHARTS.len()),
        ("sweep", write_sweep, SWEEP_CHARTS.len()),
    ] {
        let dir = temp(&format!("chromium-{name}"));
        write(&dir);
        let dom = chromium_dom(&dir.join("report.html"), &dir.join("profile"));
        assert!(
            dom.contains("data-ready=\"ok\""),
            "{name}: the page did not report every chart drawn without error: {}",
            dom.lines()
                .find(|l| l.contains("<body"))
                .unwrap_or("(no body)")
        );
        assert!(
            dom.contains(&format!("data-charts=\"{charts}\"")),
            "{name}: expected {charts} charts"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
