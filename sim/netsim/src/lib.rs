//! Grove's virtual UDP network.
//!
//! [`Network`] is a plain data structure driven by virtual time: hosts with
//! access links (latency, jitter, loss), crash and restart, partitions, and a
//! count of every datagram's fate. It knows nothing of async or madsim and is
//! tested on its own. [`sim`] (built with `--cfg madsim`) puts a socket and a
//! pump task on top of it, on madsim's executor and clock.
//!
//! Performance shape (see DESIGN.md): one min-heap of in-flight datagrams and
//! node deadlines keyed by (instant, sequence); sending pushes onto it with
//! no allocation; payloads live in a slab of reusable buffers; instants are
//! rounded up to a time grid so many deliveries share one executor wake-up.
//! NAT boxes slot in between [`Network::send`] and delivery: a host's
//! datagrams already pass through one place on the way out and one on the
//! way in.

mod link;
mod network;
#[cfg(madsim)]
pub mod sim;

pub use link::{Jitter, Link};
pub use network::{Counters, Delivery, Fate, HostId, Network, SendError, MAX_DATAGRAM_BYTES};
