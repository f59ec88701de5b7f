//! Tests of the DHT core on virtual time: the lookup iterator alone, then
//! networks of cores exchanging encoded datagrams.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::lookup::{ClosestPeersIter, Next};
use super::table::{Change, Insert, Limits, Table};
use super::*;
use crate::message::{self, Datagram, Message as W};
use crate::Identity;

fn ms(n: u64) -> Time {
    Duration::from_millis(n)
}

fn peer(i: u32) -> Peer {
    let id = Identity::from_seed(seed(i)).peer_id();
    Peer::new(id, addr(i))
}

fn seed(i: u32) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s[31] = 1;
    s
}

/// Distinct /24 per node, so diversity limits never bind by accident.
fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 7000))
}

// ---- the lookup iterator ----

fn sorted_by_distance(target: &Key, peers: &[Peer]) -> Vec<Peer> {
    let mut v = peers.to_vec();
    v.sort_by_key(|p| Key::of_peer(&p.id).distance(target));
    v
}

#[test]
fn lookup_sends_alpha_at_a_time_and_finishes_when_the_k_closest_answered() {
    let target = Key([7; 32]);
    let all: Vec<Peer> = (0..30).map(peer).collect();
    let mut it = ClosestPeersIter::new(target, all[..10].to_vec(), 5, 3, ms(1000));
    let mut sent = Vec::new();
    while let Next::Send(p) = it.next(ms(0)) {
        sent.push(p);
    }
    assert_eq!(sent.len(), 3, "alpha requests in flight");
    assert_eq!(it.next(ms(0)), Next::Waiting);
    // Each answer names the whole population: the lookup converges on the
    // true 5 closest.
    let mut now = 0;
    loop {
        now += 10;
        for p in std::mem::take(&mut sent) {
            assert!(it.on_success(&p.id, all.clone()));
        }
        loop {
            match it.next(ms(now)) {
                Next::Send(p) => sent.push(p),
                Next::Waiting => break,
                Next::Finished => {
                    let got: Vec<PeerId> = it.closest().iter().map(|(p, _)| p.id).collect();
                    let want: Vec<PeerId> = sorted_by_distance(&target, &all)[..5]
                        .iter()
                        .map(|p| p.id)
                        .collect();
                    assert_eq!(got, want);
                    assert!(it.requests >= 5);
                    return;
                }
            }
        }
        assert!(!sent.is_empty(), "a waiting lookup has requests out");
        assert!(now < 1000);
    }
}

#[test]
fn a_slow_peer_frees_its_slot_at_the_timeout_and_its_late_answer_still_counts() {
    let target = Key([1; 32]);
    let seeds: Vec<Peer> = (0..4).map(peer).collect();
    let mut it = ClosestPeersIter::new(target, seeds.clone(), 4, 1, ms(500));
    let Next::Send(first) = it.next(ms(0)) else {
        panic!("one request")
    };
    assert_eq!(it.next(ms(499)), Next::Waiting);
    assert_eq!(it.poll_timeout(), Some(ms(500)));
    // At the timeout the slot goes to the next peer.
    let Next::Send(second) = it.next(ms(500)) else {
        panic!("the slow peer's slot is reused")
    };
    assert_ne!(first.id, second.id);
    // The slow peer answers late: accepted.
    assert!(it.on_success(&first.id, []));
    assert!(it.on_success(&second.id, []));
    let mut n = 2;
    while let Next::Send(p) = it.next(ms(600)) {
        assert!(it.on_success(&p.id, []));
        n += 1;
    }
    assert_eq!(n, 4);
    assert_eq!(it.next(ms(600)), Next::Finished);
    assert_eq!(it.closest().len(), 4);
}

#[test]
fn dead_peers_are_skipped_and_an_unanswered_lookup_still_ends() {
    let target = Key([2; 32]);
    let seeds: Vec<Peer> = (0..6).map(peer).collect();
    // Every other peer is dead: the request fails for good.
    let dead = |p: &Peer| Key::of_peer(&p.id).0[0].is_multiple_of(2);
    let mut it = ClosestPeersIter::new(target, seeds.clone(), 3, 2, ms(100));
    let mut t = 0;
    loop {
        match it.next(ms(t)) {
            Next::Send(p) => {
                if dead(&p) {
                    assert!(it.on_failure(&p.id));
                } else {
                    assert!(it.on_success(&p.id, []));
                }
            }
            Next::Waiting => t = it.poll_timeout().expect("a deadline").as_millis() as u64,
            Next::Finished => break,
        }
        assert!(t < 10_000);
    }
    // The result is the k = 3 closest live peers, closest first: the dead
    // ones among the closest are passed over, not counted.
    let by_distance = sorted_by_distance(&target, &seeds);
    assert!(
        by_distance[..3].iter().any(dead),
        "the test wants a dead peer among the 3 closest"
    );
    let want: Vec<(PeerId, u8)> = by_distance
        .iter()
        .filter(|p| !dead(p))
        .take(3)
        .map(|p| (p.id, 1))
        .collect();
    assert_eq!(want.len(), 3, "the test wants 3 live peers");
    let got: Vec<(PeerId, u8)> = it.closest().iter().map(|(p, h)| (p.id, *h)).collect();
    assert_eq!(got, want);
    // Nothing answers at all: the lookup ends after the timeouts.
    let mut silent = ClosestPeersIter::new(target, (10..13).map(peer), 3, 3, ms(100));
    while let Next::Send(_) = silent.next(ms(0)) {}
    assert_eq!(silent.next(ms(99)), Next::Waiting);
    assert_eq!(silent.next(ms(100)), Next::Finished);
    assert!(silent.closest().is_empty());
}

#[test]
fn unsolicited_answers_are_refused_by_the_iterator() {
    let mut it = ClosestPeersIter::new(Key([3; 32]), (0..3).map(peer), 3, 1, ms(100));
    assert!(!it.on_success(&peer(1).id, []), "never asked");
    assert!(!it.on_success(&peer(99).id, []), "not a candidate");
    let Next::Send(p) = it.next(ms(0)) else {
        panic!()
    };
    assert!(it.on_success(&p.id, []));
    assert!(!it.on_success(&p.id, []), "answered twice");
}

#[test]
fn a_stalled_lookup_widens_to_k_in_flight() {
    let target = Key([4; 32]);
    let mut it = ClosestPeersIter::new(target, (0..12).map(peer), 10, 2, ms(100));
    let mut out = Vec::new();
    while let Next::Send(p) = it.next(ms(0)) {
        out.push(p);
    }
    assert_eq!(out.len(), 2);
    // Two answers in a row with nothing closer: stalled.
    for p in &out {
        assert!(it.on_success(&p.id, []));
    }
    let mut more = 0;
    while let Next::Send(_) = it.next(ms(1)) {
        more += 1;
    }
    // The 8 other candidates of the k = 10 closest at once, not alpha = 2.
    assert_eq!(more, 8, "k requests in flight once stalled");
}

// ---- the routing table ----

#[test]
fn one_address_cannot_fill_a_bucket_with_made_up_ids() {
    let me = Key::of_peer(&peer(0).id);
    let mut t = Table::new(
        me,
        Limits {
            k: 20,
            max_per_ip: 1,
            max_per_subnet: 2,
        },
    );
    let attacker: SocketAddr = "203.0.113.5:7000".parse().unwrap();
    let mut added = 0;
    let mut rejected = 0;
    for i in 0..5000u32 {
        let fake = Peer::new(
            peer(1000 + i).id,
            SocketAddr::new(attacker.ip(), 1000 + i as u16),
        );
        match t.insert(ms(0), fake, ms(100)) {
            Insert::Added => added += 1,
            Insert::Rejected(_) => rejected += 1,
            other => panic!("{other:?}"),
        }
    }
    // One per bucket at most; ids are spread over ~12 buckets.
    assert!(added <= 16, "{added} fake entries");
    assert_eq!(added + rejected, 5000);
    // A /24 of addresses: two per bucket.
    let mut t2 = Table::new(
        me,
        Limits {
            k: 20,
            max_per_ip: 1,
            max_per_subnet: 2,
        },
    );
    let mut per_bucket: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..2000u32 {
        let p = peer(10_000 + i);
        let fake = Peer::new(
            p.id,
            SocketAddr::from(([203, 0, 113, (i % 250) as u8 + 1], 7000)),
        );
        if t2.insert(ms(0), fake, ms(100)) == Insert::Added {
            *per_bucket
                .entry(me.common_prefix_len(&Key::of_peer(&p.id)))
                .or_default() += 1;
        }
    }
    assert!(per_bucket.values().all(|&n| n <= 2), "{per_bucket:?}");
}

#[test]
fn a_full_bucket_keeps_a_live_oldest_entry_and_replaces_a_dead_one() {
    let me = Key([0; 32]);
    let mut t = Table::new(
        me,
        Limits {
            k: 2,
            max_per_ip: 1,
            max_per_subnet: 2,
        },
    );
    // Peers in bucket 0 (first bit differs from ours).
    let bucket0: Vec<Peer> = (1..200)
        .map(peer)
        .filter(|p| Key::of_peer(&p.id).0[0] & 0x80 != 0)
        .take(4)
        .collect();
    assert_eq!(t.insert(ms(0), bucket0[0], ms(0)), Insert::Added);
    assert_eq!(t.insert(ms(1), bucket0[1], ms(0)), Insert::Added);
    // Full: the oldest is to be pinged.
    assert_eq!(
        t.insert(ms(2), bucket0[2], ms(102)),
        Insert::PingOldest(bucket0[0])
    );
    assert_eq!(t.insert(ms(3), bucket0[3], ms(103)), Insert::Full);
    // It answers: it stays, the newcomer is dropped.
    t.pong(ms(50), &bucket0[0].id);
    assert_eq!(t.apply_pending(ms(200)), []);
    assert!(t.contains(&bucket0[0].id) && !t.contains(&bucket0[2].id));
    // Now the oldest is bucket0[1]; it does not answer.
    assert_eq!(
        t.insert(ms(300), bucket0[2], ms(400)),
        Insert::PingOldest(bucket0[1])
    );
    assert_eq!(t.apply_pending(ms(399)), []);
    assert_eq!(
        t.apply_pending(ms(400)),
        [Change::Removed(bucket0[1].id), Change::Added(bucket0[2].id)]
    );
    assert!(!t.contains(&bucket0[1].id) && t.contains(&bucket0[2].id));
    // Removing an entry reports it; removing it again changes nothing.
    assert_eq!(t.remove(&bucket0[2].id), [Change::Removed(bucket0[2].id)]);
    assert_eq!(t.remove(&bucket0[2].id), []);
}

// ---- networks of cores ----

/// Cores on virtual time; each datagram is encoded and decoded, and takes
/// the sender's plus the receiver's latency. The cores send to ids; the
/// net routes them to hosts, as the transport does.
struct Net {
    now: Time,
    nodes: BTreeMap<SocketAddr, Kademlia>,
    ids: BTreeMap<SocketAddr, PeerId>,
    hosts: BTreeMap<PeerId, SocketAddr>,
    latency_ms: BTreeMap<SocketAddr, u64>,
    dead: BTreeSet<SocketAddr>,
    in_flight: BTreeMap<(Time, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    done: Vec<(SocketAddr, QueryDone)>,
    rejected: Vec<(SocketAddr, &'static str)>,
    /// Requests, answers and table changes, as an observer sees them.
    observed: Vec<(SocketAddr, Event)>,
    datagrams: u64,
    /// A hash of every datagram sent, in order: the run's traffic in one
    /// number, to compare runs.
    traffic: DefaultHasher,
}

impl Net {
    fn new(n: u32, config: &Config, clients: u32) -> Net {
        Net::with_seed(n, config, clients, 0)
    }

    /// As [`Net::new`], with node `i`'s RNG seeded from `rng_seed` and `i`.
    fn with_seed(n: u32, config: &Config, clients: u32, rng_seed: u64) -> Net {
        let mut net = Net {
            now: Time::ZERO,
            nodes: BTreeMap::new(),
            ids: BTreeMap::new(),
            hosts: BTreeMap::new(),
            latency_ms: BTreeMap::new(),
            dead: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            done: Vec::new(),
            rejected: Vec::new(),
            observed: Vec::new(),
            datagrams: 0,
            traffic: DefaultHasher::new(),
        };
        let mut lat = ChaCha8Rng::seed_from_u64(99);
        for i in 0..n + clients {
            let identity = Identity::from_seed(seed(i));
            let mut k = Kademlia::new(
                identity.peer_id(),
                identity.signing_key().clone(),
                config.clone(),
                ChaCha8Rng::seed_from_u64(rng_seed.wrapping_mul(1_000_003) + u64::from(i)),
            );
            k.set_server(Time::ZERO, i < n);
            net.nodes.insert(addr(i), k);
            net.ids.insert(addr(i), identity.peer_id());
            net.hosts.insert(identity.peer_id(), addr(i));
            net.latency_ms.insert(addr(i), lat.gen_range(5..40));
        }
        net
    }

    fn drain(&mut self, at: SocketAddr) {
        let node = self.nodes.get_mut(&at).unwrap();
        let from = self.ids[&at];
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { to, message } => {
                    let Some(&to) = self.hosts.get(&to) else {
                        continue;
                    };
                    let mut bytes = Vec::new();
                    message::encode(
                        &Datagram {
                            from,
                            message: W::Dht(message),
                        },
                        &mut bytes,
                    )
                    .expect("encodable");
                    self.seq += 1;
                    self.datagrams += 1;
                    bytes.hash(&mut self.traffic);
                    let l = self.latency_ms[&at] + self.latency_ms[&to];
                    self.in_flight
                        .insert((self.now + ms(l), self.seq), (at, to, bytes));
                }
                Output::Event(Event::QueryDone(d)) => self.done.push((at, *d)),
                Output::Event(Event::Rejected { what }) => self.rejected.push((at, what)),
                Output::Event(
                    e @ (Event::Request { .. } | Event::Answer { .. } | Event::Table(_)),
                ) => self.observed.push((at, e)),
            }
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if self.dead.contains(&to) {
            return;
        }
        let Some(node) = self.nodes.get_mut(&to) else {
            return;
        };
        let d = message::decode(bytes).expect("decodable");
        let W::Dht(m) = d.message else { panic!() };
        node.handle_message(self.now, Peer::new(d.from, from), m);
        self.drain(to);
    }

    fn run_until(&mut self, end: Time) {
        loop {
            let next_dg = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self
                .nodes
                .iter()
                .filter(|(a, _)| !self.dead.contains(*a))
                .filter_map(|(_, n)| n.poll_timeout())
                .min();
            let Some(next) = [next_dg, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_dg == Some(next) {
                let (_, (from, to, bytes)) = self.in_flight.pop_first().unwrap();
                self.deliver(from, to, &bytes);
            } else {
                let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
                for a in addrs {
                    if self.dead.contains(&a) {
                        continue;
                    }
                    let n = self.nodes.get_mut(&a).unwrap();
                    if n.poll_timeout().is_some_and(|t| t <= next) {
                        n.handle_timeout(next);
                        self.drain(a);
                    }
                }
            }
        }
        self.now = end;
    }

    /// Every node bootstraps through node 0, one after the other.
    fn bootstrap_all(&mut self) {
        let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
        for a in addrs.into_iter().skip(1) {
            let now = self.now;
            self.nodes.get_mut(&a).unwrap().bootstrap(now, peer(0));
            self.drain(a);
            let t = self.now + ms(300);
            self.run_until(t);
        }
        let t = self.now + ms(5000);
        self.run_until(t);
    }

    fn command(&mut self, at: SocketAddr, c: Command) {
        let now = self.now;
        self.nodes.get_mut(&at).unwrap().command(now, c);
        self.drain(at);
    }

    fn last_done(&self, at: SocketAddr, kind: QueryKind) -> &QueryDone {
        &self
            .done
            .iter()
            .rev()
            .find(|(a, d)| *a == at && d.kind == kind)
            .expect("query done")
            .1
    }

    /// The live server closest to `key`.
    fn true_closest(&self, key: &Key, servers: u32, except: SocketAddr) -> PeerId {
        (0..servers)
            .filter(|&i| !self.dead.contains(&addr(i)) && addr(i) != except)
            .map(|i| self.ids[&addr(i)])
            .min_by_key(|id| Key::of_peer(id).distance(key))
            .unwrap()
    }
}

fn on() -> Config {
    Config {
        enabled: true,
        ..Config::default()
    }
}

#[test]
fn lookups_find_the_closest_server_in_few_hops() {
    let mut net = Net::new(150, &on(), 10);
    net.bootstrap_all();
    // Servers enter each other's tables; clients do not.
    let client_id = net.ids[&addr(155)];
    assert!(net.nodes.values().all(|n| !n.table().contains(&client_id)));
    assert!(net.nodes[&addr(3)].table().len() >= 20);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut hops = Vec::new();
    for q in 0..40u32 {
        let from = addr(rng.gen_range(0..160));
        let key = Key(rng.gen());
        net.command(from, Command::FindNode(key));
        let t = net.now + ms(10_000);
        net.run_until(t);
        let d = net.last_done(from, QueryKind::FindNode).clone();
        assert_eq!(d.target, key, "query {q}");
        assert!(d.success);
        // The querier does not find itself.
        let want = net.true_closest(&key, 150, from);
        assert_eq!(d.closest, Some(want), "query {q}");
        hops.push(d.hops);
    }
    let mean = hops.iter().map(|&h| f64::from(h)).sum::<f64>() / hops.len() as f64;
    assert!(mean <= 4.0, "mean hops {mean}");
    // The table events replay to every table's size.
    for (a, node) in &net.nodes {
        let size: i64 = net
            .observed
            .iter()
            .filter(|(at, _)| at == a)
            .map(|(_, e)| match e {
                Event::Table(Change::Added(_)) => 1,
                Event::Table(Change::Removed(_)) => -1,
                _ => 0,
            })
            .sum();
        assert_eq!(size, node.table().len() as i64, "{a}");
    }
    // A lookup's request events are its requests, each answer names an
    // asked request.
    let (from, d) = net.done.last().cloned().unwrap();
    let ids: BTreeSet<u64> = net
        .observed
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Request { target, id, .. } if *at == from && *target == d.target => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len() as u32, d.requests);
    let answered = net
        .observed
        .iter()
        .filter(|(at, e)| *at == from && matches!(e, Event::Answer { id, .. } if ids.contains(id)))
        .count();
    assert!(answered >= 20 && answered <= ids.len(), "{answered}");
}

#[test]
fn providers_are_found_and_expire_after_the_ttl_without_republish() {
    let config = Config {
        provider_ttl: Duration::from_secs(600),
        republish_interval: Duration::from_secs(300),
        refresh_interval: Duration::from_secs(3600),
        ..on()
    };
    let mut net = Net::new(60, &config, 5);
    net.bootstrap_all();
    let key = Key::of_content(b"topic: rust");
    net.command(addr(62), Command::Provide(vec![key]));
    let t = net.now + ms(10_000);
    net.run_until(t);
    let p = net.last_done(addr(62), QueryKind::Provide);
    assert!(p.success && p.requests > 20);
    net.command(addr(7), Command::GetProviders(key));
    let t = net.now + ms(10_000);
    net.run_until(t);
    let found = net.last_done(addr(7), QueryKind::GetProviders);
    assert!(found.success);
    // The answer names the provider, with the address to reach it at.
    let provider = found.providers.iter().find(|p| p.addr == addr(62));
    assert_eq!(found.providers.len(), 1, "{:?}", found.providers);
    assert!(provider.is_some(), "{:?}", found.providers);
    assert!(net
        .last_done(addr(62), QueryKind::Provide)
        .providers
        .is_empty());
    // Republished every 5 min: still there after 20 min.
    let t = net.now + Duration::from_secs(1200);
    net.run_until(t);
    net.command(addr(8), Command::GetProviders(key));
    let t = net.now + ms(10_000);
    net.run_until(t);
    assert!(net.last_done(addr(8), QueryKind::GetProviders).success);
    // The provider goes away: after the TTL the records are gone.
    net.dead.insert(addr(62));
    let t = net.now + Duration::from_secs(700);
    net.run_until(t);
    net.command(addr(9), Command::GetProviders(key));
    let t = net.now + ms(10_000);
    net.run_until(t);
    let miss = net.last_done(addr(9), QueryKind::GetProviders);
    assert!(!miss.success);
}

#[test]
fn a_provide_before_any_server_is_known_waits_for_the_bootstrap() {
    let mut net = Net::new(30, &on(), 0);
    let late = addr(29);
    // Everyone but the last node bootstraps; the last one is told to
    // provide before it knows anybody.
    let addrs: Vec<SocketAddr> = net.nodes.keys().copied().collect();
    for a in addrs.into_iter().skip(1).filter(|a| *a != late) {
        let now = net.now;
        net.nodes.get_mut(&a).unwrap().bootstrap(now, peer(0));
        net.drain(a);
        let t = net.now + ms(300);
        net.run_until(t);
    }
    let key = Key::of_content(b"early");
    net.command(late, Command::Provide(vec![key]));
    let t = net.now + ms(5_000);
    net.run_until(t);
    assert!(
        !net.done.iter().any(|(a, _)| *a == late),
        "nothing to ask yet: the query waits"
    );
    let now = net.now;
    net.nodes.get_mut(&late).unwrap().bootstrap(now, peer(0));
    net.drain(late);
    let t = net.now + ms(10_000);
    net.run_until(t);
    let p = net.last_done(late, QueryKind::Provide);
    assert!(p.success && p.requests > 5, "{p:?}");
    net.command(addr(3), Command::GetProviders(key));
    let t = net.now + ms(10_000);
    net.run_until(t);
    assert!(net.last_done(addr(3), QueryKind::GetProviders).success);
}

#[test]
fn provide_sweep_covers_every_key_with_one_lookup_per_region() {
    let config = Config {
        sweep: true,
        republish_interval: Duration::from_secs(640),
        refresh_interval: Duration::from_secs(36_000),
        ..on()
    };
    let mut net = Net::new(120, &config, 1);
    net.bootstrap_all();
    let keys: Vec<Key> = (0..600u32)
        .map(|i| Key::of_content(&i.to_be_bytes()))
        .collect();
    let provider = addr(120);
    let before = net.datagrams;
    net.command(provider, Command::Provide(keys.clone()));
    let t = net.now + Duration::from_secs(640);
    net.run_until(t);
    let regions: Vec<&QueryDone> = net
        .done
        .iter()
        .filter(|(a, d)| *a == provider && d.kind == QueryKind::SweepRegion)
        .map(|(_, d)| d)
        .collect();
    // 120 servers, k = 20: regions of 2 bits, 4 lookups for 600 keys.
    assert!(regions.len() <= 8, "{} regions", regions.len());
    assert_eq!(regions.iter().map(|d| d.keys).sum::<u32>(), 600);
    let sent = net.datagrams - before;
    assert!(sent < 600 * 20 / 4, "{sent} datagrams for 600 keys");
    // Every key is findable.
    let mut found = 0;
    for k in keys.iter().step_by(20) {
        net.command(addr(3), Command::GetProviders(*k));
        let t = net.now + ms(10_000);
        net.run_until(t);
        found += usize::from(net.last_done(addr(3), QueryKind::GetProviders).success);
    }
    assert_eq!(found, 30);
}

#[test]
fn values_are_signed_and_need_a_quorum() {
    let mut net = Net::new(40, &on(), 2);
    net.bootstrap_all();
    let key = Key::of_content(b"name");
    net.command(
        addr(41),
        Command::PutValue {
            key,
            seq: 1,
            value: Bytes::from_static(b"v1"),
        },
    );
    let t = net.now + ms(10_000);
    net.run_until(t);
    assert!(net.last_done(addr(41), QueryKind::PutValue).success);
    net.command(
        addr(41),
        Command::PutValue {
            key,
            seq: 2,
            value: Bytes::from_static(b"v2"),
        },
    );
    let t = net.now + ms(10_000);
    net.run_until(t);
    net.command(addr(5), Command::GetValue(key));
    let t = net.now + ms(10_000);
    net.run_until(t);
    let got = net.last_done(addr(5), QueryKind::GetValue).clone();
    assert!(got.success);
    let r = got.record.expect("a record");
    assert_eq!((r.seq, &r.value[..]), (2, &b"v2"[..]));
    assert!(r.verify());
    // A forged record (tampered value) is refused by servers.
    let mut forged = (*r).clone();
    forged.value = Bytes::from_static(b"evil");
    forged.seq = 3;
    let now = net.now;
    let server = net.nodes.get_mut(&addr(6)).unwrap();
    server.handle_message(
        now,
        peer(41),
        Message::PutValue {
            id: 1,
            server: false,
            record: Box::new(forged),
        },
    );
    net.drain(addr(6));
    assert!(net
        .rejected
        .iter()
        .any(|(a, w)| *a == addr(6) && w.contains("signature")));
}

/// `key` with bit `bit` (0 = the most significant) flipped: a key that
/// shares exactly `bit` leading bits with `key`.
fn flip_bit(key: &Key, bit: u32) -> Key {
    let mut k = *key;
    k.0[(bit / 8) as usize] ^= 0x80 >> (bit % 8);
    k
}

#[test]
fn unsolicited_and_far_responses_are_ignored_and_counted() {
    let mut net = Net::new(30, &on(), 0);
    net.bootstrap_all();
    let victim = addr(4);
    let before = net.nodes[&victim].table().len();
    let now = net.now;
    let node = net.nodes.get_mut(&victim).unwrap();
    // A response to no request.
    node.handle_message(
        now,
        peer(500),
        Message::Nodes {
            id: 42,
            peers: (600..620).map(peer).collect(),
        },
    );
    assert_eq!(node.stats().unsolicited, 1);
    assert_eq!(node.table().len(), before, "nothing learnt");
    // A lookup for a target that shares exactly 12 bits with a peer the
    // victim knows: that peer is asked, and with far_slack_bits = 8 it may
    // name peers sharing 4 or more bits with the target, not 3 or fewer.
    let slack = on().far_slack_bits;
    let responder = peer(7);
    assert!(node.table().contains(&responder.id), "the victim knows it");
    let responder_cpl = 12;
    let target = flip_bit(&Key::of_peer(&responder.id), responder_cpl);
    node.command(now, Command::FindNode(target));
    let (mut id, mut other) = (None, None);
    while let Some(out) = node.poll_output() {
        if let Output::Send {
            to,
            message: Message::FindNode { id: i, .. },
        } = out
        {
            if to == responder.id {
                id = Some(i);
            } else {
                other = Some(i);
            }
        }
    }
    let id = id.expect("a request to the peer closest to the target");
    let other = other.expect("alpha requests out");
    // Peers on either side of the rule's edge: the farthest still allowed,
    // and the nearest refused.
    let with_cpl = |cpl: u32| -> Vec<Peer> {
        (1000..4000)
            .map(peer)
            .filter(|p| Key::of_peer(&p.id).common_prefix_len(&target) == cpl)
            .take(10)
            .collect()
    };
    let allowed = with_cpl(responder_cpl - slack);
    let far = with_cpl(responder_cpl - slack - 1);
    assert_eq!((allowed.len(), far.len()), (10, 10));
    let answer: Vec<Peer> = allowed.iter().chain(&far).copied().collect();
    let node = net.nodes.get_mut(&victim).unwrap();
    node.handle_message(now, responder, Message::Nodes { id, peers: answer });
    assert_eq!(node.stats().far_peers, 10, "only the 10 far peers count");
    let mut rejected = 0;
    let mut asked = Vec::new();
    while let Some(out) = node.poll_output() {
        match out {
            Output::Event(Event::Rejected { what }) => {
                assert_eq!(what, "peers far from the target in a response");
                rejected += 1;
            }
            Output::Send {
                to,
                message: Message::FindNode { .. },
            } => asked.push(to),
            _ => {}
        }
    }
    assert_eq!(rejected, 1, "one rejection per response");
    // The far peers never become candidates of the lookup.
    assert!(
        !far.iter().any(|p| asked.contains(&p.id)),
        "a far peer was asked"
    );
    // The same id again, or another request's id from the wrong peer:
    // unsolicited.
    node.handle_message(now, responder, Message::Nodes { id, peers: vec![] });
    assert_eq!(node.stats().unsolicited, 2);
    node.handle_message(
        now,
        responder,
        Message::Nodes {
            id: other,
            peers: vec![],
        },
    );
    assert_eq!(node.stats().unsolicited, 3);
}

#[test]
fn clients_do_not_answer_and_same_seed_same_traffic() {
    let run = |seed| {
        let mut net = Net::with_seed(30, &on(), 3, seed);
        net.bootstrap_all();
        net.command(addr(31), Command::FindNode(Key([9; 32])));
        let t = net.now + ms(5000);
        net.run_until(t);
        (
            net.traffic.finish(),
            net.datagrams,
            net.done.len(),
            net.last_done(addr(31), QueryKind::FindNode).clone(),
        )
    };
    let a = run(1);
    assert_eq!(a, run(1));
    // Another seed, other traffic (request ids at least): the nodes draw
    // from the RNG they are given.
    assert_ne!(a.0, run(2).0, "seeds 1 and 2 sent the same datagrams");
    let mut net = Net::new(2, &on(), 1);
    let now = net.now;
    let client = net.nodes.get_mut(&addr(2)).unwrap();
    client.handle_message(
        now,
        peer(0),
        Message::FindNode {
            id: 1,
            server: true,
            target: Key([0; 32]),
        },
    );
    assert_eq!(client.stats().requests_as_client, 1);
    net.drain(addr(2));
    // It learns the server (and looks itself up through it), but answers
    // nothing.
    for (_, _, bytes) in net.in_flight.values() {
        let d = message::decode(bytes).unwrap();
        assert!(
            !matches!(d.message, W::Dht(Message::Nodes { .. })),
            "a client does not answer"
        );
    }
}

#[test]
fn bootstrap_pings_the_contact_by_id_and_only_its_answer_counts() {
    let identity = Identity::from_seed(seed(1));
    let rng = ChaCha8Rng::seed_from_u64(1);
    let mut node = Kademlia::new(
        identity.peer_id(),
        identity.signing_key().clone(),
        on(),
        rng,
    );
    let contact = peer(0);
    node.bootstrap(ms(0), contact);
    let Some(Output::Send {
        to,
        message: Message::Ping { id, .. },
    }) = node.poll_output()
    else {
        panic!("a ping to the contact")
    };
    assert_eq!(to, contact.id);
    // An answer from another peer is unsolicited; the contact's enters it.
    let pong = Message::Pong { id, server: true };
    node.handle_message(ms(10), peer(7), pong.clone());
    assert_eq!(node.stats().unsolicited, 1);
    node.handle_message(ms(20), contact, pong);
    assert!(node.table().contains(&contact.id));
}

#[test]
fn peer_records_are_every_node_record_in_a_response() {
    let records = |m: &Message| m.peer_records().map(|p| p.id).collect::<Vec<_>>();
    let ids = |r: std::ops::Range<u32>| r.map(|i| peer(i).id).collect::<Vec<_>>();
    let nodes = Message::Nodes {
        id: 1,
        peers: (0..3).map(peer).collect(),
    };
    assert_eq!(records(&nodes), ids(0..3));
    let providers = Message::Providers {
        id: 1,
        providers: (3..5).map(peer).collect(),
        closer: (5..8).map(peer).collect(),
    };
    assert_eq!(records(&providers), ids(3..8));
    let value = Message::Value {
        id: 1,
        record: None,
        closer: (8..9).map(peer).collect(),
    };
    assert_eq!(records(&value), ids(8..9));
    let ping = Message::Ping {
        id: 1,
        server: true,
    };
    assert!(records(&ping).is_empty());
}

#[test]
fn config_invariants_are_checked() {
    assert!(Config::default().validate().is_ok());
    let bad = |c: Config, field: &str| {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    };
    bad(
        Config {
            k: 0,
            ..Config::default()
        },
        "dht.k",
    );
    bad(
        Config {
            k: 21,
            ..Config::default()
        },
        "dht.k",
    );
    bad(
        Config {
            alpha: 0,
            ..Config::default()
        },
        "dht.alpha",
    );
    bad(
        Config {
            k: 5,
            alpha: 6,
            ..Config::default()
        },
        "dht.alpha",
    );
    bad(
        Config {
            quorum: 21,
            ..Config::default()
        },
        "dht.quorum",
    );
    bad(
        Config {
            republish_interval: Duration::from_secs(49 * 3600),
            ..Config::default()
        },
        "dht.republish_interval",
    );
    bad(
        Config {
            request_timeout: Duration::ZERO,
            ..Config::default()
        },
        "dht.request_timeout",
    );
    bad(
        Config {
            max_per_ip: 0,
            ..Config::default()
        },
        "dht.max_per_ip",
    );
    bad(
        Config {
            max_per_ip: 3,
            max_per_subnet: 2,
            ..Config::default()
        },
        "dht.max_per_subnet",
    );
    let text = "k = 10\nalpha = 10\nsweep = true\nrequest_timeout = \"1s\"";
    let c: Config = toml::from_str(text).unwrap();
    assert_eq!((c.k, c.alpha, c.sweep), (10, 10, true));
    assert!(toml::from_str::<Config>("kk = 1").is_err());
}
