//! The knowledge commons: Loro CRDT documents, one per topic, shared by
//! delta sync over the overlay and repaired by anti-entropy.
//!
//! # Contract
//!
//! [`Knowledge`] is a deterministic, sans-IO state machine. Inputs:
//! [`Knowledge::write`] (an application edit), [`Knowledge::handle_chunk`]
//! (a wire message from a peer), [`Knowledge::handle_neighbor_up`] /
//! [`Knowledge::handle_neighbor_down`] (HyParView's active view) and
//! [`Knowledge::handle_timeout`] once `now` reaches
//! [`Knowledge::poll_timeout`]. Outputs are drained with
//! [`Knowledge::poll_output`] after every input. Every document's Loro peer
//! id is derived from the node's identity and a per-life seed (never Loro's
//! random default, and never reused by a restarted node, whose fresh
//! document would otherwise reissue operation ids); change timestamps are
//! off, so nothing reads a clock. Randomness (anti-entropy partners and
//! jitter) comes from the ChaCha stream given at construction; neighbours,
//! documents and peers are kept in `BTreeMap`s.
//!
//! # Protocol
//!
//! - **Delta sync** (Shapiro et al. 2011, state-based CRDTs shipped as
//!   deltas; Almeida et al. 2018, delta-state CRDTs): a local edit is
//!   committed and its update (only the new operations) reported as
//!   [`Event::Committed`]. Every `push_interval`, for each document that
//!   changed and each neighbour, the node sends the update from the version
//!   vector it believes the neighbour has (learnt from its summaries and
//!   from what it sent or received on that link): new operations cross each
//!   link once, batched, and flow on hop by hop.
//! - **Held updates**: an update whose operations start past what the
//!   document holds for some peer (it overtook its dependencies) is held
//!   (at most `max_pending_updates` per document, oldest dropped) and
//!   imported once the gap is filled.
//! - **Anti-entropy** (Demers et al. 1987, push-pull): on `NeighborUp`, and
//!   every `anti_entropy_interval` (jittered) with a random neighbour or,
//!   with `contact_probability`, a remembered peer outside the active view,
//!   the node sends a `Summary` (its version vector). The receiver answers
//!   with exactly the operations the sender misses (a `Delta`, or a
//!   `Snapshot` when the sender's vector is empty: a late joiner
//!   bootstraps from a snapshot and then follows deltas) and, when it
//!   misses operations itself, a `SummaryReply` with its own vector, which
//!   is answered in turn.
//! - **Chunking**: every blob travels as chunks of at most 1,200 bytes
//!   (see [`Chunk`]) and is reassembled per (peer, blob).
//!
//! # Bounds
//!
//! At most `max_topics` documents, `max_pending_updates` held updates per
//! document, `max_partial_blobs` blobs in reassembly (each at most
//! `max_update_bytes`, dropped after `partial_blob_ttl`), `max_contacts`
//! remembered peers, [`MAX_PEER_STATES`] per-peer rate states and
//! [`OUTPUT_CAPACITY`] queued outputs. Each peer's traffic is limited to
//! `peer_rate_bytes_per_s` (burst `peer_burst_bytes`); a blob that fails to
//! decode or import is rejected ([`Event::Rejected`]) and counted, and the
//! node goes on.

mod config;
mod doc;
pub(crate) mod message;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use loro::{ExportMode, IdSpan, LoroDoc, VersionVector};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub use self::config::{
    Config, ConfigError, MAX_CONTACTS, MAX_PARTIAL_BLOBS, MAX_PENDING_UPDATES, MAX_RATE_BYTES,
    MAX_TOPICS,
};
use self::doc::Doc;
pub use self::doc::{state_hash, Write, WriteError, MAX_NAME_BYTES, MAX_VALUE_BYTES};
pub use self::message::{
    valid_topic, BlobKind, Chunk, MAX_BLOB_BYTES, MAX_CHUNKS, MAX_CHUNK_BYTES, MAX_TOPIC_BYTES,
};
use crate::{PeerId, Time};

/// Per-peer rate states kept (bounded; the least recently seen is dropped).
pub const MAX_PEER_STATES: usize = 256;
/// Outputs queued before new ones are dropped (a driver drains after every
/// input, so this is only reached by a driver that does not).
pub const OUTPUT_CAPACITY: usize = 16384;
/// A neighbour whose summary has not arrived is asked again after this.
const SUMMARY_RETRY: Duration = Duration::from_secs(2);

/// What the knowledge commons tells the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A document changed (a local edit or an import); `version_hash` is
    /// equal on two nodes exactly when they hold the same operations.
    Changed {
        topic: String,
        version_hash: u64,
        local: bool,
    },
    /// A local edit was committed: `update` holds exactly its operations
    /// (what an application persists to replay after a restart).
    Committed { topic: String, update: Bytes },
    /// A blob was sent to a peer: its size, and how many operations the
    /// document held then (what a full snapshot would have carried instead;
    /// exporting one per transfer to weigh it would cost more than the
    /// transfer, and makes Loro keep an encoded copy of its history).
    Sent {
        topic: String,
        kind: BlobKind,
        bytes: usize,
        doc_ops: usize,
    },
    /// A blob from `from` was refused.
    Rejected {
        from: PeerId,
        topic: String,
        reason: &'static str,
    },
}

/// An output of the core: a chunk for a peer, or an event.
pub type Output = crate::proto::Output<Chunk, Event>;

/// Counts, for logs, tests and the simulator's final collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub imports: u64,
    /// Blobs refused: undecodable, failed import, over a limit.
    pub rejected: u64,
    /// Datagrams dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Updates held for missing dependencies (total, and the most held at
    /// once in one document).
    pub held: u64,
    pub pending_peak: u64,
    /// Held updates dropped because the queue was full.
    pub pending_dropped: u64,
    /// Partially received blobs dropped (expired or evicted).
    pub partial_dropped: u64,
    /// Summaries not answered because the peer asked too soon.
    pub answers_suppressed: u64,
    pub outputs_dropped: u64,
}

/// A document's final state, for correctness checks from outside.
#[derive(Clone, Debug, PartialEq)]
pub struct DocState {
    pub topic: String,
    pub version_hash: u64,
    pub state_hash: u64,
    pub json: serde_json::Value,
    /// Operations held, and the size of a full snapshot of them.
    pub ops: usize,
    pub snapshot_bytes: usize,
}

struct Topic {
    doc: Doc,
    /// Updates held for missing dependencies: (blob, its partial start).
    pending: VecDeque<(Bytes, VersionVector)>,
    /// Changed since the last push.
    dirty: bool,
}

struct Neighbor {
    /// What the neighbour is believed to hold, per topic; absent: not known
    /// yet (a summary is awaited, and nothing is pushed).
    known: BTreeMap<String, VersionVector>,
    summary_sent_at: Option<Time>,
}

struct PeerState {
    tokens: f64,
    refilled: Time,
    answered: BTreeMap<String, Time>,
}

struct Partial {
    kind: BlobKind,
    topic: String,
    chunks: Vec<Option<Bytes>>,
    missing: usize,
    started: Time,
}

/// The knowledge commons of one node.
pub struct Knowledge {
    me: PeerId,
    loro_peer: u64,
    config: Config,
    topics: BTreeMap<String, Topic>,
    neighbors: BTreeMap<PeerId, Neighbor>,
    contacts: Vec<PeerId>,
    peers: BTreeMap<PeerId, PeerState>,
    partials: BTreeMap<(PeerId, u32), Partial>,
    next_blob: u32,
    rng: ChaCha8Rng,
    next_push: Option<Time>,
    next_anti_entropy: Option<Time>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl Knowledge {
    /// The commons of node `me`; `life_seed` differs between lives of the
    /// same identity (the node draws it from its seeded stream) so that a
    /// restarted node never reuses its Loro operation ids.
    ///
    /// # Panics
    ///
    /// When `config` is enabled and does not [`Config::validate`].
    pub fn new(me: PeerId, life_seed: u64, config: Config, mut rng: ChaCha8Rng) -> Knowledge {
        if config.enabled {
            if let Err(e) = config.validate() {
                panic!("invalid knowledge config: {e}");
            }
        }
        let loro_peer = loro_peer_id(&me, life_seed);
        let next_anti_entropy = config
            .enabled
            .then(|| jitter(&mut rng, config.anti_entropy_interval));
        let mut k = Knowledge {
            me,
            loro_peer,
            topics: BTreeMap::new(),
            neighbors: BTreeMap::new(),
            contacts: Vec::new(),
            peers: BTreeMap::new(),
            partials: BTreeMap::new(),
            next_blob: rng.gen(),
            rng,
            next_push: None,
            next_anti_entropy,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            config,
        };
        for t in k.config.topics.clone() {
            k.topic_mut(&t);
        }
        k
    }

    // ---- getters ----

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// The Loro peer id of this node's operations in this life.
    pub fn loro_peer(&self) -> u64 {
        self.loro_peer
    }
    /// Topics held, in order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }
    /// Updates currently held for missing dependencies, over all documents.
    pub fn pending(&self) -> usize {
        self.topics.values().map(|t| t.pending.len()).sum()
    }
    /// A document's state as JSON (`None`: topic not held).
    pub fn read(&self, topic: &str) -> Option<serde_json::Value> {
        self.topics.get(topic).map(|t| t.doc.json())
    }
    /// Every document's state, for checks from outside.
    pub fn states(&self) -> Vec<DocState> {
        self.topics
            .iter()
            .map(|(name, t)| {
                let json = t.doc.json();
                DocState {
                    topic: name.clone(),
                    version_hash: t.doc.version_hash,
                    state_hash: state_hash(&json),
                    json,
                    ops: t.doc.doc.len_ops(),
                    snapshot_bytes: t
                        .doc
                        .doc
                        .export(ExportMode::Snapshot)
                        .map_or(0, |b| b.len()),
                }
            })
            .collect()
    }

    // ---- inputs ----

    /// Apply an application edit to `topic`'s document (joined if new);
    /// returns the id of a node a `TreeAdd` created.
    pub fn write(
        &mut self,
        now: Time,
        topic: &str,
        write: &Write,
    ) -> Result<Option<String>, WriteError> {
        if !self.config.enabled {
            return Err(WriteError::Disabled);
        }
        if !valid_topic(topic) {
            return Err(WriteError::BadTopic(topic.to_owned()));
        }
        let max_topics = self.config.max_topics;
        let max_update = self.config.max_update_bytes;
        let Some(t) = self.topic_mut(topic) else {
            return Err(WriteError::TooManyTopics(max_topics));
        };
        let (update, created) = t.doc.apply(write)?;
        if update.len() > max_update {
            // Already committed locally; it will travel split by anti-entropy.
            tracing::warn!(
                topic,
                len = update.len(),
                "local update over max_update_bytes"
            );
        }
        self.stats.writes += 1;
        self.emit(Event::Committed {
            topic: topic.to_owned(),
            update,
        });
        self.on_changed(now, topic, true);
        Ok(created)
    }

    /// Import an update this node persisted in an earlier life (its own
    /// [`Event::Committed`] updates), before it rejoins.
    pub fn restore(&mut self, now: Time, topic: &str, update: &[u8]) -> Result<(), WriteError> {
        if !self.config.enabled {
            return Err(WriteError::Disabled);
        }
        let max_topics = self.config.max_topics;
        let t = self
            .topic_mut(topic)
            .ok_or(WriteError::TooManyTopics(max_topics))?;
        t.doc
            .doc
            .import(update)
            .map_err(|e| WriteError::Refused(e.to_string()))?;
        t.doc.mark_persisted();
        self.on_changed(now, topic, true);
        Ok(())
    }

    /// `peer` entered the active view: exchange summaries.
    pub fn handle_neighbor_up(&mut self, now: Time, peer: PeerId) {
        if !self.config.enabled || peer == self.me {
            return;
        }
        self.remember(peer);
        self.neighbors.insert(
            peer,
            Neighbor {
                known: BTreeMap::new(),
                summary_sent_at: None,
            },
        );
        self.send_summaries(peer, BlobKind::Summary);
        if let Some(n) = self.neighbors.get_mut(&peer) {
            n.summary_sent_at = Some(now);
        }
    }

    /// A peer left the active view.
    pub fn handle_neighbor_down(&mut self, _now: Time, peer: &PeerId) {
        self.neighbors.remove(peer);
    }

    /// A chunk arrived from `from`.
    pub fn handle_chunk(&mut self, now: Time, from: PeerId, chunk: Chunk) {
        if !self.config.enabled {
            return;
        }
        // What the datagram weighs, near enough (header and chunk fields).
        let bytes = chunk.data.len() + chunk.topic.len() + 45;
        if !self.admit(now, from, bytes) {
            self.stats.rate_limited += 1;
            return;
        }
        let key = (from, chunk.blob);
        let count = usize::from(chunk.count);
        let index = usize::from(chunk.index);
        if count * MAX_CHUNK_BYTES > self.config.max_update_bytes + MAX_CHUNK_BYTES {
            self.reject(from, &chunk.topic, "blob over max_update_bytes");
            return;
        }
        let blob = if count == 1 {
            Some((chunk.kind, chunk.topic, chunk.data))
        } else {
            self.expire_partials(now);
            if !self.partials.contains_key(&key) {
                if self.partials.len() >= self.config.max_partial_blobs {
                    let oldest = self
                        .partials
                        .iter()
                        .min_by_key(|(k, p)| (p.started, **k))
                        .map(|(k, _)| *k)
                        .expect("non-empty");
                    self.partials.remove(&oldest);
                    self.stats.partial_dropped += 1;
                }
                self.partials.insert(
                    key,
                    Partial {
                        kind: chunk.kind,
                        topic: chunk.topic.clone(),
                        chunks: vec![None; count],
                        missing: count,
                        started: now,
                    },
                );
            }
            let p = self.partials.get_mut(&key).expect("inserted");
            if p.kind != chunk.kind || p.topic != chunk.topic || p.chunks.len() != count {
                self.partials.remove(&key);
                self.reject(from, &chunk.topic, "chunks of one blob disagree");
                return;
            }
            if p.chunks[index].is_none() {
                p.chunks[index] = Some(chunk.data);
                p.missing -= 1;
            }
            if p.missing > 0 {
                return;
            }
            let p = self.partials.remove(&key).expect("present");
            let mut data = Vec::with_capacity(count * MAX_CHUNK_BYTES);
            for c in p.chunks.into_iter().flatten() {
                data.extend_from_slice(&c);
            }
            Some((p.kind, p.topic, Bytes::from(data)))
        };
        if let Some((kind, topic, data)) = blob {
            self.handle_blob(now, from, kind, &topic, data);
        }
    }

    /// Fire the push and anti-entropy timers due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.config.enabled {
            return;
        }
        if self.next_push.is_some_and(|t| t <= now) {
            self.next_push = None;
            self.push(now);
        }
        if self.next_anti_entropy.is_some_and(|t| t <= now) {
            self.next_anti_entropy =
                Some(now + jitter(&mut self.rng, self.config.anti_entropy_interval));
            self.expire_partials(now);
            self.anti_entropy();
        }
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        crate::compact::pop_front_releasing(&mut self.outputs)
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        [self.next_push, self.next_anti_entropy]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- internals ----

    fn topic_mut(&mut self, topic: &str) -> Option<&mut Topic> {
        if !self.topics.contains_key(topic) {
            if self.topics.len() >= self.config.max_topics || !valid_topic(topic) {
                return None;
            }
            self.topics.insert(
                topic.to_owned(),
                Topic {
                    doc: Doc::new(self.loro_peer),
                    pending: VecDeque::new(),
                    dirty: false,
                },
            );
        }
        self.topics.get_mut(topic)
    }

    fn on_changed(&mut self, now: Time, topic: &str, local: bool) {
        let t = self.topics.get_mut(topic).expect("topic held");
        if !t.doc.rehash() {
            return;
        }
        t.dirty = true;
        let version_hash = t.doc.version_hash;
        if self.next_push.is_none() {
            self.next_push = Some(now + self.config.push_interval);
        }
        self.emit(Event::Changed {
            topic: topic.to_owned(),
            version_hash,
            local,
        });
    }

    /// Send each neighbour what it is believed to miss of every changed
    /// document.
    fn push(&mut self, now: Time) {
        let dirty: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        let ids: Vec<PeerId> = self.neighbors.keys().copied().collect();
        for topic in &dirty {
            self.topics.get_mut(topic).expect("held").dirty = false;
            let vv = self.topics[topic].doc.vv();
            for id in &ids {
                let n = self.neighbors.get_mut(id).expect("listed");
                let Some(known) = n.known.get(topic) else {
                    continue;
                };
                if known.get_missing_span(&vv).is_empty() {
                    continue;
                }
                let from = known.clone();
                n.known.insert(topic.clone(), vv.clone());
                self.send_missing(*id, topic, &from, false);
            }
        }
        // Neighbours whose summary has not come: ask again.
        for id in &ids {
            let n = &self.neighbors[id];
            let waiting = self.topics.keys().any(|t| !n.known.contains_key(t));
            if waiting && n.summary_sent_at.is_none_or(|t| now >= t + SUMMARY_RETRY) {
                self.send_summaries(*id, BlobKind::Summary);
                self.neighbors.get_mut(id).expect("listed").summary_sent_at = Some(now);
            }
        }
        let waiting = self
            .neighbors
            .values()
            .any(|n| self.topics.keys().any(|t| !n.known.contains_key(t)));
        if waiting && self.next_push.is_none() {
            self.next_push = Some(now + SUMMARY_RETRY);
        }
    }

    fn anti_entropy(&mut self) {
        let use_contact = !self.contacts.is_empty()
            && (self.neighbors.is_empty() || self.rng.gen_bool(self.config.contact_probability));
        let target = if use_contact {
            self.contacts.choose(&mut self.rng).copied()
        } else {
            let ids: Vec<PeerId> = self.neighbors.keys().copied().collect();
            ids.choose(&mut self.rng).copied()
        };
        if let Some(peer) = target {
            self.send_summaries(peer, BlobKind::Summary);
        }
    }

    fn send_summaries(&mut self, to: PeerId, kind: BlobKind) {
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        for topic in topics {
            let vv = Bytes::from(self.topics[&topic].doc.vv().encode());
            self.send_blob(to, kind, &topic, vv);
        }
    }

    /// Send `to` every operation of `topic` past `from`, split into blobs of
    /// at most `max_update_bytes`; as a snapshot when `bootstrap` and `from`
    /// is empty (a peer that asked with an empty document).
    fn send_missing(&mut self, to: PeerId, topic: &str, from: &VersionVector, bootstrap: bool) {
        let doc = &self.topics[topic].doc.doc;
        let (kind, blobs) = if bootstrap && from.is_empty() {
            match doc.export(ExportMode::Snapshot) {
                Ok(b) if b.len() <= self.config.max_update_bytes => {
                    (BlobKind::Snapshot, vec![Bytes::from(b)])
                }
                _ => (
                    BlobKind::Delta,
                    export_bounded(doc, from, self.config.max_update_bytes),
                ),
            }
        } else {
            (
                BlobKind::Delta,
                export_bounded(doc, from, self.config.max_update_bytes),
            )
        };
        for b in blobs {
            self.send_blob(to, kind, topic, b);
        }
    }

    fn send_blob(&mut self, to: PeerId, kind: BlobKind, topic: &str, data: Bytes) {
        let blob = self.next_blob;
        self.next_blob = self.next_blob.wrapping_add(1);
        let Some(chunks) = Chunk::split(kind, topic, blob, &data) else {
            return;
        };
        if matches!(kind, BlobKind::Delta | BlobKind::Snapshot) {
            let doc_ops = self.topics[topic].doc.doc.len_ops();
            self.emit(Event::Sent {
                topic: topic.to_owned(),
                kind,
                bytes: data.len(),
                doc_ops,
            });
        }
        for chunk in chunks {
            self.output(Output::Send { to, message: chunk });
        }
    }

    fn handle_blob(&mut self, now: Time, from: PeerId, kind: BlobKind, topic: &str, data: Bytes) {
        if self.topic_mut(topic).is_none() {
            self.reject(from, topic, "over max_topics");
            return;
        }
        if data.len() > self.config.max_update_bytes {
            self.reject(from, topic, "blob over max_update_bytes");
            return;
        }
        match kind {
            BlobKind::Summary | BlobKind::SummaryReply => {
                let Ok(theirs) = VersionVector::decode(&data) else {
                    self.reject(from, topic, "undecodable version vector");
                    return;
                };
                self.on_summary(now, from, kind, topic, theirs);
            }
            BlobKind::Delta | BlobKind::Snapshot => {
                let Ok(meta) = LoroDoc::decode_import_blob_meta(&data, true) else {
                    self.reject(from, topic, "undecodable update");
                    return;
                };
                if let Some(n) = self.neighbors.get_mut(&from) {
                    if let Some(known) = n.known.get_mut(topic) {
                        known.merge(&meta.partial_end_vv);
                    }
                }
                self.remember(from);
                self.import(now, from, topic, data, meta.partial_start_vv);
            }
        }
    }

    fn on_summary(
        &mut self,
        now: Time,
        from: PeerId,
        kind: BlobKind,
        topic: &str,
        theirs: VersionVector,
    ) {
        self.remember(from);
        // A request says what the peer holds now (and so what was lost on
        // the way); a reply may predate what we sent since, so it adds to
        // what the neighbour is believed to hold.
        let mut theirs = theirs;
        if let Some(n) = self.neighbors.get_mut(&from) {
            match (kind, n.known.get_mut(topic)) {
                (BlobKind::SummaryReply, Some(known)) => {
                    known.merge(&theirs);
                    theirs = known.clone();
                }
                _ => {
                    n.known.insert(topic.to_owned(), theirs.clone());
                }
            }
        }
        if kind == BlobKind::Summary {
            let min = self.config.min_answer_interval;
            let state = self.peer_state(now, from);
            if state.answered.get(topic).is_some_and(|&at| now < at + min) {
                self.stats.answers_suppressed += 1;
                return;
            }
            state.answered.insert(topic.to_owned(), now);
        }
        let mine = self.topics[topic].doc.vv();
        if !theirs.get_missing_span(&mine).is_empty() {
            self.send_missing(from, topic, &theirs, true);
            if let Some(n) = self.neighbors.get_mut(&from) {
                n.known.insert(topic.to_owned(), mine.clone());
            }
        }
        if kind == BlobKind::Summary && !mine.get_missing_span(&theirs).is_empty() {
            let vv = Bytes::from(mine.encode());
            self.send_blob(from, BlobKind::SummaryReply, topic, vv);
        }
    }

    /// Import `data` into `topic`, or hold it until what it starts from is
    /// there; then retry what is held.
    fn import(&mut self, now: Time, from: PeerId, topic: &str, data: Bytes, start: VersionVector) {
        let max_pending = self.config.max_pending_updates;
        let t = self.topics.get_mut(topic).expect("held");
        if !starts_within(&t.doc.vv(), &start) {
            if t.pending.len() >= max_pending {
                t.pending.pop_front();
                self.stats.pending_dropped += 1;
            }
            t.pending.push_back((data, start));
            self.stats.held += 1;
            self.stats.pending_peak = self.stats.pending_peak.max(t.pending.len() as u64);
            return;
        }
        if t.doc.doc.import(&data).is_err() {
            self.reject(from, topic, "import failed");
            return;
        }
        self.stats.imports += 1;
        // Retry held updates until none becomes importable.
        loop {
            let t = self.topics.get_mut(topic).expect("held");
            let vv = t.doc.vv();
            let Some(i) = t.pending.iter().position(|(_, s)| starts_within(&vv, s)) else {
                break;
            };
            let (data, _) = t.pending.remove(i).expect("found");
            if t.doc.doc.import(&data).is_ok() {
                self.stats.imports += 1;
            } else {
                self.reject(from, topic, "held update failed to import");
            }
        }
        self.on_changed(now, topic, false);
    }

    /// Token bucket per peer; whether `bytes` more are admitted.
    fn admit(&mut self, now: Time, peer: PeerId, bytes: usize) -> bool {
        let rate = self.config.peer_rate_bytes_per_s as f64;
        let burst = self.config.peer_burst_bytes as f64;
        let state = self.peer_state(now, peer);
        let elapsed = now.saturating_sub(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(burst);
        state.refilled = now;
        if state.tokens < bytes as f64 {
            return false;
        }
        state.tokens -= bytes as f64;
        true
    }

    fn peer_state(&mut self, now: Time, peer: PeerId) -> &mut PeerState {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEER_STATES {
            let stalest = self
                .peers
                .iter()
                .min_by_key(|(id, s)| (s.refilled, **id))
                .map(|(id, _)| *id)
                .expect("non-empty");
            self.peers.remove(&stalest);
        }
        let burst = self.config.peer_burst_bytes as f64;
        self.peers.entry(peer).or_insert(PeerState {
            tokens: burst,
            refilled: now,
            answered: BTreeMap::new(),
        })
    }

    fn remember(&mut self, peer: PeerId) {
        if self.contacts.contains(&peer) {
            return;
        }
        if self.contacts.len() < self.config.max_contacts {
            self.contacts.push(peer);
        } else {
            let i = self.rng.gen_range(0..self.contacts.len());
            self.contacts[i] = peer;
        }
    }

    fn expire_partials(&mut self, now: Time) {
        let ttl = self.config.partial_blob_ttl;
        let before = self.partials.len();
        self.partials.retain(|_, p| now < p.started + ttl);
        self.stats.partial_dropped += (before - self.partials.len()) as u64;
    }

    fn reject(&mut self, from: PeerId, topic: &str, reason: &'static str) {
        self.stats.rejected += 1;
        self.emit(Event::Rejected {
            from,
            topic: topic.to_owned(),
            reason,
        });
    }

    fn emit(&mut self, event: Event) {
        self.output(Output::Event(event));
    }

    fn output(&mut self, out: Output) {
        if self.outputs.len() >= OUTPUT_CAPACITY {
            self.stats.outputs_dropped += 1;
            return;
        }
        self.outputs.push_back(out);
    }
}

/// The Loro peer id of `me` in the life seeded by `life_seed`: 63 bits of
/// SHA-256(id, seed) (Loro reserves `u64::MAX`).
fn loro_peer_id(me: &PeerId, life_seed: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"grove knowledge peer");
    h.update(me.as_bytes());
    h.update(life_seed.to_be_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes")) >> 1
}

/// Whether every peer's operations in a blob starting at `start` begin at
/// or before what `vv` holds (no gap before them).
fn starts_within(vv: &VersionVector, start: &VersionVector) -> bool {
    start
        .iter()
        .all(|(peer, &counter)| counter <= vv.get(peer).copied().unwrap_or(0))
}

/// `interval` scaled by a random factor in [0.5, 1.5).
fn jitter(rng: &mut ChaCha8Rng, interval: Duration) -> Duration {
    interval.mul_f64(rng.gen_range(0.5..1.5))
}

/// The operations of `doc` past `from`, as updates of at most `max` bytes
/// each: one update when it fits, else split by peer and counter range.
fn export_bounded(doc: &LoroDoc, from: &VersionVector, max: usize) -> Vec<Bytes> {
    if let Ok(b) = doc.export(ExportMode::updates(from)) {
        if b.len() <= max {
            return if b.is_empty() {
                Vec::new()
            } else {
                vec![Bytes::from(b)]
            };
        }
    }
    let mut spans = from.get_missing_span(&doc.oplog_vv());
    spans.sort_by_key(|s| (s.peer, s.counter.start));
    let mut out = Vec::new();
    split_spans(doc, spans, max, &mut out);
    out
}

fn split_spans(doc: &LoroDoc, spans: Vec<IdSpan>, max: usize, out: &mut Vec<Bytes>) {
    if spans.is_empty() {
        return;
    }
    if let Ok(b) = doc.export(ExportMode::updates_in_range(spans.clone())) {
        if b.len() <= max {
            if !b.is_empty() {
                out.push(Bytes::from(b));
            }
            return;
        }
    }
    if spans.len() > 1 {
        let mut first = spans;
        let second = first.split_off(first.len() / 2);
        split_spans(doc, first, max, out);
        split_spans(doc, second, max, out);
        return;
    }
    let s = spans[0];
    let (start, end) = (s.counter.start, s.counter.end);
    if end - start <= 1 {
        tracing::warn!("a single operation is over max_update_bytes; not sent");
        return;
    }
    let mid = start + (end - start) / 2;
    split_spans(doc, vec![IdSpan::new(s.peer, start, mid)], max, out);
    split_spans(doc, vec![IdSpan::new(s.peer, mid, end)], max, out);
}

impl crate::proto::Core for Knowledge {
    type Message = Chunk;
    type Event = Event;

    fn handle_message(&mut self, now: Time, from: crate::Peer, chunk: Chunk) {
        self.handle_chunk(now, from.id, chunk);
    }
    fn handle_neighbor_up(&mut self, now: Time, peer: crate::Peer) {
        Knowledge::handle_neighbor_up(self, now, peer.id);
    }
    fn handle_neighbor_down(&mut self, now: Time, peer: &PeerId) {
        Knowledge::handle_neighbor_down(self, now, peer);
    }
    fn handle_timeout(&mut self, now: Time) {
        Knowledge::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Knowledge::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Knowledge::poll_timeout(self)
    }
}
