//! What a session costs: heap bytes per established idle session, CPU
//! per handshake and per sealed-and-opened datagram.
//!
//! `cargo run --release -p grove-node --example session_cost`
//!
//! Memory is counted by a global allocator (bytes requested, not the
//! allocator's own per-block overhead): a node with N sessions minus a
//! node with none, over N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use grove_node::transport::session::{Config, Crypto, Incoming, Sessions, Via};
use grove_node::{Identity, Time};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

fn identity(i: u32) -> Identity {
    let mut seed = [0; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}

fn via(i: u32) -> Via {
    Via::Direct(SocketAddr::from((
        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        7000,
    )))
}

/// Deliver everything `from` wants to send to `to` (one peer at a time).
fn deliver(now: Time, from: &mut Sessions, from_via: Via, to: &mut Sessions) -> usize {
    let (mut out, mut plaintext, mut n) = (Vec::new(), Vec::new(), 0);
    while from.poll_transmit(&mut out).is_some() {
        let got = to.handle(now, from_via, &out, &mut plaintext);
        assert!(!matches!(got, Incoming::Dropped(_)), "{got:?}");
        n += 1;
    }
    n
}

/// Node 0 with `n` established idle sessions (it initiated them); its
/// heap bytes and blocks, measured by dropping it.
fn node_heap(n: u32, crypto: Crypto) -> (isize, isize) {
    let config = Config {
        crypto,
        max_sessions: 65_536,
        ..Config::default()
    };
    let now = Time::from_secs(1);
    let mut node = Sessions::new(&identity(0), config.clone(), 0);
    for i in 1..=n {
        let mut peer = Sessions::new(&identity(i), config.clone(), u64::from(i));
        let peer_id = identity(i).peer_id();
        node.send(now, peer_id, None, b"", false);
        deliver(now, &mut node, via(0), &mut peer);
        deliver(now, &mut peer, via(i), &mut node);
        deliver(now, &mut node, via(0), &mut peer);
        assert!(node.is_established(&peer_id) && peer.is_established(&identity(0).peer_id()));
        while node.poll_event().is_some() {}
    }
    let before = live();
    drop(node);
    let after = live();
    (before.0 - after.0, before.1 - after.1)
}

fn per_session(crypto: Crypto) {
    let n = 2000;
    let (empty, empty_blocks) = node_heap(0, crypto);
    let (full, full_blocks) = node_heap(n, crypto);
    let bytes = (full - empty) as f64 / f64::from(n);
    let blocks = (full_blocks - empty_blocks) as f64 / f64::from(n);
    println!(
        "{crypto:?}: {bytes:.0} heap bytes requested per established idle session \
         in {blocks:.1} blocks ({n} sessions; a node with none: {empty} bytes)"
    );
}

fn handshake_cpu() {
    let config = Config::default();
    let (a_id, b_id) = (identity(1), identity(2));
    let (mut a, mut b) = (
        Sessions::new(&a_id, config.clone(), 1),
        Sessions::new(&b_id, config, 2),
    );
    let rounds = 300;
    let start = Instant::now();
    for round in 0..rounds {
        // 10 ms apart: below the load that asks for cookies.
        let now = Time::from_millis(1000 + 10 * u64::from(round));
        a.send(now, b_id.peer_id(), None, b"", false);
        deliver(now, &mut a, via(1), &mut b);
        deliver(now, &mut b, via(2), &mut a);
        deliver(now, &mut a, via(1), &mut b);
        assert!(b.is_established(&a_id.peer_id()));
        a.forget(&b_id.peer_id());
        b.forget(&a_id.peer_id());
    }
    let each = start.elapsed() / rounds;
    println!("one full handshake (both sides, with the confirming datagram): {each:?}");
}

fn datagram_cpu(crypto: Crypto) {
    let config = Config {
        crypto,
        rekey_after: Duration::from_secs(1 << 30),
        reject_after: Duration::from_secs(1 << 31),
        ..Config::default()
    };
    let (a_id, b_id) = (identity(1), identity(2));
    let (mut a, mut b) = (
        Sessions::new(&a_id, config.clone(), 1),
        Sessions::new(&b_id, config, 2),
    );
    let now = Time::from_secs(1);
    a.send(now, b_id.peer_id(), None, b"", false);
    deliver(now, &mut a, via(1), &mut b);
    deliver(now, &mut b, via(2), &mut a);
    deliver(now, &mut a, via(1), &mut b);
    let payload = [7u8; 200];
    let (mut out, mut plaintext) = (Vec::new(), Vec::new());
    let rounds = 200_000;
    let start = Instant::now();
    for _ in 0..rounds {
        a.send(now, b_id.peer_id(), None, &payload, false);
        a.poll_transmit(&mut out).expect("sealed");
        let got = b.handle(now, via(1), &out, &mut plaintext);
        assert!(matches!(got, Incoming::Data { .. }) && plaintext.len() == 200);
    }
    let each = start.elapsed() / rounds;
    println!("{crypto:?}: seal + open of a 200-byte plaintext: {each:?}");
}

fn main() {
    per_session(Crypto::Real);
    per_session(Crypto::Null);
    handshake_cpu();
    datagram_cpu(Crypto::Real);
    datagram_cpu(Crypto::Null);
}
