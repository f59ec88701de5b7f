//! The tag table: byte 1 of every datagram names the message it carries.
//!
//! Each protocol has a range of its own; the tags inside it belong to the
//! protocol's codec (its `message.rs` under `proto/` or `transport/`), which
//! names its tags from here. This table is the one place that knows every
//! tag, for the framing ([`is_known`]) and for observers that account
//! traffic ([`protocol_of`], [`PubSubKind`]).
//!
//! | range          | protocol                                   |
//! |---------------:|--------------------------------------------|
//! | `0x01..=0x0a`  | HyParView membership                       |
//! | `0x10..=0x14`  | Plumtree broadcast (and flooding)          |
//! | `0x20..=0x31`  | NAT traversal: AutoNAT, Circuit Relay v2, DCUtR |
//! | `0x40..=0x4f`  | GossipSub (`0x40..=0x46` in use)           |
//! | `0x50..=0x5f`  | Kademlia DHT (`0x50..=0x5a` in use)        |
//! | `0x60..=0x6f`  | knowledge commons (`0x60..=0x63` in use)   |
//!
//! Every other tag is unknown.

use super::Protocol;

/// HyParView membership.
pub mod hyparview {
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
}

/// Plumtree (and flooding) broadcast.
pub mod plumtree {
    pub const GOSSIP: u8 = 0x10;
    pub const IHAVE: u8 = 0x11;
    pub const GRAFT: u8 = 0x12;
    pub const PRUNE: u8 = 0x13;
    pub const LINK: u8 = 0x14;
}

/// NAT traversal: AutoNAT, Circuit Relay v2, DCUtR, keep-alives.
pub mod nat {
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
}

/// GossipSub.
pub mod pubsub {
    pub const FIRST: u8 = 0x40;
    pub const LAST: u8 = 0x4f;
    pub const SUBSCRIPTIONS: u8 = 0x40;
    pub const PUBLISH: u8 = 0x41;
    pub const IHAVE: u8 = 0x42;
    pub const IWANT: u8 = 0x43;
    pub const GRAFT: u8 = 0x44;
    pub const PRUNE: u8 = 0x45;
    pub const IDONTWANT: u8 = 0x46;
}

/// Kademlia DHT.
pub mod dht {
    pub const FIRST: u8 = 0x50;
    pub const LAST: u8 = 0x5f;
    pub const PING: u8 = 0x50;
    pub const PONG: u8 = 0x51;
    pub const FIND_NODE: u8 = 0x52;
    pub const NODES: u8 = 0x53;
    pub const GET_PROVIDERS: u8 = 0x54;
    pub const PROVIDERS: u8 = 0x55;
    pub const ADD_PROVIDER: u8 = 0x56;
    pub const PUT_VALUE: u8 = 0x57;
    pub const PUT_VALUE_ACK: u8 = 0x58;
    pub const GET_VALUE: u8 = 0x59;
    pub const VALUE: u8 = 0x5a;
}

/// Knowledge commons.
pub mod knowledge {
    pub const FIRST: u8 = 0x60;
    pub const LAST: u8 = 0x6f;
    pub const DELTA: u8 = 0x60;
    pub const SUMMARY: u8 = 0x61;
    pub const SUMMARY_REPLY: u8 = 0x62;
    pub const SNAPSHOT: u8 = 0x63;
}

// The tags in use sit inside their protocol's range.
const _: () = assert!(pubsub::FIRST <= pubsub::SUBSCRIPTIONS && pubsub::IDONTWANT <= pubsub::LAST);
const _: () = assert!(dht::FIRST <= dht::PING && dht::VALUE <= dht::LAST);
const _: () =
    assert!(knowledge::FIRST <= knowledge::DELTA && knowledge::SNAPSHOT <= knowledge::LAST);

/// Whether `tag` names a message of this version.
pub fn is_known(tag: u8) -> bool {
    matches!(
        tag,
        hyparview::JOIN..=hyparview::PONG
            | plumtree::GOSSIP..=plumtree::LINK
            | nat::HELLO..=nat::KEEP_ALIVE
            | pubsub::SUBSCRIPTIONS..=pubsub::IDONTWANT
            | dht::PING..=dht::VALUE
            | knowledge::DELTA..=knowledge::SNAPSHOT
    )
}

/// The protocol whose range holds `tag`.
pub fn protocol_of(tag: u8) -> Option<Protocol> {
    Some(match tag {
        hyparview::JOIN..=hyparview::PONG => Protocol::Membership,
        plumtree::GOSSIP..=plumtree::LINK => Protocol::Broadcast,
        nat::HELLO..=nat::KEEP_ALIVE => Protocol::Traversal,
        pubsub::FIRST..=pubsub::LAST => Protocol::PubSub,
        dht::FIRST..=dht::LAST => Protocol::Dht,
        knowledge::FIRST..=knowledge::LAST => Protocol::Knowledge,
        _ => return None,
    })
}

/// A GossipSub message kind, for traffic accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PubSubKind {
    Subscriptions,
    Publish,
    IHave,
    IWant,
    Graft,
    Prune,
    IDontWant,
}

impl PubSubKind {
    /// The GossipSub kind of a message tag (None: not one).
    pub fn of_tag(tag: u8) -> Option<PubSubKind> {
        Some(match tag {
            pubsub::SUBSCRIPTIONS => PubSubKind::Subscriptions,
            pubsub::PUBLISH => PubSubKind::Publish,
            pubsub::IHAVE => PubSubKind::IHave,
            pubsub::IWANT => PubSubKind::IWant,
            pubsub::GRAFT => PubSubKind::Graft,
            pubsub::PRUNE => PubSubKind::Prune,
            pubsub::IDONTWANT => PubSubKind::IDontWant,
            _ => return None,
        })
    }
}
