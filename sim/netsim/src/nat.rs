//! NAT boxes after RFC 4787 (NAT behavioural requirements for UDP), with
//! NAT-PMP (RFC 6886) port mapping.
//!
//! A [`NatBox`] is one translator: a table of mappings from inside
//! endpoints to ports of its outside address, the filter state of each
//! mapping, and the allocator of outside ports. It knows nothing of hosts
//! or routing; [`crate::Network`] walks a datagram through the NATs on its
//! path: outbound translation at send time (home NAT, then CGNAT), inbound
//! filtering and translation at arrival time (CGNAT, then home NAT).
//!
//! Timers are evaluated lazily on virtual time: a mapping is live while
//! `now <= refreshed + timeout`, where the timeout is
//! [`NatConfig::timeout_established`] once an inbound datagram was admitted
//! through it and [`NatConfig::timeout_unreplied`] before. Dead mappings are
//! removed when they are next looked up, when their port is wanted, or by a
//! sweep when the table grows (walking the table's slab in index order, so
//! no hash-map order reaches behaviour).

use std::net::Ipv4Addr;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::{FxHashMap, FxHashSet};

/// Index of a NAT box in the network.
pub type NatId = u32;

/// "No NAT": the internet realm, or a host with no NAT.
pub(crate) const NO_NAT: u32 = u32::MAX;

/// The LAN address every NAT answers on, for its own inside hosts: NAT-PMP
/// requests go to `GATEWAY_IP:NAT_PMP_PORT`. Hosts must not be given it.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The UDP port of NAT-PMP (RFC 6886 §3.1).
pub const NAT_PMP_PORT: u16 = 5351;
/// The delay of a NAT-PMP response (the gateway is on the host's LAN).
pub const NAT_PMP_DELAY_NS: u64 = 1_000_000;
/// Lowest outside port a NAT allocates.
pub const FIRST_PORT: u16 = 1024;
/// How many outside ports a NAT has (`FIRST_PORT..=65535`).
const PORTS: usize = 65536 - FIRST_PORT as usize;
/// A table is swept for dead mappings when it grows to this size, and then
/// whenever it doubles since the last sweep.
const SWEEP_MIN: usize = 64;

/// Mapping behaviour (RFC 4787 §4.1): which outbound flows of one inside
/// endpoint share one outside endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// One mapping per inside endpoint, whatever the destination (EIM,
    /// REQ-1).
    EndpointIndependent,
    /// One mapping per inside endpoint and destination IP (ADM).
    AddressDependent,
    /// One mapping per inside endpoint and destination IP:port (APDM: the
    /// classic "symmetric" NAT).
    AddressAndPortDependent,
}

/// Filtering behaviour (RFC 4787 §5): which outside sources a mapping
/// admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone (EIF: "full cone").
    EndpointIndependent,
    /// A source whose IP the mapping has sent to (ADF: "restricted cone").
    AddressDependent,
    /// A source whose IP:port the mapping has sent to (APDF: "port
    /// restricted cone").
    AddressAndPortDependent,
}

/// How a NAT picks the outside port of a new mapping (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAllocation {
    /// The inside port if it is free on the outside, else as
    /// [`PortAllocation::Sequential`] (port preservation, REQ-3's common
    /// practice).
    Preserving,
    /// The next free port from a per-NAT counter that starts at 1024 and
    /// wraps after 65535.
    Sequential,
    /// Uniform in 1024..=65535 from the network's rng, drawn again while
    /// taken.
    Random,
}

/// What a NAT box does.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub port_allocation: PortAllocation,
    /// Lifetime of a mapping, since its last refresh, while no inbound
    /// datagram has been admitted through it (default 30 s).
    pub timeout_unreplied: Duration,
    /// Lifetime of a mapping, since its last refresh, once an inbound
    /// datagram has been admitted through it (default 120 s; RFC 4787
    /// REQ-5 asks for at least 2 minutes).
    pub timeout_established: Duration,
    /// Whether a datagram from inside to the NAT's own outside address is
    /// translated out and back in (RFC 4787 §6, REQ-9), or dropped.
    pub hairpin: bool,
    /// Whether the NAT answers NAT-PMP (RFC 6886) requests from its inside
    /// hosts on [`GATEWAY_IP`]:[`NAT_PMP_PORT`].
    pub port_mapping: bool,
    /// Whether the NAT drops all UDP of its inside hosts except to and from
    /// hosts marked fallback-reachable (a network that only lets TCP/443
    /// out, where a node must fall back to relays).
    pub udp_blocked: bool,
}

impl NatConfig {
    /// `mapping` and `filtering`, port preservation, 30 s / 120 s timeouts,
    /// no hairpinning, no port mapping, UDP allowed.
    pub fn new(mapping: Mapping, filtering: Filtering) -> Self {
        NatConfig {
            mapping,
            filtering,
            port_allocation: PortAllocation::Preserving,
            timeout_unreplied: Duration::from_secs(30),
            timeout_established: Duration::from_secs(120),
            hairpin: false,
            port_mapping: false,
            udp_blocked: false,
        }
    }

    /// Full cone: endpoint-independent mapping and filtering.
    pub fn full_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::EndpointIndependent)
    }

    /// Restricted cone: endpoint-independent mapping, address-dependent
    /// filtering.
    pub fn restricted_cone() -> Self {
        Self::new(Mapping::EndpointIndependent, Filtering::AddressDependent)
    }

    /// Port-restricted cone: endpoint-independent mapping,
    /// address-and-port-dependent filtering (the usual home router).
    pub fn port_restricted_cone() -> Self {
        Self::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }

    /// Symmetric: address-and-port-dependent mapping and filtering, with
    /// sequential port allocation (the guessable kind; set
    /// [`PortAllocation::Random`] for the kind no guess beats).
    pub fn symmetric() -> Self {
        NatConfig {
            port_allocation: PortAllocation::Sequential,
            ..Self::new(
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
            )
        }
    }
}

impl Default for NatConfig {
    /// A port-restricted cone.
    fn default() -> Self {
        Self::port_restricted_cone()
    }
}

/// What the network's NAT boxes did, summed over all of them (reported as
/// they are, field by field, in the report's `network.nat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NatCounters {
    /// Mappings created (by outbound traffic or NAT-PMP).
    pub mappings_created: u64,
    /// Outbound translations, one per NAT crossed (a double-NAT datagram
    /// counts two).
    pub translations_out: u64,
    /// Inbound translations admitted, one per NAT crossed.
    pub translations_in: u64,
    /// Inbound datagrams refused by a mapping's filter.
    pub filtered: u64,
    /// Inbound datagrams to an outside port with no live mapping (or whose
    /// mapping leads nowhere).
    pub no_mapping: u64,
    /// Mappings that timed out (counted when found dead).
    pub expired: u64,
    /// Datagrams hairpinned (inside to the NAT's own outside address).
    pub hairpinned: u64,
    /// Hairpin datagrams dropped by a NAT without hairpinning.
    pub hairpin_refused: u64,
    /// Datagrams dropped because UDP is blocked for their sender or
    /// receiver.
    pub blocked: u64,
    /// NAT-PMP mapping requests granted (with a non-zero lifetime).
    pub port_maps_granted: u64,
    /// NAT-PMP requests to a NAT without port mapping (left unanswered).
    pub port_maps_refused: u64,
    /// Outside address changes.
    pub ip_changes: u64,
    /// Live mappings lost to an outside address change.
    pub mappings_lost: u64,
}

/// What identifies a flow for the mapping behaviour: the inside endpoint,
/// plus the remote IP (ADM) or IP:port (APDM); zero where not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    int_ip: u32,
    rem_ip: u32,
    int_port: u16,
    rem_port: u16,
}

/// One mapping: an inside endpoint and its outside port.
struct Entry {
    used: bool,
    established: bool,
    int_port: u16,
    ext_port: u16,
    int_ip: u32,
    key: FlowKey,
    /// Virtual time of the last refresh.
    refreshed: u64,
    /// A NAT-PMP mapping: endpoint-independent mapping and filtering, live
    /// until this instant whatever the traffic.
    static_until: Option<u64>,
    /// The filter permissions of this entry (as in `NatBox::perms`), kept
    /// so removing the entry removes them.
    allowed: Vec<(u32, u16)>,
}

/// Why an inbound datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No live mapping on that port.
    NoMapping,
    /// The mapping's filter does not admit the source.
    Filtered,
}

/// One NAT box.
pub(crate) struct NatBox {
    /// Outside address (IPv4 bits).
    pub(crate) public_ip: u32,
    pub(crate) config: NatConfig,
    /// The NAT this one sits behind (NO_NAT: on the internet).
    pub(crate) upstream: u32,
    /// When the NAT came up or last changed address (NAT-PMP epoch).
    pub(crate) epoch_ns: u64,
    next_port: u16,
    /// Mappings in a slab (index order is deterministic), with free slots.
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    statics: usize,
    sweep_at: usize,
    /// Entries by outside port and by flow.
    by_port: FxHashMap<u16, u32>,
    by_flow: FxHashMap<FlowKey, u32>,
    /// Filter permissions: (entry, remote IP, remote port or 0 for ADF).
    perms: FxHashSet<(u32, u32, u16)>,
}

impl NatBox {
    pub(crate) fn new(public_ip: Ipv4Addr, config: NatConfig, upstream: u32) -> Self {
        NatBox {
            public_ip: public_ip.to_bits(),
            config,
            upstream,
            epoch_ns: 0,
            next_port: FIRST_PORT,
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            statics: 0,
            sweep_at: SWEEP_MIN,
            by_port: FxHashMap::default(),
            by_flow: FxHashMap::default(),
            perms: FxHashSet::default(),
        }
    }

    /// Mappings in the table (live or not yet found dead).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    fn alive(&self, e: &Entry, now: u64) -> bool {
        match e.static_until {
            Some(until) => now < until,
            None => {
                let t = if e.established {
                    self.config.timeout_established
                } else {
                    self.config.timeout_unreplied
                };
                now <= e.refreshed.saturating_add(t.as_nanos() as u64)
            }
        }
    }

    fn remove(&mut self, idx: u32) {
        let e = &mut self.entries[idx as usize];
        e.used = false;
        let mut allowed = std::mem::take(&mut e.allowed);
        let (port, key, was_static) = (e.ext_port, e.key, e.static_until.is_some());
        for &(ip, p) in &allowed {
            self.perms.remove(&(idx, ip, p));
        }
        allowed.clear();
        self.entries[idx as usize].allowed = allowed;
        if self.by_port.get(&port) == Some(&idx) {
            self.by_port.remove(&port);
        }
        if self.by_flow.get(&key) == Some(&idx) {
            self.by_flow.remove(&key);
        }
        self.statics -= usize::from(was_static);
        self.live -= 1;
        self.free.push(idx);
    }

    /// The entry at `idx` if live; a dead one is removed and counted.
    fn live_entry(&mut self, idx: u32, now: u64, c: &mut NatCounters) -> Option<u32> {
        if self.alive(&self.entries[idx as usize], now) {
            Some(idx)
        } else {
            self.remove(idx);
            c.expired += 1;
            None
        }
    }

    /// Whether outside `port` is free (a dead mapping on it is removed).
    fn port_free(&mut self, port: u16, now: u64, c: &mut NatCounters) -> bool {
        match self.by_port.get(&port) {
            None => true,
            Some(&idx) => self.live_entry(idx, now, c).is_none(),
        }
    }

    /// An outside port for a new mapping of inside `int_port`, trying
    /// `suggested` first if non-zero. None: every port is taken.
    fn alloc_port(
        &mut self,
        int_port: u16,
        suggested: u16,
        now: u64,
        rng: &mut ChaCha8Rng,
        c: &mut NatCounters,
    ) -> Option<u16> {
        if suggested >= FIRST_PORT && self.port_free(suggested, now, c) {
            return Some(suggested);
        }
        if self.live >= PORTS {
            self.sweep(now, c);
            if self.live >= PORTS {
                return None;
            }
        }
        let sequential = match self.config.port_allocation {
            PortAllocation::Preserving => {
                if int_port >= FIRST_PORT && self.port_free(int_port, now, c) {
                    return Some(int_port);
                }
                true
            }
            PortAllocation::Sequential => true,
            PortAllocation::Random => {
                for _ in 0..64 {
                    let p = rng.gen_range(FIRST_PORT..=u16::MAX);
                    if self.port_free(p, now, c) {
                        return Some(p);
                    }
                }
                // An almost full table: fall back to a scan.
                true
            }
        };
        debug_assert!(sequential);
        for _ in 0..PORTS {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { FIRST_PORT } else { p + 1 };
            if self.port_free(p, now, c) {
                return Some(p);
            }
        }
        None
    }

    /// Remove every dead mapping (in slab order), counting them expired.
    pub(crate) fn sweep(&mut self, now: u64, c: &mut NatCounters) {
        for idx in 0..self.entries.len() as u32 {
            if self.entries[idx as usize].used {
                self.live_entry(idx, now, c);
            }
        }
        self.sweep_at = SWEEP_MIN.max(self.live * 2);
    }

    fn insert(&mut self, key: FlowKey, int_ip: u32, int_port: u16, ext_port: u16, now: u64) -> u32 {
        let entry = Entry {
            used: true,
            established: false,
            int_port,
            ext_port,
            int_ip,
            key,
            refreshed: now,
            static_until: None,
            allowed: Vec::new(),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                let allowed = std::mem::take(&mut self.entries[i as usize].allowed);
                self.entries[i as usize] = Entry { allowed, ..entry };
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.live += 1;
        self.by_port.insert(ext_port, idx);
        self.by_flow.insert(key, idx);
        idx
    }

    fn flow_key(&self, int_ip: u32, int_port: u16, rem_ip: u32, rem_port: u16) -> FlowKey {
        let (rem_ip, rem_port) = match self.config.mapping {
            Mapping::EndpointIndependent => (0, 0),
            Mapping::AddressDependent => (rem_ip, 0),
            Mapping::AddressAndPortDependent => (rem_ip, rem_port),
        };
        FlowKey {
            int_ip,
            rem_ip,
            int_port,
            rem_port,
        }
    }

    /// The live entry for `key`, if any (a dead one is removed, counted).
    fn find(&mut self, key: &FlowKey, now: u64, c: &mut NatCounters) -> Option<u32> {
        let idx = *self.by_flow.get(key)?;
        self.live_entry(idx, now, c)
    }

    /// Translate an outbound datagram from inside `int_ip:int_port` to
    /// `rem_ip:rem_port`: find or create its mapping, allow the remote
    /// through the filter, refresh the mapping. Returns the outside port
    /// (None: no port left).
    pub(crate) fn translate_out(
        &mut self,
        now: u64,
        (int_ip, int_port): (u32, u16),
        (rem_ip, rem_port): (u32, u16),
        rng: &mut ChaCha8Rng,
        c: &mut NatCounters,
    ) -> Option<u16> {
        // A NAT-PMP mapping of the inside endpoint carries all its traffic.
        let eim = FlowKey {
            int_ip,
            rem_ip: 0,
            int_port,
            rem_port: 0,
        };
        let static_idx = if self.statics > 0 {
            self.find(&eim, now, c)
                .filter(|&i| self.entries[i as usize].static_until.is_some())
        } else {
            None
        };
        let idx = match static_idx {
            Some(i) => i,
            None => {
                let key = self.flow_key(int_ip, int_port, rem_ip, rem_port);
                match self.find(&key, now, c) {
                    Some(i) => i,
                    None => {
                        if self.live >= self.sweep_at {
                            self.sweep(now, c);
                        }
                        let port = self.alloc_port(int_port, 0, now, rng, c)?;
                        c.mappings_created += 1;
                        self.insert(key, int_ip, int_port, port, now)
                    }
                }
            }
        };
        let perm = match self.config.filtering {
            Filtering::EndpointIndependent => None,
            Filtering::AddressDependent => Some((rem_ip, 0)),
            Filtering::AddressAndPortDependent => Some((rem_ip, rem_port)),
        };
        if let Some((ip, port)) = perm {
            if self.perms.insert((idx, ip, port)) {
                self.entries[idx as usize].allowed.push((ip, port));
            }
        }
        let e = &mut self.entries[idx as usize];
        e.refreshed = now;
        c.translations_out += 1;
        Some(e.ext_port)
    }

    /// Where outside `port` leads (the inside endpoint of its live
    /// mapping), without filtering or refreshing: for routing at send time.
    pub(crate) fn resolve(
        &mut self,
        now: u64,
        port: u16,
        c: &mut NatCounters,
    ) -> Option<(u32, u16)> {
        let idx = *self.by_port.get(&port)?;
        let idx = self.live_entry(idx, now, c)?;
        let e = &self.entries[idx as usize];
        Some((e.int_ip, e.int_port))
    }

    /// Admit an inbound datagram from `src` (None: not IPv4) to outside
    /// `port` at `now`: the mapping must be live and its filter must admit
    /// the source. An admitted datagram refreshes the mapping and marks it
    /// established. Returns the inside endpoint it is translated to.
    pub(crate) fn translate_in(
        &mut self,
        now: u64,
        port: u16,
        src: Option<(u32, u16)>,
        c: &mut NatCounters,
    ) -> Result<(u32, u16), Refusal> {
        let idx = *self.by_port.get(&port).ok_or(Refusal::NoMapping)?;
        let idx = self.live_entry(idx, now, c).ok_or(Refusal::NoMapping)?;
        let e = &self.entries[idx as usize];
        let filtering = if e.static_until.is_some() {
            Filtering::EndpointIndependent
        } else {
            self.config.filtering
        };
        let admitted = match (filtering, src) {
            (Filtering::EndpointIndependent, _) => true,
            (_, None) => false,
            (Filtering::AddressDependent, Some((ip, _))) => self.perms.contains(&(idx, ip, 0)),
            (Filtering::AddressAndPortDependent, Some((ip, p))) => {
                self.perms.contains(&(idx, ip, p))
            }
        };
        if !admitted {
            return Err(Refusal::Filtered);
        }
        let e = &mut self.entries[idx as usize];
        e.refreshed = now;
        e.established = true;
        c.translations_in += 1;
        Ok((e.int_ip, e.int_port))
    }

    /// Forget every mapping (the outside address changed): live ones count
    /// as lost, dead ones as expired.
    pub(crate) fn clear(&mut self, now: u64, c: &mut NatCounters) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.used {
                if self.alive(e, now) {
                    c.mappings_lost += 1;
                } else {
                    c.expired += 1;
                }
            }
        }
        self.entries = Vec::new();
        self.free = Vec::new();
        self.live = 0;
        self.statics = 0;
        self.sweep_at = SWEEP_MIN;
        self.by_port = FxHashMap::default();
        self.by_flow = FxHashMap::default();
        self.perms = FxHashSet::default();
    }

    fn epoch_s(&self, now: u64) -> u32 {
        (now.saturating_sub(self.epoch_ns) / 1_000_000_000) as u32
    }

    /// Answer a NAT-PMP request from inside host `int_ip` (RFC 6886),
    /// writing the response into `out`; returns its length, or None when
    /// the request is ignored (too short, or itself a response). The caller
    /// checks that the NAT supports port mapping.
    ///
    /// - opcode 0: external address, `[0, 128, result, epoch, ip]`;
    /// - opcode 1: map UDP, `[0, 129, result, epoch, internal port,
    ///   external port, lifetime]`; a granted mapping is a static
    ///   endpoint-independent mapping and filtering of the internal port
    ///   for `lifetime` seconds, on the suggested port if free; lifetime 0
    ///   deletes it (and internal port 0 with lifetime 0 deletes all of the
    ///   host's); an existing mapping of the port keeps its outside port;
    /// - version other than 0: result 1 (unsupported version); any other
    ///   opcode below 128 (including 2, map TCP: the network is UDP only):
    ///   result 5 (unsupported opcode), as an 8-byte header.
    pub(crate) fn nat_pmp(
        &mut self,
        now: u64,
        int_ip: u32,
        req: &[u8],
        out: &mut [u8; 16],
        rng: &mut ChaCha8Rng,
        c: &mut NatCounters,
    ) -> Option<usize> {
        let (&version, &op) = (req.first()?, req.get(1)?);
        if op >= 128 {
            return None;
        }
        let epoch = self.epoch_s(now);
        out[0] = 0;
        out[1] = op | 128;
        out[4..8].copy_from_slice(&epoch.to_be_bytes());
        let result = |out: &mut [u8; 16], r: u16| out[2..4].copy_from_slice(&r.to_be_bytes());
        if version != 0 {
            result(out, 1);
            return Some(8);
        }
        match op {
            0 => {
                result(out, 0);
                out[8..12].copy_from_slice(&self.public_ip.to_be_bytes());
                Some(12)
            }
            1 => {
                if req.len() < 12 {
                    return None;
                }
                let int_port = u16::from_be_bytes([req[4], req[5]]);
                let suggested = u16::from_be_bytes([req[6], req[7]]);
                let lifetime = u32::from_be_bytes([req[8], req[9], req[10], req[11]]);
                let (ext_port, granted, code) = if lifetime == 0 {
                    self.unmap(int_ip, int_port, now, c);
                    (0, 0, 0)
                } else if int_port == 0 {
                    return None;
                } else {
                    match self.map_static(int_ip, int_port, suggested, lifetime, now, rng, c) {
                        Some(p) => {
                            c.port_maps_granted += 1;
                            (p, lifetime, 0)
                        }
                        None => (0, 0, 4),
                    }
                };
                result(out, code);
                out[8..10].copy_from_slice(&int_port.to_be_bytes());
                out[10..12].copy_from_slice(&ext_port.to_be_bytes());
                out[12..16].copy_from_slice(&granted.to_be_bytes());
                Some(16)
            }
            _ => {
                result(out, 5);
                Some(8)
            }
        }
    }

    /// Create or renew the static mapping of `int_ip:int_port`.
    #[allow(clippy::too_many_arguments)]
    fn map_static(
        &mut self,
        int_ip: u32,
        int_port: u16,
        suggested: u16,
        lifetime_s: u32,
        now: u64,
        rng: &mut ChaCha8Rng,
        c: &mut NatCounters,
    ) -> Option<u16> {
        let key = FlowKey {
            int_ip,
            rem_ip: 0,
            int_port,
            rem_port: 0,
        };
        let until = now.saturating_add(u64::from(lifetime_s) * 1_000_000_000);
        let idx = match self.find(&key, now, c) {
            Some(i) => i,
            None => {
                if self.live >= self.sweep_at {
                    self.sweep(now, c);
                }
                let port = self.alloc_port(int_port, suggested, now, rng, c)?;
                c.mappings_created += 1;
                self.insert(key, int_ip, int_port, port, now)
            }
        };
        let e = &mut self.entries[idx as usize];
        if e.static_until.is_none() {
            self.statics += 1;
        }
        e.static_until = Some(until);
        e.refreshed = now;
        Some(e.ext_port)
    }

    /// Delete the static mapping of `int_ip:int_port` (port 0: all of the
    /// host's static mappings).
    fn unmap(&mut self, int_ip: u32, int_port: u16, now: u64, c: &mut NatCounters) {
        if int_port != 0 {
            let key = FlowKey {
                int_ip,
                rem_ip: 0,
                int_port,
                rem_port: 0,
            };
            if let Some(i) = self.find(&key, now, c) {
                if self.entries[i as usize].static_until.is_some() {
                    self.remove(i);
                }
            }
            return;
        }
        for i in 0..self.entries.len() as u32 {
            let e = &self.entries[i as usize];
            if e.used && e.int_ip == int_ip && e.static_until.is_some() {
                self.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counters, Fate, HostId, Jitter, Link, Network};
    use rand::SeedableRng;
    use std::net::{IpAddr, SocketAddr};

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    fn sa(a: Ipv4Addr, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(a), port)
    }

    fn link(ms: u64) -> Link {
        Link {
            latency: Duration::from_millis(ms),
            jitter: Jitter::None,
            loss: 0.0,
        }
    }

    /// A network and its clock; every step sends at `t` and lets 100 ms
    /// pass (all links are 10 ms).
    struct T {
        n: Network,
        t: u64,
    }

    impl T {
        fn new(seed: u64) -> T {
            T {
                n: Network::new(MS, ChaCha8Rng::seed_from_u64(seed)),
                t: 0,
            }
        }

        fn public(&mut self, a: Ipv4Addr, port: u16) -> HostId {
            let h = self.n.add_host(IpAddr::V4(a), link(10));
            self.n.bind(h, port).unwrap();
            h
        }

        fn behind(&mut self, nat: NatId, a: Ipv4Addr, port: u16) -> HostId {
            let h = self.n.add_host_behind(IpAddr::V4(a), link(10), nat);
            self.n.bind(h, port).unwrap();
            h
        }

        fn send(&mut self, from: HostId, to: SocketAddr) -> Fate {
            self.n.send(self.t, from, to, b"x").unwrap()
        }

        /// Let 100 ms pass, delivering what is due.
        fn step(&mut self) {
            self.t += 100 * MS;
            self.n.advance(self.t);
        }

        /// The sources of everything in `host`'s inbox.
        fn drain(&mut self, host: HostId) -> Vec<SocketAddr> {
            let mut buf = [0u8; 64];
            std::iter::from_fn(|| self.n.take(host, &mut buf).map(|d| d.from)).collect()
        }

        /// Send one datagram, let it arrive, and say from where `to_host`
        /// saw it (None: it did not arrive).
        fn xfer(&mut self, from: HostId, to: SocketAddr, to_host: HostId) -> Option<SocketAddr> {
            self.send(from, to);
            self.step();
            let got = self.drain(to_host);
            assert!(got.len() <= 1);
            got.first().copied()
        }

        fn rebind(&mut self, host: HostId, port: u16) {
            self.n.unbind(host, self.n.incarnation(host));
            self.n.bind(host, port).unwrap();
        }
    }

    fn fates_add_up(c: Counters) {
        assert_eq!(
            c.sent,
            c.delivered
                + c.lost
                + c.partitioned
                + c.dead_host
                + c.no_route
                + c.overflow
                + c.filtered,
            "{c:?}"
        );
    }

    #[test]
    fn rfc4787_mapping_and_filtering_matrix() {
        use Filtering as F;
        use Mapping as M;
        let mappings = [
            M::EndpointIndependent,
            M::AddressDependent,
            M::AddressAndPortDependent,
        ];
        let filterings = [
            F::EndpointIndependent,
            F::AddressDependent,
            F::AddressAndPortDependent,
        ];
        for m in mappings {
            for f in filterings {
                let mut t = T::new(1);
                let nat = t.n.add_nat(ip(2, 0, 0, 1), NatConfig::new(m, f), None);
                let a = t.behind(nat, ip(172, 16, 0, 1), 5000);
                let r1 = t.public(ip(1, 0, 0, 1), 7000);
                let r2 = t.public(ip(1, 0, 0, 2), 7000);
                let r1_addr = sa(ip(1, 0, 0, 1), 7000);

                // Mapping: what outside endpoint each destination sees.
                let seen = t.xfer(a, r1_addr, r1).unwrap();
                assert_eq!(seen.ip(), IpAddr::V4(ip(2, 0, 0, 1)), "{m:?}");
                let mapped = sa(ip(2, 0, 0, 1), seen.port());
                // The private address is not routable from outside.
                assert_eq!(t.send(r1, sa(ip(172, 16, 0, 1), 5000)), Fate::NoRoute);

                // Filtering: reply from the contacted endpoint, from the
                // same IP and another port, from another IP.
                let from_contacted = t.xfer(r1, mapped, a);
                assert_eq!(from_contacted, Some(r1_addr), "{m:?} {f:?}");
                t.rebind(r1, 7001);
                let other_port = t.xfer(r1, mapped, a).is_some();
                let other_ip = t.xfer(r2, mapped, a).is_some();
                let want = match f {
                    F::EndpointIndependent => (true, true),
                    F::AddressDependent => (true, false),
                    F::AddressAndPortDependent => (false, false),
                };
                assert_eq!((other_port, other_ip), want, "{m:?} {f:?}");
                let refused = u64::from(!want.0) + u64::from(!want.1);
                assert_eq!(t.n.nat_counters().filtered, refused, "{m:?} {f:?}");
                assert_eq!(t.n.counters().filtered, refused);

                // Mapping: the same inside endpoint to the same IP, another
                // port; then to another IP.
                let p_same_ip = t.xfer(a, sa(ip(1, 0, 0, 1), 7001), r1).unwrap().port();
                let p_other_ip = t.xfer(a, sa(ip(1, 0, 0, 2), 7000), r2).unwrap().port();
                let want = match m {
                    M::EndpointIndependent => (true, true),
                    M::AddressDependent => (true, false),
                    M::AddressAndPortDependent => (false, false),
                };
                assert_eq!(
                    (p_same_ip == mapped.port(), p_other_ip == mapped.port()),
                    want,
                    "{m:?}"
                );
                let created = 1 + u64::from(!want.0) + u64::from(!want.1);
                assert_eq!(t.n.nat_counters().mappings_created, created, "{m:?}");
                assert_eq!(t.n.nat_mappings(nat) as u64, created);
                fates_add_up(t.n.counters());
            }
        }
    }

    #[test]
    fn port_allocation_policies() {
        let ports = |alloc: PortAllocation, seed: u64| {
            let mut t = T::new(seed);
            let config = NatConfig {
                port_allocation: alloc,
                ..NatConfig::symmetric()
            };
            let nat = t.n.add_nat(ip(2, 0, 0, 1), config, None);
            let a = t.behind(nat, ip(172, 16, 0, 1), 5000);
            let b = t.behind(nat, ip(172, 16, 0, 2), 5000);
            let r = t.public(ip(1, 0, 0, 1), 7000);
            let mut ports = Vec::new();
            for (host, dst_port) in [(a, 7000), (a, 7001), (b, 7000), (a, 7002)] {
                ports.push(
                    t.xfer(host, sa(ip(1, 0, 0, 1), dst_port), r)
                        .unwrap()
                        .port(),
                );
            }
            ports
        };
        // Preserving: the first mapping keeps the inside port; taken ports
        // fall back to the sequential counter.
        assert_eq!(
            ports(PortAllocation::Preserving, 1),
            [5000, FIRST_PORT, FIRST_PORT + 1, FIRST_PORT + 2]
        );
        assert_eq!(
            ports(PortAllocation::Sequential, 1),
            [FIRST_PORT, FIRST_PORT + 1, FIRST_PORT + 2, FIRST_PORT + 3]
        );
        let r1 = ports(PortAllocation::Random, 1);
        assert_eq!(
            r1,
            ports(PortAllocation::Random, 1),
            "deterministic per seed"
        );
        assert_ne!(r1, ports(PortAllocation::Random, 2));
        let mut distinct = r1.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{r1:?}");
        assert!(r1.iter().all(|&p| p >= FIRST_PORT && p != 5000), "{r1:?}");
    }

    #[test]
    fn mappings_expire_unreplied_vs_established_and_outbound_refreshes() {
        let mut t = T::new(1);
        let nat =
            t.n.add_nat(ip(2, 0, 0, 1), NatConfig::port_restricted_cone(), None);
        let a = t.behind(nat, ip(172, 16, 0, 1), 5000);
        let r = t.public(ip(1, 0, 0, 1), 7000);
        let r_addr = sa(ip(1, 0, 0, 1), 7000);
        let mapped = sa(ip(2, 0, 0, 1), 5000);

        // Unreplied: gone 30 s after the last outbound datagram.
        assert_eq!(t.xfer(a, r_addr, r), Some(mapped)); // refreshed at 0
        t.t = 30 * S + 50 * MS; // arrives at 30.07 s
        assert_eq!(t.xfer(r, mapped, a), None);
        assert_eq!(t.n.nat_counters().expired, 1);
        assert_eq!(t.n.nat_counters().no_mapping, 1);

        // Outbound traffic refreshes: a datagram every 20 s keeps it.
        t.t = 100 * S;
        assert_eq!(t.xfer(a, r_addr, r), Some(mapped));
        t.t = 120 * S;
        assert_eq!(t.xfer(a, r_addr, r), Some(mapped));
        t.t = 145 * S; // 25 s after the refresh
        assert_eq!(t.xfer(r, mapped, a), Some(r_addr));
        // Established: the admitted reply (at 145.02 s) gave it 120 s.
        t.t = 145 * S + 119 * S;
        assert_eq!(t.xfer(r, mapped, a), Some(r_addr));
        t.t += 121 * S;
        assert_eq!(t.xfer(r, mapped, a), None);
        let c = t.n.nat_counters();
        assert_eq!((c.expired, c.no_mapping, c.mappings_created), (2, 2, 2));
        fates_add_up(t.n.counters());
    }

    #[test]
    fn dead_mappings_are_swept_as_the_table_grows() {
        let mut t = T::new(1);
        let nat = t.n.add_nat(ip(2, 0, 0, 1), NatConfig::symmetric(), None);
        let a = t.behind(nat, ip(172, 16, 0, 1), 5000);
        t.public(ip(1, 0, 0, 1), 7000);
        // A new flow every second, each mapping living 30 s.
        for i in 0..1000u16 {
            t.t = u64::from(i) * S;
            assert_eq!(t.send(a, sa(ip(1, 0, 0, 1), 10_000 + i)), Fate::InFlight);
        }
        assert!(
            t.n.nat_mappings(nat) <= 2 * SWEEP_MIN,
            "{}",
            t.n.nat_mappings(nat)
        );
        let c = t.n.nat_counters();
        assert_eq!(c.mappings_created, 1000);
        assert_eq!(c.expired as usize + t.n.nat_mappings(nat), 1000);
    }

    #[test]
    fn simultaneous_open_between_port_restricted_cones_succeeds() {
        let mut t = T::new(1);
        let na =
            t.n.add_nat(ip(2, 0, 0, 1), NatConfig::port_restricted_cone(), None);
        let nb =
            t.n.add_nat(ip(3, 0, 0, 1), NatConfig::port_restricted_cone(), None);
        let a = t.behind(na, ip(172, 16, 0, 1), 7000);
        let b = t.behind(nb, ip(172, 16, 0, 2), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let s_addr = sa(ip(1, 0, 0, 1), 7000);
        // Both learn their outside endpoint from a rendezvous server.
        let a_pub = t.xfer(a, s_addr, s).unwrap();
        let b_pub = t.xfer(b, s_addr, s).unwrap();
        // One side alone: its first datagram is filtered by the other NAT.
        assert_eq!(t.xfer(a, b_pub, b), None);
        assert_eq!(t.n.nat_counters().filtered, 1);
        // Both at the same instant: each datagram is in flight when the
        // other side's permission is created, and filtering happens on
        // arrival, so both get through.
        assert_eq!(t.send(a, b_pub), Fate::InFlight);
        assert_eq!(t.send(b, a_pub), Fate::InFlight);
        t.step();
        assert_eq!(t.drain(b), [a_pub]);
        assert_eq!(t.drain(a), [b_pub]);
        assert_eq!(t.n.nat_counters().filtered, 1);
        // The hole stays open both ways.
        assert_eq!(t.xfer(b, a_pub, a), Some(b_pub));
        fates_add_up(t.n.counters());
    }

    #[test]
    fn symmetric_to_port_restricted_fails_unless_the_port_is_guessed() {
        let mut t = T::new(1);
        let na = t.n.add_nat(ip(2, 0, 0, 1), NatConfig::symmetric(), None);
        let nb =
            t.n.add_nat(ip(3, 0, 0, 1), NatConfig::port_restricted_cone(), None);
        let a = t.behind(na, ip(172, 16, 0, 1), 7000);
        let b = t.behind(nb, ip(172, 16, 0, 2), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let s_addr = sa(ip(1, 0, 0, 1), 7000);
        let a_seen = t.xfer(a, s_addr, s).unwrap();
        let b_pub = t.xfer(b, s_addr, s).unwrap();
        assert_eq!(a_seen.port(), FIRST_PORT);
        // Simultaneous open on the endpoints the server saw: A's datagram
        // leaves from a new port B has not sent to, and B's reaches the
        // mapping A made towards the server.
        t.send(a, b_pub);
        t.send(b, a_seen);
        t.step();
        assert!(t.drain(a).is_empty() && t.drain(b).is_empty());
        assert_eq!(t.n.nat_counters().filtered, 2);
        // B guesses the next port of the sequential allocator: it works.
        let guess = sa(ip(2, 0, 0, 1), a_seen.port() + 1);
        t.send(b, guess);
        t.send(a, b_pub);
        t.step();
        assert_eq!(t.drain(a), [b_pub]);
        assert_eq!(t.drain(b), [guess]);
        // A wrong guess (no mapping there) is dropped at send.
        assert_eq!(t.send(b, sa(ip(2, 0, 0, 1), 40_000)), Fate::Filtered);
        assert_eq!(t.n.nat_counters().no_mapping, 1);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn hairpinning_on_and_off() {
        for hairpin in [true, false] {
            let mut t = T::new(1);
            let config = NatConfig {
                hairpin,
                ..NatConfig::full_cone()
            };
            let nat = t.n.add_nat(ip(2, 0, 0, 1), config, None);
            let a = t.behind(nat, ip(172, 16, 0, 1), 7000);
            let b = t.behind(nat, ip(172, 16, 0, 2), 7001);
            let s = t.public(ip(1, 0, 0, 1), 7000);
            let s_addr = sa(ip(1, 0, 0, 1), 7000);
            let a_pub = t.xfer(a, s_addr, s).unwrap();
            let b_pub = t.xfer(b, s_addr, s).unwrap();
            let got = t.xfer(a, b_pub, b);
            let c = t.n.nat_counters();
            if hairpin {
                // B sees A's outside endpoint, as an outsider would.
                assert_eq!(got, Some(a_pub));
                assert_eq!((c.hairpinned, c.hairpin_refused), (1, 0));
            } else {
                assert_eq!(got, None);
                assert_eq!((c.hairpinned, c.hairpin_refused), (0, 1));
            }
            fates_add_up(t.n.counters());
        }
    }

    #[test]
    fn double_nat_translates_both_ways_and_port_mapping_reaches_only_the_home_nat() {
        let mut t = T::new(1);
        let pmp = |c: NatConfig| NatConfig {
            port_mapping: true,
            hairpin: true,
            ..c
        };
        let cgnat =
            t.n.add_nat(ip(3, 0, 0, 1), pmp(NatConfig::port_restricted_cone()), None);
        let home = t.n.add_nat(
            ip(100, 64, 0, 1),
            pmp(NatConfig::port_restricted_cone()),
            Some(cgnat),
        );
        let home2 =
            t.n.add_nat(ip(100, 64, 0, 2), NatConfig::full_cone(), Some(cgnat));
        let a = t.behind(home, ip(172, 16, 0, 1), 7000);
        let b = t.behind(home2, ip(172, 16, 0, 2), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let s_addr = sa(ip(1, 0, 0, 1), 7000);
        assert_eq!(t.n.gateway(a), Some(sa(GATEWAY_IP, NAT_PMP_PORT)));
        assert_eq!(t.n.gateway(s), None);
        assert_eq!(t.n.host_nat(a), Some(home));

        // Out: home NAT, then CGNAT; in: CGNAT, then home NAT.
        let a_pub = t.xfer(a, s_addr, s).unwrap();
        assert_eq!(a_pub.ip(), IpAddr::V4(ip(3, 0, 0, 1)));
        assert_eq!(t.xfer(s, a_pub, a), Some(s_addr));
        let c = t.n.nat_counters();
        assert_eq!((c.translations_out, c.translations_in), (2, 2));
        assert_eq!(t.n.nat_mappings(home), 1);
        assert_eq!(t.n.nat_mappings(cgnat), 1);
        // The WAN address of the home NAT is not on the internet.
        assert_eq!(t.send(s, sa(ip(100, 64, 0, 1), 7000)), Fate::NoRoute);

        // Two homes behind the CGNAT reach each other by hairpinning there.
        let b_pub = t.xfer(b, s_addr, s).unwrap();
        t.send(b, a_pub); // permission on A's side of the CGNAT
        t.step();
        assert_eq!(t.xfer(a, b_pub, b), Some(a_pub));
        assert_eq!(t.drain(a), Vec::<SocketAddr>::new());
        assert!(t.n.nat_counters().hairpinned >= 1);

        // NAT-PMP from A reaches only its home NAT, which answers with its
        // WAN address: the node has to notice it is not public.
        let gw = t.n.gateway(a).unwrap();
        let mut buf = [0u8; 32];
        t.send(a, gw); // b"x": a one-byte request is ignored
        t.step();
        assert!(t.n.take(a, &mut buf).is_none());
        t.n.send(t.t, a, gw, &[0, 0]).unwrap();
        t.step();
        let d = t.n.take(a, &mut buf).unwrap();
        assert_eq!(d.from, gw);
        assert_eq!(&buf[8..12], &[100, 64, 0, 1]);
        // Map internal port 7001 (a new mapping), suggesting 9000.
        let req = [0, 1, 0, 0, 0x1b, 0x59, 0x23, 0x28, 0, 0, 0x0e, 0x10];
        t.n.send(t.t, a, gw, &req).unwrap();
        t.step();
        let d = t.n.take(a, &mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 129, 0, 0]);
        assert_eq!(&buf[8..12], &[0x1b, 0x59, 0x23, 0x28]);
        assert_eq!(d.len, 16);
        assert_eq!(t.n.nat_counters().port_maps_granted, 1);
        assert_eq!(t.n.nat_mappings(home), 2);
        // The granted port is on 100.64.0.1: nothing on the CGNAT's outside.
        assert_eq!(t.send(s, sa(ip(3, 0, 0, 1), 9000)), Fate::Filtered);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn nat_pmp_responses_are_byte_exact() {
        let mut t = T::new(1);
        let config = NatConfig {
            port_mapping: true,
            ..NatConfig::port_restricted_cone()
        };
        let nat = t.n.add_nat(ip(2, 0, 0, 1), config, None);
        let a = t.behind(nat, ip(172, 16, 0, 5), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let gw = t.n.gateway(a).unwrap();
        let ask = |t: &mut T, req: &[u8]| -> Option<Vec<u8>> {
            let sent_at = t.t;
            let fate = t.n.send(t.t, a, gw, req).unwrap();
            // Answered 1 ms later, or not at all.
            assert_eq!(
                t.n.next_instant(),
                (fate == Fate::InFlight).then_some(sent_at + MS)
            );
            t.n.advance(sent_at + MS);
            let mut buf = [0u8; 64];
            let r = t.n.take(a, &mut buf).map(|d| {
                assert_eq!(d.from, gw);
                buf[..d.len].to_vec()
            });
            t.step();
            r
        };
        t.t = 5 * S;
        // Opcode 0: external address, epoch 5 s.
        assert_eq!(
            ask(&mut t, &[0, 0]).unwrap(),
            [0, 128, 0, 0, 0, 0, 0, 5, 2, 0, 0, 1]
        );
        // Opcode 1: map internal 7000 (0x1b58), suggest 9000 (0x2328),
        // lifetime 3600 s (0x0e10).
        let map = [0, 1, 0, 0, 0x1b, 0x58, 0x23, 0x28, 0, 0, 0x0e, 0x10];
        assert_eq!(
            ask(&mut t, &map).unwrap(),
            [0, 129, 0, 0, 0, 0, 0, 5, 0x1b, 0x58, 0x23, 0x28, 0, 0, 0x0e, 0x10]
        );
        assert_eq!(t.n.nat_counters().port_maps_granted, 1);
        // The static mapping admits anyone, and carries outbound traffic.
        let mapped = sa(ip(2, 0, 0, 1), 9000);
        assert_eq!(t.xfer(s, mapped, a), Some(sa(ip(1, 0, 0, 1), 7000)));
        assert_eq!(t.xfer(a, sa(ip(1, 0, 0, 1), 7000), s), Some(mapped));
        // Lifetime 0 deletes it.
        let unmap = [0, 1, 0, 0, 0x1b, 0x58, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            ask(&mut t, &unmap).unwrap(),
            [0, 129, 0, 0, 0, 0, 0, 5, 0x1b, 0x58, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(t.send(s, mapped), Fate::Filtered);
        // Unsupported version and opcode: result 1 and 5.
        assert_eq!(ask(&mut t, &[1, 0]).unwrap(), [0, 128, 0, 1, 0, 0, 0, 5]);
        assert_eq!(ask(&mut t, &[0, 3]).unwrap(), [0, 131, 0, 5, 0, 0, 0, 5]);
        // Truncated requests and responses are ignored.
        assert_eq!(ask(&mut t, &[0, 1, 0, 0, 0x1b]), None);
        assert_eq!(ask(&mut t, &[0, 128]), None);
        // Another port on the gateway: nothing there.
        assert_eq!(t.send(a, sa(GATEWAY_IP, 80)), Fate::NoRoute);
        // The epoch counts from the NAT's start.
        t.t = 70 * S;
        assert_eq!(&ask(&mut t, &[0, 0]).unwrap()[4..8], &[0, 0, 0, 70]);

        // A NAT without port mapping leaves requests unanswered.
        let plain =
            t.n.add_nat(ip(2, 0, 0, 2), NatConfig::port_restricted_cone(), None);
        let b = t.behind(plain, ip(172, 16, 0, 6), 7000);
        assert_eq!(t.n.send(t.t, b, gw, &[0, 0]).unwrap(), Fate::NoRoute);
        t.step();
        assert!(t.drain(b).is_empty());
        assert_eq!(t.n.nat_counters().port_maps_refused, 1);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn changing_the_public_ip_drops_every_mapping() {
        let mut t = T::new(1);
        let config = NatConfig {
            port_mapping: true,
            ..NatConfig::full_cone()
        };
        let nat = t.n.add_nat(ip(2, 0, 0, 1), config, None);
        let a = t.behind(nat, ip(172, 16, 0, 1), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let s_addr = sa(ip(1, 0, 0, 1), 7000);
        let old = t.xfer(a, s_addr, s).unwrap();
        assert_eq!(t.xfer(s, old, a), Some(s_addr));

        t.t = 10 * S;
        t.n.set_now(t.t);
        t.n.change_public_ip(nat, ip(2, 0, 0, 9));
        assert_eq!(t.n.nat_public_ip(nat), ip(2, 0, 0, 9));
        let c = t.n.nat_counters();
        assert_eq!((c.ip_changes, c.mappings_lost), (1, 1));
        assert_eq!(t.n.nat_mappings(nat), 0);
        // The old address routes nowhere; the new one has no mapping.
        assert_eq!(t.send(s, old), Fate::NoRoute);
        assert_eq!(t.send(s, sa(ip(2, 0, 0, 9), old.port())), Fate::Filtered);
        // New traffic gets a new mapping on the new address.
        let new = t.xfer(a, s_addr, s).unwrap();
        assert_eq!(new.ip(), IpAddr::V4(ip(2, 0, 0, 9)));
        // The NAT-PMP epoch restarted at the change.
        t.t = 13 * S;
        t.n.send(t.t, a, t.n.gateway(a).unwrap(), &[0, 0]).unwrap();
        t.step();
        let mut buf = [0u8; 16];
        t.n.take(a, &mut buf).unwrap();
        assert_eq!(&buf[..12], &[0, 128, 0, 0, 0, 0, 0, 3, 2, 0, 0, 9]);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn mappings_survive_a_host_crash_and_time_out_naturally() {
        let mut t = T::new(1);
        let nat = t.n.add_nat(ip(2, 0, 0, 1), NatConfig::full_cone(), None);
        let a = t.behind(nat, ip(172, 16, 0, 1), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let a_pub = t.xfer(a, sa(ip(1, 0, 0, 1), 7000), s).unwrap();
        t.n.crash(a);
        assert_eq!(t.xfer(s, a_pub, a), None);
        assert_eq!(t.n.counters().dead_host, 1);
        t.n.restart(a);
        t.n.bind(a, 7000).unwrap();
        assert!(t.xfer(s, a_pub, a).is_some());
        t.t += 200 * S;
        assert_eq!(t.send(s, a_pub), Fate::Filtered);
        assert_eq!(t.n.nat_counters().expired, 1);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn udp_blocked_except_to_and_from_fallback_hosts() {
        let mut t = T::new(1);
        let config = NatConfig {
            udp_blocked: true,
            ..NatConfig::full_cone()
        };
        let nat = t.n.add_nat(ip(2, 0, 0, 1), config, None);
        let a = t.behind(nat, ip(172, 16, 0, 1), 7000);
        let s = t.public(ip(1, 0, 0, 1), 7000);
        let relay = t.public(ip(1, 0, 0, 2), 7000);
        t.n.set_fallback_reachable(relay, true);
        let relay_addr = sa(ip(1, 0, 0, 2), 7000);
        assert_eq!(t.send(a, sa(ip(1, 0, 0, 1), 7000)), Fate::Filtered);
        assert_eq!(t.n.nat_counters().blocked, 1);
        assert_eq!(t.n.nat_counters().mappings_created, 0);
        let a_pub = t.xfer(a, relay_addr, relay).unwrap();
        assert_eq!(t.xfer(relay, a_pub, a), Some(relay_addr));
        // Full cone: the mapping would admit anyone, but UDP is blocked.
        assert_eq!(t.send(s, a_pub), Fate::Filtered);
        assert_eq!(t.n.nat_counters().blocked, 2);
        fates_add_up(t.n.counters());
    }

    #[test]
    fn every_datagram_has_exactly_one_fate() {
        let mut t = T::new(7);
        let lossy = Link {
            latency: Duration::from_millis(20),
            jitter: Jitter::Exponential {
                mean: Duration::from_millis(5),
            },
            loss: 0.05,
        };
        let mut hosts = Vec::new();
        for i in 0..4 {
            hosts.push(t.public(ip(1, 0, 0, i + 1), 7000));
        }
        let lossy_host = t.n.add_host(IpAddr::V4(ip(1, 0, 0, 9)), lossy);
        t.n.bind(lossy_host, 7000).unwrap();
        hosts.push(lossy_host);
        t.n.set_fallback_reachable(hosts[0], true);
        let cgnat = t.n.add_nat(
            ip(3, 0, 0, 1),
            NatConfig {
                hairpin: true,
                port_allocation: PortAllocation::Random,
                ..NatConfig::port_restricted_cone()
            },
            None,
        );
        let configs = [
            NatConfig::full_cone(),
            NatConfig::restricted_cone(),
            NatConfig::port_restricted_cone(),
            NatConfig::symmetric(),
            NatConfig {
                udp_blocked: true,
                ..NatConfig::full_cone()
            },
            NatConfig {
                port_mapping: true,
                timeout_unreplied: Duration::from_secs(2),
                ..NatConfig::port_restricted_cone()
            },
        ];
        let mut n_private = 0u8;
        for (i, c) in configs.iter().enumerate() {
            for upstream in [None, Some(cgnat)] {
                let wan = match upstream {
                    None => ip(2, 0, 0, i as u8 + 1),
                    Some(_) => ip(100, 64, 0, i as u8 + 1),
                };
                let nat = t.n.add_nat(wan, c.clone(), upstream);
                for _ in 0..2 {
                    n_private += 1;
                    hosts.push(t.behind(nat, ip(172, 16, 0, n_private), 7000));
                }
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen: Vec<SocketAddr> = (0..5).map(|i| t.n.local_addr(hosts[i]).unwrap()).collect();
        for round in 0..400 {
            for _ in 0..20 {
                let from = hosts[rng.gen_range(0..hosts.len())];
                if !t.n.is_up(from) {
                    continue;
                }
                let to = match rng.gen_range(0..10) {
                    0 => t.n.gateway(from).unwrap_or(seen[0]),
                    1 => sa(ip(172, 16, 0, rng.gen_range(1..30)), 7000),
                    2 => sa(ip(2, 0, 0, rng.gen_range(1..8)), rng.gen_range(1024..1100)),
                    _ => seen[rng.gen_range(0..seen.len())],
                };
                let payload: &[u8] = if rng.gen_bool(0.1) {
                    &[0, 1, 0, 0, 0x1b, 0x58, 0, 0, 0, 0, 0, 60]
                } else {
                    &[9; 100]
                };
                t.n.send(t.t, from, to, payload).unwrap();
            }
            if round % 50 == 10 {
                let h = hosts[rng.gen_range(0..hosts.len())];
                t.n.crash(h);
            }
            if round % 50 == 30 {
                for &h in &hosts {
                    if !t.n.is_up(h) {
                        t.n.restart(h);
                        t.n.bind(h, 7000).unwrap();
                    }
                }
            }
            if round == 200 {
                t.n.set_side(hosts[1], 1);
            }
            if round == 250 {
                t.n.heal();
                t.n.set_now(t.t);
                t.n.change_public_ip(cgnat, ip(3, 0, 0, 2));
            }
            t.step();
            for &h in &hosts {
                for from in t.drain(h) {
                    if seen.len() < 64
                        && !seen.contains(&from)
                        && from.ip() != IpAddr::V4(GATEWAY_IP)
                    {
                        seen.push(from);
                    }
                }
            }
        }
        t.n.advance(u64::MAX);
        let c = t.n.counters();
        assert_eq!(t.n.in_flight(), 0);
        fates_add_up(c);
        assert!(
            c.sent > 7000 && c.delivered > 1000 && c.filtered > 100,
            "{c:?}"
        );
        assert!(c.lost > 0 && c.no_route > 0 && c.dead_host > 0, "{c:?}");
        let n = t.n.nat_counters();
        assert!(
            n.translations_in > 0 && n.blocked > 0 && n.filtered > 0 && n.no_mapping > 0,
            "{n:?}"
        );
        assert!(
            n.hairpinned > 0 && n.port_maps_granted > 0 && n.expired > 0,
            "{n:?}"
        );
        assert_eq!(n.ip_changes, 1);
    }
}
