//! A snapshot of what a node is and knows, for its application (the
//! daemon's local API and metrics): identity, reachability, views with the
//! path each peer is reached by, and every core's counters.
//!
//! Taken by the driver between inputs ([`crate::driver::Request::Status`]),
//! so it is consistent; plain data, copied out of the node, so the
//! application may keep it as long as it likes.

use std::net::SocketAddr;

use crate::node::{self, Node};
use crate::proto::{gossipsub, kad, knowledge};
use crate::transport::{nat, session, Traffic};
use crate::{Peer, Time};

/// A peer of the membership views and how it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: Peer,
    pub path: nat::PathKind,
}

/// A snapshot of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// When it was taken (the driver's clock).
    pub now: Time,
    /// The record other nodes reach this node by (id, address, relay).
    pub advertised: Peer,
    pub reach: nat::Reach,
    /// The external address enough observers confirmed.
    pub confirmed_addr: Option<SocketAddr>,
    /// Relays this node holds an active reservation with.
    pub relays: Vec<SocketAddr>,
    /// Whether this node serves relay reservations now.
    pub relay_serving: bool,
    /// The active view (the overlay neighbours).
    pub active: Vec<PeerStatus>,
    /// The passive view (known peers held in reserve).
    pub passive: Vec<PeerStatus>,
    /// The peer cache a restart rejoins through.
    pub cached_peers: usize,
    /// Sessions held (established or being set up).
    pub sessions: usize,
    pub stats: node::Stats,
    pub session_stats: session::Stats,
    /// Messages the transport could not route in time (no path or
    /// identity known).
    pub unroutable: u64,
    /// Traffic by protocol, when the node counts it.
    pub traffic: Option<Traffic>,
    pub pubsub: Option<PubSubStatus>,
    pub dht: Option<DhtStatus>,
    pub knowledge: Option<KnowledgeStatus>,
}

/// GossipSub's part.
#[derive(Clone, Debug, PartialEq)]
pub struct PubSubStatus {
    /// Subscribed topics, each with the size of its mesh.
    pub topics: Vec<(String, usize)>,
    /// Peers known to speak GossipSub.
    pub peers: usize,
    pub stats: gossipsub::Stats,
}

/// The DHT's part.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtStatus {
    /// Answering requests (publicly reachable) or only asking.
    pub server: bool,
    /// Entries in the routing table.
    pub table_size: usize,
    /// Provider records held for others.
    pub provider_records: usize,
    pub stats: kad::Stats,
}

/// The knowledge commons' part.
#[derive(Clone, Debug, PartialEq)]
pub struct KnowledgeStatus {
    /// Every document held: topic, operations, and the size of a full
    /// snapshot of it in bytes.
    pub documents: Vec<(String, usize, usize)>,
    /// Updates held for missing dependencies.
    pub pending: usize,
    pub stats: knowledge::Stats,
}

impl Status {
    /// The snapshot of `node` at `now`. Its cost is linear in the views,
    /// the GossipSub topics and the knowledge documents (each exported
    /// once to weigh it; the commons holds at most `max_topics`).
    #[must_use]
    pub fn of(node: &Node, now: Time) -> Status {
        let peers = |view: &[Peer]| {
            view.iter()
                .map(|&peer| PeerStatus {
                    peer,
                    path: node.path_kind(&peer.id),
                })
                .collect()
        };
        let nat = node.transport().nat();
        let pubsub = node.gossipsub().map(|g| {
            let mut topics: Vec<(String, usize)> = Vec::new();
            for t in g.subscriptions() {
                topics.push((t.as_str().to_owned(), g.mesh(t).len()));
            }
            PubSubStatus {
                topics,
                peers: g.peers().count(),
                stats: g.stats(),
            }
        });
        let dht = node.dht().map(|d| DhtStatus {
            server: d.is_server(),
            table_size: d.table().len(),
            provider_records: d.provider_records(),
            stats: d.stats(),
        });
        let knowledge = node.knowledge().map(|k| KnowledgeStatus {
            documents: k
                .states()
                .into_iter()
                .map(|s| (s.topic, s.ops, s.snapshot_bytes))
                .collect(),
            pending: k.pending(),
            stats: k.stats(),
        });
        Status {
            now,
            advertised: *node.me(),
            reach: node.reach(),
            confirmed_addr: nat.confirmed_addr(),
            relays: nat.relays().collect(),
            relay_serving: nat.enabled() && nat.serving(),
            active: peers(node.active_view()),
            passive: peers(node.passive_view()),
            cached_peers: node.peer_cache().len(),
            sessions: node.transport().sessions().len(),
            stats: node.stats(),
            session_stats: node.session_stats(),
            unroutable: node.transport().stats().unroutable,
            traffic: node.traffic().copied(),
            pubsub,
            dht,
            knowledge,
        }
    }
}
