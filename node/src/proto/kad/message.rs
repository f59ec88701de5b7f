//! The DHT's messages and their encoding (tags `0x50..=0x5a`, inside the
//! range reserved for Kademlia; framing in [`crate::wire`]). Same rules as
//! every codec: canonical, bounded, and decoding never panics.
//!
//! | tag    | message        | body                                                             |
//! |-------:|----------------|------------------------------------------------------------------|
//! | `0x50` | `Ping`         | `id`: u64, `server`: bool                                        |
//! | `0x51` | `Pong`         | `id`: u64, `server`: bool                                        |
//! | `0x52` | `FindNode`     | `id`: u64, `server`: bool, `target`: 32 bytes                    |
//! | `0x53` | `Nodes`        | `id`: u64, count: u8 (<= 20), count x dht peer                   |
//! | `0x54` | `GetProviders` | `id`: u64, `server`: bool, `key`: 32 bytes                       |
//! | `0x55` | `Providers`    | `id`: u64, count: u8 (<= 5), count x dht peer, count: u8 (<= 20), count x dht peer |
//! | `0x56` | `AddProvider`  | `server`: bool, count: u8 (<= 40), count x key (32 bytes)        |
//! | `0x57` | `PutValue`     | `id`: u64, `server`: bool, record                                |
//! | `0x58` | `PutValueAck`  | `id`: u64, `stored`: bool                                        |
//! | `0x59` | `GetValue`     | `id`: u64, `server`: bool, `key`: 32 bytes                       |
//! | `0x5a` | `Value`        | `id`: u64, `found`: bool, record when found, count: u8 (<= 20), count x dht peer |
//!
//! A dht peer is a 32-byte id and an address (never flagged: DHT servers
//! are publicly reachable and have no relay; a relay is not carried). A
//! record is `key` (32 bytes), `seq` (u64), `publisher` (32-byte id),
//! `signature` (64 bytes), length (u16, <= 192) and the value bytes.
//! Worst case, a `Value` with a 192-byte value and 20 IPv6 peers, is
//! 34 + 9 + 138 + 192 + 1 + 20 x 51 = 1394 bytes.

use bytes::Bytes;

use super::{Key, Record, MAX_BATCH_KEYS, MAX_PEERS, MAX_PROVIDERS, MAX_VALUE_BYTES};
use crate::wire::tag::dht as tag;
use crate::wire::{
    put_addr, Codec, DecodeError, EncodeError, Reader, HEADER_BYTES, MAX_DATAGRAM_BYTES,
};
use crate::{Peer, PeerId};

/// Smallest dht peer (IPv4).
const DHT_PEER_MIN_BYTES: usize = 32 + 7;
/// Largest dht peer (IPv6).
const DHT_PEER_MAX_BYTES: usize = 32 + 19;
const RECORD_FIXED_BYTES: usize = 32 + 8 + 32 + 64 + 2;

// The largest messages fit a datagram.
const _: () = assert!(
    HEADER_BYTES + 8 + 2 + (MAX_PROVIDERS + MAX_PEERS) * DHT_PEER_MAX_BYTES <= MAX_DATAGRAM_BYTES
);
const _: () = assert!(HEADER_BYTES + 2 + MAX_BATCH_KEYS * 32 <= MAX_DATAGRAM_BYTES);
const _: () = assert!(
    HEADER_BYTES + 9 + RECORD_FIXED_BYTES + MAX_VALUE_BYTES + 1 + MAX_PEERS * DHT_PEER_MAX_BYTES
        <= MAX_DATAGRAM_BYTES
);

/// DHT wire messages (tags `0x50..=0x5a`, layouts above). `id` is the
/// requester's random request id, echoed by the response; `server` says
/// whether the requester is a DHT server.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    Ping {
        id: u64,
        server: bool,
    },
    Pong {
        id: u64,
        server: bool,
    },
    FindNode {
        id: u64,
        server: bool,
        target: Key,
    },
    Nodes {
        id: u64,
        peers: Vec<Peer>,
    },
    GetProviders {
        id: u64,
        server: bool,
        key: Key,
    },
    Providers {
        id: u64,
        providers: Vec<Peer>,
        closer: Vec<Peer>,
    },
    AddProvider {
        server: bool,
        keys: Vec<Key>,
    },
    PutValue {
        id: u64,
        server: bool,
        record: Box<Record>,
    },
    PutValueAck {
        id: u64,
        stored: bool,
    },
    GetValue {
        id: u64,
        server: bool,
        key: Key,
    },
    Value {
        id: u64,
        record: Option<Box<Record>>,
        closer: Vec<Peer>,
    },
}

impl Message {
    /// The node records this message carries (NODES' peers, PROVIDERS'
    /// providers and closer peers, VALUE's closer peers): what the node
    /// hands the transport's address book, so that the ids the core sends
    /// to can be reached.
    pub fn peer_records(&self) -> impl Iterator<Item = &Peer> {
        let (a, b): (&[Peer], &[Peer]) = match self {
            Message::Nodes { peers, .. } => (peers, &[]),
            Message::Providers {
                providers, closer, ..
            } => (providers, closer),
            Message::Value { closer, .. } => (closer, &[]),
            _ => (&[], &[]),
        };
        a.iter().chain(b)
    }
}

impl Codec for Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Ping { .. } => tag::PING,
            Message::Pong { .. } => tag::PONG,
            Message::FindNode { .. } => tag::FIND_NODE,
            Message::Nodes { .. } => tag::NODES,
            Message::GetProviders { .. } => tag::GET_PROVIDERS,
            Message::Providers { .. } => tag::PROVIDERS,
            Message::AddProvider { .. } => tag::ADD_PROVIDER,
            Message::PutValue { .. } => tag::PUT_VALUE,
            Message::PutValueAck { .. } => tag::PUT_VALUE_ACK,
            Message::GetValue { .. } => tag::GET_VALUE,
            Message::Value { .. } => tag::VALUE,
        }
    }

    fn check_limits(&self) -> Result<(), EncodeError> {
        let over = |what, value: usize, max| {
            if value > max {
                Err(EncodeError::OverLimit { what, value, max })
            } else {
                Ok(())
            }
        };
        match self {
            Message::Nodes { peers, .. } => over("dht peers", peers.len(), MAX_PEERS),
            Message::Providers {
                providers, closer, ..
            } => {
                over("dht providers", providers.len(), MAX_PROVIDERS)?;
                over("dht peers", closer.len(), MAX_PEERS)
            }
            Message::AddProvider { keys, .. } => over("provided keys", keys.len(), MAX_BATCH_KEYS),
            Message::PutValue { record, .. } => {
                over("value bytes", record.value.len(), MAX_VALUE_BYTES)
            }
            Message::Value { record, closer, .. } => {
                if let Some(r) = record {
                    over("value bytes", r.value.len(), MAX_VALUE_BYTES)?;
                }
                over("dht peers", closer.len(), MAX_PEERS)
            }
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Ping { id, server } | Message::Pong { id, server } => {
                put_head(out, *id, *server)
            }
            Message::FindNode { id, server, target } => {
                put_head(out, *id, *server);
                out.extend_from_slice(&target.0);
            }
            Message::GetProviders { id, server, key } | Message::GetValue { id, server, key } => {
                put_head(out, *id, *server);
                out.extend_from_slice(&key.0);
            }
            Message::Nodes { id, peers } => {
                out.extend_from_slice(&id.to_be_bytes());
                put_peers(out, peers);
            }
            Message::Providers {
                id,
                providers,
                closer,
            } => {
                out.extend_from_slice(&id.to_be_bytes());
                put_peers(out, providers);
                put_peers(out, closer);
            }
            Message::AddProvider { server, keys } => {
                out.push(u8::from(*server));
                out.push(u8::try_from(keys.len()).expect("key count checked"));
                for k in keys {
                    out.extend_from_slice(&k.0);
                }
            }
            Message::PutValue { id, server, record } => {
                put_head(out, *id, *server);
                put_record(out, record);
            }
            Message::PutValueAck { id, stored } => put_head(out, *id, *stored),
            Message::Value { id, record, closer } => {
                put_head(out, *id, record.is_some());
                if let Some(r) = record {
                    put_record(out, r);
                }
                put_peers(out, closer);
            }
        }
    }

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match tag {
            tag::PING => Message::Ping {
                id: r.u64("request id")?,
                server: r.bool("server")?,
            },
            tag::PONG => Message::Pong {
                id: r.u64("request id")?,
                server: r.bool("server")?,
            },
            tag::FIND_NODE => Message::FindNode {
                id: r.u64("request id")?,
                server: r.bool("server")?,
                target: key(r, "target")?,
            },
            tag::NODES => Message::Nodes {
                id: r.u64("request id")?,
                peers: peers(r, "dht peers", MAX_PEERS)?,
            },
            tag::GET_PROVIDERS => Message::GetProviders {
                id: r.u64("request id")?,
                server: r.bool("server")?,
                key: key(r, "key")?,
            },
            tag::PROVIDERS => Message::Providers {
                id: r.u64("request id")?,
                providers: peers(r, "dht providers", MAX_PROVIDERS)?,
                closer: peers(r, "dht peers", MAX_PEERS)?,
            },
            tag::ADD_PROVIDER => {
                let server = r.bool("server")?;
                let count = r.count("provided keys", MAX_BATCH_KEYS, 32)?;
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    keys.push(key(r, "provided key")?);
                }
                Message::AddProvider { server, keys }
            }
            tag::PUT_VALUE => Message::PutValue {
                id: r.u64("request id")?,
                server: r.bool("server")?,
                record: record(r)?,
            },
            tag::PUT_VALUE_ACK => Message::PutValueAck {
                id: r.u64("request id")?,
                stored: r.bool("stored")?,
            },
            tag::GET_VALUE => Message::GetValue {
                id: r.u64("request id")?,
                server: r.bool("server")?,
                key: key(r, "key")?,
            },
            tag::VALUE => {
                let id = r.u64("request id")?;
                let found = r.bool("found")?;
                let record = if found { Some(record(r)?) } else { None };
                Message::Value {
                    id,
                    record,
                    closer: peers(r, "dht peers", MAX_PEERS)?,
                }
            }
            _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
        })
    }
}

fn put_peers(out: &mut Vec<u8>, peers: &[Peer]) {
    out.push(u8::try_from(peers.len()).expect("dht peer count checked"));
    for p in peers {
        out.extend_from_slice(p.id.as_bytes());
        put_addr(out, &p.addr, false);
    }
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(&r.key.0);
    out.extend_from_slice(&r.seq.to_be_bytes());
    out.extend_from_slice(r.publisher.as_bytes());
    out.extend_from_slice(&r.signature);
    let len = u16::try_from(r.value.len()).expect("value length checked");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&r.value);
}

fn put_head(out: &mut Vec<u8>, id: u64, flag: bool) {
    out.extend_from_slice(&id.to_be_bytes());
    out.push(u8::from(flag));
}

fn peers(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<Vec<Peer>, DecodeError> {
    let count = r.count(what, max, DHT_PEER_MIN_BYTES)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.peer_id("dht peer id")?;
        let addr = r.addr()?;
        out.push(Peer::new(id, addr));
    }
    Ok(out)
}

fn key(r: &mut Reader<'_>, what: &'static str) -> Result<Key, DecodeError> {
    Ok(Key(r.array(what)?))
}

fn record(r: &mut Reader<'_>) -> Result<Box<Record>, DecodeError> {
    let key = key(r, "record key")?;
    let seq = r.u64("record seq")?;
    let publisher = PeerId(r.array("record publisher")?);
    let signature = r.array::<64>("record signature")?;
    let len = usize::from(r.u16("value length")?);
    if len > MAX_VALUE_BYTES {
        return Err(DecodeError::OverLimit {
            what: "value bytes",
            value: len,
            max: MAX_VALUE_BYTES,
        });
    }
    let value = Bytes::copy_from_slice(r.take(len, "value")?);
    Ok(Box::new(Record {
        key,
        seq,
        publisher,
        value,
        signature,
    }))
}

#[cfg(test)]
pub(crate) mod strategy {
    //! Proptest strategies for the codec's property tests.
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::strategy::addr;

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key)
    }

    fn peers(max: usize) -> impl Strategy<Value = Vec<Peer>> {
        vec(
            (any::<[u8; 32]>(), addr()).prop_map(|(id, a)| Peer::new(PeerId(id), a)),
            0..=max,
        )
    }

    fn record() -> impl Strategy<Value = Box<Record>> {
        (
            key(),
            any::<u64>(),
            any::<[u8; 32]>(),
            vec(any::<u8>(), 64..=64),
            vec(any::<u8>(), 0..=MAX_VALUE_BYTES),
        )
            .prop_map(|(key, seq, publisher, sig, value)| {
                Box::new(Record {
                    key,
                    seq,
                    publisher: PeerId(publisher),
                    value: Bytes::from(value),
                    signature: sig.try_into().expect("64 bytes"),
                })
            })
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u64>(), any::<bool>()).prop_map(|(id, server)| Message::Ping { id, server }),
            (any::<u64>(), any::<bool>()).prop_map(|(id, server)| Message::Pong { id, server }),
            (any::<u64>(), any::<bool>(), key())
                .prop_map(|(id, server, target)| Message::FindNode { id, server, target }),
            (any::<u64>(), peers(MAX_PEERS)).prop_map(|(id, peers)| Message::Nodes { id, peers }),
            (any::<u64>(), any::<bool>(), key())
                .prop_map(|(id, server, key)| Message::GetProviders { id, server, key }),
            (any::<u64>(), peers(MAX_PROVIDERS), peers(MAX_PEERS)).prop_map(
                |(id, providers, closer)| Message::Providers {
                    id,
                    providers,
                    closer
                }
            ),
            (any::<bool>(), vec(key(), 0..=MAX_BATCH_KEYS))
                .prop_map(|(server, keys)| Message::AddProvider { server, keys }),
            (any::<u64>(), any::<bool>(), record())
                .prop_map(|(id, server, record)| Message::PutValue { id, server, record }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(id, stored)| Message::PutValueAck { id, stored }),
            (any::<u64>(), any::<bool>(), key()).prop_map(|(id, server, key)| Message::GetValue {
                id,
                server,
                key
            }),
            (
                any::<u64>(),
                proptest::option::of(record()),
                peers(MAX_PEERS)
            )
                .prop_map(|(id, record, closer)| Message::Value { id, record, closer }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::message::{self, Datagram, Message as W};

    fn v6_peer(i: u8) -> Peer {
        Peer::new(
            PeerId([i; 32]),
            SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i) + 1], 7000)),
        )
    }

    fn encode(m: Message) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        message::encode(
            &Datagram {
                from: PeerId([9; 32]),
                message: W::Dht(m),
            },
            &mut out,
        )?;
        Ok(out)
    }

    #[test]
    fn largest_dht_messages_fit_and_one_more_is_refused() {
        let record = Box::new(Record {
            key: Key([1; 32]),
            seq: 7,
            publisher: PeerId([2; 32]),
            value: Bytes::from(vec![3; MAX_VALUE_BYTES]),
            signature: [4; 64],
        });
        let peers: Vec<Peer> = (0..MAX_PEERS as u8).map(v6_peer).collect();
        let value = Message::Value {
            id: 1,
            record: Some(record.clone()),
            closer: peers.clone(),
        };
        let bytes = encode(value).unwrap();
        assert_eq!(bytes.len(), 1394);
        assert!(message::decode(&bytes).is_ok());
        let providers = Message::Providers {
            id: 1,
            providers: peers[..MAX_PROVIDERS].to_vec(),
            closer: peers.clone(),
        };
        assert!(encode(providers).unwrap().len() <= MAX_DATAGRAM_BYTES);
        let mut more = peers.clone();
        more.push(v6_peer(99));
        assert!(matches!(
            encode(Message::Nodes { id: 1, peers: more }),
            Err(EncodeError::OverLimit {
                what: "dht peers",
                ..
            })
        ));
        let keys = vec![Key([0; 32]); MAX_BATCH_KEYS + 1];
        assert!(matches!(
            encode(Message::AddProvider { server: true, keys }),
            Err(EncodeError::OverLimit {
                what: "provided keys",
                ..
            })
        ));
        let mut big = record;
        big.value = Bytes::from(vec![0; MAX_VALUE_BYTES + 1]);
        assert!(encode(Message::PutValue {
            id: 1,
            server: true,
            record: big
        })
        .is_err());
    }

    #[test]
    fn over_cap_counts_and_flagged_addresses_are_refused_by_decode() {
        let bytes = encode(Message::Nodes {
            id: 5,
            peers: vec![v6_peer(1)],
        })
        .unwrap();
        let mut over = bytes.clone();
        over[34 + 8] = (MAX_PEERS + 1) as u8;
        assert!(matches!(
            message::decode(&over),
            Err(DecodeError::OverLimit {
                what: "dht peers",
                ..
            })
        ));
        // A relay flag on a DHT peer's address.
        let mut flagged = bytes.clone();
        flagged[34 + 8 + 1 + 32] |= 0x80;
        assert!(matches!(
            message::decode(&flagged),
            Err(DecodeError::Invalid {
                what: "address family",
                ..
            })
        ));
        // A value length over the cap.
        let record = Box::new(Record {
            key: Key([1; 32]),
            seq: 7,
            publisher: PeerId([2; 32]),
            value: Bytes::from_static(b"v"),
            signature: [4; 64],
        });
        let mut put = encode(Message::PutValue {
            id: 1,
            server: false,
            record,
        })
        .unwrap();
        let len_at = 34 + 9 + 32 + 8 + 32 + 64;
        put[len_at..len_at + 2].copy_from_slice(&((MAX_VALUE_BYTES + 1) as u16).to_be_bytes());
        assert!(matches!(
            message::decode(&put),
            Err(DecodeError::OverLimit {
                what: "value bytes",
                ..
            })
        ));
    }
}
