//! What the observer saw: node events (deliveries, neighbour changes) and
//! network traffic. The recorder never looks inside a node; it is fed by
//! the driver's event sink and by the network's send hook.

use grove_node::proto::plumtree::MsgId;
use grove_node::wire::{Class, Label, Protocol};
use grove_node::PeerId;
use hdrhistogram::Histogram;
use petgraph::unionfind::UnionFind;
use rustc_hash::FxHashMap;

use crate::transport::Seen;

/// Broadcast payloads start with the broadcast's index (8 bytes, LE), so a
/// delivery names its broadcast without any lookup inside the node.
pub fn payload_for(index: usize, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(8)];
    p[..8].copy_from_slice(&(index as u64).to_le_bytes());
    p
}

fn index_of(payload: &[u8]) -> Option<usize> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(bytes)).ok()
}

/// One broadcast, as observed.
#[derive(Clone, Debug)]
pub struct BroadcastRec {
    pub at_ns: u64,
    pub origin: u32,
    pub delivered: Vec<u64>,
    pub deliveries: u32,
    pub hops_max: u16,
    pub latency_max_ns: u64,
    pub latency_sum_ns: u64,
    pub payload_msgs: u64,
}

impl BroadcastRec {
    pub fn has_delivered(&self, host: u32) -> bool {
        self.delivered[host as usize / 64] >> (host % 64) & 1 == 1
    }
}

/// Time intervals during which a host was running: (start, end).
pub type UpIntervals = Vec<(u64, Option<u64>)>;

/// Everything observed during one run.
pub struct Recorder {
    /// Instants (ns) at which a new phase starts, after the first.
    pub phase_starts: Vec<u64>,
    pub broadcasts: Vec<BroadcastRec>,
    /// Broadcasts by their id's prefix (what a datagram's label carries).
    ids: FxHashMap<u64, u32>,
    unattributed: FxHashMap<u64, u64>,
    /// Delivery latency of every non-origin delivery, per phase (µs).
    pub latency_us: Vec<Histogram<u64>>,
    pub payload_msgs: Vec<u64>,
    pub control_msgs: Vec<u64>,
    /// Datagrams each host sent over the run (all kinds).
    pub sent_by_host: Vec<u64>,
    pub active: Vec<Vec<PeerId>>,
    pub peer_host: FxHashMap<PeerId, u32>,
    pub up: Vec<UpIntervals>,
    pub malformed: u64,
    /// Deliveries of a workload broadcast by a host that had delivered it
    /// already.
    pub duplicate_deliveries: u64,
    /// `NeighborUp` events for a peer already in the host's active view
    /// (no `NeighborDown` for it since, in the host's current life).
    pub repeated_neighbor_up: u64,
    /// NAT traversal's events.
    pub nat: crate::traversal::NatRec,
    /// Datagrams and bytes sent, per [`Protocol`] (in `Protocol::ALL`
    /// order), then the session layer's own ([`SESSION_ROW`]), then of no
    /// protocol of ours ([`OTHER_ROW`]).
    pub traffic: [Traffic; OTHER_ROW + 1],
    /// Session datagrams by type, as seen on the wire.
    pub transport: crate::transport::TransportRec,
    /// Time-series samples, in time order.
    pub samples: Vec<Sample>,
    /// The pub/sub workload, when the scenario has one.
    pub pubsub: Option<crate::pubsub::PubSubRec>,
    /// The DHT's queries and traffic (empty unless the DHT runs).
    pub dht: crate::dht::DhtRec,
    /// The knowledge commons, when the scenario runs it.
    pub knowledge: Option<crate::knowledge::KnowledgeRec>,
    /// The attack workload, when the scenario has attackers.
    pub attacks: Option<crate::attack::AttackRec>,
    /// Isolation stretches and the hosts' peer caches.
    pub isolation: crate::isolation::IsolationRec,
}

/// The traffic row of the session layer's own datagrams (handshakes,
/// cookies, identify, acks).
pub const SESSION_ROW: usize = Protocol::ALL.len();
/// The traffic row of datagrams that are not Grove's (NAT-PMP, attackers').
pub const OTHER_ROW: usize = SESSION_ROW + 1;

/// Datagrams and their bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub datagrams: u64,
    pub bytes: u64,
}

/// The state of the world at one instant, seen from outside the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at_ns: u64,
    /// Hosts running.
    pub live: u32,
    /// Running hosts with at least one running active peer (a view that
    /// holds only dead peers, not yet detected, does not count).
    pub connected: u32,
    /// Running hosts in the largest connected component of the active-view
    /// graph (links between running hosts only, either direction).
    pub largest_component: u32,
}

impl Recorder {
    pub fn new(hosts: usize, phase_starts: Vec<u64>) -> Self {
        let phases = phase_starts.len() + 1;
        Recorder {
            phase_starts,
            broadcasts: Vec::new(),
            ids: FxHashMap::default(),
            unattributed: FxHashMap::default(),
            // 1 µs to 1 hour at 3 significant figures.
            latency_us: (0..phases)
                .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
                .collect(),
            payload_msgs: vec![0; phases],
            control_msgs: vec![0; phases],
            sent_by_host: vec![0; hosts],
            active: vec![Vec::new(); hosts],
            peer_host: FxHashMap::default(),
            up: vec![Vec::new(); hosts],
            malformed: 0,
            duplicate_deliveries: 0,
            repeated_neighbor_up: 0,
            nat: crate::traversal::NatRec::new(hosts),
            traffic: [Traffic::default(); OTHER_ROW + 1],
            transport: crate::transport::TransportRec::default(),
            samples: Vec::new(),
            pubsub: None,
            dht: crate::dht::DhtRec::default(),
            knowledge: None,
            attacks: None,
            isolation: crate::isolation::IsolationRec::new(
                hosts,
                grove_node::rejoin::Config::default().cache_capacity,
            ),
        }
    }

    pub fn phase_of(&self, t_ns: u64) -> usize {
        self.phase_starts.partition_point(|&s| s <= t_ns)
    }

    pub fn host_started(&mut self, host: u32, id: PeerId, now: u64) {
        self.peer_host.insert(id, host);
        self.up[host as usize].push((now, None));
        // A previous life's view may have gained entries after it stopped
        // counting (a leaving node still handles datagrams for an instant).
        self.active[host as usize].clear();
        self.isolation.started(host, now);
        if let Some(k) = &mut self.knowledge {
            k.host_up(host, now);
        }
    }

    pub fn host_crashed(&mut self, host: u32, now: u64) {
        if let Some(last) = self.up[host as usize].last_mut() {
            last.1.get_or_insert(now);
        }
        self.active[host as usize].clear();
        self.isolation.stopped(host, now, &self.up);
        self.dht.host_stopped(host);
        if let Some(k) = &mut self.knowledge {
            k.host_down(host, now);
        }
    }

    /// A broadcast with index `self.broadcasts.len()` was asked of `origin`.
    pub fn broadcast_sent(&mut self, origin: u32, now: u64) -> usize {
        let hosts = self.active.len();
        self.broadcasts.push(BroadcastRec {
            at_ns: now,
            origin,
            delivered: vec![0; hosts.div_ceil(64)],
            deliveries: 0,
            hops_max: 0,
            latency_max_ns: 0,
            latency_sum_ns: 0,
            payload_msgs: 0,
        });
        self.broadcasts.len() - 1
    }

    pub fn delivered(&mut self, host: u32, now: u64, id: MsgId, hops: u16, payload: &[u8]) {
        let Some(index) = index_of(payload).filter(|&i| i < self.broadcasts.len()) else {
            return; // not one of the workload's broadcasts
        };
        if hops == 0 {
            self.ids.insert(id.prefix(), index as u32);
            if let Some(n) = self.unattributed.remove(&id.prefix()) {
                self.broadcasts[index].payload_msgs += n;
            }
        }
        let phase = self.phase_of(self.broadcasts[index].at_ns);
        let b = &mut self.broadcasts[index];
        let (word, bit) = (host as usize / 64, host % 64);
        if b.delivered[word] >> bit & 1 == 1 {
            self.duplicate_deliveries += 1;
            return;
        }
        b.delivered[word] |= 1 << bit;
        b.deliveries += 1;
        if hops > 0 {
            let latency = now.saturating_sub(b.at_ns);
            b.hops_max = b.hops_max.max(hops);
            b.latency_max_ns = b.latency_max_ns.max(latency);
            b.latency_sum_ns += latency;
            self.latency_us[phase].saturating_record((latency / 1000).max(1));
        }
    }

    pub fn neighbor_up(&mut self, host: u32, peer: PeerId, now: u64) {
        let view = &mut self.active[host as usize];
        if view.contains(&peer) {
            self.repeated_neighbor_up += 1;
        } else {
            view.push(peer);
        }
        let peer = self.peer_host.get(&peer).copied();
        self.isolation.neighbor_up(host, peer, now, &self.up);
    }

    /// NAT traversal at `host` reported `event`.
    pub fn traversal(&mut self, host: u32, now: u64, event: grove_node::transport::nat::Event) {
        if let (Some(a), grove_node::transport::nat::Event::Rejected { what, .. }) =
            (&mut self.attacks, &event)
        {
            a.rejected(what);
        }
        let peer_host = &self.peer_host;
        self.nat
            .event(host, now, event, |p| peer_host.get(p).copied());
    }

    pub fn neighbor_down(&mut self, host: u32, peer: &PeerId, now: u64) {
        let view = &mut self.active[host as usize];
        view.retain(|p| p != peer);
        self.isolation.neighbor_down(host, now, view.is_empty());
    }

    /// Host `src` sent `bytes` to `dst` at `now`.
    /// Sealed datagrams no longer show what they carry: `label` is what
    /// the sender read from the plaintext (its protocol and kind, a GOSSIP's
    /// id prefix); the session type in clear is the bytes' first.
    pub fn datagram_sent(
        &mut self,
        now: u64,
        src: u32,
        dst: std::net::SocketAddr,
        bytes: &[u8],
        label: Label,
    ) {
        if let Some(n) = self.sent_by_host.get_mut(src as usize) {
            *n += 1;
        }
        if let Some(a) = &mut self.attacks {
            a.sent(now, src, dst, bytes);
        }
        let seen = self.transport.datagram(bytes);
        let kind = match label.protocol() {
            Some(p) => p as usize,
            None if seen == Seen::Other => OTHER_ROW,
            None => SESSION_ROW,
        };
        if let Some(p) = &mut self.pubsub {
            p.datagram_sent(src, label);
        }
        if self.dht.enabled {
            self.dht.datagram(now, src, label);
        }
        let t = &mut self.traffic[kind];
        t.datagrams += 1;
        t.bytes += bytes.len() as u64;
        let phase = self.phase_of(now);
        match label.class() {
            Some(Class::Payload) => {
                self.payload_msgs[phase] += 1;
                if let Some(id) = label.gossip_prefix() {
                    match self.ids.get(&id) {
                        Some(&i) => self.broadcasts[i as usize].payload_msgs += 1,
                        None => *self.unattributed.entry(id).or_default() += 1,
                    }
                }
            }
            Some(Class::Control) | None => self.control_msgs[phase] += 1,
        }
    }

    /// Record a [`Sample`] at `now`; `alive[h]`: host `h` is running.
    pub fn sample(&mut self, now: u64, alive: &[bool]) {
        let hosts = self.active_hosts();
        let mut components = UnionFind::<u32>::new(alive.len());
        let (mut live, mut connected) = (0u32, 0u32);
        for (h, view) in hosts.iter().enumerate() {
            if !alive[h] {
                continue;
            }
            live += 1;
            let mut linked = false;
            for &p in view.iter().filter(|&&p| alive[p as usize]) {
                components.union(h as u32, p);
                linked = true;
            }
            connected += u32::from(linked);
        }
        let mut size = vec![0u32; alive.len()];
        for h in (0..alive.len()).filter(|&h| alive[h]) {
            size[components.find(h as u32) as usize] += 1;
        }
        self.samples.push(Sample {
            at_ns: now,
            live,
            connected,
            largest_component: size.into_iter().max().unwrap_or(0),
        });
    }

    /// Hosts that were running throughout `[from, to]`, as a bitset.
    pub fn running_throughout(&self, from: u64, to: u64) -> Vec<u64> {
        let mut set = vec![0u64; self.up.len().div_ceil(64)];
        for (h, intervals) in self.up.iter().enumerate() {
            if intervals
                .iter()
                .any(|&(s, e)| s <= from && e.is_none_or(|e| e > to))
            {
                set[h / 64] |= 1 << (h % 64);
            }
        }
        set
    }

    /// Active views as host indices (peers not known as hosts are left out).
    pub fn active_hosts(&self) -> Vec<Vec<u32>> {
        self.active
            .iter()
            .map(|v| {
                v.iter()
                    .filter_map(|p| self.peer_host.get(p).copied())
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_attributed_by_payload_and_deduplicated() {
        let mut r = Recorder::new(3, vec![1_000]);
        let i = r.broadcast_sent(0, 2_000);
        let p = payload_for(i, 64);
        let id = MsgId([1; 32]);
        r.delivered(0, 2_000, id, 0, &p);
        r.delivered(1, 12_000_000, id, 1, &p);
        r.delivered(1, 13_000_000, id, 2, &p);
        r.delivered(2, 22_000_000, id, 2, &p);
        let b = &r.broadcasts[0];
        assert_eq!(b.deliveries, 3);
        assert_eq!(b.hops_max, 2);
        assert_eq!(b.latency_max_ns, 21_998_000);
        assert_eq!(r.duplicate_deliveries, 1);
        assert_eq!(r.latency_us[1].len(), 2);
        assert!(b.has_delivered(2));
        // Payload not from the workload is ignored.
        r.delivered(2, 0, id, 1, b"short");
        // The duplicate is what the report's integrity section says.
        let integrity = serde_json::to_value(crate::report::Integrity::of(&r)).unwrap();
        assert_eq!(integrity["duplicate_deliveries"], 1);
        assert_eq!(integrity["repeated_neighbor_up"], 0);
    }

    #[test]
    fn a_neighbor_up_for_a_peer_already_up_is_counted() {
        let mut r = Recorder::new(2, vec![]);
        let (me, p) = (PeerId([0; 32]), PeerId([1; 32]));
        r.host_started(0, me, 0);
        r.neighbor_up(0, p, 1);
        r.neighbor_up(0, p, 1); // no NeighborDown between: repeated
        r.neighbor_down(0, &p, 2);
        r.neighbor_up(0, p, 3); // after a down: not repeated
        r.host_crashed(0, 10);
        r.host_started(0, me, 20);
        r.neighbor_up(0, p, 21); // a new life starts with an empty view
        assert_eq!(r.repeated_neighbor_up, 1);
        assert_eq!(r.active[0], [p]);
        let integrity = crate::report::Integrity::of(&r);
        assert_eq!(
            (
                integrity.duplicate_deliveries,
                integrity.repeated_neighbor_up
            ),
            (0, 1)
        );
    }

    #[test]
    fn samples_count_live_connected_and_the_largest_component() {
        let mut r = Recorder::new(5, vec![]);
        for h in 0..5u32 {
            r.host_started(h, PeerId([h as u8; 32]), 0);
        }
        // 0-1-2 linked (one-sided links count), 3-4 linked, then 2 dies:
        // its link must not join anything.
        r.neighbor_up(0, PeerId([1; 32]), 1);
        r.neighbor_up(2, PeerId([1; 32]), 1);
        r.neighbor_up(3, PeerId([4; 32]), 1);
        r.neighbor_up(4, PeerId([3; 32]), 1);
        r.sample(10, &[true; 5]);
        r.host_crashed(2, 20);
        r.sample(30, &[true, true, false, true, true]);
        let s = &r.samples;
        assert_eq!(
            (s[0].live, s[0].connected, s[0].largest_component),
            (5, 4, 3)
        );
        // Host 1 has an empty view; host 0's only link is to it.
        assert_eq!(
            (s[1].live, s[1].connected, s[1].largest_component),
            (4, 3, 2)
        );
        assert_eq!(s[1].at_ns, 30);
    }

    #[test]
    fn traffic_is_counted_per_protocol() {
        use grove_node::transport::session::{kind, DATA_OVERHEAD};
        let mut r = Recorder::new(1, vec![]);
        let dst: std::net::SocketAddr = "198.18.0.2:7000".parse().unwrap();
        // NAT-PMP's version byte is 0: not ours.
        r.datagram_sent(0, 0, dst, &[0; 14], Label::FOREIGN);
        assert_eq!(r.traffic[OTHER_ROW].datagrams, 1);
        assert_eq!(r.traffic[OTHER_ROW].bytes, 14);
        assert_eq!(r.traffic[0].datagrams, 0);
        // The session layer's own: an initiation and an empty ack.
        r.datagram_sent(0, 0, dst, &[kind::INITIATION; 133], Label::FOREIGN);
        r.datagram_sent(0, 0, dst, &[kind::DATA; DATA_OVERHEAD], Label::FOREIGN);
        assert_eq!(r.traffic[SESSION_ROW].datagrams, 2);
        assert_eq!(r.traffic[SESSION_ROW].bytes, 133 + 29);
        assert_eq!((r.transport.initiations, r.transport.acks), (1, 1));
        // A sealed JOIN: counted by its label, at its size on the wire.
        let mut plain = Vec::new();
        grove_node::message::encode(
            &grove_node::message::Datagram {
                from: PeerId([1; 32]),
                message: grove_node::message::Message::HyParView(
                    grove_node::proto::hyparview::Message::Join,
                ),
            },
            &mut plain,
        )
        .unwrap();
        let mut sealed = vec![kind::DATA_ACK_ELICITING; plain.len() + DATA_OVERHEAD];
        sealed[DATA_OVERHEAD..].copy_from_slice(&plain);
        r.datagram_sent(0, 0, dst, &sealed, Label::of(&plain));
        assert_eq!(r.traffic[Protocol::Membership as usize].datagrams, 1);
        assert_eq!(r.traffic[Protocol::Membership as usize].bytes, 34 + 29);
        assert_eq!((r.transport.data, r.traffic[SESSION_ROW].datagrams), (1, 2));
    }

    #[test]
    fn running_throughout_respects_crashes() {
        let mut r = Recorder::new(2, vec![]);
        r.host_started(0, PeerId([0; 32]), 0);
        r.host_started(1, PeerId([1; 32]), 0);
        r.host_crashed(1, 50);
        assert_eq!(r.running_throughout(10, 40)[0], 0b11);
        assert_eq!(r.running_throughout(10, 60)[0], 0b01);
    }
}
