//! Knowledge commons messages (tags `0x60..=0x63`): every message is one
//! chunk of a blob (a Loro update, a version vector or a snapshot) for one
//! topic's document.
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

use super::{DecodeError, Reader, HEADER_BYTES, MAX_DATAGRAM_BYTES, MAX_RELAYED_BYTES};

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

pub(super) const DELTA: u8 = 0x60;
pub(super) const SUMMARY: u8 = 0x61;
pub(super) const SUMMARY_REPLY: u8 = 0x62;
pub(super) const SNAPSHOT: u8 = 0x63;

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

pub(super) fn tag(chunk: &Chunk) -> u8 {
    match chunk.kind {
        BlobKind::Delta => DELTA,
        BlobKind::Summary => SUMMARY,
        BlobKind::SummaryReply => SUMMARY_REPLY,
        BlobKind::Snapshot => SNAPSHOT,
    }
}

pub(super) fn is_known_tag(tag: u8) -> bool {
    (DELTA..=SNAPSHOT).contains(&tag)
}

/// `(what, value, max)` of the first cap `chunk` breaks.
pub(super) fn over_limit(chunk: &Chunk) -> Option<(&'static str, usize, usize)> {
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

pub(super) fn encode(chunk: &Chunk, out: &mut Vec<u8>) {
    out.push(chunk.topic.len() as u8);
    out.extend_from_slice(chunk.topic.as_bytes());
    out.extend_from_slice(&chunk.blob.to_be_bytes());
    out.extend_from_slice(&chunk.index.to_be_bytes());
    out.extend_from_slice(&chunk.count.to_be_bytes());
    out.extend_from_slice(&(chunk.data.len() as u16).to_be_bytes());
    out.extend_from_slice(&chunk.data);
}

pub(super) fn decode(tag: u8, r: &mut Reader<'_>) -> Result<Chunk, DecodeError> {
    let kind = match tag {
        DELTA => BlobKind::Delta,
        SUMMARY => BlobKind::Summary,
        SUMMARY_REPLY => BlobKind::SummaryReply,
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
