//! DCUtR: upgrading a relayed path to a direct one. The reserved side
//! sends CONNECT with its candidate addresses and times the answer; it
//! then sends SYNC and, RTT/2 later, punches, while the other side punches
//! on SYNC. If either side is publicly reachable, it is dialled directly
//! instead (a direct dial, or a connection reversal).

use std::net::SocketAddr;

use super::portmap::PortMap;
use super::{
    spend, Event, Message, Method, Output, Reach, Traversal, CONNECT_TIMEOUT, MAX_PUNCH_ADDRS,
};
use crate::{Peer, PeerId, Time};

/// Upgrades in progress at once.
const MAX_UPGRADES: usize = 32;
/// Hole-punch probes per window: up to 50 upgrades' worth (4 addresses
/// each), far above what joining an overlay takes.
const PUNCH_BUDGET: u32 = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Upgrade {
    Idle,
    /// We sent CONNECT at `sent` (we are the reserved side).
    Connecting {
        attempt: u8,
        sent: Time,
    },
    /// Punching with `method` at `addrs`; `punch_at` is a punch still to
    /// send (initiator: RTT/2 after SYNC); `initiator`: our side decides
    /// retries.
    Punching {
        attempt: u8,
        method: Method,
        addrs: Vec<SocketAddr>,
        punch_at: Option<Time>,
        deadline: Time,
        initiator: bool,
    },
    Done,
    Failed {
        until: Time,
    },
}

impl Traversal {
    /// A session with `peer` came up. A DCUtR CONNECT queued behind its
    /// handshake leaves now: the upgrade's round trip is timed from here,
    /// or RTT/2 would include the handshake's round trip and our punch
    /// would leave after the other side's had been filtered by our NAT.
    pub(crate) fn on_session_up(&mut self, now: Time, peer: PeerId) {
        if let Some(p) = self.paths.get_mut(&peer) {
            if let Upgrade::Connecting { sent, .. } = &mut p.upgrade {
                *sent = now;
            }
        }
    }

    fn candidates_for_punch(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(MAX_PUNCH_ADDRS);
        let mapped = match self.portmap {
            PortMap::Mapped { addr, .. } => Some(addr),
            _ => None,
        };
        let recent = self.observations.iter().rev().map(|o| o.1);
        for a in [mapped, self.confirmed, self.relay_observed]
            .into_iter()
            .flatten()
            .chain(recent)
        {
            if addrs.len() >= MAX_PUNCH_ADDRS {
                break;
            }
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            addrs.push(self.local);
        }
        addrs
    }

    pub(super) fn start_upgrade(&mut self, now: Time, peer: PeerId, attempt: u8) {
        if !self.config.holepunch {
            return;
        }
        let timeout = self.config.path_timeout;
        let busy = self.upgrading.len() >= MAX_UPGRADES;
        let Some(p) = self.paths.get_mut(&peer) else {
            return;
        };
        let blocked = match p.upgrade {
            Upgrade::Failed { until } => now < until,
            Upgrade::Connecting { .. } | Upgrade::Punching { .. } => attempt == 1,
            _ => false,
        };
        if blocked || busy && attempt == 1 || p.fresh_direct(now, timeout).is_some() {
            return;
        }
        p.upgrade = Upgrade::Connecting { attempt, sent: now };
        p.upgrade_deadline = Some(now + CONNECT_TIMEOUT);
        if !self.upgrading.contains(&peer) {
            self.upgrading.push(peer);
        }
        let message = Message::PunchConnect {
            attempt,
            reply: false,
            reach: self.reach,
            addrs: self.candidates_for_punch(),
        };
        self.out.push_back(Output::ToPeer(peer, message));
    }

    pub(super) fn punch_connect(
        &mut self,
        now: Time,
        peer: PeerId,
        attempt: u8,
        reply: bool,
        their_reach: Reach,
        addrs: Vec<SocketAddr>,
    ) {
        let my_reach = self.reach;
        let timeout = self.config.holepunch_timeout;
        let addrs: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(crate::identity::usable)
            .take(MAX_PUNCH_ADDRS)
            .collect();
        let busy = self.upgrading.len() >= MAX_UPGRADES && !self.upgrading.contains(&peer);
        let Some(p) = self.paths.get_mut(&peer) else {
            return;
        };
        p.reach = their_reach;
        if !reply {
            // We are the side that opened the circuit; the reserved side
            // leads. Answer with our addresses, then punch as the method
            // says.
            let repeated = matches!(p.upgrade, Upgrade::Punching { attempt: a, initiator: false, .. } if a == attempt);
            // Both sides lead when each received the other's circuit at
            // once: the lower id keeps leading, the higher one follows.
            let both_lead = matches!(p.upgrade, Upgrade::Connecting { .. }) && self.me < peer;
            if busy || addrs.is_empty() || repeated || both_lead {
                return;
            }
            let (initiator_reach, responder_reach) = (their_reach, my_reach);
            let method = method_for(responder_reach, initiator_reach);
            // Reversal: the initiator dials us; otherwise we dial (at once
            // for a public initiator, on SYNC for a hole punch).
            let dial_now = matches!(method, Method::DirectDial | Method::PortMapping);
            p.upgrade = Upgrade::Punching {
                attempt,
                method,
                addrs: addrs.clone(),
                punch_at: None,
                deadline: now + timeout * 2,
                initiator: false,
            };
            p.upgrade_deadline = Some(now + timeout * 2);
            if !self.upgrading.contains(&peer) {
                self.upgrading.push(peer);
            }
            let answer = Message::PunchConnect {
                attempt,
                reply: true,
                reach: my_reach,
                addrs: self.candidates_for_punch(),
            };
            self.out.push_back(Output::ToPeer(peer, answer));
            if dial_now {
                self.punch(now, peer, &addrs);
            }
            return;
        }
        // Our CONNECT answered: the RTT is known.
        let Upgrade::Connecting { attempt: a, sent } = p.upgrade else {
            return;
        };
        if a != attempt || addrs.is_empty() {
            return;
        }
        let rtt = now.saturating_sub(sent);
        let method = method_for(their_reach, my_reach);
        let punch_at = match method {
            Method::HolePunch => {
                self.out
                    .push_back(Output::ToPeer(peer, Message::PunchSync { attempt }));
                Some(now + rtt / 2)
            }
            Method::Reversal => Some(now),
            _ => None, // they dial us
        };
        let deadline = now + rtt / 2 + timeout;
        let p = self.paths.get_mut(&peer).expect("present");
        p.upgrade = Upgrade::Punching {
            attempt,
            method,
            addrs,
            punch_at,
            deadline,
            initiator: true,
        };
        p.upgrade_deadline = Some(punch_at.unwrap_or(deadline).min(deadline));
    }

    pub(super) fn punch_sync(&mut self, now: Time, peer: PeerId, attempt: u8) {
        let Some(p) = self.paths.get_mut(&peer) else {
            return;
        };
        if let Upgrade::Punching {
            attempt: a,
            addrs,
            initiator: false,
            method: Method::HolePunch,
            ..
        } = &mut p.upgrade
        {
            if *a == attempt {
                // Once per attempt: a repeated SYNC punches nothing more.
                let addrs = std::mem::take(addrs);
                self.punch(now, peer, &addrs);
            }
        }
    }

    /// A direct probe from `from`: acknowledged where it came from.
    pub(super) fn on_punch(&mut self, from: Peer, nonce: u64, ack: bool) {
        if !ack {
            self.out.push_back(Output::To {
                peer: from.id,
                addr: from.addr,
                message: Message::Punch { nonce, ack: true },
            });
        }
    }

    /// Send a probe to each of `addrs`, within the punch budget: whoever
    /// names the addresses (a peer's CONNECT) cannot make us send more than
    /// [`PUNCH_BUDGET`] probes per window, wherever they point.
    fn punch(&mut self, now: Time, peer: PeerId, addrs: &[SocketAddr]) {
        let nonce = u64::from_be_bytes(peer.0[..8].try_into().expect("8 bytes"));
        for &a in addrs {
            if !spend(&mut self.punch_window, now, PUNCH_BUDGET) {
                return;
            }
            self.out.push_back(Output::To {
                peer,
                addr: a,
                message: Message::Punch { nonce, ack: false },
            });
        }
    }

    pub(super) fn upgrade_timers(&mut self, now: Time) {
        let due: Vec<PeerId> = self
            .upgrading
            .iter()
            .copied()
            .filter(|id| {
                self.paths
                    .get(id)
                    .and_then(|p| p.upgrade_deadline)
                    .is_some_and(|d| d <= now)
            })
            .collect();
        for id in due {
            let attempts = self.config.holepunch_attempts;
            let backoff = self.config.upgrade_backoff;
            let Some(p) = self.paths.get_mut(&id) else {
                continue;
            };
            match &mut p.upgrade {
                Upgrade::Punching {
                    punch_at: at @ Some(_),
                    addrs,
                    deadline,
                    ..
                } if at.is_some_and(|t| t <= now) => {
                    *at = None;
                    let addrs = addrs.clone();
                    p.upgrade_deadline = Some(*deadline);
                    self.punch(now, id, &addrs);
                }
                Upgrade::Punching {
                    initiator: false, ..
                } => {
                    // The other side decides about retries.
                    p.upgrade = Upgrade::Idle;
                    p.upgrade_deadline = None;
                    self.upgrading.retain(|u| *u != id);
                }
                Upgrade::Punching { attempt, .. } | Upgrade::Connecting { attempt, .. } => {
                    let attempt = *attempt;
                    if attempt < attempts {
                        self.start_upgrade(now, id, attempt + 1);
                    } else {
                        p.upgrade = Upgrade::Failed {
                            until: now + backoff,
                        };
                        p.upgrade_deadline = None;
                        self.upgrading.retain(|u| *u != id);
                        self.event(Event::UpgradeFailed {
                            peer: id,
                            attempts: attempt,
                        });
                    }
                }
                _ => {
                    p.upgrade_deadline = None;
                    self.upgrading.retain(|u| *u != id);
                }
            }
        }
    }
}

/// The method of an upgrade between a reserved side (the DCUtR initiator)
/// and the side that opened the circuit, from what each says of itself.
fn method_for(responder: Reach, initiator: Reach) -> Method {
    if responder.is_public() {
        Method::Reversal
    } else if initiator == Reach::PortMapped {
        Method::PortMapping
    } else if initiator.is_public() {
        Method::DirectDial
    } else {
        Method::HolePunch
    }
}
