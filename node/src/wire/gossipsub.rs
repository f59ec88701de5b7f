//! GossipSub bodies (tags `0x40..=0x46` of the range reserved for it).
//!
//! | tag    | message         | body                                                                 |
//! |-------:|-----------------|----------------------------------------------------------------------|
//! | `0x40` | `Subscriptions` | count: u8, count x (`subscribe`: bool, topic)                        |
//! | `0x41` | `Publish`       | `from`: id, `seqno`: u64, topic, length: u16, data, `signature`: 64 bytes |
//! | `0x42` | `IHave`         | topic, count: u8, count x id (32 bytes)                              |
//! | `0x43` | `IWant`         | count: u8, count x id                                                |
//! | `0x44` | `Graft`         | topic                                                                |
//! | `0x45` | `Prune`         | topic, `backoff_s`: u16, count: u8, count x peer                     |
//! | `0x46` | `IDontWant`     | count: u8, count x id                                                |
//!
//! A topic is a u8 length, 1 to [`MAX_TOPIC_BYTES`] (64), and that many
//! bytes of UTF-8; length 0 or bytes that are not UTF-8 are
//! [`DecodeError::Invalid`]. Limits: [`MAX_SUBSCRIPTIONS`] (16)
//! announcements, [`MAX_DATA_BYTES`] (1024) data bytes, [`MAX_IDS`] (32)
//! ids, [`MAX_PX_PEERS`] (16) peers. Every message within its limits fits
//! one datagram and a relay frame: the largest, a PUBLISH at its caps, is
//! 34 + 32 + 8 + 65 + 2 + 1024 + 64 = 1229 bytes; a PRUNE with 16 IPv6
//! peers with relays 34 + 65 + 3 + 16 x 70 = 1222.
//!
//! [`kind`] reads a datagram's GossipSub message kind from its header, for
//! observers that count traffic.

use bytes::Bytes;

use super::{put_peer, DecodeError, EncodeError, Reader, HEADER_BYTES, MAX_RELAYED_BYTES};
use super::{PEER_MAX_BYTES, PEER_V4_BYTES, VERSION};
use crate::proto::gossipsub::{
    Message, MsgId, PubMessage, Topic, MAX_DATA_BYTES, MAX_IDS, MAX_PX_PEERS, MAX_SUBSCRIPTIONS,
    MAX_TOPIC_BYTES,
};
use crate::PeerId;

pub(super) const SUBSCRIPTIONS: u8 = 0x40;
pub(super) const PUBLISH: u8 = 0x41;
pub(super) const IHAVE: u8 = 0x42;
pub(super) const IWANT: u8 = 0x43;
pub(super) const GRAFT: u8 = 0x44;
pub(super) const PRUNE: u8 = 0x45;
pub(super) const IDONTWANT: u8 = 0x46;

const _: () = assert!(PUBLISH >= super::tag::PUBSUB_FIRST && IDONTWANT <= super::tag::PUBSUB_LAST);
const TOPIC_MAX: usize = 1 + MAX_TOPIC_BYTES;
const _: () =
    assert!(HEADER_BYTES + 32 + 8 + TOPIC_MAX + 2 + MAX_DATA_BYTES + 64 <= MAX_RELAYED_BYTES);
const _: () =
    assert!(HEADER_BYTES + TOPIC_MAX + 2 + 1 + MAX_PX_PEERS * PEER_MAX_BYTES <= MAX_RELAYED_BYTES);
const _: () = assert!(HEADER_BYTES + TOPIC_MAX + 1 + MAX_IDS * 32 <= MAX_RELAYED_BYTES);
const _: () = assert!(HEADER_BYTES + 1 + MAX_SUBSCRIPTIONS * (1 + TOPIC_MAX) <= MAX_RELAYED_BYTES);

/// A GossipSub message kind, for traffic accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Subscriptions,
    Publish,
    IHave,
    IWant,
    Graft,
    Prune,
    IDontWant,
}

/// The GossipSub kind of a datagram, from its header (None: not one).
pub fn kind(bytes: &[u8]) -> Option<Kind> {
    if bytes.len() < HEADER_BYTES || bytes[0] != VERSION {
        return None;
    }
    kind_of_tag(bytes[1])
}

/// The GossipSub kind of a message tag (None: not one).
pub fn kind_of_tag(tag: u8) -> Option<Kind> {
    Some(match tag {
        SUBSCRIPTIONS => Kind::Subscriptions,
        PUBLISH => Kind::Publish,
        IHAVE => Kind::IHave,
        IWANT => Kind::IWant,
        GRAFT => Kind::Graft,
        PRUNE => Kind::Prune,
        IDONTWANT => Kind::IDontWant,
        _ => return None,
    })
}

pub(super) fn is_known_tag(tag: u8) -> bool {
    (SUBSCRIPTIONS..=IDONTWANT).contains(&tag)
}

pub(super) fn tag(m: &Message) -> u8 {
    match m {
        Message::Subscriptions { .. } => SUBSCRIPTIONS,
        Message::Publish(_) => PUBLISH,
        Message::IHave { .. } => IHAVE,
        Message::IWant { .. } => IWANT,
        Message::Graft { .. } => GRAFT,
        Message::Prune { .. } => PRUNE,
        Message::IDontWant { .. } => IDONTWANT,
    }
}

/// The per-field caps (topics are capped by [`Topic`] itself).
pub(super) fn check_limits(m: &Message) -> Result<(), EncodeError> {
    let (what, value, max) = match m {
        Message::Subscriptions { entries } => ("subscriptions", entries.len(), MAX_SUBSCRIPTIONS),
        Message::Publish(p) => ("message data bytes", p.data.len(), MAX_DATA_BYTES),
        Message::IHave { ids, .. } | Message::IWant { ids } | Message::IDontWant { ids } => {
            ("message ids", ids.len(), MAX_IDS)
        }
        Message::Prune { peers, .. } => ("PX peers", peers.len(), MAX_PX_PEERS),
        Message::Graft { .. } => return Ok(()),
    };
    if value > max {
        return Err(EncodeError::OverLimit { what, value, max });
    }
    Ok(())
}

/// Write the body; the caps of [`check_limits`] must hold.
pub(super) fn encode(m: &Message, out: &mut Vec<u8>) {
    match m {
        Message::Subscriptions { entries } => {
            out.push(entries.len() as u8);
            for (sub, t) in entries {
                out.push(u8::from(*sub));
                put_topic(out, t);
            }
        }
        Message::Publish(p) => {
            out.extend_from_slice(p.from.as_bytes());
            out.extend_from_slice(&p.seqno.to_be_bytes());
            put_topic(out, &p.topic);
            out.extend_from_slice(&(p.data.len() as u16).to_be_bytes());
            out.extend_from_slice(&p.data);
            out.extend_from_slice(&p.signature);
        }
        Message::IHave { topic, ids } => {
            put_topic(out, topic);
            put_ids(out, ids);
        }
        Message::IWant { ids } | Message::IDontWant { ids } => put_ids(out, ids),
        Message::Graft { topic } => put_topic(out, topic),
        Message::Prune {
            topic,
            backoff_s,
            peers,
        } => {
            put_topic(out, topic);
            out.extend_from_slice(&backoff_s.to_be_bytes());
            out.push(peers.len() as u8);
            for p in peers {
                put_peer(out, p);
            }
        }
    }
}

fn put_topic(out: &mut Vec<u8>, t: &Topic) {
    out.push(t.as_str().len() as u8);
    out.extend_from_slice(t.as_str().as_bytes());
}

fn put_ids(out: &mut Vec<u8>, ids: &[MsgId]) {
    out.push(ids.len() as u8);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
}

pub(super) fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    Ok(match tag {
        SUBSCRIPTIONS => {
            let count = r.count("subscriptions", MAX_SUBSCRIPTIONS, 3)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let sub = r.bool("subscribe")?;
                entries.push((sub, topic(r)?));
            }
            Message::Subscriptions { entries }
        }
        PUBLISH => {
            let from = PeerId(r.array("publisher id")?);
            let seqno = r.u64("seqno")?;
            let topic = topic(r)?;
            let len = usize::from(r.u16("data length")?);
            if len > MAX_DATA_BYTES {
                return Err(DecodeError::OverLimit {
                    what: "message data bytes",
                    value: len,
                    max: MAX_DATA_BYTES,
                });
            }
            let data = Bytes::copy_from_slice(r.take(len, "message data")?);
            let signature = r.array("signature")?;
            Message::Publish(Box::new(PubMessage {
                from,
                seqno,
                topic,
                data,
                signature,
            }))
        }
        IHAVE => {
            let topic = topic(r)?;
            Message::IHave {
                topic,
                ids: ids(r)?,
            }
        }
        IWANT => Message::IWant { ids: ids(r)? },
        IDONTWANT => Message::IDontWant { ids: ids(r)? },
        GRAFT => Message::Graft { topic: topic(r)? },
        PRUNE => {
            let topic = topic(r)?;
            let backoff_s = r.u16("backoff")?;
            let count = r.count("PX peers", MAX_PX_PEERS, PEER_V4_BYTES)?;
            let mut peers = Vec::with_capacity(count);
            for _ in 0..count {
                peers.push(r.peer("PX peer")?);
            }
            Message::Prune {
                topic,
                backoff_s,
                peers,
            }
        }
        _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
    })
}

fn topic(r: &mut Reader<'_>) -> Result<Topic, DecodeError> {
    let offset = r.offset();
    let len = usize::from(r.u8("topic length")?);
    if len > MAX_TOPIC_BYTES {
        return Err(DecodeError::OverLimit {
            what: "topic bytes",
            value: len,
            max: MAX_TOPIC_BYTES,
        });
    }
    let bytes = r.take(len, "topic")?;
    std::str::from_utf8(bytes)
        .ok()
        .and_then(Topic::parse)
        .ok_or(DecodeError::Invalid {
            what: "topic",
            offset,
        })
}

fn ids(r: &mut Reader<'_>) -> Result<Vec<MsgId>, DecodeError> {
    let count = r.count("message ids", MAX_IDS, 32)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(MsgId(r.array("message id")?));
    }
    Ok(ids)
}

#[cfg(test)]
pub(super) mod strategies {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    pub fn topic() -> impl Strategy<Value = Topic> {
        prop_oneof![
            "[a-z/]{1,20}".prop_map(|s| Topic::new(&s)),
            Just(Topic::new(&"t".repeat(MAX_TOPIC_BYTES))),
            Just(Topic::new("é-topic")),
        ]
    }

    fn ids(max: usize) -> impl Strategy<Value = Vec<MsgId>> {
        vec(any::<[u8; 32]>().prop_map(MsgId), 0..=max)
    }

    pub fn message(
        peer: impl Strategy<Value = crate::Peer> + 'static,
    ) -> impl Strategy<Value = Message> {
        let publish = (
            any::<[u8; 32]>(),
            any::<u64>(),
            topic(),
            vec(any::<u8>(), 0..=MAX_DATA_BYTES),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
        )
            .prop_map(|(from, seqno, topic, data, s1, s2)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&s1);
                signature[32..].copy_from_slice(&s2);
                Message::Publish(Box::new(PubMessage {
                    from: PeerId(from),
                    seqno,
                    topic,
                    data: Bytes::from(data),
                    signature,
                }))
            });
        prop_oneof![
            vec((any::<bool>(), topic()), 0..=MAX_SUBSCRIPTIONS)
                .prop_map(|entries| Message::Subscriptions { entries }),
            publish,
            (topic(), ids(MAX_IDS)).prop_map(|(topic, ids)| Message::IHave { topic, ids }),
            ids(MAX_IDS).prop_map(|ids| Message::IWant { ids }),
            ids(MAX_IDS).prop_map(|ids| Message::IDontWant { ids }),
            topic().prop_map(|topic| Message::Graft { topic }),
            (topic(), any::<u16>(), vec(peer, 0..=MAX_PX_PEERS)).prop_map(
                |(topic, backoff_s, peers)| Message::Prune {
                    topic,
                    backoff_s,
                    peers
                }
            ),
        ]
    }
}
