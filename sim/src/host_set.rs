//! A set of host indices that answers "the k-th smallest member" in
//! O(log n): the world picks a random running host on every start, and a
//! list of all running hosts per start is O(n^2) over a 100,000-host join.
//!
//! A Fenwick tree over membership bits (0 or 1 per host).

/// Host indices `0..capacity`, each in or out of the set.
#[derive(Clone, Debug)]
pub struct HostSet {
    /// `tree[i - 1]`: members in `(i - lowbit(i), i]` (1-based Fenwick).
    tree: Vec<u32>,
    member: Vec<bool>,
    len: usize,
}

impl HostSet {
    /// An empty set of hosts `0..capacity`.
    pub fn new(capacity: usize) -> Self {
        HostSet {
            tree: vec![0; capacity],
            member: vec![false; capacity],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, host: usize) -> bool {
        self.member[host]
    }

    /// Put `host` in the set (`true`) or take it out.
    pub fn set(&mut self, host: usize, member: bool) {
        if self.member[host] == member {
            return;
        }
        self.member[host] = member;
        if member {
            self.len += 1;
        } else {
            self.len -= 1;
        }
        let mut i = host + 1;
        while i <= self.tree.len() {
            if member {
                self.tree[i - 1] += 1;
            } else {
                self.tree[i - 1] -= 1;
            }
            i += i & i.wrapping_neg();
        }
    }

    /// The `k`-th smallest member (from 0), as `members[k]` would be on the
    /// sorted list of members; `None` when `k >= len`.
    pub fn nth(&self, k: usize) -> Option<usize> {
        if k >= self.len {
            return None;
        }
        // Descend: the largest prefix `pos` holding at most `k` members.
        let mut pos = 0;
        let mut left = k as u32;
        let mut step = self.tree.len().checked_ilog2().map_or(0, |b| 1 << b);
        while step > 0 {
            let next = pos + step;
            if next <= self.tree.len() && self.tree[next - 1] <= left {
                pos = next;
                left -= self.tree[next - 1];
            }
            step >>= 1;
        }
        Some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn nth_is_the_sorted_list_of_members() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for capacity in [1, 2, 7, 64, 100, 1000] {
            let mut set = HostSet::new(capacity);
            let mut member = vec![false; capacity];
            for _ in 0..3 * capacity {
                let h = rng.gen_range(0..capacity);
                let m = rng.gen_bool(0.6);
                set.set(h, m);
                member[h] = m;
                let list: Vec<usize> = (0..capacity).filter(|&i| member[i]).collect();
                assert_eq!(set.len(), list.len());
                for (k, &h) in list.iter().enumerate() {
                    assert_eq!(set.nth(k), Some(h));
                }
                assert_eq!(set.nth(list.len()), None);
                assert!((0..capacity).all(|i| set.contains(i) == member[i]));
            }
        }
    }
}
