//! What a session costs the node that holds it: CPU per handshake (each
//! side), CPU to seal and to open a 200-byte datagram, and heap bytes per
//! established idle session; with real and null crypto.
//!
//! Timings are medians over rounds, measured with `std::time::Instant`
//! (these functions never run inside madsim's `block_on`, where the clock
//! is virtual). Memory is the live heap as glibc counts it (`mallinfo2`:
//! chunks in use, their headers and rounding included, which is what the
//! resident set pays; `node/examples/session_cost.rs` counts the bytes
//! requested instead): a node with N sessions, before and after it is
//! dropped, minus the same for a node with none, over N.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grove_node::transport::session::{Config, Crypto, Incoming, Sessions, Via};
use grove_node::{Identity, Time};
use serde::Serialize;

/// The plaintext sealed and opened by [`datagram`].
pub const PAYLOAD_BYTES: usize = 200;
/// Datagrams per timed batch in [`datagram`].
const BATCH: usize = 1000;
/// Sessions of the node measured by [`bytes_per_session`].
const SESSIONS: u32 = 2000;

/// Everything [`measure`] finds.
#[derive(Clone, Debug, Serialize)]
pub struct SessionCosts {
    pub real: CryptoCosts,
    pub null: CryptoCosts,
}

/// The costs with one kind of crypto.
#[derive(Clone, Debug, Serialize)]
pub struct CryptoCosts {
    pub handshake: HandshakeCpu,
    pub datagram: DatagramCpu,
    /// Heap bytes per established idle session (`None` without glibc).
    pub bytes_per_session: Option<f64>,
}

/// One handshake's CPU, median over `rounds`, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeCpu {
    pub rounds: usize,
    /// The initiator: initiation out, response in, confirmation out.
    pub initiator_us: f64,
    /// The responder: initiation in, response out, confirmation in.
    pub responder_us: f64,
    /// Both sides of the same handshake.
    pub both_us: f64,
}

/// CPU per datagram of [`PAYLOAD_BYTES`], median over `batches` batches.
#[derive(Clone, Debug, Serialize)]
pub struct DatagramCpu {
    pub batches: usize,
    /// `send` and `poll_transmit` of an established session.
    pub seal_ns: f64,
    /// `handle` of the sealed datagram.
    pub open_ns: f64,
}

/// Measure both crypto modes: `rounds` handshakes and `rounds` batches of
/// datagrams each.
pub fn measure(rounds: usize) -> SessionCosts {
    let rounds = rounds.max(1);
    let costs = |crypto| CryptoCosts {
        handshake: handshake(crypto, rounds),
        datagram: datagram(crypto, rounds),
        bytes_per_session: bytes_per_session(crypto),
    };
    SessionCosts {
        real: costs(Crypto::Real),
        null: costs(Crypto::Null),
    }
}

fn identity(i: u32) -> Identity {
    let mut seed = [0; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}

fn via(i: u32) -> Via {
    let [_, a, b, c] = i.to_be_bytes();
    Via::Direct(SocketAddr::from(([10, a, b, c], 7000)))
}

/// Hand every datagram `from` has to send to `to`.
fn deliver(now: Time, from: &mut Sessions, from_via: Via, to: &mut Sessions) {
    let (mut out, mut plain) = (Vec::new(), Vec::new());
    while from.poll_transmit(&mut out).is_some() {
        let got = to.handle(now, from_via, &out, &mut plain);
        assert!(!matches!(got, Incoming::Dropped(_)), "{got:?}");
    }
}

/// Wall time of `f`, in microseconds.
fn timed(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64() * 1e6
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// `rounds` handshakes between two nodes, each side timed apart.
fn handshake(crypto: Crypto, rounds: usize) -> HandshakeCpu {
    let config = Config {
        crypto,
        ..Config::default()
    };
    let (a_id, b_id) = (identity(1), identity(2));
    let (a_peer, b_peer) = (a_id.peer_id(), b_id.peer_id());
    let mut a = Sessions::new(&a_id, config.clone(), 1);
    let mut b = Sessions::new(&b_id, config, 2);
    let (mut out, mut plain) = (Vec::new(), Vec::new());
    let (mut initiator, mut responder) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // 10 ms apart: below the rate that asks for cookies.
        let now = Time::from_millis(1000 + 10 * round as u64);
        let mut a_us = timed(|| {
            a.send(now, b_peer, None, b"", false);
            a.poll_transmit(&mut out).expect("an initiation");
        });
        let mut b_us = timed(|| {
            b.handle(now, via(1), &out, &mut plain);
            b.poll_transmit(&mut out).expect("a response");
        });
        a_us += timed(|| {
            a.handle(now, via(2), &out, &mut plain);
            a.poll_transmit(&mut out).expect("the confirmation");
        });
        b_us += timed(|| {
            b.handle(now, via(1), &out, &mut plain);
        });
        assert!(a.is_established(&b_peer) && b.is_established(&a_peer));
        initiator.push(a_us);
        responder.push(b_us);
        for s in [&mut a, &mut b] {
            while s.poll_event().is_some() {}
            while s.poll_transmit(&mut out).is_some() {}
        }
        a.forget(&b_peer);
        b.forget(&a_peer);
    }
    let both = initiator
        .iter()
        .zip(&responder)
        .map(|(a, b)| a + b)
        .collect();
    HandshakeCpu {
        rounds,
        initiator_us: median(initiator),
        responder_us: median(responder),
        both_us: median(both),
    }
}

/// `batches` batches of [`BATCH`] datagrams sealed, then opened.
fn datagram(crypto: Crypto, batches: usize) -> DatagramCpu {
    let config = Config {
        crypto,
        rekey_after: Duration::from_secs(1 << 30),
        reject_after: Duration::from_secs(1 << 31),
        ..Config::default()
    };
    let (a_id, b_id) = (identity(1), identity(2));
    let b_peer = b_id.peer_id();
    let mut a = Sessions::new(&a_id, config.clone(), 1);
    let mut b = Sessions::new(&b_id, config, 2);
    let now = Time::from_secs(1);
    a.send(now, b_peer, None, b"", false);
    deliver(now, &mut a, via(1), &mut b);
    deliver(now, &mut b, via(2), &mut a);
    deliver(now, &mut a, via(1), &mut b);
    let payload = [7u8; PAYLOAD_BYTES];
    let mut sealed = vec![Vec::new(); BATCH];
    let mut plain = Vec::new();
    let (mut seal, mut open) = (Vec::new(), Vec::new());
    // One batch more than measured: the first grows the buffers.
    for batch in 0..=batches {
        let seal_us = timed(|| {
            for out in &mut sealed {
                a.send(now, b_peer, None, &payload, false);
                a.poll_transmit(out).expect("sealed");
            }
        });
        let open_us = timed(|| {
            for datagram in &sealed {
                let got = b.handle(now, via(1), datagram, &mut plain);
                assert!(matches!(got, Incoming::Data { .. }));
            }
        });
        assert_eq!(plain.len(), PAYLOAD_BYTES);
        if batch > 0 {
            seal.push(seal_us * 1e3 / BATCH as f64);
            open.push(open_us * 1e3 / BATCH as f64);
        }
    }
    DatagramCpu {
        batches,
        seal_ns: median(seal),
        open_ns: median(open),
    }
}

/// Heap bytes per established idle session of a node that initiated
/// [`SESSIONS`] of them.
fn bytes_per_session(crypto: Crypto) -> Option<f64> {
    let empty = node_heap(0, crypto)?;
    let full = node_heap(SESSIONS, crypto)?;
    Some((full - empty) as f64 / f64::from(SESSIONS))
}

/// The heap a node with `n` established idle sessions holds: in use before
/// it is dropped minus after.
fn node_heap(n: u32, crypto: Crypto) -> Option<i64> {
    let config = Config {
        crypto,
        max_sessions: SESSIONS as usize,
        ..Config::default()
    };
    let now = Time::from_secs(1);
    let mut node = Sessions::new(&identity(0), config.clone(), 0);
    for i in 1..=n {
        let mut peer = Sessions::new(&identity(i), config.clone(), u64::from(i));
        node.send(now, identity(i).peer_id(), None, b"", false);
        deliver(now, &mut node, via(0), &mut peer);
        deliver(now, &mut peer, via(i), &mut node);
        deliver(now, &mut node, via(0), &mut peer);
        while node.poll_event().is_some() {}
    }
    assert_eq!(node.len(), n as usize);
    let before = super::heap_in_use_bytes()?;
    drop(node);
    Some(before as i64 - super::heap_in_use_bytes()? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_measured_in_both_modes() {
        let hs = handshake(Crypto::Null, 3);
        assert!(hs.both_us > 0.0 && hs.both_us >= hs.initiator_us.min(hs.responder_us));
        let d = datagram(Crypto::Real, 1);
        assert!(d.seal_ns > 0.0 && d.open_ns > 0.0);
        if let Some(bytes) = bytes_per_session(Crypto::Null) {
            // Keys, replay window, endpoint: hundreds of bytes, not none.
            assert!(bytes > 100.0, "{bytes} bytes per session");
        }
    }
}
