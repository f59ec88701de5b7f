//! Same scenario, same seed, same code: the same report bytes, across two
//! processes; another seed gives another run (a report that differs in more
//! than the seed it names).
#![cfg(madsim)]

mod common;

use common::{outcome, runs};

#[test]
fn same_seed_gives_identical_report_bytes() {
    let reports = runs(
        "det",
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
        &[11, 11, 12],
    );
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    assert!(a.len() > 1000);
    assert!(a == b, "two runs with seed 11 wrote different reports");
    assert!(
        outcome(a) != outcome(c),
        "seeds 11 and 12 ran the same (their reports differ only in the seed)"
    );
}

/// The same with NAT traversal at work: relays, AutoNAT, hole punching,
/// circuits that stay relayed, and the matrix's connection attempts.
#[test]
fn nat_traversal_runs_are_byte_identical_too() {
    let reports = runs(
        "det-nat",
        r#"
name = "det-nat"
seed = 3
duration_s = 40

[node.nat]
relay = { max_circuits = 256, max_circuits_per_peer = 32 }

[join]
interval_ms = 20
contact = "random-public"
contact_group = "relays"

[[groups]]
name = "relays"
count = 3
latency_ms = [5, 15]

[[groups]]
name = "homes"
count = 60
latency_ms = [5, 40]
jitter = "exponential"
jitter_ms = 3
loss = 0.005
nat = [
  { kind = "port-restricted", fraction = 0.5 },
  { kind = "symmetric", fraction = 0.2 },
  { kind = "full-cone", fraction = 0.2, port_mapping = true },
]

[pairs]
at_s = 25
per_cell = 3
group = "homes"

[[workload]]
start_s = 20
count = 10
interval_ms = 500
"#,
        &[3, 3, 4],
    );
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    let report: serde_json::Value = serde_json::from_slice(a).expect("a JSON report");
    let nat = &report["nat"];
    assert!(nat["holepunch"]["succeeded"].as_u64() > Some(0), "{nat}");
    assert!(nat["relay"]["circuits"].as_u64() > Some(0), "{nat}");
    assert!(a == b, "same seed, different report bytes");
    assert!(outcome(a) != outcome(c), "seeds 3 and 4 ran the same");
}

/// The same under churn: sessions, graceful leaves, crashes, rejoins with
/// new addresses (public hosts' own and NAT routers'), and arrivals.
#[test]
fn churn_runs_are_byte_identical_too() {
    let reports = runs(
        "det-churn",
        r#"
name = "det-churn"
seed = 4
duration_s = 120

[join]
interval_ms = 20
contact = "random-public"
contact_group = "relays"

[[groups]]
name = "relays"
count = 3
latency_ms = [5, 15]

[[groups]]
name = "homes"
count = 60
latency_ms = [5, 40]
jitter_ms = 3
loss = 0.005
nat = [{ kind = "port-restricted", fraction = 0.5 }]
churn = { start_s = 20, session = { dist = "log-normal", median_s = 30, sigma = 1.0 }, offline = { dist = "weibull", shape = 0.7, scale_s = 15 }, stable_fraction = 0.1, graceful_fraction = 0.5, new_ip_fraction = 0.5 }

[[groups]]
name = "new"
count = 10
latency_ms = [5, 40]
arrivals = { start_s = 30, rate_per_s = 0.5 }

[[workload]]
start_s = 10
count = 20
interval_ms = 5000

[measure]
series_s = 5
"#,
        &[4, 4, 5],
    );
    let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
    let report: serde_json::Value = serde_json::from_slice(a).expect("a JSON report");
    let churn = &report["churn"];
    assert!(churn["rejoins"].as_u64() > Some(10), "{churn}");
    assert!(churn["new_ips"].as_u64() > Some(0), "{churn}");
    assert!(a == b, "same seed, different report bytes");
    assert!(outcome(a) != outcome(c), "seeds 4 and 5 ran the same");
}

/// Both crypto modes: each one's report is byte-identical across two
/// processes, and they differ only in the mode they name (null crypto
/// keeps every datagram, size and round trip).
#[test]
fn real_and_null_crypto_runs_are_byte_identical_too() {
    let scenario = |crypto: &str| {
        format!(
            r#"
name = "det-crypto"
seed = 5
duration_s = 30

[node.nat]
enabled = false

[node.transport]
crypto = "{crypto}"

[join]
interval_ms = 20
contact = "random"

[[groups]]
name = "a"
count = 40
latency_ms = [5, 40]
jitter = "exponential"
jitter_ms = 3
loss = 0.01

[[timeline]]
action = "crash"
at_s = 18
fraction = 0.25

[[workload]]
start_s = 8
count = 20
interval_ms = 500
"#
        )
    };
    let mut transport = Vec::new();
    for crypto in ["real", "null"] {
        let reports = runs(&format!("det-{crypto}"), &scenario(crypto), &[5, 5, 6]);
        let (a, b, c) = (&reports[0], &reports[1], &reports[2]);
        assert!(a == b, "{crypto}: same seed, different report bytes");
        assert!(
            outcome(a) != outcome(c),
            "{crypto}: seeds 5 and 6 ran the same"
        );
        let mut report: serde_json::Value = serde_json::from_slice(a).expect("a JSON report");
        let t = &mut report["transport"];
        assert_eq!(t["crypto"], crypto);
        assert!(t["initiations"].as_u64() > Some(40), "{t}");
        assert!(t["acks"].as_u64() > Some(0), "{t}");
        t["crypto"] = serde_json::Value::Null;
        transport.push((report["transport"].clone(), report["traffic"].clone()));
    }
    assert_eq!(
        transport[0], transport[1],
        "the modes sent different datagrams"
    );
}
