//! Plumtree: epidemic broadcast trees (Leitão, Pereira, Rodrigues, "Epidemic
//! Broadcast Trees", SRDS 2007).
//!
//! SKELETON: the types and signatures below are the contract with the rest of
//! the node; the bodies are being written.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::{Peer, PeerId, Time};

/// A broadcast message id: 32 bytes (SHA-256 of origin, sequence, payload).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MsgId(pub [u8; 32]);

/// Largest broadcast payload accepted, in bytes (fits one datagram).
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Upper bound on the entries of one IHAVE on the wire.
pub const MAX_IHAVE_ENTRIES: usize = 32;

/// Plumtree settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Wait for the payload after the first IHAVE before sending GRAFT
    /// (paper §3.4 "timeout"; Grove: 500 ms, a few RTTs).
    pub graft_timeout_1: Duration,
    /// Wait after a GRAFT before grafting the next announcer (paper's
    /// second, shorter timeout; Grove: 250 ms).
    pub graft_timeout_2: Duration,
    /// Delay before queued IHAVEs are flushed, batching announcements
    /// (paper §3.5 lazy-push policy; Grove: 50 ms).
    pub ihave_delay: Duration,
    /// Tree optimisation: replace an eager link when a lazy announcer is this
    /// many hops better (paper §3.8 threshold; 3).
    pub optimization_threshold: u16,
    /// How long a received payload is kept to answer GRAFTs (Grove: 30 s).
    pub message_cache_ttl: Duration,
    /// Most payloads kept in the cache (bounded; oldest dropped first).
    pub message_cache_capacity: usize,
    /// How long a message id is remembered as seen (Grove: 120 s).
    pub seen_ttl: Duration,
    /// Most ids remembered as seen (bounded; oldest dropped first).
    pub seen_capacity: usize,
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
        }
    }
}

/// Broadcast wire messages (shared with [`super::flood`], which only uses
/// `Gossip`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// The payload; `hops` is 1 when sent by the origin.
    Gossip { id: MsgId, hops: u16, payload: Bytes },
    /// Lazy announcement of payloads the sender has: (id, hops).
    IHave { entries: Vec<(MsgId, u16)> },
    /// Ask for `id` and make the link eager.
    Graft { id: MsgId },
    /// Make the link lazy.
    Prune,
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
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Output {
    Send { to: SocketAddr, message: Message },
    Event(Event),
}

/// The id of the `seq`-th broadcast of `origin` with `payload`.
pub fn message_id(origin: &PeerId, seq: u64, payload: &[u8]) -> MsgId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(payload);
    MsgId(h.finalize().into())
}

/// The Plumtree state machine of one node.
#[derive(Debug)]
pub struct Plumtree {
    _private: (),
}

impl Plumtree {
    pub fn new(_me: PeerId, _config: Config) -> Self {
        todo!()
    }

    pub fn eager_peers(&self) -> impl Iterator<Item = &Peer> + '_ {
        std::iter::empty()
    }
    pub fn lazy_peers(&self) -> impl Iterator<Item = &Peer> + '_ {
        std::iter::empty()
    }

    /// Broadcast `payload` (at most [`MAX_PAYLOAD_BYTES`]); returns its id.
    pub fn broadcast(&mut self, _now: Time, _payload: Bytes) -> MsgId {
        todo!()
    }
    /// A new active-view neighbour: it starts in the eager set.
    pub fn handle_neighbor_up(&mut self, _now: Time, _peer: Peer) {
        todo!()
    }
    /// A neighbour left the active view.
    pub fn handle_neighbor_down(&mut self, _now: Time, _peer: &PeerId) {
        todo!()
    }
    pub fn handle_message(&mut self, _now: Time, _from: Peer, _message: Message) {
        todo!()
    }
    pub fn handle_timeout(&mut self, _now: Time) {
        todo!()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
}
