//! The datagram formats of the session layer (the table is in the module
//! doc of [`super`]): type bytes, sizes and field offsets. Integers are
//! little-endian.

/// Byte 0 of every session datagram, in clear: what an observer on the
/// wire can tell of it. Above the wire format's version byte (1), so a
/// receiver can tell the two apart during a migration.
pub mod kind {
    pub const INITIATION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x11;
    pub const COOKIE_REPLY: u8 = 0x12;
    pub const DATA_ACK_ELICITING: u8 = 0x13;
    pub const DATA: u8 = 0x14;
    pub const IDENTIFY_REQUEST: u8 = 0x15;
    pub const IDENTIFY_REPLY: u8 = 0x16;
}

/// An AEAD tag (ChaCha20-Poly1305 and XChaCha20-Poly1305 alike).
pub const TAG_LEN: usize = 16;
/// A MAC (keyed BLAKE2s-128).
pub(super) const MAC_LEN: usize = 16;
/// An X25519 public key.
pub(super) const KEY_LEN: usize = 32;

/// IK message 1: ephemeral, encrypted static, encrypted empty payload.
pub(super) const MSG1_LEN: usize = KEY_LEN + (KEY_LEN + TAG_LEN) + TAG_LEN;
/// IK message 2: ephemeral, encrypted empty payload.
pub(super) const MSG2_LEN: usize = KEY_LEN + TAG_LEN;

/// Initiation: type, sender index, message 1, mac1, mac2.
pub(super) const INITIATION_LEN: usize = 1 + 4 + MSG1_LEN + 2 * MAC_LEN;
/// Response: type, sender index, receiver index, message 2, mac1, mac2.
pub(super) const RESPONSE_LEN: usize = 1 + 4 + 4 + MSG2_LEN + 2 * MAC_LEN;
/// Cookie reply: type, receiver index, nonce, sealed cookie.
pub(super) const COOKIE_REPLY_LEN: usize = 1 + 4 + COOKIE_NONCE_LEN + MAC_LEN + TAG_LEN;
/// XChaCha20-Poly1305's nonce.
pub(super) const COOKIE_NONCE_LEN: usize = 24;
/// Data header: type, receiver index, counter.
pub(super) const DATA_HEADER_LEN: usize = 1 + 4 + 8;
/// Identify request and reply alike: type, nonce, then 32 zero bytes
/// (request) or the responder's PeerId (reply).
pub(super) const IDENTIFY_LEN: usize = 1 + IDENTIFY_NONCE_LEN + 32;
pub(super) const IDENTIFY_NONCE_LEN: usize = 16;

/// Bytes a data datagram adds to its plaintext: header and tag (29).
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// The largest plaintext [`super::Sessions::send`] seals; larger ones are
/// dropped and counted.
pub const MAX_PLAINTEXT: usize = 1400;
/// The largest session datagram.
pub const MAX_DATAGRAM: usize = MAX_PLAINTEXT + DATA_OVERHEAD;

const _: () = assert!(DATA_OVERHEAD == 29);
const _: () = assert!(INITIATION_LEN == 133 && RESPONSE_LEN == 89 && COOKIE_REPLY_LEN == 61);

/// Where mac1 and mac2 sit in a handshake message of `len` bytes.
pub(super) const fn mac1_at(len: usize) -> usize {
    len - 2 * MAC_LEN
}

pub(super) const fn mac2_at(len: usize) -> usize {
    len - MAC_LEN
}

/// The little-endian u32 at `at` (the caller checked the length).
pub(super) fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(d[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `at` (the caller checked the length).
pub(super) fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().expect("8 bytes"))
}

/// The AEAD nonce of a data datagram: its counter and its type, so that
/// the type byte (which snow's transport API cannot take as associated
/// data) is authenticated too.
pub(super) fn data_nonce(counter: u64, ack_eliciting: bool) -> u64 {
    counter << 1 | u64::from(ack_eliciting)
}

/// The header of a data datagram.
pub(super) fn data_header(eliciting: bool, receiver: u32, counter: u64) -> [u8; DATA_HEADER_LEN] {
    let mut h = [0; DATA_HEADER_LEN];
    h[0] = if eliciting {
        kind::DATA_ACK_ELICITING
    } else {
        kind::DATA
    };
    h[1..5].copy_from_slice(&receiver.to_le_bytes());
    h[5..].copy_from_slice(&counter.to_le_bytes());
    h
}
