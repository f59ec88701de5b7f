//! GossipSub: topic meshes with gossip, after the libp2p specs
//! `pubsub/gossipsub/gossipsub-v1.0.md`, `-v1.1.md` (peer scoring and
//! hardening) and `-v1.2.md` (IDONTWANT).
//!
//! # Contract
//!
//! [`GossipSub`] is a deterministic, sans-IO state machine: it never reads
//! a clock or OS entropy. Every input carries `now` (non-decreasing);
//! random choices come from the ChaCha stream it is given; every table is
//! a `BTreeMap`, `BTreeSet`, `VecDeque` or `Vec`. The driver must:
//! 1. pass every decoded GossipSub message to [`GossipSub::handle_message`];
//! 2. report HyParView neighbours ([`GossipSub::handle_neighbor_up`]) and
//!    offer other known peers ([`GossipSub::add_candidates`], e.g. the
//!    passive view, once per heartbeat);
//! 3. call [`GossipSub::handle_timeout`] once `now` reaches
//!    [`GossipSub::poll_timeout`];
//! 4. drain [`GossipSub::poll_output`] after every input.
//!
//! # Where peers come from
//!
//! libp2p's gossipsub treats every connected peer as a candidate; Grove
//! runs over UDP with a HyParView active view of ~5 peers, too few for
//! D = 6..12. The topic-peer table ([`Config::max_peers`], 64) is filled
//! from: HyParView active-view neighbours; passive-view peers offered each
//! heartbeat (a few at a time, until the table is full); peers named in
//! PRUNE peer exchange (only from peers scoring at least `accept_px`); and
//! peers that speak GossipSub to us. Joining the table, each side sends its
//! subscriptions. A peer is "outbound" (for D_out) when we contacted it
//! first. Over UDP there is no connection to watch: we re-announce our
//! subscriptions to a peer we sent nothing for `announce_interval`, and
//! drop a peer not heard from for `peer_timeout`. When the table is full,
//! a newcomer takes the place of the lowest-scoring peer if that peer's
//! score is negative (so Sybils with bad scores cannot fill it for good).
//!
//! # What is implemented
//!
//! - v1.0: SUBSCRIBE/UNSUBSCRIBE announcements; per-topic mesh kept
//!   between D_lo and D_hi (target D) by the heartbeat; fanout for topics
//!   we publish to without subscribing, expired after `fanout_ttl`; the
//!   message cache (`mcache_len` windows, IHAVE over the last
//!   `mcache_gossip`); the seen cache with a TTL; IHAVE to D_lazy (or
//!   `gossip_factor` of the eligible) non-mesh peers per heartbeat; IWANT
//!   answered from the cache; GRAFT/PRUNE.
//! - v1.1: PRUNE backoff (GRAFT during backoff is a P7 fault, twice within
//!   `graft_flood_threshold`), peer exchange on PRUNE, flood publishing,
//!   D_score/D_out when pruning an oversubscribed mesh and D_out grafting,
//!   opportunistic grafting, IHAVE/IWANT limits per heartbeat, IWANT
//!   retransmission limits, broken IWANT promises (P7), the score function
//!   P1..P7 ([`score`]) and the gossip, publish, graylist, accept-PX and
//!   opportunistic-graft thresholds.
//! - v1.2: IDONTWANT: on receiving a new message of at least
//!   `idontwant_threshold_bytes`, before validating it, we tell our mesh
//!   peers; we do not forward a message to a peer that told us so.
//! - Messages are signed with the publisher's ed25519 key (StrictSign);
//!   the id is SHA-256 of publisher and sequence number. A bad signature is
//!   an invalid message (P4); so is one the validator rejects.
//!
//! # Departures from the specs, and why
//!
//! - One message per datagram, not RPCs batching control and messages: the
//!   node speaks datagrams. IHAVE/IWANT/IDONTWANT carry at most [`MAX_IDS`]
//!   ids each (several datagrams when there are more).
//! - Scores decay at the first heartbeat at or after each
//!   `decay_interval`, not on a timer of their own.
//! - An unsubscribed peer sending us a topic's messages is ignored.
//!
//! # Adversary (simulation only)
//!
//! [`Adversary`] makes a node misbehave from a given instant: drop every
//! forward and IWANT, flood invalid messages, send IHAVE for messages it
//! never sends, GRAFT during backoff, and GRAFT one target over and over
//! (eclipse). It is set only by the simulator on its attacker hosts
//! (`Config::adversary` is never read from a file).

mod config;
mod mcache;
pub(crate) mod message;
pub mod score;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub use config::{
    Config, ConfigError, ScoreParams, Thresholds, MAX_DEGREE, MAX_IDONTWANT_IDS, MAX_IHAVE_LENGTH,
    MAX_IHAVE_MESSAGES, MAX_MCACHE_CAPACITY, MAX_MCACHE_LEN, MAX_OPPORTUNISTIC_GRAFT_TICKS,
    MAX_PROMISES, MAX_RETRANSMISSION, MAX_SEEN_CAPACITY, MAX_TOPIC_PEERS, MIN_HEARTBEAT,
};
use mcache::{MessageCache, SeenCache};
use message::signed_bytes;
pub use message::{
    Message, PubMessage, Topic, MAX_DATA_BYTES, MAX_IDS, MAX_PX_PEERS, MAX_SUBSCRIPTIONS,
    MAX_TOPIC_BYTES,
};
use score::PeerScore;

pub use crate::proto::plumtree::MsgId;
use crate::{Identity, Peer, PeerId, Time};

/// Most new peers greeted from the offered candidates per heartbeat.
const CANDIDATES_PER_HEARTBEAT: usize = 4;
/// Outputs queued before the oldest are dropped.
const OUTPUT_CAPACITY: usize = 8192;
/// Publishers' decompressed public keys kept (decompressing costs about
/// as much as verifying).
const KEY_CACHE_CAPACITY: usize = 128;

/// What the validator says of a message (v1.1 "Extended Validators").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Validation {
    /// Deliver and forward.
    Accept,
    /// Invalid: drop, and penalise the sender (P4).
    Reject,
    /// Drop without penalty.
    Ignore,
}

/// The application's check of a message's topic and data.
pub type Validator = Box<dyn FnMut(&Topic, &[u8]) -> Validation>;

/// What GossipSub tells the application (and observers).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A valid message on a subscribed topic, for the first time
    /// (`via`: the peer it came from; None for our own).
    Message {
        id: MsgId,
        topic: Topic,
        publisher: PeerId,
        via: Option<PeerId>,
        data: Bytes,
    },
    /// `peer` joined (`joined`) or left our mesh for `topic`.
    Mesh {
        topic: Topic,
        peer: PeerId,
        joined: bool,
    },
    /// A message from `peer` was rejected.
    Rejected { peer: PeerId, reason: &'static str },
    /// Every peer's score, in thousandths (every `score_report_interval`).
    Scores(Vec<(PeerId, i64)>),
}

/// An output: a message to send or an event.
pub type Output = crate::proto::Output<Message, Event>;

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("message data of {len} bytes is larger than the {MAX_DATA_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("GossipSub is disabled")]
    Disabled,
}

/// Misbehaviour of a simulated attacker (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adversary {
    /// Misbehave from this instant on (None: an honest node).
    pub from: Option<Time>,
    /// Forward nothing and answer no IWANT.
    pub drop_forwards: bool,
    /// Messages with bad signatures sent per heartbeat (to D peers).
    pub invalid_per_heartbeat: usize,
    /// Ids of messages that do not exist advertised per heartbeat (to
    /// D_lazy peers).
    pub fake_ihave_ids: usize,
    /// GRAFT the peers that pruned us every heartbeat, backoff or not.
    pub graft_during_backoff: bool,
    /// GRAFT this peer every heartbeat (eclipse).
    pub eclipse: Option<Peer>,
    /// GRAFT up to D topic peers outside our mesh every heartbeat, backoff
    /// or not, to fill honest meshes (network-wide eclipse).
    pub graft_flood: bool,
}

/// Counters of what the core did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub published: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub invalid_signature: u64,
    pub rejected: u64,
    pub ignored: u64,
    pub graylisted: u64,
    pub not_subscribed: u64,
    pub ihave_sent: u64,
    pub iwant_sent: u64,
    pub idontwant_sent: u64,
    pub broken_promises: u64,
    pub graft_in_backoff: u64,
    pub heartbeats: u64,
}

struct PeerState {
    peer: Peer,
    topics: BTreeSet<Topic>,
    /// We contacted it first.
    outbound: bool,
    last_heard: Time,
    last_sent: Time,
    /// Ids it told us not to send (v1.2), oldest first.
    dont_want: VecDeque<MsgId>,
    /// IHAVEs heeded and ids asked for in this heartbeat.
    ihaves: usize,
    asked: usize,
}

/// How a seen message turned out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Valid,
    Invalid,
    Ignored,
}

/// The GossipSub state machine of one node.
pub struct GossipSub {
    me: PeerId,
    key: SigningKey,
    config: Config,
    rng: ChaCha8Rng,
    peers: BTreeMap<PeerId, PeerState>,
    subscriptions: BTreeSet<Topic>,
    mesh: BTreeMap<Topic, Vec<PeerId>>,
    fanout: BTreeMap<Topic, (Vec<PeerId>, Time)>,
    backoff: BTreeMap<(Topic, PeerId), Time>,
    mcache: MessageCache,
    seen: SeenCache,
    verdicts: BTreeMap<MsgId, Verdict>,
    /// Publishers' keys, bounded by [`KEY_CACHE_CAPACITY`].
    keys: BTreeMap<PeerId, VerifyingKey>,
    score: PeerScore,
    /// IWANT promises: who promised each id, and by when.
    promises: BTreeMap<MsgId, (PeerId, Time)>,
    /// Candidates offered but not yet greeted.
    candidates: VecDeque<Peer>,
    next_seq: u64,
    next_heartbeat: Option<Time>,
    next_decay: Time,
    next_score_report: Time,
    ticks: u64,
    validator: Option<Validator>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl GossipSub {
    /// A core for `identity`, with `rng` for every random choice.
    ///
    /// # Panics
    ///
    /// When `config` is invalid ([`Config::validate`]).
    pub fn new(identity: &Identity, config: Config, rng: ChaCha8Rng) -> Self {
        if let Err(e) = config.validate() {
            panic!("invalid GossipSub config: {e}");
        }
        let score = PeerScore::new(
            config.score.clone(),
            config.max_peers * 4,
            config.max_topics,
        );
        GossipSub {
            me: identity.peer_id(),
            key: identity.signing_key().clone(),
            mcache: MessageCache::new(
                config.mcache_len,
                config.mcache_gossip,
                config.mcache_capacity,
            ),
            seen: SeenCache::new(config.seen_ttl, config.seen_capacity),
            verdicts: BTreeMap::new(),
            keys: BTreeMap::new(),
            score,
            config,
            rng,
            peers: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
            mesh: BTreeMap::new(),
            fanout: BTreeMap::new(),
            backoff: BTreeMap::new(),
            promises: BTreeMap::new(),
            candidates: VecDeque::new(),
            next_seq: 0,
            next_heartbeat: None,
            next_decay: Time::ZERO,
            next_score_report: Time::ZERO,
            ticks: 0,
            validator: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Start sequence numbers at `seq` (a restarted node must not reuse
    /// its previous life's message ids).
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Check every message with `validator` before delivering it.
    pub fn set_validator(&mut self, validator: Validator) {
        self.validator = Some(validator);
    }

    // ---- getters ----

    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Our mesh peers for `topic`.
    pub fn mesh(&self, topic: &Topic) -> &[PeerId] {
        self.mesh.get(topic).map_or(&[], Vec::as_slice)
    }
    /// Peers in the table.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }
    /// Whether `peer` is subscribed to `topic`, as far as we know.
    pub fn peer_topics(&self, peer: &PeerId) -> Option<&BTreeSet<Topic>> {
        self.peers.get(peer).map(|p| &p.topics)
    }
    /// `peer`'s score now (0 with scoring off).
    pub fn score_of(&self, peer: &PeerId, now: Time) -> f64 {
        if self.config.scoring {
            self.score.score(peer, now)
        } else {
            0.0
        }
    }
    /// The topics subscribed to, in order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Topic> {
        self.subscriptions.iter()
    }
    pub fn is_subscribed(&self, topic: &Topic) -> bool {
        self.subscriptions.contains(topic)
    }
    /// Messages in the cache and ids in the seen cache.
    pub fn cache_sizes(&self) -> (usize, usize) {
        (self.mcache.len(), self.seen.len())
    }

    fn adversary_active(&self, now: Time) -> bool {
        self.config.adversary.from.is_some_and(|t| now >= t)
    }

    // ---- inputs ----

    /// Subscribe to `topic`; false if already subscribed or at `max_topics`.
    pub fn subscribe(&mut self, now: Time, topic: Topic) -> bool {
        if !self.config.enabled
            || self.subscriptions.contains(&topic)
            || self.subscriptions.len() >= self.config.max_topics
        {
            return false;
        }
        self.start(now);
        self.subscriptions.insert(topic.clone());
        // The fanout peers, if any, seed the mesh (v1.0 JOIN).
        let mut mesh = self.fanout.remove(&topic).map(|f| f.0).unwrap_or_default();
        mesh.truncate(self.config.d);
        self.mesh.insert(topic.clone(), Vec::new());
        self.announce_all(now, vec![(true, topic.clone())]);
        for p in mesh {
            self.graft_peer(now, &topic, p);
        }
        self.maintain_mesh(now, &topic);
        true
    }

    /// Leave `topic`: PRUNE the mesh, tell every peer.
    pub fn unsubscribe(&mut self, now: Time, topic: &Topic) {
        if !self.subscriptions.remove(topic) {
            return;
        }
        let mesh = self.mesh.remove(topic).unwrap_or_default();
        for p in mesh {
            self.score.prune(now, &p, topic);
            self.emit(Event::Mesh {
                topic: topic.clone(),
                peer: p,
                joined: false,
            });
            let backoff = self.config.unsubscribe_backoff;
            self.send_prune(now, topic, p, false, backoff);
        }
        self.announce_all(now, vec![(false, topic.clone())]);
    }

    /// Publish `data` on `topic`; returns the message id.
    ///
    /// # Errors
    ///
    /// [`PublishError`] when the data is too large or GossipSub is off.
    pub fn publish(&mut self, now: Time, topic: Topic, data: Bytes) -> Result<MsgId, PublishError> {
        if !self.config.enabled {
            return Err(PublishError::Disabled);
        }
        if data.len() > MAX_DATA_BYTES {
            return Err(PublishError::TooLarge { len: data.len() });
        }
        self.start(now);
        let seqno = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut m = PubMessage {
            from: self.me,
            seqno,
            topic: topic.clone(),
            data,
            signature: [0; 64],
        };
        m.signature = self.key.sign(&signed_bytes(&m)).to_bytes();
        let id = m.id();
        self.seen.insert(now, id);
        self.set_verdict(id, Verdict::Valid);
        self.mcache.put(id, m.clone());
        self.stats.published += 1;
        let targets = self.publish_targets(now, &topic);
        if self.subscriptions.contains(&topic) {
            self.emit(Event::Message {
                id,
                topic,
                publisher: self.me,
                via: None,
                data: m.data.clone(),
            });
        }
        let m = Box::new(m);
        for p in targets {
            self.send(now, p, Message::Publish(m.clone()));
        }
        Ok(id)
    }

    fn publish_targets(&mut self, now: Time, topic: &Topic) -> Vec<PeerId> {
        let publish = self.config.thresholds.publish;
        if self.config.flood_publish {
            let in_topic = self.topic_peers(topic);
            return in_topic
                .into_iter()
                .filter(|p| self.score_of(p, now) >= publish)
                .collect();
        }
        if self.subscriptions.contains(topic) {
            return self.mesh(topic).to_vec();
        }
        let d = self.config.d;
        if !self.fanout.contains_key(topic) {
            let mut c: Vec<PeerId> = self
                .topic_peers(topic)
                .into_iter()
                .filter(|p| self.score_of(p, now) >= publish)
                .collect();
            c.shuffle(&mut self.rng);
            c.truncate(d);
            self.fanout.insert(topic.clone(), (c, now));
        }
        let f = self.fanout.get_mut(topic).expect("inserted above");
        f.1 = now;
        f.0.clone()
    }

    /// `peer` entered HyParView's active view.
    /// The record of `peer` if GossipSub knows it (a peer or a candidate).
    pub fn record_of(&self, peer: &PeerId) -> Option<&Peer> {
        self.peers
            .get(peer)
            .map(|s| &s.peer)
            .or_else(|| self.candidates.iter().find(|p| p.id == *peer))
    }

    pub fn handle_neighbor_up(&mut self, now: Time, peer: Peer) {
        if !self.config.enabled {
            return;
        }
        self.start(now);
        self.ensure_peer(now, peer, false);
    }

    /// `peer` left HyParView's active view: it stays in the table (it may
    /// well be alive) until it falls silent for `peer_timeout`.
    pub fn handle_neighbor_down(&mut self, _now: Time, _peer: &PeerId) {}

    /// Peers we could greet (e.g. HyParView's passive view); a few are
    /// greeted each heartbeat while the table has room.
    pub fn add_candidates(&mut self, peers: &[Peer]) {
        if !self.config.enabled || self.peers.len() >= self.config.max_peers {
            return;
        }
        for p in peers {
            if p.id == self.me
                || self.peers.contains_key(&p.id)
                || self.candidates.iter().any(|c| c.id == p.id)
            {
                continue;
            }
            if self.candidates.len() >= self.config.max_peers {
                self.candidates.pop_front();
            }
            self.candidates.push_back(*p);
        }
    }

    /// Whether the table wants more candidates.
    pub fn wants_candidates(&self) -> bool {
        self.config.enabled
            && self.next_heartbeat.is_some()
            && self.peers.len() < self.config.max_peers
            && self.candidates.len() < CANDIDATES_PER_HEARTBEAT
    }

    /// A message from `from`.
    pub fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        if !self.config.enabled || from.id == self.me {
            return;
        }
        self.start(now);
        if self.config.scoring && self.score.score(&from.id, now) < self.config.thresholds.graylist
        {
            self.stats.graylisted += 1;
            return;
        }
        // Only a greeting or a GRAFT makes a stranger a peer; anything
        // else from one is handled (a message) or dropped (control).
        let known = match &message {
            Message::Subscriptions { .. } | Message::Graft { .. } => {
                self.ensure_peer(now, from, false)
            }
            _ => self.peers.contains_key(&from.id),
        };
        if let Some(p) = self.peers.get_mut(&from.id) {
            p.last_heard = now;
        }
        match message {
            Message::Subscriptions { entries } => {
                if known {
                    self.on_subscriptions(now, from.id, entries);
                }
            }
            Message::Publish(m) => self.on_publish(now, from.id, *m),
            Message::IHave { topic, ids } if known => self.on_ihave(now, from.id, topic, ids),
            Message::IWant { ids } if known => self.on_iwant(now, from.id, ids),
            Message::Graft { topic } => {
                if known {
                    self.on_graft(now, from.id, topic);
                } else {
                    self.push(Output::Send {
                        to: from.id,
                        message: Message::Prune {
                            topic,
                            backoff_s: backoff_s(self.config.prune_backoff),
                            peers: Vec::new(),
                        },
                    });
                }
            }
            Message::Prune {
                topic,
                backoff_s,
                peers,
            } => self.on_prune(now, from.id, topic, backoff_s, peers),
            Message::IDontWant { ids } if known => self.on_idontwant(from.id, ids),
            Message::IHave { .. } | Message::IWant { .. } | Message::IDontWant { .. } => {}
        }
    }

    /// Run the heartbeat when due.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            self.heartbeat(now);
            self.next_heartbeat = Some(now + self.config.heartbeat_interval);
        }
    }

    /// Set `peer`'s application score (P5).
    pub fn set_app_score(&mut self, peer: &PeerId, score: f64) {
        self.score.set_app_score(peer, score);
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        crate::compact::pop_front_releasing(&mut self.outputs)
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_heartbeat
    }

    // ---- message handlers ----

    fn on_subscriptions(&mut self, now: Time, from: PeerId, entries: Vec<(bool, Topic)>) {
        let max = self.config.max_topics;
        for (subscribe, topic) in entries {
            let Some(p) = self.peers.get_mut(&from) else {
                return;
            };
            if subscribe {
                if p.topics.len() < max {
                    p.topics.insert(topic);
                }
            } else if p.topics.remove(&topic) {
                self.remove_from_mesh(now, &topic, &from);
                if let Some(f) = self.fanout.get_mut(&topic) {
                    f.0.retain(|x| *x != from);
                }
            }
        }
    }

    fn on_publish(&mut self, now: Time, from: PeerId, m: PubMessage) {
        let topic = m.topic.clone();
        if !self.subscriptions.contains(&topic) {
            self.stats.not_subscribed += 1;
            return;
        }
        let id = m.id();
        if let Some(first) = self.seen.get(&id) {
            self.stats.duplicates += 1;
            match self.verdicts.get(&id) {
                Some(Verdict::Valid)
                    if now.saturating_sub(first)
                        <= self.config.score.mesh_message_deliveries_window =>
                {
                    self.score.near_first_delivery(&from, &topic)
                }
                Some(Verdict::Invalid) => self.score.invalid_delivery(&from, &topic),
                _ => {}
            }
            return;
        }
        if m.from == self.me {
            return; // ours, evicted from the seen cache
        }
        // v1.2: before validating, tell the mesh not to send it again.
        if m.data.len() >= self.config.idontwant_threshold_bytes {
            let mesh: Vec<PeerId> = self.mesh(&topic).to_vec();
            for p in mesh.into_iter().filter(|p| *p != from) {
                self.stats.idontwant_sent += 1;
                self.send(now, p, Message::IDontWant { ids: vec![id] });
            }
        }
        let adversary = self.config.adversary.from.is_some();
        if !adversary && !self.verify(&m) {
            self.stats.invalid_signature += 1;
            self.score.invalid_delivery(&from, &topic);
            self.emit(Event::Rejected {
                peer: from,
                reason: "bad signature",
            });
            return;
        }
        let verdict = match (&mut self.validator, adversary) {
            (Some(v), false) => v(&topic, &m.data),
            _ => Validation::Accept,
        };
        self.seen.insert(now, id);
        self.promises.remove(&id);
        match verdict {
            Validation::Reject => {
                self.set_verdict(id, Verdict::Invalid);
                self.stats.rejected += 1;
                self.score.invalid_delivery(&from, &topic);
                self.emit(Event::Rejected {
                    peer: from,
                    reason: "rejected by the validator",
                });
            }
            Validation::Ignore => {
                self.set_verdict(id, Verdict::Ignored);
                self.stats.ignored += 1;
            }
            Validation::Accept => {
                self.set_verdict(id, Verdict::Valid);
                self.stats.delivered += 1;
                self.score.first_delivery(&from, &topic);
                self.mcache.put(id, m.clone());
                self.emit(Event::Message {
                    id,
                    topic: topic.clone(),
                    publisher: m.from,
                    via: Some(from),
                    data: m.data.clone(),
                });
                self.forward(now, id, m, from);
            }
        }
    }

    /// Check `m`'s signature, with the publisher's key from the cache.
    fn verify(&mut self, m: &PubMessage) -> bool {
        if let Some(key) = self.keys.get(&m.from) {
            return m.verify_with(key);
        }
        let Ok(key) = VerifyingKey::from_bytes(m.from.as_bytes()) else {
            return false;
        };
        let ok = m.verify_with(&key);
        if ok {
            // Only keys that signed something: forged publishers do not
            // push real ones out.
            if self.keys.len() >= KEY_CACHE_CAPACITY {
                let victim = self.rng.gen_range(0..self.keys.len());
                let k = *self.keys.keys().nth(victim).expect("in range");
                self.keys.remove(&k);
            }
            self.keys.insert(m.from, key);
        }
        ok
    }

    fn set_verdict(&mut self, id: MsgId, v: Verdict) {
        // Bounded like the seen cache: ids it forgot are dropped here too.
        if self.verdicts.len() >= self.config.seen_capacity {
            let seen = &self.seen;
            self.verdicts.retain(|id, _| seen.get(id).is_some());
            if self.verdicts.len() >= self.config.seen_capacity {
                self.verdicts.pop_first();
            }
        }
        self.verdicts.insert(id, v);
    }

    fn forward(&mut self, now: Time, id: MsgId, m: PubMessage, from: PeerId) {
        if self.adversary_active(now) && self.config.adversary.drop_forwards {
            return;
        }
        let targets: Vec<PeerId> = self
            .mesh(&m.topic)
            .iter()
            .copied()
            .filter(|p| *p != from && *p != m.from)
            .filter(|p| {
                self.peers
                    .get(p)
                    .is_some_and(|s| !s.dont_want.contains(&id))
            })
            .collect();
        let m = Box::new(m);
        for p in targets {
            self.send(now, p, Message::Publish(m.clone()));
        }
    }

    fn on_ihave(&mut self, now: Time, from: PeerId, topic: Topic, ids: Vec<MsgId>) {
        if self.score_of(&from, now) < self.config.thresholds.gossip
            || !self.subscriptions.contains(&topic)
        {
            return;
        }
        let (max_msgs, max_len) = (self.config.max_ihave_messages, self.config.max_ihave_length);
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        p.ihaves += 1;
        if p.ihaves > max_msgs || p.asked >= max_len {
            return;
        }
        let room = max_len - p.asked;
        let mut want: Vec<MsgId> = ids
            .into_iter()
            .filter(|id| self.seen.get(id).is_none() && !self.promises.contains_key(id))
            .collect();
        want.sort();
        want.dedup();
        want.shuffle(&mut self.rng);
        want.truncate(room.min(MAX_IDS));
        if want.is_empty() {
            return;
        }
        p.asked += want.len();
        let due = now + self.config.iwant_followup_time;
        for id in &want {
            if self.promises.len() < self.config.max_promises {
                self.promises.insert(*id, (from, due));
            }
        }
        self.stats.iwant_sent += 1;
        self.send(now, from, Message::IWant { ids: want });
    }

    fn on_iwant(&mut self, now: Time, from: PeerId, ids: Vec<MsgId>) {
        if self.score_of(&from, now) < self.config.thresholds.gossip {
            return;
        }
        if self.adversary_active(now) && self.config.adversary.drop_forwards {
            return;
        }
        let max = self.config.gossip_retransmission;
        for id in ids {
            if let Some(m) = self.mcache.get_for(&id, from, max) {
                let m = Box::new(m.clone());
                self.send(now, from, Message::Publish(m));
            }
        }
    }

    fn on_graft(&mut self, now: Time, from: PeerId, topic: Topic) {
        let backoff = self.config.prune_backoff;
        if !self.subscriptions.contains(&topic) {
            self.send_prune(now, &topic, from, false, backoff);
            return;
        }
        if self.mesh(&topic).contains(&from) {
            return;
        }
        if let Some(&until) = self.backoff.get(&(topic.clone(), from)) {
            if now < until {
                self.stats.graft_in_backoff += 1;
                self.score.behaviour_penalty(&from, 1.0);
                let pruned_at = until.saturating_sub(backoff);
                if now < pruned_at + self.config.graft_flood_threshold {
                    self.score.behaviour_penalty(&from, 1.0);
                }
                self.send_prune(now, &topic, from, false, backoff);
                return;
            }
        }
        if self.score_of(&from, now) < 0.0 {
            self.send_prune(now, &topic, from, false, backoff);
            return;
        }
        let outbound = self.peers.get(&from).is_some_and(|p| p.outbound);
        if self.mesh(&topic).len() >= self.config.d_hi && !outbound {
            self.send_prune(now, &topic, from, true, backoff);
            return;
        }
        self.add_to_mesh(now, &topic, from);
    }

    fn on_prune(&mut self, now: Time, from: PeerId, topic: Topic, backoff_s: u16, px: Vec<Peer>) {
        self.remove_from_mesh(now, &topic, &from);
        let backoff = if backoff_s == 0 {
            self.config.prune_backoff
        } else {
            Time::from_secs(u64::from(backoff_s))
        };
        self.set_backoff(&topic, from, now + backoff);
        if !px.is_empty()
            && (!self.config.scoring
                || self.score.score(&from, now) >= self.config.thresholds.accept_px)
        {
            let px: Vec<Peer> = px.into_iter().take(self.config.prune_peers).collect();
            for p in px {
                if p.id != self.me && crate::identity::usable(&p.addr) {
                    self.ensure_peer(now, p, true);
                }
            }
        }
    }

    fn on_idontwant(&mut self, from: PeerId, ids: Vec<MsgId>) {
        let max = self.config.idontwant_max_ids;
        if let Some(p) = self.peers.get_mut(&from) {
            for id in ids {
                if p.dont_want.len() >= max {
                    p.dont_want.pop_front();
                }
                p.dont_want.push_back(id);
            }
        }
    }

    // ---- the heartbeat ----

    fn start(&mut self, now: Time) {
        if self.next_heartbeat.is_none() {
            self.next_heartbeat = Some(now + self.config.heartbeat_interval);
            self.next_decay = now + self.config.score.decay_interval;
            self.next_score_report = now + self.config.score_report_interval;
        }
    }

    fn heartbeat(&mut self, now: Time) {
        self.stats.heartbeats += 1;
        self.ticks += 1;
        while self.next_decay <= now {
            self.score.decay(now);
            self.next_decay += self.config.score.decay_interval;
        }
        // Broken IWANT promises (P7).
        let broken: Vec<(MsgId, PeerId)> = self
            .promises
            .iter()
            .filter(|(_, (_, due))| *due <= now)
            .map(|(id, (p, _))| (*id, *p))
            .collect();
        for (id, p) in broken {
            self.promises.remove(&id);
            self.stats.broken_promises += 1;
            self.score.behaviour_penalty(&p, 1.0);
        }
        // Silent peers leave; per-heartbeat counters reset.
        let timeout = self.config.peer_timeout;
        let silent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.last_heard + timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.remove_peer(now, &id);
        }
        for p in self.peers.values_mut() {
            p.ihaves = 0;
            p.asked = 0;
        }
        self.backoff.retain(|_, until| *until > now);
        self.greet_candidates(now);
        let topics: Vec<Topic> = self.subscriptions.iter().cloned().collect();
        for t in &topics {
            self.maintain_mesh(now, t);
        }
        self.maintain_fanout(now);
        self.emit_gossip(now);
        self.refresh_announcements(now);
        if self.adversary_active(now) {
            self.misbehave(now);
        }
        self.mcache.shift();
        self.seen.expire(now);
        if !self.config.score_report_interval.is_zero() && self.next_score_report <= now {
            self.next_score_report = now + self.config.score_report_interval;
            if self.config.scoring {
                let scores = self
                    .score
                    .all(now)
                    .into_iter()
                    .map(|(p, s)| (p, (s * 1000.0).round() as i64))
                    .collect();
                self.emit(Event::Scores(scores));
            }
        }
    }

    fn greet_candidates(&mut self, now: Time) {
        for _ in 0..CANDIDATES_PER_HEARTBEAT {
            if self.peers.len() >= self.config.max_peers {
                break;
            }
            let Some(p) = self.candidates.pop_front() else {
                break;
            };
            self.ensure_peer(now, p, true);
        }
    }

    /// Keep the mesh of `topic` between D_lo and D_hi, with D_out outbound
    /// peers, and no peer with a negative score (v1.1 heartbeat).
    fn maintain_mesh(&mut self, now: Time, topic: &Topic) {
        let c = self.config.clone();
        // Negative scores out.
        let negative: Vec<PeerId> = self
            .mesh(topic)
            .iter()
            .copied()
            .filter(|p| self.score_of(p, now) < 0.0)
            .collect();
        for p in negative {
            self.remove_from_mesh(now, topic, &p);
            self.send_prune(now, topic, p, false, c.prune_backoff);
        }
        let len = self.mesh(topic).len();
        if len < c.d_lo {
            let mut cands = self.graft_candidates(now, topic, |_| true);
            cands.shuffle(&mut self.rng);
            cands.truncate(c.d - len);
            for p in cands {
                self.graft_peer(now, topic, p);
            }
        }
        if self.mesh(topic).len() > c.d_hi {
            let mut mesh = self.mesh(topic).to_vec();
            mesh.shuffle(&mut self.rng);
            let scores: BTreeMap<PeerId, f64> =
                mesh.iter().map(|p| (*p, self.score_of(p, now))).collect();
            mesh.sort_by(|a, b| scores[b].total_cmp(&scores[a]));
            let (best, rest) = mesh.split_at(c.d_score.min(mesh.len()));
            let mut rest = rest.to_vec();
            rest.shuffle(&mut self.rng);
            let mut keep: Vec<PeerId> = best.to_vec();
            keep.extend(rest.iter().take(c.d - keep.len()));
            let outbound = |s: &Self, p: &PeerId| s.peers.get(p).is_some_and(|x| x.outbound);
            let mut have_out = keep.iter().filter(|p| outbound(self, p)).count();
            if have_out < c.d_out {
                let spare_out: Vec<PeerId> = mesh
                    .iter()
                    .filter(|p| !keep.contains(p) && outbound(self, p))
                    .copied()
                    .collect();
                for o in spare_out {
                    if have_out >= c.d_out {
                        break;
                    }
                    // Replace the last kept inbound peer beyond D_score.
                    if let Some(i) = (c.d_score..keep.len())
                        .rev()
                        .find(|&i| !outbound(self, &keep[i]))
                    {
                        keep[i] = o;
                        have_out += 1;
                    } else {
                        break;
                    }
                }
            }
            let pruned: Vec<PeerId> = mesh.into_iter().filter(|p| !keep.contains(p)).collect();
            for p in pruned {
                self.remove_from_mesh(now, topic, &p);
                self.send_prune(now, topic, p, true, c.prune_backoff);
            }
        }
        let len = self.mesh(topic).len();
        if len >= c.d_lo {
            let have_out = self
                .mesh(topic)
                .iter()
                .filter(|p| self.peers.get(p).is_some_and(|x| x.outbound))
                .count();
            if have_out < c.d_out {
                let mut cands = self.graft_candidates(now, topic, |s| s.outbound);
                cands.shuffle(&mut self.rng);
                cands.truncate(c.d_out - have_out);
                for p in cands {
                    self.graft_peer(now, topic, p);
                }
            }
        }
        // Opportunistic grafting (v1.1).
        if c.scoring
            && self
                .ticks
                .is_multiple_of(u64::from(c.opportunistic_graft_ticks))
        {
            let mut scores: Vec<f64> = self
                .mesh(topic)
                .iter()
                .map(|p| self.score_of(p, now))
                .collect();
            if scores.len() > 1 {
                scores.sort_by(f64::total_cmp);
                let median = scores[scores.len() / 2];
                if median < c.thresholds.opportunistic_graft {
                    let mut cands: Vec<PeerId> = self
                        .graft_candidates(now, topic, |_| true)
                        .into_iter()
                        .filter(|p| self.score_of(p, now) > median)
                        .collect();
                    cands.shuffle(&mut self.rng);
                    cands.truncate(c.opportunistic_graft_peers);
                    for p in cands {
                        self.graft_peer(now, topic, p);
                    }
                }
            }
        }
    }

    /// Topic peers outside the mesh, not in backoff, not scoring below 0,
    /// that `filter` accepts.
    fn graft_candidates(
        &self,
        now: Time,
        topic: &Topic,
        filter: impl Fn(&PeerState) -> bool,
    ) -> Vec<PeerId> {
        let mesh = self.mesh(topic);
        let ignore_backoff =
            self.adversary_active(now) && self.config.adversary.graft_during_backoff;
        self.peers
            .iter()
            .filter(|(id, s)| {
                s.topics.contains(topic)
                    && !mesh.contains(id)
                    && (ignore_backoff || !self.backoff.contains_key(&(topic.clone(), **id)))
                    && self.score_of(id, now) >= 0.0
                    && filter(s)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn maintain_fanout(&mut self, now: Time) {
        let ttl = self.config.fanout_ttl;
        self.fanout.retain(|_, (_, last)| *last + ttl > now);
        let topics: Vec<Topic> = self.fanout.keys().cloned().collect();
        let publish = self.config.thresholds.publish;
        for t in topics {
            let in_topic = self.topic_peers(&t);
            let mut peers = self.fanout[&t].0.clone();
            peers.retain(|p| in_topic.contains(p) && self.score_of(p, now) >= publish);
            if peers.len() < self.config.d {
                let mut more: Vec<PeerId> = in_topic
                    .into_iter()
                    .filter(|p| !peers.contains(p) && self.score_of(p, now) >= publish)
                    .collect();
                more.shuffle(&mut self.rng);
                more.truncate(self.config.d - peers.len());
                peers.extend(more);
            }
            self.fanout.get_mut(&t).expect("listed").0 = peers;
        }
    }

    /// IHAVE for the gossip windows to D_lazy (or `gossip_factor` of the
    /// eligible) peers outside the mesh or fanout, per topic.
    fn emit_gossip(&mut self, now: Time) {
        let topics: Vec<Topic> = self
            .mesh
            .keys()
            .chain(self.fanout.keys())
            .cloned()
            .collect();
        for topic in topics {
            let mut ids = self.mcache.gossip_ids(&topic);
            if ids.is_empty() {
                continue;
            }
            ids.shuffle(&mut self.rng);
            ids.truncate(self.config.max_ihave_length);
            let exclude: Vec<PeerId> = self
                .mesh(&topic)
                .iter()
                .chain(self.fanout.get(&topic).map_or(&[][..], |f| &f.0[..]))
                .copied()
                .collect();
            let gossip = self.config.thresholds.gossip;
            let mut eligible: Vec<PeerId> = self
                .topic_peers(&topic)
                .into_iter()
                .filter(|p| !exclude.contains(p) && self.score_of(p, now) >= gossip)
                .collect();
            let n = ((self.config.gossip_factor * eligible.len() as f64).ceil() as usize)
                .max(self.config.d_lazy)
                .min(eligible.len());
            eligible.shuffle(&mut self.rng);
            eligible.truncate(n);
            for p in eligible {
                for chunk in ids.chunks(MAX_IDS) {
                    self.stats.ihave_sent += 1;
                    let message = Message::IHave {
                        topic: topic.clone(),
                        ids: chunk.to_vec(),
                    };
                    self.send(now, p, message);
                }
            }
        }
    }

    /// Re-announce our subscriptions to peers we sent nothing lately.
    fn refresh_announcements(&mut self, now: Time) {
        let every = self.config.announce_interval;
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.last_sent + every <= now)
            .map(|(id, _)| *id)
            .collect();
        let entries = self.announcement();
        for p in due {
            self.send(
                now,
                p,
                Message::Subscriptions {
                    entries: entries.clone(),
                },
            );
        }
    }

    /// The simulated attacker's heartbeat (see [`Adversary`]).
    fn misbehave(&mut self, now: Time) {
        let a = self.config.adversary.clone();
        let topics: Vec<Topic> = self.subscriptions.iter().cloned().collect();
        for topic in &topics {
            let mut peers = self.topic_peers(topic);
            peers.shuffle(&mut self.rng);
            if a.invalid_per_heartbeat > 0 {
                for p in peers.iter().take(self.config.d) {
                    for _ in 0..a.invalid_per_heartbeat {
                        let mut signature = [0u8; 64];
                        self.rng.fill(&mut signature[..]);
                        let m = PubMessage {
                            from: self.me,
                            seqno: self.rng.gen(),
                            topic: topic.clone(),
                            data: Bytes::from_static(b"not a real discovery"),
                            signature,
                        };
                        self.send(now, *p, Message::Publish(Box::new(m)));
                    }
                }
            }
            if a.fake_ihave_ids > 0 {
                let ids: Vec<MsgId> = (0..a.fake_ihave_ids.min(MAX_IDS))
                    .map(|_| MsgId(self.rng.gen()))
                    .collect();
                for p in peers.iter().take(self.config.d_lazy) {
                    let message = Message::IHave {
                        topic: topic.clone(),
                        ids: ids.clone(),
                    };
                    self.send(now, *p, message);
                }
            }
            if a.graft_during_backoff {
                let pruned_us: Vec<PeerId> = self
                    .backoff
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| *p)
                    .take(self.config.d)
                    .collect();
                for p in pruned_us {
                    self.send(
                        now,
                        p,
                        Message::Graft {
                            topic: topic.clone(),
                        },
                    );
                }
            }
            if a.graft_flood {
                let outside: Vec<PeerId> = peers
                    .iter()
                    .filter(|p| !self.mesh(topic).contains(p))
                    .take(self.config.d)
                    .copied()
                    .collect();
                for p in outside {
                    self.graft_peer(now, topic, p);
                }
            }
            if let Some(target) = a.eclipse {
                if target.id != self.me {
                    self.ensure_peer(now, target, true);
                    if !self.mesh(topic).contains(&target.id) {
                        self.graft_peer(now, topic, target.id);
                    }
                }
            }
        }
    }

    // ---- peers and mesh ----

    /// Peers in the table subscribed to `topic`.
    fn topic_peers(&self, topic: &Topic) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.topics.contains(topic))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Make sure `peer` is in the table (greeting it with our
    /// subscriptions if new); false when there is no room for it.
    fn ensure_peer(&mut self, now: Time, peer: Peer, outbound: bool) -> bool {
        if peer.id == self.me {
            return false;
        }
        if self.peers.contains_key(&peer.id) {
            return true;
        }
        if self.peers.len() >= self.config.max_peers && !self.evict_for_newcomer(now) {
            return false;
        }
        self.peers.insert(
            peer.id,
            PeerState {
                peer,
                topics: BTreeSet::new(),
                outbound,
                last_heard: now,
                last_sent: now,
                dont_want: VecDeque::new(),
                ihaves: 0,
                asked: 0,
            },
        );
        self.score.add_peer(now, peer.id, peer.addr.ip());
        let entries = self.announcement();
        self.send(now, peer.id, Message::Subscriptions { entries });
        true
    }

    /// With the table full, drop the lowest-scoring peer if its score is
    /// negative; whether a place was freed.
    fn evict_for_newcomer(&mut self, now: Time) -> bool {
        if !self.config.scoring {
            return false;
        }
        let worst = self
            .peers
            .keys()
            .map(|p| (self.score.score(p, now), *p))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        match worst {
            Some((s, p)) if s < 0.0 => {
                self.remove_peer(now, &p);
                true
            }
            _ => false,
        }
    }

    fn remove_peer(&mut self, now: Time, id: &PeerId) {
        let topics: Vec<Topic> = self.mesh.keys().cloned().collect();
        for t in topics {
            self.remove_from_mesh(now, &t, id);
        }
        for f in self.fanout.values_mut() {
            f.0.retain(|p| p != id);
        }
        self.peers.remove(id);
        self.score.remove_peer(now, id);
    }

    fn announcement(&self) -> Vec<(bool, Topic)> {
        self.subscriptions
            .iter()
            .map(|t| (true, t.clone()))
            .collect()
    }

    fn announce_all(&mut self, now: Time, entries: Vec<(bool, Topic)>) {
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send(
                now,
                p,
                Message::Subscriptions {
                    entries: entries.clone(),
                },
            );
        }
    }

    /// Add `peer` to the mesh and tell it (GRAFT).
    fn graft_peer(&mut self, now: Time, topic: &Topic, peer: PeerId) {
        if !self.peers.contains_key(&peer) || self.mesh(topic).contains(&peer) {
            return;
        }
        self.add_to_mesh(now, topic, peer);
        self.send(
            now,
            peer,
            Message::Graft {
                topic: topic.clone(),
            },
        );
    }

    fn add_to_mesh(&mut self, now: Time, topic: &Topic, peer: PeerId) {
        let Some(mesh) = self.mesh.get_mut(topic) else {
            return;
        };
        if mesh.contains(&peer) {
            return;
        }
        mesh.push(peer);
        self.score.graft(now, &peer, topic);
        self.emit(Event::Mesh {
            topic: topic.clone(),
            peer,
            joined: true,
        });
    }

    fn remove_from_mesh(&mut self, now: Time, topic: &Topic, peer: &PeerId) {
        let Some(mesh) = self.mesh.get_mut(topic) else {
            return;
        };
        let Some(i) = mesh.iter().position(|p| p == peer) else {
            return;
        };
        mesh.remove(i);
        self.score.prune(now, peer, topic);
        self.emit(Event::Mesh {
            topic: topic.clone(),
            peer: *peer,
            joined: false,
        });
    }

    fn set_backoff(&mut self, topic: &Topic, peer: PeerId, until: Time) {
        let cap = self.config.max_peers * self.config.max_topics;
        let key = (topic.clone(), peer);
        if !self.backoff.contains_key(&key) && self.backoff.len() >= cap {
            // Bounded: the entry ending first goes.
            if let Some(k) = self
                .backoff
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.backoff.remove(&k);
            }
        }
        let e = self.backoff.entry(key).or_insert(until);
        *e = (*e).max(until);
    }

    /// PRUNE `peer` from `topic` with a backoff, and peer exchange if `px`.
    fn send_prune(&mut self, now: Time, topic: &Topic, peer: PeerId, px: bool, backoff: Time) {
        self.set_backoff(topic, peer, now + backoff);
        let peers = if px && self.config.prune_peers > 0 {
            let mut c: Vec<PeerId> = self
                .topic_peers(topic)
                .into_iter()
                .filter(|p| *p != peer && self.score_of(p, now) >= 0.0)
                .collect();
            c.shuffle(&mut self.rng);
            c.truncate(self.config.prune_peers);
            c.iter().map(|p| self.peers[p].peer).collect()
        } else {
            Vec::new()
        };
        let message = Message::Prune {
            topic: topic.clone(),
            backoff_s: backoff_s(backoff),
            peers,
        };
        self.send(now, peer, message);
    }

    fn send(&mut self, now: Time, peer: PeerId, message: Message) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.last_sent = now;
        self.push(Output::Send { to: peer, message });
    }

    fn emit(&mut self, event: Event) {
        self.push(Output::Event(event));
    }

    fn push(&mut self, o: Output) {
        if self.outputs.len() >= OUTPUT_CAPACITY {
            self.outputs.pop_front();
        }
        self.outputs.push_back(o);
    }
}

fn backoff_s(d: Time) -> u16 {
    u16::try_from(d.as_secs().max(1)).unwrap_or(u16::MAX)
}

impl crate::proto::Core for GossipSub {
    type Message = Message;
    type Event = Event;

    fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        GossipSub::handle_message(self, now, from, message);
    }
    fn handle_neighbor_up(&mut self, now: Time, peer: Peer) {
        GossipSub::handle_neighbor_up(self, now, peer);
    }
    fn handle_neighbor_down(&mut self, now: Time, peer: &PeerId) {
        GossipSub::handle_neighbor_down(self, now, peer);
    }
    /// The passive view, when the mesh wants peers beyond the neighbours.
    fn handle_candidates(&mut self, _now: Time, passive: &[Peer]) {
        if self.wants_candidates() {
            self.add_candidates(passive);
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        GossipSub::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        GossipSub::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        GossipSub::poll_timeout(self)
    }
    fn record_of(&self, peer: &PeerId) -> Option<&Peer> {
        GossipSub::record_of(self, peer)
    }
}
