//! How long running hosts stay cut off from the overlay, and whether a way
//! back was there: isolation stretches and the hosts' peer caches, from the
//! observer's side only.
//!
//! A host is *isolated* while its active view is empty, as its own
//! `NeighborUp` / `NeighborDown` events tell: a stretch starts when the last
//! neighbour goes down (or the host starts, with an empty view) and ends at
//! the next `NeighborUp`, when the host stops, or at the end of the run. A
//! view that still lists peers which died unnoticed is not empty here
//! (unlike `overlay.isolated`, which counts live peers at the end): the
//! node has not detected it yet, so it has no reason to rejoin.
//!
//! The host's *peer cache* is rebuilt from the same events, as the node
//! keeps it (`grove_node::rejoin::PeerCache`): its most recent distinct
//! `NeighborUp` peers, up to the scenario's `[node.rejoin] cache_capacity`,
//! across the host's lives (the node reloads it from its store on restart;
//! the stored copy may lag by up to the driver's save interval, 10 s, which
//! this reconstruction ignores). A cache cannot change during a stretch: it
//! changes only on a `NeighborUp`, which ends the stretch. So, when a stretch
//! ends, the running intervals of the cached peers say exactly for how long,
//! without a break, the host was isolated while some cached peer was alive:
//! the time a rejoin through the cache could have worked and did not.

use serde::Serialize;

use crate::recorder::UpIntervals;

/// Stretches longer than this count against the run (the bound:
/// no survivor stays isolated longer than a minute while a cached peer is
/// alive).
pub const LIMIT_NS: u64 = 60_000_000_000;

/// A cached peer that is not a host of the run (an attacker's identity):
/// it takes a slot, as in the node's cache, and is never alive.
const NOT_A_HOST: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not running.
    Down,
    /// Running with a non-empty active view.
    Connected,
    /// Running with an empty active view since then (ns).
    Isolated(u64),
}

/// Each host's isolation state and cache, and the longest stretches seen.
pub struct IsolationRec {
    capacity: usize,
    state: Vec<State>,
    /// Host indices, most recent first (at most `capacity`; capacity grown
    /// one at a time: 100,000 hosts hold one each).
    cache: Vec<Vec<u32>>,
    /// Per host, its longest stretch and its longest run of isolation with
    /// a live cached peer (ns), over all its lives.
    longest: Vec<(u64, u64)>,
}

impl IsolationRec {
    /// For `hosts` hosts whose nodes cache up to `capacity` peers.
    pub fn new(hosts: usize, capacity: usize) -> Self {
        IsolationRec {
            capacity,
            state: vec![State::Down; hosts],
            cache: vec![Vec::new(); hosts],
            longest: vec![(0, 0); hosts],
        }
    }

    /// Host `h` started at `now`, with an empty view.
    pub fn started(&mut self, h: u32, now: u64) {
        self.state[h as usize] = State::Isolated(now);
    }

    /// Host `h` stopped at `now`.
    pub fn stopped(&mut self, h: u32, now: u64, up: &[UpIntervals]) {
        self.close(h, now, up);
        self.state[h as usize] = State::Down;
    }

    /// Host `h` reported `peer` (a host index, or `None` for a peer that is
    /// not a host) up at `now`.
    pub fn neighbor_up(&mut self, h: u32, peer: Option<u32>, now: u64, up: &[UpIntervals]) {
        // The stretch is judged by the cache it had: the new peer joins the
        // cache after.
        if self.close(h, now, up) {
            self.state[h as usize] = State::Connected;
        }
        self.cache_seen(h, peer.unwrap_or(NOT_A_HOST));
    }

    /// Host `h` reported a neighbour down at `now`; `empty`: its view is
    /// now empty.
    pub fn neighbor_down(&mut self, h: u32, now: u64, empty: bool) {
        if empty && self.state[h as usize] == State::Connected {
            self.state[h as usize] = State::Isolated(now);
        }
    }

    /// As the node's `PeerCache::seen`: to the front, distinct, bounded.
    fn cache_seen(&mut self, h: u32, peer: u32) {
        if self.capacity == 0 {
            return;
        }
        let cache = &mut self.cache[h as usize];
        match cache.iter().position(|&p| p == peer) {
            Some(i) => {
                cache.remove(i);
            }
            None if cache.len() >= self.capacity => {
                cache.pop();
            }
            None => cache.reserve_exact(1),
        }
        cache.insert(0, peer);
    }

    /// End host `h`'s stretch, if it is isolated, at `now`; whether it was.
    fn close(&mut self, h: u32, now: u64, up: &[UpIntervals]) -> bool {
        let State::Isolated(since) = self.state[h as usize] else {
            return self.state[h as usize] == State::Connected;
        };
        let with_cache = longest_covered(since, now, &self.cache[h as usize], up);
        let l = &mut self.longest[h as usize];
        l.0 = l.0.max(now.saturating_sub(since));
        l.1 = l.1.max(with_cache);
        self.state[h as usize] = State::Connected;
        true
    }

    /// The report section at `end` (stretches still open end there).
    pub fn section(&self, end: u64, up: &[UpIntervals]) -> IsolationReport {
        let mut r = IsolationReport::default();
        let (mut longest, mut longest_cached) = (0, 0);
        for h in 0..self.state.len() {
            let (mut l, mut lc) = self.longest[h];
            if let State::Isolated(since) = self.state[h] {
                let covered = longest_covered(since, end, &self.cache[h], up);
                r.at_end += 1;
                r.at_end_with_live_cached_peer += u64::from(end_alive(&self.cache[h], up));
                l = l.max(end.saturating_sub(since));
                lc = lc.max(covered);
            }
            r.hosts_over_60s += u64::from(l > LIMIT_NS);
            r.hosts_over_60s_with_live_cached_peer += u64::from(lc > LIMIT_NS);
            longest = longest.max(l);
            longest_cached = longest_cached.max(lc);
        }
        r.longest_s = round3(longest as f64 / 1e9);
        r.longest_with_live_cached_peer_s = round3(longest_cached as f64 / 1e9);
        r
    }
}

/// Whether some host in `cache` is running at the end (its last interval
/// is open).
fn end_alive(cache: &[u32], up: &[UpIntervals]) -> bool {
    cache.iter().any(|&p| {
        up.get(p as usize)
            .and_then(|i| i.last())
            .is_some_and(|&(_, e)| e.is_none())
    })
}

/// The longest part of `[from, to]`, without a break, during which some
/// host in `cache` was running (ns).
fn longest_covered(from: u64, to: u64, cache: &[u32], up: &[UpIntervals]) -> u64 {
    let mut spans: Vec<(u64, u64)> = cache
        .iter()
        .filter_map(|&p| up.get(p as usize))
        .flatten()
        .map(|&(s, e)| (s.max(from), e.unwrap_or(u64::MAX).min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let mut best = 0;
    let mut current: Option<(u64, u64)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                best = best.max(ce - cs);
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        best = best.max(ce - cs);
    }
    best
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// The report's `overlay.isolation`: running hosts cut off from the
/// overlay (an empty active view, from their events), and whether their
/// peer cache held a live way back (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IsolationReport {
    /// Running hosts whose active view is empty at the end.
    pub at_end: u64,
    /// Of those, hosts with a running peer in their cache.
    pub at_end_with_live_cached_peer: u64,
    /// Hosts whose active view stayed empty more than 60 s at a stretch
    /// while they ran (a stretch still open at the end counts up to it).
    pub hosts_over_60s: u64,
    /// Hosts that stayed isolated more than 60 s without a break while
    /// some peer in their cache was running.
    pub hosts_over_60s_with_live_cached_peer: u64,
    /// The longest stretch of any host (s).
    pub longest_s: f64,
    /// The longest run of isolation with a live cached peer (s).
    pub longest_with_live_cached_peer_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn covered_time_is_the_longest_unbroken_union_within_the_stretch() {
        // Peer 1 runs 0-20 s and 30 s on; peer 2 runs 15-25 s.
        let up: Vec<UpIntervals> = vec![
            vec![],
            vec![(0, Some(20 * S)), (30 * S, None)],
            vec![(15 * S, Some(25 * S))],
        ];
        assert_eq!(longest_covered(10 * S, 100 * S, &[1], &up), 70 * S);
        assert_eq!(longest_covered(10 * S, 28 * S, &[1, 2], &up), 15 * S);
        assert_eq!(longest_covered(10 * S, 28 * S, &[2], &up), 10 * S);
        assert_eq!(longest_covered(10 * S, 28 * S, &[], &up), 0);
        assert_eq!(longest_covered(10 * S, 28 * S, &[NOT_A_HOST], &up), 0);
    }

    #[test]
    fn a_stretch_counts_only_with_a_live_cached_peer() {
        // Hosts 0 and 1 meet; 1 dies at 10 s and comes back at 50 s; 0 is
        // isolated from 5 s to the end (200 s), 2 from 5 s with no cache.
        let mut r = IsolationRec::new(3, 16);
        let mut up: Vec<UpIntervals> = vec![vec![(0, None)], vec![(0, None)], vec![(0, None)]];
        for h in 0..3 {
            r.started(h, 0);
        }
        r.neighbor_up(0, Some(1), S, &up);
        r.neighbor_up(1, Some(0), S, &up);
        r.neighbor_down(0, 5 * S, true);
        up[1][0].1 = Some(10 * S);
        r.stopped(1, 10 * S, &up);
        up[1].push((50 * S, None));
        r.started(1, 50 * S);
        let report = r.section(200 * S, &up);
        // Host 0: isolated 195 s, 150 s of it (50-200 s) with host 1 alive;
        // host 2: isolated 200 s with an empty cache.
        assert_eq!(report.at_end, 3);
        assert_eq!(report.at_end_with_live_cached_peer, 2);
        assert_eq!(report.hosts_over_60s, 3);
        assert_eq!(report.hosts_over_60s_with_live_cached_peer, 2);
        assert_eq!(report.longest_s, 200.0);
        assert_eq!(report.longest_with_live_cached_peer_s, 150.0);
        // Host 0 rejoins at 70 s: isolated 65 s, but host 1 ran for 5 s
        // and 20 s of it, under the limit.
        let mut r2 = IsolationRec::new(2, 16);
        r2.started(0, 0);
        r2.neighbor_up(0, Some(1), S, &up);
        r2.neighbor_down(0, 5 * S, true);
        r2.neighbor_up(0, Some(1), 70 * S, &up);
        let report = r2.section(200 * S, &up);
        assert_eq!((report.at_end, report.hosts_over_60s), (0, 1));
        assert_eq!(report.hosts_over_60s_with_live_cached_peer, 0);
        assert_eq!(report.longest_with_live_cached_peer_s, 20.0);
    }

    #[test]
    fn the_cache_keeps_the_most_recent_distinct_peers() {
        let mut r = IsolationRec::new(1, 2);
        let up: Vec<UpIntervals> = vec![vec![(0, None)]];
        r.started(0, 0);
        for p in [1, 2, 1, 3] {
            r.neighbor_up(0, Some(p), S, &up);
        }
        r.neighbor_up(0, None, S, &up);
        assert_eq!(r.cache[0], [NOT_A_HOST, 3]);
        let mut none = IsolationRec::new(1, 0);
        none.neighbor_up(0, Some(1), S, &up);
        assert!(none.cache[0].is_empty());
    }
}
