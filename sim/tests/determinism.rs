//! Same scenario, same seed, same code: the same report bytes, across two
//! processes; another seed gives another report.
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

fn run(scenario: &Path, seed: u64, out: &Path) -> Vec<u8> {
    let status = Command::new(env!("CARGO_BIN_EXE_grove-sim"))
        .args(["run", "--quiet", "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .arg(scenario)
        .status()
        .expect("grove-sim runs");
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "grove-sim failed: {status}"
    );
    std::fs::read(out.join("report.json")).expect("report written")
}

#[test]
fn same_seed_gives_identical_report_bytes() {
    let dir = std::env::temp_dir().join(format!("grove-determinism-{}", std::process::id()));
    let scenario = dir.join("det.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        &scenario,
        r#"
name = "det"
seed = 11
duration_s = 40

[join]
interval_ms = 15
contact = "random"

[[groups]]
name = "a"
count = 80
latency_ms = [5, 60]
jitter = "exponential"
jitter_ms = 4
loss = 0.01

[[timeline]]
action = "crash"
at_s = 20
fraction = 0.3

[[workload]]
start_s = 8
count = 30
interval_ms = 300
"#,
    )
    .unwrap();
    let a = run(&scenario, 11, &dir.join("a"));
    let b = run(&scenario, 11, &dir.join("b"));
    let c = run(&scenario, 12, &dir.join("c"));
    std::fs::remove_dir_all(&dir).ok();
    assert!(a.len() > 1000);
    assert!(a == b, "two runs with seed 11 wrote different reports");
    assert!(a != c, "seeds 11 and 12 wrote the same report");
}
