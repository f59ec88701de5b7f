//! AutoNAT: whether strangers can reach us. We ask a peer (the server)
//! to have our address dialled back by third peers (helpers, up to
//! [`MAX_DIAL_HELPERS`]); only a dial-back from an IP we had never sent to
//! before the probe says anything, as our NAT lets in whoever we sent to.
//! Results move a confidence counter. The same node serves others' probes
//! and helps with their dial-backs, within budgets.
//!
//! Several helpers, because a node talks to most of its neighbourhood
//! within seconds (every session datagram is answered): with one helper
//! the server's pick was nearly always a peer the client had contacted,
//! and a probe after the first proved nothing, so public nodes stayed
//! "unknown". A probe's outcome, once every helper answered or the
//! deadline passed: a dial-back from a stranger means reachable; a helper
//! that never dialled back (a stranger filtered out) means not reachable;
//! dial-backs only from IPs we had contacted mean ask again.

use std::net::{IpAddr, SocketAddr};

use rand::Rng;

use super::paths::PATH_IDLE;
use super::{spend, Message, Output, Reach, Traversal, MAX_DIAL_HELPERS};
use crate::{Peer, PeerId, Time};

/// Dial-back requests served (as server or helper) per window.
const DIALBACK_BUDGET: u32 = 20;
/// Dial-backs sent as a helper per window (each is one small datagram).
const HELPER_BUDGET: u32 = 100;
/// IPs remembered as sent to.
const MAX_CONTACTED: usize = 1024;

/// What we sent to one IP (AutoNAT's view of what our NAT lets in).
#[derive(Clone, Copy, Debug)]
pub(super) struct Contact {
    pub(super) first: Time,
    pub(super) last: Time,
    /// Our first datagram to it answered its handshake (it got in
    /// unsolicited); otherwise we spoke first and opened our NAT to it.
    pub(super) answered: bool,
}

pub(super) struct Probe {
    pub(super) server: IpAddr,
    pub(super) nonce: u64,
    /// When the probe was asked for.
    pub(super) since: Time,
    pub(super) deadline: Time,
    /// Helpers the server asked (0 until it answers, or if it declined).
    pub(super) helpers: u8,
    /// Dial-backs that came from IPs we had sent to before the probe.
    pub(super) known: u8,
}

impl Traversal {
    /// A datagram left straight for `to` (whatever chose the route);
    /// `answering`: it is a handshake response or cookie reply.
    pub(crate) fn on_sent(&mut self, now: Time, to: SocketAddr, answering: bool) {
        if !self.config.enabled {
            return;
        }
        let ip = to.ip();
        if self.contacted.len() >= MAX_CONTACTED && !self.contacted.contains_key(&ip) {
            let oldest = self
                .contacted
                .iter()
                .min_by_key(|(_, t)| t.last)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                self.contacted.remove(&oldest);
            }
        }
        self.contacted
            .entry(ip)
            .and_modify(|t| t.last = now)
            .or_insert(Contact {
                first: now,
                last: now,
                answered: answering,
            });
    }

    pub(super) fn serve_dial_request(&mut self, now: Time, from: Peer, nonce: u64) {
        let timeout = self.config.path_timeout;
        // Helpers that say they are publicly reachable first: a helper
        // behind a firewall that blocks UDP could not send the dial-back,
        // and its silence would read as the client being private.
        let candidates = |public_only: bool| -> Vec<(PeerId, SocketAddr)> {
            self.paths
                .iter()
                .filter(|(id, p)| **id != from.id && (!public_only || p.reach.is_public()))
                .filter_map(|(id, p)| p.fresh_direct(now, timeout).map(|a| (*id, a)))
                .filter(|(_, a)| a.ip() != from.addr.ip())
                .collect()
        };
        let mut helpers = candidates(true);
        if helpers.is_empty() {
            helpers = candidates(false);
        }
        // One helper per IP.
        helpers.sort_unstable_by_key(|(_, a)| a.ip());
        helpers.dedup_by_key(|(_, a)| a.ip());
        let mut asked = 0u8;
        if !helpers.is_empty() && self.spend_dialback_budget(now) {
            while usize::from(asked) < MAX_DIAL_HELPERS && !helpers.is_empty() {
                let i = self.rng.get().gen_range(0..helpers.len());
                let (_, helper) = helpers.swap_remove(i);
                self.out.push_back(Output::Raw(
                    helper,
                    Message::DialBackRequest {
                        nonce,
                        peer: from.id,
                        target: from.addr,
                    },
                ));
                asked += 1;
            }
        }
        self.out.push_back(Output::Raw(
            from.addr,
            Message::DialResponse {
                nonce,
                helpers: asked,
                observed: from.addr,
            },
        ));
    }

    fn spend_dialback_budget(&mut self, now: Time) -> bool {
        spend(&mut self.dialback_window, now, DIALBACK_BUDGET)
    }

    /// The server's answer to our probe: whether it asked a helper, and
    /// where it sees us.
    pub(super) fn on_dial_response(
        &mut self,
        now: Time,
        from: Peer,
        nonce: u64,
        helpers: u8,
        observed: SocketAddr,
    ) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.nonce == nonce) {
            p.helpers = helpers;
            // Declined, or every helper's dial-back already came from an
            // IP we knew: ask again later.
            if helpers == 0 || p.known >= helpers {
                self.probe = None;
                self.next_probe = now + self.config.autonat_retry;
            }
            self.observe(now, from.addr.ip(), observed);
        }
    }

    /// A server asks us, as a helper, to dial `peer` back at `target`
    /// (within [`HELPER_BUDGET`]).
    pub(super) fn on_dial_back_request(
        &mut self,
        now: Time,
        nonce: u64,
        peer: PeerId,
        target: SocketAddr,
    ) {
        if crate::identity::usable(&target)
            && peer != self.me
            && spend(&mut self.helper_window, now, HELPER_BUDGET)
        {
            self.out.push_back(Output::To {
                peer,
                addr: target,
                message: Message::DialBack { nonce },
            });
        }
    }

    /// A dial-back from `from`, for our probe if the nonce says so.
    pub(super) fn on_dial_back(&mut self, now: Time, from: Peer, nonce: u64) {
        let Some(p) = self.probe.as_mut().filter(|p| p.nonce == nonce) else {
            return;
        };
        // From an IP we had sent to before the probe, or first spoke to
        // ourselves since, a dial-back proves nothing: our NAT's filter
        // lets it in whether or not it would let a stranger in. Only a
        // helper whose handshake got in unsolicited (we answered it) is a
        // stranger that reached us.
        let known = self
            .contacted
            .get(&from.addr.ip())
            .is_some_and(|t| t.first < p.since || !t.answered);
        if !known {
            let server = p.server;
            self.probe = None;
            self.autonat_result(now, server, true);
            return;
        }
        p.known = p.known.saturating_add(1);
        if p.helpers > 0 && p.known >= p.helpers {
            // Every helper was someone we knew: ask again.
            self.probe = None;
            self.next_probe = now + self.config.autonat_retry;
        }
    }

    /// The probe's time is up: no dial-back came (a result, if a helper
    /// was asked).
    pub(super) fn probe_timer(&mut self, now: Time) {
        if self.probe.as_ref().is_some_and(|p| p.deadline <= now) {
            let p = self.probe.take().expect("checked");
            if p.helpers > p.known {
                // A helper's dial-back never came: a stranger was kept out.
                self.autonat_result(now, p.server, false);
            } else {
                self.next_probe = now + self.config.autonat_retry;
            }
        }
    }

    /// Start a probe if one is due.
    pub(super) fn start_probe_if_due(&mut self, now: Time) {
        if self.probe.is_none()
            && now >= self.next_probe
            && self.reach != Reach::PortMapped
            && !(self.reach == Reach::Unknown && self.local_public && self.paths.is_empty())
        {
            self.start_probe(now);
        }
    }

    /// Forget the IPs we have not sent to for [`PATH_IDLE`].
    pub(super) fn forget_contacted(&mut self, now: Time) {
        self.contacted.retain(|_, t| now < t.last + PATH_IDLE);
    }

    fn start_probe(&mut self, now: Time) {
        let timeout = self.config.path_timeout;
        // One candidate per IP, so that many ids on one host do not weigh
        // more than one; and, where there is another, not the server of the
        // result we are confirming.
        let mut servers: Vec<SocketAddr> = self
            .paths
            .values()
            .filter_map(|p| p.fresh_direct(now, timeout))
            .collect();
        servers.sort_unstable_by_key(|a| a.ip());
        servers.dedup_by_key(|a| a.ip());
        if let Some(last) = self.verdict_server {
            if servers.iter().any(|a| a.ip() != last) {
                servers.retain(|a| a.ip() != last);
            }
        }
        if servers.is_empty() {
            self.next_probe = now + self.config.autonat_retry;
            return;
        }
        let server = servers[self.rng.get().gen_range(0..servers.len())];
        let nonce = self.rng.get().gen();
        self.probe = Some(Probe {
            server: server.ip(),
            nonce,
            since: now,
            deadline: now + self.config.dial_back_timeout,
            helpers: 0,
            known: 0,
        });
        self.out
            .push_back(Output::Raw(server, Message::DialRequest { nonce }));
    }

    fn autonat_result(&mut self, now: Time, server: IpAddr, reachable: bool) {
        self.next_probe = now + self.config.autonat_interval;
        if self.reach == Reach::PortMapped {
            return;
        }
        let seen = if reachable {
            Reach::Public
        } else {
            Reach::Private
        };
        if self.reach == Reach::Unknown {
            // The first verdict needs two agreeing results in a row: one
            // lost dial-back must not make a public node private.
            let agreeing = match self.verdict {
                Some((v, n)) if v == seen => n + 1,
                _ => 1,
            };
            self.verdict = Some((seen, agreeing));
            if agreeing < 2 {
                self.verdict_server = Some(server);
                self.next_probe = now + self.config.autonat_retry;
                return;
            }
            self.verdict = None;
            self.verdict_server = None;
        }
        if self.reach == seen {
            self.confidence = (self.confidence + 1).min(self.config.autonat_confidence);
        } else if self.reach != Reach::Unknown && self.confidence > 0 {
            self.confidence -= 1;
        } else {
            self.reach = seen;
            self.confidence = 0;
            self.update_advertised(now);
        }
    }
}
