//! The API's pieces on their own: the OpenAPI document against the routes,
//! every route served, errors naming fields, the token file, bounded
//! streams, and the metrics exposition. The daemons' end-to-end tests are
//! in `node/tests/api.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use rand::SeedableRng;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::hub::Filter;
use super::*;
use crate::driver::EventSink;
use crate::node::{Event, Node};
use crate::proto::gossipsub::{self, Topic};
use crate::proto::plumtree::MsgId;
use crate::status::Status;
use crate::{Identity, PeerId, Time};

fn openapi() -> Value {
    serde_json::from_str(routes::OPENAPI).expect("the OpenAPI document is JSON")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[test]
fn the_openapi_document_describes_exactly_the_routes_served() {
    let doc = openapi();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = routes::routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_ascii_lowercase(), p.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
    assert_eq!(served.len(), 17);
    // Every schema a document refers to exists.
    let text = routes::OPENAPI;
    for r in text.split("\"$ref\": \"#/components/").skip(1) {
        let path: Vec<&str> = r[..r.find('"').unwrap()].split('/').collect();
        assert!(
            !doc["components"][path[0]][path[1]].is_null(),
            "dangling $ref {path:?}"
        );
    }
}

/// A router whose node has stopped: every request that reaches a handler
/// gets an answer from it (a 4xx or a 503), never 404 or 405.
fn router_without_node(token: Option<auth::Token>) -> (axum::Router, std::sync::Arc<Hub>) {
    let (tx, rx) = mpsc::channel(4);
    drop(rx);
    let features = Features {
        pubsub: true,
        dht: true,
        knowledge: true,
    };
    let hub = Hub::new(tx, features);
    (router(std::sync::Arc::clone(&hub), token), hub)
}

async fn call(app: &axum::Router, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|t| t == "text/event-stream")
    {
        // A stream: it never ends by itself.
        return (status, Value::Null);
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_documented_route_is_served_and_others_are_json_404_or_405() {
    runtime().block_on(async {
        let (app, _hub) = router_without_node(None);
        let doc = openapi();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                let (status, body) = call(&app, m, path, "").await;
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status} {body}"
                );
            }
        }
        let (status, body) = call(&app, Method::GET, "/v1/nothing", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("/v1/nothing"));
        let (status, body) = call(&app, Method::PATCH, "/v1/status", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["error"].is_string());
        // The node is gone: an answer, not a hang.
        let (status, body) = call(&app, Method::GET, "/v1/status", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    });
}

#[test]
fn bad_requests_get_400_or_413_naming_the_field() {
    runtime().block_on(async {
        let (app, _hub) = router_without_node(None);
        let cases: &[(Method, &str, &str, StatusCode, &str)] = &[
            (Method::POST, "/v1/pubsub/messages", "{\"topic\": ", StatusCode::BAD_REQUEST, "topic"),
            (Method::POST, "/v1/pubsub/messages", "not json", StatusCode::BAD_REQUEST, "body"),
            (Method::POST, "/v1/pubsub/messages", "", StatusCode::BAD_REQUEST, "body"),
            (Method::POST, "/v1/pubsub/messages", "{\"topic\":\"t\",\"data\":\"x\"} x", StatusCode::BAD_REQUEST, "body"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"t","data":"x","colour":1}"#, StatusCode::BAD_REQUEST, "colour"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":7,"data":"x"}"#, StatusCode::BAD_REQUEST, "topic"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"a\tb","data":"x"}"#, StatusCode::BAD_REQUEST, "topic"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"","data":"x"}"#, StatusCode::BAD_REQUEST, "topic"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"t"}"#, StatusCode::BAD_REQUEST, "data"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"t","data":"x","data_base64":"eA=="}"#, StatusCode::BAD_REQUEST, "data_base64"),
            (Method::POST, "/v1/pubsub/messages", r#"{"topic":"t","data_base64":"%%%"}"#, StatusCode::BAD_REQUEST, "data_base64"),
            (Method::POST, "/v1/knowledge/writes", r#"{"topic":"t","write":{"op":"observe","kee":"k","value":1}}"#, StatusCode::BAD_REQUEST, "write.kee"),
            (Method::POST, "/v1/knowledge/writes", r#"{"topic":"t","write":{"op":"fly"}}"#, StatusCode::BAD_REQUEST, "write.op"),
            (Method::POST, "/v1/knowledge/writes", r#"{"topic":"this topic name is far too long for it","write":{"op":"increment","name":"n","by":1}}"#, StatusCode::BAD_REQUEST, "topic"),
            (Method::GET, "/v1/knowledge/documents?topc=t", "", StatusCode::BAD_REQUEST, "topc"),
            (Method::GET, "/v1/knowledge/documents", "", StatusCode::BAD_REQUEST, "topic"),
            (Method::GET, "/v1/dht/providers?key=k&timeout_ms=0", "", StatusCode::BAD_REQUEST, "timeout_ms"),
            (Method::GET, "/v1/dht/providers?key=k&timeout_ms=soon", "", StatusCode::BAD_REQUEST, "timeout_ms"),
            (Method::PUT, "/v1/dht/values", r#"{"key":"","value":"v"}"#, StatusCode::BAD_REQUEST, "key"),
        ];
        for (method, uri, body, want, field) in cases {
            let (status, json) = call(&app, method.clone(), uri, body).await;
            assert_eq!(status, *want, "{method} {uri} {body}: {json}");
            assert_eq!(json["field"], *field, "{method} {uri} {body}: {json}");
            assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let (status, json) = call(&app, Method::POST, "/v1/broadcast", &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
        assert_eq!(json["field"], "body");
        let long = format!(r#"{{"data":"{}"}}"#, "x".repeat(1025));
        let (status, json) = call(&app, Method::POST, "/v1/broadcast", &long).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["field"], "data");
    });
}

#[test]
fn http_requests_without_the_token_get_401() {
    let dir = tempdir("token-401");
    let token = auth::load_or_create_token(&dir.join("api.token")).unwrap();
    let text = std::fs::read_to_string(dir.join("api.token")).unwrap();
    runtime().block_on(async {
        let (app, hub) = router_without_node(Some(token));
        for auth in [
            None,
            Some("Bearer nope".to_owned()),
            Some(text.trim().to_owned()),
        ] {
            let mut req = Request::builder().uri("/v1/status");
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let resp = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
        let req = Request::builder()
            .uri("/v1/status")
            .header("authorization", format!("Bearer {}", text.trim()))
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        // Past the check (the node is gone here).
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let counted = hub.with_counters(|c| c.requests.clone());
        assert_eq!(counted.get(&("/v1/status", 401)), Some(&3));
        assert_eq!(counted.get(&("/v1/status", 503)), Some(&1));
    });
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("grove-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_token_file_is_created_private_reused_and_checked() {
    let dir = tempdir("token");
    let path = dir.join("api.token");
    let token = auth::load_or_create_token(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let hexed = text.trim();
    assert_eq!(hexed.len(), 64);
    assert!(hexed.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(token.accepts(format!("Bearer {hexed}").as_bytes()));
    assert!(!token.accepts(hexed.as_bytes()));
    assert!(!token.accepts(format!("Bearer {}", &hexed[..63]).as_bytes()));
    assert!(
        !format!("{token:?}").contains(hexed),
        "the token reached Debug"
    );
    // Read again, not replaced.
    let again = auth::load_or_create_token(&path).unwrap();
    assert!(again.accepts(format!("Bearer {hexed}").as_bytes()));
    // A file others may read is refused, naming it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = auth::load_or_create_token(&path).unwrap_err().to_string();
    assert!(e.contains("api.token") && e.contains("644"), "{e}");
    // So is one that holds no token.
    let empty = dir.join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = auth::load_or_create_token(&empty).unwrap_err().to_string();
    assert!(e.contains("empty.token"), "{e}");
    // And a directory in the way.
    let e = auth::load_or_create_token(&dir).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn listen_addresses_are_unix_paths_or_loopback_http() {
    assert_eq!(
        Listen::parse("unix:/tmp/a.sock"),
        Ok(Listen::Unix("/tmp/a.sock".into()))
    );
    assert_eq!(
        Listen::parse("http:127.0.0.1:7700"),
        Ok(Listen::Http("127.0.0.1:7700".parse().unwrap()))
    );
    assert!(Listen::parse("http:[::1]:7700").is_ok());
    let e = Listen::parse("http:0.0.0.0:7700").unwrap_err();
    assert!(e.contains("not a loopback"), "{e}");
    assert!(Listen::parse("http:192.168.1.4:7700").is_err());
    assert!(Listen::parse("http:localhost:7700").is_err());
    assert!(Listen::parse("unix:").is_err());
    assert!(Listen::parse("/tmp/a.sock").is_err());
    assert_eq!(
        Listen::default_in(std::path::Path::new("/d")),
        Listen::Unix("/d/api.sock".into())
    );
}

/// A sink that keeps nothing: the hub's hooks alone.
struct Nothing;
impl EventSink for Nothing {
    fn on_event(&mut self, _now: Time, _event: Event) {}
}

fn pubsub_message(topic: &str, n: u8) -> Event {
    Event::PubSub(gossipsub::Event::Message {
        id: MsgId([n; 32]),
        topic: Topic::new(topic),
        publisher: PeerId([1; 32]),
        via: None,
        data: Bytes::from(vec![b'a' + n % 26]),
    })
}

#[test]
fn a_slow_stream_loses_events_counted_and_streams_are_bounded() {
    let (tx, _rx) = mpsc::channel(4);
    let hub = Hub::new(tx, Features::default());
    let mut sink = Sink::new(Nothing, std::sync::Arc::clone(&hub));
    let mut slow = hub.open_stream(Filter::PubSub("t".into())).unwrap();
    let mut other = hub.open_stream(Filter::PubSub("u".into())).unwrap();
    let extra = 72;
    for i in 0..(STREAM_QUEUE + extra) {
        sink.on_event(Time::ZERO, pubsub_message("t", i as u8));
    }
    sink.on_event(Time::ZERO, pubsub_message("u", 0));
    // The queue held STREAM_QUEUE events, the oldest; the rest were lost
    // and counted, for the stream and in the metrics.
    let mut got = 0;
    while let Ok((name, data)) = slow.rx.try_recv() {
        assert_eq!(name, "message");
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["topic"], "t");
        got += 1;
    }
    assert_eq!(got, STREAM_QUEUE);
    assert_eq!(
        slow.missed.load(std::sync::atomic::Ordering::Relaxed),
        extra as u64
    );
    assert_eq!(hub.with_counters(|c| c.lagged), extra as u64);
    // Another topic's stream got its own event only.
    assert_eq!(other.rx.try_recv().unwrap().0, "message");
    assert!(other.rx.try_recv().is_err());

    // At most MAX_STREAMS at once; a closed stream frees its place.
    let mut open = Vec::new();
    while open.len() + 2 < MAX_STREAMS {
        open.push(hub.open_stream(Filter::Broadcast).unwrap());
    }
    let refused = hub
        .open_stream(Filter::Broadcast)
        .err()
        .expect("over the bound");
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    drop(other);
    assert_eq!(hub.streams_open(), MAX_STREAMS - 1);
    assert!(hub.open_stream(Filter::Broadcast).is_ok());
    // Unsubscribing ends the topic's streams.
    hub.unsubscribed_from("t");
    assert!(matches!(
        slow.rx.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

/// Parse a Prometheus text exposition: samples by family, checking that
/// each family has HELP and TYPE before its samples.
fn parse_exposition(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut families: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP name text");
            assert!(!doc.is_empty());
            help.insert(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(help.contains(name), "TYPE before HELP: {line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter not named _total: {name}");
            }
            types.insert(name.to_owned(), kind.to_owned());
            families.entry(name.to_owned()).or_default();
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("grove_"), "{line}");
        assert!(types.contains_key(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        families
            .get_mut(name)
            .unwrap()
            .push((series[name.len()..].to_owned(), value));
    }
    families
}

#[test]
fn metrics_are_a_valid_exposition_of_the_nodes_counters() {
    let mut config = crate::node::Config::default();
    config.gossipsub.enabled = true;
    config.dht.enabled = true;
    config.knowledge.enabled = true;
    config.knowledge.topics = vec!["notes".into()];
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let identity = Identity::from_seed([3; 32]);
    let rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut node = Node::new(&identity, addr, config, rng);
    node.count_traffic();
    let now = Time::from_secs(5);
    node.knowledge_write(
        now,
        "notes",
        &crate::proto::knowledge::Write::Observe {
            key: "k".into(),
            value: serde_json::json!("v"),
        },
    )
    .unwrap();
    node.subscribe(now, "news").unwrap();
    // Something to send, counted by protocol.
    node.join(now, "127.0.0.1:7001".parse().unwrap());
    let mut out = Vec::new();
    let mut sent = 0;
    while node.poll_transmit(&mut out).is_some() {
        sent += 1;
    }
    assert!(sent > 0);
    let status = Status::of(&node, now);
    let (tx, _rx) = mpsc::channel(4);
    let hub = Hub::new(tx, Features::default());
    hub.count_request("/v1/status", StatusCode::OK);
    hub.count_request("/v1/status", StatusCode::OK);
    let text = hub.with_counters(|c| metrics::render(&status, c, 2));
    let families = parse_exposition(&text);
    let value = |name: &str, labels: &str| -> f64 {
        families[name]
            .iter()
            .find(|(l, _)| l == labels)
            .unwrap_or_else(|| panic!("{name}{labels} missing in\n{text}"))
            .1
    };
    for name in [
        "grove_datagrams_in_total",
        "grove_datagrams_out_total",
        "grove_messages_in_total",
        "grove_drops_total",
        "grove_active_view_peers",
        "grove_passive_view_peers",
        "grove_peers",
        "grove_relay_reservations",
        "grove_sessions",
        "grove_dht_routing_table_size",
        "grove_knowledge_documents",
        "grove_knowledge_bytes",
        "grove_pubsub_topics",
        "grove_api_requests_total",
        "grove_api_streams",
    ] {
        assert!(families.contains_key(name), "{name} missing");
    }
    let out_total: f64 = families["grove_datagrams_out_total"]
        .iter()
        .map(|s| s.1)
        .sum();
    assert_eq!(out_total, sent as f64);
    assert_eq!(out_total, node.stats().datagrams_out as f64);
    assert_eq!(value("grove_knowledge_documents", ""), 1.0);
    assert!(value("grove_knowledge_bytes", "") > 0.0);
    assert_eq!(value("grove_knowledge_writes_total", ""), 1.0);
    assert_eq!(value("grove_pubsub_topics", ""), 1.0);
    assert_eq!(value("grove_api_streams", ""), 2.0);
    assert_eq!(
        value(
            "grove_api_requests_total",
            "{route=\"/v1/status\",code=\"200\"}"
        ),
        2.0
    );
    assert_eq!(value("grove_drops_total", "{cause=\"auth\"}"), 0.0);
    assert_eq!(
        value("grove_peers", "{view=\"active\",path=\"direct\"}"),
        0.0
    );
    assert_eq!(value("grove_reachability", "{state=\"unknown\"}"), 1.0);
}
