//! HyParView membership (Leitão, Pereira, Rodrigues, "HyParView: a membership
//! protocol for reliable gossip-based broadcast", DSN 2007).
//!
//! # Contract
//!
//! [`HyParView`] is a sans-IO state machine: deterministic, no networking, no
//! clock, no OS entropy. Time is the `now` argument of every input; all
//! randomness comes from the [`ChaCha8Rng`] given to [`HyParView::new`]; the
//! views are plain vectors, so no hash order ever leaks into behaviour. The
//! same inputs and seed give the same outputs.
//!
//! The driver must, after every `handle_*` call or [`HyParView::join`], drain
//! [`HyParView::poll_output`] until it returns `None`, then arm its timer at
//! [`HyParView::poll_timeout`] and call [`HyParView::handle_timeout`] when it
//! fires. It must call [`HyParView::handle_heard`] for *every* valid datagram
//! from a peer (Plumtree traffic included), so busy links need no pings.
//! Every addition to the active view yields exactly one
//! [`Event::NeighborUp`] and every removal exactly one [`Event::NeighborDown`].
//!
//! Everything is bounded: the views by their capacities, outstanding
//! NEIGHBOR requests by the active capacity plus one (a reconnection),
//! lost peers remembered by [`MAX_LOST`] and their probes by
//! [`LOST_PROBES`], NEIGHBOR requests sent per
//! keepalive period by the free active slots plus one, peers taken from one
//! shuffle by [`MAX_SHUFFLE_PEERS`], shuffles passed on and remembered by
//! [`MAX_RELAYED_SHUFFLES`], random walks by the configured lengths,
//! and the output queue by what one input can produce. A hostile peer (unknown
//! sender, messages naming us, duplicates, unsolicited replies, oversized
//! lists) changes nothing it should not and never causes a panic.
//!
//! # What is implemented
//!
//! - §4.2 and Algorithm 1, join: JOIN to a contact, which adds the joiner to
//!   its active view and starts a FORWARDJOIN random walk (length ARWL) through
//!   each other active peer; the walk adds the joiner to a passive view at
//!   hop PRWL and to an active view where it ends (TTL 0, or a node with a
//!   single active peer).
//! - §4.3, active view management: a full active view drops a random member
//!   (DISCONNECT, moved to the passive view); a lost active peer is replaced
//!   by a random passive peer through NEIGHBOR with priority high when the
//!   active view is empty, low otherwise; a refused or unanswered request
//!   moves on to another candidate, and an unanswered one also drops the
//!   candidate from the passive view.
//! - §4.4, passive view management: the periodic SHUFFLE random walk carrying
//!   the origin, `ka` active and `kp` passive peers, answered by a SHUFFLEREPLY
//!   of as many passive peers; both sides integrate what they receive and,
//!   when full, evict first the entries they sent in that exchange.
//!
//! # Grove's departures
//!
//! - Datagrams, not TCP. The paper detects failures by TCP connection loss;
//!   here an active peer silent for `keepalive_interval` is sent PING (any
//!   datagram from it counts as an answer), and one silent for
//!   `failure_timeout` is declared failed: dropped from the active view and
//!   not kept in the passive view. Requests (JOIN, NEIGHBOR) have deadlines
//!   of `request_timeout`.
//! - JOINREPLY: the joiner adds the contact to its active view when the
//!   contact confirms it took the joiner in, where the paper's TCP
//!   connection makes the link on both sides at once. A walk that ends at a
//!   node sends the joiner NEIGHBOR (priority high) so that the joiner adds
//!   it, where the paper relies on the joiner accepting a TCP connection.
//! - Links are made symmetric explicitly: a PING from a peer that does not
//!   hold us active is answered with PONG and DISCONNECT (so one-sided links
//!   left by lost datagrams are undone within a keepalive period), and an
//!   accepting NEIGHBORREPLY we no longer want is answered with DISCONNECT.
//! - Repair also runs periodically (each keepalive tick) while the active
//!   view is below capacity, not only on a failure; a node whose views are
//!   both empty re-sends JOIN to its contact, at most once per
//!   `shuffle_interval`.
//! - A JOIN from a node that is already active is answered again (it is a
//!   retransmission) without new random walks.
//! - A node with a contact but no active peer (its own JOIN unanswered, or
//!   everything lost) does not take a joiner in: it could start no walk,
//!   and the joiner would hang by one link that a random eviction later
//!   cuts, leaving an island that nothing reconnects. It passes the JOIN
//!   (and any walk that reaches it) on to its own contact as a FORWARDJOIN,
//!   so the joiner's walk starts inside the overlay.
//! - SHUFFLEREPLY retraces the walk. The paper answers over a new TCP
//!   connection to the origin; here that is a new session: a handshake (a
//!   few Diffie-Hellman operations on each side) and a session kept until
//!   it idles out, for every shuffle, which was half the handshakes of an
//!   idle overlay. The node that ends the walk answers the hop the SHUFFLE
//!   came from, and each node that passed it on passes the reply back to
//!   its own previous hop, over links that already have sessions. A relay
//!   remembers each SHUFFLE it passed on for one `shuffle_interval`, at
//!   most [`MAX_RELAYED_SHUFFLES`] of them, and passes back one reply, and
//!   only from the hop it forwarded to. The cost: the reply takes the
//!   walk's hops instead of one, and a link that fails meanwhile loses it
//!   (a shuffle is periodic; the next one makes up for it).
//! - Healed partitions are re-linked. A partition makes each side drop the
//!   other and refill its active view from its own side; once both sides
//!   are full, nothing in the paper's protocol joins them again (full nodes
//!   refuse low-priority NEIGHBOR requests, shuffles stay within a side,
//!   and each side drops the other's entries from its passive view as
//!   their NEIGHBOR requests go unanswered). An active peer lost to a
//!   failure (silence, not DISCONNECT) is remembered, at most
//!   [`MAX_LOST`], and probed with PING 1, 2, then every 3 shuffle
//!   intervals (each gap jittered by ±50%), [`LOST_PROBES`] times (about
//!   5.5 minutes at the default 10 s). A probe changes nothing at the
//!   receiver. When one is answered, the peer is asked back with a
//!   NEIGHBOR of priority high, which a full view accepts by dropping a
//!   random member, and the asker makes room the same way on the
//!   acceptance: each answered probe replaces one link on each side, the
//!   two dropped members repair as after any eviction, and one link across
//!   is enough for the overlay to be one component again (shuffles then
//!   mix the passive views). Partisan's HyParView promotes random passive
//!   peers periodically for the same reason, but only into free slots; a
//!   crashed peer costs only its unanswered probes. In a healthy overlay
//!   the mechanism acts only on peers wrongly found dead: one that still
//!   holds us pings us before our first probe and is forgotten (it gets
//!   DISCONNECT, as in the paper's repair); one that dropped us too is
//!   asked back (a replacement on each side). Measured in `sim/tests/end_to_end.rs` and the
//!   README. A partition longer than the probes (minutes) is not re-linked
//!   this way.
//! - Optionally ([`Config::evict_newest`]), a contact drops its newest
//!   active peer rather than a random one, so that a flash crowd through
//!   one contact still yields a well-mixed overlay.

use std::collections::VecDeque;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::KeyError;
use crate::{Peer, PeerId, Time};

pub(crate) mod message;
pub use message::{Message, Priority, MAX_SHUFFLE_PEERS};

/// HyParView settings. Defaults from the paper unless said otherwise.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Active view capacity (paper §5: log10(n)+1 = 5 for n = 10,000);
    /// 1 to [`MAX_ACTIVE_VIEW`].
    pub active_view_capacity: usize,
    /// Passive view capacity (paper §5: k·(log10(n)+1) = 30); 1 to
    /// [`MAX_PASSIVE_VIEW`].
    pub passive_view_capacity: usize,
    /// Active random walk length (ARWL, paper §5: 6); at most
    /// [`MAX_WALK_LENGTH`].
    pub active_random_walk_length: u8,
    /// Passive random walk length (PRWL, paper §5: 3); at most ARWL.
    pub passive_random_walk_length: u8,
    /// Active-view peers sent in a shuffle (ka, paper §5: 3).
    pub shuffle_active_count: usize,
    /// Passive-view peers sent in a shuffle (kp, paper §5: 4). With `ka`
    /// and the origin, at most [`MAX_SHUFFLE_PEERS`].
    pub shuffle_passive_count: usize,
    /// TTL of the shuffle random walk (paper: ARWL; 6); at most
    /// [`MAX_WALK_LENGTH`].
    pub shuffle_random_walk_length: u8,
    /// Period of the shuffle (the paper's cycle; Grove's choice: 10 s).
    /// Like every duration here: 1 ms to 720 h
    /// ([`crate::config::MIN_INTERVAL`], [`crate::config::MAX_DURATION`]).
    #[serde(with = "crate::duration")]
    pub shuffle_interval: Duration,
    /// How often an active peer that has been silent is pinged (Grove: 1 s;
    /// over datagrams there is no TCP reset to reveal a dead peer).
    #[serde(with = "crate::duration")]
    pub keepalive_interval: Duration,
    /// Silence after which an active peer is declared failed (Grove: 3 s);
    /// at least `keepalive_interval`.
    #[serde(with = "crate::duration")]
    pub failure_timeout: Duration,
    /// How long a NEIGHBOR or JOIN request waits for its answer before the
    /// next passive candidate is tried (Grove: 1 s).
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
    /// Which member a full active view drops to make room for a joiner at
    /// the contact or for a high-priority NEIGHBOR: `false` (the paper) a
    /// random one; `true` the most recently added one. The end of a
    /// FORWARDJOIN walk always drops a random one.
    ///
    /// Grove's option for flash crowds through one contact. With random
    /// eviction a contact that takes a joiner every few milliseconds turns
    /// its whole active view over faster than a FORWARDJOIN walk completes,
    /// so every walk starts at joiners whose own walks are still in flight
    /// and whose links go only to the contact and to other fresh joiners:
    /// each newcomer is linked to nodes that joined just before it, and the
    /// overlay grows as a band whose paths lengthen linearly with its size
    /// (10,000 nodes 2 ms apart at 10 ms a hop: average path 24.7, clustering
    /// 0.033). Dropping the newest member keeps the contact's settled
    /// neighbours (its newest, a joiner whose own walks are in flight, loses
    /// only that link), so walks start in the settled overlay and end at
    /// random nodes (same run: average path 6.4, clustering 0.0004). Walk ends
    /// keep random eviction: dropping their newest member, itself often a
    /// joiner, can leave two joiners holding only each other.
    pub evict_newest: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            active_view_capacity: 5,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_random_walk_length: 6,
            shuffle_interval: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(1),
            failure_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(1),
            evict_newest: false,
        }
    }
}

/// Largest active view a configuration may ask for (the paper's
/// log10(n)+1 is 7 for a million nodes; every member costs a keep-alive
/// each `keepalive_interval`).
pub const MAX_ACTIVE_VIEW: usize = 64;
/// Largest passive view a configuration may ask for (the paper's 30 for
/// 10,000 nodes).
pub const MAX_PASSIVE_VIEW: usize = 1024;
/// Longest random walk (JOIN forwarding and shuffles) a configuration may
/// ask for (the paper uses 6).
pub const MAX_WALK_LENGTH: u8 = 32;

/// What the membership layer tells the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// `peer` entered the active view.
    NeighborUp(Peer),
    /// `peer` left the active view (failed, disconnected or evicted).
    NeighborDown(PeerId),
}

/// An output of the core, drained with [`HyParView::poll_output`].
pub type Output = super::Output<Message, Event>;

/// JOIN requests sent per round before the round is given up.
const JOIN_ATTEMPTS_MAX: u8 = 3;

/// SHUFFLEs passed on that a node remembers, to pass their replies back.
pub const MAX_RELAYED_SHUFFLES: usize = 16;

/// Active peers lost to a failure that are remembered and probed.
pub const MAX_LOST: usize = 8;
/// Probes of a lost peer before it is forgotten: 1, 2, then
/// [`LOST_GAP_MAX`] shuffle intervals apart (each drawn from half to one
/// and a half times that), so about 5.5 minutes at the default 10 s.
pub const LOST_PROBES: u8 = 12;
/// Longest gap between two probes of a lost peer, in shuffle intervals
/// (before jitter): a partition that heals while its peers are still
/// remembered is re-linked within about this long.
pub const LOST_GAP_MAX: u32 = 3;

/// An active peer lost to a failure (no DISCONNECT): probed with PING at
/// growing, then steady, jittered intervals until it answers (then it is
/// asked back at high priority) or [`LOST_PROBES`] go unanswered.
#[derive(Clone, Copy, Debug)]
struct Lost {
    peer: Peer,
    next_probe: Time,
    probes: u8,
}

/// The HyParView state machine of one node.
#[derive(Debug)]
pub struct HyParView {
    me: Peer,
    config: Config,
    rng: ChaCha8Rng,
    /// The active view; never contains `me`, disjoint from `passive`.
    active: Vec<Peer>,
    /// `last_heard[i]`: when `active[i]` was last heard from.
    last_heard: Vec<Time>,
    /// The passive view; never contains `me`, disjoint from `active`.
    passive: Vec<Peer>,
    /// Outstanding NEIGHBOR requests, at most one per candidate and at most
    /// `active_view_capacity` in all, plus at most one reconnection (a lost
    /// peer asked back).
    pending: Vec<PendingNeighbor>,
    /// NEIGHBOR requests that may still be sent before the next keepalive
    /// tick: one per free active slot plus one. In a saturated overlay full
    /// nodes refuse low-priority requests (§4.3), and this bounds what a
    /// node left below capacity spends asking.
    repair_budget: usize,
    /// Candidates that refused a low-priority NEIGHBOR since the last
    /// keepalive tick; not asked again at low priority until then. No longer
    /// than the budget (each refusal spent one request).
    refused: Vec<PeerId>,
    /// The contact given to [`HyParView::join`], and the current round.
    join: Option<JoinState>,
    /// Peers sent in our last SHUFFLE: evicted first when its reply arrives.
    shuffle_sent: Vec<Peer>,
    /// SHUFFLEs passed on and awaiting their replies, oldest first, at most
    /// [`MAX_RELAYED_SHUFFLES`].
    relayed: Vec<Relayed>,
    /// Active peers lost to failures, oldest first, at most [`MAX_LOST`],
    /// probed until they answer (then asked back at high priority: see
    /// [`HyParView::reconnect`]) or [`LOST_PROBES`] go unanswered. This is
    /// what re-links the two sides of a healed partition (module doc). A
    /// crashed peer never answers and costs its unanswered probes.
    lost: Vec<Lost>,
    /// Periodic ticks; `None` until the first input gives a time.
    next_keepalive: Option<Time>,
    next_shuffle: Option<Time>,
    outputs: VecDeque<Output>,
}

/// A SHUFFLE this node passed on: its SHUFFLEREPLY, from `to`, goes back
/// to `from`.
#[derive(Clone, Copy, Debug)]
struct Relayed {
    origin: PeerId,
    from: PeerId,
    to: PeerId,
    until: Time,
}

/// A NEIGHBOR request waiting for its NEIGHBORREPLY.
#[derive(Clone, Copy, Debug)]
struct PendingNeighbor {
    peer: Peer,
    priority: Priority,
    deadline: Time,
    /// A lost peer answered a probe and is asked back at high priority
    /// (see [`HyParView::reconnect`]): the probes it had had, so that it
    /// is remembered again if the request fails. Accepted, it takes a
    /// slot even in a full view (a random member is dropped).
    reconnect: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
struct JoinState {
    contact: Peer,
    /// JOIN requests sent in the current round.
    attempts: u8,
    /// When the last JOIN of the current round times out; `None` when no
    /// round is running.
    deadline: Option<Time>,
    /// Earliest start of another round (rate limit of re-joins).
    next_round: Time,
}

impl Config {
    /// Check the bounds on each field's doc line and the invariants the
    /// core relies on; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        use crate::config::{interval, range};
        range(self.active_view_capacity, 1, MAX_ACTIVE_VIEW)
            .map_err(KeyError::at("active_view_capacity"))?;
        range(self.passive_view_capacity, 1, MAX_PASSIVE_VIEW)
            .map_err(KeyError::at("passive_view_capacity"))?;
        range(self.active_random_walk_length, 0, MAX_WALK_LENGTH)
            .map_err(KeyError::at("active_random_walk_length"))?;
        if self.passive_random_walk_length > self.active_random_walk_length {
            return Err(KeyError::new(
                "passive_random_walk_length",
                "must not exceed active_random_walk_length",
            ));
        }
        range(self.shuffle_random_walk_length, 0, MAX_WALK_LENGTH)
            .map_err(KeyError::at("shuffle_random_walk_length"))?;
        let shuffled = self
            .shuffle_active_count
            .saturating_add(self.shuffle_passive_count)
            .saturating_add(1);
        if shuffled > MAX_SHUFFLE_PEERS {
            return Err(KeyError::new(
                "shuffle_passive_count",
                format!("1 + shuffle_active_count + shuffle_passive_count must not exceed {MAX_SHUFFLE_PEERS}"),
            ));
        }
        for (key, d) in [
            ("shuffle_interval", self.shuffle_interval),
            ("keepalive_interval", self.keepalive_interval),
            ("failure_timeout", self.failure_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            interval(d).map_err(KeyError::at(key))?;
        }
        if self.failure_timeout < self.keepalive_interval {
            return Err(KeyError::new(
                "failure_timeout",
                "must be at least keepalive_interval",
            ));
        }
        Ok(())
    }

    fn assert_valid(&self) {
        if let Err(e) = self.validate() {
            panic!("invalid HyParView config: {e}");
        }
    }
}

impl HyParView {
    /// A node that knows nobody yet. Its timers start with its first input.
    ///
    /// # Panics
    ///
    /// If `config` does not [`Config::validate`]: a capacity out of its
    /// bounds, an interval of zero or over 720 h,
    /// `passive_random_walk_length > active_random_walk_length`,
    /// `failure_timeout < keepalive_interval`, or a shuffle larger than
    /// [`MAX_SHUFFLE_PEERS`].
    pub fn new(me: Peer, config: Config, rng: ChaCha8Rng) -> Self {
        config.assert_valid();
        HyParView {
            me,
            repair_budget: config.active_view_capacity + 1,
            active: Vec::with_capacity(config.active_view_capacity),
            last_heard: Vec::with_capacity(config.active_view_capacity),
            passive: Vec::with_capacity(config.passive_view_capacity),
            // Used while repairing the active view, which most nodes of a
            // settled overlay never do: allocated on first use.
            pending: Vec::new(),
            refused: Vec::new(),
            config,
            rng,
            join: None,
            shuffle_sent: Vec::new(),
            relayed: Vec::new(),
            lost: Vec::new(),
            next_keepalive: None,
            next_shuffle: None,
            outputs: VecDeque::new(),
        }
    }

    // ---- getters ----

    pub fn me(&self) -> &Peer {
        &self.me
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The active view (the overlay links), in insertion order.
    pub fn active_view(&self) -> &[Peer] {
        &self.active
    }
    /// The passive view (the backup peers), in no particular order.
    pub fn passive_view(&self) -> &[Peer] {
        &self.passive
    }
    /// The record of `peer` if a view (or the last shuffle sent) holds it.
    pub fn record_of(&self, peer: &PeerId) -> Option<&Peer> {
        self.active
            .iter()
            .chain(&self.passive)
            .chain(&self.shuffle_sent)
            .chain(self.lost.iter().map(|l| &l.peer))
            .chain(self.pending.iter().map(|p| &p.peer))
            .chain(self.join.iter().map(|j| &j.contact))
            .find(|p| p.id == *peer)
    }

    pub fn is_active(&self, peer: &PeerId) -> bool {
        self.active_index(peer).is_some()
    }

    /// Change the record this node gives of itself (as SHUFFLE origin): its
    /// external address and relay, once NAT traversal has found them. The
    /// id never changes.
    pub fn set_me(&mut self, me: Peer) {
        debug_assert_eq!(me.id, self.me.id, "a node's id never changes");
        self.me.addr = me.addr;
        self.me.relay = me.relay;
    }

    // ---- inputs ----

    /// Join the overlay through `contact` (its record: the node resolves a
    /// contact given by address to its id first).
    ///
    /// Sends JOIN, re-sent every `request_timeout` up to 3 times until a
    /// JOINREPLY arrives. The contact is remembered: a node that later loses
    /// both views joins through it again (at most once per
    /// `shuffle_interval`).
    pub fn join(&mut self, now: Time, contact: Peer) {
        self.start(now);
        self.join = Some(JoinState {
            contact,
            attempts: 0,
            deadline: None,
            next_round: now,
        });
        self.start_join_round(now);
    }

    /// Peers worth trying as neighbours (the node's peer cache, when the
    /// active view has been empty for a while): they join the passive view,
    /// and the repair asks them at once, at high priority while the active
    /// view is empty, exactly as it asks passive peers.
    pub fn suggest(&mut self, now: Time, peers: &[Peer]) {
        self.start(now);
        for peer in peers {
            self.add_passive(*peer);
        }
        self.repair_budget = self.repair_budget.max(1);
        self.repair(now);
    }

    /// Leave the overlay for good (a graceful shutdown): every active peer
    /// gets DISCONNECT with `alive = false`, which drops us from both of its
    /// views and makes it repair at once instead of after
    /// `failure_timeout` of silence (§4.2 treats a leaving node as failed;
    /// telling the neighbours saves them the detection). Both views, pending
    /// requests and timers are cleared; a later [`HyParView::join`] starts
    /// afresh.
    pub fn leave(&mut self) {
        for i in (0..self.active.len()).rev() {
            let peer = self.remove_active_at(i);
            self.send(peer.id, Message::Disconnect { alive: false });
        }
        self.passive.clear();
        self.pending.clear();
        self.refused.clear();
        self.shuffle_sent.clear();
        self.relayed.clear();
        self.lost.clear();
        self.join = None;
        self.next_keepalive = None;
        self.next_shuffle = None;
    }

    /// A message from `from`: the sender's record as the transport gives it
    /// (its id, and the address it was seen at, kept as data in the views).
    pub fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        self.start(now);
        if from.id == self.me.id {
            return;
        }
        self.handle_heard(now, &from.id);
        if let Some(i) = self.lost.iter().position(|l| l.peer.id == from.id) {
            let probed = self.lost[i].probes > 0;
            match message {
                // The answer to our probe: reachable again (a healed
                // partition, most often), asked back at high priority.
                Message::Pong { .. } if probed => {
                    self.reconnect(now, i, from);
                    return;
                }
                // We are probing each other: we answer, and the entry
                // stays in case our PONG is lost or its own entry went
                // the same way (its PONG handler asks us back).
                Message::Ping { .. } if probed => {}
                // Anything else, and a PING or PONG before our first
                // probe (it still holds us: a keep-alive, answered with
                // DISCONNECT; we were wrong to find it dead, and both
                // sides repair as after a DISCONNECT): no longer lost.
                _ => {
                    self.lost.remove(i);
                    crate::compact::release_if_empty(&mut self.lost);
                }
            }
        }
        match message {
            Message::Join => self.on_join(now, from),
            Message::JoinReply => self.on_join_reply(now, from),
            Message::ForwardJoin { joiner, ttl } => self.on_forward_join(now, from, joiner, ttl),
            Message::Neighbor { priority } => self.on_neighbor(now, from, priority),
            Message::NeighborReply { accepted } => self.on_neighbor_reply(now, from, accepted),
            Message::Disconnect { alive } => self.on_disconnect(now, from, alive),
            Message::Shuffle { origin, ttl, peers } => {
                self.on_shuffle(now, from, origin, ttl, peers);
            }
            Message::ShuffleReply { origin, peers } => {
                self.on_shuffle_reply(now, from, origin, peers);
            }
            Message::Ping { nonce } => self.on_ping(from, nonce),
            Message::Pong { .. } => {}
        }
    }

    /// Any valid datagram from `from` arrived (it is alive).
    pub fn handle_heard(&mut self, now: Time, from: &PeerId) {
        self.start(now);
        if let Some(i) = self.active_index(from) {
            self.last_heard[i] = self.last_heard[i].max(now);
        }
    }

    /// The transport found `peer` dead (no answer within its liveness
    /// timeout): the paper's TCP connection loss. An active peer is dropped
    /// (not kept as a passive one) and replaced at once; a NEIGHBOR
    /// candidate counts as unanswered; a passive entry is forgotten.
    pub fn handle_peer_dead(&mut self, now: Time, peer: &PeerId) {
        self.start(now);
        self.remove_passive(peer);
        let mut lost = false;
        if let Some(i) = self.active_index(peer) {
            let dead = self.remove_active_at(i);
            self.remember_lost(now, dead, 0);
            lost = true;
        }
        if let Some(i) = self.pending.iter().position(|p| p.peer.id == *peer) {
            let request = self.pending.swap_remove(i);
            if let Some(probes) = request.reconnect {
                self.remember_lost(now, request.peer, probes);
            }
            lost = true;
        }
        if lost {
            self.repair_budget = self.repair_budget.max(1);
            self.repair(now);
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.start(now);
        self.expire_neighbor_requests(now);
        self.expire_join_request(now);
        if self.next_keepalive.is_some_and(|t| t <= now) {
            self.keepalive_tick(now);
            self.next_keepalive = self
                .next_keepalive
                .map(|t| next_period(t, self.config.keepalive_interval, now));
        }
        self.probe_lost(now);
        if self.next_shuffle.is_some_and(|t| t <= now) {
            self.shuffle();
            self.next_shuffle = self
                .next_shuffle
                .map(|t| next_period(t, self.config.shuffle_interval, now));
        }
        self.repair(now);
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        crate::compact::pop_front_releasing(&mut self.outputs)
    }

    /// The earliest instant at which [`HyParView::handle_timeout`] has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let join = self.join.and_then(|j| j.deadline);
        let requests = self.pending.iter().map(|p| p.deadline).min();
        let probe = self.lost.iter().map(|l| l.next_probe).min();
        [
            self.next_keepalive,
            self.next_shuffle,
            join,
            requests,
            probe,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- message handlers ----

    /// JOIN (§4.2): take the joiner in and announce it with random walks.
    ///
    /// A node that is not in the overlay itself (it has a contact but no
    /// active peer: its own JOIN is unanswered, or it lost everything) does
    /// not take the joiner in. That would start no walk, so the joiner
    /// would hang by its single link to us; once our own walks' ends evict
    /// that link at random, the two of us (and whoever joins through us)
    /// form an island that nothing reconnects, as full nodes refuse
    /// low-priority NEIGHBOR requests. Instead the JOIN goes on to our
    /// contact as the first step of the joiner's random walk.
    fn on_join(&mut self, now: Time, joiner: Peer) {
        if self.is_active(&joiner.id) {
            // A retransmission: our first JOINREPLY was lost.
            self.send(joiner.id, Message::JoinReply);
            return;
        }
        if let Some(contact) = self.outside_contact() {
            // Not in the overlay ourselves: taking the joiner here could
            // leave the two of us alone after a random eviction (a closed
            // island). Its walk starts at our contact instead; the walk's end
            // asks the joiner to be its neighbour.
            if contact.id != joiner.id {
                let ttl = self.config.active_random_walk_length;
                self.send(contact.id, Message::ForwardJoin { joiner, ttl });
            }
            return;
        }
        self.add_active(now, joiner);
        self.send(joiner.id, Message::JoinReply);
        let ttl = self.config.active_random_walk_length;
        for i in 0..self.active.len() {
            let peer = self.active[i];
            if peer.id != joiner.id {
                self.send(peer.id, Message::ForwardJoin { joiner, ttl });
            }
        }
    }

    /// JOINREPLY: the contact took us in. Only the reply to a running round
    /// from the contact counts.
    fn on_join_reply(&mut self, now: Time, from: Peer) {
        let Some(join) = self.join.as_mut() else {
            return;
        };
        if join.deadline.is_none() || join.contact.id != from.id {
            return;
        }
        join.deadline = None;
        if !self.is_active(&from.id) {
            self.add_active(now, from);
        }
    }

    /// FORWARDJOIN (Algorithm 1).
    fn on_forward_join(&mut self, now: Time, from: Peer, joiner: Peer, ttl: u8) {
        if joiner.id == self.me.id {
            return;
        }
        let ttl = ttl.min(self.config.active_random_walk_length);
        if let Some(contact) = self.outside_contact() {
            // Not in the overlay: pass the walk on towards it.
            if ttl > 0 && contact.id != joiner.id && contact.id != from.id {
                self.send(
                    contact.id,
                    Message::ForwardJoin {
                        joiner,
                        ttl: ttl - 1,
                    },
                );
            }
            return;
        }
        if ttl == 0 || self.active.len() <= 1 {
            self.accept_joiner(now, joiner);
            return;
        }
        if ttl == self.config.passive_random_walk_length {
            self.add_passive(joiner);
        }
        match self.random_active_except(from.id, joiner.id) {
            Some(next) => self.send(
                next.id,
                Message::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => self.accept_joiner(now, joiner),
        }
    }

    /// Our contact, while we are outside the overlay: we joined through it
    /// and have no active peer (our JOIN is unanswered, or we lost every
    /// neighbour). The first node of an overlay has no contact.
    fn outside_contact(&self) -> Option<Peer> {
        match &self.join {
            Some(join) if self.active.is_empty() => Some(join.contact),
            _ => None,
        }
    }

    /// The end of a FORWARDJOIN walk: the joiner becomes an active peer, and
    /// is asked (priority high, so it cannot refuse) to take us too.
    fn accept_joiner(&mut self, now: Time, joiner: Peer) {
        if self.is_active(&joiner.id) {
            return;
        }
        // Random eviction here, whatever `evict_newest` says (see there).
        self.add_active_evicting(now, joiner, false);
        self.send(
            joiner.id,
            Message::Neighbor {
                priority: Priority::High,
            },
        );
    }

    /// NEIGHBOR (§4.3): high priority is always accepted, low only into a
    /// free slot.
    fn on_neighbor(&mut self, now: Time, from: Peer, priority: Priority) {
        let already = self.is_active(&from.id);
        let accepted = already
            || priority == Priority::High
            || self.active.len() < self.config.active_view_capacity;
        if accepted && !already {
            self.add_active(now, from);
        }
        self.send(from.id, Message::NeighborReply { accepted });
    }

    fn on_neighbor_reply(&mut self, now: Time, from: Peer, accepted: bool) {
        if let Some(i) = self.pending.iter().position(|p| p.peer.id == from.id) {
            let request = self.pending.swap_remove(i);
            if accepted {
                if self.is_active(&from.id) {
                    // It asked us meanwhile and we accepted: already linked.
                } else if self.active.len() < self.config.active_view_capacity
                    || request.reconnect.is_some()
                {
                    // A reconnection replaces a random member if need be.
                    self.add_active(now, from);
                } else {
                    // Filled meanwhile: undo the link it just made.
                    self.send(from.id, Message::Disconnect { alive: true });
                }
            } else {
                // A refusal keeps the candidate in the passive view (§4.3);
                // another one is tried.
                self.refused.push(from.id);
            }
            self.repair(now);
            return;
        }
        match (accepted, self.active_index(&from.id)) {
            // A duplicate, or the answer to the NEIGHBOR of a walk's end.
            (true, Some(_)) => {}
            // Unsolicited or too late (the request timed out): undo its link.
            (true, None) => self.send(from.id, Message::Disconnect { alive: true }),
            // It does not hold us active: drop the one-sided link.
            (false, Some(i)) => {
                let peer = self.remove_active_at(i);
                self.add_passive(peer);
                self.repair(now);
            }
            (false, None) => {}
        }
    }

    /// DISCONNECT (§4.3): the sender dropped us; replace it.
    fn on_disconnect(&mut self, now: Time, from: Peer, alive: bool) {
        if alive {
            if let Some(i) = self.active_index(&from.id) {
                let peer = self.remove_active_at(i);
                self.add_passive(peer);
                self.repair(now);
            }
        } else {
            if let Some(i) = self.active_index(&from.id) {
                self.remove_active_at(i);
                self.repair(now);
            }
            self.remove_passive(&from.id);
        }
    }

    /// SHUFFLE (§4.4): forward the walk (remembering the hop it came
    /// from), or answer it to that hop and integrate.
    fn on_shuffle(&mut self, now: Time, from: Peer, origin: Peer, ttl: u8, mut peers: Vec<Peer>) {
        if origin.id == self.me.id {
            return;
        }
        peers.truncate(MAX_SHUFFLE_PEERS);
        let ttl = ttl.min(self.config.shuffle_random_walk_length);
        if ttl > 0 && self.active.len() > 1 {
            if let Some(next) = self.random_active_except(from.id, origin.id) {
                self.remember_relayed(now, origin.id, from.id, next.id);
                let message = Message::Shuffle {
                    origin,
                    ttl: ttl - 1,
                    peers,
                };
                self.send(next.id, message);
                return;
            }
        }
        let reply: Vec<Peer> = self
            .passive
            .choose_multiple(&mut self.rng, peers.len())
            .copied()
            .collect();
        self.integrate(&peers, &reply);
        let message = Message::ShuffleReply {
            origin: origin.id,
            peers: reply,
        };
        self.send(from.id, message);
    }

    /// SHUFFLEREPLY: integrate our own shuffle's answer, or pass another's
    /// back one hop (once, and only from the hop its SHUFFLE went to).
    fn on_shuffle_reply(&mut self, now: Time, from: Peer, origin: PeerId, mut peers: Vec<Peer>) {
        peers.truncate(MAX_SHUFFLE_PEERS);
        if origin == self.me.id {
            let sent = std::mem::take(&mut self.shuffle_sent);
            self.integrate(&peers, &sent);
            return;
        }
        let Some(i) = self
            .relayed
            .iter()
            .rposition(|r| r.origin == origin && r.to == from.id && r.until > now)
        else {
            return;
        };
        let hop = self.relayed.remove(i);
        crate::compact::release_if_empty(&mut self.relayed);
        self.send(hop.from, Message::ShuffleReply { origin, peers });
    }

    /// Remember a SHUFFLE passed on, dropping the expired and, when full,
    /// the oldest.
    fn remember_relayed(&mut self, now: Time, origin: PeerId, from: PeerId, to: PeerId) {
        self.relayed.retain(|r| r.until > now);
        if self.relayed.len() >= MAX_RELAYED_SHUFFLES {
            self.relayed.remove(0);
        }
        self.relayed.push(Relayed {
            origin,
            from,
            to,
            until: now + self.config.shuffle_interval,
        });
    }

    /// PING: always answered. From a peer that we do not hold active (and
    /// are not asking to), it also gets a DISCONNECT: its link is one-sided.
    fn on_ping(&mut self, from: Peer, nonce: u32) {
        self.send(from.id, Message::Pong { nonce });
        if !self.is_active(&from.id) && !self.pending.iter().any(|p| p.peer.id == from.id) {
            self.send(from.id, Message::Disconnect { alive: true });
        }
    }

    // ---- timers ----

    /// Arms the periodic ticks on the first input, each at a random phase
    /// so that many nodes started together do not tick together.
    fn start(&mut self, now: Time) {
        if self.next_keepalive.is_none() {
            let keepalive = random_phase(&mut self.rng, self.config.keepalive_interval);
            let shuffle = random_phase(&mut self.rng, self.config.shuffle_interval);
            self.next_keepalive = Some(now + keepalive);
            self.next_shuffle = Some(now + shuffle);
        }
    }

    /// An unanswered NEIGHBOR counts as a failure of the candidate (§4.3).
    fn expire_neighbor_requests(&mut self, now: Time) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                let request = self.pending.swap_remove(i);
                self.remove_passive(&request.peer.id);
                if let Some(probes) = request.reconnect {
                    // Unanswered again: back to being probed.
                    self.remember_lost(now, request.peer, probes);
                }
            } else {
                i += 1;
            }
        }
    }

    fn expire_join_request(&mut self, now: Time) {
        let Some(join) = self.join.as_mut() else {
            return;
        };
        match join.deadline {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        if join.attempts >= JOIN_ATTEMPTS_MAX {
            join.deadline = None;
            return;
        }
        join.attempts += 1;
        join.deadline = Some(now + self.config.request_timeout);
        let contact = join.contact;
        self.send(contact.id, Message::Join);
    }

    fn start_join_round(&mut self, now: Time) {
        let Some(join) = self.join.as_mut() else {
            return;
        };
        join.attempts = 1;
        join.deadline = Some(now + self.config.request_timeout);
        join.next_round = now + self.config.shuffle_interval;
        let contact = join.contact;
        self.send(contact.id, Message::Join);
    }

    /// Failure detection: ping the silent, drop the failed; re-join when
    /// nothing is left.
    fn keepalive_tick(&mut self, now: Time) {
        let mut i = 0;
        while i < self.active.len() {
            let silence = now.saturating_sub(self.last_heard[i]);
            if silence >= self.config.failure_timeout {
                // Failed: not kept as a passive peer, but probed later.
                let dead = self.remove_active_at(i);
                self.remember_lost(now, dead, 0);
                continue;
            }
            if silence >= self.config.keepalive_interval {
                let nonce = self.rng.gen();
                let id = self.active[i].id;
                self.send(id, Message::Ping { nonce });
            }
            i += 1;
        }
        // One request per free slot and one retry, per keepalive period.
        self.repair_budget = self.config.active_view_capacity - self.active.len() + 1;
        self.refused.clear();
        let lost_everything =
            self.active.is_empty() && self.passive.is_empty() && self.pending.is_empty();
        let may_rejoin = self
            .join
            .is_some_and(|j| j.deadline.is_none() && j.next_round <= now);
        if lost_everything && may_rejoin {
            self.start_join_round(now);
        }
    }

    /// Starts a SHUFFLE (§4.4) through a random active peer.
    fn shuffle(&mut self) {
        let Some(&target) = self.active.choose(&mut self.rng) else {
            return;
        };
        let mut peers = Vec::with_capacity(
            1 + self.config.shuffle_active_count + self.config.shuffle_passive_count,
        );
        peers.push(self.me);
        let others: Vec<Peer> = self
            .active
            .iter()
            .filter(|p| p.id != target.id)
            .copied()
            .collect();
        peers.extend(others.choose_multiple(&mut self.rng, self.config.shuffle_active_count));
        peers.extend(
            self.passive
                .choose_multiple(&mut self.rng, self.config.shuffle_passive_count),
        );
        self.shuffle_sent.clear();
        self.shuffle_sent.extend_from_slice(&peers[1..]);
        let message = Message::Shuffle {
            origin: self.me,
            ttl: self.config.shuffle_random_walk_length,
            peers,
        };
        self.send(target.id, message);
    }

    // ---- views ----

    /// Asks random passive peers to fill the free active slots (§4.3),
    /// within the request budget.
    fn repair(&mut self, now: Time) {
        while self.active.len() + self.pending.len() < self.config.active_view_capacity
            && self.repair_budget > 0
        {
            // One high-priority request at a time, and only with no neighbour
            // left, as in the paper: it forces its way into a full view.
            let priority = if self.active.is_empty()
                && self.pending.iter().all(|p| p.priority == Priority::Low)
            {
                Priority::High
            } else {
                Priority::Low
            };
            let Some(peer) = self.random_candidate(priority) else {
                return;
            };
            crate::compact::push_exact(
                &mut self.pending,
                PendingNeighbor {
                    peer,
                    priority,
                    deadline: now + self.config.request_timeout,
                    reconnect: None,
                },
            );
            self.repair_budget -= 1;
            self.send(peer.id, Message::Neighbor { priority });
        }
    }

    /// A random passive peer with no NEIGHBOR request outstanding (and, for
    /// a low-priority request, that has not just refused one).
    fn random_candidate(&mut self, priority: Priority) -> Option<Peer> {
        let (pending, refused) = (&self.pending, &self.refused);
        let is_free = |p: &&Peer| {
            !pending.iter().any(|r| r.peer.id == p.id)
                && (priority == Priority::High || !refused.contains(&p.id))
        };
        let count = self.passive.iter().filter(is_free).count();
        if count == 0 {
            return None;
        }
        let k = self.rng.gen_range(0..count);
        self.passive.iter().filter(is_free).nth(k).copied()
    }

    /// A random active peer that is neither `a` nor `b`.
    fn random_active_except(&mut self, a: PeerId, b: PeerId) -> Option<Peer> {
        let eligible = |p: &&Peer| p.id != a && p.id != b;
        let count = self.active.iter().filter(eligible).count();
        if count == 0 {
            return None;
        }
        let k = self.rng.gen_range(0..count);
        self.active.iter().filter(eligible).nth(k).copied()
    }

    fn active_index(&self, id: &PeerId) -> Option<usize> {
        self.active.iter().position(|p| p.id == *id)
    }

    /// Adds `peer` to the active view, dropping a member if full (a random
    /// one, or the newest with [`Config::evict_newest`]).
    fn add_active(&mut self, now: Time, peer: Peer) {
        self.add_active_evicting(now, peer, self.config.evict_newest);
    }

    /// [`HyParView::add_active`], dropping the newest member if `newest`
    /// and a random one otherwise.
    fn add_active_evicting(&mut self, now: Time, peer: Peer, newest: bool) {
        assert!(peer.id != self.me.id && !self.is_active(&peer.id));
        self.remove_passive(&peer.id);
        self.pending.retain(|p| p.peer.id != peer.id);
        if self.active.len() >= self.config.active_view_capacity {
            let i = if newest {
                self.active.len() - 1
            } else {
                self.rng.gen_range(0..self.active.len())
            };
            let dropped = self.remove_active_at(i);
            self.send(dropped.id, Message::Disconnect { alive: true });
            self.add_passive(dropped);
        }
        self.active.push(peer);
        self.last_heard.push(now);
        self.emit(Event::NeighborUp(peer));
    }

    /// Remember `peer`, an active peer lost to a failure, for probing
    /// (forgetting the oldest beyond [`MAX_LOST`]); `probes` it already
    /// had (0 for a fresh loss). One that had all its probes is forgotten.
    fn remember_lost(&mut self, now: Time, peer: Peer, probes: u8) {
        self.lost.retain(|l| l.peer.id != peer.id);
        if probes >= LOST_PROBES {
            return;
        }
        if self.lost.len() >= MAX_LOST {
            self.lost.remove(0);
        }
        let next_probe = now + self.probe_gap(probes);
        self.lost.push(Lost {
            peer,
            next_probe,
            probes,
        });
    }

    /// The wait before probe `probes + 1` of a lost peer: 1, 2, then
    /// [`LOST_GAP_MAX`] shuffle intervals, each drawn uniformly from half
    /// to one and a half times that, so that the nodes that lost their
    /// neighbours to the same partition at the same instant do not probe
    /// in step (a heal is then noticed within a fraction of the gap).
    fn probe_gap(&mut self, probes: u8) -> Duration {
        let intervals = (1u32 << probes.min(8)).min(LOST_GAP_MAX);
        let gap = self.config.shuffle_interval * intervals;
        gap / 2 + random_phase(&mut self.rng, gap)
    }

    /// Send PING to every lost peer whose probe is due and schedule its
    /// next one; after [`LOST_PROBES`] the peer is forgotten. A PING
    /// changes nothing at the receiver (it answers PONG, and DISCONNECT as
    /// we are not its neighbour); its PONG shows the peer reachable again.
    fn probe_lost(&mut self, now: Time) {
        let mut i = 0;
        while i < self.lost.len() {
            let l = self.lost[i];
            if l.next_probe > now {
                i += 1;
                continue;
            }
            if l.probes >= LOST_PROBES || self.is_active(&l.peer.id) {
                self.lost.remove(i);
                crate::compact::release_if_empty(&mut self.lost);
                continue;
            }
            let gap = self.probe_gap(l.probes + 1);
            let l = &mut self.lost[i];
            l.probes += 1;
            l.next_probe = now + gap;
            let id = l.peer.id;
            let nonce = self.rng.gen();
            self.send(id, Message::Ping { nonce });
            i += 1;
        }
    }

    /// `lost[i]`, which we probed, answered: it is reachable again, and
    /// most likely across a partition that has healed. The paper's
    /// protocol would never link the two sides again once both have full
    /// active views (a low-priority NEIGHBOR is refused, shuffles stay on
    /// one side), so the peer is asked back at high priority: it accepts
    /// whatever its view holds, and we make room on its acceptance (each
    /// side drops one random member, which repairs as after any eviction).
    /// One such request at a time; another answering peer stays
    /// remembered and is probed again later. A request that fails puts the
    /// peer back among the lost, its probes counted.
    fn reconnect(&mut self, now: Time, i: usize, from: Peer) {
        if self.is_active(&from.id) {
            self.lost.remove(i);
            crate::compact::release_if_empty(&mut self.lost);
            return;
        }
        if self.pending.iter().any(|p| p.reconnect.is_some()) {
            return;
        }
        let lost = self.lost.remove(i);
        crate::compact::release_if_empty(&mut self.lost);
        // A low-priority request to it already waiting: replaced.
        self.pending.retain(|p| p.peer.id != from.id);
        crate::compact::push_exact(
            &mut self.pending,
            PendingNeighbor {
                peer: from,
                priority: Priority::High,
                deadline: now + self.config.request_timeout,
                reconnect: Some(lost.probes),
            },
        );
        self.send(
            from.id,
            Message::Neighbor {
                priority: Priority::High,
            },
        );
    }

    fn remove_active_at(&mut self, i: usize) -> Peer {
        let peer = self.active.remove(i);
        self.last_heard.remove(i);
        self.emit(Event::NeighborDown(peer.id));
        peer
    }

    /// Adds `peer` to the passive view unless it is us or already known,
    /// dropping a random entry if full.
    fn add_passive(&mut self, peer: Peer) {
        if !self.is_new_passive(&peer) {
            return;
        }
        if self.passive.len() >= self.config.passive_view_capacity {
            let i = self.rng.gen_range(0..self.passive.len());
            self.passive.swap_remove(i);
        }
        self.passive.push(peer);
    }

    /// Integrates shuffled peers into the passive view (§4.4): when full,
    /// the entries in `sent` (what we gave in this exchange) go first.
    fn integrate(&mut self, peers: &[Peer], sent: &[Peer]) {
        // Entries we sent in this exchange are dropped first (paper §4.4);
        // once none is left in the passive view, random ones go.
        let mut sent_left = true;
        for peer in peers.iter().take(MAX_SHUFFLE_PEERS) {
            if !self.is_new_passive(peer) {
                continue;
            }
            if self.passive.len() >= self.config.passive_view_capacity {
                let sent_victim = if sent_left {
                    self.passive
                        .iter()
                        .position(|p| sent.iter().any(|s| s.id == p.id))
                } else {
                    None
                };
                sent_left = sent_victim.is_some();
                let victim =
                    sent_victim.unwrap_or_else(|| self.rng.gen_range(0..self.passive.len()));
                self.passive.swap_remove(victim);
            }
            self.passive.push(*peer);
        }
    }

    fn is_new_passive(&self, peer: &Peer) -> bool {
        peer.id != self.me.id
            && !self.is_active(&peer.id)
            && !self.passive.iter().any(|p| p.id == peer.id)
    }

    fn remove_passive(&mut self, id: &PeerId) {
        if let Some(i) = self.passive.iter().position(|p| p.id == *id) {
            self.passive.swap_remove(i);
        }
    }

    // ---- output ----

    fn send(&mut self, to: PeerId, message: Message) {
        self.push(Output::Send { to, message });
    }

    fn emit(&mut self, event: Event) {
        self.push(Output::Event(event));
    }

    fn push(&mut self, output: Output) {
        // One input yields at most a few outputs per active slot; a longer
        // queue means the driver is not draining it.
        debug_assert!(
            self.outputs.len() < 16 * (self.config.active_view_capacity + 4),
            "HyParView output queue not drained"
        );
        self.outputs.push_back(output);
    }
}

/// A uniform offset in `[0, period]`.
fn random_phase(rng: &mut ChaCha8Rng, period: Duration) -> Duration {
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.gen_range(0..=nanos))
}

/// The tick after `due`, or one period after `now` if the driver is late.
fn next_period(due: Time, period: Duration, now: Time) -> Time {
    let next = due + period;
    if next <= now {
        now + period
    } else {
        next
    }
}

impl super::Core for HyParView {
    type Message = Message;
    type Event = Event;

    fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        HyParView::handle_message(self, now, from, message);
    }
    fn handle_timeout(&mut self, now: Time) {
        HyParView::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        HyParView::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        HyParView::poll_timeout(self)
    }
    fn record_of(&self, peer: &PeerId) -> Option<&Peer> {
        HyParView::record_of(self, peer)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::SocketAddr;

    use rand::SeedableRng;

    use super::*;

    fn peer(i: usize) -> Peer {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        id[31] = 0xaa;
        let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000));
        Peer::new(PeerId(id), addr)
    }

    fn node(i: usize, seed: u64) -> HyParView {
        node_with(i, seed, Config::default())
    }

    fn node_with(i: usize, seed: u64, config: Config) -> HyParView {
        let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64);
        HyParView::new(peer(i), config, rng)
    }

    fn secs(s: u64) -> Time {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Time {
        Duration::from_millis(m)
    }

    /// Structural invariants that must hold after every input.
    fn assert_views(hv: &HyParView) {
        let c = hv.config();
        assert!(hv.active_view().len() <= c.active_view_capacity);
        assert!(hv.passive_view().len() <= c.passive_view_capacity);
        let mut seen = BTreeSet::new();
        for p in hv.active_view().iter().chain(hv.passive_view()) {
            assert_ne!(p.id, hv.me().id, "a view contains self");
            assert!(seen.insert(p.id), "duplicate or views not disjoint: {p:?}");
        }
    }

    /// Make `ids` active peers of `hv` at time zero, through low-priority
    /// NEIGHBOR requests (accepted while there is room).
    fn befriend(hv: &mut HyParView, ids: &[usize]) {
        for &i in ids {
            hv.handle_message(
                Time::ZERO,
                peer(i),
                Message::Neighbor {
                    priority: Priority::Low,
                },
            );
        }
    }

    fn drain(hv: &mut HyParView) -> Vec<Output> {
        std::iter::from_fn(|| hv.poll_output()).collect()
    }

    /// The node hands a core's record to the transport when the address
    /// book has forgotten the peer. Without the contact's, a joiner whose
    /// book forgot its contact sent its JOIN retries nowhere: 10,000 nodes
    /// joining 0.3 ms apart left 1,388 isolated.
    #[test]
    fn the_contact_has_a_record_for_every_join_retry() {
        let mut hv = node(0, 1);
        hv.join(Time::ZERO, peer(9));
        assert_eq!(hv.record_of(&peer(9).id), Some(&peer(9)));
        let out = drain(&mut hv);
        assert_eq!(sends_to(&out, &peer(9)), vec![Message::Join]);
        // Its JOIN unanswered, the node asks again; the record stays.
        let mut joins = 0;
        while let Some(at) = hv.poll_timeout().filter(|&t| t < secs(60)) {
            hv.handle_timeout(at);
            joins += sends_to(&drain(&mut hv), &peer(9)).len();
            assert_eq!(hv.record_of(&peer(9).id), Some(&peer(9)));
        }
        assert!(joins >= 2, "{joins} JOIN retries in a minute alone");
        assert_eq!(hv.record_of(&peer(7).id), None);
    }

    /// Runs `hv`'s timers up to `until`, its active peers heard from
    /// throughout: each instant at which it sent something to `to`, with
    /// what.
    fn timers_until(hv: &mut HyParView, until: Time, to: &Peer) -> Vec<(Time, Vec<Message>)> {
        let mut sent = Vec::new();
        while let Some(at) = hv.poll_timeout().filter(|&t| t <= until) {
            let active: Vec<PeerId> = hv.active_view().iter().map(|p| p.id).collect();
            for id in &active {
                hv.handle_heard(at, id);
            }
            hv.handle_timeout(at);
            let out = sends_to(&drain(hv), to);
            if !out.is_empty() {
                sent.push((at, out));
            }
        }
        sent
    }

    fn is_ping(m: &Message) -> bool {
        matches!(m, Message::Ping { .. })
    }

    const HIGH: Message = Message::Neighbor {
        priority: Priority::High,
    };

    #[test]
    fn a_lost_peer_is_probed_and_asked_back_at_high_priority_when_it_answers() {
        let mut hv = node(0, 1);
        befriend(&mut hv, &[1, 2, 3, 4, 5]);
        drain(&mut hv);
        // Peer 1 stops answering (a partition): dropped, remembered; the
        // view fills again from our side.
        hv.handle_peer_dead(secs(1), &peer(1).id);
        assert!(!hv.is_active(&peer(1).id));
        let low = Message::Neighbor {
            priority: Priority::Low,
        };
        hv.handle_message(secs(1), peer(6), low);
        drain(&mut hv);
        assert_eq!(hv.active_view().len(), 5);
        // Probed with PING one shuffle interval later (jittered by half).
        let probes = timers_until(&mut hv, secs(40), &peer(1));
        assert_eq!(probes.len(), 2, "{probes:?}");
        let (first, second) = (probes[0].0, probes[1].0);
        assert!(first >= secs(1 + 5) && first <= secs(1 + 15), "{first:?}");
        // The next one waits two intervals (jittered).
        assert!(second - first >= secs(10) && second - first <= secs(30));
        assert!(probes.iter().all(|(_, m)| m.len() == 1 && is_ping(&m[0])));
        // The partition healed: the PONG makes us ask it back at high
        // priority, full as we are.
        let healed = second + ms(30);
        hv.handle_message(healed, peer(1), Message::Pong { nonce: 0 });
        assert_eq!(sends_to(&drain(&mut hv), &peer(1)), vec![HIGH]);
        assert!(!hv.is_active(&peer(1).id));
        // Its acceptance takes a slot: one random member makes room.
        hv.handle_message(
            healed + ms(30),
            peer(1),
            Message::NeighborReply { accepted: true },
        );
        let out = drain(&mut hv);
        assert!(hv.is_active(&peer(1).id));
        assert_eq!(hv.active_view().len(), 5);
        let ev = events(&out);
        assert!(ev.contains(&Event::NeighborUp(peer(1))));
        let Some(Event::NeighborDown(dropped)) =
            ev.iter().find(|e| matches!(e, Event::NeighborDown(_)))
        else {
            panic!("nothing dropped: {ev:?}");
        };
        let dropped = *hv.record_of(dropped).unwrap();
        assert!(hv.passive_view().contains(&dropped));
        assert_eq!(
            sends_to(&out, &dropped),
            vec![Message::Disconnect { alive: true }]
        );
        assert_views(&hv);
        // And it is not probed again.
        assert!(timers_until(&mut hv, secs(1000), &peer(1))
            .iter()
            .all(|(_, m)| !m.iter().any(is_ping)));
    }

    #[test]
    fn only_an_answer_to_a_probe_asks_a_lost_peer_back() {
        let mut hv = node(0, 2);
        befriend(&mut hv, &[1, 2, 3, 4, 5]);
        hv.handle_peer_dead(secs(1), &peer(1).id);
        for i in 2..=4 {
            hv.handle_peer_dead(secs(1), &peer(i).id);
        }
        for i in 6..=9 {
            let low = Message::Neighbor {
                priority: Priority::Low,
            };
            hv.handle_message(secs(1), peer(i), low);
        }
        drain(&mut hv);
        assert_eq!(hv.active_view().len(), 5);
        // Before our first probe, a PONG (late, to a keep-alive) or a PING
        // (it still holds us) shows that we were wrong to find it dead: no
        // request, and it is forgotten (its PING gets DISCONNECT).
        hv.handle_message(secs(2), peer(3), Message::Pong { nonce: 1 });
        hv.handle_message(secs(2), peer(4), Message::Ping { nonce: 2 });
        let out = drain(&mut hv);
        assert!(sends_to(&out, &peer(3)).is_empty());
        assert_eq!(
            sends_to(&out, &peer(4)),
            vec![
                Message::Pong { nonce: 2 },
                Message::Disconnect { alive: true }
            ]
        );
        assert_eq!(hv.record_of(&peer(3).id), None);
        assert_eq!(hv.record_of(&peer(4).id), None);
        // Probed once, its PING (it probes us too): answered, no request,
        // and it stays remembered.
        timers_until(&mut hv, secs(16), &peer(1));
        drain(&mut hv);
        hv.handle_message(secs(16), peer(1), Message::Ping { nonce: 2 });
        let out = sends_to(&drain(&mut hv), &peer(1));
        assert_eq!(out[0], Message::Pong { nonce: 2 });
        assert!(!out.contains(&HIGH));
        assert_eq!(hv.record_of(&peer(1).id), Some(&peer(1)));
        // Both answer: one high-priority request at a time.
        hv.handle_message(secs(17), peer(1), Message::Pong { nonce: 3 });
        hv.handle_message(secs(17), peer(2), Message::Pong { nonce: 4 });
        let out = drain(&mut hv);
        assert_eq!(sends_to(&out, &peer(1)), vec![HIGH]);
        assert!(sends_to(&out, &peer(2)).is_empty());
        // Peer 2 stays remembered and is asked back after its next probe
        // once the first request is settled.
        hv.handle_message(secs(18), peer(1), Message::NeighborReply { accepted: true });
        drain(&mut hv);
        let probes = timers_until(&mut hv, secs(60), &peer(2));
        assert!(!probes.is_empty() && probes.iter().all(|(_, m)| m.iter().all(is_ping)));
        hv.handle_message(secs(60), peer(2), Message::Pong { nonce: 5 });
        assert_eq!(sends_to(&drain(&mut hv), &peer(2)), vec![HIGH]);
        hv.handle_message(secs(60), peer(2), Message::NeighborReply { accepted: true });
        drain(&mut hv);
        // (Its room was made by a random member, which may be peer 1.)
        assert!(hv.is_active(&peer(2).id));
        assert_eq!(hv.active_view().len(), 5);
        assert_views(&hv);
        // A peer that never was lost gets no request for its PONG.
        hv.handle_message(secs(61), peer(9), Message::Pong { nonce: 6 });
        assert!(sends_to(&drain(&mut hv), &peer(9)).is_empty());
    }

    #[test]
    fn a_failed_request_to_a_lost_peer_goes_back_to_probing() {
        let mut hv = node(0, 3);
        befriend(&mut hv, &[1, 2]);
        hv.handle_peer_dead(secs(1), &peer(1).id);
        drain(&mut hv);
        let first = timers_until(&mut hv, secs(16), &peer(1));
        assert_eq!(first.len(), 1);
        hv.handle_message(first[0].0, peer(1), Message::Pong { nonce: 0 });
        assert_eq!(sends_to(&drain(&mut hv), &peer(1)), vec![HIGH]);
        // The request goes unanswered (the link flapped): probed again,
        // its first probe counted, until LOST_PROBES in all.
        let later = timers_until(&mut hv, secs(3000), &peer(1));
        let pings = later
            .iter()
            .flat_map(|(_, m)| m)
            .filter(|m| is_ping(m))
            .count();
        assert_eq!(pings, usize::from(LOST_PROBES) - 1, "{later:?}");
        assert!(!hv.is_active(&peer(1).id));
    }

    #[test]
    fn a_lost_peer_that_never_answers_is_forgotten_after_its_probes() {
        let mut hv = node(0, 1);
        befriend(&mut hv, &[1]);
        hv.handle_peer_dead(secs(1), &peer(1).id);
        drain(&mut hv);
        let probes = timers_until(&mut hv, secs(3000), &peer(1));
        assert!(probes.iter().all(|(_, m)| m.len() == 1 && is_ping(&m[0])));
        assert_eq!(probes.len(), usize::from(LOST_PROBES));
        // Gaps of 1, 2, then LOST_GAP_MAX shuffle intervals, each within
        // half to one and a half times that; and not all alike (jitter).
        let interval = Config::default().shuffle_interval;
        let mut at = secs(1);
        let mut gaps = Vec::new();
        for (k, (t, _)) in probes.iter().enumerate() {
            let base = interval * (1u32 << k.min(8)).min(LOST_GAP_MAX);
            let gap = *t - at;
            assert!(gap >= base / 2 && gap <= base * 3 / 2, "probe {k}: {gap:?}");
            gaps.push(gap);
            at = *t;
        }
        assert!(gaps[2..].windows(2).any(|w| w[0] != w[1]));
        // About 5.5 minutes in all, well under 10.
        assert!(at < secs(600), "{at:?}");
        // A PONG nobody asked for does not make it a neighbour.
        hv.handle_message(secs(3001), peer(1), Message::Pong { nonce: 0 });
        assert!(sends_to(&drain(&mut hv), &peer(1)).is_empty());
        assert!(!hv.is_active(&peer(1).id));
    }

    #[test]
    fn lost_peers_are_bounded() {
        let config = Config {
            active_view_capacity: 16,
            ..Config::default()
        };
        let mut hv = node_with(0, 1, config);
        let lost: Vec<usize> = (1..=12).collect();
        befriend(&mut hv, &lost);
        for &i in &lost {
            hv.handle_peer_dead(secs(1), &peer(i).id);
        }
        drain(&mut hv);
        let mut probed = BTreeSet::new();
        while let Some(at) = hv.poll_timeout().filter(|&t| t <= secs(3000)) {
            hv.handle_timeout(at);
            for o in drain(&mut hv) {
                if let Output::Send { to, message } = o {
                    assert!(is_ping(&message), "{message:?}");
                    probed.insert(to);
                }
            }
        }
        // The last MAX_LOST lost are remembered; the oldest forgotten.
        let expected: BTreeSet<PeerId> = lost[lost.len() - MAX_LOST..]
            .iter()
            .map(|&i| peer(i).id)
            .collect();
        assert_eq!(probed, expected);
    }

    fn sends_to(out: &[Output], to: &Peer) -> Vec<Message> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to: a, message } if *a == to.id => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output]) -> Vec<Event> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// One instance in the harness, with the view its events describe.
    struct Host {
        hv: HyParView,
        alive: bool,
        up: BTreeSet<PeerId>,
        ups: usize,
        /// When each peer left the active view, and whether the passive
        /// view kept it then.
        downs: Vec<(Time, PeerId, bool)>,
        timer: Option<Time>,
    }

    /// N instances on virtual time, routed by id: datagrams take 1–20 ms,
    /// may be lost, and time jumps to the next delivery or timer.
    struct Net {
        now: Time,
        hosts: BTreeMap<PeerId, Host>,
        in_flight: BTreeMap<(Time, u64), (Peer, PeerId, Message)>,
        timers: BTreeSet<(Time, PeerId)>,
        seq: u64,
        rng: ChaCha8Rng,
        loss: f64,
        delivered: u64,
        /// One side of a partition: nothing crosses between it and the
        /// rest (empty: no partition).
        cut: BTreeSet<PeerId>,
    }

    impl Net {
        fn new(seed: u64) -> Self {
            Net {
                now: Time::ZERO,
                hosts: BTreeMap::new(),
                in_flight: BTreeMap::new(),
                timers: BTreeSet::new(),
                seq: 0,
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
                loss: 0.0,
                delivered: 0,
                cut: BTreeSet::new(),
            }
        }

        fn add(&mut self, hv: HyParView) -> PeerId {
            let id = hv.me().id;
            let host = Host {
                hv,
                alive: true,
                up: BTreeSet::new(),
                ups: 0,
                downs: Vec::new(),
                timer: None,
            };
            self.hosts.insert(id, host);
            id
        }

        fn hv(&self, id: PeerId) -> &HyParView {
            &self.hosts[&id].hv
        }

        fn join(&mut self, id: PeerId, contact: PeerId) {
            let now = self.now;
            let contact = *self.hv(contact).me();
            self.hosts.get_mut(&id).unwrap().hv.join(now, contact);
            self.after_input(id);
        }

        fn kill(&mut self, id: PeerId) {
            let host = self.hosts.get_mut(&id).unwrap();
            host.alive = false;
            if let Some(t) = host.timer.take() {
                self.timers.remove(&(t, id));
            }
        }

        /// Drains the outputs of `id`, checks its events against its view,
        /// and re-files its timer.
        fn after_input(&mut self, id: PeerId) {
            let now = self.now;
            let host = self.hosts.get_mut(&id).unwrap();
            let me = *host.hv.me();
            while let Some(output) = host.hv.poll_output() {
                match output {
                    Output::Send { to, message } => {
                        if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
                            continue;
                        }
                        let arrival = now + ms(self.rng.gen_range(1..=20));
                        self.seq += 1;
                        self.in_flight
                            .insert((arrival, self.seq), (me, to, message));
                    }
                    Output::Event(Event::NeighborUp(p)) => {
                        assert!(host.up.insert(p.id), "{me:?}: NeighborUp twice for {p:?}");
                        host.ups += 1;
                    }
                    Output::Event(Event::NeighborDown(gone)) => {
                        assert!(host.up.remove(&gone), "{me:?}: NeighborDown without Up");
                        let kept = host.hv.passive_view().iter().any(|p| p.id == gone);
                        host.downs.push((now, gone, kept));
                    }
                }
            }
            let view: BTreeSet<PeerId> = host.hv.active_view().iter().map(|p| p.id).collect();
            assert_eq!(view, host.up, "events disagree with the active view");
            assert_views(&host.hv);
            if let Some(t) = host.timer.take() {
                self.timers.remove(&(t, id));
            }
            host.timer = host.hv.poll_timeout();
            if let Some(t) = host.timer {
                assert!(t >= now, "timer in the past");
                self.timers.insert((t, id));
            }
        }

        /// Processes the earliest delivery or timer at or before `until`.
        fn step(&mut self, until: Time) -> bool {
            let message = self.in_flight.keys().next().map(|k| k.0);
            let timer = self.timers.iter().next().map(|k| k.0);
            match (message, timer) {
                (Some(m), t) if m <= until && !matches!(t, Some(t) if t < m) => {
                    let (_, (from, to, message)) = self.in_flight.pop_first().unwrap();
                    self.now = m;
                    let from_alive = self.hosts.get(&from.id).is_some_and(|h| h.alive);
                    let across = self.cut.contains(&from.id) != self.cut.contains(&to);
                    match self.hosts.get_mut(&to) {
                        Some(host) if host.alive && from_alive && !across => {
                            host.hv.handle_message(m, from, message);
                            self.delivered += 1;
                            self.after_input(to);
                        }
                        _ => {}
                    }
                    true
                }
                (_, Some(t)) if t <= until => {
                    let (_, id) = self.timers.pop_first().unwrap();
                    self.now = t;
                    let host = self.hosts.get_mut(&id).unwrap();
                    host.timer = None;
                    host.hv.handle_timeout(t);
                    self.after_input(id);
                    true
                }
                _ => false,
            }
        }

        fn run_until(&mut self, until: Time) {
            while self.step(until) {}
            self.now = until;
        }

        fn run_for(&mut self, duration: Duration) {
            self.run_until(self.now + duration);
        }

        fn alive(&self) -> impl Iterator<Item = (&PeerId, &Host)> {
            self.hosts.iter().filter(|(_, h)| h.alive)
        }

        /// Every active link among live nodes is held by both ends.
        fn assert_symmetric(&self) {
            for (id, host) in self.alive() {
                for p in host.hv.active_view() {
                    let other = &self.hosts[&p.id];
                    assert!(other.alive, "{id} keeps dead {p:?} active");
                    assert!(
                        other.hv.is_active(&host.hv.me().id),
                        "{id} has {} active, not the other way round",
                        p.id
                    );
                }
            }
        }

        /// The live nodes form one component of the active-view graph.
        fn assert_connected(&self) {
            assert_eq!(self.components(), 1, "overlay partitioned");
        }

        /// Connected components of the active-view graph over live nodes.
        fn components(&self) -> usize {
            let mut seen = BTreeSet::new();
            let mut count = 0;
            for (&start, _) in self.alive() {
                if !seen.insert(start) {
                    continue;
                }
                count += 1;
                let mut stack = vec![start];
                while let Some(a) = stack.pop() {
                    for p in self.hosts[&a].hv.active_view() {
                        if self.hosts[&p.id].alive && seen.insert(p.id) {
                            stack.push(p.id);
                        }
                    }
                }
            }
            count
        }

        /// Active links among live nodes held by one end only.
        fn one_sided(&self) -> usize {
            self.alive()
                .flat_map(|(id, host)| host.hv.active_view().iter().map(move |p| (id, p)))
                .filter(|(id, p)| !self.hosts[&p.id].hv.is_active(id))
                .count()
        }

        fn views(&self) -> Vec<(Vec<Peer>, Vec<Peer>)> {
            self.hosts
                .values()
                .map(|h| (h.hv.active_view().to_vec(), h.hv.passive_view().to_vec()))
                .collect()
        }
    }

    /// `n` nodes joining through node 0, one every 50 ms.
    fn overlay(n: usize, seed: u64) -> (Net, Vec<PeerId>) {
        overlay_seeded(n, seed, seed)
    }

    /// As [`overlay`], with the network's draws (latency, loss) and the
    /// nodes' from separate seeds.
    fn overlay_seeded(n: usize, net_seed: u64, node_seed: u64) -> (Net, Vec<PeerId>) {
        let mut net = Net::new(net_seed);
        let ids: Vec<PeerId> = (0..n).map(|i| net.add(node(i, node_seed))).collect();
        for &a in &ids[1..] {
            net.join(a, ids[0]);
            net.run_for(ms(50));
        }
        (net, ids)
    }

    // ---- whole-overlay behaviour ----

    #[test]
    fn two_nodes_become_mutual_neighbours_once() {
        let mut net = Net::new(1);
        let a = net.add(node(0, 1));
        let b = net.add(node(1, 1));
        net.join(b, a);
        net.run_for(secs(30));
        assert_eq!(net.hv(a).active_view(), &[peer(1)]);
        assert_eq!(net.hv(b).active_view(), &[peer(0)]);
        for id in [a, b] {
            assert_eq!(net.hosts[&id].ups, 1);
            assert!(net.hosts[&id].downs.is_empty());
        }
    }

    #[test]
    fn fifty_nodes_through_one_contact_settle_into_a_symmetric_connected_overlay() {
        let (mut net, ids) = overlay(50, 2);
        net.run_for(secs(40));
        net.assert_symmetric();
        net.assert_connected();
        let cap = Config::default().active_view_capacity;
        let mut degree_sum = 0;
        for a in &ids {
            let n = net.hv(*a).active_view().len();
            assert!((1..=cap).contains(&n));
            degree_sum += n;
        }
        // Most slots are filled.
        assert!(
            degree_sum >= 50 * (cap - 1),
            "mean degree too low: {degree_sum}/50"
        );
    }

    #[test]
    fn shuffles_fill_passive_views() {
        let (mut net, ids) = overlay(50, 3);
        net.run_for(secs(40));
        let total: usize = ids.iter().map(|a| net.hv(*a).passive_view().len()).sum();
        // 49 other nodes, 5 of them active: up to 30 passive each.
        assert!(total >= 50 * 20, "passive views too small: {total}/50");
    }

    #[test]
    fn a_killed_node_is_declared_failed_in_time_and_replaced() {
        let (mut net, ids) = overlay(30, 4);
        net.run_for(secs(30));
        let victim = ids[7];
        let victim_id = peer(7).id;
        let neighbours: Vec<PeerId> = net.hv(victim).active_view().iter().map(|p| p.id).collect();
        assert!(!neighbours.is_empty());
        let killed_at = net.now;
        let ups_before: usize = neighbours.iter().map(|a| net.hosts[a].ups).sum();
        net.kill(victim);
        let c = Config::default();
        net.run_for(c.failure_timeout + c.keepalive_interval);
        for a in &neighbours {
            let host = &net.hosts[a];
            assert!(!host.hv.is_active(&victim_id));
            // Not kept as a backup (a shuffle may bring its record back
            // later: other nodes still hold it).
            let (at, _, kept) = host
                .downs
                .iter()
                .find(|(at, id, _)| *id == victim_id && *at >= killed_at)
                .unwrap();
            assert!(!kept);
            assert!(*at <= killed_at + c.failure_timeout + c.keepalive_interval);
            assert!(*at >= killed_at + c.failure_timeout - c.keepalive_interval);
        }
        net.run_for(secs(5));
        let ups_after: usize = neighbours.iter().map(|a| net.hosts[a].ups).sum();
        assert!(ups_after > ups_before, "no replacement link was made");
        // Full nodes refuse low-priority requests (§4.3), so a slot may stay
        // free for a while; but no neighbour is left short of more than two.
        for a in &neighbours {
            assert!(net.hv(*a).active_view().len() >= c.active_view_capacity - 2);
        }
        net.assert_symmetric();
        net.assert_connected();
    }

    #[test]
    fn survivors_of_half_the_overlay_failing_reconnect() {
        let (mut net, ids) = overlay(100, 5);
        net.run_for(secs(15));
        let mut victims = ids.clone();
        victims.shuffle(&mut net.rng);
        for a in &victims[..50] {
            net.kill(*a);
        }
        net.run_for(secs(15));
        net.assert_symmetric();
        net.assert_connected();
        for (_, host) in net.alive() {
            assert!(!host.hv.active_view().is_empty());
        }
    }

    /// Two halves cut apart for `split`, then healed: the components
    /// after the split, and how long after the heal until one (None if
    /// not within 60 s).
    fn split_and_heal(seed: u64, split: Duration) -> (usize, Option<Duration>) {
        let (mut net, ids) = overlay(60, seed);
        net.run_for(secs(30));
        net.cut = ids[..30].iter().copied().collect();
        net.run_for(split);
        let split_components = net.components();
        net.cut.clear();
        let healed = net.now;
        while net.now < healed + secs(60) {
            net.run_for(secs(1));
            if net.components() == 1 {
                let merged = net.now - healed;
                // And it stays so. (A link may be one-sided for a moment:
                // a DISCONNECT overtaken by the request it answered.)
                net.run_for(secs(20));
                net.assert_connected();
                assert!(net.one_sided() <= 2, "{} one-sided links", net.one_sided());
                return (split_components, Some(merged));
            }
        }
        (split_components, None)
    }

    /// Without the probes of lost peers, each half refills its full active
    /// views from its own side and nothing links them again.
    #[test]
    fn a_healed_partition_becomes_one_overlay_again() {
        // A split shorter than the first probe, one across several, one
        // of minutes (seeds 1-4 with splits of 20, 60 and 200 s all merge
        // within 30 s too; three runs keep the test short).
        for (seed, split) in [(1, secs(8)), (2, secs(60)), (3, secs(200))] {
            let (during, merged) = split_and_heal(seed, split);
            assert_eq!(during, 2, "seed {seed}, split {split:?}");
            let merged = merged.unwrap_or_else(|| panic!("seed {seed}, split {split:?}"));
            assert!(
                merged <= secs(30),
                "seed {seed}, split {split:?}: {merged:?}"
            );
        }
    }

    /// A settled overlay drops no link: the probes act only on peers
    /// found dead, and without loss none is. (Links are still added: a
    /// node below capacity keeps asking, and one with room accepts.)
    #[test]
    fn a_settled_overlay_keeps_its_links() {
        let (mut net, _) = overlay(60, 8);
        net.run_for(secs(30));
        let downs = |net: &Net| net.hosts.values().map(|h| h.downs.len()).sum::<usize>();
        let before = downs(&net);
        net.run_for(secs(600));
        assert_eq!(downs(&net), before);
    }

    #[test]
    fn overlay_settles_under_ten_percent_loss() {
        let mut net = Net::new(6);
        net.loss = 0.1;
        let ids: Vec<PeerId> = (0..30).map(|i| net.add(node(i, 6))).collect();
        for &a in &ids[1..] {
            net.join(a, ids[0]);
            net.run_for(ms(50));
        }
        net.run_for(secs(30));
        // Lossy links come and go; once loss stops everything settles.
        net.loss = 0.0;
        net.run_for(secs(10));
        net.assert_symmetric();
        net.assert_connected();
    }

    #[test]
    fn same_seed_same_overlay() {
        let run = |node_seed| {
            let (mut net, _) = overlay_seeded(30, 7, node_seed);
            net.run_for(secs(10));
            (net.views(), net.delivered)
        };
        let a = run(7);
        assert_eq!(a, run(7));
        // The same network (latencies), other node seeds: another overlay,
        // so the nodes draw from the RNG they are given.
        assert_ne!(a.0, run(8).0, "node seeds 7 and 8 built the same views");
    }

    #[test]
    fn a_node_that_lost_everything_joins_again_through_its_contact() {
        let mut net = Net::new(9);
        let a = net.add(node(0, 9));
        let b = net.add(node(1, 9));
        let c = net.add(node(2, 9));
        net.join(b, a);
        net.run_for(secs(1));
        net.join(c, a);
        net.run_for(secs(20));
        // b loses both views (as after a massive failure elsewhere).
        let host = net.hosts.get_mut(&b).unwrap();
        host.hv.active.clear();
        host.hv.last_heard.clear();
        host.hv.passive.clear();
        host.up.clear();
        net.run_for(secs(30));
        assert!(!net.hv(b).active_view().is_empty());
        net.assert_symmetric();
        net.assert_connected();
    }

    /// Mean hop distance between live nodes over the active-view graph
    /// (BFS from every node), and the largest distance seen.
    fn path_lengths(net: &Net) -> (f64, usize) {
        let live: Vec<PeerId> = net.alive().map(|(a, _)| *a).collect();
        let (mut sum, mut pairs, mut max) = (0usize, 0usize, 0usize);
        for &src in &live {
            let mut dist = BTreeMap::from([(src, 0usize)]);
            let mut queue = VecDeque::from([src]);
            while let Some(a) = queue.pop_front() {
                let d = dist[&a];
                for p in net.hv(a).active_view() {
                    if let std::collections::btree_map::Entry::Vacant(e) = dist.entry(p.id) {
                        e.insert(d + 1);
                        queue.push_back(p.id);
                    }
                }
            }
            for d in dist.values() {
                sum += d;
                max = max.max(*d);
            }
            pairs += dist.len() - 1;
        }
        (sum as f64 / pairs as f64, max)
    }

    /// `n` nodes joining through node 0 one every `gap`, far faster than a
    /// FORWARDJOIN walk completes (7 hops of 1–20 ms).
    fn flash_crowd(n: usize, gap: Duration, config: &Config, seed: u64) -> Net {
        let mut net = Net::new(seed);
        let ids: Vec<PeerId> = (0..n)
            .map(|i| net.add(node_with(i, seed, config.clone())))
            .collect();
        for &a in &ids[1..] {
            net.join(a, ids[0]);
            net.run_for(gap);
        }
        net.run_for(secs(5));
        net
    }

    #[test]
    fn flash_crowd_through_one_contact_is_well_mixed_when_evicting_the_newest() {
        // (With the paper's random eviction the contact's view is nothing but
        // joiners still joining, walks stay among the newest nodes and the
        // overlay grows as a band whose paths lengthen linearly with its
        // size; 400 nodes are too few to show it here, the simulator shows
        // it at 3,000 and 10,000.)
        let newest = Config {
            evict_newest: true,
            ..Config::default()
        };
        let net = flash_crowd(400, ms(1), &newest, 21);
        net.assert_symmetric();
        net.assert_connected();
        let (mixed, mixed_max) = path_lengths(&net);
        // A random 5-regular graph of 400 nodes: about 4.5 hops, at most 7.
        assert!(mixed < 5.0 && mixed_max <= 8, "{mixed} {mixed_max}");
    }

    #[test]
    fn random_contacts_still_joining_do_not_leave_islands() {
        // Each node joins through a random node started before it, often one
        // whose own JOIN is still unanswered, over lossy links.
        for seed in 30..32 {
            let mut net = Net::new(seed);
            net.loss = 0.01;
            let ids: Vec<PeerId> = (0..100).map(|i| net.add(node(i, seed))).collect();
            for i in 1..ids.len() {
                let contact = ids[net.rng.gen_range(0..i)];
                net.join(ids[i], contact);
                net.run_for(ms(5));
            }
            net.run_for(secs(20));
            net.loss = 0.0;
            net.run_for(secs(5));
            net.assert_symmetric();
            net.assert_connected();
        }
    }

    // ---- single-node behaviour ----

    #[test]
    fn join_is_retried_three_times_then_retried_later_when_alone() {
        let mut hv = node(1, 10);
        let contact = peer(0);
        hv.join(Time::ZERO, contact);
        let mut joins = sends_to(&drain(&mut hv), &contact).len();
        let mut now = Time::ZERO;
        let mut times = Vec::new();
        while now < secs(25) {
            let Some(t) = hv.poll_timeout() else { break };
            now = t;
            hv.handle_timeout(now);
            let n = sends_to(&drain(&mut hv), &contact).len();
            if n > 0 {
                times.push(now);
            }
            joins += n;
            if now < secs(5) {
                assert!(joins <= JOIN_ATTEMPTS_MAX as usize);
            }
        }
        assert_eq!(times[..2], [secs(1), secs(2)]);
        // A second round after shuffle_interval, a third after twice that.
        assert_eq!(joins, 3 * JOIN_ATTEMPTS_MAX as usize);
        assert!(times[2] >= secs(10) && times[2] <= secs(11));
    }

    #[test]
    fn a_node_not_yet_in_the_overlay_passes_joiners_to_its_contact() {
        let mut hv = node(1, 15);
        let contact = peer(0);
        hv.join(Time::ZERO, contact);
        drain(&mut hv);
        // Our own JOIN is unanswered: a JOIN to us is passed on to our
        // contact as the start of the joiner's walk, and we keep out of it.
        hv.handle_message(ms(5), peer(2), Message::Join);
        let out = drain(&mut hv);
        assert!(sends_to(&out, &peer(2)).is_empty());
        assert_eq!(
            sends_to(&out, &contact),
            vec![Message::ForwardJoin {
                joiner: peer(2),
                ttl: 6
            }]
        );
        assert!(hv.active_view().is_empty());
        // So is a walk that reaches us, one hop shorter.
        hv.handle_message(
            ms(6),
            peer(5),
            Message::ForwardJoin {
                joiner: peer(2),
                ttl: 3,
            },
        );
        assert_eq!(
            sends_to(&drain(&mut hv), &contact),
            vec![Message::ForwardJoin {
                joiner: peer(2),
                ttl: 2
            }]
        );
        // Once in, the retried JOIN is taken, with a walk through the contact.
        hv.handle_message(ms(20), contact, Message::JoinReply);
        drain(&mut hv);
        hv.handle_message(ms(1005), peer(2), Message::Join);
        let out = drain(&mut hv);
        assert_eq!(sends_to(&out, &peer(2)), vec![Message::JoinReply]);
        assert_eq!(
            sends_to(&out, &contact),
            vec![Message::ForwardJoin {
                joiner: peer(2),
                ttl: 6
            }]
        );
        // A node that has lost its active view is out again.
        hv.handle_message(ms(1010), contact, Message::Disconnect { alive: false });
        hv.handle_message(ms(1011), peer(2), Message::Disconnect { alive: false });
        drain(&mut hv);
        hv.handle_message(ms(1012), peer(3), Message::Join);
        let out = drain(&mut hv);
        assert!(sends_to(&out, &peer(3)).is_empty());
        assert_eq!(sends_to(&out, &contact).len(), 1);
        // The first node of an overlay has no contact and takes everyone.
        let mut first = node(0, 15);
        first.handle_message(ms(1), peer(4), Message::Join);
        assert_eq!(
            sends_to(&drain(&mut first), &peer(4)),
            vec![Message::JoinReply]
        );
    }

    #[test]
    fn evict_newest_drops_the_most_recently_added_member() {
        let config = Config {
            active_view_capacity: 3,
            evict_newest: true,
            ..Config::default()
        };
        let mut hv = node_with(0, 16, config);
        for i in 1..=3 {
            hv.handle_message(
                ms(i as u64),
                peer(i),
                Message::Neighbor {
                    priority: Priority::Low,
                },
            );
        }
        drain(&mut hv);
        // A JOIN to the full view drops peer 3, the newest.
        hv.handle_message(ms(10), peer(4), Message::Join);
        let out = drain(&mut hv);
        assert_eq!(
            sends_to(&out, &peer(3)),
            vec![Message::Disconnect { alive: true }]
        );
        assert_eq!(hv.active_view(), &[peer(1), peer(2), peer(4)]);
        assert!(hv.passive_view().contains(&peer(3)));
        // So do a walk's end and a high-priority NEIGHBOR: the joiner goes.
        hv.handle_message(
            ms(11),
            peer(1),
            Message::Neighbor {
                priority: Priority::High,
            },
        );
        hv.handle_message(
            ms(12),
            peer(5),
            Message::Neighbor {
                priority: Priority::High,
            },
        );
        let out = drain(&mut hv);
        assert_eq!(
            sends_to(&out, &peer(4)),
            vec![Message::Disconnect { alive: true }]
        );
        assert_eq!(hv.active_view(), &[peer(1), peer(2), peer(5)]);
        assert_views(&hv);
    }

    #[test]
    fn contact_adds_joiner_replies_and_starts_walks() {
        let mut hv = node(0, 11);
        for i in 1..=3 {
            hv.handle_message(
                Time::ZERO,
                peer(i),
                Message::Neighbor {
                    priority: Priority::Low,
                },
            );
        }
        drain(&mut hv);
        hv.handle_message(ms(5), peer(9), Message::Join);
        let out = drain(&mut hv);
        assert_eq!(events(&out), vec![Event::NeighborUp(peer(9))]);
        assert_eq!(sends_to(&out, &peer(9)), vec![Message::JoinReply]);
        for i in 1..=3 {
            assert_eq!(
                sends_to(&out, &peer(i)),
                vec![Message::ForwardJoin {
                    joiner: peer(9),
                    ttl: 6
                }]
            );
        }
        // A retransmitted JOIN is answered again, without new walks or events.
        hv.handle_message(ms(9), peer(9), Message::Join);
        let out = drain(&mut hv);
        assert_eq!(
            out,
            vec![Output::Send {
                to: peer(9).id,
                message: Message::JoinReply
            }]
        );
    }

    #[test]
    fn forward_join_follows_algorithm_1() {
        let mut hv = node(0, 12);
        for i in 1..=3 {
            hv.handle_message(
                Time::ZERO,
                peer(i),
                Message::Neighbor {
                    priority: Priority::Low,
                },
            );
        }
        drain(&mut hv);
        // At hop PRWL the joiner enters the passive view; the walk goes on
        // to an active peer that is neither the sender nor the joiner.
        let joiner = peer(9);
        hv.handle_message(ms(1), peer(1), Message::ForwardJoin { joiner, ttl: 3 });
        let out = drain(&mut hv);
        assert!(hv.passive_view().contains(&joiner));
        assert!(events(&out).is_empty());
        let forwarded: Vec<&Output> = out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Send {
                        message: Message::ForwardJoin { ttl: 2, .. },
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(forwarded.len(), 1);
        assert!(sends_to(&out, &peer(1)).is_empty());
        // At TTL 0 the joiner becomes active and is asked to take us.
        hv.handle_message(ms(2), peer(2), Message::ForwardJoin { joiner, ttl: 0 });
        let out = drain(&mut hv);
        assert!(hv.is_active(&joiner.id));
        assert!(!hv.passive_view().contains(&joiner));
        assert_eq!(events(&out), vec![Event::NeighborUp(joiner)]);
        assert_eq!(
            sends_to(&out, &joiner),
            vec![Message::Neighbor {
                priority: Priority::High
            }]
        );
        // The joiner's acceptance changes nothing more.
        hv.handle_message(ms(3), joiner, Message::NeighborReply { accepted: true });
        assert!(drain(&mut hv).is_empty());
        // A walk about ourselves is ignored.
        hv.handle_message(
            ms(4),
            peer(1),
            Message::ForwardJoin {
                joiner: peer(0),
                ttl: 0,
            },
        );
        assert!(drain(&mut hv).is_empty());
        assert_views(&hv);
    }

    #[test]
    fn forward_join_ends_at_a_node_with_one_neighbour() {
        let mut hv = node(0, 13);
        befriend(&mut hv, &[1]);
        drain(&mut hv);
        hv.handle_message(
            ms(1),
            peer(1),
            Message::ForwardJoin {
                joiner: peer(5),
                ttl: 6,
            },
        );
        assert!(hv.is_active(&peer(5).id));
    }

    #[test]
    fn neighbor_priorities_and_eviction() {
        let config = Config {
            active_view_capacity: 2,
            ..Config::default()
        };
        let mut hv = node_with(0, 14, config);
        befriend(&mut hv, &[1, 2]);
        drain(&mut hv);
        // Full: low priority is refused and changes nothing.
        hv.handle_message(
            ms(1),
            peer(3),
            Message::Neighbor {
                priority: Priority::Low,
            },
        );
        let out = drain(&mut hv);
        assert_eq!(
            sends_to(&out, &peer(3)),
            vec![Message::NeighborReply { accepted: false }]
        );
        assert!(events(&out).is_empty());
        // High priority is accepted and evicts one neighbour into the
        // passive view, telling it so.
        hv.handle_message(
            ms(2),
            peer(4),
            Message::Neighbor {
                priority: Priority::High,
            },
        );
        let out = drain(&mut hv);
        assert_eq!(
            sends_to(&out, &peer(4)),
            vec![Message::NeighborReply { accepted: true }]
        );
        let evs = events(&out);
        assert_eq!(evs.len(), 2);
        let Event::NeighborDown(dropped) = evs[0] else {
            panic!("{evs:?}")
        };
        assert_eq!(evs[1], Event::NeighborUp(peer(4)));
        let dropped = [peer(1), peer(2)]
            .into_iter()
            .find(|p| p.id == dropped)
            .unwrap();
        assert_eq!(
            sends_to(&out, &dropped),
            vec![Message::Disconnect { alive: true }]
        );
        assert!(hv.passive_view().contains(&dropped));
        assert_eq!(hv.active_view().len(), 2);
        assert_views(&hv);
    }

    #[test]
    fn disconnect_moves_to_passive_and_repairs_with_the_right_priority() {
        let mut hv = node(0, 15);
        befriend(&mut hv, &[1, 2]);
        drain(&mut hv);
        // Disconnect from a stranger is ignored.
        hv.handle_message(ms(1), peer(9), Message::Disconnect { alive: true });
        assert!(drain(&mut hv).is_empty());
        assert!(hv.passive_view().is_empty());
        // Peer 1 leaves alive: it becomes the only passive peer and is asked
        // back with low priority (peer 2 remains).
        hv.handle_message(ms(2), peer(1), Message::Disconnect { alive: true });
        let out = drain(&mut hv);
        assert_eq!(events(&out), vec![Event::NeighborDown(peer(1).id)]);
        assert_eq!(
            sends_to(&out, &peer(1)),
            vec![Message::Neighbor {
                priority: Priority::Low
            }]
        );
        hv.handle_message(ms(3), peer(1), Message::NeighborReply { accepted: false });
        drain(&mut hv);
        assert!(
            hv.passive_view().contains(&peer(1)),
            "a refusal keeps the candidate"
        );
        // Peer 2 leaves for good: nothing active, so priority is high.
        hv.handle_message(ms(4), peer(2), Message::Disconnect { alive: false });
        let out = drain(&mut hv);
        assert!(!hv.passive_view().contains(&peer(2)));
        assert_eq!(
            sends_to(&out, &peer(1)),
            vec![Message::Neighbor {
                priority: Priority::High
            }]
        );
        hv.handle_message(ms(5), peer(1), Message::NeighborReply { accepted: true });
        assert_eq!(events(&drain(&mut hv)), vec![Event::NeighborUp(peer(1))]);
        assert_eq!(hv.active_view(), &[peer(1)]);
    }

    #[test]
    fn leave_tells_every_neighbour_and_goes_quiet() {
        let mut hv = node(0, 17);
        befriend(&mut hv, &[1, 2, 3]);
        hv.handle_message(
            ms(1),
            peer(8),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: vec![peer(4), peer(5)],
            },
        );
        drain(&mut hv);
        hv.leave();
        let out = drain(&mut hv);
        for i in [1, 2, 3] {
            assert_eq!(
                sends_to(&out, &peer(i)),
                vec![Message::Disconnect { alive: false }],
                "peer {i} is told"
            );
            assert!(events(&out).contains(&Event::NeighborDown(peer(i).id)));
        }
        assert!(hv.active_view().is_empty() && hv.passive_view().is_empty());
        assert_eq!(hv.poll_timeout(), None, "no timers after leaving");
        hv.handle_timeout(secs(60));
        assert!(drain(&mut hv).is_empty(), "a node that left stays quiet");
        // The other side: a neighbour that left for good is forgotten.
        let mut other = node(1, 18);
        befriend(&mut other, &[0, 2]);
        drain(&mut other);
        other.handle_message(ms(2), peer(0), Message::Disconnect { alive: false });
        drain(&mut other);
        assert!(!other.active_view().contains(&peer(0)));
        assert!(!other.passive_view().contains(&peer(0)));
    }

    #[test]
    fn unanswered_neighbor_drops_the_candidate_and_tries_the_next() {
        let mut hv = node(0, 16);
        hv.handle_message(
            Time::ZERO,
            peer(8),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: vec![peer(1), peer(2)],
            },
        );
        hv.handle_timeout(Time::ZERO);
        let out = drain(&mut hv);
        let asked: Vec<Peer> = [peer(1), peer(2)]
            .into_iter()
            .filter(|p| !sends_to(&out, p).is_empty())
            .collect();
        // Empty active view: one high-priority request, the rest low.
        assert_eq!(asked.len(), 2);
        let priorities: Vec<Message> = asked.iter().flat_map(|p| sends_to(&out, p)).collect();
        assert!(priorities.contains(&Message::Neighbor {
            priority: Priority::High
        }));
        assert!(priorities.contains(&Message::Neighbor {
            priority: Priority::Low
        }));
        // No answers: both candidates are dropped at the deadline.
        let deadline = hv.poll_timeout().unwrap();
        assert!(deadline <= Config::default().request_timeout);
        hv.handle_timeout(Config::default().request_timeout);
        drain(&mut hv);
        assert!(hv.passive_view().is_empty());
        // A late acceptance is undone, not taken.
        hv.handle_message(secs(2), peer(1), Message::NeighborReply { accepted: true });
        let out = drain(&mut hv);
        assert_eq!(
            sends_to(&out, &peer(1)),
            vec![Message::Disconnect { alive: true }]
        );
        assert!(hv.active_view().is_empty());
    }

    #[test]
    fn silent_peer_is_pinged_then_failed_and_not_kept() {
        let mut hv = node(0, 17);
        befriend(&mut hv, &[1, 2]);
        drain(&mut hv);
        let mut now = Time::ZERO;
        let mut pings = 0;
        let mut failed_at = None;
        while now < secs(10) {
            now = hv.poll_timeout().unwrap();
            // Peer 2 keeps talking; peer 1 is silent.
            hv.handle_heard(now, &peer(2).id);
            hv.handle_timeout(now);
            let out = drain(&mut hv);
            pings += sends_to(&out, &peer(1))
                .iter()
                .filter(|m| matches!(m, Message::Ping { .. }))
                .count();
            assert!(sends_to(&out, &peer(2))
                .iter()
                .all(|m| !matches!(m, Message::Ping { .. })));
            if events(&out).contains(&Event::NeighborDown(peer(1).id)) {
                failed_at = Some(now);
            }
        }
        let failed_at = failed_at.expect("silent peer never failed");
        assert!(
            failed_at >= secs(3) && failed_at <= secs(4),
            "{failed_at:?}"
        );
        assert!(pings >= 2, "pings before failure: {pings}");
        assert_eq!(hv.active_view(), &[peer(2)]);
        assert!(hv.passive_view().is_empty());
    }

    #[test]
    fn ping_from_a_non_neighbour_gets_pong_and_disconnect() {
        let mut hv = node(0, 18);
        befriend(&mut hv, &[1]);
        drain(&mut hv);
        hv.handle_message(ms(1), peer(1), Message::Ping { nonce: 7 });
        assert_eq!(
            sends_to(&drain(&mut hv), &peer(1)),
            vec![Message::Pong { nonce: 7 }]
        );
        hv.handle_message(ms(2), peer(5), Message::Ping { nonce: 8 });
        assert_eq!(
            sends_to(&drain(&mut hv), &peer(5)),
            vec![
                Message::Pong { nonce: 8 },
                Message::Disconnect { alive: true }
            ]
        );
        assert!(!hv.is_active(&peer(5).id));
    }

    #[test]
    fn shuffle_is_forwarded_then_answered_and_integrated() {
        let mut hv = node(0, 19);
        for i in 1..=3 {
            hv.handle_message(
                Time::ZERO,
                peer(i),
                Message::Neighbor {
                    priority: Priority::Low,
                },
            );
        }
        hv.handle_message(
            Time::ZERO,
            peer(50),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: (20..25).map(peer).collect(),
            },
        );
        drain(&mut hv);
        let origin = peer(40);
        let peers: Vec<Peer> = [40, 41, 42, 1, 0].into_iter().map(peer).collect();
        // TTL left and several neighbours: forwarded, not to the sender.
        hv.handle_message(
            ms(1),
            peer(1),
            Message::Shuffle {
                origin,
                ttl: 4,
                peers: peers.clone(),
            },
        );
        let out = drain(&mut hv);
        assert_eq!(out.len(), 1);
        let Output::Send {
            to,
            message: Message::Shuffle { ttl: 3, .. },
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert!(*to == peer(2).id || *to == peer(3).id);
        // TTL 0: answered to the origin with as many passive peers, and
        // integrated without self or active peers.
        hv.handle_message(
            ms(2),
            peer(1),
            Message::Shuffle {
                origin,
                ttl: 0,
                peers,
            },
        );
        let out = drain(&mut hv);
        // The reply goes back to the hop the walk came from.
        assert!(sends_to(&out, &origin).is_empty(), "{out:?}");
        let replies = sends_to(&out, &peer(1));
        let [Message::ShuffleReply {
            origin: named,
            peers: reply,
        }] = replies.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(*named, origin.id);
        assert_eq!(reply.len(), 5);
        for p in reply {
            assert!((20..25).map(peer).any(|q| q == *p));
        }
        for i in [40, 41, 42] {
            assert!(hv.passive_view().contains(&peer(i)));
        }
        assert!(!hv.passive_view().contains(&peer(1)));
        assert_views(&hv);
    }

    #[test]
    fn shuffle_reply_retraces_the_walk_once_from_the_next_hop() {
        let mut hv = node(0, 21);
        befriend(&mut hv, &[1, 2]);
        drain(&mut hv);
        let origin = peer(40);
        let shuffle = |ttl| Message::Shuffle {
            origin,
            ttl,
            peers: vec![origin, peer(41)],
        };
        hv.handle_message(ms(1), peer(1), shuffle(3));
        let out = drain(&mut hv);
        assert_eq!(sends_to(&out, &peer(2)).len(), 1, "{out:?}");
        let reply = || Message::ShuffleReply {
            origin: origin.id,
            peers: vec![peer(42)],
        };
        // Not from the hop the walk went to: dropped.
        hv.handle_message(ms(2), peer(1), reply());
        hv.handle_message(ms(2), peer(9), reply());
        assert!(drain(&mut hv).is_empty());
        // From it: passed back to the hop the walk came from, once.
        hv.handle_message(ms(3), peer(2), reply());
        assert_eq!(
            drain(&mut hv),
            vec![Output::Send {
                to: peer(1).id,
                message: reply()
            }]
        );
        hv.handle_message(ms(4), peer(2), reply());
        assert!(drain(&mut hv).is_empty(), "one reply per walk");
        // Not integrated by a relay.
        assert!(!hv.passive_view().contains(&peer(42)));
        // Remembered for one shuffle interval only.
        hv.handle_message(ms(5), peer(1), shuffle(3));
        drain(&mut hv);
        let late = ms(5) + Config::default().shuffle_interval;
        hv.handle_message(late, peer(2), reply());
        assert!(!sends_to(&drain(&mut hv), &peer(1))
            .iter()
            .any(|m| *m == reply()));
    }

    #[test]
    fn relayed_shuffles_are_bounded() {
        let mut hv = node(0, 22);
        befriend(&mut hv, &[1, 2]);
        drain(&mut hv);
        for i in 0..3 * MAX_RELAYED_SHUFFLES {
            let origin = peer(100 + i);
            let shuffle = Message::Shuffle {
                origin,
                ttl: 3,
                peers: vec![origin],
            };
            hv.handle_message(ms(1), peer(1), shuffle);
        }
        drain(&mut hv);
        assert_eq!(hv.relayed.len(), MAX_RELAYED_SHUFFLES);
        // The newest are kept.
        let newest = peer(100 + 3 * MAX_RELAYED_SHUFFLES - 1).id;
        assert!(hv.relayed.iter().any(|r| r.origin == newest));
    }

    #[test]
    fn shuffle_reply_evicts_what_was_sent_first() {
        let config = Config {
            passive_view_capacity: 4,
            shuffle_passive_count: 2,
            ..Config::default()
        };
        let mut hv = node_with(0, 20, config);
        befriend(&mut hv, &[1]);
        hv.handle_message(
            Time::ZERO,
            peer(50),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: (10..14).map(peer).collect(),
            },
        );
        drain(&mut hv);
        let shuffle_at = hv.next_shuffle.unwrap();
        hv.handle_timeout(shuffle_at);
        let out = drain(&mut hv);
        let sent = sends_to(&out, &peer(1));
        let Some(Message::Shuffle { peers, .. }) =
            sent.iter().find(|m| matches!(m, Message::Shuffle { .. }))
        else {
            panic!("{out:?}")
        };
        assert_eq!(peers[0], peer(0));
        let given: Vec<Peer> = peers[1..].to_vec();
        assert_eq!(given.len(), 2);
        hv.handle_message(
            shuffle_at,
            peer(30),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: vec![peer(30), peer(31)],
            },
        );
        drain(&mut hv);
        for p in &given {
            assert!(!hv.passive_view().contains(p), "sent entries go first");
        }
        assert!(hv.passive_view().contains(&peer(30)));
        assert!(hv.passive_view().contains(&peer(31)));
    }

    #[test]
    fn hostile_inputs_do_not_break_invariants() {
        let mut hv = node(0, 21);
        let me = peer(0);
        let t = ms(1);
        // Messages from ourselves are ignored.
        for m in [
            Message::Join,
            Message::Neighbor {
                priority: Priority::High,
            },
            Message::Ping { nonce: 1 },
        ] {
            hv.handle_message(t, me, m);
        }
        assert!(drain(&mut hv).is_empty());
        assert!(hv.active_view().is_empty());
        // Unsolicited JOINREPLY and refusals change nothing.
        hv.handle_message(t, peer(1), Message::JoinReply);
        hv.handle_message(t, peer(1), Message::NeighborReply { accepted: false });
        assert!(drain(&mut hv).is_empty());
        assert!(hv.active_view().is_empty());
        // A JOINREPLY from another peer than the contact is ignored.
        hv.join(t, peer(2));
        hv.handle_message(t, peer(3), Message::JoinReply);
        assert!(hv.active_view().is_empty());
        hv.handle_message(t, peer(2), Message::JoinReply);
        hv.handle_message(t, peer(2), Message::JoinReply);
        assert_eq!(hv.active_view(), &[peer(2)]);
        // Duplicated NEIGHBOR: one Up only.
        hv.handle_message(
            t,
            peer(4),
            Message::Neighbor {
                priority: Priority::High,
            },
        );
        hv.handle_message(
            t,
            peer(4),
            Message::Neighbor {
                priority: Priority::Low,
            },
        );
        let ups = events(&drain(&mut hv))
            .iter()
            .filter(|e| **e == Event::NeighborUp(peer(4)))
            .count();
        assert_eq!(ups, 1);
        // Oversized shuffles naming us, active peers and duplicates.
        let mut huge: Vec<Peer> = (100..1100).map(peer).collect();
        huge.insert(3, me);
        huge.insert(5, peer(2));
        huge.insert(7, peer(100));
        hv.handle_message(
            t,
            peer(2),
            Message::Shuffle {
                origin: peer(5),
                ttl: 0,
                peers: huge.clone(),
            },
        );
        let out = drain(&mut hv);
        for o in &out {
            if let Output::Send {
                message: Message::ShuffleReply { peers, .. },
                ..
            } = o
            {
                assert!(peers.len() <= MAX_SHUFFLE_PEERS);
            }
        }
        hv.handle_message(
            t,
            peer(9),
            Message::ShuffleReply {
                origin: peer(0).id,
                peers: huge,
            },
        );
        hv.handle_message(
            t,
            peer(9),
            Message::Shuffle {
                origin: me,
                ttl: 3,
                peers: vec![peer(1)],
            },
        );
        // Walks with absurd or zero TTL, naming us.
        hv.handle_message(t, peer(2), Message::ForwardJoin { joiner: me, ttl: 0 });
        hv.handle_message(
            t,
            peer(2),
            Message::ForwardJoin {
                joiner: peer(6),
                ttl: 255,
            },
        );
        hv.handle_message(
            t,
            peer(2),
            Message::Shuffle {
                origin: peer(7),
                ttl: 255,
                peers: vec![],
            },
        );
        drain(&mut hv);
        assert_views(&hv);
        assert!(hv.passive_view().iter().all(|p| p.id != me.id));
        // Timers still run and the queue drains.
        for s in 1..40 {
            hv.handle_timeout(secs(s));
            drain(&mut hv);
            assert_views(&hv);
        }
    }

    #[test]
    fn only_a_forward_join_hands_its_record_to_the_address_book() {
        let records = |m: &Message| m.peer_records().copied().collect::<Vec<Peer>>();
        let joiner = peer(1);
        assert_eq!(
            records(&Message::ForwardJoin { joiner, ttl: 3 }),
            vec![joiner]
        );
        let shuffle = Message::Shuffle {
            origin: peer(2),
            ttl: 1,
            peers: vec![peer(2), peer(3), peer(4)],
        };
        let reply = Message::ShuffleReply {
            origin: peer(0).id,
            peers: vec![peer(5), peer(6)],
        };
        for m in [
            shuffle,
            reply,
            Message::Join,
            Message::JoinReply,
            Message::Neighbor {
                priority: Priority::High,
            },
            Message::NeighborReply { accepted: true },
            Message::Disconnect { alive: true },
            Message::Ping { nonce: 1 },
            Message::Pong { nonce: 1 },
        ] {
            assert!(records(&m).is_empty(), "{m:?}");
        }
    }

    #[test]
    fn timers_start_with_the_first_input_at_random_phases() {
        let mut a = node(0, 22);
        let mut b = node(1, 22);
        assert_eq!(a.poll_timeout(), None);
        a.handle_heard(secs(100), &peer(5).id);
        b.handle_heard(secs(100), &peer(5).id);
        let (ta, tb) = (a.poll_timeout().unwrap(), b.poll_timeout().unwrap());
        assert!(ta >= secs(100) && ta <= secs(101));
        assert_ne!(ta, tb);
        assert!(drain(&mut a).is_empty());
    }

    #[test]
    #[should_panic(expected = "failure_timeout")]
    fn invalid_config_is_rejected() {
        let config = Config {
            failure_timeout: ms(10),
            ..Config::default()
        };
        node_with(0, 23, config);
    }
}
