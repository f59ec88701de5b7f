//! What the end-to-end tests share: a scenario from TOML text, a run of
//! it in this process, and runs of it in their own processes (to compare
//! report bytes). Not every test binary uses every helper.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use grove_sim::report::{Report, ScenarioInfo};
use grove_sim::scenario::{Scenario, Source};
use grove_sim::world::{self, RunInfo};

/// The first cell of the scenario in `text` (which must be valid).
pub fn scenario(text: &str) -> Scenario {
    let source = Source {
        path: "test.toml".into(),
        text: text.into(),
    };
    source.load().expect("valid scenario").remove(0).1
}

/// Run `s` with its own seed.
pub fn run(s: &Scenario) -> Report {
    let info = RunInfo {
        scenario: ScenarioInfo {
            name: s.name.clone(),
            file: "test.toml".into(),
            sha256: String::new(),
            description: String::new(),
            cell: None,
            contrasts: Vec::new(),
        },
        reproduce: String::new(),
    };
    world::run(s, s.seed, info, Box::new(|_| {}))
}

/// Run `scenario` with `seed` in its own `grove-sim` process: the report's
/// bytes.
fn run_process(scenario: &Path, seed: u64, out: &Path) -> Vec<u8> {
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

/// Write `text` as scenario `name` in a fresh directory and run it once
/// per seed in `seeds`, each in its own process: the report bytes.
pub fn runs(name: &str, text: &str, seeds: &[u64]) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("grove-{name}-{}", std::process::id()));
    let scenario = dir.join(format!("{name}.toml"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&scenario, text).unwrap();
    let reports = seeds
        .iter()
        .enumerate()
        .map(|(k, &seed)| run_process(&scenario, seed, &dir.join(k.to_string())))
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    reports
}

/// What a run did: its report (`bytes`) without the two fields that name
/// the seed (`seed`, and the command that reproduces the run), which differ
/// between seeds whatever the run did.
pub fn outcome(bytes: &[u8]) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_slice(bytes).expect("a JSON report");
    let fields = report.as_object_mut().expect("a JSON object");
    assert!(fields.remove("seed").is_some(), "a report names its seed");
    assert!(
        fields.remove("reproduce").is_some(),
        "and how to reproduce it"
    );
    report
}
