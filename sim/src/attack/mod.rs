//! The attack workload: hosts that run an adversary instead of a node.
//!
//! An attacker behaves as a real one would against authenticated sessions
//! (`grove_node::transport::session`): it cannot forge another peer's
//! session, so it makes its own. Its **Sybils** are fresh identities,
//! drawn from the scenario's streams, each with a `Sessions` of its own:
//! they handshake with their targets (whose ids and public keys the world
//! knows, as anyone who listens to the overlay would) and then send sealed
//! messages. Every answer addressed to the attacker comes back through its
//! socket and is handed to its Sybils, which complete their handshakes,
//! acknowledge and answer like any peer. What the attacker sends, by
//! [`AttackKind`]:
//!
//! - `reserve-flood`: RESERVE, each from a fresh Sybil; `circuit-flood`:
//!   CONNECT to random honest peers; `garbage`: relay and hole-punch tags
//!   with random bodies, sealed (the receiver drops them as undecodable).
//! - `spoof-id`: in turn, a plaintext datagram of the old format naming an
//!   honest peer as its sender; a data datagram under a receiver index
//!   sniffed from the target's traffic (random if none was seen) with a
//!   forged body; a sealed message whose header names an honest peer,
//!   not the Sybil whose session carries it.
//! - `replay`: a datagram the network carried between honest hosts
//!   ([`Capture`]), resent to its destination from the attacker's own
//!   address once its destination has had it ([`REPLAY_AFTER_NS`]).
//! - `handshake-flood`: initiations with a valid mac1 (made by throwaway
//!   identities for the target's key) from forged source addresses in
//!   [`SPOOFED_NET`] (the netsim's `send_spoofed`).
//! - `relay-takeover`: in turn, RESERVE in a Sybil's session naming a peer
//!   that holds a reservation with the target relay; STOP or RELAY-FROM
//!   to such a peer, sealed by a Sybil, naming the relay or the Sybil as
//!   sender; a data datagram to the peer forged from the relay's own
//!   address, under an index sniffed from the relay's traffic to it;
//!   CONNECT to the peer through the relay.
//!
//! Bounds: [`MAX_SYBILS`] Sybils alive per attack an attacker runs (the
//! oldest retires when a new one is needed), each with the session layer's
//! own bounds on queued messages; [`MAX_OUT`] datagrams waiting to be sent;
//! [`FLOOD_INITIATIONS_PER_TARGET`] initiations kept per flooded target;
//! [`OWN_INDICES`] session indices remembered; [`CAPTURE_CAPACITY`]
//! captured datagrams.
//!
//! What the attack did is observed, never read from inside a node
//! ([`AttackRec`]): session datagram types on the wire (their first byte is
//! in clear), the nodes' drop and traversal events, the attackers' own
//! counts, and the report's `attacks` section built from them.

mod attacker;
mod capture;
mod observe;
mod sybil;
#[cfg(madsim)]
pub mod task;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use attacker::{Attacker, Out, Plan, Target};
pub use capture::{Capture, Captured};
pub use observe::{AttackRec, AttackSection, AttackerStats};
pub use sybil::MAX_SYBILS;

/// Datagrams an attacker holds waiting to be sent (beyond, new ones are
/// dropped and counted).
pub const MAX_OUT: usize = 1024;
/// Handshake initiations an attacker keeps per flooded target, each from
/// a throwaway identity; past that it resends one of them.
pub const FLOOD_INITIATIONS_PER_TARGET: usize = 4;
/// Session indices an attacker remembers its Sybils chose (to tell a
/// datagram for a retired Sybil from one that was never its own).
pub const OWN_INDICES: usize = 4096;
/// Datagrams the world keeps in its capture ring for replay attacks.
pub const CAPTURE_CAPACITY: usize = 1024;
/// The capture ring keeps at most one datagram per this many ns (so that
/// it spans at least two seconds).
pub const CAPTURE_GAP_NS: u64 = 2_000_000;
/// A captured datagram is replayed only this long after it was sent, when
/// its destination has long had it: a replay, not a race. (An
/// eavesdropper with a faster path could race a datagram to its
/// destination; the first authenticated copy would move the session
/// there, until the peer's next datagram moves it back: WireGuard's and
/// QUIC's roaming share this, RFC 9000 §9.3.3. This workload does not
/// model that attacker.)
pub const REPLAY_AFTER_NS: u64 = 1_000_000_000;

/// The forged sources of the handshake flood: 203.0.113.0/24 (TEST-NET-3,
/// RFC 5737), where no simulated host lives, so that nothing sent there
/// arrives.
pub const SPOOFED_NET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 0);

/// Whether `ip` is one of the handshake flood's forged sources.
pub fn is_spoofed(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == SPOOFED_NET.octets()[..3])
}

/// A forged source in [`SPOOFED_NET`].
fn spoofed_source(rng: &mut impl rand::Rng) -> SocketAddr {
    let [a, b, c, _] = SPOOFED_NET.octets();
    let ip = Ipv4Addr::new(a, b, c, rng.gen_range(1..=254));
    SocketAddr::new(IpAddr::V4(ip), rng.gen_range(1024..=u16::MAX))
}

#[cfg(test)]
mod tests;
