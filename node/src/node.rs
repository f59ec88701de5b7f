//! Node composition (being written).
