//! The pub/sub workload in the simulator: byte-identical reports for the
//! same seed (GossipSub with Sybils, scoring on), and what the report's
//! `pubsub` section says of a small attack.
#![cfg(madsim)]

mod common;

const SCENARIO: &str = r#"
name = "pubsub-det"
seed = 5
duration_s = 16

[node.nat]
enabled = false

[node.gossipsub]
enabled = true

[join]
interval_ms = 50
contact = "random"

[[groups]]
name = "pub"
count = 4
latency_ms = [5, 40]
loss = 0.005

[[groups]]
name = "lurk"
count = 14
latency_ms = [5, 40]
loss = 0.005

[[groups]]
name = "syb"
count = 6
latency_ms = [5, 40]
loss = 0.005

[pubsub]
publishers = "pub"
start_s = 4
count = 20
interval_ms = 400
payload_bytes = 1000
window_s = 5

[pubsub.attack]
group = "syb"
from_s = 8
drop_forwards = true
invalid_per_heartbeat = 1
fake_ihave_ids = 4
graft_during_backoff = true
eclipse_host = 4
"#;

#[test]
fn pubsub_runs_are_byte_identical_and_report_the_attack() {
    let reports = common::runs("pubsub-det", SCENARIO, &[5, 5, 6]);
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    assert!(a == b, "two runs with seed 5 wrote different reports");
    let pubsub = |r: &[u8]| common::outcome(r)["pubsub"].clone();
    assert!(
        pubsub(a) != pubsub(c),
        "seeds 5 and 6 gave the same pub/sub section"
    );
    let r: serde_json::Value = serde_json::from_slice(a).unwrap();
    let p = &r["pubsub"];
    let rate = p["honest"]["delivery_rate"].as_f64().unwrap();
    assert!(rate > 0.9, "honest delivery {rate}");
    assert!(p["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        p["control"]["idontwant"].as_u64().unwrap() > 0,
        "1000-byte messages"
    );
    assert!(
        p["rejected"].as_u64().unwrap() > 0,
        "bad signatures are rejected"
    );
    let attack = &p["attack"];
    assert!(attack["attacker_datagrams"]["publish"].as_u64().unwrap() > 0);
    let worst = attack["reported_by_nodes"]["scores_of_attackers"]["min"]
        .as_f64()
        .unwrap();
    assert!(worst < -10.0, "Sybils are scored down: {worst}");
    assert!(r["pubsub"]["via"] == "gossipsub");
}
