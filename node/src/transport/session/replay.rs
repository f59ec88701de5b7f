//! The replay window: which datagram counters a key pair has opened.
//!
//! A high-water mark and a 128-bit bitmap of the counters just below it
//! (RFC 6479's idea without its ring of blocks): a counter above every
//! counter seen is new; one of the [`REORDER_DEPTH`] counters below the
//! highest is new if its bit is clear; anything older is refused. So a
//! datagram may arrive up to 127 places behind the newest one opened.

/// How far behind the newest opened counter a datagram may still arrive.
pub const REORDER_DEPTH: u64 = 128;

/// The counters opened so far with one key pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ReplayWindow {
    /// One more than the highest counter opened (0: none yet).
    next: u64,
    /// Bit `i`: counter `next - 1 - i` was opened. Two words rather than a
    /// `u128`, whose 16-byte alignment would pad every key pair.
    seen: [u64; 2],
}

impl ReplayWindow {
    /// Whether `counter` is new (it may be opened). Changes nothing: the
    /// datagram must open before [`ReplayWindow::commit`].
    pub(super) fn is_new(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false; // never sealed (Noise reserves it)
        }
        if counter >= self.next {
            return true;
        }
        let behind = self.next - 1 - counter;
        behind < REORDER_DEPTH && self.bits() & (1u128 << behind) == 0
    }

    /// Record `counter` as opened (it was new).
    pub(super) fn commit(&mut self, counter: u64) {
        debug_assert!(self.is_new(counter));
        let bits = if counter >= self.next {
            let shift = counter - self.next + 1;
            let kept = if shift >= REORDER_DEPTH {
                0
            } else {
                self.bits() << shift
            };
            self.next = counter + 1;
            kept | 1
        } else {
            self.bits() | 1u128 << (self.next - 1 - counter)
        };
        self.seen = [bits as u64, (bits >> 64) as u64];
    }

    fn bits(&self) -> u128 {
        u128::from(self.seen[0]) | u128::from(self.seen[1]) << 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reordered_and_replayed_counters() {
        let mut w = ReplayWindow::default();
        for c in [0, 1, 2, 5, 4] {
            assert!(w.is_new(c), "{c}");
            w.commit(c);
        }
        for c in [0, 1, 2, 4, 5] {
            assert!(!w.is_new(c), "replayed {c}");
        }
        assert!(w.is_new(3));
        w.commit(1000);
        assert!(w.is_new(1000 - 127), "127 behind is within the window");
        assert!(!w.is_new(1000 - 128), "128 behind is too old");
        assert!(!w.is_new(3), "far behind is too old");
        w.commit(1000 - 127);
        assert!(!w.is_new(1000 - 127));
        assert!(w.is_new(1001));
    }

    #[test]
    fn a_big_jump_clears_the_bitmap() {
        let mut w = ReplayWindow::default();
        w.commit(10);
        w.commit(10 + 200);
        assert!(!w.is_new(10));
        assert!(w.is_new(10 + 199));
        assert!(!w.is_new(10 + 200));
    }
}
