//! The routes: one table ([`table`]) builds the router and lists the
//! routes, so the OpenAPI document can be checked against what is served.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::Token;
use super::http::{self as h, ApiError, JsonBody, QueryParams};
use super::hub::{base64, hex, Filter, Hub, Stream};
use super::view::{PeerView, StatusView};
use super::{metrics, DEFAULT_DHT_TIMEOUT, MAX_DHT_TIMEOUT};
use crate::driver::{Answer, KnowledgeCommand, KnowledgeReply, Request as NodeRequest};
use crate::proto::kad::{self, Key, QueryKind};
use crate::proto::{gossipsub, knowledge, plumtree};
use crate::status::Status;

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("../../api/openapi.json");

/// Longest DHT key name accepted (keys are the SHA-256 of the name).
pub const MAX_DHT_KEY_BYTES: usize = 256;

struct App {
    hub: Arc<Hub>,
    token: Option<Token>,
    /// The route templates, to count requests by route.
    routes: Vec<&'static str>,
}

type AppState = Arc<App>;

/// The router being built, and the routes it serves.
pub struct Table {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Table {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Table
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push((method, path));
        self
    }
}

/// Every route and its handler.
fn table() -> Table {
    let table = Table {
        router: Router::new(),
        routes: Vec::new(),
    };
    table
        .add(Method::GET, "/v1/status", status)
        .add(Method::GET, "/v1/openapi.json", openapi)
        .add(Method::GET, "/metrics", metrics_text)
        .add(Method::POST, "/v1/broadcast", broadcast)
        .add(Method::GET, "/v1/broadcast/messages", broadcast_stream)
        .add(Method::GET, "/v1/pubsub/subscriptions", subscriptions)
        .add(Method::POST, "/v1/pubsub/subscriptions", subscribe)
        .add(Method::DELETE, "/v1/pubsub/subscriptions", unsubscribe)
        .add(Method::POST, "/v1/pubsub/messages", publish)
        .add(Method::GET, "/v1/pubsub/messages", pubsub_stream)
        .add(Method::POST, "/v1/knowledge/writes", knowledge_write)
        .add(Method::GET, "/v1/knowledge/documents", knowledge_read)
        .add(Method::GET, "/v1/knowledge/changes", knowledge_stream)
        .add(Method::POST, "/v1/dht/provide", dht_provide)
        .add(Method::GET, "/v1/dht/providers", dht_providers)
        .add(Method::PUT, "/v1/dht/values", dht_put)
        .add(Method::GET, "/v1/dht/values", dht_get)
}

/// The routes served: (method, path template).
#[must_use]
pub fn routes() -> Vec<(Method, &'static str)> {
    table().routes
}

/// The API's router for `hub`; with `token`, every request must carry it.
pub fn router(hub: Arc<Hub>, token: Option<Token>) -> Router {
    let Table { router, routes } = table();
    let app = Arc::new(App {
        hub,
        token,
        routes: routes.iter().map(|(_, p)| *p).collect(),
    });
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), authorize))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), count))
        .with_state(app)
}

// ---- middleware ----

/// Over HTTP, a request without the bearer token gets 401.
async fn authorize(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| token.accepts(v.as_bytes()));
        if !ok {
            let error = ApiError {
                status: StatusCode::UNAUTHORIZED,
                error: "missing or wrong bearer token (send `Authorization: Bearer <token>`, \
                        the token from the daemon's api.token file)"
                    .into(),
                field: Some("authorization".into()),
            };
            let mut resp = error.into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// Count every request by route and status (401s too).
async fn count(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| app.routes.iter().find(|r| **r == m.as_str()).copied())
        .unwrap_or("unmatched");
    let resp = next.run(req).await;
    app.hub.count_request(route, resp.status());
    resp
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; the routes are in /v1/openapi.json",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; see /v1/openapi.json",
            uri.path()
        ),
    )
}

// ---- status and metrics ----

async fn snapshot(hub: &Hub) -> Result<Box<Status>, ApiError> {
    match hub.ask(NodeRequest::Status).await? {
        Answer::Status(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(answer: &Answer) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected answer from the node: {answer:?}"),
    )
}

async fn status(State(app): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let s = snapshot(&app.hub).await?;
    Ok(Json(StatusView::from(&*s)))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics_text(State(app): State<AppState>) -> Result<Response, ApiError> {
    let s = snapshot(&app.hub).await?;
    let streams = app.hub.streams_open();
    let text = app.hub.with_counters(|c| metrics::render(&s, c, streams));
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

// ---- broadcast ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataBody {
    data: Option<String>,
    data_base64: Option<String>,
}

async fn broadcast(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<DataBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let data = h::data(
        body.data,
        body.data_base64,
        ("data", "data_base64"),
        plumtree::MAX_PAYLOAD_BYTES,
    )?;
    match app.hub.ask(NodeRequest::Broadcast(data)).await? {
        Answer::Sent(id) => Ok(Json(json!({ "id": hex(&id.0) }))),
        other => Err(unexpected(&other)),
    }
}

async fn broadcast_stream(State(app): State<AppState>) -> Result<Response, ApiError> {
    let stream = app.hub.open_stream(Filter::Broadcast)?;
    Ok(sse(stream, json!({ "stream": "broadcast" })))
}

// ---- GossipSub ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicBody {
    topic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicQuery {
    topic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    data: Option<String>,
    data_base64: Option<String>,
}

fn need_pubsub(app: &App) -> Result<(), ApiError> {
    if app.hub.features.pubsub {
        Ok(())
    } else {
        Err(ApiError::disabled("GossipSub", "gossipsub"))
    }
}

/// The GossipSub topics the node is subscribed to, with their mesh sizes.
async fn subscribed_topics(app: &App) -> Result<Vec<(String, usize)>, ApiError> {
    let s = snapshot(&app.hub).await?;
    Ok(s.pubsub.map(|p| p.topics).unwrap_or_default())
}

async fn subscriptions(State(app): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    need_pubsub(&app)?;
    let topics: Vec<_> = subscribed_topics(&app)
        .await?
        .into_iter()
        .map(|(topic, mesh)| json!({ "topic": topic, "mesh_peers": mesh }))
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

async fn subscribe(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<TopicBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    h::pubsub_topic("topic", &body.topic)?;
    need_pubsub(&app)?;
    // Subscribing again is not an error: the agent may not know what an
    // earlier agent did.
    let already = subscribed_topics(&app)
        .await?
        .iter()
        .any(|(t, _)| *t == body.topic);
    if !already {
        app.hub
            .ask(NodeRequest::Subscribe(body.topic.clone()))
            .await?;
    }
    Ok(Json(json!({ "topic": body.topic, "subscribed": true })))
}

async fn unsubscribe(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<TopicQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    h::pubsub_topic("topic", &q.topic)?;
    need_pubsub(&app)?;
    match app.hub.ask(NodeRequest::Unsubscribe(q.topic.clone())).await {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::CONFLICT => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                error: e.error,
                field: Some("topic".into()),
            })
        }
        Err(e) => return Err(e),
    }
    // The topic's streams end.
    app.hub.unsubscribed_from(&q.topic);
    Ok(Json(json!({ "topic": q.topic, "subscribed": false })))
}

async fn publish(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    h::pubsub_topic("topic", &body.topic)?;
    let data = h::data(
        body.data,
        body.data_base64,
        ("data", "data_base64"),
        gossipsub::MAX_DATA_BYTES,
    )?;
    need_pubsub(&app)?;
    let request = NodeRequest::Publish {
        topic: body.topic.clone(),
        data,
    };
    match app.hub.ask(request).await? {
        Answer::Sent(id) => Ok(Json(json!({ "topic": body.topic, "id": hex(&id.0) }))),
        other => Err(unexpected(&other)),
    }
}

async fn pubsub_stream(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<TopicQuery>,
) -> Result<Response, ApiError> {
    h::pubsub_topic("topic", &q.topic)?;
    need_pubsub(&app)?;
    let subscribed = subscribed_topics(&app)
        .await?
        .iter()
        .any(|(t, _)| *t == q.topic);
    if !subscribed {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            error: format!(
                "not subscribed to `{}`: POST /v1/pubsub/subscriptions first",
                q.topic
            ),
            field: Some("topic".into()),
        });
    }
    let stream = app.hub.open_stream(Filter::PubSub(q.topic.clone()))?;
    Ok(sse(stream, json!({ "stream": "pubsub", "topic": q.topic })))
}

// ---- knowledge ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    topic: String,
    write: knowledge::Write,
}

fn need_knowledge(app: &App) -> Result<(), ApiError> {
    if app.hub.features.knowledge {
        Ok(())
    } else {
        Err(ApiError::disabled("The knowledge commons", "knowledge"))
    }
}

async fn knowledge_write(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<WriteBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    h::knowledge_topic("topic", &body.topic)?;
    need_knowledge(&app)?;
    let command = KnowledgeCommand::Write {
        topic: body.topic,
        write: body.write,
    };
    match app.hub.ask(NodeRequest::Knowledge(command)).await? {
        // Answered once the commit is durable in the node's store.
        Answer::Knowledge(KnowledgeReply::Written { topic, created }) => Ok(Json(
            json!({ "topic": topic, "created": created, "durable": true }),
        )),
        other => Err(unexpected(&other)),
    }
}

async fn knowledge_read(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<TopicQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    h::knowledge_topic("topic", &q.topic)?;
    need_knowledge(&app)?;
    let command = KnowledgeCommand::Read { topic: q.topic };
    match app.hub.ask(NodeRequest::Knowledge(command)).await? {
        Answer::Knowledge(KnowledgeReply::Document {
            topic,
            json: Some(document),
        }) => Ok(Json(json!({ "topic": topic, "document": document }))),
        Answer::Knowledge(KnowledgeReply::Document { topic, json: None }) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("this node holds no document for topic `{topic}`"),
            field: Some("topic".into()),
        }),
        other => Err(unexpected(&other)),
    }
}

async fn knowledge_stream(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<TopicQuery>,
) -> Result<Response, ApiError> {
    h::knowledge_topic("topic", &q.topic)?;
    need_knowledge(&app)?;
    let stream = app.hub.open_stream(Filter::Knowledge(q.topic.clone()))?;
    Ok(sse(
        stream,
        json!({ "stream": "knowledge", "topic": q.topic }),
    ))
}

// ---- DHT ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    key: String,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
    seq: Option<u64>,
    timeout_ms: Option<u64>,
}

fn need_dht(app: &App) -> Result<(), ApiError> {
    if app.hub.features.dht {
        Ok(())
    } else {
        Err(ApiError::disabled("The DHT", "dht"))
    }
}

/// A key name: 1 to [`MAX_DHT_KEY_BYTES`] bytes; the DHT key is its
/// SHA-256.
fn dht_key(name: &str) -> Result<Key, ApiError> {
    if name.is_empty() || name.len() > MAX_DHT_KEY_BYTES {
        return Err(ApiError::field(
            "key",
            format!(
                "a key is 1 to {MAX_DHT_KEY_BYTES} bytes, got {}",
                name.len()
            ),
        ));
    }
    Ok(Key::of_content(name.as_bytes()))
}

fn dht_timeout(ms: Option<u64>) -> Result<Duration, ApiError> {
    let Some(ms) = ms else {
        return Ok(DEFAULT_DHT_TIMEOUT);
    };
    let max = MAX_DHT_TIMEOUT.as_millis() as u64;
    if ms == 0 || ms > max {
        return Err(ApiError::field(
            "timeout_ms",
            format!("must be 1 to {max}, got {ms}"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

async fn dht_provide(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<KeyBody>,
) -> Result<Response, ApiError> {
    let key = dht_key(&body.key)?;
    need_dht(&app)?;
    app.hub
        .ask(NodeRequest::Dht(kad::Command::Provide(vec![key])))
        .await?;
    // Announced in the background (and republished while the node runs).
    let body = json!({ "key": body.key, "key_hash": hex(&key.0), "providing": true });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn dht_providers(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = dht_key(&q.key)?;
    let timeout = dht_timeout(q.timeout_ms)?;
    need_dht(&app)?;
    let request = NodeRequest::Dht(kad::Command::GetProviders(key));
    let done = app
        .hub
        .dht(request, QueryKind::GetProviders, key, timeout)
        .await?;
    let providers: Vec<PeerView> = done.providers.iter().map(PeerView::from).collect();
    Ok(Json(json!({
        "key": q.key,
        "key_hash": hex(&key.0),
        "providers": providers,
        "hops": done.hops,
        "requests": done.requests,
    })))
}

async fn dht_put(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = dht_key(&body.key)?;
    let value = h::data(
        body.value,
        body.value_base64,
        ("value", "value_base64"),
        kad::MAX_VALUE_BYTES,
    )?;
    let timeout = dht_timeout(body.timeout_ms)?;
    need_dht(&app)?;
    // A later put must carry a higher sequence number to replace a value;
    // by default the wall clock in milliseconds gives one (real mode only:
    // the API is never built for the simulator).
    let seq = body.seq.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let request = NodeRequest::Dht(kad::Command::PutValue { key, seq, value });
    let done = app
        .hub
        .dht(request, QueryKind::PutValue, key, timeout)
        .await?;
    if !done.success {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the value reached fewer DHT servers than the quorum ([dht] quorum)",
        ));
    }
    Ok(Json(json!({
        "key": body.key,
        "key_hash": hex(&key.0),
        "seq": seq,
        "stored": true,
    })))
}

async fn dht_get(
    State(app): State<AppState>,
    QueryParams(q): QueryParams<KeyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = dht_key(&q.key)?;
    let timeout = dht_timeout(q.timeout_ms)?;
    need_dht(&app)?;
    let request = NodeRequest::Dht(kad::Command::GetValue(key));
    let done = app
        .hub
        .dht(request, QueryKind::GetValue, key, timeout)
        .await?;
    let Some(record) = done.record.as_deref().filter(|_| done.success) else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("no value found for `{}` (from a quorum of servers)", q.key),
            field: Some("key".into()),
        });
    };
    Ok(Json(json!({
        "key": q.key,
        "key_hash": hex(&key.0),
        "value": std::str::from_utf8(&record.value).ok(),
        "value_base64": base64(&record.value),
        "seq": record.seq,
        "publisher": hex(record.publisher.as_bytes()),
    })))
}

// ---- streams ----

/// A stream as server-sent events: first `ready` (with `hello`: the
/// stream is registered, nothing after it is missed), then the hub's
/// events; `lagged` (`{"missed": n}`) when the agent fell behind and lost
/// `n` events; `end` when the stream is closed by the daemon (its topic
/// was unsubscribed).
fn sse(stream: Stream, hello: serde_json::Value) -> Response {
    enum Step {
        Ready(serde_json::Value),
        Events,
        Done,
    }
    let events =
        futures_util::stream::unfold((stream, Step::Ready(hello)), |(mut s, step)| async move {
            let event = match step {
                Step::Done => return None,
                Step::Ready(hello) => SseEvent::default().event("ready").data(hello.to_string()),
                Step::Events => {
                    let missed = s.missed.swap(0, Ordering::Relaxed);
                    if missed > 0 {
                        SseEvent::default()
                            .event("lagged")
                            .data(json!({ "missed": missed }).to_string())
                    } else {
                        match s.rx.recv().await {
                            Some((name, data)) => SseEvent::default().event(name).data(&*data),
                            None => {
                                let e = SseEvent::default().event("end").data("{}");
                                return Some((Ok::<_, Infallible>(e), (s, Step::Done)));
                            }
                        }
                    }
                }
            };
            Some((Ok(event), (s, Step::Events)))
        });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
