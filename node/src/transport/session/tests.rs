//! Sessions on virtual time: a few [`Sessions`] exchanging datagrams over
//! a tiny network that the tests edit (loss, replay, reorder, roaming).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

use super::*;

/// One-way latency of every datagram.
const HOP: Duration = Duration::from_millis(10);

struct Node {
    s: Sessions,
    id: PeerId,
    addr: SocketAddr,
    /// Non-empty plaintexts delivered, in order.
    got: Vec<(PeerId, Vec<u8>)>,
    /// Every `handle` outcome.
    incoming: Vec<Incoming>,
    events: Vec<Event>,
}

/// A datagram on its way.
#[derive(Clone, Debug)]
struct Flight {
    at: Time,
    from: usize,
    to: usize,
    via: Via,
    bytes: Vec<u8>,
}

struct Net {
    now: Time,
    nodes: Vec<Node>,
    /// In flight, in send order (delivered by time, then order).
    flights: Vec<Flight>,
    /// Nodes that receive nothing (crashed, or behind a broken link).
    deaf: BTreeSet<usize>,
    /// Every datagram sent: (sender, bytes).
    log: Vec<(usize, Vec<u8>)>,
    /// Datagrams to addresses no node has.
    unroutable: usize,
}

fn identity(i: usize) -> Identity {
    Identity::from_seed([i as u8 + 1; 32])
}

fn addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, i as u8 + 1), port))
}

fn config() -> Config {
    Config::default()
}

impl Net {
    fn new(n: usize, config: Config) -> Net {
        Net::seeded(n, config, 0)
    }

    fn seeded(n: usize, config: Config, seed: u64) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let identity = identity(i);
                Node {
                    s: Sessions::new(&identity, config.clone(), seed * 1000 + i as u64),
                    id: identity.peer_id(),
                    addr: addr(i, 7000),
                    got: Vec::new(),
                    incoming: Vec::new(),
                    events: Vec::new(),
                }
            })
            .collect();
        Net {
            now: Time::from_secs(1),
            nodes,
            flights: Vec::new(),
            deaf: BTreeSet::new(),
            log: Vec::new(),
            unroutable: 0,
        }
    }

    fn id(&self, i: usize) -> PeerId {
        self.nodes[i].id
    }

    fn s(&self, i: usize) -> &Sessions {
        &self.nodes[i].s
    }

    fn send(&mut self, from: usize, to: usize, plaintext: &[u8]) {
        self.send_with(from, to, plaintext, true);
    }

    fn send_with(&mut self, from: usize, to: usize, plaintext: &[u8], ack_eliciting: bool) {
        let (now, peer) = (self.now, self.id(to));
        self.nodes[from]
            .s
            .send(now, peer, None, plaintext, ack_eliciting);
        self.collect(from);
    }

    /// Move `i`'s transmits into flight and its events into its record.
    fn collect(&mut self, i: usize) {
        let mut out = Vec::new();
        while let Some(t) = self.nodes[i].s.poll_transmit(&mut out) {
            let to_addr = match t.dest {
                Dest::Peer {
                    path: Some(Via::Direct(a)),
                    ..
                }
                | Dest::Reply(Via::Direct(a)) => a,
                Dest::Peer { peer, path: None } => {
                    self.nodes
                        .iter()
                        .find(|n| n.id == peer)
                        .expect("a known peer")
                        .addr
                }
                other => panic!("the harness routes no relayed datagram: {other:?}"),
            };
            self.log.push((i, out.clone()));
            match self.nodes.iter().position(|n| n.addr == to_addr) {
                Some(to) => self.flights.push(Flight {
                    at: self.now + HOP,
                    from: i,
                    to,
                    via: Via::Direct(self.nodes[i].addr),
                    bytes: out.clone(),
                }),
                None => self.unroutable += 1,
            }
        }
        while let Some(e) = self.nodes[i].s.poll_event() {
            self.nodes[i].events.push(e);
        }
    }

    /// Hand `bytes` to node `to` as if from `via`, now.
    fn inject(&mut self, to: usize, via: Via, bytes: &[u8]) -> Incoming {
        let mut plaintext = Vec::new();
        let now = self.now;
        let node = &mut self.nodes[to];
        let incoming = node.s.handle(now, via, bytes, &mut plaintext);
        if let Incoming::Data { peer, .. } = incoming {
            if !plaintext.is_empty() {
                node.got.push((peer, plaintext));
            }
        } else {
            assert!(plaintext.is_empty(), "no plaintext without data");
        }
        node.incoming.push(incoming);
        self.collect(to);
        incoming
    }

    fn next_wake(&self) -> Option<Time> {
        let flight = self.flights.iter().map(|f| f.at).min();
        let timers = self.nodes.iter().filter_map(|n| n.s.poll_timeout()).min();
        [flight, timers].into_iter().flatten().min()
    }

    /// Advance to the next instant something happens, at most `until`.
    fn step(&mut self, until: Time) -> bool {
        let Some(at) = self.next_wake().filter(|&at| at <= until) else {
            return false;
        };
        self.now = self.now.max(at);
        while let Some(k) = self.flights.iter().position(|f| f.at <= self.now) {
            let f = self.flights.remove(k);
            if !self.deaf.contains(&f.to) {
                self.inject(f.to, f.via, &f.bytes);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .s
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                self.nodes[i].s.handle_timeout(now);
                self.collect(i);
            }
        }
        true
    }

    fn run(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
        self.now = until;
    }

    /// Establish a session between `a` and `b` (`a` initiates).
    fn connect(&mut self, a: usize, b: usize) {
        self.send_with(a, b, b"", false);
        self.run(4 * HOP);
        assert!(self.s(a).is_established(&self.id(b)));
        assert!(self.s(b).is_established(&self.id(a)));
    }

    fn got(&self, i: usize) -> Vec<Vec<u8>> {
        self.nodes[i].got.iter().map(|(_, p)| p.clone()).collect()
    }

    fn dead(&self, i: usize) -> Vec<PeerId> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Dead { peer } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// Take the flights from `from` out of the network.
    fn take_flights(&mut self, from: usize) -> Vec<Flight> {
        let (taken, kept) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.from == from);
        self.flights = kept;
        taken
    }
}

const _: () = {
    const fn send<T: Send>() {}
    send::<Sessions>();
};

/// Everything a datagram must not change, as text.
fn fingerprint(s: &Sessions) -> String {
    let keys = |k: Option<&KeyPair>| {
        k.map(|k| {
            format!(
                "{}>{} c{} {:?} {:?}",
                k.local_index, k.remote_index, k.next_counter, k.window, k.created
            )
        })
    };
    let mut out = String::new();
    for x in s.sessions.iter() {
        let peer = x.peer;
        out += &format!(
            "{peer}: cur {:?} prev {:?} next {:?} hs {:?} q{} ep {:?} act {:?} un {:?} {} ack {:?} sch {:?}\n",
            keys(x.current.as_ref()),
            keys(x.previous.as_deref()),
            keys(x.next.as_ref().map(|n| &n.keys)),
            x.handshake.as_ref().map(|h| (h.local_index, h.sent, h.retry_at)),
            x.queue.len(),
            x.endpoint,
            x.last_active,
            x.unanswered_since,
            x.probe_sent,
            x.ack_due,
            x.scheduled,
        );
    }
    out += &format!(
        "timers {:?} identify {} tx {} ev {}",
        s.timers,
        s.identify.pending(),
        s.transmits.len(),
        s.events.len()
    );
    out
}

fn drops(s: &Stats) -> u64 {
    s.dropped_malformed + s.dropped_auth + s.dropped_replay + s.dropped_unknown + s.dropped_expired
}

#[test]
fn handshake_in_one_round_trip_then_data_both_ways() {
    let mut net = Net::new(2, config());
    let (a, b) = (net.id(0), net.id(1));
    let start = net.now;
    net.send(0, 1, b"hello");
    assert_eq!(net.log.len(), 1, "one initiation");
    assert_eq!(net.log[0].1.len(), wire::INITIATION_LEN);
    net.run(2 * HOP);
    assert!(
        net.s(0).is_established(&b),
        "initiator up after one round trip"
    );
    assert!(
        !net.s(1).is_established(&a),
        "responder waits for confirmation"
    );
    net.run(HOP);
    assert!(net.s(1).is_established(&a));
    assert_eq!(net.got(1), vec![b"hello".to_vec()]);
    assert_eq!(net.now - start, 3 * HOP);
    assert_eq!(net.nodes[0].events, vec![Event::Established { peer: b }]);
    assert_eq!(net.nodes[1].events, vec![Event::Established { peer: a }]);

    net.send(1, 0, b"world");
    net.run(HOP);
    assert_eq!(net.got(0), vec![b"world".to_vec()]);
    for i in 0..2 {
        let st = net.s(i).stats();
        assert_eq!(st.handshakes_completed, 1);
        assert_eq!(drops(&st), 0);
    }
    assert_eq!(net.s(0).stats().handshakes_initiated, 1);
    assert_eq!(net.s(1).stats().handshakes_initiated, 0);
    assert_eq!(net.s(0).stats().handshakes_computed, 2, "write 1, read 2");
    assert_eq!(net.s(1).stats().handshakes_computed, 1, "read 1 + write 2");
    assert_eq!(net.s(0).endpoint(&b), Some(Via::Direct(net.nodes[1].addr)));
    assert_eq!(net.s(1).endpoint(&a), Some(Via::Direct(net.nodes[0].addr)));
}

#[test]
fn the_responder_learns_the_initiators_peer_id_whatever_its_sign_bit() {
    let mut net = Net::new(9, config());
    let signs: BTreeSet<u8> = (1..9).map(|i| net.id(i).as_bytes()[31] >> 7).collect();
    assert_eq!(signs.len(), 2, "both signs among the initiators");
    for i in 1..9 {
        net.send(i, 0, &[i as u8]);
    }
    net.run(5 * HOP);
    for i in 1..9 {
        assert!(net.s(0).is_established(&net.id(i)), "initiator {i}");
    }
    let from: Vec<PeerId> = net.nodes[0].got.iter().map(|(p, _)| *p).collect();
    assert_eq!(from, (1..9).map(|i| net.id(i)).collect::<Vec<_>>());
}

#[test]
fn queued_plaintexts_arrive_in_order_and_the_queue_is_bounded() {
    let mut cfg = config();
    cfg.max_queued_per_peer = 4;
    let mut net = Net::new(2, cfg);
    for i in 0..7u8 {
        net.send(0, 1, &[i]);
    }
    assert_eq!(net.s(0).stats().dropped_send, 3, "the 3 oldest pushed out");
    net.run(5 * HOP);
    assert_eq!(net.got(1), (3..7u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(
        net.s(0).stats().handshakes_initiated,
        1,
        "one handshake for all"
    );
}

#[test]
fn a_lost_initiation_is_sent_again_and_a_peer_never_answering_is_dead() {
    let mut net = Net::new(3, config());
    net.send(0, 1, b"x");
    net.take_flights(0);
    net.run(Duration::from_millis(1100));
    assert!(net.s(0).is_established(&net.id(1)), "the retry got through");
    assert_eq!(net.got(1), vec![b"x".to_vec()]);

    net.deaf.insert(2);
    net.send(0, 2, b"y");
    net.run(Duration::from_millis(2990));
    assert!(net.dead(0).is_empty());
    net.run(Duration::from_millis(20));
    assert_eq!(
        net.dead(0),
        vec![net.id(2)],
        "3 attempts, 1 s apart, then dead"
    );
    assert_eq!(net.s(0).stats().handshakes_initiated, 2);
    assert_eq!(net.s(0).stats().dropped_send, 1, "the queued plaintext");
    assert!(net.s(0).endpoint(&net.id(2)).is_none() && net.s(0).len() == 1);
}

#[test]
fn a_lost_response_gets_the_same_response_again() {
    let mut net = Net::new(2, config());
    net.send(0, 1, b"x");
    net.run(HOP);
    let response = net.take_flights(1).remove(0).bytes;
    net.run(Duration::from_secs(1));
    let again = net
        .log
        .iter()
        .rev()
        .find(|(i, _)| *i == 1)
        .unwrap()
        .1
        .clone();
    assert_eq!(again, response, "the retry got the cached response");
    net.run(2 * HOP);
    assert_eq!(net.got(1), vec![b"x".to_vec()]);
    let st = net.s(1).stats();
    assert_eq!((st.handshakes_completed, st.handshakes_computed), (1, 2));
    assert_eq!(drops(&st), 0);
}

#[test]
fn a_lost_confirmation_makes_the_responder_initiate_after_a_timeout() {
    let mut net = Net::new(2, config());
    let a = net.id(0);
    net.send_with(0, 1, b"", false);
    net.run(2 * HOP);
    net.take_flights(0); // the confirmation
    net.send(1, 0, b"waits");
    assert_eq!(
        net.s(1).stats().handshakes_initiated,
        0,
        "waits for confirmation"
    );
    net.run(Duration::from_millis(990));
    assert!(net.got(0).is_empty());
    net.run(Duration::from_millis(50));
    assert_eq!(net.got(0), vec![b"waits".to_vec()]);
    assert_eq!(net.s(1).stats().handshakes_initiated, 1);
    assert!(net.s(1).is_established(&a));
    net.send(0, 1, b"and back");
    net.run(HOP);
    assert_eq!(net.got(1), vec![b"and back".to_vec()]);
}

#[test]
fn a_send_to_an_id_that_is_no_key_is_dropped_and_counted() {
    let mut net = Net::new(1, config());
    // y = 2 is not the y of any curve point.
    let mut bad = [0u8; 32];
    bad[0] = 2;
    assert!(static_public(&PeerId(bad)).is_none());
    let now = net.now;
    net.nodes[0].s.send(now, PeerId(bad), None, b"x", true);
    assert_eq!(net.s(0).stats().dropped_send, 1);
    assert!(net.s(0).is_empty());
    let mut out = Vec::new();
    assert!(net.nodes[0].s.poll_transmit(&mut out).is_none());
}

#[test]
fn simultaneous_initiations_converge_on_one_handshake() {
    let mut net = Net::new(2, config());
    net.send(0, 1, b"from 0");
    net.send(1, 0, b"from 1");
    net.run(10 * HOP);
    assert_eq!(net.got(0), vec![b"from 1".to_vec()]);
    assert_eq!(net.got(1), vec![b"from 0".to_vec()]);
    for i in 0..2 {
        assert_eq!(net.s(i).stats().handshakes_completed, 1, "node {i}");
        assert_eq!(drops(&net.s(i).stats()), 0, "node {i}");
    }
    let (lo, hi) = if net.id(0) < net.id(1) {
        (0, 1)
    } else {
        (1, 0)
    };
    let current = |i: usize, j: usize| {
        let k = net.s(i).sessions[&net.id(j)]
            .current
            .as_ref()
            .map(|k| k.initiator);
        k.expect("keys")
    };
    assert!(current(lo, hi), "the smaller id's handshake survives");
    assert!(!current(hi, lo));
}

#[test]
fn forged_datagrams_are_dropped_and_change_nothing() {
    let mut net = Net::new(3, config());
    net.connect(0, 1);
    net.send(0, 1, b"ping");
    net.run(HOP); // b owes an ack: there is state to disturb
    let via = Via::Direct(net.nodes[0].addr);
    let before = fingerprint(net.s(1));
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let expect = |net: &mut Net, bytes: &[u8], want: &[Drop]| {
        let got = net.inject(1, via, bytes);
        assert!(
            matches!(got, Incoming::Dropped(d) if want.contains(&d)),
            "{got:?} for {} bytes of type {:?}",
            bytes.len(),
            bytes.first()
        );
        assert_eq!(fingerprint(net.s(1)), before);
    };
    for kind in 0..=255u8 {
        for len in [0, 1, 5, 13, 29, 49, 61, 89, 133, 300] {
            let mut d = vec![0; len];
            rng.fill_bytes(&mut d);
            if let Some(first) = d.first_mut() {
                *first = kind;
            }
            expect(
                &mut net,
                &d,
                &[Drop::Malformed, Drop::BadMac, Drop::UnknownSession],
            );
        }
    }
    // A data datagram with b's index and random ciphertext.
    let index = net.s(1).sessions[&net.id(0)]
        .current
        .as_ref()
        .unwrap()
        .local_index;
    let mut d = vec![0; 60];
    rng.fill_bytes(&mut d);
    d[0] = kind::DATA_ACK_ELICITING;
    d[1..5].copy_from_slice(&index.to_le_bytes());
    d[5..13].copy_from_slice(&1000u64.to_le_bytes());
    expect(&mut net, &d, &[Drop::BadSeal]);

    // An initiation meant for another node (wrong key): bad mac1, and with
    // a mac1 fixed up for b, a handshake that does not authenticate.
    let c = net.id(2);
    net.nodes[0].s.send(net.now, c, None, b"", true);
    let mut out = Vec::new();
    net.nodes[0].s.poll_transmit(&mut out).unwrap();
    expect(&mut net, &out, &[Drop::BadMac]);
    cookie::stamp(&mut out, &net.s(1).mac1_key, None);
    expect(&mut net, &out, &[Drop::BadHandshake]);
    let st = net.s(1).stats();
    assert_eq!(st.handshakes_computed, 2, "1 real handshake + 1 forged");
    assert_eq!(st.opened, 2, "the confirmation and the ping");
}

#[test]
fn replayed_truncated_tampered_and_wrong_session_datagrams_change_nothing() {
    let mut net = Net::new(3, config());
    net.connect(0, 1);
    net.connect(2, 1);
    net.run(Duration::from_secs(1));
    let via = Via::Direct(net.nodes[0].addr);
    net.send(0, 1, b"first");
    let first = net.take_flights(0).remove(0);
    net.send(0, 1, b"second");
    let second = net.take_flights(0).remove(0);

    assert!(matches!(
        net.inject(1, via, &first.bytes),
        Incoming::Data { .. }
    ));
    let before = fingerprint(net.s(1));
    assert_eq!(
        net.inject(1, via, &first.bytes),
        Incoming::Dropped(Drop::Replay)
    );
    assert_eq!(fingerprint(net.s(1)), before);
    assert_eq!(net.s(1).stats().dropped_replay, 1);

    for len in 0..second.bytes.len() {
        let got = net.inject(1, via, &second.bytes[..len]);
        let want = if len < DATA_OVERHEAD {
            Drop::Malformed
        } else {
            Drop::BadSeal
        };
        assert_eq!(got, Incoming::Dropped(want), "truncated to {len}");
        assert_eq!(fingerprint(net.s(1)), before);
    }
    let mut flips: Vec<(usize, u8)> = (0..second.bytes.len()).map(|i| (i, 0x01)).collect();
    flips.push((0, kind::DATA ^ kind::DATA_ACK_ELICITING));
    flips.push((12, 0x80));
    for (i, mask) in flips {
        let mut d = second.bytes.clone();
        d[i] ^= mask;
        let got = net.inject(1, via, &d);
        assert!(
            matches!(
                got,
                Incoming::Dropped(
                    Drop::Malformed | Drop::UnknownSession | Drop::BadSeal | Drop::Replay
                )
            ),
            "byte {i} ^ {mask:#x}: {got:?}"
        );
        assert_eq!(fingerprint(net.s(1)), before, "byte {i}");
    }
    // The index of b's session with node 2.
    let other = net.s(1).sessions[&net.id(2)]
        .current
        .as_ref()
        .unwrap()
        .local_index;
    let mut d = second.bytes.clone();
    d[1..5].copy_from_slice(&other.to_le_bytes());
    assert_eq!(net.inject(1, via, &d), Incoming::Dropped(Drop::BadSeal));
    assert_eq!(fingerprint(net.s(1)), before);

    // The intact datagram still opens: nothing moved the window.
    assert!(matches!(
        net.inject(1, via, &second.bytes),
        Incoming::Data { roamed: false, .. }
    ));
    assert_eq!(net.got(1), vec![b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn reordered_datagrams_open_within_the_window() {
    let mut net = Net::new(2, config());
    net.connect(0, 1);
    for i in 0..130u8 {
        net.send(0, 1, &[i]);
    }
    let mut flights = net.take_flights(0);
    flights.reverse();
    let via = Via::Direct(net.nodes[0].addr);
    let outcomes: Vec<_> = flights
        .iter()
        .map(|f| net.inject(1, via, &f.bytes))
        .collect();
    let opened = outcomes
        .iter()
        .filter(|o| matches!(o, Incoming::Data { .. }))
        .count();
    assert_eq!(
        opened, REORDER_DEPTH as usize,
        "up to 127 behind the newest"
    );
    assert_eq!(net.s(1).stats().dropped_replay, 2);
}

#[test]
fn a_replayed_initiation_does_not_tear_down_a_working_session() {
    let mut cfg = config();
    cfg.rekey_after = Duration::from_secs(10);
    cfg.reject_after = Duration::from_secs(15);
    let mut net = Net::new(2, cfg);
    net.send(0, 1, b"");
    let initiation = net.flights[0].bytes.clone();
    net.run(4 * HOP);
    let via = Via::Direct(net.nodes[0].addr);
    let before = fingerprint(net.s(1));
    assert_eq!(
        net.inject(1, via, &initiation),
        Incoming::Dropped(Drop::ReplayedInitiation)
    );
    assert_eq!(fingerprint(net.s(1)), before);

    // Two rekeys later the initiation is forgotten: it gets a response
    // (to nobody who can use it) and keys that are never confirmed.
    for _ in 0..30 {
        net.send(0, 1, b"tick");
        net.run(Duration::from_secs(1));
    }
    assert_eq!(net.s(1).stats().handshakes_completed, 3);
    let current = fingerprint(net.s(1));
    assert_eq!(net.inject(1, via, &initiation), Incoming::Control);
    assert!(net.s(1).sessions[&net.id(0)].next.is_some());
    net.run(HOP);
    assert_eq!(
        net.nodes[0].incoming.last(),
        Some(&Incoming::Dropped(Drop::UnknownSession))
    );
    assert!(net.s(1).is_established(&net.id(0)));
    let keep = |f: &str| {
        f.lines()
            .next()
            .unwrap()
            .split(" next")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        keep(&fingerprint(net.s(1))),
        keep(&current),
        "current keys untouched"
    );
    net.send(1, 0, b"still here");
    net.run(HOP);
    assert_eq!(net.got(0), vec![b"still here".to_vec()]);
}

#[test]
fn roaming_follows_the_peer_without_a_handshake() {
    let mut net = Net::new(2, config());
    net.connect(0, 1);
    let a = net.id(0);
    net.nodes[0].addr = addr(0, 9999);
    net.send(0, 1, b"from a new port");
    net.run(HOP);
    assert!(matches!(
        net.nodes[1].incoming.last(),
        Some(Incoming::Data { roamed: true, .. })
    ));
    assert_eq!(net.s(1).endpoint(&a), Some(Via::Direct(addr(0, 9999))));
    net.send(1, 0, b"back");
    net.run(HOP);
    assert_eq!(net.got(0), vec![b"back".to_vec()], "the answer follows");
    assert_eq!(net.s(1).stats().handshakes_completed, 1);
    net.send(0, 1, b"again");
    net.run(HOP);
    assert!(matches!(
        net.nodes[1].incoming.last(),
        Some(Incoming::Data { roamed: false, .. })
    ));
}

#[test]
fn a_relayed_datagram_naming_another_source_is_dropped() {
    let mut net = Net::new(3, config());
    net.connect(0, 1);
    net.send(0, 1, b"x");
    let d = net.take_flights(0).remove(0).bytes;
    let (a, c) = (net.id(0), net.id(2));
    let before = fingerprint(net.s(1));
    let wrong = Via::Relayed {
        relay: c,
        source: c,
    };
    assert_eq!(
        net.inject(1, wrong, &d),
        Incoming::Dropped(Drop::WrongSource)
    );
    assert_eq!(fingerprint(net.s(1)), before);
    let right = Via::Relayed {
        relay: c,
        source: a,
    };
    assert_eq!(
        net.inject(1, right, &d),
        Incoming::Data {
            peer: a,
            roamed: true
        }
    );
    assert_eq!(net.s(1).endpoint(&a), Some(right));
}

#[test]
fn rekeying_loses_nothing_in_flight() {
    let mut cfg = config();
    cfg.rekey_after = Duration::from_secs(5);
    cfg.reject_after = Duration::from_secs(8);
    let mut net = Net::new(2, cfg);
    let mut sent = [Vec::new(), Vec::new()];
    for tick in 0..600u32 {
        let (from, to) = if tick % 2 == 0 { (0, 1) } else { (1, 0) };
        let msg = tick.to_le_bytes().to_vec();
        net.send(from, to, &msg);
        sent[to].push(msg);
        net.run(Duration::from_millis(35));
    }
    net.run(Duration::from_secs(1));
    assert_eq!(net.got(0), sent[0]);
    assert_eq!(net.got(1), sent[1]);
    let st = net.s(0).stats();
    assert!(st.handshakes_completed >= 4, "{st:?}");
    for i in 0..2 {
        assert_eq!(
            drops(&net.s(i).stats()),
            0,
            "node {i}: {:?}",
            net.s(i).stats()
        );
        assert!(net.dead(i).is_empty());
    }
    assert_eq!(
        net.s(1).stats().handshakes_initiated,
        0,
        "only the initiator rekeys"
    );
}

#[test]
fn under_load_spoofed_initiations_cost_no_dh_and_a_real_initiator_gets_through() {
    let mut cfg = config();
    cfg.handshakes_per_s_before_cookies = 2;
    let mut net = Net::new(6, cfg);
    let victim = net.id(0);
    // Initiations from nodes 1..=4, replayed from spoofed sources.
    let mut spoofed = Vec::new();
    for i in 1..=4 {
        net.send(i, 0, b"");
        spoofed.extend(net.take_flights(i));
    }
    let mut computed = Vec::new();
    for (k, f) in spoofed.iter().cycle().take(40).enumerate() {
        let src = Via::Direct(addr(100 + k, 1));
        net.inject(0, src, &f.bytes);
        computed.push(net.s(0).stats().handshakes_computed);
    }
    assert_eq!(computed[1], 2);
    assert!(
        computed[2..].iter().all(|&c| c == 2),
        "no DH past the threshold: {computed:?}"
    );
    assert_eq!(net.s(0).stats().cookies_sent, 38);
    assert_eq!(
        net.unroutable,
        2 + 38,
        "responses and cookies went to the spoofed sources"
    );

    // A real initiator, still in the loaded second.
    net.flights.clear();
    net.send(5, 0, b"let me in");
    net.run(HOP);
    assert_eq!(
        net.nodes[0].incoming.last(),
        Some(&Incoming::Dropped(Drop::NeedCookie))
    );
    net.run(4 * HOP);
    assert_eq!(net.got(0), vec![b"let me in".to_vec()]);
    assert!(net.s(5).is_established(&victim));
    assert_eq!(
        net.s(0).stats().handshakes_computed,
        3,
        "one DH, after the cookie"
    );
    assert_eq!(
        net.s(5).stats().handshakes_initiated,
        1,
        "same handshake, with mac2"
    );
    assert!(net.now < Time::from_secs(2), "well before any retry");
}

#[test]
fn identify_echoes_the_nonce_and_ignores_other_replies() {
    let mut net = Net::new(3, config());
    let target = net.nodes[1].addr;
    let now = net.now;
    net.nodes[0].s.identify(now, target);
    net.collect(0);
    let request = net.flights[0].bytes.clone();
    assert_eq!(request.len(), wire::IDENTIFY_LEN);
    net.run(HOP); // the request arrives; the reply is in flight
    let reply = net.flights[0].bytes.clone();
    assert_eq!(reply.len(), request.len(), "no amplification");
    assert_eq!(reply[1..17], request[1..17], "the nonce echoed");

    // The same reply from another address, or with another nonce: ignored.
    let other = Via::Direct(net.nodes[2].addr);
    assert_eq!(
        net.inject(0, other, &reply),
        Incoming::Dropped(Drop::UnknownSession)
    );
    let mut forged = reply.clone();
    forged[1] ^= 1;
    let from_target = Via::Direct(target);
    assert_eq!(
        net.inject(0, from_target, &forged),
        Incoming::Dropped(Drop::UnknownSession)
    );
    assert!(net.nodes[0].events.is_empty());

    net.run(HOP);
    let want = Event::Identified {
        addr: target,
        peer: net.id(1),
    };
    assert_eq!(net.nodes[0].events, vec![want]);
    assert_eq!(
        net.inject(0, from_target, &reply),
        Incoming::Dropped(Drop::UnknownSession)
    );
    assert_eq!(net.s(0).identify.pending(), 0);
    assert_eq!(net.s(1).len(), 0, "the responder keeps nothing");
}

#[test]
fn identify_answers_are_rate_limited_and_requests_retried() {
    let mut net = Net::new(2, config());
    let via = Via::Direct(addr(50, 1));
    let mut request = vec![0; wire::IDENTIFY_LEN];
    request[0] = kind::IDENTIFY_REQUEST;
    for _ in 0..100 {
        net.inject(1, via, &request);
    }
    let st = net.s(1).stats();
    assert_eq!((st.identify_answered, st.identify_refused), (64, 36));
    net.now += Duration::from_millis(500);
    for _ in 0..100 {
        net.inject(1, via, &request);
    }
    assert_eq!(
        net.s(1).stats().identify_answered,
        64 + 32,
        "refilled at 64/s"
    );

    // An unanswered request is sent 3 times, then forgotten.
    let now = net.now;
    net.nodes[0].s.identify(now, addr(60, 1));
    net.collect(0);
    net.run(Duration::from_secs(4));
    assert_eq!(net.unroutable, 3 + 100 + 100 - 36 - 68);
    assert_eq!(net.s(0).identify.pending(), 0);
}

#[test]
fn a_peer_that_stops_answering_is_dead_within_the_liveness_timeout() {
    let mut net = Net::new(2, config());
    net.connect(0, 1);
    net.run(Duration::from_secs(1));
    net.deaf.insert(1);
    let t0 = net.now;
    net.send(0, 1, b"anyone?");
    while net.dead(0).is_empty() && net.now < t0 + Duration::from_secs(5) {
        net.run(Duration::from_millis(1));
    }
    assert_eq!(net.dead(0), vec![net.id(1)]);
    let at = net.now - t0;
    assert!(at <= config().liveness_timeout, "dead after {at:?}");
    assert!(at >= config().liveness_timeout - Duration::from_millis(1));
    // The keys stay (a peer only slow resumes without a handshake) until
    // idle expiry; the death is reported once.
    assert!(net.s(0).is_established(&net.id(1)));
    net.run(Duration::from_secs(5));
    assert_eq!(net.dead(0).len(), 1, "reported once");
    // It answers again: the next send re-handshakes first (the peer may
    // have lost the session), and data flows.
    net.deaf.remove(&1);
    let handshakes = net.s(0).stats().handshakes_completed;
    net.send(0, 1, b"back?");
    net.run(Duration::from_secs(1));
    assert_eq!(net.s(0).stats().handshakes_completed, handshakes + 1);
    assert_eq!(net.dead(0).len(), 1);
}

#[test]
fn one_lost_datagram_does_not_kill_a_link() {
    let mut net = Net::new(2, config());
    net.connect(0, 1);
    net.run(Duration::from_secs(1));
    net.send(0, 1, b"lost");
    net.take_flights(0);
    net.run(Duration::from_secs(3));
    assert!(net.dead(0).is_empty(), "the probe at 500 ms was answered");
    assert!(net.s(0).is_established(&net.id(1)));
    assert_eq!(net.s(1).stats().acks_sent, 1, "the probe's");
}

#[test]
fn an_idle_link_sends_acks_only_when_needed() {
    let mut net = Net::new(2, config());
    net.connect(0, 1);
    net.run(Duration::from_secs(10));
    let quiet = net.log.len();
    net.run(Duration::from_secs(60));
    assert_eq!(net.log.len(), quiet, "nothing to say, nothing sent");

    // Answered within the ack delay: no ack.
    net.send(0, 1, b"question");
    net.run(HOP + Duration::from_millis(50));
    net.send(1, 0, b"answer");
    net.run(Duration::from_secs(5));
    assert_eq!(net.s(1).stats().acks_sent, 0, "the answer was the ack");
    assert_eq!(
        net.s(0).stats().acks_sent,
        0,
        "an answer to a peer heard from moments ago elicits nothing"
    );
    // A one-way stream to a peer that answers with acks only: one ack per
    // half liveness timeout, not one per datagram.
    let acks = net.s(1).stats().acks_sent;
    for _ in 0..40 {
        net.send(0, 1, b"stream");
        net.run(Duration::from_millis(50));
    }
    net.run(Duration::from_secs(1));
    let streamed = net.s(1).stats().acks_sent - acks;
    assert!(
        (3..=5).contains(&streamed),
        "{streamed} acks for 2 s of stream"
    );
    assert!(net.dead(0).is_empty());
    // Not ack-eliciting: no ack.
    let before = net.log.len();
    net.send_with(0, 1, b"fyi", false);
    net.run(Duration::from_secs(5));
    assert_eq!(net.log.len(), before + 1);
    assert!(net.dead(0).is_empty() && net.dead(1).is_empty());
}

#[test]
fn idle_sessions_are_forgotten_and_the_least_recent_evicted() {
    let mut cfg = config();
    cfg.max_sessions = 2;
    let mut net = Net::new(4, cfg);
    net.connect(0, 1);
    net.run(Duration::from_secs(1));
    net.connect(0, 2);
    net.run(Duration::from_secs(1));
    net.connect(0, 3);
    let s = net.s(0);
    assert_eq!(s.len(), 2);
    assert!(!s.sessions.contains(&net.id(1)), "the least recent went");
    let idle = net.s(0).config.idle_timeout;
    net.run(idle - Duration::from_secs(1));
    assert_eq!(net.s(0).len(), 2, "not yet idle for idle_timeout");
    net.run(idle / 4 + Duration::from_secs(2));
    assert_eq!(
        net.s(0).len(),
        0,
        "idle for idle_timeout: forgotten by the next sweep"
    );
    assert!(net.s(0).sessions.is_empty() && net.s(0).timers.is_empty());
    assert_eq!(net.s(0).poll_timeout(), None, "nothing left to wake for");
}

/// The bytes of a run: a handshake, data both ways, a loss, a rekey.
fn scripted_run(crypto: Crypto, seed: u64) -> Vec<(usize, Vec<u8>)> {
    let mut cfg = config();
    cfg.crypto = crypto;
    cfg.rekey_after = Duration::from_secs(3);
    cfg.reject_after = Duration::from_secs(5);
    let mut net = Net::seeded(3, cfg, seed);
    net.send(0, 1, b"one");
    net.send(2, 1, b"two");
    net.run(Duration::from_millis(100));
    for tick in 0..80u32 {
        net.send(
            (tick % 3) as usize,
            ((tick + 1) % 3) as usize,
            &tick.to_le_bytes(),
        );
        if tick == 40 {
            net.take_flights(0);
        }
        net.run(Duration::from_millis(70));
    }
    let (now, to) = (net.now, net.nodes[2].addr);
    net.nodes[0].s.identify(now, to);
    net.collect(0);
    net.run(Duration::from_secs(3));
    assert_eq!(net.s(0).stats().dropped_auth, 0);
    net.log
}

#[test]
fn same_seed_same_bytes_in_both_modes_and_null_sizes_equal_real_sizes() {
    let real = scripted_run(Crypto::Real, 1);
    assert_eq!(real, scripted_run(Crypto::Real, 1));
    assert_ne!(real, scripted_run(Crypto::Real, 2));
    let null = scripted_run(Crypto::Null, 1);
    assert_eq!(null, scripted_run(Crypto::Null, 1));
    let sizes = |log: &[(usize, Vec<u8>)]| {
        log.iter()
            .map(|(i, b)| (*i, b.len(), b[0]))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&real), sizes(&null), "same datagrams, same sizes");
    assert!(real.len() > 100);
}

#[test]
fn null_mode_runs_the_same_protocol() {
    let mut cfg = config();
    cfg.crypto = Crypto::Null;
    let mut net = Net::new(2, cfg);
    net.send(0, 1, b"plain");
    net.run(3 * HOP);
    assert_eq!(net.got(1), vec![b"plain".to_vec()]);
    let data = &net.log.last().unwrap().1;
    assert_eq!(&data[DATA_HEADER_LEN..DATA_HEADER_LEN + 5], b"plain");
    assert_eq!(net.s(0).stats().handshakes_computed, 0);
    assert_eq!(net.s(1).stats().handshakes_computed, 0);
}

#[test]
fn every_bound_holds_under_a_handshake_flood() {
    let mut cfg = config();
    cfg.max_sessions = 4;
    cfg.handshakes_per_s_before_cookies = 1000;
    let mut net = Net::new(11, cfg);
    for i in 1..=10 {
        net.send(i, 0, b"hi");
    }
    net.run(Duration::from_secs(1));
    let s = net.s(0);
    assert_eq!(s.len(), 4);
    for x in s.sessions.iter() {
        for index in x.indices() {
            let found = s.sessions.by_index(index).map(|y| y.peer);
            assert_eq!(found, Some(x.peer), "index {index:#x} leads to its session");
        }
    }
    let slots = s.sessions.slots_in_peer_order();
    assert!(
        slots.iter().all(|&slot| slot < 4),
        "slots reused: {slots:?}"
    );
    assert!(s.timers.len() <= 4);
}

/// Datagrams worth throwing at `handle`: anything, or a session type with
/// a length the parser accepts.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (
        0x10u8..=0x16,
        prop::sample::select(vec![13, 29, 30, 49, 61, 89, 133, 200]),
        prop::collection::vec(any::<u8>(), 200),
    )
        .prop_map(|(kind, len, mut body)| {
            body.truncate(len);
            body[0] = kind;
            body
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..1500), shaped]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_never_panic_nor_make_state(
        datagrams in prop::collection::vec(datagram(), 1..20),
        null in any::<bool>(),
        relayed in any::<bool>(),
    ) {
        let mut cfg = config();
        cfg.handshakes_per_s_before_cookies = 3;
        if null {
            cfg.crypto = Crypto::Null;
        }
        let mut net = Net::new(3, cfg);
        net.connect(0, 1);
        let before = fingerprint(net.s(1));
        let via = if relayed {
            Via::Relayed { relay: net.id(2), source: net.id(0) }
        } else {
            Via::Direct(addr(77, 1))
        };
        for d in &datagrams {
            let got = net.inject(1, via, d);
            prop_assert!(!matches!(got, Incoming::Data { .. }), "{got:?}");
        }
        // Cookie and identify replies may be queued; nothing else changes.
        net.nodes[1].s.transmits.clear();
        let after = fingerprint(net.s(1));
        prop_assert_eq!(after, before);
    }
}

#[test]
#[ignore = "measurement (heap per session: grove-sim session-bench); run with --ignored --nocapture"]
fn size_of_session_state() {
    use std::mem::size_of;
    println!(
        "size_of: Session {} KeyPair {} Unconfirmed {} Handshake {} StatelessTransportState {} Via {}",
        size_of::<Session>(),
        size_of::<KeyPair>(),
        size_of::<Unconfirmed>(),
        size_of::<Handshake>(),
        size_of::<snow::StatelessTransportState>(),
        size_of::<Via>(),
    );
}

/// The per-thread table of converted keys answers as the conversion does,
/// for ids that share a slot and for ids that are no key.
#[test]
fn static_keys_are_cached_without_changing_an_answer() {
    let convert = |peer: &PeerId| {
        ed25519_dalek::VerifyingKey::from_bytes(peer.as_bytes())
            .ok()
            .map(|k| k.to_montgomery().to_bytes())
    };
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let mut ids: Vec<PeerId> = (0..64)
        .map(|_| {
            let mut seed = [0; 32];
            rng.fill_bytes(&mut seed);
            crate::Identity::from_seed(seed).peer_id()
        })
        .collect();
    // Same slot, different ids; and ids that are not points.
    for i in 0..8 {
        let mut id = ids[i].0;
        id[2] ^= 0xff;
        ids.push(PeerId(id));
        ids.push(PeerId([i as u8; 32]));
    }
    ids.push(PeerId([0xff; 32]));
    for round in 0..3 {
        for id in &ids {
            assert_eq!(static_public(id), convert(id), "round {round}: {id:?}");
        }
    }
    assert!(
        ids.iter().any(|id| convert(id).is_none()),
        "some ids are no key"
    );
}

/// X25519 on the Edwards form (or the ladder, on the twist) answers as the
/// Montgomery ladder does: random points (half of them on the twist), the
/// small-order points, and u-coordinates at and past the field's edge.
#[test]
fn x25519_agrees_with_the_montgomery_ladder() {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let ladder = |secret: [u8; 32], u: [u8; 32]| MontgomeryPoint(u).mul_clamped(secret).to_bytes();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(25519);
    let mut points: Vec<[u8; 32]> = Vec::new();
    for _ in 0..200 {
        let mut u = [0; 32];
        rng.fill_bytes(&mut u);
        points.push(u);
    }
    // u = 0, 1, p - 1 (= -1), p, p + 1, 2^255 - 1, and the order-8 points
    // (RFC 7748's test vectors' low-order list).
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let plus = |mut x: [u8; 32], k: u8| {
        let (v, carry) = x[0].overflowing_add(k);
        x[0] = v;
        if carry {
            x[1] = x[1].wrapping_add(1);
        }
        x
    };
    let mut minus_one = p;
    minus_one[0] = 0xec;
    let mut one = [0; 32];
    one[0] = 1;
    let low_order_1 = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let low_order_2 = hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157");
    points.extend([
        [0; 32],
        one,
        minus_one,
        p,
        plus(p, 1),
        [0xff; 32],
        low_order_1,
        low_order_2,
    ]);
    let mut on_curve = 0;
    for (i, u) in points.iter().enumerate() {
        let mut secret = [0; 32];
        rng.fill_bytes(&mut secret);
        let fast = super::handshake::x25519(secret, MontgomeryPoint(*u));
        assert_eq!(fast, ladder(secret, *u), "point {i}: {u:02x?}");
        on_curve += usize::from(MontgomeryPoint(*u).to_edwards(0).is_some());
    }
    assert!(
        (50..150).contains(&on_curve),
        "both paths taken: {on_curve} on the curve"
    );
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A handshake between this resolver and snow's own completes, both ways:
/// the savings change no byte of the protocol.
#[test]
fn handshakes_interoperate_with_snows_own_primitives() {
    let params: snow::params::NoiseParams = super::handshake::PROTOCOL.parse().unwrap();
    let keys = |seed: u8| {
        let identity = crate::Identity::from_seed([seed; 32]);
        let secret = static_secret(&identity);
        let public = static_public(&identity.peer_id()).unwrap();
        (secret, public)
    };
    let (a_secret, a_public) = keys(1);
    let (b_secret, b_public) = keys(2);
    for ours_initiates in [true, false] {
        let ours = |secret: &[u8; 32], public: &[u8; 32], remote: Option<&[u8; 32]>| {
            super::handshake::test_builder(secret, public, remote, [9; 32])
        };
        let theirs = |secret: &[u8; 32], remote: Option<&[u8; 32]>| {
            let b = snow::Builder::new(params.clone()).local_private_key(secret);
            match remote {
                Some(r) => b.remote_public_key(r).build_initiator().unwrap(),
                None => b.build_responder().unwrap(),
            }
        };
        let (mut init, mut resp) = if ours_initiates {
            (
                ours(&a_secret, &a_public, Some(&b_public)),
                theirs(&b_secret, None),
            )
        } else {
            (
                theirs(&a_secret, Some(&b_public)),
                ours(&b_secret, &b_public, None),
            )
        };
        let mut m1 = [0; 256];
        let mut m2 = [0; 256];
        let mut scratch = [0; 256];
        let n1 = init.write_message(b"hello", &mut m1).unwrap();
        let r1 = resp.read_message(&m1[..n1], &mut scratch).unwrap();
        assert_eq!(&scratch[..r1], b"hello");
        assert_eq!(resp.get_remote_static().unwrap(), a_public);
        let n2 = resp.write_message(b"back", &mut m2).unwrap();
        let r2 = init.read_message(&m2[..n2], &mut scratch).unwrap();
        assert_eq!(&scratch[..r2], b"back");
        assert_eq!(init.get_handshake_hash(), resp.get_handshake_hash());
    }
}
