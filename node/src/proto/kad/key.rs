//! 256-bit Kademlia keys and the XOR metric (Maymounkov & Mazières 2002,
//! §2.1; libp2p kad-dht spec, "Distance": keys are SHA-256 digests).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::PeerId;

/// A point of the keyspace: the SHA-256 of a peer id or of a content id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub [u8; 32]);

/// The XOR of two keys, ordered as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; 32]);

impl Key {
    /// The key of a peer: SHA-256 of its id.
    #[must_use]
    pub fn of_peer(id: &PeerId) -> Key {
        Key(Sha256::digest(id.as_bytes()).into())
    }

    /// The key of a piece of content named by `bytes` (e.g. a topic).
    #[must_use]
    pub fn of_content(bytes: &[u8]) -> Key {
        Key(Sha256::digest(bytes).into())
    }

    #[must_use]
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// Length of the common prefix with `other`, in bits (256 when equal).
    #[must_use]
    pub fn common_prefix_len(&self, other: &Key) -> u32 {
        self.distance(other).leading_zeros()
    }

    /// Whether the first `bits` bits equal those of `prefix`.
    #[must_use]
    pub fn has_prefix(&self, prefix: &Key, bits: u32) -> bool {
        self.common_prefix_len(prefix) >= bits
    }

    /// This key with every bit after the first `bits` replaced by those of
    /// `fill` (a random key inside the region of prefix `bits`).
    #[must_use]
    pub fn with_suffix(&self, bits: u32, fill: &Key) -> Key {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            let start = i as u32 * 8;
            let keep: u8 = if bits >= start + 8 {
                0xff
            } else if bits <= start {
                0
            } else {
                0xffu8 << (8 - (bits - start))
            };
            *o = (self.0[i] & keep) | (fill.0[i] & !keep);
        }
        Key(out)
    }

    /// The first `bits` bits of this key, the rest zero.
    #[must_use]
    pub fn prefix(&self, bits: u32) -> Key {
        self.with_suffix(bits, &Key([0; 32]))
    }
}

impl Distance {
    #[must_use]
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(")?;
        for b in &self.0[..5] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_xor_and_prefixes_agree() {
        let a = Key([0; 32]);
        let mut b = [0u8; 32];
        b[1] = 0b0010_0000;
        let b = Key(b);
        assert_eq!(a.common_prefix_len(&b), 10);
        assert_eq!(a.common_prefix_len(&a), 256);
        assert!(b.has_prefix(&a, 10));
        assert!(!b.has_prefix(&a, 11));
        assert!(a.distance(&b) > a.distance(&a));
        let fill = Key([0xff; 32]);
        let k = a.with_suffix(12, &fill);
        assert_eq!(k.0[0], 0);
        assert_eq!(k.0[1], 0x0f);
        assert_eq!(k.0[2], 0xff);
        assert_eq!(k.prefix(12), a);
        assert_eq!(fill.prefix(3).0[0], 0xe0);
    }
}
