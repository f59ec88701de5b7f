//! The JSON the API answers with: the node's [`Status`] in the API's own
//! shape (so that the node's internal types can change without changing
//! the API), peers with their full ids in hex.

use std::net::SocketAddr;

use serde::Serialize;

use super::hub::{hex, millis};
use crate::status::{PeerStatus, Status};
use crate::transport::nat::{PathKind, Reach};
use crate::wire::Protocol;
use crate::Peer;

#[derive(Serialize)]
pub struct PeerView {
    /// The peer id: its ed25519 public key, 64 hex digits.
    pub id: String,
    pub addr: SocketAddr,
    pub relay: Option<SocketAddr>,
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> PeerView {
        PeerView {
            id: hex(p.id.as_bytes()),
            addr: p.addr,
            relay: p.relay,
        }
    }
}

#[derive(Serialize)]
pub struct NeighborView {
    #[serde(flatten)]
    pub peer: PeerView,
    pub path: PathKind,
}

impl From<&PeerStatus> for NeighborView {
    fn from(p: &PeerStatus) -> NeighborView {
        NeighborView {
            peer: PeerView::from(&p.peer),
            path: p.path,
        }
    }
}

#[derive(Serialize)]
pub struct StatusView {
    pub peer: String,
    /// The record other nodes reach this node by.
    pub advertised: PeerView,
    pub reachability: Reach,
    pub confirmed_addr: Option<SocketAddr>,
    pub relays: Vec<SocketAddr>,
    pub relay_serving: bool,
    pub active: Vec<NeighborView>,
    pub passive: Vec<NeighborView>,
    pub uptime_ms: u64,
    pub counters: Counters,
    pub pubsub: Option<PubSubView>,
    pub dht: Option<DhtView>,
    pub knowledge: Option<KnowledgeView>,
}

#[derive(Serialize)]
pub struct Counters {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub dropped_in: u64,
    pub relayed_in: u64,
    pub unroutable: u64,
    pub events_dropped: u64,
    pub rejoin_rounds: u64,
    pub cached_peers: usize,
    pub sessions: usize,
    pub handshakes_completed: u64,
    /// Messages received by protocol (absent when the node does not count
    /// traffic).
    pub messages_in: Option<std::collections::BTreeMap<&'static str, u64>>,
    /// Datagrams sent by protocol (`session`: the session layer's own).
    pub datagrams_out_by_protocol: Option<std::collections::BTreeMap<&'static str, u64>>,
}

#[derive(Serialize)]
pub struct PubSubView {
    pub topics: Vec<TopicView>,
    pub peers: usize,
    pub published: u64,
    pub delivered: u64,
    pub rejected: u64,
}

#[derive(Serialize)]
pub struct TopicView {
    pub topic: String,
    pub mesh_peers: usize,
}

#[derive(Serialize)]
pub struct DhtView {
    pub server: bool,
    pub table_size: usize,
    pub provider_records: usize,
}

#[derive(Serialize)]
pub struct KnowledgeView {
    pub documents: Vec<DocumentView>,
    pub pending: usize,
    pub writes: u64,
    pub imports: u64,
    pub rejected: u64,
}

#[derive(Serialize)]
pub struct DocumentView {
    pub topic: String,
    pub operations: usize,
    pub bytes: usize,
}

/// Protocol names by the slots of `Traffic`'s arrays (the last one of
/// `datagrams_out`: the session layer's own).
pub fn protocol_names() -> impl Iterator<Item = &'static str> {
    Protocol::ALL
        .iter()
        .map(|p| p.name())
        .chain(std::iter::once("session"))
}

impl From<&Status> for StatusView {
    fn from(s: &Status) -> StatusView {
        let traffic = s.traffic.as_ref();
        StatusView {
            peer: hex(s.advertised.id.as_bytes()),
            advertised: PeerView::from(&s.advertised),
            reachability: s.reach,
            confirmed_addr: s.confirmed_addr,
            relays: s.relays.clone(),
            relay_serving: s.relay_serving,
            active: s.active.iter().map(NeighborView::from).collect(),
            passive: s.passive.iter().map(NeighborView::from).collect(),
            uptime_ms: millis(s.now),
            counters: Counters {
                datagrams_in: s.stats.datagrams_in,
                datagrams_out: s.stats.datagrams_out,
                dropped_in: s.stats.malformed_in,
                relayed_in: s.stats.relayed_in,
                unroutable: s.unroutable,
                events_dropped: s.stats.event_overflow,
                rejoin_rounds: s.stats.rejoin_rounds,
                cached_peers: s.cached_peers,
                sessions: s.sessions,
                handshakes_completed: s.session_stats.handshakes_completed,
                messages_in: traffic.map(|t| {
                    protocol_names()
                        .zip(t.messages_in.iter().copied())
                        .collect()
                }),
                datagrams_out_by_protocol: traffic.map(|t| {
                    protocol_names()
                        .zip(t.datagrams_out.iter().copied())
                        .collect()
                }),
            },
            pubsub: s.pubsub.as_ref().map(|p| PubSubView {
                topics: p
                    .topics
                    .iter()
                    .map(|(t, n)| TopicView {
                        topic: t.clone(),
                        mesh_peers: *n,
                    })
                    .collect(),
                peers: p.peers,
                published: p.stats.published,
                delivered: p.stats.delivered,
                rejected: p.stats.rejected,
            }),
            dht: s.dht.as_ref().map(|d| DhtView {
                server: d.server,
                table_size: d.table_size,
                provider_records: d.provider_records,
            }),
            knowledge: s.knowledge.as_ref().map(|k| KnowledgeView {
                documents: k
                    .documents
                    .iter()
                    .map(|(topic, ops, bytes)| DocumentView {
                        topic: topic.clone(),
                        operations: *ops,
                        bytes: *bytes,
                    })
                    .collect(),
                pending: k.pending,
                writes: k.stats.writes,
                imports: k.stats.imports,
                rejected: k.stats.rejected,
            }),
        }
    }
}

/// Whether a path kind is direct, for metrics.
pub fn path_name(kind: PathKind) -> &'static str {
    match kind {
        PathKind::Direct => "direct",
        PathKind::Relayed => "relayed",
    }
}
