//! Socket facade (being written).
