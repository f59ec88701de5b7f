//! Network benchmark: CPU per delivered datagram of the simulated network
//! against a hand-written discrete-event loop running the same traffic.
//!
//! The traffic (DESIGN.md, "Performance shape of the simulated network"):
//! `nodes` hosts, each sending `rate_per_s` datagrams of `payload_bytes` per
//! virtual second to uniformly random other hosts, for `seconds` virtual
//! seconds. Every host's access link has a fixed one-way latency drawn
//! uniformly from 10-50 ms; no loss, no jitter; delivery and send instants
//! are rounded up to a 1 ms grid. Node `i` sends at `phase_i + k * period`
//! (a random phase in `[0, period)`) while that instant is before the end;
//! a datagram counts when it reaches its receiver at or before the end.
//!
//! - [`des`] is the floor: one `BinaryHeap` of (instant, sequence, event),
//!   events "node i sends" and "a datagram arrives at node j". It carries no
//!   payload bytes; an arrival touches only the receiver's count.
//! - [`sim`] (built with `--cfg madsim`) runs the real thing: a
//!   [`grove_netsim::Network`] with its pump on madsim, one task per host
//!   looping on [`grove_netsim::sim::Socket::recv`] with its next send as
//!   the deadline.
//!
//! Both draw latencies, phases and destinations from the same seeded ChaCha
//! streams, so they carry the same datagrams. Wall time is measured with
//! `std::time::Instant` outside madsim's `block_on` (inside, madsim
//! intercepts `clock_gettime` and the clock is virtual).

pub mod sessions;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Delivery and send instants are rounded up to this grid (the netsim
/// default).
pub const GRID_NS: u64 = 1_000_000;
/// Range of a host's one-way access-link latency.
pub const LATENCY_NS_MIN: u64 = 10_000_000;
pub const LATENCY_NS_MAX: u64 = 50_000_000;
/// Largest payload: what the simulated network carries.
pub const PAYLOAD_BYTES_MAX: usize = grove_netsim::MAX_DATAGRAM_BYTES;
/// Hosts get addresses `10.x.y.z` from index + 1, so at most 2^24 - 2.
pub const NODES_MAX: usize = (1 << 24) - 2;
/// The port every host binds.
#[cfg(madsim)]
const PORT: u16 = 7000;

/// The traffic both benchmarks run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrafficConfig {
    /// Hosts, each sending and receiving.
    pub nodes: usize,
    /// Datagrams each host sends per virtual second.
    pub rate_per_s: f64,
    /// Virtual seconds of traffic.
    pub seconds: f64,
    /// Bytes of payload per datagram.
    pub payload_bytes: usize,
    /// Seed of every latency, phase and destination.
    pub seed: u64,
}

impl Default for TrafficConfig {
    /// The shape DESIGN.md quotes: 10,000 nodes x 5/s x 60 s = 3M datagrams.
    fn default() -> Self {
        TrafficConfig {
            nodes: 10_000,
            rate_per_s: 5.0,
            seconds: 60.0,
            payload_bytes: 64,
            seed: 1,
        }
    }
}

/// Why a [`TrafficConfig`] cannot be run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("need between 2 and {NODES_MAX} nodes, got {0}")]
    Nodes(usize),
    #[error("the send rate must be positive and at most 1e9/s, got {0}")]
    Rate(f64),
    #[error("the duration must be positive and at most 1e9 s, got {0}")]
    Seconds(f64),
    #[error("payload of {0} bytes exceeds the {PAYLOAD_BYTES_MAX}-byte maximum")]
    Payload(usize),
}

impl TrafficConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=NODES_MAX).contains(&self.nodes) {
            return Err(ConfigError::Nodes(self.nodes));
        }
        if !(self.rate_per_s > 0.0 && self.rate_per_s <= 1e9) {
            return Err(ConfigError::Rate(self.rate_per_s));
        }
        if !(self.seconds > 0.0 && self.seconds <= 1e9) {
            return Err(ConfigError::Seconds(self.seconds));
        }
        if self.payload_bytes > PAYLOAD_BYTES_MAX {
            return Err(ConfigError::Payload(self.payload_bytes));
        }
        Ok(())
    }
}

/// One benchmark run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Datagrams delivered to their receiver by the end.
    pub datagrams: u64,
    /// Wall-clock seconds of the whole run, setup included.
    pub wall_s: f64,
    /// `wall_s` per delivered datagram, in nanoseconds.
    pub ns_per_datagram: f64,
}

impl Measurement {
    fn new(datagrams: u64, wall_s: f64) -> Self {
        Measurement {
            datagrams,
            wall_s,
            ns_per_datagram: wall_s * 1e9 / datagrams.max(1) as f64,
        }
    }
}

/// What both benchmarks derive from the config and seed, identically.
struct Plan {
    nodes: usize,
    period_ns: u64,
    end_ns: u64,
    /// One-way access-link latency of each host.
    latency_ns: Vec<u64>,
}

impl Plan {
    fn new(cfg: &TrafficConfig) -> Plan {
        if let Err(e) = cfg.validate() {
            panic!("invalid traffic config: {e}");
        }
        let mut world = ChaCha8Rng::seed_from_u64(cfg.seed);
        let latency_ns = (0..cfg.nodes)
            .map(|_| world.gen_range(LATENCY_NS_MIN..=LATENCY_NS_MAX))
            .collect();
        Plan {
            nodes: cfg.nodes,
            period_ns: ((1e9 / cfg.rate_per_s).round() as u64).max(1),
            end_ns: (cfg.seconds * 1e9).round() as u64,
            latency_ns,
        }
    }

    /// Node `i`'s own stream: first its phase, then its destinations.
    fn node_rng(seed: u64, i: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i as u64 + 1);
        rng
    }

    fn phase_ns(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.gen_range(0..self.period_ns)
    }

    /// A uniformly random node other than `me`.
    fn peer(&self, rng: &mut ChaCha8Rng, me: usize) -> usize {
        let j = rng.gen_range(0..self.nodes - 1);
        if j >= me {
            j + 1
        } else {
            j
        }
    }
}

fn on_grid(t: u64) -> u64 {
    t.div_ceil(GRID_NS) * GRID_NS
}

/// A DES event; the heap orders by (instant, sequence) before it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Send(u32),
    Arrive(u32),
}

/// A DES host: the same ChaCha stream a simulated host holds, and what it
/// has received (so that every arrival touches its receiver, as a wake does).
struct DesNode {
    rng: ChaCha8Rng,
    next_send_ns: u64,
    received: u64,
}

/// Run the traffic on a minimal binary-heap discrete-event loop.
///
/// Panics if `cfg` does not [validate](TrafficConfig::validate).
pub fn des(cfg: &TrafficConfig) -> Measurement {
    let start = Instant::now();
    let plan = Plan::new(cfg);
    let mut heap: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, at: u64, ev: Event| {
        seq += 1;
        heap.push(Reverse((at, seq, ev)));
    };
    let mut nodes: Vec<DesNode> = (0..plan.nodes)
        .map(|i| {
            let mut rng = Plan::node_rng(cfg.seed, i);
            let next_send_ns = plan.phase_ns(&mut rng);
            DesNode {
                rng,
                next_send_ns,
                received: 0,
            }
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        if n.next_send_ns < plan.end_ns {
            push(&mut heap, on_grid(n.next_send_ns), Event::Send(i as u32));
        }
    }
    let mut delivered = 0u64;
    while let Some(Reverse((at, _, ev))) = heap.pop() {
        if at > plan.end_ns {
            break;
        }
        match ev {
            Event::Send(i) => {
                let i = i as usize;
                let n = &mut nodes[i];
                let j = plan.peer(&mut n.rng, i);
                n.next_send_ns += plan.period_ns;
                let next = n.next_send_ns;
                let arrival = on_grid(at + plan.latency_ns[i] + plan.latency_ns[j]);
                push(&mut heap, arrival, Event::Arrive(j as u32));
                if next < plan.end_ns {
                    push(&mut heap, on_grid(next), Event::Send(i as u32));
                }
            }
            Event::Arrive(j) => {
                nodes[j as usize].received += 1;
                delivered += 1;
            }
        }
    }
    debug_assert_eq!(nodes.iter().map(|n| n.received).sum::<u64>(), delivered);
    Measurement::new(delivered, start.elapsed().as_secs_f64())
}

/// A [`sim`] run in more detail.
#[cfg(madsim)]
#[derive(Clone, Debug, serde::Serialize)]
pub struct SimRun {
    pub measurement: Measurement,
    /// Wall seconds to build the network and runtime, spawn the tasks and
    /// poll each once (part of `measurement.wall_s`).
    pub setup_s: f64,
    /// Deliveries by the network's own count (equals the tasks' count).
    pub network_delivered: u64,
    /// Datagrams the network accepted for sending.
    pub network_sent: u64,
}

/// Run the traffic on the simulated network on madsim.
///
/// Panics if `cfg` does not [validate](TrafficConfig::validate).
#[cfg(madsim)]
pub fn sim(cfg: &TrafficConfig) -> Measurement {
    sim_run(cfg).measurement
}

/// [`sim`], with setup time and the network's counters.
#[cfg(madsim)]
pub fn sim_run(cfg: &TrafficConfig) -> SimRun {
    use std::rc::Rc;

    use grove_netsim::sim::NetHandle;
    use grove_netsim::{Jitter, Link, Network};

    let start = Instant::now();
    let plan = Plan::new(cfg);
    let mut net = Network::new(GRID_NS, ChaCha8Rng::seed_from_u64(cfg.seed));
    for (i, &latency_ns) in plan.latency_ns.iter().enumerate() {
        let link = Link {
            latency: std::time::Duration::from_nanos(latency_ns),
            jitter: Jitter::None,
            loss: 0.0,
        };
        net.add_host(host_addr(i).ip(), link);
    }
    let shared = Rc::new(SimShared {
        plan,
        seed: cfg.seed,
        payload_bytes: cfg.payload_bytes,
        delivered: Default::default(),
        finished: Default::default(),
    });
    let rt = madsim::runtime::Runtime::with_seed_and_config(cfg.seed, madsim::Config::default());
    // The pump loops forever: it runs on its own madsim node, killed at the
    // end so that its task (and the network it holds) is freed.
    let pump_node = rt.create_node().name("netsim-pump").build();

    // Phase 1: install, spawn, and poll every task once (block_on drains
    // the ready queue before returning).
    let handle = rt.block_on({
        let shared = shared.clone();
        let pump_node = pump_node.clone();
        async move {
            let handle = NetHandle::install(net);
            pump_node.spawn(async {
                let h = NetHandle::current().expect("network installed");
                madsim::task::spawn_local(h.pump());
            });
            for i in 0..shared.plan.nodes {
                madsim::task::spawn_local(node_task(shared.clone(), i));
            }
            handle
        }
    });
    let setup_s = start.elapsed().as_secs_f64();

    // Phase 2: run until one grid step past the end; every node task has
    // finished by then.
    let counters = rt.block_on({
        let handle = handle.clone();
        let pump_node = pump_node.id();
        let until_ns = shared.plan.end_ns + GRID_NS;
        async move {
            let now_ns = handle.now_ns();
            let left = std::time::Duration::from_nanos(until_ns.saturating_sub(now_ns));
            madsim::time::sleep(left).await;
            madsim::runtime::Handle::current().kill(pump_node);
            handle.with(|n| n.counters())
        }
    });
    let wall_s = start.elapsed().as_secs_f64();
    NetHandle::uninstall();
    drop(handle);
    let finished = shared.finished.get();
    assert_eq!(
        finished, shared.plan.nodes,
        "every node task ends at the end instant"
    );
    SimRun {
        measurement: Measurement::new(shared.delivered.get(), wall_s),
        setup_s,
        network_delivered: counters.delivered,
        network_sent: counters.sent,
    }
}

/// What every node task of a [`sim`] run shares.
#[cfg(madsim)]
struct SimShared {
    plan: Plan,
    seed: u64,
    payload_bytes: usize,
    /// Datagrams received, added by each task when it ends.
    delivered: std::cell::Cell<u64>,
    /// Tasks that have ended.
    finished: std::cell::Cell<usize>,
}

#[cfg(madsim)]
fn host_addr(i: usize) -> std::net::SocketAddr {
    let [_, a, b, c] = (i as u32 + 1).to_be_bytes();
    std::net::SocketAddr::new(std::net::Ipv4Addr::new(10, a, b, c).into(), PORT)
}

/// One host: receive and count, send on every deadline, stop at the end.
/// Everything it keeps is built inside, so the future holds each piece once
/// (arguments are kept beside the locals they move into).
#[cfg(madsim)]
async fn node_task(shared: std::rc::Rc<SimShared>, me: usize) {
    use grove_netsim::sim::{Recv, Socket};

    let plan = &shared.plan;
    let mut rng = Plan::node_rng(shared.seed, me);
    let socket = Socket::bind(host_addr(me)).expect("each host binds once");
    let mut buf = Vec::new();
    let mut payload = vec![0u8; shared.payload_bytes];
    let tag = (me as u32).to_le_bytes();
    let tag_len = payload.len().min(tag.len());
    payload[..tag_len].copy_from_slice(&tag[..tag_len]);
    let mut next_send_ns = plan.phase_ns(&mut rng);
    let mut received = 0u64;
    loop {
        let deadline = next_send_ns.min(plan.end_ns);
        match socket.recv(&mut buf, Some(deadline)).await {
            Ok(Recv::Datagram(_)) => received += 1,
            Ok(Recv::Timeout) if next_send_ns >= plan.end_ns => break,
            Ok(Recv::Timeout) => {
                let to = host_addr(plan.peer(&mut rng, me));
                socket.send_to(&payload, to).expect("the host is up");
                next_send_ns += plan.period_ns;
            }
            Err(e) => panic!("host {me}: {e}"),
        }
    }
    shared.delivered.set(shared.delivered.get() + received);
    shared.finished.set(shared.finished.get() + 1);
}

/// Peak resident set size of this process in MiB (`VmHWM` in
/// `/proc/self/status`); `None` where that file does not exist.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Bytes the allocator has handed out and not had back (glibc's
/// `mallinfo2`: small chunks in use plus mmapped ones): the live heap,
/// without the allocator's free and fragmented pages. `None` without glibc.
pub fn heap_in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Reset the peak RSS to the current RSS (Linux: `5` into
/// `/proc/self/clear_refs`), so that [`peak_rss_mb`] measures what follows.
/// Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TrafficConfig {
        TrafficConfig {
            nodes: 200,
            rate_per_s: 5.0,
            seconds: 10.0,
            payload_bytes: 64,
            seed: 7,
        }
    }

    #[test]
    fn des_delivers_everything_sent_but_the_last_latency() {
        let cfg = small();
        let m = des(&cfg);
        // Mean path: two access links of 30 ms, plus half a grid step.
        let in_flight = cfg.nodes as f64 * cfg.rate_per_s * 0.0605;
        let expected = cfg.nodes as f64 * cfg.rate_per_s * cfg.seconds - in_flight;
        let err = (m.datagrams as f64 - expected).abs() / expected;
        assert!(
            err < 0.01,
            "delivered {} expected ~{expected:.0}",
            m.datagrams
        );
        assert!(m.ns_per_datagram > 0.0);
    }

    #[test]
    fn des_is_a_function_of_the_seed() {
        let a = des(&small());
        assert_eq!(a.datagrams, des(&small()).datagrams);
        let other = des(&TrafficConfig { seed: 8, ..small() });
        assert_ne!(a.datagrams, other.datagrams);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |f: fn(&mut TrafficConfig)| {
            let mut c = small();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(small().validate().is_ok());
        assert!(bad(|c| c.nodes = 1));
        assert!(bad(|c| c.rate_per_s = 0.0));
        assert!(bad(|c| c.seconds = f64::NAN));
        assert!(bad(|c| c.payload_bytes = PAYLOAD_BYTES_MAX + 1));
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb().is_some_and(|mb| mb > 0.0));
        }
    }

    #[cfg(madsim)]
    #[test]
    fn sim_delivers_what_des_delivers() {
        let cfg = TrafficConfig {
            nodes: 100,
            ..small()
        };
        let d = des(&cfg);
        let s = sim_run(&cfg);
        assert_eq!(s.measurement.datagrams, s.network_delivered);
        let err = (s.measurement.datagrams as f64 - d.datagrams as f64).abs() / d.datagrams as f64;
        assert!(
            err < 0.005,
            "sim {} des {}",
            s.measurement.datagrams,
            d.datagrams
        );
        // Same sends: each node sends on the same schedule in both.
        let sent = cfg.nodes as f64 * cfg.rate_per_s * cfg.seconds;
        assert!((s.network_sent as f64 - sent).abs() <= cfg.nodes as f64);
    }

    #[cfg(madsim)]
    #[test]
    fn sim_is_a_function_of_the_seed() {
        let cfg = TrafficConfig {
            nodes: 50,
            seconds: 3.0,
            ..small()
        };
        assert_eq!(
            sim_run(&cfg).network_delivered,
            sim_run(&cfg).network_delivered
        );
    }

    /// The comparison DESIGN.md quotes, best of three interleaved runs
    /// (the least disturbed by other load). Peak RSS is exact for the first
    /// DES and sim runs only: the heap keeps what earlier runs freed. Run with
    /// `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target-sim cargo test
    /// --release -p grove-sim --lib bench::tests::compare -- --ignored --nocapture`.
    #[cfg(madsim)]
    #[test]
    #[ignore = "takes tens of seconds; a timing, not a check"]
    fn compare_default_traffic() {
        let cfg = TrafficConfig::default();
        println!("config: {cfg:?}");
        let (mut best_des, mut best_sim) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            reset_peak_rss();
            let d = des(&cfg);
            println!("des: {d:?} peak RSS {:?} MiB", peak_rss_mb());
            reset_peak_rss();
            let s = sim_run(&cfg);
            println!("sim: {s:?} peak RSS {:?} MiB", peak_rss_mb());
            assert_eq!(d.datagrams, s.measurement.datagrams);
            best_des = best_des.min(d.ns_per_datagram);
            best_sim = best_sim.min(s.measurement.ns_per_datagram);
        }
        println!(
            "best ns/datagram: des {best_des:.0}, sim {best_sim:.0}, ratio {:.2}",
            best_sim / best_des
        );
    }
}
