//! A sweep run as three shards (one of them located the way a Slurm array
//! task is) and merged gives the same bytes as the sweep run whole. Runs
//! the real `xtask` binary, which builds and runs the simulator.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCENARIO: &str = r#"
name = "shard-test"
seed = 5
duration_s = 20

[join]
interval_ms = 20
contact = "random"

[[groups]]
name = "a"
count = 40
latency_ms = [5, 40]
loss = 0.005

[[workload]]
start_s = 4
count = 10
interval_ms = 300

[[timeline]]
action = "crash"
at_s = 8
fraction = 0.3

[[workload]]
start_s = 11
count = 10
interval_ms = 300

[sweep]
param = "timeline.0.fraction"
values = [0.2, 0.5]

# 32 of 40 survive a crash of 20%, 20 one of 50%.
[[contrasts]]
metric = "nodes.alive_at_end"
cell = 0
minus = 1
min = 12
max = 12
"#;

fn xtask(args: &[&str], dir: &Path, env: &[(&str, &str)]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).arg("--out").arg(dir);
    // Whatever batch engine runs this test must not pick the shard.
    for var in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "GROVE_SHARD_COUNT",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let status = cmd.status().expect("xtask runs");
    assert!(status.success(), "xtask {args:?} failed: {status}");
}

#[test]
fn three_shards_merged_equal_the_whole_sweep() {
    let root: PathBuf = std::env::temp_dir().join(format!("grove-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let scenario = root.join("shard-test.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let s = scenario.to_str().unwrap();
    let sweep = ["sweep", s, "--seeds", "2", "--quiet"];

    xtask(&sweep, &root.join("whole"), &[]);
    let shard =
        |i: &'static str| [&sweep[..], &["--shard-index", i, "--shard-count", "3"]].concat();
    xtask(&shard("0"), &root.join("s0"), &[]);
    xtask(&shard("1"), &root.join("s1"), &[]);
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ];
    xtask(&sweep, &root.join("s2"), &slurm);
    // Idempotent: shard 1 again, into the same place.
    xtask(&shard("1"), &root.join("s1"), &[]);
    let dirs: Vec<String> = ["s2", "s0", "s1"]
        .iter()
        .map(|d| root.join(d).display().to_string())
        .collect();
    let mut merge = vec!["merge"];
    merge.extend(dirs.iter().map(String::as_str));
    xtask(&merge, &root.join("merged"), &[]);

    for file in [
        "merged.json",
        "report.html",
        "charts/reliability-vs-failure.svg",
    ] {
        let whole = std::fs::read(root.join("whole").join(file)).unwrap();
        let merged = std::fs::read(root.join("merged").join(file)).unwrap();
        assert!(
            whole == merged,
            "{file} differs between the whole and the sharded sweep"
        );
    }
    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("merged/merged.json")).unwrap()).unwrap();
    assert_eq!(merged["cells"].as_array().unwrap().len(), 2);
    assert_eq!(merged["seeds"], serde_json::json!([5, 6]));
    // The contrast between the cells, evaluated seed by seed across shards.
    let contrast = &merged["contrasts"][0];
    assert_eq!(contrast["per_seed"], serde_json::json!([12.0, 12.0]));
    assert_eq!(contrast["passed_seeds"], 2);
    assert_eq!(merged["passed"], true);
    let _ = std::fs::remove_dir_all(&root);
}
