//! Ten `grove-node` processes on 127.0.0.1: they form an overlay, deliver a
//! broadcast everywhere, survive three crashed peers, forged datagrams, an
//! overlong stdin line and a closed stdin, and stop on end of input when
//! asked to. Three more converge on a knowledge commons document written
//! through JSON command lines.
//!
//! The daemons speak only through sessions: each logs `session_up` for a
//! peer (a handshake proved the peer's identity key) before that peer
//! becomes a neighbour, with the peer id the other process announced; and
//! datagrams forged by the test (the plaintext format nodes spoke before
//! sessions, and random bytes) are logged as dropped and get no answer,
//! no neighbour and no delivery, while a well-formed identify request from
//! the same socket is answered.
//!
//! Every node listens on port 0 and announces its address in its first
//! `listening` line; stdout lines arrive through one reader thread per
//! process. Every wait is bounded, and a guard kills every process however
//! the test ends. All traffic stays on 127.0.0.1.

#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use grove_node::message::{self, Message};
use grove_node::proto::{hyparview, plumtree};
use grove_node::{Identity, PeerId};
use serde_json::Value;

const NODES: usize = 10;
/// Bound on every wait for the overlay or a delivery.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each process's stderr kept for the failure report.
const STDERR_LINES_KEPT: usize = 200;

/// Timers a few times faster than the defaults, so the test is quick.
const FAST_CONFIG: &str = r#"
[hyparview]
keepalive_interval = "200ms"
failure_timeout = "600ms"
shuffle_interval = "1s"
request_timeout = "300ms"
"#;

#[test]
fn ten_processes_broadcast_through_crashes_and_garbage() {
    let started = Instant::now();
    let mut cluster = Cluster::new();

    // Node 0 alone, nodes 1-7 join through node 0. Nodes 8 and 9 are first
    // given a contact that never answers, then node 1: they get in through
    // the fallback. Node 9 stops at the end of its stdin.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let a0 = cluster.spawn(&[], &[]);
    let a1 = cluster.spawn(&[a0], &[]);
    for _ in 2..8 {
        cluster.spawn(&[a0], &[]);
    }
    cluster.spawn(&[silent_addr, a1], &[]);
    cluster.spawn(&[silent_addr, a1], &["--exit-on-eof"]);
    let all: Vec<usize> = (0..NODES).collect();
    cluster.wait_for("a connected overlay of all ten nodes", |c| {
        c.is_connected_overlay(&all)
    });
    let tried_silent = datagram_sources(&silent);
    for i in [8, 9] {
        assert!(
            tried_silent.contains(&cluster.procs[i].addr),
            "node {i} did not try its first contact (sources seen: {tried_silent:?})"
        );
    }
    let handshakes = cluster.check_sessions(&all);
    eprintln!(
        "overlay of {NODES} nodes after {:?}; {handshakes} sessions up",
        started.elapsed()
    );

    // A broadcast from node 3 reaches everyone.
    let first = "first broadcast, from node 3";
    cluster.publish(3, first);
    cluster.wait_for("every node to deliver the first broadcast", |c| {
        all.iter().all(|&i| c.delivered(i, first).is_some())
    });
    cluster.check_delivery(first, 3, &all);
    eprintln!("first broadcast delivered after {:?}", started.elapsed());

    // Forgeries to node 5 are reported, dropped, and change nothing.
    let forged = Forgeries::new();
    forged.check(&mut cluster, 5);

    // Crash three nodes (the bootstrap node among them) and close node 6's
    // stdin, which must not stop it.
    let crashed = [0, 2, 7];
    for i in crashed {
        cluster.kill(i);
    }
    drop(cluster.procs[6].stdin.take());
    let survivors: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !crashed.contains(i))
        .collect();
    let crashed_peers: BTreeSet<String> = crashed
        .iter()
        .map(|&i| cluster.procs[i].peer.clone())
        .collect();
    cluster.wait_for(
        "the survivors to drop the crashed peers and stay connected",
        |c| {
            survivors
                .iter()
                .all(|&i| c.active_view(i).is_disjoint(&crashed_peers))
                && c.is_connected_overlay(&survivors)
        },
    );
    eprintln!("overlay healed after {:?}", started.elapsed());

    // An overlong line is refused; the next line from the same node reaches
    // every survivor.
    let overlong = "x".repeat(1500);
    cluster.publish(4, &overlong);
    let second = "second broadcast, from node 4 after the crashes";
    cluster.publish(4, second);
    cluster.wait_for("every survivor to deliver the second broadcast", |c| {
        survivors.iter().all(|&i| c.delivered(i, second).is_some())
    });
    cluster.check_delivery(second, 4, &survivors);
    cluster.wait_for("node 4 to refuse the overlong line on stderr", |c| {
        c.stderr_contains(4, "1500 bytes")
    });
    assert!(
        cluster.delivered_anywhere(&overlong).is_none(),
        "the overlong line was delivered"
    );
    eprintln!("second broadcast delivered after {:?}", started.elapsed());

    // Long after the forgeries, still nothing came of them; the survivors'
    // new neighbours came through sessions too.
    forged.check_nothing_came_of(&cluster);
    let handshakes = cluster.check_sessions(&survivors);
    eprintln!("{handshakes} sessions up at the survivors in all");

    // Node 9 was started with --exit-on-eof.
    drop(cluster.procs[9].stdin.take());
    let status = cluster.wait_exit(9, Duration::from_secs(5));
    assert!(status.success(), "node 9 exited with {status}");

    eprintln!("done after {:?}", started.elapsed());
}

/// Three daemons holding the topic `notes` converge on one document over
/// real UDP: each writes through JSON command lines on stdin, a subscribed
/// node logs remote changes, and every node ends with the same operations,
/// the same state and every edit.
#[test]
fn three_processes_converge_on_a_knowledge_document() {
    let mut cluster = Cluster::new();
    let topic = ["--topic", "notes"];
    let a0 = cluster.spawn(&[], &topic);
    cluster.spawn(&[a0], &topic);
    cluster.spawn(&[a0], &topic);
    let all = [0, 1, 2];
    cluster.wait_for("a connected overlay of three nodes", |c| {
        c.is_connected_overlay(&all)
    });
    cluster.check_sessions(&all);
    cluster.publish(0, r#"{"cmd":"subscribe","topic":"notes"}"#);
    let write = |w: &str| format!(r#"{{"cmd":"write","topic":"notes","write":{w}}}"#);
    cluster.publish(
        0,
        &write(r#"{"op":"observe","key":"from-0","value":{"x":1}}"#),
    );
    cluster.publish(1, &write(r#"{"op":"increment","name":"votes","by":2}"#));
    cluster.publish(2, &write(r#"{"op":"set_add","name":"tags","item":"udp"}"#));
    cluster.publish(1, &write(r#"{"op":"tree_add","label":"root"}"#));
    cluster.publish(1, r#"{"cmd":"write","topic":"notes"}"#);
    cluster.publish(2, "a plain line is still a broadcast");
    cluster.wait_for("the four edits to be acknowledged", |c| {
        c.log
            .iter()
            .filter(|(_, e)| e["event"] == "knowledge_written")
            .count()
            == 4
    });
    let root = cluster
        .events(1)
        .find_map(|e| e["created"].as_str().map(str::to_owned))
        .expect("tree_add answers the new node's id");
    cluster.wait_for("node 1 to refuse the command without a write", |c| {
        c.stderr_contains(1, "not a valid command")
    });
    cluster.wait_for("node 0 to log a change made elsewhere", |c| {
        c.events(0)
            .any(|e| e["event"] == "knowledge_changed" && e["local"] == false)
    });
    cluster.wait_for("every node to deliver the plain line", |c| {
        all.iter().all(|&i| {
            c.delivered(i, "a plain line is still a broadcast")
                .is_some()
        })
    });
    // Read every node's document until all hold every edit (bounded).
    let complete = |doc: &Value| {
        doc["observations"]["from-0"] == r#"{"x":1}"#
            && doc["counter:votes"] == 2.0
            && doc["set:tags"]["udp"] == true
            && doc["graph"].to_string().contains(&root)
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let seen = cluster.log.len();
        for i in all {
            cluster.publish(i, r#"{"cmd":"read","topic":"notes"}"#);
        }
        cluster.wait_for("three documents", |c| {
            c.log[seen..]
                .iter()
                .filter(|(_, e)| e["event"] == "knowledge_document")
                .count()
                == 3
        });
        let docs: Vec<&Value> = cluster.log[seen..]
            .iter()
            .filter(|(_, e)| e["event"] == "knowledge_document")
            .map(|(_, e)| &e["json"])
            .collect();
        if docs.iter().all(|d| complete(d)) {
            assert!(docs.windows(2).all(|w| w[0] == w[1]), "{docs:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "documents never converged: {docs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = cluster.log.len();
    for i in all {
        cluster.publish(i, r#"{"cmd":"states"}"#);
    }
    cluster.wait_for("three state reports", |c| {
        c.log[seen..]
            .iter()
            .filter(|(_, e)| e["event"] == "knowledge_states")
            .count()
            == 3
    });
    let states: BTreeSet<String> = cluster.log[seen..]
        .iter()
        .filter(|(_, e)| e["event"] == "knowledge_states")
        .map(|(_, e)| e["states"].to_string())
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
}

/// How long a forged datagram's answer, if any, is waited for: a node
/// answers at once or not at all.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Datagrams forged by a stranger's socket: what nodes took before
/// sessions (plaintext in the wire format, which still decodes: a JOIN
/// from an unknown peer, a broadcast in node 3's name) and random bytes.
struct Forgeries {
    socket: UdpSocket,
    /// The unknown peer the JOIN comes from.
    stranger: PeerId,
    /// The payload of the broadcast forged in node 3's name.
    payload: &'static str,
    datagrams: Vec<(&'static str, Vec<u8>)>,
}

impl Forgeries {
    fn new() -> Self {
        let stranger = Identity::from_seed([0xee; 32]).peer_id();
        let payload = "a broadcast forged in node 3's name";
        let join = Message::HyParView(hyparview::Message::Join);
        let gossip = Message::Plumtree(plumtree::Message::Gossip {
            id: plumtree::MsgId([0xf0; 32]),
            hops: 1,
            origin: stranger,
            template: None,
            payload: Bytes::from_static(payload.as_bytes()),
        });
        Forgeries {
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
            stranger,
            payload,
            datagrams: vec![
                (
                    "a plaintext JOIN from a stranger",
                    plaintext(stranger, join),
                ),
                (
                    "a plaintext broadcast in node 3's name",
                    plaintext(key_of(3), gossip),
                ),
                ("200 random bytes", pseudo_random_bytes(0x5eed, 200)),
            ],
        }
    }

    /// Send every forgery to node `target`: each is logged as dropped by
    /// the session layer and gets no answer, and nothing comes of it. Then
    /// the same socket's identify request is answered with `target`'s id:
    /// silence is the node's choice, not a deaf socket.
    fn check(&self, cluster: &mut Cluster, target: usize) {
        let to = cluster.procs[target].addr;
        let me = self.socket.local_addr().unwrap().to_string();
        for (_, datagram) in &self.datagrams {
            self.socket.send_to(datagram, to).unwrap();
        }
        let forged = self.datagrams.len();
        let drops = |c: &Cluster| -> Vec<String> {
            c.events(target)
                .filter(|e| e["event"] == "dropped" && e["from"] == me.as_str())
                .map(|e| e["error"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        cluster.wait_for(
            &format!("node {target} to report {forged} forged datagrams dropped"),
            |c| drops(c).len() >= forged,
        );
        let reasons = drops(cluster);
        assert_eq!(reasons.len(), forged, "node {target}: {reasons:?}");
        for reason in &reasons {
            assert!(
                reason.starts_with("session: "),
                "node {target} dropped a forgery after the session layer: {reasons:?}"
            );
        }
        let mut buf = [0u8; 2048];
        self.socket.set_read_timeout(Some(ANSWER_WAIT)).unwrap();
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) => panic!(
                "{from} answered a forgery: {n} bytes, starting {:02x?}",
                &buf[..n.min(16)]
            ),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            ),
        }
        cluster.take_arrived();
        self.check_nothing_came_of(cluster);

        let nonce = [0x1d; 16];
        let mut request = [0u8; 49];
        request[0] = 0x15;
        request[1..17].copy_from_slice(&nonce);
        self.socket.send_to(&request, to).unwrap();
        self.socket.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        let (n, from) = self
            .socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no identify reply from node {target}: {e}"));
        assert_eq!(from, to, "an identify reply from elsewhere");
        assert_eq!(n, 49, "identify reply: {:02x?}", &buf[..n]);
        assert_eq!(
            (buf[0], &buf[1..17]),
            (0x16, &nonce[..]),
            "{:02x?}",
            &buf[..n]
        );
        assert_eq!(&buf[17..49], key_of(target).as_bytes(), "another id");
        let names: Vec<&str> = self.datagrams.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "node {target} dropped {names:?} ({reasons:?}), answered none in {ANSWER_WAIT:?}, \
             and answered an identify request from the same socket with its id"
        );
    }

    /// No node logged the stranger or delivered the forged broadcast.
    fn check_nothing_came_of(&self, cluster: &Cluster) {
        let stranger = self.stranger.to_string();
        if let Some((i, e)) = cluster
            .log
            .iter()
            .find(|(_, e)| e["peer"] == stranger.as_str() || e["from"] == stranger.as_str())
        {
            panic!("node {i} logged the forgeries' stranger {stranger}: {e}");
        }
        if let Some(e) = cluster.delivered_anywhere(self.payload) {
            panic!("the forged broadcast was delivered: {e}");
        }
    }
}

/// `message` from `from` in the wire format, as it travelled before
/// sessions (and now travels only sealed inside them).
fn plaintext(from: PeerId, message: Message) -> Vec<u8> {
    let datagram = message::Datagram { from, message };
    let mut bytes = Vec::new();
    message::encode(&datagram, &mut bytes).expect("encodable");
    assert_eq!(message::decode(&bytes).expect("decodable"), datagram);
    bytes
}

/// The peer id of node `i`, from the key seed [`Cluster::spawn`] gives it.
fn key_of(i: usize) -> PeerId {
    Identity::from_seed([u8::try_from(i + 1).unwrap(); 32]).peer_id()
}

/// One `grove-node` process.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    /// Short peer id, as the node logs it.
    peer: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The processes, and every stdout line they wrote so far.
struct Cluster {
    procs: Vec<Proc>,
    lines_tx: mpsc::Sender<(usize, Value)>,
    lines: mpsc::Receiver<(usize, Value)>,
    /// Every event received, in arrival order, with its node's index.
    log: Vec<(usize, Value)>,
    config: PathBuf,
    /// The nodes' data directories and key seed files.
    dir: common::TestDir,
}

impl Cluster {
    fn new() -> Self {
        let config = std::env::temp_dir().join(format!(
            "grove-loopback-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&config, FAST_CONFIG).unwrap();
        let (lines_tx, lines) = mpsc::channel();
        Cluster {
            procs: Vec::new(),
            lines_tx,
            lines,
            log: Vec::new(),
            config,
            dir: common::TestDir::new("loopback"),
        }
    }

    /// Start the next node, bootstrapping through `contacts`; wait for its
    /// `listening` line and return its address.
    fn spawn(&mut self, contacts: &[SocketAddr], extra: &[&str]) -> SocketAddr {
        let index = self.procs.len();
        let mut command = Command::new(env!("CARGO_BIN_EXE_grove-node"));
        command
            .args(["--listen", "127.0.0.1:0", "--bootstrap-retry", "1s"])
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for contact in contacts {
            command.arg("--bootstrap").arg(contact.to_string());
        }
        let seed = u8::try_from(index + 1).unwrap();
        self.dir.node(&mut command, &index.to_string(), seed);
        let mut child = command.spawn().expect("starting grove-node");
        common::read_events(
            child.stdout.take().unwrap(),
            index,
            self.lines_tx.clone(),
            None,
        );
        let stderr = common::keep_lines(child.stderr.take().unwrap(), STDERR_LINES_KEPT);
        let stdin = child.stdin.take();
        // A placeholder until the `listening` line arrives; the guard kills
        // the process if it never does.
        self.procs.push(Proc {
            child,
            stdin,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            peer: String::new(),
            stderr,
        });
        self.wait_for(&format!("node {index} to listen"), |c| {
            c.listening(index).is_some()
        });
        let (addr, peer) = self.listening(index).unwrap();
        self.procs[index].addr = addr;
        self.procs[index].peer = peer;
        addr
    }

    /// Write `line` to node `i`'s stdin.
    fn publish(&mut self, i: usize, line: &str) {
        let stdin = self.procs[i].stdin.as_mut().expect("stdin closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn kill(&mut self, i: usize) {
        let child = &mut self.procs[i].child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn wait_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.procs[i].child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Add the stdout lines that arrived so far to the log.
    fn take_arrived(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// Take stdout lines until `done` holds, for at most [`STEP_TIMEOUT`].
    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some((i, e)) = self.log.iter().find(|(_, e)| e["event"] == "unparsable") {
                panic!("node {i} wrote a line that is not JSON: {}", e["line"]);
            }
            if done(self) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => {
                    let views: Vec<usize> = (0..self.procs.len())
                        .map(|i| self.active_view(i).len())
                        .collect();
                    panic!("timed out after {STEP_TIMEOUT:?} waiting for {what}; active view sizes {views:?}");
                }
            }
        }
    }

    // ---- reading the log ----

    fn events(&self, i: usize) -> impl Iterator<Item = &Value> {
        self.log
            .iter()
            .filter(move |(j, _)| *j == i)
            .map(|(_, e)| e)
    }

    fn listening(&self, i: usize) -> Option<(SocketAddr, String)> {
        let e = self.events(i).find(|e| e["event"] == "listening")?;
        let addr = e["addr"].as_str()?.parse().ok()?;
        Some((addr, e["peer"].as_str()?.to_string()))
    }

    /// Wait until every node of `nodes` logged `session_up` (a handshake
    /// proved the peer's key) for each peer in its active view, and check
    /// that sessions are only with ids other processes announced, each the
    /// id of the key its seed gives. The number of `session_up` lines of
    /// `nodes`.
    ///
    /// A neighbour may come a few milliseconds before its session: HyParView
    /// takes a joiner into the active view on a FORWARDJOIN, a record heard
    /// from an authenticated peer; what it then sends the joiner waits for
    /// the handshake, and a joiner that never completes one is dropped.
    fn check_sessions(&mut self, nodes: &[usize]) -> usize {
        for (i, p) in self.procs.iter().enumerate() {
            assert_eq!(p.peer, key_of(i).to_string(), "node {i}'s id");
        }
        self.wait_for("a session with every neighbour", |c| {
            nodes
                .iter()
                .all(|&i| c.active_view(i).is_subset(&c.sessions(i)))
        });
        let mut count = 0;
        for &i in nodes {
            for e in self.events(i).filter(|e| e["event"] == "session_up") {
                let peer = e["peer"].as_str().unwrap_or_default();
                let other = self.procs.iter().position(|p| p.peer == peer);
                assert!(
                    other.is_some_and(|j| j != i),
                    "node {i}: a session with {peer}, no other process: {e}"
                );
                count += 1;
            }
        }
        count
    }

    /// The peers node `i` logged `session_up` for.
    fn sessions(&self, i: usize) -> BTreeSet<String> {
        self.events(i)
            .filter(|e| e["event"] == "session_up")
            .filter_map(|e| e["peer"].as_str().map(str::to_owned))
            .collect()
    }

    /// Node `i`'s active view, replayed from its `neighbor_up` and
    /// `neighbor_down` lines.
    fn active_view(&self, i: usize) -> BTreeSet<String> {
        let mut view = BTreeSet::new();
        for e in self.events(i) {
            let peer = e["peer"].as_str().unwrap_or_default().to_string();
            match e["event"].as_str() {
                Some("neighbor_up") => assert!(view.insert(peer), "node {i}: neighbor_up twice"),
                Some("neighbor_down") => {
                    assert!(view.remove(&peer), "node {i}: neighbor_down of a stranger")
                }
                _ => {}
            }
        }
        view
    }

    /// Whether the links that both ends hold active join all of `nodes`.
    fn is_connected_overlay(&self, nodes: &[usize]) -> bool {
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .map(|&i| (self.procs[i].peer.as_str(), i))
            .collect();
        let views: BTreeMap<usize, BTreeSet<String>> =
            nodes.iter().map(|&i| (i, self.active_view(i))).collect();
        let linked = |a: usize, b: usize| {
            views[&a].contains(&self.procs[b].peer) && views[&b].contains(&self.procs[a].peer)
        };
        let mut reached = BTreeSet::from([nodes[0]]);
        let mut frontier = vec![nodes[0]];
        while let Some(a) = frontier.pop() {
            for peer in &views[&a] {
                if let Some(&b) = index.get(peer.as_str()) {
                    if linked(a, b) && reached.insert(b) {
                        frontier.push(b);
                    }
                }
            }
        }
        reached.len() == nodes.len()
    }

    fn delivered(&self, i: usize, payload: &str) -> Option<&Value> {
        self.events(i)
            .find(|e| e["event"] == "delivered" && e["payload"] == payload)
    }

    fn delivered_anywhere(&self, payload: &str) -> Option<&Value> {
        (0..self.procs.len()).find_map(|i| self.delivered(i, payload))
    }

    /// One message id everywhere; hops 0 and no sender at the origin, at
    /// least one hop and a sender elsewhere.
    fn check_delivery(&self, payload: &str, origin: usize, nodes: &[usize]) {
        let id = &self.delivered(origin, payload).unwrap()["id"];
        for &i in nodes {
            let e = self.delivered(i, payload).unwrap();
            assert_eq!(&e["id"], id, "node {i}: another message id");
            let hops = e["hops"].as_u64().unwrap();
            if i == origin {
                assert_eq!(hops, 0, "origin {i}: {e}");
                assert!(e["from"].is_null(), "origin {i}: {e}");
            } else {
                assert!(hops >= 1, "node {i}: {e}");
                assert!(e["from"].is_string(), "node {i}: {e}");
            }
            let count = self
                .events(i)
                .filter(|e| e["event"] == "delivered" && e["payload"] == payload)
                .count();
            assert_eq!(count, 1, "node {i} delivered `{payload}` {count} times");
        }
    }

    fn stderr_contains(&self, i: usize, text: &str) -> bool {
        self.procs[i]
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(text))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        if std::thread::panicking() {
            for (i, p) in self.procs.iter().enumerate() {
                eprintln!("---- node {i} ({}) stderr, last lines:", p.addr);
                for line in p.stderr.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Where the datagrams waiting on `socket` came from.
fn datagram_sources(socket: &UdpSocket) -> BTreeSet<SocketAddr> {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut sources = BTreeSet::new();
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        sources.insert(from);
    }
    socket.set_nonblocking(false).unwrap();
    sources
}

/// `len` bytes from a fixed-seed xorshift: garbage, the same every run.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
