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

pub use crate::config::ConfigError;
use crate::config::KeyError;
use crate::proto::gossipsub::{self, GossipSub, Topic};
use crate::proto::knowledge::{self, Knowledge};
use crate::proto::plumtree::{self, MsgId, MAX_PAYLOAD_BYTES};
use crate::proto::{flood, hyparview, kad};
use crate::transport::nat::{self, Route};
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
    pub nat: nat::Config,
    pub gossipsub: gossipsub::Config,
    /// Kademlia DHT (off by default).
    pub dht: kad::Config,
    pub knowledge: knowledge::Config,
    /// Sessions: crypto, rekeying, cookies, liveness.
    pub transport: crate::transport::session::Config,
}

impl Config {
    /// Check every section: the bounds on each key's doc line and the
    /// invariants each core relies on (a core given settings that fail
    /// here may panic or misbehave). Sections of cores that are off are
    /// checked too.
    ///
    /// # Errors
    ///
    /// The first key out of range, with its section, e.g.
    /// `[gossipsub] d: must be 1 to 64, got 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let keyed =
            |section: &'static str| move |e: KeyError| ConfigError::new(section, &e.key, e.message);
        self.hyparview.validate().map_err(keyed("hyparview"))?;
        self.plumtree.validate().map_err(keyed("plumtree"))?;
        self.flood.validate().map_err(keyed("flood"))?;
        self.nat.validate().map_err(keyed("nat"))?;
        self.gossipsub
            .validate()
            .map_err(|e| ConfigError::new("gossipsub", e.field, e.rule))?;
        self.dht.validate().map_err(|e| match e {
            kad::ConfigError::Invalid { field, value, rule } => {
                ConfigError::new("dht", field, format!("{rule}, got {value}"))
            }
        })?;
        self.knowledge
            .validate()
            .map_err(|e| ConfigError::new("knowledge", e.field(), e.rule()))?;
        self.transport.validate().map_err(keyed("transport"))
    }
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
    /// NAT traversal: reachability, reservations, paths, relay service.
    Traversal(nat::Event),
    /// Knowledge commons: document changes, commits, transfers, rejections.
    Knowledge(knowledge::Event),
    /// DHT: finished queries, rejected input.
    Dht(kad::Event),
    /// GossipSub: topic messages, mesh changes, rejections, scores.
    PubSub(gossipsub::Event),
}

/// Why a GossipSub request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PubSubError {
    #[error("GossipSub is not enabled on this node")]
    Disabled,
    #[error("topic name must be 1 to {} bytes", gossipsub::MAX_TOPIC_BYTES)]
    BadTopic,
    #[error("cannot subscribe to `{0}` (already subscribed, or at max_topics)")]
    Subscribe(String),
    #[error(transparent)]
    Publish(#[from] gossipsub::PublishError),
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
    /// Datagrams that arrived inside relay frames.
    pub relayed_in: u64,
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

/// Where a queued message goes.
#[derive(Clone, Copy, Debug)]
enum Dest {
    /// An address the overlay cores chose: routed by NAT traversal (direct,
    /// or through the relay of the peer at that address).
    Addr(SocketAddr),
    /// A peer, over whatever path it has.
    Peer(PeerId),
    /// Straight to the address, never relayed.
    Raw(SocketAddr),
}

/// A Grove node's protocol state.
pub struct Node {
    me: Peer,
    membership: hyparview::HyParView,
    broadcaster: Broadcaster,
    traversal: nat::Traversal,
    /// Topic meshes, when enabled.
    gossipsub: Option<Box<GossipSub>>,
    dht: Option<Box<kad::Kademlia>>,
    knowledge: Option<Box<Knowledge>>,
    /// A join waiting for NAT traversal to make the node reachable.
    pending_join: Option<SocketAddr>,
    now: Time,
    transmits: VecDeque<(Dest, Message)>,
    /// Datagrams that are not Grove's (NAT-PMP requests).
    foreign: VecDeque<(SocketAddr, Vec<u8>)>,
    scratch: Vec<u8>,
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
        // NAT traversal draws from its own stream, so that the overlay's
        // choices are the same whether it is on or off.
        let traversal_seed = first_seq ^ 0x6e61_7420_7472_6176;
        let traversal = nat::Traversal::new(me.id, addr, config.nat.clone(), traversal_seed);
        // The DHT too: its own stream. Without NAT traversal every node is
        // taken as public, hence a DHT server.
        let dht_rng =
            <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(first_seq ^ 0x6b61_6465_6d6c_6961);
        // Cores that are off take no memory (a simulated node is ~11 KB).
        let dht = config.dht.enabled.then(|| {
            let mut dht = kad::Kademlia::new(
                me.id,
                identity.signing_key().clone(),
                config.dht.clone(),
                dht_rng,
            );
            if !config.nat.enabled {
                dht.set_server(Time::ZERO, true);
            }
            Box::new(dht)
        });
        // So does the knowledge commons; `first_seq` also tells this life's
        // Loro peer id apart from earlier lives of the same identity.
        let knowledge_rng =
            <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(first_seq ^ 0x6b6e_6f77_6c65_6467);
        let knowledge = config.knowledge.enabled.then(|| {
            Box::new(Knowledge::new(
                me.id,
                first_seq,
                config.knowledge.clone(),
                knowledge_rng,
            ))
        });
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
        // GossipSub, too, has a stream of its own.
        let gossipsub = config.gossipsub.enabled.then(|| {
            let seed = first_seq ^ 0x676f_7373_6970_7375;
            let rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            let mut g = GossipSub::new(identity, config.gossipsub.clone(), rng);
            g.set_next_seq(first_seq);
            Box::new(g)
        });
        Node {
            me,
            gossipsub,
            membership: hyparview::HyParView::new(me, config.hyparview, rng),
            broadcaster,
            traversal,
            dht,
            knowledge,
            pending_join: None,
            now: Time::ZERO,
            transmits: VecDeque::new(),
            foreign: VecDeque::new(),
            // Only relayed datagrams are encoded here: grown on first use.
            scratch: Vec::new(),
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
    /// The DHT core (routing table, counters), when enabled.
    pub fn dht(&self) -> Option<&kad::Kademlia> {
        self.dht.as_deref()
    }
    /// What NAT traversal knows of this node's reachability.
    pub fn reach(&self) -> nat::Reach {
        self.traversal.reach()
    }
    /// The knowledge commons (documents, stats; read-only), when enabled.
    pub fn knowledge(&self) -> Option<&Knowledge> {
        self.knowledge.as_deref()
    }

    // ---- inputs ----

    /// Join the overlay through a contact known by address. A node behind
    /// a NAT first tries to reserve a relay slot with the contact (so that
    /// its peer record names a relay), for at most the configured wait.
    pub fn join(&mut self, now: Time, contact: SocketAddr) {
        self.now = now;
        self.traversal.begin(now);
        self.traversal.add_candidate(contact);
        self.traversal.handle_timeout(now);
        if let Some(dht) = &mut self.dht {
            dht.bootstrap(now, contact);
        }
        if self.traversal.ready_to_join(now) {
            self.membership.join(now, contact);
        } else {
            self.pending_join = Some(contact);
        }
        self.process(now);
    }

    /// Open a path to `peer` (known by its advertised record): directly,
    /// or through its relay, upgraded to a direct path where possible.
    pub fn connect(&mut self, now: Time, peer: Peer) {
        self.now = now;
        self.traversal.begin(now);
        if peer.id == self.me.id || !self.traversal.enabled() {
            return;
        }
        self.traversal.learn(now, &peer);
        let hello = Message::Nat(self.traversal.hello(peer.addr));
        let dest = if peer.relay.is_some() {
            Dest::Peer(peer.id)
        } else {
            Dest::Raw(peer.addr)
        };
        self.transmit(dest, hello);
        self.process(now);
    }

    /// Broadcast `payload` to every node; returns its id.
    pub fn broadcast(&mut self, now: Time, payload: Bytes) -> Result<MsgId, BroadcastError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(BroadcastError::TooLarge { len: payload.len() });
        }
        self.now = now;
        let id = self.broadcaster.broadcast(now, payload);
        self.process(now);
        Ok(id)
    }

    /// Subscribe to GossipSub `topic`.
    pub fn subscribe(&mut self, now: Time, topic: &str) -> Result<(), PubSubError> {
        let g = self.gossipsub.as_mut().ok_or(PubSubError::Disabled)?;
        let t = Topic::parse(topic).ok_or(PubSubError::BadTopic)?;
        self.now = now;
        if !g.subscribe(now, t) {
            return Err(PubSubError::Subscribe(topic.to_owned()));
        }
        self.process(now);
        Ok(())
    }

    /// Publish `data` on GossipSub `topic`; returns the message id.
    pub fn publish(&mut self, now: Time, topic: &str, data: Bytes) -> Result<MsgId, PubSubError> {
        let g = self.gossipsub.as_mut().ok_or(PubSubError::Disabled)?;
        let t = Topic::parse(topic).ok_or(PubSubError::BadTopic)?;
        self.now = now;
        let id = g.publish(now, t, data)?;
        self.process(now);
        Ok(id)
    }

    /// Check every GossipSub message with `validator` before delivery.
    pub fn set_pubsub_validator(&mut self, validator: gossipsub::Validator) {
        if let Some(g) = &mut self.gossipsub {
            g.set_validator(validator);
        }
    }

    /// The GossipSub core, when enabled.
    pub fn gossipsub(&self) -> Option<&GossipSub> {
        self.gossipsub.as_deref()
    }

    /// A DHT request (ignored when the DHT is off).
    pub fn dht_command(&mut self, now: Time, command: kad::Command) {
        self.now = now;
        if let Some(dht) = &mut self.dht {
            dht.command(now, command);
        }
        self.process(now);
    }

    /// Apply an edit to a knowledge document; returns the id of a tree
    /// node the edit created.
    pub fn knowledge_write(
        &mut self,
        now: Time,
        topic: &str,
        write: &knowledge::Write,
    ) -> Result<Option<String>, knowledge::WriteError> {
        self.now = now;
        let Some(k) = &mut self.knowledge else {
            return Err(knowledge::WriteError::Disabled);
        };
        let r = k.write(now, topic, write);
        self.process(now);
        r
    }

    /// Import an update this node committed in an earlier life.
    pub fn knowledge_restore(
        &mut self,
        now: Time,
        topic: &str,
        update: &[u8],
    ) -> Result<(), knowledge::WriteError> {
        self.now = now;
        let Some(k) = &mut self.knowledge else {
            return Err(knowledge::WriteError::Disabled);
        };
        let r = k.restore(now, topic, update);
        self.process(now);
        r
    }

    /// Leave the overlay gracefully: the neighbours are told (HyParView
    /// DISCONNECT), so they repair at once. Drain [`Node::poll_transmit`]
    /// before closing the socket; the node is then idle until it joins
    /// again.
    pub fn leave(&mut self, now: Time) {
        self.now = now;
        self.pending_join = None;
        self.membership.leave();
        self.process(now);
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.stats.datagrams_in += 1;
        self.traversal.begin(now);
        if self.traversal.is_gateway(from) {
            self.traversal.handle_gateway(now, bytes);
            self.process(now);
            return;
        }
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
        let hello = match &message {
            Message::Nat(nat::Message::Hello { reach, .. }) => Some(*reach),
            _ => None,
        };
        // A dial-back is a probe from a stranger, not the start of a
        // conversation: answering it (with HELLO) would open our NAT to the
        // helper and spoil the next probe that picks it.
        if !matches!(message, Message::Nat(nat::Message::DialBack { .. })) {
            self.traversal.on_direct(now, sender, from, hello);
        }
        let peer = Peer {
            id: sender,
            addr: from,
            relay: self.traversal.relay_of(&sender),
        };
        self.dispatch(now, peer, message, false);
        self.process(now);
    }

    /// Hand a decoded message from `peer` to its core. `via_relay`: it came
    /// inside a relay frame (which cannot nest).
    fn dispatch(&mut self, now: Time, peer: Peer, message: Message, via_relay: bool) {
        match message {
            Message::HyParView(m) => {
                self.learn_peers(now, &m);
                self.membership.handle_heard(now, &peer.id);
                self.membership.handle_message(now, peer, m);
            }
            Message::Plumtree(m) => {
                self.membership.handle_heard(now, &peer.id);
                self.broadcaster.handle_message(now, peer, m);
            }
            Message::PubSub(m) => {
                if let Some(g) = &mut self.gossipsub {
                    self.membership.handle_heard(now, &peer.id);
                    g.handle_message(now, peer, m);
                }
            }
            Message::Dht(m) => {
                if let Some(dht) = &mut self.dht {
                    dht.handle_message(now, Peer::new(peer.id, peer.addr), m);
                }
            }
            Message::Knowledge(chunk) => {
                if let Some(k) = &mut self.knowledge {
                    self.membership.handle_heard(now, &peer.id);
                    k.handle_chunk(now, peer, chunk);
                }
            }
            Message::Nat(m) => {
                let Some((source, source_addr, data)) =
                    self.traversal.handle_message(now, peer, via_relay, m)
                else {
                    return;
                };
                match wire::decode(&data) {
                    Ok(inner) if inner.from == source => {
                        self.stats.relayed_in += 1;
                        self.traversal
                            .on_relayed(now, source, peer.addr, source_addr);
                        // The address routes to this peer are kept under
                        // (the relay's view of it may differ from ours).
                        let from = Peer {
                            id: source,
                            addr: self.traversal.addr_of(&source).unwrap_or(source_addr),
                            relay: self.traversal.relay_of(&source),
                        };
                        self.dispatch(now, from, inner.message, true);
                    }
                    Ok(_) => {
                        self.stats.malformed_in += 1;
                        self.emit(Event::Traversal(nat::Event::Rejected {
                            from: peer.addr,
                            what: "relayed datagram whose sender is not the frame's source",
                        }));
                    }
                    Err(error) => {
                        self.stats.malformed_in += 1;
                        self.emit(Event::Dropped {
                            from: peer.addr,
                            error,
                        });
                    }
                }
            }
        }
    }

    /// Peer records the membership core hands on were stored when it first
    /// heard of each peer, possibly before the peer told us its relay: fill
    /// in what NAT traversal knows now, so that third parties can reach
    /// the peers these records name.
    fn refresh_records(&self, message: &mut Message) {
        if !self.traversal.enabled() {
            return;
        }
        let refresh = |p: &mut Peer| {
            if p.id == self.me.id {
                *p = self.me;
            } else if let Some(relay) = self.traversal.relay_of(&p.id) {
                p.relay = Some(relay);
            }
        };
        match message {
            Message::HyParView(hyparview::Message::ForwardJoin { joiner, .. }) => refresh(joiner),
            Message::HyParView(hyparview::Message::Shuffle { origin, peers, .. }) => {
                refresh(origin);
                peers.iter_mut().for_each(refresh);
            }
            Message::HyParView(hyparview::Message::ShuffleReply { peers }) => {
                peers.iter_mut().for_each(refresh);
            }
            _ => {}
        }
    }

    /// Peer records in membership messages carry relays: remember them, so
    /// that the overlay reaches those peers through their relays.
    fn learn_peers(&mut self, now: Time, m: &hyparview::Message) {
        if !self.traversal.enabled() {
            return;
        }
        match m {
            hyparview::Message::ForwardJoin { joiner, .. } => self.traversal.learn(now, joiner),
            hyparview::Message::Shuffle { origin, peers, .. } => {
                self.traversal.learn(now, origin);
                for p in peers {
                    self.traversal.learn(now, p);
                }
            }
            hyparview::Message::ShuffleReply { peers } => {
                for p in peers {
                    self.traversal.learn(now, p);
                }
            }
            _ => {}
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.traversal.begin(now);
        self.membership.handle_timeout(now);
        self.broadcaster.handle_timeout(now);
        if let Some(g) = &mut self.gossipsub {
            if g.wants_candidates() {
                g.add_candidates(self.membership.passive_view());
            }
            g.handle_timeout(now);
        }
        self.traversal.handle_timeout(now);
        if let Some(dht) = &mut self.dht {
            dht.handle_timeout(now);
        }
        if let Some(k) = &mut self.knowledge {
            k.handle_timeout(now);
        }
        self.process(now);
    }

    // ---- outputs ----

    /// The next datagram to send: its bytes are written to `out` (cleared
    /// first) and its destination returned.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        if let Some((dst, bytes)) = self.foreign.pop_front() {
            out.clear();
            out.extend_from_slice(&bytes);
            self.stats.datagrams_out += 1;
            return Some(dst);
        }
        let now = self.now;
        while let Some((dest, mut message)) =
            crate::compact::pop_front_releasing(&mut self.transmits)
        {
            self.refresh_records(&mut message);
            let route = match dest {
                Dest::Raw(a) => Route::Direct(a),
                Dest::Addr(a) => self.traversal.route_addr(now, a),
                Dest::Peer(id) => self.traversal.route_peer(now, id),
            };
            let datagram = Datagram {
                from: self.me.id,
                message,
            };
            let (buf, dst) = match route {
                Route::Drop => continue,
                Route::Direct(a) => (&mut *out, Some(a)),
                Route::Relayed(_) => (&mut self.scratch, None),
            };
            buf.clear();
            if let Err(e) = wire::encode(&datagram, buf) {
                // The cores bound what they put in a message, so this is a
                // bug; skip the message rather than stop the node.
                debug_assert!(false, "unencodable message {:?}: {e}", datagram.message);
                tracing::error!("dropping unencodable message: {e}");
                continue;
            }
            if let Some(dst) = dst {
                self.traversal.on_sent(now, dst);
                self.stats.datagrams_out += 1;
                return Some(dst);
            }
            if let Route::Relayed(peer) = route {
                if self.scratch.len() <= wire::MAX_RELAYED_BYTES {
                    let data = Bytes::copy_from_slice(&self.scratch);
                    self.traversal.send_relayed(now, peer, data);
                    self.drain_traversal();
                }
            }
        }
        None
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        crate::compact::pop_front_releasing(&mut self.events)
    }

    /// When [`Node::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let join = self.pending_join.map(|_| self.traversal.join_deadline());
        [
            self.membership.poll_timeout(),
            self.broadcaster.poll_timeout(),
            self.gossipsub.as_ref().and_then(|g| g.poll_timeout()),
            self.traversal.poll_timeout(),
            self.dht.as_ref().and_then(|d| d.poll_timeout()),
            self.knowledge.as_ref().and_then(|k| k.poll_timeout()),
            join,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    /// Move the cores' outputs into the node's queues, feeding membership
    /// changes to the broadcast layer, until both cores are quiet.
    fn process(&mut self, now: Time) {
        loop {
            let mut progressed = self.drain_traversal();
            if let Some(contact) = self.pending_join {
                if self.traversal.ready_to_join(now) {
                    self.pending_join = None;
                    self.membership.join(now, contact);
                }
            }
            while let Some(out) = self.membership.poll_output() {
                progressed = true;
                match out {
                    hyparview::Output::Send { to, message } => {
                        self.transmit(Dest::Addr(to), Message::HyParView(message))
                    }
                    hyparview::Output::Event(hyparview::Event::NeighborUp(peer)) => {
                        self.broadcaster.neighbor_up(now, peer);
                        if let Some(g) = &mut self.gossipsub {
                            g.handle_neighbor_up(now, peer);
                        }
                        if let Some(dht) = &mut self.dht {
                            if peer.relay.is_none() {
                                dht.add_neighbor(now, peer);
                            }
                        }
                        if let Some(k) = &mut self.knowledge {
                            k.handle_neighbor_up(now, peer);
                        }
                        self.emit(Event::NeighborUp(peer));
                    }
                    hyparview::Output::Event(hyparview::Event::NeighborDown(id)) => {
                        self.broadcaster.neighbor_down(now, &id);
                        if let Some(g) = &mut self.gossipsub {
                            g.handle_neighbor_down(now, &id);
                        }
                        if let Some(k) = &mut self.knowledge {
                            k.handle_neighbor_down(now, &id);
                        }
                        self.emit(Event::NeighborDown(id));
                    }
                }
            }
            while let Some(out) = self.broadcaster.poll_output() {
                progressed = true;
                match out {
                    plumtree::Output::Send { to, message } => {
                        self.transmit(Dest::Addr(to), Message::Plumtree(message))
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
            if self.drain_gossipsub() {
                progressed = true;
            }
            while let Some(out) = self.dht.as_mut().and_then(|d| d.poll_output()) {
                progressed = true;
                match out {
                    kad::Output::Send { to, message } => {
                        self.transmit(Dest::Raw(to), Message::Dht(message))
                    }
                    kad::Output::Event(e) => self.emit(Event::Dht(e)),
                }
            }
            while let Some(out) = self.knowledge.as_mut().and_then(|k| k.poll_output()) {
                progressed = true;
                match out {
                    knowledge::Output::Send { to, chunk } => {
                        self.transmit(Dest::Addr(to.addr), Message::Knowledge(chunk))
                    }
                    knowledge::Output::Event(e) => self.emit(Event::Knowledge(e)),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Move GossipSub's outputs into the node's queues; whether there were
    /// any.
    fn drain_gossipsub(&mut self) -> bool {
        let mut any = false;
        while let Some(out) = self.gossipsub.as_mut().and_then(|g| g.poll_output()) {
            any = true;
            match out {
                gossipsub::Output::Send { to, message } => {
                    self.transmit(Dest::Addr(to), Message::PubSub(message))
                }
                gossipsub::Output::Event(e) => self.emit(Event::PubSub(e)),
            }
        }
        any
    }

    /// Move NAT traversal's outputs into the node's queues; whether there
    /// were any.
    fn drain_traversal(&mut self) -> bool {
        let mut any = false;
        while let Some(out) = self.traversal.poll_output() {
            any = true;
            match out {
                nat::Output::Raw(to, m) => self.transmit(Dest::Raw(to), Message::Nat(m)),
                nat::Output::ToPeer(id, m) => self.transmit(Dest::Peer(id), Message::Nat(m)),
                nat::Output::Bytes(to, bytes) => {
                    if self.foreign.len() < 16 {
                        self.foreign.push_back((to, bytes));
                    }
                }
                nat::Output::Event(e) => {
                    if let nat::Event::Reachability { advertised, reach } = &e {
                        self.me = *advertised;
                        self.membership.set_me(*advertised);
                        if let Some(dht) = &mut self.dht {
                            dht.set_server(self.now, reach.is_public());
                        }
                    }
                    self.emit(Event::Traversal(e));
                }
            }
        }
        any
    }

    fn transmit(&mut self, to: Dest, message: Message) {
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
