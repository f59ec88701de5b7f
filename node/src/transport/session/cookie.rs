//! mac1, mac2 and cookies (WireGuard §5.4.4 and §5.4.7, with this layer's
//! labels and sizes).
//!
//! - `mac1 = MAC(HASH("mac1----" || Spub_receiver), message up to mac1)`:
//!   anyone who knows the receiver's key can compute it, so it only makes
//!   a stray or misdirected datagram cost a hash instead of a DH.
//! - `cookie = MAC(secret, source)`, the secret drawn from the node's
//!   stream and re-drawn every [`SECRET_LIFETIME`]; the source is the ip
//!   and port of a direct datagram, or the relay's and the named source's
//!   ids of a relayed one.
//! - `mac2 = MAC(cookie, message up to mac2)`: proof that the initiator
//!   received a cookie reply at its source.
//! - The cookie reply seals the cookie with XChaCha20-Poly1305 under
//!   `HASH("cookie--" || Spub_responder)`, with the mac1 it answers as
//!   associated data: only the initiator of that message can use it.
//!
//! MAC is keyed BLAKE2s-128, HASH is BLAKE2s-256.

use std::time::Duration;

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use rand_chacha::ChaCha20Rng;

use super::wire::{self, kind, COOKIE_NONCE_LEN, COOKIE_REPLY_LEN, MAC_LEN};
use super::Via;
use crate::Time;

/// A MAC, a cookie.
pub(super) type MacBytes = [u8; MAC_LEN];

/// How long a cookie secret lives (WireGuard COOKIE_REFRESH_TIME).
pub const SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// How long an initiator uses a cookie it received: a little less than the
/// secret's lifetime, as WireGuard does.
pub(super) const COOKIE_LIFETIME: Duration = Duration::from_secs(110);

/// `HASH(label || public)`: the mac1 key and the cookie-reply key of the
/// node with Noise static key `public`.
pub(super) fn label_hash(label: &[u8; 8], public: &[u8; 32]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(public)
        .finalize()
        .into()
}

pub(super) fn mac1_key(public: &[u8; 32]) -> [u8; 32] {
    label_hash(b"mac1----", public)
}

pub(super) fn cookie_key(public: &[u8; 32]) -> [u8; 32] {
    label_hash(b"cookie--", public)
}

/// Keyed BLAKE2s-128 of `data` (`key` at most 32 bytes).
pub(super) fn mac(key: &[u8], data: &[u8]) -> MacBytes {
    let mut m =
        <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("a key of 32 bytes or less");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Equality that reads every byte (no early exit on the first difference).
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Write mac1 (keyed by the receiver's `mac1_key`) and mac2 (keyed by
/// `cookie`, or zeros) into the handshake message `msg`.
pub(super) fn stamp(msg: &mut [u8], mac1_key: &[u8; 32], cookie: Option<&MacBytes>) {
    let at1 = wire::mac1_at(msg.len());
    let m1 = mac(mac1_key, &msg[..at1]);
    msg[at1..at1 + MAC_LEN].copy_from_slice(&m1);
    stamp_mac2(msg, cookie);
}

/// Write mac2 (keyed by `cookie`, or zeros) into the handshake message
/// `msg`, whose mac1 is already there.
pub(super) fn stamp_mac2(msg: &mut [u8], cookie: Option<&MacBytes>) {
    let at2 = wire::mac2_at(msg.len());
    let m2 = cookie.map_or([0; MAC_LEN], |c| mac(c, &msg[..at2]));
    msg[at2..].copy_from_slice(&m2);
}

/// Whether the handshake message `msg` carries a valid mac1 for the
/// receiver with `mac1_key`.
pub(super) fn mac1_valid(msg: &[u8], mac1_key: &[u8; 32]) -> bool {
    let at1 = wire::mac1_at(msg.len());
    same(
        &mac(mac1_key, &msg[..at1]),
        &msg[at1..wire::mac2_at(msg.len())],
    )
}

/// The cookie in the reply `d` to the initiation whose mac1 was `mac1`,
/// from the responder with cookie-reply key `key`.
pub(super) fn open_reply(d: &[u8], key: &[u8; 32], mac1: &[u8]) -> Option<MacBytes> {
    let nonce = &d[5..5 + COOKIE_NONCE_LEN];
    let sealed = &d[5 + COOKIE_NONCE_LEN..];
    let mut cookie: MacBytes = sealed[..MAC_LEN].try_into().expect("16 bytes");
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(nonce.into(), mac1, &mut cookie, sealed[MAC_LEN..].into())
        .ok()?;
    Some(cookie)
}

/// The responder's side: the secret, and the count that says whether the
/// node is under load.
pub(super) struct CookieJar {
    secret: [u8; 32],
    secret_drawn: Time,
    /// Start of the current one-second window, initiations in it.
    window_start: Time,
    window_initiations: u32,
    /// `HASH("cookie--" || Spub)` of this node.
    reply_key: [u8; 32],
}

impl CookieJar {
    pub(super) fn new(now: Time, own_public: &[u8; 32], rng: &mut ChaCha20Rng) -> Self {
        let mut secret = [0; 32];
        rng.fill_bytes(&mut secret);
        CookieJar {
            secret,
            secret_drawn: now,
            window_start: now,
            window_initiations: 0,
            reply_key: cookie_key(own_public),
        }
    }

    /// Count one initiation (with a valid mac1); whether the node is now
    /// over `per_s` initiations in the current second.
    pub(super) fn count_initiation(&mut self, now: Time, per_s: u32) -> bool {
        if now >= self.window_start + Duration::from_secs(1) {
            self.window_start = now;
            self.window_initiations = 0;
        }
        self.window_initiations = self.window_initiations.saturating_add(1);
        self.window_initiations > per_s
    }

    /// Whether the initiation `msg` from `via` carries a valid mac2.
    pub(super) fn mac2_valid(
        &mut self,
        now: Time,
        via: &Via,
        msg: &[u8],
        rng: &mut ChaCha20Rng,
    ) -> bool {
        let cookie = self.cookie(now, via, rng);
        let at2 = wire::mac2_at(msg.len());
        same(&mac(&cookie, &msg[..at2]), &msg[at2..])
    }

    /// The cookie reply to the initiation `msg` from `via`.
    pub(super) fn reply(
        &mut self,
        now: Time,
        via: &Via,
        msg: &[u8],
        rng: &mut ChaCha20Rng,
    ) -> [u8; COOKIE_REPLY_LEN] {
        let mut cookie = self.cookie(now, via, rng);
        let mut nonce = [0; COOKIE_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mac1 = &msg[wire::mac1_at(msg.len())..wire::mac2_at(msg.len())];
        let tag = XChaCha20Poly1305::new((&self.reply_key).into())
            .encrypt_in_place_detached((&nonce).into(), mac1, &mut cookie)
            .expect("a 16-byte cookie always seals");
        let mut d = [0; COOKIE_REPLY_LEN];
        d[0] = kind::COOKIE_REPLY;
        d[1..5].copy_from_slice(&msg[1..5]);
        d[5..5 + COOKIE_NONCE_LEN].copy_from_slice(&nonce);
        d[5 + COOKIE_NONCE_LEN..5 + COOKIE_NONCE_LEN + MAC_LEN].copy_from_slice(&cookie);
        d[5 + COOKIE_NONCE_LEN + MAC_LEN..].copy_from_slice(&tag);
        d
    }

    /// `MAC(secret, source)`, re-drawing the secret when it is too old
    /// (lazily: no timer wakes the node for it).
    fn cookie(&mut self, now: Time, via: &Via, rng: &mut ChaCha20Rng) -> MacBytes {
        if now >= self.secret_drawn + SECRET_LIFETIME {
            rng.fill_bytes(&mut self.secret);
            self.secret_drawn = now;
        }
        let mut source = [0u8; 64];
        let len = match via {
            Via::Direct(addr) => {
                let port = addr.port().to_be_bytes();
                match addr.ip() {
                    std::net::IpAddr::V4(ip) => {
                        source[..4].copy_from_slice(&ip.octets());
                        source[4..6].copy_from_slice(&port);
                        6
                    }
                    std::net::IpAddr::V6(ip) => {
                        source[..16].copy_from_slice(&ip.octets());
                        source[16..18].copy_from_slice(&port);
                        18
                    }
                }
            }
            Via::Relayed {
                relay,
                source: from,
            } => {
                source[..32].copy_from_slice(relay.as_bytes());
                source[32..].copy_from_slice(from.as_bytes());
                64
            }
        };
        mac(&self.secret, &source[..len])
    }
}
