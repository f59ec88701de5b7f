//! Grove's virtual UDP network.
//!
//! [`Network`] is a plain data structure driven by virtual time: hosts with
//! access links (latency, jitter, loss), NAT boxes in front of them (RFC 4787
//! mapping and filtering, port allocation, timeouts, hairpinning, double NAT,
//! NAT-PMP, dynamic outside addresses; see [`NatConfig`]), crash and
//! restart, partitions, and a count of every datagram's fate. It knows
//! nothing of async or madsim and is tested on its own. [`sim`] (built with
//! `--cfg madsim`) puts a socket and a pump task on top of it, on madsim's
//! executor and clock.
//!
//! Performance shape (see DESIGN.md): one min-heap of in-flight datagrams and
//! node deadlines keyed by (instant, sequence); sending pushes onto it with
//! no allocation; payloads live in a slab of reusable buffers; instants are
//! rounded up to a time grid so many deliveries share one executor wake-up.
//! NAT boxes sit between [`Network::send`] and delivery: outbound
//! translation at send time, inbound filtering and translation at arrival
//! time. Traffic between public hosts with plain links never touches them.

mod link;
mod nat;
mod network;
#[cfg(madsim)]
pub mod sim;

pub use link::{Jitter, Link};
pub use nat::{
    Filtering, Mapping, NatConfig, NatCounters, NatId, PortAllocation, FIRST_PORT, GATEWAY_IP,
    NAT_PMP_PORT,
};
pub use network::{Counters, Delivery, Fate, HostId, Network, SendError, MAX_DATAGRAM_BYTES};
