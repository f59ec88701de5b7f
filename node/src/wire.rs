//! The datagram encoding: versioned, length-bounded, and total: decoding
//! any byte string returns a value or a [`DecodeError`], never a panic.
//!
//! SKELETON: the types and signatures below are the contract; bodies are
//! being written.

use crate::proto::{hyparview, plumtree};
use crate::PeerId;

/// Protocol version carried in every datagram.
pub const VERSION: u8 = 1;
/// Largest datagram Grove sends or accepts, in bytes.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// Every wire message of the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    HyParView(hyparview::Message),
    Plumtree(plumtree::Message),
}

/// One datagram: who sent it and what it says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Datagram {
    pub from: PeerId,
    pub message: Message,
}

/// The class of a datagram, read from its header alone (for traffic
/// accounting by an observer of the network).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// Carries a broadcast payload (Plumtree/flood GOSSIP).
    Payload,
    /// Anything else (membership, IHAVE, GRAFT, PRUNE, keep-alive).
    Control,
}

/// Why a datagram could not be decoded.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is larger than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("datagram ended early while reading {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("unsupported protocol version {0} (this node speaks {VERSION})")]
    Version(u8),
    #[error("unknown message tag {tag:#04x} at byte {offset}")]
    UnknownTag { tag: u8, offset: usize },
    #[error("{what} is {value}, over the limit of {max}")]
    OverLimit { what: &'static str, value: usize, max: usize },
    #[error("invalid {what} at byte {offset}")]
    Invalid { what: &'static str, offset: usize },
    #[error("{extra} trailing bytes after the message")]
    Trailing { extra: usize },
}

/// Why a datagram could not be encoded.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{what} is {value}, over the limit of {max}")]
    OverLimit { what: &'static str, value: usize, max: usize },
}

/// Append the encoding of `datagram` to `out`.
pub fn encode(_datagram: &Datagram, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
    todo!()
}

/// Decode one datagram.
pub fn decode(_bytes: &[u8]) -> Result<Datagram, DecodeError> {
    todo!()
}

/// Classify a datagram from its header without decoding it.
pub fn classify(_bytes: &[u8]) -> Option<Class> {
    todo!()
}

/// The broadcast id of a GOSSIP datagram, read without decoding the rest.
pub fn gossip_id(_bytes: &[u8]) -> Option<plumtree::MsgId> {
    todo!()
}
