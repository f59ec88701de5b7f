//! Scenario files: everything a run depends on besides the code.
//!
//! A scenario is TOML with every table `deny_unknown_fields`. Parsing errors
//! come from the TOML parser with line and column; checks of meaning
//! (a fraction above 1, an event after the end, an empty group) name the
//! key and the line it is on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grove_netsim::{Filtering, Jitter, Link, Mapping, NatConfig, PortAllocation};
use serde::Deserialize;

/// A parsed and validated scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; reports go to `reports/<name>/<seed>/`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice in the run (overridable with `--seed`).
    pub seed: u64,
    /// Virtual duration of the run.
    pub duration_s: f64,
    /// Delivery and timer instants are rounded up to this grid (0: exact).
    #[serde(default = "default_grid_ms")]
    pub time_grid_ms: f64,
    /// Protocol settings of every node (`grove_node::node::Config`).
    #[serde(default)]
    pub node: grove_node::node::Config,
    pub join: Join,
    pub groups: Vec<Group>,
    /// Homes behind one carrier-grade NAT (NAT entries with `cgnat = true`).
    #[serde(default = "default_cgnat_size")]
    pub cgnat_size: usize,
    /// The kind of carrier-grade NAT, unless an entry names its own (see
    /// [`NatShare::cgnat_config`]).
    #[serde(default = "default_cgnat_kind")]
    pub cgnat_kind: NatKind,
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    #[serde(default)]
    pub workload: Vec<Workload>,
    /// Connection attempts between hosts of every pair of NAT labels (the
    /// NAT matrix).
    #[serde(default)]
    pub pairs: Option<Pairs>,
    #[serde(default)]
    pub measure: Measure,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Bounds on the difference of a report value between two cells of
    /// the sweep (a feature on against off).
    #[serde(default)]
    pub contrasts: Vec<grove_analysis::contrast::Contrast>,
    #[serde(default)]
    pub sweep: Option<Sweep>,
    /// Hostile hosts: they run an attack instead of a node.
    #[serde(default)]
    pub attack: Vec<Attack>,
    /// The pub/sub workload (GossipSub, or Plumtree for comparison).
    #[serde(default)]
    pub pubsub: Option<crate::pubsub::PubSub>,
    /// DHT workload: lookups, providers, availability probes.
    #[serde(default)]
    pub dht: Option<crate::dht::DhtScenario>,
    /// The knowledge commons workload (turns the commons on in every node).
    #[serde(default)]
    pub knowledge: Option<crate::knowledge::KnowledgeLoad>,
}

fn default_grid_ms() -> f64 {
    1.0
}

fn default_cgnat_size() -> usize {
    64
}

fn default_cgnat_kind() -> NatKind {
    NatKind::PortRestricted
}

/// How nodes enter the overlay: one at a time, `interval_ms` apart, in
/// group order, each joining through a contact.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// When the first node starts.
    #[serde(default)]
    pub start_s: f64,
    /// Gap between two nodes starting.
    pub interval_ms: f64,
    /// Whom a new node joins through.
    #[serde(default)]
    pub contact: Contact,
    /// Contacts come from this group only (e.g. the public relays that
    /// UDP-blocked homes can reach), once one of its hosts runs.
    #[serde(default)]
    pub contact_group: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contact {
    /// The first node, for everyone (the HyParView paper's setting).
    #[default]
    First,
    /// A random node among those already running.
    Random,
    /// A random running node with a public address (no NAT): bootstrap
    /// contacts are public in practice. Any running node if none is.
    RandomPublic,
}

/// A number, or a `[min, max]` range drawn uniformly per host.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(untagged)]
pub enum Range {
    Fixed(f64),
    Uniform([f64; 2]),
}

impl Range {
    pub fn bounds(&self) -> (f64, f64) {
        match *self {
            Range::Fixed(x) => (x, x),
            Range::Uniform([a, b]) => (a, b),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JitterKind {
    None,
    Uniform,
    #[default]
    Exponential,
}

/// A group of identical residential hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub count: usize,
    /// One-way access-link latency; a datagram crosses two access links.
    pub latency_ms: Range,
    /// Per-crossing jitter: its distribution and scale (mean or max).
    #[serde(default)]
    pub jitter: JitterKind,
    #[serde(default)]
    pub jitter_ms: f64,
    /// Loss probability per crossing of the access link.
    #[serde(default)]
    pub loss: f64,
    /// The group's NAT mix: shares of hosts behind each kind of NAT; the
    /// rest (fractions sum to at most 1) are public.
    #[serde(default)]
    pub nat: Vec<NatShare>,
    /// The group's public hosts can be reached by hosts whose UDP is blocked
    /// (`kind = "blocked"`): relays behind a TCP/443 fallback.
    #[serde(default)]
    pub fallback_reachable: bool,
    /// Sessions and departures of the group's hosts (none: they stay).
    #[serde(default)]
    pub churn: Option<crate::churn::Churn>,
    /// The group's hosts arrive over time instead of joining at the start.
    #[serde(default)]
    pub arrivals: Option<crate::churn::Arrivals>,
}

/// What sits between a host and the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatKind {
    /// No NAT: a public address.
    Public,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address-and-port-dependent mapping and filtering, sequential ports.
    Symmetric,
    /// A port-restricted cone that drops all UDP except to and from
    /// fallback-reachable hosts.
    Blocked,
    /// `mapping` and `filtering` given explicitly.
    Custom,
}

impl NatKind {
    /// The kind's name in scenario files and reports.
    pub fn label(self) -> &'static str {
        match self {
            NatKind::Public => "public",
            NatKind::FullCone => "full-cone",
            NatKind::RestrictedCone => "restricted-cone",
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
            NatKind::Blocked => "blocked",
            NatKind::Custom => "custom",
        }
    }

    /// The NAT of this kind with default settings (None: public, and
    /// custom, which needs its behaviours).
    pub fn preset(self) -> Option<NatConfig> {
        match self {
            NatKind::Public | NatKind::Custom => None,
            NatKind::FullCone => Some(NatConfig::full_cone()),
            NatKind::RestrictedCone => Some(NatConfig::restricted_cone()),
            NatKind::PortRestricted => Some(NatConfig::port_restricted_cone()),
            NatKind::Symmetric => Some(NatConfig::symmetric()),
            NatKind::Blocked => Some(NatConfig {
                udp_blocked: true,
                ..NatConfig::port_restricted_cone()
            }),
        }
    }
}

/// A mapping or filtering behaviour (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// How a NAT picks outside ports (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    Preserving,
    Sequential,
    Random,
}

/// One entry of a group's NAT mix: `fraction` of the group's hosts, each
/// behind its own home NAT of `kind` (and, with `cgnat`, that home NAT
/// behind a carrier-grade NAT shared with up to `cgnat_size - 1` other
/// homes of the same entry).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatShare {
    pub kind: NatKind,
    pub fraction: f64,
    /// `custom` only: the mapping behaviour.
    #[serde(default)]
    pub mapping: Option<Behaviour>,
    /// `custom` only: the filtering behaviour.
    #[serde(default)]
    pub filtering: Option<Behaviour>,
    /// Port allocation (default: preserving; sequential for `symmetric`).
    #[serde(default)]
    pub port_allocation: Option<Allocation>,
    /// Mapping lifetime without inbound traffic (default 30 s).
    #[serde(default)]
    pub timeout_unreplied_s: Option<f64>,
    /// Mapping lifetime once inbound traffic was admitted (default 120 s).
    #[serde(default)]
    pub timeout_established_s: Option<f64>,
    /// Hairpinning (default false).
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// NAT-PMP support (default false).
    #[serde(default)]
    pub port_mapping: Option<bool>,
    /// Behind a carrier-grade NAT too (double NAT).
    #[serde(default)]
    pub cgnat: bool,
    /// The carrier-grade NAT's kind (default: the scenario's `cgnat_kind`).
    #[serde(default)]
    pub cgnat_kind: Option<NatKind>,
    /// These hosts' label in reports (default: the kind, with `+cgnat`
    /// behind a carrier-grade NAT), e.g. to tell apart two entries of one
    /// kind.
    #[serde(default)]
    pub label: Option<String>,
}

impl NatShare {
    /// The home NAT of this entry (None: public).
    pub fn config(&self) -> Option<NatConfig> {
        let behaviour = |b: Behaviour| match b {
            Behaviour::EndpointIndependent => {
                (Mapping::EndpointIndependent, Filtering::EndpointIndependent)
            }
            Behaviour::AddressDependent => (Mapping::AddressDependent, Filtering::AddressDependent),
            Behaviour::AddressAndPortDependent => (
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
            ),
        };
        let mut c = match self.kind {
            NatKind::Public => return None,
            NatKind::Custom => {
                let m = behaviour(self.mapping?).0;
                let f = behaviour(self.filtering?).1;
                NatConfig::new(m, f)
            }
            kind => kind.preset()?,
        };
        if let Some(a) = self.port_allocation {
            c.port_allocation = match a {
                Allocation::Preserving => PortAllocation::Preserving,
                Allocation::Sequential => PortAllocation::Sequential,
                Allocation::Random => PortAllocation::Random,
            };
        }
        if let Some(t) = self.timeout_unreplied_s {
            c.timeout_unreplied = Duration::from_secs_f64(t);
        }
        if let Some(t) = self.timeout_established_s {
            c.timeout_established = Duration::from_secs_f64(t);
        }
        if let Some(h) = self.hairpin {
            c.hairpin = h;
        }
        if let Some(p) = self.port_mapping {
            c.port_mapping = p;
        }
        Some(c)
    }

    /// The carrier-grade NAT of this entry, given the scenario's default
    /// kind: that kind's preset with random port allocation and
    /// hairpinning (RFC 6888 asks CGNATs to hairpin), default timeouts, no
    /// port mapping.
    pub fn cgnat_config(&self, default: NatKind) -> NatConfig {
        let kind = self.cgnat_kind.unwrap_or(default);
        NatConfig {
            port_allocation: PortAllocation::Random,
            hairpin: true,
            ..kind
                .preset()
                .unwrap_or_else(NatConfig::port_restricted_cone)
        }
    }

    /// The label of hosts of this entry in reports: its `label`, else the
    /// kind, with `+cgnat` behind a carrier-grade NAT.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        format!(
            "{}{}",
            self.kind.label(),
            if self.cgnat { "+cgnat" } else { "" }
        )
    }
}

impl Group {
    /// The link of one host, with its latency drawn by `draw` in the range.
    pub fn link(&self, latency_ms: f64) -> Link {
        let scale = Duration::from_secs_f64(self.jitter_ms / 1000.0);
        Link {
            latency: Duration::from_secs_f64(latency_ms / 1000.0),
            jitter: match self.jitter {
                _ if self.jitter_ms == 0.0 => Jitter::None,
                JitterKind::None => Jitter::None,
                JitterKind::Uniform => Jitter::Uniform { max: scale },
                JitterKind::Exponential => Jitter::Exponential { mean: scale },
            },
            loss: self.loss,
        }
    }
}

/// A fault applied at an instant.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TimelineEvent {
    /// Crash `fraction` of the live hosts (of `group`, if given) at once;
    /// with `repeat`, again every `repeat.every_s`, `repeat.times` in all.
    Crash {
        at_s: f64,
        fraction: f64,
        #[serde(default)]
        group: Option<String>,
        #[serde(default)]
        repeat: Option<Repeat>,
    },
    /// Restart `fraction` of the crashed hosts (of `group`, if given); each
    /// rejoins through a random live host.
    Restart {
        at_s: f64,
        #[serde(default = "one")]
        fraction: f64,
        #[serde(default)]
        group: Option<String>,
    },
    /// Split the network: each list of groups is one side (hosts in no list
    /// form one more side), or, with `fraction`, that share of hosts chosen
    /// at random is cut off from the rest.
    Partition {
        at_s: f64,
        #[serde(default)]
        sides: Vec<Vec<String>>,
        #[serde(default)]
        fraction: Option<f64>,
    },
    /// End every partition.
    Heal { at_s: f64 },
    /// Give `fraction` of the hosts behind a NAT (of `group`, if given) a
    /// new address on their home NAT, as when a home router reconnects:
    /// every mapping of that NAT is lost. A home behind a carrier-grade NAT
    /// gets a new address on the CGNAT's inside.
    ChangeIp {
        at_s: f64,
        fraction: f64,
        #[serde(default)]
        group: Option<String>,
    },
}

/// Apply an event several times.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every_s: f64,
    pub times: usize,
}

fn one() -> f64 {
    1.0
}

impl TimelineEvent {
    pub fn at_s(&self) -> f64 {
        match *self {
            TimelineEvent::Crash { at_s, .. }
            | TimelineEvent::Restart { at_s, .. }
            | TimelineEvent::Partition { at_s, .. }
            | TimelineEvent::ChangeIp { at_s, .. }
            | TimelineEvent::Heal { at_s } => at_s,
        }
    }

    /// Every instant at which the event applies.
    pub fn instants_s(&self) -> Vec<f64> {
        match self {
            TimelineEvent::Crash {
                at_s,
                repeat: Some(r),
                ..
            } => (0..r.times).map(|k| at_s + r.every_s * k as f64).collect(),
            _ => vec![self.at_s()],
        }
    }

    /// A short label, e.g. `crash 50% @60s`.
    pub fn label(&self) -> String {
        let pct = |f: f64| format!("{}%", (f * 1000.0).round() / 10.0);
        match self {
            TimelineEvent::Crash {
                at_s,
                fraction,
                group,
                repeat,
            } => format!(
                "crash {}{}{} @{at_s}s",
                pct(*fraction),
                group
                    .as_ref()
                    .map(|g| format!(" of {g}"))
                    .unwrap_or_default(),
                repeat
                    .map(|r| format!(" every {}s x{}", r.every_s, r.times))
                    .unwrap_or_default(),
            ),
            TimelineEvent::Restart { at_s, fraction, .. } => {
                format!("restart {} @{at_s}s", pct(*fraction))
            }
            TimelineEvent::Partition { at_s, .. } => format!("partition @{at_s}s"),
            TimelineEvent::Heal { at_s } => format!("heal @{at_s}s"),
            TimelineEvent::ChangeIp {
                at_s,
                fraction,
                group,
            } => format!(
                "change-ip {}{} @{at_s}s",
                pct(*fraction),
                group
                    .as_ref()
                    .map(|g| format!(" of {g}"))
                    .unwrap_or_default(),
            ),
        }
    }
}

/// A series of broadcasts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub start_s: f64,
    pub count: usize,
    pub interval_ms: f64,
    #[serde(default = "default_payload")]
    pub payload_bytes: usize,
    /// Who broadcasts: `random` (a random live host each time), `first`
    /// (host 0, or a random live host if it is down), or a group name.
    #[serde(default = "default_from")]
    pub from: String,
    /// A fixed set of senders (agents that publish again and again): the
    /// first broadcast draws this many hosts from `from`, every broadcast
    /// draws its origin among them, and a sender found down is replaced by
    /// a random live one. Unset: every broadcast draws from all of `from`.
    #[serde(default)]
    pub senders: Option<usize>,
}

/// Most senders a workload may name.
pub const MAX_SENDERS: usize = 100_000;

fn default_payload() -> usize {
    256
}
fn default_from() -> String {
    "random".into()
}

/// At `at_s`, for every ordered pair of NAT labels (A, B) among the hosts
/// of `group` (all hosts if none), `per_cell` random running hosts of
/// label A are each asked to connect to a random running host of label B,
/// given the record B advertises (its address, and its relay if it has
/// one).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pairs {
    pub at_s: f64,
    pub per_cell: usize,
    #[serde(default)]
    pub group: Option<String>,
}

/// The hosts of `group` run no node but an attacker (see
/// [`crate::attack`]): from `start_s` until the end of the run, each sends
/// `rate_per_s` hostile messages of `kind` to random hosts of `target`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    pub kind: AttackKind,
    pub group: String,
    pub target: String,
    pub start_s: f64,
    pub rate_per_s: f64,
}

/// What an attacker sends. Sybils are fresh identities with sessions of
/// their own: they handshake with their target like any peer, then send
/// sealed messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// RESERVE, each from a fresh Sybil.
    ReserveFlood,
    /// CONNECT to random honest peers, from the attacker's Sybils.
    CircuitFlood,
    /// Relay and hole-punch messages with random bytes in their bodies,
    /// sealed by the attacker's Sybils.
    Garbage,
    /// Datagrams claiming other peers' ids: plaintext with an honest id in
    /// the header, data datagrams with random or sniffed receiver indices,
    /// and sealed messages whose header names another peer than the
    /// session's.
    SpoofId,
    /// Datagrams captured on the network, resent to their destination from
    /// the attacker's own address.
    Replay,
    /// Handshake initiations with a valid mac1 from forged source
    /// addresses (the attacking group must have no NAT).
    HandshakeFlood,
    /// Attempts on the target relays' reservations: RESERVE claiming a
    /// reserved peer's id, STOP and RELAY-FROM frames forged as the relay's
    /// (sealed by a Sybil, or from the relay's own address), CONNECTs to
    /// the reserved peers.
    RelayTakeover,
}

impl AttackKind {
    pub const ALL: [AttackKind; 7] = [
        AttackKind::ReserveFlood,
        AttackKind::CircuitFlood,
        AttackKind::Garbage,
        AttackKind::SpoofId,
        AttackKind::Replay,
        AttackKind::HandshakeFlood,
        AttackKind::RelayTakeover,
    ];

    /// The kind's name in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::ReserveFlood => "reserve-flood",
            AttackKind::CircuitFlood => "circuit-flood",
            AttackKind::Garbage => "garbage",
            AttackKind::SpoofId => "spoof-id",
            AttackKind::Replay => "replay",
            AttackKind::HandshakeFlood => "handshake-flood",
            AttackKind::RelayTakeover => "relay-takeover",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Measure {
    /// A host counts towards a broadcast's reliability if it was running
    /// when the broadcast was sent and for this long afterwards.
    pub window_s: f64,
    /// BFS sources for the overlay's average shortest path.
    pub path_sources: usize,
    /// Include one entry per broadcast in the report.
    pub per_broadcast: bool,
    /// Time-series sampling interval (0: no time series).
    pub series_s: f64,
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            window_s: 10.0,
            path_sources: 64,
            per_broadcast: true,
            series_s: 10.0,
        }
    }
}

/// A bound on a report value, applied by CI.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Dotted path into the report, e.g. `broadcast.reliability.mean` or
    /// `phases.1.broadcast.latency_ms.p99`.
    pub metric: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// Run the scenario once per value of one parameter.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Dotted path of the parameter, e.g. `timeline.0.fraction`.
    pub param: String,
    pub values: Vec<toml::Value>,
}

/// One run of a scenario: the swept parameter and its value, if any.
pub type Cell = (Option<(String, toml::Value)>, Scenario);

/// A scenario that could not be loaded, with where and why.
#[derive(Debug)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// A scenario file with its text, for error locations and the report.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            message: format!("cannot read the scenario file: {e}"),
        })?;
        Ok(Source {
            path: path.to_owned(),
            text,
        })
    }

    fn error(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.path.clone(),
            line: locate(&self.text, key),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Parse and validate the scenario, and expand its sweep: one scenario
    /// per cell with the value it was given (a single cell without a sweep).
    pub fn load(&self) -> Result<Vec<Cell>, ScenarioError> {
        let base: Scenario = toml::from_str(&self.text).map_err(|e| ScenarioError {
            file: self.path.clone(),
            line: e.span().map(|s| {
                self.text[..s.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1
            }),
            key: String::new(),
            message: e.message().to_owned(),
        })?;
        self.validate(&base, "")?;
        if base.sweep.as_ref().is_some_and(|s| s.values.is_empty()) {
            return Err(self.error("sweep.values", "a sweep needs at least one value"));
        }
        let cell_count = base.sweep.as_ref().map_or(1, |s| s.values.len());
        for (i, c) in base.contrasts.iter().enumerate() {
            if base.sweep.is_none() {
                return Err(self.error(
                    &format!("contrasts.{i}"),
                    "a contrast compares two cells of a `[sweep]`, and the scenario has none",
                ));
            }
            c.validate(cell_count)
                .map_err(|e| self.error(&format!("contrasts.{i}"), e))?;
        }
        let Some(sweep) = &base.sweep else {
            return Ok(vec![(None, base)]);
        };
        let mut value: toml::Value = toml::from_str(&self.text).expect("parsed above");
        if let Some(t) = value.as_table_mut() {
            t.remove("sweep");
        }
        if lookup(&mut value, &sweep.param).is_none() {
            return Err(self.error(
                "sweep.param",
                format!("`{}` names no value in this scenario", sweep.param),
            ));
        }
        let mut cells = Vec::with_capacity(sweep.values.len());
        for (i, v) in sweep.values.iter().enumerate() {
            let mut cell = value.clone();
            *lookup(&mut cell, &sweep.param).expect("checked above") = v.clone();
            let context = format!("sweep.values[{i}] = {v}: ");
            let scenario: Scenario = cell.try_into().map_err(|e: toml::de::Error| {
                self.error("sweep.values", format!("{context}{}", e.message()))
            })?;
            self.validate(&scenario, &context)?;
            cells.push((Some((sweep.param.clone(), v.clone())), scenario));
        }
        Ok(cells)
    }

    fn validate(&self, s: &Scenario, context: &str) -> Result<(), ScenarioError> {
        let err = |key: String, msg: String| Err(self.error(&key, format!("{context}{msg}")));
        let time_ok = |t: f64| t.is_finite() && t >= 0.0;
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return err(
                "name".into(),
                "must be non-empty letters, digits, `-`, `_` or `.`".into(),
            );
        }
        if !(s.duration_s.is_finite() && s.duration_s > 0.0) {
            return err(
                "duration_s".into(),
                format!("must be a positive number of seconds, got {}", s.duration_s),
            );
        }
        if !(time_ok(s.time_grid_ms) && s.time_grid_ms <= 1000.0) {
            return err(
                "time_grid_ms".into(),
                format!("must be in [0, 1000], got {}", s.time_grid_ms),
            );
        }
        if !(time_ok(s.join.start_s) && s.join.start_s < s.duration_s) {
            return err(
                "join.start_s".into(),
                format!("must be in [0, duration_s), got {}", s.join.start_s),
            );
        }
        if !(time_ok(s.join.interval_ms)) {
            return err(
                "join.interval_ms".into(),
                format!("must be >= 0, got {}", s.join.interval_ms),
            );
        }
        // Every section of `[node]`, `[node.nat]` and `[node.transport]` too.
        if let Err(e) = s.node.validate() {
            return err(format!("node.{}", e.path()), e.message);
        }
        if let Some(p) = &s.pubsub {
            let groups: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
            let hosts = s.groups.iter().map(|g| g.count).sum();
            if let Err((key, msg)) = p.validate(&groups, hosts, s.duration_s) {
                return err(key, msg);
            }
        }
        if let Some(d) = &s.dht {
            if let Err((key, msg)) = d.check(&s.node.dht) {
                return err(key, msg);
            }
        }
        if s.groups.is_empty() {
            return err(
                "groups".into(),
                "at least one [[groups]] entry is needed".into(),
            );
        }
        let mut total = 0usize;
        for (i, g) in s.groups.iter().enumerate() {
            let key = |k: &str| format!("groups.{i}.{k}");
            if g.count == 0 {
                return err(
                    key("count"),
                    format!("group `{}` is empty (count = 0)", g.name),
                );
            }
            if s.groups[..i].iter().any(|o| o.name == g.name) {
                return err(
                    key("name"),
                    format!("group name `{}` is used twice", g.name),
                );
            }
            let (lo, hi) = g.latency_ms.bounds();
            if !(time_ok(lo) && time_ok(hi) && lo <= hi && hi <= 10_000.0) {
                return err(
                    key("latency_ms"),
                    format!(
                        "must be a number or [min, max] within [0, 10000] ms, got [{lo}, {hi}]"
                    ),
                );
            }
            if !(time_ok(g.jitter_ms) && g.jitter_ms <= 10_000.0) {
                return err(
                    key("jitter_ms"),
                    format!("must be in [0, 10000], got {}", g.jitter_ms),
                );
            }
            if !(0.0..=1.0).contains(&g.loss) {
                return err(
                    key("loss"),
                    format!("must be a probability in [0, 1], got {}", g.loss),
                );
            }
            let mut sum = 0.0;
            for (k, n) in g.nat.iter().enumerate() {
                // Entries are inline tables: the line is that of `nat`.
                let at = key("nat");
                let entry = |msg: String| {
                    Err(self.error(
                        &at,
                        format!("{context}entry {k} (`{}`): {msg}", n.kind.label()),
                    ))
                };
                if !(0.0..=1.0).contains(&n.fraction) {
                    return entry(format!("`fraction` must be in [0, 1], got {}", n.fraction));
                }
                if n.label.as_ref().is_some_and(|l| {
                    l.is_empty()
                        || !l
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
                }) {
                    return entry(
                        "`label` must be non-empty letters, digits, `-`, `_`, `+` or `.`".into(),
                    );
                }
                sum += n.fraction;
                let custom = n.kind == NatKind::Custom;
                if custom && (n.mapping.is_none() || n.filtering.is_none()) {
                    return entry("`custom` needs `mapping` and `filtering`".into());
                }
                if !custom && (n.mapping.is_some() || n.filtering.is_some()) {
                    return entry(
                        "`mapping` and `filtering` are only for `kind = \"custom\"`".into(),
                    );
                }
                let has_options = n.port_allocation.is_some()
                    || n.timeout_unreplied_s.is_some()
                    || n.timeout_established_s.is_some()
                    || n.hairpin.is_some()
                    || n.port_mapping.is_some()
                    || n.cgnat
                    || n.cgnat_kind.is_some();
                if n.kind == NatKind::Public && has_options {
                    return entry("a public host has no NAT to configure".into());
                }
                for (name, t) in [
                    ("timeout_unreplied_s", n.timeout_unreplied_s),
                    ("timeout_established_s", n.timeout_established_s),
                ] {
                    if let Some(t) = t.filter(|t| !(t.is_finite() && *t > 0.0 && *t <= 1e6)) {
                        return entry(format!("`{name}` must be in (0, 1e6] s, got {t}"));
                    }
                }
                if let Some(c) = n.cgnat_kind {
                    if !n.cgnat {
                        return entry("`cgnat_kind` needs `cgnat = true`".into());
                    }
                    if c.preset().is_none() || c == NatKind::Blocked {
                        return entry(format!("`cgnat_kind` must be `full-cone`, `restricted-cone`, `port-restricted` or `symmetric`, got `{}`", c.label()));
                    }
                }
            }
            if sum > 1.0 + 1e-9 {
                return err(
                    key("nat"),
                    format!(
                        "the fractions of group `{}` sum to {}, more than 1",
                        g.name,
                        (sum * 1e6).round() / 1e6
                    ),
                );
            }
            if let Some(c) = &g.churn {
                if let Err((k, msg)) = c.validate(s.duration_s) {
                    return err(key(&format!("churn.{k}")), msg);
                }
            }
            if let Some(a) = &g.arrivals {
                if let Err((k, msg)) = a.validate(s.duration_s) {
                    return err(key(&format!("arrivals.{k}")), msg);
                }
            }
            total += g.count;
        }
        let scheduled: usize = s
            .groups
            .iter()
            .filter(|g| g.arrivals.is_none())
            .map(|g| g.count)
            .sum();
        let last_start =
            s.join.start_s + s.join.interval_ms / 1000.0 * scheduled.saturating_sub(1) as f64;
        if scheduled > 0 && last_start >= s.duration_s {
            return err(
                "join.interval_ms".into(),
                format!("the last of {scheduled} hosts would start at {last_start:.3} s, not before the end of the run ({} s)", s.duration_s),
            );
        }
        if total > 1_000_000 {
            return err(
                "groups".into(),
                format!("{total} hosts in all; the limit is 1,000,000"),
            );
        }
        if s.cgnat_size == 0 || s.cgnat_size > 65_536 {
            return err(
                "cgnat_size".into(),
                format!("must be in [1, 65536], got {}", s.cgnat_size),
            );
        }
        if s.cgnat_kind.preset().is_none() || s.cgnat_kind == NatKind::Blocked {
            return err(
                "cgnat_kind".into(),
                format!(
                    "must be `full-cone`, `restricted-cone`, `port-restricted` or `symmetric`, got `{}`",
                    s.cgnat_kind.label()
                ),
            );
        }
        let group_known = |g: &Option<String>| {
            g.as_ref()
                .is_none_or(|g| s.groups.iter().any(|x| &x.name == g))
        };
        for (i, ev) in s.timeline.iter().enumerate() {
            let key = |k: &str| format!("timeline.{i}.{k}");
            let at = ev.at_s();
            if !(time_ok(at) && at <= s.duration_s) {
                return err(
                    key("at_s"),
                    format!("must be within the run [0, {}] s, got {at}", s.duration_s),
                );
            }
            if i > 0 && at < s.timeline[i - 1].at_s() {
                return err(key("at_s"), "timeline events must be in time order".into());
            }
            if let TimelineEvent::Crash {
                repeat: Some(r), ..
            } = ev
            {
                let last = ev.instants_s().last().copied().unwrap_or(at);
                if !(r.every_s.is_finite() && r.every_s > 0.0) || r.times == 0 {
                    return err(key("repeat"), "needs every_s > 0 and times >= 1".into());
                }
                if last > s.duration_s {
                    return err(key("repeat"), format!("the last repetition would be at {last} s, after the end of the run ({} s)", s.duration_s));
                }
            }
            match ev {
                TimelineEvent::Crash {
                    fraction, group, ..
                }
                | TimelineEvent::Restart {
                    fraction, group, ..
                }
                | TimelineEvent::ChangeIp {
                    fraction, group, ..
                } => {
                    if !(0.0..=1.0).contains(fraction) {
                        return err(
                            key("fraction"),
                            format!("must be in [0, 1], got {fraction}"),
                        );
                    }
                    if !group_known(group) {
                        return err(
                            key("group"),
                            format!("no group is named `{}`", group.as_deref().unwrap_or("")),
                        );
                    }
                }
                TimelineEvent::Partition {
                    sides, fraction, ..
                } => {
                    match (sides.is_empty(), fraction) {
                        (true, None) => {
                            return err(
                                key("sides"),
                                "a partition needs `sides` (lists of groups) or `fraction`".into(),
                            )
                        }
                        (false, Some(_)) => {
                            return err(
                                key("fraction"),
                                "give `sides` or `fraction`, not both".into(),
                            )
                        }
                        (true, Some(f)) if !(0.0..1.0).contains(f) || *f == 0.0 => {
                            return err(key("fraction"), format!("must be in (0, 1), got {f}"))
                        }
                        _ => {}
                    }
                    for side in sides {
                        for g in side {
                            if !group_known(&Some(g.clone())) {
                                return err(key("sides"), format!("no group is named `{g}`"));
                            }
                        }
                    }
                }
                TimelineEvent::Heal { .. } => {}
            }
        }
        if !group_known(&s.join.contact_group) {
            return err(
                "join.contact_group".into(),
                format!(
                    "no group is named `{}`",
                    s.join.contact_group.as_deref().unwrap_or("")
                ),
            );
        }
        for (i, a) in s.attack.iter().enumerate() {
            let key = |k: &str| format!("attack.{i}.{k}");
            for (k, g) in [("group", &a.group), ("target", &a.target)] {
                if !group_known(&Some(g.clone())) {
                    return err(key(k), format!("no group is named `{g}`"));
                }
            }
            if a.group == a.target {
                return err(key("target"), "a group cannot attack itself".into());
            }
            if !(time_ok(a.start_s) && a.start_s <= s.duration_s) {
                return err(
                    key("start_s"),
                    format!(
                        "must be within the run [0, {}] s, got {}",
                        s.duration_s, a.start_s
                    ),
                );
            }
            if !(a.rate_per_s > 0.0 && a.rate_per_s <= 10_000.0) {
                return err(
                    key("rate_per_s"),
                    format!("must be in (0, 10000], got {}", a.rate_per_s),
                );
            }
            let behind_nat = s
                .groups
                .iter()
                .any(|g| g.name == a.group && g.nat.iter().any(|n| n.config().is_some()));
            if a.kind == AttackKind::HandshakeFlood && behind_nat {
                return err(
                    key("group"),
                    format!(
                        "`{}` has hosts behind NATs, which cannot forge source addresses",
                        a.group
                    ),
                );
            }
        }
        if let Some(p) = &s.pairs {
            if !(time_ok(p.at_s) && p.at_s <= s.duration_s) {
                return err(
                    "pairs.at_s".into(),
                    format!(
                        "must be within the run [0, {}] s, got {}",
                        s.duration_s, p.at_s
                    ),
                );
            }
            if p.per_cell == 0 {
                return err("pairs.per_cell".into(), "must be at least 1".into());
            }
            if !group_known(&p.group) {
                return err(
                    "pairs.group".into(),
                    format!("no group is named `{}`", p.group.as_deref().unwrap_or("")),
                );
            }
        }
        if let Some(k) = &s.knowledge {
            if let Err((key, msg)) = k.validate(s.duration_s) {
                return err(format!("knowledge.{key}"), msg);
            }
            // The runner gives every node the workload's topics as well.
            let mut node = s.node.knowledge.clone();
            for t in &k.topics {
                if !node.topics.contains(t) {
                    node.topics.push(t.clone());
                }
            }
            if let Err(e) = node.validate() {
                return err(
                    format!("node.knowledge.{}", e.field()),
                    format!("with the [knowledge] workload's topics: {}", e.rule()),
                );
            }
        }
        for (i, w) in s.workload.iter().enumerate() {
            let key = |k: &str| format!("workload.{i}.{k}");
            if !(time_ok(w.start_s) && w.start_s <= s.duration_s) {
                return err(
                    key("start_s"),
                    format!(
                        "must be within the run [0, {}] s, got {}",
                        s.duration_s, w.start_s
                    ),
                );
            }
            if !time_ok(w.interval_ms) {
                return err(
                    key("interval_ms"),
                    format!("must be >= 0, got {}", w.interval_ms),
                );
            }
            let last = w.start_s + w.interval_ms / 1000.0 * w.count.saturating_sub(1) as f64;
            if last > s.duration_s {
                return err(key("count"), format!("the last broadcast would be at {last:.3} s, after the end of the run ({} s)", s.duration_s));
            }
            if !(8..=grove_node::proto::plumtree::MAX_PAYLOAD_BYTES).contains(&w.payload_bytes) {
                return err(
                    key("payload_bytes"),
                    format!(
                        "must be in [8, {}], got {}",
                        grove_node::proto::plumtree::MAX_PAYLOAD_BYTES,
                        w.payload_bytes
                    ),
                );
            }
            if let Some(senders) = w.senders {
                if !(1..=MAX_SENDERS).contains(&senders) {
                    return err(
                        key("senders"),
                        format!("must be 1 to {MAX_SENDERS}, got {senders}"),
                    );
                }
                if w.from == "first" {
                    return err(
                        key("senders"),
                        "needs `from` to be `random` or a group, not `first`".into(),
                    );
                }
            }
            if !["random", "first"].contains(&w.from.as_str())
                && !s.groups.iter().any(|g| g.name == w.from)
            {
                return err(
                    key("from"),
                    format!(
                        "must be `random`, `first` or a group name, got `{}`",
                        w.from
                    ),
                );
            }
        }
        if !(s.measure.window_s.is_finite() && s.measure.window_s > 0.0) {
            return err(
                "measure.window_s".into(),
                format!("must be positive, got {}", s.measure.window_s),
            );
        }
        let series = s.measure.series_s;
        if !(time_ok(series) && (series == 0.0 || series >= 0.1)) {
            return err(
                "measure.series_s".into(),
                format!("must be 0 (off) or at least 0.1 s, got {series}"),
            );
        }
        for (i, c) in s.checks.iter().enumerate() {
            if c.min.is_none() && c.max.is_none() {
                return err(
                    format!("checks.{i}.metric"),
                    format!("check of `{}` has neither `min` nor `max`", c.metric),
                );
            }
        }
        Ok(())
    }
}

/// Find `path` (dotted; numbers index arrays) in a TOML value.
fn lookup<'a>(value: &'a mut toml::Value, path: &str) -> Option<&'a mut toml::Value> {
    let mut v = value;
    for part in path.split('.') {
        v = match v {
            toml::Value::Table(t) => t.get_mut(part)?,
            toml::Value::Array(a) => a.get_mut(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The line of a dotted key such as `timeline.3.fraction` in TOML written
/// in the usual style (`[table]`, `[[array]]` headers and `key = value`
/// lines): the key's own line, else its table's header line.
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |line: &str, k: &str| {
        let l = line.trim_start();
        l.strip_prefix(k)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let header = |line: &str| -> Option<String> {
        let l = line.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
        Some(inner.trim().to_owned())
    };
    // Top-level key: before the first header.
    if parts.len() == 1 {
        for (i, line) in lines.iter().enumerate() {
            if header(line).is_some() {
                break;
            }
            if is_key(line, parts[0]) {
                return Some(i + 1);
            }
        }
        return None;
    }
    // `array.N.key`: the N-th `[[array]]`, then `key` inside it.
    let (table, index, rest) = match parts[1].parse::<usize>() {
        Ok(n) => (parts[0].to_owned(), Some(n), &parts[2..]),
        Err(_) => (
            parts[..parts.len() - 1].join("."),
            None,
            &parts[parts.len() - 1..],
        ),
    };
    let mut seen = 0usize;
    let mut start = None;
    for (i, line) in lines.iter().enumerate() {
        if header(line).as_deref() == Some(table.as_str()) {
            if index.is_none_or(|n| n == seen) {
                start = Some(i);
                break;
            }
            seen += 1;
        }
    }
    let start = start?;
    if let Some(k) = rest.last() {
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            if header(line).is_some_and(|h| !h.starts_with(&format!("{table}."))) {
                break;
            }
            if is_key(line, k) {
                return Some(i + 1);
            }
        }
    }
    Some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
seed = 7
duration_s = 60

[join]
interval_ms = 10

[[groups]]
name = "eu"
count = 10
latency_ms = [10, 20]
loss = 0.01

[[timeline]]
action = "crash"
at_s = 30
fraction = 0.5

[[workload]]
start_s = 10
count = 5
interval_ms = 1000
"#;

    fn load(text: &str) -> Result<Vec<Cell>, ScenarioError> {
        Source {
            path: "s.toml".into(),
            text: text.into(),
        }
        .load()
    }

    fn error(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn good_scenario_loads() {
        let cells = load(GOOD).unwrap();
        assert_eq!(cells.len(), 1);
        let s = &cells[0].1;
        assert_eq!(s.groups[0].count, 10);
        assert!(matches!(s.timeline[0], TimelineEvent::Crash { fraction, .. } if fraction == 0.5));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = error(&GOOD.replace("loss = 0.01", "loss = 0.01\nlatnecy = 3"));
        assert!(e.contains("s.toml:14") && e.contains("latnecy"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let e = error(&GOOD.replace("count = 10", "count = \"ten\""));
        assert!(e.contains("s.toml:11"), "{e}");
    }

    #[test]
    fn fraction_over_one_names_key_and_line() {
        let e = error(&GOOD.replace("fraction = 0.5", "fraction = 1.5"));
        assert_eq!(
            e,
            "s.toml:18: `timeline.0.fraction`: must be in [0, 1], got 1.5"
        );
    }

    #[test]
    fn event_after_end_names_key_and_line() {
        let e = error(&GOOD.replace("at_s = 30", "at_s = 90"));
        assert!(e.starts_with("s.toml:17: `timeline.0.at_s`"), "{e}");
    }

    #[test]
    fn empty_group_names_key_and_line() {
        let e = error(&GOOD.replace("count = 10", "count = 0"));
        assert!(
            e.starts_with("s.toml:11: `groups.0.count`: group `eu` is empty"),
            "{e}"
        );
    }

    #[test]
    fn joins_past_the_end_are_refused() {
        let e = error(&GOOD.replace("interval_ms = 10", "interval_ms = 10000"));
        assert!(
            e.starts_with(
                "s.toml:7: `join.interval_ms`: the last of 10 hosts would start at 90.000 s"
            ),
            "{e}"
        );
    }

    #[test]
    fn workload_past_the_end_is_refused() {
        let e = error(&GOOD.replace("count = 5", "count = 500"));
        assert!(
            e.contains("`workload.0.count`") && e.contains("after the end"),
            "{e}"
        );
    }

    #[test]
    fn sweep_expands_cells_and_checks_each() {
        let text =
            format!("{GOOD}\n[sweep]\nparam = \"timeline.0.fraction\"\nvalues = [0.1, 0.9]\n");
        let cells = load(&text).unwrap();
        assert_eq!(cells.len(), 2);
        assert!(
            matches!(cells[1].1.timeline[0], TimelineEvent::Crash { fraction, .. } if fraction == 0.9)
        );
        let bad = text.replace("[0.1, 0.9]", "[0.1, 2.0]");
        assert!(error(&bad).contains("sweep.values[1] = 2.0: must be in [0, 1]"));
        let unknown = text.replace("timeline.0.fraction", "timeline.4.fraction");
        assert!(error(&unknown).contains("names no value"));
    }

    #[test]
    fn contrasts_need_a_sweep_with_both_cells() {
        let contrast = "[[contrasts]]\nmetric = \"broadcast.reliability.mean\"\ncell = 0\nminus = 1\nmin = 0.01\n";
        let sweep = "[sweep]\nparam = \"timeline.0.fraction\"\nvalues = [0.1, 0.9]\n";
        let cells = load(&format!("{GOOD}\n{sweep}\n{contrast}")).unwrap();
        assert_eq!(cells[1].1.contrasts.len(), 1, "every cell carries them");
        let e = error(&format!("{GOOD}\n{contrast}"));
        assert!(e.contains("`contrasts.0`") && e.contains("has none"), "{e}");
        let e = error(&format!(
            "{GOOD}\n{sweep}\n{}",
            contrast.replace("minus = 1", "minus = 2")
        ));
        assert!(
            e.contains("cell 2 does not exist: the sweep has 2 cell(s)"),
            "{e}"
        );
        let e = error(&format!(
            "{GOOD}\n{sweep}\n{}",
            contrast.replace("min = 0.01\n", "")
        ));
        assert!(e.contains("neither `min` nor `max`"), "{e}");
    }

    const NAT_MIX: &str = r#"nat = [
    { kind = "port-restricted", fraction = 0.4 },
    { kind = "symmetric", fraction = 0.1, cgnat = true, cgnat_kind = "symmetric" },
    { kind = "custom", mapping = "address-dependent", filtering = "endpoint-independent", fraction = 0.2, port_allocation = "random", timeout_unreplied_s = 10, timeout_established_s = 60, hairpin = true, port_mapping = true },
    { kind = "blocked", fraction = 0.1, label = "no-udp" },
]"#;

    fn with_nat(nat: &str) -> String {
        GOOD.replace("loss = 0.01", &format!("loss = 0.01\n{nat}"))
    }

    #[test]
    fn nat_mix_loads_into_nat_configs() {
        let text = with_nat(NAT_MIX)
            .replace("seed = 7", "seed = 7\ncgnat_size = 16")
            .replace("[join]\n", "[join]\ncontact = \"random-public\"\n");
        let s = &load(&text).unwrap()[0].1;
        assert_eq!(s.cgnat_size, 16);
        assert_eq!(s.cgnat_kind, NatKind::PortRestricted);
        assert_eq!(s.join.contact, Contact::RandomPublic);
        let nat = &s.groups[0].nat;
        assert_eq!(nat.len(), 4);
        assert_eq!(nat[0].config(), Some(NatConfig::port_restricted_cone()));
        assert_eq!(nat[1].label(), "symmetric+cgnat");
        let cg = nat[1].cgnat_config(s.cgnat_kind);
        assert_eq!(cg.mapping, Mapping::AddressAndPortDependent);
        assert_eq!(cg.port_allocation, PortAllocation::Random);
        assert!(cg.hairpin);
        let custom = nat[2].config().unwrap();
        assert_eq!(
            (custom.mapping, custom.filtering, custom.port_allocation),
            (
                Mapping::AddressDependent,
                Filtering::EndpointIndependent,
                PortAllocation::Random
            )
        );
        assert_eq!(custom.timeout_unreplied, Duration::from_secs(10));
        assert_eq!(custom.timeout_established, Duration::from_secs(60));
        assert!(custom.hairpin && custom.port_mapping && !custom.udp_blocked);
        assert!(nat[3].config().unwrap().udp_blocked);
        assert_eq!(nat[3].label(), "no-udp");
        // The default: no NAT at all.
        assert!(load(GOOD).unwrap()[0].1.groups[0].nat.is_empty());
    }

    #[test]
    fn nat_fractions_over_one_name_key_and_line() {
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 0.7 }, { kind = "symmetric", fraction = 0.5 }]"#,
        ));
        assert_eq!(
            e,
            "s.toml:14: `groups.0.nat`: the fractions of group `eu` sum to 1.2, more than 1"
        );
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 1.5 }]"#,
        ));
        assert!(
            e.starts_with(
                "s.toml:14: `groups.0.nat`: entry 0 (`full-cone`): `fraction` must be in [0, 1]"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_nat_entries_are_refused() {
        let e = error(&with_nat(
            r#"nat = [{ kind = "carrier-pigeon", fraction = 0.5 }]"#,
        ));
        assert!(
            e.starts_with("s.toml:14") && e.contains("carrier-pigeon"),
            "{e}"
        );
        let e = error(&with_nat(
            r#"nat = [{ kind = "custom", fraction = 0.5, mapping = "endpoint-independent" }]"#,
        ));
        assert!(
            e.contains("`custom` needs `mapping` and `filtering`"),
            "{e}"
        );
        let e = error(&with_nat(
            r#"nat = [{ kind = "symmetric", fraction = 0.5, filtering = "endpoint-independent" }]"#,
        ));
        assert!(e.contains("only for `kind = \"custom\"`"), "{e}");
        let e = error(&with_nat(
            r#"nat = [{ kind = "public", fraction = 0.5, cgnat = true }]"#,
        ));
        assert!(e.contains("a public host has no NAT"), "{e}");
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 0.5, timeout_unreplied_s = 0 }]"#,
        ));
        assert!(
            e.contains("`timeout_unreplied_s` must be in (0, 1e6]"),
            "{e}"
        );
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 0.5, cgnat = true, cgnat_kind = "blocked" }]"#,
        ));
        assert!(e.contains("`cgnat_kind` must be"), "{e}");
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 0.5, colour = "red" }]"#,
        ));
        assert!(e.starts_with("s.toml:14") && e.contains("colour"), "{e}");
        let e = error(&with_nat(
            r#"nat = [{ kind = "full-cone", fraction = 0.5, label = "" }]"#,
        ));
        assert!(e.contains("`label` must be non-empty"), "{e}");
        let e = error(&GOOD.replace("seed = 7", "seed = 7\ncgnat_size = 0"));
        assert!(e.starts_with("s.toml:4: `cgnat_size`"), "{e}");
    }

    /// GOOD with `section` (a `[node.*]` table) inserted before `[join]`.
    fn with_node(section: &str) -> String {
        GOOD.replace("[join]", &format!("{section}\n\n[join]"))
    }

    #[test]
    fn every_node_section_is_checked_with_its_key_and_line() {
        let e = error(&with_node("[node.plumtree]\nseen_capacity = 0"));
        assert_eq!(
            e,
            "s.toml:7: `node.plumtree.seen_capacity`: must be 1 to 1048576, got 0"
        );
        let e = error(&with_node(
            "[node.nat]\nenabled = true\nobservers_needed = 0",
        ));
        assert_eq!(
            e,
            "s.toml:8: `node.nat.observers_needed`: must be 1 to 16, got 0"
        );
        let e = error(&with_node(
            "[node.nat.relay]\nmax_circuits_per_peer = 100000",
        ));
        assert!(
            e.starts_with("s.toml:7: `node.nat.relay.max_circuits_per_peer`: must be 1 to 1024"),
            "{e}"
        );
        let e = error(&with_node("[node.transport]\nmax_sessions = 0"));
        assert!(
            e.starts_with("s.toml:7: `node.transport.max_sessions`"),
            "{e}"
        );
        let e = error(&with_node("[node.gossipsub]\nenabled = true\nd = 0"));
        assert!(
            e.starts_with("s.toml:8: `node.gossipsub.d`: must be 1 to 64"),
            "{e}"
        );
        let e = error(&with_node(
            "[node.gossipsub.score]\ndecay_interval = \"1000h\"",
        ));
        assert!(
            e.starts_with("s.toml:7: `node.gossipsub.score.decay_interval`: must be 1s to 720h"),
            "{e}"
        );
        // The DHT's section is checked even with the DHT off.
        let e = error(&with_node("[node.dht]\nk = 0"));
        assert!(
            e.starts_with("s.toml:7: `node.dht.k`: must be 1 to 20"),
            "{e}"
        );
        let e = error(&with_node(
            "[node.hyparview]\nactive_view_capacity = 1000000000000",
        ));
        assert!(
            e.starts_with("s.toml:7: `node.hyparview.active_view_capacity`"),
            "{e}"
        );
        let e = error(&with_node("[node.flood]\nseen_ttl = 1e300"));
        assert!(
            e.starts_with("s.toml:7") && e.contains("more than 100 years"),
            "{e}"
        );
    }

    #[test]
    fn node_errors_in_a_sweep_cell_name_the_cell() {
        let sweep = "[sweep]\nparam = \"node.plumtree.seen_capacity\"\nvalues = [16, 0]\n";
        let text = format!(
            "{}\n{sweep}",
            with_node("[node.plumtree]\nseen_capacity = 8")
        );
        let e = error(&text);
        assert_eq!(
            e,
            "s.toml:7: `node.plumtree.seen_capacity`: sweep.values[1] = 0: must be 1 to 1048576, got 0"
        );
    }

    #[test]
    fn knowledge_workload_topics_count_against_the_nodes_max_topics() {
        let load =
            "[knowledge]\ntopics = [\"a\", \"b\"]\nstart_s = 5\nend_s = 50\ninterval_s = 1\n";
        let node = "[node.knowledge]\nmax_topics = 1";
        let e = error(&format!("{}\n{load}", with_node(node)));
        assert!(
            e.starts_with("s.toml:6: `node.knowledge.topics`: with the [knowledge] workload's topics: lists 2 topics, over max_topics = 1"),
            "{e}"
        );
    }

    #[test]
    fn change_ip_events_parse_and_are_checked() {
        let event =
            "[[timeline]]\naction = \"change-ip\"\nat_s = 40\nfraction = 0.25\ngroup = \"eu\"\n";
        let s = &load(&format!("{GOOD}\n{event}")).unwrap()[0].1;
        assert!(matches!(
            &s.timeline[1],
            TimelineEvent::ChangeIp { at_s, fraction, group: Some(g) } if *at_s == 40.0 && *fraction == 0.25 && g == "eu"
        ));
        assert_eq!(s.timeline[1].label(), "change-ip 25% of eu @40s");
        let e = error(&format!("{GOOD}\n{}", event.replace("0.25", "2")));
        assert!(
            e.contains("`timeline.1.fraction`: must be in [0, 1], got 2"),
            "{e}"
        );
        let e = error(&format!("{GOOD}\n{}", event.replace("\"eu\"", "\"mars\"")));
        assert!(
            e.contains("`timeline.1.group`: no group is named `mars`"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = Source::read(Path::new("/nonexistent/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/x.toml: cannot read the scenario file"),
            "{e}"
        );
    }
}
