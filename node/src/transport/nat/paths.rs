//! Paths: how each peer is reached (straight to the address it last
//! spoke from, through its relay, or at the address a record gave),
//! routing, keep-alives and forgetting idle paths; and address
//! discovery: the addresses HELLOs and relays report for us, and the
//! record we advertise.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use super::dcutr::Upgrade;
use super::portmap::PortMap;
use super::relay_client::Circuit;
use super::{
    Event, Message, Method, Output, PathKind, Reach, Route, Status, Traversal, MAX_OBSERVATIONS,
};
use crate::{Peer, PeerId, Time};

/// A path unused and silent this long is forgotten.
pub(super) const PATH_IDLE: Duration = Duration::from_secs(600);
/// Peers told of a change of our reachability.
const HELLO_FANOUT: usize = 32;

/// How one peer is reached, and how its upgrade to a direct path goes.
pub(super) struct Path {
    /// The address the overlay cores use for this peer.
    pub(super) addr: SocketAddr,
    pub(super) direct: Option<SocketAddr>,
    pub(super) last_rx: Time,
    pub(super) last_tx: Time,
    pub(super) last_used: Time,
    pub(super) relay: Option<SocketAddr>,
    pub(super) reach: Reach,
    pub(super) circuit: Circuit,
    pub(super) pending: VecDeque<Bytes>,
    pub(super) upgrade: Upgrade,
    pub(super) upgrade_deadline: Option<Time>,
    pub(super) reported: Option<PathKind>,
    pub(super) hello_to: Option<SocketAddr>,
    /// A relay of ours: kept alive whether used or not.
    pub(super) pinned: bool,
}

impl Path {
    fn new(addr: SocketAddr, now: Time) -> Path {
        Path {
            addr,
            direct: None,
            last_rx: Time::ZERO,
            last_tx: now,
            last_used: now,
            relay: None,
            reach: Reach::Unknown,
            circuit: Circuit::None,
            pending: VecDeque::new(),
            upgrade: Upgrade::Idle,
            upgrade_deadline: None,
            reported: None,
            hello_to: None,
            pinned: false,
        }
    }

    pub(super) fn fresh_direct(&self, now: Time, timeout: Duration) -> Option<SocketAddr> {
        self.direct.filter(|_| now < self.last_rx + timeout)
    }
}

impl Traversal {
    /// Something is to be sent to a peer the application named by record
    /// (e.g. to connect to it): remember its relay.
    pub fn learn(&mut self, now: Time, peer: &Peer) {
        if !self.config.enabled || peer.id == self.me {
            return;
        }
        let Some(relay) = peer.relay else { return };
        // Third parties' records only fill in what the peer has not told
        // us itself (its HELLO); they add no second address.
        let p = self.path_mut(now, peer.id, peer.addr);
        if p.direct.is_none() && p.relay.is_none() {
            p.relay = Some(relay);
        }
    }

    /// A datagram from `peer` arrived directly from `from`. `hello` is the
    /// reachability it states if the datagram is a HELLO.
    pub fn on_direct(&mut self, now: Time, peer: PeerId, from: SocketAddr, hello: Option<Reach>) {
        if !self.config.enabled {
            return;
        }
        let timeout = self.config.path_timeout;
        let p = self.path_mut(now, peer, from);
        if let Some(r) = hello {
            p.reach = r;
        }
        let was_fresh = p.fresh_direct(now, timeout) == Some(from);
        let (old_direct, own_addr) = (p.direct, p.addr);
        p.direct = Some(from);
        p.last_rx = now;
        if was_fresh {
            return;
        }
        // The address a datagram came from is that peer's, whatever a
        // record said; an address it left is no longer its.
        if let Some(old) = old_direct.filter(|&a| a != from && a != own_addr) {
            if self.by_addr.get(&old) == Some(&peer) {
                self.by_addr.remove(&old);
            }
        }
        self.by_addr.insert(from, peer);
        let p = self.paths.get_mut(&peer).expect("present");
        // A new direct path: tell the peer where we see it, once per
        // address, and report the path with how it came about.
        let method = match &p.upgrade {
            Upgrade::Punching { method, .. } => *method,
            _ if p.reach == Reach::PortMapped => Method::PortMapping,
            _ => Method::DirectDial,
        };
        let attempt = match &p.upgrade {
            Upgrade::Punching {
                attempt,
                method: Method::HolePunch,
                ..
            } => *attempt,
            _ => 0,
        };
        let mut release = None;
        if matches!(
            p.upgrade,
            Upgrade::Connecting { .. } | Upgrade::Punching { .. }
        ) {
            p.upgrade = Upgrade::Done;
            p.upgrade_deadline = None;
            // The upgrade worked: free the relay's circuit slot (a relay
            // serves few circuits per peer; kept, they would block the
            // peer's next connections until they expire).
            if let Circuit::Open { relay } = p.circuit {
                p.circuit = Circuit::None;
                release = Some(relay);
            }
        }
        let send_hello = p.hello_to != Some(from);
        p.hello_to = Some(from);
        let report = p.reported != Some(PathKind::Direct);
        p.reported = Some(PathKind::Direct);
        self.upgrading.retain(|u| *u != peer);
        if send_hello {
            let message = self.hello(from);
            self.out.push_back(Output::To {
                peer,
                addr: from,
                message,
            });
        }
        if let Some(relay) = release {
            self.out.push_back(Output::Raw(
                relay,
                Message::CircuitClosed {
                    peer,
                    status: Status::Ok,
                },
            ));
        }
        if report {
            self.event(Event::Path {
                peer,
                kind: PathKind::Direct,
                method,
                attempt,
                addr: from,
            });
        }
    }

    /// A datagram from `peer` arrived through the relay at `relay`.
    pub fn on_relayed(&mut self, now: Time, peer: PeerId, relay: SocketAddr, addr: SocketAddr) {
        if !self.config.enabled {
            return;
        }
        // The frame came over a circuit through `relay`, which says nothing
        // of where the peer holds its own reservation (often `relay` is
        // ours): only its HELLO and its records say that.
        let _ = relay;
        let p = self.path_mut(now, peer, addr);
        p.last_used = now;
    }

    /// The address the overlay should use for `peer` (the one routes are
    /// kept under), if we track it.
    #[must_use]
    pub fn addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.paths.get(peer).map(|p| p.addr)
    }

    /// The kind of path a datagram for `peer` would take now (as
    /// [`Traversal::route_peer`] decides, without touching the path), if
    /// we track one.
    #[must_use]
    pub fn path_kind(&self, now: Time, peer: &PeerId) -> Option<PathKind> {
        let p = self.paths.get(peer)?;
        if p.fresh_direct(now, self.config.path_timeout).is_some() {
            return Some(PathKind::Direct);
        }
        let circuit = matches!(p.circuit, Circuit::Open { .. } | Circuit::Connecting { .. });
        Some(if circuit || p.relay.is_some() {
            PathKind::Relayed
        } else {
            PathKind::Direct
        })
    }

    /// Where a datagram for `peer` goes.
    pub(crate) fn route_peer(&mut self, now: Time, peer: PeerId) -> Route {
        let timeout = self.config.path_timeout;
        let Some(p) = self.paths.get_mut(&peer) else {
            return Route::Drop;
        };
        p.last_used = now;
        if let Some(d) = p.fresh_direct(now, timeout) {
            p.last_tx = now;
            return Route::Direct(d);
        }
        let circuit = matches!(p.circuit, Circuit::Open { .. } | Circuit::Connecting { .. });
        if circuit || p.relay.is_some() {
            return Route::Relayed(peer);
        }
        p.last_tx = now;
        Route::Direct(p.direct.unwrap_or(p.addr))
    }

    /// A HELLO from `from`: where it sees us (taken only straight from
    /// it), its reachability and its relay.
    pub(super) fn on_hello(
        &mut self,
        now: Time,
        from: Peer,
        via_relay: bool,
        observed: SocketAddr,
        relay: Option<SocketAddr>,
        reach: Reach,
    ) {
        if !via_relay {
            self.observe(now, from.addr.ip(), observed);
            if reach.is_public() {
                self.push_candidate(from.addr, false);
            }
        }
        let p = self.path_mut(now, from.id, from.addr);
        p.reach = reach;
        if relay.is_some() || reach.is_public() {
            p.relay = relay;
        }
    }

    /// Keep-alives on idle direct paths in use (and to our relays);
    /// forgetting paths unused and silent for [`PATH_IDLE`].
    pub(super) fn path_housekeeping(&mut self, now: Time) {
        let keepalive = self.config.keepalive_interval;
        let timeout = self.config.path_timeout;
        let mut idle = Vec::new();
        for (id, p) in &mut self.paths {
            let in_use = p.pinned || now < p.last_used + timeout;
            if let Some(d) = p.fresh_direct(now, timeout) {
                if in_use && now >= p.last_tx + keepalive {
                    p.last_tx = now;
                    self.out.push_back(Output::To {
                        peer: *id,
                        addr: d,
                        message: Message::KeepAlive,
                    });
                }
            }
            if !p.pinned
                && now >= p.last_used.max(p.last_rx) + PATH_IDLE
                && !matches!(p.circuit, Circuit::Open { .. } | Circuit::Connecting { .. })
            {
                idle.push(*id);
            }
        }
        for id in idle {
            self.forget(id);
        }
    }

    pub(super) fn path_mut(&mut self, now: Time, peer: PeerId, addr: SocketAddr) -> &mut Path {
        if !self.paths.contains_key(&peer) {
            if self.paths.len() >= self.config.max_paths {
                self.evict();
            }
            self.paths.insert(peer, Path::new(addr, now));
            // A record never takes an address from the peer that has it.
            self.by_addr.entry(addr).or_insert(peer);
        }
        self.paths.get_mut(&peer).expect("inserted")
    }

    /// Forget the least recently used path that is not a relay of ours.
    fn evict(&mut self) {
        let victim = self
            .paths
            .iter()
            .filter(|(_, p)| !p.pinned)
            .min_by_key(|(_, p)| p.last_used.max(p.last_rx))
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: PeerId) {
        if let Some(p) = self.paths.remove(&id) {
            self.pending_frames -= p.pending.len();
            for a in [Some(p.addr), p.direct].into_iter().flatten() {
                if self.by_addr.get(&a) == Some(&id) {
                    self.by_addr.remove(&a);
                }
            }
            self.upgrading.retain(|u| *u != id);
        }
    }

    pub(crate) fn hello(&self, observed: SocketAddr) -> Message {
        Message::Hello {
            observed,
            relay: self.advertised.relay,
            reach: self.reach,
        }
    }

    // ---- address discovery ----

    pub(super) fn observe(&mut self, now: Time, observer: IpAddr, addr: SocketAddr) {
        if observer == self.local.ip() || !crate::identity::usable(&addr) {
            return;
        }
        if let Some(o) = self.observations.iter_mut().find(|o| o.0 == observer) {
            o.1 = addr;
        } else {
            if self.observations.len() >= MAX_OBSERVATIONS {
                self.observations.remove(0);
            }
            self.observations.push((observer, addr));
        }
        let agreeing = self.observations.iter().filter(|o| o.1 == addr).count();
        if agreeing >= self.config.observers_needed && self.confirmed != Some(addr) {
            self.confirmed = Some(addr);
            self.update_advertised(now);
        }
    }

    /// Recompute the record we advertise; on a change, tell the application
    /// and the peers we talk to directly.
    pub(super) fn update_advertised(&mut self, now: Time) {
        let addr = match self.portmap {
            PortMap::Mapped { addr, .. } => addr,
            _ => self.confirmed.or(self.relay_observed).unwrap_or(self.local),
        };
        let relay = if self.reach.is_public() {
            None
        } else {
            self.relays().next()
        };
        let advertised = Peer {
            id: self.me,
            addr,
            relay,
        };
        if advertised == self.advertised && self.reach == self.announced_reach {
            return;
        }
        self.advertised = advertised;
        self.announced_reach = self.reach;
        self.event(Event::Reachability {
            reach: self.reach,
            advertised,
        });
        let timeout = self.config.path_timeout;
        let mut recent: Vec<(Time, SocketAddr, PeerId)> = self
            .paths
            .iter()
            .filter_map(|(id, p)| p.fresh_direct(now, timeout).map(|a| (p.last_used, a, *id)))
            .collect();
        recent.sort_unstable_by(|a, b| b.cmp(a));
        for (_, addr, peer) in recent.into_iter().take(HELLO_FANOUT) {
            let message = self.hello(addr);
            self.out.push_back(Output::To {
                peer,
                addr,
                message,
            });
        }
    }
}
