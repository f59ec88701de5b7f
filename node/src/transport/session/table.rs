//! The sessions of one node, found by peer or by receiver index in one
//! step each.
//!
//! A session lives in a slot of a vector; its local indices carry the slot
//! number in their low 16 bits ([`Config::max_sessions`] is at most 65,536)
//! and random bits above. A datagram's receiver index therefore leads
//! straight to its session (one load, then the full index compared with
//! the session's), where a map from index to peer and a map from peer to
//! session took two tree searches, each a cache miss or two on a node
//! whose state is cold when its datagram arrives. The map from peer to
//! slot serves the send path and keeps every walk over the sessions in
//! peer order (the sweep, the least-recently-active choice), as before.
//!
//! Indices are not secrets (WireGuard's are random only so as not to
//! collide); a forged index finds at most a slot, and the datagram still
//! has to open under that session's keys.
//!
//! [`Config::max_sessions`]: super::Config::max_sessions

use std::collections::BTreeMap;

use super::peer::Session;
use crate::PeerId;

/// The bits of a local index that name its slot.
const SLOT_BITS: u32 = 16;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// Most sessions a table can hold: one per slot number.
pub(super) const MAX_SLOTS: usize = 1 << SLOT_BITS;

#[derive(Default)]
pub(super) struct Table {
    by_peer: BTreeMap<PeerId, u16>,
    slots: Vec<Option<Box<Session>>>,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.by_peer.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    pub(super) fn contains(&self, peer: &PeerId) -> bool {
        self.by_peer.contains_key(peer)
    }

    pub(super) fn get(&self, peer: &PeerId) -> Option<&Session> {
        let slot = *self.by_peer.get(peer)?;
        self.slots[usize::from(slot)].as_deref()
    }

    pub(super) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Session> {
        let slot = *self.by_peer.get(peer)?;
        self.slots[usize::from(slot)].as_deref_mut()
    }

    /// The session in the slot `index` names. It may not hold `index` (a
    /// stale or forged one): the caller checks which of its key pairs or
    /// its handshake does, as it must anyway.
    pub(super) fn in_slot_of_mut(&mut self, index: u32) -> Option<&mut Session> {
        self.slots
            .get_mut((index & SLOT_MASK) as usize)?
            .as_deref_mut()
    }

    /// The session holding `index`, to look.
    #[cfg(test)]
    pub(super) fn by_index(&self, index: u32) -> Option<&Session> {
        self.slots
            .get((index & SLOT_MASK) as usize)?
            .as_deref()
            .filter(|s| s.indices().any(|i| i == index))
    }

    /// Put `session` (for `session.peer`, which has none) in a free slot;
    /// the caller keeps the table under [`MAX_SLOTS`].
    pub(super) fn insert(&mut self, session: Box<Session>) -> &mut Session {
        let peer = session.peer;
        debug_assert!(!self.by_peer.contains_key(&peer));
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                assert!(
                    self.slots.len() < MAX_SLOTS,
                    "max_sessions bounds the table"
                );
                crate::compact::push_exact(&mut self.slots, None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(session);
        self.by_peer.insert(peer, slot as u16);
        self.slots[slot].as_deref_mut().expect("just put")
    }

    pub(super) fn remove(&mut self, peer: &PeerId) -> Option<Box<Session>> {
        let slot = usize::from(self.by_peer.remove(peer)?);
        let session = self.slots[slot].take();
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        crate::compact::release_if_empty(&mut self.slots);
        session
    }

    /// Every session, in peer order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Session> + '_ {
        self.by_peer
            .values()
            .filter_map(|&slot| self.slots[usize::from(slot)].as_deref())
    }

    /// Every slot in use, in peer order.
    pub(super) fn slots_in_peer_order(&self) -> Vec<u16> {
        self.by_peer.values().copied().collect()
    }

    /// The session in `slot` (one [`Table::slots_in_peer_order`] named).
    pub(super) fn at_mut(&mut self, slot: u16) -> &mut Session {
        self.slots[usize::from(slot)]
            .as_deref_mut()
            .expect("a slot in use")
    }

    /// The slot of `peer`'s session.
    pub(super) fn slot(&self, peer: &PeerId) -> Option<u16> {
        self.by_peer.get(peer).copied()
    }
}

/// A local index in `slot`, its other bits from `draw` where `keep` is set
/// (the rest as `bits` says).
pub(super) fn index(slot: u16, draw: u32, keep: u32, bits: u32) -> u32 {
    (draw & keep & !SLOT_MASK) | (bits & !SLOT_MASK) | u32::from(slot)
}

impl std::ops::Index<&PeerId> for Table {
    type Output = Session;

    fn index(&self, peer: &PeerId) -> &Session {
        self.get(peer).expect("a session for this peer")
    }
}
