//! Getting back into the overlay: the peer cache and the rejoin schedule.
//!
//! HyParView repairs an active view from the passive view, but after a mass
//! failure every passive peer may be dead while peers the node knew earlier
//! (neighbours of an hour ago, or of its previous life) are alive. The
//! [`PeerCache`] remembers the most recent distinct neighbours, bounded; the
//! driver keeps it in the node's store, so it survives a restart. Whenever
//! the active view has been empty for [`Config::retry`] (and at start), the
//! node tries the next [`Config::fanout`] candidates: cached peers first,
//! most recent first, then the bootstrap contacts, round after round.
//!
//! One exception: a node that starts with bootstrap contacts joins through
//! the first of them in its first round, and through its cache only if
//! that fails. A node that was down for a while finds its cache stale (its
//! peers gone or re-addressed), and a bootstrap contact is by design a
//! host that stays up: in `gossipsub-churn.toml` (seed 1), trying the
//! cache first at a restart raised the p99 delivery latency from 1,127 ms
//! to 1,885 ms, and trying both at once to 2,460 ms (the stale peers it
//! asks hold up its repair). A node restarted without contacts, or isolated
//! while running (the mass-failure case the cache is for), goes through its
//! whole cache before any bootstrap contact.
//!
//! Sans-IO like the cores: the node asks [`Rejoin::poll`] what to try at
//! `now`, and [`Rejoin::deadline`] when to ask again.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{interval, range, KeyError};
use crate::{Peer, Time};

/// Most peers a cache may hold.
pub const MAX_CACHE_CAPACITY: usize = 256;
/// Most candidates tried at once.
pub const MAX_FANOUT: usize = 16;
/// Most bootstrap contacts kept.
pub const MAX_BOOTSTRAP: usize = 64;

/// Peer cache and rejoin settings (the `[rejoin]` section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Distinct recent neighbours remembered, most recent first; 0 (no
    /// cache: rejoin through the bootstrap contacts only) to
    /// [`MAX_CACHE_CAPACITY`]. Grove: 16 (about 1.5 KB in memory).
    pub cache_capacity: usize,
    /// How long the active view stays empty before the next candidates are
    /// tried (Grove: 3 s: a join through a live contact answers within a
    /// few round trips); 1 ms to 720 h.
    #[serde(with = "crate::duration")]
    pub retry: Duration,
    /// Candidates tried in each round; 1 to [`MAX_FANOUT`]. Grove: 4, so
    /// that a cache of 16 is tried whole within 4 rounds (12 s).
    pub fanout: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_capacity: 16,
            retry: Duration::from_secs(3),
            fanout: 4,
        }
    }
}

impl Config {
    /// Check the bounds on each key's doc line.
    ///
    /// # Errors
    ///
    /// The first key out of range.
    pub fn validate(&self) -> Result<(), KeyError> {
        range(self.cache_capacity, 0, MAX_CACHE_CAPACITY)
            .map_err(KeyError::at("cache_capacity"))?;
        interval(self.retry).map_err(KeyError::at("retry"))?;
        range(self.fanout, 1, MAX_FANOUT).map_err(KeyError::at("fanout"))
    }
}

/// Recently seen neighbours, most recent first, distinct by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCache {
    peers: Vec<Peer>,
    capacity: usize,
    changed: bool,
}

impl PeerCache {
    pub fn new(capacity: usize) -> Self {
        PeerCache {
            peers: Vec::new(),
            capacity: capacity.min(MAX_CACHE_CAPACITY),
            changed: false,
        }
    }

    /// The cached peers, most recent first.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// `peer` was seen as a neighbour: it moves to the front (with its
    /// latest record); the oldest falls out when the cache is full.
    pub fn seen(&mut self, peer: Peer) {
        if self.capacity == 0 {
            return;
        }
        match self.peers.iter().position(|p| p.id == peer.id) {
            Some(0) if self.peers[0] == peer => return,
            Some(i) => {
                self.peers.remove(i);
            }
            None => {
                if self.peers.len() == self.capacity {
                    self.peers.pop();
                }
            }
        }
        self.peers.insert(0, peer);
        self.changed = true;
    }

    /// Replace the cache with `peers` (most recent first, as stored): the
    /// first `capacity` distinct ones, `me` left out. Not a change to save.
    pub fn load(&mut self, peers: &[Peer], me: &crate::PeerId) {
        self.peers.clear();
        for p in peers {
            if self.peers.len() == self.capacity {
                break;
            }
            if p.id != *me && !self.peers.iter().any(|q| q.id == p.id) {
                self.peers.push(*p);
            }
        }
        self.peers.shrink_to_fit();
    }

    /// Whether the cache changed since the last call (for the driver, which
    /// saves it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

/// A contact to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// A cached peer: its id is known, so the session proves it.
    Peer(Peer),
    /// A bootstrap contact known by address only.
    Addr(SocketAddr),
}

/// When to try which contacts.
#[derive(Clone, Debug)]
pub struct Rejoin {
    config: Config,
    pub cache: PeerCache,
    bootstrap: Vec<SocketAddr>,
    /// Since when the active view has been empty (None: it is not).
    empty_since: Option<Time>,
    /// When the next round is due while the view stays empty.
    next_round: Option<Time>,
    /// Position in the cycle over cache then bootstrap.
    cursor: usize,
    /// Rounds started (for the node's stats).
    pub rounds: u64,
    /// After a graceful leave: no rounds until [`Rejoin::restart`].
    stopped: bool,
    /// The next round is the first since a start: it also tries a
    /// bootstrap contact.
    first: bool,
}

impl Rejoin {
    pub fn new(config: Config) -> Self {
        Rejoin {
            cache: PeerCache::new(config.cache_capacity),
            config,
            bootstrap: Vec::new(),
            empty_since: None,
            next_round: None,
            cursor: 0,
            rounds: 0,
            stopped: false,
            first: false,
        }
    }

    /// The contacts to fall back to after the cache, in order (at most
    /// [`MAX_BOOTSTRAP`]).
    pub fn set_bootstrap(&mut self, contacts: &[SocketAddr]) {
        self.bootstrap = contacts.iter().copied().take(MAX_BOOTSTRAP).collect();
    }

    pub fn bootstrap(&self) -> &[SocketAddr] {
        &self.bootstrap
    }

    /// Start over from the most recent cached peer, with a round due at
    /// `now` if the view is empty.
    pub fn restart(&mut self, now: Time) {
        self.stopped = false;
        self.first = true;
        self.cursor = 0;
        self.empty_since = Some(now);
        self.next_round = Some(now);
    }

    /// No more rounds (the node left the overlay) until
    /// [`Rejoin::restart`].
    pub fn stop(&mut self) {
        self.stopped = true;
        self.empty_since = None;
        self.next_round = None;
    }

    /// The active view is (`empty`) or is not empty at `now`.
    pub fn view(&mut self, now: Time, empty: bool) {
        if self.stopped {
            return;
        }
        match (empty, self.empty_since) {
            (true, None) => {
                self.empty_since = Some(now);
                self.next_round = Some(now + self.config.retry);
            }
            (false, Some(_)) => {
                self.empty_since = None;
                self.next_round = None;
                self.cursor = 0;
            }
            _ => {}
        }
    }

    /// When [`Rejoin::poll`] next has something to do.
    pub fn deadline(&self) -> Option<Time> {
        self.next_round.filter(|_| self.candidates() > 0)
    }

    fn candidates(&self) -> usize {
        self.cache.peers.len() + self.bootstrap.len()
    }

    /// The candidates of the round due at `now` (empty when none is due).
    /// At most one bootstrap contact per round: they are joined by address,
    /// one at a time. The first round after a start, when there are
    /// bootstrap contacts, is the first of them alone.
    pub fn poll(&mut self, now: Time, out: &mut Vec<Candidate>) {
        out.clear();
        let n = self.candidates();
        if n == 0 || self.next_round.is_none_or(|t| t > now) {
            return;
        }
        self.rounds += 1;
        self.next_round = Some(now + self.config.retry);
        let mut by_addr = false;
        if std::mem::take(&mut self.first) && !self.cache.peers.is_empty() {
            if let Some(&contact) = self.bootstrap.first() {
                out.push(Candidate::Addr(contact));
                return;
            }
        }
        for _ in 0..self.config.fanout.min(n) {
            let k = self.cursor % n;
            let c = match self.cache.peers.get(k) {
                Some(p) => Candidate::Peer(*p),
                None if by_addr => break,
                None => {
                    by_addr = true;
                    Candidate::Addr(self.bootstrap[k - self.cache.peers.len()])
                }
            };
            self.cursor = (k + 1) % n;
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::net::{IpAddr, Ipv4Addr};

    fn peer(n: u8) -> Peer {
        Peer::new(
            PeerId([n; 32]),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 7000),
        )
    }

    fn t(s: u64) -> Time {
        Duration::from_secs(s)
    }

    #[test]
    fn cache_keeps_the_most_recent_distinct_peers() {
        let mut c = PeerCache::new(3);
        for n in [1, 2, 3, 1, 4] {
            c.seen(peer(n));
        }
        let ids: Vec<u8> = c.peers().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, [4, 1, 3]);
        assert!(c.take_changed());
        assert!(!c.take_changed());
        c.seen(peer(4));
        assert!(
            !c.take_changed(),
            "seeing the front peer again is no change"
        );
        let mut moved = peer(1);
        moved.addr.set_port(7001);
        c.seen(moved);
        assert!(c.take_changed());
        assert_eq!(c.peers()[0].addr.port(), 7001, "the latest record is kept");
    }

    #[test]
    fn load_skips_self_duplicates_and_overflow() {
        let mut c = PeerCache::new(2);
        c.load(
            &[peer(9), peer(1), peer(1), peer(2), peer(3)],
            &PeerId([9; 32]),
        );
        let ids: Vec<u8> = c.peers().iter().map(|p| p.id.0[0]).collect();
        assert_eq!(ids, [1, 2]);
        assert!(!c.take_changed());
        let mut off = PeerCache::new(0);
        off.seen(peer(1));
        assert!(off.peers().is_empty());
    }

    #[test]
    fn rounds_try_cache_then_one_bootstrap_and_cycle() {
        let mut r = Rejoin::new(Config {
            cache_capacity: 8,
            retry: Duration::from_secs(3),
            fanout: 2,
        });
        r.cache.load(&[peer(1), peer(2), peer(3)], &PeerId([0; 32]));
        let boot = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 7000);
        r.set_bootstrap(&[boot]);
        let mut out = Vec::new();
        r.poll(t(0), &mut out);
        assert!(out.is_empty(), "nothing due before the view is known empty");
        r.restart(t(0));
        r.poll(t(0), &mut out);
        assert_eq!(
            out,
            [Candidate::Addr(boot)],
            "the first round after a start is the contact"
        );
        r.poll(t(3), &mut out);
        assert_eq!(out, [Candidate::Peer(peer(1)), Candidate::Peer(peer(2))]);
        r.poll(t(4), &mut out);
        assert!(out.is_empty(), "the next round waits for `retry`");
        assert_eq!(r.deadline(), Some(t(6)));
        r.poll(t(6), &mut out);
        assert_eq!(out, [Candidate::Peer(peer(3)), Candidate::Addr(boot)]);
        r.poll(t(9), &mut out);
        assert_eq!(out, [Candidate::Peer(peer(1)), Candidate::Peer(peer(2))]);
        // A neighbour: no rounds until the view empties again, then from
        // the most recent peer after `retry`.
        r.view(t(7), false);
        assert_eq!(r.deadline(), None);
        r.view(t(8), true);
        assert_eq!(r.deadline(), Some(t(11)));
        r.poll(t(11), &mut out);
        assert_eq!(out, [Candidate::Peer(peer(1)), Candidate::Peer(peer(2))]);
        assert_eq!(r.rounds, 5);
        r.stop();
        r.view(t(20), true);
        assert_eq!(r.deadline(), None, "no rounds after a leave");
        r.restart(t(30));
        assert_eq!(r.deadline(), Some(t(30)));
    }

    #[test]
    fn bootstrap_contacts_go_one_per_round() {
        let mut r = Rejoin::new(Config::default());
        let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 7000);
        let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 7000);
        r.set_bootstrap(&[a, b]);
        r.restart(t(0));
        let mut out = Vec::new();
        r.poll(t(0), &mut out);
        assert_eq!(out, [Candidate::Addr(a)]);
        r.poll(t(3), &mut out);
        assert_eq!(out, [Candidate::Addr(b)]);
        let mut none = Rejoin::new(Config::default());
        none.restart(t(0));
        assert_eq!(none.deadline(), None, "nothing to try, no wake-up");
    }

    #[test]
    fn config_bounds() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            fanout: 0,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "fanout");
        let bad = Config {
            cache_capacity: MAX_CACHE_CAPACITY + 1,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "cache_capacity");
        let bad = Config {
            retry: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "retry");
    }
}
