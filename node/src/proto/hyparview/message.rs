//! HyParView's messages and their encoding (tags `0x01..=0x0a`, framing
//! in [`crate::wire`]).
//!
//! | tag    | message         | body                                                    |
//! |-------:|-----------------|---------------------------------------------------------|
//! | `0x01` | `Join`          | empty                                                   |
//! | `0x02` | `JoinReply`     | empty                                                   |
//! | `0x03` | `ForwardJoin`   | `joiner`: peer, `ttl`: u8                               |
//! | `0x04` | `Neighbor`      | `priority`: u8, 0 = `Low`, 1 = `High`                   |
//! | `0x05` | `NeighborReply` | `accepted`: bool                                        |
//! | `0x06` | `Disconnect`    | `alive`: bool                                           |
//! | `0x07` | `Shuffle`       | `origin`: peer, `ttl`: u8, count: u8, count x peer      |
//! | `0x08` | `ShuffleReply`  | `origin`: id, count: u8, count x peer                   |
//! | `0x09` | `Ping`          | `nonce`: u32                                            |
//! | `0x0a` | `Pong`          | `nonce`: u32                                            |
//!
//! A priority other than 0 or 1 is [`DecodeError::Invalid`]. SHUFFLE and
//! SHUFFLE-REPLY carry at most [`MAX_SHUFFLE_PEERS`] (16) peers, so that a
//! SHUFFLE at its cap, with IPv6 addresses and relays throughout (70 bytes
//! a peer, 34 + 70 + 2 + 16 x 70 = 1226 bytes), fits inside a relay frame
//! ([`MAX_RELAYED_BYTES`]) and can reach a peer behind a NAT. A
//! SHUFFLEREPLY names its shuffle's origin by id (32 bytes): it retraces
//! the walk hop by hop (see [`super`]).

use crate::wire::tag::hyparview as tag;
use crate::wire::{
    put_peer, within, Codec, DecodeError, EncodeError, Reader, HEADER_BYTES, MAX_RELAYED_BYTES,
    PEER_MAX_BYTES, PEER_V4_BYTES,
};
use crate::{Peer, PeerId};

/// Upper bound on the peers in one SHUFFLE or SHUFFLE-REPLY on the wire.
pub const MAX_SHUFFLE_PEERS: usize = 16;

// A SHUFFLE at its cap, with IPv6 addresses and relays, fits a relay frame.
const _: () = assert!(
    HEADER_BYTES + PEER_MAX_BYTES + 1 + 1 + MAX_SHUFFLE_PEERS * PEER_MAX_BYTES <= MAX_RELAYED_BYTES
);
// Counts travel as u8.
const _: () = assert!(MAX_SHUFFLE_PEERS <= u8::MAX as usize);

/// Whether a NEIGHBOR request must be accepted (the requester has no active
/// peer left) or may be refused when the active view is full (paper §4.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Priority {
    High,
    Low,
}

/// HyParView wire messages. The sender's record comes from the transport
/// (who sent the datagram, and from where), so messages only carry third
/// parties: [`Message::peer_records`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// A new node asks the contact to let it in.
    Join,
    /// The contact's answer to JOIN: the joiner adds the contact to its
    /// active view (Grove's addition: over datagrams no connection tells the
    /// joiner that the contact took it in).
    JoinReply,
    /// Random walk announcing a joiner.
    ForwardJoin { joiner: Peer, ttl: u8 },
    /// Ask to become active neighbours.
    Neighbor { priority: Priority },
    /// Answer to NEIGHBOR.
    NeighborReply { accepted: bool },
    /// The sender dropped us from its active view; `alive` says the sender
    /// is still running (we keep it in the passive view).
    Disconnect { alive: bool },
    /// Shuffle random walk started by `origin` with a sample of its views.
    Shuffle {
        origin: Peer,
        ttl: u8,
        peers: Vec<Peer>,
    },
    /// Answer to `origin`'s shuffle with a sample of the receiver's passive
    /// view, passed back along the walk.
    ShuffleReply { origin: PeerId, peers: Vec<Peer> },
    /// Liveness probe of an active peer.
    Ping { nonce: u32 },
    /// Answer to PING.
    Pong { nonce: u32 },
}

impl Message {
    /// The third parties' records the node must hand the transport's
    /// address book before the core sees this message: FORWARDJOIN's joiner
    /// (the walk may end here, and its end sends the joiner NEIGHBOR at
    /// once). A SHUFFLE's or SHUFFLEREPLY's sample is not listed: the core
    /// keeps what it takes of it in its passive view and hands a record
    /// over when it sends ([`super::HyParView::record_of`]); hinting every
    /// sample at every hop of a walk only churned the book's hearsay (3.8 KB
    /// a node, full at all times).
    pub fn peer_records(&self) -> impl Iterator<Item = &Peer> {
        match self {
            Message::ForwardJoin { joiner, .. } => Some(joiner),
            _ => None,
        }
        .into_iter()
    }
}

impl Codec for Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Join => tag::JOIN,
            Message::JoinReply => tag::JOIN_REPLY,
            Message::ForwardJoin { .. } => tag::FORWARD_JOIN,
            Message::Neighbor { .. } => tag::NEIGHBOR,
            Message::NeighborReply { .. } => tag::NEIGHBOR_REPLY,
            Message::Disconnect { .. } => tag::DISCONNECT,
            Message::Shuffle { .. } => tag::SHUFFLE,
            Message::ShuffleReply { .. } => tag::SHUFFLE_REPLY,
            Message::Ping { .. } => tag::PING,
            Message::Pong { .. } => tag::PONG,
        }
    }

    fn check_limits(&self) -> Result<(), EncodeError> {
        match self {
            Message::Shuffle { peers, .. } | Message::ShuffleReply { peers, .. } => {
                within("shuffle peers", peers.len(), MAX_SHUFFLE_PEERS)
            }
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Join | Message::JoinReply => {}
            Message::ForwardJoin { joiner, ttl } => {
                put_peer(out, joiner);
                out.push(*ttl);
            }
            Message::Neighbor { priority } => out.push(match priority {
                Priority::Low => 0,
                Priority::High => 1,
            }),
            Message::NeighborReply { accepted } => out.push(u8::from(*accepted)),
            Message::Disconnect { alive } => out.push(u8::from(*alive)),
            Message::Shuffle { origin, ttl, peers } => {
                put_peer(out, origin);
                out.push(*ttl);
                put_peers(out, peers);
            }
            Message::ShuffleReply { origin, peers } => {
                out.extend_from_slice(origin.as_bytes());
                put_peers(out, peers);
            }
            Message::Ping { nonce } | Message::Pong { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes());
            }
        }
    }

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match tag {
            tag::JOIN => Message::Join,
            tag::JOIN_REPLY => Message::JoinReply,
            tag::FORWARD_JOIN => Message::ForwardJoin {
                joiner: r.peer("joiner")?,
                ttl: r.u8("ttl")?,
            },
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
                Message::Neighbor { priority }
            }
            tag::NEIGHBOR_REPLY => Message::NeighborReply {
                accepted: r.bool("accepted")?,
            },
            tag::DISCONNECT => Message::Disconnect {
                alive: r.bool("alive")?,
            },
            tag::SHUFFLE => Message::Shuffle {
                origin: r.peer("shuffle origin")?,
                ttl: r.u8("ttl")?,
                peers: peers(r)?,
            },
            tag::SHUFFLE_REPLY => Message::ShuffleReply {
                origin: r.peer_id("shuffle origin")?,
                peers: peers(r)?,
            },
            tag::PING => Message::Ping {
                nonce: r.u32("nonce")?,
            },
            tag::PONG => Message::Pong {
                nonce: r.u32("nonce")?,
            },
            _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
        })
    }
}

fn put_peers(out: &mut Vec<u8>, peers: &[Peer]) {
    out.push(u8::try_from(peers.len()).expect("shuffle peer count checked"));
    for peer in peers {
        put_peer(out, peer);
    }
}

fn peers(r: &mut Reader<'_>) -> Result<Vec<Peer>, DecodeError> {
    let count = r.count("shuffle peers", MAX_SHUFFLE_PEERS, PEER_V4_BYTES)?;
    let mut peers = Vec::with_capacity(count);
    for _ in 0..count {
        peers.push(r.peer("shuffle peer")?);
    }
    Ok(peers)
}

#[cfg(test)]
pub(crate) mod strategy {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::strategy::{peer, peer_id};

    fn priority() -> impl Strategy<Value = Priority> {
        prop_oneof![Just(Priority::Low), Just(Priority::High)]
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            Just(Message::Join),
            Just(Message::JoinReply),
            (peer(), any::<u8>()).prop_map(|(joiner, ttl)| Message::ForwardJoin { joiner, ttl }),
            priority().prop_map(|priority| Message::Neighbor { priority }),
            any::<bool>().prop_map(|accepted| Message::NeighborReply { accepted }),
            any::<bool>().prop_map(|alive| Message::Disconnect { alive }),
            (peer(), any::<u8>(), vec(peer(), 0..=MAX_SHUFFLE_PEERS))
                .prop_map(|(origin, ttl, peers)| Message::Shuffle { origin, ttl, peers }),
            (peer_id(), vec(peer(), 0..=MAX_SHUFFLE_PEERS))
                .prop_map(|(origin, peers)| Message::ShuffleReply { origin, peers }),
            any::<u32>().prop_map(|nonce| Message::Ping { nonce }),
            any::<u32>().prop_map(|nonce| Message::Pong { nonce }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};

    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::message::testing::*;
    use crate::message::{decode, Datagram, Message as W};
    use crate::transport::nat::Message as N;
    use crate::wire::strategy::{peer, peer_bytes, peer_id};
    use crate::wire::{classify, gossip_id, Class, MAX_DATAGRAM_BYTES};
    use Message as H;

    fn v4_peer(byte: u8) -> Peer {
        Peer::new(id(byte), sa("10.0.0.1:9000"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

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
                message: W::HyParView(H::Shuffle { origin, ttl: 3, peers: peers.clone() }),
            };
            let len = HEADER_BYTES + peer_bytes(&origin) + 2
                + peers.iter().map(peer_bytes).sum::<usize>();
            let bytes = encoded(&datagram);
            prop_assert_eq!(bytes.len(), len);
            prop_assert!(len <= MAX_RELAYED_BYTES);
            prop_assert_eq!(decode(&bytes), Ok(datagram));
        }
    }

    #[test]
    fn encode_rejects_over_limit_shuffles() {
        let shuffle = H::Shuffle {
            origin: v4_peer(2),
            ttl: 1,
            peers: vec![v4_peer(3); MAX_SHUFFLE_PEERS + 1],
        };
        let reply = H::ShuffleReply {
            origin: id(2),
            peers: vec![v4_peer(3); MAX_SHUFFLE_PEERS + 1],
        };
        for message in [shuffle, reply] {
            let (err, out) = encode_err(W::HyParView(message));
            assert_eq!(
                err,
                EncodeError::OverLimit {
                    what: "shuffle peers",
                    value: 17,
                    max: 16
                }
            );
            assert_eq!(out, [1, 2, 3], "out is untouched");
        }
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
            message: W::HyParView(H::Shuffle {
                origin: peer(0),
                ttl: u8::MAX,
                peers: peers.clone(),
            }),
        };
        let reply = Datagram {
            from: id(0xaa),
            message: W::HyParView(H::ShuffleReply {
                origin: id(0),
                peers,
            }),
        };
        for (datagram, len) in [
            (shuffle, HEADER_BYTES + 70 + 2 + MAX_SHUFFLE_PEERS * 70),
            (reply, HEADER_BYTES + 32 + 1 + MAX_SHUFFLE_PEERS * 70),
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
                let relayed = Datagram {
                    from: id(1),
                    message: W::Nat(frame),
                };
                let outer = encoded(&relayed);
                assert!(outer.len() <= MAX_DATAGRAM_BYTES);
                let Ok(Datagram {
                    message:
                        W::Nat(N::RelayTo { data: inner, .. } | N::RelayFrom { data: inner, .. }),
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
    fn forward_join_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: W::HyParView(H::ForwardJoin {
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

    #[test]
    fn peer_with_relay_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: W::HyParView(H::ForwardJoin {
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
            message: W::HyParView(H::ShuffleReply {
                origin: id(0xdd),
                peers: vec![Peer::new(id(0xcc), sa("[2001:db8::1]:443"))],
            }),
        };
        let mut expected = vec![0x01, 0x08];
        expected.extend([0xaa; 32]);
        expected.extend([0xdd; 32]);
        expected.push(1);
        expected.extend([0xcc; 32]);
        expected.push(6);
        expected.extend(V6_DB8_1);
        expected.extend([0x01, 0xbb]);
        assert_eq!(encoded(&datagram), expected);
        assert_eq!(decode(&expected), Ok(datagram));
    }

    #[test]
    fn decode_errors_say_what_and_where() {
        let invalid = |what, offset| Err(DecodeError::Invalid { what, offset });
        let truncated = |what, offset| Err(DecodeError::Truncated { what, offset });
        assert_eq!(decode_body(tag::NEIGHBOR, &[2]), invalid("priority", 34));
        assert_eq!(
            decode_body(tag::NEIGHBOR_REPLY, &[2]),
            invalid("accepted", 34)
        );
        assert_eq!(decode_body(tag::DISCONNECT, &[0xff]), invalid("alive", 34));
        for family in [5, 0x85, 0x44, 0x46, 0xc4, 0x80, 0] {
            let mut joiner = vec![0; 32];
            joiner.push(family);
            joiner.extend([10, 0, 0, 1, 0, 1, 1]);
            assert_eq!(
                decode_body(tag::FORWARD_JOIN, &joiner),
                invalid("address family", 66),
                "{family:#04x}"
            );
        }
        let reply = |count: u8| {
            let mut body = vec![0xdd; 32];
            body.push(count);
            body
        };
        assert_eq!(
            decode_body(tag::SHUFFLE_REPLY, &reply(17)),
            Err(DecodeError::OverLimit {
                what: "shuffle peers",
                value: 17,
                max: 16
            })
        );
        assert_eq!(
            decode_body(tag::SHUFFLE_REPLY, &reply(16)),
            truncated("shuffle peers", 67)
        );
        assert_eq!(
            decode_body(tag::SHUFFLE_REPLY, &[0xdd; 31]),
            truncated("shuffle origin", 34)
        );
    }
}
