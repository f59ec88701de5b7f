//! The session layer as an observer on the wire sees it: every datagram's
//! first byte is its session type in clear (the table in
//! `grove_node::transport::session`), and an empty data datagram is
//! exactly [`DATA_OVERHEAD`] bytes. Counted from the bytes the network
//! carries, never from the nodes' state.
//!
//! A relay frame's inner datagram is sealed again on the hop to the relay:
//! handshakes and acks carried through relays are invisible here (as they
//! are to anyone on the wire) and count as traversal traffic.

use grove_node::transport::session::{kind, Crypto, DATA_OVERHEAD};
use serde::Serialize;

use crate::report::round6;

/// What the first byte and the length of a datagram say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Initiation,
    Response,
    CookieReply,
    IdentifyRequest,
    IdentifyReply,
    /// Data with an empty plaintext: an ack or keep-alive.
    Ack,
    /// Data with a plaintext.
    Data,
    /// Not a session datagram (NAT-PMP, an attacker's plaintext).
    Other,
}

impl Seen {
    pub fn of(bytes: &[u8]) -> Seen {
        match bytes.first().copied() {
            Some(kind::INITIATION) => Seen::Initiation,
            Some(kind::RESPONSE) => Seen::Response,
            Some(kind::COOKIE_REPLY) => Seen::CookieReply,
            Some(kind::IDENTIFY_REQUEST) => Seen::IdentifyRequest,
            Some(kind::IDENTIFY_REPLY) => Seen::IdentifyReply,
            Some(kind::DATA_ACK_ELICITING | kind::DATA) if bytes.len() == DATA_OVERHEAD => {
                Seen::Ack
            }
            Some(kind::DATA_ACK_ELICITING | kind::DATA) => Seen::Data,
            _ => Seen::Other,
        }
    }
}

/// Session datagrams seen on the wire, by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportRec {
    pub initiations: u64,
    pub responses: u64,
    pub cookie_replies: u64,
    pub identify_requests: u64,
    pub identify_replies: u64,
    pub acks: u64,
    pub data: u64,
    pub other: u64,
}

impl TransportRec {
    /// Count a datagram; what it was.
    pub fn datagram(&mut self, bytes: &[u8]) -> Seen {
        let seen = Seen::of(bytes);
        *match seen {
            Seen::Initiation => &mut self.initiations,
            Seen::Response => &mut self.responses,
            Seen::CookieReply => &mut self.cookie_replies,
            Seen::IdentifyRequest => &mut self.identify_requests,
            Seen::IdentifyReply => &mut self.identify_replies,
            Seen::Ack => &mut self.acks,
            Seen::Data => &mut self.data,
            Seen::Other => &mut self.other,
        } += 1;
        seen
    }

    fn total(&self) -> u64 {
        self.initiations
            + self.responses
            + self.cookie_replies
            + self.identify_requests
            + self.identify_replies
            + self.acks
            + self.data
            + self.other
    }

    /// The report section, with rates over `node_hours` of running nodes.
    pub fn section(&self, crypto: Crypto, node_hours: f64) -> TransportSection {
        let per_hour = |x: u64| {
            if node_hours > 0.0 {
                round6(x as f64 / node_hours)
            } else {
                0.0
            }
        };
        TransportSection {
            crypto,
            initiations: self.initiations,
            responses: self.responses,
            cookie_replies: self.cookie_replies,
            identify_requests: self.identify_requests,
            identify_replies: self.identify_replies,
            acks: self.acks,
            data: self.data,
            handshakes_per_node_hour: per_hour(self.initiations),
            acks_per_node_hour: per_hour(self.acks),
            acks_share: round6(self.acks as f64 / self.total().max(1) as f64),
        }
    }
}

/// The session layer's cost on the wire.
#[derive(Clone, Debug, Serialize)]
pub struct TransportSection {
    /// `real` (Noise) or `null` (same datagrams, no arithmetic), from
    /// `[node.transport] crypto`.
    pub crypto: Crypto,
    /// Handshake initiations sent (retries and rekeys included).
    pub initiations: u64,
    pub responses: u64,
    pub cookie_replies: u64,
    pub identify_requests: u64,
    pub identify_replies: u64,
    /// Empty data datagrams ([`DATA_OVERHEAD`] bytes): acks and
    /// keep-alives.
    pub acks: u64,
    /// Data datagrams with a plaintext.
    pub data: u64,
    /// Initiations per node-hour of running nodes.
    pub handshakes_per_node_hour: f64,
    /// Acks per node-hour of running nodes.
    pub acks_per_node_hour: f64,
    /// Acks over every datagram sent.
    pub acks_share: f64,
}

impl TransportSection {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let crypto = match self.crypto {
            Crypto::Real => "real",
            Crypto::Null => "null",
        };
        format!(
            "  sessions ({crypto} crypto): {} initiations ({:.1}/node-hour), {} cookie replies, {} acks ({:.1}/node-hour, {:.1}% of datagrams)\n",
            self.initiations,
            self.handshakes_per_node_hour,
            self.cookie_replies,
            self.acks,
            self.acks_per_node_hour,
            100.0 * self.acks_share,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_told_apart_by_first_byte_and_length() {
        let mut r = TransportRec::default();
        let empty = [kind::DATA; DATA_OVERHEAD];
        let elicit = [kind::DATA_ACK_ELICITING; DATA_OVERHEAD];
        let data = [kind::DATA; DATA_OVERHEAD + 1];
        for (bytes, seen) in [
            (&[kind::INITIATION; 133][..], Seen::Initiation),
            (&[kind::RESPONSE; 89], Seen::Response),
            (&[kind::COOKIE_REPLY; 61], Seen::CookieReply),
            (&[kind::IDENTIFY_REQUEST; 49], Seen::IdentifyRequest),
            (&[kind::IDENTIFY_REPLY; 49], Seen::IdentifyReply),
            (&empty, Seen::Ack),
            (&elicit, Seen::Ack),
            (&data, Seen::Data),
            (&[1, 2, 3], Seen::Other),
            (&[], Seen::Other),
        ] {
            assert_eq!(r.datagram(bytes), seen, "{bytes:?}");
        }
        let s = r.section(Crypto::Null, 0.5);
        assert_eq!((s.initiations, s.acks, s.data), (1, 2, 1));
        assert_eq!(s.handshakes_per_node_hour, 2.0);
        assert_eq!(s.acks_per_node_hour, 4.0);
        assert_eq!(s.acks_share, 0.2);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["crypto"], "null");
    }
}
