//! One Grove node: HyParView membership with a broadcast layer on top
//! (Plumtree, or plain flooding for the HyParView paper's experiments),
//! GossipSub, the Kademlia DHT and the knowledge commons when enabled,
//! behind one datagram interface.
//!
//! Every core implements [`Core`]; the node drives them all the same way
//! (through `Composed`, each core's messages and events turned into the
//! node's by `From` conversions): a message goes to the core of its
//! protocol, timeouts and neighbour changes go to every core, and outputs
//! are drained in a fixed order (the transport, the membership layer, then
//! the other cores in `Cores::ORDER`). A new protocol is one module and
//! one entry in the `Cores` table.
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
use crate::message::Message;
use crate::proto::gossipsub::{self, GossipSub, Topic};
use crate::proto::knowledge::{self, Knowledge};
use crate::proto::plumtree::{self, MsgId, MAX_PAYLOAD_BYTES};
use crate::proto::{flood, hyparview, kad, Core, Output};
use crate::rejoin::{self, Candidate, Rejoin};
use crate::transport::{self, nat, session, DropReason, Transmit, Transport};
use crate::wire::Protocol;
use crate::{Identity, Peer, PeerId, Time};

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
    /// The peer cache and how the node gets back into the overlay.
    pub rejoin: rejoin::Config,
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
        self.transport.validate().map_err(keyed("transport"))?;
        self.rejoin.validate().map_err(keyed("rejoin"))
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
    /// A session with `peer` came up: a handshake proved that the other end
    /// holds `peer`'s identity key (the first session, or the first after
    /// the previous one was lost; not on rekeying).
    Connected { peer: PeerId },
    /// A datagram from `from` was dropped: it did not authenticate, was a
    /// replay, or its plaintext was malformed.
    Dropped {
        from: SocketAddr,
        reason: DropReason,
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
    #[error("not subscribed to `{0}`")]
    NotSubscribed(String),
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
    /// Datagrams dropped: unauthenticated, replayed or malformed.
    pub malformed_in: u64,
    /// Datagrams that arrived inside relay frames.
    pub relayed_in: u64,
    pub event_overflow: u64,
    /// Rejoin rounds: candidates tried because the active view stayed
    /// empty (or at start).
    pub rejoin_rounds: u64,
}

/// How a node's cores' events become its own (the parent's view of each
/// child's events, as in iroh-gossip's layering).
impl From<hyparview::Event> for Event {
    fn from(event: hyparview::Event) -> Event {
        match event {
            hyparview::Event::NeighborUp(peer) => Event::NeighborUp(peer),
            hyparview::Event::NeighborDown(peer) => Event::NeighborDown(peer),
        }
    }
}

impl From<plumtree::Event> for Event {
    fn from(event: plumtree::Event) -> Event {
        let plumtree::Event::Delivered {
            id,
            hops,
            from,
            payload,
        } = event;
        Event::Delivered {
            id,
            hops,
            from,
            payload,
        }
    }
}

impl From<gossipsub::Event> for Event {
    fn from(event: gossipsub::Event) -> Event {
        Event::PubSub(event)
    }
}

impl From<kad::Event> for Event {
    fn from(event: kad::Event) -> Event {
        Event::Dht(event)
    }
}

impl From<knowledge::Event> for Event {
    fn from(event: knowledge::Event) -> Event {
        Event::Knowledge(event)
    }
}

/// A core as the node drives it: its messages and events in the node's
/// types, so that one piece of code drives every core.
trait Composed {
    fn shows_liveness(&self) -> bool;
    fn handle(&mut self, now: Time, from: Peer, message: Message);
    fn neighbor_up(&mut self, now: Time, peer: Peer);
    fn neighbor_down(&mut self, now: Time, peer: &PeerId);
    fn timeout(&mut self, now: Time, passive: &[Peer]);
    fn poll(&mut self) -> Option<Output<Message, Event>>;
    fn deadline(&self) -> Option<Time>;
    fn record(&self, peer: &PeerId) -> Option<&Peer>;
    fn vouched(&self, peer: &PeerId) -> Option<&Peer>;
}

impl<C> Composed for C
where
    C: Core,
    C::Message: TryFrom<Message> + Into<Message>,
    C::Event: Into<Event>,
{
    fn shows_liveness(&self) -> bool {
        C::SHOWS_LIVENESS
    }
    /// The message, if it is this core's protocol's.
    fn handle(&mut self, now: Time, from: Peer, message: Message) {
        if let Ok(message) = C::Message::try_from(message) {
            self.handle_message(now, from, message);
        }
    }
    fn neighbor_up(&mut self, now: Time, peer: Peer) {
        self.handle_neighbor_up(now, peer);
    }
    fn neighbor_down(&mut self, now: Time, peer: &PeerId) {
        self.handle_neighbor_down(now, peer);
    }
    fn timeout(&mut self, now: Time, passive: &[Peer]) {
        self.handle_candidates(now, passive);
        self.handle_timeout(now);
    }
    fn poll(&mut self) -> Option<Output<Message, Event>> {
        Some(match self.poll_output()? {
            Output::Send { to, message } => Output::Send {
                to,
                message: message.into(),
            },
            Output::Event(event) => Output::Event(event.into()),
        })
    }
    fn deadline(&self) -> Option<Time> {
        self.poll_timeout()
    }
    fn record(&self, peer: &PeerId) -> Option<&Peer> {
        self.record_of(peer)
    }
    fn vouched(&self, peer: &PeerId) -> Option<&Peer> {
        self.vouched_record(peer)
    }
}

/// Plumtree, or flooding for the HyParView paper's experiments.
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
    fn core_mut(&mut self) -> &mut dyn Composed {
        match self {
            Broadcaster::Plumtree(p) => p.as_mut(),
            Broadcaster::Flood(f) => f,
        }
    }
    fn core(&self) -> &dyn Composed {
        match self {
            Broadcaster::Plumtree(p) => p.as_ref(),
            Broadcaster::Flood(f) => f,
        }
    }
}

/// The cores above the membership layer, by the protocol each speaks. A
/// new protocol is a field here, its place in [`Cores::ORDER`] and its arm
/// in [`Cores::get_mut`] and [`Cores::get`] (beside its section of
/// [`Config`] and its construction in [`Node::new`]); the node drives
/// every core through these.
struct Cores {
    broadcast: Broadcaster,
    /// Topic meshes, when enabled.
    pubsub: Option<Box<GossipSub>>,
    dht: Option<Box<kad::Kademlia>>,
    knowledge: Option<Box<Knowledge>>,
}

impl Cores {
    /// The order in which the node feeds and drains them, after the
    /// membership layer.
    const ORDER: [Protocol; 4] = [
        Protocol::Broadcast,
        Protocol::PubSub,
        Protocol::Dht,
        Protocol::Knowledge,
    ];

    /// The core speaking `protocol`, if it is on (the membership layer and
    /// the transport's own protocol are not here).
    fn get_mut(&mut self, protocol: Protocol) -> Option<&mut dyn Composed> {
        match protocol {
            Protocol::Broadcast => Some(self.broadcast.core_mut()),
            Protocol::PubSub => Some(self.pubsub.as_deref_mut()?),
            Protocol::Dht => Some(self.dht.as_deref_mut()?),
            Protocol::Knowledge => Some(self.knowledge.as_deref_mut()?),
            Protocol::Membership | Protocol::Traversal => None,
        }
    }

    fn get(&self, protocol: Protocol) -> Option<&dyn Composed> {
        match protocol {
            Protocol::Broadcast => Some(self.broadcast.core()),
            Protocol::PubSub => Some(self.pubsub.as_deref()?),
            Protocol::Dht => Some(self.dht.as_deref()?),
            Protocol::Knowledge => Some(self.knowledge.as_deref()?),
            Protocol::Membership | Protocol::Traversal => None,
        }
    }
}

/// A Grove node's protocol state.
pub struct Node {
    me: Peer,
    membership: hyparview::HyParView,
    cores: Cores,
    /// Sessions and paths: the only part that knows addresses.
    transport: Transport,
    /// A contact to join through, by address, until the transport knows
    /// who it is and NAT traversal lets the node join.
    pending_join: Option<SocketAddr>,
    /// The contact's record, once identified.
    contact: Option<Peer>,
    /// The peer cache, the bootstrap contacts, and when to try them.
    rejoin: Box<Rejoin>,
    now: Time,
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
        // The transport's parts draw from streams of their own, so that the
        // overlay's choices are the same whether NAT traversal is on or off.
        let nat_seed = first_seq ^ 0x6e61_7420_7472_6176;
        let session_seed = first_seq ^ 0x7365_7373_696f_6e73;
        let transport = Transport::new(
            identity,
            addr,
            config.nat.clone(),
            config.transport.clone(),
            nat_seed,
            session_seed,
        );
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
        let broadcast = match config.broadcast {
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
            rejoin: Box::new(Rejoin::new(config.rejoin.clone())),
            membership: hyparview::HyParView::new(me, config.hyparview, rng),
            cores: Cores {
                broadcast,
                pubsub: gossipsub,
                dht,
                knowledge,
            },
            transport,
            pending_join: None,
            contact: None,
            now: Time::ZERO,
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
        let t = self.transport.stats();
        Stats {
            datagrams_in: t.datagrams_in,
            datagrams_out: t.datagrams_out,
            malformed_in: t.dropped_in,
            relayed_in: t.relayed_in,
            rejoin_rounds: self.rejoin.rounds,
            ..self.stats
        }
    }
    /// The DHT core (routing table, counters), when enabled.
    pub fn dht(&self) -> Option<&kad::Kademlia> {
        self.cores.dht.as_deref()
    }
    /// What NAT traversal knows of this node's reachability.
    pub fn reach(&self) -> nat::Reach {
        self.transport.nat().reach()
    }
    /// The session layer's counters (handshakes, seals, drops).
    pub fn session_stats(&self) -> session::Stats {
        self.transport.sessions().stats()
    }
    /// How a datagram to `peer` would travel now: relayed when NAT
    /// traversal routes it through a relay, direct otherwise (always,
    /// without NAT traversal).
    pub fn path_kind(&self, peer: &PeerId) -> nat::PathKind {
        self.transport
            .nat()
            .path_kind(self.now, peer)
            .unwrap_or(nat::PathKind::Direct)
    }
    /// The transport (sessions, NAT traversal, counters; read-only).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
    /// Count traffic by protocol from now on (the daemon's metrics; off by
    /// default, so that a simulated node does not pay for it).
    pub fn count_traffic(&mut self) {
        self.transport.count_traffic();
    }
    /// Traffic by protocol, if [`Node::count_traffic`] was called.
    pub fn traffic(&self) -> Option<&transport::Traffic> {
        self.transport.traffic()
    }
    /// The knowledge commons (documents, stats; read-only), when enabled.
    pub fn knowledge(&self) -> Option<&Knowledge> {
        self.cores.knowledge.as_deref()
    }

    /// The peer cache: recent distinct neighbours, most recent first.
    pub fn peer_cache(&self) -> &[Peer] {
        self.rejoin.cache.peers()
    }

    /// Whether the peer cache changed since the last call (the driver then
    /// saves it).
    pub fn take_peer_cache_changed(&mut self) -> bool {
        self.rejoin.cache.take_changed()
    }

    // ---- inputs ----

    /// Fill the peer cache from the store (most recent first); before
    /// [`Node::start`].
    pub fn load_peer_cache(&mut self, peers: &[Peer]) {
        self.rejoin.cache.load(peers, &self.me.id);
    }

    /// The contacts to join through when the peer cache gives no way in.
    pub fn set_bootstrap(&mut self, contacts: &[SocketAddr]) {
        self.rejoin.set_bootstrap(contacts);
    }

    /// Get into the overlay: the first rejoin round at once (cached peers,
    /// then a bootstrap contact), then another every `rejoin.retry` while
    /// the active view is empty. The driver calls it when it starts.
    pub fn start(&mut self, now: Time) {
        self.now = now;
        if self.membership.active_view().is_empty() {
            self.rejoin.restart(now);
            self.rejoin_round(now);
            self.process(now);
        }
    }

    /// Join the overlay through a contact known by address. The transport
    /// first asks the contact who it is (its key, which the session then
    /// proves); a node behind a NAT also tries to reserve a relay slot
    /// with the contact (so that its peer record names a relay), for at
    /// most the configured wait.
    pub fn join(&mut self, now: Time, contact: SocketAddr) {
        self.now = now;
        self.pending_join = Some(contact);
        self.contact = None;
        self.transport.contact(now, contact);
        self.transport.handle_timeout(now);
        self.process(now);
    }

    /// Open a path to `peer` (known by its advertised record): directly,
    /// or through its relay, upgraded to a direct path where possible.
    pub fn connect(&mut self, now: Time, peer: Peer) {
        self.now = now;
        self.transport.begin(now);
        if peer.id == self.me.id || !self.transport.nat().enabled() {
            return;
        }
        self.transport.hint(now, &peer);
        let hello = Message::Nat(self.transport.nat().hello(peer.addr));
        self.transport.send_vouched(now, &peer, &hello);
        self.process(now);
    }

    /// Broadcast `payload` to every node; returns its id.
    pub fn broadcast(&mut self, now: Time, payload: Bytes) -> Result<MsgId, BroadcastError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(BroadcastError::TooLarge { len: payload.len() });
        }
        self.now = now;
        let id = self.cores.broadcast.broadcast(now, payload);
        self.process(now);
        Ok(id)
    }

    /// Subscribe to GossipSub `topic`.
    pub fn subscribe(&mut self, now: Time, topic: &str) -> Result<(), PubSubError> {
        let g = self.cores.pubsub.as_mut().ok_or(PubSubError::Disabled)?;
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
        let g = self.cores.pubsub.as_mut().ok_or(PubSubError::Disabled)?;
        let t = Topic::parse(topic).ok_or(PubSubError::BadTopic)?;
        self.now = now;
        let id = g.publish(now, t, data)?;
        self.process(now);
        Ok(id)
    }

    /// Leave GossipSub `topic`: the mesh is pruned and every peer told.
    ///
    /// # Errors
    ///
    /// [`PubSubError::NotSubscribed`] when the node is not subscribed to
    /// `topic` (or the name is not a topic).
    pub fn unsubscribe(&mut self, now: Time, topic: &str) -> Result<(), PubSubError> {
        let g = self.cores.pubsub.as_mut().ok_or(PubSubError::Disabled)?;
        let t = Topic::parse(topic).ok_or(PubSubError::BadTopic)?;
        if !g.is_subscribed(&t) {
            return Err(PubSubError::NotSubscribed(topic.to_owned()));
        }
        self.now = now;
        g.unsubscribe(now, &t);
        self.process(now);
        Ok(())
    }

    /// Check every GossipSub message with `validator` before delivery.
    pub fn set_pubsub_validator(&mut self, validator: gossipsub::Validator) {
        if let Some(g) = &mut self.cores.pubsub {
            g.set_validator(validator);
        }
    }

    /// The GossipSub core, when enabled.
    pub fn gossipsub(&self) -> Option<&GossipSub> {
        self.cores.pubsub.as_deref()
    }

    /// A DHT request (ignored when the DHT is off).
    pub fn dht_command(&mut self, now: Time, command: kad::Command) {
        self.now = now;
        if let Some(dht) = &mut self.cores.dht {
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
        let Some(k) = &mut self.cores.knowledge else {
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
        let Some(k) = &mut self.cores.knowledge else {
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
        self.rejoin.stop();
        self.membership.leave();
        self.process(now);
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        if let Some(incoming) = self.transport.handle_datagram(now, from, bytes) {
            self.dispatch(now, incoming.from, incoming.message);
        }
        self.process(now);
    }

    /// Hand a message from an authenticated peer to its core (the
    /// membership layer first notes its sender alive).
    fn dispatch(&mut self, now: Time, peer: Peer, message: Message) {
        for record in message.peer_records() {
            self.transport.hint(now, record);
        }
        let protocol = message.protocol();
        if protocol == Protocol::Membership {
            self.membership.handle_heard(now, &peer.id);
            Composed::handle(&mut self.membership, now, peer, message);
            return;
        }
        // The transport keeps its own messages; a core that is off drops
        // its protocol's.
        let Some(core) = self.cores.get_mut(protocol) else {
            return;
        };
        if core.shows_liveness() {
            self.membership.handle_heard(now, &peer.id);
        }
        core.handle(now, peer, message);
    }

    /// Peer records the membership core hands on were stored when it first
    /// heard of each peer, possibly before the peer told us its relay: fill
    /// in what the transport knows now, so that third parties can reach
    /// the peers these records name.
    fn refresh_records(&self, message: &mut hyparview::Message) {
        if !self.transport.nat().enabled() {
            return;
        }
        let refresh = |p: &mut Peer| {
            if p.id == self.me.id {
                *p = self.me;
            } else if let Some(relay) = self.transport.nat().relay_of(&p.id) {
                p.relay = Some(relay);
            }
        };
        match message {
            hyparview::Message::ForwardJoin { joiner, .. } => refresh(joiner),
            hyparview::Message::Shuffle { origin, peers, .. } => {
                refresh(origin);
                peers.iter_mut().for_each(refresh);
            }
            hyparview::Message::ShuffleReply { peers, .. } => {
                peers.iter_mut().for_each(refresh);
            }
            _ => {}
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        self.rejoin_round(now);
        self.transport.handle_timeout(now);
        self.membership.handle_timeout(now);
        for protocol in Cores::ORDER {
            if let Some(core) = self.cores.get_mut(protocol) {
                core.timeout(now, self.membership.passive_view());
            }
        }
        self.process(now);
    }

    // ---- outputs ----

    /// The next datagram to send: its bytes are written to `out` (cleared
    /// first); its destination and label are returned.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Transmit> {
        self.transport.poll_transmit(out)
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        crate::compact::pop_front_releasing(&mut self.events)
    }

    /// When [`Node::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let join = self
            .pending_join
            .filter(|_| self.contact.is_some())
            .map(|_| self.transport.nat().join_deadline());
        let cores = Cores::ORDER
            .into_iter()
            .filter_map(|p| self.cores.get(p)?.deadline());
        [
            self.membership.poll_timeout(),
            self.transport.poll_timeout(),
            join,
            self.rejoin.deadline(),
        ]
        .into_iter()
        .flatten()
        .chain(cores)
        .min()
    }

    // ---- internals ----

    /// Move the cores' outputs into the transport and the node's events,
    /// feeding membership changes to the other cores, until all are quiet.
    /// Each round drains the transport, then the membership layer, then
    /// every other core in [`Cores::ORDER`].
    fn process(&mut self, now: Time) {
        loop {
            let mut progressed = self.drain_transport(now);
            self.try_join(now);
            while let Some(out) = Composed::poll(&mut self.membership) {
                progressed = true;
                self.apply(now, out, None);
            }
            for protocol in Cores::ORDER {
                while let Some(out) = self.cores.get_mut(protocol).and_then(|c| c.poll()) {
                    progressed = true;
                    let vouched = match &out {
                        Output::Send { to, .. } => self
                            .cores
                            .get(protocol)
                            .and_then(|c| c.vouched(to))
                            .copied(),
                        Output::Event(_) => None,
                    };
                    self.apply(now, out, vouched);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// One output of a core: a message leaves through the transport (to
    /// the record the core vouches for, if any); a neighbour change
    /// reaches every other core, then the application, like every other
    /// event.
    fn apply(&mut self, now: Time, out: Output<Message, Event>, vouched: Option<Peer>) {
        match out {
            Output::Send { to, mut message } => {
                if let Message::HyParView(m) = &mut message {
                    self.refresh_records(m);
                }
                match vouched {
                    Some(record) => self.transport.send_vouched(now, &record, &message),
                    None => self.send(now, to, &message),
                }
            }
            Output::Event(Event::NeighborUp(peer)) => {
                self.rejoin.cache.seen(peer);
                self.rejoin.view(now, false);
                self.transport.hint(now, &peer);
                for protocol in Cores::ORDER {
                    if let Some(core) = self.cores.get_mut(protocol) {
                        core.neighbor_up(now, peer);
                    }
                }
                self.emit(Event::NeighborUp(peer));
            }
            Output::Event(Event::NeighborDown(id)) => {
                for protocol in Cores::ORDER {
                    if let Some(core) = self.cores.get_mut(protocol) {
                        core.neighbor_down(now, &id);
                    }
                }
                if self.membership.active_view().is_empty() {
                    self.rejoin.view(now, true);
                }
                self.emit(Event::NeighborDown(id));
            }
            Output::Event(event) => self.emit(event),
        }
    }

    /// Send `message` to `to`. The transport's address book is a small
    /// cache; when it has forgotten `to`, the record comes from the core
    /// that holds it (the membership views, GossipSub's peers, the DHT's
    /// table and lookups), as a hint that never overrides an authenticated
    /// address.
    fn send(&mut self, now: Time, to: PeerId, message: &Message) {
        if !self.transport.knows(&to) {
            if let Some(record) = self.record_of(&to) {
                self.transport.hint(now, &record);
            }
        }
        self.transport.send(now, to, message);
    }

    /// The record of `peer` held by a core.
    fn record_of(&self, peer: &PeerId) -> Option<Peer> {
        let cores = || {
            Cores::ORDER
                .into_iter()
                .find_map(|p| self.cores.get(p)?.record(peer))
        };
        self.membership.record_of(peer).or_else(cores).copied()
    }

    /// The rejoin round due at `now`, if any. The round's first cached peer
    /// is joined through, as a bootstrap contact would be (a JOIN, whose
    /// forwarded walks give the node several neighbours at once, and the
    /// DHT's bootstrap), but without asking who it is: its record is known.
    /// The other cached peers are suggested to the membership layer (which
    /// asks them to be neighbours), in case the first is gone. A bootstrap
    /// contact is joined by address. Neither replaces a join already
    /// waiting for NAT traversal with an identified contact.
    fn rejoin_round(&mut self, now: Time) {
        if self.rejoin.deadline().is_none_or(|t| t > now) {
            return;
        }
        let mut candidates = Vec::new();
        self.rejoin.poll(now, &mut candidates);
        let mut peers = Vec::new();
        // A bootstrap contact in the round (the first round after a start)
        // takes the join; the cached peers are then all suggested.
        let by_addr = candidates.iter().any(|c| matches!(c, Candidate::Addr(_)));
        for c in candidates {
            let free = self.pending_join.is_none() || self.contact.is_none();
            match c {
                Candidate::Peer(p) if !by_addr && peers.is_empty() && free => {
                    // As a contact: NAT traversal may also ask it for
                    // AutoNAT and a relay slot.
                    self.transport.hint(now, &p);
                    self.transport.contact(now, p.addr);
                    self.pending_join = Some(p.addr);
                    self.contact = Some(p);
                    peers.push(p);
                }
                Candidate::Peer(p) => peers.push(p),
                Candidate::Addr(addr) => {
                    if free {
                        self.pending_join = Some(addr);
                        self.contact = None;
                        self.transport.contact(now, addr);
                    }
                }
            }
        }
        // The joined peer (if any) is first; the join itself is made by
        // `try_join` once NAT traversal is ready.
        let suggested = match self.contact {
            Some(c) if peers.first() == Some(&c) => &peers[1..],
            _ => &peers[..],
        };
        if !suggested.is_empty() {
            for p in suggested {
                self.transport.hint(now, p);
            }
            self.membership.suggest(now, suggested);
        }
    }

    /// Join once the contact is identified and NAT traversal is ready.
    fn try_join(&mut self, now: Time) {
        let Some(contact) = self.contact else {
            return;
        };
        if self.pending_join.is_none() || !self.transport.nat().ready_to_join(now) {
            return;
        }
        self.pending_join = None;
        self.membership.join(now, contact);
        if let Some(dht) = &mut self.cores.dht {
            dht.bootstrap(now, contact);
        }
    }

    /// Move the transport's events along; whether there were any.
    fn drain_transport(&mut self, now: Time) -> bool {
        let mut any = false;
        while let Some(e) = self.transport.poll_event() {
            any = true;
            match e {
                transport::Event::Identified { addr, peer } => {
                    if self.pending_join == Some(addr) {
                        self.contact = Some(Peer::new(peer, addr));
                    }
                }
                transport::Event::Connected { peer } => self.emit(Event::Connected { peer }),
                transport::Event::Dead { peer } => {
                    self.membership.handle_peer_dead(now, &peer);
                }
                transport::Event::Dropped { from, reason } => {
                    self.emit(Event::Dropped { from, reason })
                }
                transport::Event::Traversal(e) => {
                    if let nat::Event::Reachability { advertised, reach } = &e {
                        self.me = *advertised;
                        self.membership.set_me(*advertised);
                        if let Some(dht) = &mut self.cores.dht {
                            dht.set_server(now, reach.is_public());
                        }
                    }
                    self.emit(Event::Traversal(e));
                }
            }
        }
        any
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
            while let Some(dst) = node.poll_transmit(&mut out).map(|t| t.dst) {
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
    fn a_crowd_joining_through_one_contact_all_get_neighbours() {
        let mut config = Config {
            broadcast: BroadcastMode::Flood,
            ..Config::default()
        };
        config.nat.enabled = false;
        let n = 60;
        // A contact that can hold only a few sessions: a crowd's handshakes
        // must not push each other's half-done sessions out.
        config.transport.max_sessions = 8;
        let mut w = World::new(n, config);
        for i in 2..=n {
            let now = Duration::from_millis(20 * u64::from(i));
            w.run_until(now);
            w.nodes.get_mut(&addr(i)).unwrap().join(now, addr(1));
            w.drain(addr(i));
        }
        w.run_until(Duration::from_secs(30));
        let lonely: Vec<_> = w
            .nodes
            .iter()
            .filter(|(_, node)| node.active_view().is_empty())
            .map(|(a, node)| (*a, node.stats(), node.session_stats()))
            .collect();
        assert!(
            lonely.is_empty(),
            "{} without neighbours: {:?}",
            lonely.len(),
            &lonely[..lonely.len().min(3)]
        );
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
                Event::Dropped { from, reason } => Some((*from, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.len(), 2, "{dropped:?}");
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

    /// A node restarted with only its peer cache (no bootstrap contact):
    /// `cache` is what its store kept. It is back in the overlay within a
    /// second, with how many neighbours?
    fn restart_with_cache(cache: &[Peer]) -> usize {
        let mut config = Config::default();
        config.nat.enabled = false;
        let mut w = World::new(12, config.clone());
        join_all(&mut w, 12);
        // Node 12 comes back as a new life of the same identity.
        let identity = Identity::from_seed([12; 32]);
        let mut node = Node::new(&identity, addr(12), config, ChaCha8Rng::seed_from_u64(99));
        node.load_peer_cache(cache);
        let now = w.now;
        node.start(now);
        w.nodes.insert(addr(12), node);
        w.drain(addr(12));
        w.run_until(now + Duration::from_secs(1));
        w.nodes[&addr(12)].active_view().len()
    }

    #[test]
    fn a_node_rejoins_through_its_cached_peers_as_through_a_contact() {
        let peer = |i: u8| Peer::new(Identity::from_seed([i; 32]).peer_id(), addr(i));
        // The most recent cached peer is joined through: its JOIN is
        // forwarded, and more peers than the one asked take the node in.
        let through_live = restart_with_cache(&[peer(5), peer(6)]);
        assert!(through_live >= 2, "{through_live} neighbours");
        // When it is gone, the next ones are asked to be neighbours in
        // the same round.
        let dead = Peer::new(Identity::from_seed([200; 32]).peer_id(), addr(200));
        let past_dead = restart_with_cache(&[dead, peer(5), peer(6)]);
        assert!(past_dead >= 1, "{past_dead} neighbours");
        // Nothing cached and no contact: nowhere to go.
        assert_eq!(restart_with_cache(&[]), 0);
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
    fn unsealed_datagrams_naming_any_sender_create_nothing() {
        let mut w = World::new(3, Config::default());
        let me = w.nodes[&addr(1)].me().id;
        let other = w.nodes[&addr(2)].me().id;
        for claimed in [me, other] {
            let mut bytes = Vec::new();
            let forged = crate::message::Datagram {
                from: claimed,
                message: Message::HyParView(hyparview::Message::Join),
            };
            crate::message::encode(&forged, &mut bytes).unwrap();
            let node = w.nodes.get_mut(&addr(1)).unwrap();
            node.handle_datagram(Time::ZERO, addr(3), &bytes);
            assert!(node.active_view().is_empty());
            assert!(node.passive_view().is_empty());
            assert_eq!(node.session_stats().handshakes_computed, 0);
        }
        assert_eq!(w.nodes[&addr(1)].stats().malformed_in, 2);
        w.drain(addr(1));
        assert!(w.in_flight.is_empty(), "no answer to a forgery");
    }
}
