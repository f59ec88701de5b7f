//! Every message of the node, and its encoding as one datagram.
//!
//! [`Message`] is the union of each protocol's messages; [`encode`] and
//! [`decode`] frame one of them with [`crate::wire`]'s header and hand the
//! body to the protocol's own codec, chosen by tag ([`crate::wire::tag`]).
//! It sits above the protocols (which know nothing of each other) and
//! below the transport, which decodes a datagram's plaintext, keeps NAT
//! traversal's messages and hands the others to the node.

use crate::proto::{gossipsub, hyparview, kad, knowledge, plumtree};
use crate::transport::nat;
use crate::wire::{self, tag, Codec, DecodeError, EncodeError, Protocol, Reader};
use crate::{Peer, PeerId};

/// The union's one table: each variant, the protocol's message type and
/// the protocol (its tag range). It declares [`Message`], its `From` and
/// `TryFrom` for each protocol's message, [`Message::protocol`], the codec
/// each variant encodes with, and the decoder each tag range decodes with.
macro_rules! messages {
    ($($(#[$doc:meta])* $variant:ident($message:ty) = $protocol:ident),* $(,)?) => {
        /// Every wire message of the node.
        #[derive(Clone, PartialEq, Eq, Debug)]
        pub enum Message {
            $($(#[$doc])* $variant($message),)*
        }

        $(
            impl From<$message> for Message {
                fn from(message: $message) -> Message {
                    Message::$variant(message)
                }
            }
            impl TryFrom<Message> for $message {
                type Error = Message;
                fn try_from(message: Message) -> Result<$message, Message> {
                    match message {
                        Message::$variant(m) => Ok(m),
                        other => Err(other),
                    }
                }
            }
        )*

        impl Message {
            /// The protocol the message belongs to.
            #[must_use]
            pub fn protocol(&self) -> Protocol {
                match self {
                    $(Message::$variant(_) => Protocol::$protocol,)*
                }
            }

            /// The protocol's codec.
            fn codec(&self) -> &dyn CodecRef {
                match self {
                    $(Message::$variant(m) => m,)*
                }
            }
        }

        /// The body of a message with `tag` (known to the tag table), by
        /// the codec of the protocol whose range holds it.
        fn decode_body(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
            match tag::protocol_of(tag) {
                $(Some(Protocol::$protocol) => Ok(Message::$variant(Codec::decode(tag, r)?)),)*
                None => Err(DecodeError::UnknownTag { tag, offset: 1 }),
            }
        }
    };
}

messages!(
    HyParView(hyparview::Message) = Membership,
    Plumtree(plumtree::Message) = Broadcast,
    Nat(nat::Message) = Traversal,
    /// GossipSub (tags `0x40..=0x46`).
    PubSub(gossipsub::Message) = PubSub,
    Dht(kad::Message) = Dht,
    /// Knowledge commons: one chunk of a CRDT blob.
    Knowledge(knowledge::Chunk) = Knowledge,
);

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

    /// The message's tag (byte 1 of its datagram).
    #[must_use]
    pub fn tag(&self) -> u8 {
        self.codec().tag()
    }
}

/// The encoding half of [`Codec`], object-safe, so that one match picks
/// the protocol for [`encode`].
trait CodecRef {
    fn tag(&self) -> u8;
    fn check_limits(&self) -> Result<(), EncodeError>;
    fn encode(&self, out: &mut Vec<u8>);
}

impl<T: Codec> CodecRef for T {
    fn tag(&self) -> u8 {
        Codec::tag(self)
    }
    fn check_limits(&self) -> Result<(), EncodeError> {
        Codec::check_limits(self)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        Codec::encode(self, out);
    }
}

/// One datagram: who sent it and what it says.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Datagram {
    pub from: PeerId,
    pub message: Message,
}

/// Append the encoding of `datagram` to `out`.
///
/// # Errors
///
/// [`EncodeError::OverLimit`] when a count or the payload is over its cap,
/// or the encoding would exceed [`wire::MAX_DATAGRAM_BYTES`]; `out` is then
/// left as it was.
pub fn encode(datagram: &Datagram, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_from(&datagram.from, &datagram.message, out)
}

/// [`encode`] for a message not held in a [`Datagram`] (a sender encoding
/// its own messages, without copying each into one).
///
/// # Errors
///
/// As [`encode`].
pub fn encode_from(from: &PeerId, message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let codec = message.codec();
    codec.check_limits()?;
    wire::encode_frame(from, codec.tag(), out, |out| codec.encode(out))
}

/// Decode one datagram.
///
/// # Errors
///
/// A [`DecodeError`] saying what was wrong and at which byte, for any input
/// that is not exactly the encoding of one datagram within the limits.
pub fn decode(bytes: &[u8]) -> Result<Datagram, DecodeError> {
    let (from, message) = wire::decode_frame(bytes, decode_body)?;
    Ok(Datagram { from, message })
}

/// Helpers the codecs' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::VERSION;

    pub(crate) fn id(byte: u8) -> PeerId {
        PeerId([byte; 32])
    }

    pub(crate) fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(crate) fn encoded(datagram: &Datagram) -> Vec<u8> {
        let mut out = Vec::new();
        encode(datagram, &mut out).expect("datagram within limits");
        out
    }

    /// A header from `id(9)` with `tag`.
    pub(crate) fn header(tag: u8) -> Vec<u8> {
        let mut bytes = vec![VERSION, tag];
        bytes.extend([9; 32]);
        bytes
    }

    /// The error encoding `message` gives, and what it left of an output
    /// that held `[1, 2, 3]`.
    pub(crate) fn encode_err(message: Message) -> (EncodeError, Vec<u8>) {
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

    /// `datagram`, from `id(0xaa)`, encodes as the header and `body`.
    pub(crate) fn check_layout(datagram: &Datagram, body: &[u8]) {
        let mut expected = vec![VERSION, datagram.message.tag()];
        expected.extend([0xaa; 32]);
        expected.extend(body);
        assert_eq!(encoded(datagram), expected, "{datagram:?}");
        assert_eq!(decode(&expected).as_ref(), Ok(datagram));
    }

    /// The decoding of a header with `tag` and `body`.
    pub(crate) fn decode_body(tag: u8, body: &[u8]) -> Result<Datagram, DecodeError> {
        let mut bytes = header(tag);
        bytes.extend(body);
        decode(&bytes)
    }

    pub(crate) const V6_DB8_1: [u8; 16] =
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    pub(crate) fn payload(max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, SocketAddrV6};

    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::testing::*;
    use super::*;
    use crate::transport::nat::{Reach, Status};
    use crate::wire::strategy::{addr_bytes, peer, peer_id};
    use crate::wire::{
        classify, gossip_id, protocol, Class, FAMILY_V4, FAMILY_V6, MAX_DATAGRAM_BYTES,
        RELAY_FOLLOWS, VERSION,
    };
    use hyparview::Message as H;
    use nat::Message as N;
    use Message as W;

    fn datagram() -> impl Strategy<Value = Datagram> {
        let message = prop_oneof![
            1 => hyparview::message::strategy::message().prop_map(W::HyParView),
            1 => plumtree::message::strategy::message().prop_map(W::Plumtree),
            2 => nat::message::strategy::message().prop_map(W::Nat),
            2 => gossipsub::message::strategy::message(peer()).prop_map(W::PubSub),
            2 => kad::message::strategy::message().prop_map(W::Dht),
            1 => knowledge::message::strategy::chunk().prop_map(W::Knowledge),
        ];
        (peer_id(), message).prop_map(|(from, message)| Datagram { from, message })
    }

    /// Every tag of this version, listed by hand.
    const ALL_TAGS: [u8; 55] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, // HyParView
        0x10, 0x11, 0x12, 0x13, 0x14, // Plumtree
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e,
        0x2f, 0x30, 0x31, // NAT traversal
        0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, // GossipSub
        0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, // DHT
        0x60, 0x61, 0x62, 0x63, // knowledge
    ];

    /// Bytes that pass the header checks, so the body decoders get fuzzed.
    fn header_shaped_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(&ALL_TAGS[..]),
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
                    W::HyParView(_) => Protocol::Membership,
                    W::Plumtree(_) => Protocol::Broadcast,
                    W::Nat(_) => Protocol::Traversal,
                    W::PubSub(_) => Protocol::PubSub,
                    W::Dht(_) => Protocol::Dht,
                    W::Knowledge(_) => Protocol::Knowledge,
                };
                prop_assert_eq!(protocol(bytes), Some(expected));
                match datagram.message {
                    W::Plumtree(plumtree::Message::Gossip { id: gossip, .. }) => {
                        prop_assert_eq!(class, Some(Class::Payload));
                        prop_assert_eq!(id, Some(gossip.0));
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn roundtrip(datagram in datagram()) {
            let bytes = encoded(&datagram);
            prop_assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
            prop_assert_eq!(bytes[1], datagram.message.tag());
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
    }

    #[test]
    fn every_tag_is_known_and_only_those() {
        for tag in 0..=u8::MAX {
            assert_eq!(tag::is_known(tag), ALL_TAGS.contains(&tag), "{tag:#04x}");
        }
    }

    /// What the framing refuses, before any body is read.
    #[test]
    fn header_errors_say_what_and_where() {
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
            decode(&[VERSION, tag::hyparview::PING, 1, 2]),
            truncated("sender id", 2)
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
                    W::Nat(N::Hello {
                        observed: a,
                        relay: Some(r),
                        reach: Reach::Public,
                    }),
                    34 + n,
                ),
                (
                    W::Nat(N::DialResponse {
                        nonce: 1,
                        helpers: 1,
                        observed: a,
                    }),
                    34 + 9,
                ),
                (
                    W::Nat(N::DialBackRequest {
                        nonce: 1,
                        peer: PeerId([1; 32]),
                        target: a,
                    }),
                    34 + 8 + 32,
                ),
                (
                    W::Nat(N::ReserveStatus {
                        status: Status::Ok,
                        ttl_s: 1,
                        limit_duration_s: 2,
                        limit_bytes: 3,
                        observed: a,
                    }),
                    34 + 14,
                ),
                (
                    W::Nat(N::Stop {
                        source: id(3),
                        source_addr: a,
                    }),
                    34 + 32,
                ),
                (
                    W::Nat(N::RelayFrom {
                        source: id(3),
                        source_addr: a,
                        data: Bytes::from_static(b"x"),
                    }),
                    34 + 32,
                ),
                (W::Nat(punch.clone()), 34 + 4),
                (W::Nat(punch), 34 + 4 + n),
                // A peer's relay address.
                (
                    W::HyParView(H::ForwardJoin {
                        joiner: relayed,
                        ttl: 1,
                    }),
                    34 + 32 + n,
                ),
                (
                    W::HyParView(H::ShuffleReply {
                        origin: id(5),
                        peers: vec![Peer::new(id(4), a), relayed],
                    }),
                    34 + 32 + 1 + (32 + n) + 32 + n,
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
            message: W::HyParView(H::ForwardJoin {
                joiner: Peer {
                    id: id(2),
                    addr,
                    relay: Some(addr),
                },
                ttl: 1,
            }),
        };
        let Ok(Datagram {
            message: W::HyParView(H::ForwardJoin { joiner, .. }),
            ..
        }) = decode(&encoded(&datagram))
        else {
            panic!("FORWARDJOIN roundtrips");
        };
        let expected = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, 0));
        assert_eq!(joiner.addr, expected);
        assert_eq!(joiner.relay, Some(expected));
    }

    /// The peers' address policy ([`crate::identity::usable`]) holds in
    /// every codec: a message naming an address it refuses is refused.
    #[test]
    fn unusable_addresses_are_refused() {
        let good = sa("10.0.0.1:7000");
        for bad in crate::identity::tests::UNUSABLE {
            let bad = sa(bad);
            let messages = [
                W::HyParView(H::ForwardJoin {
                    joiner: Peer::new(id(1), bad),
                    ttl: 3,
                }),
                W::HyParView(H::ForwardJoin {
                    joiner: Peer {
                        id: id(1),
                        addr: good,
                        relay: Some(bad),
                    },
                    ttl: 3,
                }),
                W::Nat(N::Hello {
                    observed: bad,
                    relay: None,
                    reach: Reach::Unknown,
                }),
                W::Nat(N::Hello {
                    observed: good,
                    relay: Some(bad),
                    reach: Reach::Unknown,
                }),
                W::Nat(N::PunchConnect {
                    attempt: 1,
                    reply: true,
                    reach: Reach::Private,
                    addrs: vec![good, bad],
                }),
                W::Nat(N::RelayFrom {
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
    }
}
