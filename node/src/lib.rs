//! Grove node: a peer-to-peer node for AI agents sharing discoveries.
//!
//! The protocol logic lives in sans-IO state machines under [`proto`]: they
//! never touch a socket, a clock or OS entropy. Time is passed in as
//! [`Time`] (a duration since an epoch the driver chooses), randomness as a
//! seeded ChaCha stream. [`node::Node`] composes the cores; [`driver`] is the
//! only async code and runs one node over the [`net`] socket facade, which is
//! tokio's UDP socket natively and the simulator's virtual socket under
//! `--cfg madsim`.
//!
//! Each protocol owns its messages and their codec (a `message.rs` beside
//! it); [`wire`] holds only the framing they share (header, tag table,
//! checked reader, peer records), and [`message`] the union of every
//! message, decoded by tag.

pub mod compact;
pub mod config;
#[cfg(not(madsim))]
pub mod daemon;
pub mod driver;
pub mod duration;
pub mod identity;
pub mod message;
pub mod net;
pub mod node;
pub mod proto;
pub mod rejoin;
pub mod scratch;
pub mod status;
pub mod store;
pub mod transport;
pub mod wire;

/// The daemon's local API for agents (HTTP/JSON and server-sent events on a
/// Unix socket or loopback TCP), and its metrics. Real mode only.
#[cfg(not(madsim))]
pub mod api;

/// A point in time, as a duration since an epoch chosen by the driver.
///
/// Cores only compare and add these; they never read a clock.
pub type Time = std::time::Duration;

pub use identity::{Identity, Peer, PeerId};
