//! Knowledge commons messages and their encoding (tags `0x60..=0x63`,
//! framing in [`crate::wire`]): every message is one chunk of a blob (a
//! Loro update, a version vector or a snapshot) for one topic's document.
//!
//! | tag    | message          | blob carried                                             |
//! |-------:|------------------|----------------------------------------------------------|
//! | `0x60` | `Delta`          | a Loro update (only the operations the receiver misses)  |
//! | `0x61` | `Summary`        | the sender's version vector; asks for what it misses and for the receiver's vector back |
//! | `0x62` | `SummaryReply`   | the sender's version vector, in answer to a `Summary`    |
//! | `0x63` | `Snapshot`       | a Loro snapshot, for a peer whose version vector is empty |
//!
//! Body, the same for every tag:
//!
//! | size      | field                                                   |
//! |----------:|---------------------------------------------------------|
//! | 1         | topic length (1..=[`MAX_TOPIC_BYTES`])                   |
//! | length    | topic, UTF-8                                            |
//! | 4         | `blob`: the sender's id for the blob                    |
//! | 2         | `index` of this chunk (< `count`)                       |
//! | 2         | `count` of chunks in the blob (1..=[`MAX_CHUNKS`])      |
//! | 2         | data length (1..=[`MAX_CHUNK_BYTES`])                   |
//! | length    | data                                                    |
//!
//! A blob is at most [`MAX_CHUNKS`] x [`MAX_CHUNK_BYTES`] bytes (300 KB);
//! every chunk but the last is exactly [`MAX_CHUNK_BYTES`] long, so a blob
//! has exactly one chunking. A chunk at its caps (34 + 1 + 32 + 10 + 1200 =
//! 1277 bytes) fits a datagram and a relay frame.

use bytes::Bytes;

use crate::wire::tag::knowledge as tag;
use crate::wire::{
    Codec, DecodeError, EncodeError, Reader, HEADER_BYTES, MAX_DATAGRAM_BYTES, MAX_RELAYED_BYTES,
};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 32;
/// Most data bytes in one chunk.
pub const MAX_CHUNK_BYTES: usize = 1200;
/// Most chunks in one blob.
pub const MAX_CHUNKS: usize = 250;
/// Largest blob, in bytes.
pub const MAX_BLOB_BYTES: usize = MAX_CHUNKS * MAX_CHUNK_BYTES;

const _: () =
    assert!(HEADER_BYTES + 1 + MAX_TOPIC_BYTES + 10 + MAX_CHUNK_BYTES <= MAX_RELAYED_BYTES);
const _: () = assert!(MAX_RELAYED_BYTES <= MAX_DATAGRAM_BYTES);

/// What a blob is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum BlobKind {
    Delta,
    Summary,
    SummaryReply,
    Snapshot,
}

/// One chunk of a blob about one topic's document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Chunk {
    pub kind: BlobKind,
    pub topic: String,
    pub blob: u32,
    pub index: u16,
    pub count: u16,
    pub data: Bytes,
}

impl Chunk {
    /// Cut `blob` into chunks; `None` when it is empty or over
    /// [`MAX_BLOB_BYTES`], or the topic is not a valid topic.
    pub fn split(kind: BlobKind, topic: &str, blob: u32, data: &Bytes) -> Option<Vec<Chunk>> {
        if data.is_empty() || data.len() > MAX_BLOB_BYTES || !valid_topic(topic) {
            return None;
        }
        let count = data.len().div_ceil(MAX_CHUNK_BYTES);
        Some(
            (0..count)
                .map(|i| {
                    let end = ((i + 1) * MAX_CHUNK_BYTES).min(data.len());
                    Chunk {
                        kind,
                        topic: topic.to_owned(),
                        blob,
                        index: i as u16,
                        count: count as u16,
                        data: data.slice(i * MAX_CHUNK_BYTES..end),
                    }
                })
                .collect(),
        )
    }
}

/// A topic name is 1..=32 bytes of UTF-8.
pub fn valid_topic(topic: &str) -> bool {
    (1..=MAX_TOPIC_BYTES).contains(&topic.len())
}

/// `(what, value, max)` of the first cap `chunk` breaks.
fn over_limit(chunk: &Chunk) -> Option<(&'static str, usize, usize)> {
    let count = usize::from(chunk.count);
    let index = usize::from(chunk.index);
    if !valid_topic(&chunk.topic) {
        Some(("topic bytes", chunk.topic.len(), MAX_TOPIC_BYTES))
    } else if count == 0 || count > MAX_CHUNKS {
        Some(("chunk count", count, MAX_CHUNKS))
    } else if index >= count {
        Some(("chunk index", index, count - 1))
    } else if chunk.data.is_empty() || chunk.data.len() > MAX_CHUNK_BYTES {
        Some(("chunk bytes", chunk.data.len(), MAX_CHUNK_BYTES))
    } else if index + 1 < count && chunk.data.len() != MAX_CHUNK_BYTES {
        // Only the last chunk may be short: one chunking per blob.
        Some(("inner chunk bytes", chunk.data.len(), MAX_CHUNK_BYTES))
    } else {
        None
    }
}

impl Codec for Chunk {
    fn tag(&self) -> u8 {
        match self.kind {
            BlobKind::Delta => tag::DELTA,
            BlobKind::Summary => tag::SUMMARY,
            BlobKind::SummaryReply => tag::SUMMARY_REPLY,
            BlobKind::Snapshot => tag::SNAPSHOT,
        }
    }

    fn check_limits(&self) -> Result<(), EncodeError> {
        match over_limit(self) {
            Some((what, value, max)) if value > max => {
                Err(EncodeError::OverLimit { what, value, max })
            }
            _ => Ok(()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.topic.len() as u8);
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&self.blob.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.data);
    }

    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Chunk, DecodeError> {
        let kind = match tag {
            tag::DELTA => BlobKind::Delta,
            tag::SUMMARY => BlobKind::Summary,
            tag::SUMMARY_REPLY => BlobKind::SummaryReply,
            _ => BlobKind::Snapshot,
        };
        let offset = r.offset();
        let len = usize::from(r.u8("topic length")?);
        if len == 0 || len > MAX_TOPIC_BYTES {
            return Err(DecodeError::OverLimit {
                what: "topic bytes",
                value: len,
                max: MAX_TOPIC_BYTES,
            });
        }
        let raw = r.take(len, "topic")?;
        let topic = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::Invalid {
                what: "topic (not UTF-8)",
                offset,
            })?
            .to_owned();
        let blob = u32::from_be_bytes(r.array("blob id")?);
        let index = u16::from_be_bytes(r.array("chunk index")?);
        let count = u16::from_be_bytes(r.array("chunk count")?);
        let data_offset = r.offset();
        let len = usize::from(u16::from_be_bytes(r.array("chunk length")?));
        if len > MAX_CHUNK_BYTES {
            return Err(DecodeError::OverLimit {
                what: "chunk bytes",
                value: len,
                max: MAX_CHUNK_BYTES,
            });
        }
        let data = Bytes::copy_from_slice(r.take(len, "chunk data")?);
        let chunk = Chunk {
            kind,
            topic,
            blob,
            index,
            count,
            data,
        };
        if let Some((what, value, max)) = over_limit(&chunk) {
            return Err(if what == "chunk index" || what == "inner chunk bytes" {
                DecodeError::Invalid {
                    what,
                    offset: data_offset,
                }
            } else {
                DecodeError::OverLimit { what, value, max }
            });
        }
        Ok(chunk)
    }
}

#[cfg(test)]
pub(crate) mod strategy {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn chunk() -> impl Strategy<Value = Chunk> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_splits_into_full_chunks_and_a_short_last_one() {
        let data = Bytes::from(vec![7u8; 2 * MAX_CHUNK_BYTES + 5]);
        let chunks = Chunk::split(BlobKind::Delta, "t", 9, &data).unwrap();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| over_limit(c).is_none()));
        assert_eq!(chunks[2].data.len(), 5);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(joined, data.to_vec());
        assert!(Chunk::split(BlobKind::Delta, "t", 9, &Bytes::new()).is_none());
        let huge = Bytes::from(vec![0u8; MAX_BLOB_BYTES + 1]);
        assert!(Chunk::split(BlobKind::Delta, "t", 9, &huge).is_none());
        assert!(Chunk::split(BlobKind::Delta, "", 9, &data).is_none());
        assert!(Chunk::split(BlobKind::Delta, &"x".repeat(33), 9, &data).is_none());
    }
}
