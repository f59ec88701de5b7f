//! Settings of the knowledge commons.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::knowledge::{valid_topic, MAX_BLOB_BYTES};

/// Knowledge commons settings. Off by default: a node shares no documents
/// unless its configuration says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Run the knowledge commons at all (Grove: off unless asked for).
    pub enabled: bool,
    /// Topics whose documents the node holds from the start; others are
    /// joined when a peer first sends one (up to `max_topics`).
    pub topics: Vec<String>,
    /// How often new operations are pushed to neighbours, batched
    /// (Grove: 200 ms, a few one-way delays, so a write costs one datagram
    /// per link whatever the write rate).
    #[serde(with = "crate::duration")]
    pub push_interval: Duration,
    /// Mean time between anti-entropy rounds, jittered ±50% (Grove: 10 s,
    /// the order of HyParView's keep-alive; Demers et al. 1987 run
    /// anti-entropy far less often than rumour mongering).
    #[serde(with = "crate::duration")]
    pub anti_entropy_interval: Duration,
    /// Share of anti-entropy rounds spent on a remembered peer outside the
    /// active view, so that overlay components left apart by a partition
    /// still meet (Grove: 0.25).
    pub contact_probability: f64,
    /// Peers remembered for anti-entropy outside the active view (bounded;
    /// a random one is replaced when full; Grove: 64).
    pub max_contacts: usize,
    /// Most documents held (bounded; Grove: 16).
    pub max_topics: usize,
    /// Largest update, snapshot or version vector sent or accepted, in bytes
    /// (Grove: 256 KiB; at most the wire's blob cap, 300,000 bytes). Bigger
    /// catch-ups are split by peer and counter range.
    pub max_update_bytes: usize,
    /// Updates held per document while their dependencies are missing
    /// (bounded; the oldest is dropped, and anti-entropy fetches it again;
    /// Grove: 64).
    pub max_pending_updates: usize,
    /// Blobs being reassembled from chunks at once (bounded; the oldest is
    /// dropped; Grove: 32).
    pub max_partial_blobs: usize,
    /// A blob whose chunks have not all arrived after this is dropped
    /// (Grove: 30 s).
    #[serde(with = "crate::duration")]
    pub partial_blob_ttl: Duration,
    /// Bytes of knowledge traffic accepted from one peer per second; the
    /// excess is dropped and counted (Grove: 128 KiB/s).
    pub peer_rate_bytes_per_s: u64,
    /// Burst allowance of the per-peer rate, in bytes (Grove: 512 KiB, a
    /// bootstrap snapshot and then some).
    pub peer_burst_bytes: u64,
    /// A peer's anti-entropy request on one topic is answered at most once
    /// per this interval (Grove: 1 s: a summary of a few bytes must not buy
    /// a snapshot per datagram).
    #[serde(with = "crate::duration")]
    pub min_answer_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            topics: Vec::new(),
            push_interval: Duration::from_millis(200),
            anti_entropy_interval: Duration::from_secs(10),
            contact_probability: 0.25,
            max_contacts: 64,
            max_topics: 16,
            max_update_bytes: 256 * 1024,
            max_pending_updates: 64,
            max_partial_blobs: 32,
            partial_blob_ttl: Duration::from_secs(30),
            peer_rate_bytes_per_s: 128 * 1024,
            peer_burst_bytes: 512 * 1024,
            min_answer_interval: Duration::from_secs(1),
        }
    }
}

/// A broken invariant of [`Config`], naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("knowledge.{field} must be positive")]
    NotPositive { field: &'static str },
    #[error("knowledge.max_update_bytes is {value}, over the wire's blob cap of {MAX_BLOB_BYTES}")]
    UpdateTooLarge { value: usize },
    #[error("knowledge.contact_probability is {0}, not in [0, 1]")]
    Probability(f64),
    #[error("knowledge.topics: {0:?} is not 1 to 32 bytes")]
    Topic(String),
    #[error("knowledge.topics lists {count} topics, over max_topics = {max}")]
    TooManyTopics { count: usize, max: usize },
    #[error("knowledge.peer_burst_bytes ({burst}) must be at least max_update_bytes ({update}), or a full catch-up could never be accepted")]
    BurstTooSmall { burst: u64, update: usize },
}

impl Config {
    /// Check the invariants; the error names the broken one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("push_interval", self.push_interval.is_zero()),
            (
                "anti_entropy_interval",
                self.anti_entropy_interval.is_zero(),
            ),
            ("max_contacts", self.max_contacts == 0),
            ("max_topics", self.max_topics == 0),
            ("max_update_bytes", self.max_update_bytes == 0),
            ("max_pending_updates", self.max_pending_updates == 0),
            ("max_partial_blobs", self.max_partial_blobs == 0),
            ("partial_blob_ttl", self.partial_blob_ttl.is_zero()),
            ("peer_rate_bytes_per_s", self.peer_rate_bytes_per_s == 0),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, bad)| *bad) {
            return Err(ConfigError::NotPositive { field });
        }
        if self.max_update_bytes > MAX_BLOB_BYTES {
            return Err(ConfigError::UpdateTooLarge {
                value: self.max_update_bytes,
            });
        }
        if !(0.0..=1.0).contains(&self.contact_probability) {
            return Err(ConfigError::Probability(self.contact_probability));
        }
        if let Some(t) = self.topics.iter().find(|t| !valid_topic(t)) {
            return Err(ConfigError::Topic(t.clone()));
        }
        if self.topics.len() > self.max_topics {
            return Err(ConfigError::TooManyTopics {
                count: self.topics.len(),
                max: self.max_topics,
            });
        }
        if self.peer_burst_bytes < self.max_update_bytes as u64 {
            return Err(ConfigError::BurstTooSmall {
                burst: self.peer_burst_bytes,
                update: self.max_update_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_each_invariant_names_its_field() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.push_interval = Duration::ZERO).contains("push_interval"));
        assert!(bad(|c| c.max_pending_updates = 0).contains("max_pending_updates"));
        assert!(bad(|c| c.max_update_bytes = MAX_BLOB_BYTES + 1).contains("max_update_bytes"));
        assert!(bad(|c| c.contact_probability = 1.5).contains("contact_probability"));
        assert!(bad(|c| c.topics = vec![String::new()]).contains("topics"));
        assert!(bad(|c| {
            c.max_topics = 1;
            c.topics = vec!["a".into(), "b".into()];
        })
        .contains("max_topics"));
        assert!(bad(|c| c.peer_burst_bytes = 10).contains("peer_burst_bytes"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("enabled = true\nbogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let c: Config = toml::from_str("enabled = true\npush_interval = \"1s\"\n").unwrap();
        assert!(c.enabled);
        assert_eq!(c.push_interval, Duration::from_secs(1));
    }
}
