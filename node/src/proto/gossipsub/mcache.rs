//! The message cache (gossipsub v1.0 "Message Cache") and the seen cache.
//!
//! The message cache keeps the messages of the last `mcache_len`
//! heartbeats, in one window per heartbeat; IHAVE gossip names those of the
//! last `mcache_gossip` windows; IWANT is answered from all of them, at most
//! `gossip_retransmission` times per peer and message. Both caches are
//! bounded: over capacity, the oldest entries go first.

use std::collections::{BTreeMap, VecDeque};

use super::{PubMessage, Topic};
use crate::proto::plumtree::MsgId;
use crate::{PeerId, Time};

struct Entry {
    message: PubMessage,
    /// Times the message was sent to each peer on IWANT.
    sent: BTreeMap<PeerId, u32>,
}

/// Recent messages, by heartbeat window.
pub struct MessageCache {
    entries: BTreeMap<MsgId, Entry>,
    /// Ids per window, newest first.
    windows: VecDeque<Vec<(MsgId, Topic)>>,
    gossip: usize,
    capacity: usize,
}

impl MessageCache {
    pub fn new(len: usize, gossip: usize, capacity: usize) -> Self {
        let mut windows = VecDeque::with_capacity(len);
        windows.resize_with(len.max(1), Vec::new);
        MessageCache {
            entries: BTreeMap::new(),
            windows,
            gossip,
            capacity,
        }
    }

    /// Cache `message` under `id` in the newest window.
    pub fn put(&mut self, id: MsgId, message: PubMessage) {
        if self.entries.contains_key(&id) {
            return;
        }
        while self.entries.len() >= self.capacity {
            if !self.drop_oldest() {
                break;
            }
        }
        self.windows[0].push((id, message.topic.clone()));
        self.entries.insert(
            id,
            Entry {
                message,
                sent: BTreeMap::new(),
            },
        );
    }

    fn drop_oldest(&mut self) -> bool {
        for w in self.windows.iter_mut().rev() {
            if !w.is_empty() {
                let (id, _) = w.remove(0);
                self.entries.remove(&id);
                return true;
            }
        }
        false
    }

    /// The message for an IWANT from `peer`, unless it was already sent to
    /// it `max_sends` times.
    pub fn get_for(&mut self, id: &MsgId, peer: PeerId, max_sends: u32) -> Option<&PubMessage> {
        let e = self.entries.get_mut(id)?;
        let n = e.sent.entry(peer).or_default();
        if *n >= max_sends {
            return None;
        }
        *n += 1;
        Some(&e.message)
    }

    /// Whether `id` is cached.
    #[cfg(test)]
    pub fn contains(&self, id: &MsgId) -> bool {
        self.entries.contains_key(id)
    }

    /// Ids of `topic` in the gossip windows, newest first.
    pub fn gossip_ids(&self, topic: &Topic) -> Vec<MsgId> {
        self.windows
            .iter()
            .take(self.gossip)
            .flat_map(|w| w.iter().filter(|(_, t)| t == topic).map(|(id, _)| *id))
            .collect()
    }

    /// Start a new window, dropping the oldest.
    pub fn shift(&mut self) {
        if let Some(old) = self.windows.pop_back() {
            for (id, _) in old {
                self.entries.remove(&id);
            }
        }
        self.windows.push_front(Vec::new());
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Message ids seen recently, with when they were first seen.
pub struct SeenCache {
    first_seen: BTreeMap<MsgId, Time>,
    order: VecDeque<(Time, MsgId)>,
    ttl: Time,
    capacity: usize,
}

impl SeenCache {
    pub fn new(ttl: Time, capacity: usize) -> Self {
        SeenCache {
            first_seen: BTreeMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity,
        }
    }

    /// When `id` was first seen, if it still is remembered.
    pub fn get(&self, id: &MsgId) -> Option<Time> {
        self.first_seen.get(id).copied()
    }

    /// Remember `id` as seen at `now`; false if it already was.
    pub fn insert(&mut self, now: Time, id: MsgId) -> bool {
        if self.first_seen.contains_key(&id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.first_seen.remove(&old);
            }
        }
        self.first_seen.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    /// Forget ids older than the TTL.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(t, id)) = self.order.front() {
            if t + self.ttl > now {
                break;
            }
            self.order.pop_front();
            self.first_seen.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn msg(i: u8, topic: &str) -> (MsgId, PubMessage) {
        (
            MsgId([i; 32]),
            PubMessage {
                from: PeerId([1; 32]),
                seqno: u64::from(i),
                topic: Topic::new(topic),
                data: Bytes::from_static(b"x"),
                signature: [0; 64],
            },
        )
    }

    #[test]
    fn windows_gossip_the_recent_ones_and_forget_the_old_ones() {
        let mut c = MessageCache::new(5, 3, 100);
        for i in 0..5 {
            let (id, m) = msg(i, "a");
            c.put(id, m);
            c.shift();
        }
        // Windows, newest first: [], [4], [3], [2], [1]; 0 is gone.
        assert!(!c.contains(&MsgId([0; 32])));
        assert_eq!(
            c.gossip_ids(&Topic::new("a")),
            vec![MsgId([4; 32]), MsgId([3; 32])]
        );
        assert!(c.gossip_ids(&Topic::new("b")).is_empty());
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn iwant_retransmissions_are_capped_per_peer() {
        let mut c = MessageCache::new(5, 3, 100);
        let (id, m) = msg(1, "a");
        c.put(id, m);
        let p = PeerId([9; 32]);
        assert!(c.get_for(&id, p, 2).is_some());
        assert!(c.get_for(&id, p, 2).is_some());
        assert!(c.get_for(&id, p, 2).is_none());
        assert!(c.get_for(&id, PeerId([8; 32]), 2).is_some());
    }

    #[test]
    fn caches_stay_bounded_under_a_flood() {
        let mut c = MessageCache::new(5, 3, 10);
        let mut s = SeenCache::new(Duration::from_secs(120), 10);
        for i in 0..=255u8 {
            let (id, m) = msg(i, "a");
            c.put(id, m);
            s.insert(Duration::ZERO, id);
        }
        assert_eq!(c.len(), 10);
        assert_eq!(s.len(), 10);
        assert!(c.contains(&MsgId([255; 32])));
    }

    #[test]
    fn seen_ids_expire_after_the_ttl() {
        let mut s = SeenCache::new(Duration::from_secs(120), 10);
        assert!(s.insert(Duration::from_secs(1), MsgId([1; 32])));
        assert!(!s.insert(Duration::from_secs(2), MsgId([1; 32])));
        s.expire(Duration::from_secs(100));
        assert_eq!(s.get(&MsgId([1; 32])), Some(Duration::from_secs(1)));
        s.expire(Duration::from_secs(121));
        assert!(s.is_empty());
    }
}
