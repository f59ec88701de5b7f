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
//!   unanswered one (or three smoothed answer times, on a slow relayed
//!   path), the peer is reported [`Event::Dead`]; a probe goes half way
//!   (QUIC's probe timeout, RFC 9002 §6.2, in its simplest form). Data for
//!   a peer heard from within half that timeout elicits nothing: it is
//!   alive, and a one-way stream costs one ack per half timeout, not one
//!   per datagram.
//!
//! Like every core, this is sans-IO: time is passed in, outputs are drained
//! with [`Sessions::poll_transmit`] and [`Sessions::poll_event`], the next
//! deadline is [`Sessions::poll_timeout`].
//!
//! # Datagrams
//!
//! Byte 0 is the type; integers are little-endian; sizes in bytes.
//!
//! | type   | datagram            | fields                                                                 | size   |
//! |--------|---------------------|------------------------------------------------------------------------|--------|
//! | `0x10` | initiation          | type 1, sender index 4, IK message 1 96 (e 32, s 32+16, tag 16), mac1 16, mac2 16 | 133 |
//! | `0x11` | response            | type 1, sender index 4, receiver index 4, IK message 2 48 (e 32, tag 16), mac1 16, mac2 16 | 89 |
//! | `0x12` | cookie reply        | type 1, receiver index 4, nonce 24, cookie 16 + tag 16                 | 61     |
//! | `0x13` | data, ack-eliciting | type 1, receiver index 4, counter 8, plaintext n + tag 16              | 29 + n |
//! | `0x14` | data                | as `0x13`; the receiver owes no ack                                    | 29 + n |
//! | `0x15` | identify request    | type 1, nonce 16, zeros 32                                             | 49     |
//! | `0x16` | identify reply      | type 1, nonce 16, responder's PeerId 32                                | 49     |
//!
//! [`DATA_OVERHEAD`] is 29; a plaintext is at most [`MAX_PLAINTEXT`]. The
//! AEAD nonce of a data datagram is `counter << 1 | ack-eliciting`, which
//! authenticates the type byte (snow's transport API takes no associated
//! data). Bit
//! 31 of an initiation's sender index is the sign bit of the initiator's
//! PeerId (the Montgomery form of its key drops it), and the initiation's
//! first 5 bytes are the Noise prologue, so both are authenticated
//! ([`handshake`]). mac1, mac2 and the cookie reply are WireGuard's
//! ([`cookie`]). Empty data is an ack or keep-alive.
//!
//! # Rules and departures from WireGuard
//!
//! - **Confirmation.** As in WireGuard, the responder does not seal with
//!   new keys until the initiator's first data datagram under them has
//!   opened; the initiator sends one at once (its queue, or an empty
//!   datagram). Until then the new keys wait beside the current ones, so
//!   a replayed initiation costs a DH and a response but never replaces
//!   working keys. An initiation identical to the one still waiting is
//!   answered with the same response (retries resend the same
//!   initiation); one identical to the one the current or previous keys
//!   came from is [`Drop::ReplayedInitiation`] (after its DH: the
//!   initiator's identity is only known then). The payload carries no
//!   timestamp: an older initiation replayed within the round trip of a
//!   new handshake can make that handshake fail once (it is retried).
//! - **Simultaneous initiation.** A node with a handshake of its own in
//!   flight ignores the peer's initiation when its PeerId is the smaller
//!   one, and abandons its own (keeping its queue) when it is the larger:
//!   one handshake survives, one pair of keys.
//! - **Cookies.** "Under load" means more than
//!   `handshakes_per_s_before_cookies` initiations with a valid mac1 in the
//!   current one-second window. An initiation refused for want of mac2 is
//!   answered with a cookie reply and returns
//!   `Dropped(Drop::NeedCookie)` (counted in `cookies_sent`, not in a drop
//!   counter). The initiator resends at once with mac2 (once per attempt),
//!   and keeps the cookie for that handshake only. Responses are not
//!   subject to cookies: one needs an index this node has pending.
//! - **Rekeying.** Only the initiator of the current keys rekeys; if its
//!   rekey handshake gets no answer it is dropped (no `Dead` while the
//!   current keys work) and the next send tries again. A node whose keys
//!   expired queues and handshakes, whatever its role.
//! - **Dead.** On a liveness [`Event::Dead`] the queue is dropped and the
//!   next send queues behind a fresh handshake (the peer may have lost the
//!   session: restarted, or evicted it); the keys still open what the peer
//!   sends, and anything authenticated from it clears the suspicion. When
//!   every handshake attempt went unanswered the session is forgotten.
//! - **Null crypto.** [`Crypto::Null`] keeps every size, index, mac,
//!   cookie and round trip, and replaces Noise: message 1 carries random
//!   bytes for `e` and the initiator's PeerId for `s`, tags are zeros, data
//!   is plaintext and 16 zeros. It authenticates nothing.
//!
//! # Bounds
//!
//! - sessions: [`Config::max_sessions`]; a new one forgets the least
//!   recently active session (a handshake in progress is recent);
//! - per session: 3 key pairs (current, previous, one awaiting
//!   confirmation), one handshake, [`Config::max_queued_per_peer`] queued
//!   plaintexts (the oldest dropped);
//! - identify: [`MAX_PENDING_IDENTIFY`] outstanding requests, answers
//!   limited to [`IDENTIFY_REPLIES_PER_S`];
//! - cookies: one secret and one counter, whatever the load;
//! - outputs: [`MAX_TRANSMITS`] datagrams and [`MAX_EVENTS`] events waiting
//!   to be polled (beyond, new ones are dropped and counted): drain after
//!   every call.
//!
//! Idle sessions are forgotten by a coarse sweep every quarter of
//! [`Config::idle_timeout`] (so after `idle_timeout` to 1.25x that); the
//! same sweep drops expired and unconfirmed keys. Cookie secrets rotate
//! lazily. Nothing else wakes an idle node.

mod cookie;
mod handshake;
mod identify;
mod peer;
mod replay;
mod table;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::config::{self, KeyError};
use crate::scratch;
use crate::{Identity, PeerId, Time};

pub use cookie::SECRET_LIFETIME as COOKIE_SECRET_LIFETIME;
pub use identify::{IDENTIFY_REPLIES_PER_S, MAX_PENDING_IDENTIFY};
pub use replay::REORDER_DEPTH;
pub use wire::{kind, DATA_OVERHEAD, MAX_DATAGRAM, MAX_PLAINTEXT};

use handshake::Local;
use peer::{Handshake, KeyPair, Queued, Session, Slot, Unconfirmed};
use wire::{
    u32_at, u64_at, DATA_HEADER_LEN, INITIATION_LEN, MSG1_LEN, MSG2_LEN, RESPONSE_LEN, TAG_LEN,
};

/// Datagrams waiting in [`Sessions::poll_transmit`] at most.
pub const MAX_TRANSMITS: usize = 2048;
/// Events waiting in [`Sessions::poll_event`] at most.
pub const MAX_EVENTS: usize = 1024;

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
    /// A session with nothing sent or received this long is forgotten
    /// (QUIC's usual idle timeout, quinn's default: 30 s). Links the cores
    /// keep (HyParView's active view, GossipSub's mesh) carry traffic
    /// every second and never idle; what idles is one-off exchanges
    /// (shuffle replies, walks, lookups), and each kept session holds
    /// its keys and an address book entry: with 180 s, a 3,000-node idle
    /// overlay's heap grew from 92 to 172 MB over 3 virtual minutes; with
    /// 30 s it levels at 90 MB, with the same handshakes per node-hour.
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
            idle_timeout: Duration::from_secs(30),
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
const _: () = assert!(MAX_SESSIONS <= table::MAX_SLOTS, "a slot per session");
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
    #[error("handshake initiation the working keys came from (replay; it cost a DH)")]
    ReplayedInitiation,
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
    /// The caller's label of the plaintext ([`Sessions::send_labeled`]);
    /// 0 for the session layer's own datagrams.
    pub label: u64,
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
    /// Drops, by reason: [`Drop::Malformed`];
    pub dropped_malformed: u64,
    /// [`Drop::BadMac`], [`Drop::BadHandshake`], [`Drop::BadSeal`],
    /// [`Drop::WrongSource`];
    pub dropped_auth: u64,
    /// [`Drop::Replay`], [`Drop::ReplayedInitiation`];
    pub dropped_replay: u64,
    /// [`Drop::UnknownSession`] (and unsolicited identify replies);
    pub dropped_unknown: u64,
    /// [`Drop::Expired`]. ([`Drop::NeedCookie`] is `cookies_sent`.)
    pub dropped_expired: u64,
    /// Plaintexts never sealed: the peer's id is not a key, too long,
    /// pushed out of a full queue, queued when the peer was given up or
    /// forgotten, or a full transmit queue.
    pub dropped_send: u64,
    /// Identify requests answered, and refused over the rate.
    pub identify_answered: u64,
    pub identify_refused: u64,
    /// Events not queued: the event queue was full.
    pub events_dropped: u64,
}

/// The Noise static secret of `identity` (its ed25519 key's scalar, as an
/// X25519 secret).
pub fn static_secret(identity: &Identity) -> [u8; 32] {
    identity.signing_key().to_scalar_bytes()
}

/// The Noise static public key of `peer`, if its id is a valid ed25519
/// point.
///
/// The conversion (a point decompression, which takes a square root, and
/// an inversion) costs about as much as the rest of a null-crypto
/// handshake, and a node asks for the same peers' keys again and again
/// (every handshake, rekey and retry): the last [`STATIC_KEY_SLOTS`]
/// answers are kept in a per-thread table, one slot per id prefix. It is a
/// pure function's cache, shared by every node on the thread; what it
/// holds never changes an answer.
pub fn static_public(peer: &PeerId) -> Option<[u8; 32]> {
    let slot = usize::from(u16::from_le_bytes([peer.0[0], peer.0[1]])) % STATIC_KEY_SLOTS;
    STATIC_KEYS.with(|table| {
        let mut table = table.borrow_mut();
        if table.is_empty() {
            table.resize(STATIC_KEY_SLOTS, None);
        }
        match table[slot] {
            Some((id, key)) if id == *peer => key,
            _ => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(peer.as_bytes())
                    .ok()
                    .map(|k| k.to_montgomery().to_bytes());
                table[slot] = Some((*peer, key));
                key
            }
        }
    })
}

/// Slots of the per-thread table of converted static keys (1.1 MB, taken
/// on first use): enough that a simulation of 10,000 nodes, all on one
/// thread, converts most ids once (with 1,024 slots, conversions were 3%
/// of a null-crypto run's CPU); a daemon's few hundred peers would fit in
/// far fewer, and the table costs it one allocation.
pub const STATIC_KEY_SLOTS: usize = 16_384;

type StaticKeySlot = Option<(PeerId, Option<[u8; 32]>)>;

thread_local! {
    static STATIC_KEYS: std::cell::RefCell<Vec<StaticKeySlot>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Every session of one node.
pub struct Sessions {
    config: Config,
    local: Local,
    /// `HASH("mac1----" || own static public)`: the mac1 key of messages
    /// to this node.
    mac1_key: [u8; 32],
    rng: ChaCha20Rng,
    /// The latest time passed in (for the queries that take none).
    now: Time,
    /// Every session, by peer and by local index.
    sessions: table::Table,
    /// Each session's earliest deadline, if any.
    timers: BTreeSet<(Time, PeerId)>,
    /// The next idle sweep (while there are sessions).
    sweep_at: Option<Time>,
    cookies: cookie::CookieJar,
    identify: identify::Identify,
    /// Queued datagrams, in buffers from the thread's [`scratch`] pool.
    transmits: VecDeque<(Dest, Vec<u8>, u64)>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Sessions {
    /// The sessions of the node with `identity`, drawing every ephemeral
    /// key and index from the ChaCha stream of `rng_seed`.
    pub fn new(identity: &Identity, config: Config, rng_seed: u64) -> Self {
        let id = identity.peer_id();
        let public = static_public(&id).expect("an identity's own key is a valid point");
        let mut rng = ChaCha20Rng::seed_from_u64(rng_seed);
        let cookies = cookie::CookieJar::new(Time::ZERO, &public, &mut rng);
        Sessions {
            config,
            local: Local {
                id,
                secret: static_secret(identity),
                public,
                params: handshake::PROTOCOL
                    .parse()
                    .expect("a valid Noise protocol name"),
            },
            mac1_key: cookie::mac1_key(&public),
            rng,
            now: Time::ZERO,
            sessions: table::Table::default(),
            timers: BTreeSet::new(),
            sweep_at: None,
            cookies,
            identify: identify::Identify::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
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
        self.send_labeled(now, peer, path, plaintext, ack_eliciting, 0);
    }

    /// [`Sessions::send`], with a `label` the caller gets back in the
    /// [`Transmit`] of the sealed datagram (what it carries, for traffic
    /// observers; it never travels).
    pub fn send_labeled(
        &mut self,
        now: Time,
        peer: PeerId,
        path: Option<Via>,
        plaintext: &[u8],
        ack_eliciting: bool,
        label: u64,
    ) {
        self.advance(now);
        if plaintext.len() > MAX_PLAINTEXT || peer == self.local.id {
            self.stats.dropped_send += 1;
            return;
        }
        if !self.seal(now, peer, path, plaintext, ack_eliciting, label) {
            self.enqueue(now, peer, path, plaintext, ack_eliciting, label);
        }
        self.reschedule(peer);
    }

    /// Ask `addr` who it is ([`Event::Identified`] when it answers); a
    /// request already outstanding to `addr` is not repeated. The
    /// request goes out as `Dest::Reply(Via::Direct(addr))`, and is sent
    /// again every `handshake_timeout`, `handshake_attempts` times in all.
    pub fn identify(&mut self, now: Time, addr: SocketAddr) {
        self.advance(now);
        if self.identify.is_asking(addr) {
            return; // its retries are under way
        }
        let mut nonce = [0; wire::IDENTIFY_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let request = self
            .identify
            .ask(addr, nonce, now + self.config.handshake_timeout);
        self.push_copy(Dest::Reply(Via::Direct(addr)), &request);
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
        self.advance(now);
        plaintext.clear();
        let outcome = match datagram.first().copied() {
            Some(kind::INITIATION) => self.on_initiation(now, via, datagram),
            Some(kind::RESPONSE) => self.on_response(now, via, datagram),
            Some(kind::COOKIE_REPLY) => self.on_cookie_reply(now, datagram),
            Some(kind::DATA | kind::DATA_ACK_ELICITING) => {
                self.on_data(now, via, datagram, plaintext)
            }
            Some(kind::IDENTIFY_REQUEST) => self.on_identify_request(now, via, datagram),
            Some(kind::IDENTIFY_REPLY) => self.on_identify_reply(via, datagram),
            _ => Err(Drop::Malformed),
        };
        outcome.unwrap_or_else(|drop| {
            plaintext.clear();
            self.count(drop);
            Incoming::Dropped(drop)
        })
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        let mut due = Vec::new();
        while let Some(&(at, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(s) = self.sessions.get_mut(&peer) {
                s.scheduled = None;
            }
            due.push(peer);
        }
        for peer in due {
            self.on_timer(now, peer);
            self.reschedule(peer);
        }
        let (timeout, attempts) = (
            self.config.handshake_timeout,
            self.config.handshake_attempts,
        );
        for (addr, request) in self.identify.due(now, timeout, attempts) {
            self.push_copy(Dest::Reply(Via::Direct(addr)), &request);
        }
        if self.sweep_at.is_some_and(|at| now >= at) {
            self.sweep(now);
        }
    }

    /// When [`Sessions::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Time> {
        let session = self.timers.first().map(|&(at, _)| at);
        [session, self.identify.deadline(), self.sweep_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send, written to `out` (cleared first).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Transmit> {
        let Some((dest, mut bytes, label)) = self.transmits.pop_front() else {
            out.clear();
            return None;
        };
        std::mem::swap(out, &mut bytes);
        scratch::give(bytes);
        Some(Transmit { dest, label })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Where the last authenticated datagram from `peer` came from.
    pub fn endpoint(&self, peer: &PeerId) -> Option<Via> {
        self.sessions.get(peer).and_then(|s| s.endpoint)
    }

    /// Whether a session with `peer` is up.
    pub fn is_established(&self, peer: &PeerId) -> bool {
        self.sessions
            .get(peer)
            .is_some_and(|s| s.is_established(self.now, &self.config))
    }

    /// Forget `peer`'s session (it left).
    pub fn forget(&mut self, peer: &PeerId) {
        self.remove(peer);
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Sessions held (established or not).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    // ---- the send path -------------------------------------------------

    /// Seal `plaintext` for `peer` with its current keys and queue the
    /// datagram; false if there are no working keys. Starts a rekey when
    /// this node initiated keys older than `rekey_after`.
    fn seal(
        &mut self,
        now: Time,
        peer: PeerId,
        path: Option<Via>,
        plaintext: &[u8],
        ack_eliciting: bool,
        label: u64,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return false;
        };
        if session.suspect {
            return false; // queued behind a fresh handshake
        }
        // Data for a peer heard from moments ago needs no answer; probes
        // (empty and eliciting) always do.
        let ack_eliciting =
            ack_eliciting && (plaintext.is_empty() || session.wants_answer(now, &self.config));
        let Some(keys) = session
            .current
            .as_mut()
            .filter(|k| k.sealable(now, &self.config))
        else {
            return false;
        };
        let counter = keys.next_counter;
        keys.next_counter += 1;
        let mut buf = scratch::take();
        buf.extend_from_slice(&wire::data_header(
            ack_eliciting,
            keys.remote_index,
            counter,
        ));
        buf.resize(DATA_HEADER_LEN + plaintext.len() + TAG_LEN, 0);
        let nonce = wire::data_nonce(counter, ack_eliciting);
        keys.transport
            .seal(nonce, plaintext, &mut buf[DATA_HEADER_LEN..]);
        let rekey = keys.initiator
            && now >= keys.created + self.config.rekey_after
            && session.handshake.is_none();
        session.note_sent(now, ack_eliciting);
        self.stats.sealed += 1;
        self.push(Dest::Peer { peer, path }, buf, label);
        if rekey {
            if let Some(remote) = static_public(&peer) {
                self.start_handshake(now, peer, path, remote);
            }
        }
        true
    }

    /// Queue `plaintext` behind a handshake, starting one unless one runs
    /// or a handshake this node answered may be confirmed soon.
    fn enqueue(
        &mut self,
        now: Time,
        peer: PeerId,
        path: Option<Via>,
        plaintext: &[u8],
        ack_eliciting: bool,
        label: u64,
    ) {
        let starts = match self.sessions.get(&peer) {
            None => true,
            Some(s) => s.handshake.is_none() && !s.awaiting_confirmation(now, &self.config),
        };
        let remote = if starts {
            match static_public(&peer) {
                Some(remote) => Some(remote),
                None => {
                    self.stats.dropped_send += 1;
                    return;
                }
            }
        } else {
            None
        };
        let max_queued = self.config.max_queued_per_peer;
        let session = self.session(now, peer);
        session.last_active = now;
        let full = session.queue.len() >= max_queued;
        if full {
            session.queue.pop_front();
        }
        session.queue.push_back(Queued {
            plaintext: plaintext.to_vec(),
            path,
            ack_eliciting,
            label,
        });
        if full {
            self.stats.dropped_send += 1;
        }
        if let Some(remote) = remote {
            self.start_handshake(now, peer, path, remote);
        }
    }

    /// Send an initiation to `peer` (Noise static key `remote`).
    fn start_handshake(&mut self, now: Time, peer: PeerId, path: Option<Via>, remote: [u8; 32]) {
        self.session(now, peer);
        let local_index = self.new_index(peer, Some(handshake::sign_bit(&self.local.id)));
        let mut initiation = [0; INITIATION_LEN];
        initiation[0] = kind::INITIATION;
        initiation[1..5].copy_from_slice(&local_index.to_le_bytes());
        let seed = self.draw_seed();
        let (state, msg1) = handshake::initiate(
            self.config.crypto,
            &self.local,
            &remote,
            &initiation[..5],
            seed,
        );
        if self.config.crypto == Crypto::Real {
            self.stats.handshakes_computed += 1;
        }
        initiation[5..5 + MSG1_LEN].copy_from_slice(&msg1);
        cookie::stamp(&mut initiation, &cookie::mac1_key(&remote), None);
        let retry_at = now + self.config.handshake_timeout;
        let session = self.session(now, peer);
        assert!(session.handshake.is_none(), "one handshake per session");
        session.handshake = Some(Box::new(Handshake {
            state,
            local_index,
            remote_static: remote,
            initiation,
            path,
            sent: 1,
            retry_at,
            cookie: None,
            cookie_answered: 0,
        }));
        session.last_active = now;
        self.stats.handshakes_initiated += 1;
        self.push_copy(Dest::Peer { peer, path }, &initiation);
    }

    /// Send `peer`'s initiation again, with mac2 when a fresh cookie is
    /// known. `retry`: a timed retry (counted as an attempt).
    fn resend_initiation(&mut self, now: Time, peer: PeerId, retry: bool) {
        let timeout = self.config.handshake_timeout;
        let Some(hs) = self
            .sessions
            .get_mut(&peer)
            .and_then(|s| s.handshake.as_deref_mut())
        else {
            return;
        };
        let cookie = hs
            .cookie
            .filter(|&(_, at)| now < at + cookie::COOKIE_LIFETIME)
            .map(|(c, _)| c);
        cookie::stamp_mac2(&mut hs.initiation, cookie.as_ref());
        if retry {
            hs.sent = hs.sent.saturating_add(1);
        }
        hs.retry_at = now + timeout;
        let (dest, initiation) = (
            Dest::Peer {
                peer,
                path: hs.path,
            },
            hs.initiation,
        );
        self.push_copy(dest, &initiation);
    }

    // ---- the receive path ----------------------------------------------

    fn on_initiation(&mut self, now: Time, via: Via, d: &[u8]) -> Result<Incoming, Drop> {
        if d.len() != INITIATION_LEN {
            return Err(Drop::Malformed);
        }
        self.admit_initiation(now, via, d)?;
        let seed = self.draw_seed();
        if self.config.crypto == Crypto::Real {
            self.stats.handshakes_computed += 1;
        }
        let (header, msg1) = (&d[..5], &d[5..5 + MSG1_LEN]);
        let responded = handshake::respond(self.config.crypto, &self.local, header, msg1, seed)
            .map_err(|()| Drop::BadHandshake)?;
        let peer = responded.peer;
        if peer == self.local.id {
            return Err(Drop::BadHandshake);
        }
        check_source(&via, &peer)?;
        let (remote_index, origin) = (u32_at(d, 1), u64_at(d, 5));
        if let Some(outcome) = self.seen_initiation(via, peer, remote_index, origin) {
            return outcome;
        }
        self.answer(now, via, peer, responded, remote_index, origin);
        Ok(Incoming::Control)
    }

    /// mac1, then, under load, mac2 (or a cookie reply): everything an
    /// initiation must pass before it costs a DH.
    fn admit_initiation(&mut self, now: Time, via: Via, d: &[u8]) -> Result<(), Drop> {
        if !cookie::mac1_valid(d, &self.mac1_key) {
            return Err(Drop::BadMac);
        }
        let per_s = self.config.handshakes_per_s_before_cookies;
        if self.cookies.count_initiation(now, per_s)
            && !self.cookies.mac2_valid(now, &via, d, &mut self.rng)
        {
            let reply = self.cookies.reply(now, &via, d, &mut self.rng);
            self.stats.cookies_sent += 1;
            self.push_copy(Dest::Reply(via), &reply);
            return Err(Drop::NeedCookie);
        }
        Ok(())
    }

    /// The outcome of an authenticated initiation from `peer` that needs no
    /// new keys: the one still awaiting confirmation (answered again), the
    /// one the working keys came from (a replay), or one that loses the
    /// simultaneous-initiation tie.
    fn seen_initiation(
        &mut self,
        via: Via,
        peer: PeerId,
        remote_index: u32,
        origin: u64,
    ) -> Option<Result<Incoming, Drop>> {
        let session = self.sessions.get(&peer)?;
        if let Some(next) = session
            .next
            .as_ref()
            .filter(|n| n.keys.origin == origin && n.keys.remote_index == remote_index)
        {
            let response = next.response;
            self.push_copy(Dest::Reply(via), &response);
            return Some(Ok(Incoming::Control));
        }
        let answered = [session.current.as_ref(), session.previous.as_deref()]
            .into_iter()
            .flatten()
            .any(|k| !k.initiator && k.origin == origin);
        if answered {
            return Some(Err(Drop::ReplayedInitiation));
        }
        let ours_wins = session.handshake.is_some() && self.local.id < peer;
        ours_wins.then_some(Ok(Incoming::Control))
    }

    /// Answer `peer`'s initiation: new keys awaiting confirmation (beside
    /// the working ones, which they replace only once confirmed), and a
    /// response. A handshake of this node's own to `peer` is abandoned.
    fn answer(
        &mut self,
        now: Time,
        via: Via,
        peer: PeerId,
        responded: handshake::Responded,
        remote_index: u32,
        origin: u64,
    ) {
        self.session(now, peer);
        let local_index = self.new_index(peer, None);
        let mut response = [0; RESPONSE_LEN];
        response[0] = kind::RESPONSE;
        response[1..5].copy_from_slice(&local_index.to_le_bytes());
        response[5..9].copy_from_slice(&remote_index.to_le_bytes());
        response[9..9 + MSG2_LEN].copy_from_slice(&responded.msg);
        cookie::stamp(&mut response, &cookie::mac1_key(&responded.remote), None);
        let keys = KeyPair {
            transport: responded.transport,
            created: now,
            next_counter: 0,
            window: Default::default(),
            local_index,
            remote_index,
            origin,
            initiator: false,
        };
        let session = self.session(now, peer);
        session.last_active = now;
        session.handshake = None;
        session.next = Some(Box::new(Unconfirmed { keys, response }));
        self.push_copy(Dest::Reply(via), &response);
        self.reschedule(peer);
    }

    fn on_response(&mut self, now: Time, via: Via, d: &[u8]) -> Result<Incoming, Drop> {
        if d.len() != RESPONSE_LEN {
            return Err(Drop::Malformed);
        }
        if !cookie::mac1_valid(d, &self.mac1_key) {
            return Err(Drop::BadMac);
        }
        let receiver = u32_at(d, 5);
        let session = self
            .sessions
            .in_slot_of_mut(receiver)
            .ok_or(Drop::UnknownSession)?;
        let peer = session.peer;
        let hs = session
            .handshake
            .as_deref_mut()
            .filter(|h| h.local_index == receiver)
            .ok_or(Drop::UnknownSession)?;
        check_source(&via, &peer)?;
        if self.config.crypto == Crypto::Real {
            self.stats.handshakes_computed += 1;
        }
        hs.state
            .read_response(&d[9..9 + MSG2_LEN])
            .map_err(|()| Drop::BadHandshake)?;
        let hs = session.handshake.take().expect("checked above");
        let keys = KeyPair {
            transport: hs.state.into_transport(),
            created: now,
            next_counter: 0,
            window: Default::default(),
            local_index: hs.local_index,
            remote_index: u32_at(d, 1),
            origin: 0,
            initiator: true,
        };
        session.note_received(now, Some(via), false, &self.config);
        self.install(now, peer, keys);
        self.flush(now, peer, Some(hs.path));
        self.reschedule(peer);
        Ok(Incoming::Control)
    }

    fn on_cookie_reply(&mut self, now: Time, d: &[u8]) -> Result<Incoming, Drop> {
        if d.len() != wire::COOKIE_REPLY_LEN {
            return Err(Drop::Malformed);
        }
        let receiver = u32_at(d, 1);
        let session = self
            .sessions
            .in_slot_of_mut(receiver)
            .ok_or(Drop::UnknownSession)?;
        let peer = session.peer;
        let hs = session
            .handshake
            .as_deref_mut()
            .filter(|h| h.local_index == receiver)
            .ok_or(Drop::UnknownSession)?;
        let mac1 = &hs.initiation[wire::mac1_at(INITIATION_LEN)..wire::mac2_at(INITIATION_LEN)];
        let cookie = cookie::open_reply(d, &cookie::cookie_key(&hs.remote_static), mac1)
            .ok_or(Drop::BadSeal)?;
        hs.cookie = Some((cookie, now));
        if hs.cookie_answered != hs.sent {
            hs.cookie_answered = hs.sent;
            self.resend_initiation(now, peer, false);
            self.reschedule(peer);
        }
        Ok(Incoming::Control)
    }

    fn on_data(
        &mut self,
        now: Time,
        via: Via,
        d: &[u8],
        plaintext: &mut Vec<u8>,
    ) -> Result<Incoming, Drop> {
        if !(wire::DATA_OVERHEAD..=MAX_DATAGRAM).contains(&d.len()) {
            return Err(Drop::Malformed);
        }
        let (index, counter) = (u32_at(d, 1), u64_at(d, 5));
        let session = self
            .sessions
            .in_slot_of_mut(index)
            .ok_or(Drop::UnknownSession)?;
        let peer = session.peer;
        let slot = session.slot_of(index).ok_or(Drop::UnknownSession)?;
        let keys = session.keys_mut(slot).expect("the slot holds keys");
        if !keys.openable(now, &self.config) {
            return Err(Drop::Expired);
        }
        if !keys.window.is_new(counter) || counter >= peer::REJECT_AFTER_MESSAGES {
            return Err(Drop::Replay);
        }
        let eliciting = d[0] == kind::DATA_ACK_ELICITING;
        plaintext.resize(d.len() - wire::DATA_OVERHEAD, 0);
        let nonce = wire::data_nonce(counter, eliciting);
        if !keys.transport.open(nonce, &d[DATA_HEADER_LEN..], plaintext) {
            return Err(Drop::BadSeal);
        }
        check_source(&via, &peer)?;
        keys.window.commit(counter);
        self.stats.opened += 1;
        let roamed = session.note_received(now, Some(via), eliciting, &self.config);
        if slot == Slot::Next {
            self.confirm(now, peer);
        }
        self.reschedule(peer);
        Ok(Incoming::Data { peer, roamed })
    }

    fn on_identify_request(&mut self, now: Time, via: Via, d: &[u8]) -> Result<Incoming, Drop> {
        if !identify::is_request(d) {
            return Err(Drop::Malformed);
        }
        if self.identify.take_token(now) {
            self.stats.identify_answered += 1;
            let reply = identify::reply(d, &self.local.id);
            self.push_copy(Dest::Reply(via), &reply);
        } else {
            self.stats.identify_refused += 1;
        }
        Ok(Incoming::Control)
    }

    fn on_identify_reply(&mut self, via: Via, d: &[u8]) -> Result<Incoming, Drop> {
        if d.len() != wire::IDENTIFY_LEN {
            return Err(Drop::Malformed);
        }
        let Via::Direct(addr) = via else {
            return Err(Drop::UnknownSession);
        };
        let peer = self.identify.accept(addr, d).ok_or(Drop::UnknownSession)?;
        self.event(Event::Identified { addr, peer });
        Ok(Incoming::Control)
    }

    // ---- key changes -----------------------------------------------------

    /// Make `keys` the current keys of `peer` (the current ones become
    /// previous).
    fn install(&mut self, now: Time, peer: PeerId, keys: KeyPair) {
        let session = self
            .sessions
            .get_mut(&peer)
            .expect("installing into a session");
        let was_up = session.is_established(now, &self.config);
        session.previous = session.current.take().map(Box::new);
        session.current = Some(keys);
        self.stats.handshakes_completed += 1;
        if !was_up {
            self.event(Event::Established { peer });
        }
    }

    /// The initiator's first datagram under the keys this node answered
    /// with has opened: they become current (and a handshake of this
    /// node's own is no longer needed).
    fn confirm(&mut self, now: Time, peer: PeerId) {
        let session = self.sessions.get_mut(&peer).expect("confirming a session");
        let next = session.next.take().expect("confirming the next keys");
        session.handshake = None;
        self.install(now, peer, next.keys);
        self.flush(now, peer, None);
    }

    /// Seal everything queued for `peer`; `confirm`: the keys this node
    /// initiated over that path need a datagram to confirm them, empty if
    /// nothing is queued.
    fn flush(&mut self, now: Time, peer: PeerId, confirm: Option<Option<Via>>) {
        let Some(session) = self.sessions.get_mut(&peer) else {
            return;
        };
        let queue = std::mem::take(&mut session.queue);
        if let (true, Some(path)) = (queue.is_empty(), confirm) {
            self.seal(now, peer, path, &[], false, 0);
        }
        for q in queue {
            if !self.seal(now, peer, q.path, &q.plaintext, q.ack_eliciting, q.label) {
                self.stats.dropped_send += 1;
            }
        }
    }

    // ---- timers ------------------------------------------------------------

    fn on_timer(&mut self, now: Time, peer: PeerId) {
        let config = &self.config;
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        if s.unanswered_since
            .is_some_and(|t| now >= t + s.liveness_timeout(config))
        {
            self.declare_dead(peer);
            return;
        }
        let retry = s.handshake.as_ref().is_some_and(|h| now >= h.retry_at);
        if retry && !self.retry_handshake(now, peer) {
            return;
        }
        let s = self.sessions.get(&peer).expect("checked above");
        if s.confirmation_due(now, &self.config) {
            let path = s.queue.front().and_then(|q| q.path);
            match static_public(&peer) {
                Some(remote) => self.start_handshake(now, peer, path, remote),
                None => {
                    self.kill(peer);
                    return;
                }
            }
        }
        let s = self.sessions.get(&peer).expect("checked above");
        let probe = !s.probe_sent && s.liveness_deadline(&self.config).is_some_and(|t| now >= t);
        if probe {
            self.session(now, peer).probe_sent = true;
            self.seal(now, peer, None, &[], true, 0);
        }
        let s = self.session(now, peer);
        if s.ack_due.is_some_and(|t| now >= t) {
            s.ack_due = None;
            if self.seal(now, peer, None, &[], false, 0) {
                self.stats.acks_sent += 1;
            }
        }
    }

    /// Retry `peer`'s handshake, or give it up after the last attempt
    /// (the peer is dead, unless its current keys still work). Whether the
    /// session is still there.
    fn retry_handshake(&mut self, now: Time, peer: PeerId) -> bool {
        let session = self.sessions.get_mut(&peer).expect("retrying a session");
        let sent = session.handshake.as_ref().map_or(0, |h| h.sent);
        if sent < self.config.handshake_attempts {
            self.resend_initiation(now, peer, true);
            return true;
        }
        if session.is_established(now, &self.config) {
            session.handshake = None;
            return true;
        }
        self.kill(peer);
        false
    }

    /// Put `peer`'s earliest deadline in the timer set.
    fn reschedule(&mut self, peer: PeerId) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        let want = s.deadline(&self.config);
        if want != s.scheduled {
            if let Some(at) = s.scheduled {
                self.timers.remove(&(at, peer));
            }
            if let Some(at) = want {
                self.timers.insert((at, peer));
            }
            s.scheduled = want;
        }
    }

    /// Forget idle sessions; drop keys that can no longer open anything and
    /// keys that were never confirmed.
    fn sweep(&mut self, now: Time) {
        let config = &self.config;
        let unconfirmed_for = config.handshake_timeout * u32::from(config.handshake_attempts);
        let mut idle = Vec::new();
        for slot in self.sessions.slots_in_peer_order() {
            let s = self.sessions.at_mut(slot);
            if now >= s.last_active + config.idle_timeout {
                idle.push(s.peer);
                continue;
            }
            if s.previous
                .as_ref()
                .is_some_and(|k| !k.openable(now, config))
            {
                s.previous = None;
            }
            if s.current.as_ref().is_some_and(|k| !k.openable(now, config)) {
                s.current = None;
            }
            if s.next
                .as_ref()
                .is_some_and(|n| now >= n.keys.created + unconfirmed_for)
            {
                s.next = None;
            }
        }
        for peer in idle {
            self.remove(&peer);
        }
        self.sweep_at = (!self.sessions.is_empty()).then(|| now + self.sweep_every());
    }

    fn sweep_every(&self) -> Duration {
        (self.config.idle_timeout / 4).max(Duration::from_millis(1))
    }

    // ---- bookkeeping -------------------------------------------------------

    /// `peer`'s session, made (forgetting the least recently active one
    /// when full) if there is none.
    fn session(&mut self, now: Time, peer: PeerId) -> &mut Session {
        if !self.sessions.contains(&peer) {
            if self.sessions.len() >= self.config.max_sessions {
                // The least recently active: a handshake in progress is
                // recent, so a crowd of newcomers cannot push each other's
                // half-done sessions out (a contact meets one per join).
                let victim = self
                    .sessions
                    .iter()
                    .min_by_key(|s| s.last_active)
                    .map(|s| s.peer)
                    .expect("max_sessions is at least 1");
                self.remove(&victim);
            }
            if self.sweep_at.is_none() {
                self.sweep_at = Some(now + self.sweep_every());
            }
            return self.sessions.insert(Box::new(Session::new(now, peer)));
        }
        self.sessions.get_mut(&peer).expect("checked above")
    }

    /// Forget `peer`'s session, its indices, timer and queue.
    fn remove(&mut self, peer: &PeerId) {
        let Some(s) = self.sessions.remove(peer) else {
            return;
        };
        if let Some(at) = s.scheduled {
            self.timers.remove(&(at, *peer));
        }
        self.stats.dropped_send += s.queue.len() as u64;
    }

    /// Forget `peer`'s session and report it dead.
    fn kill(&mut self, peer: PeerId) {
        self.remove(&peer);
        self.event(Event::Dead { peer });
    }

    /// `peer` stopped answering: report it dead and drop what waits for
    /// it, but keep its keys, so that a peer only slow (a path that
    /// stalled) resumes without a handshake; idle expiry forgets them.
    fn declare_dead(&mut self, peer: PeerId) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        s.unanswered_since = None;
        s.probe_sent = false;
        s.suspect = true;
        let dropped = s.queue.len() as u64;
        s.queue.clear();
        self.stats.dropped_send += dropped;
        self.reschedule(peer);
        self.event(Event::Dead { peer });
    }

    /// A fresh local index for `peer`'s session (which exists): its slot,
    /// random bits, and bit 31 as `sign` says (an initiation's) or random;
    /// never one the session holds already.
    fn new_index(&mut self, peer: PeerId, sign: Option<u32>) -> u32 {
        let (keep, bits) = match sign {
            Some(bit) => (!handshake::SIGN_BIT, bit),
            None => (u32::MAX, 0),
        };
        let slot = self.sessions.slot(&peer).expect("the session exists");
        let session = self.sessions.get(&peer).expect("the session exists");
        for _ in 0..64 {
            let index = table::index(slot, self.rng.next_u32(), keep, bits);
            if session.indices().all(|i| i != index) {
                return index;
            }
        }
        panic!("no free session index in 64 draws: the random source is broken");
    }

    fn draw_seed(&mut self) -> [u8; 32] {
        let mut seed = [0; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    fn push(&mut self, dest: Dest, bytes: Vec<u8>, label: u64) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.dropped_send += 1;
            scratch::give(bytes);
            return;
        }
        self.transmits.push_back((dest, bytes, label));
    }

    fn push_copy(&mut self, dest: Dest, bytes: &[u8]) {
        let mut buf = scratch::take();
        buf.extend_from_slice(bytes);
        self.push(dest, buf, 0);
    }

    fn event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn count(&mut self, drop: Drop) {
        let counter = match drop {
            Drop::Malformed => &mut self.stats.dropped_malformed,
            Drop::BadMac | Drop::BadHandshake | Drop::BadSeal | Drop::WrongSource => {
                &mut self.stats.dropped_auth
            }
            Drop::Replay | Drop::ReplayedInitiation => &mut self.stats.dropped_replay,
            Drop::UnknownSession => &mut self.stats.dropped_unknown,
            Drop::Expired => &mut self.stats.dropped_expired,
            Drop::NeedCookie => return,
        };
        *counter += 1;
    }
}

/// A relayed datagram must come from the session's peer.
fn check_source(via: &Via, peer: &PeerId) -> Result<(), Drop> {
    match via {
        Via::Relayed { source, .. } if source != peer => Err(Drop::WrongSource),
        _ => Ok(()),
    }
}
