//! The DHT workload and its measurements.
//!
//! A scenario's `[dht]` table asks for random FIND_NODE lookups from random
//! running hosts, hosts that provide keys (re-provided whenever such a host
//! comes back from churn), and rounds of GET_PROVIDERS probes for
//! published keys. Everything is measured from the nodes' `QueryDone`
//! events and from the datagrams they send; the only outside knowledge is
//! which live host is the true closest server to a lookup's target
//! (computed from the hosts' identities and the reachability each node
//! reported), to say whether a lookup found it.

use std::collections::{BTreeMap, VecDeque};

use grove_node::proto::kad::{self, Key, QueryKind};
use grove_node::wire::{Label, Protocol};
use grove_node::PeerId;
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

#[derive(Clone, Copy, Debug, Default)]
struct LookupRec {
    expected: Option<PeerId>,
    /// hops, latency (ns), requests, found the expected closest.
    done: Option<(u8, u64, u32, bool)>,
}

/// What the observer saw of the DHT.
#[derive(Default)]
pub struct DhtRec {
    pub enabled: bool,
    /// Each host's id and DHT key, and whether it is (as it last said) a
    /// server.
    ids: Vec<PeerId>,
    keys: Vec<Key>,
    server: Vec<bool>,
    lookups: Vec<LookupRec>,
    /// (round, found) per probe.
    probes: Vec<(usize, Option<bool>)>,
    round_at_ns: Vec<u64>,
    pending: BTreeMap<(u32, Key), VecDeque<Pending>>,
    provider: Vec<bool>,
    published: usize,
    /// The providers' first republish cycle: [start, end).
    cycle: Option<(u64, u64)>,
    cycle_lookups: u64,
    cycle_datagrams: u64,
    cycle_keys: u64,
    cycle_failed: u64,
    table_sizes: Vec<u16>,
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
            provider: vec![false; hosts],
            ..DhtRec::default()
        }
    }

    pub fn host_started(&mut self, host: u32, id: &PeerId) {
        if self.enabled {
            self.ids[host as usize] = *id;
            self.keys[host as usize] = Key::of_peer(id);
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

    pub fn lookup_issued(&mut self, origin: u32, target: Key, expected: Option<PeerId>) {
        self.pending
            .entry((origin, target))
            .or_default()
            .push_back(Pending::Lookup(self.lookups.len()));
        self.lookups.push(LookupRec {
            expected,
            done: None,
        });
    }

    pub fn provider_started(&mut self, host: u32, keys: usize, now: u64, cycle_ns: u64) {
        self.provider[host as usize] = true;
        self.published += keys;
        self.cycle.get_or_insert((now, now + cycle_ns));
    }

    pub fn round_started(&mut self, now: u64) -> usize {
        self.round_at_ns.push(now);
        self.round_at_ns.len() - 1
    }

    pub fn probe_issued(&mut self, round: usize, origin: u32, key: Key) {
        self.pending
            .entry((origin, key))
            .or_default()
            .push_back(Pending::Probe(self.probes.len()));
        self.probes.push((round, None));
    }

    fn in_cycle(&self, now: u64) -> bool {
        self.cycle.is_some_and(|(a, b)| now >= a && now < b)
    }

    /// Host `host` reported `event` at `now`.
    pub fn event(&mut self, host: u32, now: u64, event: kad::Event) {
        let d = match event {
            kad::Event::Rejected { what } => {
                *self.rejected.entry(what).or_default() += 1;
                return;
            }
            kad::Event::QueryDone(d) => d,
        };
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
        let Some(queue) = self.pending.get_mut(&(host, d.target)) else {
            return;
        };
        let Some(p) = queue.pop_front() else { return };
        if queue.is_empty() {
            self.pending.remove(&(host, d.target));
        }
        match p {
            Pending::Lookup(i) if d.kind == QueryKind::FindNode => {
                let l = &mut self.lookups[i];
                let exact = d.closest.is_some() && d.closest == l.expected;
                l.done = Some((d.hops, d.duration.as_nanos() as u64, d.requests, exact));
                self.table_sizes.push(d.table_size);
            }
            Pending::Probe(i) if d.kind == QueryKind::GetProviders => {
                self.probes[i].1 = Some(d.success);
            }
            _ => {}
        }
    }

    /// Host `src` sent a datagram at `now`.
    pub fn datagram(&mut self, now: u64, src: u32, label: Label) {
        if self.provider.get(src as usize).copied().unwrap_or(false)
            && self.in_cycle(now)
            && label.protocol() == Some(Protocol::Dht)
        {
            self.cycle_datagrams += 1;
        }
    }

    /// The report section.
    #[must_use]
    pub fn section(&self, sweep: bool) -> DhtReport {
        let lookup = (!self.lookups.is_empty()).then(|| {
            let done: Vec<&(u8, u64, u32, bool)> = self
                .lookups
                .iter()
                .filter_map(|l| l.done.as_ref())
                .collect();
            let mut hops: Vec<f64> = done.iter().map(|d| f64::from(d.0)).collect();
            let mut lat: Vec<f64> = done.iter().map(|d| d.1 as f64 / 1e6).collect();
            let msgs: Vec<f64> = done.iter().map(|d| f64::from(d.2)).collect();
            let exact = done.iter().filter(|d| d.3).count();
            let max_hop = done.iter().map(|d| d.0).max().unwrap_or(0);
            let mut histogram = vec![0u64; usize::from(max_hop) + 1];
            for d in &done {
                histogram[usize::from(d.0)] += 1;
            }
            hops.sort_by(f64::total_cmp);
            lat.sort_by(f64::total_cmp);
            let n = self.lookups.len() as f64;
            LookupReport {
                issued: self.lookups.len(),
                completed: done.len(),
                success_rate: round6(exact as f64 / n),
                hops: Hops {
                    mean: round6(mean(&hops)),
                    p50: pct(&hops, 0.5),
                    p99: pct(&hops, 0.99),
                    max: hops.last().copied().unwrap_or(0.0),
                    histogram,
                },
                latency_ms: LatencyMs {
                    mean: round6(mean(&lat)),
                    p50: round6(pct(&lat, 0.5)),
                    p99: round6(pct(&lat, 0.99)),
                },
                msgs_mean: round6(mean(&msgs)),
            }
        });
        let providers = (self.published > 0).then(|| {
            let rounds = self.round_at_ns.len();
            let mut found = vec![0u64; rounds];
            let mut asked = vec![0u64; rounds];
            for (r, f) in &self.probes {
                asked[*r] += 1;
                found[*r] += u64::from(f.unwrap_or(false));
            }
            let fraction: Vec<f64> = (0..rounds)
                .map(|r| round6(found[r] as f64 / asked[r].max(1) as f64))
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
        });
        let provide = self.cycle.map(|(a, b)| ProvideReport {
            sweep,
            cycle_s: round6((b - a) as f64 / 1e9),
            keys: self.cycle_keys,
            lookups_per_cycle: self.cycle_lookups,
            msgs_per_cycle: self.cycle_datagrams,
            failed: self.cycle_failed,
        });
        let mut sizes: Vec<f64> = self.table_sizes.iter().map(|&s| f64::from(s)).collect();
        sizes.sort_by(f64::total_cmp);
        DhtReport {
            lookup,
            providers,
            provide,
            routing_table: (!sizes.is_empty()).then(|| TableReport {
                size_mean: round6(mean(&sizes)),
                size_p50: pct(&sizes, 0.5),
                size_min: sizes[0],
            }),
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

/// The `dht` section of a report.
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
    /// Routing table sizes of the lookups' origins when they finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_table: Option<TableReport>,
    /// Queries finished, by kind, over all nodes.
    pub queries: BTreeMap<String, u64>,
    /// Input the nodes ignored or refused, by reason.
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LookupReport {
    pub issued: usize,
    pub completed: usize,
    /// Lookups that found the true closest live server, of those issued.
    pub success_rate: f64,
    pub hops: Hops,
    pub latency_ms: LatencyMs,
    /// Requests sent per lookup.
    pub msgs_mean: f64,
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
    /// GET_PROVIDERS that found a provider.
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

#[cfg(test)]
mod tests {
    use crate::scenario::Source;

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
