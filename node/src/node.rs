//! One Grove node: HyParView membership with a broadcast layer on top
//! (Plumtree, or plain flooding for the HyParView paper's experiments),
//! behind one datagram interface.
//!
//! Like the cores, `Node` is sans-IO. The driver calls, in a loop:
//! 1. an input: [`Node::handle_datagram`], [`Node::handle_timeout`] (when
//!    [`Node::poll_timeout`] has passed), [`Node::join`] or
//!    [`Node::broadcast`];
//! 2. [`Node::poll_transmit`] until `None`, sending each datagram;
//! 3. [`Node::poll_event`] until `None`;
//! 4. [`Node::poll_timeout`] to know when to wake up next.
//!
//! A malformed datagram is dropped, counted and reported as
//! [`Event::Dropped`]; it never stops the node.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::proto::plumtree::{self, MsgId, MAX_PAYLOAD_BYTES};
use crate::proto::{flood, hyparview};
use crate::wire::{self, Datagram, DecodeError, Message};
use crate::{Identity, Peer, PeerId, Time};

/// Datagrams queued for sending before the oldest are dropped (bounded; the
/// driver drains the queue after every input).
pub const TRANSMIT_QUEUE_CAPACITY: usize = 4096;
/// Events queued for the application before the oldest are dropped.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// How broadcasts travel over the active view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BroadcastMode {
    /// Epidemic broadcast trees (eager tree + lazy IHAVE repair).
    #[default]
    Plumtree,
    /// Forward every new message to every active peer but the sender.
    Flood,
}

/// Settings of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub broadcast: BroadcastMode,
    pub hyparview: hyparview::Config,
    pub plumtree: plumtree::Config,
    pub flood: flood::Config,
}

/// What a node tells its application (and the simulator's observer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A broadcast reached this node for the first time (the origin sees its
    /// own broadcast with `hops == 0`).
    Delivered {
        id: MsgId,
        hops: u16,
        from: Option<PeerId>,
        payload: Bytes,
    },
    /// `peer` entered the active view.
    NeighborUp(Peer),
    /// A peer left the active view.
    NeighborDown(PeerId),
    /// A datagram from `from` was malformed and dropped.
    Dropped {
        from: SocketAddr,
        error: DecodeError,
    },
}

/// Why a broadcast was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    #[error("payload of {len} bytes is larger than the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge { len: usize },
}

/// Counts of what the node did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub malformed_in: u64,
    pub transmit_overflow: u64,
    pub event_overflow: u64,
}

enum Broadcaster {
    Plumtree(Box<plumtree::Plumtree>),
    Flood(flood::Flood),
}

impl Broadcaster {
    fn broadcast(&mut self, now: Time, payload: Bytes) -> MsgId {
        match self {
            Broadcaster::Plumtree(p) => p.broadcast(now, payload),
            Broadcaster::Flood(f) => f.broadcast(now, payload),
        }
    }
    fn neighbor_up(&mut self, now: Time, peer: Peer) {
        match self {
            Broadcaster::Plumtree(p) => p.handle_neighbor_up(now, peer),
            Broadcaster::Flood(f) => f.handle_neighbor_up(now, peer),
        }
    }
    fn neighbor_down(&mut self, now: Time, peer: &PeerId) {
        match self {
            Broadcaster::Plumtree(p) => p.handle_neighbor_down(now, peer),
            Broadcaster::Flood(f) => f.handle_neighbor_down(now, peer),
        }
    }
    fn handle_message(&mut self, now: Time, from: Peer, message: plumtree::Message) {
        match self {
            Broadcaster::Plumtree(p) => p.handle_message(now, from, message),
            Broadcaster::Flood(f) => f.handle_message(now, from, message),
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        match self {
            Broadcaster::Plumtree(p) => p.handle_timeout(now),
            Broadcaster::Flood(f) => f.handle_timeout(now),
        }
    }
    fn poll_output(&mut self) -> Option<plumtree::Output> {
        match self {
            Broadcaster::Plumtree(p) => p.poll_output(),
            Broadcaster::Flood(f) => f.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Time> {
        match self {
            Broadcaster::Plumtree(p) => p.poll_timeout(),
            Broadcaster::Flood(f) => f.poll_timeout(),
        }
    }
}

/// A Grove node's protocol state.
pub struct Node {
    me: Peer,
    membership: hyparview::HyParView,
    broadcaster: Broadcaster,
    transmits: VecDeque<(SocketAddr, Message)>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Node {
    /// A node with `identity`, reachable at `addr`, using `rng` for every
    /// random choice its protocols make.
    pub fn new(identity: &Identity, addr: SocketAddr, config: Config, mut rng: ChaCha8Rng) -> Self {
        let me = Peer::new(identity.peer_id(), addr);
        // A random first sequence number: a restarted node must not reuse
        // the message ids of its previous life.
        let first_seq = rng.gen::<u64>();
        let broadcaster = match config.broadcast {
            BroadcastMode::Plumtree => {
                let mut p = plumtree::Plumtree::new(me.id, config.plumtree);
                p.set_next_seq(first_seq);
                Broadcaster::Plumtree(Box::new(p))
            }
            BroadcastMode::Flood => {
                let mut f = flood::Flood::new(me.id, config.flood);
                f.set_next_seq(first_seq);
                Broadcaster::Flood(f)
            }
        };
        Node {
            me,
            membership: hyparview::HyParView::new(me, config.hyparview, rng),
            broadcaster,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    pub fn me(&self) -> &Peer {
        &self.me
    }
    pub fn active_view(&self) -> &[Peer] {
        self.membership.active_view()
    }
    pub fn passive_view(&self) -> &[Peer] {
        self.membership.passive_view()
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- inputs ----

    /// Join the overlay through a contact known by address.
    pub fn join(&mut self, now: Time, contact: SocketAddr) {
        self.membership.join(now, contact);
        self.process(now);
    }

    /// Broadcast `payload` to every node; returns its id.
    pub fn broadcast(&mut self, now: Time, payload: Bytes) -> Result<MsgId, BroadcastError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(BroadcastError::TooLarge { len: payload.len() });
        }
        let id = self.broadcaster.broadcast(now, payload);
        self.process(now);
        Ok(id)
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        let Datagram {
            from: sender,
            message,
        } = match wire::decode(bytes) {
            Ok(d) => d,
            Err(error) => {
                self.stats.malformed_in += 1;
                self.emit(Event::Dropped { from, error });
                return;
            }
        };
        if sender == self.me.id {
            return; // our own datagram reflected back, or a peer forging our id
        }
        let peer = Peer::new(sender, from);
        self.membership.handle_heard(now, &sender);
        match message {
            Message::HyParView(m) => self.membership.handle_message(now, peer, m),
            Message::Plumtree(m) => self.broadcaster.handle_message(now, peer, m),
        }
        self.process(now);
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.membership.handle_timeout(now);
        self.broadcaster.handle_timeout(now);
        self.process(now);
    }

    // ---- outputs ----

    /// The next datagram to send: its bytes are written to `out` (cleared
    /// first) and its destination returned.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        while let Some((dst, message)) = self.transmits.pop_front() {
            out.clear();
            let datagram = Datagram {
                from: self.me.id,
                message,
            };
            match wire::encode(&datagram, out) {
                Ok(()) => {
                    self.stats.datagrams_out += 1;
                    return Some(dst);
                }
                // The cores bound what they put in a message, so this is a
                // bug; skip the message rather than stop the node.
                Err(e) => {
                    debug_assert!(false, "unencodable message {:?}: {e}", datagram.message);
                    tracing::error!("dropping unencodable message: {e}");
                }
            }
        }
        None
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match (
            self.membership.poll_timeout(),
            self.broadcaster.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    /// Move the cores' outputs into the node's queues, feeding membership
    /// changes to the broadcast layer, until both cores are quiet.
    fn process(&mut self, now: Time) {
        loop {
            let mut progressed = false;
            while let Some(out) = self.membership.poll_output() {
                progressed = true;
                match out {
                    hyparview::Output::Send { to, message } => {
                        self.transmit(to, Message::HyParView(message))
                    }
                    hyparview::Output::Event(hyparview::Event::NeighborUp(peer)) => {
                        self.broadcaster.neighbor_up(now, peer);
                        self.emit(Event::NeighborUp(peer));
                    }
                    hyparview::Output::Event(hyparview::Event::NeighborDown(id)) => {
                        self.broadcaster.neighbor_down(now, &id);
                        self.emit(Event::NeighborDown(id));
                    }
                }
            }
            while let Some(out) = self.broadcaster.poll_output() {
                progressed = true;
                match out {
                    plumtree::Output::Send { to, message } => {
                        self.transmit(to, Message::Plumtree(message))
                    }
                    plumtree::Output::Event(plumtree::Event::Delivered {
                        id,
                        hops,
                        from,
                        payload,
                    }) => self.emit(Event::Delivered {
                        id,
                        hops,
                        from,
                        payload,
                    }),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, to: SocketAddr, message: Message) {
        if self.transmits.len() >= TRANSMIT_QUEUE_CAPACITY {
            self.transmits.pop_front();
            self.stats.transmit_overflow += 1;
        }
        self.transmits.push_back((to, message));
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= EVENT_QUEUE_CAPACITY {
            self.events.pop_front();
            self.stats.event_overflow += 1;
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rand::SeedableRng;

    use super::*;

    /// Nodes on virtual time: every datagram takes 10 ms; time jumps to
    /// the next arrival or deadline.
    struct World {
        now: Time,
        nodes: BTreeMap<SocketAddr, Node>,
        in_flight: BTreeMap<(Time, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
        events: Vec<(SocketAddr, Event)>,
        seq: u64,
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    impl World {
        fn new(n: u8, config: Config) -> World {
            let mut nodes = BTreeMap::new();
            for i in 1..=n {
                let identity = Identity::from_seed([i; 32]);
                let rng = ChaCha8Rng::seed_from_u64(i as u64);
                nodes.insert(addr(i), Node::new(&identity, addr(i), config.clone(), rng));
            }
            World {
                now: Time::ZERO,
                nodes,
                in_flight: BTreeMap::new(),
                events: Vec::new(),
                seq: 0,
            }
        }

        fn drain(&mut self, at: SocketAddr) {
            let node = self.nodes.get_mut(&at).unwrap();
            let mut out = Vec::new();
            while let Some(dst) = node.poll_transmit(&mut out) {
                self.seq += 1;
                let arrival = self.now + Duration::from_millis(10);
                self.in_flight
                    .insert((arrival, self.seq), (at, dst, out.clone()));
            }
            while let Some(e) = node.poll_event() {
                self.events.push((at, e));
            }
        }

        fn run_until(&mut self, end: Time) {
            loop {
                let next_datagram = self.in_flight.keys().next().map(|k| k.0);
                let next_timer = self.nodes.values().filter_map(Node::poll_timeout).min();
                let Some(next) = [next_datagram, next_timer].into_iter().flatten().min() else {
                    break;
                };
                if next > end {
                    break;
                }
                self.now = next;
                if next_datagram == Some(next) {
                    let (_, (from, to, bytes)) = self.in_flight.pop_first().unwrap();
                    if let Some(node) = self.nodes.get_mut(&to) {
                        node.handle_datagram(next, from, &bytes);
                        self.drain(to);
                    }
                } else {
                    let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
                    for a in addrs {
                        let node = self.nodes.get_mut(&a).unwrap();
                        if node.poll_timeout().is_some_and(|t| t <= next) {
                            node.handle_timeout(next);
                            self.drain(a);
                        }
                    }
                }
            }
            self.now = end;
        }

        fn delivered(&self, id: MsgId) -> usize {
            self.events
                .iter()
                .filter(|(_, e)| matches!(e, Event::Delivered { id: d, .. } if *d == id))
                .count()
        }
    }

    fn join_all(w: &mut World, n: u8) {
        for i in 2..=n {
            let now = w.now;
            w.nodes.get_mut(&addr(i)).unwrap().join(now, addr(1));
            w.drain(addr(i));
        }
        w.run_until(Duration::from_secs(5));
    }

    #[test]
    fn nodes_join_and_every_node_delivers_a_broadcast_once() {
        for mode in [BroadcastMode::Plumtree, BroadcastMode::Flood] {
            let config = Config {
                broadcast: mode,
                ..Config::default()
            };
            let mut w = World::new(12, config);
            join_all(&mut w, 12);
            assert!(w.nodes.values().all(|n| !n.active_view().is_empty()));
            let now = w.now;
            let id = w
                .nodes
                .get_mut(&addr(5))
                .unwrap()
                .broadcast(now, Bytes::from_static(b"hello"))
                .unwrap();
            w.drain(addr(5));
            w.run_until(now + Duration::from_secs(3));
            assert_eq!(w.delivered(id), 12, "{mode:?}");
            let neighbor_ups = w
                .events
                .iter()
                .filter(|(_, e)| matches!(e, Event::NeighborUp(_)))
                .count();
            assert!(neighbor_ups >= 12, "{neighbor_ups} neighbour events");
        }
    }

    #[test]
    fn malformed_datagrams_are_dropped_counted_and_reported() {
        let mut w = World::new(2, Config::default());
        join_all(&mut w, 2);
        let now = w.now;
        let node = w.nodes.get_mut(&addr(1)).unwrap();
        node.handle_datagram(now, addr(9), &[1, 0x7f, 3]);
        node.handle_datagram(now, addr(9), &[]);
        assert_eq!(node.stats().malformed_in, 2);
        w.drain(addr(1));
        let dropped: Vec<_> = w
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Dropped { from, error } => Some((*from, error.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.len(), 2);
        assert!(dropped.iter().all(|(from, _)| *from == addr(9)));
        // Still a working node.
        let id = w
            .nodes
            .get_mut(&addr(1))
            .unwrap()
            .broadcast(now, Bytes::from_static(b"x"))
            .unwrap();
        w.drain(addr(1));
        w.run_until(now + Duration::from_secs(1));
        assert_eq!(w.delivered(id), 2);
    }

    #[test]
    fn a_restarted_node_does_not_reuse_message_ids() {
        let identity = Identity::from_seed([1; 32]);
        let first = |seed| {
            let rng = ChaCha8Rng::seed_from_u64(seed);
            let mut n = Node::new(&identity, addr(1), Config::default(), rng);
            n.broadcast(Time::ZERO, Bytes::from_static(b"same"))
                .unwrap()
        };
        assert_ne!(first(1), first(2));
        assert_eq!(first(1), first(1));
    }

    #[test]
    fn oversized_broadcasts_are_refused() {
        let mut w = World::new(1, Config::default());
        let node = w.nodes.get_mut(&addr(1)).unwrap();
        let big = Bytes::from(vec![0; MAX_PAYLOAD_BYTES + 1]);
        assert_eq!(
            node.broadcast(Time::ZERO, big),
            Err(BroadcastError::TooLarge {
                len: MAX_PAYLOAD_BYTES + 1
            })
        );
    }

    #[test]
    fn a_datagram_claiming_our_own_id_is_ignored() {
        let mut w = World::new(2, Config::default());
        let me = *w.nodes[&addr(1)].me();
        let mut bytes = Vec::new();
        let forged = Datagram {
            from: me.id,
            message: Message::HyParView(hyparview::Message::Join),
        };
        wire::encode(&forged, &mut bytes).unwrap();
        let node = w.nodes.get_mut(&addr(1)).unwrap();
        node.handle_datagram(Time::ZERO, addr(2), &bytes);
        assert!(node.active_view().is_empty());
        w.drain(addr(1));
        assert!(w.in_flight.is_empty(), "no answer to a forged self");
    }
}
