//! The relay client: reservations with relays (chosen among contacts and
//! public peers that said hello), circuits to peers through their relays,
//! frames queued while a circuit opens, and the STOPs and frames relays
//! bring us.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::{
    Event, Message, Method, Output, PathKind, Reach, ReservationOutcome, Status, Traversal,
    CONNECT_TIMEOUT,
};
use crate::{Peer, PeerId, Time};

/// Relay candidates kept.
const MAX_CANDIDATES: usize = 16;
/// Frames waiting for one circuit, and in all.
const MAX_PENDING_PER_PEER: usize = 8;
const MAX_PENDING: usize = 256;
/// After a refused circuit, before asking the same relay again.
const CIRCUIT_BACKOFF: Duration = Duration::from_secs(30);
/// A reservation request unanswered this long is tried elsewhere.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(3);
/// A relay that refused us is not asked again for this long.
const REFUSED_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Circuit {
    None,
    Connecting { relay: SocketAddr, since: Time },
    Open { relay: SocketAddr },
    Refused { until: Time },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResState {
    Pending { sent: Time, tries: u8 },
    Active { expires: Time, refresh_at: Time },
}

pub(super) struct Reservation {
    pub(super) relay: SocketAddr,
    /// The relay's id, from its first answer: later answers must carry it.
    pub(super) relay_id: Option<PeerId>,
    pub(super) state: ResState,
}

pub(super) struct Candidate {
    pub(super) addr: SocketAddr,
    pub(super) refused_until: Time,
    /// Given by the application (a contact): never pushed out by the
    /// candidates that peers' HELLOs name.
    pub(super) sticky: bool,
}

impl Traversal {
    pub(super) fn push_candidate(&mut self, addr: SocketAddr, sticky: bool) {
        if !self.config.enabled {
            return;
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.sticky |= sticky;
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            // Forget the oldest candidate that is neither a contact nor a
            // relay we hold a reservation with.
            let used: Vec<SocketAddr> = self.reservations.iter().map(|r| r.relay).collect();
            match self
                .candidates
                .iter()
                .position(|c| !c.sticky && !used.contains(&c.addr))
            {
                Some(i) => {
                    self.candidates.remove(i);
                }
                None => return,
            }
        }
        self.candidates.push(Candidate {
            addr,
            refused_until: Time::ZERO,
            sticky,
        });
    }

    pub(super) fn wants_relays(&self) -> bool {
        self.config.enabled
            && self.config.relays_wanted > 0
            && !self.reach.is_public()
            && (self.reach == Reach::Private || !self.local_public)
    }

    /// Send an encoded datagram to `peer` through its relay: over the open
    /// circuit, or queued while one is opened.
    pub(crate) fn send_relayed(&mut self, now: Time, peer: PeerId, data: Bytes) {
        let Some(p) = self.paths.get_mut(&peer) else {
            return;
        };
        match p.circuit {
            Circuit::Open { relay } => {
                self.out
                    .push_back(Output::Raw(relay, Message::RelayTo { target: peer, data }));
                return;
            }
            Circuit::Refused { until } if now < until => return,
            Circuit::Connecting { .. } => {}
            Circuit::None | Circuit::Refused { .. } => {
                let Some(relay) = p.relay else { return };
                p.circuit = Circuit::Connecting { relay, since: now };
                self.out
                    .push_back(Output::Raw(relay, Message::Connect { target: peer }));
            }
        }
        if p.pending.len() >= MAX_PENDING_PER_PEER || self.pending_frames >= MAX_PENDING {
            return; // dropped, as a full socket buffer would
        }
        p.pending.push_back(data);
        self.pending_frames += 1;
    }

    // ---- reservations ----

    pub(super) fn reservation_answer(
        &mut self,
        now: Time,
        from: Peer,
        status: Status,
        ttl_s: u32,
        observed: SocketAddr,
    ) {
        let Some(i) = self.reservations.iter().position(|r| r.relay == from.addr) else {
            return; // unsolicited
        };
        if self.reservations[i]
            .relay_id
            .is_some_and(|id| id != from.id)
        {
            return; // someone else speaking for the relay
        }
        // A reservation shorter than a minute would have us re-reserve and
        // re-announce ourselves all the time: as good as a refusal.
        if status == Status::Ok && ttl_s >= 60 {
            self.reservations[i].relay_id = Some(from.id);
            let ttl = Duration::from_secs(u64::from(ttl_s));
            let was_active = matches!(self.reservations[i].state, ResState::Active { .. });
            self.reservations[i].state = ResState::Active {
                expires: now + ttl,
                refresh_at: now + ttl / 2,
            };
            self.relay_observed = Some(observed);
            self.observe(now, from.addr.ip(), observed);
            self.path_mut(now, from.id, from.addr).pinned = true;
            if !was_active {
                self.event(Event::Reservation {
                    relay: from.addr,
                    outcome: ReservationOutcome::Ok,
                });
                self.update_advertised(now);
            }
        } else {
            let r = self.reservations.remove(i);
            self.unpin(&r);
            if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == from.addr) {
                c.refused_until = now + REFUSED_BACKOFF;
            }
            self.event(Event::Reservation {
                relay: from.addr,
                outcome: ReservationOutcome::Refused(status),
            });
            self.update_advertised(now);
        }
    }

    pub(super) fn manage_reservations(&mut self, now: Time) {
        if !self.wants_relays() {
            if !self.reservations.is_empty() {
                for r in std::mem::take(&mut self.reservations) {
                    self.unpin(&r);
                }
                self.update_advertised(now);
            }
            return;
        }
        let mut changed = false;
        let mut i = 0;
        while i < self.reservations.len() {
            let r = &mut self.reservations[i];
            match r.state {
                ResState::Active { expires, .. } if now >= expires => {
                    let relay = r.relay;
                    let r = self.reservations.remove(i);
                    self.unpin(&r);
                    // Not asked again at once: a relay whose reservations
                    // lapse is not to be relied on.
                    if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == relay) {
                        c.refused_until = now + CIRCUIT_BACKOFF;
                    }
                    self.event(Event::Reservation {
                        relay,
                        outcome: ReservationOutcome::Expired,
                    });
                    changed = true;
                    continue;
                }
                ResState::Active {
                    refresh_at,
                    expires,
                } if now >= refresh_at => {
                    r.state = ResState::Active {
                        expires,
                        refresh_at: now + RESERVE_TIMEOUT,
                    };
                    self.out.push_back(Output::Raw(r.relay, Message::Reserve));
                }
                ResState::Pending { sent, tries } if now >= sent + RESERVE_TIMEOUT => {
                    if tries >= 2 {
                        let relay = r.relay;
                        let r = self.reservations.remove(i);
                        self.unpin(&r);
                        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == relay) {
                            c.refused_until = now + CIRCUIT_BACKOFF * 2;
                        }
                        continue;
                    }
                    r.state = ResState::Pending {
                        sent: now,
                        tries: tries + 1,
                    };
                    self.out.push_back(Output::Raw(r.relay, Message::Reserve));
                }
                _ => {}
            }
            i += 1;
        }
        if changed {
            self.update_advertised(now);
        }
        while self.reservations.len() < self.config.relays_wanted {
            let next = self.candidates.iter().find(|c| {
                c.refused_until <= now
                    && c.addr != self.local
                    && !self.reservations.iter().any(|r| r.relay == c.addr)
            });
            let Some(c) = next else { break };
            let relay = c.addr;
            self.reservations.push(Reservation {
                relay,
                relay_id: None,
                state: ResState::Pending {
                    sent: now,
                    tries: 0,
                },
            });
            self.out.push_back(Output::Raw(relay, Message::Reserve));
        }
    }

    /// The relay of a reservation that ends is an ordinary path again.
    fn unpin(&mut self, r: &Reservation) {
        if let Some(p) = r.relay_id.and_then(|id| self.paths.get_mut(&id)) {
            p.pinned = false;
        }
    }

    // ---- circuits ----

    pub(super) fn circuit_answer(
        &mut self,
        now: Time,
        relay: SocketAddr,
        target: PeerId,
        status: Status,
    ) {
        let Some(p) = self.paths.get_mut(&target) else {
            return;
        };
        if !matches!(p.circuit, Circuit::Connecting { relay: r, .. } if r == relay) {
            return; // unsolicited or stale
        }
        if status == Status::Ok {
            p.circuit = Circuit::Open { relay };
            let frames = std::mem::take(&mut p.pending);
            self.pending_frames -= frames.len();
            for data in frames {
                self.out
                    .push_back(Output::Raw(relay, Message::RelayTo { target, data }));
            }
            self.report_relayed(target, relay, now);
        } else {
            p.circuit = Circuit::Refused {
                until: now + CIRCUIT_BACKOFF,
            };
            self.pending_frames -= p.pending.len();
            p.pending.clear();
            if status == Status::NoReservation {
                p.relay = None; // a stale record: the peer moved
            }
        }
    }

    fn report_relayed(&mut self, peer: PeerId, relay: SocketAddr, now: Time) {
        let timeout = self.config.path_timeout;
        let Some(p) = self.paths.get_mut(&peer) else {
            return;
        };
        if p.fresh_direct(now, timeout).is_some() || p.reported == Some(PathKind::Relayed) {
            return;
        }
        p.reported = Some(PathKind::Relayed);
        self.event(Event::Path {
            peer,
            kind: PathKind::Relayed,
            method: Method::Relay,
            attempt: 0,
            addr: relay,
        });
    }

    pub(super) fn stop(
        &mut self,
        now: Time,
        relay: SocketAddr,
        source: PeerId,
        source_addr: SocketAddr,
    ) {
        let ours = self.relays().any(|r| r == relay);
        if !ours || source == self.me {
            self.out.push_back(Output::Raw(
                relay,
                Message::StopStatus {
                    source,
                    status: Status::NoReservation,
                },
            ));
            return;
        }
        self.out.push_back(Output::Raw(
            relay,
            Message::StopStatus {
                source,
                status: Status::Ok,
            },
        ));
        // The circuit is the path; the peer's own relay (if any) comes
        // with its HELLO. Frames queued for a circuit of our own to it
        // take this one.
        let p = self.path_mut(now, source, source_addr);
        p.circuit = Circuit::Open { relay };
        p.last_used = now;
        let frames = std::mem::take(&mut p.pending);
        self.pending_frames -= frames.len();
        for data in frames {
            self.out.push_back(Output::Raw(
                relay,
                Message::RelayTo {
                    target: source,
                    data,
                },
            ));
        }
        self.report_relayed(source, relay, now);
        // The reserved side starts the upgrade (DCUtR).
        self.start_upgrade(now, source, 1);
    }

    /// A relay frame from `from`: the datagram it carries, sealed by
    /// `source`, if `from` relays for us.
    pub(super) fn on_relay_from(
        &mut self,
        from: Peer,
        source: PeerId,
        source_addr: SocketAddr,
        data: Bytes,
    ) -> Option<(PeerId, SocketAddr, Bytes)> {
        let via_our_relay = self.relays().any(|r| r == from.addr);
        // Our relays, the relay of a circuit of ours, or the source's own
        // relay (both sides may open a circuit to each other at once, each
        // through the other's relay).
        let via_circuit = self.paths.get(&source).is_some_and(|p| {
            p.relay == Some(from.addr)
                || matches!(p.circuit, Circuit::Open { relay } | Circuit::Connecting { relay, .. } if relay == from.addr)
        });
        if source == self.me || !(via_our_relay || via_circuit) {
            self.event(Event::Rejected {
                from: from.addr,
                what: "relay frame from a host that relays nothing for us",
            });
            return None;
        }
        Some((source, source_addr, data))
    }

    /// The relay at `from_addr` closed our circuit with `peer` (or `peer`
    /// closed it): frames waiting for it are dropped.
    pub(super) fn on_circuit_closed(&mut self, from_addr: SocketAddr, peer: PeerId) {
        if let Some(p) = self.paths.get_mut(&peer) {
            if matches!(p.circuit, Circuit::Open { relay } | Circuit::Connecting { relay, .. } if relay == from_addr)
            {
                p.circuit = Circuit::None;
                self.pending_frames -= p.pending.len();
                p.pending.clear();
            }
        }
    }

    /// Circuit requests unanswered for [`CONNECT_TIMEOUT`] are given up
    /// (and not asked again for [`CIRCUIT_BACKOFF`]); their frames dropped.
    pub(super) fn circuit_timeouts(&mut self, now: Time) {
        for p in self.paths.values_mut() {
            if let Circuit::Connecting { since, .. } = p.circuit {
                if now >= since + CONNECT_TIMEOUT {
                    p.circuit = Circuit::Refused {
                        until: now + CIRCUIT_BACKOFF,
                    };
                    self.pending_frames -= p.pending.len();
                    p.pending.clear();
                }
            }
        }
    }
}
