//! Checking settings: the bounds every core's `validate` shares, the error
//! of a core whose settings have no structured error of their own
//! ([`KeyError`]), and the error of [`crate::node::Config::validate`]
//! ([`ConfigError`]), which names the section and the key.
//!
//! Every value that sizes a table, queue, cache or loop is bounded from
//! above as well as below (TigerBeetle's "a limit on everything"), and every
//! duration lies in a sane range: at least [`MIN_INTERVAL`] where zero
//! means nothing (a timer of 0 would spin) and at most [`MAX_DURATION`].
//! The bounds of each key are on its doc line in its core's `Config`.

use std::fmt::Display;
use std::time::Duration;

/// Longest duration any setting takes: 30 days (720 h). The longest
/// protocol constant is the DHT's 48 h provider TTL; a timer further away
/// is a typo, and bounding it keeps every `now + setting` far from
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Shortest interval or timeout where zero means nothing: 1 ms, the
/// simulator's default time grid. Shorter timers would fire thousands of
/// times per second for no protocol benefit.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// `value` within `min..=max`; else the rule it breaks, with the value.
pub(crate) fn range<T: PartialOrd + Display>(value: T, min: T, max: T) -> Result<(), String> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(format!("must be {min} to {max}, got {value}"))
    }
}

/// `value` within `min..=max`; else the rule it breaks, durations written
/// as the config files write them.
pub(crate) fn duration_range(value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(format!(
            "must be {} to {}, got {}",
            show(min),
            show(max),
            show(value)
        ))
    }
}

/// A positive timer or interval: [`MIN_INTERVAL`] to [`MAX_DURATION`].
pub(crate) fn interval(value: Duration) -> Result<(), String> {
    duration_range(value, MIN_INTERVAL, MAX_DURATION)
}

/// A duration where zero has a meaning (off, at once): 0 to
/// [`MAX_DURATION`].
pub(crate) fn delay(value: Duration) -> Result<(), String> {
    duration_range(value, Duration::ZERO, MAX_DURATION)
}

/// A duration in the largest unit of [`crate::duration::parse`] that
/// writes it exactly: `"720h"`, `"90s"`, `"1500ms"`, `"40us"`.
pub fn show(d: Duration) -> String {
    let nanos = d.as_nanos();
    let units = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in units {
        if nanos % size == 0 {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{d:?}")
}

/// A value out of range in a core whose settings have no error type of
/// their own: the key (dotted below the core's section, e.g.
/// `relay.max_circuits` in NAT traversal) and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl KeyError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// For `map_err`: the error of `key` with a rule from [`range`] and
    /// friends.
    pub(crate) fn at(key: &str) -> impl FnOnce(String) -> KeyError + '_ {
        move |message| KeyError::new(key, message)
    }

    /// The same error one table further down, under `table`.
    #[must_use]
    pub fn under(self, table: &str) -> Self {
        KeyError {
            key: format!("{table}.{}", self.key),
            message: self.message,
        }
    }
}

/// A node setting out of range: the section (the TOML table of the
/// daemon's file, e.g. `gossipsub` or `nat.relay`), the key in it and the
/// rule it breaks. Displayed as `[gossipsub] d: must be at least 1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("[{section}] {key}: {message}")]
pub struct ConfigError {
    pub section: String,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// The error of `key` in `section`; a dotted key (`score.decay_interval`)
    /// moves its tables into the section (`gossipsub.score`).
    pub fn new(section: &str, key: &str, message: impl Into<String>) -> Self {
        let (section, key) = match key.rsplit_once('.') {
            Some((tables, key)) => (format!("{section}.{tables}"), key),
            None => (section.to_owned(), key),
        };
        ConfigError {
            section,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// The section and key as one dotted path: `gossipsub.score.decay_interval`.
    #[must_use]
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// The same error with its section under `table` (the simulator's
    /// scenarios hold the node's settings under `[node]`).
    #[must_use]
    pub fn under(self, table: &str) -> Self {
        ConfigError {
            section: format!("{table}.{}", self.section),
            ..self
        }
    }
}
