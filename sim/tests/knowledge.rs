//! The knowledge commons in the simulator: a small partition scenario
//! converges with no lost write, deltas cost less than snapshots would, and
//! two runs with one seed, in two processes, write the same report bytes;
//! writers that crash with edits no other node has bring them back from
//! their own store.
#![cfg(madsim)]

mod common;

const SCENARIO: &str = r#"
name = "knowledge-tiny"
seed = 3
duration_s = 60

[node.nat]
enabled = false

[join]
interval_ms = 50
contact = "random"

[[groups]]
name = "west"
count = 12
latency_ms = [5, 40]
loss = 0.01

[[groups]]
name = "east"
count = 12
latency_ms = [10, 60]
loss = 0.01

[knowledge]
topics = ["notes"]
start_s = 5
end_s = 40
interval_s = 8

[[timeline]]
action = "partition"
at_s = 15
sides = [["west"], ["east"]]

[[timeline]]
action = "heal"
at_s = 40

[[checks]]
metric = "knowledge.converged"
min = 1

[[checks]]
metric = "knowledge.writes_lost"
max = 0
"#;

#[test]
fn a_partitioned_commons_converges_with_no_lost_write_and_runs_are_byte_identical() {
    let reports = common::runs("knowledge-tiny", SCENARIO, &[3, 3, 4]);
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    assert!(a == b, "two runs with seed 3 wrote different reports");
    let knowledge = |r: &[u8]| common::outcome(r)["knowledge"].clone();
    assert!(
        knowledge(a) != knowledge(c),
        "seeds 3 and 4 gave the same knowledge section"
    );
    let report: serde_json::Value = serde_json::from_slice(a).unwrap();
    let k = &report["knowledge"];
    assert_eq!(k["converged"], true, "{k}");
    assert_eq!(k["writes_lost"], 0, "{k}");
    assert_eq!(k["distinct_states"], 1, "{k}");
    let issued = k["writes_issued"].as_u64().unwrap();
    assert!(issued >= 24 * 3, "{issued} writes");
    // Every write is answered; only a tree move under the moved node's own
    // descendant may be refused.
    let acked = k["writes_acked"].as_u64().unwrap();
    let rejected = k["writes_rejected"].as_u64().unwrap();
    assert_eq!(acked + rejected, issued, "{k}");
    assert!(rejected * 10 < issued, "{k}");
    assert!(k["convergence_ms"].as_f64().is_some(), "{k}");
    let delta = k["bytes_delta"].as_u64().unwrap();
    let snapshots = k["bytes_snapshot_equivalent"].as_u64().unwrap();
    assert!(delta > 0 && delta < snapshots, "{k}");
    assert_eq!(report["passed"], true);
}

/// Three writers on an island: cut off from the rest at 10 s, they keep
/// writing, and all crash at 30 s. Their edits of 10-30 s are then held by
/// their stores only (the observer keeps no copy). Cut at `RESTART` to run
/// without the restart.
const ISLAND: &str = r#"
name = "knowledge-island"
seed = 5
duration_s = 90

[node.nat]
enabled = false

[node.knowledge]
push_interval = "500ms"

[join]
interval_ms = 50
contact = "random"

[[groups]]
name = "island"
count = 3
latency_ms = [5, 20]

[[groups]]
name = "mainland"
count = 12
latency_ms = [5, 20]

[knowledge]
topics = ["notes"]
start_s = 5
end_s = 40
interval_s = 4

[[timeline]]
action = "partition"
at_s = 10
sides = [["island"], ["mainland"]]

[[timeline]]
action = "crash"
at_s = 30
fraction = 1.0
group = "island"

[[timeline]]
action = "heal"
at_s = 32

# RESTART
[[timeline]]
action = "restart"
at_s = 45
group = "island"
"#;

#[test]
fn crashed_writers_bring_back_their_acknowledged_edits_from_their_store() {
    let k = |text: &str| {
        let r = common::run(&common::scenario(text));
        serde_json::to_value(r.knowledge.expect("a knowledge section")).unwrap()
    };
    // Without the restart: the island's edits of 10-30 s are acknowledged,
    // held by no live node, and counted as offline, not lost.
    let away = k(ISLAND.split("# RESTART").next().unwrap());
    let offline = away["writes_offline"].as_u64().unwrap();
    assert!(offline >= 6, "the island wrote while cut off: {away}");
    assert_eq!(away["writes_lost"], 0, "{away}");
    // With it: each writer's node restores its edits from its store and
    // the commons spreads them to every live node. A driver that did not
    // make a commit durable before acknowledging it would leave these
    // edits on no node while their writers are live: lost.
    let back = k(ISLAND);
    assert_eq!(back["writes_offline"], 0, "{back}");
    assert_eq!(back["writes_lost"], 0, "{back}");
    assert_eq!(back["converged"], true, "{back}");
    assert_eq!(back["live_nodes"], 15, "{back}");
    assert_eq!(back["writes_acked"], away["writes_acked"], "{back}");
}
