//! The simulated world: builds hosts from a scenario and a seed, runs the
//! real node code on each (one driver task per host on madsim), applies the
//! timeline and the workload, and turns what it observed into a report.
//!
//! Randomness: one ChaCha stream per subsystem and per host, all derived
//! from the scenario seed ([`stream`]); madsim's scheduler is seeded with
//! the same seed.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use grove_netsim::sim::NetHandle;
use grove_netsim::{HostId, Network};
use grove_node::driver::{self, Command, EventSink};
use grove_node::node::{Event, Node};
use grove_node::{net, Identity, Time};
use madsim::task::JoinHandle;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use crate::overlay;
use crate::recorder::{payload_for, Recorder};
use crate::report::{self, *};
use crate::scenario::{Contact, Scenario, TimelineEvent};

/// The UDP port every node listens on.
pub const PORT: u16 = 7000;
const COMMAND_QUEUE: usize = 64;

const STREAM_NETWORK: u64 = 1;
const STREAM_WORLD: u64 = 2;
const STREAM_LINKS: u64 = 3;
const STREAM_IDENTITY: u64 = 1 << 32;
const STREAM_NODE: u64 = 2 << 32;

/// The ChaCha stream `id` of `seed`: independent streams per subsystem
/// and host, all from the one seed.
pub fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// The address of host `i`: 10.0.0.1 upwards.
pub fn host_ip(i: usize) -> IpAddr {
    let n = i as u32 + 1;
    IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
}

/// Facts about the run that go into the report besides the observations.
pub struct RunInfo {
    pub scenario: ScenarioInfo,
    pub reproduce: String,
}

/// Run `scenario` with `seed` and return its report. `progress` is called
/// with the virtual second reached.
pub fn run(scenario: &Scenario, seed: u64, info: RunInfo, progress: Box<dyn FnMut(u64)>) -> Report {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let scenario = scenario.clone();
    let report = rt.block_on(async move { World::new(&scenario, seed).run(info, progress).await });
    NetHandle::uninstall();
    report
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Event(usize),
    Start(usize),
    Broadcast { workload: usize, k: usize },
    Tick(u64),
}

struct HostState {
    group: usize,
    ip: IpAddr,
    identity: Identity,
    incarnation: u64,
    running: bool,
    started: bool,
    task: Option<JoinHandle<()>>,
    commands: Option<mpsc::Sender<Command>>,
}

struct World {
    scenario: Scenario,
    seed: u64,
    net: NetHandle,
    hosts: Vec<HostState>,
    rec: Rc<RefCell<Recorder>>,
    rng: ChaCha8Rng,
    faults: Faults,
}

struct SimSink {
    host: u32,
    rec: Rc<RefCell<Recorder>>,
}

impl EventSink for SimSink {
    fn on_event(&mut self, now: Time, event: Event) {
        let now = now.as_nanos() as u64;
        let mut rec = self.rec.borrow_mut();
        match event {
            Event::Delivered {
                id, hops, payload, ..
            } => rec.delivered(self.host, now, id, hops, &payload),
            Event::NeighborUp(peer) => rec.neighbor_up(self.host, peer.id),
            Event::NeighborDown(id) => rec.neighbor_down(self.host, &id),
            Event::Dropped { .. } => rec.malformed += 1,
        }
    }
}

fn secs_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

impl World {
    fn new(s: &Scenario, seed: u64) -> World {
        let mut links = stream(seed, STREAM_LINKS);
        let mut net = Network::new(
            secs_ns(s.time_grid_ms / 1000.0),
            stream(seed, STREAM_NETWORK),
        );
        let mut hosts = Vec::new();
        for (g, group) in s.groups.iter().enumerate() {
            let (lo, hi) = group.latency_ms.bounds();
            for _ in 0..group.count {
                let i = hosts.len();
                let ip = host_ip(i);
                let latency = if hi > lo {
                    links.gen_range(lo..=hi)
                } else {
                    lo
                };
                net.add_host(ip, group.link(latency));
                let mut key = [0u8; 32];
                stream(seed, STREAM_IDENTITY + i as u64).fill(&mut key);
                hosts.push(HostState {
                    group: g,
                    ip,
                    identity: Identity::from_seed(key),
                    incarnation: 0,
                    running: false,
                    started: false,
                    task: None,
                    commands: None,
                });
            }
        }
        let duration_ns = secs_ns(s.duration_s);
        let mut phase_starts: Vec<u64> = s
            .timeline
            .iter()
            .map(|e| secs_ns(e.at_s()))
            .filter(|&t| t > 0 && t < duration_ns)
            .collect();
        phase_starts.dedup();
        let rec = Rc::new(RefCell::new(Recorder::new(hosts.len(), phase_starts)));
        World {
            scenario: s.clone(),
            seed,
            net: NetHandle::install(net),
            hosts,
            rec,
            rng: stream(seed, STREAM_WORLD),
            faults: Faults::default(),
        }
    }

    fn agenda(&self) -> Vec<(u64, Action)> {
        let s = &self.scenario;
        let mut agenda = Vec::new();
        for i in 0..self.hosts.len() {
            let t = secs_ns(s.join.start_s + s.join.interval_ms / 1000.0 * i as f64);
            agenda.push((t, Action::Start(i)));
        }
        for (i, e) in s.timeline.iter().enumerate() {
            for t in e.instants_s() {
                agenda.push((secs_ns(t), Action::Event(i)));
            }
        }
        for (w, load) in s.workload.iter().enumerate() {
            for k in 0..load.count {
                let t = secs_ns(load.start_s + load.interval_ms / 1000.0 * k as f64);
                agenda.push((t, Action::Broadcast { workload: w, k }));
            }
        }
        for sec in 1..=s.duration_s.floor() as u64 {
            agenda.push((sec * 1_000_000_000, Action::Tick(sec)));
        }
        let end = secs_ns(s.duration_s);
        agenda.retain(|(t, _)| *t <= end);
        agenda.sort();
        agenda
    }

    async fn run(mut self, info: RunInfo, mut progress: Box<dyn FnMut(u64)>) -> Report {
        let rec = self.rec.clone();
        self.net
            .set_observer(Box::new(move |now, _src, bytes, _fate| {
                rec.borrow_mut().datagram_sent(now, bytes)
            }));
        madsim::task::spawn_local(self.net.clone().pump());
        for (t, action) in self.agenda() {
            if t > self.net.now_ns() {
                self.net.sleep_until_ns(t).await;
            }
            match action {
                Action::Start(i) => self.start(i, true),
                Action::Event(i) => self.apply(i),
                Action::Broadcast { workload, .. } => self.broadcast(workload),
                Action::Tick(sec) => progress(sec),
            }
        }
        let end = secs_ns(self.scenario.duration_s);
        if end > self.net.now_ns() {
            self.net.sleep_until_ns(end).await;
        }
        let report = self.report(info, end);
        for h in &mut self.hosts {
            if let Some(task) = h.task.take() {
                task.abort();
            }
        }
        report
    }

    fn running(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].running)
            .collect()
    }

    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.hosts[i].ip, PORT)
    }

    /// Start (or restart) host `i`, joining through a contact.
    fn start(&mut self, i: usize, first_start: bool) {
        let contact = match (first_start, self.scenario.join.contact) {
            (true, Contact::First) => (i != 0).then(|| self.addr(0)),
            _ => {
                let running = self.running();
                running.choose(&mut self.rng).map(|&c| self.addr(c))
            }
        };
        let now = self.net.now_ns();
        let h = &mut self.hosts[i];
        h.started = true;
        h.running = true;
        let rng = stream(self.seed, STREAM_NODE + ((i as u64) << 12) + h.incarnation);
        h.incarnation += 1;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        h.commands = Some(tx);
        self.rec
            .borrow_mut()
            .host_started(i as u32, h.identity.peer_id(), now);
        let identity = h.identity.clone();
        let addr = SocketAddr::new(h.ip, PORT);
        let config = self.scenario.node.clone();
        let mut sink = SimSink {
            host: i as u32,
            rec: self.rec.clone(),
        };
        h.task = Some(madsim::task::spawn_local(async move {
            let socket = match net::Socket::bind(addr).await {
                Ok(s) => s,
                Err(e) => panic!("host {addr} could not bind: {e}"),
            };
            let mut node = Node::new(&identity, addr, config, rng);
            if let Some(c) = contact {
                node.join(socket.now(), c);
            }
            // Ends with an error when the host crashes; nothing to report.
            let _ = driver::run(node, socket, rx, &mut sink).await;
        }));
    }

    fn crash(&mut self, i: usize) {
        let now = self.net.now_ns();
        let h = &mut self.hosts[i];
        h.running = false;
        h.commands = None;
        if let Some(task) = h.task.take() {
            task.abort();
        }
        self.net.with(|n| n.crash(i as HostId));
        self.rec.borrow_mut().host_crashed(i as u32, now);
        self.faults.hosts_crashed += 1;
    }

    /// `fraction` of `candidates`, chosen at random, in host order.
    fn pick(&mut self, mut candidates: Vec<usize>, fraction: f64) -> Vec<usize> {
        let n = (fraction * candidates.len() as f64).round() as usize;
        let (chosen, _) = candidates.partial_shuffle(&mut self.rng, n);
        let mut chosen = chosen.to_vec();
        chosen.sort_unstable();
        chosen
    }

    fn in_group(&self, i: usize, group: &Option<String>) -> bool {
        group
            .as_ref()
            .is_none_or(|g| self.scenario.groups[self.hosts[i].group].name == *g)
    }

    fn apply(&mut self, event: usize) {
        match self.scenario.timeline[event].clone() {
            TimelineEvent::Crash {
                fraction, group, ..
            } => {
                let candidates = self
                    .running()
                    .into_iter()
                    .filter(|&i| self.in_group(i, &group))
                    .collect();
                for i in self.pick(candidates, fraction) {
                    self.crash(i);
                }
            }
            TimelineEvent::Restart {
                fraction, group, ..
            } => {
                let candidates = (0..self.hosts.len())
                    .filter(|&i| {
                        self.hosts[i].started && !self.hosts[i].running && self.in_group(i, &group)
                    })
                    .collect();
                for i in self.pick(candidates, fraction) {
                    self.net.with(|n| n.restart(i as HostId));
                    self.start(i, false);
                    self.faults.hosts_restarted += 1;
                }
            }
            TimelineEvent::Partition {
                sides, fraction, ..
            } => {
                let mut side_of = vec![0u16; self.hosts.len()];
                if let Some(f) = fraction {
                    for i in self.pick((0..self.hosts.len()).collect(), f) {
                        side_of[i] = 1;
                    }
                } else {
                    for (i, h) in self.hosts.iter().enumerate() {
                        let name = &self.scenario.groups[h.group].name;
                        side_of[i] = sides
                            .iter()
                            .position(|s| s.contains(name))
                            .unwrap_or(sides.len()) as u16;
                    }
                }
                self.net.with(|n| {
                    for (i, side) in side_of.iter().enumerate() {
                        n.set_side(i as HostId, *side);
                    }
                });
                self.faults.partitions += 1;
            }
            TimelineEvent::Heal { .. } => {
                self.net.with(Network::heal);
                self.faults.heals += 1;
            }
        }
    }

    fn broadcast(&mut self, workload: usize) {
        let load = &self.scenario.workload[workload];
        let from = load.from.clone();
        let bytes = load.payload_bytes;
        let running = self.running();
        let origin = match from.as_str() {
            "first" if self.hosts[0].running => Some(0),
            "random" | "first" => running.choose(&mut self.rng).copied(),
            group => {
                let in_group: Vec<usize> = running
                    .into_iter()
                    .filter(|&i| self.scenario.groups[self.hosts[i].group].name == group)
                    .collect();
                in_group.choose(&mut self.rng).copied()
            }
        };
        let Some(origin) = origin else { return };
        let now = self.net.now_ns();
        let index = self.rec.borrow_mut().broadcast_sent(origin as u32, now);
        let payload = Bytes::from(payload_for(index, bytes));
        if let Some(tx) = &self.hosts[origin].commands {
            // A full queue would mean the origin is stuck; the broadcast
            // then counts as undelivered, which is the truth.
            let _ = tx.try_send(Command::Broadcast(payload));
        }
    }

    fn report(&self, info: RunInfo, end: u64) -> Report {
        let s = &self.scenario;
        let rec = self.rec.borrow();
        let window = secs_ns(s.measure.window_s);
        let entries = report::broadcast_entries(&rec, window, end);
        let mut bounds = vec![0u64];
        bounds.extend(&rec.phase_starts);
        bounds.push(end);
        let mut phases = Vec::new();
        for p in 0..bounds.len() - 1 {
            let (start, stop) = (bounds[p], bounds[p + 1]);
            let in_phase: Vec<&BroadcastEntry> = entries
                .iter()
                .filter(|e| rec.phase_of(secs_ns(e.at_s)) == p)
                .collect();
            let name = if p == 0 {
                "start".to_owned()
            } else {
                s.timeline
                    .iter()
                    .filter(|e| secs_ns(e.at_s()) == start)
                    .map(TimelineEvent::label)
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            phases.push(Phase {
                name,
                start_s: round6(start as f64 / 1e9),
                end_s: round6(stop as f64 / 1e9),
                broadcast: summarise(
                    &in_phase,
                    &rec.latency_us[p],
                    rec.payload_msgs[p],
                    rec.control_msgs[p],
                ),
            });
        }
        let mut all_latency = rec.latency_us[0].clone();
        for h in &rec.latency_us[1..] {
            all_latency.add(h).expect("same bounds");
        }
        let all: Vec<&BroadcastEntry> = entries.iter().collect();
        let broadcast = summarise(
            &all,
            &all_latency,
            rec.payload_msgs.iter().sum(),
            rec.control_msgs.iter().sum(),
        );
        let alive: Vec<bool> = self.hosts.iter().map(|h| h.running).collect();
        let overlay = overlay::analyse(
            &alive,
            &rec.active_hosts(),
            s.measure.path_sources,
            self.seed,
        );
        let c = self.net.with(|n| n.counters());
        let mut faults = self.faults.clone();
        faults.datagrams = Datagrams {
            sent: c.sent,
            delivered: c.delivered,
            lost: c.lost,
            dropped_partition: c.partitioned,
            dropped_dead_host: c.dead_host,
            dropped_no_route: c.no_route,
            dropped_overflow: c.overflow,
        };
        faults.malformed_dropped = rec.malformed;
        let mut report = Report {
            schema_version: SCHEMA_VERSION,
            scenario: info.scenario,
            seed: self.seed,
            reproduce: info.reproduce,
            duration_s: s.duration_s,
            nodes: Nodes {
                total: self.hosts.len(),
                started: self.hosts.iter().filter(|h| h.started).count(),
                alive_at_end: alive.iter().filter(|a| **a).count(),
            },
            faults_applied: faults,
            broadcast,
            overlay,
            phases,
            broadcasts: if s.measure.per_broadcast {
                entries
            } else {
                Vec::new()
            },
            checks: Vec::new(),
            passed: true,
        };
        let value = serde_json::to_value(&report).expect("report serialises");
        report.checks = evaluate(&s.checks, &value);
        report.passed = report.checks.iter().all(|c| c.passed);
        report
    }
}
