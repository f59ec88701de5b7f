//! Node identity: an ed25519 key pair, and the peer id derived from it.
//!
//! In the simulator every key comes from the scenario seed
//! ([`Identity::from_seed`]); the real daemon draws its key from the OS once
//! at start-up, outside every core.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ed25519_dalek::SigningKey;

/// A peer's id: its ed25519 public key.
#[derive(Clone, Copy, Eq)]
pub struct PeerId(pub [u8; 32]);

impl Ord for PeerId {
    /// Byte order, as the derived impl (see [`PeerId::words`]).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PeerId {
    /// Byte equality (see [`PeerId::words`]).
    fn eq(&self, other: &Self) -> bool {
        self.words() == other.words()
    }
}

impl std::hash::Hash for PeerId {
    /// The bytes, as the derived impl would (consistent with `eq`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PeerId {
    /// The id as bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as four big-endian 8-byte words. Every table keyed by peer
    /// (sessions, the address book, the views) compares ids on every
    /// datagram, and word comparisons stay inline where a 32-byte
    /// `memcmp` call would not; big-endian keeps the bytes' order.
    fn words(&self) -> [u64; 4] {
        std::array::from_fn(|i| {
            u64::from_be_bytes(self.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        })
    }
}

impl fmt::Display for PeerId {
    /// The first 5 bytes in hex, enough to tell peers apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..5] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// A peer as the protocols see it: who it is and where datagrams for it go.
///
/// `addr` is where the peer was seen (or says it is); `relay`, for a peer
/// behind a NAT that drops unsolicited datagrams, is the relay it holds a
/// reservation with, through which anyone can reach it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Peer {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub relay: Option<SocketAddr>,
}

impl Peer {
    pub fn new(id: PeerId, addr: SocketAddr) -> Self {
        Peer {
            id,
            addr,
            relay: None,
        }
    }
}

/// Whether a peer address named in a message may be sent to: a hostile
/// peer must not make nodes send to broadcast, multicast or unspecified
/// addresses (reflection), nor to port 0. The codecs refuse a message
/// naming any other address.
pub fn usable(addr: &SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    ip_ok && addr.port() != 0
}

/// This node's key pair.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A key pair from 32 seed bytes (deterministic: the simulator derives
    /// these from the scenario seed).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.key.verifying_key().to_bytes())
    }

    /// The signing key, for protocols that sign what they publish.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.peer_id())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn same_seed_same_id_other_seed_other_id() {
        let a = Identity::from_seed([7; 32]).peer_id();
        let b = Identity::from_seed([7; 32]).peer_id();
        let c = Identity::from_seed([8; 32]).peer_id();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(format!("{a}").len(), 10);
    }

    proptest::proptest! {
        /// The word-wise order and equality are the bytes' order and
        /// equality (tables keyed by peer iterate in the same order as
        /// before, so reports do not change).
        #[test]
        fn order_and_equality_are_the_bytes(
            a in proptest::array::uniform32(0u8..4),
            b in proptest::array::uniform32(0u8..4),
        ) {
            proptest::prop_assert_eq!(PeerId(a).cmp(&PeerId(b)), a.cmp(&b));
            proptest::prop_assert_eq!(PeerId(a) == PeerId(b), a == b);
        }
    }

    /// Addresses a peer record may never name (broadcast, unspecified,
    /// multicast, port 0): the codecs' tests use them too.
    pub(crate) const UNUSABLE: [&str; 6] = [
        "255.255.255.255:9",
        "0.0.0.0:7000",
        "224.0.0.1:7000",
        "10.0.0.1:0",
        "[::]:7000",
        "[ff02::1]:7000",
    ];

    #[test]
    fn reflection_targets_are_unusable() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        for bad in UNUSABLE {
            assert!(!usable(&sa(bad)), "{bad}");
        }
        assert!(usable(&sa("10.0.0.1:7000")));
        assert!(usable(&sa("127.0.0.1:7000")));
        assert!(usable(&sa("[::1]:7000")));
    }
}
