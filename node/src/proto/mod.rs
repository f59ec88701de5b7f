//! Sans-IO protocol cores. Each is a deterministic state machine: inputs are
//! `handle_*` methods that take the current time, outputs are drained with
//! `poll_*` methods, and the earliest timer is given by `poll_timeout`; the
//! [`Core`] trait is that shape, and every core implements it so that the
//! node composes them generically. Each core owns its messages and their
//! codec (its `message.rs`).
//!
//! Cores address peers by [`PeerId`](crate::PeerId) only: every message out
//! is `Send { to: PeerId, .. }`, and turning the id into an address is the
//! transport's job. Peer records ([`Peer`](crate::Peer): id, address, relay)
//! are data where a protocol carries them (HyParView's views and shuffles,
//! Kademlia's routing table and responses, GossipSub's peer exchange); the
//! messages that carry them list with `peer_records()` those the node must
//! hand the transport's address book before the core answers; a core hands
//! over the records it keeps when it sends (`record_of`).

pub mod flood;
pub mod gossipsub;
pub mod hyparview;
pub mod kad;
pub mod knowledge;
pub mod plumtree;

use crate::{Peer, PeerId, Time};

/// An output of a core, drained with [`Core::poll_output`]: a message for
/// a peer, or an event for the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Output<M, E> {
    Send { to: PeerId, message: M },
    Event(E),
}

/// What every core is to the node that composes them (the shape of
/// iroh-gossip's layered state machines: each core's outputs become the
/// node's through `From` conversions, so the node drives every core the
/// same way).
///
/// Every input takes `now`; after any input the node drains
/// [`Core::poll_output`] until `None`, and calls [`Core::handle_timeout`]
/// once `now` reaches [`Core::poll_timeout`]. The neighbour inputs come
/// from the membership layer (HyParView's active view); a core that needs
/// none keeps the defaults.
pub trait Core {
    /// The protocol's messages.
    type Message;
    /// What the core tells the node.
    type Event;

    /// Whether a message of this protocol shows the membership layer that
    /// its sender is alive.
    const SHOWS_LIVENESS: bool = true;

    /// A message from an authenticated peer (`from` as the transport knows
    /// it).
    fn handle_message(&mut self, now: Time, from: Peer, message: Self::Message);
    /// `peer` entered the membership layer's active view.
    fn handle_neighbor_up(&mut self, _now: Time, _peer: Peer) {}
    /// `peer` left the membership layer's active view.
    fn handle_neighbor_down(&mut self, _now: Time, _peer: &PeerId) {}
    /// Before each timeout: the peers the membership layer knows but has
    /// not made neighbours (its passive view), for a core that looks for
    /// peers beyond its neighbours.
    fn handle_candidates(&mut self, _now: Time, _passive: &[Peer]) {}
    /// Fire every timer due at or before `now`.
    fn handle_timeout(&mut self, now: Time);
    /// The next output.
    fn poll_output(&mut self) -> Option<Output<Self::Message, Self::Event>>;
    /// When [`Core::handle_timeout`] must next be called.
    fn poll_timeout(&self) -> Option<Time>;
    /// The record of `peer`, when the core holds one (for the transport,
    /// when its address book has forgotten the peer).
    fn record_of(&self, _peer: &PeerId) -> Option<&Peer> {
        None
    }
    /// The record of `peer` this core vouches for when it sends to it: the
    /// peer is reachable at its address without a relay, whatever older
    /// path the transport holds for it (see `Transport::send_vouched`).
    /// `None` (the default): the message is routed by id.
    fn vouched_record(&self, _peer: &PeerId) -> Option<&Peer> {
        None
    }
}
