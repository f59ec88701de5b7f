//! GossipSub's messages and their encoding (tags `0x40..=0x46` of the
//! range reserved for it, framing in [`crate::wire`]).
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

use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};

use super::MsgId;
use crate::wire::tag::pubsub as tag;
use crate::wire::{put_peer, Codec, DecodeError, EncodeError, Reader, HEADER_BYTES};
use crate::wire::{MAX_RELAYED_BYTES, PEER_MAX_BYTES, PEER_V4_BYTES};
use crate::{Peer, PeerId};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 64;
/// Largest message data, in bytes (a PUBLISH fits one datagram).
pub const MAX_DATA_BYTES: usize = 1024;
/// Most entries in one subscription announcement.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// Most message ids in one IHAVE, IWANT or IDONTWANT.
pub const MAX_IDS: usize = 32;
/// Most peers in one PRUNE's peer exchange.
pub const MAX_PX_PEERS: usize = 16;
const TOPIC_MAX: usize = 1 + MAX_TOPIC_BYTES;
const _: () =
    assert!(HEADER_BYTES + 32 + 8 + TOPIC_MAX + 2 + MAX_DATA_BYTES + 64 <= MAX_RELAYED_BYTES);
const _: () =
    assert!(HEADER_BYTES + TOPIC_MAX + 2 + 1 + MAX_PX_PEERS * PEER_MAX_BYTES <= MAX_RELAYED_BYTES);
const _: () = assert!(HEADER_BYTES + TOPIC_MAX + 1 + MAX_IDS * 32 <= MAX_RELAYED_BYTES);
const _: () = assert!(HEADER_BYTES + 1 + MAX_SUBSCRIPTIONS * (1 + TOPIC_MAX) <= MAX_RELAYED_BYTES);

/// A topic name: 1 to [`MAX_TOPIC_BYTES`] bytes of UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Topic(String);

impl Topic {
    /// A topic from a name known to be valid (a bug otherwise).
    pub fn new(name: &str) -> Topic {
        Topic::parse(name).expect("a topic name of 1 to 64 bytes")
    }
    /// A topic from an untrusted name.
    pub fn parse(name: &str) -> Option<Topic> {
        (!name.is_empty() && name.len() <= MAX_TOPIC_BYTES).then(|| Topic(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A published message, as it travels.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PubMessage {
    /// The publisher.
    pub from: PeerId,
    pub seqno: u64,
    pub topic: Topic,
    pub data: Bytes,
    /// ed25519 signature by `from` over [`signed_bytes`].
    pub signature: [u8; 64],
}

impl PubMessage {
    /// The message id: SHA-256 of publisher and sequence number.
    pub fn id(&self) -> MsgId {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.from.as_bytes());
        h.update(self.seqno.to_be_bytes());
        MsgId(h.finalize().into())
    }

    /// Whether `signature` is `from`'s over the message.
    pub fn verify(&self) -> bool {
        VerifyingKey::from_bytes(self.from.as_bytes()).is_ok_and(|key| self.verify_with(&key))
    }

    pub(super) fn verify_with(&self, key: &VerifyingKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_bytes(self), &sig).is_ok()
    }
}

/// What a publisher signs: a context string, publisher, sequence number,
/// topic (length-prefixed) and data.
pub(super) fn signed_bytes(m: &PubMessage) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + m.topic.0.len() + m.data.len());
    b.extend_from_slice(b"grove-gossipsub/1");
    b.extend_from_slice(m.from.as_bytes());
    b.extend_from_slice(&m.seqno.to_be_bytes());
    b.push(m.topic.0.len() as u8);
    b.extend_from_slice(m.topic.0.as_bytes());
    b.extend_from_slice(&m.data);
    b
}

/// GossipSub wire messages.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Subscribe (`true`) or unsubscribe announcements.
    Subscriptions {
        entries: Vec<(bool, Topic)>,
    },
    Publish(Box<PubMessage>),
    IHave {
        topic: Topic,
        ids: Vec<MsgId>,
    },
    IWant {
        ids: Vec<MsgId>,
    },
    Graft {
        topic: Topic,
    },
    /// Leave the mesh; do not GRAFT back for `backoff_s`; maybe try `peers`.
    Prune {
        topic: Topic,
        backoff_s: u16,
        peers: Vec<Peer>,
    },
    IDontWant {
        ids: Vec<MsgId>,
    },
}

impl Message {
    /// The peer records this message carries (PRUNE's peer exchange): what
    /// the node hands the transport's address book, so that the ids the
    /// core sends to can be reached.
    pub fn peer_records(&self) -> impl Iterator<Item = &Peer> {
        match self {
            Message::Prune { peers, .. } => peers.iter(),
            _ => [].iter(),
        }
    }
}

impl Codec for Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Subscriptions { .. } => tag::SUBSCRIPTIONS,
            Message::Publish(_) => tag::PUBLISH,
            Message::IHave { .. } => tag::IHAVE,
            Message::IWant { .. } => tag::IWANT,
            Message::Graft { .. } => tag::GRAFT,
            Message::Prune { .. } => tag::PRUNE,
            Message::IDontWant { .. } => tag::IDONTWANT,
        }
    }

    /// The per-field caps (topics are capped by [`Topic`] itself).
    fn check_limits(&self) -> Result<(), EncodeError> {
        let (what, value, max) = match self {
            Message::Subscriptions { entries } => {
                ("subscriptions", entries.len(), MAX_SUBSCRIPTIONS)
            }
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

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
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

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match tag {
            tag::SUBSCRIPTIONS => {
                let count = r.count("subscriptions", MAX_SUBSCRIPTIONS, 3)?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let sub = r.bool("subscribe")?;
                    entries.push((sub, topic(r)?));
                }
                Message::Subscriptions { entries }
            }
            tag::PUBLISH => {
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
            tag::IHAVE => {
                let topic = topic(r)?;
                Message::IHave {
                    topic,
                    ids: ids(r)?,
                }
            }
            tag::IWANT => Message::IWant { ids: ids(r)? },
            tag::IDONTWANT => Message::IDontWant { ids: ids(r)? },
            tag::GRAFT => Message::Graft { topic: topic(r)? },
            tag::PRUNE => {
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
pub(crate) mod strategy {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn topic() -> impl Strategy<Value = Topic> {
        prop_oneof![
            "[a-z/]{1,20}".prop_map(|s| Topic::new(&s)),
            Just(Topic::new(&"t".repeat(MAX_TOPIC_BYTES))),
            Just(Topic::new("é-topic")),
        ]
    }

    fn ids(max: usize) -> impl Strategy<Value = Vec<MsgId>> {
        vec(any::<[u8; 32]>().prop_map(MsgId), 0..=max)
    }

    pub(crate) fn message(
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
