//! The iterative lookup as a sans-IO iterator: which peer to ask next, when
//! the lookup is done, and what it found. After rust-libp2p's
//! `ClosestPeersIter` (`kad/src/query/peers/closest.rs`) and Kademlia §2.3:
//! at most `alpha` requests in flight; a lookup that stops making progress
//! widens to `k` in flight; it ends when the `k` closest peers it has seen
//! (leaving out those that failed or are too slow) have all answered.
//!
//! A peer that does not answer within the request timeout is *unresponsive*:
//! it no longer holds a slot of the parallelism nor counts among the `k`
//! closest, but a late answer is still used. A peer whose request failed
//! for good is dropped from consideration.

use std::collections::BTreeMap;
use std::time::Duration;

use super::key::{Distance, Key};
use crate::{Peer, PeerId, Time};

/// Candidates kept per lookup (bounded; the farthest not-yet-asked ones are
/// dropped first): eight times the largest `k`.
pub const MAX_CANDIDATES: usize = 160;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting(Time),
    Unresponsive,
    Failed,
    Succeeded,
}

#[derive(Clone, Debug)]
struct Candidate {
    peer: Peer,
    key: Key,
    /// 1 for a peer from our own table, n + 1 for one named by a peer at n.
    hops: u8,
    state: State,
}

/// What the lookup wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send a request to this peer (call [`ClosestPeersIter::next`] again).
    Send(Peer),
    /// Wait for answers or timeouts.
    Waiting,
    /// Done: read [`ClosestPeersIter::closest`].
    Finished,
}

/// One lookup towards `target`.
#[derive(Clone, Debug)]
pub struct ClosestPeersIter {
    target: Key,
    k: usize,
    alpha: usize,
    timeout: Duration,
    peers: BTreeMap<Distance, Candidate>,
    num_waiting: usize,
    /// Answers in a row that brought no peer closer than the closest seen.
    no_progress: usize,
    finished: bool,
    /// Requests sent so far.
    pub requests: u32,
}

impl ClosestPeersIter {
    /// A lookup for `target`, starting from `seeds` (our closest known
    /// peers), with `alpha` requests in flight and `timeout` per request.
    pub fn new(
        target: Key,
        seeds: impl IntoIterator<Item = Peer>,
        k: usize,
        alpha: usize,
        timeout: Duration,
    ) -> Self {
        assert!(k >= 1 && alpha >= 1, "k and alpha are validated");
        let mut it = ClosestPeersIter {
            target,
            k,
            alpha,
            timeout,
            peers: BTreeMap::new(),
            num_waiting: 0,
            no_progress: 0,
            finished: false,
            requests: 0,
        };
        for p in seeds {
            it.insert(p, 1);
        }
        it
    }

    #[must_use]
    /// The record of `id`, if the lookup knows it as a candidate.
    pub fn record_of(&self, id: &PeerId) -> Option<&Peer> {
        let distance = self.target.distance(&Key::of_peer(id));
        self.peers
            .get(&distance)
            .map(|c| &c.peer)
            .filter(|p| p.id == *id)
    }

    pub fn target(&self) -> &Key {
        &self.target
    }

    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn insert(&mut self, peer: Peer, hops: u8) -> bool {
        let key = Key::of_peer(&peer.id);
        let d = key.distance(&self.target);
        if self.peers.contains_key(&d) {
            return false;
        }
        if self.peers.len() >= MAX_CANDIDATES {
            // Drop the farthest candidate we are not waiting for, if the
            // newcomer is closer than it.
            let farthest = self
                .peers
                .iter()
                .rev()
                .find(|(_, c)| !matches!(c.state, State::Waiting(_)))
                .map(|(d, _)| *d);
            match farthest {
                Some(f) if f > d => {
                    self.peers.remove(&f);
                }
                _ => return false,
            }
        }
        self.peers.insert(
            d,
            Candidate {
                peer,
                key,
                hops,
                state: State::NotContacted,
            },
        );
        true
    }

    /// `from` answered with `closer` peers. Returns false (and changes
    /// nothing) when no request to `from` is outstanding or timed out.
    pub fn on_success(&mut self, from: &PeerId, closer: impl IntoIterator<Item = Peer>) -> bool {
        if self.finished {
            return false;
        }
        let Some(hops) = self.settle(from, State::Succeeded) else {
            return false;
        };
        let hops = hops.saturating_add(1);
        let closest_before = self.peers.keys().next().copied();
        let mut progress = false;
        for p in closer {
            if self.insert(p, hops) && closest_before.is_some_and(|b| p_dist(&p, &self.target) < b)
            {
                progress = true;
            }
        }
        if progress {
            self.no_progress = 0;
        } else {
            self.no_progress += 1;
        }
        true
    }

    /// The request to `from` failed for good (or timed out long ago).
    pub fn on_failure(&mut self, from: &PeerId) -> bool {
        self.settle(from, State::Failed).is_some()
    }

    /// Move the outstanding (or timed-out) request to `from` to `to`: the
    /// hops of `from`, or `None` when no such request is open.
    fn settle(&mut self, from: &PeerId, to: State) -> Option<u8> {
        let d = Key::of_peer(from).distance(&self.target);
        let c = self.peers.get_mut(&d)?;
        match c.state {
            State::Waiting(_) => self.num_waiting -= 1,
            State::Unresponsive => {}
            _ => return None,
        }
        c.state = to;
        Some(c.hops)
    }

    /// Requests in flight allowed now: `alpha`, or `k` once `alpha`
    /// answers in a row brought nothing closer (libp2p's "stalled").
    fn parallelism(&self) -> usize {
        if self.no_progress >= self.alpha {
            self.k.max(self.alpha)
        } else {
            self.alpha
        }
    }

    /// What to do at `now`; call until it is not [`Next::Send`].
    pub fn next(&mut self, now: Time) -> Next {
        if self.finished {
            return Next::Finished;
        }
        for c in self.peers.values_mut() {
            if let State::Waiting(deadline) = c.state {
                if now >= deadline {
                    c.state = State::Unresponsive;
                    self.num_waiting -= 1;
                }
            }
        }
        let parallelism = self.parallelism();
        let mut considered = 0;
        let mut waiting_in_k = false;
        for c in self.peers.values_mut() {
            match c.state {
                State::Failed | State::Unresponsive => continue,
                State::Succeeded => considered += 1,
                State::Waiting(_) => {
                    considered += 1;
                    waiting_in_k = true;
                }
                State::NotContacted => {
                    if self.num_waiting >= parallelism {
                        return Next::Waiting;
                    }
                    c.state = State::Waiting(now + self.timeout);
                    self.num_waiting += 1;
                    self.requests += 1;
                    return Next::Send(c.peer);
                }
            }
            if considered >= self.k {
                break;
            }
        }
        if waiting_in_k || (considered < self.k && self.num_waiting > 0) {
            return Next::Waiting;
        }
        self.finished = true;
        Next::Finished
    }

    /// Stop now (e.g. the record was found).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The earliest request deadline still pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        self.peers
            .values()
            .filter_map(|c| match c.state {
                State::Waiting(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// The `k` closest peers that answered, closest first, with their hop
    /// counts.
    #[must_use]
    pub fn closest(&self) -> Vec<(Peer, u8)> {
        self.succeeded().take(self.k).collect()
    }

    /// Every peer that answered, closest first, with its hop count.
    pub fn succeeded(&self) -> impl Iterator<Item = (Peer, u8)> + '_ {
        self.peers
            .values()
            .filter(|c| c.state == State::Succeeded)
            .map(|c| (c.peer, c.hops))
    }

    /// Hop count of a candidate, if it is one.
    #[must_use]
    pub fn hops_of(&self, id: &PeerId) -> Option<u8> {
        let d = Key::of_peer(id).distance(&self.target);
        self.peers.get(&d).map(|c| c.hops)
    }

    /// Every peer that answered whose key starts with the first `bits` of
    /// `prefix` (the sweep's region), with its key.
    pub fn succeeded_in(&self, prefix: &Key, bits: u32) -> Vec<(Peer, Key)> {
        self.peers
            .values()
            .filter(|c| c.state == State::Succeeded && c.key.has_prefix(prefix, bits))
            .map(|c| (c.peer, c.key))
            .collect()
    }
}

fn p_dist(p: &Peer, target: &Key) -> Distance {
    Key::of_peer(&p.id).distance(target)
}
