//! The address book: where each known peer was last seen, and which peer
//! each address belongs to.
//!
//! The cores address peers by [`PeerId`]; the transport turns an id into
//! an address through this book. Entries come from two kinds of source,
//! and the kind decides what may overwrite what:
//!
//! - **Authenticated** ([`AddressBook::confirm`]): a datagram from the peer
//!   opened under its session, from that address. It always wins: it is
//!   where the peer is now (a NAT rebinding or a new IP moves the entry).
//! - **Hearsay** ([`AddressBook::hint`]): a peer record in a message (a
//!   shuffle, a DHT reply), a bootstrap contact. It fills in a peer we know
//!   nothing of, and never overwrites an authenticated address: a forged
//!   record can cost at most a handshake to a wrong address, never a
//!   working path.
//!
//! Bounded by `capacity`: the least recently seen entry is forgotten first.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::{Peer, PeerId, Time};

/// What the book knows of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub addr: SocketAddr,
    /// The relay its record names, if any (hearsay or its own HELLO).
    pub relay: Option<SocketAddr>,
    /// The address was seen on an authenticated datagram.
    pub authenticated: bool,
    pub last_seen: Time,
}

/// Peer id to address and back, bounded.
#[derive(Debug)]
pub struct AddressBook {
    by_id: BTreeMap<PeerId, Entry>,
    by_addr: BTreeMap<SocketAddr, PeerId>,
    capacity: usize,
}

impl AddressBook {
    /// A book of at most `capacity` peers.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "an address book holds at least one peer");
        AddressBook {
            by_id: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            capacity,
        }
    }

    /// The entry of `peer`.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.by_id.get(peer)
    }

    /// The peer last seen at `addr`.
    pub fn peer_at(&self, addr: SocketAddr) -> Option<PeerId> {
        self.by_addr.get(&addr).copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// An authenticated datagram from `peer` came from `addr`.
    pub fn confirm(&mut self, now: Time, peer: PeerId, addr: SocketAddr) {
        let relay = self.by_id.get(&peer).and_then(|e| e.relay);
        self.put(
            peer,
            Entry {
                addr,
                relay,
                authenticated: true,
                last_seen: now,
            },
        );
    }

    /// A peer record heard from a third party (or given by the
    /// application): fills in what we do not know, and a relay.
    pub fn hint(&mut self, now: Time, record: &Peer) {
        match self.by_id.get_mut(&record.id) {
            Some(e) if e.authenticated => {
                if record.relay.is_some() && e.relay.is_none() {
                    e.relay = record.relay;
                }
            }
            Some(e) if e.addr == record.addr => {
                e.relay = record.relay.or(e.relay);
            }
            _ => {
                let entry = Entry {
                    addr: record.addr,
                    relay: record.relay,
                    authenticated: false,
                    last_seen: now,
                };
                self.put(record.id, entry);
            }
        }
    }

    /// The relay `peer` told us itself (its HELLO) it holds a reservation
    /// with.
    pub fn set_relay(&mut self, peer: &PeerId, relay: Option<SocketAddr>) {
        if let Some(e) = self.by_id.get_mut(peer) {
            e.relay = relay;
        }
    }

    /// Forget `peer`.
    pub fn remove(&mut self, peer: &PeerId) {
        if let Some(e) = self.by_id.remove(peer) {
            if self.by_addr.get(&e.addr) == Some(peer) {
                self.by_addr.remove(&e.addr);
            }
        }
    }

    fn put(&mut self, peer: PeerId, entry: Entry) {
        if let Some(old) = self.by_id.get(&peer) {
            if old.addr != entry.addr && self.by_addr.get(&old.addr) == Some(&peer) {
                self.by_addr.remove(&old.addr);
            }
        } else if self.by_id.len() >= self.capacity {
            self.evict();
        }
        // An address belongs to one peer: whoever was there before moved.
        if let Some(prev) = self.by_addr.insert(entry.addr, peer) {
            if prev != peer {
                if let Some(e) = self.by_id.get(&prev) {
                    // Hearsay never displaces an authenticated address.
                    let keep = e.authenticated && !entry.authenticated;
                    if e.addr == entry.addr && !keep {
                        self.by_id.remove(&prev);
                    } else {
                        self.by_addr.insert(entry.addr, prev);
                    }
                }
            }
        }
        self.by_id.insert(peer, entry);
    }

    /// Forget the least recently seen peer (hearsay before authenticated).
    fn evict(&mut self) {
        let victim = self
            .by_id
            .iter()
            .min_by_key(|(_, e)| (e.authenticated, e.last_seen))
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(i: u8) -> PeerId {
        PeerId([i; 32])
    }
    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    #[test]
    fn hearsay_never_overwrites_an_authenticated_address() {
        let mut book = AddressBook::new(8);
        book.confirm(Time::ZERO, id(1), addr(1));
        book.hint(Time::ZERO, &Peer::new(id(1), addr(66)));
        assert_eq!(book.get(&id(1)).unwrap().addr, addr(1));
        assert_eq!(book.peer_at(addr(1)), Some(id(1)));
        assert_eq!(book.peer_at(addr(66)), None);
    }

    #[test]
    fn an_authenticated_datagram_moves_the_peer() {
        let mut book = AddressBook::new(8);
        book.hint(Time::ZERO, &Peer::new(id(1), addr(1)));
        book.confirm(Time::ZERO, id(1), addr(2));
        assert_eq!(book.get(&id(1)).unwrap().addr, addr(2));
        assert_eq!(book.peer_at(addr(1)), None);
        assert_eq!(book.peer_at(addr(2)), Some(id(1)));
    }

    #[test]
    fn an_address_taken_over_by_another_peer_forgets_the_old_one() {
        let mut book = AddressBook::new(8);
        book.confirm(Time::ZERO, id(1), addr(1));
        book.confirm(Time::ZERO, id(2), addr(1));
        assert_eq!(book.peer_at(addr(1)), Some(id(2)));
        assert!(book.get(&id(1)).is_none());
        // Hearsay cannot take an authenticated address.
        book.hint(Time::ZERO, &Peer::new(id(3), addr(1)));
        assert_eq!(book.peer_at(addr(1)), Some(id(2)));
    }

    #[test]
    fn bounded_and_hearsay_goes_first() {
        let mut book = AddressBook::new(3);
        book.confirm(Time::ZERO, id(1), addr(1));
        book.hint(Duration::from_secs(5), &Peer::new(id(2), addr(2)));
        book.confirm(Duration::from_secs(1), id(3), addr(3));
        book.confirm(Duration::from_secs(9), id(4), addr(4));
        assert_eq!(book.len(), 3);
        assert!(book.get(&id(2)).is_none(), "hearsay evicted first");
        book.confirm(Duration::from_secs(10), id(5), addr(5));
        assert!(book.get(&id(1)).is_none(), "then the least recently seen");
    }
}
