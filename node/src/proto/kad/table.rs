//! The routing table: 256 k-buckets by common prefix length with our key
//! (Kademlia §2.2). Least-recently-seen first; a full bucket keeps its
//! oldest entry unless it fails a ping (§2.2: "live nodes are never removed
//! from the list"), holding at most one newcomer aside meanwhile.
//!
//! Diversity limits (after go-libp2p-kbucket's peer diversity filter): per
//! bucket, at most `max_per_ip` entries on one IP address and
//! `max_per_subnet` on one /24 (IPv4) or /48 (IPv6), so that one host or
//! network cannot fill a bucket with made-up identities.

use std::net::{IpAddr, SocketAddr};

use super::key::Key;
use crate::{Peer, PeerId, Time};

#[derive(Clone, Debug)]
pub struct Entry {
    pub peer: Peer,
    pub key: Key,
    pub last_seen: Time,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// A newcomer waiting for the oldest entry's ping, and the ping's
    /// deadline.
    pending: Option<Box<(Entry, Time)>>,
    /// When a lookup last went through this bucket's range.
    last_refresh: Time,
}

/// What [`Table::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Known already; moved to the most recently seen end.
    Updated,
    Added,
    /// The bucket is full: ping `oldest`; the newcomer waits for the answer.
    PingOldest(Peer),
    /// The bucket is full and a newcomer is already waiting.
    Full,
    /// Over a diversity limit.
    Rejected(&'static str),
    /// Our own key.
    Ourselves,
}

/// A change to the table's entries, as the core reports it
/// ([`super::Event::Table`]): what lets an observer follow a table's size
/// without looking inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added(PeerId),
    Removed(PeerId),
}

/// Table limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub k: usize,
    pub max_per_ip: usize,
    pub max_per_subnet: usize,
}

pub struct Table {
    local: Key,
    /// By common prefix length, grown up to the deepest one used (a
    /// network of n servers uses about log2(n) of the 256).
    buckets: Vec<Bucket>,
    limits: Limits,
    /// Buckets with a newcomer pending.
    pending: usize,
}

fn subnet(addr: &SocketAddr) -> (u8, [u8; 6]) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            (4, [o[0], o[1], o[2], 0, 0, 0])
        }
        IpAddr::V6(ip) => {
            let o = ip.octets();
            (6, [o[0], o[1], o[2], o[3], o[4], o[5]])
        }
    }
}

impl Table {
    pub fn new(local: Key, limits: Limits) -> Self {
        Table {
            local,
            buckets: Vec::new(),
            limits,
            pending: 0,
        }
    }

    /// The bucket of `key`: its common prefix length with ours (None for
    /// our own key).
    fn index(&self, key: &Key) -> Option<usize> {
        let cpl = self.local.common_prefix_len(key) as usize;
        (cpl < 256).then_some(cpl)
    }

    /// `peer` was heard from directly at `now`.
    pub fn insert(&mut self, now: Time, peer: Peer, ping_deadline: Time) -> Insert {
        let key = Key::of_peer(&peer.id);
        let Some(b) = self.index(&key) else {
            return Insert::Ourselves;
        };
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, Bucket::default);
        }
        let limits = self.limits;
        let bucket = &mut self.buckets[b];
        if let Some(pos) = bucket.entries.iter().position(|e| e.peer.id == peer.id) {
            let mut e = bucket.entries.remove(pos);
            e.last_seen = now;
            e.peer = peer;
            bucket.entries.push(e);
            return Insert::Updated;
        }
        let same_ip = bucket
            .entries
            .iter()
            .filter(|e| e.peer.addr.ip() == peer.addr.ip())
            .count();
        if same_ip >= limits.max_per_ip {
            return Insert::Rejected("too many entries on one IP address in a bucket");
        }
        let net = subnet(&peer.addr);
        let same_net = bucket
            .entries
            .iter()
            .filter(|e| subnet(&e.peer.addr) == net)
            .count();
        if same_net >= limits.max_per_subnet {
            return Insert::Rejected("too many entries on one subnet in a bucket");
        }
        let entry = Entry {
            peer,
            key,
            last_seen: now,
        };
        if bucket.entries.len() < limits.k {
            bucket.entries.push(entry);
            return Insert::Added;
        }
        if bucket.pending.is_some() {
            return Insert::Full;
        }
        bucket.pending = Some(Box::new((entry, ping_deadline)));
        self.pending += 1;
        Insert::PingOldest(bucket.entries[0].peer)
    }

    /// Pending newcomers whose ping deadline passed replace the oldest
    /// entry (it did not answer; an answer would have moved it and dropped
    /// the newcomer). Returns what changed, in bucket order.
    pub fn apply_pending(&mut self, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.pending == 0 {
            return changes;
        }
        for bucket in &mut self.buckets {
            if bucket.pending.as_ref().is_some_and(|p| now >= p.1) {
                let (entry, _) = *bucket.pending.take().expect("checked");
                self.pending -= 1;
                if !bucket.entries.is_empty() {
                    changes.push(Change::Removed(bucket.entries.remove(0).peer.id));
                }
                changes.push(Change::Added(entry.peer.id));
                bucket.entries.push(entry);
            }
        }
        changes
    }

    /// The oldest entry answered its ping: it stays, the newcomer goes.
    pub fn pong(&mut self, now: Time, id: &PeerId) {
        let key = Key::of_peer(id);
        let Some(bucket) = self.index(&key).and_then(|b| self.buckets.get_mut(b)) else {
            return;
        };
        if let Some(pos) = bucket.entries.iter().position(|e| e.peer.id == *id) {
            let mut e = bucket.entries.remove(pos);
            e.last_seen = now;
            bucket.entries.push(e);
            if bucket.pending.take().is_some() {
                self.pending -= 1;
            }
        }
    }

    /// Take `id` out; a newcomer waiting in its bucket takes its place.
    /// Returns what changed.
    pub fn remove(&mut self, id: &PeerId) -> Vec<Change> {
        let key = Key::of_peer(id);
        let Some(bucket) = self.index(&key).and_then(|b| self.buckets.get_mut(b)) else {
            return Vec::new();
        };
        let before = bucket.entries.len();
        bucket.entries.retain(|e| e.peer.id != *id);
        if bucket.entries.len() == before {
            return Vec::new();
        }
        let mut changes = vec![Change::Removed(*id)];
        if let Some(pending) = bucket.pending.take() {
            changes.push(Change::Added(pending.0.peer.id));
            bucket.entries.push(pending.0);
            self.pending -= 1;
        }
        changes
    }

    /// Up to `count` entries closest to `target`, closest first.
    #[must_use]
    pub fn closest(&self, target: &Key, count: usize) -> Vec<Peer> {
        let mut all: Vec<(super::key::Distance, Peer)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| (e.key.distance(target), e.peer))
            .collect();
        all.sort_unstable_by_key(|a| a.0);
        all.truncate(count);
        all.into_iter().map(|(_, p)| p).collect()
    }

    /// A lookup towards `target` went through its bucket at `now`.
    pub fn touched(&mut self, now: Time, target: &Key) {
        if let Some(b) = self.index(target).and_then(|b| self.buckets.get_mut(b)) {
            b.last_refresh = now;
        }
    }

    /// Buckets (by common prefix length) up to the deepest non-empty one
    /// (at most `max_cpl`) not refreshed for `interval`.
    #[must_use]
    pub fn stale_buckets(
        &self,
        now: Time,
        interval: std::time::Duration,
        max_cpl: usize,
    ) -> Vec<usize> {
        let deepest = self
            .buckets
            .iter()
            .rposition(|b| !b.entries.is_empty())
            .unwrap_or(0)
            .min(max_cpl);
        (0..=deepest)
            .filter(|&b| {
                self.buckets
                    .get(b)
                    .is_none_or(|x| now >= x.last_refresh + interval)
            })
            .collect()
    }

    /// A key in bucket `cpl`: ours with bit `cpl` flipped and random bits
    /// after.
    #[must_use]
    pub fn key_in_bucket(&self, cpl: usize, random: &Key) -> Key {
        let mut k = self.local.with_suffix(cpl as u32 + 1, random);
        k.0[cpl / 8] ^= 0x80 >> (cpl % 8);
        k
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (non-empty buckets, full buckets).
    #[must_use]
    pub fn bucket_counts(&self) -> (usize, usize) {
        let nonempty = self
            .buckets
            .iter()
            .filter(|b| !b.entries.is_empty())
            .count();
        let full = self
            .buckets
            .iter()
            .filter(|b| b.entries.len() >= self.limits.k)
            .count();
        (nonempty, full)
    }

    /// The record of `id`, if it is in the table (or waiting to enter it).
    pub fn record_of(&self, id: &PeerId) -> Option<&Peer> {
        let key = Key::of_peer(id);
        let b = self.index(&key).and_then(|b| self.buckets.get(b))?;
        b.entries
            .iter()
            .map(|e| &e.peer)
            .chain(b.pending.as_ref().map(|p| &p.0.peer))
            .find(|p| p.id == *id)
    }

    pub fn contains(&self, id: &PeerId) -> bool {
        let key = Key::of_peer(id);
        self.index(&key)
            .and_then(|b| self.buckets.get(b))
            .is_some_and(|b| b.entries.iter().any(|e| e.peer.id == *id))
    }

    /// Every entry's peer id (bucket order).
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| &e.peer))
    }

    /// Earliest pending-ping deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.pending == 0 {
            return None;
        }
        self.buckets
            .iter()
            .filter_map(|b| b.pending.as_ref().map(|p| p.1))
            .min()
    }
}
