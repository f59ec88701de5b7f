//! NAT traversal's messages and their encoding (AutoNAT, Circuit Relay v2,
//! DCUtR; tags `0x20..=0x31`, framing in [`crate::wire`]). An id is a
//! 32-byte [`PeerId`], an address, a status and a reach are as described
//! below:
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
//! `Unknown`, 1 `Private`, 2 `Public`, 3 `PortMapped`. A status or reach
//! code not listed is [`DecodeError::Invalid`].
//!
//! Limits: RELAY-TO and RELAY-FROM `data` is at most [`MAX_RELAYED_BYTES`]
//! (1313) bytes; PUNCH-CONNECT carries at most [`MAX_PUNCH_ADDRS`] (4)
//! addresses; DIAL-RESPONSE names at most [`MAX_DIAL_HELPERS`] (3) helpers.
//! Every message within its limits fits one datagram.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Reach, Status, MAX_DIAL_HELPERS, MAX_PUNCH_ADDRS};
use crate::wire::tag::nat as tag;
use crate::wire::{
    put_addr, within, Codec, DecodeError, EncodeError, Reader, ADDR_V4_BYTES, MAX_RELAYED_BYTES,
};
use crate::PeerId;

/// NAT traversal and relay messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// "I see you at `observed`; reach me through `relay`; my reachability."
    Hello {
        observed: SocketAddr,
        relay: Option<SocketAddr>,
        reach: Reach,
    },
    /// AutoNAT: please have my address dialled back.
    DialRequest {
        nonce: u64,
    },
    /// AutoNAT: how many third peers were asked for a dial-back (0: the
    /// request was declined; at most [`MAX_DIAL_HELPERS`]), and the address
    /// the server sees.
    DialResponse {
        nonce: u64,
        helpers: u8,
        observed: SocketAddr,
    },
    /// AutoNAT, server to helper: send a dial-back to `peer` at `target`
    /// (the id lets the helper open a session with it there).
    DialBackRequest {
        nonce: u64,
        peer: PeerId,
        target: SocketAddr,
    },
    /// AutoNAT, helper to client.
    DialBack {
        nonce: u64,
    },
    /// Relay: reserve (or refresh) a slot.
    Reserve,
    ReserveStatus {
        status: Status,
        ttl_s: u32,
        limit_duration_s: u32,
        limit_bytes: u32,
        observed: SocketAddr,
    },
    /// Relay: open a circuit to `target`.
    Connect {
        target: PeerId,
    },
    ConnectStatus {
        target: PeerId,
        status: Status,
    },
    /// Relay to target: `source` wants a circuit.
    Stop {
        source: PeerId,
        source_addr: SocketAddr,
    },
    StopStatus {
        source: PeerId,
        status: Status,
    },
    /// Client to relay: forward `data` (an encoded datagram) to `target`.
    RelayTo {
        target: PeerId,
        data: Bytes,
    },
    /// Relay to client: `data` from `source`.
    RelayFrom {
        source: PeerId,
        source_addr: SocketAddr,
        data: Bytes,
    },
    /// Relay to client: the circuit with `peer` is gone.
    CircuitClosed {
        peer: PeerId,
        status: Status,
    },
    /// DCUtR CONNECT (and its answer, `reply`).
    PunchConnect {
        attempt: u8,
        reply: bool,
        reach: Reach,
        addrs: Vec<SocketAddr>,
    },
    /// DCUtR SYNC.
    PunchSync {
        attempt: u8,
    },
    /// A direct probe (and its acknowledgement).
    Punch {
        nonce: u64,
        ack: bool,
    },
    /// Keeps NAT mappings open on an idle path.
    KeepAlive,
}

impl Codec for Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Hello { .. } => tag::HELLO,
            Message::DialRequest { .. } => tag::DIAL_REQUEST,
            Message::DialResponse { .. } => tag::DIAL_RESPONSE,
            Message::DialBackRequest { .. } => tag::DIAL_BACK_REQUEST,
            Message::DialBack { .. } => tag::DIAL_BACK,
            Message::Reserve => tag::RESERVE,
            Message::ReserveStatus { .. } => tag::RESERVE_STATUS,
            Message::Connect { .. } => tag::CONNECT,
            Message::ConnectStatus { .. } => tag::CONNECT_STATUS,
            Message::Stop { .. } => tag::STOP,
            Message::StopStatus { .. } => tag::STOP_STATUS,
            Message::RelayTo { .. } => tag::RELAY_TO,
            Message::RelayFrom { .. } => tag::RELAY_FROM,
            Message::CircuitClosed { .. } => tag::CIRCUIT_CLOSED,
            Message::PunchConnect { .. } => tag::PUNCH_CONNECT,
            Message::PunchSync { .. } => tag::PUNCH_SYNC,
            Message::Punch { .. } => tag::PUNCH,
            Message::KeepAlive => tag::KEEP_ALIVE,
        }
    }

    fn check_limits(&self) -> Result<(), EncodeError> {
        match self {
            Message::PunchConnect { addrs, .. } => {
                within("hole-punch addresses", addrs.len(), MAX_PUNCH_ADDRS)
            }
            Message::RelayTo { data, .. } | Message::RelayFrom { data, .. } => {
                within("relayed bytes", data.len(), MAX_RELAYED_BYTES)
            }
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello {
                observed,
                relay,
                reach,
            } => {
                put_addr(out, observed, relay.is_some());
                if let Some(r) = relay {
                    put_addr(out, r, false);
                }
                out.push(reach.code());
            }
            Message::DialRequest { nonce } | Message::DialBack { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::DialResponse {
                nonce,
                helpers,
                observed,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(*helpers);
                put_addr(out, observed, false);
            }
            Message::DialBackRequest {
                nonce,
                peer,
                target,
            } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(peer.as_bytes());
                put_addr(out, target, false);
            }
            Message::Reserve | Message::KeepAlive => {}
            Message::ReserveStatus {
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
            Message::Connect { target } => out.extend_from_slice(target.as_bytes()),
            Message::ConnectStatus {
                target: peer,
                status,
            }
            | Message::StopStatus {
                source: peer,
                status,
            }
            | Message::CircuitClosed { peer, status } => {
                out.extend_from_slice(peer.as_bytes());
                out.extend_from_slice(&status.code().to_be_bytes());
            }
            Message::Stop {
                source,
                source_addr,
            } => {
                out.extend_from_slice(source.as_bytes());
                put_addr(out, source_addr, false);
            }
            Message::RelayTo { target, data } => {
                out.extend_from_slice(target.as_bytes());
                put_data(out, data);
            }
            Message::RelayFrom {
                source,
                source_addr,
                data,
            } => {
                out.extend_from_slice(source.as_bytes());
                put_addr(out, source_addr, false);
                put_data(out, data);
            }
            Message::PunchConnect {
                attempt,
                reply,
                reach,
                addrs,
            } => {
                out.push(*attempt);
                out.push(u8::from(*reply));
                out.push(reach.code());
                out.push(u8::try_from(addrs.len()).expect("address count checked"));
                for a in addrs {
                    put_addr(out, a, false);
                }
            }
            Message::PunchSync { attempt } => out.push(*attempt),
            Message::Punch { nonce, ack } => {
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(u8::from(*ack));
            }
        }
    }

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match tag {
            tag::HELLO => {
                let (observed, relay_follows) = r.addr_flagged(true)?;
                let relay = if relay_follows { Some(r.addr()?) } else { None };
                Message::Hello {
                    observed,
                    relay,
                    reach: reach(r)?,
                }
            }
            tag::DIAL_REQUEST => Message::DialRequest {
                nonce: r.u64("nonce")?,
            },
            tag::DIAL_RESPONSE => Message::DialResponse {
                nonce: r.u64("nonce")?,
                helpers: match r.u8("helpers")? {
                    n if usize::from(n) <= MAX_DIAL_HELPERS => n,
                    n => {
                        return Err(DecodeError::OverLimit {
                            what: "dial-back helpers",
                            value: usize::from(n),
                            max: MAX_DIAL_HELPERS,
                        })
                    }
                },
                observed: r.addr()?,
            },
            tag::DIAL_BACK_REQUEST => Message::DialBackRequest {
                nonce: r.u64("nonce")?,
                peer: PeerId(r.array("peer id")?),
                target: r.addr()?,
            },
            tag::DIAL_BACK => Message::DialBack {
                nonce: r.u64("nonce")?,
            },
            tag::RESERVE => Message::Reserve,
            tag::RESERVE_STATUS => Message::ReserveStatus {
                status: status(r)?,
                ttl_s: r.u32("reservation ttl")?,
                limit_duration_s: r.u32("circuit duration limit")?,
                limit_bytes: r.u32("circuit data limit")?,
                observed: r.addr()?,
            },
            tag::CONNECT => Message::Connect {
                target: r.peer_id("target")?,
            },
            tag::CONNECT_STATUS => Message::ConnectStatus {
                target: r.peer_id("target")?,
                status: status(r)?,
            },
            tag::STOP => Message::Stop {
                source: r.peer_id("source")?,
                source_addr: r.addr()?,
            },
            tag::STOP_STATUS => Message::StopStatus {
                source: r.peer_id("source")?,
                status: status(r)?,
            },
            tag::RELAY_TO => Message::RelayTo {
                target: r.peer_id("target")?,
                data: data(r)?,
            },
            tag::RELAY_FROM => Message::RelayFrom {
                source: r.peer_id("source")?,
                source_addr: r.addr()?,
                data: data(r)?,
            },
            tag::CIRCUIT_CLOSED => Message::CircuitClosed {
                peer: r.peer_id("peer")?,
                status: status(r)?,
            },
            tag::PUNCH_CONNECT => {
                let attempt = r.u8("attempt")?;
                let reply = r.bool("reply")?;
                let reach = reach(r)?;
                let count = r.count("hole-punch addresses", MAX_PUNCH_ADDRS, ADDR_V4_BYTES)?;
                let mut addrs = Vec::with_capacity(count);
                for _ in 0..count {
                    addrs.push(r.addr()?);
                }
                Message::PunchConnect {
                    attempt,
                    reply,
                    reach,
                    addrs,
                }
            }
            tag::PUNCH_SYNC => Message::PunchSync {
                attempt: r.u8("attempt")?,
            },
            tag::PUNCH => Message::Punch {
                nonce: r.u64("nonce")?,
                ack: r.bool("ack")?,
            },
            tag::KEEP_ALIVE => Message::KeepAlive,
            _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
        })
    }
}

fn put_data(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("relayed length checked");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

fn status(r: &mut Reader<'_>) -> Result<Status, DecodeError> {
    let offset = r.offset();
    Status::from_code(r.u16("status")?).ok_or(DecodeError::Invalid {
        what: "status code",
        offset,
    })
}

fn reach(r: &mut Reader<'_>) -> Result<Reach, DecodeError> {
    let offset = r.offset();
    Reach::from_code(r.u8("reachability")?).ok_or(DecodeError::Invalid {
        what: "reachability",
        offset,
    })
}

fn data(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let len = usize::from(r.u16("relayed length")?);
    if len > MAX_RELAYED_BYTES {
        return Err(DecodeError::OverLimit {
            what: "relayed bytes",
            value: len,
            max: MAX_RELAYED_BYTES,
        });
    }
    Ok(Bytes::copy_from_slice(r.take(len, "relayed datagram")?))
}

#[cfg(test)]
pub(crate) mod strategy {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::message::testing::payload;
    use crate::wire::strategy::{addr, peer_id};

    pub(crate) const ALL_STATUSES: [Status; 8] = Status::ALL;

    pub(crate) const ALL_REACHES: [Reach; 4] = [
        Reach::Unknown,
        Reach::Private,
        Reach::Public,
        Reach::PortMapped,
    ];

    fn status() -> impl Strategy<Value = Status> {
        proptest::sample::select(&ALL_STATUSES[..])
    }

    fn reach() -> impl Strategy<Value = Reach> {
        proptest::sample::select(&ALL_REACHES[..])
    }

    /// Relayed data: mostly short, sometimes up to or exactly at the cap.
    fn relayed() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            3 => payload(64),
            1 => payload(MAX_RELAYED_BYTES),
            1 => vec(any::<u8>(), MAX_RELAYED_BYTES).prop_map(Bytes::from),
        ]
    }

    /// Every NAT message, within its limits.
    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (addr(), proptest::option::of(addr()), reach()).prop_map(|(observed, relay, reach)| {
                Message::Hello {
                    observed,
                    relay,
                    reach,
                }
            }),
            any::<u64>().prop_map(|nonce| Message::DialRequest { nonce }),
            (any::<u64>(), 0..=3u8, addr()).prop_map(|(nonce, helpers, observed)| {
                Message::DialResponse {
                    nonce,
                    helpers,
                    observed,
                }
            }),
            (any::<u64>(), any::<[u8; 32]>(), addr()).prop_map(|(nonce, p, target)| {
                Message::DialBackRequest {
                    nonce,
                    peer: PeerId(p),
                    target,
                }
            }),
            any::<u64>().prop_map(|nonce| Message::DialBack { nonce }),
            Just(Message::Reserve),
            (status(), any::<u32>(), any::<u32>(), any::<u32>(), addr()).prop_map(
                |(status, ttl_s, limit_duration_s, limit_bytes, observed)| Message::ReserveStatus {
                    status,
                    ttl_s,
                    limit_duration_s,
                    limit_bytes,
                    observed,
                }
            ),
            peer_id().prop_map(|target| Message::Connect { target }),
            (peer_id(), status())
                .prop_map(|(target, status)| Message::ConnectStatus { target, status }),
            (peer_id(), addr()).prop_map(|(source, source_addr)| Message::Stop {
                source,
                source_addr
            }),
            (peer_id(), status())
                .prop_map(|(source, status)| Message::StopStatus { source, status }),
            (peer_id(), relayed()).prop_map(|(target, data)| Message::RelayTo { target, data }),
            (peer_id(), addr(), relayed()).prop_map(|(source, source_addr, data)| {
                Message::RelayFrom {
                    source,
                    source_addr,
                    data,
                }
            }),
            (peer_id(), status())
                .prop_map(|(peer, status)| Message::CircuitClosed { peer, status }),
            (
                any::<u8>(),
                any::<bool>(),
                reach(),
                vec(addr(), 0..=MAX_PUNCH_ADDRS)
            )
                .prop_map(|(attempt, reply, reach, addrs)| Message::PunchConnect {
                    attempt,
                    reply,
                    reach,
                    addrs,
                }),
            any::<u8>().prop_map(|attempt| Message::PunchSync { attempt }),
            (any::<u64>(), any::<bool>()).prop_map(|(nonce, ack)| Message::Punch { nonce, ack }),
            Just(Message::KeepAlive),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::strategy::{ALL_REACHES, ALL_STATUSES};
    use super::*;
    use crate::message::testing::*;
    use crate::message::{decode, Datagram, Message as W};
    use crate::wire::{classify, gossip_id, Class, MAX_DATAGRAM_BYTES};
    use Message as N;

    fn nat_datagram(message: N) -> Datagram {
        Datagram {
            from: id(1),
            message: W::Nat(message),
        }
    }

    /// One of each NAT message, with relays, IPv6 and limits at their caps
    /// where they apply.
    fn examples() -> Vec<N> {
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
    fn the_tags_are_the_traversal_range() {
        let tags: BTreeSet<u8> = examples().iter().map(Codec::tag).collect();
        assert_eq!(tags, (tag::HELLO..=tag::KEEP_ALIVE).collect());
        assert_eq!((tag::HELLO, tag::KEEP_ALIVE), (0x20, 0x31));
    }

    /// Each NAT message roundtrips, and every prefix and every extension
    /// of it is refused.
    #[test]
    fn every_nat_message_roundtrips_and_is_checked() {
        for message in examples() {
            let datagram = nat_datagram(message);
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
            (relay_to, "relayed bytes", 1314, 1313),
            (relay_from, "relayed bytes", 1314, 1313),
            (punch, "hole-punch addresses", 5, 4),
        ];
        for (message, what, value, max) in cases {
            let (err, out) = encode_err(W::Nat(message));
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
                message: W::Nat(N::PunchConnect {
                    attempt: 1,
                    reply: false,
                    reach: Reach::Private,
                    addrs: vec![sa("10.0.0.7:7"); 4],
                }),
            })
        );
    }

    #[test]
    fn a_relay_from_at_its_cap_fills_a_datagram() {
        // A RELAY-FROM at its cap with an IPv6 source fills a datagram.
        let relay_from = nat_datagram(N::RelayFrom {
            source: id(2),
            source_addr: sa("[2001:db8::2]:2"),
            data: Bytes::from(vec![8; MAX_RELAYED_BYTES]),
        });
        let bytes = encoded(&relay_from);
        assert_eq!(bytes.len(), MAX_DATAGRAM_BYTES);
        assert_eq!(decode(&bytes), Ok(relay_from));
    }

    #[test]
    fn nat_layouts() {
        let with = |message| Datagram {
            from: id(0xaa),
            message: W::Nat(message),
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
        assert_eq!(ALL_REACHES.map(Reach::code), [0, 1, 2, 3]);
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
                            message: W::Nat(N::ConnectStatus {
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

    #[test]
    fn decode_errors_say_what_and_where() {
        let invalid = |what, offset| Err(DecodeError::Invalid { what, offset });
        let truncated = |what, offset| Err(DecodeError::Truncated { what, offset });
        // A flagged address with no relay after it.
        assert_eq!(
            decode_body(tag::HELLO, &[0x84, 10, 0, 0, 1, 0, 1]),
            truncated("address family", 41)
        );
        let mut dial_response = vec![0; 8];
        dial_response.push(4);
        assert_eq!(
            decode_body(tag::DIAL_RESPONSE, &dial_response),
            Err(DecodeError::OverLimit {
                what: "dial-back helpers",
                value: 4,
                max: 3
            })
        );
        let mut punch = vec![0; 8];
        punch.push(2);
        assert_eq!(decode_body(tag::PUNCH, &punch), invalid("ack", 42));
        assert_eq!(
            decode_body(tag::PUNCH_CONNECT, &[1, 2]),
            invalid("reply", 35)
        );
        assert_eq!(
            decode_body(tag::PUNCH_CONNECT, &[1, 0, 0, 4]),
            truncated("hole-punch addresses", 38)
        );
        let mut relay_to = vec![0; 32];
        relay_to.extend([0, 3, 1, 2]);
        assert_eq!(
            decode_body(tag::RELAY_TO, &relay_to),
            truncated("relayed datagram", 68)
        );
    }
}
