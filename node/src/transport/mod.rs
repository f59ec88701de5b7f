//! The transport: the one layer between the socket and the protocol cores.
//!
//! It owns sessions ([`session`]: authenticated, encrypted, roaming) and
//! paths ([`nat`]: direct, relayed, hole-punched, port-mapped, with
//! AutoNAT, the relay client and server, DCUtR and keep-alives).

pub mod addrbook;
pub mod nat;
pub mod session;
