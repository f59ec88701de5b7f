//! What an eavesdropper on the network has seen: a bounded ring of recent
//! session datagrams between honest hosts, to or from the hosts under
//! attack, sampled (at most one every [`CAPTURE_GAP_NS`]) so that the ring
//! spans seconds whatever the traffic. The world's network observer feeds
//! it; replay and spoofing attackers read it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use grove_node::transport::session::kind;

use super::CAPTURE_GAP_NS;

/// One datagram as it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub at_ns: u64,
    /// The sending host.
    pub src: u32,
    /// Where it was sent.
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The ring, and what it keeps.
pub struct Capture {
    ring: Vec<Captured>,
    /// The slot the next datagram overwrites, once the ring is full.
    next: usize,
    capacity: usize,
    /// Hosts whose datagrams are kept (the targets), and hosts whose
    /// datagrams never are (the attackers).
    from: Vec<bool>,
    excluded: Vec<bool>,
    /// Destination addresses whose datagrams are kept (the targets', as
    /// the other hosts address them).
    to: BTreeSet<IpAddr>,
    /// When the last datagram was kept.
    last_ns: Option<u64>,
}

impl Capture {
    /// A ring of `capacity` datagrams sent by hosts with `from[host]`, or
    /// to an address in `to`, never by hosts with `excluded[host]`.
    pub fn new(
        capacity: usize,
        from: Vec<bool>,
        to: BTreeSet<IpAddr>,
        excluded: Vec<bool>,
    ) -> Self {
        assert!(capacity > 0, "a capture ring holds something");
        Capture {
            ring: Vec::with_capacity(capacity),
            next: 0,
            capacity,
            from,
            excluded,
            to,
            last_ns: None,
        }
    }

    /// Host `src` sent `bytes` to `dst` at `now_ns`, on its way if
    /// `in_flight`: keep it if it is a session datagram the ring is for
    /// and none was kept in the last [`CAPTURE_GAP_NS`] (the oldest one
    /// goes).
    pub fn observe(
        &mut self,
        now_ns: u64,
        src: u32,
        dst: SocketAddr,
        bytes: &[u8],
        in_flight: bool,
    ) {
        if !in_flight || self.last_ns.is_some_and(|t| now_ns < t + CAPTURE_GAP_NS) {
            return;
        }
        let host = src as usize;
        let session = bytes
            .first()
            .is_some_and(|b| (kind::INITIATION..=kind::IDENTIFY_REPLY).contains(b));
        let wanted = self.from.get(host).copied().unwrap_or(false) || self.to.contains(&dst.ip());
        if !session || !wanted || self.excluded.get(host).copied().unwrap_or(true) {
            return;
        }
        self.last_ns = Some(now_ns);
        if self.ring.len() < self.capacity {
            self.ring.push(Captured {
                at_ns: now_ns,
                src,
                dst,
                bytes: bytes.to_vec(),
            });
            return;
        }
        let slot = &mut self.ring[self.next];
        slot.at_ns = now_ns;
        slot.src = src;
        slot.dst = dst;
        slot.bytes.clear();
        slot.bytes.extend_from_slice(bytes);
        self.next = (self.next + 1) % self.capacity;
    }

    /// The datagrams held, in slot order.
    pub fn held(&self) -> &[Captured] {
        &self.ring
    }
}
