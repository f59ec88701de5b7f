//! Sessions: every peer link is bound to the peer's identity key,
//! mutually authenticated in one round trip and sealed datagram by datagram.
//!
//! The WireGuard pattern (Donenfeld, "WireGuard: Next Generation Kernel
//! Network Tunnel", NDSS 2017) over Noise IK
//! (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, through `snow`):
//!
//! - **Keys.** A node's Noise static key is its ed25519 identity key in
//!   Montgomery form ([`static_secret`], [`static_public`]), so a
//!   [`PeerId`] alone is enough to start a handshake with its owner.
//! - **Handshake.** IK: the initiator knows the responder's static key; the
//!   first message authenticates the initiator, the second the responder;
//!   one round trip. Every handshake draws its ephemeral key from the
//!   node's seeded stream (never the OS).
//! - **Datagrams.** A receiver index (chosen by the receiver) finds the
//!   session; a 64-bit counter is the AEAD nonce; a sliding window rejects
//!   replays. Forged, replayed, truncated, tampered and wrong-session
//!   datagrams are dropped, counted and change no state.
//! - **Roaming.** Sessions are found by index, not by address: an
//!   authenticated datagram from a new address moves the peer's endpoint
//!   there ([`Incoming::Data::roamed`]).
//! - **Rekeying.** After [`Config::rekey_after`] the initiator of a session
//!   handshakes again on its next send; the previous keys still open
//!   datagrams in flight; nothing older than [`Config::reject_after`] is
//!   sealed or opened.
//! - **Cookies.** Every handshake message carries `mac1` (keyed by the
//!   receiver's public key: a stray or misdirected datagram costs a hash).
//!   Past [`Config::handshakes_per_s_before_cookies`], an initiation
//!   without a valid `mac2` gets a cookie reply instead of a
//!   Diffie-Hellman: a spoofed source never sees it, so a flood from
//!   spoofed sources costs the node no DH.
//! - **Identify.** A contact known only by address (a bootstrap address, a
//!   relay candidate) is asked who it is ([`Sessions::identify`]): a
//!   stateless request and reply naming the responder's key. The key is
//!   then proven by the IK handshake, like any other.
//! - **Liveness.** An ack-eliciting datagram must be answered within
//!   [`Config::ack_delay`] (by any datagram, or an empty ack); when nothing
//!   has come back from a peer [`Config::liveness_timeout`] after the first
//!   unanswered one, the peer is reported [`Event::Dead`] (QUIC's probe
//!   timeout, RFC 9002 §6.2, in its simplest form).
//!
//! Like every core, this is sans-IO: time is passed in, outputs are drained
//! with [`Sessions::poll_transmit`] and [`Sessions::poll_event`], the next
//! deadline is [`Sessions::poll_timeout`].

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{self, KeyError};
use crate::{Identity, PeerId, Time};

/// Whether sessions do the real arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Crypto {
    /// Noise IK, ChaCha20-Poly1305, BLAKE2s.
    #[default]
    Real,
    /// Every handshake round trip, message and datagram size as with
    /// `Real`, but no Diffie-Hellman, no AEAD: for simulations where CPU
    /// matters more than the math. Authenticates nothing.
    Null,
}

/// Settings of the session layer. Every duration is 1 ms to 720 h
/// ([`crate::config::MIN_INTERVAL`], [`crate::config::MAX_DURATION`]) but
/// `ack_delay`, which may be 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub crypto: Crypto,
    /// The initiator of a session handshakes again on its first send after
    /// this long (WireGuard REKEY_AFTER_TIME: 120 s).
    #[serde(with = "crate::duration")]
    pub rekey_after: Duration,
    /// Keys older than this neither seal nor open (WireGuard
    /// REJECT_AFTER_TIME: 180 s); longer than `rekey_after`.
    #[serde(with = "crate::duration")]
    pub reject_after: Duration,
    /// A handshake unanswered this long is sent again.
    #[serde(with = "crate::duration")]
    pub handshake_timeout: Duration,
    /// Initiations sent before the peer is given up as unreachable; 1 to
    /// [`MAX_HANDSHAKE_ATTEMPTS`].
    pub handshake_attempts: u8,
    /// A session with nothing sent or received this long is forgotten.
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// Sessions kept at once (least recently used forgotten first); 1 to
    /// [`MAX_SESSIONS`].
    pub max_sessions: usize,
    /// Plaintexts queued per peer while its handshake runs; 1 to
    /// [`MAX_QUEUED_PER_PEER`].
    pub max_queued_per_peer: usize,
    /// Handshake initiations processed per second before cookies are
    /// required (0: always); at most [`MAX_HANDSHAKES_PER_S`].
    pub handshakes_per_s_before_cookies: u32,
    /// An ack-eliciting datagram is answered within this (RFC 9000
    /// max_ack_delay: 25 ms; Grove waits longer to piggyback); shorter than
    /// `liveness_timeout`.
    #[serde(with = "crate::duration")]
    pub ack_delay: Duration,
    /// Nothing back from a peer this long after the first unanswered
    /// ack-eliciting datagram: the peer is dead.
    #[serde(with = "crate::duration")]
    pub liveness_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            crypto: Crypto::Real,
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            handshake_timeout: Duration::from_secs(1),
            handshake_attempts: 3,
            idle_timeout: Duration::from_secs(180),
            max_sessions: 512,
            max_queued_per_peer: 16,
            handshakes_per_s_before_cookies: 200,
            ack_delay: Duration::from_millis(100),
            liveness_timeout: Duration::from_secs(1),
        }
    }
}

/// Most initiations sent to one peer before it is given up.
pub const MAX_HANDSHAKE_ATTEMPTS: u8 = 20;
/// Most sessions a node may be set to keep.
pub const MAX_SESSIONS: usize = 65_536;
/// Most plaintexts a node may be set to queue per peer during a handshake.
pub const MAX_QUEUED_PER_PEER: usize = 1024;
/// Highest handshake rate a node may be set to serve before cookies.
pub const MAX_HANDSHAKES_PER_S: u32 = 1_000_000;

impl Config {
    /// Check the bounds on each field's doc line; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        for (key, d) in [
            ("rekey_after", self.rekey_after),
            ("reject_after", self.reject_after),
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("liveness_timeout", self.liveness_timeout),
        ] {
            config::interval(d).map_err(KeyError::at(key))?;
        }
        config::delay(self.ack_delay).map_err(KeyError::at("ack_delay"))?;
        if self.reject_after <= self.rekey_after {
            return Err(KeyError::new(
                "reject_after",
                "must be longer than rekey_after",
            ));
        }
        if self.ack_delay >= self.liveness_timeout {
            return Err(KeyError::new(
                "ack_delay",
                "must be shorter than liveness_timeout",
            ));
        }
        config::range(self.handshake_attempts, 1, MAX_HANDSHAKE_ATTEMPTS)
            .map_err(KeyError::at("handshake_attempts"))?;
        config::range(self.max_sessions, 1, MAX_SESSIONS).map_err(KeyError::at("max_sessions"))?;
        config::range(self.max_queued_per_peer, 1, MAX_QUEUED_PER_PEER)
            .map_err(KeyError::at("max_queued_per_peer"))?;
        config::range(
            self.handshakes_per_s_before_cookies,
            0,
            MAX_HANDSHAKES_PER_S,
        )
        .map_err(KeyError::at("handshakes_per_s_before_cookies"))
    }
}

/// Where a datagram came from, and where an answer to it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// Straight from this socket address.
    Direct(SocketAddr),
    /// Inside a relay frame from the relay `relay` (already authenticated
    /// as that relay), which names `source` as the sender.
    Relayed { relay: PeerId, source: PeerId },
}

/// Where a sealed datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To the peer, over the path the caller picks for it (or `path`
    /// when the sender named one: a hole punch to a candidate address).
    Peer { peer: PeerId, path: Option<Via> },
    /// Back where a datagram came from (handshake responses, cookie and
    /// identify replies).
    Reply(Via),
}

/// What [`Sessions::handle`] made of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// An authenticated datagram from `peer`; its plaintext is in the
    /// caller's buffer (empty for acks and keep-alives). `roamed`: it
    /// came from another endpoint than the last one.
    Data { peer: PeerId, roamed: bool },
    /// A handshake, cookie or identify datagram, handled.
    Control,
    /// Dropped (and counted): see [`Drop`].
    Dropped(Drop),
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    #[error("datagram too short or of unknown type")]
    Malformed,
    #[error("handshake message with a bad mac1")]
    BadMac,
    #[error("handshake initiation refused under load without a cookie")]
    NeedCookie,
    #[error("handshake that does not authenticate")]
    BadHandshake,
    #[error("no session for the receiver index")]
    UnknownSession,
    #[error("datagram that does not open (forged or tampered)")]
    BadSeal,
    #[error("datagram counter already seen or too old (replay)")]
    Replay,
    #[error("datagram sealed with expired keys")]
    Expired,
    #[error("relayed datagram whose session is not the frame's named source")]
    WrongSource,
}

/// What the session layer tells the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session with `peer` is up (first one, or after it was lost).
    Established { peer: PeerId },
    /// `peer` answered nothing for [`Config::liveness_timeout`] after an
    /// ack-eliciting datagram, or every handshake attempt went
    /// unanswered.
    Dead { peer: PeerId },
    /// An identify request to `addr` was answered: `peer` claims it.
    Identified { addr: SocketAddr, peer: PeerId },
}

/// A sealed datagram to send; its bytes were written to the caller's
/// buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
}

/// Counters, for logs, reports and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub handshakes_initiated: u64,
    pub handshakes_completed: u64,
    /// Handshake messages on which this node computed Diffie-Hellman
    /// (what a handshake flood costs).
    pub handshakes_computed: u64,
    pub cookies_sent: u64,
    pub sealed: u64,
    pub opened: u64,
    /// Empty acks sent for liveness.
    pub acks_sent: u64,
    /// Drops, by reason.
    pub dropped_malformed: u64,
    pub dropped_auth: u64,
    pub dropped_replay: u64,
    pub dropped_unknown: u64,
}

/// The Noise static secret of `identity` (its ed25519 key's scalar, as an
/// X25519 secret).
pub fn static_secret(identity: &Identity) -> [u8; 32] {
    identity.signing_key().to_scalar_bytes()
}

/// The Noise static public key of `peer`, if its id is a valid ed25519
/// point.
pub fn static_public(peer: &PeerId) -> Option<[u8; 32]> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(peer.as_bytes()).ok()?;
    Some(key.to_montgomery().to_bytes())
}

/// Every session of one node.
pub struct Sessions {
    _todo: (),
}

impl Sessions {
    /// The sessions of the node with `identity`, drawing every ephemeral
    /// key and index from the ChaCha stream of `rng_seed`.
    pub fn new(identity: &Identity, config: Config, rng_seed: u64) -> Self {
        let _ = (identity, config, rng_seed);
        todo!()
    }

    /// Seal `plaintext` for `peer` (over `path` if given, else the path the
    /// caller picks for the peer): at once if a session is up, else queued
    /// (bounded) behind a handshake this starts. `ack_eliciting`: the peer
    /// must answer (liveness).
    pub fn send(
        &mut self,
        now: Time,
        peer: PeerId,
        path: Option<Via>,
        plaintext: &[u8],
        ack_eliciting: bool,
    ) {
        let _ = (now, peer, path, plaintext, ack_eliciting);
        todo!()
    }

    /// Ask `addr` who it is ([`Event::Identified`] when it answers).
    pub fn identify(&mut self, now: Time, addr: SocketAddr) {
        let _ = (now, addr);
        todo!()
    }

    /// One datagram in, from `via`. An authenticated datagram's plaintext
    /// is written to `plaintext` (cleared first).
    pub fn handle(
        &mut self,
        now: Time,
        via: Via,
        datagram: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Incoming {
        let _ = (now, via, datagram, plaintext);
        todo!()
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        let _ = now;
        todo!()
    }

    /// When [`Sessions::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }

    /// The next datagram to send, written to `out` (cleared first).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Transmit> {
        let _ = out;
        todo!()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Where the last authenticated datagram from `peer` came from.
    pub fn endpoint(&self, peer: &PeerId) -> Option<Via> {
        let _ = peer;
        todo!()
    }

    /// Whether a session with `peer` is up.
    pub fn is_established(&self, peer: &PeerId) -> bool {
        let _ = peer;
        todo!()
    }

    /// Forget `peer`'s session (it left).
    pub fn forget(&mut self, peer: &PeerId) {
        let _ = peer;
        todo!()
    }

    pub fn stats(&self) -> Stats {
        todo!()
    }
}
