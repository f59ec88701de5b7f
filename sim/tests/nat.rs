//! NAT boxes in the simulated world, end to end: hosts behind NATs built
//! from a group's NAT mix, the report's NAT counters and per-kind rows, and
//! `change-ip`. Node-side NAT traversal is switched off (`[node.nat]
//! enabled = false`): these runs check the network and the world, not the
//! node's traversal.
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

mod common;

use common::{run, scenario};
use grove_sim::report::Report;

/// A public first node and 60 homes behind `nat`.
fn homes(nat: &str) -> String {
    format!(
        r#"
name = "nat"
seed = 3
duration_s = 60

[node.nat]
enabled = false

[join]
interval_ms = 20

[[groups]]
name = "seed"
count = 1
latency_ms = 10

[[groups]]
name = "homes"
count = 60
latency_ms = [5, 30]
nat = {nat}

[[workload]]
start_s = 20
count = 20
interval_ms = 500
"#
    )
}

fn kinds(r: &Report) -> Vec<(&str, usize)> {
    r.nat_types
        .iter()
        .map(|t| (t.label.as_str(), t.hosts))
        .collect()
}

#[test]
fn full_cone_homes_behind_a_public_seed_join_and_deliver() {
    let r = run(&scenario(&homes(
        r#"[{ kind = "full-cone", fraction = 1.0 }]"#,
    )));
    assert_eq!(kinds(&r), [("full-cone", 60), ("public", 1)]);
    let nat = &r.network.nat;
    assert!(nat.mappings_created >= 60, "{nat:?}");
    assert!(
        nat.translations_out > 0 && nat.translations_in > 0,
        "{nat:?}"
    );
    // Endpoint-independent filtering refuses nothing.
    assert_eq!(nat.filtered, 0);
    assert_eq!(r.overlay.components, 1, "{:?}", r.overlay);
    assert!(
        r.broadcast.reliability.mean >= 0.95,
        "{:?}",
        r.broadcast.reliability
    );
}

#[test]
fn port_restricted_homes_see_filtered_datagrams() {
    let r = run(&scenario(&homes(
        r#"[{ kind = "port-restricted", fraction = 1.0 }]"#,
    )));
    assert_eq!(kinds(&r), [("port-restricted", 60), ("public", 1)]);
    assert!(r.network.nat.filtered > 0, "{:?}", r.network.nat);
    assert!(r.faults_applied.datagrams.dropped_filtered >= r.network.nat.filtered);
    assert_eq!(r.nodes.started, 61);
}

const MIX: &str = r#"[
    { kind = "port-restricted", fraction = 0.4 },
    { kind = "port-restricted", fraction = 0.1, port_mapping = true, label = "port-mapped" },
    { kind = "symmetric", fraction = 0.2, cgnat = true },
    { kind = "blocked", fraction = 0.1 },
    { kind = "public", fraction = 0.1 },
]"#;

fn mix() -> String {
    format!(
        "{}\n[[timeline]]\naction = \"change-ip\"\nat_s = 40\nfraction = 0.5\ngroup = \"homes\"\n",
        homes(MIX).replace(
            "interval_ms = 20",
            "interval_ms = 20\ncontact = \"random-public\""
        )
    )
}

#[test]
fn a_nat_mix_gets_exact_counts_cgnat_and_ip_changes() {
    let r = run(&scenario(&mix()));
    // round(fraction x 60) hosts per kind, the rest (and the seed) public.
    assert_eq!(
        kinds(&r),
        [
            ("blocked", 6),
            ("port-mapped", 6),
            ("port-restricted", 24),
            ("public", 13),
            ("symmetric+cgnat", 12)
        ]
    );
    // Half of the 48 homes behind a NAT got a new address.
    assert_eq!(r.faults_applied.ip_changes, 24);
    let nat = &r.network.nat;
    assert_eq!(nat.ip_changes, 24);
    assert!(nat.mappings_lost > 0, "{nat:?}");
    // Blocked homes cannot even reach the seed.
    assert!(nat.blocked > 0, "{nat:?}");
    let blocked = &r.nat_types[0];
    assert_eq!(blocked.isolated_at_end, blocked.alive_at_end);
}

#[test]
fn blocked_homes_reach_fallback_hosts_only() {
    let text = homes(r#"[{ kind = "blocked", fraction = 1.0 }]"#).replace(
        "count = 1\nlatency_ms = 10",
        "count = 1\nlatency_ms = 10\nfallback_reachable = true",
    );
    let r = run(&scenario(&text));
    let nat = &r.network.nat;
    // Every home's join reached the seed through its NAT.
    assert!(nat.mappings_created >= 60, "{nat:?}");
    assert!(nat.translations_in > 0, "{nat:?}");
    // Between homes, UDP stays blocked.
    assert!(nat.blocked > 0, "{nat:?}");
}

#[test]
fn nat_runs_are_reproducible_across_processes() {
    let dir = std::env::temp_dir().join(format!("grove-nat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mix.toml");
    std::fs::write(&file, mix()).unwrap();
    let report = |out: &Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_grove-sim"))
            .args(["run", "--quiet", "--out"])
            .arg(out)
            .arg(&file)
            .status()
            .expect("grove-sim runs");
        assert!(status.code().is_some_and(|c| c <= 1), "{status}");
        std::fs::read(out.join("report.json")).expect("report written")
    };
    let (a, b) = (report(&dir.join("a")), report(&dir.join("b")));
    std::fs::remove_dir_all(&dir).ok();
    assert!(a == b, "same seed, different report bytes");
}
