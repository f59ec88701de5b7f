//! GossipSub on virtual time: cores exchange messages with 10 ms latency;
//! time jumps to the next arrival or heartbeat.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::*;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
}

fn identity(i: usize) -> Identity {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_seed(seed)
}

fn topic() -> Topic {
    Topic::new("discoveries")
}

fn enabled() -> Config {
    Config {
        enabled: true,
        ..Config::default()
    }
}

struct Net {
    now: Time,
    nodes: Vec<GossipSub>,
    peers: Vec<Peer>,
    /// Routes by id, as the transport does.
    index: BTreeMap<PeerId, usize>,
    in_flight: BTreeMap<(Time, u64), (usize, usize, Message)>,
    seq: u64,
    events: Vec<(usize, Event)>,
    sent: Vec<(usize, usize, Message)>,
}

impl Net {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Net {
        Net::with_seed(n, 0, config)
    }

    /// As [`Net::new`], with node `i`'s RNG seeded from `seed` and `i`.
    fn with_seed(n: usize, seed: u64, config: impl Fn(usize) -> Config) -> Net {
        let mut nodes = Vec::new();
        let mut peers = Vec::new();
        let mut index = BTreeMap::new();
        for i in 0..n {
            let id = identity(i);
            peers.push(Peer::new(id.peer_id(), addr(i)));
            index.insert(id.peer_id(), i);
            nodes.push(GossipSub::new(
                &id,
                config(i),
                ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64),
            ));
        }
        Net {
            now: Time::ZERO,
            nodes,
            peers,
            index,
            in_flight: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Every node subscribes and meets `k` random others.
    fn join(&mut self, k: usize) {
        let n = self.nodes.len();
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        for i in 0..n {
            self.nodes[i].subscribe(self.now, topic());
            self.drain(i);
        }
        for i in 0..n {
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.shuffle(&mut rng);
            for &j in others.iter().take(k) {
                let p = self.peers[j];
                self.nodes[i].handle_neighbor_up(self.now, p);
                self.drain(i);
            }
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].poll_output() {
            match o {
                Output::Send { to, message } => {
                    let Some(&j) = self.index.get(&to) else {
                        continue;
                    };
                    self.seq += 1;
                    self.sent.push((i, j, message.clone()));
                    self.in_flight.insert(
                        (self.now + Duration::from_millis(10), self.seq),
                        (i, j, message),
                    );
                }
                Output::Event(e) => self.events.push((i, e)),
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_msg = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self.nodes.iter().filter_map(GossipSub::poll_timeout).min();
            let Some(next) = [next_msg, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_msg == Some(next) {
                let (_, (from, to, m)) = self.in_flight.pop_first().unwrap();
                let p = self.peers[from];
                self.nodes[to].handle_message(next, p, m);
                self.drain(to);
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].poll_timeout().is_some_and(|t| t <= next) {
                        self.nodes[i].handle_timeout(next);
                        self.drain(i);
                    }
                }
            }
        }
        self.now = end;
    }

    fn publish(&mut self, i: usize, data: &[u8]) -> MsgId {
        let id = self.nodes[i]
            .publish(self.now, topic(), Bytes::copy_from_slice(data))
            .unwrap();
        self.drain(i);
        id
    }

    fn delivered(&self, id: MsgId) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Message { id: m, .. } if *m == id))
            .count()
    }

    fn sent_count(&self, f: impl Fn(&Message) -> bool) -> usize {
        self.sent.iter().filter(|(_, _, m)| f(m)).count()
    }
}

#[test]
fn meshes_form_within_bounds_and_every_node_delivers_once() {
    let mut net = Net::new(40, |_| enabled());
    net.join(8);
    net.run_for(Duration::from_secs(10));
    for (i, n) in net.nodes.iter().enumerate() {
        let m = n.mesh(&topic()).len();
        assert!((4..=12).contains(&m), "node {i} has {m} mesh peers");
    }
    let id = net.publish(3, b"hello");
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.delivered(id), 40);
    // Flood publishing: the origin sends to every topic peer it knows,
    // the rest forward only along the mesh (at most D_hi each).
    let publishes = net.sent_count(|m| matches!(m, Message::Publish(_)));
    assert!(publishes < 40 * 12, "{publishes} transmissions");
}

#[test]
fn gossip_repairs_what_the_mesh_lost() {
    let mut net = Net::new(30, |_| enabled());
    net.join(8);
    net.run_for(Duration::from_secs(10));
    // Publish, then drop every PUBLISH in flight: only IHAVE/IWANT can
    // bring the message to the others.
    let id = net.publish(0, b"lost");
    net.in_flight
        .retain(|_, (_, _, m)| !matches!(m, Message::Publish(_)));
    // The origin gossips it; its peers ask and pass it on.
    net.run_for(Duration::from_secs(8));
    assert_eq!(net.delivered(id), 30);
    assert!(net.sent_count(|m| matches!(m, Message::IWant { .. })) > 0);
}

#[test]
fn a_bad_signature_is_rejected_counted_and_scored() {
    let mut net = Net::new(2, |_| enabled());
    net.join(1);
    net.run_for(Duration::from_secs(2));
    let mut m = PubMessage {
        from: net.peers[1].id,
        seqno: 1,
        topic: topic(),
        data: Bytes::from_static(b"forged"),
        signature: [3; 64],
    };
    let p1 = net.peers[1];
    let now = net.now;
    net.nodes[0].handle_message(now, p1, Message::Publish(Box::new(m.clone())));
    net.drain(0);
    assert_eq!(net.nodes[0].stats().invalid_signature, 1);
    let s = net.nodes[0].score_of(&p1.id, now);
    assert!(
        (-100.0..-99.0).contains(&s),
        "P4 = -100 (and a little P1): {s}"
    );
    assert!(net
        .events
        .iter()
        .any(|(i, e)| *i == 0 && matches!(e, Event::Rejected { .. })));
    // A second one graylists the sender: even a valid message from it
    // is then ignored.
    m.seqno = 2;
    net.nodes[0].handle_message(now, p1, Message::Publish(Box::new(m.clone())));
    assert!(net.nodes[0].score_of(&p1.id, now) < net.nodes[0].config().thresholds.graylist);
    let before = net.nodes[0].stats().graylisted;
    net.nodes[0].handle_message(now, p1, Message::IWant { ids: vec![] });
    assert_eq!(net.nodes[0].stats().graylisted, before + 1);
}

#[test]
fn the_validator_decides_and_rejections_cost_the_sender() {
    let mut net = Net::new(3, |_| enabled());
    net.nodes[2].set_validator(Box::new(|_, data| {
        if data.starts_with(b"ok") {
            Validation::Accept
        } else if data.starts_with(b"meh") {
            Validation::Ignore
        } else {
            Validation::Reject
        }
    }));
    net.join(2);
    net.run_for(Duration::from_secs(3));
    let good = net.publish(0, b"ok 1");
    let meh = net.publish(0, b"meh");
    let bad = net.publish(0, b"spam");
    net.run_for(Duration::from_secs(2));
    let at2 = |id| {
        net.events
            .iter()
            .any(|(i, e)| *i == 2 && matches!(e, Event::Message { id: m, .. } if *m == id))
    };
    assert!(at2(good));
    assert!(!at2(meh));
    assert!(!at2(bad));
    let s = net.nodes[2].stats();
    assert_eq!((s.ignored, s.rejected), (1, 1));
    assert!(net.nodes[2].score_of(&net.peers[0].id, net.now) < 0.0);
}

#[test]
fn peer_records_are_the_peer_exchange_of_a_prune() {
    let px = vec![Peer::new(identity(1).peer_id(), addr(1))];
    let prune = Message::Prune {
        topic: topic(),
        backoff_s: 60,
        peers: px.clone(),
    };
    assert_eq!(prune.peer_records().copied().collect::<Vec<_>>(), px);
    let graft = Message::Graft { topic: topic() };
    assert_eq!(graft.peer_records().count(), 0);
}

#[test]
fn graft_during_backoff_is_penalised_and_pruned_again() {
    let mut net = Net::new(2, |_| enabled());
    net.join(1);
    net.run_for(Duration::from_secs(3));
    assert!(net.nodes[0].mesh(&topic()).contains(&net.peers[1].id));
    let (p0, p1) = (net.peers[0], net.peers[1]);
    let now = net.now;
    // Node 1 prunes node 0 (as if its mesh were full)...
    net.nodes[0].handle_message(
        now,
        p1,
        Message::Prune {
            topic: topic(),
            backoff_s: 60,
            peers: vec![],
        },
    );
    net.nodes[1].send_prune(now, &topic(), p0.id, false, Duration::from_secs(60));
    net.nodes[1].remove_from_mesh(now, &topic(), &p0.id);
    net.drain(0);
    net.drain(1);
    net.in_flight.clear();
    // ...and node 0 GRAFTs right back, three times.
    for _ in 0..3 {
        net.nodes[1].handle_message(now, p0, Message::Graft { topic: topic() });
    }
    net.drain(1);
    assert_eq!(net.nodes[1].stats().graft_in_backoff, 3);
    // Within the flood threshold each counts twice: 6 faults, threshold 2:
    // -(6 - 2)^2 x 10 = -160.
    assert_eq!(net.nodes[1].score_of(&p0.id, now), -160.0);
    assert!(!net.nodes[1].mesh(&topic()).contains(&p0.id));
    let prunes = net
        .sent
        .iter()
        .filter(|(f, t, m)| *f == 1 && *t == 0 && matches!(m, Message::Prune { .. }))
        .count();
    assert!(prunes >= 3);
}

#[test]
fn ihave_without_an_answer_is_a_broken_promise() {
    let mut net = Net::new(2, |_| enabled());
    net.join(1);
    net.run_for(Duration::from_secs(2));
    let p1 = net.peers[1];
    let now = net.now;
    let ids: Vec<MsgId> = (0..5u8).map(|i| MsgId([i; 32])).collect();
    net.nodes[0].handle_message(
        now,
        p1,
        Message::IHave {
            topic: topic(),
            ids,
        },
    );
    net.drain(0);
    assert_eq!(net.nodes[0].stats().iwant_sent, 1);
    // Nobody answers (node 1 has no such messages).
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.nodes[0].stats().broken_promises, 5);
    // 5 faults, threshold 2: -(3^2) x 10, decayed a little.
    let s = net.nodes[0].score_of(&p1.id, net.now);
    assert!(s < -50.0, "{s}");
}

#[test]
fn ihave_floods_are_capped_per_heartbeat() {
    let mut net = Net::new(2, |_| enabled());
    net.join(1);
    net.run_for(Duration::from_secs(2));
    let p1 = net.peers[1];
    let now = net.now;
    for k in 0..50u8 {
        let ids = vec![MsgId([k; 32])];
        net.nodes[0].handle_message(
            now,
            p1,
            Message::IHave {
                topic: topic(),
                ids,
            },
        );
    }
    assert_eq!(net.nodes[0].stats().iwant_sent, 10, "max_ihave_messages");
}

#[test]
fn large_messages_trigger_idontwant_and_it_is_respected() {
    let mut net = Net::new(20, |_| enabled());
    net.join(6);
    net.run_for(Duration::from_secs(10));
    let id = net.publish(0, &[1u8; 1000]);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.delivered(id), 20);
    let dont = net.sent_count(|m| matches!(m, Message::IDontWant { .. }));
    assert!(dont > 0, "IDONTWANT sent for a 1000-byte message");
    // Small messages do not.
    net.sent.clear();
    let small = net.publish(0, &[1u8; 100]);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.delivered(small), 20);
    assert_eq!(
        net.sent_count(|m| matches!(m, Message::IDontWant { .. })),
        0
    );
    // A peer that said IDONTWANT is not sent the message.
    let mut single = Net::new(3, |_| enabled());
    single.join(2);
    single.run_for(Duration::from_secs(3));
    let big = PubMessage {
        from: single.peers[2].id,
        seqno: 9,
        topic: topic(),
        data: Bytes::from(vec![0u8; 1000]),
        signature: [0; 64],
    };
    let mut m = big.clone();
    m.signature = identity(2).signing_key().sign(&signed_bytes(&m)).to_bytes();
    let (p0, p2) = (single.peers[0], single.peers[2]);
    let now = single.now;
    single.nodes[1].handle_message(now, p0, Message::IDontWant { ids: vec![m.id()] });
    single.sent.clear();
    single.nodes[1].handle_message(now, p2, Message::Publish(Box::new(m)));
    single.drain(1);
    assert_eq!(
        single
            .sent
            .iter()
            .filter(|(f, t, x)| *f == 1 && *t == 0 && matches!(x, Message::Publish(_)))
            .count(),
        0
    );
}

#[test]
fn silent_attackers_are_pruned_with_scoring_and_kept_without() {
    for scoring in [true, false] {
        let mut net = Net::new(20, |i| {
            let mut c = enabled();
            c.scoring = scoring;
            if i >= 14 {
                c.adversary = Adversary {
                    from: Some(Duration::from_secs(20)),
                    drop_forwards: true,
                    ..Adversary::default()
                };
            }
            c
        });
        net.join(8);
        net.run_for(Duration::from_secs(20));
        let attackers: Vec<PeerId> = (14..20).map(|i| net.peers[i].id).collect();
        let in_mesh = |net: &Net| -> usize {
            (0..14)
                .map(|i| {
                    net.nodes[i]
                        .mesh(&topic())
                        .iter()
                        .filter(|p| attackers.contains(p))
                        .count()
                })
                .sum()
        };
        let before = in_mesh(&net);
        assert!(before > 0);
        // A message every 250 ms for 25 s.
        for k in 0..100 {
            let origin = k % 14;
            net.publish(origin, format!("m{k}").as_bytes());
            net.run_for(Duration::from_millis(250));
        }
        let after = in_mesh(&net);
        if scoring {
            assert!(after * 4 < before, "scoring: {before} -> {after}");
        } else {
            assert!(after * 2 >= before, "no scoring: {before} -> {after}");
        }
    }
}

#[test]
fn caches_and_tables_stay_bounded_under_a_flood() {
    let mut config = enabled();
    config.mcache_capacity = 50;
    config.seen_capacity = 100;
    config.max_promises = 20;
    let mut net = Net::new(2, |_| config.clone());
    net.join(1);
    net.run_for(Duration::from_secs(2));
    let key = identity(1);
    let p1 = net.peers[1];
    for k in 0..500u64 {
        let mut m = PubMessage {
            from: p1.id,
            seqno: k,
            topic: topic(),
            data: Bytes::from_static(b"d"),
            signature: [0; 64],
        };
        m.signature = key.signing_key().sign(&signed_bytes(&m)).to_bytes();
        let now = net.now;
        net.nodes[0].handle_message(now, p1, Message::Publish(Box::new(m)));
        let ids = (0..32)
            .map(|j| {
                MsgId([
                    (k % 250) as u8,
                    j as u8,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ])
            })
            .collect();
        net.nodes[0].handle_message(
            now,
            p1,
            Message::IHave {
                topic: topic(),
                ids,
            },
        );
        net.nodes[0].handle_message(
            now,
            Peer::new(PeerId([k as u8; 32]), addr(100 + (k as usize % 100))),
            Message::Subscriptions {
                entries: vec![(true, topic())],
            },
        );
        net.drain(0);
    }
    let (mcache, seen) = net.nodes[0].cache_sizes();
    assert!(mcache <= 50 && seen <= 100, "{mcache} {seen}");
    assert!(net.nodes[0].promises.len() <= 20);
    assert!(net.nodes[0].peers.len() <= net.nodes[0].config().max_peers);
    assert!(net.nodes[0].verdicts.len() <= 100);
}

#[test]
fn fanout_carries_messages_to_a_topic_we_do_not_join() {
    let mut net = Net::new(12, |i| Config {
        flood_publish: i != 0,
        ..enabled()
    });
    // Node 0 does not subscribe.
    let n = net.nodes.len();
    for i in 1..n {
        net.nodes[i].subscribe(Time::ZERO, topic());
        net.drain(i);
    }
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let p = net.peers[j];
                net.nodes[i].handle_neighbor_up(Time::ZERO, p);
                net.drain(i);
            }
        }
    }
    net.run_for(Duration::from_secs(3));
    let id = net.publish(0, b"from outside");
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.delivered(id), 11);
    assert_eq!(net.nodes[0].fanout[&topic()].0.len(), 6);
    net.run_for(Duration::from_secs(61));
    assert!(net.nodes[0].fanout.is_empty(), "expired after fanout_ttl");
}

#[test]
fn same_seed_same_outputs() {
    let run = |seed| {
        let mut net = Net::with_seed(15, seed, |_| enabled());
        net.join(5);
        net.run_for(Duration::from_secs(5));
        net.publish(1, b"x");
        net.run_for(Duration::from_secs(5));
        format!("{:?}", net.sent)
    };
    let a = run(1);
    assert_eq!(a, run(1));
    // Same neighbours, other node seeds: other meshes and gossip targets.
    assert_ne!(a, run(2), "seeds 1 and 2 sent the same messages");
}

#[test]
fn publish_refuses_oversized_data() {
    let mut g = GossipSub::new(&identity(0), enabled(), ChaCha8Rng::seed_from_u64(0));
    let big = Bytes::from(vec![0; MAX_DATA_BYTES + 1]);
    assert_eq!(
        g.publish(Time::ZERO, topic(), big),
        Err(PublishError::TooLarge {
            len: MAX_DATA_BYTES + 1
        })
    );
}

#[test]
fn signatures_verify_and_ids_are_stable() {
    let id = identity(4);
    let mut m = PubMessage {
        from: id.peer_id(),
        seqno: 42,
        topic: topic(),
        data: Bytes::from_static(b"d"),
        signature: [0; 64],
    };
    assert!(!m.verify());
    m.signature = id.signing_key().sign(&signed_bytes(&m)).to_bytes();
    assert!(m.verify());
    let id1 = m.id();
    m.data = Bytes::from_static(b"e");
    assert!(!m.verify(), "data is signed");
    assert_eq!(m.id(), id1, "the id is publisher and seqno");
}

// ---- config invariants: one test each ----

macro_rules! invariant {
    ($name:ident, $field:expr, |$c:ident| $edit:expr) => {
        #[test]
        fn $name() {
            let mut $c = Config::default();
            assert_eq!(Config::default().validate(), Ok(()));
            $edit;
            let e = $c.validate().unwrap_err();
            assert_eq!(e.field, $field, "{e}");
        }
    };
}

invariant!(d_lo_at_most_d, "d", |c| c.d_lo = 7);
invariant!(d_at_most_d_hi, "d", |c| c.d_hi = 5);
invariant!(d_positive, "d", |c| {
    c.d = 0;
    c.d_lo = 0
});
invariant!(d_out_below_d_lo, "d_out", |c| c.d_out = 4);
invariant!(d_out_at_most_half_d, "d_out", |c| {
    c.d = 4;
    c.d_lo = 4;
    c.d_out = 3
});
invariant!(d_score_at_most_d, "d_score", |c| c.d_score = 7);
invariant!(heartbeat_at_least_700ms, "heartbeat_interval", |c| {
    c.heartbeat_interval = Duration::from_millis(699)
});
invariant!(mcache_gossip_within_len, "mcache_gossip", |c| c
    .mcache_gossip =
    6);
invariant!(seen_ttl_covers_mcache, "seen_ttl", |c| {
    c.seen_ttl = Duration::from_secs(4)
});
invariant!(gossip_factor_a_share, "gossip_factor", |c| c
    .gossip_factor =
    1.5);
invariant!(prune_peers_fit_a_prune, "prune_peers", |c| c.prune_peers =
    17);
invariant!(max_peers_hold_d_hi, "max_peers", |c| c.max_peers = 11);
invariant!(peer_timeout_above_announce, "peer_timeout", |c| {
    c.peer_timeout = c.announce_interval
});
invariant!(gossip_threshold_non_positive, "thresholds.gossip", |c| {
    c.thresholds.gossip = 1.0
});
invariant!(publish_below_gossip, "thresholds.publish", |c| {
    c.thresholds.publish = -5.0
});
invariant!(graylist_below_publish, "thresholds.graylist", |c| {
    c.thresholds.graylist = -50.0
});
invariant!(accept_px_non_negative, "thresholds.accept_px", |c| {
    c.thresholds.accept_px = -1.0
});
invariant!(
    opportunistic_graft_non_negative,
    "thresholds.opportunistic_graft",
    |c| { c.thresholds.opportunistic_graft = -1.0 }
);
invariant!(
    p3_weight_non_positive,
    "score.mesh_message_deliveries_weight",
    |c| { c.score.mesh_message_deliveries_weight = 1.0 }
);
invariant!(
    p4_weight_non_positive,
    "score.invalid_message_deliveries_weight",
    |c| { c.score.invalid_message_deliveries_weight = 1.0 }
);
invariant!(
    p7_weight_non_positive,
    "score.behaviour_penalty_weight",
    |c| { c.score.behaviour_penalty_weight = 1.0 }
);
invariant!(
    decays_in_unit_interval,
    "score.first_message_deliveries_decay",
    |c| { c.score.first_message_deliveries_decay = 1.0 }
);
invariant!(
    p3_activation_at_least_1s,
    "score.mesh_message_deliveries_activation",
    |c| { c.score.mesh_message_deliveries_activation = Duration::from_millis(500) }
);
invariant!(p1_weight_non_negative, "score.time_in_mesh_weight", |c| {
    c.score.time_in_mesh_weight = -1.0
});
invariant!(
    p6_weight_non_positive,
    "score.ip_colocation_factor_weight",
    |c| { c.score.ip_colocation_factor_weight = 1.0 }
);

#[test]
fn the_hardened_profile_is_valid_and_tighter() {
    let h = Config::hardened();
    assert_eq!(h.validate(), Ok(()));
    let d = Config::default();
    assert!(h.d_out > d.d_out && h.d_score > d.d_score);
    assert!(h.thresholds.graylist > d.thresholds.graylist);
    assert!(h.gossip_retransmission < d.gossip_retransmission);
}

#[test]
fn config_reads_from_toml_and_rejects_unknown_keys() {
    let c: Config =
        toml::from_str("enabled = true\nd = 8\nd_hi = 16\n[thresholds]\ngossip = -5.0\n").unwrap();
    assert!(c.enabled && c.d == 8 && c.d_hi == 16);
    assert_eq!(c.thresholds.gossip, -5.0);
    assert!(toml::from_str::<Config>("bogus = 1").is_err());
    assert!(toml::from_str::<Config>("adversary = 1").is_err());
}
