//! Ten `grove-node` processes on 127.0.0.1: they form an overlay, deliver a
//! broadcast everywhere, survive three crashed peers, a malformed datagram,
//! an overlong stdin line and a closed stdin, and stop on end of input when
//! asked to. Three more converge on a knowledge commons document written
//! through JSON command lines.
//!
//! Every node listens on port 0 and announces its address in its first
//! `listening` line; stdout lines arrive through one reader thread per
//! process. Every wait is bounded, and a guard kills every process however
//! the test ends. All traffic stays on 127.0.0.1.

#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
    eprintln!("overlay of {NODES} nodes after {:?}", started.elapsed());

    // A broadcast from node 3 reaches everyone.
    let first = "first broadcast, from node 3";
    cluster.publish(3, first);
    cluster.wait_for("every node to deliver the first broadcast", |c| {
        all.iter().all(|&i| c.delivered(i, first).is_some())
    });
    cluster.check_delivery(first, 3, &all);
    eprintln!("first broadcast delivered after {:?}", started.elapsed());

    // Garbage to node 5 is reported and dropped.
    let garbage = pseudo_random_bytes(0x5eed, 200);
    silent.send_to(&garbage, cluster.procs[5].addr).unwrap();
    cluster.wait_for("node 5 to report the malformed datagram", |c| {
        c.log.iter().any(|(i, e)| {
            *i == 5 && e["event"] == "dropped" && e["from"] == silent_addr.to_string()
        })
    });

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
        }
    }

    /// Start the next node, bootstrapping through `contacts`; wait for its
    /// `listening` line and return its address.
    fn spawn(&mut self, contacts: &[SocketAddr], extra: &[&str]) -> SocketAddr {
        let index = self.procs.len();
        let mut command = Command::new(env!("CARGO_BIN_EXE_grove-node"));
        command
            .args(["--listen", "127.0.0.1:0", "--bootstrap-retry", "1s"])
            .arg("--key-seed")
            .arg(format!("{:02x}", index + 1).repeat(32))
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
