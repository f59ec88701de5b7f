//! Keeping a node's long-lived collections small: their capacity is what
//! a node holds between inputs, and a simulation holds 100,000 nodes.

use std::collections::VecDeque;

/// Slots an empty output queue keeps between inputs.
pub const KEEP: usize = 4;

/// Push onto a short list that grows rarely (a node's eager and lazy
/// peers, its pending NEIGHBOR requests), growing its capacity by one
/// rather than doubling it: the list lives as long as the node, and a
/// doubled capacity of 96-byte peers would be held that long.
pub fn push_exact<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(1);
    }
    v.push(item);
}

/// Pop the front of `q`; when it is found empty (the reader has drained
/// it), a capacity above [`KEEP`] that a burst grew is given back. Such a
/// queue is empty between inputs, so what a burst reserved would otherwise
/// be held for the node's life: a few kilobytes per node, hundreds of
/// megabytes over 100,000 simulated nodes. A queue's bound is unchanged.
pub fn pop_front_releasing<T>(q: &mut VecDeque<T>) -> Option<T> {
    let item = q.pop_front();
    if item.is_none() && q.capacity() > KEEP {
        *q = VecDeque::new();
    }
    item
}

/// Give back the capacity of a list found empty: a short-lived table (a
/// request awaiting its answer, a record heard a moment ago) would
/// otherwise hold its largest size for the node's life.
pub fn release_if_empty<T>(v: &mut Vec<T>) {
    if v.is_empty() && v.capacity() > 0 {
        *v = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_list_gives_its_capacity_back() {
        let mut v: Vec<u64> = (0..10).collect();
        release_if_empty(&mut v);
        assert_eq!(v.len(), 10, "a list in use is untouched");
        v.clear();
        release_if_empty(&mut v);
        assert_eq!(v.capacity(), 0);
    }

    #[test]
    fn an_exact_push_grows_by_one() {
        let mut v = Vec::new();
        for i in 0..5 {
            push_exact(&mut v, i);
            assert_eq!(v.capacity(), v.len());
        }
    }

    #[test]
    fn a_drained_queue_gives_back_a_burst() {
        let mut q: VecDeque<u64> = VecDeque::new();
        q.extend(0..100);
        assert_eq!(pop_front_releasing(&mut q), Some(0));
        assert!(q.capacity() >= 99);
        while pop_front_releasing(&mut q).is_some() {}
        assert_eq!(q.capacity(), 0);
        q.push_back(1);
        let small = q.capacity();
        assert!(small <= KEEP);
        while pop_front_releasing(&mut q).is_some() {}
        assert_eq!(q.capacity(), small, "a small queue keeps its slots");
    }
}
