//! Sans-IO protocol cores. Each is a deterministic state machine: inputs are
//! `handle_*` methods that take the current time, outputs are drained with
//! `poll_*` methods, and the earliest timer is given by `poll_timeout`.
//!
//! Cores address peers by [`PeerId`](crate::PeerId) only: every message out
//! is `Send { to: PeerId, .. }`, and turning the id into an address is the
//! transport's job. Peer records ([`Peer`](crate::Peer): id, address, relay)
//! are data where a protocol carries them (HyParView's views and shuffles,
//! Kademlia's routing table and responses, GossipSub's peer exchange); the
//! messages that carry them list them with `peer_records()`, for the node
//! to hand the transport's address book.

pub mod flood;
pub mod gossipsub;
pub mod hyparview;
pub mod kad;
pub mod knowledge;
pub mod plumtree;
