//! Churn end to end: sessions, graceful leaves and crashes, rejoins with
//! new addresses, arrivals, and what the report says about them.
#![cfg(madsim)]

mod common;

use common::{run, scenario};

const CHURN: &str = r#"
name = "churn"
seed = 5
duration_s = 300

[node.nat]
enabled = false

[join]
interval_ms = 50
contact = "random"

[[groups]]
name = "homes"
count = 150
latency_ms = [5, 40]
jitter_ms = 2
churn = { start_s = 30, session = { dist = "exponential", mean_s = 60 }, offline = { dist = "exponential", mean_s = 30 }, stable_fraction = 0.2, graceful_fraction = 0.5, new_ip_fraction = 0.5 }

[[groups]]
name = "newcomers"
count = 30
latency_ms = [5, 40]
arrivals = { start_s = 60, rate_per_s = 1.0 }

[[workload]]
start_s = 20
count = 55
interval_ms = 5000

[measure]
window_s = 5
series_s = 10
"#;

#[test]
fn churn_is_applied_accounted_and_survived() {
    let r = run(&scenario(CHURN));
    let c = r.churn.as_ref().expect("a churn section");
    // About 120 churning hosts, each a session per ~90 s over 270 s.
    assert!(c.sessions_started > 250, "{c:?}");
    let departures = c.departures_graceful + c.departures_crashed;
    assert!(
        c.departures_graceful > 50 && c.departures_crashed > 50,
        "{c:?}"
    );
    assert!(
        c.rejoins <= departures && c.rejoins > departures / 2,
        "{c:?}"
    );
    assert!(c.new_ips > 0 && c.new_ips <= c.rejoins, "{c:?}");
    // Sessions are first starts of churning hosts plus their rejoins.
    assert_eq!(c.sessions_started, 150 + c.rejoins);
    assert_eq!(c.arrivals, 30, "every newcomer arrives within the run");
    assert_eq!(r.nodes.started, 180);
    // No timeline faults: churn is not counted as one.
    assert_eq!(r.faults_applied.hosts_crashed, 0);

    let ts = r.timeseries.as_ref().expect("a time series");
    assert_eq!(ts.t_s.len(), 30);
    assert_eq!(ts.t_s[0], 10.0);
    // All 150 in by 10 s... (50 ms apart: 7.5 s), then churn takes some out.
    assert_eq!(ts.live[0], 150);
    let min_live = *ts.live[3..].iter().min().unwrap();
    assert!(min_live < 150, "churn takes hosts offline");
    for k in 0..ts.t_s.len() {
        assert!(ts.connected[k] <= ts.live[k] && ts.largest_component[k] <= ts.live[k]);
    }
    // The overlay keeps nearly every live node in one component and the
    // broadcasts reach nearly everyone throughout.
    let last = ts.t_s.len() - 1;
    assert!(
        ts.largest_component[last] as f64 >= 0.95 * ts.live[last] as f64,
        "{ts:?}"
    );
    assert!(
        r.broadcast.reliability.mean > 0.97,
        "{:?}",
        r.broadcast.reliability
    );
    assert!(ts.reliability.iter().flatten().all(|&x| x > 0.8), "{ts:?}");

    let membership = &r.traffic.by_protocol[0];
    assert_eq!(membership.protocol, "membership");
    assert!(membership.datagrams_per_node_hour > 0.0);
    assert!(r.traffic.node_hours > 5.0 && r.traffic.node_hours < 180.0 * 300.0 / 3600.0);
}

/// Half the nodes leave at one instant and never return, gracefully or by
/// crashing: a graceful leave tells the neighbours, so the survivors stop
/// sending to the departed at once and are linked to live peers again
/// sooner.
#[test]
fn graceful_leaves_heal_faster_than_crashes() {
    let text = |graceful: f64| {
        format!(
            r#"
name = "leave"
seed = 9
duration_s = 40

[node.nat]
enabled = false

[join]
interval_ms = 20
contact = "random"

[[groups]]
name = "a"
count = 200
latency_ms = [5, 30]
churn = {{ start_s = 20, session = {{ dist = "fixed", s = 10 }}, stable_fraction = 0.5, graceful_fraction = {graceful} }}

[measure]
series_s = 1
"#
        )
    };
    let graceful = run(&scenario(&text(1.0)));
    let crashed = run(&scenario(&text(0.0)));
    let (g, c) = (
        graceful.timeseries.as_ref().unwrap(),
        crashed.timeseries.as_ref().unwrap(),
    );
    let departed = graceful.churn.as_ref().unwrap().departures_graceful;
    assert_eq!(departed, crashed.churn.as_ref().unwrap().departures_crashed);
    assert!((70..=130).contains(&departed), "{departed} of 200 left");
    // One second after the departures (at 30 s), before failure detection
    // (3 s of silence) could notice a crash.
    let k = g.t_s.iter().position(|&t| t == 31.0).unwrap();
    assert_eq!(g.live[k], c.live[k]);
    assert!(
        g.connected[k] > c.connected[k],
        "graceful {} vs crashed {} connected of {}",
        g.connected[k],
        c.connected[k],
        g.live[k]
    );
    let dead = |r: &grove_sim::report::Report| r.faults_applied.datagrams.dropped_dead_host;
    assert!(
        dead(&graceful) * 2 < dead(&crashed),
        "datagrams to departed hosts: graceful {} vs crashed {}",
        dead(&graceful),
        dead(&crashed)
    );
    // Both heal: every survivor is linked again by the end.
    let last = g.t_s.len() - 1;
    assert_eq!(g.connected[last], g.live[last]);
    assert_eq!(c.connected[last], c.live[last]);
}

/// Timeline faults in the middle of churn: a 95% crash takes hosts out of
/// the churn cycle (they do not come back on their own, only through a
/// `restart`), and a partition splits and heals while sessions go on.
#[test]
fn timeline_faults_work_alongside_churn() {
    let text = r#"
name = "churn-faults"
seed = 8
duration_s = 200

[node.nat]
enabled = false

[join]
interval_ms = 20
contact = "random"

[[groups]]
name = "east"
count = 100
latency_ms = [5, 30]
churn = { start_s = 10, session = { dist = "exponential", mean_s = 40 }, offline = { dist = "fixed", s = 5 }, graceful_fraction = 0.5 }

[[groups]]
name = "west"
count = 100
latency_ms = [5, 30]
churn = { start_s = 10, session = { dist = "exponential", mean_s = 40 }, offline = { dist = "fixed", s = 5 }, graceful_fraction = 0.5 }

[[timeline]]
action = "partition"
at_s = 30
sides = [["east"], ["west"]]

[[timeline]]
action = "heal"
at_s = 50

[[timeline]]
action = "crash"
at_s = 80
fraction = 0.95

[[timeline]]
action = "restart"
at_s = 140
fraction = 1.0

[measure]
series_s = 10
"#;
    let r = run(&scenario(text));
    let ts = r.timeseries.as_ref().unwrap();
    let at = |t: f64| ts.t_s.iter().position(|&x| x == t).unwrap();
    assert_eq!(
        (r.faults_applied.partitions, r.faults_applied.heals),
        (1, 1)
    );
    // Hosts away at the crash (offline for 5 s) come back; the crashed do
    // not, so from 90 s to 140 s only about 5% of hosts run.
    let crashed = r.faults_applied.hosts_crashed;
    assert!((150..=190).contains(&crashed), "{crashed} crashed");
    assert!(ts.live[at(90.0)] <= 40, "{:?}", ts.live);
    assert!(ts.live[at(130.0)] <= 40, "{:?}", ts.live);
    // The restart brings them all back, and churn takes them on again.
    assert_eq!(r.faults_applied.hosts_restarted, crashed);
    assert!(ts.live[at(150.0)] >= 160, "{:?}", ts.live);
    let c = r.churn.as_ref().unwrap();
    assert_eq!(c.sessions_started, 200 + c.rejoins + crashed as u64);
    // Healed and rejoined: one overlay at the end.
    let last = ts.t_s.len() - 1;
    assert!(
        ts.largest_component[last] as f64 >= 0.95 * ts.live[last] as f64,
        "{ts:?}"
    );
}
