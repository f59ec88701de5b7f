//! The network proper: hosts, the in-flight heap, delivery and fates.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::task::Waker;

use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::link::{Jitter, Link};

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

/// What happened to a datagram, decided when it is sent (or, for
/// [`Fate::DeadHost`] and [`Fate::InboxFull`], when it arrives).
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
    /// The receiver's inbox was full, or the network's in-flight limit hit.
    Overflow,
}

/// Counts of datagrams by fate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub partitioned: u64,
    pub dead_host: u64,
    pub no_route: u64,
    pub overflow: u64,
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
        }
    }
}

/// Why a send was refused outright (nothing was put on the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    TooLarge { len: usize },
    HostDown,
}

/// A datagram taken from an inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub len: usize,
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

    fn recycle(&mut self, mut b: Vec<(HostId, u32)>) {
        b.clear();
        self.spare.push(b);
    }
}

const TIMER: u32 = u32::MAX;

/// Payloads up to this size are stored inside their slot.
const INLINE_BYTES: usize = 80;

/// A datagram in flight or in an inbox: two cache lines holding its header
/// and (up to INLINE_BYTES) its payload; longer payloads go to `spill`.
#[repr(C, align(64))]
struct Slot {
    from: SocketAddr,
    src_host: HostId,
    /// Next slot in the receiver's inbox (NO_SLOT: last).
    next: u32,
    len: u16,
    inline: [u8; INLINE_BYTES],
}

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
    /// The link's base latency, and whether that is all of it (no jitter,
    /// no loss): then sending needs nothing from [`HostCold`].
    latency_ns: u64,
    inbox: Inbox,
    /// Bumped on every crash so a dead incarnation's socket is recognised.
    incarnation: u32,
    port: Option<u16>,
    /// Partition side; datagrams only flow between hosts on the same side.
    side: u16,
    up: bool,
    plain_link: bool,
}

const _: () = assert!(std::mem::size_of::<Host>() == 64);

struct HostCold {
    ip: IpAddr,
    link: Link,
}

/// The virtual network. Times are nanoseconds since the start of the run.
pub struct Network {
    grid_ns: u64,
    queue: Queue,
    slots: Vec<Slot>,
    /// Payloads longer than INLINE_BYTES, by slot (buffers kept for reuse).
    spill: Vec<Vec<u8>>,
    free_slots: Vec<u32>,
    hosts: Vec<Host>,
    cold: Vec<HostCold>,
    /// Hosts by address; IPv4 keyed by its 4 bytes so the table stays small.
    by_v4: FxHashMap<u32, HostId>,
    by_v6: FxHashMap<std::net::Ipv6Addr, HostId>,
    /// Hosts on a side other than 0; while none, arrivals skip the check.
    off_side: u32,
    rng: ChaCha8Rng,
    counters: Counters,
    next_ephemeral_port: u16,
    /// Woken when a new entry becomes the earliest (the pump re-arms).
    pump_waker: Option<Waker>,
    pump_armed_at: Option<u64>,
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
        }
    }

    // ---- topology ----

    /// Add a host with `ip` and access `link`; it starts up, with nothing
    /// bound. Panics if the address is taken (a bug in the world builder).
    pub fn add_host(&mut self, ip: IpAddr, link: Link) -> HostId {
        let id = HostId::try_from(self.hosts.len()).expect("fewer than 2^32 hosts");
        assert!(
            match ip {
                IpAddr::V4(a) => self.by_v4.insert(a.to_bits(), id),
                IpAddr::V6(a) => self.by_v6.insert(a, id),
            }
            .is_none(),
            "address {ip} given to two hosts"
        );
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
            plain_link: link.jitter == Jitter::None && link.loss <= 0.0,
        });
        self.cold.push(HostCold { ip, link });
        id
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    pub fn host_by_ip(&self, ip: IpAddr) -> Option<HostId> {
        match ip {
            IpAddr::V4(a) => self.by_v4.get(&a.to_bits()).copied(),
            IpAddr::V6(a) => self.by_v6.get(&a).copied(),
        }
    }

    pub fn ip(&self, host: HostId) -> IpAddr {
        self.cold[host as usize].ip
    }

    pub fn is_up(&self, host: HostId) -> bool {
        self.hosts[host as usize].up
    }

    pub fn incarnation(&self, host: HostId) -> u32 {
        self.hosts[host as usize].incarnation
    }

    pub fn counters(&self) -> Counters {
        self.counters
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
            self.free_slots.push(slot);
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
        let mut processed = 0;
        while let Some((at, bucket)) = self.queue.take_due(now) {
            processed += bucket.len();
            for &(host, slot) in &bucket {
                if slot == TIMER {
                    self.fire_timer(host, at);
                } else {
                    self.arrive(host, slot);
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
            self.free_slots.push(slot);
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
        if payload.len() > MAX_DATAGRAM_BYTES {
            return Err(SendError::TooLarge { len: payload.len() });
        }
        let s = &self.hosts[src as usize];
        let (Some(src_port), true) = (s.port, s.up) else {
            return Err(SendError::HostDown);
        };
        let (src_side, src_latency, src_plain) = (s.side, s.latency_ns, s.plain_link);
        let from = SocketAddr::new(self.cold[src as usize].ip, src_port);
        self.counters.sent += 1;
        let fate = match self.host_by_ip(dst.ip()) {
            None => Fate::NoRoute,
            Some(d) if self.hosts[d as usize].side != src_side => Fate::Partitioned,
            Some(d) if src_plain && self.hosts[d as usize].plain_link => {
                if self.queue.len >= IN_FLIGHT_CAPACITY {
                    Fate::Overflow
                } else {
                    let delay = src_latency + self.hosts[d as usize].latency_ns;
                    let at = self.on_grid(now + delay.max(1));
                    let slot = self.alloc_slot(from, src, payload);
                    self.push(at, d, slot);
                    Fate::InFlight
                }
            }
            Some(d) => {
                let src_link = self.cold[src as usize].link;
                let dst_link = self.cold[d as usize].link;
                if src_link.sample_loss(&mut self.rng) || dst_link.sample_loss(&mut self.rng) {
                    Fate::Lost
                } else if self.queue.len >= IN_FLIGHT_CAPACITY {
                    Fate::Overflow
                } else {
                    let delay = src_link.sample_delay_ns(&mut self.rng)
                        + dst_link.sample_delay_ns(&mut self.rng);
                    let at = self.on_grid(now + delay.max(1));
                    let slot = self.alloc_slot(from, src, payload);
                    self.push(at, d, slot);
                    Fate::InFlight
                }
            }
        };
        self.counters.count(fate);
        Ok(fate)
    }

    fn alloc_slot(&mut self, from: SocketAddr, src_host: HostId, payload: &[u8]) -> u32 {
        let idx = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    from,
                    src_host,
                    next: NO_SLOT,
                    len: 0,
                    inline: [0; INLINE_BYTES],
                });
                self.spill.push(Vec::new());
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
            let spill = &mut self.spill[idx as usize];
            spill.clear();
            spill.extend_from_slice(payload);
        }
        idx
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
        let slot = self.pop_inbox(host)?;
        let s = &self.slots[slot as usize];
        let stored = if usize::from(s.len) <= INLINE_BYTES {
            &s.inline[..usize::from(s.len)]
        } else {
            &self.spill[slot as usize][..]
        };
        let len = stored.len().min(buf.len());
        buf[..len].copy_from_slice(&stored[..len]);
        let from = s.from;
        self.free_slots.push(slot);
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
        let mut n = Network::new(1_000_000, ChaCha8Rng::seed_from_u64(1));
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
    fn same_seed_same_fates() {
        let run = || {
            let (mut n, a, b) = net2(0.2);
            let dst = n.local_addr(b).unwrap();
            (0..200)
                .map(|t| n.send(t, a, dst, b"x").unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
