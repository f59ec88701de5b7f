//! The transport: the one layer between the socket and the protocol cores.
//!
//! The cores above address peers by [`PeerId`] only. The transport turns
//! an id into a path and a session, and a datagram into a message from an
//! authenticated peer:
//!
//! - [`Transport::handle_datagram`]: one call per datagram in; it returns
//!   at most one [`Incoming`] message, whose sender is the peer the session
//!   authenticated (never what the datagram claims). Everything else
//!   (handshakes, cookies, acks, NAT traversal's own messages, relay
//!   frames) is handled inside.
//! - [`Transport::send`]: one routing decision per message out: the
//!   session seals it, the path (direct, hole-punched, port-mapped or
//!   through the peer's relay) carries it.
//!
//! Layers inside, top to bottom:
//! - [`nat`]: paths, address discovery, AutoNAT, the relay client and
//!   server, DCUtR hole punching, NAT-PMP and keep-alives. It still reasons
//!   in socket addresses; every message it sends goes through a session
//!   like any other.
//! - [`session`]: Noise IK sessions, one per peer, found by receiver
//!   index, so that they roam with the peer's address.
//! - [`addrbook`]: where each peer was last seen (authenticated addresses
//!   win over hearsay).
//!
//! A relayed datagram is sealed twice: end to end between the two peers
//! (the relay sees only ciphertext), and on each hop between a peer and
//! the relay.

pub mod addrbook;
pub mod nat;
pub mod session;

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::message::{self, Message};
use crate::scratch;
use crate::wire::{self, DecodeError, Label};
use crate::{Identity, Peer, PeerId, Time};
use addrbook::AddressBook;
use nat::{Route, Traversal};
use session::{Dest, Incoming as SessionIn, Sessions, Via};

/// The largest datagram on the wire: a plaintext of
/// [`wire::MAX_DATAGRAM_BYTES`] sealed.
pub const MAX_WIRE_BYTES: usize = wire::MAX_DATAGRAM_BYTES + session::DATA_OVERHEAD;
/// Authenticated peers the address book holds (each forgotten after
/// [`ADDRESS_BOOK_MAX_AGE`]); hearsay is [`addrbook::HEARSAY_CAPACITY`].
pub const ADDRESS_BOOK_CAPACITY: usize = 256;

/// How long an address seen on an authenticated datagram is kept after
/// the last one, at least (longer if sessions idle longer). It outlives
/// the session: an address a peer's own datagrams came from (its NAT
/// mapping, its roamed address) is better than any record a core holds
/// when the next exchange with it starts a new session.
pub const ADDRESS_BOOK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(180);
/// Messages waiting for an identify answer (oldest dropped first).
const MAX_AWAITING: usize = 64;
/// How long a message waits for its address's identify answer.
const AWAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Non-Grove datagrams (NAT-PMP) queued for sending.
const MAX_FOREIGN: usize = 16;

/// A message from an authenticated peer, for the cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The peer as the transport knows it: id, the address routes to it are
    /// kept under, its relay.
    pub from: Peer,
    pub message: Message,
    /// It came inside a relay frame.
    pub relayed: bool,
}

/// Why a datagram was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("session: {0}")]
    Session(#[from] session::Drop),
    #[error("undecodable plaintext: {0}")]
    Decode(#[from] DecodeError),
    #[error("the plaintext names another sender than its session's peer")]
    SenderMismatch,
}

/// What the transport tells the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// NAT traversal: reachability, reservations, paths, relay service.
    Traversal(nat::Event),
    /// The peer at `addr` (a contact known by address) is `peer`.
    Identified { addr: SocketAddr, peer: PeerId },
    /// A session with `peer` came up.
    Connected { peer: PeerId },
    /// `peer` stopped answering (liveness) or never answered a handshake.
    Dead { peer: PeerId },
    /// A datagram from `from` was dropped.
    Dropped {
        from: SocketAddr,
        reason: DropReason,
    },
}

/// A datagram to send: its bytes were written to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    /// What the datagram carries, read from its plaintext before sealing
    /// (for observers that account traffic; not sent).
    pub label: Label,
}

/// Counts of what the transport did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams that arrived inside relay frames.
    pub relayed_in: u64,
    pub dropped_in: u64,
    /// Messages dropped because no path or identity was known in time.
    pub unroutable: u64,
}

/// Traffic by protocol, counted only when asked ([`Transport::count_traffic`]):
/// the daemon's metrics. The simulator observes its network itself and
/// leaves it off, so that a node pays one pointer for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages from authenticated peers that decoded, by protocol (indexed
    /// as [`wire::Protocol::ALL`]; a message inside a relay frame counts
    /// under its own protocol, and its frame under `traversal`).
    pub messages_in: [u64; 6],
    /// Datagrams sent, by protocol (as `messages_in`), and in the last slot
    /// the session layer's own (handshakes, acks, cookies) and non-Grove
    /// datagrams (NAT-PMP).
    pub datagrams_out: [u64; 7],
    /// Plaintexts from authenticated peers that did not decode, or named
    /// another sender than their session's peer.
    pub undecodable: u64,
}

impl Traffic {
    fn slot(protocol: Option<wire::Protocol>) -> usize {
        protocol
            .and_then(|p| wire::Protocol::ALL.iter().position(|&q| q == p))
            .unwrap_or(wire::Protocol::ALL.len())
    }
}

/// The transport of one node.
pub struct Transport {
    me: PeerId,
    sessions: Sessions,
    nat: Traversal,
    /// NAT traversal is on (its configuration never changes). Off, the
    /// traversal core does nothing and is never asked, so a datagram does
    /// not touch its state (a kilobyte, cold on every datagram).
    nat_on: bool,
    book: AddressBook,
    /// Messages for addresses whose peer we are asking about.
    awaiting: VecDeque<(SocketAddr, Time, Message)>,
    /// Non-Grove datagrams (NAT-PMP requests).
    foreign: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    now: Time,
    stats: Stats,
    /// Traffic by protocol, when counted.
    traffic: Option<Box<Traffic>>,
}

impl Transport {
    /// The transport of the node with `identity`, whose socket is bound to
    /// `local`.
    pub fn new(
        identity: &Identity,
        local: SocketAddr,
        nat: nat::Config,
        sessions: session::Config,
        nat_seed: u64,
        session_seed: u64,
    ) -> Self {
        let me = identity.peer_id();
        let book = AddressBook::new(
            ADDRESS_BOOK_CAPACITY,
            sessions.idle_timeout.max(ADDRESS_BOOK_MAX_AGE),
        );
        Transport {
            me,
            sessions: Sessions::new(identity, sessions, session_seed),
            nat_on: nat.enabled,
            nat: Traversal::new(me, local, nat, nat_seed),
            book,
            awaiting: VecDeque::new(),
            foreign: VecDeque::new(),
            events: VecDeque::new(),
            now: Time::ZERO,
            stats: Stats::default(),
            traffic: None,
        }
    }

    /// Count traffic by protocol from now on ([`Transport::traffic`]).
    pub fn count_traffic(&mut self) {
        self.traffic.get_or_insert_with(Box::default);
    }

    /// Traffic by protocol, if counted.
    pub fn traffic(&self) -> Option<&Traffic> {
        self.traffic.as_deref()
    }

    // ---- queries ----

    /// NAT traversal's state (reachability, relays, paths).
    pub fn nat(&self) -> &Traversal {
        &self.nat
    }
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
    pub fn book(&self) -> &AddressBook {
        &self.book
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// The record other nodes should use to reach us.
    pub fn advertised(&self) -> Peer {
        self.nat.advertised()
    }
    /// What the transport knows of `peer`, as a record for the cores.
    pub fn record(&self, peer: &PeerId) -> Option<Peer> {
        let addr = self
            .nat_addr_of(peer)
            .or_else(|| self.book.get(peer).map(|e| e.addr))?;
        let relay = self
            .nat_relay_of(peer)
            .or_else(|| self.book.get(peer).and_then(|e| e.relay));
        Some(Peer {
            id: *peer,
            addr,
            relay,
        })
    }

    // ---- inputs ----

    /// Start working (the node's first input); later calls do nothing.
    pub fn begin(&mut self, now: Time) {
        self.now = now;
        if self.nat_on {
            self.nat.begin(now);
        }
    }

    /// A contact given by address (bootstrap): ask who it is, and take it
    /// as a relay candidate.
    pub fn contact(&mut self, now: Time, addr: SocketAddr) {
        self.begin(now);
        self.nat.add_candidate(addr);
        match self.book.peer_at(addr) {
            Some(peer) => self.events.push_back(Event::Identified { addr, peer }),
            None => self.sessions.identify(now, addr),
        }
    }

    /// Whether a datagram for `peer` has an address to go to (its path, or
    /// an address book entry).
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.nat_addr_of(peer).is_some() || self.book.get(peer).is_some()
    }

    /// A peer record heard from a third party or given by the application.
    pub fn hint(&mut self, now: Time, record: &Peer) {
        if record.id == self.me {
            return;
        }
        self.book.hint(now, record);
        self.nat.learn(now, record);
    }

    /// Send `message` to `peer` over its session and path.
    pub fn send(&mut self, now: Time, peer: PeerId, message: &Message) {
        self.now = now;
        if peer == self.me {
            return;
        }
        let Some(plain) = self.encode(message) else {
            return;
        };
        let label = Label::of(&plain);
        self.sessions
            .send_labeled(now, peer, None, &plain, true, label.0);
        scratch::give(plain);
    }

    /// One datagram in from `from`; the message it carries, if any.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Incoming> {
        self.begin(now);
        self.stats.datagrams_in += 1;
        if self.nat_on && self.nat.is_gateway(from) {
            self.nat.handle_gateway(now, bytes);
            self.drain_nat();
            return None;
        }
        let mut plain = scratch::take();
        let incoming = self.open_direct(now, from, bytes, &mut plain);
        scratch::give(plain);
        self.drain();
        incoming
    }

    fn open_direct(
        &mut self,
        now: Time,
        from: SocketAddr,
        bytes: &[u8],
        plain: &mut Vec<u8>,
    ) -> Option<Incoming> {
        let (peer, roamed) = match self.sessions.handle(now, Via::Direct(from), bytes, plain) {
            SessionIn::Data { peer, roamed } => (peer, roamed),
            SessionIn::Control => return None,
            SessionIn::Dropped(reason) => {
                self.dropped(from, reason.into());
                return None;
            }
        };
        let _ = roamed; // the address book and the path follow below
        self.book.confirm(now, peer, from);
        if plain.is_empty() {
            // An ack or keep-alive: the session noted the peer alive; a
            // direct datagram also keeps a path we have fresh. It makes
            // none: the ack of a dial-back we sent as an AutoNAT helper
            // comes from a stranger, not from a peer we use.
            if self.nat_addr_of(&peer).is_some() {
                self.nat.on_direct(now, peer, from, None);
            }
            return None;
        }
        let message = match self.decode_from(peer, plain) {
            Ok(m) => m,
            Err(reason) => {
                self.dropped(from, reason);
                return None;
            }
        };
        let hello = match &message {
            Message::Nat(nat::Message::Hello { reach, .. }) => Some(*reach),
            _ => None,
        };
        // A dial-back is a probe from a stranger, not a path we use.
        if self.nat_on && !matches!(message, Message::Nat(nat::Message::DialBack { .. })) {
            self.nat.on_direct(now, peer, from, hello);
        }
        if let Message::Nat(nat::Message::Hello { relay, .. }) = &message {
            self.book.set_relay(&peer, *relay);
        }
        let record = Peer {
            id: peer,
            addr: from,
            relay: self.nat_relay_of(&peer),
        };
        match message {
            Message::Nat(m) => {
                let (source, source_addr, data) = self.nat.handle_message(now, record, false, m)?;
                self.open_relayed(now, peer, from, source, source_addr, &data)
            }
            message => Some(Incoming {
                from: record,
                message,
                relayed: false,
            }),
        }
    }

    /// A relay frame from `relay` (at `relay_addr`) carried `data`, sealed
    /// end to end by `source`.
    fn open_relayed(
        &mut self,
        now: Time,
        relay: PeerId,
        relay_addr: SocketAddr,
        source: PeerId,
        source_addr: SocketAddr,
        data: &[u8],
    ) -> Option<Incoming> {
        let mut plain = scratch::take();
        let via = Via::Relayed { relay, source };
        let result = match self.sessions.handle(now, via, data, &mut plain) {
            SessionIn::Data { peer, .. } => {
                debug_assert_eq!(peer, source, "the session layer checks the source");
                Ok(peer)
            }
            SessionIn::Control => Err(None),
            SessionIn::Dropped(reason) => Err(Some(DropReason::from(reason))),
        };
        let incoming = match result {
            Ok(peer) if !plain.is_empty() => match self.decode_from(peer, &plain) {
                Ok(message) => {
                    self.stats.relayed_in += 1;
                    self.nat.on_relayed(now, peer, relay_addr, source_addr);
                    let from = self.record(&peer).unwrap_or(Peer::new(peer, source_addr));
                    match message {
                        Message::Nat(m) => {
                            // Frames cannot nest: whatever this returns is
                            // refused inside.
                            let _ = self.nat.handle_message(now, from, true, m);
                            None
                        }
                        message => Some(Incoming {
                            from,
                            message,
                            relayed: true,
                        }),
                    }
                }
                Err(reason) => {
                    self.dropped(relay_addr, reason);
                    None
                }
            },
            Ok(_) => None,
            Err(None) => None,
            Err(Some(reason)) => {
                self.dropped(relay_addr, reason);
                None
            }
        };
        scratch::give(plain);
        incoming
    }

    /// Decode a plaintext sealed by `peer`; its header must name `peer`.
    fn decode_from(&mut self, peer: PeerId, plain: &[u8]) -> Result<Message, DropReason> {
        let decoded = message::decode(plain)
            .map_err(DropReason::from)
            .and_then(|datagram| {
                if datagram.from == peer {
                    Ok(datagram.message)
                } else {
                    Err(DropReason::SenderMismatch)
                }
            });
        if let Some(t) = &mut self.traffic {
            match &decoded {
                Ok(m) => t.messages_in[Traffic::slot(Some(m.protocol()))] += 1,
                Err(_) => t.undecodable += 1,
            }
        }
        decoded
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.begin(now);
        if self.nat_on {
            self.nat.handle_timeout(now);
        }
        self.sessions.handle_timeout(now);
        while self
            .awaiting
            .front()
            .is_some_and(|(_, since, _)| now >= *since + AWAIT_TIMEOUT)
        {
            self.awaiting.pop_front();
            self.stats.unroutable += 1;
        }
        self.drain();
    }

    // ---- outputs ----

    /// When [`Transport::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Time> {
        let awaiting = self
            .awaiting
            .front()
            .map(|(_, since, _)| *since + AWAIT_TIMEOUT);
        [
            self.nat_on.then(|| self.nat.poll_timeout()).flatten(),
            self.sessions.poll_timeout(),
            awaiting,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        crate::compact::pop_front_releasing(&mut self.events)
    }

    /// The next datagram to send, written to `out` (cleared first).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Transmit> {
        let t = self.next_transmit(out)?;
        if let Some(traffic) = &mut self.traffic {
            traffic.datagrams_out[Traffic::slot(t.label.protocol())] += 1;
        }
        Some(t)
    }

    fn next_transmit(&mut self, out: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((dst, bytes)) = self.foreign.pop_front() {
            out.clear();
            out.extend_from_slice(&bytes);
            self.stats.datagrams_out += 1;
            return Some(Transmit {
                dst,
                label: Label::FOREIGN,
            });
        }
        let now = self.now;
        while let Some(t) = self.sessions.poll_transmit(out) {
            let label = Label(t.label);
            let dst = match t.dest {
                Dest::Peer {
                    path: Some(Via::Direct(a)),
                    ..
                }
                | Dest::Reply(Via::Direct(a)) => a,
                Dest::Peer {
                    path: Some(Via::Relayed { relay, source }),
                    ..
                }
                | Dest::Reply(Via::Relayed { relay, source }) => {
                    // Back through the relay the frame came from.
                    self.relay_to(now, relay, source, out);
                    continue;
                }
                Dest::Peer { peer, path: None } => match self.route(now, peer) {
                    Route::Direct(a) => a,
                    Route::Relayed(peer) => {
                        if out.len() <= wire::MAX_RELAYED_BYTES {
                            self.nat
                                .send_relayed(now, peer, Bytes::copy_from_slice(out));
                            self.drain();
                        }
                        continue;
                    }
                    Route::Drop => {
                        self.stats.unroutable += 1;
                        continue;
                    }
                },
            };
            let answering = matches!(
                out.first(),
                Some(&(session::kind::RESPONSE | session::kind::COOKIE_REPLY))
            );
            if self.nat_on {
                self.nat.on_sent(now, dst, answering);
            }
            self.stats.datagrams_out += 1;
            return Some(Transmit { dst, label });
        }
        None
    }

    // ---- internals ----

    /// NAT traversal's address for `peer` (none while traversal is off).
    fn nat_addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.nat_on.then(|| self.nat.addr_of(peer)).flatten()
    }

    /// The relay NAT traversal knows `peer` by (none while traversal is
    /// off: no path, no reservation).
    fn nat_relay_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.nat_on.then(|| self.nat.relay_of(peer)).flatten()
    }

    /// Where a datagram for `peer` goes: NAT traversal's path, or the
    /// address book's address.
    fn route(&mut self, now: Time, peer: PeerId) -> Route {
        if self.nat_on {
            if self.nat.addr_of(&peer).is_none() {
                match self.book.get(&peer) {
                    Some(e) if e.relay.is_some() => {
                        let record = Peer {
                            id: peer,
                            addr: e.addr,
                            relay: e.relay,
                        };
                        self.nat.learn(now, &record);
                    }
                    Some(e) => return Route::Direct(e.addr),
                    None => return Route::Drop,
                }
            }
            return self.nat.route_peer(now, peer);
        }
        match self.book.get(&peer) {
            Some(e) => Route::Direct(e.addr),
            None => Route::Drop,
        }
    }

    /// Wrap the sealed datagram in `out` in a relay frame to `target`
    /// through `relay`.
    fn relay_to(&mut self, now: Time, relay: PeerId, target: PeerId, out: &[u8]) {
        if out.len() > wire::MAX_RELAYED_BYTES {
            return;
        }
        let frame = Message::Nat(nat::Message::RelayTo {
            target,
            data: Bytes::copy_from_slice(out),
        });
        self.send(now, relay, &frame);
    }

    /// `message` from us, encoded in a scratch buffer (to give back); None
    /// if it cannot be.
    fn encode(&mut self, message: &Message) -> Option<Vec<u8>> {
        let mut plain = scratch::take();
        if let Err(e) = message::encode_from(&self.me, message, &mut plain) {
            // The cores bound what they put in a message: a bug.
            debug_assert!(false, "unencodable message {message:?}: {e}");
            tracing::error!("dropping unencodable message: {e}");
            scratch::give(plain);
            return None;
        }
        Some(plain)
    }

    /// Move the sessions' and NAT traversal's outputs along.
    fn drain(&mut self) {
        loop {
            let mut progressed = self.drain_nat();
            while let Some(e) = self.sessions.poll_event() {
                progressed = true;
                match e {
                    session::Event::Established { peer } => {
                        // What waited for the handshake leaves now.
                        if self.nat_on {
                            self.nat.on_session_up(self.now, peer);
                        }
                        self.events.push_back(Event::Connected { peer });
                    }
                    session::Event::Dead { peer } => self.events.push_back(Event::Dead { peer }),
                    session::Event::Identified { addr, peer } => self.identified(addr, peer),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// The peer at `addr` is `peer`: send what waited for it.
    fn identified(&mut self, addr: SocketAddr, peer: PeerId) {
        if peer == self.me {
            return;
        }
        self.book.hint(self.now, &Peer::new(peer, addr));
        let now = self.now;
        let mut i = 0;
        while i < self.awaiting.len() {
            if self.awaiting[i].0 == addr {
                let (_, _, message) = self.awaiting.remove(i).expect("in range");
                self.send_to(now, peer, addr, &message);
            } else {
                i += 1;
            }
        }
        self.events.push_back(Event::Identified { addr, peer });
    }

    /// Send `message` to the peer of `record`, a record its holder vouches
    /// for (the application's, or the DHT's for a server, which is publicly
    /// reachable), not hearsay. One without a relay is dialled at its
    /// address, whatever the peer's path says: the path may name a relay
    /// from an older record (a host that got a port mapping, or found
    /// itself public behind a full cone, drops its reservations), and a
    /// datagram routed there went nowhere (pairs without a path in the NAT
    /// matrix; a third of the DHT's handshakes, lookups waiting out 2 s
    /// timeouts). One with a relay goes by the peer's path (the caller
    /// hints it first, as for any record).
    pub fn send_vouched(&mut self, now: Time, record: &Peer, message: &Message) {
        match record.relay {
            None => self.send_to(now, record.id, record.addr, message),
            Some(_) => self.send(now, record.id, message),
        }
    }

    /// Seal `message` for `peer` and send it straight to `addr` (whatever
    /// path the peer has).
    fn send_to(&mut self, now: Time, peer: PeerId, addr: SocketAddr, message: &Message) {
        if peer == self.me {
            return;
        }
        let Some(plain) = self.encode(message) else {
            return;
        };
        let label = Label::of(&plain);
        self.sessions
            .send_labeled(now, peer, Some(Via::Direct(addr)), &plain, true, label.0);
        scratch::give(plain);
    }

    /// Move NAT traversal's outputs along; whether there were any.
    fn drain_nat(&mut self) -> bool {
        let mut any = false;
        let now = self.now;
        while let Some(out) = self.nat.poll_output() {
            any = true;
            match out {
                nat::Output::ToPeer(peer, m) => self.send(now, peer, &Message::Nat(m)),
                nat::Output::To {
                    peer,
                    addr,
                    message,
                } => self.send_to(now, peer, addr, &Message::Nat(message)),
                nat::Output::Raw(addr, m) => match self.book.peer_at(addr) {
                    Some(peer) => self.send_to(now, peer, addr, &Message::Nat(m)),
                    None => self.await_identity(now, addr, Message::Nat(m)),
                },
                nat::Output::Bytes(to, bytes) => {
                    if self.foreign.len() < MAX_FOREIGN {
                        self.foreign.push_back((to, bytes));
                    }
                }
                nat::Output::Event(e) => self.events.push_back(Event::Traversal(e)),
            }
        }
        any
    }

    /// `message` is for whoever is at `addr`: ask who that is first.
    fn await_identity(&mut self, now: Time, addr: SocketAddr, message: Message) {
        if !self.awaiting.iter().any(|(a, _, _)| *a == addr) {
            self.sessions.identify(now, addr);
        }
        if self.awaiting.len() >= MAX_AWAITING {
            self.awaiting.pop_front();
            self.stats.unroutable += 1;
        }
        self.awaiting.push_back((addr, now, message));
    }

    fn dropped(&mut self, from: SocketAddr, reason: DropReason) {
        self.stats.dropped_in += 1;
        self.events.push_back(Event::Dropped { from, reason });
    }
}
