//! Identify: "who are you?" asked of an address.
//!
//! The asker keeps a bounded table of its outstanding requests (address,
//! nonce, retry time) and accepts only a reply that echoes the nonce from
//! the address it asked. The responder keeps nothing per asker: it answers
//! at most [`IDENTIFY_REPLIES_PER_S`] requests a second (a token bucket of
//! as many tokens), and a request is as long as its reply, so a spoofed
//! request neither amplifies nor fills memory.

use std::net::SocketAddr;
use std::time::Duration;

use super::wire::{kind, IDENTIFY_LEN, IDENTIFY_NONCE_LEN};
use crate::{PeerId, Time};

/// Requests answered per second, and the burst allowed.
pub const IDENTIFY_REPLIES_PER_S: u32 = 64;
/// Outstanding requests at once; the oldest is forgotten for a new one.
pub const MAX_PENDING_IDENTIFY: usize = 64;

pub(super) type Nonce = [u8; IDENTIFY_NONCE_LEN];

/// An outstanding request.
struct Asked {
    addr: SocketAddr,
    nonce: Nonce,
    sent: u8,
    retry_at: Time,
}

/// The asker's table and the responder's bucket.
pub(super) struct Identify {
    asked: Vec<Asked>,
    /// Tokens, in thousandths.
    bucket_milli: u64,
    refilled: Time,
}

impl Identify {
    pub(super) fn new() -> Self {
        Identify {
            asked: Vec::new(),
            bucket_milli: u64::from(IDENTIFY_REPLIES_PER_S) * 1000,
            refilled: Time::ZERO,
        }
    }

    /// Whether a request to `addr` is outstanding.
    pub(super) fn is_asking(&self, addr: SocketAddr) -> bool {
        self.asked.iter().any(|a| a.addr == addr)
    }

    /// Record a request to `addr` (replacing an older one to it, or the
    /// oldest when the table is full); its bytes.
    pub(super) fn ask(
        &mut self,
        addr: SocketAddr,
        nonce: Nonce,
        retry_at: Time,
    ) -> [u8; IDENTIFY_LEN] {
        self.asked.retain(|a| a.addr != addr);
        if self.asked.len() >= MAX_PENDING_IDENTIFY {
            let oldest = (0..self.asked.len())
                .min_by_key(|&i| self.asked[i].retry_at)
                .expect("the table is full");
            self.asked.remove(oldest);
        }
        self.asked.push(Asked {
            addr,
            nonce,
            sent: 1,
            retry_at,
        });
        request(&nonce)
    }

    /// Requests to send again at `now` (every `timeout`, `attempts` in
    /// all; then forgotten).
    pub(super) fn due(
        &mut self,
        now: Time,
        timeout: Duration,
        attempts: u8,
    ) -> Vec<(SocketAddr, [u8; IDENTIFY_LEN])> {
        self.asked.retain(|a| now < a.retry_at || a.sent < attempts);
        crate::compact::release_if_empty(&mut self.asked);
        let mut again = Vec::new();
        for a in self.asked.iter_mut().filter(|a| now >= a.retry_at) {
            a.sent += 1;
            a.retry_at = now + timeout;
            again.push((a.addr, request(&a.nonce)));
        }
        again
    }

    pub(super) fn deadline(&self) -> Option<Time> {
        self.asked.iter().map(|a| a.retry_at).min()
    }

    /// The reply `d` from `addr`: the peer it names, if it answers a
    /// request to `addr` (which is then forgotten).
    pub(super) fn accept(&mut self, addr: SocketAddr, d: &[u8]) -> Option<PeerId> {
        let nonce = &d[1..1 + IDENTIFY_NONCE_LEN];
        let at = self
            .asked
            .iter()
            .position(|a| a.addr == addr && a.nonce[..] == *nonce)?;
        self.asked.remove(at);
        crate::compact::release_if_empty(&mut self.asked);
        Some(PeerId(
            d[1 + IDENTIFY_NONCE_LEN..].try_into().expect("32 bytes"),
        ))
    }

    /// Take a token to answer a request at `now`.
    pub(super) fn take_token(&mut self, now: Time) -> bool {
        let full = u64::from(IDENTIFY_REPLIES_PER_S) * 1000;
        if now > self.refilled {
            let ms = (now - self.refilled).as_millis();
            let refill = ms.saturating_mul(u128::from(IDENTIFY_REPLIES_PER_S));
            self.bucket_milli = full.min(self.bucket_milli.saturating_add(refill as u64));
            self.refilled = now;
        }
        if self.bucket_milli < 1000 {
            return false;
        }
        self.bucket_milli -= 1000;
        true
    }

    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.asked.len()
    }
}

/// Whether `d` is a well-formed request (zero padding: junk gets no
/// answer).
pub(super) fn is_request(d: &[u8]) -> bool {
    d.len() == IDENTIFY_LEN && d[1 + IDENTIFY_NONCE_LEN..].iter().all(|&b| b == 0)
}

fn request(nonce: &Nonce) -> [u8; IDENTIFY_LEN] {
    let mut d = [0; IDENTIFY_LEN];
    d[0] = kind::IDENTIFY_REQUEST;
    d[1..1 + IDENTIFY_NONCE_LEN].copy_from_slice(nonce);
    d
}

/// The reply to the request `d` from the node `own`.
pub(super) fn reply(d: &[u8], own: &PeerId) -> [u8; IDENTIFY_LEN] {
    let mut r = [0; IDENTIFY_LEN];
    r[0] = kind::IDENTIFY_REPLY;
    r[1..1 + IDENTIFY_NONCE_LEN].copy_from_slice(&d[1..1 + IDENTIFY_NONCE_LEN]);
    r[1 + IDENTIFY_NONCE_LEN..].copy_from_slice(own.as_bytes());
    r
}
