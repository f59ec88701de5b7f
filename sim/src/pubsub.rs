//! The pub/sub workload: the scenario's `[pubsub]` table, what the
//! observer records of it, and the report's `pubsub` section.
//!
//! Every host but the attackers subscribes to one topic when it starts;
//! a random running host of the `publishers` group publishes a message
//! every `interval_ms`. With `via = "gossipsub"` the nodes run GossipSub;
//! with `via = "plumtree"` the same messages go out as Plumtree broadcasts
//! over HyParView (the comparison). Hosts of `attack.group` run the real
//! node with GossipSub's simulation-only adversary mode
//! ([`grove_node::proto::gossipsub::Adversary`]): honest until `from_s`,
//! then misbehaving as configured.
//!
//! Metrics come from node events (deliveries, mesh changes) and the
//! traffic each host sends. The score snapshots honest nodes emit every
//! 10 s are their internal score tables: reported apart, under
//! `attack.reported_by_nodes`, as the nodes' own figures.

use std::collections::BTreeMap;
use std::time::Duration;

use grove_node::proto::gossipsub::{self, Event as GsEvent};
use grove_node::wire::{Class, Label, Protocol, PubSubKind as Kind};
use grove_node::PeerId;
use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::report::round6;

/// High bytes of a pub/sub payload's first word: never a broadcast index
/// the broadcast recorder knows (so Plumtree-carried messages are not
/// counted as `[[workload]]` broadcasts).
const PAYLOAD_MAGIC: u64 = 0x5053_0000_0000_0000;

/// Payload of pub/sub message `index`: its tagged index, then zeros.
pub fn payload_for(index: usize, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(8)];
    p[..8].copy_from_slice(&(PAYLOAD_MAGIC | index as u64).to_le_bytes());
    p
}

fn index_of(payload: &[u8]) -> Option<usize> {
    let word = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    (word & 0xffff_0000_0000_0000 == PAYLOAD_MAGIC).then_some((word & 0xffff_ffff) as usize)
}

/// What carries the workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    #[default]
    Gossipsub,
    Plumtree,
}

/// The `[pubsub]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSub {
    #[serde(default)]
    pub via: Via,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The group whose hosts publish.
    pub publishers: String,
    pub start_s: f64,
    pub count: usize,
    pub interval_ms: f64,
    #[serde(default = "default_payload")]
    pub payload_bytes: usize,
    /// Deliveries count towards a message when the receiver was running
    /// from its publication until this long after.
    #[serde(default = "default_window")]
    pub window_s: f64,
    #[serde(default)]
    pub attack: Option<PubSubAttack>,
}

fn default_topic() -> String {
    "discoveries".into()
}
fn default_payload() -> usize {
    256
}
fn default_window() -> f64 {
    10.0
}

/// `[pubsub.attack]`: the Sybil group and what it does once it turns.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubAttack {
    pub group: String,
    /// When the Sybils start to misbehave (honest before).
    pub from_s: f64,
    #[serde(default)]
    pub drop_forwards: bool,
    #[serde(default)]
    pub invalid_per_heartbeat: usize,
    #[serde(default)]
    pub fake_ihave_ids: usize,
    #[serde(default)]
    pub graft_during_backoff: bool,
    /// GRAFT up to D topic peers a heartbeat, to fill honest meshes.
    #[serde(default)]
    pub graft_flood: bool,
    /// Host index of the node every Sybil GRAFTs (eclipse).
    #[serde(default)]
    pub eclipse_host: Option<usize>,
}

impl PubSub {
    /// Check the table against the scenario's groups; `(key, message)`.
    pub fn validate(
        &self,
        groups: &[&str],
        hosts: usize,
        duration_s: f64,
    ) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((format!("pubsub.{k}"), m));
        if gossipsub::Topic::parse(&self.topic).is_none() {
            return bad("topic", "must be 1 to 64 bytes".into());
        }
        if !groups.contains(&self.publishers.as_str()) {
            return bad(
                "publishers",
                format!("no group is named `{}`", self.publishers),
            );
        }
        if !(self.start_s.is_finite() && self.start_s >= 0.0 && self.start_s <= duration_s) {
            return bad(
                "start_s",
                format!("must be within the run [0, {duration_s}] s"),
            );
        }
        if !(self.interval_ms.is_finite() && self.interval_ms > 0.0) {
            return bad("interval_ms", "must be positive".into());
        }
        let last = self.start_s + self.interval_ms / 1000.0 * self.count.saturating_sub(1) as f64;
        if last > duration_s {
            return bad(
                "count",
                format!("the last message would be at {last:.3} s, after the end of the run"),
            );
        }
        if self.count >= 1 << 32 {
            return bad("count", "must be below 2^32".into());
        }
        if !(8..=gossipsub::MAX_DATA_BYTES).contains(&self.payload_bytes) {
            return bad(
                "payload_bytes",
                format!("must be in 8..={}", gossipsub::MAX_DATA_BYTES),
            );
        }
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            return bad("window_s", "must be positive".into());
        }
        if let Some(a) = &self.attack {
            if !groups.contains(&a.group.as_str()) {
                return bad("attack.group", format!("no group is named `{}`", a.group));
            }
            if a.group == self.publishers {
                return bad(
                    "attack.group",
                    "the publishers cannot be the attackers".into(),
                );
            }
            if !(a.from_s.is_finite() && a.from_s >= 0.0) {
                return bad("attack.from_s", "must be >= 0".into());
            }
            if a.eclipse_host.is_some_and(|h| h >= hosts) {
                return bad("attack.eclipse_host", format!("there are {hosts} hosts"));
            }
        }
        Ok(())
    }

    /// The adversary settings of an attacking host.
    pub fn adversary(&self, eclipse: Option<grove_node::Peer>) -> gossipsub::Adversary {
        let Some(a) = &self.attack else {
            return gossipsub::Adversary::default();
        };
        gossipsub::Adversary {
            from: Some(Duration::from_secs_f64(a.from_s)),
            drop_forwards: a.drop_forwards,
            invalid_per_heartbeat: a.invalid_per_heartbeat,
            fake_ihave_ids: a.fake_ihave_ids,
            graft_during_backoff: a.graft_during_backoff,
            graft_flood: a.graft_flood,
            eclipse,
        }
    }
}

/// Whether hosts of `group` are the pub/sub attackers.
pub fn is_attacker(p: &PubSub, group: &str) -> bool {
    p.attack.as_ref().is_some_and(|a| a.group == group)
}

/// The application's validator: a message must carry a workload payload.
pub fn validator() -> gossipsub::Validator {
    Box::new(|_, data| {
        if index_of(data).is_some() {
            gossipsub::Validation::Accept
        } else {
            gossipsub::Validation::Reject
        }
    })
}

struct MsgRec {
    at_ns: u64,
    origin: u32,
    delivered: Vec<u64>,
}

/// Traffic of one kind: datagrams sent by honest hosts and by attackers.
#[derive(Clone, Copy, Debug, Default)]
struct Count {
    honest: u64,
    attacker: u64,
}

/// What the observer saw of the pub/sub workload.
pub struct PubSubRec {
    via: Via,
    attacker: Vec<bool>,
    eclipse: Option<u32>,
    attack_from_ns: Option<u64>,
    msgs: Vec<MsgRec>,
    latency_us: Histogram<u64>,
    /// By [`Kind`] (GossipSub) or payload/control (Plumtree: Publish and
    /// IHave slots).
    traffic: BTreeMap<Kind, Count>,
    rejected: u64,
    /// Per host: mesh peers that are attackers, and all mesh peers.
    mesh: Vec<(u32, u32)>,
    /// (t_s, attacker mesh slots, all mesh slots) over running honest hosts.
    mesh_series: Vec<(f64, u64, u64)>,
    scores: Vec<Vec<(PeerId, i64)>>,
}

impl PubSubRec {
    pub fn new(
        via: Via,
        attacker: Vec<bool>,
        eclipse: Option<u32>,
        attack_from_ns: Option<u64>,
    ) -> Self {
        let hosts = attacker.len();
        PubSubRec {
            via,
            attacker,
            eclipse,
            attack_from_ns,
            msgs: Vec::new(),
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            traffic: BTreeMap::new(),
            rejected: 0,
            mesh: vec![(0, 0); hosts],
            mesh_series: Vec::new(),
            scores: vec![Vec::new(); hosts],
        }
    }

    /// Message `self.msgs.len()` is asked of `origin` at `now`.
    pub fn published(&mut self, origin: u32, now: u64) -> usize {
        let words = self.attacker.len().div_ceil(64);
        self.msgs.push(MsgRec {
            at_ns: now,
            origin,
            delivered: vec![0; words],
        });
        self.msgs.len() - 1
    }

    /// Host `host` (re)starts: its mesh is empty.
    pub fn host_started(&mut self, host: u32) {
        self.mesh[host as usize] = (0, 0);
        self.scores[host as usize].clear();
    }

    /// A delivery of `payload` at `host` (GossipSub message or Plumtree
    /// broadcast).
    pub fn delivered(&mut self, host: u32, now: u64, payload: &[u8]) {
        let Some(m) = index_of(payload).and_then(|i| self.msgs.get_mut(i)) else {
            return;
        };
        let (w, b) = (host as usize / 64, host % 64);
        if m.delivered[w] >> b & 1 == 1 {
            return;
        }
        m.delivered[w] |= 1 << b;
        if host != m.origin && !self.attacker[host as usize] {
            let us = (now.saturating_sub(m.at_ns) / 1000).max(1);
            self.latency_us.saturating_record(us);
        }
    }

    /// A GossipSub event at `host`.
    pub fn event(&mut self, host: u32, now: u64, e: GsEvent, peer_host: &FxHashMap<PeerId, u32>) {
        match e {
            GsEvent::Message { data, .. } => self.delivered(host, now, &data),
            GsEvent::Mesh { peer, joined, .. } => {
                let attacker = peer_host
                    .get(&peer)
                    .is_some_and(|&h| self.attacker[h as usize]);
                let m = &mut self.mesh[host as usize];
                if joined {
                    m.1 += 1;
                    m.0 += u32::from(attacker);
                } else {
                    m.1 = m.1.saturating_sub(1);
                    m.0 = m.0.saturating_sub(u32::from(attacker));
                }
            }
            GsEvent::Rejected { .. } => self.rejected += 1,
            GsEvent::Scores(s) => self.scores[host as usize] = s,
        }
    }

    /// Host `src` sent `bytes`.
    pub fn datagram_sent(&mut self, src: u32, label: Label) {
        let kind = match self.via {
            Via::Gossipsub => label.pubsub_kind(),
            Via::Plumtree => match (label.protocol(), label.class()) {
                (Some(Protocol::Broadcast), Some(Class::Payload)) => Some(Kind::Publish),
                (Some(Protocol::Broadcast), Some(Class::Control)) => Some(Kind::IHave),
                _ => None,
            },
        };
        let Some(kind) = kind else {
            return;
        };
        let c = self.traffic.entry(kind).or_default();
        if self.attacker.get(src as usize).copied().unwrap_or(false) {
            c.attacker += 1;
        } else {
            c.honest += 1;
        }
    }

    /// A mesh sample at `t_ns` over the running honest hosts.
    pub fn sample(&mut self, t_ns: u64, alive: &[bool]) {
        let (mut bad, mut all) = (0u64, 0u64);
        for (h, m) in self.mesh.iter().enumerate() {
            if alive[h] && !self.attacker[h] {
                bad += u64::from(m.0);
                all += u64::from(m.1);
            }
        }
        self.mesh_series.push((t_ns as f64 / 1e9, bad, all));
    }

    /// The report section. `running(from, to)`: hosts running throughout,
    /// as a bitset; `host_of`: peer ids to hosts.
    /// `phase_of`: the phase a message was published in (of `phases`).
    pub fn section(
        &self,
        window_ns: u64,
        end_ns: u64,
        running: impl Fn(u64, u64) -> Vec<u64>,
        peer_host: &FxHashMap<PeerId, u32>,
        (phases, phase_of): (usize, impl Fn(u64) -> usize),
    ) -> PubSubReport {
        let hosts = self.attacker.len();
        let (mut rates_all, mut rates_honest) = (Vec::new(), Vec::new());
        let mut by_phase: Vec<Vec<f64>> = vec![Vec::new(); phases];
        let mut eclipse = Vec::new();
        let mut honest_deliveries = 0u64;
        let mut considered = 0usize;
        for m in &self.msgs {
            let to = m.at_ns + window_ns;
            if to > end_ns {
                continue;
            }
            considered += 1;
            let up = running(m.at_ns, to);
            let (mut n_all, mut d_all, mut n_h, mut d_h) = (0u32, 0u32, 0u32, 0u32);
            for h in 0..hosts {
                let (w, b) = (h / 64, h % 64);
                if h as u32 == m.origin || up[w] >> b & 1 == 0 {
                    continue;
                }
                let got = m.delivered[w] >> b & 1 == 1;
                n_all += 1;
                d_all += u32::from(got);
                if !self.attacker[h] {
                    n_h += 1;
                    d_h += u32::from(got);
                    if Some(h as u32) == self.eclipse {
                        eclipse.push(f64::from(u32::from(got)));
                    }
                }
            }
            honest_deliveries += u64::from(d_h);
            if n_all > 0 {
                rates_all.push(f64::from(d_all) / f64::from(n_all));
            }
            if n_h > 0 {
                rates_honest.push(f64::from(d_h) / f64::from(n_h));
                if let Some(p) = by_phase.get_mut(phase_of(m.at_ns)) {
                    p.push(f64::from(d_h) / f64::from(n_h));
                }
            }
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                round6(v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        let honest_hosts = self.attacker.iter().filter(|a| !**a).count().max(1);
        let count = |k: Kind| self.traffic.get(&k).copied().unwrap_or_default();
        let publish = count(Kind::Publish);
        let h = &self.latency_us;
        let ms = |q: f64| round6(h.value_at_quantile(q) as f64 / 1000.0);
        let control = Control {
            subscriptions: count(Kind::Subscriptions).honest,
            ihave: count(Kind::IHave).honest,
            iwant: count(Kind::IWant).honest,
            idontwant: count(Kind::IDontWant).honest,
            graft: count(Kind::Graft).honest,
            prune: count(Kind::Prune).honest,
        };
        let control_total = control.subscriptions
            + control.ihave
            + control.iwant
            + control.idontwant
            + control.graft
            + control.prune;
        let messages = considered.max(1) as f64;
        let attack = self.attack_from_ns.map(|from| {
            let at = self
                .mesh_series
                .iter()
                .find(|s| (s.0 * 1e9) as u64 >= from)
                .copied();
            let share = |s: (f64, u64, u64)| {
                if s.2 == 0 {
                    0.0
                } else {
                    s.1 as f64 / s.2 as f64
                }
            };
            let at_share = at.map_or(0.0, share);
            let pruned_s = at.and_then(|a| {
                self.mesh_series
                    .iter()
                    .filter(|s| s.0 >= a.0)
                    .find(|s| share(**s) <= at_share / 2.0 && at_share > 0.0)
                    .map(|s| round6(s.0 - a.0))
            });
            let mut by_kind = BTreeMap::new();
            for (k, c) in &self.traffic {
                by_kind.insert(format!("{k:?}").to_lowercase(), c.attacker);
            }
            let (mut honest_scores, mut attacker_scores) = (Vec::new(), Vec::new());
            for (h, list) in self.scores.iter().enumerate() {
                if self.attacker[h] {
                    continue;
                }
                for (p, s) in list {
                    let v = *s as f64 / 1000.0;
                    match peer_host.get(p) {
                        Some(&ph) if self.attacker[ph as usize] => attacker_scores.push(v),
                        Some(_) => honest_scores.push(v),
                        None => {}
                    }
                }
            }
            AttackReport {
                mesh_attacker_share_at_attack: round6(at_share),
                mesh_attacker_share_end: round6(
                    self.mesh_series.last().copied().map_or(0.0, share),
                ),
                attackers_pruned_s: pruned_s,
                mesh_attacker_share: self
                    .mesh_series
                    .iter()
                    .map(|s| (round6(s.0), round6(share(*s))))
                    .collect(),
                attacker_datagrams: by_kind,
                eclipse_target_delivery_rate: self.eclipse.map(|_| mean(&eclipse)),
                reported_by_nodes: ScoresReported {
                    scores_of_honest_peers: Distribution::of(honest_scores),
                    scores_of_attackers: Distribution::of(attacker_scores),
                },
            }
        });
        PubSubReport {
            via: self.via,
            messages: considered,
            delivery_rate: mean(&rates_all),
            honest: Honest {
                delivery_rate: mean(&rates_honest),
                nodes: honest_hosts,
                delivery_rate_by_phase: by_phase.iter().map(|v| mean(v)).collect(),
            },
            latency_ms: Percentiles {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                max: round6(h.max() as f64 / 1000.0),
            },
            amplification: if honest_deliveries == 0 {
                0.0
            } else {
                round6(publish.honest as f64 / honest_deliveries as f64)
            },
            transmissions_per_node_per_message: round6(
                publish.honest as f64 / honest_hosts as f64 / messages,
            ),
            duplicates: publish.honest.saturating_sub(honest_deliveries),
            control,
            control_per_node_per_message: round6(
                control_total as f64 / honest_hosts as f64 / messages,
            ),
            rejected: self.rejected,
            attack,
        }
    }
}

/// The report's `pubsub` section.
#[derive(Clone, Debug, Serialize)]
pub struct PubSubReport {
    pub via: Via,
    /// Messages whose delivery window ended within the run.
    pub messages: usize,
    /// Mean over messages of the share of subscribers (Sybils included)
    /// running through the window that delivered it (the origin left out).
    pub delivery_rate: f64,
    pub honest: Honest,
    /// Publication to delivery, honest non-origin deliveries.
    pub latency_ms: Percentiles,
    /// Payload datagrams (PUBLISH, or Plumtree GOSSIP) sent by honest
    /// hosts per honest delivery.
    pub amplification: f64,
    pub transmissions_per_node_per_message: f64,
    /// Honest payload datagrams beyond one per honest delivery.
    pub duplicates: u64,
    /// Control datagrams sent by honest hosts, by kind (Plumtree: IHAVE,
    /// GRAFT and PRUNE all count as `ihave`).
    pub control: Control,
    pub control_per_node_per_message: f64,
    /// Messages honest hosts rejected (bad signature, validator).
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Honest {
    /// As `delivery_rate`, over honest subscribers only.
    pub delivery_rate: f64,
    pub nodes: usize,
    /// The same per phase of the run (as `phases[]`; messages by the
    /// instant they were published).
    pub delivery_rate_by_phase: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Control {
    pub subscriptions: u64,
    pub ihave: u64,
    pub iwant: u64,
    pub idontwant: u64,
    pub graft: u64,
    pub prune: u64,
}

/// What the Sybils did and how the honest nodes fared.
#[derive(Clone, Debug, Serialize)]
pub struct AttackReport {
    /// Share of honest hosts' mesh slots held by Sybils when they turn.
    pub mesh_attacker_share_at_attack: f64,
    pub mesh_attacker_share_end: f64,
    /// Seconds after the turn until that share halved (None: never).
    pub attackers_pruned_s: Option<f64>,
    /// (t_s, share), one sample a second.
    pub mesh_attacker_share: Vec<(f64, f64)>,
    /// Datagrams the Sybils sent, by GossipSub kind.
    pub attacker_datagrams: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eclipse_target_delivery_rate: Option<f64>,
    /// The honest nodes' own score tables (not observations).
    pub reported_by_nodes: ScoresReported,
}

/// Scores honest nodes gave honest peers and Sybils, from the last score
/// snapshot each honest node emitted: the nodes' internal peer scores, as
/// they report them, not something an observer sees.
#[derive(Clone, Debug, Serialize)]
pub struct ScoresReported {
    pub scores_of_honest_peers: Distribution,
    pub scores_of_attackers: Distribution,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub min: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl Distribution {
    fn of(mut v: Vec<f64>) -> Distribution {
        if v.is_empty() {
            return Distribution::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |x: f64| round6(v[((v.len() - 1) as f64 * x).round() as usize]);
        Distribution {
            count: v.len(),
            min: q(0.0),
            p10: q(0.1),
            p50: q(0.5),
            p90: q(0.9),
            max: q(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_message_and_never_a_broadcast() {
        let p = payload_for(7, 64);
        assert_eq!(index_of(&p), Some(7));
        assert_eq!(index_of(&crate::recorder::payload_for(7, 64)), None);
        assert_eq!(index_of(b"short"), None);
    }

    #[test]
    fn delivery_rate_counts_running_subscribers_and_honest_ones() {
        // Hosts 0..4; host 3 is an attacker.
        let mut r = PubSubRec::new(Via::Gossipsub, vec![false, false, false, true], None, None);
        let i = r.published(0, 0);
        let p = payload_for(i, 16);
        r.delivered(1, 50_000_000, &p);
        r.delivered(1, 60_000_000, &p); // duplicate
        r.delivered(3, 70_000_000, &p);
        let all_up = |_, _| vec![0b1111u64];
        let none = FxHashMap::default();
        let s = r.section(1_000_000_000, 2_000_000_000, all_up, &none, (1, |_| 0));
        // Receivers 1, 2, 3: 2 of 3; honest 1, 2: 1 of 2.
        assert_eq!(s.delivery_rate, round6(2.0 / 3.0));
        assert_eq!(s.honest.delivery_rate, 0.5);
        assert!(
            (s.latency_ms.p50 - 50.0).abs() < 0.1,
            "{}",
            s.latency_ms.p50
        );
        assert_eq!(s.messages, 1);
    }

    fn load(extra: &str) -> Result<(), String> {
        let text = format!(
            "name = \"t\"\nseed = 1\nduration_s = 60\n[join]\ninterval_ms = 10\n\
             [[groups]]\nname = \"a\"\ncount = 5\nlatency_ms = 10\n\
             [[groups]]\nname = \"b\"\ncount = 5\nlatency_ms = 10\n{extra}"
        );
        let source = crate::scenario::Source {
            path: "t.toml".into(),
            text,
        };
        source.load().map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_pubsub_table_is_checked_key_by_key() {
        let ok = "[pubsub]\npublishers = \"a\"\nstart_s = 1\ncount = 10\ninterval_ms = 100\n";
        assert_eq!(load(ok), Ok(()));
        let cases = [
            (
                "publishers = \"a\"",
                "publishers = \"x\"",
                "`pubsub.publishers`",
            ),
            ("count = 10", "count = 1000", "`pubsub.count`"),
            (
                "interval_ms = 100",
                "interval_ms = 0",
                "`pubsub.interval_ms`",
            ),
            ("start_s = 1", "start_s = 1\ntopic = \"\"", "`pubsub.topic`"),
            (
                "start_s = 1",
                "start_s = 1\npayload_bytes = 2000",
                "`pubsub.payload_bytes`",
            ),
            ("start_s = 1", "start_s = 1\nbogus = 1", "unknown field"),
        ];
        for (from, to, want) in cases {
            let e = load(&ok.replace(from, to)).unwrap_err();
            assert!(e.contains(want), "{to}: {e}");
        }
        let attack = format!("{ok}[pubsub.attack]\ngroup = \"b\"\nfrom_s = 5\n");
        assert_eq!(load(&attack), Ok(()));
        let e = load(&attack.replace("group = \"b\"", "group = \"a\"")).unwrap_err();
        assert!(e.contains("`pubsub.attack.group`"), "{e}");
        let e = load(&format!("{attack}eclipse_host = 10\n")).unwrap_err();
        assert!(e.contains("`pubsub.attack.eclipse_host`"), "{e}");
        let e = load(&format!("[node.gossipsub]\nd_lo = 9\n{ok}")).unwrap_err();
        assert!(e.contains("`node.gossipsub.d`"), "{e}");
    }

    #[test]
    fn score_distribution_quantiles() {
        let d = Distribution::of((0..=10).map(f64::from).collect());
        assert_eq!(
            (d.count, d.min, d.p50, d.p90, d.max),
            (11, 0.0, 5.0, 9.0, 10.0)
        );
    }
}
