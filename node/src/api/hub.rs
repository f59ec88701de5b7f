//! The API's side of the driver: requests waiting for their answers, DHT
//! lookups waiting for their outcome, open event streams, and the API's
//! own counters. Shared by the request handlers and [`Sink`], which the
//! driver calls on its task; every lock is held for a few map operations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::http::ApiError;
use super::{ANSWER_TIMEOUT, MAX_DHT_WAITERS, MAX_PENDING, MAX_STREAMS, STREAM_QUEUE};
use crate::driver::{Answer, Command, EventSink, KnowledgeReply, Request};
use crate::node::Event;
use crate::proto::kad::{Key, QueryDone, QueryKind};
use crate::proto::{gossipsub, knowledge};
use crate::Time;

/// Which cores the node runs (from its configuration), so that a request
/// for one that is off gets a clear 409 at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub pubsub: bool,
    pub dht: bool,
    pub knowledge: bool,
}

/// What a stream carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Filter {
    Broadcast,
    PubSub(String),
    Knowledge(String),
}

/// One event for a stream: its SSE event name and its JSON data.
pub(super) type Item = (&'static str, Arc<str>);

struct StreamEntry {
    filter: Filter,
    tx: mpsc::Sender<Item>,
    /// Events this stream lost to a full queue, not yet reported.
    missed: Arc<AtomicU64>,
}

struct DhtWaiter {
    kind: QueryKind,
    key: Key,
    tx: oneshot::Sender<Box<QueryDone>>,
}

#[derive(Default)]
pub(super) struct Counters {
    /// Requests by route template and status code (both from fixed sets:
    /// the routes, and the codes the handlers give).
    pub requests: BTreeMap<(&'static str, u16), u64>,
    /// Stream events lost to full queues, over all streams.
    pub lagged: u64,
    /// Relay reservation outcomes (`ok`, `expired`, `refused`).
    pub reservations: BTreeMap<&'static str, u64>,
    /// Events the node reported, by kind.
    pub events: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<u64, oneshot::Sender<Result<Answer, String>>>,
    dht: BTreeMap<u64, DhtWaiter>,
    streams: BTreeMap<u64, StreamEntry>,
    counters: Counters,
}

/// The API's shared state.
pub struct Hub {
    commands: mpsc::Sender<Command>,
    next_id: AtomicU64,
    state: Mutex<State>,
    pub(super) features: Features,
}

impl Hub {
    /// A hub sending requests to the driver through `commands`, for a node
    /// running the cores `features` says.
    #[must_use]
    pub fn new(commands: mpsc::Sender<Command>, features: Features) -> Arc<Hub> {
        Arc::new(Hub {
            commands,
            next_id: AtomicU64::new(1),
            state: Mutex::default(),
            features,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A handler that panicked while holding the lock left consistent
        // maps (every change is one insert or remove): go on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn with_counters<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        f(&mut self.state().counters)
    }

    pub(super) fn count_request(&self, route: &'static str, status: StatusCode) {
        *self
            .state()
            .counters
            .requests
            .entry((route, status.as_u16()))
            .or_default() += 1;
    }

    pub(super) fn streams_open(&self) -> usize {
        self.state().streams.len()
    }

    /// Ask the node and wait for its answer. A refusal by the node is a
    /// 409 with its reason, naming `field` when given.
    pub(super) async fn ask(&self, request: Request) -> Result<Answer, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state();
            if state.pending.len() >= MAX_PENDING {
                return Err(ApiError::busy(format!(
                    "{MAX_PENDING} requests are already waiting for the node; retry later"
                )));
            }
            state.pending.insert(id, tx);
        }
        let asked = async {
            self.commands
                .send(super::request(id, request))
                .await
                .map_err(|_| ApiError::gone())?;
            rx.await.map_err(|_| ApiError::gone())
        };
        let result = tokio::time::timeout(ANSWER_TIMEOUT, asked).await;
        // Whatever happened, the entry goes (the answer removes it when it
        // comes; a timeout or a stopped driver leaves it here).
        self.state().pending.remove(&id);
        match result {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(refusal))) => Err(ApiError::new(StatusCode::CONFLICT, refusal)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::busy(format!(
                "the node did not answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Start a DHT query with `request` and wait up to `timeout` for the
    /// outcome of the query of `kind` for `key` (the earliest waiter gets
    /// the first outcome).
    pub(super) async fn dht(
        &self,
        request: Request,
        kind: QueryKind,
        key: Key,
        timeout: Duration,
    ) -> Result<Box<QueryDone>, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state();
            if state.dht.len() >= MAX_DHT_WAITERS {
                return Err(ApiError::busy(format!(
                    "{MAX_DHT_WAITERS} DHT lookups are already waiting; retry later"
                )));
            }
            state.dht.insert(id, DhtWaiter { kind, key, tx });
        }
        let done = async {
            self.ask(request).await?;
            tokio::time::timeout(timeout, rx)
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "the DHT lookup did not finish within {} ms (the node may know no DHT \
                         server yet)",
                            timeout.as_millis()
                        ),
                    )
                })?
                .map_err(|_| ApiError::gone())
        };
        let result = done.await;
        self.state().dht.remove(&id);
        result
    }

    /// Open a stream of `filter`'s events.
    pub(super) fn open_stream(self: &Arc<Self>, filter: Filter) -> Result<Stream, ApiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let missed = Arc::new(AtomicU64::new(0));
        let mut state = self.state();
        if state.streams.len() >= MAX_STREAMS {
            return Err(ApiError::busy(format!(
                "{MAX_STREAMS} streams are already open; close one first"
            )));
        }
        state.streams.insert(
            id,
            StreamEntry {
                filter,
                tx,
                missed: Arc::clone(&missed),
            },
        );
        Ok(Stream {
            rx,
            missed,
            _guard: StreamGuard {
                hub: Arc::clone(self),
                id,
            },
        })
    }

    /// Hand `item` to every stream `matches` picks; a full queue loses it
    /// (counted), a closed one is forgotten.
    fn publish(&self, state: &mut State, matches: impl Fn(&Filter) -> bool, item: Item) {
        let mut closed = Vec::new();
        let mut lost = 0;
        for (id, s) in &state.streams {
            if !matches(&s.filter) {
                continue;
            }
            match s.tx.try_send(item.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.missed.fetch_add(1, Ordering::Relaxed);
                    lost += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
            }
        }
        state.counters.lagged += lost;
        for id in closed {
            state.streams.remove(&id);
        }
    }

    /// What the driver tells: the node's events (for streams, DHT waiters
    /// and counters) and answers.
    fn on_event(&self, now: Time, event: &Event) {
        let mut state = self.state();
        *state.counters.events.entry(event_kind(event)).or_default() += 1;
        match event {
            Event::Delivered {
                id,
                hops,
                from,
                payload,
            } => {
                let item = json_item(&BroadcastItem {
                    id: hex(&id.0),
                    hops: *hops,
                    from: from.as_ref().map(|p| hex(p.as_bytes())),
                    data: std::str::from_utf8(payload).ok(),
                    data_base64: base64(payload),
                    t_ms: millis(now),
                });
                self.publish(&mut state, |f| *f == Filter::Broadcast, ("message", item));
            }
            Event::PubSub(gossipsub::Event::Message {
                id,
                topic,
                publisher,
                via,
                data,
            }) => {
                let item = json_item(&PubSubItem {
                    id: hex(&id.0),
                    topic: topic.as_str(),
                    publisher: hex(publisher.as_bytes()),
                    via: via.as_ref().map(|p| hex(p.as_bytes())),
                    data: std::str::from_utf8(data).ok(),
                    data_base64: base64(data),
                    t_ms: millis(now),
                });
                let matches = |f: &Filter| matches!(f, Filter::PubSub(t) if t == topic.as_str());
                self.publish(&mut state, matches, ("message", item));
            }
            Event::Knowledge(knowledge::Event::Changed {
                topic,
                version_hash,
                local,
            }) => {
                let item = json_item(&ChangeItem {
                    topic,
                    version: format!("{version_hash:016x}"),
                    local: *local,
                    t_ms: millis(now),
                });
                let matches = |f: &Filter| matches!(f, Filter::Knowledge(t) if t == topic);
                self.publish(&mut state, matches, ("change", item));
            }
            Event::Dht(crate::proto::kad::Event::QueryDone(done)) => {
                let waiter = state
                    .dht
                    .iter()
                    .find(|(_, w)| w.kind == done.kind && w.key == done.target)
                    .map(|(id, _)| *id);
                if let Some(w) = waiter.and_then(|id| state.dht.remove(&id)) {
                    let _ = w.tx.send(done.clone());
                }
            }
            Event::Traversal(crate::transport::nat::Event::Reservation { outcome, .. }) => {
                use crate::transport::nat::ReservationOutcome;
                let what = match outcome {
                    ReservationOutcome::Ok => "ok",
                    ReservationOutcome::Expired => "expired",
                    ReservationOutcome::Refused(_) => "refused",
                };
                *state.counters.reservations.entry(what).or_default() += 1;
            }
            _ => {}
        }
    }

    fn on_answer(&self, id: u64, answer: Result<Answer, String>) {
        // Absent when the request gave up waiting (timed out).
        let waiting = self.state().pending.remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }

    /// The node left `topic`: its streams end.
    pub(super) fn unsubscribed_from(&self, topic: &str) {
        self.state()
            .streams
            .retain(|_, s| !matches!(&s.filter, Filter::PubSub(t) if t == topic));
    }
}

/// A stream's receiving end; dropping it (the agent went away) closes the
/// stream in the hub.
pub(super) struct Stream {
    pub rx: mpsc::Receiver<Item>,
    pub missed: Arc<AtomicU64>,
    _guard: StreamGuard,
}

struct StreamGuard {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.state().streams.remove(&self.id);
    }
}

/// The driver's sink with the API's hooks: the node's events go to the
/// hub and then on to `inner` (the daemon's log); answers go to the hub.
pub struct Sink<S> {
    inner: S,
    hub: Arc<Hub>,
}

impl<S> Sink<S> {
    pub fn new(inner: S, hub: Arc<Hub>) -> Self {
        Sink { inner, hub }
    }
}

impl<S: EventSink> EventSink for Sink<S> {
    fn on_event(&mut self, now: Time, event: Event) {
        self.hub.on_event(now, &event);
        self.inner.on_event(now, event);
    }
    fn on_command_error(&mut self, now: Time, error: String) {
        self.inner.on_command_error(now, error);
    }
    fn on_knowledge_reply(&mut self, now: Time, reply: KnowledgeReply) {
        self.inner.on_knowledge_reply(now, reply);
    }
    fn on_answer(&mut self, _now: Time, id: u64, answer: Result<Answer, String>) {
        self.hub.on_answer(id, answer);
    }
}

#[derive(Serialize)]
struct BroadcastItem<'a> {
    id: String,
    hops: u16,
    from: Option<String>,
    data: Option<&'a str>,
    data_base64: String,
    t_ms: u64,
}

#[derive(Serialize)]
struct PubSubItem<'a> {
    id: String,
    topic: &'a str,
    publisher: String,
    via: Option<String>,
    data: Option<&'a str>,
    data_base64: String,
    t_ms: u64,
}

#[derive(Serialize)]
struct ChangeItem<'a> {
    topic: &'a str,
    version: String,
    local: bool,
    t_ms: u64,
}

fn json_item(value: &impl Serialize) -> Arc<str> {
    // These types always serialize (strings, numbers, options).
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        .into()
}

fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Delivered { .. } => "delivered",
        Event::NeighborUp(_) => "neighbor_up",
        Event::NeighborDown(_) => "neighbor_down",
        Event::Connected { .. } => "connected",
        Event::Dropped { .. } => "dropped",
        Event::Traversal(_) => "traversal",
        Event::Knowledge(_) => "knowledge",
        Event::Dht(_) => "dht",
        Event::PubSub(_) => "pubsub",
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn millis(t: Time) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}
