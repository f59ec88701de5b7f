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
//! Every table is bounded: paths ([`Config::max_paths`], least recently
//! used evicted), frames waiting for a circuit, observations, relay
//! candidates, concurrent upgrades, and the relay server's own limits.

pub mod natpmp;
pub mod relay;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{self, KeyError};
use crate::{Peer, PeerId, Time};

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
    const ALL: [Status; 8] = [
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
/// Relay candidates kept.
const MAX_CANDIDATES: usize = 16;
/// Frames waiting for one circuit, and in all.
const MAX_PENDING_PER_PEER: usize = 8;
const MAX_PENDING: usize = 256;
/// Upgrades in progress at once.
const MAX_UPGRADES: usize = 32;
/// Dial-back requests served (as server or helper) per window.
const DIALBACK_BUDGET: u32 = 20;
const DIALBACK_WINDOW: Duration = Duration::from_secs(10);
/// Dial-backs sent as a helper per window (each is one small datagram).
const HELPER_BUDGET: u32 = 100;
/// Hole-punch probes per window: up to 50 upgrades' worth (4 addresses
/// each), far above what joining an overlay takes.
const PUNCH_BUDGET: u32 = 200;
/// Housekeeping period.
const TICK: Duration = Duration::from_secs(1);
/// A circuit request unanswered this long is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a refused circuit, before asking the same relay again.
const CIRCUIT_BACKOFF: Duration = Duration::from_secs(30);
/// A reservation request unanswered this long is tried elsewhere.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(3);
/// A relay that refused us is not asked again for this long.
const REFUSED_BACKOFF: Duration = Duration::from_secs(600);
/// A path unused and silent this long is forgotten.
const PATH_IDLE: Duration = Duration::from_secs(600);
/// Peers told of a change of our reachability.
const HELLO_FANOUT: usize = 32;
/// IPs remembered as sent to.
const MAX_CONTACTED: usize = 1024;

/// NAT traversal and relay messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// "I see you at `observed`; reach me through `relay`; my reachability."
    Hello {
        observed: SocketAddr,
        relay: Option<SocketAddr>,
        reach: Reach,
    },
    /// AutoNAT: please have my address dialled back.
    DialRequest {
        nonce: u64,
    },
    /// AutoNAT: whether a dial-back was asked of a third peer, and the
    /// address the server sees.
    DialResponse {
        nonce: u64,
        accepted: bool,
        observed: SocketAddr,
    },
    /// AutoNAT, server to helper: send a dial-back to `peer` at `target`
    /// (the id lets the helper open a session with it there).
    DialBackRequest {
        nonce: u64,
        peer: PeerId,
        target: SocketAddr,
    },
    /// AutoNAT, helper to client.
    DialBack {
        nonce: u64,
    },
    /// Relay: reserve (or refresh) a slot.
    Reserve,
    ReserveStatus {
        status: Status,
        ttl_s: u32,
        limit_duration_s: u32,
        limit_bytes: u32,
        observed: SocketAddr,
    },
    /// Relay: open a circuit to `target`.
    Connect {
        target: PeerId,
    },
    ConnectStatus {
        target: PeerId,
        status: Status,
    },
    /// Relay to target: `source` wants a circuit.
    Stop {
        source: PeerId,
        source_addr: SocketAddr,
    },
    StopStatus {
        source: PeerId,
        status: Status,
    },
    /// Client to relay: forward `data` (an encoded datagram) to `target`.
    RelayTo {
        target: PeerId,
        data: Bytes,
    },
    /// Relay to client: `data` from `source`.
    RelayFrom {
        source: PeerId,
        source_addr: SocketAddr,
        data: Bytes,
    },
    /// Relay to client: the circuit with `peer` is gone.
    CircuitClosed {
        peer: PeerId,
        status: Status,
    },
    /// DCUtR CONNECT (and its answer, `reply`).
    PunchConnect {
        attempt: u8,
        reply: bool,
        reach: Reach,
        addrs: Vec<SocketAddr>,
    },
    /// DCUtR SYNC.
    PunchSync {
        attempt: u8,
    },
    /// A direct probe (and its acknowledgement).
    Punch {
        nonce: u64,
        ack: bool,
    },
    /// Keeps NAT mappings open on an idle path.
    KeepAlive,
}

impl Message {
    /// Reachability codes on the wire.
    pub(crate) fn reach_code(r: Reach) -> u8 {
        r.code()
    }
    pub(crate) fn reach_from_code(c: u8) -> Option<Reach> {
        Reach::from_code(c)
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Circuit {
    None,
    Connecting { relay: SocketAddr, since: Time },
    Open { relay: SocketAddr },
    Refused { until: Time },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Upgrade {
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

struct Path {
    /// The address the overlay cores use for this peer.
    addr: SocketAddr,
    direct: Option<SocketAddr>,
    last_rx: Time,
    last_tx: Time,
    last_used: Time,
    relay: Option<SocketAddr>,
    reach: Reach,
    circuit: Circuit,
    pending: VecDeque<Bytes>,
    upgrade: Upgrade,
    upgrade_deadline: Option<Time>,
    reported: Option<PathKind>,
    hello_to: Option<SocketAddr>,
    /// A relay of ours: kept alive whether used or not.
    pinned: bool,
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

    fn fresh_direct(&self, now: Time, timeout: Duration) -> Option<SocketAddr> {
        self.direct.filter(|_| now < self.last_rx + timeout)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResState {
    Pending { sent: Time, tries: u8 },
    Active { expires: Time, refresh_at: Time },
}

struct Reservation {
    relay: SocketAddr,
    /// The relay's id, from its first answer: later answers must carry it.
    relay_id: Option<PeerId>,
    state: ResState,
}

struct Candidate {
    addr: SocketAddr,
    refused_until: Time,
    /// Given by the application (a contact): never pushed out by the
    /// candidates that peers' HELLOs name.
    sticky: bool,
}

struct Probe {
    server: IpAddr,
    nonce: u64,
    /// When the probe was asked for.
    since: Time,
    deadline: Time,
    accepted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortMap {
    Off,
    Asking {
        tries: u8,
        next: Time,
    },
    /// `tries`: renewal requests sent since the last answer.
    Mapped {
        addr: SocketAddr,
        renew_at: Time,
        tries: u8,
    },
    /// No answer, refused, or a mapping on a non-public address.
    Unusable,
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
    /// IPs we sent datagrams to directly, and when last (bounded): our
    /// NAT lets them in, so their dial-backs prove nothing.
    /// IPs we sent to: since when (without a gap of `PATH_IDLE`), and
    /// last.
    contacted: BTreeMap<IpAddr, (Time, Time)>,
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

    fn wants_relays(&self) -> bool {
        self.config.enabled
            && self.config.relays_wanted > 0
            && !self.reach.is_public()
            && (self.reach == Reach::Private || !self.local_public)
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

    fn push_candidate(&mut self, addr: SocketAddr, sticky: bool) {
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

    /// The address the overlay should use for `peer` (the one routes are
    /// kept under), if we track it.
    #[must_use]
    pub fn addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.paths.get(peer).map(|p| p.addr)
    }

    /// A datagram left straight for `to` (whatever chose the route).
    pub(crate) fn on_sent(&mut self, now: Time, to: SocketAddr) {
        if !self.config.enabled {
            return;
        }
        let ip = to.ip();
        if self.contacted.len() >= MAX_CONTACTED && !self.contacted.contains_key(&ip) {
            let oldest = self
                .contacted
                .iter()
                .min_by_key(|(_, t)| t.1)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                self.contacted.remove(&oldest);
            }
        }
        self.contacted
            .entry(ip)
            .and_modify(|t| t.1 = now)
            .or_insert((now, now));
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

    /// A NAT-PMP answer from the gateway.
    pub fn handle_gateway(&mut self, now: Time, bytes: &[u8]) {
        let Some(response) = natpmp::parse(bytes) else {
            self.event(Event::Rejected {
                from: self.config.gateway.expect("gateway checked by caller"),
                what: "NAT-PMP response",
            });
            return;
        };
        match response {
            natpmp::Response::ExternalAddress { result: 0, ip, .. } => self.mapped_ip = Some(ip),
            natpmp::Response::MapUdp {
                result: 0,
                external_port,
                lifetime_s,
                ..
            } if lifetime_s > 0 => {
                self.mapped_port = Some(external_port);
                let renew = Duration::from_secs(u64::from(lifetime_s) / 2);
                if let PortMap::Mapped { addr, .. } = self.portmap {
                    if addr.port() == external_port {
                        self.portmap = PortMap::Mapped {
                            addr,
                            renew_at: now + renew,
                            tries: 0,
                        };
                        return;
                    }
                    // Renewed on another port: we are reachable elsewhere.
                    self.lose_mapping(now);
                }
                self.portmap = PortMap::Asking {
                    tries: 0,
                    next: now + renew,
                };
            }
            _ => {
                // An error, or lifetime 0 (the gateway dropped the mapping).
                self.lose_mapping(now);
                self.portmap = PortMap::Unusable;
                return;
            }
        }
        if let (Some(ip), Some(port), PortMap::Asking { next, .. }) =
            (self.mapped_ip, self.mapped_port, self.portmap)
        {
            let external = SocketAddr::new(IpAddr::V4(ip), port);
            let public = is_public_ip(external.ip());
            self.event(Event::PortMapping { external, public });
            if public {
                self.portmap = PortMap::Mapped {
                    addr: external,
                    renew_at: next,
                    tries: 0,
                };
                self.reach = Reach::PortMapped;
                self.update_advertised(now);
            } else {
                self.portmap = PortMap::Unusable;
            }
        }
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
            } => {
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
            Message::DialRequest { nonce } => self.serve_dial_request(now, from, nonce),
            Message::DialResponse {
                nonce,
                accepted,
                observed,
            } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.nonce == nonce) {
                    p.accepted = accepted;
                    if !accepted {
                        self.probe = None;
                        self.next_probe = now + self.config.autonat_retry;
                    }
                    self.observe(now, from.addr.ip(), observed);
                }
            }
            Message::DialBackRequest {
                nonce,
                peer,
                target,
            } => {
                if crate::wire::usable(&target)
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
            Message::DialBack { nonce } => {
                if let Some(p) = self.probe.take_if(|p| p.nonce == nonce) {
                    // From an IP we had sent to before the probe, a
                    // dial-back proves nothing: our NAT's filter lets it
                    // in whether or not it would let a stranger in. Ask
                    // again. (Answering the helper's handshake, which
                    // arrived unsolicited, is what lets its DIAL-BACK in.)
                    if self
                        .contacted
                        .get(&from.addr.ip())
                        .is_some_and(|t| t.0 < p.since)
                    {
                        self.next_probe = now + self.config.autonat_retry;
                    } else {
                        self.autonat_result(now, p.server, true);
                    }
                }
            }
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
            } => {
                let via_our_relay = self.relays().any(|r| r == from.addr);
                // Our relays, the relay of a circuit of ours, or the
                // source's own relay (both sides may open a circuit to each
                // other at once, each through the other's relay).
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
                return Some((source, source_addr, data));
            }
            Message::CircuitClosed { peer, .. } => {
                // From a party of a circuit we relay: it is done with it.
                self.server
                    .release(from.id, peer, &mut relay::Outbox(&mut self.out));
                if let Some(p) = self.paths.get_mut(&peer) {
                    if matches!(p.circuit, Circuit::Open { relay } | Circuit::Connecting { relay, .. } if relay == from.addr)
                    {
                        p.circuit = Circuit::None;
                        self.pending_frames -= p.pending.len();
                        p.pending.clear();
                    }
                }
            }
            Message::PunchConnect {
                attempt,
                reply,
                reach,
                addrs,
            } => self.punch_connect(now, from.id, attempt, reply, reach, addrs),
            Message::PunchSync { attempt } => self.punch_sync(now, from.id, attempt),
            Message::Punch { nonce, ack } => {
                if !ack {
                    self.out.push_back(Output::To {
                        peer: from.id,
                        addr: from.addr,
                        message: Message::Punch { nonce, ack: true },
                    });
                }
            }
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
        if self.probe.as_ref().is_some_and(|p| p.deadline <= now) {
            let p = self.probe.take().expect("checked");
            if p.accepted {
                self.autonat_result(now, p.server, false);
            } else {
                self.next_probe = now + self.config.autonat_retry;
            }
        }
        self.portmap_timer(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
    }

    // ---- internals: paths ----

    fn path_mut(&mut self, now: Time, peer: PeerId, addr: SocketAddr) -> &mut Path {
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

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    // ---- internals: address discovery and AutoNAT ----

    fn observe(&mut self, now: Time, observer: IpAddr, addr: SocketAddr) {
        if observer == self.local.ip() || !crate::wire::usable(&addr) {
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

    fn serve_dial_request(&mut self, now: Time, from: Peer, nonce: u64) {
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
        let accepted = !helpers.is_empty() && self.spend_dialback_budget(now);
        if accepted {
            let (_, helper) = helpers.swap_remove(self.rng.get().gen_range(0..helpers.len()));
            self.out.push_back(Output::Raw(
                helper,
                Message::DialBackRequest {
                    nonce,
                    peer: from.id,
                    target: from.addr,
                },
            ));
        }
        self.out.push_back(Output::Raw(
            from.addr,
            Message::DialResponse {
                nonce,
                accepted,
                observed: from.addr,
            },
        ));
    }

    fn spend_dialback_budget(&mut self, now: Time) -> bool {
        spend(&mut self.dialback_window, now, DIALBACK_BUDGET)
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
            accepted: false,
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

    // ---- internals: reservations (client side) ----

    fn reservation_answer(
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

    fn manage_reservations(&mut self, now: Time) {
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

    /// Recompute the record we advertise; on a change, tell the application
    /// and the peers we talk to directly.
    fn update_advertised(&mut self, now: Time) {
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

    // ---- internals: circuits ----

    fn circuit_answer(&mut self, now: Time, relay: SocketAddr, target: PeerId, status: Status) {
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

    fn stop(&mut self, now: Time, relay: SocketAddr, source: PeerId, source_addr: SocketAddr) {
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

    // ---- internals: hole punching ----

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

    fn start_upgrade(&mut self, now: Time, peer: PeerId, attempt: u8) {
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

    fn punch_connect(
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
            .filter(crate::wire::usable)
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

    fn punch_sync(&mut self, now: Time, peer: PeerId, attempt: u8) {
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

    fn upgrade_timers(&mut self, now: Time) {
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

    // ---- internals: port mapping, housekeeping ----

    /// A mapping we advertised is gone: we are no longer public through it;
    /// AutoNAT finds out what we are now.
    fn lose_mapping(&mut self, now: Time) {
        let mapped = matches!(self.portmap, PortMap::Mapped { .. });
        self.portmap = PortMap::Asking {
            tries: 0,
            next: now,
        };
        if mapped && self.reach == Reach::PortMapped {
            self.reach = Reach::Unknown;
            self.confidence = 0;
            self.next_probe = now;
            self.update_advertised(now);
        }
    }

    fn portmap_timer(&mut self, now: Time) {
        let (tries, next) = match self.portmap {
            PortMap::Asking { tries, next } => (tries, next),
            PortMap::Mapped {
                renew_at, tries, ..
            } => (tries, renew_at),
            _ => return,
        };
        if next > now {
            return;
        }
        let Some(gateway) = self.config.gateway else {
            return;
        };
        if tries >= 3 {
            // No answer to three requests (RFC 6886 retries 9 times over
            // minutes; a node that joins needs to know sooner). A mapping
            // that can no longer be renewed is gone: the node is no longer
            // public through it.
            self.lose_mapping(now);
            self.portmap = PortMap::Unusable;
            return;
        }
        let lifetime = self.config.mapping_lifetime.as_secs() as u32;
        let port = self.local.port();
        if self.mapped_ip.is_none() {
            self.out.push_back(Output::Bytes(
                gateway,
                natpmp::external_address_request().to_vec(),
            ));
        }
        self.out.push_back(Output::Bytes(
            gateway,
            natpmp::map_udp_request(port, port, lifetime).to_vec(),
        ));
        let backoff = Duration::from_millis(250 << tries);
        match &mut self.portmap {
            PortMap::Mapped {
                renew_at, tries, ..
            } => {
                *renew_at = now + backoff * 4;
                *tries += 1;
            }
            pm => {
                *pm = PortMap::Asking {
                    tries: tries + 1,
                    next: now + backoff,
                }
            }
        }
    }

    fn tick(&mut self, now: Time) {
        let expired = self.server.next_expiry().is_some_and(|t| t <= now);
        if expired {
            self.server.expire(now, &mut relay::Outbox(&mut self.out));
        }
        self.manage_reservations(now);
        if self.probe.is_none()
            && now >= self.next_probe
            && self.reach != Reach::PortMapped
            && !(self.reach == Reach::Unknown && self.local_public && self.paths.is_empty())
        {
            self.start_probe(now);
        }
        // Keep-alives, circuit time-outs, forgetting idle paths.
        let keepalive = self.config.keepalive_interval;
        let timeout = self.config.path_timeout;
        let mut idle = Vec::new();
        for (id, p) in &mut self.paths {
            if let Circuit::Connecting { since, .. } = p.circuit {
                if now >= since + CONNECT_TIMEOUT {
                    p.circuit = Circuit::Refused {
                        until: now + CIRCUIT_BACKOFF,
                    };
                    self.pending_frames -= p.pending.len();
                    p.pending.clear();
                }
            }
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
        self.contacted.retain(|_, t| now < t.1 + PATH_IDLE);
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

#[cfg(test)]
mod tests;
