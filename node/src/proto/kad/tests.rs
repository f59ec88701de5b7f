//! Tests of the DHT core on virtual time.
