//! The knowledge commons on virtual time: a few cores, every chunk takes
//! 10 ms, links can be cut (a partition) and chunks dropped or reordered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::SeedableRng;
use serde_json::json;

use super::*;

const DELAY: Duration = Duration::from_millis(10);

fn peer(i: u8) -> PeerId {
    PeerId([i; 32])
}

fn config() -> Config {
    Config {
        enabled: true,
        topics: vec!["t".into()],
        ..Config::default()
    }
}

struct Net {
    now: Time,
    nodes: BTreeMap<u8, Knowledge>,
    /// (arrival, seq) -> (from, to, chunk)
    in_flight: BTreeMap<(Time, u64), (u8, u8, Chunk)>,
    seq: u64,
    /// Unordered pairs that cannot talk.
    cut: BTreeSet<(u8, u8)>,
    events: Vec<(u8, Event)>,
    chunks_sent: u64,
    /// Every chunk sent: when, from, to, and its blob id.
    sent: Vec<(Time, u8, u8, u32)>,
}

impl Net {
    fn new(n: u8, config: Config) -> Net {
        Net::with_seed(n, config, 0)
    }

    /// As [`Net::new`], with node `i`'s RNG seeded from `seed` and `i`
    /// (its life seed stays `i`).
    fn with_seed(n: u8, config: Config, seed: u64) -> Net {
        let nodes = (1..=n)
            .map(|i| {
                let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + u64::from(i));
                (
                    i,
                    Knowledge::new(peer(i), u64::from(i), config.clone(), rng),
                )
            })
            .collect();
        Net {
            now: Time::ZERO,
            nodes,
            in_flight: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            events: Vec::new(),
            chunks_sent: 0,
            sent: Vec::new(),
        }
    }

    fn index_of(id: &PeerId) -> u8 {
        id.0[0]
    }

    fn drain(&mut self, i: u8) {
        let node = self.nodes.get_mut(&i).unwrap();
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { to, message: chunk } => {
                    let j = Self::index_of(&to);
                    self.chunks_sent += 1;
                    self.sent.push((self.now, i, j, chunk.blob));
                    if self.cut.contains(&(i.min(j), i.max(j))) {
                        continue;
                    }
                    self.seq += 1;
                    self.in_flight
                        .insert((self.now + DELAY, self.seq), (i, j, chunk));
                }
                Output::Event(e) => self.events.push((i, e)),
            }
        }
    }

    fn link(&mut self, a: u8, b: u8) {
        let now = self.now;
        self.nodes
            .get_mut(&a)
            .unwrap()
            .handle_neighbor_up(now, peer(b));
        self.drain(a);
        self.nodes
            .get_mut(&b)
            .unwrap()
            .handle_neighbor_up(now, peer(a));
        self.drain(b);
    }

    fn write(&mut self, i: u8, write: Write) -> Option<String> {
        let now = self.now;
        let r = self
            .nodes
            .get_mut(&i)
            .unwrap()
            .write(now, "t", &write)
            .unwrap();
        self.drain(i);
        r
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_chunk = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self
                .nodes
                .values()
                .filter_map(Knowledge::poll_timeout)
                .min();
            let Some(next) = [next_chunk, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_chunk == Some(next) {
                let (_, (from, to, chunk)) = self.in_flight.pop_first().unwrap();
                if self.cut.contains(&(from.min(to), from.max(to))) {
                    continue;
                }
                self.nodes
                    .get_mut(&to)
                    .unwrap()
                    .handle_chunk(next, peer(from), chunk);
                self.drain(to);
            } else {
                let ids: Vec<u8> = self.nodes.keys().copied().collect();
                for i in ids {
                    let node = self.nodes.get_mut(&i).unwrap();
                    if node.poll_timeout().is_some_and(|t| t <= next) {
                        node.handle_timeout(next);
                        self.drain(i);
                    }
                }
            }
        }
        self.now = end;
    }

    fn json(&self, i: u8) -> serde_json::Value {
        self.nodes[&i].read("t").unwrap()
    }

    fn converged(&self) -> bool {
        let states: BTreeSet<(u64, u64)> = self
            .nodes
            .values()
            .map(|n| {
                let s = &n.states()[0];
                (s.version_hash, s.state_hash)
            })
            .collect();
        states.len() == 1
    }
}

fn observe(key: &str, value: serde_json::Value) -> Write {
    Write::Observe {
        key: key.into(),
        value,
    }
}

#[test]
fn edits_on_every_node_reach_every_node_over_a_line() {
    let mut net = Net::new(3, config());
    net.link(1, 2);
    net.link(2, 3);
    net.run_for(Duration::from_secs(1));
    net.write(1, observe("a", json!(1)));
    net.write(3, observe("b", json!("x")));
    net.write(
        2,
        Write::Increment {
            name: "votes".into(),
            by: 2.0,
        },
    );
    net.write(
        3,
        Write::Increment {
            name: "votes".into(),
            by: 1.0,
        },
    );
    net.write(
        1,
        Write::SetAdd {
            name: "tags".into(),
            item: "rust".into(),
        },
    );
    let root = net.write(
        2,
        Write::TreeAdd {
            parent: None,
            label: "root".into(),
        },
    );
    net.run_for(Duration::from_secs(1));
    let child = net.write(
        3,
        Write::TreeAdd {
            parent: root.clone(),
            label: "child".into(),
        },
    );
    net.run_for(Duration::from_secs(1));
    net.write(
        1,
        Write::TreeMove {
            node: child.clone().unwrap(),
            parent: None,
        },
    );
    net.run_for(Duration::from_secs(2));
    assert!(net.converged(), "{:?} vs {:?}", net.json(1), net.json(3));
    let doc = net.json(2);
    assert_eq!(doc["observations"], json!({"a": 1, "b": "x"}));
    assert_eq!(doc["counter:votes"], json!(3.0));
    assert_eq!(doc["set:tags"], json!({"rust": true}));
    assert_eq!(doc["graph"].as_array().unwrap().len(), 2, "{doc}");
    // Every write was committed with its own update.
    let commits = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Committed { .. }))
        .count();
    assert_eq!(commits, 8);
}

#[test]
fn concurrent_writes_to_one_key_converge_to_one_value() {
    let mut net = Net::new(2, config());
    net.link(1, 2);
    net.run_for(Duration::from_secs(1));
    net.write(1, observe("k", json!("from 1")));
    net.write(2, observe("k", json!("from 2")));
    net.run_for(Duration::from_secs(2));
    assert!(net.converged());
    assert_eq!(
        net.json(1)["observations"]["k"],
        net.json(2)["observations"]["k"]
    );
}

#[test]
fn a_partition_heals_by_anti_entropy_without_a_new_neighbour_event() {
    let mut net = Net::new(4, config());
    net.link(1, 2);
    net.link(2, 3);
    net.link(3, 4);
    net.run_for(Duration::from_secs(1));
    net.write(1, observe("before", json!(0)));
    net.run_for(Duration::from_secs(1));
    net.cut.insert((2, 3));
    for k in 0..20 {
        net.write(1 + (k % 2), observe(&format!("left{k}"), json!(k)));
        net.write(3 + (k % 2), observe(&format!("right{k}"), json!(k)));
        net.run_for(Duration::from_millis(300));
    }
    assert!(!net.converged());
    assert!(net.json(1)["observations"].get("right0").is_none());
    net.cut.clear();
    // Pushes resume on the link at once (the push of the next change), and
    // anti-entropy repairs what was lost while cut.
    net.run_for(Duration::from_secs(40));
    assert!(net.converged(), "{} vs {}", net.json(1), net.json(4));
    assert_eq!(net.json(4)["observations"].as_object().unwrap().len(), 41);
}

#[test]
fn a_late_joiner_bootstraps_from_a_snapshot_then_follows_deltas() {
    let mut net = Net::new(3, config());
    net.link(1, 2);
    net.run_for(Duration::from_secs(1));
    for k in 0..200 {
        net.write(
            1,
            observe(&format!("k{k}"), json!(format!("value number {k}"))),
        );
    }
    net.run_for(Duration::from_secs(1));
    net.events.clear();
    net.link(3, 2);
    net.run_for(Duration::from_secs(1));
    let snapshots: Vec<usize> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Sent {
                kind: BlobKind::Snapshot,
                bytes,
                ..
            } if *i == 2 => Some(*bytes),
            _ => None,
        })
        .collect();
    assert_eq!(snapshots.len(), 1, "one snapshot to the joiner");
    assert!(snapshots[0] > MAX_CHUNK_BYTES, "so it was chunked");
    net.write(1, observe("after", json!(true)));
    net.run_for(Duration::from_secs(1));
    assert!(net.converged());
    assert_eq!(net.json(3)["observations"]["after"], json!(true));
}

#[test]
fn an_update_that_overtakes_its_dependencies_is_held_then_applied() {
    let rng = || ChaCha8Rng::seed_from_u64(9);
    let mut writer = Knowledge::new(peer(1), 1, config(), rng());
    let mut reader = Knowledge::new(peer(2), 2, config(), rng());
    let mut updates = Vec::new();
    for k in 0..3 {
        writer
            .write(Time::ZERO, "t", &observe(&format!("k{k}"), json!(k)))
            .unwrap();
        while let Some(out) = writer.poll_output() {
            if let Output::Event(Event::Committed { update, .. }) = out {
                updates.push(update);
            }
        }
    }
    let chunk = |i: usize, blob: u32| {
        Chunk::split(BlobKind::Delta, "t", blob, &updates[i])
            .unwrap()
            .remove(0)
    };
    reader.handle_chunk(Time::ZERO, peer(1), chunk(2, 12));
    reader.handle_chunk(Time::ZERO, peer(1), chunk(1, 11));
    assert_eq!(reader.pending(), 2);
    assert_eq!(reader.read("t").unwrap()["observations"], json!(null));
    reader.handle_chunk(Time::ZERO, peer(1), chunk(0, 10));
    assert_eq!(reader.pending(), 0);
    assert_eq!(
        reader.read("t").unwrap()["observations"],
        json!({"k0": 0, "k1": 1, "k2": 2})
    );
    assert_eq!(reader.stats().held, 2);
    assert_eq!(reader.stats().pending_peak, 2);
}

#[test]
fn the_pending_queue_is_bounded() {
    let config = Config {
        max_pending_updates: 4,
        ..config()
    };
    let rng = || ChaCha8Rng::seed_from_u64(9);
    let mut writer = Knowledge::new(peer(1), 1, config.clone(), rng());
    let mut reader = Knowledge::new(peer(2), 2, config, rng());
    let mut updates = Vec::new();
    for k in 0..12 {
        writer
            .write(Time::ZERO, "t", &observe(&format!("k{k}"), json!(k)))
            .unwrap();
        while let Some(out) = writer.poll_output() {
            if let Output::Event(Event::Committed { update, .. }) = out {
                updates.push(update);
            }
        }
    }
    for (i, u) in updates.iter().enumerate().skip(1) {
        let c = Chunk::split(BlobKind::Delta, "t", i as u32, u)
            .unwrap()
            .remove(0);
        reader.handle_chunk(Time::ZERO, peer(1), c);
        assert!(reader.pending() <= 4);
    }
    assert_eq!(reader.stats().pending_dropped, 7);
}

#[test]
fn chunks_arriving_out_of_order_are_reassembled() {
    let rng = || ChaCha8Rng::seed_from_u64(9);
    let mut writer = Knowledge::new(peer(1), 1, config(), rng());
    let mut reader = Knowledge::new(peer(2), 2, config(), rng());
    for k in 0..100 {
        writer
            .write(
                Time::ZERO,
                "t",
                &observe(&format!("key {k}"), json!(format!("v{k}"))),
            )
            .unwrap();
    }
    let snapshot = Bytes::from(
        writer.topics["t"]
            .doc
            .doc
            .export(ExportMode::Snapshot)
            .unwrap(),
    );
    let mut chunks = Chunk::split(BlobKind::Snapshot, "t", 5, &snapshot).unwrap();
    assert!(chunks.len() >= 2);
    chunks.reverse();
    // A duplicate chunk is harmless.
    chunks.insert(1, chunks[0].clone());
    for c in chunks {
        reader.handle_chunk(Time::ZERO, peer(1), c);
    }
    assert_eq!(reader.read("t"), writer.read("t"));
}

#[test]
fn hostile_blobs_are_rejected_and_counted_and_the_node_goes_on() {
    let mut net = Net::new(2, config());
    net.link(1, 2);
    net.run_for(Duration::from_secs(1));
    let garbage = Bytes::from_static(b"definitely not a loro update");
    for (kind, blob) in [
        (BlobKind::Delta, 1),
        (BlobKind::Snapshot, 2),
        (BlobKind::Summary, 3),
    ] {
        let c = Chunk::split(kind, "t", blob, &garbage).unwrap().remove(0);
        net.nodes
            .get_mut(&2)
            .unwrap()
            .handle_chunk(net.now, peer(9), c);
    }
    // A valid update header over a corrupted body.
    net.write(1, observe("ok", json!(1)));
    let update = net
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Committed { update, .. } => Some(update.clone()),
            _ => None,
        })
        .unwrap();
    let mut corrupt = update.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    corrupt[20] ^= 0x55;
    let c = Chunk::split(BlobKind::Delta, "t", 4, &Bytes::from(corrupt))
        .unwrap()
        .remove(0);
    net.nodes
        .get_mut(&2)
        .unwrap()
        .handle_chunk(net.now, peer(9), c);
    let stats = net.nodes[&2].stats();
    assert_eq!(stats.rejected, 4, "{stats:?}");
    net.drain(2);
    net.run_for(Duration::from_secs(1));
    assert!(net.converged());
    assert_eq!(net.json(2)["observations"]["ok"], json!(1));
}

#[test]
fn a_peer_over_its_rate_is_cut_off_and_counted() {
    let config = Config {
        peer_rate_bytes_per_s: 10_000,
        peer_burst_bytes: 20_000,
        max_update_bytes: 20_000,
        ..config()
    };
    let mut k = Knowledge::new(peer(1), 1, config, ChaCha8Rng::seed_from_u64(1));
    let data = Bytes::from(vec![1u8; MAX_CHUNK_BYTES * 4]);
    for blob in 0..10 {
        for c in Chunk::split(BlobKind::Delta, "t", blob, &data).unwrap() {
            k.handle_chunk(Time::ZERO, peer(2), c);
        }
    }
    // 20 KB of burst: 16 chunks of ~1.25 KB pass, the rest is dropped.
    assert_eq!(k.stats().rate_limited, 40 - 16);
    // A second later there is room for 10 KB more.
    let c = Chunk::split(BlobKind::Delta, "t", 99, &data)
        .unwrap()
        .remove(0);
    k.handle_chunk(Duration::from_secs(1), peer(2), c);
    assert_eq!(k.stats().rate_limited, 24);
}

#[test]
fn catch_ups_over_max_update_bytes_are_split_and_still_converge() {
    let config = Config {
        max_update_bytes: 4000,
        peer_burst_bytes: 1 << 20,
        ..config()
    };
    let mut net = Net::new(2, config);
    for k in 0..300 {
        net.write(
            1,
            observe(
                &format!("key-{k:04}"),
                json!(format!("some longer value {k}")),
            ),
        );
    }
    net.link(1, 2);
    net.run_for(Duration::from_secs(2));
    let deltas = net
        .events
        .iter()
        .filter(|(i, e)| {
            *i == 1
                && matches!(
                    e,
                    Event::Sent {
                        kind: BlobKind::Delta,
                        ..
                    }
                )
        })
        .count();
    assert!(deltas >= 3, "{deltas} deltas");
    assert!(net.converged());
    assert_eq!(net.json(2)["observations"].as_object().unwrap().len(), 300);
}

#[test]
fn lives_get_distinct_loro_peers_and_runs_are_deterministic() {
    let id = peer(1);
    let a = Knowledge::new(id, 1, config(), ChaCha8Rng::seed_from_u64(1));
    let b = Knowledge::new(id, 2, config(), ChaCha8Rng::seed_from_u64(1));
    assert_ne!(a.loro_peer(), b.loro_peer());
    assert_eq!(a.loro_peer(), loro_peer_id(&id, 1));
    let run = |seed| {
        let mut net = Net::with_seed(3, config(), seed);
        net.link(1, 2);
        net.link(2, 3);
        for k in 0..10 {
            net.write(1 + k % 3, observe(&format!("k{k}"), json!(k)));
            net.run_for(Duration::from_millis(150));
        }
        net.run_for(Duration::from_secs(30));
        (format!("{:?}", net.events), net.sent)
    };
    let a = run(1);
    assert_eq!(a, run(1));
    // Same lives (life seeds), other RNG seeds: other blob ids and
    // anti-entropy times on the wire.
    assert!(a.1 != run(2).1, "seeds 1 and 2 sent the same chunks");
}

#[test]
fn a_restarted_writer_restores_its_commits_and_keeps_writing() {
    let mut net = Net::new(2, config());
    net.link(1, 2);
    net.write(1, observe("first life", json!(1)));
    let wal: Vec<Bytes> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Committed { update, .. } if *i == 1 => Some(update.clone()),
            _ => None,
        })
        .collect();
    // Crash before anything was pushed; come back with a new life seed.
    net.in_flight.clear();
    let mut again = Knowledge::new(peer(1), 77, config(), ChaCha8Rng::seed_from_u64(77));
    for u in &wal {
        again.restore(net.now, "t", u).unwrap();
    }
    net.nodes.insert(1, again);
    net.nodes
        .get_mut(&2)
        .unwrap()
        .handle_neighbor_down(net.now, &peer(1));
    net.link(1, 2);
    net.write(1, observe("second life", json!(2)));
    net.run_for(Duration::from_secs(2));
    assert!(net.converged());
    assert_eq!(
        net.json(2)["observations"],
        json!({"first life": 1, "second life": 2})
    );
}

/// A writer's commits, kept alone, rebuild every edit it acknowledged: a
/// commit carries what the writer imported since its last commit, so it
/// never depends on operations its store lacks.
#[test]
fn a_writers_commits_alone_hold_everything_its_edits_build_on() {
    let mut net = Net::new(2, config());
    net.link(1, 2);
    net.write(1, observe("from 1", json!(1)));
    net.run_for(Duration::from_secs(2));
    net.write(2, observe("first of 2", json!(0)));
    net.write(2, observe("from 2", json!(2)));
    let commits: Vec<Bytes> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Committed { update, .. } if *i == 2 => Some(update.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 2);
    let mut fresh = Knowledge::new(peer(2), 9, config(), ChaCha8Rng::seed_from_u64(9));
    for u in &commits {
        fresh.restore(net.now, "t", u).unwrap();
    }
    assert_eq!(fresh.pending(), 0, "nothing waits for a missing dependency");
    assert_eq!(
        fresh.read("t").unwrap()["observations"],
        json!({"from 1": 1, "first of 2": 0, "from 2": 2})
    );
    // The second commit holds only the new edit, not the first again.
    let mut second = Knowledge::new(peer(2), 10, config(), ChaCha8Rng::seed_from_u64(10));
    second.restore(net.now, "t", &commits[1]).unwrap();
    assert!(second.read("t").is_some());
    assert!(commits[1].len() < commits[0].len());
}

#[test]
fn a_disabled_commons_does_nothing() {
    let mut k = Knowledge::new(peer(1), 1, Config::default(), ChaCha8Rng::seed_from_u64(1));
    assert_eq!(k.poll_timeout(), None);
    assert_eq!(
        k.write(Time::ZERO, "t", &observe("a", json!(1))),
        Err(WriteError::Disabled)
    );
    k.handle_neighbor_up(Time::ZERO, peer(2));
    assert_eq!(k.poll_output(), None);
}
