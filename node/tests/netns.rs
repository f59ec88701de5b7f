//! NAT traversal through real kernel NAT. Linux network namespaces joined by
//! a bridge (the "internet") hold a public relay and two private hosts, each
//! behind its own NAT box (iptables MASQUERADE, unsolicited inbound dropped
//! as on a home router). Real `grove-node` processes in them must reserve a
//! slot on the relay, reach each other through it, upgrade to a direct
//! hole-punched path through both NATs, and carry a broadcast.
//!
//! ```text
//!                 inet: bridge br0 (198.51.100.0/24)
//!        +----------------+-------------------+
//!  relay .10          nat1 wan .21        nat2 wan .22
//!                     nat1 lan 192.168.1.1  nat2 lan 192.168.2.1
//!                        |                     |
//!                     a 192.168.1.2         b 192.168.2.2
//! ```
//!
//! The nodes speak only through sessions: each logs `session_up` for the
//! other two (a handshake proved the peer's identity key). A sniffer on
//! each NAT box (a Python raw `AF_PACKET` socket) sees every UDP datagram
//! crossing it from before the first node starts: every datagram between
//! nodes is a session datagram (type byte `0x10`-`0x16`, never the
//! plaintext wire format, whose byte 0 is its version), and the broadcast's
//! payload is in none of them, while a plaintext control datagram sent
//! through the box is seen in clear.
//!
//! Runs only with `GROVE_NETNS=1` (root, iproute2, iptables, ping and
//! python3 needed; `.ci/run` installs them and sets it). Without it the test
//! says why it is skipped and passes; with it every setup failure fails the
//! test. The
//! namespaces are named after the test's PID and deleted however the test
//! ends; every address used lives in them, and nothing is routed out of them.
//! Every wait is bounded, and a failure prints each process's last stdout and
//! stderr lines and the NAT boxes' iptables counters.

#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_node::transport::session::DATA_OVERHEAD;
use serde_json::Value;

/// Bound on the whole test once the namespaces are up.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of each process's stdout and stderr kept for the failure report.
const LINES_KEPT: usize = 60;

const RELAY_ADDR: &str = "198.51.100.10:7000";
const NAT1_WAN: &str = "198.51.100.21";
const NAT2_WAN: &str = "198.51.100.22";
const A_LAN: &str = "192.168.1.2";
const B_LAN: &str = "192.168.2.2";
/// The port every node listens on.
const NODE_PORT: u16 = 7000;
/// NAT-PMP's port on the gateway: the nodes ask their NAT box for a
/// mapping (the box does not answer).
const NATPMP_PORT: u16 = 5351;
/// The relay's port the control datagrams go to (nothing listens).
const CONTROL_PORT: u16 = 9;
/// Bound on a capture's start and on its stop.
const CAPTURE_STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn relayed_connection_upgrades_to_hole_punch_through_kernel_nat() {
    if std::env::var("GROVE_NETNS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set GROVE_NETNS=1 to run the network-namespace NAT test (needs root, iproute2, iptables, ping, python3)"
        );
        return;
    }
    let started = Instant::now();
    let net = Net::build();
    net.sanity_check();
    eprintln!(
        "namespaces up and checked after {:?} ({})",
        started.elapsed(),
        net.iptables_version
    );

    // Sniffers on both NAT boxes from before the first node starts, each
    // shown a plaintext control datagram crossing it. Declared after `net`,
    // so dropped first.
    let captures = [&net.nat1, &net.nat2].map(|ns| Capture::start(ns));
    for (host, control) in [(&net.a, CONTROL_A), (&net.b, CONTROL_B)] {
        send_control(host, control);
    }

    // Declared after `net`, so dropped first: the processes die before
    // their namespaces are deleted.
    let mut c = Cluster::new(Instant::now() + TOTAL_TIMEOUT);
    let relay = c.spawn("relay", &net.relay, &["--advertise", RELAY_ADDR]);
    let a = c.spawn("A", &net.a, &["--bootstrap", RELAY_ADDR]);
    c.wait_for("A to join the overlay through the relay", |c| {
        c.neighbor_up(a, relay).is_some() && c.neighbor_up(relay, a).is_some()
    });
    c.wait_for("A to report a reservation ok on the relay", |c| {
        c.reservation_ok(a).is_some()
    });
    let b = c.spawn("B", &net.b, &["--bootstrap", RELAY_ADDR]);
    c.wait_for("B to join the overlay through the relay", |c| {
        c.neighbor_up(b, relay).is_some() && c.neighbor_up(relay, b).is_some()
    });
    c.wait_for("B to report a reservation ok on the relay", |c| {
        c.reservation_ok(b).is_some()
    });
    // The relay sees each private host at its NAT box's WAN address.
    for (host, wan, lan) in [(a, NAT1_WAN, A_LAN), (b, NAT2_WAN, B_LAN)] {
        let e = c.neighbor_up(relay, host).unwrap();
        assert_eq!(
            ip_of(&e["addr"]),
            Some(wan.parse().unwrap()),
            "the relay should see {} at its NAT's WAN address {wan}, not {lan}: {e}",
            c.procs[host].name
        );
    }
    eprintln!("A and B joined and reserved after {:?}", started.elapsed());

    c.wait_for(
        "A and B to upgrade their relayed paths to direct hole-punched ones",
        |c| c.upgraded(a, b).is_some() && c.upgraded(b, a).is_some(),
    );
    for (from, to, wan, lan) in [(a, b, NAT2_WAN, B_LAN), (b, a, NAT1_WAN, A_LAN)] {
        let e = c.upgraded(from, to).unwrap();
        assert_eq!(
            ip_of(&e["addr"]),
            Some(wan.parse().unwrap()),
            "{}'s direct path to {} should go to its NAT's WAN address {wan}, not {lan}: {e}",
            c.procs[from].name,
            c.procs[to].name
        );
    }
    eprintln!(
        "paths upgraded after {:?}: A->B {}, B->A {}",
        started.elapsed(),
        c.upgraded(a, b).unwrap(),
        c.upgraded(b, a).unwrap()
    );

    // Sessions: a handshake with each of the other two, at all three.
    let (nodes, pairs) = ([relay, a, b], [(relay, a), (relay, b), (a, b)]);
    c.wait_for("a session between every two of relay, A and B", |c| {
        pairs
            .iter()
            .all(|&(i, j)| c.session_up(i, j).is_some() && c.session_up(j, i).is_some())
    });
    for i in nodes {
        let sessions: Vec<String> = c
            .log_of(i, "session_up")
            .map(|e| format!("{} at {} ms", c.name_of(&e["peer"]), e["t_ms"]))
            .collect();
        assert!(
            !sessions.iter().any(|s| s.starts_with("a stranger")),
            "{}: a session with no process of the test: {sessions:?}",
            c.procs[i].name
        );
        eprintln!(
            "{}: sessions up with {}",
            c.procs[i].name,
            sessions.join(", ")
        );
    }

    let text = format!(
        "a broadcast from A, behind NAT 1, that no router may read: {}",
        "canary ".repeat(20).trim_end()
    );
    c.publish(a, &text);
    c.wait_for("B and the relay to deliver A's broadcast", |c| {
        c.delivered(b, &text).is_some() && c.delivered(relay, &text).is_some()
    });
    eprintln!(
        "broadcast delivered after {:?}: at B {}",
        started.elapsed(),
        c.delivered(b, &text).unwrap()
    );

    // What crossed the NAT boxes: sessions only, the payload in none.
    for (capture, control) in captures.into_iter().zip([CONTROL_A, CONTROL_B]) {
        let ns = capture.ns.clone();
        let seen = capture.stop();
        eprintln!(
            "{ns}: {}",
            check_capture(&ns, &seen, text.as_bytes(), control)
        );
    }

    // The kernel's own account: both NAT boxes rewrote traffic (the counters
    // were zeroed after the sanity pings, so this is the nodes' traffic).
    for ns in [&net.nat1, &net.nat2] {
        let packets = net.masquerade_packets(ns);
        assert!(
            packets > 0,
            "MASQUERADE in {ns} rewrote no packets:\n{}",
            net.counters(ns)
        );
        eprintln!("{ns}: MASQUERADE rewrote {packets} flows");
    }
    eprintln!("done after {:?}", started.elapsed());
}

// ---- what crosses the NAT boxes ----

/// The plaintext of the control datagram A sends through NAT 1 (and B
/// through NAT 2) to the relay: the sniffers must see it in clear.
const CONTROL_A: &str = "plaintext control from A: routers read this";
const CONTROL_B: &str = "plaintext control from B: routers read this";

/// Send `control` in one UDP datagram from `host` to the relay's
/// [`CONTROL_PORT`], through the host's NAT box.
fn send_control(host: &str, control: &str) {
    let relay_ip = RELAY_ADDR.split(':').next().unwrap();
    let port = CONTROL_PORT.to_string();
    run(&[
        "ip",
        "netns",
        "exec",
        host,
        "python3",
        "-c",
        "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
         .sendto(sys.argv[1].encode(), (sys.argv[2], int(sys.argv[3])))",
        control,
        relay_ip,
        &port,
    ]);
}

/// The sniffer: a raw `AF_PACKET` socket on every interface of its
/// namespace prints `ready`, then one line per IPv4 UDP datagram, in or
/// out (`iface in|out src dst payload-hex`, `-` for an empty payload),
/// until its stdin closes (it then reads what the kernel still holds) or
/// `argv[1]` seconds pass.
const CAPTURE_SCRIPT: &str = r#"
import os, select, socket, struct, sys, time
deadline = time.monotonic() + float(sys.argv[1])
sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sniffer.setblocking(False)

def show(frame, addr):
    if frame[12:14] != b'\x08\x00':
        return
    ip = frame[14:]
    if len(ip) < 20 or ip[9] != 17:
        return
    udp = ip[(ip[0] & 15) * 4:]
    if len(udp) < 8:
        return
    sport, dport, length = struct.unpack('!HHH', udp[:6])
    print(addr[0], 'out' if addr[2] == socket.PACKET_OUTGOING else 'in',
          '%s:%d' % (socket.inet_ntoa(ip[12:16]), sport),
          '%s:%d' % (socket.inet_ntoa(ip[16:20]), dport),
          udp[8:length].hex() or '-', flush=True)

def drain():
    while True:
        try:
            frame, addr = sniffer.recvfrom(65536)
        except BlockingIOError:
            return
        show(frame, addr)

print('ready', flush=True)
while time.monotonic() < deadline:
    ready, _, _ = select.select([sniffer, 0], [], [], max(0.0, deadline - time.monotonic()))
    drain()
    if 0 in ready and not os.read(0, 4096):
        break
drain()
"#;

/// A [`CAPTURE_SCRIPT`] running in a namespace; killed on drop.
struct Capture {
    ns: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: common::Kept,
}

/// A UDP datagram a [`Capture`] saw.
struct Seen {
    iface: String,
    outgoing: bool,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

impl Seen {
    /// A datagram between nodes (not a control datagram, not NAT-PMP).
    fn between_nodes(&self) -> bool {
        let ports = [self.src.port(), self.dst.port()];
        ports.contains(&NODE_PORT)
            && !ports.contains(&NATPMP_PORT)
            && !ports.contains(&CONTROL_PORT)
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = if self.outgoing { "out" } else { "in" };
        write!(
            f,
            "{} {dir} {} -> {}, {} bytes: {}",
            self.iface,
            self.src,
            self.dst,
            self.payload.len(),
            hex(&self.payload[..self.payload.len().min(48)])
        )
    }
}

impl Capture {
    /// Start sniffing in `ns`; return once the socket is open.
    fn start(ns: &str) -> Capture {
        // Outlives the test's deadline: the test stops it.
        let limit = (TOTAL_TIMEOUT + CAPTURE_STEP_TIMEOUT).as_secs().to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", CAPTURE_SCRIPT, &limit])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the capture in {ns}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let capture = Capture {
            ns: ns.to_string(),
            stdin: child.stdin.take(),
            stderr: common::keep_lines(child.stderr.take().unwrap(), LINES_KEPT),
            child,
            lines,
        };
        match capture.lines.recv_timeout(CAPTURE_STEP_TIMEOUT) {
            Ok(line) if line == "ready" => capture,
            other => panic!(
                "the capture in {ns} did not start within {CAPTURE_STEP_TIMEOUT:?} ({other:?}; needs python3):\n{}",
                capture.stderr()
            ),
        }
    }

    /// Stop sniffing: every UDP datagram seen, in order.
    fn stop(mut self) -> Vec<Seen> {
        drop(self.stdin.take());
        let deadline = Instant::now() + CAPTURE_STEP_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(
                    parse_seen(&line)
                        .unwrap_or_else(|| panic!("the capture in {} printed {line:?}", self.ns)),
                ),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the capture in {} did not stop within {CAPTURE_STEP_TIMEOUT:?}:\n{}",
                    self.ns,
                    self.stderr()
                ),
            }
        }
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the capture in {} failed ({status}):\n{}",
            self.ns,
            self.stderr()
        );
        seen
    }

    fn stderr(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A capture line: `iface in|out src dst payload-hex`.
fn parse_seen(line: &str) -> Option<Seen> {
    let [iface, dir, src, dst, payload] = line.split_whitespace().collect::<Vec<_>>()[..] else {
        return None;
    };
    Some(Seen {
        iface: iface.to_string(),
        outgoing: dir == "out",
        src: src.parse().ok()?,
        dst: dst.parse().ok()?,
        payload: if payload == "-" {
            Vec::new()
        } else {
            unhex(payload)?
        },
    })
}

/// What `seen` (crossing the NAT box `ns`) shows: the control datagram
/// in clear (the sniffer reads payloads), every datagram between nodes a
/// session datagram, `secret` in none, and datagrams long enough to carry
/// it sealed (it crossed while sniffing). A summary for the log.
fn check_capture(ns: &str, seen: &[Seen], secret: &[u8], control: &str) -> String {
    let dump = || {
        seen.iter()
            .map(Seen::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        seen.iter().any(|d| contains(&d.payload, control.as_bytes())),
        "the capture in {ns} never saw the control datagram's plaintext {control:?} ({} datagrams):\n{}",
        seen.len(),
        dump()
    );
    if let Some(d) = seen.iter().find(|d| contains(&d.payload, secret)) {
        panic!("the broadcast's payload crossed {ns} in clear: {d}");
    }
    let nodes: Vec<&Seen> = seen.iter().filter(|d| d.between_nodes()).collect();
    if let Some(d) = nodes
        .iter()
        .find(|d| !matches!(d.payload.first(), Some(0x10..=0x16)))
    {
        panic!("a datagram between nodes crossed {ns} outside a session: {d}");
    }
    // Counted on the box's WAN side, where each datagram passes once.
    let wan: Vec<&Seen> = nodes.into_iter().filter(|d| d.iface == "wan").collect();
    let sealed_broadcasts = wan
        .iter()
        .filter(|d| matches!(d.payload[0], 0x13 | 0x14))
        .filter(|d| d.payload.len() >= secret.len() + DATA_OVERHEAD)
        .count();
    assert!(
        sealed_broadcasts > 0,
        "no sealed datagram long enough for the broadcast crossed {ns}'s WAN side:\n{}",
        dump()
    );
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &wan {
        let name = match d.payload[0] {
            0x10 => "initiation",
            0x11 => "response",
            0x12 => "cookie reply",
            0x13 => "data (ack-eliciting)",
            0x14 => "data",
            0x15 => "identify request",
            _ => "identify reply",
        };
        *types.entry(name).or_default() += 1;
    }
    let bytes: usize = wan.iter().map(|d| d.payload.len()).sum();
    format!(
        "{} UDP datagrams seen; between nodes on the WAN side {} ({bytes} payload bytes), all \
         session datagrams: {types:?}; {sealed_broadcasts} sealed data datagrams long enough for \
         the {}-byte broadcast, none holding it in clear; the control datagram seen in clear",
        seen.len(),
        wan.len(),
        secret.len()
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok().filter(|d| d.len() == 2)?;
            u8::from_str_radix(digits, 16).ok()
        })
        .collect()
}

/// The address in a JSON `"ip:port"` string, if it is one.
fn ip_of(addr: &Value) -> Option<IpAddr> {
    addr.as_str()?.parse::<SocketAddr>().ok().map(|a| a.ip())
}

// ---- the namespaces ----

/// The test's namespaces; deleted on drop (after killing anything still
/// running in them), also after a panic.
struct Net {
    /// Every namespace created so far, in creation order.
    created: Vec<String>,
    inet: String,
    relay: String,
    nat1: String,
    nat2: String,
    a: String,
    b: String,
    /// `iptables`, or `iptables-legacy` where the default one cannot work.
    iptables: &'static str,
    iptables_version: String,
}

impl Net {
    fn build() -> Net {
        // The PID keeps parallel runs apart. A namespace of the same name
        // can only be left over from a dead run with the same PID.
        let prefix = format!("gv{}", std::process::id());
        let name = |role: &str| format!("{prefix}-{role}");
        let mut net = Net {
            created: Vec::new(),
            inet: name("inet"),
            relay: name("relay"),
            nat1: name("nat1"),
            nat2: name("nat2"),
            a: name("a"),
            b: name("b"),
            iptables: "iptables",
            iptables_version: String::new(),
        };
        let all = [
            net.inet.clone(),
            net.relay.clone(),
            net.nat1.clone(),
            net.nat2.clone(),
            net.a.clone(),
            net.b.clone(),
        ];
        let existing = run(&["ip", "netns", "list"]);
        for ns in &all {
            if existing.split_whitespace().any(|w| w == ns) {
                eprintln!("deleting {ns}, left over from an earlier run");
                run(&["ip", "netns", "delete", ns]);
            }
            run(&["ip", "netns", "add", ns]);
            net.created.push(ns.clone());
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }

        // The internet: a bridge, with the relay and both NAT boxes on it.
        let inet = net.inet.as_str();
        run(&["ip", "-n", inet, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", inet, "link", "set", "br0", "up"]);
        for (port, ns, addr) in [
            ("relay", &net.relay, "198.51.100.10/24"),
            ("nat1", &net.nat1, "198.51.100.21/24"),
            ("nat2", &net.nat2, "198.51.100.22/24"),
        ] {
            veth(inet, port, ns, "wan");
            run(&["ip", "-n", inet, "link", "set", port, "master", "br0"]);
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", "wan"]);
        }

        // The homes: each host on its NAT box's LAN.
        net.iptables = pick_iptables(&net.nat1);
        net.iptables_version = run(&[net.iptables, "--version"]).trim().to_string();
        for (nat, lan, host, host_addr) in [
            (&net.nat1, "192.168.1.1", &net.a, A_LAN),
            (&net.nat2, "192.168.2.1", &net.b, B_LAN),
        ] {
            veth(nat, "lan", host, "eth0");
            run(&[
                "ip",
                "-n",
                nat,
                "addr",
                "add",
                &format!("{lan}/24"),
                "dev",
                "lan",
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                nat,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ]);
            let ipt = |rule: &[&str]| {
                let mut cmd = vec!["ip", "netns", "exec", nat.as_str(), net.iptables, "-w"];
                cmd.extend_from_slice(rule);
                run(&cmd);
            };
            ipt(&[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan",
                "-j",
                "MASQUERADE",
            ]);
            // Unsolicited inbound is dropped, to the box and through it. For
            // the box itself this matters: a punch arriving before the host's
            // own would otherwise create a conntrack entry on the box's port,
            // and MASQUERADE would then move the host's punch to another port.
            for chain in ["INPUT", "FORWARD"] {
                ipt(&[
                    "-A",
                    chain,
                    "-i",
                    "wan",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-j",
                    "DROP",
                ]);
            }
            run(&[
                "ip",
                "-n",
                host,
                "addr",
                "add",
                &format!("{host_addr}/24"),
                "dev",
                "eth0",
            ]);
            run(&["ip", "-n", host, "route", "add", "default", "via", lan]);
        }
        net
    }

    /// The plumbing works before any node runs: both hosts reach the relay
    /// through their NAT, and the relay reaches neither a private address
    /// nor, unsolicited, a NAT box. Then the NAT counters are zeroed.
    fn sanity_check(&self) {
        for host in [&self.a, &self.b] {
            run(&[
                "ip",
                "netns",
                "exec",
                host,
                "ping",
                "-c1",
                "-W2",
                "198.51.100.10",
            ]);
        }
        for target in [A_LAN, B_LAN, NAT1_WAN, NAT2_WAN] {
            let out = output(&[
                "ip",
                "netns",
                "exec",
                &self.relay,
                "ping",
                "-c1",
                "-W1",
                target,
            ]);
            assert!(
                !out.status.success(),
                "the relay should not reach {target}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        for ns in [&self.nat1, &self.nat2] {
            let packets = self.masquerade_packets(ns);
            assert!(
                packets > 0,
                "the pings were not masqueraded in {ns}:\n{}",
                self.counters(ns)
            );
            self.iptables_in(ns, &["-t", "nat", "-Z", "POSTROUTING"]);
        }
    }

    fn iptables_in(&self, ns: &str, args: &[&str]) -> String {
        let mut cmd = vec!["ip", "netns", "exec", ns, self.iptables, "-w"];
        cmd.extend_from_slice(args);
        run(&cmd)
    }

    /// Packets counted by the MASQUERADE rule in `ns`: one per new flow (the
    /// nat table sees only a connection's first packet).
    fn masquerade_packets(&self, ns: &str) -> u64 {
        let listing = self.iptables_in(ns, &["-t", "nat", "-L", "POSTROUTING", "-v", "-n", "-x"]);
        let rule = listing
            .lines()
            .find(|l| l.contains("MASQUERADE"))
            .unwrap_or_else(|| panic!("no MASQUERADE rule in {ns}:\n{listing}"));
        rule.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unreadable counter in {ns}: {rule}"))
    }

    /// Every counter of `ns`'s nat and filter tables, for failure reports.
    fn counters(&self, ns: &str) -> String {
        let mut text = String::new();
        for table in ["nat", "filter"] {
            let out = output(&[
                "ip",
                "netns",
                "exec",
                ns,
                self.iptables,
                "-w",
                "-t",
                table,
                "-L",
                "-v",
                "-n",
                "-x",
            ]);
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        text
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Once an iptables is chosen, the NAT boxes' counters can be read.
        if std::thread::panicking() && !self.iptables_version.is_empty() {
            for ns in [&self.nat1, &self.nat2] {
                if self.created.contains(ns) {
                    eprintln!("---- {ns} iptables counters:\n{}", self.counters(ns));
                }
            }
        }
        for ns in self.created.iter().rev() {
            // Anything still running in our namespace was started by us.
            if let Ok(out) = try_output(&["ip", "netns", "pids", ns]) {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = try_output(&["kill", "-9", pid]);
                }
            }
            match try_output(&["ip", "netns", "delete", ns]) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "could not delete namespace {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("could not delete namespace {ns}: {e}"),
            }
        }
    }
}

/// A veth pair from `ns1:if1` to `ns2:if2`, both ends up.
fn veth(ns1: &str, if1: &str, ns2: &str, if2: &str) {
    run(&[
        "ip", "link", "add", if1, "netns", ns1, "type", "veth", "peer", "name", if2, "netns", ns2,
    ]);
    run(&["ip", "-n", ns1, "link", "set", if1, "up"]);
    run(&["ip", "-n", ns2, "link", "set", if2, "up"]);
}

/// `iptables` (Debian's default is the nf_tables backend), or
/// `iptables-legacy` when the first cannot list the nat table in `ns`.
fn pick_iptables(ns: &str) -> &'static str {
    let mut errors = String::new();
    for candidate in ["iptables", "iptables-legacy"] {
        match try_output(&[
            "ip", "netns", "exec", ns, candidate, "-w", "-t", "nat", "-L", "-n",
        ]) {
            Ok(out) if out.status.success() => return candidate,
            Ok(out) => errors.push_str(&format!(
                "{candidate}: {}\n",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => errors.push_str(&format!("{candidate}: {e}\n")),
        }
    }
    panic!("no working iptables (install it: apt-get install iptables; .ci/run does)\n{errors}");
}

fn try_output(cmd: &[&str]) -> Result<Output, String> {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", cmd.join(" ")))
}

fn output(cmd: &[&str]) -> Output {
    try_output(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `cmd`; its stdout, or a panic with its output when it fails.
fn run(cmd: &[&str]) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\n{}{}",
        cmd.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- the processes ----

/// One `grove-node` process in a namespace.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Short peer id, as the node logs it.
    peer: String,
    stdout: Arc<Mutex<VecDeque<String>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The processes, and every stdout line they wrote so far.
struct Cluster {
    procs: Vec<Proc>,
    lines_tx: mpsc::Sender<(usize, Value)>,
    lines: mpsc::Receiver<(usize, Value)>,
    /// Every event received, in arrival order, with its process's index.
    log: Vec<(usize, Value)>,
    deadline: Instant,
    started: Instant,
    /// The nodes' data directories and key seed files.
    dir: common::TestDir,
}

impl Cluster {
    fn new(deadline: Instant) -> Self {
        let (lines_tx, lines) = mpsc::channel();
        Cluster {
            procs: Vec::new(),
            lines_tx,
            lines,
            log: Vec::new(),
            deadline,
            started: Instant::now(),
            dir: common::TestDir::new("netns"),
        }
    }

    /// Start `grove-node --listen 0.0.0.0:7000 EXTRA` in `ns`; wait for its
    /// `listening` line and return its index.
    fn spawn(&mut self, name: &'static str, ns: &str, extra: &[&str]) -> usize {
        let index = self.procs.len();
        // `ip netns exec` execs the daemon in place: the child is the node.
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_grove-node")])
            .args(["--listen", "0.0.0.0:7000"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.dir
            .node(&mut command, name, u8::try_from(index + 1).unwrap());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting grove-node in {ns}: {e}"));
        let stdout: common::Kept = Arc::new(Mutex::new(VecDeque::new()));
        common::read_events(
            child.stdout.take().unwrap(),
            index,
            self.lines_tx.clone(),
            Some((Arc::clone(&stdout), LINES_KEPT)),
        );
        let stderr = common::keep_lines(child.stderr.take().unwrap(), LINES_KEPT);
        let stdin = child.stdin.take();
        self.procs.push(Proc {
            name,
            child,
            stdin,
            peer: String::new(),
            stdout,
            stderr,
        });
        self.wait_for(&format!("{name} to listen"), |c| {
            c.event(index, |e| e["event"] == "listening").is_some()
        });
        let e = self.event(index, |e| e["event"] == "listening").unwrap();
        self.procs[index].peer = e["peer"].as_str().expect("a peer id").to_string();
        index
    }

    /// Write `line` to process `i`'s stdin: the node broadcasts it.
    fn publish(&mut self, i: usize, line: &str) {
        let stdin = self.procs[i].stdin.as_mut().expect("stdin closed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Take stdout lines until `done` holds, until the test's deadline;
    /// fail at once if a process exits.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Cluster) -> bool) {
        loop {
            if let Some((i, e)) = self.log.iter().find(|(_, e)| e["event"] == "unparsable") {
                panic!(
                    "{} wrote a line that is not JSON: {}",
                    self.procs[*i].name, e["line"]
                );
            }
            if done(self) {
                return;
            }
            for p in &mut self.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("{} exited ({status}) while waiting for {what}", p.name);
                }
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out waiting for {what} ({:?} since the first node started)",
                    self.started.elapsed()
                );
            }
            if let Ok(line) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(250)))
            {
                self.log.push(line);
            }
        }
    }

    // ---- reading the log ----

    fn event(&self, i: usize, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
        self.log
            .iter()
            .find(|(j, e)| *j == i && pred(e))
            .map(|(_, e)| e)
    }

    /// Process `i`'s first `neighbor_up` for process `j`.
    fn neighbor_up(&self, i: usize, j: usize) -> Option<&Value> {
        let peer = &self.procs[j].peer;
        self.event(i, |e| {
            e["event"] == "neighbor_up" && e["peer"] == peer.as_str()
        })
    }

    /// Process `i`'s lines of kind `event`.
    fn log_of<'a>(&'a self, i: usize, event: &'a str) -> impl Iterator<Item = &'a Value> {
        self.log
            .iter()
            .filter(move |(j, e)| *j == i && e["event"] == event)
            .map(|(_, e)| e)
    }

    /// The name of the process whose peer id is `peer`.
    fn name_of(&self, peer: &Value) -> &str {
        self.procs
            .iter()
            .find(|p| *peer == p.peer.as_str())
            .map_or("a stranger", |p| p.name)
    }

    /// Process `i`'s first `session_up` for process `j`.
    fn session_up(&self, i: usize, j: usize) -> Option<&Value> {
        let peer = &self.procs[j].peer;
        self.event(i, |e| {
            e["event"] == "session_up" && e["peer"] == peer.as_str()
        })
    }

    fn reservation_ok(&self, i: usize) -> Option<&Value> {
        self.event(i, |e| {
            e["event"] == "reservation" && e["relay"] == RELAY_ADDR && e["status"] == "ok"
        })
    }

    /// Process `i`'s first `path` to process `j` of kind direct by
    /// hole-punch that follows a relayed one.
    fn upgraded(&self, i: usize, j: usize) -> Option<&Value> {
        let peer = self.procs[j].peer.as_str();
        let mut paths = self
            .log
            .iter()
            .filter(|(k, e)| *k == i && e["event"] == "path" && e["peer"] == peer)
            .map(|(_, e)| e);
        paths.find(|e| e["kind"] == "relayed")?;
        paths.find(|e| e["kind"] == "direct" && e["method"] == "hole-punch")
    }

    fn delivered(&self, i: usize, payload: &str) -> Option<&Value> {
        self.event(i, |e| e["event"] == "delivered" && e["payload"] == payload)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!("---- {} ({}) stdout, last lines:", p.name, p.peer);
                for line in p.stdout.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
                eprintln!("---- {} ({}) stderr, last lines:", p.name, p.peer);
                for line in p.stderr.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
