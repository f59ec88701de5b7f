//! Byte buffers lent for the length of one input: the plaintext a node
//! encodes or opens, a datagram queued until it is polled.
//!
//! A node needs them only while it runs an input, and a simulation runs
//! thousands of nodes on one thread, one input at a time; so the thread's
//! nodes share a small pool instead of each keeping its own buffers grown
//! to the largest datagram it ever handled (about 3.5 KB per node, held for
//! the node's life). Only capacity is shared, never content: a buffer is
//! cleared when it comes back.

use std::cell::RefCell;

/// Buffers kept per thread; beyond, returned buffers are freed.
const MAX_POOLED: usize = 16;

/// A pooled buffer is kept only up to this capacity (a datagram is at most
/// about 1.4 KB, and a buffer grown by doubling to hold one is 2 KB).
const MAX_KEPT_CAPACITY: usize = 4096;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer, with the capacity of one used before if any.
pub fn take() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Give `buf` back for the next [`take`].
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    buf.clear();
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < MAX_POOLED {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_empty_with_its_capacity() {
        let mut b = take();
        b.extend_from_slice(&[7; 1200]);
        let cap = b.capacity();
        give(b);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
    }

    #[test]
    fn the_pool_is_bounded() {
        for _ in 0..MAX_POOLED * 2 {
            give(Vec::with_capacity(64));
        }
        assert_eq!(POOL.with(|p| p.borrow().len()), MAX_POOLED);
        give(Vec::with_capacity(MAX_KEPT_CAPACITY + 1));
        assert!(POOL.with(|p| p.borrow().iter().all(|b| b.capacity() <= MAX_KEPT_CAPACITY)));
    }
}
