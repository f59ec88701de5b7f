//! HyParView membership (Leitão, Pereira, Rodrigues, "HyParView: a membership
//! protocol for reliable gossip-based broadcast", DSN 2007).
//!
//! SKELETON: the types and signatures below are the contract with the rest of
//! the node; the bodies are being written.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;

use crate::{Peer, PeerId, Time};

/// HyParView settings. Defaults from the paper unless said otherwise.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Active view capacity (paper §5: log10(n)+1 = 5 for n = 10,000).
    pub active_view_capacity: usize,
    /// Passive view capacity (paper §5: k·(log10(n)+1) = 30).
    pub passive_view_capacity: usize,
    /// Active random walk length (ARWL, paper §5: 6).
    pub active_random_walk_length: u8,
    /// Passive random walk length (PRWL, paper §5: 3).
    pub passive_random_walk_length: u8,
    /// Active-view peers sent in a shuffle (ka, paper §5: 3).
    pub shuffle_active_count: usize,
    /// Passive-view peers sent in a shuffle (kp, paper §5: 4).
    pub shuffle_passive_count: usize,
    /// TTL of the shuffle random walk (paper: ARWL; 6).
    pub shuffle_random_walk_length: u8,
    /// Period of the shuffle (the paper's cycle; Grove's choice: 10 s).
    pub shuffle_interval: Duration,
    /// How often an active peer that has been silent is pinged (Grove: 1 s;
    /// over datagrams there is no TCP reset to reveal a dead peer).
    pub keepalive_interval: Duration,
    /// Silence after which an active peer is declared failed (Grove: 3 s).
    pub failure_timeout: Duration,
    /// How long a NEIGHBOR or JOIN request waits for its answer before the
    /// next passive candidate is tried (Grove: 1 s).
    pub request_timeout: Duration,
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
        }
    }
}

/// Whether a NEIGHBOR request must be accepted (the requester has no active
/// peer left) or may be refused when the active view is full (paper §4.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Priority {
    High,
    Low,
}

/// HyParView wire messages. The sender's id and address come from the
/// datagram (header and UDP source), so messages only carry third parties.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// A new node asks the contact to let it in.
    Join,
    /// The contact's answer to JOIN: the joiner adds the contact to its
    /// active view (Grove's addition: a joiner bootstraps from an address and
    /// learns the contact's id from this reply).
    JoinReply,
    /// Random walk announcing a joiner.
    ForwardJoin { joiner: Peer, ttl: u8 },
    /// Ask to become active neighbours.
    Neighbor { priority: Priority },
    /// Answer to NEIGHBOR.
    NeighborReply { accepted: bool },
    /// The sender dropped us from its active view; `alive` says the sender
    /// is still running (we keep it in the passive view).
    Disconnect { alive: bool },
    /// Shuffle random walk started by `origin` with a sample of its views.
    Shuffle { origin: Peer, ttl: u8, peers: Vec<Peer> },
    /// Answer to a shuffle with a sample of the receiver's passive view.
    ShuffleReply { peers: Vec<Peer> },
    /// Liveness probe of an active peer.
    Ping { nonce: u32 },
    /// Answer to PING.
    Pong { nonce: u32 },
}

/// Upper bound on the peers in one SHUFFLE or SHUFFLE-REPLY on the wire.
pub const MAX_SHUFFLE_PEERS: usize = 64;

/// What the membership layer tells the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// `peer` entered the active view.
    NeighborUp(Peer),
    /// `peer` left the active view (failed, disconnected or evicted).
    NeighborDown(PeerId),
}

/// An output of the core, drained with [`HyParView::poll_output`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Output {
    Send { to: SocketAddr, message: Message },
    Event(Event),
}

/// The HyParView state machine of one node.
#[derive(Debug)]
pub struct HyParView {
    _private: (),
}

impl HyParView {
    pub fn new(_me: Peer, _config: Config, _rng: ChaCha8Rng) -> Self {
        todo!()
    }

    // ---- getters ----

    pub fn me(&self) -> &Peer {
        todo!()
    }
    pub fn active_view(&self) -> &[Peer] {
        todo!()
    }
    pub fn passive_view(&self) -> &[Peer] {
        todo!()
    }
    pub fn is_active(&self, _peer: &PeerId) -> bool {
        todo!()
    }

    // ---- inputs ----

    /// Join the overlay through a contact known only by address.
    pub fn join(&mut self, _now: Time, _contact: SocketAddr) {
        todo!()
    }
    /// A message from `from` (id from the datagram header, address from the
    /// UDP source).
    pub fn handle_message(&mut self, _now: Time, _from: Peer, _message: Message) {
        todo!()
    }
    /// Any valid datagram from `from` arrived (it is alive).
    pub fn handle_heard(&mut self, _now: Time, _from: &PeerId) {
        todo!()
    }
    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, _now: Time) {
        todo!()
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
}
