//! NAT traversal end to end: real [`Node`]s on virtual time, in a small
//! deterministic world with NAT boxes.
//!
//! Every datagram takes 10 ms. A host may sit behind a NAT with a public
//! IP: outbound datagrams leave with their source rewritten to the NAT's
//! address (endpoint-independent mapping that preserves the port, or, for a
//! symmetric NAT, a port per destination), and inbound datagrams are
//! filtered when they ARRIVE (full cone: anyone; port-restricted and
//! symmetric: only from an address and port the host has sent to from that
//! external port). A gateway may answer NAT-PMP (RFC 6886) on
//! `192.168.x.1:5351` and open a port to anyone.
//!
//! Hostile peers are [`Fake`]s: real identities with real sessions, so
//! what they send is authenticated like anyone's, but with no node behind
//! them, at any address a test picks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    natpmp, Event, Message, Method, PathKind, Reach, RelayEvent, ReservationOutcome, Status,
};
use crate::message::{self, Datagram};
use crate::node::{self, Node};
use crate::proto::plumtree::{self, MsgId};
use crate::transport::session::{self, Dest, Incoming as SessionIn, Sessions, Via};
use crate::transport::DropReason;
use crate::{Identity, Peer, PeerId, Time};

const HOP: Duration = Duration::from_millis(10);
const PORT: u16 = 7000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NatKind {
    FullCone,
    PortRestricted,
    /// A new external port per destination, port-restricted filtering.
    Symmetric,
}

/// What a NAT-PMP gateway says its external address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gateway {
    /// The NAT's own public address: mappings open the port.
    Public,
    /// A shared address behind a carrier-grade NAT (100.64/10): the
    /// mapping is granted but opens nothing on the internet.
    Shared(Ipv4Addr),
}

struct Nat {
    public: Ipv4Addr,
    kind: NatKind,
    gateway: Option<Gateway>,
    /// Destinations in order of first use (symmetric port allocation).
    dests: Vec<SocketAddr>,
    /// (external port, remote) pairs the host has sent to: the filter.
    sent: BTreeSet<(u16, SocketAddr)>,
    /// Ports opened by NAT-PMP.
    mapped: BTreeSet<u16>,
}

struct Host {
    node: Node,
    nat: Option<Nat>,
}

/// A datagram on its way.
struct Flight {
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
    /// The sending host (its local address).
    sender: SocketAddr,
    /// From a gateway, straight to this host on its LAN.
    lan: Option<SocketAddr>,
}

/// A datagram that arrived at a public address (a host's, or a NAT's).
#[derive(Clone, Debug)]
struct Arrival {
    at: Time,
    src: SocketAddr,
    dst: SocketAddr,
    sender: SocketAddr,
    /// The host it was handed to; `None`: no such host, or filtered.
    receiver: Option<SocketAddr>,
    bytes: Vec<u8>,
}

impl Arrival {
    /// What the datagram carries: the harness runs sessions in Null mode,
    /// whose data datagrams hold their plaintext in clear.
    fn decode(&self) -> Option<message::Message> {
        open_null(&self.bytes)
    }
}

/// The message in a Null-mode data datagram (header 13 bytes, zero tag
/// 16 bytes).
fn open_null(bytes: &[u8]) -> Option<message::Message> {
    if !matches!(bytes.first(), Some(0x13 | 0x14)) || bytes.len() < 29 {
        return None;
    }
    message::decode(&bytes[13..bytes.len() - 16])
        .ok()
        .map(|d| d.message)
}

/// A peer the harness plays itself: a real identity and a real session
/// layer at an address of the test's choosing, with no node behind them
/// (an attacker who holds keys). It answers handshakes and acks, opens
/// the relay frames sent to it, keeps every message it receives, and
/// sends only what the test makes it send.
struct Fake {
    id: PeerId,
    addr: SocketAddr,
    sessions: Sessions,
    /// Where the peers it speaks to directly are.
    peers: BTreeMap<PeerId, SocketAddr>,
    /// Every message received: when, and from which session's peer.
    inbox: Vec<(Time, PeerId, message::Message)>,
}

impl Fake {
    fn new(i: u8, addr: SocketAddr, config: &session::Config) -> Fake {
        let identity = fake_identity(i);
        Fake {
            id: identity.peer_id(),
            addr,
            sessions: Sessions::new(&identity, config.clone(), 0xfa00 + u64::from(i)),
            peers: BTreeMap::new(),
            inbox: Vec::new(),
        }
    }

    /// Seal `message` for `peer` (after a handshake, if there is no
    /// session yet) for the next [`Fake::poll_transmit`].
    fn send(&mut self, now: Time, peer: PeerId, message: message::Message) {
        let path = self.peers.get(&peer).map(|a| Via::Direct(*a));
        let plain = datagram(self.id, message);
        self.sessions.send(now, peer, path, &plain, true);
    }

    fn receive(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        let mut plain = Vec::new();
        let SessionIn::Data { peer, .. } =
            self.sessions
                .handle(now, Via::Direct(from), bytes, &mut plain)
        else {
            return;
        };
        let Some(message) = decode_from(peer, &plain) else {
            return; // an ack
        };
        if let message::Message::Nat(Message::RelayFrom { source, data, .. }) = &message {
            let via = Via::Relayed {
                relay: peer,
                source: *source,
            };
            if let SessionIn::Data { peer: p, .. } =
                self.sessions.handle(now, via, data, &mut plain)
            {
                if let Some(inner) = decode_from(p, &plain) {
                    self.inbox.push((now, p, inner));
                }
            }
        }
        self.inbox.push((now, peer, message));
    }

    /// The next datagram to put on the wire, and where to. What goes
    /// through a relay is wrapped in a `RelayTo` to it here.
    fn poll_transmit(&mut self, now: Time) -> Option<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let t = self.sessions.poll_transmit(&mut out)?;
            let via = match t.dest {
                Dest::Peer { path: Some(v), .. } | Dest::Reply(v) => Some(v),
                Dest::Peer { peer, path: None } => self
                    .sessions
                    .endpoint(&peer)
                    .or_else(|| self.peers.get(&peer).map(|a| Via::Direct(*a))),
            };
            match via {
                Some(Via::Direct(dst)) => return Some((dst, out)),
                Some(Via::Relayed { relay, source }) => {
                    let frame = Message::RelayTo {
                        target: source,
                        data: Bytes::from(out.clone()),
                    };
                    self.send(now, relay, message::Message::Nat(frame));
                }
                None => {}
            }
        }
    }

    /// The relay statuses (reservations, circuits) it received since
    /// `since`.
    fn relay_answers(&self, since: Time) -> Vec<Status> {
        self.inbox
            .iter()
            .filter(|(t, _, _)| *t >= since)
            .filter_map(|(_, _, m)| match m {
                message::Message::Nat(
                    Message::ReserveStatus { status, .. } | Message::ConnectStatus { status, .. },
                ) => Some(*status),
                _ => None,
            })
            .collect()
    }
}

/// The message in a plaintext sealed by `peer`, if it names `peer`.
fn decode_from(peer: PeerId, plain: &[u8]) -> Option<message::Message> {
    message::decode(plain)
        .ok()
        .filter(|d| d.from == peer)
        .map(|d| d.message)
}

struct World {
    now: Time,
    hosts: BTreeMap<SocketAddr, Host>,
    /// Fake peers by the seed of their identity ([`fake`]).
    fakes: BTreeMap<u8, Fake>,
    /// NAT public IP -> the host behind it.
    nats: BTreeMap<Ipv4Addr, SocketAddr>,
    in_flight: BTreeMap<(Time, u64), Flight>,
    events: Vec<(Time, SocketAddr, node::Event)>,
    log: Vec<Arrival>,
    seq: u64,
}

fn public(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, i], PORT))
}

fn private(i: u8) -> SocketAddr {
    SocketAddr::from(([192, 168, i, 2], PORT))
}

fn gateway_of(host: SocketAddr) -> SocketAddr {
    let IpAddr::V4(ip) = host.ip() else {
        unreachable!()
    };
    let o = ip.octets();
    SocketAddr::from(([o[0], o[1], o[2], 1], natpmp::SERVER_PORT))
}

fn nat_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, i)
}

/// Timers short enough for tests; everything else is the default.
fn fast() -> node::Config {
    let mut c = node::Config::default();
    // Null sessions: the same round trips and sizes, and the harness can
    // read what crosses the NATs.
    c.transport.crypto = session::Crypto::Null;
    c.nat.dial_back_timeout = Duration::from_secs(1);
    c.nat.autonat_retry = Duration::from_secs(2);
    c
}

impl World {
    fn new() -> World {
        World {
            now: Time::ZERO,
            hosts: BTreeMap::new(),
            fakes: BTreeMap::new(),
            nats: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            events: Vec::new(),
            log: Vec::new(),
            seq: 0,
        }
    }

    fn make_node(seed: u8, addr: SocketAddr, config: node::Config) -> Node {
        let identity = Identity::from_seed([seed; 32]);
        let rng = ChaCha8Rng::seed_from_u64(u64::from(seed));
        Node::new(&identity, addr, config, rng)
    }

    /// A host on a public address `198.51.100.i`.
    fn add_public(&mut self, i: u8, config: node::Config) -> SocketAddr {
        let addr = public(i);
        let node = Self::make_node(i, addr, config);
        self.hosts.insert(addr, Host { node, nat: None });
        addr
    }

    /// A host at `192.168.i.2` behind a NAT at `203.0.113.i`.
    fn add_natted(
        &mut self,
        i: u8,
        kind: NatKind,
        gateway: Option<Gateway>,
        mut config: node::Config,
    ) -> SocketAddr {
        let addr = private(i);
        if gateway.is_some() {
            config.nat.gateway = Some(gateway_of(addr));
        }
        let node = Self::make_node(i, addr, config);
        let nat = Nat {
            public: nat_ip(i),
            kind,
            gateway,
            dests: Vec::new(),
            sent: BTreeSet::new(),
            mapped: BTreeSet::new(),
        };
        self.nats.insert(nat_ip(i), addr);
        self.hosts.insert(
            addr,
            Host {
                node,
                nat: Some(nat),
            },
        );
        addr
    }

    fn node(&mut self, host: SocketAddr) -> &mut Node {
        &mut self.hosts.get_mut(&host).expect("host").node
    }

    fn peek(&self, host: SocketAddr) -> &Node {
        &self.hosts[&host].node
    }

    fn id(&self, host: SocketAddr) -> PeerId {
        self.hosts[&host].node.me().id
    }

    /// The host's NAT address (for a cone NAT, its only one).
    fn nat_addr(&self, host: SocketAddr) -> SocketAddr {
        let nat = self.hosts[&host].nat.as_ref().expect("natted");
        SocketAddr::new(IpAddr::V4(nat.public), PORT)
    }

    /// Every address a host is seen at on the internet.
    fn seen_at(&self, host: SocketAddr) -> BTreeSet<SocketAddr> {
        match &self.hosts[&host].nat {
            None => [host].into(),
            Some(nat) => nat
                .sent
                .iter()
                .map(|(port, _)| SocketAddr::new(IpAddr::V4(nat.public), *port))
                .collect(),
        }
    }

    fn join(&mut self, host: SocketAddr, contact: SocketAddr) {
        let now = self.now;
        self.node(host).join(now, contact);
        self.drain(host);
    }

    fn connect(&mut self, host: SocketAddr, peer: Peer) {
        let now = self.now;
        self.node(host).connect(now, peer);
        self.drain(host);
    }

    fn broadcast(&mut self, host: SocketAddr, payload: &'static [u8]) -> MsgId {
        let now = self.now;
        let id = self
            .node(host)
            .broadcast(now, Bytes::from_static(payload))
            .expect("small payload");
        self.drain(host);
        id
    }

    /// An authenticated fake peer, [`fake`]`(i)`, at `addr`.
    fn add_fake(&mut self, i: u8, addr: SocketAddr, config: &session::Config) {
        let fake = Fake::new(i, addr, config);
        assert!(self.fake_at(addr).is_none() && !self.hosts.contains_key(&addr));
        self.fakes.insert(i, fake);
    }

    fn fake_at(&self, addr: SocketAddr) -> Option<u8> {
        self.fakes
            .iter()
            .find(|(_, f)| f.addr == addr)
            .map(|(i, _)| *i)
    }

    /// Fake `i` sends from `addr` from now on (its sessions roam).
    fn move_fake(&mut self, i: u8, addr: SocketAddr) {
        assert!(self.fake_at(addr).is_none());
        self.fakes.get_mut(&i).expect("fake").addr = addr;
    }

    /// Fake `i` seals `message` for the host at the public address `to`
    /// and sends it there (after a handshake, if need be).
    fn fake_send(&mut self, i: u8, to: SocketAddr, message: message::Message) {
        let (now, peer) = (self.now, self.id(to));
        let fake = self.fakes.get_mut(&i).expect("fake");
        fake.peers.insert(peer, to);
        fake.send(now, peer, message);
        self.drain_fake(i);
    }

    /// Fake `i` seals `message` for `peer`, over a session it has, and
    /// hands the datagram back instead of sending it.
    fn fake_seal(&mut self, i: u8, peer: PeerId, message: message::Message) -> Vec<u8> {
        let now = self.now;
        let fake = self.fakes.get_mut(&i).expect("fake");
        assert!(
            fake.sessions.is_established(&peer),
            "a session to seal with"
        );
        let plain = datagram(fake.id, message);
        fake.sessions.send(now, peer, None, &plain, true);
        let mut out = Vec::new();
        let t = fake.sessions.poll_transmit(&mut out).expect("sealed");
        assert_eq!(t.dest, Dest::Peer { peer, path: None });
        out
    }

    fn drain_fake(&mut self, i: u8) {
        let now = self.now;
        let fake = self.fakes.get_mut(&i).expect("fake");
        let src = fake.addr;
        let mut out = Vec::new();
        while let Some(t) = fake.poll_transmit(now) {
            out.push(t);
        }
        for (dst, bytes) in out {
            self.inject(src, src, dst, bytes);
        }
    }

    fn relay_answers(&self, i: u8, since: Time) -> Vec<Status> {
        self.fakes[&i].relay_answers(since)
    }

    /// Put a datagram on the wire as if `sender` sent it from `src`.
    fn inject(&mut self, sender: SocketAddr, src: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        self.seq += 1;
        let flight = Flight {
            src,
            dst,
            bytes,
            sender,
            lan: None,
        };
        self.in_flight.insert((self.now + HOP, self.seq), flight);
    }

    fn drain(&mut self, at: SocketAddr) {
        let now = self.now;
        let mut out = Vec::new();
        loop {
            let host = self.hosts.get_mut(&at).expect("host");
            let Some(dst) = host.node.poll_transmit(&mut out).map(|t| t.dst) else {
                break;
            };
            self.seq += 1;
            let mut flight = Flight {
                src: at,
                dst,
                bytes: out.clone(),
                sender: at,
                lan: None,
            };
            if let Some(nat) = host.nat.as_mut() {
                if dst == gateway_of(at) {
                    // NAT-PMP on the LAN: answered by the gateway, if any.
                    let Some(reply) = Self::gateway_answer(nat, &out) else {
                        continue;
                    };
                    flight.src = dst;
                    flight.dst = at;
                    flight.bytes = reply;
                    flight.lan = Some(at);
                    self.in_flight
                        .insert((now + Duration::from_millis(1), self.seq), flight);
                    continue;
                }
                let port = match nat.kind {
                    NatKind::FullCone | NatKind::PortRestricted => PORT,
                    NatKind::Symmetric => {
                        let i = match nat.dests.iter().position(|d| *d == dst) {
                            Some(i) => i,
                            None => {
                                nat.dests.push(dst);
                                nat.dests.len() - 1
                            }
                        };
                        20000 + u16::try_from(i).expect("few destinations")
                    }
                };
                nat.sent.insert((port, dst));
                flight.src = SocketAddr::new(IpAddr::V4(nat.public), port);
            }
            self.in_flight.insert((now + HOP, self.seq), flight);
        }
        let host = self.hosts.get_mut(&at).expect("host");
        while let Some(e) = host.node.poll_event() {
            self.events.push((now, at, e));
        }
    }

    /// RFC 6886 answers from a gateway.
    fn gateway_answer(nat: &mut Nat, request: &[u8]) -> Option<Vec<u8>> {
        let gateway = nat.gateway?;
        let external = match gateway {
            Gateway::Public => nat.public,
            Gateway::Shared(ip) => ip,
        };
        let epoch = 1u32.to_be_bytes();
        match request {
            [0, 0] => {
                let mut r = vec![0, 128, 0, 0];
                r.extend_from_slice(&epoch);
                r.extend_from_slice(&external.octets());
                Some(r)
            }
            [0, 1, 0, 0, i0, i1, e0, e1, l0, l1, l2, l3] => {
                let internal = u16::from_be_bytes([*i0, *i1]);
                let suggested = u16::from_be_bytes([*e0, *e1]);
                let lifetime = u32::from_be_bytes([*l0, *l1, *l2, *l3]);
                // Port preserved (the host's mapping is at its own port).
                assert_eq!(internal, PORT);
                assert_eq!(suggested, PORT);
                if gateway == Gateway::Public && lifetime > 0 {
                    nat.mapped.insert(PORT);
                }
                let mut r = vec![0, 129, 0, 0];
                r.extend_from_slice(&epoch);
                r.extend_from_slice(&internal.to_be_bytes());
                r.extend_from_slice(&PORT.to_be_bytes());
                r.extend_from_slice(&lifetime.to_be_bytes());
                Some(r)
            }
            _ => None,
        }
    }

    /// Which host takes a datagram arriving now, if any.
    fn admit(&self, src: SocketAddr, dst: SocketAddr) -> Option<SocketAddr> {
        if let Some(h) = self.hosts.get(&dst) {
            return h.nat.is_none().then_some(dst);
        }
        let IpAddr::V4(ip) = dst.ip() else {
            return None;
        };
        let host = *self.nats.get(&ip)?;
        let nat = self.hosts[&host].nat.as_ref().expect("natted");
        let port = dst.port();
        let mapping_exists = nat.sent.iter().any(|(p, _)| *p == port);
        let allowed = nat.mapped.contains(&port)
            || (nat.kind == NatKind::FullCone && mapping_exists)
            || nat.sent.contains(&(port, src));
        allowed.then_some(host)
    }

    fn step(&mut self, end: Time) -> bool {
        let next_datagram = self.in_flight.keys().next().map(|k| k.0);
        let next_timer = self
            .hosts
            .values()
            .filter_map(|h| h.node.poll_timeout())
            .chain(
                self.fakes
                    .values()
                    .filter_map(|f| f.sessions.poll_timeout()),
            )
            .min();
        let Some(next) = [next_datagram, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > end {
            return false;
        }
        self.now = next;
        if next_datagram == Some(next) {
            let (_, f) = self.in_flight.pop_first().expect("due");
            if let Some(i) = self.fake_at(f.dst) {
                self.log.push(Arrival {
                    at: next,
                    src: f.src,
                    dst: f.dst,
                    sender: f.sender,
                    receiver: None,
                    bytes: f.bytes.clone(),
                });
                let fake = self.fakes.get_mut(&i).expect("fake");
                fake.receive(next, f.src, &f.bytes);
                self.drain_fake(i);
                return true;
            }
            let receiver = match f.lan {
                Some(host) => Some(host),
                None => self.admit(f.src, f.dst),
            };
            if f.lan.is_none() {
                self.log.push(Arrival {
                    at: next,
                    src: f.src,
                    dst: f.dst,
                    sender: f.sender,
                    receiver,
                    bytes: f.bytes.clone(),
                });
            }
            if let Some(host) = receiver {
                self.node(host).handle_datagram(next, f.src, &f.bytes);
                self.drain(host);
            }
        } else {
            let due: Vec<SocketAddr> = self
                .hosts
                .iter()
                .filter(|(_, h)| h.node.poll_timeout().is_some_and(|t| t <= next))
                .map(|(a, _)| *a)
                .collect();
            for a in due {
                self.node(a).handle_timeout(next);
                self.drain(a);
            }
            let due: Vec<u8> = self
                .fakes
                .iter()
                .filter(|(_, f)| f.sessions.poll_timeout().is_some_and(|t| t <= next))
                .map(|(i, _)| *i)
                .collect();
            for i in due {
                self.fakes
                    .get_mut(&i)
                    .expect("fake")
                    .sessions
                    .handle_timeout(next);
                self.drain_fake(i);
            }
        }
        true
    }

    fn run_until(&mut self, end: Time) {
        while self.step(end) {}
        self.now = end;
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    // ---- what happened ----

    fn nat_events(&self, host: SocketAddr) -> Vec<(Time, Event)> {
        self.events
            .iter()
            .filter(|(_, h, _)| *h == host)
            .filter_map(|(t, _, e)| match e {
                node::Event::Traversal(e) => Some((*t, e.clone())),
                _ => None,
            })
            .collect()
    }

    fn reachability(&self, host: SocketAddr) -> Vec<(Reach, Peer)> {
        self.nat_events(host)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Reachability { reach, advertised } => Some((reach, advertised)),
                _ => None,
            })
            .collect()
    }

    /// The record the host last advertised.
    fn advertised(&self, host: SocketAddr) -> Peer {
        self.reachability(host)
            .last()
            .expect("a Reachability event")
            .1
    }

    fn last_reach(&self, host: SocketAddr) -> Option<Reach> {
        self.reachability(host).last().map(|r| r.0)
    }

    fn reservations(&self, host: SocketAddr) -> Vec<(SocketAddr, ReservationOutcome)> {
        self.nat_events(host)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Reservation { relay, outcome } => Some((relay, outcome)),
                _ => None,
            })
            .collect()
    }

    /// Path events at `host` about `peer`: (time, kind, method, attempt).
    fn paths(&self, host: SocketAddr, peer: PeerId) -> Vec<(Time, PathKind, Method, u8)> {
        self.nat_events(host)
            .into_iter()
            .filter_map(|(t, e)| match e {
                Event::Path {
                    peer: p,
                    kind,
                    method,
                    attempt,
                    ..
                } if p == peer => Some((t, kind, method, attempt)),
                _ => None,
            })
            .collect()
    }

    fn upgrade_failures(&self, host: SocketAddr, peer: PeerId) -> Vec<u8> {
        self.nat_events(host)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::UpgradeFailed { peer: p, attempts } if p == peer => Some(attempts),
                _ => None,
            })
            .collect()
    }

    fn delivered(&self, id: MsgId) -> BTreeSet<SocketAddr> {
        self.events
            .iter()
            .filter(|(_, _, e)| matches!(e, node::Event::Delivered { id: d, .. } if *d == id))
            .map(|(_, h, _)| *h)
            .collect()
    }

    /// Datagrams `from` sent that reached `to` straight (not in relay
    /// frames), since `since`.
    fn direct(&self, from: SocketAddr, to: SocketAddr, since: Time) -> Vec<&Arrival> {
        self.log
            .iter()
            .filter(|a| a.at >= since && a.sender == from && a.receiver == Some(to))
            .collect()
    }

    /// Relay frames `from` sent for `to` (RelayTo with `to` as target), since
    /// `since`.
    fn relayed(&self, from: SocketAddr, to: SocketAddr, since: Time) -> Vec<&Arrival> {
        let target = self.id(to);
        self.log
            .iter()
            .filter(|a| a.at >= since && a.sender == from)
            .filter(|a| {
                matches!(a.decode(), Some(message::Message::Nat(Message::RelayTo { target: t, .. })) if t == target)
            })
            .collect()
    }
}

/// Two public relays (`.1` and `.2`, in no overlay yet) and three public
/// bystanders (`.3` to `.5`) that said hello to both. The bystanders are
/// the relays' AutoNAT helpers: strangers to whoever joins through a relay
/// later, so that their dial-backs say something.
/// Public hosts besides the relays: strangers to the nodes under test, so
/// that AutoNAT finds dial-back helpers their NATs have never let in
/// (every node helps others' probes, and a dial-back it sends opens its own
/// NAT to that peer).
const BYSTANDERS: u8 = 8;

fn relays(w: &mut World, config: &node::Config) -> (SocketAddr, SocketAddr) {
    let r1 = w.add_public(1, config.clone());
    let r2 = w.add_public(2, config.clone());
    for i in 3..=BYSTANDERS {
        let p = w.add_public(i, config.clone());
        for r in [r1, r2] {
            let record = Peer::new(w.id(r), r);
            w.connect(p, record);
        }
    }
    w.run_for(Duration::from_secs(3));
    (r1, r2)
}

/// Two homes behind port-restricted cones, A joined through relay 1 and B
/// (half a second later) through relay 2, after AutoNAT has had time for
/// its two agreeing results: (world, A, B, relay 1, relay 2).
///
/// They join through different relays: in one small overlay HyParView
/// would link them (through the relay, and hole punch) before any
/// `connect`.
fn two_port_restricted_homes() -> (World, SocketAddr, SocketAddr, SocketAddr, SocketAddr) {
    let config = fast();
    let mut w = World::new();
    let (r1, r2) = relays(&mut w, &config);
    let a = w.add_natted(101, NatKind::PortRestricted, None, config.clone());
    let b = w.add_natted(102, NatKind::PortRestricted, None, config.clone());
    w.join(a, r1);
    w.run_for(Duration::from_millis(500));
    w.join(b, r2);
    w.run_for(Duration::from_secs(10));
    (w, a, b, r1, r2)
}

fn kinds(paths: &[(Time, PathKind, Method, u8)]) -> Vec<(PathKind, Method, u8)> {
    paths.iter().map(|p| (p.1, p.2, p.3)).collect()
}

fn is_punch(a: &Arrival) -> bool {
    matches!(
        a.decode(),
        Some(message::Message::Nat(Message::Punch { ack: false, .. }))
    )
}

fn relay_events(w: &World, host: SocketAddr, since: Time) -> Vec<RelayEvent> {
    w.nat_events(host)
        .into_iter()
        .filter(|(t, _)| *t >= since)
        .filter_map(|(_, e)| match e {
            Event::Relay(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A Grove datagram from `from`.
fn datagram(from: PeerId, message: message::Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    message::encode(&Datagram { from, message }, &mut bytes).expect("encodable");
    bytes
}

fn fake_identity(i: u8) -> Identity {
    let mut seed = [0xfa; 32];
    seed[0] = i;
    Identity::from_seed(seed)
}

/// The id of the fake peer `i` ([`World::add_fake`]).
fn fake(i: u8) -> PeerId {
    fake_identity(i).peer_id()
}

/// Test 1: two nodes behind port-restricted cone NATs reserve a slot with
/// their relay, learn from AutoNAT that they are private, and `connect`
/// gives a relayed path, then a hole-punched direct one.
#[test]
fn port_restricted_nodes_are_private_and_hole_punch_on_connect() {
    let (mut w, a, b, r1, r2) = two_port_restricted_homes();
    let (ia, ib) = (w.id(a), w.id(b));
    for (h, relay) in [(a, r1), (b, r2)] {
        // The contact first; a second relay may follow (two are wanted).
        assert_eq!(w.reservations(h)[0], (relay, ReservationOutcome::Ok), "{h}");
        assert_eq!(w.last_reach(h), Some(Reach::Private), "{h}");
        assert_eq!(w.peek(h).reach(), Reach::Private);
        let record = w.advertised(h);
        assert_eq!(
            record.addr,
            w.nat_addr(h),
            "{h} advertises its NAT's address"
        );
        assert_eq!(record.relay, Some(relay), "{h} advertises its relay");
        // The join waited for the reservation, then went through.
        assert_eq!(w.peek(h).active_view(), [Peer::new(w.id(relay), relay)]);
    }
    assert_eq!(w.paths(a, ib), [], "A and B have not met");

    let t0 = w.now;
    let record = w.advertised(b);
    w.connect(a, record);
    w.run_for(Duration::from_secs(3));
    for (h, peer) in [(a, ib), (b, ia)] {
        assert_eq!(
            kinds(&w.paths(h, peer)),
            [
                (PathKind::Relayed, Method::Relay, 0),
                (PathKind::Direct, Method::HolePunch, 1)
            ],
            "{h}"
        );
    }
    let up = w.paths(a, ib)[1].0.max(w.paths(b, ia)[1].0);
    // A's HELLO went through B's relay, and the punches crossed both NATs.
    assert!(!w.relayed(a, b, t0).is_empty());
    for (from, to) in [(a, b), (b, a)] {
        let punch = w.direct(from, to, t0).into_iter().find(|d| is_punch(d));
        let punch = punch.unwrap_or_else(|| panic!("no punch from {from} reached {to}"));
        assert_eq!((punch.src, punch.dst), (w.nat_addr(from), w.nat_addr(to)));
    }
    // The relay opened the circuit and closed it once the path was direct.
    let circuit: Vec<RelayEvent> = relay_events(&w, r2, t0)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                RelayEvent::CircuitOpened | RelayEvent::CircuitClosed { .. }
            )
        })
        .collect();
    assert_eq!(circuit[0], RelayEvent::CircuitOpened);
    assert!(
        matches!(circuit[1..], [RelayEvent::CircuitClosed { .. }]),
        "{circuit:?}"
    );

    // Afterwards whatever they send each other goes straight: a new HELLO,
    // keep-alives.
    w.connect(a, record);
    w.run_for(Duration::from_secs(20));
    for (from, to) in [(a, b), (b, a)] {
        assert!(w.direct(from, to, up + HOP).len() >= 2, "{from} -> {to}");
        assert_eq!(w.relayed(from, to, up + HOP).len(), 0, "{from} -> {to}");
    }
}

/// Test 2: a symmetric NAT shows each destination another port, so punches
/// never meet: after three attempts the path stays relayed, and still
/// carries the overlay's traffic.
///
/// In this overlay of three HyParView makes A and B neighbours at once,
/// through the relay (as `connect` would); the upgrade starts from there.
#[test]
fn symmetric_to_port_restricted_stays_relayed_after_three_attempts() {
    let config = fast();
    assert_eq!(config.nat.holepunch_attempts, 3);
    let mut w = World::new();
    let (r1, _) = relays(&mut w, &config);
    let a = w.add_natted(101, NatKind::Symmetric, None, config.clone());
    let b = w.add_natted(102, NatKind::PortRestricted, None, config.clone());
    w.join(a, r1);
    w.run_for(Duration::from_secs(1));
    w.join(b, r1);
    w.run_for(Duration::from_secs(15));
    let (ia, ib) = (w.id(a), w.id(b));
    for h in [a, b] {
        assert_eq!(w.reservations(h), [(r1, ReservationOutcome::Ok)], "{h}");
    }
    // A's NAT gave each destination its own port: no observer agrees.
    assert!(w.seen_at(a).len() >= 2, "{:?}", w.seen_at(a));
    assert!(w.peek(a).active_view().iter().any(|p| p.id == ib));
    assert!(w.peek(b).active_view().iter().any(|p| p.id == ia));

    // Whoever holds the reservation the circuit went through led the
    // upgrade and gave up after three attempts.
    let failures = [w.upgrade_failures(a, ib), w.upgrade_failures(b, ia)];
    assert_eq!(failures.concat(), [3], "{failures:?}");
    let leader = if failures[0].is_empty() { b } else { a };
    let connects = |w: &World| {
        w.log
            .iter()
            .filter(|x| x.sender == leader)
            .filter_map(|x| match x.decode() {
                Some(message::Message::Nat(Message::RelayTo { data, .. })) => open_null(&data),
                _ => None,
            })
            .filter(|d| {
                matches!(
                    d,
                    message::Message::Nat(Message::PunchConnect { reply: false, .. })
                )
            })
            .count()
    };
    assert_eq!(connects(&w), 3, "one CONNECT per attempt");
    for (h, peer) in [(a, ib), (b, ia)] {
        assert_eq!(
            kinds(&w.paths(h, peer)),
            [(PathKind::Relayed, Method::Relay, 0)],
            "{h}"
        );
    }
    // Punches were sent both ways; none crossed the other NAT.
    for (from, to) in [(a, b), (b, a)] {
        let filtered = w
            .log
            .iter()
            .filter(|x| x.sender == from && x.receiver.is_none() && is_punch(x))
            .count();
        assert!(filtered > 0, "{from} punched");
        assert_eq!(w.direct(from, to, Time::ZERO).len(), 0, "{from} -> {to}");
    }

    // An explicit connect now goes through the relay and starts no new
    // upgrade (the failed one backs off).
    let t1 = w.now;
    let record = w.advertised(b);
    assert_eq!(record.relay, Some(r1));
    w.connect(a, record);
    w.run_for(Duration::from_secs(5));
    assert!(!w.relayed(a, b, t1).is_empty());
    assert_eq!(connects(&w), 3);
    assert_eq!(
        w.upgrade_failures(a, ib).len() + w.upgrade_failures(b, ia).len(),
        1
    );

    // A broadcast from A reaches B through the relay's circuit.
    let t1 = w.now;
    let id = w.broadcast(a, b"through the relay");
    w.run_for(Duration::from_secs(2));
    assert!(w.delivered(id).contains(&b));
    let carried = w
        .log
        .iter()
        .filter(|x| x.at >= t1 && x.receiver == Some(b))
        .any(|x| {
            let Some(message::Message::Nat(Message::RelayFrom { source, data, .. })) = x.decode()
            else {
                return false;
            };
            source == ia
                && matches!(
                    open_null(&data),
                    Some(message::Message::Plumtree(plumtree::Message::Gossip { id: g, .. })) if g == id
                )
        });
    assert!(
        carried,
        "the gossip crossed the relay in a RelayFrom from A"
    );
    assert_eq!(w.direct(a, b, Time::ZERO).len(), 0);
}

/// Test 3a: a public node connecting to a private one is dialled back by
/// it (connection reversal).
#[test]
fn a_public_node_reaches_a_private_one_by_reversal() {
    let config = fast();
    let mut w = World::new();
    let (r1, _) = relays(&mut w, &config);
    let a = w.add_natted(101, NatKind::PortRestricted, None, config.clone());
    w.join(a, r1);
    w.run_for(Duration::from_secs(10));
    assert_eq!(w.last_reach(a), Some(Reach::Private));
    let ia = w.id(a);
    // A bystander AutoNAT found public, and that A never met.
    let x = (3..=BYSTANDERS)
        .map(public)
        .find(|&p| w.last_reach(p) == Some(Reach::Public) && w.paths(p, ia).is_empty())
        .expect("a public bystander");
    let ix = w.id(x);
    let t0 = w.now;
    let record = w.advertised(a);
    assert_eq!(record.relay, Some(r1));
    w.connect(x, record);
    w.run_for(Duration::from_secs(3));
    for (h, peer) in [(x, ia), (a, ix)] {
        assert_eq!(
            kinds(&w.paths(h, peer)),
            [
                (PathKind::Relayed, Method::Relay, 0),
                (PathKind::Direct, Method::Reversal, 0)
            ],
            "{h}"
        );
    }
    // A dialled X; X never sent A anything its NAT dropped.
    let first = w.direct(a, x, t0)[0].at;
    assert!(w.direct(x, a, t0).iter().all(|d| d.at > first));
    let a_nat = w.nat_addr(a);
    assert!(!w
        .log
        .iter()
        .any(|d| d.at >= t0 && d.sender == x && d.dst == a_nat && d.receiver.is_none()));
}

/// Test 3b: behind a full-cone NAT AutoNAT says public, the node drops its
/// relay, and others (public, or behind their own NAT) dial it directly.
#[test]
fn a_full_cone_node_is_public_and_dialled_directly() {
    let config = fast();
    let mut w = World::new();
    let (r1, _) = relays(&mut w, &config);
    let f = w.add_natted(101, NatKind::FullCone, None, config.clone());
    w.join(f, r1);
    w.run_for(Duration::from_secs(12));
    let reach: Vec<Reach> = w.reachability(f).iter().map(|r| r.0).collect();
    assert_eq!(
        reach.first(),
        Some(&Reach::Unknown),
        "first: reserved, unknown"
    );
    assert_eq!(reach.last(), Some(&Reach::Public), "{reach:?}");
    assert_eq!(w.peek(f).reach(), Reach::Public);
    let record = w.advertised(f);
    assert_eq!(
        record,
        Peer::new(w.id(f), w.nat_addr(f)),
        "no relay in the record"
    );

    // A public node and a node behind a port-restricted NAT, neither of
    // which F has ever sent anything to.
    let y = w.add_public(9, config.clone());
    let n = w.add_natted(103, NatKind::PortRestricted, None, config.clone());
    let t0 = w.now;
    assert!(w
        .log
        .iter()
        .all(|d| d.sender != f || (d.dst != y && d.dst != w.nat_addr(n))));
    w.connect(y, record);
    w.connect(n, record);
    w.run_for(Duration::from_secs(2));
    let i_f = w.id(f);
    for h in [y, n] {
        assert_eq!(
            kinds(&w.paths(h, i_f)),
            [(PathKind::Direct, Method::DirectDial, 0)],
            "{h}"
        );
        assert!(
            !w.direct(h, f, t0).is_empty(),
            "{h}'s HELLO crossed F's NAT"
        );
        assert_eq!(w.relayed(h, f, t0).len(), 0);
        assert_eq!(
            kinds(&w.paths(f, w.id(h))),
            [(PathKind::Direct, Method::DirectDial, 0)]
        );
    }
}

/// Test 4: a gateway that grants a NAT-PMP mapping makes the node public
/// (port mapped), and others reach it directly through the mapping; behind
/// a carrier-grade NAT the mapping is on a shared address and is ignored.
#[test]
fn port_mappings_make_nodes_public_unless_the_address_is_shared() {
    let config = fast();
    let mut w = World::new();
    let (r1, r2) = relays(&mut w, &config);
    let m = w.add_natted(
        101,
        NatKind::PortRestricted,
        Some(Gateway::Public),
        config.clone(),
    );
    let shared = Ipv4Addr::new(100, 64, 7, 9);
    let d = w.add_natted(
        102,
        NatKind::PortRestricted,
        Some(Gateway::Shared(shared)),
        config.clone(),
    );
    w.join(m, r1);
    w.run_for(Duration::from_millis(500));
    w.join(d, r2);
    w.run_for(Duration::from_secs(6));

    let mappings = |h| -> Vec<(SocketAddr, bool)> {
        w.nat_events(h)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::PortMapping { external, public } => Some((external, public)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(mappings(m), [(w.nat_addr(m), true)]);
    assert_eq!(w.last_reach(m), Some(Reach::PortMapped));
    assert_eq!(w.peek(m).reach(), Reach::PortMapped);
    assert_eq!(w.advertised(m), Peer::new(w.id(m), w.nat_addr(m)));
    assert!(w.hosts[&m].nat.as_ref().unwrap().mapped.contains(&PORT));

    assert_eq!(
        mappings(d),
        [(SocketAddr::new(IpAddr::V4(shared), PORT), false)]
    );
    assert!(w.reachability(d).iter().all(|r| r.0 != Reach::PortMapped));
    assert_eq!(w.last_reach(d), Some(Reach::Private));
    assert_eq!(w.advertised(d).relay, Some(r2));

    // A public node and a NATed one that M never sent anything to reach M
    // directly through its mapping.
    let y = w.add_public(9, config.clone());
    let n = w.add_natted(103, NatKind::PortRestricted, None, config.clone());
    let t0 = w.now;
    let record = w.advertised(m);
    w.connect(y, record);
    w.connect(n, record);
    w.run_for(Duration::from_secs(2));
    let im = w.id(m);
    for h in [y, n] {
        assert_eq!(
            kinds(&w.paths(h, im)),
            [(PathKind::Direct, Method::PortMapping, 0)],
            "{h}"
        );
        assert!(!w.direct(h, m, t0).is_empty());
    }
}

/// Test 5: an overlay of 23 nodes, 10 behind port-restricted NATs, joined
/// through 3 public contacts with the default settings.
#[test]
fn a_mixed_overlay_forms_and_broadcasts_reach_everyone() {
    let config = node::Config::default();
    let mut w = World::new();
    let contacts: Vec<SocketAddr> = (1..=3).map(|i| w.add_public(i, config.clone())).collect();
    let mut hosts = contacts.clone();
    for i in 0..10u8 {
        hosts.push(w.add_public(10 + i, config.clone()));
        hosts.push(w.add_natted(110 + i, NatKind::PortRestricted, None, config.clone()));
    }
    for (k, &h) in hosts.iter().enumerate().skip(1) {
        let contact = contacts[k % 3];
        let contact = if contact == h { contacts[0] } else { contact };
        w.join(h, contact);
        w.run_for(Duration::from_millis(200));
    }
    w.run_for(Duration::from_secs(20));
    for &h in &hosts {
        assert!(
            !w.hosts[&h].node.active_view().is_empty(),
            "{h} has neighbours"
        );
    }
    for &h in hosts.iter().filter(|h| w.hosts[h].nat.is_some()) {
        assert!(
            w.reservations(h)
                .iter()
                .any(|r| r.1 == ReservationOutcome::Ok),
            "{h} reserved"
        );
        assert_ne!(w.peek(h).reach(), Reach::Public, "{h}");
    }
    let all: BTreeSet<SocketAddr> = hosts.iter().copied().collect();
    for origin in [private(115), public(13)] {
        let id = w.broadcast(origin, b"to everyone");
        w.run_for(Duration::from_secs(3));
        assert_eq!(w.delivered(id), all, "from {origin}");
    }
}

/// Test 6: a relay under a flood of reservations and circuits from
/// authenticated Sybils (fake peers that hold keys and handshake) keeps to
/// its limits; a relay frame carrying a datagram sealed by another peer
/// than the frame's source is dropped, and so is a plaintext one.
#[test]
fn relays_hold_their_limits_and_forged_frames_are_rejected() {
    let config = fast();
    let limits = config.nat.relay.clone();
    let mut w = World::new();
    let r = w.add_public(1, config.clone());
    let b = w.add_natted(102, NatKind::PortRestricted, None, config.clone());
    w.join(b, r);
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.reservations(b), [(r, ReservationOutcome::Ok)]);
    let (ir, ib) = (w.id(r), w.id(b));

    // 100 peer ids from one IP.
    let flooder = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 250));
    let t0 = w.now;
    for i in 0..100u8 {
        let src = SocketAddr::new(flooder, 10_000 + u16::from(i));
        w.add_fake(i, src, &config.transport);
        w.fake_send(i, r, message::Message::Nat(Message::Reserve));
    }
    w.run_for(Duration::from_secs(1));
    let statuses: Vec<Status> = (0..100u8).flat_map(|i| w.relay_answers(i, t0)).collect();
    let ok = limits.max_reservations_per_ip;
    assert_eq!(statuses.len(), 100);
    assert!(
        statuses[..ok].iter().all(|s| *s == Status::Ok),
        "{statuses:?}"
    );
    assert!(statuses[ok..]
        .iter()
        .all(|s| *s == Status::ResourceLimitExceeded));
    let events = relay_events(&w, r, t0);
    let accepted = events
        .iter()
        .filter(|e| **e == RelayEvent::ReservationAccepted)
        .count();
    let refused = events
        .iter()
        .filter(|e| **e == RelayEvent::ReservationRefused(Status::ResourceLimitExceeded))
        .count();
    assert_eq!((accepted, refused), (ok, 100 - ok));
    // The slots stay taken: refreshes pass (from a new port: the session
    // roams), newcomers from that IP do not.
    let t1 = w.now;
    w.move_fake(0, SocketAddr::new(flooder, 20_000));
    for i in [200u8, 201] {
        w.add_fake(
            i,
            SocketAddr::new(flooder, 20_000 + u16::from(i)),
            &config.transport,
        );
    }
    for i in [0u8, 200, 201] {
        w.fake_send(i, r, message::Message::Nat(Message::Reserve));
    }
    w.run_for(Duration::from_secs(1));
    let refreshed: Vec<Status> = [0u8, 200, 201]
        .into_iter()
        .flat_map(|i| w.relay_answers(i, t1))
        .collect();
    assert_eq!(
        refreshed,
        [
            Status::Ok,
            Status::ResourceLimitExceeded,
            Status::ResourceLimitExceeded
        ]
    );

    // Ten peers ask for a circuit to B: B takes part in at most
    // `max_circuits_per_peer`.
    let t2 = w.now;
    for i in 0..10u8 {
        let src = SocketAddr::from(([203, 0, 113, 150 + i], 7000));
        w.add_fake(100 + i, src, &config.transport);
        w.fake_send(
            100 + i,
            r,
            message::Message::Nat(Message::Connect { target: ib }),
        );
    }
    // One peer asks for circuits to the flooder's eight reserved ids.
    let greedy = 120;
    w.add_fake(
        greedy,
        SocketAddr::from(([203, 0, 113, 240], 7000)),
        &config.transport,
    );
    for i in 0..ok as u8 {
        w.fake_send(
            greedy,
            r,
            message::Message::Nat(Message::Connect { target: fake(i) }),
        );
    }
    w.run_for(Duration::from_secs(1));
    let per_peer = limits.max_circuits_per_peer;
    let to_b: Vec<(u8, Status)> = (100..110u8)
        .flat_map(|i| w.relay_answers(i, t2).into_iter().map(move |s| (i, s)))
        .collect();
    let opened: Vec<u8> = to_b
        .iter()
        .filter(|(_, s)| *s == Status::Ok)
        .map(|(i, _)| *i)
        .collect();
    let refused = to_b
        .iter()
        .filter(|(_, s)| *s == Status::ResourceLimitExceeded)
        .count();
    assert_eq!(
        (opened.len(), refused),
        (per_peer, 10 - per_peer),
        "{to_b:?}"
    );
    let stops = w
        .direct(r, b, t2)
        .into_iter()
        .filter(|x| {
            matches!(
                x.decode(),
                Some(message::Message::Nat(Message::Stop { .. }))
            )
        })
        .count();
    assert_eq!(stops, per_peer);
    // The greedy peer: STOPs to the first four targets (unanswered), the
    // rest refused.
    assert_eq!(
        w.relay_answers(greedy, t2),
        vec![Status::ResourceLimitExceeded; ok - per_peer]
    );

    // (a) A relay frame from one fake whose datagram another fake sealed.
    // B opened a session with each fake that has a circuit to it (for its
    // DCUtR CONNECT), so the datagram is a valid one, only not the frame
    // source's.
    let (liar, sealer) = (opened[0], opened[1]);
    let gossip = |id: u8| {
        message::Message::Plumtree(plumtree::Message::Gossip {
            id: MsgId([id; 32]),
            hops: 1,
            origin: PeerId([id; 32]),
            template: None,
            payload: Bytes::from_static(b"forged"),
        })
    };
    let sealed = Bytes::from(w.fake_seal(sealer, ib, gossip(1)));
    let relay_to = |data: &Bytes| {
        message::Message::Nat(Message::RelayTo {
            target: ib,
            data: data.clone(),
        })
    };
    let t3 = w.now;
    let (dropped_in, dropped_auth) = (
        w.peek(b).stats().malformed_in,
        w.peek(b).session_stats().dropped_auth,
    );
    w.fake_send(liar, r, relay_to(&sealed));
    w.run_for(Duration::from_millis(100));
    let wrong_source: Vec<SocketAddr> = w
        .events
        .iter()
        .filter(|(t, h, _)| *t >= t3 && *h == b)
        .filter_map(|(_, _, e)| match e {
            node::Event::Dropped {
                from,
                reason: DropReason::Session(session::Drop::WrongSource),
            } => Some(*from),
            _ => None,
        })
        .collect();
    assert_eq!(wrong_source, [r]);
    assert!(w.delivered(MsgId([1; 32])).is_empty(), "not delivered");
    assert_eq!(w.peek(b).stats().malformed_in, dropped_in + 1);
    assert_eq!(w.peek(b).session_stats().dropped_auth, dropped_auth + 1);
    // The same datagram in a frame from its sealer is delivered (so the
    // drop above is the mismatch's doing).
    w.fake_send(sealer, r, relay_to(&sealed));
    w.run_for(Duration::from_millis(100));
    assert!(w.delivered(MsgId([1; 32])).contains(&b));

    // (b) A plaintext relay frame, from the relay's address, as a relay
    // without keys would forge it: no answer, no state.
    let forged = datagram(
        ir,
        message::Message::Nat(Message::RelayFrom {
            source: fake(sealer),
            source_addr: SocketAddr::from(([203, 0, 113, 77], 7000)),
            data: Bytes::from(datagram(fake(sealer), gossip(2))),
        }),
    );
    let (stats, sessions) = (w.peek(b).stats(), w.peek(b).session_stats());
    let (in_flight, events) = (w.in_flight.len(), w.events.len());
    let now = w.now;
    w.node(b).handle_datagram(now, r, &forged);
    w.drain(b);
    assert_eq!(w.in_flight.len(), in_flight, "no answer");
    assert_eq!(
        w.peek(b).session_stats(),
        session::Stats {
            dropped_malformed: sessions.dropped_malformed + 1,
            ..sessions
        }
    );
    assert_eq!(w.peek(b).stats().malformed_in, stats.malformed_in + 1);
    assert!(matches!(
        &w.events[events..],
        [(_, _, node::Event::Dropped { from, reason: DropReason::Session(session::Drop::Malformed) })] if *from == r
    ));
    w.run_for(Duration::from_millis(100));
    assert!(w.delivered(MsgId([2; 32])).is_empty());
}

/// A plaintext RESERVE naming any id gets no answer, costs the relay no
/// Diffie-Hellman, and reserves nothing.
#[test]
fn a_plaintext_reserve_gets_no_answer_and_costs_the_relay_no_diffie_hellman() {
    let mut config = fast();
    config.transport.crypto = session::Crypto::Real;
    let mut w = World::new();
    let r = w.add_public(1, config.clone());
    let src = SocketAddr::from(([203, 0, 113, 250], 10_000));
    let (dh, dropped) = (
        w.peek(r).session_stats().handshakes_computed,
        w.peek(r).stats().malformed_in,
    );
    let t0 = w.now;
    w.inject(
        src,
        src,
        r,
        datagram(fake(9), message::Message::Nat(Message::Reserve)),
    );
    w.run_for(Duration::from_secs(1));
    assert!(
        !w.log.iter().any(|x| x.sender == r && x.dst == src),
        "no answer"
    );
    assert_eq!(w.peek(r).session_stats().handshakes_computed, dh);
    assert_eq!(w.peek(r).stats().malformed_in, dropped + 1);
    assert_eq!(relay_events(&w, r, t0), []);

    // An authenticated peer asks for a circuit to that id: nothing was
    // reserved. Its handshake is the relay's first Diffie-Hellman.
    w.add_fake(
        10,
        SocketAddr::from(([203, 0, 113, 251], 7000)),
        &config.transport,
    );
    let t1 = w.now;
    w.fake_send(
        10,
        r,
        message::Message::Nat(Message::Connect { target: fake(9) }),
    );
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.relay_answers(10, t1), [Status::NoReservation]);
    assert_eq!(w.peek(r).session_stats().handshakes_computed, dh + 1);
}

/// Both sides connect at the same instant, each through the other's relay:
/// each receives a circuit and would lead the upgrade; the lower id leads,
/// frames over either circuit are taken, and the pair punches through.
#[test]
fn simultaneous_connects_through_each_others_relay_still_punch() {
    let (mut w, a, b, _, _) = two_port_restricted_homes();
    let (ia, ib) = (w.id(a), w.id(b));
    assert_eq!(w.paths(a, ib), [], "A and B have not met");
    let (ra, rb) = (w.advertised(a), w.advertised(b));
    w.connect(a, rb);
    w.connect(b, ra);
    w.run_for(Duration::from_secs(3));
    for (h, peer) in [(a, ib), (b, ia)] {
        let kinds = kinds(&w.paths(h, peer));
        assert_eq!(
            kinds.last(),
            Some(&(PathKind::Direct, Method::HolePunch, 1)),
            "{h}: {kinds:?}"
        );
    }
    let rejected = [a, b].iter().any(|&h| {
        w.nat_events(h)
            .iter()
            .any(|(_, e)| matches!(e, Event::Rejected { .. }))
    });
    assert!(
        !rejected,
        "a frame over one of the two circuits was refused"
    );
}

/// Hostile peers against the traversal core itself (peer ids are not
/// authenticated: whatever a datagram claims must not take over routes).
mod hostile {
    use super::super::{Config, Output, Route, Traversal};
    use super::*;

    fn core() -> Traversal {
        let me = PeerId([1; 32]);
        let local: SocketAddr = "192.168.1.2:7000".parse().unwrap();
        let mut t = Traversal::new(me, local, Config::default(), 1);
        t.begin(Time::ZERO);
        t
    }
    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, i], 7000))
    }

    #[test]
    fn a_forged_record_does_not_take_another_peers_address() {
        let mut t = core();
        let now = Time::from_secs(1);
        let victim = PeerId([2; 32]);
        t.on_direct(now, victim, addr(2), None);
        // A SHUFFLE names a made-up peer at the victim's address, behind
        // the attacker's "relay".
        let forged = Peer {
            id: PeerId([9; 32]),
            addr: addr(2),
            relay: Some(addr(66)),
        };
        t.learn(now, &forged);
        assert_eq!(t.route_peer(now, victim), Route::Direct(addr(2)));
        // Nor does it change the relay the victim told us itself.
        let told = Peer {
            id: victim,
            addr: addr(2),
            relay: Some(addr(67)),
        };
        t.learn(now, &told);
        assert_eq!(t.relay_of(&victim), None);
    }

    #[test]
    fn relay_frames_are_taken_only_from_relays_that_relay_for_us() {
        let mut t = core();
        let now = Time::from_secs(1);
        let stranger = Peer::new(PeerId([7; 32]), addr(7));
        let frame = Message::RelayFrom {
            source: PeerId([8; 32]),
            source_addr: addr(8),
            data: Bytes::from_static(b"anything"),
        };
        assert_eq!(t.handle_message(now, stranger, false, frame), None);
        let rejected = std::iter::from_fn(|| t.poll_output())
            .any(|o| matches!(o, Output::Event(Event::Rejected { .. })));
        assert!(rejected);
    }

    #[test]
    fn only_the_relay_that_answered_first_speaks_for_a_reservation() {
        let mut t = core();
        let relay = addr(10);
        t.add_candidate(relay);
        t.handle_timeout(Time::ZERO); // sends RESERVE
        let ok = |ttl_s| Message::ReserveStatus {
            status: Status::Ok,
            ttl_s,
            limit_duration_s: 120,
            limit_bytes: 1 << 17,
            observed: addr(200),
        };
        let now = Time::from_secs(1);
        t.handle_message(now, Peer::new(PeerId([10; 32]), relay), false, ok(3600));
        assert_eq!(t.relays().collect::<Vec<_>>(), [relay]);
        // Answers from other ids at the relay's address pin nothing and
        // grow nothing.
        for i in 0..=255u8 {
            let forged = Peer::new(PeerId([i; 32]).max(PeerId([11; 32])), relay);
            t.handle_message(now, forged, false, ok(3600));
        }
        assert!(t.paths.values().filter(|p| p.pinned).count() <= 1);
        assert!(t.paths.len() <= 2, "{}", t.paths.len());
    }

    #[test]
    fn a_peer_cannot_make_us_punch_without_bound() {
        let mut t = core();
        let now = Time::from_secs(1);
        let peer = Peer::new(PeerId([5; 32]), addr(5));
        t.on_direct(now, peer.id, peer.addr, None);
        let mut punches = 0;
        // CONNECTs claiming to be public ask us to dial four addresses of
        // the sender's choice, again and again (a new attempt each time).
        for attempt in 1..=255u8 {
            let connect = Message::PunchConnect {
                attempt,
                reply: false,
                reach: Reach::Public,
                addrs: (0..4).map(|i| addr(100 + i)).collect(),
            };
            t.handle_message(now, peer, true, connect);
            while let Some(o) = t.poll_output() {
                punches += usize::from(matches!(
                    o,
                    Output::To {
                        message: Message::Punch { ack: false, .. },
                        ..
                    }
                ));
            }
        }
        assert_eq!(punches, 200);
    }

    #[test]
    fn a_reservation_shorter_than_a_minute_counts_as_refused() {
        let mut t = core();
        let relay = addr(10);
        t.add_candidate(relay);
        t.handle_timeout(Time::ZERO);
        let short = Message::ReserveStatus {
            status: Status::Ok,
            ttl_s: 1,
            limit_duration_s: 120,
            limit_bytes: 1 << 17,
            observed: addr(200),
        };
        t.handle_message(
            Time::from_secs(1),
            Peer::new(PeerId([10; 32]), relay),
            false,
            short,
        );
        assert_eq!(t.relays().count(), 0);
    }
}
