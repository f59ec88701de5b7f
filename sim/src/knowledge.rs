//! The knowledge commons workload and its correctness section.
//!
//! The `[knowledge]` table turns the commons on in every node and has a
//! share of the hosts write to shared documents on a schedule. The observer
//! sees only what the nodes report through the driver's event sink: each
//! acknowledged edit (the node's answer to the write command, which the
//! driver sends only once the commit is durable in the host's store), each
//! document change (its version hash) and each transfer. It keeps no copy
//! of any commit: a host that comes back after a crash or a departure has
//! exactly what its node made durable in its store (the world keeps each
//! host's store, as a disk outlives a crash), and catches up on the rest by
//! anti-entropy. At the end the world asks every live node for its
//! documents' states and checks, from outside, that every acknowledged edit
//! is present in every live node's state. The same final answer carries
//! the nodes' own counters (updates held for missing dependencies, rate
//! limiting); they are reported apart, under `reported_by_nodes`, as the
//! nodes' figures rather than observations.
//!
//! # What "lost" means
//!
//! An acknowledged edit is *lost* when some live node's final state lacks
//! it while another has it, or when no live node has it although its writer
//! is live: the writer's node acknowledged it, so its store had to bring it
//! back. `writes_lost` thus measures the nodes' own durability (and the
//! commons' spreading). An edit that no live node has because its writer
//! is offline at the end is counted apart (`writes_offline`): it is held
//! only by its writer's store, and comes back with its writer.

use std::collections::{BTreeMap, BTreeSet};

use grove_node::driver::KnowledgeReply;
use grove_node::proto::knowledge::{self, DocState, Stats, Write};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `[knowledge]` table of a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeLoad {
    /// Topics, one document each; every write picks one at random.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Share of the hosts that write.
    #[serde(default = "one")]
    pub writers_fraction: f64,
    /// Writes happen in [start_s, end_s): each writer writes every
    /// `interval_s`, from a random phase.
    pub start_s: f64,
    pub end_s: f64,
    pub interval_s: f64,
    /// Relative weights of the edits.
    #[serde(default)]
    pub mix: Mix,
    /// Convergence is timed from here (default: the last heal, else
    /// `end_s`).
    #[serde(default)]
    pub reference_s: Option<f64>,
}

fn default_topics() -> Vec<String> {
    vec!["commons".into()]
}

fn one() -> f64 {
    1.0
}

/// Relative weights of the edits a writer makes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mix {
    /// An observation (a map key, last writer wins).
    pub observe: u32,
    /// A node added to the knowledge graph (a movable tree).
    pub tree_add: u32,
    /// One of the writer's graph nodes moved.
    pub tree_move: u32,
    /// The topic's shared `votes` counter incremented.
    pub increment: u32,
    /// An item added to the `tags` set.
    pub set_add: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            observe: 50,
            tree_add: 15,
            tree_move: 5,
            increment: 15,
            set_add: 15,
        }
    }
}

impl KnowledgeLoad {
    /// Check against a run of `duration_s`; the error names the key under
    /// `knowledge.`.
    pub fn validate(&self, duration_s: f64) -> Result<(), (&'static str, String)> {
        if self.topics.is_empty() || self.topics.len() > 16 {
            return Err((
                "topics",
                format!("must list 1 to 16 topics, got {}", self.topics.len()),
            ));
        }
        if let Some(t) = self
            .topics
            .iter()
            .find(|t| !grove_node::proto::knowledge::valid_topic(t))
        {
            return Err(("topics", format!("{t:?} is not 1 to 32 bytes")));
        }
        if !(self.writers_fraction > 0.0 && self.writers_fraction <= 1.0) {
            return Err((
                "writers_fraction",
                format!("must be in (0, 1], got {}", self.writers_fraction),
            ));
        }
        let t_ok = |t: f64| t.is_finite() && (0.0..=duration_s).contains(&t);
        if !t_ok(self.start_s) {
            return Err((
                "start_s",
                format!("must be within [0, {duration_s}], got {}", self.start_s),
            ));
        }
        if !(t_ok(self.end_s) && self.end_s >= self.start_s) {
            return Err((
                "end_s",
                format!("must be within [start_s, {duration_s}], got {}", self.end_s),
            ));
        }
        if !(self.interval_s.is_finite() && self.interval_s > 0.0) {
            return Err((
                "interval_s",
                format!("must be positive, got {}", self.interval_s),
            ));
        }
        let m = &self.mix;
        if m.observe + m.tree_add + m.tree_move + m.increment + m.set_add == 0 {
            return Err(("mix", "needs a positive weight".into()));
        }
        if let Some(r) = self.reference_s {
            if !t_ok(r) {
                return Err((
                    "reference_s",
                    format!("must be within [0, {duration_s}], got {r}"),
                ));
            }
        }
        Ok(())
    }

    /// The write schedule: (instant ns, host), from `rng`, for hosts
    /// `0..hosts`.
    pub fn plan(&self, hosts: usize, rng: &mut ChaCha8Rng) -> Vec<(u64, usize)> {
        let n = (self.writers_fraction * hosts as f64).round() as usize;
        let mut all: Vec<usize> = (0..hosts).collect();
        let (writers, _) = all.partial_shuffle(rng, n);
        let mut writers = writers.to_vec();
        writers.sort_unstable();
        let mut plan = Vec::new();
        for h in writers {
            let mut t = self.start_s + rng.gen_range(0.0..self.interval_s);
            while t < self.end_s {
                plan.push(((t * 1e9) as u64, h));
                t += self.interval_s;
            }
        }
        plan.sort_unstable();
        plan
    }
}

/// What an issued write is, for the final check.
#[derive(Clone, Debug)]
struct WriteRec {
    host: u32,
    topic: u16,
    /// The item that must be present (key, set item or tree label); `None`
    /// for an increment (checked against the shared counter) and a move (checked by
    /// convergence only).
    item: Option<String>,
    increment: bool,
    acked: bool,
    rejected: bool,
}

/// The knowledge commons as the observer saw it.
pub struct KnowledgeRec {
    topics: Vec<String>,
    mix: Mix,
    writes: Vec<WriteRec>,
    /// Writes sent to each host and not answered yet, in order.
    outstanding: Vec<std::collections::VecDeque<u32>>,
    /// Tree nodes each host created, per topic (the last few).
    created: BTreeMap<(u32, u16), Vec<String>>,
    /// Version hash of each topic on each host, and their combination.
    versions: Vec<BTreeMap<u16, u64>>,
    combined: Vec<u64>,
    running: Vec<bool>,
    /// How many running hosts hold each combined version.
    counts: BTreeMap<u64, u32>,
    /// Since when every running host holds the same version.
    converged_since: Option<u64>,
    pub bytes_delta: u64,
    pub bytes_snapshot: u64,
    /// Operations the sender's document held at each transfer, summed.
    ops_transferred_docs: BTreeMap<u16, u64>,
    pub transfers: u64,
    pub snapshots_sent: u64,
    pub rejected_events: u64,
    pub writes_unsent: u64,
    /// Final collection: per host, (topic, version hash, state hash).
    finals: BTreeMap<u32, Vec<(u16, u64, u64)>>,
    /// Per topic, the most operations a final state held and the size of
    /// its snapshot: the snapshot bytes per operation.
    snapshot_per_op: BTreeMap<u16, (usize, usize)>,
    /// One JSON per distinct (topic, state hash).
    state_json: BTreeMap<(u16, u64), serde_json::Value>,
    final_stats: Vec<Stats>,
}

impl KnowledgeRec {
    pub fn new(load: &KnowledgeLoad, hosts: usize) -> Self {
        let empty = combine(&BTreeMap::new());
        KnowledgeRec {
            topics: load.topics.clone(),
            mix: load.mix.clone(),
            writes: Vec::new(),
            outstanding: vec![Default::default(); hosts],
            created: BTreeMap::new(),
            versions: vec![BTreeMap::new(); hosts],
            combined: vec![empty; hosts],
            running: vec![false; hosts],
            counts: BTreeMap::new(),
            converged_since: None,
            bytes_delta: 0,
            bytes_snapshot: 0,
            ops_transferred_docs: BTreeMap::new(),
            transfers: 0,
            snapshots_sent: 0,
            rejected_events: 0,
            writes_unsent: 0,
            finals: BTreeMap::new(),
            snapshot_per_op: BTreeMap::new(),
            state_json: BTreeMap::new(),
            final_stats: Vec::new(),
        }
    }

    fn topic_index(&self, topic: &str) -> Option<u16> {
        self.topics
            .iter()
            .position(|t| t == topic)
            .map(|i| i as u16)
    }

    /// The next write of `host`: its topic and edit (drawn from `rng`),
    /// recorded as issued.
    pub fn next_write(&mut self, host: u32, rng: &mut ChaCha8Rng) -> (String, Write) {
        let k = self.writes.len();
        let topic = rng.gen_range(0..self.topics.len()) as u16;
        let m = &self.mix;
        let weights = [m.observe, m.tree_add, m.tree_move, m.increment, m.set_add];
        let mut pick = rng.gen_range(0..weights.iter().sum::<u32>());
        let mut kind = 0;
        while pick >= weights[kind] {
            pick -= weights[kind];
            kind += 1;
        }
        let item = format!("h{host}w{k}");
        let mine = self
            .created
            .get(&(host, topic))
            .cloned()
            .unwrap_or_default();
        if kind == 2 && mine.is_empty() {
            kind = 0; // nothing of its own to move yet: observe instead
        }
        let (write, rec_item, increment) = match kind {
            1 => (
                Write::TreeAdd {
                    parent: (rng.gen_bool(0.5)).then(|| mine.last().cloned()).flatten(),
                    label: item.clone(),
                },
                Some(item),
                false,
            ),
            2 => {
                // Under another of the writer's nodes, or to the top; a move
                // under its own descendant is refused by the tree (and
                // counted as rejected).
                let node = mine.choose(rng).expect("non-empty").clone();
                let parent = mine
                    .iter()
                    .find(|n| **n != node)
                    .filter(|_| rng.gen_bool(0.5))
                    .cloned();
                (Write::TreeMove { node, parent }, None, false)
            }
            3 => (
                Write::Increment {
                    name: "votes".into(),
                    by: 1.0,
                },
                None,
                true,
            ),
            4 => (
                Write::SetAdd {
                    name: "tags".into(),
                    item: item.clone(),
                },
                Some(item),
                false,
            ),
            _ => (
                Write::Observe {
                    key: item.clone(),
                    value: serde_json::json!(k),
                },
                Some(item),
                false,
            ),
        };
        self.writes.push(WriteRec {
            host,
            topic,
            item: rec_item,
            increment,
            acked: false,
            rejected: false,
        });
        self.outstanding[host as usize].push_back(k as u32);
        (self.topics[topic as usize].clone(), write)
    }

    /// The last write could not be handed to its host (queue full).
    pub fn unsent(&mut self, host: u32) {
        self.outstanding[host as usize].pop_back();
        self.writes_unsent += 1;
    }

    pub fn host_up(&mut self, host: u32, now: u64) {
        let h = host as usize;
        // A new life: commands of the last one are gone unanswered.
        self.outstanding[h].clear();
        self.versions[h].clear();
        self.set_running(h, true, now);
        self.set_combined(h, combine(&self.versions[h]), now);
    }

    pub fn host_down(&mut self, host: u32, now: u64) {
        self.outstanding[host as usize].clear();
        self.set_running(host as usize, false, now);
    }

    fn set_running(&mut self, h: usize, running: bool, now: u64) {
        if self.running[h] == running {
            return;
        }
        let c = self.combined[h];
        if running {
            *self.counts.entry(c).or_default() += 1;
        } else {
            self.uncount(c);
        }
        self.running[h] = running;
        self.update_converged(now);
    }

    fn uncount(&mut self, c: u64) {
        let n = self.counts.get_mut(&c).expect("counted");
        *n -= 1;
        if *n == 0 {
            self.counts.remove(&c);
        }
    }

    fn set_combined(&mut self, h: usize, c: u64, now: u64) {
        if self.running[h] {
            self.uncount(self.combined[h]);
            *self.counts.entry(c).or_default() += 1;
        }
        self.combined[h] = c;
        self.update_converged(now);
    }

    fn update_converged(&mut self, now: u64) {
        if self.counts.len() <= 1 {
            self.converged_since.get_or_insert(now);
        } else {
            self.converged_since = None;
        }
    }

    pub fn event(&mut self, host: u32, now: u64, event: knowledge::Event) {
        let h = host as usize;
        match event {
            knowledge::Event::Changed {
                topic,
                version_hash,
                ..
            } => {
                if let Some(t) = self.topic_index(&topic) {
                    self.versions[h].insert(t, version_hash);
                    let c = combine(&self.versions[h]);
                    self.set_combined(h, c, now);
                }
            }
            // The driver made it durable in the host's store; the
            // acknowledgement (the reply) is what the final check counts.
            knowledge::Event::Committed { .. } => {}
            knowledge::Event::Sent {
                topic,
                kind,
                bytes,
                doc_ops,
            } => {
                if let Some(t) = self.topic_index(&topic) {
                    *self.ops_transferred_docs.entry(t).or_default() += doc_ops as u64;
                }
                self.transfers += 1;
                if kind == grove_node::proto::knowledge::BlobKind::Snapshot {
                    self.snapshots_sent += 1;
                    self.bytes_snapshot += bytes as u64;
                } else {
                    self.bytes_delta += bytes as u64;
                }
            }
            knowledge::Event::Rejected { .. } => self.rejected_events += 1,
        }
    }

    pub fn reply(&mut self, host: u32, reply: KnowledgeReply) {
        match reply {
            KnowledgeReply::Written { topic, created } => {
                if let Some(k) = self.outstanding[host as usize].pop_front() {
                    self.writes[k as usize].acked = true;
                }
                if let (Some(id), Some(t)) = (created, self.topic_index(&topic)) {
                    let mine = self.created.entry((host, t)).or_default();
                    mine.push(id);
                    if mine.len() > 4 {
                        mine.remove(0);
                    }
                }
            }
            KnowledgeReply::States { states, stats } => self.final_state(host, states, stats),
            KnowledgeReply::Document { .. } => {}
        }
    }

    pub fn command_error(&mut self, host: u32) {
        if let Some(k) = self.outstanding[host as usize].pop_front() {
            self.writes[k as usize].rejected = true;
        }
    }

    fn final_state(&mut self, host: u32, states: Vec<DocState>, stats: Stats) {
        let mut mine = Vec::new();
        for s in states {
            let Some(t) = self.topic_index(&s.topic) else {
                continue;
            };
            self.state_json.entry((t, s.state_hash)).or_insert(s.json);
            let best = self.snapshot_per_op.entry(t).or_insert((0, 0));
            if s.ops > best.0 {
                *best = (s.ops, s.snapshot_bytes);
            }
            mine.push((t, s.version_hash, s.state_hash));
        }
        self.finals.insert(host, mine);
        self.final_stats.push(stats);
    }

    /// The report section; `reference_ns`: the instant convergence is timed
    /// from.
    pub fn section(&self, reference_ns: u64, end_ns: u64) -> KnowledgeSection {
        let live: Vec<u32> = (0..self.running.len() as u32)
            .filter(|&h| self.running[h as usize])
            .collect();
        // Distinct final states per topic, with how many live hosts hold each.
        let mut holders: BTreeMap<(u16, u64), u32> = BTreeMap::new();
        let mut versions: BTreeSet<Vec<(u16, u64)>> = BTreeSet::new();
        let mut states: BTreeSet<Vec<(u16, u64)>> = BTreeSet::new();
        let mut answered = 0;
        for h in &live {
            let Some(f) = self.finals.get(h) else {
                continue;
            };
            answered += 1;
            for &(t, _, s) in f {
                *holders.entry((t, s)).or_default() += 1;
            }
            versions.insert(f.iter().map(|&(t, v, _)| (t, v)).collect());
            states.insert(f.iter().map(|&(t, _, s)| (t, s)).collect());
        }
        let present: BTreeMap<(u16, u64), Present> = holders
            .keys()
            .map(|k| (*k, Present::of(&self.state_json[k])))
            .collect();
        let live_n = live.len() as u32;
        let holding = |t: u16, f: &dyn Fn(&Present) -> bool| -> u32 {
            holders
                .iter()
                .filter(|((tt, _), _)| *tt == t)
                .filter(|(k, _)| f(&present[k]))
                .map(|(_, n)| *n)
                .sum()
        };
        let (mut lost, mut offline) = (0u64, 0u64);
        // Increments go to one shared counter per topic: every live state
        // must hold at least the acknowledged increments of writers that
        // are live, and all live states the same value.
        let mut increments: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        for w in self.writes.iter().filter(|w| w.acked) {
            if w.increment {
                let e = increments.entry(w.topic).or_default();
                e.1 += 1;
                if self.running[w.host as usize] {
                    e.0 += 1;
                }
                continue;
            }
            let Some(item) = &w.item else { continue };
            let n = holding(w.topic, &|p: &Present| p.items.contains(item.as_str()));
            if n == live_n {
                continue;
            }
            if n == 0 && !self.running[w.host as usize] {
                offline += 1;
            } else {
                lost += 1;
            }
        }
        for (&t, &(from_live, all)) in &increments {
            let values: Vec<u64> = holders
                .keys()
                .filter(|(tt, _)| *tt == t)
                .map(|k| {
                    present[k]
                        .counters
                        .get("counter:votes")
                        .copied()
                        .unwrap_or(0.0) as u64
                })
                .collect();
            let min = values.iter().copied().min().unwrap_or(0);
            let max = values.iter().copied().max().unwrap_or(0);
            lost += from_live.saturating_sub(min) + (max - min);
            offline += all.saturating_sub(max.max(from_live));
        }
        // What a snapshot per transfer would have cost: the operations the
        // sender held, at the final snapshot's bytes per operation (which
        // undercounts early, small documents, whose fixed overhead is
        // larger: the comparison favours snapshots).
        let bytes_snapshot_equivalent: u64 = self
            .ops_transferred_docs
            .iter()
            .map(|(t, ops)| {
                let (n, bytes) = self.snapshot_per_op.get(t).copied().unwrap_or((0, 0));
                if n == 0 {
                    0
                } else {
                    (*ops as f64 * bytes as f64 / n as f64).round() as u64
                }
            })
            .sum();
        let converged =
            live_n > 0 && answered == live_n && states.len() == 1 && versions.len() == 1;
        let convergence_ms = match (converged, self.converged_since) {
            (true, Some(since)) if since <= end_ns => {
                Some(round3(since.saturating_sub(reference_ns) as f64 / 1e6))
            }
            _ => None,
        };
        let peak = |f: fn(&Stats) -> u64| self.final_stats.iter().map(f).max().unwrap_or(0);
        let sum = |f: fn(&Stats) -> u64| self.final_stats.iter().map(f).sum::<u64>();
        let reported_by_nodes = ReportedByNodes {
            pending_peak: peak(|s| s.pending_peak),
            updates_held: sum(|s| s.held),
            pending_dropped: sum(|s| s.pending_dropped),
            rejected: sum(|s| s.rejected),
            rate_limited: sum(|s| s.rate_limited),
        };
        let acked = self.writes.iter().filter(|w| w.acked).count() as u64;
        let rejected = self.writes.iter().filter(|w| w.rejected).count() as u64;
        KnowledgeSection {
            topics: self.topics.clone(),
            converged,
            convergence_ms,
            live_nodes: live_n,
            distinct_states: states.len() as u32,
            distinct_versions: versions.len() as u32,
            writes_issued: self.writes.len() as u64,
            writes_acked: acked,
            writes_rejected: rejected,
            writes_unacked: self.writes.len() as u64 - acked - rejected,
            writes_lost: lost,
            writes_offline: offline,
            bytes_delta: self.bytes_delta,
            bytes_snapshot: self.bytes_snapshot,
            bytes_snapshot_equivalent,
            transfers: self.transfers,
            snapshots_sent: self.snapshots_sent,
            writes_unsent: self.writes_unsent,
            rejected: self.rejected_events,
            mix: self.mix.clone(),
            reported_by_nodes,
        }
    }
}

/// What a document state holds, for the presence checks.
struct Present {
    items: BTreeSet<String>,
    counters: BTreeMap<String, f64>,
}

impl Present {
    fn of(json: &serde_json::Value) -> Present {
        let mut items = BTreeSet::new();
        let mut counters = BTreeMap::new();
        if let Some(root) = json.as_object() {
            for (name, v) in root {
                if name == "observations" || name.starts_with("set:") {
                    if let Some(m) = v.as_object() {
                        items.extend(m.keys().cloned());
                    }
                } else if name.starts_with("counter:") {
                    counters.insert(name.clone(), v.as_f64().unwrap_or(0.0));
                } else if name == "graph" {
                    labels(v, &mut items);
                }
            }
        }
        Present { items, counters }
    }
}

/// Every tree node label under `v`.
fn labels(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| labels(x, out)),
        serde_json::Value::Object(o) => {
            if let Some(l) = o
                .get("meta")
                .and_then(|m| m.get("label"))
                .and_then(|l| l.as_str())
            {
                out.insert(l.to_owned());
            }
            o.values().for_each(|x| labels(x, out));
        }
        _ => {}
    }
}

fn combine(versions: &BTreeMap<u16, u64>) -> u64 {
    let mut h = Sha256::new();
    for (t, v) in versions {
        if *v != 0 {
            h.update(t.to_be_bytes());
            h.update(v.to_be_bytes());
        }
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// The report's `knowledge` section.
#[derive(Clone, Debug, Serialize)]
pub struct KnowledgeSection {
    pub topics: Vec<String>,
    /// Every live node answered and holds the same operations and the same
    /// state of every document.
    pub converged: bool,
    /// From the reference instant (the heal, or the end of writes) until
    /// every live node held the same version for good; `null` when the run
    /// did not converge.
    pub convergence_ms: Option<f64>,
    pub live_nodes: u32,
    pub distinct_states: u32,
    pub distinct_versions: u32,
    pub writes_issued: u64,
    pub writes_acked: u64,
    pub writes_rejected: u64,
    /// Issued to a host that went away before answering.
    pub writes_unacked: u64,
    /// Acknowledged and missing on some live node (see the module docs).
    pub writes_lost: u64,
    /// Acknowledged, held only by the store of a writer that is offline at
    /// the end (it comes back with its writer).
    pub writes_offline: u64,
    /// Bytes of updates shipped as deltas (blob bytes, without headers).
    pub bytes_delta: u64,
    /// Bytes of bootstrap snapshots shipped to nodes with empty documents.
    pub bytes_snapshot: u64,
    /// What a full snapshot per transfer would have cost instead.
    pub bytes_snapshot_equivalent: u64,
    pub transfers: u64,
    pub snapshots_sent: u64,
    /// Writes that could not be handed to their host (its command queue
    /// was full); counted in `writes_unacked` too.
    pub writes_unsent: u64,
    /// Blobs the nodes refused, one `Rejected` event each, over every life
    /// of every node.
    pub rejected: u64,
    pub mix: Mix,
    /// The nodes' own counters, fetched from the nodes live at the end
    /// (not observations; a node's counters start again with each life).
    pub reported_by_nodes: ReportedByNodes,
}

/// The knowledge counters live nodes report about themselves at the end
/// (`knowledge.reported_by_nodes`): internal figures no observer sees.
#[derive(Clone, Debug, Serialize)]
pub struct ReportedByNodes {
    /// Most updates held for missing dependencies at once in one
    /// document, over live nodes.
    pub pending_peak: u64,
    /// Updates held for missing dependencies, summed.
    pub updates_held: u64,
    /// Held updates dropped because the queue was full, summed.
    pub pending_dropped: u64,
    /// Blobs refused, summed (the nodes' count of what `rejected` counts
    /// from events).
    pub rejected: u64,
    /// Datagrams dropped by the per-peer rate limit, summed.
    pub rate_limited: u64,
}
