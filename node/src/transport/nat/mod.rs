//! NAT traversal: how a node behind a NAT finds out what it is behind,
//! stays reachable through relays, and upgrades relayed paths to direct
//! ones.
//!
//! [`Traversal`] is a sans-IO core like the others. It sits between the
//! overlay cores and the socket: the cores address peers by socket
//! address, and the traversal core decides, datagram by datagram, whether
//! that address is reached directly or through the peer's relay.
//!
//! - **Address discovery.** On a new direct path, each side tells the
//!   other the address it sees it at (HELLO). An address is trusted once
//!   [`Config::observers_needed`] observers on distinct IPs agree (libp2p
//!   uses 4). A symmetric NAT shows every observer another port, so its
//!   nodes never confirm one, as it should be.
//! - **AutoNAT.** The node asks a peer to have its address dialled back by
//!   a third peer (one its NAT has never talked to, so that no filter
//!   permission can fake a success). Results move a confidence counter;
//!   the status flips only when the confidence is spent (libp2p AutoNAT
//!   v1's rule), and is re-checked periodically.
//! - **Relays** (Circuit Relay v2, [`relay`]): publicly reachable nodes
//!   serve reservations and circuits; the others keep
//!   [`Config::relays_wanted`] reservations and advertise the first one in
//!   their peer records, so that other nodes reach them through it.
//! - **DCUtR hole punching** over a relayed path: the reserved side sends
//!   CONNECT with its candidate addresses and times the answer; it then
//!   sends SYNC and, RTT/2 later, punches, while the other side punches on
//!   receiving SYNC. Up to [`Config::holepunch_attempts`] attempts. If
//!   either side is publicly reachable, that side is dialled directly
//!   instead (a direct dial, or a connection reversal).
//! - **Port mapping**: NAT-PMP ([`natpmp`]) to the gateway. A mapping on a
//!   public address makes the node public; one on a private or shared
//!   (100.64/10) address, as behind a carrier-grade NAT, is ignored.
//! - **Keep-alives** on idle direct paths and to relays, so that NAT
//!   mappings (often 30 s) do not expire under a quiet overlay link.
//!
//! The code is split by sub-protocol, each an `impl Traversal` block in
//! its own file: `paths.rs` (the path table, routing, keep-alives, address
//! discovery), `autonat.rs`, `relay_client.rs` (reservations and circuits
//! from the client side), `relay.rs` (the relay server), `dcutr.rs`, and
//! `portmap.rs` (the gateway client; `natpmp.rs` its wire format). This
//! file holds the settings, the messages, events and outputs, the state,
//! and the entry points, which dispatch to them.
//!
//! Every table is bounded: paths ([`Config::max_paths`], least recently
//! used evicted), frames waiting for a circuit, observations, relay
//! candidates, concurrent upgrades, and the relay server's own limits.

mod autonat;
mod dcutr;
pub(crate) mod message;
pub mod natpmp;
mod paths;
mod portmap;
pub mod relay;
mod relay_client;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{self, KeyError};
use crate::{Peer, PeerId, Time};
use autonat::{Contact, Probe};
use paths::Path;
use portmap::PortMap;
use relay_client::{Candidate, ResState, Reservation};

pub use message::Message;

/// Settings of NAT traversal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Off: every datagram goes straight to its address and the node sends
    /// nothing of its own (the setting of the papers' experiments, where
    /// every host is public).
    pub enabled: bool,
    /// Whether this node serves relay reservations.
    pub relay_server: RelayMode,
    /// The relay service's limits.
    pub relay: relay::Config,
    /// Reservations a node that is not publicly reachable keeps; 0 to
    /// [`MAX_RESERVATIONS`].
    pub relays_wanted: usize,
    /// How long a node with a private address waits for a reservation
    /// before it joins the overlay anyway (0: not at all). Every other
    /// duration here is 1 ms to 720 h unless its line says otherwise
    /// ([`crate::config::MIN_INTERVAL`], [`crate::config::MAX_DURATION`]).
    #[serde(with = "crate::duration")]
    pub reservation_wait: Duration,
    /// Distinct observers (by IP) that must report the same address before
    /// the node trusts it as its external address (libp2p: 4); 1 to 16,
    /// the observations kept.
    pub observers_needed: usize,
    /// Between two AutoNAT checks once the status is known.
    #[serde(with = "crate::duration")]
    pub autonat_interval: Duration,
    /// Between two AutoNAT checks while the status is unknown.
    #[serde(with = "crate::duration")]
    pub autonat_retry: Duration,
    /// Confidence needed before an opposite result flips the status; at
    /// most [`MAX_AUTONAT_CONFIDENCE`].
    pub autonat_confidence: u8,
    /// How long a dial-back may take.
    #[serde(with = "crate::duration")]
    pub dial_back_timeout: Duration,
    /// Try to upgrade relayed paths to direct ones.
    pub holepunch: bool,
    /// Hole-punch attempts before a path stays relayed (DCUtR: 3); 1 to
    /// [`MAX_HOLEPUNCH_ATTEMPTS`].
    pub holepunch_attempts: u8,
    /// How long an attempt waits for the first direct datagram after the
    /// punch.
    #[serde(with = "crate::duration")]
    pub holepunch_timeout: Duration,
    /// After a failed upgrade, before the next one to the same peer.
    #[serde(with = "crate::duration")]
    pub upgrade_backoff: Duration,
    /// Ask the gateway for a port mapping (NAT-PMP).
    pub port_mapping: bool,
    /// The gateway's NAT-PMP address (its port 5351); none: no port
    /// mapping. The daemon reads it from the routing table.
    pub gateway: Option<SocketAddr>,
    /// Lifetime asked for a port mapping; renewed at half of it. 60 s to
    /// 720 h.
    #[serde(with = "crate::duration")]
    pub mapping_lifetime: Duration,
    /// An idle direct path or relay gets a keep-alive after this long;
    /// shorter than `path_timeout`.
    #[serde(with = "crate::duration")]
    pub keepalive_interval: Duration,
    /// A direct path is trusted while something arrived on it this recently.
    #[serde(with = "crate::duration")]
    pub path_timeout: Duration,
    /// Peers whose paths the node tracks; [`MIN_PATHS`] to [`MAX_PATHS`].
    pub max_paths: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            relay_server: RelayMode::Auto,
            relay: relay::Config::default(),
            relays_wanted: 2,
            reservation_wait: Duration::from_secs(3),
            observers_needed: 4,
            autonat_interval: Duration::from_secs(300),
            autonat_retry: Duration::from_secs(15),
            autonat_confidence: 3,
            dial_back_timeout: Duration::from_secs(4),
            holepunch: true,
            holepunch_attempts: 3,
            holepunch_timeout: Duration::from_secs(2),
            upgrade_backoff: Duration::from_secs(300),
            port_mapping: true,
            gateway: None,
            mapping_lifetime: Duration::from_secs(7200),
            keepalive_interval: Duration::from_secs(15),
            path_timeout: Duration::from_secs(45),
            max_paths: 1024,
        }
    }
}

impl Config {
    /// Check the bounds on each field's doc line (and the relay's); the
    /// error names the key (`relay.max_circuits` for the relay's).
    ///
    /// # Errors
    ///
    /// The first key out of range.
    pub fn validate(&self) -> Result<(), KeyError> {
        config::range(self.relays_wanted, 0, MAX_RESERVATIONS)
            .map_err(KeyError::at("relays_wanted"))?;
        config::range(self.observers_needed, 1, MAX_OBSERVATIONS)
            .map_err(KeyError::at("observers_needed"))?;
        config::range(self.autonat_confidence, 0, MAX_AUTONAT_CONFIDENCE)
            .map_err(KeyError::at("autonat_confidence"))?;
        config::range(self.holepunch_attempts, 1, MAX_HOLEPUNCH_ATTEMPTS)
            .map_err(KeyError::at("holepunch_attempts"))?;
        config::range(self.max_paths, MIN_PATHS, MAX_PATHS).map_err(KeyError::at("max_paths"))?;
        config::delay(self.reservation_wait).map_err(KeyError::at("reservation_wait"))?;
        for (key, d) in [
            ("autonat_interval", self.autonat_interval),
            ("autonat_retry", self.autonat_retry),
            ("dial_back_timeout", self.dial_back_timeout),
            ("holepunch_timeout", self.holepunch_timeout),
            ("upgrade_backoff", self.upgrade_backoff),
            ("keepalive_interval", self.keepalive_interval),
            ("path_timeout", self.path_timeout),
        ] {
            config::interval(d).map_err(KeyError::at(key))?;
        }
        config::duration_range(
            self.mapping_lifetime,
            MIN_MAPPING_LIFETIME,
            config::MAX_DURATION,
        )
        .map_err(KeyError::at("mapping_lifetime"))?;
        if self.keepalive_interval >= self.path_timeout {
            return Err(KeyError::new(
                "keepalive_interval",
                "must be shorter than path_timeout",
            ));
        }
        self.relay.validate().map_err(|e| e.under("relay"))
    }
}

/// Whether a node serves relay reservations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// When publicly reachable (AutoNAT or a port mapping), or while
    /// unknown on a host with a public address.
    #[default]
    Auto,
    On,
    Off,
}

/// What a node knows of its own reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    Unknown,
    /// Behind a NAT or firewall that drops unsolicited datagrams.
    Private,
    /// Dialled back successfully by third parties.
    Public,
    /// Public through a port mapping its gateway granted.
    PortMapped,
}

impl Reach {
    #[must_use]
    pub fn is_public(self) -> bool {
        matches!(self, Reach::Public | Reach::PortMapped)
    }
    fn code(self) -> u8 {
        self as u8
    }
    fn from_code(c: u8) -> Option<Reach> {
        [
            Reach::Unknown,
            Reach::Private,
            Reach::Public,
            Reach::PortMapped,
        ]
        .get(usize::from(c))
        .copied()
    }
}

/// Circuit Relay v2 status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    ReservationRefused,
    ResourceLimitExceeded,
    PermissionDenied,
    ConnectionFailed,
    NoReservation,
    MalformedMessage,
    UnexpectedMessage,
}

impl Status {
    /// Every status, in code order.
    pub(crate) const ALL: [Status; 8] = [
        Status::Ok,
        Status::ReservationRefused,
        Status::ResourceLimitExceeded,
        Status::PermissionDenied,
        Status::ConnectionFailed,
        Status::NoReservation,
        Status::MalformedMessage,
        Status::UnexpectedMessage,
    ];

    /// The code on the wire.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 100,
            Status::ReservationRefused => 200,
            Status::ResourceLimitExceeded => 201,
            Status::PermissionDenied => 202,
            Status::ConnectionFailed => 203,
            Status::NoReservation => 204,
            Status::MalformedMessage => 400,
            Status::UnexpectedMessage => 401,
        }
    }

    #[must_use]
    pub fn from_code(code: u16) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The spec's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::ReservationRefused => "RESERVATION_REFUSED",
            Status::ResourceLimitExceeded => "RESOURCE_LIMIT_EXCEEDED",
            Status::PermissionDenied => "PERMISSION_DENIED",
            Status::ConnectionFailed => "CONNECTION_FAILED",
            Status::NoReservation => "NO_RESERVATION",
            Status::MalformedMessage => "MALFORMED_MESSAGE",
            Status::UnexpectedMessage => "UNEXPECTED_MESSAGE",
        }
    }
}

/// Largest number of candidate addresses in a hole-punch CONNECT.
pub const MAX_PUNCH_ADDRS: usize = 4;
/// Helpers an AutoNAT server asks to dial a client back, each a different
/// peer: the more of them, the likelier one is a stranger to the client.
pub const MAX_DIAL_HELPERS: usize = 3;
/// Reservations a node can hold at once.
pub const MAX_RESERVATIONS: usize = 4;
/// Observations of our address kept.
const MAX_OBSERVATIONS: usize = 16;
/// Largest `autonat_confidence`.
pub const MAX_AUTONAT_CONFIDENCE: u8 = 16;
/// Largest `holepunch_attempts`.
pub const MAX_HOLEPUNCH_ATTEMPTS: u8 = 10;
/// Fewest and most peers whose paths a node may be set to track.
pub const MIN_PATHS: usize = 16;
pub const MAX_PATHS: usize = 65_536;
/// Shortest port mapping lifetime asked for (renewed at half of it).
const MIN_MAPPING_LIFETIME: Duration = Duration::from_secs(60);
/// The window of every budget: dial-backs served and sent as a helper,
/// hole-punch probes.
const DIALBACK_WINDOW: Duration = Duration::from_secs(10);
/// Housekeeping period.
const TICK: Duration = Duration::from_secs(1);
/// A circuit request, or a DCUtR CONNECT, unanswered this long is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a path to a peer came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The peer was publicly reachable and dialled directly.
    DirectDial,
    /// We were publicly reachable and the peer dialled us back.
    Reversal,
    /// Simultaneous open after DCUtR's SYNC.
    HolePunch,
    /// The peer was reachable through its port mapping.
    PortMapping,
    /// Through a relay.
    Relay,
}

/// Direct or relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    Direct,
    Relayed,
}

/// What became of a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationOutcome {
    Ok,
    Refused(Status),
    /// Not refreshed in time, or the relay stopped answering.
    Expired,
}

/// What the relay server did (one event per reservation or circuit, never
/// per frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    ReservationAccepted,
    ReservationRefused(Status),
    CircuitOpened,
    CircuitRefused(Status),
    CircuitClosed {
        bytes: u64,
    },
    /// A frame for a circuit that does not exist.
    FrameRefused,
}

/// What the traversal core tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Our reachability or advertised record changed.
    Reachability {
        reach: Reach,
        advertised: Peer,
    },
    Reservation {
        relay: SocketAddr,
        outcome: ReservationOutcome,
    },
    /// A path to `peer` came up or changed kind.
    Path {
        peer: PeerId,
        kind: PathKind,
        method: Method,
        /// The hole-punch attempt that succeeded (0 for other methods).
        attempt: u8,
        addr: SocketAddr,
    },
    /// Every upgrade attempt to `peer` failed: the path stays relayed.
    UpgradeFailed {
        peer: PeerId,
        attempts: u8,
    },
    /// The gateway granted a mapping; `public` says whether it is usable.
    PortMapping {
        external: SocketAddr,
        public: bool,
    },
    Relay(RelayEvent),
    /// A relay or traversal message that made no sense was dropped.
    Rejected {
        from: SocketAddr,
        what: &'static str,
    },
}

/// What the core wants sent or told.
#[derive(Clone, Debug)]
pub(crate) enum Output {
    /// Straight to an address (relay control, probes, answers), whoever
    /// is there.
    Raw(SocketAddr, Message),
    /// Straight to `peer` at `addr` (hole punches, dial-backs, HELLO,
    /// keep-alives on a path).
    To {
        peer: PeerId,
        addr: SocketAddr,
        message: Message,
    },
    /// To a peer, over whatever path it has (direct or relayed).
    ToPeer(PeerId, Message),
    /// Bytes that are not Grove datagrams (NAT-PMP).
    Bytes(SocketAddr, Vec<u8>),
    Event(Event),
}

/// Where a datagram for an address or peer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Direct(SocketAddr),
    Relayed(PeerId),
    Drop,
}

/// The traversal core.
pub struct Traversal {
    me: PeerId,
    local: SocketAddr,
    local_public: bool,
    config: Config,
    rng: LazyRng,
    reach: Reach,
    confidence: u8,
    observations: Vec<(IpAddr, SocketAddr)>,
    confirmed: Option<SocketAddr>,
    relay_observed: Option<SocketAddr>,
    portmap: PortMap,
    mapped_ip: Option<Ipv4Addr>,
    mapped_port: Option<u16>,
    reservations: Vec<Reservation>,
    candidates: Vec<Candidate>,
    advertised: Peer,
    /// The reachability last announced (with `advertised`).
    announced_reach: Reach,
    /// IPs we sent datagrams to directly (bounded): since when (without a
    /// gap of `PATH_IDLE`), and last. Our NAT lets them in, so their
    /// dial-backs prove nothing.
    contacted: BTreeMap<IpAddr, Contact>,
    paths: BTreeMap<PeerId, Path>,
    by_addr: BTreeMap<SocketAddr, PeerId>,
    pending_frames: usize,
    upgrading: Vec<PeerId>,
    probe: Option<Probe>,
    next_probe: Time,
    dialback_window: (Time, u32),
    /// Dial-backs sent as a helper in the current window.
    helper_window: (Time, u32),
    /// Hole-punch probes sent in the current window.
    punch_window: (Time, u32),
    /// While the reachability is unknown: the last result and how many
    /// agreeing results in a row (two are needed to decide).
    verdict: Option<(Reach, u8)>,
    /// The server of that last result: the next probe asks another.
    verdict_server: Option<IpAddr>,
    server: relay::Server,
    out: VecDeque<Output>,
    next_tick: Time,
    started: Option<Time>,
}

/// Whether `ip` is reachable from the internet at large: not private
/// (RFC 1918), shared (RFC 6598, carrier-grade NAT), loopback, link-local
/// or unspecified. Documentation and benchmarking ranges count as public
/// (test networks use them as their internet).
#[must_use]
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The traversal's random stream, built on first use: a node with
/// traversal off never draws, and a ChaCha state is 320 bytes (in every
/// one of 100,000 simulated nodes) where its seed is 8.
enum LazyRng {
    Seed(u64),
    Rng(Box<ChaCha8Rng>),
}

impl LazyRng {
    fn get(&mut self) -> &mut ChaCha8Rng {
        if let LazyRng::Seed(seed) = *self {
            *self = LazyRng::Rng(Box::new(ChaCha8Rng::seed_from_u64(seed)));
        }
        match self {
            LazyRng::Rng(rng) => rng,
            LazyRng::Seed(_) => unreachable!("seeded above"),
        }
    }
}

impl Traversal {
    /// The core of node `me` whose socket is bound to `local`, drawing
    /// from the ChaCha stream of `rng_seed`. Nothing happens until
    /// [`Traversal::begin`].
    pub fn new(me: PeerId, local: SocketAddr, config: Config, rng_seed: u64) -> Self {
        let now = Time::ZERO;
        let portmap = PortMap::Off;
        let server = relay::Server::new(config.relay.clone());
        Traversal {
            me,
            local,
            local_public: is_public_ip(local.ip()),
            rng: LazyRng::Seed(rng_seed),
            reach: Reach::Unknown,
            confidence: 0,
            observations: Vec::new(),
            confirmed: None,
            relay_observed: None,
            portmap,
            mapped_ip: None,
            mapped_port: None,
            reservations: Vec::new(),
            candidates: Vec::new(),
            advertised: Peer::new(me, local),
            announced_reach: Reach::Unknown,
            contacted: BTreeMap::new(),
            paths: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            pending_frames: 0,
            upgrading: Vec::new(),
            probe: None,
            next_probe: now + Duration::from_secs(2),
            dialback_window: (now, 0),
            helper_window: (now, 0),
            punch_window: (now, 0),
            verdict: None,
            verdict_server: None,
            server,
            out: VecDeque::new(),
            next_tick: now,
            started: None,
            config,
        }
    }

    /// Start working at `now` (the node's first input); later calls do
    /// nothing.
    pub fn begin(&mut self, now: Time) {
        if self.started.is_some() || !self.config.enabled {
            return;
        }
        self.started = Some(now);
        self.next_tick = now;
        self.next_probe = now + Duration::from_secs(2);
        self.dialback_window = (now, 0);
        self.helper_window = (now, 0);
        if self.config.port_mapping && self.config.gateway.is_some() {
            self.portmap = PortMap::Asking {
                tries: 0,
                next: now,
            };
        }
    }

    // ---- queries ----

    #[must_use]
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }
    #[must_use]
    pub fn reach(&self) -> Reach {
        self.reach
    }
    /// The record other nodes should use to reach us.
    #[must_use]
    pub fn advertised(&self) -> Peer {
        self.advertised
    }
    /// The external address confirmed by enough observers.
    #[must_use]
    pub fn confirmed_addr(&self) -> Option<SocketAddr> {
        self.confirmed
    }
    /// Relays we hold an active reservation with.
    pub fn relays(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.reservations
            .iter()
            .filter(|r| matches!(r.state, ResState::Active { .. }))
            .map(|r| r.relay)
    }
    /// Whether this node serves relay reservations now.
    #[must_use]
    pub fn serving(&self) -> bool {
        match self.config.relay_server {
            RelayMode::On => true,
            RelayMode::Off => false,
            RelayMode::Auto => {
                self.reach.is_public() || (self.reach == Reach::Unknown && self.local_public)
            }
        }
    }
    /// The relay a peer holds a reservation with, as far as we know: what
    /// it said in its HELLO or records, or ourselves if it holds one with
    /// us (then we know before any HELLO, which the network may deliver
    /// after the peer's JOIN).
    #[must_use]
    pub fn relay_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.paths.get(peer).and_then(|p| p.relay).or_else(|| {
            (self.serving() && self.server.has_reservation(peer)).then_some(self.advertised.addr)
        })
    }
    /// Whether the node may join the overlay now: it is not behind a NAT,
    /// or it holds a reservation (so its peer record names a relay), or it
    /// waited long enough.
    #[must_use]
    pub fn ready_to_join(&self, now: Time) -> bool {
        !self.config.enabled
            || !self.wants_relays()
            || self.relays().next().is_some()
            || now >= self.join_deadline()
    }
    /// When [`Traversal::ready_to_join`] becomes true at the latest.
    #[must_use]
    pub fn join_deadline(&self) -> Time {
        self.started.unwrap_or(Time::ZERO) + self.config.reservation_wait
    }
    /// Whether `from` is our gateway's NAT-PMP address.
    #[must_use]
    pub fn is_gateway(&self, from: SocketAddr) -> bool {
        self.config.enabled && self.config.gateway == Some(from)
    }

    // ---- outputs ----

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Traversal::handle_timeout`] must next run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if !self.config.enabled || self.started.is_none() {
            return None;
        }
        let mut t = self.next_tick;
        for id in &self.upgrading {
            if let Some(d) = self.paths.get(id).and_then(|p| p.upgrade_deadline) {
                t = t.min(d);
            }
        }
        if let Some(p) = &self.probe {
            t = t.min(p.deadline);
        }
        if let PortMap::Asking { next, .. } = self.portmap {
            t = t.min(next);
        }
        Some(t)
    }

    // ---- inputs ----

    /// A contact given by the application: a relay candidate.
    pub fn add_candidate(&mut self, addr: SocketAddr) {
        self.push_candidate(addr, true);
    }

    /// A traversal message from `from` (`via_relay`: it came inside a relay
    /// frame). Returns the relayed datagram a `RelayFrom` carries, for the
    /// caller to decode and handle as coming from its source.
    pub(crate) fn handle_message(
        &mut self,
        now: Time,
        from: Peer,
        via_relay: bool,
        message: Message,
    ) -> Option<(PeerId, SocketAddr, Bytes)> {
        if !self.config.enabled {
            return None;
        }
        // Relay control and probes are only meaningful straight from the
        // sender; inside a relay frame they are someone's forgery.
        let direct_only = !matches!(
            message,
            Message::Hello { .. }
                | Message::PunchConnect { .. }
                | Message::PunchSync { .. }
                | Message::KeepAlive
        );
        if via_relay && direct_only {
            self.event(Event::Rejected {
                from: from.addr,
                what: "relay control message inside a relay frame",
            });
            return None;
        }
        match message {
            Message::Hello {
                observed,
                relay,
                reach,
            } => self.on_hello(now, from, via_relay, observed, relay, reach),
            Message::DialRequest { nonce } => self.serve_dial_request(now, from, nonce),
            Message::DialResponse {
                nonce,
                helpers,
                observed,
            } => self.on_dial_response(now, from, nonce, helpers, observed),
            Message::DialBackRequest {
                nonce,
                peer,
                target,
            } => self.on_dial_back_request(now, nonce, peer, target),
            Message::DialBack { nonce } => self.on_dial_back(now, from, nonce),
            Message::Reserve => {
                let serving = self.serving();
                self.server.reserve(
                    now,
                    serving,
                    from.id,
                    from.addr,
                    &mut relay::Outbox(&mut self.out),
                );
            }
            Message::ReserveStatus {
                status,
                ttl_s,
                observed,
                ..
            } => self.reservation_answer(now, from, status, ttl_s, observed),
            Message::Connect { target } => {
                let serving = self.serving();
                self.server.connect(
                    now,
                    serving,
                    from.id,
                    from.addr,
                    target,
                    &mut relay::Outbox(&mut self.out),
                );
            }
            Message::ConnectStatus { target, status } => {
                self.circuit_answer(now, from.addr, target, status);
            }
            Message::Stop {
                source,
                source_addr,
            } => self.stop(now, from.addr, source, source_addr),
            Message::StopStatus { source, status } => {
                self.server.stop_status(
                    now,
                    from.id,
                    source,
                    status,
                    &mut relay::Outbox(&mut self.out),
                );
            }
            Message::RelayTo { target, data } => {
                self.server.forward(
                    now,
                    from.id,
                    from.addr,
                    target,
                    data,
                    &mut relay::Outbox(&mut self.out),
                );
            }
            Message::RelayFrom {
                source,
                source_addr,
                data,
            } => return self.on_relay_from(from, source, source_addr, data),
            Message::CircuitClosed { peer, .. } => {
                // From a party of a circuit we relay: it is done with it.
                self.server
                    .release(from.id, peer, &mut relay::Outbox(&mut self.out));
                // From the relay of a circuit of ours: it is gone.
                self.on_circuit_closed(from.addr, peer);
            }
            Message::PunchConnect {
                attempt,
                reply,
                reach,
                addrs,
            } => self.punch_connect(now, from.id, attempt, reply, reach, addrs),
            Message::PunchSync { attempt } => self.punch_sync(now, from.id, attempt),
            Message::Punch { nonce, ack } => self.on_punch(from, nonce, ack),
            Message::KeepAlive => {
                if !via_relay {
                    self.server.touch(&from.id, from.addr);
                }
            }
        }
        None
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.config.enabled || self.started.is_none() {
            return;
        }
        self.upgrade_timers(now);
        self.probe_timer(now);
        self.portmap_timer(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
    }

    pub(super) fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// Housekeeping, every [`TICK`].
    fn tick(&mut self, now: Time) {
        let expired = self.server.next_expiry().is_some_and(|t| t <= now);
        if expired {
            self.server.expire(now, &mut relay::Outbox(&mut self.out));
        }
        self.manage_reservations(now);
        self.start_probe_if_due(now);
        self.circuit_timeouts(now);
        self.path_housekeeping(now);
        self.forget_contacted(now);
    }
}

/// Spend one unit of a `budget` per [`DIALBACK_WINDOW`] kept in `window`
/// (start, used); false when it is spent.
fn spend(window: &mut (Time, u32), now: Time, budget: u32) -> bool {
    let (start, used) = window;
    if now >= *start + DIALBACK_WINDOW {
        *start = now;
        *used = 0;
    }
    if *used >= budget {
        return false;
    }
    *used += 1;
    true
}

#[cfg(test)]
mod tests;
