//! The attacker against a real victim's sessions, on virtual time (no
//! network: datagrams go straight from one to the other), and the capture
//! ring.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;

use grove_node::message::{self, Message};
use grove_node::transport::session::{self, kind, Dest, Incoming, Sessions, Via};
use grove_node::{Identity, PeerId, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::scenario::AttackKind;

const VICTIM: &str = "198.18.0.1:7000";
const ATTACKER: &str = "198.18.0.9:7000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A victim's sessions and what reached it.
struct Victim {
    id: PeerId,
    config: session::Config,
    sessions: Sessions,
    /// Plaintexts it opened, with the session's peer.
    opened: Vec<(PeerId, Vec<u8>)>,
    drops: Vec<session::Drop>,
    /// Where its answers went, by datagram type.
    answers: Vec<(SocketAddr, u8)>,
}

impl Victim {
    fn new(config: session::Config) -> Self {
        let identity = Identity::from_seed([1; 32]);
        Victim {
            id: identity.peer_id(),
            sessions: Sessions::new(&identity, config.clone(), 1),
            config,
            opened: Vec::new(),
            drops: Vec::new(),
            answers: Vec::new(),
        }
    }
}

fn attacker(
    kind: AttackKind,
    rate_per_s: f64,
    victim: &Victim,
) -> (Attacker, Rc<RefCell<AttackerStats>>) {
    let plan = Plan {
        kind,
        targets: vec![Target {
            host: 0,
            id: victim.id,
            addr: addr(VICTIM),
            reserved: Vec::new(),
        }],
        gap_ns: (1e9 / rate_per_s) as u64,
        next_ns: 0,
        round: 0,
    };
    let honest: Rc<[PeerId]> = vec![victim.id, Identity::from_seed([2; 32]).peer_id()].into();
    let stats = Rc::new(RefCell::new(AttackerStats::default()));
    let a = Attacker::new(
        vec![plan],
        victim.config.clone(),
        honest,
        None,
        ChaCha8Rng::seed_from_u64(9),
        stats.clone(),
    );
    (a, stats)
}

/// Run attacker and victim for `ms` milliseconds of virtual time.
fn run(a: &mut Attacker, v: &mut Victim, ms: u64) {
    let mut plain = Vec::new();
    let mut buf = Vec::new();
    for t in 0..ms {
        let now_ns = t * 1_000_000;
        let now = Time::from_nanos(now_ns);
        a.handle_timeout(now_ns);
        v.sessions.handle_timeout(now);
        while let Some(out) = a.poll_transmit() {
            assert_eq!(out.dst, addr(VICTIM));
            let from = out.spoofed_from.unwrap_or(addr(ATTACKER));
            match v
                .sessions
                .handle(now, Via::Direct(from), &out.bytes, &mut plain)
            {
                Incoming::Data { peer, .. } if !plain.is_empty() => {
                    v.opened.push((peer, plain.clone()))
                }
                Incoming::Dropped(d) => v.drops.push(d),
                _ => {}
            }
        }
        while let Some(t) = v.sessions.poll_transmit(&mut buf) {
            let to = match t.dest {
                Dest::Reply(Via::Direct(to)) => to,
                Dest::Peer { .. } => addr(ATTACKER),
                Dest::Reply(Via::Relayed { .. }) => continue,
            };
            v.answers.push((to, buf[0]));
            if to == addr(ATTACKER) {
                a.handle_datagram(now_ns, addr(VICTIM), &buf);
            }
        }
    }
}

#[test]
fn a_sybil_handshakes_and_its_reserve_opens_under_its_own_id() {
    let mut v = Victim::new(Default::default());
    let (mut a, stats) = attacker(AttackKind::ReserveFlood, 20.0, &v);
    run(&mut a, &mut v, 500);
    let stats = stats.borrow();
    // Ten RESERVEs, each from a fresh Sybil that handshook first.
    assert_eq!(stats.sent[&AttackKind::ReserveFlood], 10);
    assert_eq!(stats.sybils_created, 10);
    assert_eq!(stats.sybils_alive_max, 10);
    assert!(stats.sybil_handshakes >= 10, "{stats:?}");
    let reserves: Vec<_> = v
        .opened
        .iter()
        .map(|(peer, p)| (peer, message::decode(p).unwrap()))
        .filter(|(_, d)| {
            matches!(
                d.message,
                Message::Nat(grove_node::transport::nat::Message::Reserve)
            )
        })
        .collect();
    assert_eq!(reserves.len(), 10);
    let ids: BTreeSet<_> = reserves.iter().map(|(peer, _)| **peer).collect();
    assert_eq!(ids.len(), 10, "one Sybil per RESERVE");
    assert!(reserves.iter().all(|(peer, d)| d.from == **peer));
}

#[test]
fn sybils_alive_at_once_are_bounded() {
    let mut v = Victim::new(Default::default());
    let (mut a, stats) = attacker(AttackKind::ReserveFlood, 100.0, &v);
    run(&mut a, &mut v, 400);
    let stats = stats.borrow();
    assert_eq!(stats.sybils_created, 40);
    assert_eq!(stats.sybils_alive_max, MAX_SYBILS);
}

#[test]
fn spoofed_ids_never_open_as_their_claimed_peer() {
    let mut v = Victim::new(Default::default());
    let (mut a, stats) = attacker(AttackKind::SpoofId, 30.0, &v);
    run(&mut a, &mut v, 1000);
    assert_eq!(stats.borrow().sent[&AttackKind::SpoofId], 30);
    // The old-style plaintexts are not session datagrams; the forged data
    // (no index sniffed here: random ones) finds no session.
    assert_eq!(
        v.drops
            .iter()
            .filter(|d| **d == session::Drop::Malformed)
            .count(),
        10
    );
    assert_eq!(
        v.drops
            .iter()
            .filter(|d| **d == session::Drop::UnknownSession)
            .count(),
        10
    );
    // The sealed ones open, in the Sybil's session, naming someone else:
    // what the transport drops as a sender mismatch.
    let sealed: Vec<_> = v
        .opened
        .iter()
        .map(|(peer, p)| (*peer, message::decode(p).unwrap().from))
        .collect();
    assert_eq!(sealed.len(), 10);
    assert!(sealed.iter().all(|(session, claimed)| session != claimed));
}

#[test]
fn a_spoofed_flood_past_the_threshold_gets_cookies_and_no_dh() {
    let config = session::Config {
        handshakes_per_s_before_cookies: 20,
        ..Default::default()
    };
    let mut v = Victim::new(config);
    let (mut a, stats) = attacker(AttackKind::HandshakeFlood, 200.0, &v);
    run(&mut a, &mut v, 2000);
    let stats = stats.borrow();
    assert_eq!(stats.sent[&AttackKind::HandshakeFlood], 400);
    assert_eq!(stats.flood_identities, FLOOD_INITIATIONS_PER_TARGET as u64);
    // Every answer went to a forged source; 20 a second were computed
    // (responses), the rest refused with cookies.
    assert!(v.answers.iter().all(|(to, _)| is_spoofed(to.ip())));
    let count = |k: u8| v.answers.iter().filter(|(_, t)| *t == k).count();
    assert_eq!(count(kind::RESPONSE), 40);
    assert_eq!(count(kind::COOKIE_REPLY), 360);
    assert_eq!(v.sessions.stats().handshakes_computed, 40);
    assert_eq!(v.sessions.stats().cookies_sent, 360);
}

#[test]
fn data_the_sybils_never_keyed_is_told_from_a_retired_sybils() {
    let mut v = Victim::new(Default::default());
    let (mut a, stats) = attacker(AttackKind::ReserveFlood, 20.0, &v);
    run(&mut a, &mut v, 200);
    let mut forged = vec![kind::DATA, 1, 2, 3, 4];
    forged.extend([0; 40]);
    a.handle_datagram(300_000_000, addr(VICTIM), &forged);
    assert_eq!(stats.borrow().received.not_ours, 1);
    assert_eq!(stats.borrow().received.for_retired, 0);
}

fn capture() -> Capture {
    let to = [addr(VICTIM).ip()].into_iter().collect();
    // Host 0 is a target, host 1 honest, host 2 an attacker.
    Capture::new(2, vec![true, false, false], to, vec![false, false, true])
}

#[test]
fn the_capture_keeps_session_datagrams_of_targets_sampled_and_bounded() {
    let mut c = capture();
    let elsewhere = addr("198.18.0.5:7000");
    let data = [kind::DATA, 0, 0, 0, 0];
    let gap = CAPTURE_GAP_NS;
    c.observe(0, 1, elsewhere, &data, true); // neither from nor to a target
    c.observe(0, 2, addr(VICTIM), &data, true); // from an attacker
    c.observe(0, 1, addr(VICTIM), &[1, 2, 3], true); // not a session datagram
    c.observe(0, 1, addr(VICTIM), &data, false); // lost on the way
    assert!(c.held().is_empty());
    c.observe(0, 1, addr(VICTIM), &data, true);
    c.observe(gap / 2, 0, elsewhere, &data, true); // within the gap
    c.observe(gap, 0, elsewhere, &data, true);
    c.observe(2 * gap, 1, addr(VICTIM), &[kind::INITIATION, 9], true);
    let held: Vec<(u64, u32)> = c.held().iter().map(|c| (c.at_ns, c.src)).collect();
    // The oldest was overwritten.
    assert_eq!(held, [(2 * gap, 1), (gap, 0)]);
}

#[test]
fn replays_are_of_datagrams_their_destination_has_had() {
    let v = Victim::new(Default::default());
    let c = Rc::new(RefCell::new(capture()));
    let plan = Plan {
        kind: AttackKind::Replay,
        targets: vec![Target {
            host: 0,
            id: v.id,
            addr: addr(VICTIM),
            reserved: Vec::new(),
        }],
        gap_ns: 100_000_000,
        next_ns: 0,
        round: 0,
    };
    let stats = Rc::new(RefCell::new(AttackerStats::default()));
    let honest: Rc<[PeerId]> = vec![v.id].into();
    let mut a = Attacker::new(
        vec![plan],
        Default::default(),
        honest,
        Some(c.clone()),
        ChaCha8Rng::seed_from_u64(1),
        stats.clone(),
    );
    c.borrow_mut()
        .observe(0, 1, addr(VICTIM), &[kind::DATA, 7, 7, 7, 7], true);
    a.handle_timeout(REPLAY_AFTER_NS - 1);
    assert!(a.poll_transmit().is_none(), "too fresh to replay");
    a.handle_timeout(REPLAY_AFTER_NS);
    let out = a.poll_transmit().expect("a replay");
    assert_eq!((out.dst, out.spoofed_from), (addr(VICTIM), None));
    assert_eq!(out.bytes, [kind::DATA, 7, 7, 7, 7]);
    assert_eq!(stats.borrow().sent[&AttackKind::Replay], 1);
}
