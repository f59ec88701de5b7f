//! Provide Sweep (IPFS kubo 0.38, "Provide Sweep"; design notes in
//! libp2p/go-libp2p-kad-dht `provider/`): instead of one lookup per
//! provided key, the keyspace is cut into regions by key prefix, each
//! holding about `k` or more servers; one lookup explores a region, every
//! key in it goes to its `k` closest servers among those the lookup met,
//! and each server gets its keys as batched ADD_PROVIDERs. The regions are
//! spread evenly over the republish interval, so a node providing many
//! keys sends a steady trickle instead of a burst.

use std::collections::BTreeSet;
use std::time::Duration;

use super::key::Key;
use super::table::Table;
use crate::{Peer, Time};

/// Network size estimated from our table: the `k`-th closest entry to our
/// own key shares `c` bits with it, so about `k` servers live in a
/// `2^-c` share of the keyspace: `k * 2^c`.
#[must_use]
pub fn network_size(table: &Table, me: &Key, k: usize) -> u64 {
    let closest = table.closest(me, k);
    let Some(far) = closest.last() else {
        return 1;
    };
    if closest.len() < k {
        return closest.len() as u64 + 1;
    }
    let cpl = Key::of_peer(&far.id).common_prefix_len(me).min(40);
    (k as u64) << cpl
}

/// Prefix length of the regions: the longest with at least `k` servers
/// expected in each (`2^bits * k <= n`).
#[must_use]
pub fn region_bits(n: u64, k: usize) -> u32 {
    let per = (n / k.max(1) as u64).max(1);
    63 - per.leading_zeros()
}

/// The provided keys inside the region `prefix`/`bits`.
#[must_use]
pub fn keys_in(provided: &BTreeSet<Key>, prefix: &Key, bits: u32) -> Vec<Key> {
    let lo = prefix.prefix(bits);
    let hi = lo.with_suffix(bits, &Key([0xff; 32]));
    provided.range(lo..=hi).copied().collect()
}

/// For every key, its `k` closest among the region's servers (or, when the
/// lookup met fewer than `k` there, among those and the lookup's closest),
/// grouped by server in server order.
#[must_use]
pub fn assign(
    keys: &[Key],
    region: &[(Peer, Key)],
    fallback: &[(Peer, Key)],
    k: usize,
) -> Vec<(Peer, Vec<Key>)> {
    let mut pool: Vec<(Peer, Key)> = region.to_vec();
    if pool.len() < k {
        for f in fallback {
            if !pool.iter().any(|p| p.0.id == f.0.id) {
                pool.push(*f);
            }
        }
    }
    let mut per: Vec<Vec<Key>> = vec![Vec::new(); pool.len()];
    let mut order: Vec<usize> = (0..pool.len()).collect();
    for key in keys {
        order.sort_by_key(|&i| pool[i].1.distance(key));
        for &i in order.iter().take(k) {
            per[i].push(*key);
        }
    }
    pool.into_iter()
        .zip(per)
        .filter(|(_, keys)| !keys.is_empty())
        .map(|((p, _), keys)| (p, keys))
        .collect()
}

/// One republish cycle: the regions holding provided keys, each due at its
/// share of the interval.
#[derive(Clone, Debug)]
pub struct Cycle {
    start: Time,
    interval: Duration,
    bits: u32,
    regions: Vec<Key>,
    next: usize,
}

impl Cycle {
    pub fn new(start: Time, interval: Duration, bits: u32, provided: &BTreeSet<Key>) -> Self {
        let mut regions: Vec<Key> = provided.iter().map(|k| k.prefix(bits)).collect();
        regions.dedup();
        Cycle {
            start,
            interval,
            bits,
            regions,
            next: 0,
        }
    }

    fn at(&self, i: usize) -> Time {
        let n = self.regions.len().max(1) as u32;
        self.start + self.interval * i as u32 / n
    }

    /// When the next region is due (or the cycle ends).
    #[must_use]
    pub fn next_at(&self) -> Time {
        if self.next < self.regions.len() {
            self.at(self.next)
        } else {
            self.start + self.interval
        }
    }

    /// The region due at `now`, if any (each once).
    pub fn due(&mut self, now: Time) -> Option<(Key, u32)> {
        if self.next < self.regions.len() && self.at(self.next) <= now {
            self.next += 1;
            return Some((self.regions[self.next - 1], self.bits));
        }
        None
    }

    /// Whether the cycle is over (the next one starts).
    #[must_use]
    pub fn over(&self, now: Time) -> bool {
        self.next >= self.regions.len() && now >= self.start + self.interval
    }

    #[must_use]
    pub fn regions(&self) -> usize {
        self.regions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::net::SocketAddr;

    #[test]
    fn region_bits_keep_k_servers_per_region() {
        assert_eq!(region_bits(1000, 20), 5); // 32 regions of ~31
        assert_eq!(region_bits(10_000, 20), 8);
        assert_eq!(region_bits(10, 20), 0);
    }

    #[test]
    fn keys_are_assigned_to_their_k_closest_in_the_region() {
        let peers: Vec<(Peer, Key)> = (0..30u8)
            .map(|i| {
                let id = PeerId([i; 32]);
                (
                    Peer::new(id, SocketAddr::from(([10, 0, 0, i], 1))),
                    Key::of_peer(&id),
                )
            })
            .collect();
        let keys: Vec<Key> = (0..50u8).map(|i| Key::of_content(&[i])).collect();
        let out = assign(&keys, &peers, &[], 3);
        let total: usize = out.iter().map(|(_, k)| k.len()).sum();
        assert_eq!(total, 150);
        for key in &keys {
            let mut by: Vec<&(Peer, Key)> = peers.iter().collect();
            by.sort_by_key(|p| p.1.distance(key));
            for p in by.iter().take(3) {
                let got = out.iter().find(|(q, _)| q.id == p.0.id).unwrap();
                assert!(got.1.contains(key));
            }
        }
    }

    #[test]
    fn regions_are_spread_over_the_interval() {
        let provided: BTreeSet<Key> = (0..1000u32)
            .map(|i| Key::of_content(&i.to_be_bytes()))
            .collect();
        let mut c = Cycle::new(Time::ZERO, Duration::from_secs(3200), 5, &provided);
        assert_eq!(c.regions(), 32);
        let mut seen = 0;
        let mut t = Time::ZERO;
        while !c.over(t) {
            while let Some((prefix, bits)) = c.due(t) {
                assert_eq!(t, Duration::from_secs(100 * seen));
                seen += 1;
                assert!(!keys_in(&provided, &prefix, bits).is_empty());
            }
            t = c.next_at();
        }
        assert_eq!(seen, 32);
        let all: usize = (0..32u8)
            .map(|r| keys_in(&provided, &Key([r << 3; 32]).prefix(5), 5).len())
            .sum();
        assert_eq!(all, 1000);
    }
}
