//! The relay server: Circuit Relay v2 reservations and circuits over
//! datagrams, with the spec's limits.
//!
//! A private node RESERVEs a slot; the relay answers with a status, the
//! reservation's lifetime and the circuit limits, and the address it sees
//! the node at. Another peer then CONNECTs to the reserved node through
//! the relay: the relay asks the target with STOP, and on the target's OK
//! opens a circuit that forwards `RelayTo` frames as `RelayFrom` frames in
//! both directions until its duration or byte limit runs out.
//!
//! Everything is bounded: reservations in all, per IP and per network
//! (an IPv4 /16 stands in for the spec's ASN, which the simulator does not
//! model), circuits in all and per peer. Requests over a limit are refused
//! with `RESOURCE_LIMIT_EXCEEDED`, so a flood of requests costs the relay
//! no memory. Defaults are go-libp2p's and rust-libp2p's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Event, Message, Output, RelayEvent, Status};
use crate::config::{self, KeyError};
use crate::{PeerId, Time};

/// Limits of the relay service. Reservation and circuit lifetimes travel
/// in whole seconds: 1 s to 720 h.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Lifetime of a reservation (spec: 1 hour).
    #[serde(with = "crate::duration")]
    pub reservation_ttl: Duration,
    /// Reservations held at once (go-libp2p: 128); each of the reservation
    /// limits is 1 to [`MAX_RESERVATIONS_LIMIT`].
    pub max_reservations: usize,
    /// Reservations from one IP address (go-libp2p: 8).
    pub max_reservations_per_ip: usize,
    /// Reservations from one network, an IPv4 /16 standing in for an ASN
    /// (go-libp2p: 32 per ASN).
    pub max_reservations_per_network: usize,
    /// Circuits open at once (go-libp2p: 16); 1 to [`MAX_CIRCUITS_LIMIT`].
    pub max_circuits: usize,
    /// Circuits one peer takes part in (rust-libp2p: 4); 1 to
    /// [`MAX_CIRCUITS_PER_PEER_LIMIT`].
    pub max_circuits_per_peer: usize,
    /// A circuit's lifetime (spec: 2 minutes).
    #[serde(with = "crate::duration")]
    pub circuit_duration: Duration,
    /// Bytes a circuit carries in each direction (spec: 128 KiB); 1 to
    /// 2^32 - 1, the wire's field.
    pub circuit_bytes: u64,
    /// How long the target has to answer STOP (1 ms to 720 h).
    #[serde(with = "crate::duration")]
    pub stop_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reservation_ttl: Duration::from_secs(3600),
            max_reservations: 128,
            max_reservations_per_ip: 8,
            max_reservations_per_network: 32,
            max_circuits: 16,
            max_circuits_per_peer: 4,
            circuit_duration: Duration::from_secs(120),
            circuit_bytes: 128 * 1024,
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Most reservations (in all, per IP, per network) a relay may be set to
/// hold.
pub const MAX_RESERVATIONS_LIMIT: usize = 65_536;
/// Most circuits a relay may be set to hold open.
pub const MAX_CIRCUITS_LIMIT: usize = 65_536;
/// Most circuits per peer a relay may be set to allow.
pub const MAX_CIRCUITS_PER_PEER_LIMIT: usize = 1024;

impl Config {
    /// Check the bounds on each field's doc line; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        let second = Duration::from_secs(1);
        for (key, d) in [
            ("reservation_ttl", self.reservation_ttl),
            ("circuit_duration", self.circuit_duration),
        ] {
            config::duration_range(d, second, config::MAX_DURATION).map_err(KeyError::at(key))?;
        }
        config::interval(self.stop_timeout).map_err(KeyError::at("stop_timeout"))?;
        for (key, n) in [
            ("max_reservations", self.max_reservations),
            ("max_reservations_per_ip", self.max_reservations_per_ip),
            (
                "max_reservations_per_network",
                self.max_reservations_per_network,
            ),
        ] {
            config::range(n, 1, MAX_RESERVATIONS_LIMIT).map_err(KeyError::at(key))?;
        }
        config::range(self.max_circuits, 1, MAX_CIRCUITS_LIMIT)
            .map_err(KeyError::at("max_circuits"))?;
        config::range(self.max_circuits_per_peer, 1, MAX_CIRCUITS_PER_PEER_LIMIT)
            .map_err(KeyError::at("max_circuits_per_peer"))?;
        config::range(self.circuit_bytes, 1, u64::from(u32::MAX))
            .map_err(KeyError::at("circuit_bytes"))
    }
}

struct Reservation {
    peer: PeerId,
    addr: SocketAddr,
    expires: Time,
}

struct Circuit {
    src: PeerId,
    src_addr: SocketAddr,
    dst: PeerId,
    dst_addr: SocketAddr,
    /// Until the target answers STOP: when the request times out.
    open: bool,
    expires: Time,
    bytes_to_dst: u64,
    bytes_to_src: u64,
}

/// The relay's state.
pub(super) struct Server {
    config: Config,
    reservations: Vec<Reservation>,
    circuits: Vec<Circuit>,
}

fn network_of(ip: IpAddr) -> [u8; 3] {
    match ip {
        IpAddr::V4(a) => [4, a.octets()[0], a.octets()[1]],
        IpAddr::V6(a) => {
            let o = a.octets();
            [6, o[0], o[1]]
        }
    }
}

impl Server {
    pub(super) fn new(config: Config) -> Self {
        Server {
            config,
            reservations: Vec::new(),
            circuits: Vec::new(),
        }
    }

    /// A datagram from `peer` arrived from `addr`: if it holds a
    /// reservation, that is where it is now (its NAT changed its address or
    /// mapping; keep-alives find out long before the next refresh).
    pub(super) fn touch(&mut self, peer: &PeerId, addr: SocketAddr) {
        if let Some(r) = self.reservations.iter_mut().find(|r| r.peer == *peer) {
            r.addr = addr;
        }
    }

    /// Whether `peer` holds a reservation here.
    pub(super) fn has_reservation(&self, peer: &PeerId) -> bool {
        self.reservations.iter().any(|r| r.peer == *peer)
    }

    #[cfg(test)]
    pub(super) fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    #[cfg(test)]
    pub(super) fn circuit_count(&self) -> usize {
        self.circuits.len()
    }

    /// A RESERVE from `peer` at `addr`; `serving` is false when this node
    /// does not act as a relay (it is not publicly reachable).
    pub(super) fn reserve(
        &mut self,
        now: Time,
        serving: bool,
        peer: PeerId,
        addr: SocketAddr,
        out: &mut Outbox<'_>,
    ) {
        self.expire(now, out);
        let status = if !serving {
            Status::ReservationRefused
        } else if let Some(r) = self.reservations.iter_mut().find(|r| r.peer == peer) {
            // A refresh (possibly from a new address after a NAT rebinding).
            r.addr = addr;
            r.expires = now + self.config.reservation_ttl;
            Status::Ok
        } else if self.reservations.len() >= self.config.max_reservations
            || self
                .reservations
                .iter()
                .filter(|r| r.addr.ip() == addr.ip())
                .count()
                >= self.config.max_reservations_per_ip
            || self
                .reservations
                .iter()
                .filter(|r| network_of(r.addr.ip()) == network_of(addr.ip()))
                .count()
                >= self.config.max_reservations_per_network
        {
            Status::ResourceLimitExceeded
        } else {
            self.reservations.push(Reservation {
                peer,
                addr,
                expires: now + self.config.reservation_ttl,
            });
            Status::Ok
        };
        out.event(Event::Relay(match status {
            Status::Ok => RelayEvent::ReservationAccepted,
            s => RelayEvent::ReservationRefused(s),
        }));
        let ttl_s = if status == Status::Ok {
            self.config.reservation_ttl.as_secs() as u32
        } else {
            0
        };
        out.raw(
            addr,
            Message::ReserveStatus {
                status,
                ttl_s,
                limit_duration_s: self.config.circuit_duration.as_secs() as u32,
                limit_bytes: self.config.circuit_bytes.min(u64::from(u32::MAX)) as u32,
                observed: addr,
            },
        );
    }

    /// A CONNECT from `src` at `src_addr` to `target`.
    pub(super) fn connect(
        &mut self,
        now: Time,
        serving: bool,
        src: PeerId,
        src_addr: SocketAddr,
        target: PeerId,
        out: &mut Outbox<'_>,
    ) {
        self.expire(now, out);
        let refuse = |status: Status, out: &mut Outbox<'_>| {
            out.event(Event::Relay(RelayEvent::CircuitRefused(status)));
            out.raw(src_addr, Message::ConnectStatus { target, status });
        };
        if !serving {
            return refuse(Status::PermissionDenied, out);
        }
        if src == target {
            return refuse(Status::MalformedMessage, out);
        }
        if let Some(c) = self.find(src, target) {
            if self.circuits[c].open {
                // Asked again (a lost answer): the circuit stands.
                return out.raw(
                    src_addr,
                    Message::ConnectStatus {
                        target,
                        status: Status::Ok,
                    },
                );
            }
            return; // STOP is on its way
        }
        let Some(dst_addr) = self
            .reservations
            .iter()
            .find(|r| r.peer == target)
            .map(|r| r.addr)
        else {
            return refuse(Status::NoReservation, out);
        };
        let involving = |p: PeerId| {
            self.circuits
                .iter()
                .filter(|c| c.src == p || c.dst == p)
                .count()
        };
        if self.circuits.len() >= self.config.max_circuits
            || involving(src) >= self.config.max_circuits_per_peer
            || involving(target) >= self.config.max_circuits_per_peer
        {
            return refuse(Status::ResourceLimitExceeded, out);
        }
        self.circuits.push(Circuit {
            src,
            src_addr,
            dst: target,
            dst_addr,
            open: false,
            expires: now + self.config.stop_timeout,
            bytes_to_dst: 0,
            bytes_to_src: 0,
        });
        out.raw(
            dst_addr,
            Message::Stop {
                source: src,
                source_addr: src_addr,
            },
        );
    }

    /// The target's answer to STOP.
    pub(super) fn stop_status(
        &mut self,
        now: Time,
        dst: PeerId,
        source: PeerId,
        status: Status,
        out: &mut Outbox<'_>,
    ) {
        let Some(i) = self
            .circuits
            .iter()
            .position(|c| c.src == source && c.dst == dst && !c.open)
        else {
            return; // unsolicited or late
        };
        let src_addr = self.circuits[i].src_addr;
        if status == Status::Ok {
            let c = &mut self.circuits[i];
            c.open = true;
            c.expires = now + self.config.circuit_duration;
            out.event(Event::Relay(RelayEvent::CircuitOpened));
            out.raw(
                src_addr,
                Message::ConnectStatus {
                    target: dst,
                    status: Status::Ok,
                },
            );
        } else {
            self.circuits.swap_remove(i);
            out.event(Event::Relay(RelayEvent::CircuitRefused(
                Status::ConnectionFailed,
            )));
            out.raw(
                src_addr,
                Message::ConnectStatus {
                    target: dst,
                    status: Status::ConnectionFailed,
                },
            );
        }
    }

    /// A frame from `from` for `target`.
    pub(super) fn forward(
        &mut self,
        now: Time,
        from: PeerId,
        from_addr: SocketAddr,
        target: PeerId,
        data: bytes::Bytes,
        out: &mut Outbox<'_>,
    ) {
        self.expire(now, out);
        // The target's first frame can overtake its answer to STOP (the
        // network may reorder): a frame from the target of a circuit waiting
        // for that answer accepts the circuit.
        if let Some(i) = self.find(from, target) {
            let c = &self.circuits[i];
            if !c.open && c.dst == from {
                self.stop_status(now, from, target, Status::Ok, out);
            }
        }
        let Some(i) = self.find(from, target).filter(|&i| self.circuits[i].open) else {
            out.event(Event::Relay(RelayEvent::FrameRefused));
            out.raw(
                from_addr,
                Message::CircuitClosed {
                    peer: target,
                    status: Status::NoReservation,
                },
            );
            return;
        };
        let limit = self.config.circuit_bytes;
        let c = &mut self.circuits[i];
        let len = data.len() as u64;
        let (to_addr, sent) = if c.src == from {
            c.src_addr = from_addr;
            (c.dst_addr, &mut c.bytes_to_dst)
        } else {
            c.dst_addr = from_addr;
            (c.src_addr, &mut c.bytes_to_src)
        };
        if *sent + len > limit {
            self.close(i, Status::ResourceLimitExceeded, out);
            return;
        }
        *sent += len;
        out.raw(
            to_addr,
            Message::RelayFrom {
                source: from,
                source_addr: from_addr,
                data,
            },
        );
    }

    /// `from` no longer needs its open circuit with `peer` (their path
    /// became direct): close it, freeing its slots.
    pub(super) fn release(&mut self, from: PeerId, peer: PeerId, out: &mut Outbox<'_>) {
        if let Some(i) = self.find(from, peer).filter(|&i| self.circuits[i].open) {
            self.close(i, Status::Ok, out);
        }
    }

    fn find(&self, a: PeerId, b: PeerId) -> Option<usize> {
        self.circuits
            .iter()
            .position(|c| (c.src == a && c.dst == b) || (c.src == b && c.dst == a))
    }

    fn close(&mut self, i: usize, status: Status, out: &mut Outbox<'_>) {
        let c = self.circuits.swap_remove(i);
        if !c.open {
            out.event(Event::Relay(RelayEvent::CircuitRefused(
                Status::ConnectionFailed,
            )));
            out.raw(
                c.src_addr,
                Message::ConnectStatus {
                    target: c.dst,
                    status: Status::ConnectionFailed,
                },
            );
            return;
        }
        out.event(Event::Relay(RelayEvent::CircuitClosed {
            bytes: c.bytes_to_dst + c.bytes_to_src,
        }));
        out.raw(
            c.src_addr,
            Message::CircuitClosed {
                peer: c.dst,
                status,
            },
        );
        out.raw(
            c.dst_addr,
            Message::CircuitClosed {
                peer: c.src,
                status,
            },
        );
    }

    /// Drop what has run out: reservations, circuits past their duration,
    /// STOPs never answered.
    pub(super) fn expire(&mut self, now: Time, out: &mut Outbox<'_>) {
        self.reservations.retain(|r| r.expires > now);
        let mut i = 0;
        while i < self.circuits.len() {
            if self.circuits[i].expires <= now {
                self.close(i, Status::ResourceLimitExceeded, out);
            } else {
                i += 1;
            }
        }
    }

    /// The earliest instant something expires.
    pub(super) fn next_expiry(&self) -> Option<Time> {
        self.circuits.iter().map(|c| c.expires).min()
    }
}

/// Where the server puts its outputs (the traversal core's queue).
pub(super) struct Outbox<'a>(pub(super) &'a mut std::collections::VecDeque<Output>);

impl Outbox<'_> {
    fn raw(&mut self, to: SocketAddr, message: Message) {
        self.0.push_back(Output::Raw(to, message));
    }
    fn event(&mut self, event: Event) {
        self.0.push_back(Output::Event(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn id(i: u8) -> PeerId {
        PeerId([i; 32])
    }
    fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([198, a, b, 1], port))
    }
    fn statuses(q: &VecDeque<Output>) -> Vec<Status> {
        q.iter()
            .filter_map(|o| match o {
                Output::Raw(_, Message::ReserveStatus { status, .. })
                | Output::Raw(_, Message::ConnectStatus { status, .. }) => Some(*status),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reservations_are_capped_per_ip_network_and_in_all() {
        let config = Config {
            max_reservations: 10,
            max_reservations_per_ip: 2,
            max_reservations_per_network: 3,
            ..Config::default()
        };
        let mut s = Server::new(config);
        let mut q = VecDeque::new();
        let t = Time::ZERO;
        // Three peers from one IP: the third is refused.
        for i in 0..3 {
            s.reserve(
                t,
                true,
                id(i),
                addr(1, 1, 1000 + u16::from(i)),
                &mut Outbox(&mut q),
            );
        }
        assert_eq!(
            statuses(&q),
            [Status::Ok, Status::Ok, Status::ResourceLimitExceeded]
        );
        q.clear();
        // Same /16, other IP: one more fits the network cap of 3.
        s.reserve(t, true, id(10), addr(1, 2, 1000), &mut Outbox(&mut q));
        s.reserve(t, true, id(11), addr(1, 3, 1000), &mut Outbox(&mut q));
        assert_eq!(statuses(&q), [Status::Ok, Status::ResourceLimitExceeded]);
        q.clear();
        // A flood of ids from many networks stops at the total cap.
        for i in 0..50u8 {
            s.reserve(
                t,
                true,
                id(100 + i),
                addr(10 + i, 0, 1),
                &mut Outbox(&mut q),
            );
        }
        assert_eq!(s.reservation_count(), 10);
        // A refresh of an existing reservation is always accepted.
        q.clear();
        s.reserve(t, true, id(0), addr(1, 1, 2000), &mut Outbox(&mut q));
        assert_eq!(statuses(&q), [Status::Ok]);
        // A node that is not a relay refuses.
        q.clear();
        s.reserve(t, false, id(200), addr(99, 0, 1), &mut Outbox(&mut q));
        assert_eq!(statuses(&q), [Status::ReservationRefused]);
    }

    #[test]
    fn circuits_open_through_stop_and_close_at_their_byte_limit() {
        let config = Config {
            circuit_bytes: 100,
            ..Config::default()
        };
        let mut s = Server::new(config);
        let mut q = VecDeque::new();
        let t = Time::ZERO;
        let (a, b) = (id(1), id(2));
        let (aa, ba) = (addr(1, 1, 1), addr(2, 2, 2));
        // No reservation for the target: refused.
        s.connect(t, true, a, aa, b, &mut Outbox(&mut q));
        assert_eq!(statuses(&q), [Status::NoReservation]);
        q.clear();
        s.reserve(t, true, b, ba, &mut Outbox(&mut q));
        q.clear();
        s.connect(t, true, a, aa, b, &mut Outbox(&mut q));
        assert!(
            matches!(q.pop_front(), Some(Output::Raw(to, Message::Stop { source, .. })) if to == ba && source == a)
        );
        s.stop_status(t, b, a, Status::Ok, &mut Outbox(&mut q));
        assert_eq!(statuses(&q), [Status::Ok]);
        q.clear();
        let data = bytes::Bytes::from(vec![7u8; 60]);
        s.forward(t, a, aa, b, data.clone(), &mut Outbox(&mut q));
        assert!(
            matches!(q.pop_front(), Some(Output::Raw(to, Message::RelayFrom { source, .. })) if to == ba && source == a)
        );
        // The other direction has its own budget.
        s.forward(t, b, ba, a, data.clone(), &mut Outbox(&mut q));
        assert!(
            matches!(q.pop_front(), Some(Output::Raw(to, Message::RelayFrom { .. })) if to == aa)
        );
        // 60 + 60 > 100: the circuit closes, both ends are told.
        s.forward(t, a, aa, b, data, &mut Outbox(&mut q));
        let closed: Vec<_> = q
            .iter()
            .filter_map(|o| match o {
                Output::Raw(to, Message::CircuitClosed { status, .. }) => Some((*to, *status)),
                _ => None,
            })
            .collect();
        assert_eq!(
            closed,
            [
                (aa, Status::ResourceLimitExceeded),
                (ba, Status::ResourceLimitExceeded)
            ]
        );
        assert_eq!(s.circuit_count(), 0);
    }

    #[test]
    fn a_frame_from_the_target_overtaking_its_stop_answer_opens_the_circuit() {
        let mut s = Server::new(Config::default());
        let mut q = VecDeque::new();
        let t = Time::ZERO;
        let (a, b) = (id(1), id(2));
        let (aa, ba) = (addr(1, 1, 1), addr(2, 2, 2));
        s.reserve(t, true, b, ba, &mut Outbox(&mut q));
        s.connect(t, true, a, aa, b, &mut Outbox(&mut q));
        q.clear();
        // B's frame arrives before its STOP answer: delivered, and A told.
        s.forward(
            t,
            b,
            ba,
            a,
            bytes::Bytes::from_static(b"hi"),
            &mut Outbox(&mut q),
        );
        assert_eq!(statuses(&q), [Status::Ok]);
        assert!(q
            .iter()
            .any(|o| matches!(o, Output::Raw(to, Message::RelayFrom { .. }) if *to == aa)));
        // The late answer changes nothing; a frame from the source of a
        // pending circuit is still refused.
        q.clear();
        s.stop_status(t, b, a, Status::Ok, &mut Outbox(&mut q));
        assert!(q.is_empty());
        s.connect(t, true, id(3), addr(3, 3, 3), b, &mut Outbox(&mut q));
        q.clear();
        s.forward(
            t,
            id(3),
            addr(3, 3, 3),
            b,
            bytes::Bytes::from_static(b"x"),
            &mut Outbox(&mut q),
        );
        assert!(q
            .iter()
            .any(|o| matches!(o, Output::Raw(_, Message::CircuitClosed { .. }))));
    }

    #[test]
    fn a_reservation_follows_its_holder_to_a_new_address() {
        let mut s = Server::new(Config::default());
        let mut q = VecDeque::new();
        let (a, b) = (id(1), id(2));
        s.reserve(Time::ZERO, true, b, addr(2, 2, 2), &mut Outbox(&mut q));
        // B's NAT got a new address; its keep-alive comes from there.
        s.touch(&b, addr(3, 3, 3));
        s.touch(&a, addr(4, 4, 4)); // no reservation: nothing to move
        q.clear();
        s.connect(Time::ZERO, true, a, addr(1, 1, 1), b, &mut Outbox(&mut q));
        assert!(
            matches!(q.pop_front(), Some(Output::Raw(to, Message::Stop { .. })) if to == addr(3, 3, 3))
        );
        assert!(!s.has_reservation(&a));
    }

    #[test]
    fn circuits_expire_and_are_capped_per_peer() {
        let config = Config {
            max_circuits_per_peer: 2,
            ..Config::default()
        };
        let mut s = Server::new(config.clone());
        let mut q = VecDeque::new();
        let t = Time::ZERO;
        s.reserve(t, true, id(9), addr(9, 9, 9), &mut Outbox(&mut q));
        for i in 0..3 {
            s.connect(t, true, id(i), addr(i, 0, 1), id(9), &mut Outbox(&mut q));
            s.stop_status(t, id(9), id(i), Status::Ok, &mut Outbox(&mut q));
        }
        q.retain(|o| matches!(o, Output::Raw(_, Message::ConnectStatus { .. })));
        assert_eq!(
            statuses(&q),
            [Status::Ok, Status::Ok, Status::ResourceLimitExceeded]
        );
        q.clear();
        s.expire(t + config.circuit_duration, &mut Outbox(&mut q));
        assert_eq!(s.circuit_count(), 0);
        assert_eq!(
            q.iter()
                .filter(|o| matches!(o, Output::Raw(_, Message::CircuitClosed { .. })))
                .count(),
            4
        );
    }
}
