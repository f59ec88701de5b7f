//! Settings of the knowledge commons.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{valid_topic, MAX_BLOB_BYTES};

/// Knowledge commons settings. Off by default: a node shares no documents
/// unless its configuration says so. Durations are 1 ms to 720 h
/// ([`crate::config::MIN_INTERVAL`], [`crate::config::MAX_DURATION`])
/// unless their line says otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Run the knowledge commons at all (Grove: off unless asked for).
    pub enabled: bool,
    /// Topics whose documents the node holds from the start; others are
    /// joined when a peer first sends one (up to `max_topics`); each 1 to 32
    /// bytes, at most `max_topics` of them.
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
    /// a random one is replaced when full; Grove: 64); 1 to [`MAX_CONTACTS`].
    pub max_contacts: usize,
    /// Most documents held (bounded; Grove: 16); 1 to [`MAX_TOPICS`].
    pub max_topics: usize,
    /// Largest update, snapshot or version vector sent or accepted, in bytes
    /// (Grove: 256 KiB; at most the wire's blob cap, 300,000 bytes). Bigger
    /// catch-ups are split by peer and counter range.
    pub max_update_bytes: usize,
    /// Updates held per document while their dependencies are missing
    /// (bounded; the oldest is dropped, and anti-entropy fetches it again;
    /// Grove: 64); 1 to [`MAX_PENDING_UPDATES`].
    pub max_pending_updates: usize,
    /// Blobs being reassembled from chunks at once (bounded; the oldest is
    /// dropped; Grove: 32); 1 to [`MAX_PARTIAL_BLOBS`].
    pub max_partial_blobs: usize,
    /// A blob whose chunks have not all arrived after this is dropped
    /// (Grove: 30 s).
    #[serde(with = "crate::duration")]
    pub partial_blob_ttl: Duration,
    /// Bytes of knowledge traffic accepted from one peer per second; the
    /// excess is dropped and counted (Grove: 128 KiB/s); 1 to
    /// [`MAX_RATE_BYTES`].
    pub peer_rate_bytes_per_s: u64,
    /// Burst allowance of the per-peer rate, in bytes (Grove: 512 KiB, a
    /// bootstrap snapshot and then some); `max_update_bytes` to
    /// [`MAX_RATE_BYTES`].
    pub peer_burst_bytes: u64,
    /// A peer's anti-entropy request on one topic is answered at most once
    /// per this interval (Grove: 1 s: a summary of a few bytes must not buy
    /// a snapshot per datagram); 0 to 720 h.
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

/// Most remembered anti-entropy contacts a configuration may ask for.
pub const MAX_CONTACTS: usize = 1024;
/// Most documents a configuration may ask to hold.
pub const MAX_TOPICS: usize = 64;
/// Most updates held per document while their dependencies are missing.
pub const MAX_PENDING_UPDATES: usize = 1024;
/// Most blobs being reassembled at once.
pub const MAX_PARTIAL_BLOBS: usize = 256;
/// Highest per-peer rate and burst, in bytes (1 GiB).
pub const MAX_RATE_BYTES: u64 = 1 << 30;

/// A broken invariant of [`Config`], naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("knowledge.{} {}", self.field(), self.rule())]
pub enum ConfigError {
    /// A count or duration out of the bounds on its doc line.
    OutOfRange {
        field: &'static str,
        rule: String,
    },
    UpdateTooLarge {
        value: usize,
    },
    Probability(f64),
    Topic(String),
    TooManyTopics {
        count: usize,
        max: usize,
    },
    BurstTooSmall {
        burst: u64,
        update: usize,
    },
}

impl ConfigError {
    /// The key of the broken setting.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::OutOfRange { field, .. } => field,
            ConfigError::UpdateTooLarge { .. } => "max_update_bytes",
            ConfigError::Probability(_) => "contact_probability",
            ConfigError::Topic(_) | ConfigError::TooManyTopics { .. } => "topics",
            ConfigError::BurstTooSmall { .. } => "peer_burst_bytes",
        }
    }

    /// What is wrong with it.
    #[must_use]
    pub fn rule(&self) -> String {
        match self {
            ConfigError::OutOfRange { rule, .. } => rule.clone(),
            ConfigError::UpdateTooLarge { value } => {
                format!("is {value}, over the wire's blob cap of {MAX_BLOB_BYTES}")
            }
            ConfigError::Probability(p) => format!("is {p}, not in [0, 1]"),
            ConfigError::Topic(t) => format!("{t:?} is not 1 to 32 bytes"),
            ConfigError::TooManyTopics { count, max } => {
                format!("lists {count} topics, over max_topics = {max}")
            }
            ConfigError::BurstTooSmall { burst, update } => format!(
                "({burst}) must be at least max_update_bytes ({update}), or a full catch-up could never be accepted"
            ),
        }
    }

    /// For `map_err`: `field` out of range, with a rule from
    /// [`crate::config::range`] and friends.
    fn at(field: &'static str) -> impl FnOnce(String) -> ConfigError {
        move |rule| ConfigError::OutOfRange { field, rule }
    }
}

impl Config {
    /// Check the bounds on each field's doc line and the invariants; the
    /// error names the broken one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::config::{delay, interval, range};
        for (field, d) in [
            ("push_interval", self.push_interval),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("partial_blob_ttl", self.partial_blob_ttl),
        ] {
            interval(d).map_err(ConfigError::at(field))?;
        }
        delay(self.min_answer_interval).map_err(ConfigError::at("min_answer_interval"))?;
        for (field, v, max) in [
            ("max_contacts", self.max_contacts, MAX_CONTACTS),
            ("max_topics", self.max_topics, MAX_TOPICS),
            (
                "max_pending_updates",
                self.max_pending_updates,
                MAX_PENDING_UPDATES,
            ),
            (
                "max_partial_blobs",
                self.max_partial_blobs,
                MAX_PARTIAL_BLOBS,
            ),
        ] {
            range(v, 1, max).map_err(ConfigError::at(field))?;
        }
        for (field, v) in [
            ("peer_rate_bytes_per_s", self.peer_rate_bytes_per_s),
            ("peer_burst_bytes", self.peer_burst_bytes),
        ] {
            range(v, 1, MAX_RATE_BYTES).map_err(ConfigError::at(field))?;
        }
        if self.max_update_bytes == 0 {
            return Err(ConfigError::OutOfRange {
                field: "max_update_bytes",
                rule: "must be positive".into(),
            });
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
