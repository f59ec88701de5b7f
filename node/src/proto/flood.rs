//! Flooding over the active view: on first receipt forward to every
//! neighbour but the sender (the dissemination used in the HyParView paper's
//! experiments, §5). Shares [`super::plumtree::Message::Gossip`] on the wire.
//!
//! # Contract
//!
//! [`Flood`] is a deterministic, sans-IO state machine, driven exactly like
//! [`super::plumtree::Plumtree`]: every input carries the current time `now`
//! (non-decreasing), outputs are drained with [`Flood::poll_output`] after
//! every input, and [`Flood::handle_timeout`] is called once `now` reaches
//! [`Flood::poll_timeout`]. No I/O, no clock, no randomness; neighbours are
//! kept in a `Vec` in the order they came up, so the order of outputs is a
//! function of the inputs. The node calls
//! [`Flood::handle_neighbor_up`] / [`Flood::handle_neighbor_down`] on
//! HyParView's `NeighborUp` / `NeighborDown`, and checks payload sizes
//! before [`Flood::broadcast`] (an oversize payload is a `debug_assert!`).
//!
//! # Behaviour
//!
//! - `broadcast` delivers locally (`hops == 0`, `from == None`) and sends
//!   `Gossip { hops: 1 }` to every neighbour.
//! - A `Gossip` seen for the first time is delivered and forwarded with
//!   `hops + 1` (saturating) to every neighbour but its sender; a duplicate
//!   is dropped. So a broadcast costs Σ degree − (n − 1) messages when no
//!   copy crosses another: the origin sends to all its neighbours, every
//!   other node to all but one.
//! - `IHave`, `Graft` and `Prune` are ignored.
//! - A `Gossip` from a peer outside the neighbour set is delivered and
//!   forwarded all the same (it may be a datagram from a peer HyParView has
//!   just dropped); payloads over [`MAX_PAYLOAD_BYTES`] are dropped.
//!
//! # Bounds
//!
//! The seen-id set keeps at most `seen_capacity` ids for `seen_ttl`, oldest
//! dropped first; an id forgotten while copies still circulate is delivered
//! and forwarded again, so `seen_ttl` must exceed a broadcast's lifetime by a
//! wide margin. Expiry runs in [`Flood::handle_timeout`] on a one-second grid
//! (and on insert); a node with nothing to expire has no timer. The output
//! queue holds at most 16,384 outputs; beyond that (a driver that does not
//! drain) new ones are dropped and counted ([`Flood::outputs_dropped`]).

use std::time::Duration;

use bytes::Bytes;

use super::plumtree::{
    originate, round_up_to_second, validate_seen, Event, ExpiringMap, Message, MsgId, Outbox,
    Output, MAX_PAYLOAD_BYTES,
};
use crate::config::KeyError;
use crate::{PeerId, Time};

/// Flooding settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How long a message id is remembered as seen (Grove: 120 s); 1 s to
    /// 720 h, as Plumtree's.
    #[serde(with = "crate::duration")]
    pub seen_ttl: Duration,
    /// Most ids remembered as seen (bounded; oldest dropped first); 1 to
    /// [`super::plumtree::MAX_SEEN`].
    pub seen_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seen_ttl: Duration::from_secs(120),
            seen_capacity: 16384,
        }
    }
}

impl Config {
    /// Check the bounds on each field's doc line; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        validate_seen(self.seen_ttl, self.seen_capacity)
    }
}

/// The flooding state machine of one node.
#[derive(Debug)]
pub struct Flood {
    me: PeerId,
    next_seq: u64,
    /// The active view, in the order peers came up.
    neighbors: Vec<PeerId>,
    seen: ExpiringMap<()>,
    outbox: Outbox,
}

impl Flood {
    /// Start numbering this node's broadcasts at `seq`. A node that restarts
    /// with the same identity must not reuse the ids of its earlier
    /// broadcasts (peers would drop them as already seen), so the node
    /// starts from a random sequence number.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    pub fn new(me: PeerId, config: Config) -> Self {
        Flood {
            me,
            next_seq: 0,
            neighbors: Vec::new(),
            seen: ExpiringMap::new(config.seen_capacity, config.seen_ttl),
            outbox: Outbox::default(),
        }
    }

    // ---- getters ----

    /// The current neighbours, in the order they came up.
    pub fn neighbors(&self) -> &[PeerId] {
        &self.neighbors
    }
    /// Outputs dropped because the output queue was full (0 when the driver
    /// drains after every input).
    pub fn outputs_dropped(&self) -> u64 {
        self.outbox.dropped()
    }

    // ---- inputs ----

    /// Broadcast `payload` (at most [`MAX_PAYLOAD_BYTES`]); returns its id.
    pub fn broadcast(&mut self, now: Time, payload: Bytes) -> MsgId {
        let (id, fresh) = originate(
            &self.me,
            &mut self.next_seq,
            now,
            &payload,
            &mut self.seen,
            &mut self.outbox,
        );
        if !fresh {
            return id;
        }
        let me = self.me;
        self.forward(id, 1, me, &payload, None);
        id
    }

    /// A new active-view neighbour (a known one keeps its place).
    pub fn handle_neighbor_up(&mut self, _now: Time, peer: PeerId) {
        if peer != self.me && !self.neighbors.contains(&peer) {
            self.neighbors.push(peer);
        }
    }

    /// A neighbour left the active view.
    pub fn handle_neighbor_down(&mut self, _now: Time, peer: &PeerId) {
        self.neighbors.retain(|p| p != peer);
    }

    /// A broadcast message from `from`; only `Gossip` means anything here.
    pub fn handle_message(&mut self, now: Time, from: PeerId, message: Message) {
        let Message::Gossip {
            id,
            hops,
            origin,
            payload,
            ..
        } = message
        else {
            return;
        };
        if payload.len() > MAX_PAYLOAD_BYTES || self.seen.contains(&id) {
            return;
        }
        self.seen.insert(now, id, ());
        self.outbox.push(Output::Event(Event::Delivered {
            id,
            hops,
            from: Some(from),
            payload: payload.clone(),
        }));
        self.forward(id, hops.saturating_add(1), origin, &payload, Some(from));
    }

    /// Expire seen ids older than `seen_ttl`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.seen.expire(now);
    }

    // ---- outputs ----

    /// The next message to send or event to report.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// When [`Flood::handle_timeout`] must next be called: the seen-set
    /// expiry, on a one-second grid; `None` when nothing is remembered.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.seen.next_expiry().map(round_up_to_second)
    }

    fn forward(
        &mut self,
        id: MsgId,
        hops: u16,
        origin: PeerId,
        payload: &Bytes,
        except: Option<PeerId>,
    ) {
        for &peer in self.neighbors.iter().filter(|p| Some(**p) != except) {
            self.outbox.send(
                peer,
                Message::Gossip {
                    id,
                    hops,
                    origin,
                    template: None,
                    payload: payload.clone(),
                },
            );
        }
    }
}

impl super::Core for Flood {
    type Message = Message;
    type Event = Event;

    fn handle_message(&mut self, now: Time, from: crate::Peer, message: Message) {
        Flood::handle_message(self, now, from.id, message);
    }
    fn handle_neighbor_up(&mut self, now: Time, peer: crate::Peer) {
        Flood::handle_neighbor_up(self, now, peer.id);
    }
    fn handle_neighbor_down(&mut self, now: Time, peer: &PeerId) {
        Flood::handle_neighbor_down(self, now, peer);
    }
    fn handle_timeout(&mut self, now: Time) {
        Flood::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Flood::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Flood::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::plumtree::tests::{
        distances, line, ms, payload, peer, random_graph, Core, Sim,
    };
    use super::*;
    use crate::proto::plumtree::message_id;

    impl Core for Flood {
        fn up(&mut self, now: Time, peer: PeerId) {
            self.handle_neighbor_up(now, peer)
        }
        fn down(&mut self, now: Time, peer: &PeerId) {
            self.handle_neighbor_down(now, peer)
        }
        fn publish(&mut self, now: Time, payload: Bytes) -> MsgId {
            self.broadcast(now, payload)
        }
        fn receive(&mut self, now: Time, from: PeerId, message: Message) {
            self.handle_message(now, from, message)
        }
        fn timeout(&mut self, now: Time) {
            self.handle_timeout(now)
        }
        fn output(&mut self) -> Option<Output> {
            self.poll_output()
        }
        fn deadline(&self) -> Option<Time> {
            self.poll_timeout()
        }
    }

    const NOW: Time = Duration::from_secs(100);
    const LATENCY: Duration = ms(10);

    fn floods(n: usize) -> Vec<Flood> {
        (0..n)
            .map(|i| Flood::new(peer(i), Config::default()))
            .collect()
    }

    fn node(neighbors: &[usize]) -> Flood {
        let mut node = Flood::new(peer(0), Config::default());
        for &i in neighbors {
            node.handle_neighbor_up(NOW, peer(i));
        }
        node
    }

    fn drain(node: &mut Flood) -> Vec<Output> {
        std::iter::from_fn(|| node.poll_output()).collect()
    }

    fn id(k: u8) -> MsgId {
        MsgId([k; 32])
    }

    fn gossip(k: u8, hops: u16) -> Message {
        Message::Gossip {
            id: id(k),
            hops,
            origin: peer(50),
            template: None,
            payload: payload(k as usize),
        }
    }

    fn send(to: usize, message: Message) -> Output {
        Output::Send {
            to: peer(to),
            message,
        }
    }

    fn delivered(k: u8, hops: u16, from: usize) -> Output {
        Output::Event(Event::Delivered {
            id: id(k),
            hops,
            from: Some(peer(from)),
            payload: payload(k as usize),
        })
    }

    #[test]
    fn broadcast_delivers_locally_and_sends_to_every_neighbor() {
        let mut node = node(&[1, 2, 3]);
        let id = node.broadcast(NOW, payload(4));
        assert_eq!(id, message_id(&peer(0), 0, &payload(4)));
        let gossip = Message::Gossip {
            id,
            hops: 1,
            origin: peer(0),
            template: None,
            payload: payload(4),
        };
        let local = Output::Event(Event::Delivered {
            id,
            hops: 0,
            from: None,
            payload: payload(4),
        });
        assert_eq!(
            drain(&mut node),
            vec![
                local,
                send(1, gossip.clone()),
                send(2, gossip.clone()),
                send(3, gossip),
            ]
        );
    }

    #[test]
    fn first_copy_is_forwarded_to_all_but_the_sender_and_duplicates_are_dropped() {
        let mut node = node(&[1, 2, 3]);
        node.handle_message(NOW, peer(2), gossip(1, 3));
        assert_eq!(
            drain(&mut node),
            vec![
                delivered(1, 3, 2),
                send(1, gossip(1, 4)),
                send(3, gossip(1, 4)),
            ]
        );
        node.handle_message(NOW, peer(1), gossip(1, 1));
        node.handle_message(NOW, peer(2), gossip(1, 3));
        assert!(drain(&mut node).is_empty());
    }

    #[test]
    fn plumtree_control_messages_are_ignored() {
        let mut node = node(&[1, 2]);
        node.handle_message(NOW, peer(1), gossip(1, 1));
        drain(&mut node);
        let announce = Message::IHave {
            entries: vec![(id(2), 1)],
        };
        node.handle_message(NOW, peer(1), announce);
        node.handle_message(NOW, peer(1), Message::Graft { id: id(1) });
        node.handle_message(NOW, peer(1), Message::Prune { origin: peer(1) });
        assert!(drain(&mut node).is_empty());
        assert_eq!(node.neighbors(), &[peer(1), peer(2)]);
    }

    #[test]
    fn neighbors_come_and_go() {
        let mut node = node(&[1, 2, 3]);
        node.handle_neighbor_down(NOW, &peer(2));
        node.handle_neighbor_down(NOW, &peer(9));
        node.handle_neighbor_up(NOW, peer(1));
        node.handle_neighbor_up(NOW, peer(0));
        assert_eq!(node.neighbors(), &[peer(1), peer(3)]);
        node.handle_message(NOW, peer(3), gossip(1, 1));
        assert_eq!(
            drain(&mut node),
            vec![delivered(1, 1, 3), send(1, gossip(1, 2))]
        );
    }

    #[test]
    fn seen_set_respects_capacity_and_expires_on_a_one_second_grid() {
        let config = Config {
            seen_capacity: 4,
            seen_ttl: Duration::from_secs(10),
        };
        let mut node = Flood::new(peer(0), config);
        node.handle_neighbor_up(NOW, peer(1));
        assert_eq!(node.poll_timeout(), None);
        let start = NOW + ms(300);
        for k in 0..6 {
            node.handle_message(start, peer(1), gossip(k, 1));
        }
        assert_eq!(drain(&mut node).len(), 6);
        assert_eq!(node.seen.len(), 4);
        // The oldest were forgotten, so they are new again.
        node.handle_message(start, peer(1), gossip(5, 1));
        assert!(drain(&mut node).is_empty());
        node.handle_message(start, peer(1), gossip(0, 1));
        assert_eq!(drain(&mut node), vec![delivered(0, 1, 1)]);
        let expiry = NOW + Duration::from_secs(11);
        assert_eq!(node.poll_timeout(), Some(expiry));
        node.handle_timeout(start + Duration::from_secs(10) - ms(1));
        assert_eq!(node.seen.len(), 4);
        node.handle_timeout(expiry);
        assert_eq!(node.seen.len(), 0);
        assert_eq!(node.poll_timeout(), None);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let mut node = node(&[1]);
        node.handle_message(NOW, peer(1), gossip(1, u16::MAX));
        assert_eq!(drain(&mut node), vec![delivered(1, u16::MAX, 1)]);
        let stranger = peer(50);
        node.handle_message(NOW, stranger, gossip(2, u16::MAX));
        assert_eq!(
            drain(&mut node),
            vec![delivered(2, u16::MAX, 50), send(1, gossip(2, u16::MAX))]
        );
        let big = Message::Gossip {
            id: id(3),
            hops: 1,
            origin: peer(50),
            template: None,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_BYTES + 1]),
        };
        node.handle_message(NOW, peer(1), big);
        assert!(drain(&mut node).is_empty());
        let end = Duration::MAX;
        node.handle_message(end, peer(1), gossip(4, 1));
        node.handle_timeout(end);
        assert_eq!(node.poll_timeout(), None);
    }

    #[test]
    fn first_broadcast_on_a_line_has_hops_equal_to_distance() {
        let n = 8;
        let mut sim = Sim::new(floods(n), &line(n), LATENCY);
        let start = sim.now;
        let id = sim.broadcast(5, payload(0));
        sim.run_for(Duration::from_secs(1));
        for (i, d) in sim.deliveries(id).into_iter().enumerate() {
            assert_eq!(d.hops as usize, i.abs_diff(5));
            assert_eq!(d.at, start + LATENCY * i.abs_diff(5) as u32);
        }
        assert_eq!(sim.sent.gossip, n - 1);
    }

    #[test]
    fn every_node_delivers_once_at_a_cost_of_degree_sum_minus_senders() {
        let n = 64;
        let edges = random_graph(n, 5, 21);
        let mut sim = Sim::new(floods(n), &edges, LATENCY);
        for (k, origin) in [0, 9, 33, 63].into_iter().enumerate() {
            let before = sim.sent.gossip;
            let id = sim.broadcast(origin, payload(k));
            sim.run_for(Duration::from_secs(1));
            let distance = distances(n, &edges, origin);
            for (i, d) in sim.deliveries(id).into_iter().enumerate() {
                assert_eq!(d.hops as usize, distance[i], "node {i}");
            }
            // Σ degree = 2·|E|; every node but the origin skips its sender.
            assert_eq!(sim.sent.gossip - before, 2 * edges.len() - (n - 1));
        }
        assert_eq!(sim.sent.ihave + sim.sent.graft + sim.sent.prune, 0);
        // Idle again once every seen id expired.
        sim.run_for(Config::default().seen_ttl + Duration::from_secs(2));
        assert!(sim.nodes.iter().all(|node| node.poll_timeout().is_none()));
    }
}
