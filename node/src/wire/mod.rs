//! The datagram framing: versioned, length-bounded, and total: decoding
//! any byte string returns a value or a [`DecodeError`], never a panic.
//!
//! One datagram carries one message from one sender. The encoding is
//! canonical: every message has exactly one encoding, so a byte string that
//! decodes re-encodes to itself. Integers are big-endian.
//!
//! This module holds what every protocol shares: the header, the [`tag`]
//! table, the limits of a datagram and of a relay frame, and the encoding
//! primitives (a checked reader, addresses and peer records). Each
//! protocol's messages and their bodies live with the protocol, in its
//! `message.rs`:
//!
//! | tags           | protocol      | bodies                             |
//! |---------------:|---------------|------------------------------------|
//! | `0x01..=0x0a`  | HyParView     | `proto/hyparview/message.rs`       |
//! | `0x10..=0x14`  | Plumtree      | `proto/plumtree/message.rs`        |
//! | `0x20..=0x31`  | NAT traversal | `transport/nat/message.rs`         |
//! | `0x40..=0x46`  | GossipSub     | `proto/gossipsub/message.rs`       |
//! | `0x50..=0x5a`  | Kademlia DHT  | `proto/kad/message.rs`             |
//! | `0x60..=0x63`  | knowledge     | `proto/knowledge/message.rs`       |
//!
//! The union of every message and its dispatch by tag is
//! `crate::message`, above the protocols.
//!
//! # Header (34 bytes)
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 1    | version, [`VERSION`] (anything else is [`DecodeError::Version`]) |
//! | 1      | 1    | message tag ([`tag`])                   |
//! | 2      | 32   | sender [`PeerId`]                       |
//! | 34     | ...  | body, by tag                            |
//!
//! Every tag not in the table is [`DecodeError::UnknownTag`]. A bool is one
//! byte, 0 or 1; any other value is [`DecodeError::Invalid`], as is an
//! address family other than those below.
//!
//! # Addresses and peers
//!
//! An address is 7 bytes (IPv4) or 19 bytes (IPv6):
//!
//! | size    | field                                         |
//! |--------:|-----------------------------------------------|
//! | 1       | address family: 4 or 6, or'ed with the flag   |
//! | 4 or 16 | IP address                                    |
//! | 2       | UDP port                                      |
//!
//! The flag, `0x80` (`RELAY_FOLLOWS`), says that a relay address comes
//! right after this address. It is allowed only on a peer's own address and
//! on NAT traversal's `Hello`'s `observed`; anywhere else (a relay address
//! itself, every other address) a family byte with the flag set is
//! [`DecodeError::Invalid`]. An address that the peers' address policy
//! ([`crate::identity::usable`]) refuses is [`DecodeError::UnusableAddress`].
//!
//! A peer is 39 to 70 bytes:
//!
//! | size       | field                                                         |
//! |-----------:|---------------------------------------------------------------|
//! | 32         | [`PeerId`]                                                    |
//! | 7 or 19    | `addr`: address, flagged when the peer has a relay            |
//! | 0, 7 or 19 | `relay`: address, only when flagged (never itself flagged)    |
//!
//! An IPv6 address's flow label and scope id are not carried (they only mean
//! something on the sender's host) and decode as 0.
//!
//! # Limits
//!
//! A whole datagram is at most [`MAX_DATAGRAM_BYTES`] (1400) bytes; relayed
//! data (a datagram inside a relay frame) at most [`MAX_RELAYED_BYTES`]
//! (1313) bytes: what is left of a datagram after a RELAY-FROM header with
//! an IPv6 source address (34 + 32 + 19 + 2 bytes). Each protocol caps its
//! own counts and lengths so that its messages fit; encoding checks every
//! cap before writing anything ([`EncodeError::OverLimit`]), decoding
//! checks them too ([`DecodeError::OverLimit`], [`DecodeError::TooLong`]).
//! Bytes after the message are [`DecodeError::Trailing`]. The decoders
//! allocate only after checking a count against its cap and against the
//! bytes left.
//!
//! [`classify`], [`protocol`] and [`gossip_id`] read the header (and the
//! GOSSIP id at offset 34) without decoding the body, for observers that
//! account traffic; a [`Label`] also carries a DHT message's request id
//! (also at offset 34).

mod primitives;
pub mod tag;

use crate::PeerId;
pub(crate) use primitives::*;
pub use tag::PubSubKind;

/// Protocol version carried in every datagram.
pub const VERSION: u8 = 1;
/// Largest datagram Grove sends or accepts, in bytes.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// The class of a datagram, read from its header alone (for traffic
/// accounting by an observer of the network).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// Carries a broadcast payload (Plumtree/flood GOSSIP).
    Payload,
    /// Anything else (membership, IHAVE, GRAFT, PRUNE, keep-alive).
    Control,
}

/// Why a datagram could not be decoded.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is larger than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("datagram ended early while reading {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("unsupported protocol version {0} (this node speaks {VERSION})")]
    Version(u8),
    #[error("unknown message tag {tag:#04x} at byte {offset}")]
    UnknownTag { tag: u8, offset: usize },
    #[error("{what} is {value}, over the limit of {max}")]
    OverLimit {
        what: &'static str,
        value: usize,
        max: usize,
    },
    #[error("invalid {what} at byte {offset}")]
    Invalid { what: &'static str, offset: usize },
    #[error("peer address {addr} cannot be used (unspecified, multicast, broadcast or port 0)")]
    UnusableAddress { addr: std::net::SocketAddr },
    #[error("{extra} trailing bytes after the message")]
    Trailing { extra: usize },
}

/// Why a datagram could not be encoded.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{what} is {value}, over the limit of {max}")]
    OverLimit {
        what: &'static str,
        value: usize,
        max: usize,
    },
}

/// Bytes before the body: version, tag, sender id.
pub(crate) const HEADER_BYTES: usize = 2 + 32;
/// Offset of the GOSSIP message id.
const GOSSIP_ID_OFFSET: usize = HEADER_BYTES;
/// Largest relayed datagram: what is left of a datagram after a RELAY-FROM
/// header (header, source id, IPv6 source address, length).
pub const MAX_RELAYED_BYTES: usize = MAX_DATAGRAM_BYTES - (HEADER_BYTES + 32 + 19 + 2);

/// A protocol's messages on the wire: the tags they take (from the [`tag`]
/// table) and their bodies. Encoding is in two steps so that nothing is
/// written unless every cap holds.
pub(crate) trait Codec: Sized {
    /// The message's tag.
    fn tag(&self) -> u8;
    /// Every per-field cap (the datagram's size is checked after encoding).
    fn check_limits(&self) -> Result<(), EncodeError>;
    /// Write the body; the caps of [`Codec::check_limits`] must hold.
    fn encode(&self, out: &mut Vec<u8>);
    /// Read the body of a message with `tag`, one of this protocol's.
    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Append a datagram from `from` to `out`: the header with `tag`, then the
/// body `body` writes. The caller has checked every cap of the message;
/// this checks the datagram's size.
///
/// # Errors
///
/// [`EncodeError::OverLimit`] when the encoding would exceed
/// [`MAX_DATAGRAM_BYTES`]; `out` is then left as it was.
pub(crate) fn encode_frame(
    from: &PeerId,
    tag: u8,
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>),
) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(VERSION);
    out.push(tag);
    out.extend_from_slice(from.as_bytes());
    body(out);
    let len = out.len() - start;
    if len > MAX_DATAGRAM_BYTES {
        out.truncate(start);
        return Err(EncodeError::OverLimit {
            what: "datagram bytes",
            value: len,
            max: MAX_DATAGRAM_BYTES,
        });
    }
    Ok(())
}

/// Decode one datagram: the header here, the body by `body` (given the
/// tag, known to be in the [`tag`] table), then no trailing bytes.
///
/// # Errors
///
/// A [`DecodeError`] saying what was wrong and at which byte, for any input
/// that is not exactly one datagram within the limits.
pub(crate) fn decode_frame<T>(
    bytes: &[u8],
    body: impl FnOnce(u8, &mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<(PeerId, T), DecodeError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: MAX_DATAGRAM_BYTES,
        });
    }
    let mut r = Reader::new(bytes);
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let tag_offset = r.offset();
    let tag = r.u8("message tag")?;
    if !tag::is_known(tag) {
        return Err(DecodeError::UnknownTag {
            tag,
            offset: tag_offset,
        });
    }
    let from = PeerId(r.array("sender id")?);
    let message = body(tag, &mut r)?;
    r.finish()?;
    Ok((from, message))
}

/// Classify a datagram from its header without decoding it.
///
/// `None` when the bytes cannot be a datagram: shorter than the header,
/// longer than [`MAX_DATAGRAM_BYTES`], another version or an unknown tag.
#[must_use]
pub fn classify(bytes: &[u8]) -> Option<Class> {
    if bytes.len() < HEADER_BYTES || bytes.len() > MAX_DATAGRAM_BYTES {
        return None;
    }
    match bytes {
        [VERSION, tag::plumtree::GOSSIP, ..] => Some(Class::Payload),
        [VERSION, tag, ..] if tag::is_known(*tag) => Some(Class::Control),
        _ => None,
    }
}

/// The protocol a datagram belongs to, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// HyParView membership: joins, views, shuffles, keep-alives.
    Membership,
    /// Plumtree (or flooding): payloads, IHAVE, GRAFT, PRUNE.
    Broadcast,
    /// NAT traversal: HELLO, AutoNAT, relay, hole punching, relayed frames.
    Traversal,
    /// GossipSub: topic meshes, gossip, scoring-relevant control.
    PubSub,
    /// Kademlia DHT: lookups, provider records, value records.
    Dht,
    /// Knowledge commons: CRDT deltas, version vectors, snapshots.
    Knowledge,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Membership,
        Protocol::Broadcast,
        Protocol::Traversal,
        Protocol::PubSub,
        Protocol::Dht,
        Protocol::Knowledge,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Membership => "membership",
            Protocol::Broadcast => "broadcast",
            Protocol::Traversal => "traversal",
            Protocol::PubSub => "pubsub",
            Protocol::Dht => "dht",
            Protocol::Knowledge => "knowledge",
        }
    }
}

/// Which protocol a datagram belongs to, from its header alone; `None`
/// when [`classify`] would say it is no datagram of ours.
#[must_use]
pub fn protocol(bytes: &[u8]) -> Option<Protocol> {
    classify(bytes)?;
    tag::protocol_of(bytes[1])
}

/// What a datagram carries, read from its plaintext before it is sealed:
/// the message tag and, for a GOSSIP, the first 6 bytes of its id; for a
/// DHT request or response, the first 6 bytes of its request id (what pairs
/// a response with its request). The transport hands it to whoever sends
/// the datagram, for observers that account traffic (the simulator); it
/// never travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Label(pub u64);

impl Label {
    /// Not a Grove datagram (NAT-PMP), or a session's own (handshakes,
    /// acks).
    pub const FOREIGN: Label = Label(0);

    /// The label of a plaintext datagram.
    #[must_use]
    pub fn of(plaintext: &[u8]) -> Label {
        if classify(plaintext).is_none() {
            return Label::FOREIGN;
        }
        let prefix = gossip_id(plaintext)
            .or_else(|| dht_request_id(plaintext))
            .map_or(0, |id| id_prefix(&id));
        Label(0x100 | u64::from(plaintext[1]) | (prefix << 9))
    }

    /// The message tag, if a Grove message.
    #[must_use]
    pub fn tag(self) -> Option<u8> {
        (self.0 & 0x100 != 0).then_some(self.0 as u8)
    }

    #[must_use]
    pub fn protocol(self) -> Option<Protocol> {
        tag::protocol_of(self.tag()?)
    }

    #[must_use]
    pub fn class(self) -> Option<Class> {
        match self.tag()? {
            tag::plumtree::GOSSIP => Some(Class::Payload),
            _ => Some(Class::Control),
        }
    }

    /// [`id_prefix`] of a GOSSIP's id.
    #[must_use]
    pub fn gossip_prefix(self) -> Option<u64> {
        (self.class()? == Class::Payload).then_some(self.0 >> 9)
    }

    /// [`request_id_prefix`] of a DHT request's or response's request id
    /// (every DHT message but ADD_PROVIDER carries one).
    #[must_use]
    pub fn dht_request_prefix(self) -> Option<u64> {
        let tag = self.tag()?;
        (tag::protocol_of(tag)? == Protocol::Dht && tag != tag::dht::ADD_PROVIDER)
            .then_some(self.0 >> 9)
    }

    /// The GossipSub kind.
    #[must_use]
    pub fn pubsub_kind(self) -> Option<PubSubKind> {
        PubSubKind::of_tag(self.tag()?)
    }
}

/// The broadcast id of a GOSSIP datagram, read without decoding the rest.
#[must_use]
pub fn gossip_id(bytes: &[u8]) -> Option<[u8; 32]> {
    if classify(bytes)? != Class::Payload {
        return None;
    }
    bytes.get(GOSSIP_ID_OFFSET..)?.first_chunk::<32>().copied()
}

/// The bytes that hold a DHT message's request id (and what follows it,
/// padded), read without decoding the rest: `None` for ADD_PROVIDER and
/// every other protocol's message.
fn dht_request_id(bytes: &[u8]) -> Option<[u8; 32]> {
    let tag = *bytes.get(1)?;
    if tag::protocol_of(tag)? != Protocol::Dht || tag == tag::dht::ADD_PROVIDER {
        return None;
    }
    let id = bytes.get(HEADER_BYTES..HEADER_BYTES + 8)?;
    let mut padded = [0u8; 32];
    padded[..8].copy_from_slice(id);
    Some(padded)
}

/// What a [`Label`] carries of a DHT request id: its first 6 bytes (big
/// endian on the wire) as a number, as [`id_prefix`] reads them.
#[must_use]
pub fn request_id_prefix(id: u64) -> u64 {
    id >> 16
}

/// What a [`Label`] carries of a broadcast id: its first 6 bytes as a
/// number (collisions are negligible among a run's broadcasts).
#[must_use]
pub fn id_prefix(id: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&id[..6]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u8) -> Vec<u8> {
        let mut bytes = vec![VERSION, tag];
        bytes.extend([9; 32]);
        bytes
    }

    #[test]
    fn classify_reads_the_header_only() {
        assert_eq!(classify(&[]), None);
        assert_eq!(classify(&header(tag::hyparview::PING)[..33]), None);
        assert_eq!(
            classify(&header(tag::hyparview::PING)),
            Some(Class::Control)
        );
        assert_eq!(classify(&header(0x7f)), None);
        // A GOSSIP header without its id classifies but has no id.
        assert_eq!(
            classify(&header(tag::plumtree::GOSSIP)),
            Some(Class::Payload)
        );
        assert_eq!(gossip_id(&header(tag::plumtree::GOSSIP)), None);
        for tag in 0..=u8::MAX {
            let class = if tag == tag::plumtree::GOSSIP {
                Some(Class::Payload)
            } else if tag::is_known(tag) {
                Some(Class::Control)
            } else {
                None
            };
            assert_eq!(classify(&header(tag)), class, "{tag:#04x}");
        }
        let long = vec![VERSION; MAX_DATAGRAM_BYTES + 1];
        assert_eq!(classify(&long), None);
    }

    #[test]
    fn a_label_carries_the_tag_and_a_gossip_id_prefix() {
        let mut gossip = header(tag::plumtree::GOSSIP);
        gossip.extend(1..=32);
        let label = Label::of(&gossip);
        assert_eq!(label.tag(), Some(tag::plumtree::GOSSIP));
        assert_eq!(label.class(), Some(Class::Payload));
        assert_eq!(label.protocol(), Some(Protocol::Broadcast));
        assert_eq!(label.gossip_prefix(), Some(0x0102_0304_0506));
        let publish = Label::of(&header(tag::pubsub::PUBLISH));
        assert_eq!(publish.pubsub_kind(), Some(PubSubKind::Publish));
        assert_eq!(publish.gossip_prefix(), None);
        assert_eq!(Label::of(&[0; 40]), Label::FOREIGN);
        assert_eq!(Label::FOREIGN.tag(), None);
        // A DHT request carries its request id's prefix; ADD_PROVIDER none.
        let mut find = header(tag::dht::FIND_NODE);
        find.extend(0x0102_0304_0506_0708u64.to_be_bytes());
        find.push(1);
        find.extend([7; 32]);
        let label = Label::of(&find);
        assert_eq!(label.protocol(), Some(Protocol::Dht));
        assert_eq!(
            label.dht_request_prefix(),
            Some(request_id_prefix(0x0102_0304_0506_0708))
        );
        assert_eq!(label.gossip_prefix(), None);
        let add = Label::of(&header(tag::dht::ADD_PROVIDER));
        assert_eq!(add.dht_request_prefix(), None);
        assert_eq!(label.class(), Some(Class::Control));
    }
}
