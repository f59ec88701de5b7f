//! The datagram encoding: versioned, length-bounded, and total: decoding
//! any byte string returns a value or a [`DecodeError`], never a panic.
//!
//! One datagram carries one [`Message`] from one sender. The encoding is
//! canonical: every message has exactly one encoding, so a byte string that
//! decodes re-encodes to itself. Integers are big-endian.
//!
//! # Header (34 bytes)
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 1    | version, [`VERSION`] (anything else is [`DecodeError::Version`]) |
//! | 1      | 1    | message tag (tables below)              |
//! | 2      | 32   | sender [`PeerId`]                       |
//! | 34     | ...  | body, by tag                            |
//!
//! # Bodies
//!
//! Membership and broadcast:
//!
//! | tag    | message                     | body                                                    |
//! |-------:|-----------------------------|---------------------------------------------------------|
//! | `0x01` | HyParView `Join`            | empty                                                   |
//! | `0x02` | HyParView `JoinReply`       | empty                                                   |
//! | `0x03` | HyParView `ForwardJoin`     | `joiner`: peer, `ttl`: u8                               |
//! | `0x04` | HyParView `Neighbor`        | `priority`: u8, 0 = `Low`, 1 = `High`                   |
//! | `0x05` | HyParView `NeighborReply`   | `accepted`: bool                                        |
//! | `0x06` | HyParView `Disconnect`      | `alive`: bool                                           |
//! | `0x07` | HyParView `Shuffle`         | `origin`: peer, `ttl`: u8, count: u8, count x peer      |
//! | `0x08` | HyParView `ShuffleReply`    | count: u8, count x peer                                 |
//! | `0x09` | HyParView `Ping`            | `nonce`: u32                                            |
//! | `0x0a` | HyParView `Pong`            | `nonce`: u32                                            |
//! | `0x10` | Plumtree `Gossip`           | `id`: 32 bytes, `hops`: u16, length: u16, payload bytes |
//! | `0x11` | Plumtree `IHave`            | count: u8, count x (`id`: 32 bytes, `hops`: u16)        |
//! | `0x12` | Plumtree `Graft`            | `id`: 32 bytes                                          |
//! | `0x13` | Plumtree `Prune`            | empty                                                   |
//!
//! NAT traversal ([`nat::Message`]: AutoNAT, Circuit Relay v2, DCUtR); an
//! id is a 32-byte [`PeerId`], an address, a status and a reach are as
//! described below:
//!
//! | tag    | message           | body                                                                         |
//! |-------:|-------------------|------------------------------------------------------------------------------|
//! | `0x20` | `Hello`           | `observed`: address, flagged when `relay` follows; `relay`: address, only when flagged; `reach`: reach |
//! | `0x21` | `DialRequest`     | `nonce`: u64                                                                 |
//! | `0x22` | `DialResponse`    | `nonce`: u64, `helpers`: u8 (0-3), `observed`: address                       |
//! | `0x23` | `DialBackRequest` | `nonce`: u64, `peer`: id, `target`: address                                  |
//! | `0x24` | `DialBack`        | `nonce`: u64                                                                 |
//! | `0x25` | `Reserve`         | empty                                                                        |
//! | `0x26` | `ReserveStatus`   | `status`: status, `ttl_s`: u32, `limit_duration_s`: u32, `limit_bytes`: u32, `observed`: address |
//! | `0x27` | `Connect`         | `target`: id                                                                 |
//! | `0x28` | `ConnectStatus`   | `target`: id, `status`: status                                               |
//! | `0x29` | `Stop`            | `source`: id, `source_addr`: address                                         |
//! | `0x2a` | `StopStatus`      | `source`: id, `status`: status                                               |
//! | `0x2b` | `RelayTo`         | `target`: id, length: u16, `data` bytes                                      |
//! | `0x2c` | `RelayFrom`       | `source`: id, `source_addr`: address, length: u16, `data` bytes              |
//! | `0x2d` | `CircuitClosed`   | `peer`: id, `status`: status                                                 |
//! | `0x2e` | `PunchConnect`    | `attempt`: u8, `reply`: bool, `reach`: reach, count: u8, count x address     |
//! | `0x2f` | `PunchSync`       | `attempt`: u8                                                                |
//! | `0x30` | `Punch`           | `nonce`: u64, `ack`: bool                                                    |
//! | `0x31` | `KeepAlive`       | empty                                                                        |
//!
//! A status is a u16 Circuit Relay v2 code: 100 `OK`, 200
//! `RESERVATION_REFUSED`, 201 `RESOURCE_LIMIT_EXCEEDED`, 202
//! `PERMISSION_DENIED`, 203 `CONNECTION_FAILED`, 204 `NO_RESERVATION`, 400
//! `MALFORMED_MESSAGE`, 401 `UNEXPECTED_MESSAGE`. A reach is a u8: 0
//! `Unknown`, 1 `Private`, 2 `Public`, 3 `PortMapped`.
//!
//! GossipSub ([`crate::proto::gossipsub::Message`]) uses tags `0x40` to
//! `0x46`; its bodies and limits are described in [`gossipsub`].
//!
//! Every other tag is [`DecodeError::UnknownTag`]. A bool is one byte, 0 or
//! 1; any other value is [`DecodeError::Invalid`], as is a priority other
//! than 0 or 1, a status or reach code not listed above, and an address
//! family other than those below.
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
//! on `Hello`'s `observed`; anywhere else (a relay address itself, every
//! other address) a family byte with the flag set is
//! [`DecodeError::Invalid`]. An address that [`usable`] refuses is
//! [`DecodeError::UnusableAddress`].
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
//! Checked by [`encode`] (which returns [`EncodeError::OverLimit`] rather
//! than write anything [`decode`] would reject) and by [`decode`]
//! ([`DecodeError::OverLimit`], [`DecodeError::TooLong`]):
//!
//! - a whole datagram is at most [`MAX_DATAGRAM_BYTES`] (1400) bytes;
//! - SHUFFLE and SHUFFLE-REPLY carry at most
//!   [`hyparview::MAX_SHUFFLE_PEERS`] (16) peers, so that a SHUFFLE at its
//!   cap, with IPv6 addresses and relays throughout (70 bytes a peer,
//!   34 + 70 + 2 + 16 x 70 = 1226 bytes), fits inside a relay frame
//!   ([`MAX_RELAYED_BYTES`]) and can reach a peer behind a NAT;
//! - IHAVE carries at most [`plumtree::MAX_IHAVE_ENTRIES`] (32) entries;
//! - a GOSSIP payload is at most [`plumtree::MAX_PAYLOAD_BYTES`] (1024)
//!   bytes;
//! - RELAY-TO and RELAY-FROM `data` is at most [`MAX_RELAYED_BYTES`] (1313)
//!   bytes: what is left of a datagram after a RELAY-FROM header with an
//!   IPv6 source address (34 + 32 + 19 + 2 bytes);
//! - PUNCH-CONNECT carries at most [`nat::MAX_PUNCH_ADDRS`] (4) addresses.
//!
//! A GOSSIP, IHAVE, relay frame or any other NAT message within its limits
//! always fits one datagram. Bytes after the message are
//! [`DecodeError::Trailing`]. The decoder allocates only after checking a
//! count against its cap and against the bytes left.
//!
//! Kademlia DHT messages (`0x50..=0x5a`) are described in [`kad`].
//!
//! [`classify`] and [`gossip_id`] read the header (and the GOSSIP id at
//! offset 34) without decoding the body, for observers that account traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub mod gossipsub;

use bytes::Bytes;

use crate::proto::hyparview::{self, Priority, MAX_SHUFFLE_PEERS};
use crate::proto::plumtree::{self, MsgId, MAX_IHAVE_ENTRIES, MAX_PAYLOAD_BYTES};
use crate::transport::nat::{self, Reach, Status, MAX_PUNCH_ADDRS};
use crate::{Peer, PeerId};

mod kad;
pub mod knowledge;

/// Protocol version carried in every datagram.
pub const VERSION: u8 = 1;
/// Largest datagram Grove sends or accepts, in bytes.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// Every wire message of the node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    HyParView(hyparview::Message),
    Plumtree(plumtree::Message),
    Nat(nat::Message),
    /// GossipSub (tags `0x40..=0x46`, see [`gossipsub`]).
    PubSub(crate::proto::gossipsub::Message),
    Dht(crate::proto::kad::Message),
    /// Knowledge commons: one chunk of a CRDT blob ([`knowledge`]).
    Knowledge(knowledge::Chunk),
}

impl Message {
    /// The peer records the message carries (HyParView walks and shuffles,
    /// DHT node records, GossipSub peer exchange): hearsay for the
    /// transport's address book.
    pub fn peer_records(&self) -> impl Iterator<Item = &Peer> + '_ {
        let membership = match self {
            Message::HyParView(m) => Some(m.peer_records()),
            _ => None,
        };
        let dht = match self {
            Message::Dht(m) => Some(m.peer_records()),
            _ => None,
        };
        let pubsub = match self {
            Message::PubSub(m) => Some(m.peer_records()),
            _ => None,
        };
        membership
            .into_iter()
            .flatten()
            .chain(dht.into_iter().flatten())
            .chain(pubsub.into_iter().flatten())
    }
}

/// One datagram: who sent it and what it says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Datagram {
    pub from: PeerId,
    pub message: Message,
}

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
const HEADER_BYTES: usize = 2 + 32;
/// Offset of the GOSSIP message id.
const GOSSIP_ID_OFFSET: usize = HEADER_BYTES;
/// Size of the smallest peer encoding (IPv4).
const PEER_V4_BYTES: usize = 32 + 1 + 4 + 2;
/// Size of one IHAVE entry.
const IHAVE_ENTRY_BYTES: usize = 32 + 2;

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
/// Set in a peer's address family byte when its relay address follows.
const RELAY_FOLLOWS: u8 = 0x80;
/// Largest relayed datagram: what is left of a datagram after a RELAY-FROM
/// header (header, source id, IPv6 source address, length).
pub const MAX_RELAYED_BYTES: usize = MAX_DATAGRAM_BYTES - (HEADER_BYTES + 32 + 19 + 2);
/// Largest peer encoding: id, IPv6 address, IPv6 relay address.
const PEER_MAX_BYTES: usize = 32 + 19 + 19;
// A SHUFFLE at its cap, with IPv6 addresses and relays, fits a relay frame.
const _: () = assert!(
    HEADER_BYTES + PEER_MAX_BYTES + 1 + 1 + MAX_SHUFFLE_PEERS * PEER_MAX_BYTES <= MAX_RELAYED_BYTES
);
// So does a GOSSIP at its cap.
const _: () = assert!(HEADER_BYTES + 32 + 2 + 2 + MAX_PAYLOAD_BYTES <= MAX_RELAYED_BYTES);

// Counts travel as u8, payload lengths as u16.
const _: () = assert!(MAX_SHUFFLE_PEERS <= u8::MAX as usize);
const _: () = assert!(MAX_IHAVE_ENTRIES <= u8::MAX as usize);
const _: () = assert!(MAX_PAYLOAD_BYTES <= u16::MAX as usize);
// A GOSSIP or IHAVE within its own limits always fits a datagram.
const _: () = assert!(HEADER_BYTES + 32 + 2 + 2 + MAX_PAYLOAD_BYTES <= MAX_DATAGRAM_BYTES);
const _: () =
    assert!(HEADER_BYTES + 1 + MAX_IHAVE_ENTRIES * IHAVE_ENTRY_BYTES <= MAX_DATAGRAM_BYTES);

/// Message tags (byte 1).
mod tag {
    pub const JOIN: u8 = 0x01;
    pub const JOIN_REPLY: u8 = 0x02;
    pub const FORWARD_JOIN: u8 = 0x03;
    pub const NEIGHBOR: u8 = 0x04;
    pub const NEIGHBOR_REPLY: u8 = 0x05;
    pub const DISCONNECT: u8 = 0x06;
    pub const SHUFFLE: u8 = 0x07;
    pub const SHUFFLE_REPLY: u8 = 0x08;
    pub const PING: u8 = 0x09;
    pub const PONG: u8 = 0x0a;
    pub const GOSSIP: u8 = 0x10;
    pub const IHAVE: u8 = 0x11;
    pub const GRAFT: u8 = 0x12;
    pub const PRUNE: u8 = 0x13;
    pub const HELLO: u8 = 0x20;
    pub const DIAL_REQUEST: u8 = 0x21;
    pub const DIAL_RESPONSE: u8 = 0x22;
    pub const DIAL_BACK_REQUEST: u8 = 0x23;
    pub const DIAL_BACK: u8 = 0x24;
    pub const RESERVE: u8 = 0x25;
    pub const RESERVE_STATUS: u8 = 0x26;
    pub const CONNECT: u8 = 0x27;
    pub const CONNECT_STATUS: u8 = 0x28;
    pub const STOP: u8 = 0x29;
    pub const STOP_STATUS: u8 = 0x2a;
    pub const RELAY_TO: u8 = 0x2b;
    pub const RELAY_FROM: u8 = 0x2c;
    pub const CIRCUIT_CLOSED: u8 = 0x2d;
    pub const PUNCH_CONNECT: u8 = 0x2e;
    pub const PUNCH_SYNC: u8 = 0x2f;
    pub const PUNCH: u8 = 0x30;
    pub const KEEP_ALIVE: u8 = 0x31;
    // Reserved ranges, one per protocol still to come; each protocol's
    // codec lives in its own file under `wire/` and its tags in its range.
    pub const PUBSUB_FIRST: u8 = 0x40;
    pub const PUBSUB_LAST: u8 = 0x4f;
    pub const DHT_FIRST: u8 = 0x50;
    pub const DHT_LAST: u8 = 0x5f;
    pub const KNOWLEDGE_FIRST: u8 = 0x60;
    pub const KNOWLEDGE_LAST: u8 = 0x6f;
}

/// Append the encoding of `datagram` to `out`.
///
/// # Errors
///
/// [`EncodeError::OverLimit`] when a count or the payload is over its cap,
/// or the encoding would exceed [`MAX_DATAGRAM_BYTES`]; `out` is then left
/// as it was.
pub fn encode(datagram: &Datagram, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_limits(&datagram.message)?;
    let start = out.len();
    out.push(VERSION);
    out.push(message_tag(&datagram.message));
    out.extend_from_slice(datagram.from.as_bytes());
    encode_body(&datagram.message, out);
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

/// Decode one datagram.
///
/// # Errors
///
/// A [`DecodeError`] saying what was wrong and at which byte, for any input
/// that is not exactly the encoding of one datagram within the limits.
pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
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
    if !is_known_tag(tag) {
        return Err(DecodeError::UnknownTag {
            tag,
            offset: tag_offset,
        });
    }
    let from = PeerId(r.array("sender id")?);
    let message = decode_body(tag, &mut r)?;
    r.finish()?;
    Ok(Datagram { from, message })
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
        [VERSION, tag::GOSSIP, ..] => Some(Class::Payload),
        [VERSION, tag, ..] if is_known_tag(*tag) => Some(Class::Control),
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
    protocol_of_tag(bytes[1])
}

fn protocol_of_tag(tag: u8) -> Option<Protocol> {
    Some(match tag {
        tag::JOIN..=tag::PONG => Protocol::Membership,
        tag::GOSSIP..=tag::PRUNE => Protocol::Broadcast,
        tag::HELLO..=tag::KEEP_ALIVE => Protocol::Traversal,
        tag::PUBSUB_FIRST..=tag::PUBSUB_LAST => Protocol::PubSub,
        tag::DHT_FIRST..=tag::DHT_LAST => Protocol::Dht,
        tag::KNOWLEDGE_FIRST..=tag::KNOWLEDGE_LAST => Protocol::Knowledge,
        _ => return None,
    })
}

/// What a datagram carries, read from its plaintext before it is sealed:
/// the message tag and, for a GOSSIP, the first 6 bytes of its id. The
/// transport hands it to whoever sends the datagram, for observers that
/// account traffic (the simulator); it never travels.
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
        let prefix = gossip_id(plaintext).map_or(0, |id| id.prefix());
        Label(0x100 | u64::from(plaintext[1]) | (prefix << 9))
    }

    /// The message tag, if a Grove message.
    #[must_use]
    pub fn tag(self) -> Option<u8> {
        (self.0 & 0x100 != 0).then_some(self.0 as u8)
    }

    #[must_use]
    pub fn protocol(self) -> Option<Protocol> {
        protocol_of_tag(self.tag()?)
    }

    #[must_use]
    pub fn class(self) -> Option<Class> {
        match self.tag()? {
            tag::GOSSIP => Some(Class::Payload),
            _ => Some(Class::Control),
        }
    }

    /// [`plumtree::MsgId::prefix`] of a GOSSIP's id.
    #[must_use]
    pub fn gossip_prefix(self) -> Option<u64> {
        (self.class()? == Class::Payload).then_some(self.0 >> 9)
    }

    /// The GossipSub kind.
    #[must_use]
    pub fn pubsub_kind(self) -> Option<gossipsub::Kind> {
        gossipsub::kind_of_tag(self.tag()?)
    }
}

/// The broadcast id of a GOSSIP datagram, read without decoding the rest.
#[must_use]
pub fn gossip_id(bytes: &[u8]) -> Option<plumtree::MsgId> {
    if classify(bytes)? != Class::Payload {
        return None;
    }
    let id = bytes.get(GOSSIP_ID_OFFSET..)?.first_chunk::<32>()?;
    Some(MsgId(*id))
}

fn is_known_tag(tag: u8) -> bool {
    matches!(
        tag,
        tag::JOIN..=tag::PONG | tag::GOSSIP..=tag::PRUNE | tag::HELLO..=tag::KEEP_ALIVE
    ) || gossipsub::is_known_tag(tag)
        || kad::is_tag(tag)
        || knowledge::is_known_tag(tag)
}

fn message_tag(message: &Message) -> u8 {
    use hyparview::Message as H;
    use plumtree::Message as P;
    match message {
        Message::PubSub(m) => gossipsub::tag(m),
        Message::HyParView(m) => match m {
            H::Join => tag::JOIN,
            H::JoinReply => tag::JOIN_REPLY,
            H::ForwardJoin { .. } => tag::FORWARD_JOIN,
            H::Neighbor { .. } => tag::NEIGHBOR,
            H::NeighborReply { .. } => tag::NEIGHBOR_REPLY,
            H::Disconnect { .. } => tag::DISCONNECT,
            H::Shuffle { .. } => tag::SHUFFLE,
            H::ShuffleReply { .. } => tag::SHUFFLE_REPLY,
            H::Ping { .. } => tag::PING,
            H::Pong { .. } => tag::PONG,
        },
        Message::Plumtree(m) => match m {
            P::Gossip { .. } => tag::GOSSIP,
            P::IHave { .. } => tag::IHAVE,
            P::Graft { .. } => tag::GRAFT,
            P::Prune => tag::PRUNE,
        },
        Message::Nat(m) => {
            use nat::Message as N;
            match m {
                N::Hello { .. } => tag::HELLO,
                N::DialRequest { .. } => tag::DIAL_REQUEST,
                N::DialResponse { .. } => tag::DIAL_RESPONSE,
                N::DialBackRequest { .. } => tag::DIAL_BACK_REQUEST,
                N::DialBack { .. } => tag::DIAL_BACK,
                N::Reserve => tag::RESERVE,
                N::ReserveStatus { .. } => tag::RESERVE_STATUS,
                N::Connect { .. } => tag::CONNECT,
                N::ConnectStatus { .. } => tag::CONNECT_STATUS,
                N::Stop { .. } => tag::STOP,
                N::StopStatus { .. } => tag::STOP_STATUS,
                N::RelayTo { .. } => tag::RELAY_TO,
                N::RelayFrom { .. } => tag::RELAY_FROM,
                N::CircuitClosed { .. } => tag::CIRCUIT_CLOSED,
                N::PunchConnect { .. } => tag::PUNCH_CONNECT,
                N::PunchSync { .. } => tag::PUNCH_SYNC,
                N::Punch { .. } => tag::PUNCH,
                N::KeepAlive => tag::KEEP_ALIVE,
            }
        }
        Message::Dht(m) => kad::tag(m),
        Message::Knowledge(c) => knowledge::tag(c),
    }
}

/// The per-field caps; the datagram size is checked after encoding.
fn check_limits(message: &Message) -> Result<(), EncodeError> {
    let (what, value, max) = match message {
        Message::Dht(m) => return kad::check_limits(m),
        Message::HyParView(
            hyparview::Message::Shuffle { peers, .. } | hyparview::Message::ShuffleReply { peers },
        ) => ("shuffle peers", peers.len(), MAX_SHUFFLE_PEERS),
        Message::Plumtree(plumtree::Message::IHave { entries }) => {
            ("IHAVE entries", entries.len(), MAX_IHAVE_ENTRIES)
        }
        Message::Plumtree(plumtree::Message::Gossip { payload, .. }) => {
            ("payload bytes", payload.len(), MAX_PAYLOAD_BYTES)
        }
        Message::Nat(nat::Message::PunchConnect { addrs, .. }) => {
            ("hole-punch addresses", addrs.len(), MAX_PUNCH_ADDRS)
        }
        Message::Nat(nat::Message::RelayTo { data, .. } | nat::Message::RelayFrom { data, .. }) => {
            ("relayed bytes", data.len(), MAX_RELAYED_BYTES)
        }
        Message::PubSub(m) => return gossipsub::check_limits(m),
        Message::Knowledge(c) => match knowledge::over_limit(c) {
            Some(limit) => limit,
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    if value > max {
        return Err(EncodeError::OverLimit { what, value, max });
    }
    Ok(())
}

/// Write the body; the caps of [`check_limits`] must hold.
fn encode_body(message: &Message, out: &mut Vec<u8>) {
    use hyparview::Message as H;
    use plumtree::Message as P;
    match message {
        Message::HyParView(m) => match m {
            H::Join | H::JoinReply => {}
            H::ForwardJoin { joiner, ttl } => {
                put_peer(out, joiner);
                out.push(*ttl);
            }
            H::Neighbor { priority } => out.push(match priority {
                Priority::Low => 0,
                Priority::High => 1,
            }),
            H::NeighborReply { accepted } => out.push(u8::from(*accepted)),
            H::Disconnect { alive } => out.push(u8::from(*alive)),
            H::Shuffle { origin, ttl, peers } => {
                put_peer(out, origin);
                out.push(*ttl);
                put_peers(out, peers);
            }
            H::ShuffleReply { peers } => put_peers(out, peers),
            H::Ping { nonce } | H::Pong { nonce } => out.extend_from_slice(&nonce.to_be_bytes()),
        },
        Message::Plumtree(m) => match m {
            P::Gossip { id, hops, payload } => {
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&hops.to_be_bytes());
                let len = u16::try_from(payload.len()).expect("payload length checked");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(payload);
            }
            P::IHave { entries } => {
                out.push(u8::try_from(entries.len()).expect("IHAVE count checked"));
                for (id, hops) in entries {
                    out.extend_from_slice(&id.0);
                    out.extend_from_slice(&hops.to_be_bytes());
                }
            }
            P::Graft { id } => out.extend_from_slice(&id.0),
            P::Prune => {}
        },
        Message::Nat(m) => encode_nat(m, out),
        Message::PubSub(m) => gossipsub::encode(m, out),
        Message::Dht(m) => kad::encode(m, out),
        Message::Knowledge(c) => knowledge::encode(c, out),
    }
}

fn encode_nat(m: &nat::Message, out: &mut Vec<u8>) {
    use nat::Message as N;
    match m {
        N::Hello {
            observed,
            relay,
            reach,
        } => {
            put_addr(out, observed, relay.is_some());
            if let Some(r) = relay {
                put_addr(out, r, false);
            }
            out.push(nat::Message::reach_code(*reach));
        }
        N::DialRequest { nonce } | N::DialBack { nonce } => {
            out.extend_from_slice(&nonce.to_be_bytes());
        }
        N::DialResponse {
            nonce,
            helpers,
            observed,
        } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            out.push(*helpers);
            put_addr(out, observed, false);
        }
        N::DialBackRequest {
            nonce,
            peer,
            target,
        } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            out.extend_from_slice(peer.as_bytes());
            put_addr(out, target, false);
        }
        N::Reserve | N::KeepAlive => {}
        N::ReserveStatus {
            status,
            ttl_s,
            limit_duration_s,
            limit_bytes,
            observed,
        } => {
            out.extend_from_slice(&status.code().to_be_bytes());
            out.extend_from_slice(&ttl_s.to_be_bytes());
            out.extend_from_slice(&limit_duration_s.to_be_bytes());
            out.extend_from_slice(&limit_bytes.to_be_bytes());
            put_addr(out, observed, false);
        }
        N::Connect { target } => out.extend_from_slice(target.as_bytes()),
        N::ConnectStatus {
            target: peer,
            status,
        }
        | N::StopStatus {
            source: peer,
            status,
        }
        | N::CircuitClosed { peer, status } => {
            out.extend_from_slice(peer.as_bytes());
            out.extend_from_slice(&status.code().to_be_bytes());
        }
        N::Stop {
            source,
            source_addr,
        } => {
            out.extend_from_slice(source.as_bytes());
            put_addr(out, source_addr, false);
        }
        N::RelayTo { target, data } => {
            out.extend_from_slice(target.as_bytes());
            put_data(out, data);
        }
        N::RelayFrom {
            source,
            source_addr,
            data,
        } => {
            out.extend_from_slice(source.as_bytes());
            put_addr(out, source_addr, false);
            put_data(out, data);
        }
        N::PunchConnect {
            attempt,
            reply,
            reach,
            addrs,
        } => {
            out.push(*attempt);
            out.push(u8::from(*reply));
            out.push(nat::Message::reach_code(*reach));
            out.push(u8::try_from(addrs.len()).expect("address count checked"));
            for a in addrs {
                put_addr(out, a, false);
            }
        }
        N::PunchSync { attempt } => out.push(*attempt),
        N::Punch { nonce, ack } => {
            out.extend_from_slice(&nonce.to_be_bytes());
            out.push(u8::from(*ack));
        }
    }
}

fn put_data(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("relayed length checked");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

fn put_peers(out: &mut Vec<u8>, peers: &[Peer]) {
    out.push(u8::try_from(peers.len()).expect("shuffle peer count checked"));
    for peer in peers {
        put_peer(out, peer);
    }
}

fn put_peer(out: &mut Vec<u8>, peer: &Peer) {
    out.extend_from_slice(peer.id.as_bytes());
    put_addr(out, &peer.addr, peer.relay.is_some());
    if let Some(relay) = &peer.relay {
        put_addr(out, relay, false);
    }
}

/// An address: family (with [`RELAY_FOLLOWS`] set when a relay address
/// comes next), IP, port.
fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr, relay_follows: bool) {
    let flag = if relay_follows { RELAY_FOLLOWS } else { 0 };
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(FAMILY_V4 | flag);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(FAMILY_V6 | flag);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn decode_body(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    use hyparview::Message as H;
    use plumtree::Message as P;
    let message = match tag {
        tag::JOIN => Message::HyParView(H::Join),
        tag::JOIN_REPLY => Message::HyParView(H::JoinReply),
        tag::FORWARD_JOIN => Message::HyParView(H::ForwardJoin {
            joiner: r.peer("joiner")?,
            ttl: r.u8("ttl")?,
        }),
        tag::NEIGHBOR => {
            let offset = r.offset();
            let priority = match r.u8("priority")? {
                0 => Priority::Low,
                1 => Priority::High,
                _ => {
                    return Err(DecodeError::Invalid {
                        what: "priority",
                        offset,
                    })
                }
            };
            Message::HyParView(H::Neighbor { priority })
        }
        tag::NEIGHBOR_REPLY => Message::HyParView(H::NeighborReply {
            accepted: r.bool("accepted")?,
        }),
        tag::DISCONNECT => Message::HyParView(H::Disconnect {
            alive: r.bool("alive")?,
        }),
        tag::SHUFFLE => Message::HyParView(H::Shuffle {
            origin: r.peer("shuffle origin")?,
            ttl: r.u8("ttl")?,
            peers: r.peers()?,
        }),
        tag::SHUFFLE_REPLY => Message::HyParView(H::ShuffleReply { peers: r.peers()? }),
        tag::PING => Message::HyParView(H::Ping {
            nonce: r.u32("nonce")?,
        }),
        tag::PONG => Message::HyParView(H::Pong {
            nonce: r.u32("nonce")?,
        }),
        tag::GOSSIP => {
            let id = MsgId(r.array("message id")?);
            let hops = r.u16("hops")?;
            let len = usize::from(r.u16("payload length")?);
            if len > MAX_PAYLOAD_BYTES {
                return Err(DecodeError::OverLimit {
                    what: "payload bytes",
                    value: len,
                    max: MAX_PAYLOAD_BYTES,
                });
            }
            let payload = Bytes::copy_from_slice(r.take(len, "payload")?);
            Message::Plumtree(P::Gossip { id, hops, payload })
        }
        tag::IHAVE => {
            let count = r.count("IHAVE entries", MAX_IHAVE_ENTRIES, IHAVE_ENTRY_BYTES)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let id = MsgId(r.array("IHAVE id")?);
                entries.push((id, r.u16("IHAVE hops")?));
            }
            Message::Plumtree(P::IHave { entries })
        }
        tag::GRAFT => Message::Plumtree(P::Graft {
            id: MsgId(r.array("message id")?),
        }),
        tag::PRUNE => Message::Plumtree(P::Prune),
        tag::HELLO..=tag::KEEP_ALIVE => Message::Nat(decode_nat(tag, r)?),
        tag::PUBSUB_FIRST..=tag::PUBSUB_LAST => Message::PubSub(gossipsub::decode(tag, r)?),
        kad::PING..=kad::VALUE => Message::Dht(kad::decode(tag, r)?),
        t if knowledge::is_known_tag(t) => Message::Knowledge(knowledge::decode(t, r)?),
        _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
    };
    Ok(message)
}

fn decode_nat(tag: u8, r: &mut Reader<'_>) -> Result<nat::Message, DecodeError> {
    use nat::Message as N;
    Ok(match tag {
        tag::HELLO => {
            let (observed, relay_follows) = r.addr_flagged(true)?;
            let relay = if relay_follows { Some(r.addr()?) } else { None };
            N::Hello {
                observed,
                relay,
                reach: r.reach()?,
            }
        }
        tag::DIAL_REQUEST => N::DialRequest {
            nonce: r.u64("nonce")?,
        },
        tag::DIAL_RESPONSE => N::DialResponse {
            nonce: r.u64("nonce")?,
            helpers: match r.u8("helpers")? {
                n if usize::from(n) <= crate::transport::nat::MAX_DIAL_HELPERS => n,
                n => {
                    return Err(DecodeError::OverLimit {
                        what: "dial-back helpers",
                        value: usize::from(n),
                        max: crate::transport::nat::MAX_DIAL_HELPERS,
                    })
                }
            },
            observed: r.addr()?,
        },
        tag::DIAL_BACK_REQUEST => N::DialBackRequest {
            nonce: r.u64("nonce")?,
            peer: PeerId(r.array("peer id")?),
            target: r.addr()?,
        },
        tag::DIAL_BACK => N::DialBack {
            nonce: r.u64("nonce")?,
        },
        tag::RESERVE => N::Reserve,
        tag::RESERVE_STATUS => N::ReserveStatus {
            status: r.status()?,
            ttl_s: r.u32("reservation ttl")?,
            limit_duration_s: r.u32("circuit duration limit")?,
            limit_bytes: r.u32("circuit data limit")?,
            observed: r.addr()?,
        },
        tag::CONNECT => N::Connect {
            target: r.peer_id("target")?,
        },
        tag::CONNECT_STATUS => N::ConnectStatus {
            target: r.peer_id("target")?,
            status: r.status()?,
        },
        tag::STOP => N::Stop {
            source: r.peer_id("source")?,
            source_addr: r.addr()?,
        },
        tag::STOP_STATUS => N::StopStatus {
            source: r.peer_id("source")?,
            status: r.status()?,
        },
        tag::RELAY_TO => N::RelayTo {
            target: r.peer_id("target")?,
            data: r.data()?,
        },
        tag::RELAY_FROM => N::RelayFrom {
            source: r.peer_id("source")?,
            source_addr: r.addr()?,
            data: r.data()?,
        },
        tag::CIRCUIT_CLOSED => N::CircuitClosed {
            peer: r.peer_id("peer")?,
            status: r.status()?,
        },
        tag::PUNCH_CONNECT => {
            let attempt = r.u8("attempt")?;
            let reply = r.bool("reply")?;
            let reach = r.reach()?;
            let count = r.count("hole-punch addresses", MAX_PUNCH_ADDRS, 7)?;
            let mut addrs = Vec::with_capacity(count);
            for _ in 0..count {
                addrs.push(r.addr()?);
            }
            N::PunchConnect {
                attempt,
                reply,
                reach,
                addrs,
            }
        }
        tag::PUNCH_SYNC => N::PunchSync {
            attempt: r.u8("attempt")?,
        },
        tag::PUNCH => N::Punch {
            nonce: r.u64("nonce")?,
            ack: r.bool("ack")?,
        },
        tag::KEEP_ALIVE => N::KeepAlive,
        _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
    })
}

/// A cursor over the input whose every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    fn offset(&self) -> usize {
        self.offset
    }

    fn remaining(&self) -> &'a [u8] {
        self.bytes.get(self.offset..).unwrap_or_default()
    }

    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            what,
            offset: self.offset,
        }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let bytes = self
            .remaining()
            .get(..len)
            .ok_or_else(|| self.truncated(what))?;
        self.offset += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let array = *self
            .remaining()
            .first_chunk::<N>()
            .ok_or_else(|| self.truncated(what))?;
        self.offset += N;
        Ok(array)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { what, offset }),
        }
    }

    /// A u8 count of items of at least `min_item_bytes` each, checked
    /// against `max` and against the bytes left, so callers may allocate it.
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::from(self.u8(what)?);
        if count > max {
            return Err(DecodeError::OverLimit {
                what,
                value: count,
                max,
            });
        }
        if count * min_item_bytes > self.remaining().len() {
            return Err(self.truncated(what));
        }
        Ok(count)
    }

    fn peers(&mut self) -> Result<Vec<Peer>, DecodeError> {
        let count = self.count("shuffle peers", MAX_SHUFFLE_PEERS, PEER_V4_BYTES)?;
        let mut peers = Vec::with_capacity(count);
        for _ in 0..count {
            peers.push(self.peer("shuffle peer")?);
        }
        Ok(peers)
    }

    fn peer(&mut self, what: &'static str) -> Result<Peer, DecodeError> {
        let id = PeerId(self.array(what)?);
        let (addr, relay_follows) = self.addr_flagged(true)?;
        let relay = if relay_follows {
            Some(self.addr()?)
        } else {
            None
        };
        Ok(Peer { id, addr, relay })
    }

    /// A usable address with no flag.
    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        Ok(self.addr_flagged(false)?.0)
    }

    /// A usable address; `flag_allowed`: the family byte may carry
    /// [`RELAY_FOLLOWS`].
    fn addr_flagged(&mut self, flag_allowed: bool) -> Result<(SocketAddr, bool), DecodeError> {
        let family_offset = self.offset;
        let family = self.u8("address family")?;
        let flagged = family & RELAY_FOLLOWS != 0;
        let ip = match family & !RELAY_FOLLOWS {
            _ if flagged && !flag_allowed => {
                return Err(DecodeError::Invalid {
                    what: "address family",
                    offset: family_offset,
                })
            }
            FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("IPv4 address")?)),
            FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("IPv6 address")?)),
            _ => {
                return Err(DecodeError::Invalid {
                    what: "address family",
                    offset: family_offset,
                })
            }
        };
        let port = self.u16("port")?;
        let addr = SocketAddr::new(ip, port);
        if !usable(&addr) {
            return Err(DecodeError::UnusableAddress { addr });
        }
        Ok((addr, flagged))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn status(&mut self) -> Result<Status, DecodeError> {
        let offset = self.offset;
        Status::from_code(self.u16("status")?).ok_or(DecodeError::Invalid {
            what: "status code",
            offset,
        })
    }

    fn reach(&mut self) -> Result<Reach, DecodeError> {
        let offset = self.offset;
        nat::Message::reach_from_code(self.u8("reachability")?).ok_or(DecodeError::Invalid {
            what: "reachability",
            offset,
        })
    }

    fn peer_id(&mut self, what: &'static str) -> Result<PeerId, DecodeError> {
        Ok(PeerId(self.array(what)?))
    }

    fn data(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16("relayed length")?);
        if len > MAX_RELAYED_BYTES {
            return Err(DecodeError::OverLimit {
                what: "relayed bytes",
                value: len,
                max: MAX_RELAYED_BYTES,
            });
        }
        Ok(Bytes::copy_from_slice(self.take(len, "relayed datagram")?))
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.remaining().len() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

/// Whether a peer address named in a message may be sent to: a hostile
/// peer must not make nodes send to broadcast, multicast or unspecified
/// addresses (reflection), nor to port 0.
pub fn usable(addr: &SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    ip_ok && addr.port() != 0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{SocketAddrV4, SocketAddrV6};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use hyparview::Message as H;
    use nat::Message as N;
    use plumtree::Message as P;

    const ALL_STATUSES: [Status; 8] = [
        Status::Ok,
        Status::ReservationRefused,
        Status::ResourceLimitExceeded,
        Status::PermissionDenied,
        Status::ConnectionFailed,
        Status::NoReservation,
        Status::MalformedMessage,
        Status::UnexpectedMessage,
    ];

    const ALL_REACHES: [Reach; 4] = [
        Reach::Unknown,
        Reach::Private,
        Reach::Public,
        Reach::PortMapped,
    ];

    fn peer_id() -> impl Strategy<Value = PeerId> {
        any::<[u8; 32]>().prop_map(PeerId)
    }

    fn msg_id() -> impl Strategy<Value = MsgId> {
        any::<[u8; 32]>().prop_map(MsgId)
    }

    /// Usable addresses, v4 and v6 (shared with the protocols' codecs).
    pub(super) fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))),
        ]
        .prop_filter("usable address", usable)
    }

    /// Peers with and without a relay.
    fn peer() -> impl Strategy<Value = Peer> {
        (peer_id(), addr(), proptest::option::of(addr())).prop_map(|(id, addr, relay)| Peer {
            id,
            addr,
            relay,
        })
    }

    fn priority() -> impl Strategy<Value = Priority> {
        prop_oneof![Just(Priority::Low), Just(Priority::High)]
    }

    fn status() -> impl Strategy<Value = Status> {
        proptest::sample::select(&ALL_STATUSES[..])
    }

    fn reach() -> impl Strategy<Value = Reach> {
        proptest::sample::select(&ALL_REACHES[..])
    }

    fn payload(max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
    }

    /// Relayed data: mostly short, sometimes up to or exactly at the cap.
    fn relayed() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            3 => payload(64),
            1 => payload(MAX_RELAYED_BYTES),
            1 => vec(any::<u8>(), MAX_RELAYED_BYTES).prop_map(Bytes::from),
        ]
    }

    fn hyparview_message() -> impl Strategy<Value = H> {
        prop_oneof![
            Just(H::Join),
            Just(H::JoinReply),
            (peer(), any::<u8>()).prop_map(|(joiner, ttl)| H::ForwardJoin { joiner, ttl }),
            priority().prop_map(|priority| H::Neighbor { priority }),
            any::<bool>().prop_map(|accepted| H::NeighborReply { accepted }),
            any::<bool>().prop_map(|alive| H::Disconnect { alive }),
            (peer(), any::<u8>(), vec(peer(), 0..=MAX_SHUFFLE_PEERS))
                .prop_map(|(origin, ttl, peers)| H::Shuffle { origin, ttl, peers }),
            vec(peer(), 0..=MAX_SHUFFLE_PEERS).prop_map(|peers| H::ShuffleReply { peers }),
            any::<u32>().prop_map(|nonce| H::Ping { nonce }),
            any::<u32>().prop_map(|nonce| H::Pong { nonce }),
        ]
    }

    fn plumtree_message() -> impl Strategy<Value = P> {
        prop_oneof![
            (msg_id(), any::<u16>(), payload(MAX_PAYLOAD_BYTES))
                .prop_map(|(id, hops, payload)| P::Gossip { id, hops, payload }),
            vec((msg_id(), any::<u16>()), 0..=MAX_IHAVE_ENTRIES)
                .prop_map(|entries| P::IHave { entries }),
            msg_id().prop_map(|id| P::Graft { id }),
            Just(P::Prune),
        ]
    }

    /// Every NAT message, within its limits.
    fn nat_message() -> impl Strategy<Value = N> {
        prop_oneof![
            (addr(), proptest::option::of(addr()), reach()).prop_map(|(observed, relay, reach)| {
                N::Hello {
                    observed,
                    relay,
                    reach,
                }
            }),
            any::<u64>().prop_map(|nonce| N::DialRequest { nonce }),
            (any::<u64>(), 0..=3u8, addr()).prop_map(|(nonce, helpers, observed)| {
                N::DialResponse {
                    nonce,
                    helpers,
                    observed,
                }
            }),
            (any::<u64>(), any::<[u8; 32]>(), addr()).prop_map(|(nonce, p, target)| {
                N::DialBackRequest {
                    nonce,
                    peer: PeerId(p),
                    target,
                }
            }),
            any::<u64>().prop_map(|nonce| N::DialBack { nonce }),
            Just(N::Reserve),
            (status(), any::<u32>(), any::<u32>(), any::<u32>(), addr()).prop_map(
                |(status, ttl_s, limit_duration_s, limit_bytes, observed)| N::ReserveStatus {
                    status,
                    ttl_s,
                    limit_duration_s,
                    limit_bytes,
                    observed,
                }
            ),
            peer_id().prop_map(|target| N::Connect { target }),
            (peer_id(), status()).prop_map(|(target, status)| N::ConnectStatus { target, status }),
            (peer_id(), addr()).prop_map(|(source, source_addr)| N::Stop {
                source,
                source_addr
            }),
            (peer_id(), status()).prop_map(|(source, status)| N::StopStatus { source, status }),
            (peer_id(), relayed()).prop_map(|(target, data)| N::RelayTo { target, data }),
            (peer_id(), addr(), relayed()).prop_map(|(source, source_addr, data)| {
                N::RelayFrom {
                    source,
                    source_addr,
                    data,
                }
            }),
            (peer_id(), status()).prop_map(|(peer, status)| N::CircuitClosed { peer, status }),
            (
                any::<u8>(),
                any::<bool>(),
                reach(),
                vec(addr(), 0..=MAX_PUNCH_ADDRS)
            )
                .prop_map(|(attempt, reply, reach, addrs)| N::PunchConnect {
                    attempt,
                    reply,
                    reach,
                    addrs,
                }),
            any::<u8>().prop_map(|attempt| N::PunchSync { attempt }),
            (any::<u64>(), any::<bool>()).prop_map(|(nonce, ack)| N::Punch { nonce, ack }),
            Just(N::KeepAlive),
        ]
    }

    fn knowledge_chunk() -> impl Strategy<Value = knowledge::Chunk> {
        use knowledge::{BlobKind, Chunk, MAX_CHUNK_BYTES};
        let kind = proptest::sample::select(
            &[
                BlobKind::Delta,
                BlobKind::Summary,
                BlobKind::SummaryReply,
                BlobKind::Snapshot,
            ][..],
        );
        (
            kind,
            "[a-z0-9/-]{1,32}",
            any::<u32>(),
            1u16..=250,
            any::<u16>(),
            vec(any::<u8>(), 1..=MAX_CHUNK_BYTES),
        )
            .prop_map(|(kind, topic, blob, count, index, data)| {
                let index = index % count;
                let mut data = data;
                if index + 1 < count {
                    data.resize(MAX_CHUNK_BYTES, 0);
                }
                Chunk {
                    kind,
                    topic,
                    blob,
                    index,
                    count,
                    data: Bytes::from(data),
                }
            })
    }

    fn datagram() -> impl Strategy<Value = Datagram> {
        let message = prop_oneof![
            1 => hyparview_message().prop_map(Message::HyParView),
            1 => plumtree_message().prop_map(Message::Plumtree),
            2 => nat_message().prop_map(Message::Nat),
            2 => gossipsub::strategies::message(peer()).prop_map(Message::PubSub),
            2 => kad::strategy::message().prop_map(Message::Dht),
            1 => knowledge_chunk().prop_map(Message::Knowledge),
        ];
        (peer_id(), message).prop_map(|(from, message)| Datagram { from, message })
    }

    fn encoded(datagram: &Datagram) -> Vec<u8> {
        let mut out = Vec::new();
        encode(datagram, &mut out).expect("datagram within limits");
        out
    }

    const ALL_TAGS: [u8; 43] = [
        tag::JOIN,
        tag::JOIN_REPLY,
        tag::FORWARD_JOIN,
        tag::NEIGHBOR,
        tag::NEIGHBOR_REPLY,
        tag::DISCONNECT,
        tag::SHUFFLE,
        tag::SHUFFLE_REPLY,
        tag::PING,
        tag::PONG,
        tag::GOSSIP,
        tag::IHAVE,
        tag::GRAFT,
        tag::PRUNE,
        tag::HELLO,
        tag::DIAL_REQUEST,
        tag::DIAL_RESPONSE,
        tag::DIAL_BACK_REQUEST,
        tag::DIAL_BACK,
        tag::RESERVE,
        tag::RESERVE_STATUS,
        tag::CONNECT,
        tag::CONNECT_STATUS,
        tag::STOP,
        tag::STOP_STATUS,
        tag::RELAY_TO,
        tag::RELAY_FROM,
        tag::CIRCUIT_CLOSED,
        tag::PUNCH_CONNECT,
        tag::PUNCH_SYNC,
        tag::PUNCH,
        tag::KEEP_ALIVE,
        gossipsub::SUBSCRIPTIONS,
        gossipsub::PUBLISH,
        gossipsub::IHAVE,
        gossipsub::IWANT,
        gossipsub::GRAFT,
        gossipsub::PRUNE,
        gossipsub::IDONTWANT,
        knowledge::DELTA,
        knowledge::SUMMARY,
        knowledge::SUMMARY_REPLY,
        knowledge::SNAPSHOT,
    ];

    /// Bytes that pass the header checks, so the body decoders get fuzzed.
    fn header_shaped_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![
                proptest::sample::select(&ALL_TAGS[..]),
                proptest::sample::select(&kad::strategy::TAGS[..]),
            ],
            vec(any::<u8>(), 0..=MAX_DATAGRAM_BYTES - 2),
        )
            .prop_map(|(tag, rest)| {
                let mut bytes = vec![VERSION, tag];
                bytes.extend(rest);
                bytes
            })
    }

    /// A valid encoding with a few bytes overwritten.
    fn mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
        (
            datagram(),
            vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        )
            .prop_map(|(datagram, edits)| {
                let mut bytes = encoded(&datagram);
                for (index, value) in edits {
                    let i = index.index(bytes.len());
                    bytes[i] = value;
                }
                bytes
            })
    }

    /// Whatever `decode` makes of `bytes`, `classify`, `gossip_id` and
    /// `encode` agree with it.
    fn check_consistent(bytes: &[u8]) -> Result<(), TestCaseError> {
        let class = classify(bytes);
        let id = gossip_id(bytes);
        match decode(bytes) {
            Ok(datagram) => {
                // The encoding is canonical.
                prop_assert_eq!(encoded(&datagram), bytes);
                let expected = match &datagram.message {
                    Message::HyParView(_) => Protocol::Membership,
                    Message::Plumtree(_) => Protocol::Broadcast,
                    Message::Nat(_) => Protocol::Traversal,
                    Message::PubSub(_) => Protocol::PubSub,
                    Message::Dht(_) => Protocol::Dht,
                    Message::Knowledge(_) => Protocol::Knowledge,
                };
                prop_assert_eq!(protocol(bytes), Some(expected));
                match datagram.message {
                    Message::Plumtree(P::Gossip { id: gossip, .. }) => {
                        prop_assert_eq!(class, Some(Class::Payload));
                        prop_assert_eq!(id, Some(gossip));
                    }
                    _ => {
                        prop_assert_eq!(class, Some(Class::Control));
                        prop_assert_eq!(id, None);
                    }
                }
            }
            Err(_) => {
                if class != Some(Class::Payload) {
                    prop_assert_eq!(id, None);
                }
                prop_assert_eq!(protocol(bytes).is_some(), class.is_some());
            }
        }
        Ok(())
    }

    fn addr_bytes(addr: &SocketAddr) -> usize {
        if addr.is_ipv4() {
            7
        } else {
            19
        }
    }

    fn peer_bytes(peer: &Peer) -> usize {
        32 + addr_bytes(&peer.addr) + peer.relay.as_ref().map_or(0, addr_bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn roundtrip(datagram in datagram()) {
            let bytes = encoded(&datagram);
            prop_assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
            prop_assert_eq!(bytes[1], message_tag(&datagram.message));
            prop_assert_eq!(decode(&bytes), Ok(datagram));
        }

        #[test]
        fn encode_appends(prefix in vec(any::<u8>(), 0..16), datagram in datagram()) {
            let mut out = prefix.clone();
            encode(&datagram, &mut out).unwrap();
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(decode(&out[prefix.len()..]), Ok(datagram));
        }

        #[test]
        fn classify_and_gossip_id_agree_with_decode(datagram in datagram()) {
            check_consistent(&encoded(&datagram))?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2000)) {
            check_consistent(&bytes)?;
        }

        #[test]
        fn header_shaped_bytes_never_panic(bytes in header_shaped_bytes()) {
            check_consistent(&bytes)?;
        }

        #[test]
        fn mutated_encodings_never_panic(bytes in mutated_encoding()) {
            check_consistent(&bytes)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_truncation_is_an_error(datagram in datagram()) {
            let bytes = encoded(&datagram);
            for len in 0..bytes.len() {
                let result = decode(&bytes[..len]);
                prop_assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "prefix of {} bytes: {:?}", len, result
                );
            }
        }

        #[test]
        fn trailing_bytes_are_an_error(datagram in datagram(), extra in vec(any::<u8>(), 1..8)) {
            let mut bytes = encoded(&datagram);
            let len = bytes.len();
            bytes.extend(&extra);
            let expected = if bytes.len() > MAX_DATAGRAM_BYTES {
                DecodeError::TooLong { len: bytes.len(), max: MAX_DATAGRAM_BYTES }
            } else {
                DecodeError::Trailing { extra: bytes.len() - len }
            };
            prop_assert_eq!(decode(&bytes), Err(expected));
        }

        #[test]
        fn other_version_is_rejected(datagram in datagram(), version in any::<u8>()) {
            prop_assume!(version != VERSION);
            let mut bytes = encoded(&datagram);
            bytes[0] = version;
            prop_assert_eq!(decode(&bytes), Err(DecodeError::Version(version)));
            prop_assert_eq!(classify(&bytes), None);
            prop_assert_eq!(gossip_id(&bytes), None);
        }

        /// Up to the peer cap, any shuffle, whatever its address families
        /// and relays, fits a relay frame and roundtrips.
        #[test]
        fn shuffle_up_to_cap_fits_a_relay_frame(
            from in peer_id(),
            origin in peer(),
            peers in vec(peer(), 0..=MAX_SHUFFLE_PEERS),
        ) {
            let datagram = Datagram {
                from,
                message: Message::HyParView(H::Shuffle { origin, ttl: 3, peers: peers.clone() }),
            };
            let len = HEADER_BYTES + peer_bytes(&origin) + 2
                + peers.iter().map(peer_bytes).sum::<usize>();
            let bytes = encoded(&datagram);
            prop_assert_eq!(bytes.len(), len);
            prop_assert!(len <= MAX_RELAYED_BYTES);
            prop_assert_eq!(decode(&bytes), Ok(datagram));
        }
    }

    fn id(byte: u8) -> PeerId {
        PeerId([byte; 32])
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v4_peer(byte: u8) -> Peer {
        Peer::new(id(byte), sa("10.0.0.1:9000"))
    }

    fn nat(message: N) -> Datagram {
        Datagram {
            from: id(1),
            message: Message::Nat(message),
        }
    }

    fn encode_err(message: Message) -> (EncodeError, Vec<u8>) {
        let mut out = vec![1, 2, 3];
        let err = encode(
            &Datagram {
                from: id(1),
                message,
            },
            &mut out,
        )
        .unwrap_err();
        (err, out)
    }

    fn header(tag: u8) -> Vec<u8> {
        let mut bytes = vec![VERSION, tag];
        bytes.extend([9; 32]);
        bytes
    }

    /// One of each NAT message, with relays, IPv6 and limits at their caps
    /// where they apply.
    fn nat_examples() -> Vec<N> {
        let v4 = sa("198.51.100.7:4242");
        let v6 = sa("[2001:db8::7]:4243");
        vec![
            N::Hello {
                observed: v4,
                relay: None,
                reach: Reach::Unknown,
            },
            N::Hello {
                observed: v6,
                relay: Some(v6),
                reach: Reach::PortMapped,
            },
            N::DialRequest { nonce: u64::MAX },
            N::DialResponse {
                nonce: 1,
                helpers: 3,
                observed: v6,
            },
            N::DialBackRequest {
                nonce: 2,
                peer: PeerId([9; 32]),
                target: v4,
            },
            N::DialBack { nonce: 3 },
            N::Reserve,
            N::ReserveStatus {
                status: Status::Ok,
                ttl_s: 3600,
                limit_duration_s: 120,
                limit_bytes: 1 << 17,
                observed: v6,
            },
            N::Connect { target: id(4) },
            N::ConnectStatus {
                target: id(4),
                status: Status::NoReservation,
            },
            N::Stop {
                source: id(5),
                source_addr: v6,
            },
            N::StopStatus {
                source: id(5),
                status: Status::ConnectionFailed,
            },
            N::RelayTo {
                target: id(6),
                data: Bytes::from(vec![0xab; MAX_RELAYED_BYTES]),
            },
            N::RelayFrom {
                source: id(6),
                source_addr: v6,
                data: Bytes::from(vec![0xcd; MAX_RELAYED_BYTES]),
            },
            N::RelayFrom {
                source: id(6),
                source_addr: v4,
                data: Bytes::new(),
            },
            N::CircuitClosed {
                peer: id(7),
                status: Status::UnexpectedMessage,
            },
            N::PunchConnect {
                attempt: 1,
                reply: false,
                reach: Reach::Private,
                addrs: vec![v4, v6, v6, v4],
            },
            N::PunchConnect {
                attempt: 2,
                reply: true,
                reach: Reach::Public,
                addrs: vec![],
            },
            N::PunchSync { attempt: 3 },
            N::Punch {
                nonce: 4,
                ack: true,
            },
            N::KeepAlive,
        ]
    }

    #[test]
    fn every_tag_is_known_and_only_those() {
        for tag in 0..=u8::MAX {
            let known = ALL_TAGS.contains(&tag) || kad::strategy::TAGS.contains(&tag);
            assert_eq!(is_known_tag(tag), known, "{tag:#04x}");
        }
        let nat_tags: BTreeSet<u8> = nat_examples()
            .into_iter()
            .map(|m| message_tag(&Message::Nat(m)))
            .collect();
        assert_eq!(nat_tags, (tag::HELLO..=tag::KEEP_ALIVE).collect());
        assert_eq!((tag::HELLO, tag::KEEP_ALIVE), (0x20, 0x31));
    }

    /// Each NAT message roundtrips, and every prefix and every extension
    /// of it is refused.
    #[test]
    fn every_nat_message_roundtrips_and_is_checked() {
        for message in nat_examples() {
            let datagram = nat(message);
            let bytes = encoded(&datagram);
            assert!(bytes.len() <= MAX_DATAGRAM_BYTES, "{datagram:?}");
            assert_eq!(decode(&bytes), Ok(datagram.clone()));
            assert_eq!(classify(&bytes), Some(Class::Control));
            assert_eq!(gossip_id(&bytes), None);
            for len in 0..bytes.len() {
                let result = decode(&bytes[..len]);
                assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "{datagram:?}: prefix of {len} bytes: {result:?}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            let expected = if longer.len() > MAX_DATAGRAM_BYTES {
                DecodeError::TooLong {
                    len: longer.len(),
                    max: MAX_DATAGRAM_BYTES,
                }
            } else {
                DecodeError::Trailing { extra: 1 }
            };
            assert_eq!(decode(&longer), Err(expected), "{datagram:?}");
        }
    }

    #[test]
    fn encode_rejects_over_limit_fields() {
        let shuffle = H::Shuffle {
            origin: v4_peer(2),
            ttl: 1,
            peers: vec![v4_peer(3); MAX_SHUFFLE_PEERS + 1],
        };
        let reply = H::ShuffleReply {
            peers: vec![v4_peer(3); MAX_SHUFFLE_PEERS + 1],
        };
        let ihave = P::IHave {
            entries: vec![(MsgId([4; 32]), 1); MAX_IHAVE_ENTRIES + 1],
        };
        let gossip = P::Gossip {
            id: MsgId([5; 32]),
            hops: 1,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_BYTES + 1]),
        };
        let over = Bytes::from(vec![0; MAX_RELAYED_BYTES + 1]);
        let relay_to = N::RelayTo {
            target: id(6),
            data: over.clone(),
        };
        let relay_from = N::RelayFrom {
            source: id(6),
            source_addr: sa("10.0.0.6:6"),
            data: over,
        };
        let punch = N::PunchConnect {
            attempt: 1,
            reply: false,
            reach: Reach::Private,
            addrs: vec![sa("10.0.0.7:7"); MAX_PUNCH_ADDRS + 1],
        };
        let cases = [
            (Message::HyParView(shuffle), "shuffle peers", 17, 16),
            (Message::HyParView(reply), "shuffle peers", 17, 16),
            (Message::Plumtree(ihave), "IHAVE entries", 33, 32),
            (Message::Plumtree(gossip), "payload bytes", 1025, 1024),
            (Message::Nat(relay_to), "relayed bytes", 1314, 1313),
            (Message::Nat(relay_from), "relayed bytes", 1314, 1313),
            (Message::Nat(punch), "hole-punch addresses", 5, 4),
        ];
        for (message, what, value, max) in cases {
            let (err, out) = encode_err(message);
            assert_eq!(err, EncodeError::OverLimit { what, value, max });
            assert_eq!(out, [1, 2, 3], "out is untouched");
        }
    }

    #[test]
    fn relayed_data_over_the_cap_is_refused_by_decode() {
        let over = u16::try_from(MAX_RELAYED_BYTES + 1).unwrap();
        let over_limit = |value| {
            Err(DecodeError::OverLimit {
                what: "relayed bytes",
                value,
                max: MAX_RELAYED_BYTES,
            })
        };
        let mut relay_to = header(tag::RELAY_TO);
        relay_to.extend([6; 32]);
        let mut relay_from = header(tag::RELAY_FROM);
        relay_from.extend([6; 32]);
        relay_from.extend([4, 10, 0, 0, 6, 0, 6]);
        for frame in [relay_to, relay_from] {
            // The length alone is refused, before the data is looked for.
            for len in [over, u16::MAX] {
                let mut bytes = frame.clone();
                bytes.extend(len.to_be_bytes());
                assert_eq!(decode(&bytes), over_limit(usize::from(len)));
            }
            // And with the data present (still within a datagram).
            let mut bytes = frame.clone();
            bytes.extend(over.to_be_bytes());
            bytes.extend(vec![0; usize::from(over)]);
            assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
            assert_eq!(decode(&bytes), over_limit(usize::from(over)));
            // At the cap, it decodes.
            let mut bytes = frame;
            bytes.extend(over.saturating_sub(1).to_be_bytes());
            bytes.extend(vec![0; MAX_RELAYED_BYTES]);
            assert!(decode(&bytes).is_ok());
        }
    }

    #[test]
    fn punch_connect_over_the_cap_is_refused_by_decode() {
        let addrs = |count: u8| {
            let mut bytes = header(tag::PUNCH_CONNECT);
            bytes.extend([1, 0, 1, count]);
            for _ in 0..count {
                bytes.extend([4, 10, 0, 0, 7, 0, 7]);
            }
            bytes
        };
        assert_eq!(
            decode(&addrs(5)),
            Err(DecodeError::OverLimit {
                what: "hole-punch addresses",
                value: 5,
                max: MAX_PUNCH_ADDRS,
            })
        );
        assert_eq!(
            decode(&addrs(4)),
            Ok(Datagram {
                from: id(9),
                message: Message::Nat(N::PunchConnect {
                    attempt: 1,
                    reply: false,
                    reach: Reach::Private,
                    addrs: vec![sa("10.0.0.7:7"); 4],
                }),
            })
        );
    }

    /// A SHUFFLE at its cap, every address IPv6 with an IPv6 relay, fits a
    /// relay frame, and the frame fits a datagram both ways.
    #[test]
    fn maximal_shuffle_fits_a_relay_frame() {
        let v6 = |i: u8, port: u16| {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i))),
                port,
            )
        };
        let peer = |i: u8| Peer {
            id: id(i),
            addr: v6(i, 7000),
            relay: Some(v6(i, 7001)),
        };
        let count = u8::try_from(MAX_SHUFFLE_PEERS).unwrap();
        let peers: Vec<Peer> = (1..=count).map(peer).collect();
        let shuffle = Datagram {
            from: id(0xaa),
            message: Message::HyParView(H::Shuffle {
                origin: peer(0),
                ttl: u8::MAX,
                peers: peers.clone(),
            }),
        };
        let reply = Datagram {
            from: id(0xaa),
            message: Message::HyParView(H::ShuffleReply { peers }),
        };
        for (datagram, len) in [
            (shuffle, HEADER_BYTES + 70 + 2 + MAX_SHUFFLE_PEERS * 70),
            (reply, HEADER_BYTES + 1 + MAX_SHUFFLE_PEERS * 70),
        ] {
            let bytes = encoded(&datagram);
            assert_eq!(bytes.len(), len);
            assert!(len <= MAX_RELAYED_BYTES, "{len}");
            assert_eq!(decode(&bytes), Ok(datagram.clone()));
            let data = Bytes::from(bytes);
            for frame in [
                N::RelayTo {
                    target: id(0xbb),
                    data: data.clone(),
                },
                N::RelayFrom {
                    source: id(0xcc),
                    source_addr: v6(0xcc, 7002),
                    data: data.clone(),
                },
            ] {
                let relayed = nat(frame);
                let outer = encoded(&relayed);
                assert!(outer.len() <= MAX_DATAGRAM_BYTES);
                let Ok(Datagram {
                    message:
                        Message::Nat(N::RelayTo { data: inner, .. } | N::RelayFrom { data: inner, .. }),
                    ..
                }) = decode(&outer)
                else {
                    panic!("relay frame roundtrips");
                };
                assert_eq!(decode(&inner), Ok(datagram.clone()));
            }
        }
        assert_eq!(HEADER_BYTES + 70 + 2 + 16 * 70, 1226);
        assert_eq!(MAX_RELAYED_BYTES, 1313);
    }

    #[test]
    fn largest_messages_fit() {
        let gossip = Datagram {
            from: id(1),
            message: Message::Plumtree(P::Gossip {
                id: MsgId([2; 32]),
                hops: u16::MAX,
                payload: Bytes::from(vec![7; MAX_PAYLOAD_BYTES]),
            }),
        };
        assert_eq!(decode(&encoded(&gossip)), Ok(gossip));
        let ihave = Datagram {
            from: id(1),
            message: Message::Plumtree(P::IHave {
                entries: vec![(MsgId([3; 32]), 9); MAX_IHAVE_ENTRIES],
            }),
        };
        assert_eq!(decode(&encoded(&ihave)), Ok(ihave));
        // A RELAY-FROM at its cap with an IPv6 source fills a datagram.
        let relay_from = nat(N::RelayFrom {
            source: id(2),
            source_addr: sa("[2001:db8::2]:2"),
            data: Bytes::from(vec![8; MAX_RELAYED_BYTES]),
        });
        let bytes = encoded(&relay_from);
        assert_eq!(bytes.len(), MAX_DATAGRAM_BYTES);
        assert_eq!(decode(&bytes), Ok(relay_from));
    }

    fn check_layout(datagram: &Datagram, body: &[u8]) {
        let mut expected = vec![VERSION, message_tag(&datagram.message)];
        expected.extend([0xaa; 32]);
        expected.extend(body);
        assert_eq!(encoded(datagram), expected, "{datagram:?}");
        assert_eq!(decode(&expected).as_ref(), Ok(datagram));
    }

    #[test]
    fn forward_join_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: Message::HyParView(H::ForwardJoin {
                joiner: Peer::new(id(0xbb), sa("192.168.1.2:4660")),
                ttl: 6,
            }),
        };
        let mut expected = vec![0x01, 0x03];
        expected.extend([0xaa; 32]);
        expected.extend([0xbb; 32]);
        expected.extend([4, 192, 168, 1, 2, 0x12, 0x34]);
        expected.push(6);
        assert_eq!(encoded(&datagram), expected);
        assert_eq!(decode(&expected), Ok(datagram));
        assert_eq!(classify(&expected), Some(Class::Control));
        assert_eq!(gossip_id(&expected), None);
    }

    const V6_DB8_1: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    #[test]
    fn peer_with_relay_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: Message::HyParView(H::ForwardJoin {
                joiner: Peer {
                    id: id(0xbb),
                    addr: sa("192.168.1.2:4660"),
                    relay: Some(sa("[2001:db8::1]:443")),
                },
                ttl: 6,
            }),
        };
        let mut body = vec![0xbb; 32];
        body.extend([0x84, 192, 168, 1, 2, 0x12, 0x34]);
        body.push(6);
        body.extend(V6_DB8_1);
        body.extend([0x01, 0xbb]);
        body.push(6);
        check_layout(&datagram, &body);
    }

    #[test]
    fn shuffle_reply_v6_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: Message::HyParView(H::ShuffleReply {
                peers: vec![Peer::new(id(0xcc), sa("[2001:db8::1]:443"))],
            }),
        };
        let mut expected = vec![0x01, 0x08];
        expected.extend([0xaa; 32]);
        expected.push(1);
        expected.extend([0xcc; 32]);
        expected.push(6);
        expected.extend(V6_DB8_1);
        expected.extend([0x01, 0xbb]);
        assert_eq!(encoded(&datagram), expected);
        assert_eq!(decode(&expected), Ok(datagram));
    }

    #[test]
    fn gossip_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: Message::Plumtree(P::Gossip {
                id: MsgId([0x11; 32]),
                hops: 0x0102,
                payload: Bytes::from_static(b"hi"),
            }),
        };
        let mut expected = vec![0x01, 0x10];
        expected.extend([0xaa; 32]);
        expected.extend([0x11; 32]);
        expected.extend([0x01, 0x02, 0x00, 0x02, b'h', b'i']);
        assert_eq!(encoded(&datagram), expected);
        assert_eq!(decode(&expected), Ok(datagram));
        assert_eq!(classify(&expected), Some(Class::Payload));
        assert_eq!(gossip_id(&expected), Some(MsgId([0x11; 32])));
    }

    #[test]
    fn nat_layouts() {
        let with = |message| Datagram {
            from: id(0xaa),
            message: Message::Nat(message),
        };
        let a = sa("1.2.3.4:80");
        let a_bytes = [4, 1, 2, 3, 4, 0, 80];
        let b = sa("[2001:db8::1]:443");
        let mut b_bytes = vec![6];
        b_bytes.extend(V6_DB8_1);
        b_bytes.extend([0x01, 0xbb]);

        // HELLO without and with a relay: the flag on `observed`.
        let hello = |relay| {
            with(N::Hello {
                observed: a,
                relay,
                reach: Reach::Public,
            })
        };
        check_layout(&hello(None), &[4, 1, 2, 3, 4, 0, 80, 2]);
        let mut body = vec![0x84, 1, 2, 3, 4, 0, 80];
        body.extend(&b_bytes);
        body.push(2);
        check_layout(&hello(Some(b)), &body);

        let mut body = vec![0, 0, 0, 0, 0, 0, 1, 2, 1];
        body.extend(&b_bytes);
        check_layout(
            &with(N::DialResponse {
                nonce: 0x0102,
                helpers: 1,
                observed: b,
            }),
            &body,
        );

        let mut body = vec![0x00, 0xc9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        body.extend(a_bytes);
        check_layout(
            &with(N::ReserveStatus {
                status: Status::ResourceLimitExceeded,
                ttl_s: 0x0102_0304,
                limit_duration_s: 0x0506_0708,
                limit_bytes: 0x090a_0b0c,
                observed: a,
            }),
            &body,
        );

        let mut body = vec![0xdd; 32];
        body.extend([0x01, 0x91]);
        check_layout(
            &with(N::CircuitClosed {
                peer: id(0xdd),
                status: Status::UnexpectedMessage,
            }),
            &body,
        );

        let mut body = vec![0xdd; 32];
        body.extend(&b_bytes);
        body.extend([0, 3, b'a', b'b', b'c']);
        check_layout(
            &with(N::RelayFrom {
                source: id(0xdd),
                source_addr: b,
                data: Bytes::from_static(b"abc"),
            }),
            &body,
        );

        let mut body = vec![7, 1, 3, 2];
        body.extend(a_bytes);
        body.extend(&b_bytes);
        check_layout(
            &with(N::PunchConnect {
                attempt: 7,
                reply: true,
                reach: Reach::PortMapped,
                addrs: vec![a, b],
            }),
            &body,
        );

        check_layout(
            &with(N::Punch {
                nonce: 5,
                ack: false,
            }),
            &[0, 0, 0, 0, 0, 0, 0, 5, 0],
        );
        check_layout(&with(N::KeepAlive), &[]);
    }

    #[test]
    fn status_and_reach_codes_are_pinned() {
        assert_eq!(
            ALL_STATUSES.map(Status::code),
            [100, 200, 201, 202, 203, 204, 400, 401]
        );
        assert_eq!(ALL_REACHES.map(N::reach_code), [0, 1, 2, 3]);
    }

    /// Only the eight Circuit Relay v2 codes decode as a status; anything
    /// else is invalid, wherever a status is read.
    #[test]
    fn unknown_status_code_is_invalid() {
        let mut valid = 0;
        for code in 0..=u16::MAX {
            let mut bytes = header(tag::CONNECT_STATUS);
            bytes.extend([7; 32]);
            bytes.extend(code.to_be_bytes());
            match Status::from_code(code) {
                Some(status) => {
                    valid += 1;
                    assert_eq!(
                        decode(&bytes),
                        Ok(Datagram {
                            from: id(9),
                            message: Message::Nat(N::ConnectStatus {
                                target: id(7),
                                status,
                            }),
                        })
                    );
                }
                None => assert_eq!(
                    decode(&bytes),
                    Err(DecodeError::Invalid {
                        what: "status code",
                        offset: 66
                    }),
                    "{code}"
                ),
            }
        }
        assert_eq!(valid, ALL_STATUSES.len());
        for (tag, offset) in [
            (tag::RESERVE_STATUS, 34),
            (tag::STOP_STATUS, 66),
            (tag::CIRCUIT_CLOSED, 66),
        ] {
            for code in [0u16, 101, 205, 402, u16::MAX] {
                let mut bytes = header(tag);
                bytes.resize(offset, 0);
                bytes.extend(code.to_be_bytes());
                assert_eq!(
                    decode(&bytes),
                    Err(DecodeError::Invalid {
                        what: "status code",
                        offset
                    }),
                    "tag {tag:#04x}, code {code}"
                );
            }
        }
    }

    /// A reach is 0..=3; anything else is invalid, in HELLO and in
    /// PUNCH-CONNECT.
    #[test]
    fn unknown_reach_is_invalid() {
        for code in 0..=u8::MAX {
            let mut hello = header(tag::HELLO);
            hello.extend([4, 10, 0, 0, 1, 0, 9, code]);
            let mut punch = header(tag::PUNCH_CONNECT);
            punch.extend([1, 0, code, 0]);
            for (bytes, offset) in [(hello, 41), (punch, 36)] {
                let result = decode(&bytes);
                if usize::from(code) < ALL_REACHES.len() {
                    assert!(result.is_ok(), "{code}: {result:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(DecodeError::Invalid {
                            what: "reachability",
                            offset
                        }),
                        "{code}"
                    );
                }
            }
        }
    }

    /// The relay flag is allowed only on a peer's address and on HELLO's
    /// observed address; on any other address it is invalid.
    #[test]
    fn relay_flag_where_none_is_allowed_is_invalid() {
        for (a, r) in [
            (sa("10.0.0.1:9000"), sa("10.0.0.2:9001")),
            (sa("[2001:db8::1]:9000"), sa("[2001:db8::2]:9001")),
        ] {
            let n = addr_bytes(&a);
            let relayed = Peer {
                id: id(2),
                addr: a,
                relay: Some(r),
            };
            let punch = N::PunchConnect {
                attempt: 1,
                reply: false,
                reach: Reach::Private,
                addrs: vec![a, r],
            };
            let cases = [
                // HELLO's relay address.
                (
                    Message::Nat(N::Hello {
                        observed: a,
                        relay: Some(r),
                        reach: Reach::Public,
                    }),
                    34 + n,
                ),
                (
                    Message::Nat(N::DialResponse {
                        nonce: 1,
                        helpers: 1,
                        observed: a,
                    }),
                    34 + 9,
                ),
                (
                    Message::Nat(N::DialBackRequest {
                        nonce: 1,
                        peer: PeerId([1; 32]),
                        target: a,
                    }),
                    34 + 8 + 32,
                ),
                (
                    Message::Nat(N::ReserveStatus {
                        status: Status::Ok,
                        ttl_s: 1,
                        limit_duration_s: 2,
                        limit_bytes: 3,
                        observed: a,
                    }),
                    34 + 14,
                ),
                (
                    Message::Nat(N::Stop {
                        source: id(3),
                        source_addr: a,
                    }),
                    34 + 32,
                ),
                (
                    Message::Nat(N::RelayFrom {
                        source: id(3),
                        source_addr: a,
                        data: Bytes::from_static(b"x"),
                    }),
                    34 + 32,
                ),
                (Message::Nat(punch.clone()), 34 + 4),
                (Message::Nat(punch), 34 + 4 + n),
                // A peer's relay address.
                (
                    Message::HyParView(H::ForwardJoin {
                        joiner: relayed,
                        ttl: 1,
                    }),
                    34 + 32 + n,
                ),
                (
                    Message::HyParView(H::ShuffleReply {
                        peers: vec![Peer::new(id(4), a), relayed],
                    }),
                    34 + 1 + (32 + n) + 32 + n,
                ),
            ];
            for (message, offset) in cases {
                let mut bytes = encoded(&Datagram {
                    from: id(1),
                    message,
                });
                assert!(matches!(bytes[offset], FAMILY_V4 | FAMILY_V6));
                assert!(decode(&bytes).is_ok());
                bytes[offset] |= RELAY_FOLLOWS;
                assert_eq!(
                    decode(&bytes),
                    Err(DecodeError::Invalid {
                        what: "address family",
                        offset
                    }),
                    "{bytes:?}"
                );
            }
        }
    }

    #[test]
    fn ipv6_flow_label_and_scope_are_not_carried() {
        let addr = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 5, 3));
        let datagram = Datagram {
            from: id(1),
            message: Message::HyParView(H::ForwardJoin {
                joiner: Peer {
                    id: id(2),
                    addr,
                    relay: Some(addr),
                },
                ttl: 1,
            }),
        };
        let Ok(Datagram {
            message: Message::HyParView(H::ForwardJoin { joiner, .. }),
            ..
        }) = decode(&encoded(&datagram))
        else {
            panic!("FORWARDJOIN roundtrips");
        };
        let expected = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, 0));
        assert_eq!(joiner.addr, expected);
        assert_eq!(joiner.relay, Some(expected));
    }

    #[test]
    fn decode_errors_say_what_and_where() {
        let with = |tag: u8, body: &[u8]| {
            let mut bytes = header(tag);
            bytes.extend(body);
            decode(&bytes)
        };
        let invalid = |what, offset| Err(DecodeError::Invalid { what, offset });
        let truncated = |what, offset| Err(DecodeError::Truncated { what, offset });
        assert_eq!(decode(&[]), truncated("version", 0));
        assert_eq!(
            decode(&[VERSION, 0x7f]),
            Err(DecodeError::UnknownTag {
                tag: 0x7f,
                offset: 1
            })
        );
        assert_eq!(
            decode(&[VERSION, 0x32]),
            Err(DecodeError::UnknownTag {
                tag: 0x32,
                offset: 1
            })
        );
        assert_eq!(
            decode(&[VERSION, tag::PING, 1, 2]),
            truncated("sender id", 2)
        );
        assert_eq!(with(tag::NEIGHBOR, &[2]), invalid("priority", 34));
        assert_eq!(with(tag::NEIGHBOR_REPLY, &[2]), invalid("accepted", 34));
        assert_eq!(with(tag::DISCONNECT, &[0xff]), invalid("alive", 34));
        for family in [5, 0x85, 0x44, 0x46, 0xc4, 0x80, 0] {
            let mut joiner = vec![0; 32];
            joiner.push(family);
            joiner.extend([10, 0, 0, 1, 0, 1, 1]);
            assert_eq!(
                with(tag::FORWARD_JOIN, &joiner),
                invalid("address family", 66),
                "{family:#04x}"
            );
        }
        // A flagged address with no relay after it.
        assert_eq!(
            with(tag::HELLO, &[0x84, 10, 0, 0, 1, 0, 1]),
            truncated("address family", 41)
        );
        assert_eq!(
            with(tag::SHUFFLE_REPLY, &[17]),
            Err(DecodeError::OverLimit {
                what: "shuffle peers",
                value: 17,
                max: 16
            })
        );
        assert_eq!(
            with(tag::SHUFFLE_REPLY, &[16]),
            truncated("shuffle peers", 35)
        );
        assert_eq!(
            with(tag::IHAVE, &[33]),
            Err(DecodeError::OverLimit {
                what: "IHAVE entries",
                value: 33,
                max: 32
            })
        );
        let mut gossip = vec![0; 34];
        gossip.extend(1025u16.to_be_bytes());
        assert_eq!(
            with(tag::GOSSIP, &gossip),
            Err(DecodeError::OverLimit {
                what: "payload bytes",
                value: 1025,
                max: 1024
            })
        );
        let mut dial_response = vec![0; 8];
        dial_response.push(4);
        assert_eq!(
            with(tag::DIAL_RESPONSE, &dial_response),
            Err(DecodeError::OverLimit {
                what: "dial-back helpers",
                value: 4,
                max: 3
            })
        );
        let mut punch = vec![0; 8];
        punch.push(2);
        assert_eq!(with(tag::PUNCH, &punch), invalid("ack", 42));
        assert_eq!(with(tag::PUNCH_CONNECT, &[1, 2]), invalid("reply", 35));
        assert_eq!(
            with(tag::PUNCH_CONNECT, &[1, 0, 0, 4]),
            truncated("hole-punch addresses", 38)
        );
        let mut relay_to = vec![0; 32];
        relay_to.extend([0, 3, 1, 2]);
        assert_eq!(
            with(tag::RELAY_TO, &relay_to),
            truncated("relayed datagram", 68)
        );
        let long = vec![VERSION; MAX_DATAGRAM_BYTES + 1];
        assert_eq!(
            decode(&long),
            Err(DecodeError::TooLong {
                len: 1401,
                max: 1400
            })
        );
        assert_eq!(classify(&long), None);
    }

    #[test]
    fn classify_reads_the_header_only() {
        assert_eq!(classify(&[]), None);
        assert_eq!(classify(&header(tag::PING)[..33]), None);
        assert_eq!(classify(&header(tag::PING)), Some(Class::Control));
        assert_eq!(classify(&header(0x7f)), None);
        // A GOSSIP header without its id classifies but has no id.
        assert_eq!(classify(&header(tag::GOSSIP)), Some(Class::Payload));
        assert_eq!(gossip_id(&header(tag::GOSSIP)), None);
        for tag in 0..=u8::MAX {
            let class = if tag == tag::GOSSIP {
                Some(Class::Payload)
            } else if ALL_TAGS.contains(&tag) || kad::strategy::TAGS.contains(&tag) {
                Some(Class::Control)
            } else {
                None
            };
            assert_eq!(classify(&header(tag)), class, "{tag:#04x}");
        }
    }

    #[test]
    fn unusable_addresses_are_refused() {
        let good = sa("10.0.0.1:7000");
        for bad in [
            "255.255.255.255:9",
            "0.0.0.0:7000",
            "224.0.0.1:7000",
            "10.0.0.1:0",
            "[::]:7000",
            "[ff02::1]:7000",
        ] {
            let bad = sa(bad);
            let messages = [
                Message::HyParView(H::ForwardJoin {
                    joiner: Peer::new(id(1), bad),
                    ttl: 3,
                }),
                Message::HyParView(H::ForwardJoin {
                    joiner: Peer {
                        id: id(1),
                        addr: good,
                        relay: Some(bad),
                    },
                    ttl: 3,
                }),
                Message::Nat(N::Hello {
                    observed: bad,
                    relay: None,
                    reach: Reach::Unknown,
                }),
                Message::Nat(N::Hello {
                    observed: good,
                    relay: Some(bad),
                    reach: Reach::Unknown,
                }),
                Message::Nat(N::PunchConnect {
                    attempt: 1,
                    reply: true,
                    reach: Reach::Private,
                    addrs: vec![good, bad],
                }),
                Message::Nat(N::RelayFrom {
                    source: id(3),
                    source_addr: bad,
                    data: Bytes::new(),
                }),
            ];
            for message in messages {
                let datagram = Datagram {
                    from: id(2),
                    message,
                };
                let mut out = Vec::new();
                encode(&datagram, &mut out).unwrap();
                assert_eq!(
                    decode(&out),
                    Err(DecodeError::UnusableAddress { addr: bad }),
                    "{datagram:?}"
                );
            }
        }
        assert!(usable(&sa("127.0.0.1:7000")));
        assert!(usable(&sa("[::1]:7000")));
    }
}
