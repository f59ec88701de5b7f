//! Flooding over the active view: on first receipt forward to every
//! neighbour but the sender (the dissemination used in the HyParView paper's
//! experiments, §5). Shares [`super::plumtree::Message::Gossip`] on the wire.
//!
//! SKELETON: signatures are the contract; bodies are being written.

use std::time::Duration;

use bytes::Bytes;

use super::plumtree::{Event, Message, MsgId, Output};
use crate::{Peer, PeerId, Time};

/// Flooding settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How long a message id is remembered as seen (Grove: 120 s).
    pub seen_ttl: Duration,
    /// Most ids remembered as seen (bounded; oldest dropped first).
    pub seen_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seen_ttl: Duration::from_secs(120),
            seen_capacity: 16384,
        }
    }
}

/// The flooding state machine of one node.
#[derive(Debug)]
pub struct Flood {
    _private: (),
}

impl Flood {
    pub fn new(_me: PeerId, _config: Config) -> Self {
        todo!()
    }
    pub fn broadcast(&mut self, _now: Time, _payload: Bytes) -> MsgId {
        todo!()
    }
    pub fn handle_neighbor_up(&mut self, _now: Time, _peer: Peer) {
        todo!()
    }
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
        let _ = (Event::Delivered {
            id: MsgId([0; 32]),
            hops: 0,
            from: None,
            payload: Bytes::new(),
        },);
        todo!()
    }
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
}
