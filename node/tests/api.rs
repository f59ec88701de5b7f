//! The local API of two `grove-node` daemons on 127.0.0.1: daemon A serves
//! it on a Unix socket, daemon B over HTTP with a bearer token. The Python
//! example agent (`examples/agent.py`) runs against them end to end; the
//! other test speaks HTTP by hand: unauthenticated and malformed requests
//! are refused with errors naming the field while the daemon keeps
//! serving, status reports neighbours with their path kinds, streams
//! deliver GossipSub messages, the DHT finds a provider and a value, and
//! `/metrics` reports the node's gauges.
//!
//! Every wait is bounded; a guard kills the daemons however a test ends.

#![cfg(not(madsim))]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Fast membership timers; GossipSub, the DHT (quorum 1: two nodes) and
/// the knowledge topic `notes` on. NAT traversal off: on loopback nobody
/// can confirm reachability, and only reachable nodes serve the DHT.
const CONFIG: &str = r#"
[nat]
enabled = false

[hyparview]
keepalive_interval = "200ms"
failure_timeout = "600ms"
shuffle_interval = "1s"
request_timeout = "300ms"

[gossipsub]
enabled = true
heartbeat_interval = "700ms"

[dht]
enabled = true
quorum = 1

[knowledge]
enabled = true
topics = ["notes"]
"#;

/// Where a daemon's API is, and how to authenticate.
#[derive(Clone, Debug)]
enum Endpoint {
    Unix(PathBuf),
    Http(String, String),
}

impl Endpoint {
    fn connect(&self) -> Box<dyn ReadWrite + Send> {
        match self {
            Endpoint::Unix(p) => Box::new(UnixStream::connect(p).expect("connect to the socket")),
            Endpoint::Http(addr, _) => Box::new(TcpStream::connect(addr).expect("connect")),
        }
    }
    fn auth(&self) -> String {
        match self {
            Endpoint::Unix(_) => String::new(),
            Endpoint::Http(_, token) => format!("Authorization: Bearer {token}\r\n"),
        }
    }
}

trait ReadWrite: Read + Write {
    fn set_timeout(&self, t: Duration);
}
impl ReadWrite for UnixStream {
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}
impl ReadWrite for TcpStream {
    fn set_timeout(&self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

/// Send a request (`extra`: header lines) and read the whole answer.
fn raw(ep: &Endpoint, method: &str, path: &str, body: &[u8], extra: &str) -> (u16, Value) {
    let mut conn = ep.connect();
    conn.set_timeout(STEP_TIMEOUT);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    // A refused body may be cut short by the server: not an error here.
    let _ = conn.write_all(body);
    let mut reader = BufReader::new(conn);
    let (status, chunked) = read_head(&mut reader);
    let mut bytes = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            bytes.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut bytes).unwrap();
    }
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

fn call(ep: &Endpoint, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    raw(ep, method, path, body.as_bytes(), &ep.auth())
}

fn ok(ep: &Endpoint, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(ep, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

/// The status code and whether the body is chunked.
fn read_head(reader: &mut impl BufRead) -> (u16, bool) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            return (status, chunked);
        }
        let l = line.to_ascii_lowercase();
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
}

fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// A server-sent event stream: events as (name, data) on a channel.
fn stream(ep: &Endpoint, path: &str) -> mpsc::Receiver<(String, Value)> {
    let mut conn = ep.connect();
    conn.set_timeout(Duration::from_secs(120));
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        ep.auth()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn);
    let (status, chunked) = read_head(&mut reader);
    assert_eq!(status, 200, "GET {path}");
    assert!(chunked);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        while let Some(chunk) = read_chunk(&mut reader) {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for l in event.lines() {
                    if let Some(n) = l.strip_prefix("event:") {
                        name = n.trim().to_owned();
                    } else if let Some(d) = l.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if tx.send((name, value)).is_err() {
                    return;
                }
            }
        }
    });
    let (name, _) = rx.recv_timeout(STEP_TIMEOUT).expect("the ready event");
    assert_eq!(name, "ready");
    rx
}

/// Two daemons, killed on drop.
struct Pair {
    children: Vec<Child>,
    a: Endpoint,
    b: Endpoint,
    b_token_file: PathBuf,
    dir: PathBuf,
    stderr: Vec<common::Kept>,
    /// Their stdout lines, kept so that the readers keep draining the
    /// pipes (a full pipe would stall a daemon's log).
    _stdout: Vec<mpsc::Receiver<(usize, Value)>>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for (i, kept) in self.stderr.iter().enumerate() {
                eprintln!("--- daemon {i} stderr ---");
                for l in kept.lock().unwrap().iter() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start a daemon with its own data directory `dir/name`.
fn spawn(
    dir: &Path,
    name: &str,
    args: &[String],
) -> (Child, mpsc::Receiver<(usize, Value)>, common::Kept) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grove-node"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("node.toml"))
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start grove-node");
    let (tx, rx) = mpsc::channel();
    common::read_events(child.stdout.take().unwrap(), 0, tx, None);
    let kept = common::keep_lines(child.stderr.take().unwrap(), 200);
    (child, rx, kept)
}

/// Wait for the daemon's line of `event`.
fn line(rx: &mpsc::Receiver<(usize, Value)>, event: &str) -> Value {
    let end = Instant::now() + STEP_TIMEOUT;
    loop {
        let (_, v) = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no `{event}` line"));
        if v["event"] == event {
            return v;
        }
    }
}

fn pair(name: &str) -> Pair {
    let dir = std::env::temp_dir().join(format!("grove-api-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("node.toml"), CONFIG).unwrap();
    let sock = dir.join("a.sock");
    let (a, a_rx, a_err) = spawn(&dir, "a", &[format!("--api=unix:{}", sock.display())]);
    let a_addr = line(&a_rx, "listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        line(&a_rx, "api")["listen"],
        format!("unix:{}", sock.display())
    );
    let token_file = dir.join("b.token");
    let (b, b_rx, b_err) = spawn(
        &dir,
        "b",
        &[
            "--api=http:127.0.0.1:0".into(),
            format!("--api-token-file={}", token_file.display()),
            format!("--bootstrap={a_addr}"),
        ],
    );
    let listen = line(&b_rx, "api")["listen"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    Pair {
        children: vec![a, b],
        a: Endpoint::Unix(sock),
        b: Endpoint::Http(listen.strip_prefix("http:").unwrap().to_owned(), token),
        b_token_file: token_file,
        dir,
        stderr: vec![a_err, b_err],
        _stdout: vec![a_rx, b_rx],
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + STEP_TIMEOUT;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_python_agent_publishes_subscribes_writes_and_reads_back_across_two_daemons() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed; the example agent cannot run");
        return;
    }
    let p = pair("agent");
    let (Endpoint::Unix(sock), Endpoint::Http(addr, _)) = (&p.a, &p.b) else {
        unreachable!()
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("--a=unix:{}", sock.display()))
        .arg(format!("--b=http:{addr}"))
        .arg(format!("--token-file-b={}", p.b_token_file.display()))
        .arg("--timeout=20")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("agent stdout:\n{stdout}\nagent stderr:\n{stderr}");
    assert!(out.status.success(), "the agent failed: {stderr}");
    for expected in [
        "status A: peer",
        "status B: peer",
        "B received 'hello from agent on A, #",
        "wrote notes on A (durable)",
        "read back from B: notes agent-note =",
        "agent: ok",
    ] {
        assert!(stdout.contains(expected), "`{expected}` missing");
    }
    // What the agent wrote is in B's document, as B's API tells.
    let doc = ok(&p.b, "GET", "/v1/knowledge/documents?topic=notes", None);
    let note = doc["document"]["observations"]["agent-note"]
        .as_str()
        .unwrap();
    assert!(note.starts_with("the agent on A was here ("), "{doc}");
}

#[test]
fn the_api_refuses_bad_requests_and_serves_status_streams_dht_and_metrics() {
    let p = pair("api");
    let (a, b) = (&p.a, &p.b);

    // Unauthenticated (or wrongly authenticated) HTTP requests: 401.
    for extra in [
        "",
        "Authorization: Bearer 00\r\n",
        "Authorization: Basic eDp5\r\n",
    ] {
        let (status, v) = raw(b, "GET", "/v1/status", b"", extra);
        assert_eq!(status, 401, "{extra:?}: {v}");
        assert_eq!(v["field"], "authorization");
    }

    // Status: identity, reachability, neighbours with their path kinds.
    let mut sb = Value::Null;
    wait_for("both daemons to have a neighbour", || {
        let sa = ok(a, "GET", "/v1/status", None);
        sb = ok(b, "GET", "/v1/status", None);
        !sa["active"].as_array().unwrap().is_empty() && !sb["active"].as_array().unwrap().is_empty()
    });
    let status = sb;
    let sa = ok(a, "GET", "/v1/status", None);
    assert_eq!(status["peer"].as_str().unwrap().len(), 64);
    assert!(status["peer"]
        .as_str()
        .unwrap()
        .bytes()
        .all(|c| c.is_ascii_hexdigit()));
    assert_eq!(status["active"][0]["id"], sa["peer"]);
    assert_eq!(status["active"][0]["path"], "direct");
    assert!(status["reachability"].is_string());
    assert!(status["relays"].is_array());
    assert!(status["counters"]["datagrams_in"].as_u64().unwrap() > 0);
    assert!(
        status["counters"]["messages_in"]["membership"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(status["advertised"]["id"], status["peer"]);
    let sb_peer = status["peer"].clone();

    // Malformed, unknown-field, oversized and bad-topic requests: 4xx
    // naming the field; the daemons keep serving.
    type Case<'a> = (&'a Endpoint, &'a str, &'a str, &'a [u8], u16, &'a str);
    let cases: &[Case] = &[
        (a, "POST", "/v1/pubsub/messages", b"{not json", 400, "body"),
        (
            b,
            "POST",
            "/v1/pubsub/messages",
            br#"{"topic":"t","data":"x","extra":1}"#,
            400,
            "extra",
        ),
        (
            a,
            "POST",
            "/v1/pubsub/subscriptions",
            br#"{"topic":"two words"}"#,
            400,
            "topic",
        ),
        (
            a,
            "POST",
            "/v1/pubsub/subscriptions",
            br#"{"topic":"bell\u0007"}"#,
            400,
            "topic",
        ),
        (
            b,
            "POST",
            "/v1/knowledge/writes",
            br#"{"topic":"notes","write":{"op":"observe","key":"k"}}"#,
            400,
            "write",
        ),
        (a, "GET", "/v1/dht/values?key=", b"", 400, "key"),
    ];
    for (ep, method, path, body, want, field) in cases {
        let (status, v) = raw(ep, method, path, body, &ep.auth());
        assert_eq!(status, *want, "{method} {path}: {v}");
        assert_eq!(v["field"], *field, "{method} {path}: {v}");
    }
    let big = vec![b'x'; 200_000];
    let (status, v) = raw(b, "POST", "/v1/broadcast", &big, &b.auth());
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["field"], "body");
    ok(a, "GET", "/v1/status", None);
    ok(b, "GET", "/v1/status", None);

    // GossipSub over a stream: A streams the topic, B publishes.
    let topic = "news/rust";
    ok(
        a,
        "POST",
        "/v1/pubsub/subscriptions",
        Some(json!({ "topic": topic })),
    );
    ok(
        b,
        "POST",
        "/v1/pubsub/subscriptions",
        Some(json!({ "topic": topic })),
    );
    let subs = ok(a, "GET", "/v1/pubsub/subscriptions", None);
    assert_eq!(subs["topics"][0]["topic"], topic);
    let (status, v) = call(a, "GET", "/v1/pubsub/messages?topic=not-subscribed", None);
    assert_eq!(status, 409, "{v}");
    let events = stream(a, "/v1/pubsub/messages?topic=news%2Frust");
    let mut got = None;
    for n in 0..20 {
        let text = format!("release {n}");
        let sent = ok(
            b,
            "POST",
            "/v1/pubsub/messages",
            Some(json!({ "topic": topic, "data": text })),
        );
        assert_eq!(sent["id"].as_str().unwrap().len(), 64);
        if let Ok((name, v)) = events.recv_timeout(Duration::from_secs(1)) {
            got = Some((name, v));
            break;
        }
    }
    let (name, v) = got.expect("A's stream delivered none of B's messages");
    assert_eq!(name, "message");
    assert_eq!(v["topic"], topic);
    assert_eq!(v["publisher"], sb_peer);
    assert!(v["data"].as_str().unwrap().starts_with("release "));
    // Unsubscribing ends the stream.
    ok(
        a,
        "DELETE",
        "/v1/pubsub/subscriptions?topic=news%2Frust",
        None,
    );
    let end = Instant::now() + STEP_TIMEOUT;
    loop {
        match events.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok((name, _)) if name == "end" => break,
            Ok(_) => continue,
            Err(e) => panic!("no end event after unsubscribing: {e}"),
        }
    }
    let (status, v) = call(
        a,
        "DELETE",
        "/v1/pubsub/subscriptions?topic=news%2Frust",
        None,
    );
    assert_eq!(status, 404, "{v}");

    // The DHT. With two nodes, each record lives on the other one (the
    // closest server to any key, a node never stores its own), and a
    // lookup asks only other nodes: so the publisher's own lookups are the
    // ones answered from the network. A provides a key and finds itself
    // through B's record; B puts a value and gets it back from A's store.
    let provided = ok(
        a,
        "POST",
        "/v1/dht/provide",
        Some(json!({ "key": "dataset/weather" })),
    );
    assert_eq!(provided["providing"], true);
    let mut providers = Value::Null;
    wait_for("the provider record to be found", || {
        let (s, v) = call(
            a,
            "GET",
            "/v1/dht/providers?key=dataset%2Fweather&timeout_ms=3000",
            None,
        );
        providers = v;
        s == 200 && !providers["providers"].as_array().unwrap().is_empty()
    });
    assert_eq!(providers["providers"][0]["id"], sa["peer"]);
    assert_eq!(providers["providers"][0]["addr"], sa["advertised"]["addr"]);
    let b_records = ok(b, "GET", "/v1/status", None)["dht"]["provider_records"].clone();
    assert_eq!(b_records, 1, "B holds A's provider record");
    let put = ok(
        b,
        "PUT",
        "/v1/dht/values",
        Some(json!({ "key": "agent/b", "value": "hello", "seq": 7 })),
    );
    assert_eq!(put["stored"], true);
    let got = ok(
        b,
        "GET",
        "/v1/dht/values?key=agent%2Fb&timeout_ms=5000",
        None,
    );
    assert_eq!(got["value"], "hello");
    assert_eq!(got["seq"], 7);
    assert_eq!(got["publisher"], sb_peer);
    let (s, v) = call(
        a,
        "GET",
        "/v1/dht/values?key=nobody-put-this&timeout_ms=2000",
        None,
    );
    assert!(s == 404 || s == 504, "{s} {v}");

    // Metrics: the neighbour, the DHT table, the requests counted.
    let (s, text) = raw(a, "GET", "/metrics", b"", "");
    assert_eq!(s, 200);
    let text = text.as_str().unwrap().to_owned();
    let sample = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert_eq!(sample("grove_active_view_peers"), 1.0);
    assert_eq!(sample("grove_dht_routing_table_size"), 1.0);
    assert!(sample("grove_sessions") >= 1.0);
    assert_eq!(sample("grove_knowledge_documents"), 1.0);
    assert!(sample("grove_peers{view=\"active\",path=\"direct\"}") == 1.0);
    assert!(text.contains("grove_api_requests_total{route=\"/v1/pubsub/messages\",code=\"400\"} 1"));
    assert!(text.contains("# TYPE grove_drops_total counter"));
}
