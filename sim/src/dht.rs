//! The DHT workload and its measurements.
//!
//! A scenario's `[dht]` table asks for random FIND_NODE lookups from random
//! running hosts, hosts that provide keys (re-provided whenever such a host
//! comes back from churn), and rounds of GET_PROVIDERS probes for
//! published keys.
//!
//! What is measured is observed, not the nodes' own counts: each lookup's
//! requests and their answers are the datagrams the network carries (a
//! DHT datagram's label carries its request id, which the node's
//! [`kad::Event::Request`] ties to the lookup); its hops are the depth of
//! the chain of answers that led to its closest answering peer, from the
//! peers each answer named ([`kad::Event::Answer`]); routing-table sizes
//! follow each node's table events ([`kad::Event::Table`]); a probe finds
//! a key only through a provider that is running and was asked to provide
//! it. The node's `QueryDone` marks a query's end; its own figures (hops,
//! requests, table size, found) are kept apart under `reported_by_nodes`
//! for comparison. The outside knowledge used: which live host is the true
//! closest server to a lookup's target (from the hosts' identities and the
//! reachability each node reported), and which host provides which key.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use grove_node::proto::kad::{self, table::Change, Distance, Key, QueryKind};
use grove_node::wire::tag::dht as dht_tag;
use grove_node::wire::{request_id_prefix, Label, Protocol};
use grove_node::PeerId;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::report::round6;

/// The `[dht]` table of a scenario.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhtScenario {
    /// Random FIND_NODE lookups.
    #[serde(default)]
    pub lookups: Option<Lookups>,
    /// Hosts that provide keys.
    #[serde(default)]
    pub provide: Option<Provide>,
    /// Rounds of GET_PROVIDERS for published keys (availability).
    #[serde(default)]
    pub probes: Option<Probes>,
}

/// `count` lookups of random keys, `interval_ms` apart from `start_s`, each
/// from a random running host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookups {
    pub start_s: f64,
    pub count: usize,
    pub interval_ms: f64,
}

/// At `at_s`, `providers` random running hosts (of `group`, if given) each
/// provide `keys_each` keys of their own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provide {
    pub at_s: f64,
    pub providers: usize,
    pub keys_each: usize,
    #[serde(default)]
    pub group: Option<String>,
}

/// `rounds` rounds, `interval_s` apart from `start_s`, of `count`
/// GET_PROVIDERS each: a random published key from a random running host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    pub start_s: f64,
    pub interval_s: f64,
    pub rounds: usize,
    pub count: usize,
}

impl DhtScenario {
    /// What is wrong with the table, as (key, message), given the node's
    /// DHT settings (already checked by `node::Config::validate`).
    pub fn check(&self, node: &kad::Config) -> Result<(), (String, String)> {
        if !node.enabled {
            return Err((
                "node.dht.enabled".into(),
                "a [dht] workload needs the DHT on (`[node.dht] enabled = true`)".into(),
            ));
        }
        let positive = |key: &str, v: f64| {
            (v.is_finite() && v >= 0.0).then_some(()).ok_or((
                format!("dht.{key}"),
                format!("must be a finite number >= 0, not {v}"),
            ))
        };
        if let Some(l) = &self.lookups {
            positive("lookups.start_s", l.start_s)?;
            positive("lookups.interval_ms", l.interval_ms)?;
        }
        if let Some(p) = &self.provide {
            positive("provide.at_s", p.at_s)?;
            if p.providers == 0 || p.keys_each == 0 {
                return Err((
                    "dht.provide.providers".into(),
                    "providers and keys_each must be at least 1".into(),
                ));
            }
            if p.keys_each > node.max_provided_keys {
                return Err((
                    "dht.provide.keys_each".into(),
                    format!(
                        "over node.dht.max_provided_keys ({})",
                        node.max_provided_keys
                    ),
                ));
            }
        }
        if let Some(p) = &self.probes {
            positive("probes.start_s", p.start_s)?;
            if !(p.interval_s.is_finite() && p.interval_s > 0.0) {
                return Err(("dht.probes.interval_s".into(), "must be positive".into()));
            }
            if self.provide.is_none() {
                return Err((
                    "dht.probes".into(),
                    "probes look for provided keys: add [dht.provide]".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The key number `j` provided by host `host` (the same in every run).
#[must_use]
pub fn provided_key(host: usize, j: usize) -> Key {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(b"grove-sim-provided");
    b.extend_from_slice(&(host as u64).to_be_bytes());
    b.extend_from_slice(&(j as u64).to_be_bytes());
    Key::of_content(&b)
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Lookup(usize),
    Probe(usize),
}

/// A lookup as observed when it ended.
#[derive(Clone, Copy, Debug)]
struct LookupDone {
    /// Depth of the answering peer closest to the target (0: none
    /// answered).
    hops: u8,
    /// From the command to the node's `QueryDone`, on the observer's clock.
    latency_ns: u64,
    /// Request datagrams seen on the wire.
    requests: u32,
    /// Answer datagrams to them seen on the wire before the lookup ended.
    answers: u32,
    /// The answering peer closest to the target is the true closest live
    /// server.
    exact: bool,
    /// The origin's routing table size, from its table events.
    table_size: u32,
    /// The same, as the node's `QueryDone` gives them.
    reported: Reported,
}

/// A lookup's figures from its origin's own `QueryDone`.
#[derive(Clone, Copy, Debug)]
struct Reported {
    hops: u8,
    requests: u32,
    exact: bool,
    table_size: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct LookupRec {
    issued_ns: u64,
    expected: Option<PeerId>,
    done: Option<LookupDone>,
}

/// A probe: its round, whether it found a live genuine provider (as
/// observed) and whether the node said it found one, once it ended.
#[derive(Clone, Copy, Debug)]
struct ProbeRec {
    round: usize,
    done: Option<(bool, bool)>,
}

/// What the observer follows of a running lookup or probe (of one origin
/// and target: two at once for the same key from the same host are
/// followed as one).
#[derive(Clone, Debug, Default)]
struct Follow {
    /// Depth of each peer the origin learned of from an answer: one more
    /// than the depth of the first answerer that named it.
    named: FxHashMap<PeerId, u8>,
    /// The label prefixes of its requests' ids.
    requests: Vec<u64>,
    sent: u32,
    answers: u32,
    /// The answering peer closest to the target: (distance, peer, depth).
    closest: Option<(Distance, PeerId, u8)>,
    /// An answer carried a provider that is live and published the key.
    provider_found: bool,
}

/// A request of a followed query.
#[derive(Clone, Copy, Debug)]
struct Request {
    origin: u32,
    target: Key,
    to: PeerId,
    depth: u8,
    on_wire: bool,
}

/// What the observer saw of the DHT.
#[derive(Default)]
pub struct DhtRec {
    pub enabled: bool,
    /// Each host's id and DHT key, and whether it is (as it last said) a
    /// server.
    ids: Vec<PeerId>,
    keys: Vec<Key>,
    host_of: FxHashMap<PeerId, u32>,
    server: Vec<bool>,
    running: Vec<bool>,
    /// Each host's routing table (host indices), from its table events.
    tables: Vec<Vec<u32>>,
    lookups: Vec<LookupRec>,
    probes: Vec<ProbeRec>,
    round_at_ns: Vec<u64>,
    pending: BTreeMap<(u32, Key), VecDeque<Pending>>,
    follow: BTreeMap<(u32, Key), Follow>,
    /// Requests of followed queries, by the prefix of their id a label
    /// carries.
    requests: FxHashMap<u64, Request>,
    /// Lookup requests one host put on the wire at one instant, not yet
    /// claimed by its `Request` event (the driver sends a step's datagrams
    /// before it hands over the step's events): (instant, host, prefixes).
    unclaimed: (u64, u32, Vec<u64>),
    provider: Vec<bool>,
    /// (key, host): what each provider host was asked to provide.
    provided: BTreeSet<(Key, u32)>,
    published: usize,
    /// The providers' first republish cycle: [start, end).
    cycle: Option<(u64, u64)>,
    cycle_lookups: u64,
    cycle_datagrams: u64,
    cycle_keys: u64,
    cycle_failed: u64,
    queries: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<&'static str, u64>,
}

fn kind_name(k: QueryKind) -> &'static str {
    match k {
        QueryKind::FindNode => "find_node",
        QueryKind::SelfLookup => "self_lookup",
        QueryKind::Refresh => "refresh",
        QueryKind::GetProviders => "get_providers",
        QueryKind::Provide => "provide",
        QueryKind::SweepRegion => "sweep_region",
        QueryKind::PutValue => "put_value",
        QueryKind::GetValue => "get_value",
    }
}

/// Whether a DHT tag is a lookup's request, or the answer to one.
fn is_lookup_request(tag: u8) -> bool {
    matches!(
        tag,
        dht_tag::FIND_NODE | dht_tag::GET_PROVIDERS | dht_tag::GET_VALUE
    )
}

fn is_lookup_answer(tag: u8) -> bool {
    matches!(tag, dht_tag::NODES | dht_tag::PROVIDERS | dht_tag::VALUE)
}

impl DhtRec {
    /// `servers_by_default`: without NAT traversal every node is a server.
    pub fn new(enabled: bool, hosts: usize, servers_by_default: bool) -> Self {
        if !enabled {
            return DhtRec::default();
        }
        DhtRec {
            enabled,
            ids: vec![PeerId([0; 32]); hosts],
            keys: vec![Key([0; 32]); hosts],
            server: vec![servers_by_default; hosts],
            running: vec![false; hosts],
            tables: vec![Vec::new(); hosts],
            provider: vec![false; hosts],
            ..DhtRec::default()
        }
    }

    /// Host `host` started a new life (with an empty routing table).
    pub fn host_started(&mut self, host: u32, id: &PeerId) {
        if self.enabled {
            let h = host as usize;
            self.ids[h] = *id;
            self.keys[h] = Key::of_peer(id);
            self.host_of.insert(*id, host);
            self.running[h] = true;
            self.tables[h].clear();
        }
    }

    /// Host `host` stopped running.
    pub fn host_stopped(&mut self, host: u32) {
        if self.enabled {
            self.running[host as usize] = false;
        }
    }

    /// Host `host` reported its reachability.
    pub fn set_server(&mut self, host: u32, server: bool) {
        if self.enabled {
            self.server[host as usize] = server;
        }
    }

    /// The running server closest to `target`, `origin` left out.
    #[must_use]
    pub fn closest_server(&self, target: &Key, running: &[bool], origin: usize) -> Option<PeerId> {
        (0..self.keys.len())
            .filter(|&h| running[h] && self.server[h] && h != origin)
            .min_by_key(|&h| self.keys[h].distance(target))
            .map(|h| self.ids[h])
    }

    pub fn lookup_issued(&mut self, now: u64, origin: u32, target: Key, expected: Option<PeerId>) {
        self.issue(origin, target, Pending::Lookup(self.lookups.len()));
        self.lookups.push(LookupRec {
            issued_ns: now,
            expected,
            done: None,
        });
    }

    fn issue(&mut self, origin: u32, target: Key, p: Pending) {
        self.pending
            .entry((origin, target))
            .or_default()
            .push_back(p);
        self.follow.entry((origin, target)).or_default();
    }

    /// Host `host` was asked to provide `keys` (the first time: the cycle
    /// starts).
    pub fn provider_started(&mut self, host: u32, keys: &[Key], now: u64, cycle_ns: u64) {
        self.provider[host as usize] = true;
        self.published += keys.len();
        self.provided.extend(keys.iter().map(|k| (*k, host)));
        self.cycle.get_or_insert((now, now + cycle_ns));
    }

    pub fn round_started(&mut self, now: u64) -> usize {
        self.round_at_ns.push(now);
        self.round_at_ns.len() - 1
    }

    pub fn probe_issued(&mut self, round: usize, origin: u32, key: Key) {
        self.issue(origin, key, Pending::Probe(self.probes.len()));
        self.probes.push(ProbeRec { round, done: None });
    }

    fn in_cycle(&self, now: u64) -> bool {
        self.cycle.is_some_and(|(a, b)| now >= a && now < b)
    }

    /// Host `host` reported `event` at `now`.
    pub fn event(&mut self, host: u32, now: u64, event: kad::Event) {
        match event {
            kad::Event::Rejected { what } => *self.rejected.entry(what).or_default() += 1,
            kad::Event::Request { target, id, to } => self.request(host, now, target, id, to),
            kad::Event::Answer {
                id,
                closer,
                providers,
            } => self.answer(host, id, &closer, &providers),
            kad::Event::Table(change) => self.table_changed(host, change),
            kad::Event::QueryDone(d) => self.query_done(host, now, &d),
        }
    }

    fn table_changed(&mut self, host: u32, change: Change) {
        let table = &mut self.tables[host as usize];
        match change {
            Change::Added(p) => {
                if let Some(&h) = self.host_of.get(&p) {
                    table.push(h);
                }
            }
            Change::Removed(p) => {
                if let Some(&h) = self.host_of.get(&p) {
                    table.retain(|&x| x != h);
                }
            }
        }
    }

    /// A lookup of `host` asked `to`: its depth is 1 when `to` is in the
    /// origin's table, else that of the answer that named it.
    fn request(&mut self, host: u32, now: u64, target: Key, id: u64, to: PeerId) {
        let Some(f) = self.follow.get_mut(&(host, target)) else {
            return;
        };
        let in_table = self
            .host_of
            .get(&to)
            .is_some_and(|h| self.tables[host as usize].contains(h));
        let depth = match f.named.get(&to) {
            Some(&d) if !in_table => d,
            _ => 1,
        };
        let prefix = request_id_prefix(id);
        let (at, src, seen) = &mut self.unclaimed;
        let on_wire = (*at, *src) == (now, host)
            && seen
                .iter()
                .position(|&p| p == prefix)
                .map(|i| seen.swap_remove(i))
                .is_some();
        f.requests.push(prefix);
        f.sent += u32::from(on_wire);
        self.requests.insert(
            prefix,
            Request {
                origin: host,
                target,
                to,
                depth,
                on_wire,
            },
        );
    }

    /// A lookup of `host` took the answer to request `id`.
    fn answer(&mut self, host: u32, id: u64, closer: &[PeerId], providers: &[PeerId]) {
        let Some(r) = self
            .requests
            .get(&request_id_prefix(id))
            .filter(|r| r.origin == host)
        else {
            return;
        };
        let Some(f) = self.follow.get_mut(&(host, r.target)) else {
            return;
        };
        for p in closer {
            f.named.entry(*p).or_insert(r.depth.saturating_add(1));
        }
        let d = Key::of_peer(&r.to).distance(&r.target);
        if f.closest.is_none_or(|c| d < c.0) {
            f.closest = Some((d, r.to, r.depth));
        }
        let genuine = |p: &PeerId| {
            self.host_of.get(p).is_some_and(|&h| {
                self.running[h as usize] && self.provided.contains(&(r.target, h))
            })
        };
        if providers.iter().any(genuine) {
            f.provider_found = true;
        }
    }

    fn query_done(&mut self, host: u32, now: u64, d: &kad::QueryDone) {
        *self.queries.entry(kind_name(d.kind)).or_default() += 1;
        if matches!(d.kind, QueryKind::Provide | QueryKind::SweepRegion)
            && self.provider[host as usize]
            && self.in_cycle(now)
        {
            self.cycle_lookups += 1;
            self.cycle_keys += u64::from(d.keys);
            self.cycle_failed += u64::from(!d.success);
        }
        if !matches!(d.kind, QueryKind::FindNode | QueryKind::GetProviders) {
            return;
        }
        let key = (host, d.target);
        let Some(queue) = self.pending.get_mut(&key) else {
            return;
        };
        let Some(p) = queue.pop_front() else { return };
        let last = queue.is_empty();
        if last {
            self.pending.remove(&key);
        }
        let f = if last {
            let f = self.follow.remove(&key).unwrap_or_default();
            for prefix in &f.requests {
                self.requests.remove(prefix);
            }
            f
        } else {
            self.follow.get(&key).cloned().unwrap_or_default()
        };
        match p {
            Pending::Lookup(i) if d.kind == QueryKind::FindNode => {
                let l = &mut self.lookups[i];
                let expected = l.expected;
                l.done = Some(LookupDone {
                    hops: f.closest.map_or(0, |c| c.2),
                    latency_ns: now.saturating_sub(l.issued_ns),
                    requests: f.sent,
                    answers: f.answers,
                    exact: f.closest.is_some() && f.closest.map(|c| c.1) == expected,
                    table_size: self.tables[host as usize].len() as u32,
                    reported: Reported {
                        hops: d.hops,
                        requests: d.requests,
                        exact: d.closest.is_some() && d.closest == expected,
                        table_size: d.table_size,
                    },
                });
            }
            Pending::Probe(i) if d.kind == QueryKind::GetProviders => {
                self.probes[i].done = Some((f.provider_found, d.success));
            }
            _ => {}
        }
    }

    /// Host `src` sent a datagram at `now`.
    pub fn datagram(&mut self, now: u64, src: u32, label: Label) {
        if label.protocol() != Some(Protocol::Dht) {
            return;
        }
        if self.provider.get(src as usize).copied().unwrap_or(false) && self.in_cycle(now) {
            self.cycle_datagrams += 1;
        }
        let (Some(tag), Some(prefix)) = (label.tag(), label.dht_request_prefix()) else {
            return;
        };
        if is_lookup_request(tag) {
            match self.requests.get_mut(&prefix) {
                Some(r) if r.origin == src && !r.on_wire => {
                    r.on_wire = true;
                    if let Some(f) = self.follow.get_mut(&(r.origin, r.target)) {
                        f.sent += 1;
                    }
                }
                Some(_) => {}
                None => {
                    let (at, host, seen) = &mut self.unclaimed;
                    if (*at, *host) != (now, src) {
                        *at = now;
                        *host = src;
                        seen.clear();
                    }
                    seen.push(prefix);
                }
            }
        } else if is_lookup_answer(tag) {
            let Some(r) = self.requests.get(&prefix) else {
                return;
            };
            if self.ids.get(src as usize) == Some(&r.to) {
                if let Some(f) = self.follow.get_mut(&(r.origin, r.target)) {
                    f.answers += 1;
                }
            }
        }
    }

    /// The report section.
    #[must_use]
    pub fn section(&self, sweep: bool) -> DhtReport {
        let done: Vec<&LookupDone> = self
            .lookups
            .iter()
            .filter_map(|l| l.done.as_ref())
            .collect();
        let per = |f: fn(&LookupDone) -> u32| -> Vec<f64> {
            done.iter().map(|d| f64::from(f(d))).collect()
        };
        let lookup = (!self.lookups.is_empty()).then(|| {
            let mut lat: Vec<f64> = done.iter().map(|d| d.latency_ns as f64 / 1e6).collect();
            lat.sort_by(f64::total_cmp);
            let n = self.lookups.len() as f64;
            LookupReport {
                issued: self.lookups.len(),
                completed: done.len(),
                success_rate: round6(done.iter().filter(|d| d.exact).count() as f64 / n),
                hops: Hops::of(done.iter().map(|d| d.hops)),
                latency_ms: LatencyMs {
                    mean: round6(mean(&lat)),
                    p50: round6(pct(&lat, 0.5)),
                    p99: round6(pct(&lat, 0.99)),
                },
                msgs_mean: round6(mean(&per(|d| d.requests))),
                answers_mean: round6(mean(&per(|d| d.answers))),
            }
        });
        let providers = (self.published > 0).then(|| self.providers(|p| p.0));
        let provide = self.cycle.map(|(a, b)| ProvideReport {
            sweep,
            cycle_s: round6((b - a) as f64 / 1e9),
            keys: self.cycle_keys,
            lookups_per_cycle: self.cycle_lookups,
            msgs_per_cycle: self.cycle_datagrams,
            failed: self.cycle_failed,
        });
        let by_nodes = (!self.lookups.is_empty() || self.published > 0).then(|| ByNodes {
            lookup: (!self.lookups.is_empty()).then(|| ReportedLookup {
                success_rate: round6(
                    done.iter().filter(|d| d.reported.exact).count() as f64
                        / self.lookups.len() as f64,
                ),
                hops: Hops::of(done.iter().map(|d| d.reported.hops)),
                msgs_mean: round6(mean(&per(|d| d.reported.requests))),
            }),
            routing_table: TableReport::of(done.iter().map(|d| u32::from(d.reported.table_size))),
            available_fraction_mean: (self.published > 0)
                .then(|| self.providers(|p| p.1).available_fraction_mean),
        });
        DhtReport {
            lookup,
            providers,
            provide,
            routing_table: TableReport::of(done.iter().map(|d| d.table_size)),
            queries: self
                .queries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            rejected: self
                .rejected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            reported_by_nodes: by_nodes,
        }
    }

    /// Availability per probe round, a probe counting as found by `found`
    /// of its (observed, node's own) outcomes.
    fn providers(&self, found: fn((bool, bool)) -> bool) -> ProvidersReport {
        let rounds = self.round_at_ns.len();
        let mut hits = vec![0u64; rounds];
        let mut asked = vec![0u64; rounds];
        for p in &self.probes {
            asked[p.round] += 1;
            hits[p.round] += u64::from(p.done.is_some_and(found));
        }
        let fraction: Vec<f64> = (0..rounds)
            .map(|r| round6(hits[r] as f64 / asked[r].max(1) as f64))
            .collect();
        ProvidersReport {
            published_keys: self.published,
            probes: self.probes.len(),
            t_s: self
                .round_at_ns
                .iter()
                .map(|&t| round6(t as f64 / 1e9))
                .collect(),
            available_fraction_mean: round6(mean(&fraction)),
            available_fraction_min: fraction.iter().copied().fold(f64::NAN, f64::min),
            available_fraction: fraction,
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// The `q` quantile of sorted `v` (nearest rank).
fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The `dht` section of a report. Every figure but those under
/// `reported_by_nodes` is observed: from the datagrams the network carries
/// (paired with the lookups by the request ids their labels carry) and
/// from the nodes' events (each lookup request, each answer a lookup took,
/// each routing-table change, each query's end).
#[derive(Clone, Debug, Serialize)]
pub struct DhtReport {
    /// The random FIND_NODE lookups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupReport>,
    /// Availability of the provided keys over time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<ProvidersReport>,
    /// The providers' first republish cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provide: Option<ProvideReport>,
    /// Routing table sizes of the lookups' origins when they finished,
    /// from the origins' table events (entries added minus removed in the
    /// node's current life).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_table: Option<TableReport>,
    /// Queries finished, by kind, over all nodes.
    pub queries: BTreeMap<String, u64>,
    /// Input the nodes ignored or refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// The same figures as the nodes' own `QueryDone` summaries give them:
    /// the nodes' own counts, not observations, kept to compare with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_by_nodes: Option<ByNodes>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LookupReport {
    pub issued: usize,
    pub completed: usize,
    /// Lookups whose closest answering peer was the true closest live
    /// server, of those issued.
    pub success_rate: f64,
    /// Lookups by the depth of their closest answering peer. A peer the
    /// origin asks while it is in the origin's routing table (as the
    /// origin's table events say) is at depth 1; any other is one deeper
    /// than the first answerer that named it (an answer from a peer at
    /// depth d names peers at depth d + 1). A lookup no peer answered has
    /// 0.
    pub hops: Hops,
    /// From the command to the end of the lookup, on the simulator's clock.
    pub latency_ms: LatencyMs,
    /// Requests of a lookup seen on the wire before it ended, per completed
    /// lookup (a request the node made but that was not sent by then, for
    /// want of a session or a route, is not counted).
    pub msgs_mean: f64,
    /// Answers to those requests seen on the wire before the lookup ended
    /// (sent by the peer asked), per completed lookup.
    pub answers_mean: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Hops {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Lookups by hop count (index = hops).
    pub histogram: Vec<u64>,
}

impl Hops {
    fn of(hops: impl Iterator<Item = u8>) -> Hops {
        let mut v: Vec<f64> = hops.map(f64::from).collect();
        v.sort_by(f64::total_cmp);
        let max = v.last().copied().unwrap_or(0.0);
        let mut histogram = vec![0u64; max as usize + 1];
        for h in &v {
            histogram[*h as usize] += 1;
        }
        Hops {
            mean: round6(mean(&v)),
            p50: pct(&v, 0.5),
            p99: pct(&v, 0.99),
            max,
            histogram,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyMs {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProvidersReport {
    pub published_keys: usize,
    pub probes: usize,
    /// Probe rounds: when each started, and the fraction of its
    /// GET_PROVIDERS that found a provider. A provider in an answer counts
    /// only when its host was asked to provide that key (the simulator's
    /// own record) and is running when the answer is taken.
    pub t_s: Vec<f64>,
    pub available_fraction: Vec<f64>,
    pub available_fraction_mean: f64,
    pub available_fraction_min: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProvideReport {
    pub sweep: bool,
    pub cycle_s: f64,
    /// Keys the providers' provide lookups covered in the cycle.
    pub keys: u64,
    /// Provide lookups (one per key, or one per region with Sweep).
    pub lookups_per_cycle: u64,
    /// DHT datagrams the providers sent in the cycle.
    pub msgs_per_cycle: u64,
    /// Provide lookups that reached no server.
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    pub size_mean: f64,
    pub size_p50: f64,
    pub size_min: f64,
}

impl TableReport {
    fn of(sizes: impl Iterator<Item = u32>) -> Option<TableReport> {
        let mut v: Vec<f64> = sizes.map(f64::from).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| TableReport {
            size_mean: round6(mean(&v)),
            size_p50: pct(&v, 0.5),
            size_min: v[0],
        })
    }
}

/// The nodes' own figures (`dht.reported_by_nodes`), not observations.
#[derive(Clone, Debug, Serialize)]
pub struct ByNodes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<ReportedLookup>,
    /// The origins' table sizes as their `QueryDone` gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_table: Option<TableReport>,
    /// Probes whose GET_PROVIDERS the node said found a provider (any
    /// provider record, live or not), mean over rounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_fraction_mean: Option<f64>,
}

/// A lookup's figures as its origin's `QueryDone` gave them.
#[derive(Clone, Debug, Serialize)]
pub struct ReportedLookup {
    /// The node's closest server was the true closest live one.
    pub success_rate: f64,
    /// The hops the node counted for its closest answering peer.
    pub hops: Hops,
    /// Requests the node counted.
    pub msgs_mean: f64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use grove_node::message::{encode, Datagram, Message as Wire};
    use grove_node::proto::kad::{self, table::Change, Key, QueryDone, QueryKind};
    use grove_node::wire::Label;
    use grove_node::PeerId;

    use super::DhtRec;
    use crate::scenario::Source;

    fn id(h: u8) -> PeerId {
        PeerId([h + 1; 32])
    }

    /// The label of `m` sent by host `from`.
    fn label(from: u8, m: kad::Message) -> Label {
        let mut plain = Vec::new();
        let d = Datagram {
            from: id(from),
            message: Wire::Dht(m),
        };
        encode(&d, &mut plain).unwrap();
        Label::of(&plain)
    }

    fn find(req: u64, target: Key) -> kad::Message {
        kad::Message::FindNode {
            id: req,
            server: true,
            target,
        }
    }

    fn nodes(req: u64) -> kad::Message {
        kad::Message::Nodes {
            id: req,
            peers: Vec::new(),
        }
    }

    fn answer(req: u64, closer: &[PeerId], providers: &[PeerId]) -> kad::Event {
        kad::Event::Answer {
            id: req,
            closer: closer.to_vec(),
            providers: providers.to_vec(),
        }
    }

    fn done(kind: QueryKind, target: Key, success: bool, hops: u8, requests: u32) -> kad::Event {
        kad::Event::QueryDone(Box::new(QueryDone {
            kind,
            target,
            success,
            hops,
            requests,
            duration: Duration::from_millis(1),
            closest: Some(id(3)),
            keys: 0,
            table_size: 7,
            record: None,
            providers: Vec::new(),
        }))
    }

    fn four_hosts() -> DhtRec {
        let mut r = DhtRec::new(true, 4, true);
        for h in 0..4u8 {
            r.host_started(u32::from(h), &id(h));
        }
        r
    }

    #[test]
    fn hops_and_messages_are_observed_from_the_answers_and_the_wire() {
        let mut r = four_hosts();
        // Host 0's table holds host 1; the target is host 3's key, so host
        // 3 is the closest peer there is.
        r.event(0, 0, kad::Event::Table(Change::Added(id(1))));
        r.event(0, 0, kad::Event::Table(Change::Added(id(2))));
        r.event(0, 0, kad::Event::Table(Change::Removed(id(2))));
        let target = Key::of_peer(&id(3));
        r.lookup_issued(5, 0, target, Some(id(3)));
        let (a, b, c) = (
            0xa1a1_a1a1_a1a1_0001,
            0xb2b2_b2b2_b2b2_0002,
            0xc3c3_c3c3_c3c3_0003,
        );
        // A step's datagram goes out before the step's event: depth 1 (in
        // the table).
        r.datagram(10, 0, label(0, find(a, target)));
        r.event(
            0,
            10,
            kad::Event::Request {
                target,
                id: a,
                to: id(1),
            },
        );
        r.datagram(20, 1, label(1, nodes(a)));
        r.event(0, 20, answer(a, &[id(2)], &[]));
        // Named by host 1's answer: depth 2 (the event before its datagram,
        // as when a handshake comes first).
        r.event(
            0,
            20,
            kad::Event::Request {
                target,
                id: b,
                to: id(2),
            },
        );
        r.datagram(25, 0, label(0, find(b, target)));
        // Another host echoing b's id is not an answer to it.
        r.datagram(26, 3, label(3, nodes(b)));
        r.datagram(30, 2, label(2, nodes(b)));
        r.event(0, 30, answer(b, &[id(3), id(1)], &[]));
        // Depth 3; its answer names nobody.
        r.event(
            0,
            30,
            kad::Event::Request {
                target,
                id: c,
                to: id(3),
            },
        );
        r.datagram(30, 0, label(0, find(c, target)));
        r.datagram(40, 3, label(3, nodes(c)));
        r.event(0, 40, answer(c, &[], &[]));
        // The node says 2 hops and 5 requests: its own figures, kept apart.
        r.event(0, 50, done(QueryKind::FindNode, target, true, 2, 5));
        // A late answer no longer counts.
        r.datagram(60, 3, label(3, nodes(c)));
        let v = serde_json::to_value(r.section(false)).unwrap();
        let l = &v["lookup"];
        assert_eq!(l["completed"], 1);
        assert_eq!(l["hops"]["mean"], 3.0, "{l}");
        assert_eq!(l["hops"]["histogram"], serde_json::json!([0, 0, 0, 1]));
        assert_eq!(l["msgs_mean"], 3.0, "{l}");
        assert_eq!(l["answers_mean"], 3.0, "{l}");
        assert_eq!(l["success_rate"], 1.0);
        assert_eq!(l["latency_ms"]["mean"], 0.000045);
        assert_eq!(v["routing_table"]["size_mean"], 1.0);
        let by_nodes = &v["reported_by_nodes"];
        assert_eq!(by_nodes["lookup"]["hops"]["mean"], 2.0);
        assert_eq!(by_nodes["lookup"]["msgs_mean"], 5.0);
        assert_eq!(by_nodes["routing_table"]["size_mean"], 7.0);
    }

    #[test]
    fn a_probe_finds_a_key_only_through_a_live_provider_of_it() {
        let mut r = four_hosts();
        let key = super::provided_key(2, 0);
        r.provider_started(2, &[key], 0, 1_000_000_000);
        let round = r.round_started(10);
        // Host 3 never provided the key; host 2 did, but is down at first.
        r.host_stopped(2);
        for (n, provider) in [(1u64, 3u8), (2, 2), (3, 2)] {
            if n == 3 {
                r.host_started(2, &id(2));
            }
            r.probe_issued(round, 0, key);
            let req = n << 40;
            r.event(
                0,
                20,
                kad::Event::Request {
                    target: key,
                    id: req,
                    to: id(1),
                },
            );
            r.event(0, 30, answer(req, &[], &[id(provider)]));
            r.event(0, 30, done(QueryKind::GetProviders, key, true, 2, 1));
        }
        let v = serde_json::to_value(r.section(false)).unwrap();
        assert_eq!(
            v["providers"]["available_fraction"],
            serde_json::json!([0.333333])
        );
        assert_eq!(v["reported_by_nodes"]["available_fraction_mean"], 1.0);
    }

    const BASE: &str = r#"
name = "d"
seed = 1
duration_s = 10
[join]
interval_ms = 10
[[groups]]
name = "a"
count = 5
latency_ms = [5, 10]
"#;

    fn error(text: &str) -> String {
        let source = Source {
            path: "x.toml".into(),
            text: format!("{BASE}{text}"),
        };
        source.load().unwrap_err().to_string()
    }

    #[test]
    fn dht_tables_are_checked_and_errors_name_the_key() {
        let e = error("[dht]\nlookups = { start_s = 1, count = 2, interval_ms = 5 }\n");
        assert!(e.contains("node.dht.enabled"), "{e}");
        let e = error("[node.dht]\nenabled = true\nalpha = 30\n");
        assert!(e.contains("dht.alpha"), "{e}");
        let e = error(
            "[node.dht]\nenabled = true\n[dht]\nprobes = { start_s = 1, interval_s = 1, rounds = 1, count = 1 }\n",
        );
        assert!(e.contains("dht.probes"), "{e}");
        let e = error("[node.dht]\nenabled = true\n[dht]\nlookups = { start_s = 1, count = 2, interval = 5 }\n");
        assert!(e.contains("interval"), "{e}");
        let ok = Source {
            path: "x.toml".into(),
            text: format!(
                "{BASE}[node.dht]\nenabled = true\n[dht]\nprovide = {{ at_s = 1, providers = 2, keys_each = 3 }}\n"
            ),
        };
        assert!(ok.load().is_ok());
    }

    #[test]
    fn provided_keys_are_stable_and_distinct() {
        assert_eq!(super::provided_key(3, 4), super::provided_key(3, 4));
        assert_ne!(super::provided_key(3, 4), super::provided_key(4, 3));
    }
}
