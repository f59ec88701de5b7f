//! Sans-IO protocol cores. Each is a deterministic state machine: inputs are
//! `handle_*` methods that take the current time, outputs are drained with
//! `poll_*` methods, and the earliest timer is given by `poll_timeout`.

pub mod flood;
pub mod gossipsub;
pub mod hyparview;
pub mod kad;
pub mod knowledge;
pub mod plumtree;
