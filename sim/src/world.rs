//! The simulated world: builds hosts from a scenario and a seed, runs the
//! real node code on each (one driver task per host on madsim), applies the
//! timeline and the workload, and turns what it observed into a report.
//!
//! Randomness: one ChaCha stream per subsystem and per host, all derived
//! from the scenario seed ([`stream`]); madsim's scheduler is seeded with
//! the same seed.
//!
//! Addresses: public hosts are 198.18.0.1 upwards (by host index), hosts
//! behind a NAT 172.16.0.1 upwards (172.16.0.0/12, by host index), NATs on
//! the internet (home NATs and CGNATs) 20.0.0.1 upwards in creation order,
//! and home NATs behind a CGNAT 100.64.0.1 upwards (100.64.0.0/10) on the
//! CGNAT's inside. `change-ip` draws the next address of the same range.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use grove_netsim::sim::{NetHandle, Sent};
use grove_netsim::{HostId, NatId, Network};
use grove_node::driver::{self, Command, EventSink, KnowledgeCommand, KnowledgeReply};
use grove_node::node::{Event, Node};
use grove_node::store::MemStore;
use grove_node::wire::Label;
use grove_node::{net, Identity, Peer, PeerId, Time};
use madsim::task::JoinHandle;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attack::{self, AttackRec, Attacker, Capture, Plan, Target};
use crate::churn::SessionPlan;
use crate::commands;
use crate::dht::{self, DhtRec};
use crate::host_set::HostSet;
use crate::overlay;
use crate::pubsub;
use crate::recorder::{payload_for, Recorder};
use crate::report::{self, *};
use crate::scenario::{AttackKind, Contact, Group, Scenario, TimelineEvent};
use crate::traversal::{self, PairRec};
use grove_node::proto::kad::{self, Key};

/// The UDP port every node listens on.
pub const PORT: u16 = 7000;

const STREAM_NETWORK: u64 = 1;
const STREAM_WORLD: u64 = 2;
const STREAM_LINKS: u64 = 3;
const STREAM_NAT: u64 = 4;
/// Arrival instants of group `g`: `STREAM_ARRIVALS + g`.
const STREAM_ARRIVALS: u64 = 1 << 16;
const STREAM_ATTACK: u64 = 3 << 32;
const STREAM_IDENTITY: u64 = 1 << 32;
const STREAM_NODE: u64 = 2 << 32;
/// Churn draws of host `i`, session `k`: `STREAM_CHURN + (i << 20) + k`
/// (session 0: whether the host is stable).
const STREAM_CHURN: u64 = 4 << 48;
/// The DHT workload's draws (origins, targets, providers, probes).
const STREAM_DHT: u64 = 5 << 48;
/// The knowledge workload: its write schedule, and the edits' contents.
const STREAM_KNOWLEDGE: u64 = 6 << 48;

/// The ChaCha stream `id` of `seed`: independent streams per subsystem
/// and host, all from the one seed.
pub fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// The address of public host `i`: 198.18.0.1 upwards (the benchmarking
/// range, RFC 2544: public, never routed on the real internet, and not a
/// private range, so a node on it may assume it is publicly reachable).
pub fn host_ip(i: usize) -> IpAddr {
    let n = u32::try_from(i + 1).ok().filter(|&n| n < 1 << 17);
    let n = n.expect("at most 2^17 - 1 public hosts");
    IpAddr::V4(Ipv4Addr::from_bits(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n,
    ))
}

/// The `k`-th new address given to a public host that rejoins after
/// churn with a new IP: 30.0.0.1 upwards.
pub fn readdressed_ip(k: usize) -> Ipv4Addr {
    let n = u32::try_from(k + 1).ok().filter(|&n| n < 1 << 24);
    let n = n.expect("at most 2^24 - 1 public readdressings");
    Ipv4Addr::from_bits(u32::from(Ipv4Addr::new(30, 0, 0, 0)) + n)
}

/// The private address of host `i` behind a NAT: 172.16.0.1 upwards.
pub fn private_ip(i: usize) -> IpAddr {
    let n = u32::try_from(i + 1).ok().filter(|&n| n < 1 << 20);
    let n = n.expect("at most 2^20 - 1 hosts behind NATs");
    IpAddr::V4(Ipv4Addr::from_bits(
        u32::from(Ipv4Addr::new(172, 16, 0, 0)) + n,
    ))
}

/// The outside address of the `k`-th NAT on the internet: 20.0.0.1 upwards.
pub fn nat_public_ip(k: usize) -> Ipv4Addr {
    let n = u32::try_from(k + 1).ok().filter(|&n| n < 1 << 24);
    let n = n.expect("at most 2^24 - 1 NAT addresses");
    Ipv4Addr::from_bits(u32::from(Ipv4Addr::new(20, 0, 0, 0)) + n)
}

/// The WAN address of the `k`-th home NAT behind a CGNAT: 100.64.0.1
/// upwards (on the CGNAT's inside).
pub fn cgnat_inside_ip(k: usize) -> Ipv4Addr {
    let n = u32::try_from(k + 1).ok().filter(|&n| n < 1 << 22);
    let n = n.expect("at most 2^22 - 1 CGNAT inside addresses");
    Ipv4Addr::from_bits(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n)
}

/// Which entry of `group.nat` each of its hosts gets (None: public):
/// `round(fraction x count)` hosts per entry (largest remainders first, the
/// total being `round(sum of fractions x count)`), in an order shuffled by
/// `rng`. Draws nothing for a group without NATs.
fn nat_plan(group: &Group, rng: &mut ChaCha8Rng) -> Vec<Option<usize>> {
    let count = group.count;
    if group.nat.is_empty() {
        return vec![None; count];
    }
    let c = count as f64;
    let sum: f64 = group.nat.iter().map(|n| n.fraction).sum();
    let target = ((sum * c).round() as usize).min(count);
    let mut n: Vec<usize> = group
        .nat
        .iter()
        .map(|e| (e.fraction * c).floor() as usize)
        .collect();
    let mut by_remainder: Vec<usize> = (0..n.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let r = |k: usize| group.nat[k].fraction * c - n[k] as f64;
        r(b).total_cmp(&r(a)).then(a.cmp(&b))
    });
    let mut rest = target.saturating_sub(n.iter().sum());
    for k in by_remainder {
        if rest == 0 {
            break;
        }
        n[k] += 1;
        rest -= 1;
    }
    let mut plan: Vec<Option<usize>> = Vec::with_capacity(count);
    for (k, &m) in n.iter().enumerate() {
        plan.resize(plan.len() + m, Some(k));
    }
    plan.truncate(count);
    plan.resize(count, None);
    plan.shuffle(rng);
    plan
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
    Broadcast {
        workload: usize,
        k: usize,
    },
    Pairs,
    Attack(usize),
    Tick(u64),
    /// Churn: host `host` ends session `session` (leaves or crashes).
    Depart {
        host: usize,
        session: u32,
    },
    /// Churn: a host that left gracefully in `session` is taken off the
    /// network once its goodbyes are out.
    TakeDown {
        host: usize,
        session: u32,
    },
    /// Churn: host `host`, offline since `session`, rejoins.
    Return {
        host: usize,
        session: u32,
    },
    /// Take a time-series sample.
    Sample,
    /// Publish pub/sub message `k`.
    Publish(usize),
    /// DHT: a random lookup, the providers' start, a probe round.
    DhtLookup,
    DhtProvide,
    DhtProbe,
    /// The knowledge workload: host `host` writes.
    KnowledgeWrite {
        host: usize,
    },
}

/// What is still to happen: the scenario's fixed agenda, plus what churn
/// schedules as it goes. Ordered by (instant, order of scheduling), so the
/// fixed agenda keeps its sorted order and churn never reorders it.
#[derive(Default)]
struct Agenda {
    heap: BinaryHeap<Reverse<(u64, u64, Action)>>,
    seq: u64,
}

impl Agenda {
    fn push(&mut self, t: u64, action: Action) {
        self.heap.push(Reverse((t, self.seq, action)));
        self.seq += 1;
    }

    fn pop(&mut self) -> Option<(u64, Action)> {
        self.heap.pop().map(|Reverse((t, _, a))| (t, a))
    }
}

struct HostState {
    group: usize,
    ip: IpAddr,
    /// Index into `World::nat_labels`.
    nat_label: u16,
    /// No NAT in front of the host.
    public: bool,
    identity: Identity,
    incarnation: u64,
    running: bool,
    started: bool,
    /// Churn: sessions started so far (0: none yet).
    session: u32,
    /// Churn: the host never leaves.
    stable: bool,
    /// Churn: offline between sessions, due back on its own.
    away: bool,
    task: Option<JoinHandle<()>>,
    commands: Option<commands::Sender>,
    /// What the host's node made durable (its knowledge commits, its peer
    /// cache): it outlives the host's crashes and departures, as a disk
    /// would.
    store: Rc<RefCell<MemStore>>,
}

struct World {
    scenario: Scenario,
    seed: u64,
    net: NetHandle,
    hosts: Vec<HostState>,
    rec: Rc<RefCell<Recorder>>,
    rng: ChaCha8Rng,
    faults: Faults,
    /// NAT labels (`public`, a kind, `kind+cgnat`, or an entry's own
    /// `label`), in order of first use.
    nat_labels: Vec<String>,
    /// NAT addresses handed out so far, on the internet and on CGNAT
    /// insides.
    nat_ips: usize,
    cgnat_ips: usize,
    /// New addresses given to public hosts so far.
    public_ips: usize,
    attack_tasks: Vec<JoinHandle<()>>,
    /// What replay and spoofing attackers have overheard (when some run).
    capture: Option<Rc<RefCell<Capture>>>,
    agenda: Agenda,
    churn: ChurnCounts,
    /// The hosts whose `running` is set, for O(log n) random picks.
    running_set: HostSet,
    dht_rng: ChaCha8Rng,
    /// DHT: the keys each provider provides, and all of them.
    dht_keys: BTreeMap<usize, Vec<Key>>,
    dht_published: Vec<Key>,
    /// Draws the knowledge workload's edits.
    knowledge_rng: ChaCha8Rng,
    /// Each broadcast workload's current senders (with `senders` set).
    senders: Vec<Vec<usize>>,
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
            } => {
                if let Some(p) = &mut rec.pubsub {
                    p.delivered(self.host, now, &payload);
                }
                rec.delivered(self.host, now, id, hops, &payload)
            }
            Event::PubSub(e) => {
                let rec = &mut *rec;
                if let Some(p) = &mut rec.pubsub {
                    p.event(self.host, now, e, &rec.peer_host);
                }
            }
            Event::NeighborUp(peer) => rec.neighbor_up(self.host, peer.id, now),
            Event::NeighborDown(id) => rec.neighbor_down(self.host, &id, now),
            // Sessions are observed in the network's traffic, not here.
            Event::Connected { .. } => {}
            Event::Dropped { reason, .. } => {
                rec.malformed += 1;
                if let Some(a) = &mut rec.attacks {
                    a.dropped(self.host, now, &reason);
                }
            }
            Event::Traversal(e) => {
                if let grove_node::transport::nat::Event::Reachability { reach, .. } = &e {
                    rec.dht.set_server(self.host, reach.is_public());
                }
                rec.traversal(self.host, now, e)
            }
            Event::Dht(e) => rec.dht.event(self.host, now, e),
            Event::Knowledge(e) => {
                if let Some(k) = &mut rec.knowledge {
                    k.event(self.host, now, e);
                }
            }
        }
    }

    fn on_command_error(&mut self, _now: Time, _error: String) {
        // Only knowledge edits can fail in a simulation (broadcast payloads
        // are checked when the scenario is read).
        if let Some(k) = &mut self.rec.borrow_mut().knowledge {
            k.command_error(self.host);
        }
    }

    fn on_knowledge_reply(&mut self, _now: Time, reply: KnowledgeReply) {
        if let Some(k) = &mut self.rec.borrow_mut().knowledge {
            k.reply(self.host, reply);
        }
    }
}

/// The attack recorder, when the scenario has attacks: which hosts attack
/// and which are targets, when the attacks and the handshake flood start.
fn attack_rec(s: &Scenario, hosts: &[HostState]) -> Option<AttackRec> {
    let first = s.attack.iter().map(|a| a.start_s).reduce(f64::min)?;
    let in_any = |h: &HostState, pick: &dyn Fn(&crate::scenario::Attack) -> &str| {
        let name = &s.groups[h.group].name;
        s.attack.iter().any(|a| pick(a) == name)
    };
    let attacker = hosts.iter().map(|h| in_any(h, &|a| &a.group)).collect();
    let victim = hosts.iter().map(|h| in_any(h, &|a| &a.target)).collect();
    let floods = s
        .attack
        .iter()
        .filter(|a| a.kind == AttackKind::HandshakeFlood);
    let flood_start = floods.clone().map(|a| a.start_s).reduce(f64::min);
    let flooded = hosts
        .iter()
        .filter(|h| floods.clone().any(|a| a.target == s.groups[h.group].name))
        .count();
    Some(AttackRec::new(
        attacker,
        victim,
        secs_ns(first),
        flood_start.map(|t| (secs_ns(t), flooded)),
        s.node.transport.handshakes_per_s_before_cookies,
    ))
}

/// The churn stream of host `i`'s session `k`.
fn churn_stream(i: usize, k: u32) -> u64 {
    STREAM_CHURN + ((i as u64) << 20) + u64::from(k)
}

/// Virtual seconds between two prunings of madsim's task list.
const TASK_PRUNE_EVERY_S: u64 = 60;

/// How long a host that leaves gracefully stays on the network after
/// telling its neighbours (its DISCONNECTs are sent at once; this only
/// lets the driver run before the host is taken off).
const GOODBYE_NS: u64 = 1_000_000_000;

fn secs_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

impl World {
    fn new(s: &Scenario, seed: u64) -> World {
        let mut links = stream(seed, STREAM_LINKS);
        let mut nat_rng = stream(seed, STREAM_NAT);
        let mut net = Network::new(
            secs_ns(s.time_grid_ms / 1000.0),
            stream(seed, STREAM_NETWORK),
        );
        let mut hosts = Vec::new();
        let mut nat_labels: Vec<String> = Vec::new();
        let (mut nat_ips, mut cgnat_ips) = (0, 0);
        for (g, group) in s.groups.iter().enumerate() {
            let (lo, hi) = group.latency_ms.bounds();
            let plan = nat_plan(group, &mut nat_rng);
            // Per entry, the CGNAT being filled and how many homes it has.
            let mut cgnats: Vec<Option<(NatId, usize)>> = vec![None; group.nat.len()];
            for entry in plan {
                let i = hosts.len();
                let latency = if hi > lo {
                    links.gen_range(lo..=hi)
                } else {
                    lo
                };
                let link = group.link(latency);
                let share = entry.map(|e| (e, &group.nat[e]));
                let label = share.map_or_else(|| "public".to_owned(), |(_, n)| n.label());
                let label = match nat_labels.iter().position(|x| *x == label) {
                    Some(l) => l as u16,
                    None => {
                        nat_labels.push(label);
                        (nat_labels.len() - 1) as u16
                    }
                };
                let (ip, public) = match share.and_then(|(e, n)| Some((e, n, n.config()?))) {
                    None => {
                        let ip = host_ip(i);
                        let h = net.add_host(ip, link);
                        net.set_fallback_reachable(h, group.fallback_reachable);
                        (ip, true)
                    }
                    Some((e, share, config)) => {
                        let upstream = share.cgnat.then(|| {
                            let cg = match cgnats[e] {
                                Some((id, homes)) if homes < s.cgnat_size => (id, homes),
                                _ => {
                                    nat_ips += 1;
                                    let config = share.cgnat_config(s.cgnat_kind);
                                    (net.add_nat(nat_public_ip(nat_ips - 1), config, None), 0)
                                }
                            };
                            cgnats[e] = Some((cg.0, cg.1 + 1));
                            cg.0
                        });
                        let wan = if upstream.is_some() {
                            cgnat_ips += 1;
                            cgnat_inside_ip(cgnat_ips - 1)
                        } else {
                            nat_ips += 1;
                            nat_public_ip(nat_ips - 1)
                        };
                        let home = net.add_nat(wan, config, upstream);
                        let ip = private_ip(i);
                        net.add_host_behind(ip, link, home);
                        (ip, false)
                    }
                };
                let mut key = [0u8; 32];
                stream(seed, STREAM_IDENTITY + i as u64).fill(&mut key);
                let stable = group
                    .churn
                    .as_ref()
                    .is_some_and(|c| c.is_stable(&mut stream(seed, churn_stream(i, 0))));
                hosts.push(HostState {
                    group: g,
                    ip,
                    nat_label: label,
                    public,
                    identity: Identity::from_seed(key),
                    incarnation: 0,
                    running: false,
                    started: false,
                    session: 0,
                    stable,
                    away: false,
                    task: None,
                    commands: None,
                    store: Rc::default(),
                });
            }
        }
        let duration_ns = secs_ns(s.duration_s);
        let mut phase_starts: Vec<u64> = s
            .timeline
            .iter()
            .map(|e| secs_ns(e.at_s()))
            .chain(s.attack.iter().map(|a| secs_ns(a.start_s)))
            .filter(|&t| t > 0 && t < duration_ns)
            .collect();
        phase_starts.sort_unstable();
        phase_starts.dedup();
        let mut recorder = Recorder::new(hosts.len(), phase_starts);
        recorder.isolation =
            crate::isolation::IsolationRec::new(hosts.len(), s.node.rejoin.cache_capacity);
        recorder.attacks = attack_rec(s, &hosts);
        recorder.pubsub = s.pubsub.as_ref().map(|p| {
            let attacker = hosts
                .iter()
                .map(|h| pubsub::is_attacker(p, &s.groups[h.group].name))
                .collect();
            let attack = p.attack.as_ref();
            pubsub::PubSubRec::new(
                p.via,
                attacker,
                attack.and_then(|a| a.eclipse_host).map(|h| h as u32),
                attack.map(|a| secs_ns(a.from_s)),
            )
        });
        recorder.knowledge = s
            .knowledge
            .as_ref()
            .map(|k| crate::knowledge::KnowledgeRec::new(k, hosts.len()));
        let rec = Rc::new(RefCell::new(recorder));
        rec.borrow_mut().dht = DhtRec::new(s.dht.is_some(), hosts.len(), !s.node.nat.enabled);
        World {
            scenario: s.clone(),
            seed,
            net: NetHandle::install(net),
            rec,
            rng: stream(seed, STREAM_WORLD),
            faults: Faults::default(),
            nat_labels,
            nat_ips,
            cgnat_ips,
            public_ips: 0,
            attack_tasks: Vec::new(),
            capture: None,
            agenda: Agenda::default(),
            churn: ChurnCounts::default(),
            running_set: HostSet::new(hosts.len()),
            dht_rng: stream(seed, STREAM_DHT),
            dht_keys: BTreeMap::new(),
            dht_published: Vec::new(),
            knowledge_rng: stream(seed, STREAM_KNOWLEDGE + 1),
            senders: vec![Vec::new(); s.workload.len()],
            hosts,
        }
    }

    /// The NAT label of host `i`: `public`, the kind of its NAT as in the
    /// scenario (`port-restricted`, `custom`, ...), with `+cgnat` behind a
    /// carrier-grade NAT, or the `label` its NAT entry gives.
    pub fn nat_label(&self, i: usize) -> &str {
        &self.nat_labels[self.hosts[i].nat_label as usize]
    }

    /// Where host `i` sends NAT-PMP requests (None: a public host).
    pub fn gateway(&self, i: usize) -> Option<SocketAddr> {
        self.net.with(|n| n.gateway(i as HostId))
    }

    /// The node settings of host `i`. For now the scenario's, for every
    /// host; this is the one place where per-host settings are to be
    /// produced (e.g. the NAT-PMP gateway, [`World::gateway`], once the
    /// node's configuration has a field for it).
    fn node_config_for(&self, i: usize) -> grove_node::node::Config {
        let mut config = self.scenario.node.clone();
        if config.nat.gateway.is_none() {
            config.nat.gateway = self.gateway(i);
        }
        if let Some(p) = &self.scenario.pubsub {
            let g = &mut config.gossipsub;
            g.enabled = p.via == pubsub::Via::Gossipsub;
            if self.is_pubsub_attacker(i) {
                let eclipse = p
                    .attack
                    .as_ref()
                    .and_then(|a| a.eclipse_host)
                    .map(|h| Peer::new(self.hosts[h].identity.peer_id(), self.contact_addr(h)));
                g.adversary = p.adversary(eclipse);
            } else if p.attack.is_some() {
                g.score_report_interval = std::time::Duration::from_secs(10);
            }
        }
        if let Some(k) = &self.scenario.knowledge {
            config.knowledge.enabled = true;
            for t in &k.topics {
                if !config.knowledge.topics.contains(t) {
                    config.knowledge.topics.push(t.clone());
                }
            }
        }
        config
    }

    /// The scenario's fixed agenda, in order. Hosts join `interval_ms`
    /// apart in host order, but those of groups with `arrivals`, which
    /// arrive at their Poisson instants.
    fn agenda(&self) -> Vec<(u64, Action)> {
        let s = &self.scenario;
        let mut agenda = Vec::new();
        let mut scheduled = 0usize;
        let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); s.groups.len()];
        for i in 0..self.hosts.len() {
            let g = self.hosts[i].group;
            if s.groups[g].arrivals.is_some() {
                arrivals[g].push(i);
                continue;
            }
            let t = secs_ns(s.join.start_s + s.join.interval_ms / 1000.0 * scheduled as f64);
            scheduled += 1;
            agenda.push((t, Action::Start(i)));
        }
        for (g, hosts) in arrivals.iter().enumerate() {
            let Some(a) = &s.groups[g].arrivals else {
                continue;
            };
            let mut rng = stream(self.seed, STREAM_ARRIVALS + g as u64);
            let instants = a.instants_s(hosts.len(), s.duration_s, &mut rng);
            for (&i, t) in hosts.iter().zip(instants) {
                agenda.push((secs_ns(t), Action::Start(i)));
            }
        }
        let series_ns = secs_ns(s.measure.series_s);
        if series_ns > 0 {
            let mut t = series_ns;
            while t <= secs_ns(s.duration_s) {
                agenda.push((t, Action::Sample));
                t += series_ns;
            }
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
        if let Some(p) = &s.pairs {
            agenda.push((secs_ns(p.at_s), Action::Pairs));
        }
        if let Some(d) = &s.dht {
            if let Some(l) = &d.lookups {
                for k in 0..l.count {
                    let t = secs_ns(l.start_s + l.interval_ms / 1000.0 * k as f64);
                    agenda.push((t, Action::DhtLookup));
                }
            }
            if let Some(p) = &d.provide {
                agenda.push((secs_ns(p.at_s), Action::DhtProvide));
            }
            if let Some(p) = &d.probes {
                for r in 0..p.rounds {
                    agenda.push((
                        secs_ns(p.start_s + p.interval_s * r as f64),
                        Action::DhtProbe,
                    ));
                }
            }
        }
        for (k, a) in s.attack.iter().enumerate() {
            agenda.push((secs_ns(a.start_s), Action::Attack(k)));
        }
        if let Some(p) = &s.pubsub {
            for k in 0..p.count {
                let t = secs_ns(p.start_s + p.interval_ms / 1000.0 * k as f64);
                agenda.push((t, Action::Publish(k)));
            }
        }
        if let Some(k) = &s.knowledge {
            let mut rng = stream(self.seed, STREAM_KNOWLEDGE);
            for (t, host) in k.plan(self.hosts.len(), &mut rng) {
                agenda.push((t, Action::KnowledgeWrite { host }));
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
        self.capture = self.capture_ring().map(|c| Rc::new(RefCell::new(c)));
        let capture = self.capture.clone();
        self.net.set_observer(Box::new(move |d: Sent<'_>| {
            rec.borrow_mut()
                .datagram_sent(d.now_ns, d.src, d.dst, d.bytes, Label(d.label));
            if let Some(c) = &capture {
                let in_flight = d.fate == grove_netsim::Fate::InFlight;
                c.borrow_mut()
                    .observe(d.now_ns, d.src, d.dst, d.bytes, in_flight);
            }
        }));
        madsim::task::spawn_local(self.net.clone().pump());
        for (t, action) in self.agenda() {
            self.agenda.push(t, action);
        }
        let end = secs_ns(self.scenario.duration_s);
        while let Some((t, action)) = self.agenda.pop() {
            if t > end {
                break;
            }
            if t > self.net.now_ns() {
                self.net.sleep_until_ns(t).await;
            }
            match action {
                Action::Start(i) if self.is_attacker(i) => {}
                Action::Start(i) => self.start(i, true),
                Action::Event(i) => self.apply(i),
                Action::Broadcast { workload, .. } => self.broadcast(workload),
                Action::Pairs => self.connect_pairs(),
                Action::Attack(k) => self.attack(k),
                Action::Publish(_) => self.publish(),
                Action::Tick(sec) => {
                    progress(sec);
                    if self.rec.borrow().pubsub.is_some() {
                        let alive: Vec<bool> = self.hosts.iter().map(|h| h.running).collect();
                        let mut rec = self.rec.borrow_mut();
                        if let Some(p) = &mut rec.pubsub {
                            p.sample(t, &alive);
                        }
                    }
                    if sec % TASK_PRUNE_EVERY_S == 0 {
                        // madsim keeps a weak reference to every task ever
                        // spawned, dropped only when tasks are counted: count
                        // them now and then, or a long run with churn keeps
                        // one allocation per finished node task.
                        let _ = madsim::runtime::Handle::current().metrics().num_tasks();
                    }
                }
                Action::Depart { host, session } => self.depart(host, session),
                Action::TakeDown { host, session } => {
                    if self.hosts[host].session == session && !self.hosts[host].running {
                        self.take_down(host);
                    }
                }
                Action::Return { host, session } => self.come_back(host, session),
                Action::Sample => self.sample(t),
                Action::DhtLookup => self.dht_lookup(),
                Action::DhtProvide => self.dht_provide(),
                Action::DhtProbe => self.dht_probe(),
                Action::KnowledgeWrite { host } => self.knowledge_write(host),
            }
        }
        if end > self.net.now_ns() {
            self.net.sleep_until_ns(end).await;
        }
        if self.scenario.knowledge.is_some() {
            // Ask every live node for its documents; the answers come
            // through the event sinks once the drivers have run.
            for h in &self.hosts {
                if let (true, Some(tx)) = (h.running, &h.commands) {
                    let _ = tx.try_send(Command::Knowledge(Box::new(KnowledgeCommand::States)));
                }
            }
            self.net.sleep_until_ns(end + 1_000_000).await;
        }
        let report = self.report(info, end);
        for t in self.attack_tasks.drain(..) {
            t.abort();
        }
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

    /// The address other hosts are given to contact host `i`: its own for
    /// a public host; for a host behind NATs, the outermost NAT's outside
    /// address with the node's port (where a port-preserving,
    /// endpoint-independent mapping would put it: reachable only through a
    /// live mapping that admits the sender).
    fn contact_addr(&self, i: usize) -> SocketAddr {
        self.net.with(|n| {
            let Some(mut nat) = n.host_nat(i as HostId) else {
                return SocketAddr::new(self.hosts[i].ip, PORT);
            };
            while let Some(up) = n.nat_upstream(nat) {
                nat = up;
            }
            SocketAddr::new(IpAddr::V4(n.nat_public_ip(nat)), PORT)
        })
    }

    /// Start (or restart) host `i`, joining through a contact: the first
    /// host on a first start with `contact = "first"`; else a random
    /// running host (with `random-public`, a public one if any is running).
    fn start(&mut self, i: usize, first_start: bool) {
        let contact = match (first_start, self.scenario.join.contact) {
            (true, Contact::First) => (i != 0).then(|| self.contact_addr(0)),
            (_, Contact::RandomPublic) => {
                let mut running = self.running();
                let group = self.scenario.join.contact_group.clone();
                if group.is_some() && running.iter().any(|&c| self.in_group(c, &group)) {
                    running.retain(|&c| self.in_group(c, &group));
                }
                let public: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|&c| self.hosts[c].public)
                    .collect();
                let pool = if public.is_empty() { &running } else { &public };
                pool.choose(&mut self.rng).map(|&c| self.contact_addr(c))
            }
            _ => {
                // What `self.running().choose(rng)` draws (rand 0.8: one
                // `gen_range(0..len as u32)`), without listing the hosts.
                let len = u32::try_from(self.running_set.len()).expect("fewer than 2^32 hosts");
                (len > 0).then(|| {
                    let k = self.rng.gen_range(0..len) as usize;
                    self.contact_addr(self.running_set.nth(k).expect("k < len"))
                })
            }
        };
        self.begin_session(i);
        let config = self.node_config_for(i);
        let now = self.net.now_ns();
        self.running_set.set(i, true);
        let h = &mut self.hosts[i];
        h.started = true;
        h.running = true;
        let rng = stream(self.seed, STREAM_NODE + ((i as u64) << 12) + h.incarnation);
        h.incarnation += 1;
        let (tx, rx) = commands::channel();
        h.commands = Some(tx);
        {
            let mut rec = self.rec.borrow_mut();
            rec.host_started(i as u32, h.identity.peer_id(), now);
            rec.dht.host_started(i as u32, &h.identity.peer_id());
            rec.dht
                .set_server(i as u32, !self.scenario.node.nat.enabled);
        }
        // A provider provides its keys again in every session.
        if let Some(keys) = self.dht_keys.get(&i) {
            let c = Command::Dht(Box::new(kad::Command::Provide(keys.clone())));
            if let Some(tx) = &h.commands {
                let _ = tx.try_send(c);
            }
        }
        let mut topic = None;
        if let Some(p) = &mut self.rec.borrow_mut().pubsub {
            p.host_started(i as u32);
        }
        let addr = SocketAddr::new(h.ip, PORT);
        // Built here and boxed, so that the task's future holds a pointer
        // rather than the node (and the identity, config and rng it is
        // made from): the future's captures stay in it for its whole life.
        let mut node = Box::new(Node::new(&h.identity, addr, config, rng));
        if let Some(p) = &self.scenario.pubsub {
            if p.via == pubsub::Via::Gossipsub {
                node.set_pubsub_validator(pubsub::validator());
                topic = Some(p.topic.clone());
            }
        }
        // The node joins through its cached peers (the driver loads them
        // from its store), then through the contact.
        if let Some(c) = contact {
            node.set_bootstrap(&[c]);
        }
        let store = h.store.clone();
        let mut sink = SimSink {
            host: i as u32,
            rec: self.rec.clone(),
        };
        // Boxed: madsim's spawn wraps the future in one of its own, which
        // holds it twice (as its capture and as what it awaits).
        h.task = Some(madsim::task::spawn_local(Box::pin(async move {
            let socket = match net::Socket::bind(addr).await {
                Ok(s) => s,
                Err(e) => panic!("host {addr} could not bind: {e}"),
            };
            if let Some(t) = topic {
                // Valid by the scenario's checks.
                let _ = node.subscribe(socket.now(), &t);
            }
            // Ends with an error when the host crashes; nothing to report.
            let _ = driver::run(node, socket, rx, &mut sink, store).await;
        })));
    }

    /// DHT: a lookup of a random key from a random running host.
    fn dht_lookup(&mut self) {
        let len = self.running_set.len();
        if len == 0 {
            return;
        }
        let origin = self
            .running_set
            .nth(self.dht_rng.gen_range(0..len))
            .expect("k < len");
        let target = Key(self.dht_rng.gen());
        let running: Vec<bool> = self.hosts.iter().map(|h| h.running).collect();
        {
            let mut rec = self.rec.borrow_mut();
            let expected = rec.dht.closest_server(&target, &running, origin);
            let now = self.net.now_ns();
            rec.dht.lookup_issued(now, origin as u32, target, expected);
        }
        self.dht_command(origin, kad::Command::FindNode(target));
    }

    /// DHT: the providers start providing their keys.
    fn dht_provide(&mut self) {
        let Some(p) = self.scenario.dht.as_ref().and_then(|d| d.provide.clone()) else {
            return;
        };
        let candidates: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| self.in_group(i, &p.group))
            .collect();
        let n = p.providers.min(candidates.len());
        let mut candidates = candidates;
        let (chosen, _) = candidates.partial_shuffle(&mut self.dht_rng, n);
        let mut chosen = chosen.to_vec();
        chosen.sort_unstable();
        let now = self.net.now_ns();
        let cycle_ns = self.scenario.node.dht.republish_interval.as_nanos() as u64;
        for i in chosen {
            let keys: Vec<Key> = (0..p.keys_each).map(|j| dht::provided_key(i, j)).collect();
            self.dht_published.extend(&keys);
            self.rec
                .borrow_mut()
                .dht
                .provider_started(i as u32, &keys, now, cycle_ns);
            self.dht_keys.insert(i, keys.clone());
            self.dht_command(i, kad::Command::Provide(keys));
        }
    }

    /// DHT: a round of GET_PROVIDERS for random published keys, each from a
    /// random running host.
    fn dht_probe(&mut self) {
        let Some(p) = self.scenario.dht.as_ref().and_then(|d| d.probes.clone()) else {
            return;
        };
        let now = self.net.now_ns();
        let round = self.rec.borrow_mut().dht.round_started(now);
        let len = self.running_set.len();
        if len == 0 || self.dht_published.is_empty() {
            return;
        }
        for _ in 0..p.count {
            let key = self.dht_published[self.dht_rng.gen_range(0..self.dht_published.len())];
            let origin = self
                .running_set
                .nth(self.dht_rng.gen_range(0..len))
                .expect("k < len");
            self.rec
                .borrow_mut()
                .dht
                .probe_issued(round, origin as u32, key);
            self.dht_command(origin, kad::Command::GetProviders(key));
        }
    }

    fn dht_command(&self, host: usize, command: kad::Command) {
        if let Some(tx) = &self.hosts[host].commands {
            // A full queue means a stuck host; the query then counts as
            // failed, which is the truth.
            let _ = tx.try_send(Command::Dht(Box::new(command)));
        }
    }

    /// The NAT matrix's connection attempts (see [`crate::scenario::Pairs`]).
    /// A responder is given as the record it last advertised (its address
    /// and relay), as a directory or DHT would hand it out; one that never
    /// advertised one is given by its outermost address.
    fn connect_pairs(&mut self) {
        let Some(p) = self.scenario.pairs.clone() else {
            return;
        };
        let now = self.net.now_ns();
        let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in self.running() {
            if self.in_group(i, &p.group) {
                by_label.entry(self.nat_label(i)).or_default().push(i);
            }
        }
        let labels: Vec<(String, Vec<usize>)> = by_label
            .into_iter()
            .map(|(l, v)| (l.to_owned(), v))
            .collect();
        let mut requests = Vec::new();
        for (_, from) in &labels {
            for (_, to) in &labels {
                for _ in 0..p.per_cell {
                    let i = *from.choose(&mut self.rng).expect("non-empty label");
                    let j = *to.choose(&mut self.rng).expect("non-empty label");
                    if i != j {
                        requests.push((i, j));
                    }
                }
            }
        }
        for (i, j) in requests {
            let id = self.hosts[j].identity.peer_id();
            let advertised = self.rec.borrow().nat.advertised[j];
            let record = advertised.unwrap_or_else(|| Peer::new(id, self.contact_addr(j)));
            if let Some(tx) = &self.hosts[i].commands {
                if tx.try_send(Command::Connect(Box::new(record))).is_ok() {
                    self.rec.borrow_mut().nat.pairs.push(PairRec {
                        initiator: i as u32,
                        responder: j as u32,
                        responder_id: id,
                        at_ns: now,
                    });
                }
            }
        }
    }

    fn is_attacker(&self, i: usize) -> bool {
        let group = &self.scenario.groups[self.hosts[i].group].name;
        self.scenario.attack.iter().any(|a| a.group == *group)
    }

    /// Start the attacks of the group of attack `k` (at the first of them;
    /// later ones of the same group are run by the same attackers): an
    /// attacker task per host of the group, issuing each attack's messages
    /// at its rate to random hosts of its target group, until the run
    /// ends. Targets are taken as they are now: their addresses, and the
    /// records their peers advertise.
    fn attack(&mut self, k: usize) {
        let group = self.scenario.attack[k].group.clone();
        if self.scenario.attack[..k].iter().any(|a| a.group == group) {
            return; // already running in the group's tasks
        }
        let plans: Vec<Plan> = self
            .scenario
            .attack
            .iter()
            .filter(|a| a.group == group)
            .map(|a| Plan {
                kind: a.kind,
                targets: self.targets(&a.target),
                gap_ns: (1e9 / a.rate_per_s).max(1.0) as u64,
                next_ns: secs_ns(a.start_s),
                round: 0,
            })
            .collect();
        let honest: Rc<[PeerId]> = (0..self.hosts.len())
            .filter(|&i| !self.is_attacker(i))
            .map(|i| self.hosts[i].identity.peer_id())
            .collect();
        let stats = {
            let rec = self.rec.borrow();
            rec.attacks
                .as_ref()
                .expect("an attack recorder")
                .stats
                .clone()
        };
        for i in 0..self.hosts.len() {
            if !self.in_group(i, &Some(group.clone())) {
                continue;
            }
            let rng = stream(self.seed, STREAM_ATTACK + ((k as u64) << 24) + i as u64);
            let attacker = Attacker::new(
                plans.clone(),
                self.scenario.node.transport.clone(),
                honest.clone(),
                self.capture.clone(),
                rng,
                stats.clone(),
            );
            let addr = SocketAddr::new(self.hosts[i].ip, PORT);
            self.attack_tasks.push(attack::task::spawn(addr, attacker));
        }
    }

    /// The running hosts of `group` as attackers know them: id, the
    /// address their record advertises (or their contact address), and
    /// the peers whose records name them as relay.
    fn targets(&self, group: &str) -> Vec<Target> {
        let group = Some(group.to_owned());
        let rec = self.rec.borrow();
        let advertised = &rec.nat.advertised;
        let addr_of = |t: usize| advertised[t].map_or_else(|| self.contact_addr(t), |p| p.addr);
        (0..self.hosts.len())
            .filter(|&t| self.hosts[t].running && self.in_group(t, &group))
            .map(|t| {
                let addr = addr_of(t);
                let reserved = (0..self.hosts.len())
                    .filter(|&j| j != t && self.hosts[j].running && !self.is_attacker(j))
                    .filter_map(|j| advertised[j].filter(|p| p.relay == Some(addr)))
                    .collect();
                Target {
                    host: t as u32,
                    id: self.hosts[t].identity.peer_id(),
                    addr,
                    reserved,
                }
            })
            .collect()
    }

    /// The capture ring, when an attack reads it: datagrams from the
    /// targets of those attacks, and to their addresses.
    fn capture_ring(&self) -> Option<Capture> {
        let reads = |k: AttackKind| {
            matches!(
                k,
                AttackKind::Replay | AttackKind::SpoofId | AttackKind::RelayTakeover
            )
        };
        let groups: Vec<Option<String>> = self
            .scenario
            .attack
            .iter()
            .filter(|a| reads(a.kind))
            .map(|a| Some(a.target.clone()))
            .collect();
        if groups.is_empty() {
            return None;
        }
        let n = self.hosts.len();
        let from: Vec<bool> = (0..n)
            .map(|i| groups.iter().any(|g| self.in_group(i, g)))
            .collect();
        let to = (0..n)
            .filter(|&i| from[i])
            .map(|i| self.contact_addr(i).ip())
            .collect();
        let attackers = (0..n).map(|i| self.is_attacker(i)).collect();
        Some(Capture::new(attack::CAPTURE_CAPACITY, from, to, attackers))
    }

    /// A timeline crash: the host is gone until a `restart` event.
    fn crash(&mut self, i: usize) {
        self.stop(i);
        self.take_down(i);
        self.faults.hosts_crashed += 1;
    }

    /// Host `i` stops counting as running (the recorder closes its up
    /// interval and forgets its active view).
    fn stop(&mut self, i: usize) {
        let now = self.net.now_ns();
        self.running_set.set(i, false);
        let h = &mut self.hosts[i];
        h.running = false;
        h.commands = None;
        self.rec.borrow_mut().host_crashed(i as u32, now);
    }

    /// Host `i`'s node task ends and the network forgets it (its port and
    /// inbox); idempotent.
    fn take_down(&mut self, i: usize) {
        if let Some(task) = self.hosts[i].task.take() {
            task.abort();
        }
        self.net.with(|n| n.crash(i as HostId));
    }

    /// Churn: the plan of host `i`'s session `session`, redrawn from that
    /// session's own stream (the same every time it is asked for).
    fn session_plan(&self, i: usize, session: u32) -> Option<SessionPlan> {
        let h = &self.hosts[i];
        let churn = self.scenario.groups[h.group].churn.as_ref()?;
        let mut rng = stream(self.seed, churn_stream(i, session));
        Some(churn.plan(h.stable, &mut rng))
    }

    /// Churn: a session of host `i` starts now; schedule its end.
    fn begin_session(&mut self, i: usize) {
        let group = &self.scenario.groups[self.hosts[i].group];
        let Some(churn) = &group.churn else {
            return;
        };
        let from = self.net.now_ns().max(secs_ns(churn.start_s));
        let h = &mut self.hosts[i];
        h.session += 1;
        let session = h.session;
        self.churn.sessions_started += 1;
        if let Some(online_s) = self.session_plan(i, session).and_then(|p| p.online_s) {
            self.agenda.push(
                from + secs_ns(online_s),
                Action::Depart { host: i, session },
            );
        }
    }

    /// Churn: host `i` ends session `session`, gracefully (its node tells
    /// its neighbours, then goes off the network a second later) or by a
    /// crash; it comes back after its offline time, if it has one.
    fn depart(&mut self, i: usize, session: u32) {
        let h = &self.hosts[i];
        if !h.running || h.session != session {
            return; // crashed or restarted by the timeline meanwhile
        }
        let plan = self.session_plan(i, session).expect("a churning host");
        let now = self.net.now_ns();
        let churn = self.scenario.groups[h.group]
            .churn
            .as_ref()
            .expect("a churning host");
        if churn.stop_s.is_some_and(|stop| now >= secs_ns(stop)) {
            return; // churn has stopped: the session goes on
        }
        if plan.graceful {
            if let Some(tx) = &self.hosts[i].commands {
                let _ = tx.try_send(Command::Leave);
            }
            self.stop(i);
            self.agenda
                .push(now + GOODBYE_NS, Action::TakeDown { host: i, session });
            self.churn.departures_graceful += 1;
        } else {
            self.stop(i);
            self.take_down(i);
            self.churn.departures_crashed += 1;
        }
        if let Some(offline_s) = plan.offline_s {
            self.hosts[i].away = true;
            let back = (now + secs_ns(offline_s)).max(now + GOODBYE_NS + 1);
            self.agenda.push(back, Action::Return { host: i, session });
        }
    }

    /// Churn: host `i`, away since session `session`, rejoins with the same
    /// identity, with a new address if the plan says so (a public host its
    /// own, a host behind a NAT its router's).
    fn come_back(&mut self, i: usize, session: u32) {
        let h = &self.hosts[i];
        if !h.away || h.running || h.session != session {
            return;
        }
        self.hosts[i].away = false;
        self.take_down(i);
        let plan = self.session_plan(i, session).expect("a churning host");
        if plan.new_ip {
            if self.hosts[i].public {
                self.public_ips += 1;
                let ip = readdressed_ip(self.public_ips - 1);
                self.net.with(|n| n.readdress_host(i as HostId, ip));
                self.hosts[i].ip = IpAddr::V4(ip);
            } else {
                self.readdress(i);
            }
            self.churn.new_ips += 1;
        }
        self.net.with(|n| n.restart(i as HostId));
        self.start(i, false);
        self.churn.rejoins += 1;
    }

    /// Give host `i`'s home NAT a new outside address (every mapping is
    /// lost): the next of the internet's or, behind a CGNAT, of the CGNAT's
    /// inside range.
    fn readdress(&mut self, i: usize) {
        let now = self.net.now_ns();
        let (nat, behind_cgnat) = self.net.with(|n| {
            let nat = n.host_nat(i as HostId).expect("a NATed host");
            (nat, n.nat_upstream(nat).is_some())
        });
        let ip = if behind_cgnat {
            self.cgnat_ips += 1;
            cgnat_inside_ip(self.cgnat_ips - 1)
        } else {
            self.nat_ips += 1;
            nat_public_ip(self.nat_ips - 1)
        };
        self.net.with(|n| {
            n.set_now(now);
            n.change_public_ip(nat, ip);
        });
    }

    /// The time-series sample due at `at_ns`: live hosts, hosts with an
    /// active peer, the largest component of the active-view graph among
    /// live hosts.
    fn sample(&mut self, at_ns: u64) {
        let alive: Vec<bool> = self.hosts.iter().map(|h| h.running).collect();
        self.rec.borrow_mut().sample(at_ns, &alive);
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
                // Hosts away by churn come back on their own.
                let candidates = (0..self.hosts.len())
                    .filter(|&i| {
                        let h = &self.hosts[i];
                        h.started && !h.running && !h.away && self.in_group(i, &group)
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
            TimelineEvent::ChangeIp {
                fraction, group, ..
            } => {
                let candidates = (0..self.hosts.len())
                    .filter(|&i| !self.hosts[i].public && self.in_group(i, &group))
                    .collect();
                for i in self.pick(candidates, fraction) {
                    self.readdress(i);
                }
            }
        }
    }

    /// The knowledge workload: a running writer makes its next edit.
    fn knowledge_write(&mut self, host: usize) {
        let h = &self.hosts[host];
        let Some(tx) = (if h.running { h.commands.as_ref() } else { None }) else {
            return; // offline: the writer's agent is not running either
        };
        let mut rec = self.rec.borrow_mut();
        let k = rec.knowledge.as_mut().expect("a knowledge scenario");
        let (topic, write) = k.next_write(host as u32, &mut self.knowledge_rng);
        let cmd = Command::Knowledge(Box::new(KnowledgeCommand::Write { topic, write }));
        if tx.try_send(cmd).is_err() {
            k.unsent(host as u32);
        }
    }

    /// A broadcast workload's origin among its `wanted` senders: those no
    /// longer in `pool` (sorted: the live hosts it may draw from) are
    /// replaced by random ones from it, then one is drawn.
    fn pick_sender(&mut self, workload: usize, wanted: usize, pool: &[usize]) -> Option<usize> {
        let current = &mut self.senders[workload];
        current.retain(|i| pool.binary_search(i).is_ok());
        let need = wanted.saturating_sub(current.len());
        if need > 0 {
            let mut kept = current.clone();
            kept.sort_unstable();
            let fresh: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|i| kept.binary_search(i).is_err())
                .collect();
            current.extend(fresh.choose_multiple(&mut self.rng, need));
        }
        current.choose(&mut self.rng).copied()
    }

    fn broadcast(&mut self, workload: usize) {
        let load = &self.scenario.workload[workload];
        let from = load.from.clone();
        let bytes = load.payload_bytes;
        let running = self.running();
        let senders = load.senders;
        let origin = match from.as_str() {
            "first" if self.hosts[0].running => Some(0),
            "first" => running.choose(&mut self.rng).copied(),
            group => {
                let pool: Vec<usize> = if group == "random" {
                    running
                } else {
                    running
                        .into_iter()
                        .filter(|&i| self.scenario.groups[self.hosts[i].group].name == group)
                        .collect()
                };
                match senders {
                    None => pool.choose(&mut self.rng).copied(),
                    Some(wanted) => self.pick_sender(workload, wanted, &pool),
                }
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

    fn is_pubsub_attacker(&self, i: usize) -> bool {
        let group = &self.scenario.groups[self.hosts[i].group].name;
        self.scenario
            .pubsub
            .as_ref()
            .is_some_and(|p| pubsub::is_attacker(p, group))
    }

    /// Publish the next pub/sub message from a random running publisher.
    fn publish(&mut self) {
        let Some(p) = self.scenario.pubsub.clone() else {
            return;
        };
        let publishers: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| self.scenario.groups[self.hosts[i].group].name == p.publishers)
            .collect();
        let Some(&origin) = publishers.choose(&mut self.rng) else {
            return;
        };
        let now = self.net.now_ns();
        let index = {
            let mut rec = self.rec.borrow_mut();
            let r = rec.pubsub.as_mut().expect("a pub/sub recorder");
            r.published(origin as u32, now)
        };
        let payload = Bytes::from(pubsub::payload_for(index, p.payload_bytes));
        let command = match p.via {
            pubsub::Via::Gossipsub => Command::Publish(Box::new((p.topic.clone(), payload))),
            pubsub::Via::Plumtree => Command::Broadcast(payload),
        };
        if let Some(tx) = &self.hosts[origin].commands {
            let _ = tx.try_send(command);
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
        let mut in_previous: Vec<&BroadcastEntry> = Vec::new();
        for p in 0..bounds.len() - 1 {
            let (start, stop) = (bounds[p], bounds[p + 1]);
            let in_phase: Vec<&BroadcastEntry> = entries
                .iter()
                .filter(|e| rec.phase_of(secs_ns(e.at_s)) == p)
                .collect();
            let crash = p > 0
                && s.timeline.iter().any(|e| {
                    matches!(e, TimelineEvent::Crash { .. }) && secs_ns(e.at_s()) == start
                });
            let recovery = if crash {
                report::recovery(
                    &in_previous,
                    &in_phase,
                    start as f64 / 1e9,
                    s.node.hyparview.shuffle_interval.as_secs_f64(),
                )
            } else {
                None
            };
            let name = if p == 0 {
                "start".to_owned()
            } else {
                let attacks = s
                    .attack
                    .iter()
                    .filter(|a| secs_ns(a.start_s) == start)
                    .map(|a| format!("{} @{}s", a.kind.name(), a.start_s));
                s.timeline
                    .iter()
                    .filter(|e| secs_ns(e.at_s()) == start)
                    .map(TimelineEvent::label)
                    .chain(attacks)
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
                recovery,
            });
            in_previous = in_phase;
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
        let mut overlay = overlay::analyse(
            &alive,
            &rec.active_hosts(),
            s.measure.path_sources,
            self.seed,
        );
        overlay.isolation = rec.isolation.section(end, &rec.up);
        let c = self.net.with(|n| n.counters());
        let nat = self.net.with(|n| n.nat_counters());
        let mut faults = self.faults.clone();
        faults.ip_changes = nat.ip_changes;
        faults.datagrams = Datagrams {
            sent: c.sent,
            delivered: c.delivered,
            lost: c.lost,
            dropped_partition: c.partitioned,
            dropped_dead_host: c.dead_host,
            dropped_no_route: c.no_route,
            dropped_overflow: c.overflow,
            dropped_filtered: c.filtered,
        };
        let label_of: Vec<&str> = (0..self.hosts.len()).map(|i| self.nat_label(i)).collect();
        let nat_types = report::nat_types(&rec, &label_of, &alive, window, end);
        let nat_section = s
            .node
            .nat
            .enabled
            .then(|| traversal::section(&rec.nat, &label_of, &alive, &rec.active));
        faults.malformed_dropped = rec.malformed;
        let honest: Vec<u64> = (0..self.hosts.len())
            .filter(|&i| !self.is_attacker(i))
            .map(|i| rec.sent_by_host[i])
            .collect();
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
            network: NetworkReport { nat },
            broadcast,
            overlay,
            messages_per_node: report::messages_per_node(honest),
            nat_types,
            nat: nat_section,
            phases,
            timeseries: (s.measure.series_s > 0.0)
                .then(|| report::timeseries(&rec, &entries, secs_ns(s.measure.series_s))),
            traffic: report::traffic(&rec, end),
            transport: rec
                .transport
                .section(s.node.transport.crypto, report::node_hours(&rec, end)),
            integrity: report::Integrity::of(&rec),
            churn: s
                .groups
                .iter()
                .any(|g| g.churn.is_some() || g.arrivals.is_some())
                .then(|| ChurnCounts {
                    arrivals: self
                        .hosts
                        .iter()
                        .filter(|h| h.started && s.groups[h.group].arrivals.is_some())
                        .count() as u64,
                    ..self.churn.clone()
                }),
            pubsub: rec.pubsub.as_ref().zip(s.pubsub.as_ref()).map(|(r, p)| {
                let running = |a, b| rec.running_throughout(a, b);
                let phases = (rec.phase_starts.len() + 1, |t| rec.phase_of(t));
                r.section(secs_ns(p.window_s), end, running, &rec.peer_host, phases)
            }),
            dht: s.dht.as_ref().map(|_| rec.dht.section(s.node.dht.sweep)),
            knowledge: rec.knowledge.as_ref().map(|k| {
                let heal = s
                    .timeline
                    .iter()
                    .filter(|e| matches!(e, TimelineEvent::Heal { .. }))
                    .map(|e| e.at_s())
                    .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
                let load = s.knowledge.as_ref().expect("a knowledge scenario");
                let reference = load.reference_s.or(heal).unwrap_or(load.end_s);
                k.section(secs_ns(reference), end)
            }),
            attacks: rec.attacks.as_ref().map(|a| a.section(&entries, end)),
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
