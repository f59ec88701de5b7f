//! Plumtree: epidemic broadcast trees (Leitão, Pereira, Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007).
//!
//! # Contract
//!
//! [`Plumtree`] is a deterministic, sans-IO state machine: it never touches a
//! socket, a clock or a random source. Every input carries the current time
//! `now` (a [`Time`], non-decreasing from call to call); outputs are queued
//! and drained by the caller. The same inputs in the same order always give
//! the same outputs in the same order: peers are kept in `Vec`s in the order
//! they came up, and every table is a `BTreeMap`, `BTreeSet` or `VecDeque`.
//!
//! The driver (the node composition) must:
//! 1. call [`Plumtree::handle_neighbor_up`] / [`Plumtree::handle_neighbor_down`]
//!    on every HyParView `NeighborUp` / `NeighborDown` event;
//! 2. pass every decoded broadcast message to [`Plumtree::handle_message`];
//! 3. call [`Plumtree::handle_timeout`] once `now` reaches
//!    [`Plumtree::poll_timeout`] (calling it early is harmless);
//! 4. after every input, drain [`Plumtree::poll_output`] until `None`, and
//!    only then read [`Plumtree::poll_timeout`];
//! 5. check payload sizes *before* [`Plumtree::broadcast`]: a payload over
//!    [`MAX_PAYLOAD_BYTES`] is the caller's bug (a `debug_assert!`).
//!
//! # What is implemented
//!
//! - **One tree per origin** (the paper's per-source trees, §3.6). Every
//!   `GOSSIP` names its origin, and each node keeps, per origin, which of
//!   its neighbours are *eager* (receive payloads, `GOSSIP`); the others
//!   are *lazy* (receive announcements, `IHAVE`). Tree state is a bit mask
//!   over the node's neighbour slots, about 80 bytes per origin, for at
//!   most `max_trees` origins (least recently used dropped first).
//! - **Algorithm 1 (tree construction), per origin.** A new neighbour
//!   starts eager in every tree. On the first receipt of a message the
//!   node delivers it, forwards the payload to the eager peers of the
//!   origin's tree and queues an announcement for its lazy ones (never to
//!   the sender), and makes the sender eager in that tree. A duplicate
//!   payload makes the sender lazy in that tree and is answered with
//!   `PRUNE(origin)`; `PRUNE(origin)` makes its sender lazy there.
//! - **Templates: a new origin's first message travels an existing tree.**
//!   A node broadcasting for the first time sends on every link, and
//!   names a *template* in the message: among the 24 most recently used
//!   trees of other origins that have settled (no message for 2 s), the
//!   one whose origin is fewest hops up it. Its own tree starts with
//!   every link eager (the duplicates of that first message prune it).
//!   Every other node without a tree for the new origin
//!   copies its own tree of the template, so the message crosses a
//!   spanning tree (n − 1 payloads, plus one or two for each of the
//!   origin's extra links) instead of flooding; a node that holds no tree
//!   of the template starts with every link eager, and the duplicates
//!   that causes prune the new tree only. Trees then diverge: each is
//!   shaped by its own origin's messages (the §3.8 optimisation below).
//! - **Algorithm 2 (tree repair).** An `IHAVE` for a message not yet
//!   received records the announcer in a *missing* table and, if none is
//!   running, starts a timer of `graft_timeout_1`. When the timer fires, the
//!   first announcer (in arrival order) is sent `GRAFT(id)`, and a timer of
//!   `graft_timeout_2` is started for the next announcer. `GRAFT(id)` makes
//!   its sender eager in the tree of `id`'s origin and is answered with the
//!   payload when it is still cached; the payload arriving makes the
//!   announcer eager at the grafting end (only then is the origin known)
//!   and cancels the timer. `NeighborDown` frees the peer's slot and
//!   removes it from every announcer list.
//! - **Lazy-push policy.** Announcements are queued and flushed
//!   `ihave_delay` after the first one was queued, grouped per peer in
//!   messages of at most [`MAX_IHAVE_ENTRIES`] entries.
//! - **§3.8 optimisation, per origin.** When a payload arrives with `hops`
//!   = r and a lazy peer had announced it with r' < r and r − r' ≥
//!   `optimization_threshold`, the best such announcer is sent
//!   `LINK(origin)` (the paper's `GRAFT(null)`) and made eager, and the
//!   sender pruned, so that origin's tree follows the shorter path.
//!
//! Hop counts are the paper's rounds, counted so that a `GOSSIP` carries the
//! number of links its payload crossed: the origin sends `hops = 1`, a node
//! that received `hops = h` forwards `h + 1` and announces `(id, h + 1)`, so
//! an `IHAVE` entry and a `GOSSIP` compare directly. Arithmetic saturates.
//!
//! # Departures from the paper, and why
//!
//! - **`LINK(origin)` instead of `GRAFT(null)`.** The optimisation's
//!   graft must name the tree; a `GRAFT` names a message, and one for an id
//!   that is not cached (the all-zero id among them) changes nothing, since
//!   its tree is unknown.
//! - **Announcers of a message are not sent an `IHAVE` for it**: they have
//!   it, and would ignore the announcement.
//! - **Only neighbours shape the tree.** A `GOSSIP` from a peer in neither
//!   set (a datagram still in flight from a peer HyParView dropped) is
//!   delivered and forwarded, but the peer is not added to a set and a
//!   duplicate from it is not answered. `IHAVE`, `GRAFT` and `PRUNE` from a
//!   non-neighbour are ignored: grafting a departed peer cannot help, and
//!   answering a `GRAFT` from anyone would make the node a reflector
//!   (a small request, a payload-sized reply to a spoofable UDP source).
//! - **Everything is bounded** (the paper's sets grow without limit):
//!   - the payload cache (answers `GRAFT`s): `message_cache_capacity`
//!     entries and `message_cache_ttl`, oldest dropped first;
//!   - the seen-id set: `seen_capacity` ids and `seen_ttl`, oldest first.
//!     An id forgotten while copies still circulate is delivered again, so
//!     `seen_ttl` must exceed the lifetime of a broadcast by a wide margin;
//!   - the missing table: 1,024 ids, 16 announcers each; further
//!     announcements are ignored until entries resolve (each lives at most
//!     `graft_timeout_1 + 16 × graft_timeout_2`);
//!   - the `IHAVE` queue: 4,096 entries, oldest dropped first;
//!   - an `IHAVE` received: only its first [`MAX_IHAVE_ENTRIES`] entries are
//!     read;
//!   - the output queue: 16,384 outputs; beyond that (a driver that does not
//!     drain) new outputs are dropped and counted
//!     ([`Plumtree::outputs_dropped`]);
//!   - payloads over [`MAX_PAYLOAD_BYTES`] received from a peer, and
//!     payloads or announcements under the null id, are dropped.
//! - **Expiry on a one-second grid.** Cache and seen entries are removed by
//!   [`Plumtree::handle_timeout`] at the first whole second at or after their
//!   deadline (and on insert), so that thousands of nodes share wake-ups; an
//!   idle node with nothing to expire has no timer at all.
//!
//! # Why one tree per origin
//!
//! Until this version the wire carried no origin and one tree was shared by
//! all origins (the paper's shared-tree mode). With many senders and
//! overlapping broadcasts it never settled: duplicates of different
//! messages pruned different links of the same cycle, cutting the tree;
//! GRAFTs repaired the cuts, adding cycles again. In `quickstart.toml`
//! (1,000 nodes, a broadcast every 200 ms from a random node, each taking
//! about 2 s) 28% of deliveries came through a GRAFT, RMR was 0.62, the
//! last delivery hop 21.6 and the median latency 1.34 s; turning the
//! optimisation off left RMR at 0.52, and a longer `graft_timeout_1` made
//! it slower still (p50 2.9 s), so the cuts were real, not impatience. Per
//! origin, concurrent messages of other origins cannot prune a tree, and
//! the optimisation no longer swaps links back and forth between origins.
//! The template rule keeps a new origin's first message from flooding.
//! Measured figures are in the README ("Plumtree with many senders").

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{self, KeyError};
use crate::{PeerId, Time};

pub(crate) mod message;
pub use message::{Message, MsgId, MAX_IHAVE_ENTRIES, MAX_PAYLOAD_BYTES};

/// Most announcements waiting in the IHAVE queue (oldest dropped first).
const IHAVE_QUEUE_CAPACITY: usize = 4096;
/// Most message ids tracked as announced but not received.
const MISSING_CAPACITY: usize = 1024;
/// Most announcers remembered for one missing id.
const ANNOUNCERS_PER_MISSING_MAX: usize = 16;
/// Most outputs waiting to be polled (new ones are dropped beyond this).
const OUTPUT_QUEUE_CAPACITY: usize = 16_384;
/// Largest payload cache a configuration may ask for (64 MiB of 1 KiB
/// payloads).
pub const MAX_MESSAGE_CACHE: usize = 65_536;
/// Largest seen-id set a configuration may ask for (about 100 MB of ids).
pub const MAX_SEEN: usize = 1 << 20;
/// Most origin trees a configuration may ask for.
pub const MAX_TREES: usize = 4096;
/// Shortest time an id is remembered as seen.
pub const MIN_SEEN_TTL: Duration = Duration::from_secs(1);

/// Plumtree settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Wait for the payload after the first IHAVE before sending GRAFT
    /// (paper §3.4 "timeout"; Grove: 500 ms, a few RTTs). Like every
    /// timeout here: 1 ms to 720 h ([`crate::config::MIN_INTERVAL`],
    /// [`crate::config::MAX_DURATION`]).
    #[serde(with = "crate::duration")]
    pub graft_timeout_1: Duration,
    /// Wait after a GRAFT before grafting the next announcer (paper's
    /// second, shorter timeout; Grove: 250 ms).
    #[serde(with = "crate::duration")]
    pub graft_timeout_2: Duration,
    /// Delay before queued IHAVEs are flushed, batching announcements
    /// (paper §3.5 lazy-push policy; Grove: 50 ms; 0: no batching; at most
    /// 720 h).
    #[serde(with = "crate::duration")]
    pub ihave_delay: Duration,
    /// Tree optimisation: replace an eager link when a lazy announcer is this
    /// many hops better (paper §3.8 threshold; 3). `u16::MAX` turns the
    /// optimisation off.
    pub optimization_threshold: u16,
    /// How long a received payload is kept to answer GRAFTs (Grove: 30 s).
    #[serde(with = "crate::duration")]
    pub message_cache_ttl: Duration,
    /// Most payloads kept in the cache (bounded; oldest dropped first); 1 to
    /// [`MAX_MESSAGE_CACHE`].
    pub message_cache_capacity: usize,
    /// How long a message id is remembered as seen (Grove: 120 s); 1 s to
    /// 720 h: an id forgotten while its message still travels is delivered
    /// and forwarded again.
    #[serde(with = "crate::duration")]
    pub seen_ttl: Duration,
    /// Most ids remembered as seen (bounded; oldest dropped first); 1 to
    /// [`MAX_SEEN`] (0 would forward every message again on every arrival).
    pub seen_capacity: usize,
    /// Most origins whose tree a node keeps (Grove: 64; the least recently
    /// used is dropped first, and rebuilt from a template if its origin
    /// broadcasts again); 1 to [`MAX_TREES`]. Each costs about 80 bytes.
    pub max_trees: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            graft_timeout_1: Duration::from_millis(500),
            graft_timeout_2: Duration::from_millis(250),
            ihave_delay: Duration::from_millis(50),
            optimization_threshold: 3,
            message_cache_ttl: Duration::from_secs(30),
            message_cache_capacity: 4096,
            seen_ttl: Duration::from_secs(120),
            seen_capacity: 16384,
            max_trees: 64,
        }
    }
}

impl Config {
    /// Check the bounds on each field's doc line; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        for (key, d) in [
            ("graft_timeout_1", self.graft_timeout_1),
            ("graft_timeout_2", self.graft_timeout_2),
            ("message_cache_ttl", self.message_cache_ttl),
        ] {
            config::interval(d).map_err(KeyError::at(key))?;
        }
        config::delay(self.ihave_delay).map_err(KeyError::at("ihave_delay"))?;
        config::range(self.message_cache_capacity, 1, MAX_MESSAGE_CACHE)
            .map_err(KeyError::at("message_cache_capacity"))?;
        config::range(self.max_trees, 1, MAX_TREES).map_err(KeyError::at("max_trees"))?;
        validate_seen(self.seen_ttl, self.seen_capacity)
    }
}

/// The bounds of a seen-id set (Plumtree's and flooding's).
pub(super) fn validate_seen(ttl: Duration, capacity: usize) -> Result<(), KeyError> {
    config::duration_range(ttl, MIN_SEEN_TTL, config::MAX_DURATION)
        .map_err(KeyError::at("seen_ttl"))?;
    config::range(capacity, 1, MAX_SEEN).map_err(KeyError::at("seen_capacity"))
}

/// What the broadcast layer tells the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A broadcast reached this node for the first time. The origin sees its
    /// own broadcast with `hops == 0` and `from == None`.
    Delivered {
        id: MsgId,
        hops: u16,
        from: Option<PeerId>,
        payload: Bytes,
    },
}

/// An output of the core.
pub type Output = super::Output<Message, Event>;

/// The id of the `seq`-th broadcast of `origin` with `payload`.
pub fn message_id(origin: &PeerId, seq: u64, payload: &[u8]) -> MsgId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(payload);
    MsgId(h.finalize().into())
}

/// The all-zero id, the paper's null id: payloads and announcements under
/// it are dropped, so it is never cached and a GRAFT for it changes
/// nothing (LINK does what the paper's GRAFT(null) did). No SHA-256
/// output is all zeros in practice.
const NULL_ID: MsgId = MsgId([0; 32]);

/// A payload kept to answer GRAFTs: the hops it arrived with (0 at the
/// origin), and the tree it travels.
#[derive(Debug)]
struct Cached {
    payload: Bytes,
    hops: u16,
    origin: PeerId,
    template: Option<PeerId>,
}

/// A lazy peer that announced a message we have not received.
#[derive(Clone, Copy, Debug)]
struct Announcer {
    peer: PeerId,
    hops: u16,
}

/// A message announced but not received (the paper's `missing` entries for
/// one id, with their timer).
#[derive(Debug)]
struct Missing {
    /// When the next announcer is grafted; `graft_timers` holds
    /// `(deadline, id)` for every entry.
    deadline: Time,
    /// Announcers not yet grafted, in arrival order.
    announcers: Vec<Announcer>,
}

/// The most neighbours a node tracks (one bit each in a tree's mask); the
/// active view holds at most [`super::hyparview::MAX_ACTIVE_VIEW`] (64),
/// and briefly one more while a high-priority request displaces a member.
pub const MAX_NEIGHBORS: usize = 128;

/// One origin's tree at this node: which neighbour slots are eager (bit
/// `i` for `slots[i]`); every other neighbour is lazy.
#[derive(Clone, Copy, Debug)]
struct Tree {
    eager: u128,
    /// When a message of this origin last went through (least recently
    /// used trees are dropped first).
    used: Time,
    /// The hops its last message reached us in (0 for our own tree): how
    /// far up this tree its origin is.
    hops: u16,
}

/// A tree is a template only once no message of its origin has gone
/// through it for this long: a tree still carrying a message is being
/// pruned and optimised, and copies of it taken at different moments
/// would not fit together.
pub const TEMPLATE_SETTLE: Duration = Duration::from_secs(2);
/// How many of the most recently used settled trees a template is chosen
/// from (the one whose origin is fewest hops up it).
pub const TEMPLATE_CANDIDATES: usize = 24;

/// The Plumtree state machine of one node.
#[derive(Debug)]
pub struct Plumtree {
    me: PeerId,
    config: Config,
    next_seq: u64,
    /// Neighbours by slot, in the order they came up; a freed slot is
    /// reused by the next neighbour.
    slots: Vec<Option<PeerId>>,
    /// One tree per origin, at most `config.max_trees`.
    trees: BTreeMap<PeerId, Tree>,
    seen: ExpiringMap<()>,
    cache: ExpiringMap<Cached>,
    missing: BTreeMap<MsgId, Missing>,
    graft_timers: BTreeSet<(Time, MsgId)>,
    /// Announcements to flush: (lazy peer, id, hops).
    ihave_queue: VecDeque<(PeerId, MsgId, u16)>,
    /// When `ihave_queue` is flushed; `Some` exactly when it is non-empty.
    ihave_flush_at: Option<Time>,
    /// Our own broadcasts made while we had no neighbour (a node that has
    /// just started or lost every neighbour), oldest first, at most
    /// [`MAX_ORPHANS`]: the first neighbour to come up gets them.
    orphans: Vec<MsgId>,
    outbox: Outbox,
}

/// Own broadcasts kept for the first neighbour when there is none.
pub const MAX_ORPHANS: usize = 16;

impl Plumtree {
    /// Start numbering this node's broadcasts at `seq`. A node that restarts
    /// with the same identity must not reuse the ids of its earlier
    /// broadcasts (peers would drop them as already seen), so the node
    /// starts from a random sequence number.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    pub fn new(me: PeerId, config: Config) -> Self {
        Plumtree {
            me,
            next_seq: 0,
            slots: Vec::new(),
            trees: BTreeMap::new(),
            seen: ExpiringMap::new(config.seen_capacity, config.seen_ttl),
            cache: ExpiringMap::new(config.message_cache_capacity, config.message_cache_ttl),
            missing: BTreeMap::new(),
            graft_timers: BTreeSet::new(),
            ihave_queue: VecDeque::new(),
            ihave_flush_at: None,
            orphans: Vec::new(),
            outbox: Outbox::default(),
            config,
        }
    }

    // ---- getters ----

    /// Neighbours that receive `origin`'s payloads, in slot order (every
    /// neighbour for an origin without a tree here).
    pub fn eager_peers(&self, origin: &PeerId) -> impl Iterator<Item = &PeerId> + '_ {
        let mask = self.mask_of(origin);
        self.neighbors_where(move |bit| mask & bit != 0)
    }
    /// Neighbours that receive announcements only for `origin`.
    pub fn lazy_peers(&self, origin: &PeerId) -> impl Iterator<Item = &PeerId> + '_ {
        let mask = self.mask_of(origin);
        self.neighbors_where(move |bit| mask & bit == 0)
    }
    /// How many origins have a tree here (at most `max_trees`).
    pub fn trees(&self) -> usize {
        self.trees.len()
    }
    /// Outputs dropped because the output queue was full (0 when the driver
    /// drains after every input).
    pub fn outputs_dropped(&self) -> u64 {
        self.outbox.dropped()
    }

    // ---- inputs ----

    /// Broadcast `payload` (at most [`MAX_PAYLOAD_BYTES`]); returns its id.
    ///
    /// The payload is delivered locally first (`hops == 0`, `from == None`),
    /// then pushed to the eager peers of our own tree and announced to the
    /// lazy ones. Our first broadcast goes to every neighbour and names a
    /// template tree (see the module doc), so that the other nodes start
    /// our tree from a copy of theirs.
    pub fn broadcast(&mut self, now: Time, payload: Bytes) -> MsgId {
        let (id, fresh) = originate(
            &self.me,
            &mut self.next_seq,
            now,
            &payload,
            &mut self.seen,
            &mut self.outbox,
        );
        if !fresh {
            return id;
        }
        let me = self.me;
        let template = self.template_for(now);
        self.cache.insert(
            now,
            id,
            Cached {
                payload: payload.clone(),
                hops: 0,
                origin: me,
                template,
            },
        );
        if self.slots.iter().all(Option::is_none) {
            if self.orphans.len() >= MAX_ORPHANS {
                self.orphans.remove(0);
            }
            self.orphans.push(id);
        }
        // Our own tree starts with every link eager (no template): our
        // first message enters the template tree at each neighbour at once,
        // and its duplicates prune our tree back to the links it needs.
        let tree = self.tree(now, me, None);
        tree.hops = 0;
        let mask = tree.eager;
        self.eager_push(mask, id, 1, me, template, &payload, None);
        self.lazy_push(now, mask, id, 1, None, &[]);
        id
    }

    /// A new active-view neighbour: it starts eager in every tree (the
    /// paper's rule: a link is eager until a duplicate shows it
    /// redundant). A neighbour already known keeps its slot, and is made
    /// eager again.
    pub fn handle_neighbor_up(&mut self, _now: Time, peer: PeerId) {
        if peer == self.me {
            return;
        }
        let free = || self.slots.iter().position(Option::is_none);
        let slot = match self.slot_of(&peer).or_else(free) {
            Some(slot) => slot,
            None if self.slots.len() < MAX_NEIGHBORS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            // More neighbours than HyParView ever holds: not tracked.
            None => return,
        };
        self.slots[slot] = Some(peer);
        let bit = 1u128 << slot;
        for tree in self.trees.values_mut() {
            tree.eager |= bit;
        }
        // Broadcasts made alone go out now, through this first neighbour
        // (those the cache has let go of are lost).
        for id in std::mem::take(&mut self.orphans) {
            if let Some(cached) = self.cache.get(&id) {
                self.outbox.send(
                    peer,
                    Message::Gossip {
                        id,
                        hops: 1,
                        origin: cached.origin,
                        template: cached.template,
                        payload: cached.payload.clone(),
                    },
                );
            }
        }
    }

    /// A neighbour left the active view: its slot is freed, and it leaves
    /// every announcer list and the IHAVE queue.
    pub fn handle_neighbor_down(&mut self, _now: Time, peer: &PeerId) {
        if let Some(slot) = self.slot_of(peer) {
            self.slots[slot] = None;
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
        }
        for missing in self.missing.values_mut() {
            missing.announcers.retain(|a| a.peer != *peer);
        }
        self.ihave_queue.retain(|(p, _, _)| p != peer);
        if self.ihave_queue.is_empty() {
            self.ihave_flush_at = None;
        }
    }

    /// A broadcast message from `from` (the sender the transport
    /// authenticated).
    pub fn handle_message(&mut self, now: Time, from: PeerId, message: Message) {
        match message {
            Message::Gossip {
                id,
                hops,
                origin,
                template,
                payload,
            } => self.on_gossip(now, from, id, hops, origin, template, payload),
            Message::IHave { entries } => self.on_ihave(now, from, &entries),
            Message::Graft { id } => self.on_graft(now, from, id),
            Message::Prune { origin } => {
                // Remembered even for an origin we hold no tree for (we
                // dropped it, or never saw its messages): its next message
                // then skips this link.
                if let Some(slot) = self.slot_of(&from) {
                    self.tree(now, origin, None);
                    self.set_eager(&origin, slot, false);
                }
            }
            Message::Link { origin } => {
                if let Some(slot) = self.slot_of(&from) {
                    self.set_eager(&origin, slot, true);
                }
            }
        }
    }

    /// Fire every timer due at or before `now`: GRAFTs for missing messages,
    /// the IHAVE flush, and cache / seen-set expiry.
    pub fn handle_timeout(&mut self, now: Time) {
        self.fire_graft_timers(now);
        if self.ihave_flush_at.is_some_and(|at| at <= now) {
            self.flush_ihaves();
        }
        self.seen.expire(now);
        self.cache.expire(now);
    }

    // ---- outputs ----

    /// The next message to send or event to report.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// When [`Plumtree::handle_timeout`] must next be called; `None` when
    /// nothing is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let graft = self.graft_timers.first().map(|&(at, _)| at);
        let expiry = [self.seen.next_expiry(), self.cache.next_expiry()]
            .into_iter()
            .flatten()
            .min()
            .map(round_up_to_second);
        [graft, self.ihave_flush_at, expiry]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- message handlers ----

    #[allow(clippy::too_many_arguments)]
    fn on_gossip(
        &mut self,
        now: Time,
        from: PeerId,
        id: MsgId,
        hops: u16,
        origin: PeerId,
        template: Option<PeerId>,
        payload: Bytes,
    ) {
        if payload.len() > MAX_PAYLOAD_BYTES || id == NULL_ID {
            return;
        }
        let slot = self.slot_of(&from);
        if self.seen.contains(&id) {
            // A duplicate: the link is redundant in this origin's tree
            // (Algorithm 1).
            if let Some(slot) = slot {
                self.tree(now, origin, template);
                self.set_eager(&origin, slot, false);
                self.outbox.send(from, Message::Prune { origin });
            }
            return;
        }
        self.seen.insert(now, id, ());
        let missing = self.missing.remove(&id);
        if let Some(missing) = &missing {
            self.graft_timers.remove(&(missing.deadline, id));
        }
        self.outbox.push(Output::Event(Event::Delivered {
            id,
            hops,
            from: Some(from),
            payload: payload.clone(),
        }));
        self.cache.insert(
            now,
            id,
            Cached {
                payload: payload.clone(),
                hops,
                origin,
                template,
            },
        );
        let tree = self.tree(now, origin, template);
        tree.hops = hops;
        let mask = tree.eager;
        let announcers = missing.as_ref().map_or(&[][..], |m| &m.announcers[..]);
        let next_hops = hops.saturating_add(1);
        self.eager_push(mask, id, next_hops, origin, template, &payload, Some(from));
        self.lazy_push(now, mask, id, next_hops, Some(from), announcers);
        if let Some(slot) = slot {
            self.set_eager(&origin, slot, true);
            if let Some(missing) = &missing {
                self.optimize(origin, hops, (from, slot), &missing.announcers);
            }
        }
    }

    /// §3.8, in `origin`'s tree: the payload came `hops` hops, a lazy
    /// announcer offered it in at least `optimization_threshold` fewer.
    /// Link the best announcer and prune the sender (a neighbour, with its
    /// slot).
    fn optimize(
        &mut self,
        origin: PeerId,
        hops: u16,
        (sender, sender_slot): (PeerId, usize),
        announcers: &[Announcer],
    ) {
        let threshold = self.config.optimization_threshold;
        let best = announcers
            .iter()
            .filter(|a| a.peer != sender && a.hops < hops && hops - a.hops >= threshold)
            .min_by_key(|a| a.hops);
        let Some(best) = best else { return };
        let Some(best_slot) = self.slot_of(&best.peer) else {
            return;
        };
        self.set_eager(&origin, best_slot, true);
        self.outbox.send(best.peer, Message::Link { origin });
        self.set_eager(&origin, sender_slot, false);
        self.outbox.send(sender, Message::Prune { origin });
    }

    fn on_ihave(&mut self, now: Time, from: PeerId, entries: &[(MsgId, u16)]) {
        if self.slot_of(&from).is_none() {
            return;
        }
        let announcer_of = |hops| Announcer { peer: from, hops };
        for &(id, hops) in entries.iter().take(MAX_IHAVE_ENTRIES) {
            if id == NULL_ID || self.seen.contains(&id) {
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&id) {
                let known = missing.announcers.iter().any(|a| a.peer == from);
                if !known && missing.announcers.len() < ANNOUNCERS_PER_MISSING_MAX {
                    missing.announcers.push(announcer_of(hops));
                }
            } else if self.missing.len() < MISSING_CAPACITY {
                let deadline = now.saturating_add(self.config.graft_timeout_1);
                self.missing.insert(
                    id,
                    Missing {
                        deadline,
                        announcers: vec![announcer_of(hops)],
                    },
                );
                self.graft_timers.insert((deadline, id));
            }
        }
    }

    /// A GRAFT for a payload we still hold makes its sender eager in the
    /// payload's tree, and is answered with the payload. A GRAFT for
    /// anything else is ignored: we cannot tell which tree it means.
    fn on_graft(&mut self, now: Time, from: PeerId, id: MsgId) {
        let Some(slot) = self.slot_of(&from) else {
            return;
        };
        let Some(cached) = self.cache.get(&id) else {
            return;
        };
        let (origin, template) = (cached.origin, cached.template);
        let message = Message::Gossip {
            id,
            hops: cached.hops.saturating_add(1),
            origin,
            template,
            payload: cached.payload.clone(),
        };
        self.tree(now, origin, template);
        self.set_eager(&origin, slot, true);
        self.outbox.send(from, message);
    }

    // ---- timers ----

    /// Algorithm 2: for every missing message whose timer is due, graft its
    /// next announcer and give it `graft_timeout_2`; an entry with no
    /// announcer left is dropped when its timer fires. (The announcer
    /// becomes eager here when its payload arrives: until then we do not
    /// know the message's origin.)
    fn fire_graft_timers(&mut self, now: Time) {
        while let Some(&(deadline, id)) = self.graft_timers.first() {
            if deadline > now {
                break;
            }
            self.graft_timers.pop_first();
            let Some(missing) = self.missing.get_mut(&id) else {
                continue;
            };
            if missing.announcers.is_empty() {
                self.missing.remove(&id);
                continue;
            }
            let announcer = missing.announcers.remove(0);
            missing.deadline = now.saturating_add(self.config.graft_timeout_2);
            self.graft_timers.insert((missing.deadline, id));
            if self.slot_of(&announcer.peer).is_some() {
                self.outbox.send(announcer.peer, Message::Graft { id });
            }
        }
    }

    /// Send every queued announcement: per peer (in order of first queued
    /// entry), IHAVEs of at most [`MAX_IHAVE_ENTRIES`] entries.
    fn flush_ihaves(&mut self) {
        self.ihave_flush_at = None;
        let mut pending = std::mem::take(&mut self.ihave_queue);
        while let Some((peer, id, hops)) = pending.pop_front() {
            let mut entries = Vec::with_capacity(MAX_IHAVE_ENTRIES.min(pending.len() + 1));
            entries.push((id, hops));
            pending.retain(|&(other, id, hops)| {
                let take = other == peer && entries.len() < MAX_IHAVE_ENTRIES;
                if take {
                    entries.push((id, hops));
                }
                !take
            });
            if self.slot_of(&peer).is_some() {
                self.outbox.send(peer, Message::IHave { entries });
            }
        }
        // Keep the (now empty) buffer's allocation.
        self.ihave_queue = pending;
    }

    // ---- trees and peer sets ----

    #[allow(clippy::too_many_arguments)]
    fn eager_push(
        &mut self,
        mask: u128,
        id: MsgId,
        hops: u16,
        origin: PeerId,
        template: Option<PeerId>,
        payload: &Bytes,
        except: Option<PeerId>,
    ) {
        for (slot, peer) in self.slots.iter().enumerate() {
            let Some(peer) = *peer else { continue };
            if mask & (1 << slot) == 0 || Some(peer) == except {
                continue;
            }
            self.outbox.send(
                peer,
                Message::Gossip {
                    id,
                    hops,
                    origin,
                    template,
                    payload: payload.clone(),
                },
            );
        }
    }

    /// Queue `(id, hops)` for every lazy peer of `mask` but `except` and
    /// the peers that announced it to us.
    fn lazy_push(
        &mut self,
        now: Time,
        mask: u128,
        id: MsgId,
        hops: u16,
        except: Option<PeerId>,
        announcers: &[Announcer],
    ) {
        for (slot, peer) in self.slots.iter().enumerate() {
            let Some(peer) = *peer else { continue };
            if mask & (1 << slot) != 0
                || Some(peer) == except
                || announcers.iter().any(|a| a.peer == peer)
            {
                continue;
            }
            if self.ihave_queue.len() >= IHAVE_QUEUE_CAPACITY {
                self.ihave_queue.pop_front();
            }
            self.ihave_queue.push_back((peer, id, hops));
        }
        if !self.ihave_queue.is_empty() && self.ihave_flush_at.is_none() {
            self.ihave_flush_at = Some(now.saturating_add(self.config.ihave_delay));
        }
    }

    fn slot_of(&self, peer: &PeerId) -> Option<usize> {
        self.slots.iter().position(|p| p.as_ref() == Some(peer))
    }

    fn neighbors_where(&self, keep: impl Fn(u128) -> bool) -> impl Iterator<Item = &PeerId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(slot, p)| p.as_ref().filter(|_| keep(1 << slot)))
    }

    /// `origin`'s eager mask; every neighbour when it has no tree here.
    fn mask_of(&self, origin: &PeerId) -> u128 {
        self.trees.get(origin).map_or(u128::MAX, |t| t.eager)
    }

    /// The tree our first broadcast starts from: among the
    /// [`TEMPLATE_CANDIDATES`] most recently used of the other origins'
    /// trees that have settled ([`TEMPLATE_SETTLE`]), the one whose origin
    /// is fewest hops up it (our message climbs to near its root, then
    /// spreads down a tree shaped for that root), the most recently used
    /// of those; when none has settled, the one left alone longest.
    fn template_for(&self, now: Time) -> Option<PeerId> {
        let me = self.me;
        let others = || self.trees.iter().filter(move |(origin, _)| **origin != me);
        let mut settled: Vec<_> = others()
            .filter(|(_, tree)| now.saturating_sub(tree.used) >= TEMPLATE_SETTLE)
            .collect();
        // The most recently used first: other nodes still hold those trees
        // (an old one may be gone from their tables, and they would then
        // flood), and recent traffic has pruned them (a link that came up
        // since starts eager in every tree).
        settled.sort_unstable_by_key(|(origin, tree)| std::cmp::Reverse((tree.used, **origin)));
        settled.truncate(TEMPLATE_CANDIDATES);
        let closest = settled
            .into_iter()
            .min_by_key(|(origin, tree)| (tree.hops, std::cmp::Reverse((tree.used, **origin))));
        closest
            .or_else(|| others().min_by_key(|(origin, tree)| (tree.used, **origin)))
            .map(|(origin, _)| *origin)
    }

    /// `origin`'s tree, marked used at `now`. A new one starts as a copy of
    /// `template`'s tree when we have it, and with every link eager
    /// otherwise (the paper's start, which a first message prunes into a
    /// tree); the least recently used tree makes room for it.
    fn tree(&mut self, now: Time, origin: PeerId, template: Option<PeerId>) -> &mut Tree {
        if !self.trees.contains_key(&origin) {
            let eager = template
                .filter(|t| *t != origin)
                .and_then(|t| self.trees.get(&t))
                .map_or(u128::MAX, |t| t.eager);
            if self.trees.len() >= self.config.max_trees {
                let oldest = self
                    .trees
                    .iter()
                    .min_by_key(|(origin, tree)| (tree.used, **origin))
                    .map(|(origin, _)| *origin);
                if let Some(oldest) = oldest {
                    self.trees.remove(&oldest);
                }
            }
            let tree = Tree {
                eager,
                used: now,
                hops: u16::MAX,
            };
            self.trees.insert(origin, tree);
        }
        let tree = self.trees.get_mut(&origin).expect("inserted above");
        tree.used = tree.used.max(now);
        tree
    }

    /// Make the neighbour in `slot` eager or lazy in `origin`'s tree;
    /// nothing for an origin without a tree here.
    fn set_eager(&mut self, origin: &PeerId, slot: usize, eager: bool) {
        if let Some(tree) = self.trees.get_mut(origin) {
            if eager {
                tree.eager |= 1 << slot;
            } else {
                tree.eager &= !(1 << slot);
            }
        }
    }
}

/// Message ids with a value, bounded by count and by age: inserting into a
/// full map, or expiring, removes the oldest entries first. Lookups are
/// O(log n) in a `BTreeMap` (ids are chosen by peers, so no hash flooding).
#[derive(Debug)]
pub(super) struct ExpiringMap<V> {
    entries: BTreeMap<MsgId, V>,
    /// Insertion times and ids, oldest first; the same ids as `entries`.
    order: VecDeque<(Time, MsgId)>,
    capacity: usize,
    ttl: Duration,
}

impl<V> ExpiringMap<V> {
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        ExpiringMap {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    pub(super) fn contains(&self, id: &MsgId) -> bool {
        self.entries.contains_key(id)
    }

    pub(super) fn get(&self, id: &MsgId) -> Option<&V> {
        self.entries.get(id)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Insert `id` unless it is present (or the capacity is 0), evicting
    /// expired entries and then the oldest while full.
    pub(super) fn insert(&mut self, now: Time, id: MsgId, value: V) {
        self.expire(now);
        if self.capacity == 0 || self.entries.contains_key(&id) {
            return;
        }
        while self.entries.len() >= self.capacity && self.evict_oldest() {}
        self.entries.insert(id, value);
        self.order.push_back((now, id));
    }

    /// Remove every entry older than the time-to-live.
    pub(super) fn expire(&mut self, now: Time) {
        while let Some(&(at, _)) = self.order.front() {
            if at.saturating_add(self.ttl) > now {
                break;
            }
            self.evict_oldest();
        }
    }

    /// When the oldest entry expires.
    pub(super) fn next_expiry(&self) -> Option<Time> {
        self.order
            .front()
            .map(|&(at, _)| at.saturating_add(self.ttl))
    }

    fn evict_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, id)) => {
                self.entries.remove(&id);
                true
            }
            None => false,
        }
    }
}

/// The first whole second at or after `t`: expiry deadlines are put on this
/// grid so that many nodes wake up together.
pub(super) fn round_up_to_second(t: Time) -> Time {
    if t.subsec_nanos() == 0 {
        t
    } else {
        Duration::from_secs(t.as_secs().saturating_add(1))
    }
}

/// The start of a broadcast, the same in every broadcast core: number the
/// payload, remember its id as seen and deliver it locally (`hops == 0`,
/// `from == None`). Returns the id and whether it is new; an id already seen
/// (a sequence collision) is not sent again.
pub(super) fn originate(
    me: &PeerId,
    next_seq: &mut u64,
    now: Time,
    payload: &Bytes,
    seen: &mut ExpiringMap<()>,
    outbox: &mut Outbox,
) -> (MsgId, bool) {
    debug_assert!(
        payload.len() <= MAX_PAYLOAD_BYTES,
        "broadcast payload of {} bytes over the {MAX_PAYLOAD_BYTES}-byte limit",
        payload.len()
    );
    let id = message_id(me, *next_seq, payload);
    *next_seq = next_seq.wrapping_add(1);
    if seen.contains(&id) {
        return (id, false);
    }
    seen.insert(now, id, ());
    outbox.push(Output::Event(Event::Delivered {
        id,
        hops: 0,
        from: None,
        payload: payload.clone(),
    }));
    (id, true)
}

/// The bounded output queue of a broadcast core.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Output>,
    dropped: u64,
}

impl Outbox {
    pub(super) fn push(&mut self, output: Output) {
        if self.queue.len() >= OUTPUT_QUEUE_CAPACITY {
            self.dropped = self.dropped.saturating_add(1);
        } else {
            self.queue.push_back(output);
        }
    }

    pub(super) fn send(&mut self, to: PeerId, message: Message) {
        self.push(Output::Send { to, message });
    }

    pub(super) fn pop(&mut self) -> Option<Output> {
        crate::compact::pop_front_releasing(&mut self.queue)
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl super::Core for Plumtree {
    type Message = Message;
    type Event = Event;

    fn handle_message(&mut self, now: Time, from: crate::Peer, message: Message) {
        Plumtree::handle_message(self, now, from.id, message);
    }
    fn handle_neighbor_up(&mut self, now: Time, peer: crate::Peer) {
        Plumtree::handle_neighbor_up(self, now, peer.id);
    }
    fn handle_neighbor_down(&mut self, now: Time, peer: &PeerId) {
        Plumtree::handle_neighbor_down(self, now, peer);
    }
    fn handle_timeout(&mut self, now: Time) {
        Plumtree::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Plumtree::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Plumtree::poll_timeout(self)
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! Unit tests of single nodes, and a small virtual-time network that runs
    //! many nodes on a fixed topology (shared with the flood tests).

    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    // ---- harness (also used by `flood`) ----

    /// The `i`-th test peer's id, derived from `i`.
    pub(in crate::proto) fn peer(i: usize) -> PeerId {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        id[31] = 0xee;
        PeerId(id)
    }

    pub(in crate::proto) fn payload(k: usize) -> Bytes {
        Bytes::from(format!("discovery #{k}"))
    }

    pub(in crate::proto) const fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// What the network harness needs from a broadcast core.
    pub(in crate::proto) trait Core {
        fn up(&mut self, now: Time, peer: PeerId);
        fn down(&mut self, now: Time, peer: &PeerId);
        fn publish(&mut self, now: Time, payload: Bytes) -> MsgId;
        fn receive(&mut self, now: Time, from: PeerId, message: Message);
        fn timeout(&mut self, now: Time);
        fn output(&mut self) -> Option<Output>;
        fn deadline(&self) -> Option<Time>;
    }

    impl Core for Plumtree {
        fn up(&mut self, now: Time, peer: PeerId) {
            self.handle_neighbor_up(now, peer)
        }
        fn down(&mut self, now: Time, peer: &PeerId) {
            self.handle_neighbor_down(now, peer)
        }
        fn publish(&mut self, now: Time, payload: Bytes) -> MsgId {
            self.broadcast(now, payload)
        }
        fn receive(&mut self, now: Time, from: PeerId, message: Message) {
            self.handle_message(now, from, message)
        }
        fn timeout(&mut self, now: Time) {
            self.handle_timeout(now)
        }
        fn output(&mut self) -> Option<Output> {
            self.poll_output()
        }
        fn deadline(&self) -> Option<Time> {
            self.poll_timeout()
        }
    }

    /// One delivery observed at a node.
    #[derive(Clone, Debug, PartialEq)]
    pub(in crate::proto) struct Delivery {
        pub id: MsgId,
        pub hops: u16,
        pub from: Option<PeerId>,
        pub at: Time,
    }

    /// Messages sent, by kind.
    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    pub(in crate::proto) struct Counts {
        pub gossip: usize,
        pub ihave: usize,
        pub graft: usize,
        pub prune: usize,
        pub link: usize,
    }

    /// Nodes on a fixed topology, routed by id; datagrams arrive after a
    /// per-link latency, in (time, send order); time jumps to the next
    /// arrival or timer.
    pub(in crate::proto) struct Sim<C> {
        pub nodes: Vec<C>,
        pub now: Time,
        pub delivered: Vec<Vec<Delivery>>,
        pub sent: Counts,
        /// Every datagram sent: (time, from, to, message).
        pub trace: Vec<(Time, usize, usize, Message)>,
        index: BTreeMap<PeerId, usize>,
        default_latency: Duration,
        latency: BTreeMap<(usize, usize), Duration>,
        in_flight: BTreeMap<(Time, u64), (usize, usize, Message)>,
        next_seq: u64,
        cut: BTreeSet<(usize, usize)>,
    }

    impl<C: Core> Sim<C> {
        pub fn new(nodes: Vec<C>, edges: &[(usize, usize)], latency: Duration) -> Self {
            let n = nodes.len();
            let mut sim = Sim {
                nodes,
                now: Duration::from_secs(1),
                delivered: vec![Vec::new(); n],
                sent: Counts::default(),
                trace: Vec::new(),
                index: (0..n).map(|i| (peer(i), i)).collect(),
                default_latency: latency,
                latency: BTreeMap::new(),
                in_flight: BTreeMap::new(),
                next_seq: 0,
                cut: BTreeSet::new(),
            };
            for &(a, b) in edges {
                let now = sim.now;
                sim.nodes[a].up(now, peer(b));
                sim.nodes[b].up(now, peer(a));
            }
            for i in 0..n {
                sim.drain(i);
            }
            sim
        }

        pub fn set_latency(&mut self, a: usize, b: usize, latency: Duration) {
            self.latency.insert((a, b), latency);
            self.latency.insert((b, a), latency);
        }

        pub fn broadcast(&mut self, origin: usize, payload: Bytes) -> MsgId {
            let id = self.nodes[origin].publish(self.now, payload);
            self.drain(origin);
            id
        }

        /// Break the link a–b: both ends see their neighbour go down, and
        /// datagrams on it (in flight or later) are lost.
        pub fn cut(&mut self, a: usize, b: usize) {
            let now = self.now;
            self.nodes[a].down(now, &peer(b));
            self.nodes[b].down(now, &peer(a));
            self.cut.insert((a, b));
            self.cut.insert((b, a));
            let cut = &self.cut;
            self.in_flight
                .retain(|_, (from, to, _)| !cut.contains(&(*from, *to)));
            self.drain(a);
            self.drain(b);
        }

        /// Run every arrival and timer due within `duration`.
        pub fn run_for(&mut self, duration: Duration) {
            let end = self.now + duration;
            for _ in 0..1_000_000 {
                let arrival = self.in_flight.keys().next().map(|&(at, _)| at);
                let timer = self.nodes.iter().filter_map(C::deadline).min();
                let next = [arrival, timer].into_iter().flatten().min();
                match next {
                    Some(at) if at <= end => self.step(at.max(self.now)),
                    _ => {
                        self.now = end;
                        return;
                    }
                }
            }
            panic!("the network did not settle");
        }

        fn step(&mut self, now: Time) {
            self.now = now;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (from, to, message) = entry.remove();
                self.nodes[to].receive(now, peer(from), message);
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].deadline().is_some_and(|at| at <= now) {
                    self.nodes[i].timeout(now);
                    self.drain(i);
                }
            }
        }

        fn drain(&mut self, i: usize) {
            while let Some(output) = self.nodes[i].output() {
                match output {
                    Output::Send { to, message } => {
                        let j = self.index[&to];
                        match &message {
                            Message::Gossip { .. } => self.sent.gossip += 1,
                            Message::IHave { .. } => self.sent.ihave += 1,
                            Message::Graft { .. } => self.sent.graft += 1,
                            Message::Prune { .. } => self.sent.prune += 1,
                            Message::Link { .. } => self.sent.link += 1,
                        }
                        self.trace.push((self.now, i, j, message.clone()));
                        if self.cut.contains(&(i, j)) {
                            continue;
                        }
                        let latency = *self.latency.get(&(i, j)).unwrap_or(&self.default_latency);
                        self.in_flight
                            .insert((self.now + latency, self.next_seq), (i, j, message));
                        self.next_seq += 1;
                    }
                    Output::Event(Event::Delivered { id, hops, from, .. }) => {
                        self.delivered[i].push(Delivery {
                            id,
                            hops,
                            from,
                            at: self.now,
                        });
                    }
                }
            }
        }

        /// The single delivery of `id` at every node (panics unless every
        /// node delivered it exactly once).
        pub fn deliveries(&self, id: MsgId) -> Vec<Delivery> {
            (0..self.nodes.len())
                .map(|i| {
                    let got: Vec<_> = self.delivered[i].iter().filter(|d| d.id == id).collect();
                    assert_eq!(
                        got.len(),
                        1,
                        "node {i} delivered {:?} {} times",
                        id,
                        got.len()
                    );
                    got[0].clone()
                })
                .collect()
        }
    }

    /// A line 0 – 1 – … – n-1.
    pub(in crate::proto) fn line(n: usize) -> Vec<(usize, usize)> {
        (1..n).map(|i| (i - 1, i)).collect()
    }

    /// A connected random graph: a ring over a seeded permutation of the
    /// nodes, plus random chords until (almost) every node has `degree`
    /// neighbours.
    pub(in crate::proto) fn random_graph(
        n: usize,
        degree: usize,
        seed: u64,
    ) -> Vec<(usize, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut adjacent = vec![BTreeSet::new(); n];
        let mut edges = Vec::new();
        let mut add = |a: usize, b: usize, adjacent: &mut Vec<BTreeSet<usize>>| {
            adjacent[a].insert(b);
            adjacent[b].insert(a);
            edges.push((a.min(b), a.max(b)));
        };
        for k in 0..n {
            add(order[k], order[(k + 1) % n], &mut adjacent);
        }
        for _ in 0..n * degree * 8 {
            let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
            if a != b
                && adjacent[a].len() < degree
                && adjacent[b].len() < degree
                && !adjacent[a].contains(&b)
            {
                add(a, b, &mut adjacent);
            }
        }
        edges.sort_unstable();
        edges
    }

    /// Hop distance from `origin` to every node (`usize::MAX` if cut off).
    pub(in crate::proto) fn distances(
        n: usize,
        edges: &[(usize, usize)],
        origin: usize,
    ) -> Vec<usize> {
        let mut adjacent = vec![Vec::new(); n];
        for &(a, b) in edges {
            adjacent[a].push(b);
            adjacent[b].push(a);
        }
        let mut distance = vec![usize::MAX; n];
        distance[origin] = 0;
        let mut queue = VecDeque::from([origin]);
        while let Some(u) = queue.pop_front() {
            for &v in &adjacent[u] {
                if distance[v] == usize::MAX {
                    distance[v] = distance[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        distance
    }

    // ---- single-node helpers ----

    const NOW: Time = Duration::from_secs(100);

    /// A test id; never the null id.
    fn id(k: u8) -> MsgId {
        let mut bytes = [k; 32];
        bytes[0] = 0xaa;
        MsgId(bytes)
    }

    /// The origin of the test messages (not a neighbour).
    fn origin() -> PeerId {
        peer(50)
    }

    fn gossip(k: u8, hops: u16) -> Message {
        Message::Gossip {
            id: id(k),
            hops,
            origin: origin(),
            template: None,
            payload: payload(k as usize),
        }
    }

    fn prune() -> Message {
        Message::Prune { origin: origin() }
    }

    /// Node 0 with neighbours `neighbors`, all eager, outputs drained.
    fn node(neighbors: &[usize]) -> Plumtree {
        node_with(Config::default(), neighbors)
    }

    fn node_with(config: Config, neighbors: &[usize]) -> Plumtree {
        let mut node = Plumtree::new(peer(0), config);
        for &i in neighbors {
            node.handle_neighbor_up(NOW, peer(i));
        }
        assert!(drain(&mut node).is_empty());
        node
    }

    fn drain(node: &mut Plumtree) -> Vec<Output> {
        std::iter::from_fn(|| node.poll_output()).collect()
    }

    fn send(to: usize, message: Message) -> Output {
        Output::Send {
            to: peer(to),
            message,
        }
    }

    fn delivered(k: u8, hops: u16, from: Option<usize>) -> Output {
        Output::Event(Event::Delivered {
            id: id(k),
            hops,
            from: from.map(peer),
            payload: payload(k as usize),
        })
    }

    /// The eager peers in the test origin's tree.
    fn eager_ids(node: &Plumtree) -> Vec<PeerId> {
        node.eager_peers(&origin()).copied().collect()
    }

    fn lazy_ids(node: &Plumtree) -> Vec<PeerId> {
        node.lazy_peers(&origin()).copied().collect()
    }

    fn ids(indices: &[usize]) -> Vec<PeerId> {
        indices.iter().map(|&i| peer(i)).collect()
    }

    // ---- single-node behaviour ----

    #[test]
    fn broadcast_delivers_locally_then_pushes_to_eager_and_announces_to_lazy() {
        let mut node = node(&[1, 2, 3]);
        let me = peer(0);
        node.handle_message(NOW, peer(3), Message::Prune { origin: me });
        let payload = payload(7);
        let id = node.broadcast(NOW, payload.clone());
        assert_eq!(id, message_id(&me, 0, &payload));
        let gossip = Message::Gossip {
            id,
            hops: 1,
            origin: me,
            template: None,
            payload: payload.clone(),
        };
        assert_eq!(
            drain(&mut node),
            vec![
                Output::Event(Event::Delivered {
                    id,
                    hops: 0,
                    from: None,
                    payload: payload.clone(),
                }),
                send(1, gossip.clone()),
                send(2, gossip),
            ]
        );
        let flush_at = NOW + Config::default().ihave_delay;
        assert_eq!(node.poll_timeout(), Some(flush_at));
        node.handle_timeout(flush_at - ms(1));
        assert!(drain(&mut node).is_empty());
        node.handle_timeout(flush_at);
        let announce = Message::IHave {
            entries: vec![(id, 1)],
        };
        assert_eq!(drain(&mut node), vec![send(3, announce)]);
        // The same payload again is a new broadcast with a new id.
        assert_ne!(node.broadcast(NOW, payload), id);
    }

    #[test]
    fn a_broadcast_made_alone_goes_to_the_first_neighbour() {
        let mut node = node(&[]);
        let payload = payload(5);
        let id = node.broadcast(NOW, payload.clone());
        let mut out = drain(&mut node);
        assert_eq!(out.len(), 1, "delivered locally, sent nowhere: {out:?}");
        node.handle_neighbor_up(NOW + ms(300), peer(2));
        out = drain(&mut node);
        let gossip = Message::Gossip {
            id,
            hops: 1,
            origin: peer(0),
            template: None,
            payload,
        };
        assert_eq!(out, vec![send(2, gossip)]);
        // Only once: the next neighbour gets nothing of it.
        node.handle_neighbor_up(NOW + ms(400), peer(3));
        assert!(drain(&mut node).is_empty());
    }

    #[test]
    fn first_gossip_is_delivered_forwarded_and_its_sender_made_eager() {
        let mut node = node(&[1, 2, 3, 4]);
        node.handle_message(NOW, peer(1), prune());
        node.handle_message(NOW, peer(4), prune());
        assert_eq!(eager_ids(&node), ids(&[2, 3]));
        node.handle_message(NOW, peer(1), gossip(9, 2));
        assert_eq!(
            drain(&mut node),
            vec![
                delivered(9, 2, Some(1)),
                send(2, gossip(9, 3)),
                send(3, gossip(9, 3)),
            ]
        );
        assert_eq!(eager_ids(&node), ids(&[1, 2, 3]));
        assert_eq!(lazy_ids(&node), ids(&[4]));
        node.handle_timeout(NOW + Config::default().ihave_delay);
        let announce = Message::IHave {
            entries: vec![(id(9), 3)],
        };
        assert_eq!(drain(&mut node), vec![send(4, announce)]);
    }

    #[test]
    fn duplicate_gossip_makes_the_sender_lazy_and_is_answered_with_prune() {
        let mut node = node(&[1, 2, 3]);
        node.handle_message(NOW, peer(1), gossip(1, 1));
        drain(&mut node);
        node.handle_message(NOW, peer(2), gossip(1, 4));
        assert_eq!(drain(&mut node), vec![send(2, prune())]);
        assert_eq!(eager_ids(&node), ids(&[1, 3]));
        assert_eq!(lazy_ids(&node), ids(&[2]));
        // Our own broadcast coming back is a duplicate too, in our tree.
        let me = peer(0);
        let mine = node.broadcast(NOW, payload(5));
        drain(&mut node);
        let echo = Message::Gossip {
            id: mine,
            hops: 3,
            origin: me,
            template: Some(origin()),
            payload: payload(5),
        };
        node.handle_message(NOW, peer(3), echo);
        assert_eq!(
            drain(&mut node),
            vec![send(3, Message::Prune { origin: me })]
        );
        // Our first message left on every link; each tree changes alone.
        assert_eq!(
            node.eager_peers(&me).copied().collect::<Vec<_>>(),
            ids(&[1, 2])
        );
        assert_eq!(eager_ids(&node), ids(&[1, 3]));
    }

    #[test]
    fn prune_makes_the_sender_lazy_and_graft_makes_it_eager_again() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), prune());
        assert_eq!(eager_ids(&node), ids(&[2]));
        assert_eq!(lazy_ids(&node), ids(&[1]));
        node.handle_message(NOW, peer(1), prune());
        assert_eq!(lazy_ids(&node), ids(&[1]));
        node.handle_message(NOW, peer(1), gossip(1, 3));
        drain(&mut node);
        node.handle_message(NOW, peer(1), Message::Graft { id: id(1) });
        assert_eq!(drain(&mut node), vec![send(1, gossip(1, 4))]);
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
        assert!(lazy_ids(&node).is_empty());
        // A LINK makes the link eager without a payload; a PRUNE or LINK
        // for another origin leaves this tree alone.
        node.handle_message(NOW, peer(2), prune());
        node.handle_message(NOW, peer(2), Message::Link { origin: peer(9) });
        node.handle_message(NOW, peer(2), Message::Prune { origin: peer(9) });
        assert_eq!(eager_ids(&node), ids(&[1]));
        node.handle_message(NOW, peer(2), Message::Link { origin: origin() });
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
        assert!(drain(&mut node).is_empty());
    }

    #[test]
    fn graft_is_answered_with_the_cached_payload_one_hop_further() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), gossip(3, 4));
        drain(&mut node);
        node.handle_message(NOW, peer(2), prune());
        node.handle_message(NOW, peer(2), Message::Graft { id: id(3) });
        assert_eq!(drain(&mut node), vec![send(2, gossip(3, 5))]);
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
        // The origin answers with hops = 1.
        let mine = node.broadcast(NOW, payload(8));
        drain(&mut node);
        node.handle_message(NOW, peer(2), Message::Graft { id: mine });
        let answer = Message::Gossip {
            id: mine,
            hops: 1,
            origin: peer(0),
            template: Some(origin()),
            payload: payload(8),
        };
        assert_eq!(drain(&mut node), vec![send(2, answer)]);
    }

    #[test]
    fn graft_for_an_unknown_id_sends_nothing() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), prune());
        node.handle_message(NOW, peer(1), Message::Graft { id: id(42) });
        assert!(drain(&mut node).is_empty());
        assert_eq!(node.poll_timeout(), None);
        // Nor does it change a tree: we cannot tell which origin it means.
        assert_eq!(eager_ids(&node), ids(&[2]));
    }

    #[test]
    fn ihave_timer_grafts_the_announcers_in_turn() {
        let config = Config::default();
        let mut node = node(&[1, 2, 3]);
        for i in [1, 2, 3] {
            node.handle_message(NOW, peer(i), prune());
        }
        let announce = |hops| Message::IHave {
            entries: vec![(id(5), hops)],
        };
        node.handle_message(NOW, peer(2), announce(3));
        node.handle_message(NOW + ms(10), peer(1), announce(2));
        node.handle_message(NOW + ms(20), peer(2), announce(3));
        assert!(drain(&mut node).is_empty());
        let first = NOW + config.graft_timeout_1;
        assert_eq!(node.poll_timeout(), Some(first));
        node.handle_timeout(first - ms(1));
        assert!(drain(&mut node).is_empty());
        // The first announcer is grafted first, whatever its hops.
        node.handle_timeout(first);
        assert_eq!(
            drain(&mut node),
            vec![send(2, Message::Graft { id: id(5) })]
        );
        let second = first + config.graft_timeout_2;
        assert_eq!(node.poll_timeout(), Some(second));
        node.handle_timeout(second);
        assert_eq!(
            drain(&mut node),
            vec![send(1, Message::Graft { id: id(5) })]
        );
        // No announcer left: the entry goes when its timer fires.
        let third = second + config.graft_timeout_2;
        assert_eq!(node.poll_timeout(), Some(third));
        node.handle_timeout(third);
        assert!(drain(&mut node).is_empty());
        assert!(node.missing.is_empty());
        assert_eq!(node.poll_timeout(), None);
        // The answer makes its sender eager in the message's tree.
        node.handle_message(third, peer(1), gossip(5, 3));
        assert_eq!(drain(&mut node)[0], delivered(5, 3, Some(1)));
        assert_eq!(eager_ids(&node), ids(&[1]));
    }

    #[test]
    fn payload_arrival_cancels_the_graft_timer() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(2), prune());
        let announce = Message::IHave {
            entries: vec![(id(5), 2)],
        };
        node.handle_message(NOW, peer(2), announce);
        node.handle_message(NOW + ms(30), peer(1), gossip(5, 3));
        assert_eq!(drain(&mut node), vec![delivered(5, 3, Some(1))]);
        assert!(node.missing.is_empty() && node.graft_timers.is_empty());
        // Only the expiry tick is left; no GRAFT ever.
        node.handle_timeout(NOW + Duration::from_secs(5));
        assert!(drain(&mut node).is_empty());
        // The announcer has it: it is not announced back.
        assert!(node.ihave_queue.is_empty());
    }

    #[test]
    fn ihave_for_a_received_message_is_ignored() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), gossip(4, 1));
        drain(&mut node);
        let announce = Message::IHave {
            entries: vec![(id(4), 1)],
        };
        node.handle_message(NOW, peer(2), announce);
        assert!(node.missing.is_empty());
        assert!(drain(&mut node).is_empty());
    }

    #[test]
    fn optimization_grafts_a_much_closer_announcer_and_prunes_the_sender() {
        let mut node = node(&[1, 2, 3]);
        for i in [2, 3] {
            node.handle_message(NOW, peer(i), prune());
        }
        let announce = |hops| Message::IHave {
            entries: vec![(id(6), hops)],
        };
        node.handle_message(NOW, peer(3), announce(3));
        node.handle_message(NOW, peer(2), announce(2));
        // The payload comes 5 hops through the eager link: 2 is 3 better.
        node.handle_message(NOW + ms(5), peer(1), gossip(6, 5));
        assert_eq!(
            drain(&mut node),
            vec![
                delivered(6, 5, Some(1)),
                send(2, Message::Link { origin: origin() }),
                send(1, prune()),
            ]
        );
        assert_eq!(eager_ids(&node), ids(&[2]));
        assert_eq!(lazy_ids(&node), ids(&[1, 3]));
        assert!(node.missing.is_empty() && node.graft_timers.is_empty());
        // A GRAFT for the null id is ignored.
        let mut other = node_with(Config::default(), &[5]);
        other.handle_message(NOW, peer(5), prune());
        other.handle_message(NOW, peer(5), Message::Graft { id: NULL_ID });
        assert!(drain(&mut other).is_empty());
        assert!(eager_ids(&other).is_empty());
    }

    #[test]
    fn optimization_needs_the_threshold() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(2), prune());
        let announce = Message::IHave {
            entries: vec![(id(6), 3)],
        };
        node.handle_message(NOW, peer(2), announce);
        // 5 - 3 = 2 < 3: keep the tree as it is.
        node.handle_message(NOW + ms(5), peer(1), gossip(6, 5));
        assert_eq!(drain(&mut node), vec![delivered(6, 5, Some(1))]);
        assert_eq!(eager_ids(&node), ids(&[1]));
        assert_eq!(lazy_ids(&node), ids(&[2]));
    }

    #[test]
    fn ihaves_are_batched_per_peer_in_messages_of_bounded_size() {
        let config = Config::default();
        let mut node = node(&[1, 2, 3]);
        node.handle_message(NOW, peer(2), prune());
        node.handle_message(NOW, peer(3), prune());
        for k in 0..40 {
            node.handle_message(NOW + ms(k as u64), peer(1), gossip(k, 1));
        }
        drain(&mut node);
        // The flush is due ihave_delay after the first announcement.
        let flush_at = NOW + config.ihave_delay;
        assert_eq!(node.poll_timeout(), Some(flush_at));
        node.handle_timeout(flush_at);
        let entries = |range: std::ops::Range<u8>| Message::IHave {
            entries: range.map(|k| (id(k), 2)).collect(),
        };
        assert_eq!(
            drain(&mut node),
            vec![
                send(2, entries(0..32)),
                send(3, entries(0..32)),
                send(2, entries(32..40)),
                send(3, entries(32..40)),
            ]
        );
        assert_eq!(node.ihave_flush_at, None);
    }

    #[test]
    fn ihave_queue_is_bounded_and_drops_the_oldest() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(2), prune());
        let n = IHAVE_QUEUE_CAPACITY + 100;
        for k in 0..n {
            let payload = payload(k);
            let id = message_id(&peer(1), k as u64, &payload);
            let gossip = Message::Gossip {
                id,
                hops: 1,
                origin: origin(),
                template: None,
                payload,
            };
            node.handle_message(NOW, peer(1), gossip);
        }
        drain(&mut node);
        assert_eq!(node.ihave_queue.len(), IHAVE_QUEUE_CAPACITY);
        node.handle_timeout(NOW + Duration::from_secs(1));
        let outputs = drain(&mut node);
        assert_eq!(outputs.len(), IHAVE_QUEUE_CAPACITY / MAX_IHAVE_ENTRIES);
        let first_kept = message_id(&peer(1), 100, &payload(100));
        match &outputs[0] {
            Output::Send {
                message: Message::IHave { entries },
                ..
            } => assert_eq!(entries[0].0, first_kept),
            other => panic!("expected an IHAVE, got {other:?}"),
        }
    }

    #[test]
    fn missing_table_and_announcer_lists_are_bounded() {
        let neighbors: Vec<usize> = (1..=40).collect();
        let mut node = node(&neighbors);
        for k in 0..40u8 {
            let entries = (0..MAX_IHAVE_ENTRIES as u8)
                .map(|j| {
                    (
                        MsgId([
                            k, j, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                            0, 0, 0, 0, 0, 0, 0, 0,
                        ]),
                        1,
                    )
                })
                .collect();
            node.handle_message(NOW, peer(1), Message::IHave { entries });
        }
        assert_eq!(node.missing.len(), MISSING_CAPACITY);
        assert_eq!(node.graft_timers.len(), MISSING_CAPACITY);
        for &i in &neighbors {
            let announce = Message::IHave {
                entries: vec![(id(200), 1)],
            };
            node.handle_message(NOW, peer(i), announce);
        }
        // id(200) came after the table filled up.
        assert!(!node.missing.contains_key(&id(200)));
        let first = *node.missing.keys().next().unwrap();
        for &i in &neighbors {
            let announce = Message::IHave {
                entries: vec![(first, 1)],
            };
            node.handle_message(NOW, peer(i), announce);
        }
        assert_eq!(
            node.missing[&first].announcers.len(),
            ANNOUNCERS_PER_MISSING_MAX
        );
        // Every entry resolves: after enough timeouts the table is empty.
        let mut now = NOW;
        while let Some(at) = node.poll_timeout() {
            now = at;
            node.handle_timeout(now);
            drain(&mut node);
        }
        assert!(node.missing.is_empty() && node.graft_timers.is_empty());
        let config = Config::default();
        let longest =
            config.graft_timeout_1 + config.graft_timeout_2 * ANNOUNCERS_PER_MISSING_MAX as u32;
        assert!(now <= NOW + longest);
    }

    #[test]
    fn seen_set_and_cache_respect_capacity_and_expire_on_a_one_second_grid() {
        let config = Config {
            seen_capacity: 8,
            message_cache_capacity: 4,
            seen_ttl: Duration::from_secs(10),
            message_cache_ttl: Duration::from_secs(3),
            ..Config::default()
        };
        let mut node = node_with(config, &[1]);
        let start = NOW + ms(250);
        for k in 0..12u8 {
            node.handle_message(start, peer(1), gossip(k, 1));
        }
        assert_eq!(drain(&mut node).len(), 12);
        assert_eq!(node.seen.len(), 8);
        assert_eq!(node.cache.len(), 4);
        // The oldest went first: 0..4 forgotten, 8..12 cached.
        assert!(!node.seen.contains(&id(3)) && node.seen.contains(&id(4)));
        assert!(node.cache.get(&id(7)).is_none() && node.cache.get(&id(8)).is_some());
        // A forgotten id is new again (why seen_ttl must be generous).
        node.handle_message(start, peer(1), gossip(0, 1));
        assert_eq!(drain(&mut node), vec![delivered(0, 1, Some(1))]);
        // The cache expires at start + 3 s, on the whole second after.
        let cache_expiry = NOW + Duration::from_secs(4);
        assert_eq!(node.poll_timeout(), Some(cache_expiry));
        node.handle_timeout(cache_expiry);
        assert_eq!(node.cache.len(), 0);
        assert_eq!(node.seen.len(), 8);
        node.handle_message(cache_expiry, peer(1), Message::Graft { id: id(9) });
        assert!(drain(&mut node).is_empty());
        let seen_expiry = NOW + Duration::from_secs(11);
        assert_eq!(node.poll_timeout(), Some(seen_expiry));
        node.handle_timeout(seen_expiry);
        assert_eq!(node.seen.len(), 0);
        // An idle node has no timer.
        assert_eq!(node.poll_timeout(), None);
    }

    #[test]
    fn neighbor_down_removes_the_peer_everywhere() {
        let mut node = node(&[1, 2, 3]);
        node.handle_message(NOW, peer(2), prune());
        node.handle_message(NOW, peer(3), prune());
        let announce = Message::IHave {
            entries: vec![(id(1), 2)],
        };
        node.handle_message(NOW, peer(2), announce.clone());
        node.handle_message(NOW, peer(3), announce);
        node.handle_message(NOW, peer(1), gossip(2, 1));
        drain(&mut node);
        assert_eq!(node.ihave_queue.len(), 2);
        node.handle_neighbor_down(NOW, &peer(2));
        node.handle_neighbor_down(NOW, &peer(3));
        assert_eq!(eager_ids(&node), ids(&[1]));
        assert!(lazy_ids(&node).is_empty());
        assert!(node.missing[&id(1)].announcers.is_empty());
        assert!(node.ihave_queue.is_empty() && node.ihave_flush_at.is_none());
        // The missing entry's timer fires and grafts nobody.
        node.handle_timeout(NOW + Config::default().graft_timeout_1);
        assert!(drain(&mut node).is_empty());
        assert!(node.missing.is_empty());
        // Unknown peers going down are fine; a peer coming back is eager.
        node.handle_neighbor_down(NOW, &peer(9));
        node.handle_neighbor_up(NOW, peer(2));
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
    }

    #[test]
    fn neighbor_up_twice_keeps_one_entry() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), prune());
        node.handle_neighbor_up(NOW, peer(1));
        node.handle_neighbor_up(NOW, peer(1));
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
        assert!(lazy_ids(&node).is_empty());
        // Not our own id.
        node.handle_neighbor_up(NOW, peer(0));
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
    }

    #[test]
    fn hostile_inputs_are_bounded_and_never_panic() {
        let mut node = node(&[1, 2]);
        // An IHAVE far over the wire limit: only the first entries count.
        let entries = (1..=1000u32)
            .map(|k| {
                let mut bytes = [0u8; 32];
                bytes[..4].copy_from_slice(&k.to_be_bytes());
                (MsgId(bytes), u16::MAX)
            })
            .collect();
        node.handle_message(NOW, peer(1), Message::IHave { entries });
        assert_eq!(node.missing.len(), MAX_IHAVE_ENTRIES);
        // hops at the top of its range saturate.
        node.handle_message(NOW, peer(1), gossip(1, u16::MAX));
        assert_eq!(
            drain(&mut node),
            vec![
                delivered(1, u16::MAX, Some(1)),
                send(2, gossip(1, u16::MAX))
            ]
        );
        node.handle_message(NOW, peer(2), Message::Graft { id: id(1) });
        assert_eq!(drain(&mut node), vec![send(2, gossip(1, u16::MAX))]);
        // An oversize payload is dropped.
        let big = Message::Gossip {
            id: id(2),
            hops: 1,
            origin: origin(),
            template: None,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_BYTES + 1]),
        };
        node.handle_message(NOW, peer(1), big);
        assert!(drain(&mut node).is_empty());
        // A stranger's payload is delivered and forwarded, but the stranger
        // joins no set, gets no PRUNE for duplicates, and its IHAVE, GRAFT
        // and PRUNE are ignored.
        let stranger = peer(66);
        node.handle_message(NOW, stranger, gossip(3, 2));
        assert_eq!(
            drain(&mut node),
            vec![
                delivered(3, 2, Some(66)),
                send(1, gossip(3, 3)),
                send(2, gossip(3, 3)),
            ]
        );
        node.handle_message(NOW, stranger, gossip(3, 2));
        node.handle_message(NOW, stranger, Message::Graft { id: id(3) });
        node.handle_message(NOW, stranger, prune());
        let announce = Message::IHave {
            entries: vec![(id(77), 1)],
        };
        node.handle_message(NOW, stranger, announce);
        assert!(drain(&mut node).is_empty());
        assert_eq!(eager_ids(&node), ids(&[1, 2]));
        assert!(!node.missing.contains_key(&id(77)));
        // A peer claiming our own id is a stranger too.
        node.handle_message(NOW, peer(0), Message::Graft { id: id(3) });
        assert!(drain(&mut node).is_empty());
        // Time at the end of its range: deadlines saturate.
        let end = Duration::MAX;
        node.handle_message(end, peer(2), prune());
        let announce = Message::IHave {
            entries: vec![(id(90), 1)],
        };
        node.handle_message(end, peer(2), announce);
        node.handle_message(end, peer(1), gossip(91, 1));
        let _ = node.broadcast(end, payload(1));
        node.handle_timeout(end);
        node.handle_timeout(end);
        drain(&mut node);
        // Everything is due at the end of time: the node is left idle.
        assert_eq!(node.poll_timeout(), None);
    }

    #[test]
    fn output_queue_is_bounded() {
        let mut node = node(&[1, 2]);
        let broadcasts = OUTPUT_QUEUE_CAPACITY / 3 + 10;
        for k in 0..broadcasts {
            let _ = node.broadcast(NOW, payload(k));
        }
        assert_eq!(node.outbox.queue.len(), OUTPUT_QUEUE_CAPACITY);
        assert_eq!(
            node.outputs_dropped(),
            (broadcasts * 3 - OUTPUT_QUEUE_CAPACITY) as u64
        );
    }

    // ---- many nodes ----

    const LATENCY: Duration = ms(10);

    fn plumtrees(n: usize) -> Vec<Plumtree> {
        (0..n)
            .map(|i| Plumtree::new(peer(i), Config::default()))
            .collect()
    }

    /// Undirected eager links, each seen from both ends (panics if one end
    /// is eager and the other not).
    fn eager_links(sim: &Sim<Plumtree>, tree: PeerId) -> Vec<(usize, usize)> {
        let index = |id: &PeerId| (0..sim.nodes.len()).find(|&i| peer(i) == *id).unwrap();
        let mut links = BTreeSet::new();
        for (i, node) in sim.nodes.iter().enumerate() {
            for p in node.eager_peers(&tree) {
                let j = index(p);
                let back = sim.nodes[j].eager_peers(&tree).any(|q| *q == peer(i));
                assert!(back, "link {i}-{j} is eager at {i} only");
                links.insert((i.min(j), i.max(j)));
            }
        }
        links.into_iter().collect()
    }

    #[test]
    fn first_broadcast_on_a_line_has_hops_equal_to_distance() {
        let n = 10;
        let mut sim = Sim::new(plumtrees(n), &line(n), LATENCY);
        let start = sim.now;
        let id = sim.broadcast(3, payload(0));
        sim.run_for(Duration::from_secs(2));
        for (i, d) in sim.deliveries(id).into_iter().enumerate() {
            let distance = i.abs_diff(3);
            assert_eq!(d.hops as usize, distance, "node {i}");
            assert_eq!(d.at, start + LATENCY * distance as u32);
            let parent = match i {
                3 => None,
                _ if i < 3 => Some(peer(i + 1)),
                _ => Some(peer(i - 1)),
            };
            assert_eq!(d.from, parent);
        }
        assert_eq!(sim.sent.gossip, n - 1);
        assert_eq!(sim.sent.prune + sim.sent.ihave + sim.sent.graft, 0);
    }

    #[test]
    fn eager_links_converge_to_a_spanning_tree_and_lazy_links_carry_ihaves() {
        let n = 64;
        let edges = random_graph(n, 5, 7);
        // Announce at once and swap for any shorter path, so that the
        // optimisation runs.
        let config = Config {
            optimization_threshold: 1,
            ihave_delay: Duration::ZERO,
            ..Config::default()
        };
        let nodes = (0..n)
            .map(|i| Plumtree::new(peer(i), config.clone()))
            .collect();
        let mut sim = Sim::new(nodes, &edges, LATENCY);
        // First broadcast: every link is eager, so it floods, along
        // shortest paths.
        let id = sim.broadcast(0, payload(0));
        sim.run_for(Duration::from_secs(2));
        let distance = distances(n, &edges, 0);
        for (i, d) in sim.deliveries(id).into_iter().enumerate() {
            assert_eq!(d.hops as usize, distance[i], "node {i}");
        }
        assert_eq!(sim.sent.gossip, 2 * edges.len() - (n - 1));
        assert_eq!(sim.sent.ihave + sim.sent.graft, 0);
        // The duplicates pruned every link of node 0's tree but a spanning
        // tree.
        let tree = eager_links(&sim, peer(0));
        assert_eq!(tree.len(), n - 1);
        assert!(distances(n, &tree, 0).iter().all(|&d| d != usize::MAX));
        // From now on a payload crosses each tree link once (RMR = 0) and
        // the other links carry one IHAVE each way at most. A new origin's
        // first message leaves on all its links and then travels copies of
        // node 0's tree (the only template): where copies meet, a duplicate
        // prunes a link of the new tree (one or two per extra link). The
        // §3.8 optimisation then swaps links of that origin's tree only
        // (one LINK and one PRUNE each), keeping a tree, and node 0's tree
        // never changes.
        let degree = |i: usize| edges.iter().filter(|&&(a, b)| a == i || b == i).count();
        for (k, origin) in [0, 0, 17, 40, 63, 17].into_iter().enumerate() {
            let first = k != 1 && k != 5 && origin != 0;
            let before = sim.sent;
            let id = sim.broadcast(origin, payload(k + 1));
            sim.run_for(Duration::from_secs(2));
            sim.deliveries(id);
            let gossip = sim.sent.gossip - before.gossip;
            let ihave = sim.sent.ihave - before.ihave;
            let swaps = sim.sent.link - before.link;
            let extra = gossip - (n - 1);
            if first {
                assert!(extra <= 2 * degree(origin), "broadcast {k} from {origin}");
            } else {
                assert_eq!(extra, 0, "broadcast {k} from {origin}");
            }
            assert!(ihave > 0 && ihave <= 2 * (edges.len() - (n - 1)));
            assert_eq!(sim.sent.prune - before.prune, swaps + extra);
            assert_eq!(sim.sent.graft, before.graft);
            if origin == 0 {
                assert_eq!(swaps, 0);
            }
            assert_eq!(eager_links(&sim, peer(0)), tree);
            let own = eager_links(&sim, peer(origin));
            assert_eq!(own.len(), n - 1);
            assert!(distances(n, &own, origin).iter().all(|&d| d != usize::MAX));
        }
        assert!(sim.sent.link > 0, "the test wants the optimisation to run");
        // Node 17's second broadcast went through its optimised tree: no
        // node is further from it than through node 0's.
        let last = sim.delivered[0].last().unwrap().id;
        let through_0 = |i: usize| {
            let d = distances(n, &tree, 17);
            d[i]
        };
        for (i, d) in sim.deliveries(last).into_iter().enumerate() {
            assert!(d.hops as usize <= through_0(i), "node {i}");
        }
    }

    #[test]
    fn a_node_without_the_template_floods_and_only_that_origin_prunes() {
        let n = 32;
        let edges = random_graph(n, 5, 3);
        let mut sim = Sim::new(plumtrees(n), &edges, LATENCY);
        sim.broadcast(0, payload(0));
        sim.run_for(Duration::from_secs(2));
        let tree = eager_links(&sim, peer(0));
        // A leaf of node 0's tree with other links forgets every tree (as a
        // restart would); the others keep node 0's, which node 20's first
        // broadcast names as its template.
        let degree = |i: usize, links: &[(usize, usize)]| {
            links.iter().filter(|&&(a, b)| a == i || b == i).count()
        };
        let leaf = (1..n)
            .find(|&i| i != 20 && degree(i, &tree) == 1 && degree(i, &edges) >= 3)
            .expect("a leaf with other links");
        sim.nodes[leaf].trees.clear();
        let others_0 = |sim: &Sim<Plumtree>| -> Vec<Vec<PeerId>> {
            (0..n)
                .filter(|&i| i != leaf)
                .map(|i| sim.nodes[i].eager_peers(&peer(0)).copied().collect())
                .collect()
        };
        let trees_0 = others_0(&sim);
        let before = sim.sent;
        let id = sim.broadcast(20, payload(1));
        sim.run_for(Duration::from_secs(2));
        sim.deliveries(id);
        // It floods its other links; each copy there is a duplicate
        // somewhere, answered by a PRUNE in node 20's tree.
        let extra = sim.sent.gossip - before.gossip - (n - 1);
        assert!(extra >= degree(leaf, &edges) - 1, "{extra} extra payloads");
        let swaps = sim.sent.link - before.link;
        assert_eq!(sim.sent.prune - before.prune, extra + swaps);
        assert_eq!(eager_links(&sim, peer(20)).len(), n - 1);
        assert_eq!(others_0(&sim), trees_0, "node 0's tree is untouched");
    }

    #[test]
    fn a_template_is_the_closest_of_the_most_recent_settled_trees() {
        let mut node = node(&[1, 2]);
        // Origins 40.. send in turn; the two oldest are 1 hop up their
        // trees, the others further, 43 the closest of the recent ones.
        let count = TEMPLATE_CANDIDATES + 2;
        for k in 0..count {
            let hops = match k {
                0 | 1 => 1,
                3 => 2,
                _ => 5,
            };
            let message = Message::Gossip {
                id: id(k as u8),
                hops,
                origin: peer(40 + k),
                template: None,
                payload: payload(k),
            };
            node.handle_message(NOW + ms(k as u64), peer(1), message);
        }
        drain(&mut node);
        let at = NOW + TEMPLATE_SETTLE + ms(100);
        let mine = node.broadcast(at, payload(99));
        let template = drain(&mut node).into_iter().find_map(|o| match o {
            Output::Send {
                message: Message::Gossip { id, template, .. },
                ..
            } if id == mine => template,
            _ => None,
        });
        // 40 and 41 are too old to be candidates (other nodes may have
        // dropped their trees); 43 is the closest of the rest.
        assert_eq!(template, Some(peer(43)));
    }

    #[test]
    fn trees_are_bounded_and_the_least_recently_used_goes_first() {
        let make = || {
            let config = Config {
                max_trees: 3,
                ..Config::default()
            };
            let mut node = node_with(config, &[1, 2]);
            for (k, o) in [(1u8, 40), (2, 41), (3, 42), (4, 40), (5, 43)] {
                let message = Message::Gossip {
                    id: id(k),
                    hops: 2,
                    origin: peer(o),
                    template: None,
                    payload: payload(k as usize),
                };
                node.handle_message(NOW + ms(u64::from(k)), peer(1), message);
            }
            drain(&mut node);
            node
        };
        let node = make();
        assert_eq!(node.trees(), 3);
        // 41 was used least recently (40 came back after it).
        let kept: Vec<_> = node.trees.keys().copied().collect();
        assert_eq!(kept, vec![peer(40), peer(42), peer(43)]);
        // Our first broadcast names a settled tree as template: the one
        // whose origin is fewest hops up it, then the most recently used.
        let template_of = |mut node: Plumtree, at: Time| {
            let mine = node.broadcast(at, payload(9));
            assert_eq!(node.trees(), 3);
            drain(&mut node).into_iter().find_map(|o| match o {
                Output::Send {
                    message: Message::Gossip { id, template, .. },
                    ..
                } if id == mine => template,
                _ => None,
            })
        };
        let settled = NOW + TEMPLATE_SETTLE + ms(10);
        assert_eq!(template_of(make(), settled), Some(peer(43)));
        let mut near = make();
        let closer = Message::Gossip {
            id: id(6),
            hops: 1,
            origin: peer(42),
            template: None,
            payload: payload(6),
        };
        near.handle_message(NOW + ms(6), peer(1), closer);
        assert_eq!(template_of(near, settled), Some(peer(42)));
        // None settled: the tree left alone longest.
        assert_eq!(template_of(make(), NOW + ms(10)), Some(peer(42)));
    }

    #[test]
    fn a_cut_eager_link_is_repaired_by_graft_after_graft_timeout_1() {
        let n = 64;
        let config = Config::default();
        let edges = random_graph(n, 5, 11);
        let mut sim = Sim::new(plumtrees(n), &edges, LATENCY);
        let id = sim.broadcast(0, payload(0));
        sim.run_for(Duration::from_secs(2));
        let first = sim.deliveries(id);
        // Cut the tree link from the origin with the largest subtree.
        let parent: Vec<Option<usize>> = first
            .iter()
            .map(|d| d.from.map(|f| (0..n).find(|&j| peer(j) == f).unwrap()))
            .collect();
        let root_child = |mut i: usize| {
            while parent[i] != Some(0) {
                i = parent[i]?;
            }
            Some(i)
        };
        let mut subtree_sizes = BTreeMap::new();
        for i in 1..n {
            *subtree_sizes.entry(root_child(i).unwrap()).or_insert(0) += 1;
        }
        let (&child, &size) = subtree_sizes.iter().max_by_key(|&(_, size)| *size).unwrap();
        assert!(size > 5, "the test wants a large subtree, got {size}");
        let remaining: Vec<_> = edges.iter().copied().filter(|&e| e != (0, child)).collect();
        assert!(distances(n, &remaining, 0).iter().all(|&d| d != usize::MAX));
        sim.cut(0, child);

        let before = sim.sent;
        let start = sim.now;
        let id = sim.broadcast(0, payload(1));
        sim.run_for(Duration::from_secs(3));
        let repaired = sim.deliveries(id);
        assert!(sim.sent.graft > before.graft);
        for (i, delivery) in repaired.iter().enumerate().skip(1) {
            let cut_off = root_child(i) == Some(child);
            let late = delivery.at >= start + config.graft_timeout_1;
            assert_eq!(cut_off, late, "node {i} (cut off: {cut_off})");
        }
        // The repaired tree is a spanning tree again: RMR back to 0.
        let tree = eager_links(&sim, peer(0));
        assert_eq!(tree.len(), n - 1);
        assert!(!tree.contains(&(0, child)));
        let before = sim.sent;
        let start = sim.now;
        let id = sim.broadcast(0, payload(2));
        sim.run_for(Duration::from_secs(2));
        for d in sim.deliveries(id) {
            assert!(d.at < start + config.graft_timeout_1);
        }
        assert_eq!(sim.sent.gossip - before.gossip, n - 1);
        assert_eq!(sim.sent.graft, before.graft);
    }

    /// Random per-link latencies and 40 overlapping broadcasts from random
    /// origins (one every 40 ms on average; one takes about 150 ms to reach
    /// everyone), after a quiet first broadcast from node 0 if `warm_up`.
    /// Returns the network after it settled, and the workload's ids.
    fn busy_network(config: Config, seed: u64, warm_up: bool) -> (Sim<Plumtree>, Vec<MsgId>) {
        let n = 48;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let edges = random_graph(n, 5, seed);
        let nodes = (0..n)
            .map(|i| Plumtree::new(peer(i), config.clone()))
            .collect();
        let mut sim = Sim::new(nodes, &edges, LATENCY);
        for &(a, b) in &edges {
            sim.set_latency(a, b, ms(rng.gen_range(5..60)));
        }
        if warm_up {
            sim.broadcast(0, payload(usize::MAX));
            sim.run_for(Duration::from_secs(2));
        }
        let mut ids = Vec::new();
        for k in 0..40 {
            let origin = rng.gen_range(0..n);
            ids.push(sim.broadcast(origin, payload(k)));
            sim.run_for(ms(rng.gen_range(0..80)));
        }
        sim.run_for(Duration::from_secs(5));
        (sim, ids)
    }

    #[test]
    fn overlapping_broadcasts_with_random_latencies_are_delivered_exactly_once() {
        for seed in [3, 4] {
            let (mut sim, ids) = busy_network(Config::default(), seed, false);
            let n = sim.nodes.len();
            for &id in &ids {
                sim.deliveries(id);
            }
            for i in 0..n {
                assert_eq!(sim.delivered[i].len(), ids.len());
                assert_eq!(sim.nodes[i].outputs_dropped(), 0);
            }
            // Once quiet, the tree heals: the second broadcast from one
            // origin costs one payload per node, with no repair.
            sim.broadcast(5, payload(1000));
            sim.run_for(Duration::from_secs(2));
            let before = sim.sent;
            let start = sim.now;
            let id = sim.broadcast(5, payload(1001));
            sim.run_for(Duration::from_secs(2));
            for d in sim.deliveries(id) {
                assert!(d.at < start + Config::default().graft_timeout_1);
            }
            assert_eq!(sim.sent.gossip - before.gossip, n - 1, "seed {seed}");
            assert_eq!(sim.sent.graft, before.graft);
        }
    }

    #[test]
    fn without_optimization_a_built_tree_carries_overlapping_broadcasts_alone() {
        // Once a quiet broadcast has built the tree, it stays: every later
        // payload crosses the n - 1 tree links only and nothing is grafted,
        // whatever the origins, latencies and overlaps.
        let config = Config {
            optimization_threshold: u16::MAX,
            ..Config::default()
        };
        let (sim, ids) = busy_network(config, 3, true);
        let n = sim.nodes.len();
        for &id in &ids {
            sim.deliveries(id);
        }
        let payloads_of = |id: MsgId| {
            let gossip = |t: &&(Time, usize, usize, Message)| matches!(t.3, Message::Gossip { id: g, .. } if g == id);
            sim.trace.iter().filter(gossip).count()
        };
        // An origin's first message also leaves on its other links, and
        // costs at most two more payloads for each.
        let mut origins = BTreeSet::new();
        for &id in &ids {
            let origin = (0..n)
                .find(|&i| {
                    sim.delivered[i]
                        .iter()
                        .any(|d| d.id == id && d.from.is_none())
                })
                .unwrap();
            let first = origins.insert(origin);
            let degree = sim.nodes[origin].slots.iter().flatten().count();
            let extra = payloads_of(id) - (n - 1);
            if first {
                assert!(extra <= 2 * degree, "{extra} extra payloads");
            } else {
                assert_eq!(extra, 0);
            }
        }
        assert!(origins.len() < ids.len(), "the test wants repeated origins");
        assert_eq!(sim.sent.graft, 0);
    }

    #[test]
    fn same_inputs_give_the_same_outputs() {
        let (a, _) = busy_network(Config::default(), 9, false);
        let (b, _) = busy_network(Config::default(), 9, false);
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.delivered, b.delivered);
        let (c, _) = busy_network(Config::default(), 10, false);
        assert_ne!(a.trace, c.trace);
    }
}
