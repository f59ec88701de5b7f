//! One peer's session: its key pairs, its handshake, the plaintexts
//! waiting for it, its endpoint and its liveness timers.

use std::collections::VecDeque;
use std::time::Duration;

use super::cookie::MacBytes;
use super::handshake::{Initiating, Transport};
use super::replay::ReplayWindow;
use super::wire::{INITIATION_LEN, RESPONSE_LEN};
use super::{Config, Via};
use crate::{PeerId, Time};

/// Datagrams one key pair may seal (WireGuard's REJECT_AFTER_MESSAGES is
/// 2^64 - 2^13; the nonce here spends a bit on the datagram type).
pub(super) const REJECT_AFTER_MESSAGES: u64 = 1 << 60;

/// The keys of one completed handshake.
pub(super) struct KeyPair {
    pub(super) transport: Transport,
    pub(super) created: Time,
    /// The counter of the next datagram sealed.
    pub(super) next_counter: u64,
    pub(super) window: ReplayWindow,
    /// The index datagrams to this node carry.
    pub(super) local_index: u32,
    /// The index datagrams to the peer carry.
    pub(super) remote_index: u32,
    /// For keys this node answered: the first 8 bytes of the initiator's
    /// ephemeral, to recognise the same initiation replayed.
    pub(super) origin: u64,
    /// Whether this node initiated the handshake (and rekeys it).
    pub(super) initiator: bool,
}

impl KeyPair {
    pub(super) fn sealable(&self, now: Time, config: &Config) -> bool {
        self.openable(now, config) && self.next_counter < REJECT_AFTER_MESSAGES
    }

    pub(super) fn openable(&self, now: Time, config: &Config) -> bool {
        now < self.created + config.reject_after
    }
}

/// Keys this node answered a handshake with, not yet confirmed by a data
/// datagram from the initiator (so not yet used to seal).
pub(super) struct Unconfirmed {
    pub(super) keys: KeyPair,
    /// The response, sent again if the same initiation comes again.
    pub(super) response: [u8; RESPONSE_LEN],
}

/// A handshake this node initiated.
pub(super) struct Handshake {
    pub(super) state: Initiating,
    pub(super) local_index: u32,
    /// The responder's Noise static key.
    pub(super) remote_static: [u8; 32],
    /// The initiation, sent again (same bytes) on every retry.
    pub(super) initiation: [u8; INITIATION_LEN],
    pub(super) path: Option<Via>,
    /// Initiations sent (cookie-triggered resends not counted).
    pub(super) sent: u8,
    pub(super) retry_at: Time,
    /// The responder's last cookie and when it came.
    pub(super) cookie: Option<(MacBytes, Time)>,
    /// The attempt (`sent`) a cookie reply was already answered for: one
    /// immediate resend per attempt.
    pub(super) cookie_answered: u8,
}

/// A plaintext waiting for a handshake.
pub(super) struct Queued {
    pub(super) plaintext: Vec<u8>,
    pub(super) path: Option<Via>,
    pub(super) ack_eliciting: bool,
    pub(super) label: u64,
}

/// Which key pair of a session an index names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Current,
    Previous,
    Next,
}

/// Everything this node keeps about one peer.
pub(super) struct Session {
    pub(super) peer: PeerId,
    /// The keys datagrams are sealed with (inline: an idle session is
    /// mostly these).
    pub(super) current: Option<KeyPair>,
    /// The keys before the last handshake: they open datagrams in flight.
    pub(super) previous: Option<Box<KeyPair>>,
    pub(super) next: Option<Box<Unconfirmed>>,
    pub(super) handshake: Option<Box<Handshake>>,
    pub(super) queue: VecDeque<Queued>,
    /// Where the last authenticated datagram came from.
    pub(super) endpoint: Option<Via>,
    /// The last datagram sent or authenticated datagram received (LRU and
    /// idle expiry).
    pub(super) last_active: Time,
    /// The first ack-eliciting datagram sent since anything authenticated
    /// came back.
    pub(super) unanswered_since: Option<Time>,
    /// The probe of the current unanswered period was sent.
    pub(super) probe_sent: bool,
    /// The last authenticated datagram received.
    pub(super) last_received: Option<Time>,
    /// Reported dead and not heard from since: the next send handshakes
    /// again (the peer may have lost the session) instead of sealing.
    pub(super) suspect: bool,
    /// Smoothed time from an unanswered ack-eliciting datagram to the
    /// first answer (a round trip plus the peer's ack delay), RFC 6298's
    /// 1/8 gain.
    pub(super) answer_time: Option<Duration>,
    /// An ack is owed by then (unless something is sent first).
    pub(super) ack_due: Option<Time>,
    /// The deadline this session has in the timer set.
    pub(super) scheduled: Option<Time>,
}

impl Session {
    pub(super) fn new(now: Time, peer: PeerId) -> Self {
        Session {
            peer,
            current: None,
            previous: None,
            next: None,
            handshake: None,
            queue: VecDeque::new(),
            endpoint: None,
            last_active: now,
            unanswered_since: None,
            probe_sent: false,
            last_received: None,
            suspect: false,
            answer_time: None,
            ack_due: None,
            scheduled: None,
        }
    }

    /// Whether datagrams can be sealed now.
    pub(super) fn is_established(&self, now: Time, config: &Config) -> bool {
        self.current
            .as_ref()
            .is_some_and(|k| k.sealable(now, config))
    }

    /// The key pair whose local index is `index`.
    pub(super) fn slot_of(&self, index: u32) -> Option<Slot> {
        if self
            .current
            .as_ref()
            .is_some_and(|k| k.local_index == index)
        {
            Some(Slot::Current)
        } else if self
            .previous
            .as_ref()
            .is_some_and(|k| k.local_index == index)
        {
            Some(Slot::Previous)
        } else if self
            .next
            .as_ref()
            .is_some_and(|n| n.keys.local_index == index)
        {
            Some(Slot::Next)
        } else {
            None
        }
    }

    pub(super) fn keys_mut(&mut self, slot: Slot) -> Option<&mut KeyPair> {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Previous => self.previous.as_deref_mut(),
            Slot::Next => self.next.as_deref_mut().map(|n| &mut n.keys),
        }
    }

    /// Every local index this session holds.
    pub(super) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        let keys = [self.current.as_ref(), self.previous.as_deref()];
        keys.into_iter()
            .flatten()
            .map(|k| k.local_index)
            .chain(self.next.as_ref().map(|n| n.keys.local_index))
            .chain(self.handshake.as_ref().map(|h| h.local_index))
    }

    /// Whether a handshake this node answered may still be confirmed soon
    /// (then a send waits for it rather than initiating).
    pub(super) fn awaiting_confirmation(&self, now: Time, config: &Config) -> bool {
        self.next
            .as_ref()
            .is_some_and(|n| now < n.keys.created + config.handshake_timeout)
    }

    /// A data datagram was sent.
    pub(super) fn note_sent(&mut self, now: Time, ack_eliciting: bool) {
        self.last_active = now;
        self.ack_due = None;
        if ack_eliciting && self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
    }

    /// An authenticated datagram came from `via` (`None`: a handshake
    /// message that moves no endpoint). Whether the endpoint moved.
    pub(super) fn note_received(
        &mut self,
        now: Time,
        via: Option<Via>,
        ack_eliciting: bool,
        config: &Config,
    ) -> bool {
        self.last_active = now;
        self.last_received = Some(now);
        self.suspect = false;
        if let Some(since) = self.unanswered_since.take() {
            let sample = now.saturating_sub(since);
            self.answer_time = Some(match self.answer_time {
                Some(t) => (t * 7 + sample) / 8,
                None => sample,
            });
        }
        self.probe_sent = false;
        if ack_eliciting && self.ack_due.is_none() {
            self.ack_due = Some(now + config.ack_delay);
        }
        let Some(via) = via else { return false };
        let roamed = self.endpoint.is_some_and(|e| e != via);
        self.endpoint = Some(via);
        roamed
    }

    /// When the queue stops waiting for a handshake this node answered and
    /// starts its own.
    fn confirmation_deadline(&self, config: &Config) -> Option<Time> {
        if self.handshake.is_some() || self.queue.is_empty() {
            return None;
        }
        self.next
            .as_ref()
            .map(|n| n.keys.created + config.handshake_timeout)
    }

    /// How long an ack-eliciting datagram may go unanswered: the
    /// configured timeout, or three smoothed answer times on a slow
    /// (relayed, far) path, as QUIC's probe timeout grows with the RTT.
    pub(super) fn liveness_timeout(&self, config: &Config) -> Duration {
        let slow = self.answer_time.map_or(Duration::ZERO, |t| t * 3);
        config.liveness_timeout.max(slow)
    }

    /// The next liveness deadline: the probe, then death.
    pub(super) fn liveness_deadline(&self, config: &Config) -> Option<Time> {
        let timeout = self.liveness_timeout(config);
        self.unanswered_since.map(|since| {
            if self.probe_sent {
                since + timeout
            } else {
                since + timeout / 2
            }
        })
    }

    /// Whether a datagram sent now must be answered: only when nothing
    /// came from the peer for half the liveness timeout (a peer heard from
    /// that recently is alive; its next silence is checked at the next
    /// send after that), or an answer is already awaited.
    pub(super) fn wants_answer(&self, now: Time, config: &Config) -> bool {
        self.unanswered_since.is_some()
            || self
                .last_received
                .is_none_or(|t| now >= t + self.liveness_timeout(config) / 2)
    }

    /// The earliest timer of this session (idle expiry aside: the coarse
    /// sweep handles it).
    pub(super) fn deadline(&self, config: &Config) -> Option<Time> {
        [
            self.handshake.as_ref().map(|h| h.retry_at),
            self.confirmation_deadline(config),
            self.ack_due,
            self.liveness_deadline(config),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn confirmation_due(&self, now: Time, config: &Config) -> bool {
        self.confirmation_deadline(config).is_some_and(|t| now >= t)
    }
}
