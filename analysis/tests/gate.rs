//! The committed gate against the committed baselines: every metric it
//! names exists in its baseline, a baseline compared with itself passes,
//! and the same baseline with a worse number regresses.

use std::path::Path;

use grove_analysis::gate::{self, Direction, Gate, Verdict};
use grove_analysis::merge::lookup;

fn baselines() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/baselines"))
}

#[test]
fn committed_baselines_pass_against_themselves_and_catch_a_regression() {
    let text = std::fs::read_to_string(baselines().join("gate.toml")).unwrap();
    let gate = Gate::parse(&text).unwrap();
    for s in &gate.scenario {
        let path = baselines().join(&s.baseline);
        let base: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let same = gate::compare(&s.metric, &base, &base);
        for r in &same {
            assert_eq!(r.verdict, Verdict::Pass, "{}: {}", s.file, r.metric);
        }
        for (i, m) in s.metric.iter().enumerate() {
            let value = lookup(&base, &m.path).and_then(|v| v.as_f64()).unwrap();
            let step = 2.0 * m.abs.max(m.rel * value.abs()) + 1.0;
            let worse = match m.better {
                Direction::Higher => value - step,
                Direction::Lower | Direction::Equal => value + step,
            };
            let mut regressed = base.clone();
            let mut at = &mut regressed;
            for part in m.path.split('.') {
                at = match part.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[part],
                };
            }
            *at = serde_json::json!(worse);
            let rows = gate::compare(&s.metric, &base, &regressed);
            assert_eq!(
                rows[i].verdict,
                Verdict::Regressed,
                "{}: {}",
                s.file,
                m.path
            );
            assert!(
                gate::table(&s.file, &rows).contains("REGRESSED"),
                "{}",
                m.path
            );
        }
    }
}
