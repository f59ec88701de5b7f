//! Plumtree's messages and their encoding (tags `0x10..=0x14`, framing in
//! [`crate::wire`]); flooding uses `Gossip` alone.
//!
//! | tag    | message  | body                                                  |
//! |-------:|----------|-------------------------------------------------------|
//! | `0x10` | `Gossip` | `id`: 32 bytes, `hops`: u16, `origin`: 32 bytes,      |
//! |        |          | template flag: u8 (0 or 1), [`template`: 32 bytes],   |
//! |        |          | length: u16, payload bytes                            |
//! | `0x11` | `IHave`  | count: u8, count x (`id`: 32 bytes, `hops`: u16)      |
//! | `0x12` | `Graft`  | `id`: 32 bytes                                        |
//! | `0x13` | `Prune`  | `origin`: 32 bytes                                    |
//! | `0x14` | `Link`   | `origin`: 32 bytes                                    |
//!
//! `origin` names the tree a message travels (one per origin); `template`
//! is the tree a node without one for `origin` starts from (see the core's
//! module doc). A template flag other than 0 or 1 is a decoding error.
//!
//! Limits: IHAVE carries at most [`MAX_IHAVE_ENTRIES`] (32) entries; a
//! GOSSIP payload is at most [`MAX_PAYLOAD_BYTES`] (1024) bytes. A GOSSIP
//! or IHAVE within its limits always fits one datagram, and a GOSSIP a
//! relay frame. Observers read a GOSSIP's id at offset 34 without decoding
//! it ([`crate::wire::gossip_id`]).

use bytes::Bytes;

use crate::PeerId;

use crate::wire::tag::plumtree as tag;
use crate::wire::{
    within, Codec, DecodeError, EncodeError, Reader, HEADER_BYTES, MAX_DATAGRAM_BYTES,
    MAX_RELAYED_BYTES,
};

/// A broadcast message id: 32 bytes (SHA-256 of origin, sequence, payload).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MsgId(pub [u8; 32]);

impl MsgId {
    /// The first 6 bytes as a number: what a traffic label carries of the
    /// id (collisions are negligible among a run's broadcasts).
    #[must_use]
    pub fn prefix(&self) -> u64 {
        crate::wire::id_prefix(&self.0)
    }
}

/// Largest broadcast payload accepted, in bytes (fits one datagram).
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Upper bound on the entries of one IHAVE on the wire.
pub const MAX_IHAVE_ENTRIES: usize = 32;

/// Size of one IHAVE entry.
const IHAVE_ENTRY_BYTES: usize = 32 + 2;

// A GOSSIP at its cap fits a relay frame.
/// GOSSIP bytes besides the payload: id, hops, origin, template flag and
/// template, length.
const GOSSIP_OVERHEAD: usize = 32 + 2 + 32 + 1 + 32 + 2;

const _: () = assert!(HEADER_BYTES + GOSSIP_OVERHEAD + MAX_PAYLOAD_BYTES <= MAX_RELAYED_BYTES);
// Counts travel as u8, payload lengths as u16.
const _: () = assert!(MAX_IHAVE_ENTRIES <= u8::MAX as usize);
const _: () = assert!(MAX_PAYLOAD_BYTES <= u16::MAX as usize);
// A GOSSIP or IHAVE within its own limits always fits a datagram.
const _: () = assert!(HEADER_BYTES + GOSSIP_OVERHEAD + MAX_PAYLOAD_BYTES <= MAX_DATAGRAM_BYTES);
const _: () =
    assert!(HEADER_BYTES + 1 + MAX_IHAVE_ENTRIES * IHAVE_ENTRY_BYTES <= MAX_DATAGRAM_BYTES);

/// Broadcast wire messages (shared with [`crate::proto::flood`], which only
/// uses `Gossip`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// The payload; `hops` is 1 when sent by the origin. It travels
    /// `origin`'s tree; a node without that tree starts it from
    /// `template`'s.
    Gossip {
        id: MsgId,
        hops: u16,
        origin: PeerId,
        template: Option<PeerId>,
        payload: Bytes,
    },
    /// Lazy announcement of payloads the sender has: (id, hops).
    IHave { entries: Vec<(MsgId, u16)> },
    /// Ask for `id` and make the link eager in the tree of its origin.
    Graft { id: MsgId },
    /// Make the link lazy in `origin`'s tree.
    Prune { origin: PeerId },
    /// Make the link eager in `origin`'s tree, without a payload (the
    /// paper's `GRAFT(null)` of its §3.8 optimisation).
    Link { origin: PeerId },
}

impl Codec for Message {
    fn tag(&self) -> u8 {
        match self {
            Message::Gossip { .. } => tag::GOSSIP,
            Message::IHave { .. } => tag::IHAVE,
            Message::Graft { .. } => tag::GRAFT,
            Message::Prune { .. } => tag::PRUNE,
            Message::Link { .. } => tag::LINK,
        }
    }

    fn check_limits(&self) -> Result<(), EncodeError> {
        match self {
            Message::IHave { entries } => within("IHAVE entries", entries.len(), MAX_IHAVE_ENTRIES),
            Message::Gossip { payload, .. } => {
                within("payload bytes", payload.len(), MAX_PAYLOAD_BYTES)
            }
            Message::Graft { .. } | Message::Prune { .. } | Message::Link { .. } => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Gossip {
                id,
                hops,
                origin,
                template,
                payload,
            } => {
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&hops.to_be_bytes());
                out.extend_from_slice(origin.as_bytes());
                match template {
                    Some(t) => {
                        out.push(1);
                        out.extend_from_slice(t.as_bytes());
                    }
                    None => out.push(0),
                }
                let len = u16::try_from(payload.len()).expect("payload length checked");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Message::IHave { entries } => {
                out.push(u8::try_from(entries.len()).expect("IHAVE count checked"));
                for (id, hops) in entries {
                    out.extend_from_slice(&id.0);
                    out.extend_from_slice(&hops.to_be_bytes());
                }
            }
            Message::Graft { id } => out.extend_from_slice(&id.0),
            Message::Prune { origin } | Message::Link { origin } => {
                out.extend_from_slice(origin.as_bytes());
            }
        }
    }

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match tag {
            tag::GOSSIP => {
                let id = MsgId(r.array("message id")?);
                let hops = r.u16("hops")?;
                let origin = PeerId(r.array("origin")?);
                let template = if r.bool("template flag")? {
                    Some(PeerId(r.array("template")?))
                } else {
                    None
                };
                let len = usize::from(r.u16("payload length")?);
                if len > MAX_PAYLOAD_BYTES {
                    return Err(DecodeError::OverLimit {
                        what: "payload bytes",
                        value: len,
                        max: MAX_PAYLOAD_BYTES,
                    });
                }
                let payload = Bytes::copy_from_slice(r.take(len, "payload")?);
                Message::Gossip {
                    id,
                    hops,
                    origin,
                    template,
                    payload,
                }
            }
            tag::IHAVE => {
                let count = r.count("IHAVE entries", MAX_IHAVE_ENTRIES, IHAVE_ENTRY_BYTES)?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = MsgId(r.array("IHAVE id")?);
                    entries.push((id, r.u16("IHAVE hops")?));
                }
                Message::IHave { entries }
            }
            tag::GRAFT => Message::Graft {
                id: MsgId(r.array("message id")?),
            },
            tag::PRUNE => Message::Prune {
                origin: PeerId(r.array("origin")?),
            },
            tag::LINK => Message::Link {
                origin: PeerId(r.array("origin")?),
            },
            _ => return Err(DecodeError::UnknownTag { tag, offset: 1 }),
        })
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::message::testing::payload;

    fn msg_id() -> impl Strategy<Value = MsgId> {
        any::<[u8; 32]>().prop_map(MsgId)
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                msg_id(),
                any::<u16>(),
                any::<[u8; 32]>(),
                proptest::option::of(any::<[u8; 32]>()),
                payload(MAX_PAYLOAD_BYTES)
            )
                .prop_map(|(id, hops, origin, template, payload)| Message::Gossip {
                    id,
                    hops,
                    origin: PeerId(origin),
                    template: template.map(PeerId),
                    payload
                }),
            vec((msg_id(), any::<u16>()), 0..=MAX_IHAVE_ENTRIES)
                .prop_map(|entries| Message::IHave { entries }),
            msg_id().prop_map(|id| Message::Graft { id }),
            any::<[u8; 32]>().prop_map(|o| Message::Prune { origin: PeerId(o) }),
            any::<[u8; 32]>().prop_map(|o| Message::Link { origin: PeerId(o) }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::testing::*;
    use crate::message::{decode, Datagram, Message as W};
    use crate::wire::{classify, gossip_id, Class};
    use Message as P;

    #[test]
    fn encode_rejects_over_limit_fields() {
        let ihave = P::IHave {
            entries: vec![(MsgId([4; 32]), 1); MAX_IHAVE_ENTRIES + 1],
        };
        let gossip = P::Gossip {
            id: MsgId([5; 32]),
            hops: 1,
            origin: PeerId([6; 32]),
            template: None,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_BYTES + 1]),
        };
        let cases = [
            (ihave, "IHAVE entries", 33, 32),
            (gossip, "payload bytes", 1025, 1024),
        ];
        for (message, what, value, max) in cases {
            let (err, out) = encode_err(W::Plumtree(message));
            assert_eq!(err, EncodeError::OverLimit { what, value, max });
            assert_eq!(out, [1, 2, 3], "out is untouched");
        }
    }

    #[test]
    fn largest_messages_fit() {
        let gossip = Datagram {
            from: id(1),
            message: W::Plumtree(P::Gossip {
                id: MsgId([2; 32]),
                hops: u16::MAX,
                origin: PeerId([3; 32]),
                template: Some(PeerId([4; 32])),
                payload: Bytes::from(vec![7; MAX_PAYLOAD_BYTES]),
            }),
        };
        assert_eq!(decode(&encoded(&gossip)), Ok(gossip));
        let ihave = Datagram {
            from: id(1),
            message: W::Plumtree(P::IHave {
                entries: vec![(MsgId([3; 32]), 9); MAX_IHAVE_ENTRIES],
            }),
        };
        assert_eq!(decode(&encoded(&ihave)), Ok(ihave));
    }

    #[test]
    fn gossip_layout() {
        let datagram = Datagram {
            from: id(0xaa),
            message: W::Plumtree(P::Gossip {
                id: MsgId([0x11; 32]),
                hops: 0x0102,
                origin: PeerId([0x22; 32]),
                template: Some(PeerId([0x33; 32])),
                payload: Bytes::from_static(b"hi"),
            }),
        };
        let mut expected = vec![0x01, 0x10];
        expected.extend([0xaa; 32]);
        expected.extend([0x11; 32]);
        expected.extend([0x01, 0x02]);
        expected.extend([0x22; 32]);
        expected.push(1);
        expected.extend([0x33; 32]);
        expected.extend([0x00, 0x02, b'h', b'i']);
        assert_eq!(encoded(&datagram), expected);
        assert_eq!(decode(&expected), Ok(datagram));
        assert_eq!(classify(&expected), Some(Class::Payload));
        assert_eq!(gossip_id(&expected), Some([0x11; 32]));
    }

    #[test]
    fn prune_and_link_name_the_origin_and_a_template_flag_is_0_or_1() {
        for (message, tag) in [
            (
                P::Prune {
                    origin: PeerId([7; 32]),
                },
                0x13,
            ),
            (
                P::Link {
                    origin: PeerId([7; 32]),
                },
                0x14,
            ),
        ] {
            let datagram = Datagram {
                from: id(1),
                message: W::Plumtree(message),
            };
            let bytes = encoded(&datagram);
            assert_eq!(bytes[1], tag);
            assert_eq!(bytes[34..], [7; 32]);
            assert_eq!(decode(&bytes), Ok(datagram));
        }
        let mut gossip = vec![0; 34];
        gossip.extend([0; 32]);
        gossip.push(2);
        assert_eq!(
            decode_body(tag::GOSSIP, &gossip),
            Err(DecodeError::Invalid {
                what: "template flag",
                offset: 100
            })
        );
    }

    #[test]
    fn decode_errors_say_what_and_where() {
        assert_eq!(
            decode_body(tag::IHAVE, &[33]),
            Err(DecodeError::OverLimit {
                what: "IHAVE entries",
                value: 33,
                max: 32
            })
        );
        let mut gossip = vec![0; 34 + 32 + 1];
        gossip.extend(1025u16.to_be_bytes());
        assert_eq!(
            decode_body(tag::GOSSIP, &gossip),
            Err(DecodeError::OverLimit {
                what: "payload bytes",
                value: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn a_message_id_prefix_is_what_a_label_carries() {
        let mut id = [0; 32];
        id[..7].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(MsgId(id).prefix(), 0x0102_0304_0506);
    }
}
