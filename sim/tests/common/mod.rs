//! What the end-to-end tests share: a scenario from TOML text, and a run
//! of it in this process.

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
        },
        reproduce: String::new(),
    };
    world::run(s, s.seed, info, Box::new(|_| {}))
}
