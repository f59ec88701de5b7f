//! netsim (being written).
