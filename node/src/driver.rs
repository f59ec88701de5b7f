//! Driver (being written).
