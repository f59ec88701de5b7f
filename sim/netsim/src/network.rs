//! The network proper: hosts, NAT boxes, the in-flight heap, delivery and
//! fates.
//!
//! Addresses live in realms: the internet, and the inside of each NAT. A
//! public host and a NAT on the internet have internet addresses; a host
//! behind a NAT has a private address in that NAT's realm; a home NAT
//! behind a carrier-grade NAT has its WAN address in the CGNAT's realm. A
//! datagram climbs out of its sender's realm through each NAT on the way
//! (translated at send time) until its destination address is in the realm
//! it is in; if that address is a NAT's outside address, the datagram
//! descends through that NAT's mappings at arrival time (filtered and
//! translated there). Public-to-public traffic never touches any of this.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::Waker;

use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::link::{Jitter, Link};
use crate::nat::{
    NatBox, NatConfig, NatCounters, NatId, Refusal, GATEWAY_IP, NAT_PMP_DELAY_NS, NAT_PMP_PORT,
    NO_NAT,
};

/// Index of a host in the network.
pub type HostId = u32;

/// Largest datagram the network carries, in bytes (a typical path MTU less
/// IP and UDP headers).
pub const MAX_DATAGRAM_BYTES: usize = 1472;
/// Datagrams a host's inbox holds before new arrivals are dropped (a socket
/// receive buffer).
pub const INBOX_CAPACITY: usize = 2048;
/// Datagrams in flight in the whole network before new sends are dropped.
pub const IN_FLIGHT_CAPACITY: usize = 1 << 24;

/// What happened to a datagram, decided when it is sent, or when it
/// arrives for a receiver that is down, unbound or on another partition
/// side, a full inbox, and a NAT's inbound filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// On its way; it will be delivered unless its host dies first.
    InFlight,
    /// Lost on an access link.
    Lost,
    /// Sender and receiver are on different sides of a partition.
    Partitioned,
    /// The receiver was down when the datagram arrived.
    DeadHost,
    /// No host has the destination address, or nothing is bound to its port.
    NoRoute,
    /// The receiver's inbox was full, the network's in-flight limit hit, or
    /// a NAT had no outside port left for a new mapping.
    Overflow,
    /// Dropped by a NAT: refused by a mapping's filter, sent to an outside
    /// port with no live mapping, a refused hairpin, or UDP blocked (see
    /// [`NatCounters`] for which).
    Filtered,
}

/// Counts of datagrams by fate. Every datagram sent has exactly one fate:
/// once nothing is queued, `sent` is the sum of the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams accepted by [`Network::send`] (a NAT-PMP request and its
    /// response count as one).
    pub sent: u64,
    /// Put into the receiver's inbox (less those dropped from an inbox by a
    /// crash, which count as `dead_host`).
    pub delivered: u64,
    /// [`Fate::Lost`].
    pub lost: u64,
    /// [`Fate::Partitioned`].
    pub partitioned: u64,
    /// [`Fate::DeadHost`].
    pub dead_host: u64,
    /// [`Fate::NoRoute`].
    pub no_route: u64,
    /// [`Fate::Overflow`].
    pub overflow: u64,
    /// [`Fate::Filtered`].
    pub filtered: u64,
}

impl Counters {
    fn count(&mut self, fate: Fate) {
        match fate {
            Fate::InFlight => {}
            Fate::Lost => self.lost += 1,
            Fate::Partitioned => self.partitioned += 1,
            Fate::DeadHost => self.dead_host += 1,
            Fate::NoRoute => self.no_route += 1,
            Fate::Overflow => self.overflow += 1,
            Fate::Filtered => self.filtered += 1,
        }
    }
}

/// Why a send was refused outright (nothing was put on the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than [`MAX_DATAGRAM_BYTES`].
    TooLarge { len: usize },
    /// The sending host is down or has no socket.
    HostDown,
    /// A forged source from a host behind a NAT ([`Network::send_spoofed`]):
    /// the NAT would rewrite it.
    SpoofBehindNat,
}

/// A datagram taken from an inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The source as the receiver sees it (translated by any NAT).
    pub from: SocketAddr,
}

/// Queued entries by instant: a min-heap of distinct instants, each with a
/// bucket of (host, slot) in push order (a datagram arriving at `host`, or
/// with slot == TIMER the host's deadline). Earliest instant first, ties in
/// push order. On a time grid many entries share an instant, so a push is
/// an append to a hot bucket and the heap stays small.
#[derive(Default)]
struct Queue {
    len: usize,
    instants: BinaryHeap<Reverse<u64>>,
    buckets: FxHashMap<u64, Vec<(HostId, u32)>>,
    spare: Vec<Vec<(HostId, u32)>>,
}

impl Queue {
    fn push(&mut self, at: u64, host: HostId, slot: u32) {
        self.len += 1;
        match self.buckets.entry(at) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut().push((host, slot)),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut b = self.spare.pop().unwrap_or_default();
                b.push((host, slot));
                e.insert(b);
                self.instants.push(Reverse(at));
            }
        }
    }

    fn next_instant(&self) -> Option<u64> {
        self.instants.peek().map(|r| r.0)
    }

    fn take_due(&mut self, now: u64) -> Option<(u64, Vec<(HostId, u32)>)> {
        let at = self.next_instant().filter(|&at| at <= now)?;
        self.instants.pop();
        let b = self.buckets.remove(&at).expect("a bucket per instant");
        self.len -= b.len();
        Some((at, b))
    }

    /// Keep an emptied bucket for reuse, within bounds: a pool that kept
    /// every bucket at the largest size it ever had would grow for as long
    /// as a run lasts (hot instants on the grid hold thousands of entries).
    fn recycle(&mut self, mut b: Vec<(HostId, u32)>) {
        if self.spare.len() < SPARE_BUCKETS_MAX {
            b.clear();
            b.shrink_to(SPARE_BUCKET_CAPACITY_MAX);
            self.spare.push(b);
        }
    }
}

/// Emptied buckets kept for reuse, and the capacity each keeps.
const SPARE_BUCKETS_MAX: usize = 1024;
const SPARE_BUCKET_CAPACITY_MAX: usize = 256;

const TIMER: u32 = u32::MAX;

/// Set on a queued entry's host for a datagram to a NAT's outside address:
/// filtering and translation happen on arrival, starting from the slot's
/// `nat` and `nat_port`. Also set on an address-table value that is a NAT.
const NAT_BIT: u32 = 1 << 31;

/// Payloads up to this size are stored inside their slot.
const INLINE_BYTES: usize = 80;

/// A datagram in flight or in an inbox: two cache lines holding its header
/// and (up to INLINE_BYTES) its payload; a longer payload goes to a spill
/// buffer whose index the inline bytes hold.
#[repr(C, align(64))]
struct Slot {
    from: SocketAddr,
    src_host: HostId,
    /// Next slot in the receiver's inbox (NO_SLOT: last).
    next: u32,
    /// For a datagram to a NAT's outside address: that NAT and port (set
    /// only then; see NAT_BIT).
    nat: NatId,
    nat_port: u16,
    len: u16,
    inline: [u8; INLINE_BYTES],
}

const _: () = assert!(std::mem::size_of::<Slot>() == 128);

const NO_SLOT: u32 = u32::MAX;

/// A host's inbox: a FIFO linked through the slots, so arrivals allocate
/// nothing and touch no per-host buffer.
#[derive(Clone, Copy)]
struct Inbox {
    head: u32,
    tail: u32,
    len: u32,
}

impl Inbox {
    const EMPTY: Inbox = Inbox {
        head: NO_SLOT,
        tail: NO_SLOT,
        len: 0,
    };
}

/// No instant (a deadline or queued timer that is not set).
const NEVER: u64 = u64::MAX;

/// What delivery, sending and timers touch of a host: one cache line.
/// The address and the full link model live in [`HostCold`].
#[repr(align(64))]
struct Host {
    waker: Option<Waker>,
    /// The instant the host's task wants to be woken at (NEVER: none).
    deadline: u64,
    /// The instant of the host's live timer entry in the queue (NEVER: none).
    queued: u64,
    /// The link's base latency.
    latency_ns: u64,
    inbox: Inbox,
    /// Bumped on every crash so a dead incarnation's socket is recognised.
    incarnation: u32,
    port: Option<u16>,
    /// Partition side; datagrams only flow between hosts on the same side.
    side: u16,
    up: bool,
    /// A public host whose link is its base latency alone (no jitter, no
    /// loss): then sending to or from it needs nothing from [`HostCold`].
    plain: bool,
}

const _: () = assert!(std::mem::size_of::<Host>() == 64);

struct HostCold {
    ip: IpAddr,
    link: Link,
    /// The NAT the host sits directly behind (NO_NAT: a public host).
    nat: u32,
    /// Reachable by hosts whose UDP is blocked (a relay on TCP/443).
    fallback: bool,
    /// Some NAT on the host's way out blocks UDP.
    blocked: bool,
}

/// What an address is, in the realm it belongs to (NO_NAT: the internet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entity {
    Host(HostId),
    Nat(NatId),
}

/// The virtual network. Times are nanoseconds since the start of the run.
pub struct Network {
    grid_ns: u64,
    queue: Queue,
    slots: Vec<Slot>,
    /// Payloads longer than INLINE_BYTES (buffers kept for reuse). A pool
    /// of its own rather than one buffer per slot: only the long datagrams
    /// in flight at once need one (a slot that ever held a long payload
    /// would keep its buffer, a few hundred bytes per slot at 100,000 hosts).
    spill: Vec<Vec<u8>>,
    free_spill: Vec<u32>,
    free_slots: Vec<u32>,
    hosts: Vec<Host>,
    cold: Vec<HostCold>,
    /// Hosts and NATs (values with NAT_BIT) by address; IPv4 keyed by its 4
    /// bytes so the table stays small.
    by_v4: FxHashMap<u32, u32>,
    by_v6: FxHashMap<std::net::Ipv6Addr, HostId>,
    /// Hosts on a side other than 0; while none, arrivals skip the check.
    off_side: u32,
    rng: ChaCha8Rng,
    counters: Counters,
    next_ephemeral_port: u16,
    /// Woken when a new entry becomes the earliest (the pump re-arms).
    pump_waker: Option<Waker>,
    pump_armed_at: Option<u64>,
    nats: Vec<NatBox>,
    nat_counters: NatCounters,
    /// The latest instant the network has been told of.
    clock: u64,
}

impl Network {
    /// An empty network. `grid_ns` rounds every delivery and deadline up to
    /// a multiple of itself (0: exact); `rng` drives loss and jitter.
    pub fn new(grid_ns: u64, rng: ChaCha8Rng) -> Self {
        Network {
            grid_ns,
            queue: Queue::default(),
            slots: Vec::new(),
            spill: Vec::new(),
            free_spill: Vec::new(),
            free_slots: Vec::new(),
            hosts: Vec::new(),
            cold: Vec::new(),
            by_v4: FxHashMap::default(),
            by_v6: FxHashMap::default(),
            off_side: 0,
            rng,
            counters: Counters::default(),
            next_ephemeral_port: 49152,
            pump_waker: None,
            pump_armed_at: None,
            nats: Vec::new(),
            nat_counters: NatCounters::default(),
            clock: 0,
        }
    }

    // ---- topology ----

    /// Add a public host with `ip` and access `link`; it starts up, with
    /// nothing bound. Panics if the address is taken (a bug in the world
    /// builder).
    pub fn add_host(&mut self, ip: IpAddr, link: Link) -> HostId {
        self.push_host(ip, link, NO_NAT)
    }

    /// A host behind `nat` with private address `ip` (unique; registered so
    /// that `sim::Socket::bind` finds the host, but never routed to
    /// from outside its NAT). `link` is the home's access link: the NATs on
    /// the way add no delay. Panics on an IPv6 address (NATs translate
    /// IPv4), on [`GATEWAY_IP`], or on an address already taken.
    pub fn add_host_behind(&mut self, ip: IpAddr, link: Link, nat: NatId) -> HostId {
        assert!(
            (nat as usize) < self.nats.len(),
            "no NAT {nat} to put {ip} behind"
        );
        assert!(
            matches!(ip, IpAddr::V4(a) if a != GATEWAY_IP),
            "a host behind a NAT needs an IPv4 address other than {GATEWAY_IP}, got {ip}"
        );
        self.push_host(ip, link, nat)
    }

    fn push_host(&mut self, ip: IpAddr, link: Link, nat: u32) -> HostId {
        let id = HostId::try_from(self.hosts.len())
            .ok()
            .filter(|&id| id < NAT_BIT)
            .expect("fewer than 2^31 hosts");
        assert!(
            match ip {
                IpAddr::V4(a) => self.by_v4.insert(a.to_bits(), id),
                IpAddr::V6(a) => self.by_v6.insert(a, id),
            }
            .is_none(),
            "address {ip} given twice"
        );
        let mut blocked = false;
        let mut n = nat;
        while n != NO_NAT {
            blocked |= self.nats[n as usize].config.udp_blocked;
            n = self.nats[n as usize].upstream;
        }
        self.hosts.push(Host {
            waker: None,
            deadline: NEVER,
            queued: NEVER,
            latency_ns: link.latency.as_nanos() as u64,
            inbox: Inbox::EMPTY,
            incarnation: 0,
            port: None,
            side: 0,
            up: true,
            plain: nat == NO_NAT && link.jitter == Jitter::None && link.loss <= 0.0,
        });
        self.cold.push(HostCold {
            ip,
            link,
            nat,
            fallback: false,
            blocked,
        });
        id
    }

    /// How many hosts there are (ids are `0..host_count()`).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The host with address `ip` (public or private), if any.
    pub fn host_by_ip(&self, ip: IpAddr) -> Option<HostId> {
        self.route(ip).filter(|v| v & NAT_BIT == 0)
    }

    /// The raw address-table value of `ip`: a host, or a NAT with NAT_BIT.
    #[inline]
    fn route(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => self.by_v4.get(&a.to_bits()).copied(),
            IpAddr::V6(a) => self.by_v6.get(&a).copied(),
        }
    }

    /// What `ip` is, and the realm it is in.
    fn entity(&self, ip: IpAddr) -> Option<(Entity, u32)> {
        let v = self.route(ip)?;
        Some(if v & NAT_BIT == 0 {
            (Entity::Host(v), self.cold[v as usize].nat)
        } else {
            let n = v & !NAT_BIT;
            (Entity::Nat(n), self.nats[n as usize].upstream)
        })
    }

    /// The host's own address (private for a host behind a NAT).
    pub fn ip(&self, host: HostId) -> IpAddr {
        self.cold[host as usize].ip
    }

    /// Whether `host` is up (not crashed).
    pub fn is_up(&self, host: HostId) -> bool {
        self.hosts[host as usize].up
    }

    /// How many times `host` has crashed.
    pub fn incarnation(&self, host: HostId) -> u32 {
        self.hosts[host as usize].incarnation
    }

    /// Datagrams by fate so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    // ---- NATs ----

    /// A NAT whose outside address is `public_ip`. With `upstream:
    /// Some(cgnat)`, it sits behind that NAT (double NAT): `public_ip` is
    /// then its WAN address on the CGNAT's inside (e.g. 100.64.x.y) and is
    /// not reachable from the internet. Panics if the address is taken.
    pub fn add_nat(
        &mut self,
        public_ip: Ipv4Addr,
        config: NatConfig,
        upstream: Option<NatId>,
    ) -> NatId {
        let id = NatId::try_from(self.nats.len())
            .ok()
            .filter(|&id| id < NAT_BIT)
            .expect("fewer than 2^31 NATs");
        let upstream = upstream.unwrap_or(NO_NAT);
        assert!(
            upstream == NO_NAT || (upstream as usize) < self.nats.len(),
            "no NAT {upstream} to put a NAT behind"
        );
        assert!(
            self.by_v4
                .insert(public_ip.to_bits(), id | NAT_BIT)
                .is_none(),
            "address {public_ip} given twice"
        );
        let mut nat = NatBox::new(public_ip, config, upstream);
        nat.epoch_ns = self.clock;
        self.nats.push(nat);
        id
    }

    /// How many NATs there are (ids are `0..nat_count()`).
    pub fn nat_count(&self) -> usize {
        self.nats.len()
    }

    /// Whether hosts whose UDP is blocked may still exchange datagrams with
    /// `host` (a relay reachable over a TCP/443 fallback).
    pub fn set_fallback_reachable(&mut self, host: HostId, yes: bool) {
        self.cold[host as usize].fallback = yes;
    }

    /// The address a host behind a NAT sends NAT-PMP requests to (its NAT's
    /// LAN address, port 5351), None for a public host.
    pub fn gateway(&self, host: HostId) -> Option<SocketAddr> {
        (self.cold[host as usize].nat != NO_NAT)
            .then_some(SocketAddr::new(IpAddr::V4(GATEWAY_IP), NAT_PMP_PORT))
    }

    /// Give `nat` a new outside address: every mapping on it (and, for a
    /// CGNAT, nothing else) is lost; counted. The old address stops
    /// routing, and the NAT-PMP epoch restarts at the network's clock (the
    /// latest instant given to [`Network::set_now`], `send` or `advance`).
    /// Panics if `new_ip` is taken.
    pub fn change_public_ip(&mut self, nat: NatId, new_ip: Ipv4Addr) {
        let now = self.clock;
        let n = &mut self.nats[nat as usize];
        self.by_v4.remove(&n.public_ip);
        assert!(
            self.by_v4.insert(new_ip.to_bits(), nat | NAT_BIT).is_none(),
            "address {new_ip} given twice"
        );
        n.clear(now, &mut self.nat_counters);
        n.public_ip = new_ip.to_bits();
        n.epoch_ns = now;
        self.nat_counters.ip_changes += 1;
    }

    /// The outside address of `nat`.
    pub fn nat_public_ip(&self, nat: NatId) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.nats[nat as usize].public_ip)
    }

    /// The NAT `nat` sits behind, if any.
    pub fn nat_upstream(&self, nat: NatId) -> Option<NatId> {
        Some(self.nats[nat as usize].upstream).filter(|&u| u != NO_NAT)
    }

    /// The configuration of `nat`.
    pub fn nat_config(&self, nat: NatId) -> &NatConfig {
        &self.nats[nat as usize].config
    }

    /// Mappings in `nat`'s table (dead ones are removed lazily, so this
    /// may count some that have timed out but were not looked at since).
    pub fn nat_mappings(&self, nat: NatId) -> usize {
        self.nats[nat as usize].len()
    }

    /// The NAT `host` sits directly behind (its home NAT), if any.
    pub fn host_nat(&self, host: HostId) -> Option<NatId> {
        Some(self.cold[host as usize].nat).filter(|&n| n != NO_NAT)
    }

    /// What the NATs did so far, summed over all of them.
    pub fn nat_counters(&self) -> NatCounters {
        self.nat_counters
    }

    /// Tell the network the current instant (it also learns it from `send`
    /// and `advance`); only [`Network::change_public_ip`] needs it.
    pub fn set_now(&mut self, now: u64) {
        self.clock = self.clock.max(now);
    }

    /// Datagrams and deadlines currently queued.
    pub fn in_flight(&self) -> usize {
        self.queue.len
    }

    // ---- sockets ----

    /// Bind `port` (0: an ephemeral port) on `host`. One socket per host.
    pub fn bind(&mut self, host: HostId, port: u16) -> std::io::Result<u16> {
        let h = &mut self.hosts[host as usize];
        if !h.up {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("host {} is down", self.cold[host as usize].ip),
            ));
        }
        if let Some(p) = h.port {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} already has a socket on port {p}",
                    self.cold[host as usize].ip
                ),
            ));
        }
        let port = if port == 0 {
            let p = self.next_ephemeral_port;
            self.next_ephemeral_port = self.next_ephemeral_port.checked_add(1).unwrap_or(49152);
            p
        } else {
            port
        };
        h.port = Some(port);
        Ok(port)
    }

    /// Release the socket of `incarnation` of `host` (no-op for an older
    /// incarnation, whose socket the crash already released).
    pub fn unbind(&mut self, host: HostId, incarnation: u32) {
        let h = &mut self.hosts[host as usize];
        if h.incarnation == incarnation {
            h.port = None;
            h.deadline = NEVER;
            h.waker = None;
            self.drop_inbox(host);
        }
    }

    fn drop_inbox(&mut self, host: HostId) {
        while let Some(slot) = self.pop_inbox(host) {
            self.free_slot(slot);
            self.counters.dead_host += 1;
            self.counters.delivered -= 1;
        }
    }

    // ---- faults ----

    /// Crash `host`: its socket is released, its inbox and deadline are
    /// dropped, and datagrams arriving while it is down are lost.
    pub fn crash(&mut self, host: HostId) {
        let h = &mut self.hosts[host as usize];
        if !h.up {
            return;
        }
        h.up = false;
        h.port = None;
        h.deadline = NEVER;
        h.queued = NEVER;
        h.waker = None;
        h.incarnation += 1;
        self.drop_inbox(host);
    }

    /// Bring a crashed host back up (with nothing bound).
    pub fn restart(&mut self, host: HostId) {
        self.hosts[host as usize].up = true;
    }

    /// Give public host `host` a new address, as when a residential line
    /// reconnects: its old address routes nowhere from now on. The host
    /// must be down (crashed and not yet restarted), so no socket holds the
    /// old address. Panics for a host behind a NAT (change its NAT's
    /// address instead), while it is up, or on an address already taken.
    pub fn readdress_host(&mut self, host: HostId, ip: Ipv4Addr) {
        assert!(
            !self.hosts[host as usize].up,
            "host {host} must be down to be readdressed"
        );
        let cold = &mut self.cold[host as usize];
        assert_eq!(cold.nat, NO_NAT, "host {host} is behind a NAT");
        match cold.ip {
            IpAddr::V4(old) => self.by_v4.remove(&old.to_bits()),
            IpAddr::V6(old) => self.by_v6.remove(&old),
        };
        assert!(
            self.by_v4.insert(ip.to_bits(), host).is_none(),
            "address {ip} given twice"
        );
        cold.ip = IpAddr::V4(ip);
    }

    /// Put `host` on partition side `side`; datagrams between hosts on
    /// different sides are dropped.
    pub fn set_side(&mut self, host: HostId, side: u16) {
        let h = &mut self.hosts[host as usize];
        self.off_side = self.off_side + u32::from(side != 0) - u32::from(h.side != 0);
        h.side = side;
    }

    /// Put every host back on side 0.
    pub fn heal(&mut self) {
        for h in &mut self.hosts {
            h.side = 0;
        }
        self.off_side = 0;
    }

    // ---- time ----

    fn on_grid(&self, t: u64) -> u64 {
        if self.grid_ns == 0 {
            t
        } else {
            t.div_ceil(self.grid_ns) * self.grid_ns
        }
    }

    fn push(&mut self, at: u64, host: HostId, slot: u32) {
        self.queue.push(at, host, slot);
        if self.pump_armed_at.is_none_or(|armed| at < armed) {
            if let Some(w) = self.pump_waker.take() {
                w.wake();
            }
        }
    }

    /// The instant of the earliest queued entry.
    pub fn next_instant(&self) -> Option<u64> {
        self.queue.next_instant()
    }

    /// Register the pump: `waker` is woken when an entry earlier than
    /// `armed_at` is queued.
    pub fn set_pump(&mut self, waker: Waker, armed_at: Option<u64>) {
        self.pump_waker = Some(waker);
        self.pump_armed_at = armed_at;
    }

    /// Ask for `host` to be woken at `at` (rounded up to the grid); replaces
    /// its previous deadline. Returns the rounded deadline.
    pub fn set_deadline(&mut self, host: HostId, at: u64) -> u64 {
        let at = self.on_grid(at);
        let h = &mut self.hosts[host as usize];
        h.deadline = at;
        if at < h.queued {
            h.queued = at;
            self.push(at, host, TIMER);
        }
        at
    }

    /// Forget `host`'s deadline.
    pub fn clear_deadline(&mut self, host: HostId) {
        self.hosts[host as usize].deadline = NEVER;
    }

    /// Store the waker of `host`'s task, woken by its next delivery or
    /// deadline.
    pub fn set_waker(&mut self, host: HostId, waker: &Waker) {
        let slot = &mut self.hosts[host as usize].waker;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// Deliver everything due at or before `now` into inboxes and wake the
    /// hosts concerned. Returns how many entries were processed.
    pub fn advance(&mut self, now: u64) -> usize {
        self.clock = self.clock.max(now);
        let mut processed = 0;
        while let Some((at, bucket)) = self.queue.take_due(now) {
            processed += bucket.len();
            for &(host, slot) in &bucket {
                if slot == TIMER {
                    self.fire_timer(host, at);
                } else if host & NAT_BIT == 0 {
                    self.arrive(host, slot);
                } else {
                    self.arrive_at_nat(at, slot);
                }
            }
            self.queue.recycle(bucket);
        }
        processed
    }

    fn fire_timer(&mut self, host: HostId, at: u64) {
        let h = &mut self.hosts[host as usize];
        if h.queued != at {
            return; // superseded by an earlier entry
        }
        h.queued = NEVER;
        let d = h.deadline;
        if d <= at {
            if let Some(w) = h.waker.take() {
                w.wake();
            }
        } else if d != NEVER {
            h.queued = d;
            self.push(d, host, TIMER);
        }
    }

    /// A datagram reaches a NAT's outside address: each NAT on the way in
    /// (CGNAT, then home NAT) must have a live mapping on the port whose
    /// filter admits the source; it is translated to the inside endpoint
    /// and, at the last NAT, delivered to the host there.
    fn arrive_at_nat(&mut self, at: u64, slot: u32) {
        let s = &self.slots[slot as usize];
        let (mut nat, mut port) = (s.nat, s.nat_port);
        let src = match s.from {
            SocketAddr::V4(a) => Some((a.ip().to_bits(), a.port())),
            SocketAddr::V6(_) => None,
        };
        let mut depth = 0;
        let fate = loop {
            let n = &mut self.nats[nat as usize];
            let (ip, p) = match n.translate_in(at, port, src, &mut self.nat_counters) {
                Ok(inside) => inside,
                Err(Refusal::NoMapping) => {
                    self.nat_counters.no_mapping += 1;
                    break Fate::Filtered;
                }
                Err(Refusal::Filtered) => {
                    self.nat_counters.filtered += 1;
                    break Fate::Filtered;
                }
            };
            depth += 1;
            match self.entity(IpAddr::V4(Ipv4Addr::from_bits(ip))) {
                Some((Entity::Host(h), realm)) if realm == nat => {
                    let host = &self.hosts[h as usize];
                    if host.up && host.port.is_some_and(|bound| bound != p) {
                        break Fate::NoRoute;
                    }
                    return self.arrive(h, slot);
                }
                Some((Entity::Nat(m), realm)) if realm == nat && depth < self.nats.len() => {
                    (nat, port) = (m, p);
                }
                _ => {
                    self.nat_counters.no_mapping += 1;
                    break Fate::Filtered;
                }
            }
        };
        self.counters.count(fate);
        self.free_slot(slot);
    }

    fn arrive(&mut self, host: HostId, slot: u32) {
        let src_side = if self.off_side == 0 {
            0
        } else {
            self.hosts[self.slots[slot as usize].src_host as usize].side
        };
        let h = &mut self.hosts[host as usize];
        let fate = if !h.up {
            Fate::DeadHost
        } else if h.port.is_none() {
            Fate::NoRoute
        } else if h.side != src_side {
            Fate::Partitioned
        } else if h.inbox.len as usize >= INBOX_CAPACITY {
            Fate::Overflow
        } else {
            Fate::InFlight
        };
        if fate == Fate::InFlight {
            let tail = h.inbox.tail;
            h.inbox.tail = slot;
            h.inbox.len += 1;
            if tail == NO_SLOT {
                h.inbox.head = slot;
            }
            if let Some(w) = h.waker.take() {
                w.wake();
            }
            if tail != NO_SLOT {
                self.slots[tail as usize].next = slot;
            }
            self.counters.delivered += 1;
        } else {
            self.counters.count(fate);
            self.free_slot(slot);
        }
    }

    // ---- datagrams ----

    /// Send `payload` from `src` (its bound port) to `dst` at `now`.
    /// Returns the fate decided at send time.
    pub fn send(
        &mut self,
        now: u64,
        src: HostId,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<Fate, SendError> {
        self.send_from(now, src, None, dst, payload)
    }

    /// Send `payload` from `src` to `dst` at `now` with the forged source
    /// address `from` (IP spoofing): it crosses `src`'s access link and
    /// arrives claiming `from`, so answers go to `from`, not to `src`.
    /// Only attack hosts of the simulator use this, to flood from
    /// addresses they do not own; `src` must have no NAT in front of it
    /// (a NAT would rewrite the source). Counted like any other datagram.
    pub fn send_spoofed(
        &mut self,
        now: u64,
        src: HostId,
        from: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<Fate, SendError> {
        if self.cold[src as usize].nat != NO_NAT {
            return Err(SendError::SpoofBehindNat);
        }
        self.send_from(now, src, Some(from), dst, payload)
    }

    /// [`Network::send`], from the host's own address or (from a public
    /// host only) `forged`.
    fn send_from(
        &mut self,
        now: u64,
        src: HostId,
        forged: Option<SocketAddr>,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<Fate, SendError> {
        if payload.len() > MAX_DATAGRAM_BYTES {
            return Err(SendError::TooLarge { len: payload.len() });
        }
        let s = &self.hosts[src as usize];
        let (Some(src_port), true) = (s.port, s.up) else {
            return Err(SendError::HostDown);
        };
        let (src_side, src_latency, src_plain) = (s.side, s.latency_ns, s.plain);
        self.clock = self.clock.max(now);
        self.counters.sent += 1;
        let fate = match self.route(dst.ip()) {
            None if src_plain => Fate::NoRoute,
            Some(d) if src_plain && d & NAT_BIT == 0 && self.hosts[d as usize].plain => {
                if self.hosts[d as usize].side != src_side {
                    Fate::Partitioned
                } else if self.queue.len >= IN_FLIGHT_CAPACITY {
                    Fate::Overflow
                } else {
                    let delay = src_latency + self.hosts[d as usize].latency_ns;
                    let at = self.on_grid(now + delay.max(1));
                    let from =
                        forged.unwrap_or(SocketAddr::new(self.cold[src as usize].ip, src_port));
                    let slot = self.alloc_slot(from, src, payload);
                    self.push(at, d, slot);
                    Fate::InFlight
                }
            }
            _ => self.send_slow(now, src, src_port, forged, dst, payload),
        };
        self.counters.count(fate);
        Ok(fate)
    }

    /// Everything but public plain-link to public plain-link: NATs on the
    /// way out and in, jitter and loss. `forged` (from a public host
    /// only): the source the datagram claims.
    fn send_slow(
        &mut self,
        now: u64,
        src: HostId,
        src_port: u16,
        forged: Option<SocketAddr>,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Fate {
        let src_side = self.hosts[src as usize].side;
        let cold = &self.cold[src as usize];
        let (home, src_blocked, src_fallback) = (cold.nat, cold.blocked, cold.fallback);
        let mut from = forged.unwrap_or(SocketAddr::new(cold.ip, src_port));
        if home != NO_NAT && dst.ip() == IpAddr::V4(GATEWAY_IP) {
            return self.gateway_request(now, src, home, dst.port(), payload);
        }
        let target = self.entity(dst.ip());
        if src_blocked
            && !matches!(target, Some((Entity::Host(d), _)) if self.cold[d as usize].fallback)
        {
            self.nat_counters.blocked += 1;
            return Fate::Filtered;
        }
        // Out through each NAT until the destination is in our realm.
        let mut realm = home;
        let entity = loop {
            match target {
                Some((e, r)) if r == realm => break e,
                _ => {}
            }
            if realm == NO_NAT {
                return Fate::NoRoute;
            }
            let (IpAddr::V4(int_ip), IpAddr::V4(rem_ip)) = (from.ip(), dst.ip()) else {
                return Fate::NoRoute; // no NAT64
            };
            let n = &mut self.nats[realm as usize];
            let hairpin = n.public_ip == rem_ip.to_bits();
            if hairpin && !n.config.hairpin {
                self.nat_counters.hairpin_refused += 1;
                return Fate::Filtered;
            }
            let Some(ext_port) = n.translate_out(
                now,
                (int_ip.to_bits(), from.port()),
                (rem_ip.to_bits(), dst.port()),
                &mut self.rng,
                &mut self.nat_counters,
            ) else {
                return Fate::Overflow;
            };
            from = SocketAddr::new(IpAddr::V4(Ipv4Addr::from_bits(n.public_ip)), ext_port);
            if hairpin {
                self.nat_counters.hairpinned += 1;
                break Entity::Nat(realm);
            }
            realm = n.upstream;
        };
        // In: to a host in this realm, or through a NAT's mappings to the
        // host they lead to now (filtered on arrival).
        let (d, via) = match entity {
            Entity::Host(d) => (d, None),
            Entity::Nat(n) => match self.resolve(now, n, dst.port()) {
                Some(d) => (d, Some(n)),
                None => {
                    self.nat_counters.no_mapping += 1;
                    return Fate::Filtered;
                }
            },
        };
        if self.cold[d as usize].blocked && !src_fallback {
            self.nat_counters.blocked += 1;
            return Fate::Filtered;
        }
        if self.hosts[d as usize].side != src_side {
            return Fate::Partitioned;
        }
        let src_link = self.cold[src as usize].link;
        let dst_link = self.cold[d as usize].link;
        if src_link.sample_loss(&mut self.rng) || dst_link.sample_loss(&mut self.rng) {
            return Fate::Lost;
        }
        if self.queue.len >= IN_FLIGHT_CAPACITY {
            return Fate::Overflow;
        }
        let delay =
            src_link.sample_delay_ns(&mut self.rng) + dst_link.sample_delay_ns(&mut self.rng);
        let at = self.on_grid(now + delay.max(1));
        let slot = self.alloc_slot(from, src, payload);
        match via {
            None => self.push(at, d, slot),
            Some(n) => {
                let s = &mut self.slots[slot as usize];
                s.nat = n;
                s.nat_port = dst.port();
                self.push(at, d | NAT_BIT, slot);
            }
        }
        Fate::InFlight
    }

    /// The host that outside `port` of `nat` leads to now, through live
    /// mappings (no filtering: that happens on arrival).
    fn resolve(&mut self, now: u64, mut nat: NatId, mut port: u16) -> Option<HostId> {
        for _ in 0..self.nats.len() {
            let (ip, p) = self.nats[nat as usize].resolve(now, port, &mut self.nat_counters)?;
            match self.entity(IpAddr::V4(Ipv4Addr::from_bits(ip)))? {
                (Entity::Host(h), realm) if realm == nat => return Some(h),
                (Entity::Nat(m), realm) if realm == nat => (nat, port) = (m, p),
                _ => return None,
            }
        }
        None
    }

    /// A datagram from a host to its gateway: a NAT-PMP request, answered
    /// (if the NAT supports it) after NAT_PMP_DELAY_NS from the gateway's
    /// address. The request and its response count as one datagram, whose
    /// fate is the response's.
    fn gateway_request(
        &mut self,
        now: u64,
        src: HostId,
        nat: NatId,
        port: u16,
        req: &[u8],
    ) -> Fate {
        let IpAddr::V4(int_ip) = self.cold[src as usize].ip else {
            return Fate::NoRoute;
        };
        let n = &mut self.nats[nat as usize];
        if port != NAT_PMP_PORT {
            return Fate::NoRoute;
        }
        if !n.config.port_mapping {
            self.nat_counters.port_maps_refused += 1;
            return Fate::NoRoute;
        }
        let mut out = [0u8; 16];
        let Some(len) = n.nat_pmp(
            now,
            int_ip.to_bits(),
            req,
            &mut out,
            &mut self.rng,
            &mut self.nat_counters,
        ) else {
            return Fate::NoRoute;
        };
        if self.queue.len >= IN_FLIGHT_CAPACITY {
            return Fate::Overflow;
        }
        let gateway = SocketAddr::new(IpAddr::V4(GATEWAY_IP), NAT_PMP_PORT);
        let slot = self.alloc_slot(gateway, src, &out[..len]);
        let at = self.on_grid(now + NAT_PMP_DELAY_NS);
        self.push(at, src, slot);
        Fate::InFlight
    }

    fn alloc_slot(&mut self, from: SocketAddr, src_host: HostId, payload: &[u8]) -> u32 {
        let idx = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    from,
                    src_host,
                    next: NO_SLOT,
                    nat: 0,
                    nat_port: 0,
                    len: 0,
                    inline: [0; INLINE_BYTES],
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.from = from;
        slot.src_host = src_host;
        slot.next = NO_SLOT;
        slot.len = payload.len() as u16;
        if payload.len() <= INLINE_BYTES {
            slot.inline[..payload.len()].copy_from_slice(payload);
        } else {
            let spill = match self.free_spill.pop() {
                Some(i) => i,
                None => {
                    self.spill.push(Vec::new());
                    (self.spill.len() - 1) as u32
                }
            };
            slot.inline[..4].copy_from_slice(&spill.to_le_bytes());
            let buf = &mut self.spill[spill as usize];
            buf.clear();
            buf.extend_from_slice(payload);
        }
        idx
    }

    /// The spill buffer of `slot`, if its payload is long.
    fn spill_of(&self, slot: u32) -> Option<u32> {
        let s = &self.slots[slot as usize];
        (usize::from(s.len) > INLINE_BYTES)
            .then(|| u32::from_le_bytes(s.inline[..4].try_into().expect("4 bytes")))
    }

    /// Return `slot` (and its spill buffer) for reuse.
    fn free_slot(&mut self, slot: u32) {
        if let Some(spill) = self.spill_of(slot) {
            self.free_spill.push(spill);
        }
        self.free_slots.push(slot);
    }

    fn pop_inbox(&mut self, host: HostId) -> Option<u32> {
        let inbox = &mut self.hosts[host as usize].inbox;
        if inbox.len == 0 {
            return None;
        }
        let slot = inbox.head;
        inbox.len -= 1;
        if inbox.len == 0 {
            *inbox = Inbox::EMPTY;
        } else {
            inbox.head = self.slots[slot as usize].next;
        }
        Some(slot)
    }

    /// Take the oldest datagram from `host`'s inbox into `buf` (truncated to
    /// `buf.len()`, as UDP does).
    pub fn take(&mut self, host: HostId, buf: &mut [u8]) -> Option<Delivery> {
        self.take_with(host, |stored| {
            let len = stored.len().min(buf.len());
            buf[..len].copy_from_slice(&stored[..len]);
            len
        })
    }

    /// [`Network::take`] into a vector that becomes the datagram: a
    /// receiver then needs no buffer of the largest size (100,000 of them
    /// in a large run).
    pub fn take_vec(&mut self, host: HostId, buf: &mut Vec<u8>) -> Option<Delivery> {
        self.take_with(host, |stored| {
            buf.clear();
            buf.extend_from_slice(stored);
            stored.len()
        })
    }

    /// Pop the oldest datagram of `host`'s inbox and hand its bytes to
    /// `copy`, which returns the length received.
    fn take_with(&mut self, host: HostId, copy: impl FnOnce(&[u8]) -> usize) -> Option<Delivery> {
        let slot = self.pop_inbox(host)?;
        let s = &self.slots[slot as usize];
        let stored = if usize::from(s.len) <= INLINE_BYTES {
            &s.inline[..usize::from(s.len)]
        } else {
            &self.spill[self.spill_of(slot).expect("a long payload") as usize][..]
        };
        let len = copy(stored);
        let from = s.from;
        self.free_slot(slot);
        Some(Delivery { len, from })
    }

    /// Whether `host` has a datagram waiting.
    pub fn has_datagram(&self, host: HostId) -> bool {
        self.hosts[host as usize].inbox.len > 0
    }

    /// The local address of `host`'s socket.
    pub fn local_addr(&self, host: HostId) -> Option<SocketAddr> {
        let h = &self.hosts[host as usize];
        h.port
            .map(|p| SocketAddr::new(self.cold[host as usize].ip, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Jitter;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn ip(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
    }

    fn link(ms: u64, loss: f64) -> Link {
        Link {
            latency: Duration::from_millis(ms),
            jitter: Jitter::None,
            loss,
        }
    }

    fn net2(loss: f64) -> (Network, HostId, HostId) {
        net2_seeded(loss, 1)
    }

    fn net2_seeded(loss: f64, seed: u64) -> (Network, HostId, HostId) {
        let mut n = Network::new(1_000_000, ChaCha8Rng::seed_from_u64(seed));
        let a = n.add_host(ip(1), link(10, loss));
        let b = n.add_host(ip(2), link(15, loss));
        n.bind(a, 7000).unwrap();
        n.bind(b, 7000).unwrap();
        (n, a, b)
    }

    #[test]
    fn delivers_after_both_access_latencies() {
        let (mut n, a, b) = net2(0.0);
        let dst = n.local_addr(b).unwrap();
        assert_eq!(n.send(0, a, dst, b"hi"), Ok(Fate::InFlight));
        assert_eq!(n.next_instant(), Some(25_000_000));
        n.advance(24_999_999);
        assert!(!n.has_datagram(b));
        n.advance(25_000_000);
        let mut buf = [0u8; 16];
        let d = n.take(b, &mut buf).unwrap();
        assert_eq!(&buf[..d.len], b"hi");
        assert_eq!(d.from, n.local_addr(a).unwrap());
        assert_eq!(n.counters().delivered, 1);
    }

    #[test]
    fn a_readdressed_host_is_reached_only_at_its_new_address() {
        let (mut n, a, b) = net2(0.0);
        let old = n.local_addr(b).unwrap();
        n.crash(b);
        n.readdress_host(b, Ipv4Addr::new(10, 0, 0, 9));
        n.restart(b);
        n.bind(b, 7000).unwrap();
        let new = n.local_addr(b).unwrap();
        assert_eq!(new.ip(), ip(9));
        assert_eq!(n.host_by_ip(old.ip()), None);
        assert_eq!(n.host_by_ip(ip(9)), Some(b));
        n.send(0, a, old, b"lost").unwrap();
        n.send(0, a, new, b"found").unwrap();
        n.advance(u64::MAX);
        let mut buf = [0u8; 16];
        let d = n.take(b, &mut buf).unwrap();
        assert_eq!(&buf[..d.len], b"found");
        assert!(n.take(b, &mut buf).is_none());
        assert_eq!(n.counters().no_route, 1);
    }

    #[test]
    fn grid_rounds_up_never_early() {
        let mut n = Network::new(1_000_000, ChaCha8Rng::seed_from_u64(1));
        let a = n.add_host(ip(1), link(0, 0.0));
        let b = n.add_host(ip(2), link(0, 0.0));
        n.bind(a, 1).unwrap();
        n.bind(b, 1).unwrap();
        n.send(1_500, a, n.local_addr(b).unwrap(), b"x").unwrap();
        assert_eq!(n.next_instant(), Some(1_000_000));
        assert_eq!(n.set_deadline(a, 2_000_001), 3_000_000);
    }

    #[test]
    fn loss_rate_matches_link_model() {
        let (mut n, a, b) = net2(0.05);
        let dst = n.local_addr(b).unwrap();
        for t in 0..20_000 {
            n.send(t, a, dst, b"x").unwrap();
        }
        n.advance(u64::MAX);
        let c = n.counters();
        // Two crossings at 5%: 1 - 0.95^2 = 9.75% lost.
        let lost = c.lost as f64 / c.sent as f64;
        assert!((lost - 0.0975).abs() < 0.01, "lost {lost}");
        assert_eq!(
            c.delivered.min(INBOX_CAPACITY as u64) + c.overflow + c.lost,
            c.sent
        );
    }

    #[test]
    fn partitions_and_crashes_drop_and_count() {
        let (mut n, a, b) = net2(0.0);
        let dst = n.local_addr(b).unwrap();
        n.set_side(b, 1);
        assert_eq!(n.send(0, a, dst, b"x"), Ok(Fate::Partitioned));
        n.heal();
        assert_eq!(n.send(0, a, dst, b"x"), Ok(Fate::InFlight));
        n.crash(b);
        n.advance(u64::MAX);
        assert_eq!(n.counters().dead_host, 1);
        assert_eq!(n.counters().partitioned, 1);
        // The crash released the port: a restarted host binds it again.
        n.restart(b);
        assert_eq!(n.bind(b, 7000).unwrap(), 7000);
        assert_eq!(
            n.send(0, b, n.local_addr(a).unwrap(), b"x"),
            Ok(Fate::InFlight)
        );
        let unknown = SocketAddr::new(ip(9), 1);
        assert_eq!(n.send(0, a, unknown, b"x"), Ok(Fate::NoRoute));
        let big = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        assert_eq!(
            n.send(0, a, dst, &big),
            Err(SendError::TooLarge {
                len: MAX_DATAGRAM_BYTES + 1
            })
        );
    }

    #[test]
    fn in_flight_datagram_meets_partition_on_arrival() {
        let (mut n, a, b) = net2(0.0);
        n.send(0, a, n.local_addr(b).unwrap(), b"x").unwrap();
        n.set_side(a, 1);
        n.advance(u64::MAX);
        assert_eq!(n.counters().partitioned, 1);
        assert_eq!(n.counters().delivered, 0);
    }

    #[test]
    fn earlier_deadline_supersedes_later_one() {
        let (mut n, a, _) = net2(0.0);
        n.set_deadline(a, 50_000_000);
        n.set_deadline(a, 20_000_000);
        n.advance(20_000_000);
        assert_eq!(n.hosts[a as usize].queued, NEVER);
        // The stale 50 ms entry is skipped when it pops.
        n.advance(60_000_000);
        assert_eq!(n.in_flight(), 0);
        // A later deadline re-queues itself when the earlier entry fires.
        n.set_deadline(a, 70_000_000);
        n.set_deadline(a, 90_000_000);
        n.advance(70_000_000);
        assert_eq!(n.hosts[a as usize].queued, 90_000_000);
    }

    #[test]
    fn a_spoofed_datagram_arrives_claiming_its_forged_source() {
        let (mut n, a, b) = net2(0.0);
        let forged = SocketAddr::new(ip(77), 4242);
        let dst = n.local_addr(b).unwrap();
        assert_eq!(n.send_spoofed(0, a, forged, dst, b"hi"), Ok(Fate::InFlight));
        n.advance(u64::MAX);
        let mut buf = [0u8; 16];
        let d = n.take(b, &mut buf).unwrap();
        assert_eq!((&buf[..d.len], d.from), (&b"hi"[..], forged));
        // An answer to the forged source goes nowhere near the sender.
        assert_eq!(n.send(0, b, forged, b"re"), Ok(Fate::NoRoute));
        assert_eq!(n.counters().sent, 2);
    }

    #[test]
    fn a_host_behind_a_nat_cannot_spoof() {
        let mut n = Network::new(1_000_000, ChaCha8Rng::seed_from_u64(1));
        let nat = n.add_nat(
            Ipv4Addr::new(20, 0, 0, 1),
            crate::NatConfig::full_cone(),
            None,
        );
        let a = n.add_host_behind(ip(1), link(5, 0.0), nat);
        let b = n.add_host(ip(2), link(5, 0.0));
        n.bind(a, 7000).unwrap();
        n.bind(b, 7000).unwrap();
        let dst = n.local_addr(b).unwrap();
        let forged = SocketAddr::new(ip(77), 1);
        assert_eq!(
            n.send_spoofed(0, a, forged, dst, b"x"),
            Err(SendError::SpoofBehindNat)
        );
        assert_eq!(n.counters().sent, 0);
    }

    #[test]
    fn same_seed_same_fates() {
        let run = |seed| {
            let (mut n, a, b) = net2_seeded(0.2, seed);
            let dst = n.local_addr(b).unwrap();
            (0..200)
                .map(|t| n.send(t, a, dst, b"x").unwrap())
                .collect::<Vec<_>>()
        };
        let fates = run(1);
        assert_eq!(fates, run(1));
        // 200 sends at 20% loss: another seed loses other datagrams.
        assert_ne!(fates, run(2), "seeds 1 and 2 lost the same datagrams");
    }
}
