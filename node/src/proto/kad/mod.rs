//! Kademlia DHT (Maymounkov & Mazières, IPTPS 2002; libp2p kad-dht spec):
//! 256-bit keys under the XOR metric, k-buckets, iterative lookups with
//! `alpha` requests in flight, provider records (48 h TTL, republished
//! every 22 h), signed value records with quorum, and Provide Sweep (IPFS
//! "Provide Sweep", kubo 0.38: the keys a node provides are grouped by
//! keyspace region, each region is explored once, its ADD_PROVIDERs go
//! out batched, and the regions are spread over the republish interval).
//!
//! Client/server: only a node that NAT traversal finds publicly reachable
//! (or port-mapped) is a *server*: it answers requests and is entered in
//! others' tables. Every request says whether its sender is a server;
//! a client only asks (libp2p kad-dht's client mode).
//!
//! Sans-IO: inputs are `handle_*`, `bootstrap`, `add_neighbor`,
//! `set_server` and [`Kademlia::command`], all with the current time;
//! outputs are drained with [`Kademlia::poll_output`];
//! [`Kademlia::poll_timeout`] says when to call
//! [`Kademlia::handle_timeout`]. Randomness (request ids, refresh targets)
//! is a seeded ChaCha stream.
//!
//! Events: besides each query's outcome ([`QueryDone`], the node's own
//! summary), the core reports each request a lookup sends, each answer a
//! lookup takes and each routing-table change ([`Event::Request`],
//! [`Event::Answer`], [`Event::Table`]), so that an observer can measure
//! lookups and tables from what happened rather than from the node's
//! counts (the simulator pairs them with the datagrams it carries).
//!
//! Hostile input: responses nobody asked for (unknown request id, or from
//! another peer than asked), peers in a response far from the target (more
//! than `far_slack_bits` bits farther than the responder itself), and
//! invalid records are ignored and counted ([`Stats`], [`Event::Rejected`]).
//! Only peers heard from directly enter the table, subject to the bucket
//! size and per-IP / per-subnet limits of [`table`].

pub mod key;
pub mod lookup;
pub(crate) mod message;
pub mod store;
pub mod sweep;
pub mod table;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use key::{Distance, Key};
use lookup::{ClosestPeersIter, Next};
pub use message::Message;
use store::Store;
pub use store::{Record, MAX_VALUE_BYTES};
use table::{Change, Insert, Limits, Table};

use crate::{Peer, PeerId, Time};

/// Most peers in a NODES / PROVIDERS / VALUE response (the largest `k`).
pub const MAX_PEERS: usize = 20;
/// Most providers in one PROVIDERS response.
pub const MAX_PROVIDERS: usize = 5;
/// Most keys in one ADD_PROVIDER batch (fits a datagram: 40 x 32 bytes).
pub const MAX_BATCH_KEYS: usize = 40;

/// Settings of the DHT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Run the DHT at all (Grove: off unless a scenario or the operator
    /// turns it on).
    pub enabled: bool,
    /// Bucket size and replication factor (paper §2.2 and libp2p: 20; 1 to
    /// 20, the wire's cap).
    pub k: usize,
    /// Requests in flight per lookup (paper §2.3: 3; go-libp2p-kad-dht: 10);
    /// 1 to `k`.
    pub alpha: usize,
    /// Time after which an unanswered request stops holding a slot
    /// (Grove: 2 s, a few RTTs over UDP; libp2p's 10 s includes dialling).
    /// The request fails for good after twice this. Like every duration
    /// here: 1 ms to 720 h ([`crate::config::MIN_INTERVAL`],
    /// [`crate::config::MAX_DURATION`]).
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
    /// How long a server keeps a provider record (libp2p spec: 48 h).
    #[serde(with = "crate::duration")]
    pub provider_ttl: Duration,
    /// How often a provider republishes its records (libp2p spec: 22 h);
    /// shorter than `provider_ttl`.
    #[serde(with = "crate::duration")]
    pub republish_interval: Duration,
    /// Buckets not looked into for this long are refreshed by a lookup of a
    /// random key in them (go-libp2p-kad-dht: 10 min).
    #[serde(with = "crate::duration")]
    pub refresh_interval: Duration,
    /// Deepest bucket (common prefix length) refreshed (go-libp2p-kad-dht:
    /// 15); at most [`MAX_REFRESH_CPL`].
    pub refresh_max_cpl: usize,
    /// While the table holds fewer than `k` servers, the bootstrap contact
    /// and recent neighbours are asked again this often (Grove: 10 s;
    /// they may not have known they were public the first time).
    #[serde(with = "crate::duration")]
    pub bootstrap_interval: Duration,
    /// Provide with Provide Sweep rather than one lookup per key (kubo
    /// 0.38 option `Provide.DHT.SweepEnabled`; Grove: off).
    pub sweep: bool,
    /// Lookups in progress at once; more wait in a queue (Grove: 16); 1 to
    /// [`MAX_CONCURRENT_QUERIES`].
    pub max_concurrent_queries: usize,
    /// Keys this node may provide (Grove: 1,000,000, 32 MB of keys); 1 to
    /// [`MAX_PROVIDED_KEYS`].
    pub max_provided_keys: usize,
    /// Provider records a server keeps (Grove: 200,000); 1 to
    /// [`MAX_PROVIDER_RECORDS`].
    pub max_provider_records: usize,
    /// Providers kept per key (go-libp2p-kad-dht's provider manager: 20
    /// returned; Grove keeps 1 to 20).
    pub max_providers_per_key: usize,
    /// Value records a server keeps (Grove: 1,024); 1 to [`MAX_VALUES`].
    pub max_values: usize,
    /// Valid records a GET_VALUE needs; servers that acknowledge a PUT
    /// (libp2p's `Quorum::One` is 1; Grove: 2, so one stale server cannot
    /// decide); 1 to `k`.
    pub quorum: usize,
    /// Entries per bucket on one IP address (Grove: 1); 1 to 20.
    pub max_per_ip: usize,
    /// Entries per bucket on one /24 or /48 (go-libp2p-kad-dht's routing
    /// table diversity filter: 2); `max_per_ip` to 20.
    pub max_per_subnet: usize,
    /// Peers in a response whose common prefix with the target is this many
    /// bits shorter than the responder's are ignored and counted (Grove: 8);
    /// at most 256.
    pub far_slack_bits: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            k: 20,
            alpha: 3,
            request_timeout: Duration::from_secs(2),
            provider_ttl: Duration::from_secs(48 * 3600),
            republish_interval: Duration::from_secs(22 * 3600),
            refresh_interval: Duration::from_secs(600),
            refresh_max_cpl: 15,
            bootstrap_interval: Duration::from_secs(10),
            sweep: false,
            max_concurrent_queries: 16,
            max_provided_keys: 1_000_000,
            max_provider_records: 200_000,
            max_providers_per_key: 20,
            max_values: 1024,
            quorum: 2,
            max_per_ip: 1,
            max_per_subnet: 2,
            far_slack_bits: 8,
        }
    }
}

/// A setting out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("dht.{field} = {value}: {rule}")]
    Invalid {
        field: &'static str,
        value: String,
        rule: String,
    },
}

/// Deepest bucket a configuration may refresh (a 256-bit key has 256).
pub const MAX_REFRESH_CPL: usize = 255;
/// Most lookups a configuration may run at once.
pub const MAX_CONCURRENT_QUERIES: usize = 256;
/// Most keys a node may be set to provide (320 MB of keys).
pub const MAX_PROVIDED_KEYS: usize = 10_000_000;
/// Most provider records a server may be set to keep.
pub const MAX_PROVIDER_RECORDS: usize = 10_000_000;
/// Most value records a server may be set to keep (of at most
/// [`MAX_VALUE_BYTES`] each).
pub const MAX_VALUES: usize = 1_000_000;

impl Config {
    /// Check the bounds on each field's doc line and the invariants:
    /// `1 <= alpha <= k`, `1 <= quorum <= k`, `max_per_ip <=
    /// max_per_subnet`, `republish_interval < provider_ttl`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: &dyn std::fmt::Display, rule: String| {
            Err(ConfigError::Invalid {
                field,
                value: value.to_string(),
                rule,
            })
        };
        if self.k == 0 || self.k > MAX_PEERS {
            return bad("k", &self.k, format!("must be 1 to {MAX_PEERS}"));
        }
        if self.alpha == 0 || self.alpha > self.k {
            return bad("alpha", &self.alpha, "must be 1 to k".into());
        }
        if self.quorum == 0 || self.quorum > self.k {
            return bad("quorum", &self.quorum, "must be 1 to k".into());
        }
        for (field, d) in [
            ("request_timeout", self.request_timeout),
            ("provider_ttl", self.provider_ttl),
            ("republish_interval", self.republish_interval),
            ("refresh_interval", self.refresh_interval),
            ("bootstrap_interval", self.bootstrap_interval),
        ] {
            if crate::config::interval(d).is_err() {
                return bad(field, &crate::config::show(d), "must be 1ms to 720h".into());
            }
        }
        if self.republish_interval >= self.provider_ttl {
            let rule = "must be shorter than provider_ttl".into();
            return bad(
                "republish_interval",
                &crate::config::show(self.republish_interval),
                rule,
            );
        }
        for (field, v, max) in [
            (
                "max_concurrent_queries",
                self.max_concurrent_queries,
                MAX_CONCURRENT_QUERIES,
            ),
            (
                "max_provided_keys",
                self.max_provided_keys,
                MAX_PROVIDED_KEYS,
            ),
            (
                "max_provider_records",
                self.max_provider_records,
                MAX_PROVIDER_RECORDS,
            ),
            (
                "max_providers_per_key",
                self.max_providers_per_key,
                MAX_PEERS,
            ),
            ("max_values", self.max_values, MAX_VALUES),
            ("max_per_ip", self.max_per_ip, MAX_PEERS),
            ("max_per_subnet", self.max_per_subnet, MAX_PEERS),
            ("refresh_max_cpl", self.refresh_max_cpl, MAX_REFRESH_CPL),
        ] {
            let min = usize::from(field != "refresh_max_cpl");
            if !(min..=max).contains(&v) {
                return bad(field, &v, format!("must be {min} to {max}"));
            }
        }
        if self.max_per_subnet < self.max_per_ip {
            let rule = "must be at least max_per_ip".into();
            return bad("max_per_subnet", &self.max_per_subnet, rule);
        }
        if self.far_slack_bits > 256 {
            let rule = "must be 0 to 256".into();
            return bad("far_slack_bits", &self.far_slack_bits, rule);
        }
        Ok(())
    }
}

/// What an application asks of the DHT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Look up the `k` servers closest to a key.
    FindNode(Key),
    /// Find a provider of a key.
    GetProviders(Key),
    /// Provide these keys (and keep republishing them).
    Provide(Vec<Key>),
    /// Publish a signed value under a key.
    PutValue { key: Key, seq: u64, value: Bytes },
    /// Fetch the value under a key (highest `seq` among a quorum).
    GetValue(Key),
}

/// Which kind of query finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueryKind {
    FindNode,
    SelfLookup,
    Refresh,
    GetProviders,
    Provide,
    SweepRegion,
    PutValue,
    GetValue,
}

/// The outcome of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryDone {
    pub kind: QueryKind,
    pub target: Key,
    pub success: bool,
    /// Hops: of the closest peer that answered, or of the peer that held
    /// the record.
    pub hops: u8,
    /// Requests sent by the lookup (plus, for a provide or put, the
    /// ADD_PROVIDER / PUT_VALUE datagrams).
    pub requests: u32,
    pub duration: Duration,
    /// The closest server found.
    pub closest: Option<PeerId>,
    /// Keys covered (provides, sweep regions).
    pub keys: u32,
    /// Entries in our routing table when the query ended.
    pub table_size: u16,
    /// The record found (GET_VALUE).
    pub record: Option<Box<Record>>,
    /// The providers found (GET_PROVIDERS; at most [`MAX_PROVIDERS`]):
    /// what an application dials to fetch the content. Empty for other
    /// queries, so that it allocates nothing there.
    pub providers: Vec<Peer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    QueryDone(Box<QueryDone>),
    /// Hostile or broken input, ignored.
    Rejected {
        what: &'static str,
    },
    /// A lookup towards `target` asked `to` (FIND_NODE, GET_PROVIDERS or
    /// GET_VALUE) with request id `id`: what lets an observer of the
    /// network attribute the request, and the answer that echoes `id`, to
    /// the lookup.
    Request {
        target: Key,
        id: u64,
        to: PeerId,
    },
    /// The answer to request `id` was taken by its lookup: the peers it
    /// named that the lookup kept (ourselves and peers far from the target
    /// left out) and the providers it carried, as they were on the wire.
    Answer {
        id: u64,
        closer: Vec<PeerId>,
        providers: Vec<PeerId>,
    },
    /// A peer entered or left the routing table.
    Table(table::Change),
}

/// An output of the core.
pub type Output = crate::proto::Output<Message, Event>;

/// Counts of what the DHT did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests_in: u64,
    pub requests_as_client: u64,
    pub unsolicited: u64,
    pub far_peers: u64,
    pub table_rejected: u64,
    pub bad_records: u64,
    pub queries_queued_dropped: u64,
}

/// Events queued before the oldest are dropped (bounded).
const OUTPUT_CAPACITY: usize = 8192;
/// Peers kept to bootstrap from again (the contact, recent neighbours).
const BOOTSTRAP_CANDIDATES: usize = 8;

#[derive(Clone, Copy, Debug)]
enum ReqWhat {
    /// A ping; `evict`: to decide a full bucket's oldest entry.
    Ping,
    Lookup,
    Put,
}

#[derive(Clone, Copy, Debug)]
struct Inflight {
    peer: PeerId,
    query: Option<u64>,
    what: ReqWhat,
    deadline: Time,
}

#[derive(Clone, Debug)]
enum Target {
    Find,
    SelfLookup,
    Refresh,
    GetProviders,
    Provide,
    Sweep { prefix: Key, bits: u32 },
    Put(Box<Record>),
    Get,
}

struct Query {
    what: Target,
    iter: ClosestPeersIter,
    started: Time,
    /// Hops at which the record was found.
    found: Option<u8>,
    records: Vec<Record>,
    /// Providers found (GET_PROVIDERS), at most [`MAX_PROVIDERS`].
    providers: Vec<Peer>,
    /// PUT phase: acks so far, requests outstanding, deadline.
    put: Option<(usize, usize, Time)>,
    extra_requests: u32,
    keys: u32,
}

/// The DHT of one node.
pub struct Kademlia {
    me: PeerId,
    key: Key,
    config: Config,
    rng: ChaCha8Rng,
    signer: SigningKey,
    server: bool,
    table: Table,
    store: Store,
    queries: BTreeMap<u64, Query>,
    next_query: u64,
    inflight: BTreeMap<u64, Inflight>,
    deadlines: BTreeSet<(Time, u64)>,
    backlog: VecDeque<(Target, Key)>,
    provided: BTreeSet<Key>,
    sweep: Option<sweep::Cycle>,
    republish_at: Option<Time>,
    next_refresh: Option<Time>,
    /// A self-lookup is due as soon as a server is known: on joining, and
    /// on becoming a server (which announces us to our neighbourhood).
    self_lookup_due: bool,
    /// Where to ask again while the table is short, most recent last.
    candidates: VecDeque<PeerId>,
    next_bootstrap: Option<Time>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl Kademlia {
    pub fn new(me: PeerId, signer: SigningKey, config: Config, rng: ChaCha8Rng) -> Self {
        let key = Key::of_peer(&me);
        let limits = Limits {
            k: config.k,
            max_per_ip: config.max_per_ip,
            max_per_subnet: config.max_per_subnet,
        };
        Kademlia {
            me,
            key,
            table: Table::new(key, limits),
            store: Store::new(
                config.max_provider_records,
                config.max_providers_per_key,
                config.max_values,
            ),
            config,
            rng,
            signer,
            server: false,
            queries: BTreeMap::new(),
            next_query: 0,
            inflight: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            backlog: VecDeque::new(),
            provided: BTreeSet::new(),
            sweep: None,
            republish_at: None,
            next_refresh: None,
            self_lookup_due: true,
            candidates: VecDeque::new(),
            next_bootstrap: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    /// The record of `id` if the DHT holds one: its routing table, then
    /// the candidates of its running lookups.
    pub fn record_of(&self, id: &PeerId) -> Option<&Peer> {
        self.table
            .record_of(id)
            .or_else(|| self.queries.values().find_map(|q| q.iter.record_of(id)))
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }
    pub fn is_server(&self) -> bool {
        self.server
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn table(&self) -> &Table {
        &self.table
    }
    pub fn provider_records(&self) -> usize {
        self.store.provider_records()
    }

    // ---- inputs ----

    /// Serve (answer requests, be entered in tables) or only ask. A node
    /// that becomes a server looks itself up, which enters it in the tables
    /// of the peers closest to it.
    pub fn set_server(&mut self, now: Time, server: bool) {
        if server == self.server {
            return;
        }
        self.server = server;
        if server {
            self.self_lookup_due = true;
            if self.table.is_empty() {
                self.ask_candidates(now);
            } else {
                self.self_lookup(now);
            }
        }
    }

    fn self_lookup(&mut self, now: Time) {
        if self.config.enabled && !self.table.is_empty() {
            self.self_lookup_due = false;
            self.start(now, Target::SelfLookup, self.key);
        }
    }

    /// Ask `contact` whether it is a server (the node resolves a contact
    /// given by address to its record first); the first server found
    /// starts the self-lookup. The contact is asked again while the table
    /// is short.
    pub fn bootstrap(&mut self, now: Time, contact: Peer) {
        if contact.id == self.me {
            return;
        }
        self.remember(now, contact.id);
        self.ping(now, contact.id);
    }

    fn remember(&mut self, now: Time, peer: PeerId) {
        if !self.config.enabled {
            return;
        }
        self.candidates.retain(|c| *c != peer);
        if self.candidates.len() >= BOOTSTRAP_CANDIDATES {
            self.candidates.pop_front();
        }
        self.candidates.push_back(peer);
        self.next_bootstrap
            .get_or_insert(now + self.config.bootstrap_interval);
    }

    /// Ping the bootstrap candidates (a short table).
    fn ask_candidates(&mut self, now: Time) {
        let candidates: Vec<PeerId> = self
            .candidates
            .iter()
            .filter(|id| !self.table.contains(id))
            .copied()
            .collect();
        for id in candidates {
            self.ping(now, id);
        }
    }

    /// A peer we are in touch with anyway (an overlay neighbour): ask it
    /// whether it is a server.
    pub fn add_neighbor(&mut self, now: Time, peer: Peer) {
        if self.table.contains(&peer.id) || peer.id == self.me {
            return;
        }
        self.remember(now, peer.id);
        self.ping(now, peer.id);
    }

    /// An application request.
    pub fn command(&mut self, now: Time, command: Command) {
        match command {
            Command::FindNode(k) => self.start(now, Target::Find, k),
            Command::GetProviders(k) => self.start(now, Target::GetProviders, k),
            Command::GetValue(k) => self.start(now, Target::Get, k),
            Command::PutValue { key, seq, value } => {
                if value.len() > MAX_VALUE_BYTES {
                    self.reject("value larger than MAX_VALUE_BYTES");
                    return;
                }
                let record = Record::sign(&self.signer, key, seq, value);
                self.start(now, Target::Put(Box::new(record)), key);
            }
            Command::Provide(keys) => self.provide(now, keys),
        }
    }

    fn provide(&mut self, now: Time, keys: Vec<Key>) {
        let mut fresh = Vec::new();
        for k in keys {
            if self.provided.len() >= self.config.max_provided_keys {
                self.reject("more keys than max_provided_keys");
                break;
            }
            if self.provided.insert(k) {
                fresh.push(k);
            }
        }
        if self.config.sweep {
            if self.sweep.is_none() {
                self.start_sweep_cycle(now);
            }
        } else {
            for k in fresh {
                self.start(now, Target::Provide, k);
            }
            if self.republish_at.is_none() {
                self.republish_at = Some(now + self.config.republish_interval);
            }
        }
    }

    fn start_sweep_cycle(&mut self, now: Time) {
        let estimate = sweep::network_size(&self.table, &self.key, self.config.k);
        let bits = sweep::region_bits(estimate, self.config.k);
        self.sweep = Some(sweep::Cycle::new(
            now,
            self.config.republish_interval,
            bits,
            &self.provided,
        ));
    }

    pub fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        match message {
            Message::Ping { id, server } => {
                self.heard_request(now, from, server);
                let pong = Message::Pong {
                    id,
                    server: self.server,
                };
                self.send(from.id, pong);
            }
            Message::FindNode { id, server, target } => {
                if self.serve(now, from, server) {
                    let peers = self.closest_except(&target, &from.id);
                    self.send(from.id, Message::Nodes { id, peers });
                }
            }
            Message::GetProviders { id, server, key } => {
                if self.serve(now, from, server) {
                    let providers = self.store.providers(now, &key, MAX_PROVIDERS);
                    let closer = self.closest_except(&key, &from.id);
                    self.send(
                        from.id,
                        Message::Providers {
                            id,
                            providers,
                            closer,
                        },
                    );
                }
            }
            Message::AddProvider { server, keys } => {
                if self.serve(now, from, server) {
                    let provider = Peer::new(from.id, from.addr);
                    for k in keys {
                        if self
                            .store
                            .add_provider(now, k, provider, self.config.provider_ttl)
                            .is_err()
                        {
                            self.reject("provider record refused (store limits)");
                        }
                    }
                }
            }
            Message::PutValue { id, server, record } => {
                if self.serve(now, from, server) {
                    let stored = match self.store.put_value(now, *record, self.config.provider_ttl)
                    {
                        Ok(()) => true,
                        Err(store::StoreError::BadSignature) => {
                            self.stats.bad_records += 1;
                            self.reject("record with a bad signature");
                            false
                        }
                        Err(_) => false,
                    };
                    self.send(from.id, Message::PutValueAck { id, stored });
                }
            }
            Message::GetValue { id, server, key } => {
                if self.serve(now, from, server) {
                    let record = self.store.get_value(now, &key).cloned().map(Box::new);
                    let closer = self.closest_except(&key, &from.id);
                    self.send(from.id, Message::Value { id, record, closer });
                }
            }
            Message::Pong { id, server } => {
                if self.take_inflight(id, &from).is_none() {
                    return;
                }
                if !server {
                    return;
                }
                self.table.pong(now, &from.id);
                self.heard_server(now, from);
                self.drain_backlog(now);
            }
            Message::Nodes { id, peers } => {
                self.on_response(now, from, id, peers, Vec::new(), None)
            }
            Message::Providers {
                id,
                providers,
                closer,
            } => self.on_response(now, from, id, closer, providers, None),
            Message::Value { id, record, closer } => {
                self.on_response(now, from, id, closer, Vec::new(), record)
            }
            Message::PutValueAck { id, stored } => {
                let Some(req) = self.take_inflight(id, &from) else {
                    return;
                };
                self.heard_server(now, from);
                if let Some(q) = req.query.and_then(|q| self.queries.get_mut(&q)) {
                    if let Some((acks, outstanding, _)) = &mut q.put {
                        *outstanding = outstanding.saturating_sub(1);
                        if stored {
                            *acks += 1;
                        }
                    }
                    let qid = req.query.expect("checked");
                    self.check_put(now, qid);
                }
            }
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.config.enabled {
            return;
        }
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(req) = self.inflight.remove(&id) else {
                continue;
            };
            if !matches!(req.what, ReqWhat::Ping) {
                let changes = self.table.remove(&req.peer);
                self.table_changed(changes);
            }
            if let Some(qid) = req.query {
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.iter.on_failure(&req.peer);
                    if let Some((_, outstanding, _)) = &mut q.put {
                        *outstanding = outstanding.saturating_sub(1);
                    }
                }
            }
        }
        let changes = self.table.apply_pending(now);
        self.table_changed(changes);
        let due: Vec<u64> = self
            .queries
            .iter()
            .filter(|(_, q)| {
                q.iter.poll_timeout().is_some_and(|t| t <= now)
                    || q.put.is_some_and(|(_, o, t)| o == 0 || t <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for qid in due {
            if self.queries.get(&qid).is_some_and(|q| q.put.is_some()) {
                self.check_put(now, qid);
            } else {
                self.step(now, qid);
            }
        }
        if self.store.next_expiry().is_some_and(|t| t <= now) {
            self.store.expire(now);
        }
        if self.next_refresh.is_some_and(|t| t <= now) {
            self.refresh(now);
        }
        if self.next_bootstrap.is_some_and(|t| t <= now) {
            if self.table.len() < self.config.k {
                self.next_bootstrap = Some(now + self.config.bootstrap_interval);
                self.ask_candidates(now);
                self.self_lookup(now);
            } else {
                self.next_bootstrap = None;
            }
        }
        if self.republish_at.is_some_and(|t| t <= now) {
            self.republish_at = Some(now + self.config.republish_interval);
            let keys: Vec<Key> = self.provided.iter().copied().collect();
            for k in keys {
                self.start(now, Target::Provide, k);
            }
        }
        let region = self.sweep.as_mut().and_then(|c| c.due(now));
        if let Some((prefix, bits)) = region {
            self.start(now, Target::Sweep { prefix, bits }, prefix);
        }
        if self.sweep.as_ref().is_some_and(|c| c.over(now)) {
            self.start_sweep_cycle(now);
        }
    }

    // ---- outputs ----

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if !self.config.enabled {
            return None;
        }
        let queries = self
            .queries
            .values()
            .filter_map(|q| match q.put {
                Some((_, _, t)) => Some(t),
                None => q.iter.poll_timeout(),
            })
            .min();
        [
            self.deadlines.first().map(|(t, _)| *t),
            self.table.poll_timeout(),
            queries,
            self.store.next_expiry(),
            self.next_refresh,
            self.next_bootstrap,
            self.republish_at,
            self.sweep.as_ref().map(sweep::Cycle::next_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    fn reject(&mut self, what: &'static str) {
        self.event(Event::Rejected { what });
    }

    fn table_changed(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.event(Event::Table(c));
        }
    }

    fn event(&mut self, e: Event) {
        if self.outputs.len() < OUTPUT_CAPACITY {
            self.outputs.push_back(Output::Event(e));
        }
    }

    fn send(&mut self, to: PeerId, message: Message) {
        if self.outputs.len() < OUTPUT_CAPACITY {
            self.outputs.push_back(Output::Send { to, message });
        }
    }

    fn closest_except(&self, target: &Key, except: &PeerId) -> Vec<Peer> {
        let mut peers = self.table.closest(target, self.config.k + 1);
        peers.retain(|p| p.id != *except);
        peers.truncate(self.config.k);
        peers
    }

    /// A request arrived: note a server sender; whether we answer.
    fn serve(&mut self, now: Time, from: Peer, sender_is_server: bool) -> bool {
        self.heard_request(now, from, sender_is_server);
        if !self.server {
            self.stats.requests_as_client += 1;
            return false;
        }
        true
    }

    fn heard_request(&mut self, now: Time, from: Peer, sender_is_server: bool) {
        self.stats.requests_in += 1;
        if sender_is_server {
            self.heard_server(now, from);
        }
    }

    /// `from`, a server, was heard from directly: enter or refresh it.
    fn heard_server(&mut self, now: Time, from: Peer) {
        let peer = Peer::new(from.id, from.addr);
        let was_empty = self.table.is_empty();
        match self
            .table
            .insert(now, peer, now + self.config.request_timeout)
        {
            Insert::Added => self.event(Event::Table(Change::Added(peer.id))),
            Insert::PingOldest(oldest) => self.ping(now, oldest.id),
            Insert::Rejected(what) => {
                self.stats.table_rejected += 1;
                self.reject(what);
            }
            Insert::Updated | Insert::Full | Insert::Ourselves => {}
        }
        if self.next_refresh.is_none() {
            self.next_refresh = Some(now + self.config.refresh_interval);
        }
        if self.self_lookup_due {
            self.self_lookup(now);
        }
        if was_empty && !self.table.is_empty() {
            self.drain_backlog(now);
        }
    }

    fn ping(&mut self, now: Time, peer: PeerId) {
        let id = self.request(now, peer, None, ReqWhat::Ping);
        self.send(
            peer,
            Message::Ping {
                id,
                server: self.server,
            },
        );
    }

    /// Register an outstanding request; its id.
    fn request(&mut self, now: Time, peer: PeerId, query: Option<u64>, what: ReqWhat) -> u64 {
        let mut id: u64 = self.rng.gen();
        while self.inflight.contains_key(&id) {
            id = self.rng.gen();
        }
        let deadline = now + self.config.request_timeout * 2;
        self.inflight.insert(
            id,
            Inflight {
                peer,
                query,
                what,
                deadline,
            },
        );
        self.deadlines.insert((deadline, id));
        id
    }

    /// The request `id` answered by `from`, if it was one of ours to it.
    fn take_inflight(&mut self, id: u64, from: &Peer) -> Option<Inflight> {
        match self.inflight.get(&id) {
            Some(req) if req.peer == from.id => {
                let req = self.inflight.remove(&id).expect("present");
                self.deadlines.remove(&(req.deadline, id));
                Some(req)
            }
            _ => {
                self.stats.unsolicited += 1;
                self.reject("unsolicited response");
                None
            }
        }
    }

    fn on_response(
        &mut self,
        now: Time,
        from: Peer,
        id: u64,
        closer: Vec<Peer>,
        providers: Vec<Peer>,
        record: Option<Box<Record>>,
    ) {
        let Some(req) = self.take_inflight(id, &from) else {
            return;
        };
        self.heard_server(now, from);
        let Some(qid) = req.query else { return };
        let slack = self.config.far_slack_bits;
        let me = self.me;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let target = *q.iter.target();
        let responder_cpl = Key::of_peer(&from.id).common_prefix_len(&target);
        let mut far = 0u64;
        let closer: Vec<Peer> = closer
            .into_iter()
            .filter(|p| p.id != me)
            .filter(|p| {
                let ok = Key::of_peer(&p.id).common_prefix_len(&target) + slack >= responder_cpl;
                if !ok {
                    far += 1;
                }
                ok
            })
            .collect();
        let hops = q.iter.hops_of(&from.id).unwrap_or(1);
        let named: Vec<PeerId> = closer.iter().map(|p| p.id).collect();
        let taken = q.iter.on_success(&from.id, closer);
        let provider_ids: Vec<PeerId> = providers.iter().map(|p| p.id).collect();
        let mut bad_record = false;
        match &q.what {
            Target::GetProviders if !providers.is_empty() => {
                q.found = Some(hops);
                for p in providers {
                    if q.providers.len() < MAX_PROVIDERS && q.providers.iter().all(|k| k.id != p.id)
                    {
                        q.providers.push(p);
                    }
                }
                q.iter.finish();
            }
            Target::Get => {
                if let Some(r) = record {
                    if r.key == target && r.verify() {
                        q.records.push(*r);
                        q.found.get_or_insert(hops);
                        if q.records.len() >= self.config.quorum {
                            q.iter.finish();
                        }
                    } else {
                        bad_record = true;
                    }
                }
            }
            _ => {}
        }
        if taken {
            self.event(Event::Answer {
                id,
                closer: named,
                providers: provider_ids,
            });
        }
        if far > 0 {
            self.stats.far_peers += far;
            self.reject("peers far from the target in a response");
        }
        if bad_record {
            self.stats.bad_records += 1;
            self.reject("invalid record in a response");
        }
        self.step(now, qid);
    }

    /// Start a query (or queue it when too many run).
    fn start(&mut self, now: Time, what: Target, target: Key) {
        if !self.config.enabled {
            return;
        }
        // With no server known yet, a query waits (in the bounded backlog)
        // for the first: a node that provides its keys as it starts, before
        // it has joined or heard of any server, would otherwise fail them
        // at once with no request sent.
        let no_server = self.table.is_empty();
        if no_server || self.queries.len() >= self.config.max_concurrent_queries {
            if self.backlog.len() >= self.config.max_provided_keys {
                self.stats.queries_queued_dropped += 1;
                self.reject("query queue full");
                return;
            }
            self.backlog.push_back((what, target));
            return;
        }
        let seeds = self.table.closest(&target, self.config.k);
        self.table.touched(now, &target);
        let iter = ClosestPeersIter::new(
            target,
            seeds,
            self.config.k,
            self.config.alpha,
            self.config.request_timeout,
        );
        let qid = self.next_query;
        self.next_query += 1;
        self.queries.insert(
            qid,
            Query {
                what,
                iter,
                started: now,
                found: None,
                records: Vec::new(),
                providers: Vec::new(),
                put: None,
                extra_requests: 0,
                keys: 0,
            },
        );
        self.step(now, qid);
    }

    /// Send what the query's lookup wants sent; finish it when done.
    fn step(&mut self, now: Time, qid: u64) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            if q.put.is_some() {
                return;
            }
            match q.iter.next(now) {
                Next::Waiting => return,
                Next::Finished => {
                    self.finish(now, qid);
                    return;
                }
                Next::Send(peer) => {
                    let target = *q.iter.target();
                    let kind = match q.what {
                        Target::GetProviders => 1,
                        Target::Get => 2,
                        _ => 0,
                    };
                    let id = self.request(now, peer.id, Some(qid), ReqWhat::Lookup);
                    let server = self.server;
                    let message = match kind {
                        1 => Message::GetProviders {
                            id,
                            server,
                            key: target,
                        },
                        2 => Message::GetValue {
                            id,
                            server,
                            key: target,
                        },
                        _ => Message::FindNode { id, server, target },
                    };
                    self.send(peer.id, message);
                    self.event(Event::Request {
                        target,
                        id,
                        to: peer.id,
                    });
                }
            }
        }
    }

    /// The lookup is over: act on its result and report.
    fn finish(&mut self, now: Time, qid: u64) {
        let q = self.queries.get_mut(&qid).expect("running query");
        let closest = q.iter.closest();
        let target = *q.iter.target();
        match q.what.clone() {
            Target::Provide => {
                let n = closest.len() as u32;
                for (p, _) in &closest {
                    let m = Message::AddProvider {
                        server: self.server,
                        keys: vec![target],
                    };
                    self.outputs.push_back(Output::Send {
                        to: p.id,
                        message: m,
                    });
                }
                let q = self.queries.get_mut(&qid).expect("running");
                q.extra_requests += n;
                q.keys = 1;
            }
            Target::Sweep { prefix, bits } => {
                let region = q.iter.succeeded_in(&prefix, bits);
                let keys: Vec<Key> = sweep::keys_in(&self.provided, &prefix, bits);
                let fallback: Vec<(Peer, Key)> = closest
                    .iter()
                    .map(|(p, _)| (*p, Key::of_peer(&p.id)))
                    .collect();
                let batches = sweep::assign(&keys, &region, &fallback, self.config.k);
                let mut sent = 0;
                for (peer, keys) in batches {
                    for chunk in keys.chunks(MAX_BATCH_KEYS) {
                        let m = Message::AddProvider {
                            server: self.server,
                            keys: chunk.to_vec(),
                        };
                        self.outputs.push_back(Output::Send {
                            to: peer.id,
                            message: m,
                        });
                        sent += 1;
                    }
                }
                let q = self.queries.get_mut(&qid).expect("running");
                q.extra_requests += sent;
                q.keys = keys.len() as u32;
            }
            Target::Put(record) => {
                let peers: Vec<Peer> = closest.iter().map(|(p, _)| *p).collect();
                let deadline = now + self.config.request_timeout * 2;
                for p in &peers {
                    let id = self.request(now, p.id, Some(qid), ReqWhat::Put);
                    let m = Message::PutValue {
                        id,
                        server: self.server,
                        record: record.clone(),
                    };
                    self.send(p.id, m);
                }
                let q = self.queries.get_mut(&qid).expect("running");
                q.extra_requests += peers.len() as u32;
                q.put = Some((0, peers.len(), deadline));
                if peers.is_empty() {
                    self.check_put(now, qid);
                }
                return;
            }
            _ => {}
        }
        self.report(now, qid, None);
    }

    /// A PUT is decided once a quorum acknowledged, every server answered,
    /// or its deadline passed.
    fn check_put(&mut self, now: Time, qid: u64) {
        let Some(q) = self.queries.get(&qid) else {
            return;
        };
        let Some((acks, outstanding, deadline)) = q.put else {
            return;
        };
        if acks >= self.config.quorum || outstanding == 0 || now >= deadline {
            self.report(now, qid, Some(acks >= self.config.quorum));
        }
    }

    fn report(&mut self, now: Time, qid: u64, put_ok: Option<bool>) {
        let q = self.queries.remove(&qid).expect("running query");
        let closest = q.iter.closest();
        let (success, hops) = match q.what {
            Target::GetProviders => (q.found.is_some(), q.found.unwrap_or(0)),
            Target::Get => (
                q.records.len() >= self.config.quorum.min(closest.len().max(1))
                    && !q.records.is_empty(),
                q.found.unwrap_or(0),
            ),
            Target::Put(_) => (put_ok.unwrap_or(false), closest.first().map_or(0, |c| c.1)),
            _ => (!closest.is_empty(), closest.first().map_or(0, |c| c.1)),
        };
        let kind = match q.what {
            Target::Find => QueryKind::FindNode,
            Target::SelfLookup => QueryKind::SelfLookup,
            Target::Refresh => QueryKind::Refresh,
            Target::GetProviders => QueryKind::GetProviders,
            Target::Provide => QueryKind::Provide,
            Target::Sweep { .. } => QueryKind::SweepRegion,
            Target::Put(_) => QueryKind::PutValue,
            Target::Get => QueryKind::GetValue,
        };
        let record = q
            .records
            .iter()
            .max_by_key(|r| r.seq)
            .cloned()
            .map(Box::new);
        let done = QueryDone {
            kind,
            target: *q.iter.target(),
            success,
            hops,
            requests: q.iter.requests + q.extra_requests,
            duration: now.saturating_sub(q.started),
            closest: closest.first().map(|(p, _)| p.id),
            keys: q.keys,
            table_size: u16::try_from(self.table.len()).unwrap_or(u16::MAX),
            record,
            providers: q.providers,
        };
        self.event(Event::QueryDone(Box::new(done)));
        self.drain_backlog(now);
    }

    /// Start queued queries while there is room (and a server to ask).
    fn drain_backlog(&mut self, now: Time) {
        while self.queries.len() < self.config.max_concurrent_queries && !self.table.is_empty() {
            let Some((what, target)) = self.backlog.pop_front() else {
                break;
            };
            self.start(now, what, target);
        }
    }

    /// Look up a random key in every stale bucket.
    fn refresh(&mut self, now: Time) {
        self.next_refresh = Some(now + self.config.refresh_interval);
        if self.table.is_empty() {
            return;
        }
        for cpl in self.table.stale_buckets(
            now,
            self.config.refresh_interval,
            self.config.refresh_max_cpl,
        ) {
            let random = Key(self.rng.gen());
            let target = self.table.key_in_bucket(cpl, &random);
            self.start(now, Target::Refresh, target);
        }
    }
}

impl crate::proto::Core for Kademlia {
    type Message = Message;
    type Event = Event;

    /// DHT traffic comes from peers far outside the active view; it does
    /// not count as a neighbour's sign of life.
    const SHOWS_LIVENESS: bool = false;

    /// The sender's relay is not kept: DHT servers are publicly reachable.
    fn handle_message(&mut self, now: Time, from: Peer, message: Message) {
        Kademlia::handle_message(self, now, Peer::new(from.id, from.addr), message);
    }
    /// A neighbour without a relay is a routing table candidate.
    fn handle_neighbor_up(&mut self, now: Time, peer: Peer) {
        if peer.relay.is_none() {
            self.add_neighbor(now, peer);
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        Kademlia::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Kademlia::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Kademlia::poll_timeout(self)
    }
    fn record_of(&self, peer: &PeerId) -> Option<&Peer> {
        Kademlia::record_of(self, peer)
    }
    /// A server without a relay is publicly reachable at the address the
    /// DHT holds for it.
    fn vouched_record(&self, peer: &PeerId) -> Option<&Peer> {
        Kademlia::record_of(self, peer).filter(|r| r.relay.is_none())
    }
}
