//! Attackers that hold keys, end to end: a small world of relays and homes
//! behind NATs against one attacker of each kind (spoofed ids, replays, a
//! handshake flood from forged sources, relay takeover). Nothing gets in:
//! honest broadcasts reach everyone before and during the attack, no
//! honest session follows a replay to an attacker, and the relays compute
//! no more handshakes for forged sources than their cookie threshold
//! allows. And the same seed writes the same report bytes.
#![cfg(madsim)]

mod common;

use common::{outcome, run, runs, scenario};

const HOSTILE: &str = r#"
name = "hostile-small"
seed = 21
duration_s = 40

[node.nat]
relay = { max_circuits = 256, max_circuits_per_peer = 32 }

[node.transport]
handshakes_per_s_before_cookies = 20

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
count = 45
latency_ms = [5, 30]
nat = [
  { kind = "public", fraction = 0.2 },
  { kind = "full-cone", fraction = 0.2 },
  { kind = "port-restricted", fraction = 0.4 },
  { kind = "symmetric", fraction = 0.2 },
]

[[groups]]
name = "spoofer"
count = 1
latency_ms = 10

[[groups]]
name = "replayer"
count = 1
latency_ms = 10

[[groups]]
name = "flooder"
count = 1
latency_ms = 10

[[groups]]
name = "takeover"
count = 1
latency_ms = 10

[[attack]]
kind = "spoof-id"
group = "spoofer"
target = "relays"
start_s = 20
rate_per_s = 30

[[attack]]
kind = "replay"
group = "replayer"
target = "relays"
start_s = 20
rate_per_s = 50

[[attack]]
kind = "handshake-flood"
group = "flooder"
target = "relays"
start_s = 20
rate_per_s = 200

[[attack]]
kind = "relay-takeover"
group = "takeover"
target = "relays"
start_s = 20
rate_per_s = 30

[[workload]]
start_s = 10
count = 40
interval_ms = 500
from = "homes"

[measure]
window_s = 5
"#;

#[test]
fn nothing_gets_in() {
    let r = run(&scenario(HOSTILE));
    let a = r.attacks.as_ref().expect("an attacks section");
    // Every kind was sent, and the Sybils were real peers to the relays.
    for kind in ["spoof-id", "replay", "handshake-flood", "relay-takeover"] {
        assert!(
            a.sent.get(kind).is_some_and(|&n| n > 100),
            "{kind}: {:?}",
            a.sent
        );
    }
    assert!(a.sybils.handshakes_completed > 0, "{:?}", a.sybils);
    // Honest broadcasts: everyone, with the attackers as without them.
    assert_eq!(a.reliability.before, Some(1.0), "{:?}", a.reliability);
    assert!(a.reliability.during.unwrap() >= 0.99, "{:?}", a.reliability);
    // No honest session roamed to an attacker (its traffic would have
    // come to the attacker's address under an index it never chose).
    assert_eq!(
        a.attackers_received.not_ours, 0,
        "{:?}",
        a.attackers_received
    );
    // The forgeries reached the relays and were dropped for what they are.
    for reason in ["malformed", "sender-mismatch", "replay", "need-cookie"] {
        assert!(
            a.drops.get(reason).is_some_and(|&n| n > 0),
            "{reason}: {:?}",
            a.drops
        );
    }
    // The flood (~67 initiations a second per relay) met cookies: the
    // relays computed DH for forged sources within the threshold only.
    let s = &a.spoofed;
    assert!(s.cookie_replies > s.responses, "{s:?}");
    assert!(s.responses <= s.dh_allowance, "{s:?}");
    assert!(s.per_victim_s_max <= 2 * 20, "{s:?}");
    // Every cookie reply on the wire is an initiation refused without a
    // DH (its drop event says so).
    assert!(a.victims_dh.cookie_replies_sent > 0);
    assert!(a.drops["need-cookie"] >= a.victims_dh.cookie_replies_sent);
}

#[test]
fn hostile_runs_are_byte_identical() {
    let reports = runs("hostile", HOSTILE, &[21, 21, 22]);
    assert!(reports[0].len() > 1000);
    assert!(
        reports[0] == reports[1],
        "two runs with seed 21 wrote different reports"
    );
    assert!(
        outcome(&reports[0]) != outcome(&reports[2]),
        "seeds 21 and 22 ran the same"
    );
}
