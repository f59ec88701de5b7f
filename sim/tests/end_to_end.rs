//! The simulator end to end on small scenarios: the real node code on
//! virtual hosts, faults from the timeline, and the report's numbers.
#![cfg(madsim)]

mod common;

use common::{run, scenario};

const BASE: &str = r#"
name = "e2e"
seed = 3
duration_s = 60

[join]
interval_ms = 20

[[groups]]
name = "a"
count = 60
latency_ms = [5, 30]
jitter_ms = 2
loss = 0.005

[[workload]]
start_s = 10
count = 20
interval_ms = 500

[[timeline]]
action = "crash"
at_s = 25
fraction = 0.5

[[workload]]
start_s = 35
count = 20
interval_ms = 500
"#;

#[test]
fn broadcasts_reach_every_live_node_before_and_after_a_crash() {
    let r = run(&scenario(BASE));
    assert_eq!(r.nodes.total, 60);
    assert_eq!(r.nodes.alive_at_end, 30);
    assert_eq!(r.faults_applied.hosts_crashed, 30);
    assert_eq!(r.phases.len(), 2);
    let (before, after) = (&r.phases[0].broadcast, &r.phases[1].broadcast);
    assert_eq!((before.count, after.count), (20, 20));
    assert!(before.reliability.mean >= 0.99, "{:?}", before.reliability);
    assert!(after.reliability.mean >= 0.95, "{:?}", after.reliability);
    // Latency is at least one hop of two access links (>= 10 ms) and the
    // overlay heals to one component with symmetric views.
    assert!(before.latency_ms.p50 >= 10.0 && before.latency_ms.p99 < 5_000.0);
    assert_eq!(r.overlay.components, 1);
    assert!(r.overlay.symmetry > 0.95);
    assert!(r.faults_applied.datagrams.dropped_dead_host > 0);
    assert!(r.faults_applied.datagrams.lost > 0);
    // Plumtree: the tree carries most payload, so redundancy stays well
    // below flooding's (degree - 1 = 4).
    assert!(before.rmr.mean < 2.0, "{:?}", before.rmr);
}

#[test]
fn a_partition_stops_delivery_across_it_and_healing_restores_it() {
    let text = r#"
name = "split"
seed = 5
duration_s = 70

# All hosts public, as in the papers. (With NAT traversal on, some seeds
# leave both halves with full active views after the heal, and HyParView
# has no way to merge two full halves: see the README's open problems.)
[node.nat]
enabled = false

[join]
interval_ms = 20

[[groups]]
name = "left"
count = 30
latency_ms = 10

[[groups]]
name = "right"
count = 30
latency_ms = 10

[[timeline]]
action = "partition"
at_s = 20
sides = [["left"], ["right"]]

[[timeline]]
action = "heal"
at_s = 32

[[workload]]
start_s = 24
count = 4
interval_ms = 1000
from = "left"

[[workload]]
start_s = 55
count = 4
interval_ms = 1000
from = "left"
"#;
    let r = run(&scenario(text));
    let split = &r.phases[1].broadcast;
    let healed = &r.phases[2].broadcast;
    // During the split only the left half (30 of 60) can deliver.
    assert!(split.reliability.mean <= 0.55, "{:?}", split.reliability);
    assert!(r.faults_applied.datagrams.dropped_partition > 0);
    assert!(healed.reliability.mean >= 0.99, "{:?}", healed.reliability);
}

#[test]
fn restarted_hosts_rejoin_and_deliver() {
    let text = BASE.replace(
        "[[workload]]\nstart_s = 35",
        "[[timeline]]\naction = \"restart\"\nat_s = 28\nfraction = 1.0\n\n[[workload]]\nstart_s = 35",
    );
    let r = run(&scenario(&text));
    assert_eq!(r.faults_applied.hosts_restarted, 30);
    assert_eq!(r.nodes.alive_at_end, 60);
    let last = r.phases.last().unwrap();
    assert!(
        last.broadcast.reliability.mean >= 0.95,
        "{:?}",
        last.broadcast.reliability
    );
}

#[test]
fn checks_are_evaluated_against_the_report() {
    let text = format!(
        "{BASE}\n[[checks]]\nmetric = \"broadcast.reliability.mean\"\nmin = 0.5\n\n[[checks]]\nmetric = \"broadcast.ldh.max\"\nmax = 1\n\n[[checks]]\nmetric = \"no.such.metric\"\nmin = 0\n"
    );
    let r = run(&scenario(&text));
    assert!(r.checks[0].passed);
    assert!(
        !r.checks[1].passed,
        "a 60-node overlay has trees deeper than 1 hop"
    );
    assert!(!r.checks[2].passed && r.checks[2].error.is_some());
    assert!(!r.passed);
}

#[test]
fn a_flash_crowd_through_random_contacts_forms_one_overlay() {
    // 400 nodes start 1 ms apart, each joining through a random running
    // node, most of which are still joining themselves.
    let text = r#"
name = "crowd"
seed = 9
duration_s = 30

[join]
interval_ms = 1
contact = "random"

[[groups]]
name = "a"
count = 400
latency_ms = [10, 40]
loss = 0.005

[[workload]]
start_s = 20
count = 5
interval_ms = 1000
"#;
    let r = run(&scenario(text));
    assert_eq!(r.overlay.components, 1, "{:?}", r.overlay);
    assert_eq!(r.overlay.isolated, 0);
    assert!(
        r.broadcast.reliability.min >= 0.99,
        "{:?}",
        r.broadcast.reliability
    );
}
