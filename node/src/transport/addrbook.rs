//! The address book: where each known peer was last seen, and which peer
//! each address belongs to.
//!
//! The cores address peers by [`PeerId`]; the transport turns an id into
//! an address through this book. Entries come from two kinds of source,
//! kept apart because they are trusted differently:
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
//! The book is a cache, not the node's memory of the network: the cores
//! keep the records they chose (views, routing tables, lookups), and the
//! node hands the transport a core's record when it sends to a peer the
//! book has forgotten ([`crate::node::Node`]). So both halves are small:
//! hearsay holds the last [`HEARSAY_CAPACITY`] records heard (what a reply
//! or a lookup step is about to use) for [`HEARSAY_MAX_AGE`], authenticated entries at most
//! `capacity` peers, each forgotten `max_age` after it was last seen (the
//! sessions' idle timeout). Eviction is least recently seen first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Peer, PeerId, Time};

/// Hearsay records kept (the most recent). The node hints every record
/// a message carries (up to 16 in a SHUFFLE), and a record given to
/// [`crate::node::Node::connect`], which no core keeps, must outlive the
/// messages that arrive while its handshake and hole punch run: 8 lost a
/// direct path in the NAT matrix test (`sim/tests/traversal.rs`), 8 also
/// broke residential-95 while a SHUFFLEREPLY went to its SHUFFLE's origin.
pub const HEARSAY_CAPACITY: usize = 32;

/// How long a hearsay record is kept: it bridges a moment (a handshake, a
/// hole punch), and an idle node then holds none.
pub const HEARSAY_MAX_AGE: Duration = Duration::from_secs(30);

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
    /// Addresses seen on authenticated datagrams.
    known: BTreeMap<PeerId, Entry>,
    /// Records heard from third parties, the most recent
    /// [`HEARSAY_CAPACITY`], oldest first (a short list: scanned).
    heard: Vec<(PeerId, Entry)>,
    capacity: usize,
    max_age: Duration,
    /// When the next sweep for entries older than `max_age` is due.
    next_sweep: Time,
}

impl AddressBook {
    /// A book of at most `capacity` authenticated peers, each forgotten
    /// `max_age` after it was last seen.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        assert!(capacity > 0, "an address book holds at least one peer");
        AddressBook {
            known: BTreeMap::new(),
            heard: Vec::new(),
            capacity,
            max_age,
            next_sweep: Time::ZERO,
        }
    }

    /// The entry of `peer`: its authenticated address, else hearsay.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.known.get(peer).or_else(|| self.heard_entry(peer))
    }

    fn heard_entry(&self, peer: &PeerId) -> Option<&Entry> {
        self.heard.iter().find(|(id, _)| id == peer).map(|(_, e)| e)
    }

    fn take_heard(&mut self, peer: &PeerId) -> Option<Entry> {
        let i = self.heard.iter().position(|(id, _)| id == peer)?;
        let (_, entry) = self.heard.remove(i);
        crate::compact::release_if_empty(&mut self.heard);
        Some(entry)
    }

    /// The peer last seen at `addr` (authenticated first, then the most
    /// recent hearsay). A linear scan: the book is small and this is asked
    /// for contacts and NAT messages, not per datagram.
    pub fn peer_at(&self, addr: SocketAddr) -> Option<PeerId> {
        let known = self
            .known
            .iter()
            .filter(|(_, e)| e.addr == addr)
            .max_by_key(|(_, e)| e.last_seen)
            .map(|(id, _)| *id);
        // `heard` is oldest first.
        known.or_else(|| {
            self.heard
                .iter()
                .rev()
                .find(|(_, e)| e.addr == addr)
                .map(|(id, _)| *id)
        })
    }

    /// Peers in the book, both kinds.
    pub fn len(&self) -> usize {
        self.known.len() + self.heard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty() && self.heard.is_empty()
    }

    /// An authenticated datagram from `peer` came from `addr`.
    pub fn confirm(&mut self, now: Time, peer: PeerId, addr: SocketAddr) {
        self.sweep(now);
        if let Some(e) = self.known.get_mut(&peer) {
            e.addr = addr;
            e.last_seen = now;
            return;
        }
        let relay = self.take_heard(&peer).and_then(|e| e.relay);
        if self.known.len() >= self.capacity {
            evict_oldest(&mut self.known);
        }
        let entry = Entry {
            addr,
            relay,
            authenticated: true,
            last_seen: now,
        };
        self.known.insert(peer, entry);
    }

    /// A peer record heard from a third party (or given by the
    /// application): fills in what we do not know, and a relay.
    pub fn hint(&mut self, now: Time, record: &Peer) {
        if let Some(e) = self.known.get_mut(&record.id) {
            if record.relay.is_some() && e.relay.is_none() {
                e.relay = record.relay;
            }
            return;
        }
        let relay = match self.take_heard(&record.id) {
            Some(e) if e.addr == record.addr => record.relay.or(e.relay),
            _ => record.relay,
        };
        if self.heard.len() >= HEARSAY_CAPACITY {
            self.heard.remove(0);
        }
        let entry = Entry {
            addr: record.addr,
            relay,
            authenticated: false,
            last_seen: now,
        };
        self.heard.push((record.id, entry));
    }

    /// The relay `peer` told us itself (its HELLO) it holds a reservation
    /// with.
    pub fn set_relay(&mut self, peer: &PeerId, relay: Option<SocketAddr>) {
        if let Some(e) = self.known.get_mut(peer) {
            e.relay = relay;
        } else if let Some((_, e)) = self.heard.iter_mut().find(|(id, _)| id == peer) {
            e.relay = relay;
        }
    }

    /// Forget `peer`.
    pub fn remove(&mut self, peer: &PeerId) {
        self.known.remove(peer);
        self.take_heard(peer);
    }

    /// Forget authenticated entries not seen for `max_age` and hearsay
    /// older than [`HEARSAY_MAX_AGE`]; a scan at most every quarter of the
    /// shorter.
    fn sweep(&mut self, now: Time) {
        if now < self.next_sweep {
            return;
        }
        let every = self.max_age.min(HEARSAY_MAX_AGE) / 4;
        self.next_sweep = now + every.max(Duration::from_millis(1));
        let max_age = self.max_age;
        self.known
            .retain(|_, e| now.saturating_sub(e.last_seen) < max_age);
        self.heard
            .retain(|(_, e)| now.saturating_sub(e.last_seen) < HEARSAY_MAX_AGE);
        crate::compact::release_if_empty(&mut self.heard);
    }
}

/// Drop the least recently seen entry of `map`.
fn evict_oldest(map: &mut BTreeMap<PeerId, Entry>) {
    let victim = map
        .iter()
        .min_by_key(|(_, e)| e.last_seen)
        .map(|(id, _)| *id);
    if let Some(id) = victim {
        map.remove(&id);
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

    fn book(capacity: usize) -> AddressBook {
        AddressBook::new(capacity, Duration::from_secs(180))
    }
    fn secs(s: u64) -> Time {
        Duration::from_secs(s)
    }

    #[test]
    fn hearsay_never_overwrites_an_authenticated_address() {
        let mut book = book(8);
        book.confirm(Time::ZERO, id(1), addr(1));
        book.hint(Time::ZERO, &Peer::new(id(1), addr(66)));
        assert_eq!(book.get(&id(1)).unwrap().addr, addr(1));
        assert_eq!(book.peer_at(addr(1)), Some(id(1)));
        assert_eq!(book.peer_at(addr(66)), None);
    }

    #[test]
    fn an_authenticated_datagram_moves_the_peer() {
        let mut book = book(8);
        book.hint(Time::ZERO, &Peer::new(id(1), addr(1)));
        assert!(!book.get(&id(1)).unwrap().authenticated);
        book.confirm(secs(1), id(1), addr(2));
        assert_eq!(book.get(&id(1)).unwrap().addr, addr(2));
        assert!(book.get(&id(1)).unwrap().authenticated);
        assert_eq!(book.peer_at(addr(1)), None);
        assert_eq!(book.peer_at(addr(2)), Some(id(1)));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn an_address_taken_over_by_another_peer_names_the_newcomer() {
        let mut book = book(8);
        book.confirm(Time::ZERO, id(2), addr(1));
        book.confirm(secs(1), id(1), addr(1));
        assert_eq!(book.peer_at(addr(1)), Some(id(1)));
        // Hearsay cannot take an authenticated address.
        book.hint(secs(2), &Peer::new(id(3), addr(1)));
        assert_eq!(book.peer_at(addr(1)), Some(id(1)));
    }

    #[test]
    fn authenticated_entries_are_bounded_and_age_out() {
        let mut book = book(3);
        book.confirm(Time::ZERO, id(1), addr(1));
        book.confirm(secs(1), id(3), addr(3));
        book.confirm(secs(9), id(4), addr(4));
        book.confirm(secs(10), id(5), addr(5));
        assert_eq!(book.len(), 3);
        assert!(book.get(&id(1)).is_none(), "the least recently seen goes");
        // Seen again, id 3 stays; the others age out after 180 s.
        book.confirm(secs(150), id(3), addr(3));
        book.confirm(secs(200), id(6), addr(6));
        assert!(book.get(&id(4)).is_none() && book.get(&id(5)).is_none());
        assert!(book.get(&id(3)).is_some() && book.get(&id(6)).is_some());
    }

    #[test]
    fn hearsay_ages_out_and_gives_its_memory_back() {
        let mut book = book(8);
        for i in 1..=10u8 {
            book.hint(Time::ZERO, &Peer::new(id(i), addr(i)));
        }
        book.hint(secs(20), &Peer::new(id(11), addr(11)));
        // Sweeps ride on authenticated datagrams, at most every 7.5 s.
        book.confirm(secs(29), id(0), addr(0));
        assert_eq!(book.len(), 12, "younger than 30 s");
        book.confirm(secs(31), id(0), addr(0));
        assert_eq!(book.len(), 12, "no sweep due yet");
        book.confirm(secs(37), id(0), addr(0));
        assert_eq!(book.len(), 2, "the ten from time 0 are gone");
        assert!(book.get(&id(11)).is_some());
        book.confirm(secs(60), id(0), addr(0));
        assert!(book.get(&id(11)).is_none());
        assert_eq!(book.heard.capacity(), 0);
    }

    #[test]
    fn hearsay_keeps_only_the_latest_records_and_never_evicts_authenticated_ones() {
        let mut book = book(8);
        book.confirm(Time::ZERO, id(0), addr(0));
        for i in 1..=100u8 {
            book.hint(secs(u64::from(i)), &Peer::new(id(i), addr(i)));
        }
        assert_eq!(book.len(), 1 + HEARSAY_CAPACITY);
        assert!(book.get(&id(0)).unwrap().authenticated);
        assert!(book.get(&id(100)).is_some());
        assert!(book.get(&id(100 - HEARSAY_CAPACITY as u8)).is_none());
    }
}
