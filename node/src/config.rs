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
    if nanos == 0 {
        return "0s".into();
    }
    let units = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in units {
        if nanos.is_multiple_of(size) {
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
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::node::{Config, Node};
    use crate::proto::{gossipsub, hyparview, kad, knowledge, plumtree};
    use crate::transport::{nat, session};
    use crate::{Identity, Time};

    /// The error of the default configuration changed by `edit`.
    fn error(edit: impl FnOnce(&mut Config)) -> ConfigError {
        let mut c = Config::default();
        edit(&mut c);
        c.validate().unwrap_err()
    }

    fn assert_names(edit: impl FnOnce(&mut Config), section: &str, key: &str) {
        let e = error(edit);
        assert_eq!((e.section.as_str(), e.key.as_str()), (section, key), "{e}");
    }

    #[test]
    fn the_defaults_and_the_hardened_gossipsub_profile_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        let c = Config {
            gossipsub: gossipsub::Config::hardened(),
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn errors_read_section_key_rule_and_value() {
        let e = error(|c| {
            c.gossipsub.enabled = true;
            c.gossipsub.d = 0;
        });
        assert_eq!(e.to_string(), "[gossipsub] d: must be 1 to 64, got 0");
        let e = error(|c| c.hyparview.active_view_capacity = 1_000_000_000_000);
        assert_eq!(
            e.to_string(),
            "[hyparview] active_view_capacity: must be 1 to 64, got 1000000000000"
        );
        let e = error(|c| c.dht.k = 0);
        assert_eq!(e.to_string(), "[dht] k: must be 1 to 20, got 0");
        let e = error(|c| c.plumtree.seen_capacity = 0);
        assert_eq!(
            e.to_string(),
            "[plumtree] seen_capacity: must be 1 to 1048576, got 0"
        );
        let e = error(|c| c.transport.idle_timeout = Duration::from_secs(31 * 24 * 3600));
        assert_eq!(
            e.to_string(),
            "[transport] idle_timeout: must be 1ms to 720h, got 744h"
        );
        assert_eq!(e.path(), "transport.idle_timeout");
    }

    #[test]
    fn every_section_names_its_bad_keys() {
        let long = MAX_DURATION + Duration::from_secs(1);
        // HyParView: capacities, walks, shuffles, timers, and the invariant.
        assert_names(
            |c| c.hyparview.passive_view_capacity = 0,
            "hyparview",
            "passive_view_capacity",
        );
        assert_names(
            |c| c.hyparview.passive_view_capacity = 5000,
            "hyparview",
            "passive_view_capacity",
        );
        assert_names(
            |c| c.hyparview.active_random_walk_length = 200,
            "hyparview",
            "active_random_walk_length",
        );
        assert_names(
            |c| c.hyparview.shuffle_active_count = usize::MAX,
            "hyparview",
            "shuffle_passive_count",
        );
        assert_names(
            |c| c.hyparview.shuffle_interval = Duration::ZERO,
            "hyparview",
            "shuffle_interval",
        );
        assert_names(
            |c| c.hyparview.request_timeout = long,
            "hyparview",
            "request_timeout",
        );
        assert_names(
            |c| c.hyparview.keepalive_interval = Duration::from_secs(10),
            "hyparview",
            "failure_timeout",
        );
        // Plumtree and flooding: caches and timers.
        assert_names(
            |c| c.plumtree.message_cache_capacity = 0,
            "plumtree",
            "message_cache_capacity",
        );
        assert_names(
            |c| c.plumtree.message_cache_capacity = 1 << 20,
            "plumtree",
            "message_cache_capacity",
        );
        assert_names(
            |c| c.plumtree.seen_capacity = usize::MAX,
            "plumtree",
            "seen_capacity",
        );
        assert_names(
            |c| c.plumtree.seen_ttl = Duration::from_millis(10),
            "plumtree",
            "seen_ttl",
        );
        assert_names(
            |c| c.plumtree.graft_timeout_1 = Duration::ZERO,
            "plumtree",
            "graft_timeout_1",
        );
        assert_names(|c| c.plumtree.ihave_delay = long, "plumtree", "ihave_delay");
        assert_names(|c| c.flood.seen_capacity = 0, "flood", "seen_capacity");
        assert_names(|c| c.flood.seen_ttl = Duration::ZERO, "flood", "seen_ttl");
        // NAT traversal and its relay.
        assert_names(|c| c.nat.observers_needed = 0, "nat", "observers_needed");
        assert_names(|c| c.nat.relays_wanted = 5, "nat", "relays_wanted");
        assert_names(|c| c.nat.max_paths = 1 << 30, "nat", "max_paths");
        assert_names(
            |c| c.nat.upgrade_backoff = Duration::ZERO,
            "nat",
            "upgrade_backoff",
        );
        assert_names(|c| c.nat.path_timeout = long, "nat", "path_timeout");
        assert_names(
            |c| c.nat.relay.max_circuits = 0,
            "nat.relay",
            "max_circuits",
        );
        assert_names(
            |c| c.nat.relay.max_reservations = usize::MAX,
            "nat.relay",
            "max_reservations",
        );
        assert_names(
            |c| c.nat.relay.circuit_duration = Duration::from_millis(500),
            "nat.relay",
            "circuit_duration",
        );
        assert_names(
            |c| c.nat.relay.circuit_bytes = u64::MAX,
            "nat.relay",
            "circuit_bytes",
        );
        // GossipSub, its score parameters and thresholds.
        assert_names(
            |c| c.gossipsub.mcache_len = 1 << 40,
            "gossipsub",
            "mcache_len",
        );
        assert_names(
            |c| c.gossipsub.max_peers = usize::MAX,
            "gossipsub",
            "max_peers",
        );
        assert_names(
            |c| c.gossipsub.seen_capacity = 0,
            "gossipsub",
            "seen_capacity",
        );
        assert_names(|c| c.gossipsub.max_topics = 0, "gossipsub", "max_topics");
        assert_names(|c| c.gossipsub.fanout_ttl = long, "gossipsub", "fanout_ttl");
        assert_names(
            |c| c.gossipsub.heartbeat_interval = long,
            "gossipsub",
            "heartbeat_interval",
        );
        assert_names(
            |c| c.gossipsub.score.decay_interval = long,
            "gossipsub.score",
            "decay_interval",
        );
        assert_names(
            |c| c.gossipsub.score.topic_weight = f64::INFINITY,
            "gossipsub.score",
            "topic_weight",
        );
        assert_names(
            |c| c.gossipsub.thresholds.graylist = f64::NAN,
            "gossipsub.thresholds",
            "graylist",
        );
        // The DHT.
        assert_names(|c| c.dht.k = 21, "dht", "k");
        assert_names(|c| c.dht.alpha = 0, "dht", "alpha");
        assert_names(|c| c.dht.max_values = usize::MAX, "dht", "max_values");
        assert_names(|c| c.dht.refresh_max_cpl = 256, "dht", "refresh_max_cpl");
        assert_names(|c| c.dht.provider_ttl = long, "dht", "provider_ttl");
        // The knowledge commons.
        assert_names(|c| c.knowledge.max_topics = 0, "knowledge", "max_topics");
        assert_names(
            |c| c.knowledge.max_contacts = usize::MAX,
            "knowledge",
            "max_contacts",
        );
        assert_names(
            |c| c.knowledge.push_interval = long,
            "knowledge",
            "push_interval",
        );
        assert_names(
            |c| c.knowledge.contact_probability = f64::NAN,
            "knowledge",
            "contact_probability",
        );
        // Sessions.
        assert_names(
            |c| c.transport.max_sessions = 0,
            "transport",
            "max_sessions",
        );
        assert_names(
            |c| c.transport.handshake_attempts = 0,
            "transport",
            "handshake_attempts",
        );
        assert_names(
            |c| c.transport.rekey_after = Duration::ZERO,
            "transport",
            "rekey_after",
        );
        assert_names(
            |c| c.transport.reject_after = c.transport.rekey_after,
            "transport",
            "reject_after",
        );
    }

    #[test]
    fn sections_of_cores_that_are_off_are_checked_too() {
        let mut c = Config::default();
        assert!(!c.gossipsub.enabled && !c.dht.enabled && !c.knowledge.enabled);
        c.dht.k = 0;
        assert_eq!(c.validate().unwrap_err().path(), "dht.k");
    }

    /// Every bound at its largest (and every timer at its longest or
    /// shortest) still makes a node that runs: the bounds keep allocations
    /// and time arithmetic in range.
    #[test]
    fn the_largest_valid_settings_build_and_run_a_node() {
        let slow = MAX_DURATION;
        let c = Config {
            hyparview: hyparview::Config {
                active_view_capacity: hyparview::MAX_ACTIVE_VIEW,
                passive_view_capacity: hyparview::MAX_PASSIVE_VIEW,
                active_random_walk_length: hyparview::MAX_WALK_LENGTH,
                shuffle_random_walk_length: hyparview::MAX_WALK_LENGTH,
                shuffle_interval: slow,
                failure_timeout: slow,
                ..hyparview::Config::default()
            },
            plumtree: plumtree::Config {
                message_cache_capacity: plumtree::MAX_MESSAGE_CACHE,
                seen_capacity: plumtree::MAX_SEEN,
                seen_ttl: slow,
                message_cache_ttl: slow,
                ..plumtree::Config::default()
            },
            nat: nat::Config {
                max_paths: nat::MAX_PATHS,
                path_timeout: slow,
                mapping_lifetime: slow,
                autonat_interval: slow,
                ..nat::Config::default()
            },
            gossipsub: gossipsub::Config {
                enabled: true,
                d_hi: gossipsub::MAX_DEGREE,
                mcache_len: gossipsub::MAX_MCACHE_LEN,
                seen_ttl: slow,
                max_peers: gossipsub::MAX_TOPIC_PEERS,
                mcache_capacity: gossipsub::MAX_MCACHE_CAPACITY,
                seen_capacity: gossipsub::MAX_SEEN_CAPACITY,
                max_promises: gossipsub::MAX_PROMISES,
                ..gossipsub::Config::default()
            },
            dht: kad::Config {
                enabled: true,
                max_concurrent_queries: kad::MAX_CONCURRENT_QUERIES,
                max_provided_keys: kad::MAX_PROVIDED_KEYS,
                max_values: kad::MAX_VALUES,
                refresh_max_cpl: kad::MAX_REFRESH_CPL,
                provider_ttl: slow,
                ..kad::Config::default()
            },
            knowledge: knowledge::Config {
                enabled: true,
                max_contacts: knowledge::MAX_CONTACTS,
                max_topics: knowledge::MAX_TOPICS,
                anti_entropy_interval: slow,
                ..knowledge::Config::default()
            },
            transport: session::Config {
                max_sessions: session::MAX_SESSIONS,
                idle_timeout: slow,
                ..session::Config::default()
            },
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let addr: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let mut node = Node::new(
            &Identity::from_seed([1; 32]),
            addr,
            c,
            ChaCha8Rng::seed_from_u64(1),
        );
        node.join(Time::ZERO, "10.0.0.2:7000".parse().unwrap());
        let mut now = Time::ZERO;
        for _ in 0..100 {
            let Some(next) = node.poll_timeout() else {
                break;
            };
            now = next.max(now);
            node.handle_timeout(now);
            let mut datagram = Vec::new();
            while node.poll_transmit(&mut datagram).is_some() {}
            while node.poll_event().is_some() {}
        }
        assert!(now <= Time::from_secs(10 * 365 * 24 * 3600));
    }

    /// Values a hostile or careless file may hold, for any key.
    const HOSTILE: &[&str] = &[
        "0",
        "1",
        "-1",
        "65536",
        "4294967296",
        "9223372036854775807",
        "1e300",
        "-1e300",
        "nan",
        "inf",
        "\"1e300\"",
        "\"-5s\"",
        "\"1000000h\"",
        "\"721h\"",
        "\"\"",
        "true",
        "[]",
    ];

    /// The dotted paths of every leaf of `value`.
    fn leaves(value: &toml::Value, path: &str, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(v, &p, out);
                }
            }
            _ => out.push(path.to_owned()),
        }
    }

    fn set(value: &mut toml::Value, path: &str, leaf: toml::Value) {
        let (tables, key) = path.rsplit_once('.').unwrap_or(("", path));
        let mut v = value;
        for t in tables.split('.').filter(|t| !t.is_empty()) {
            v = v.get_mut(t).unwrap();
        }
        v.as_table_mut().unwrap().insert(key.to_owned(), leaf);
    }

    /// Every key of every section, set in turn to each hostile value, with
    /// every core on: the settings are refused naming a real key, or they
    /// build a node that runs. Nothing panics or aborts.
    #[test]
    fn hostile_values_for_every_key_are_refused_or_run() {
        let mut on = Config::default();
        on.gossipsub.enabled = true;
        on.dht.enabled = true;
        on.knowledge.enabled = true;
        let base = toml::Value::try_from(&on).unwrap();
        let mut keys = Vec::new();
        leaves(&base, "", &mut keys);
        assert!(keys.len() > 150, "{}", keys.len());
        let identity = Identity::from_seed([1; 32]);
        let addr: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let (mut refused, mut ran) = (0, 0);
        for key in &keys {
            for text in HOSTILE {
                let leaf: toml::Value = toml::from_str::<toml::Table>(&format!("v = {text}"))
                    .unwrap()
                    .remove("v")
                    .unwrap();
                let mut value = base.clone();
                set(&mut value, key, leaf);
                let Ok(config) = value.try_into::<Config>() else {
                    refused += 1;
                    continue;
                };
                if let Err(e) = config.validate() {
                    assert!(keys.contains(&e.path()), "{key} = {text}: {e}");
                    refused += 1;
                    continue;
                }
                let mut node = Node::new(&identity, addr, config, ChaCha8Rng::seed_from_u64(1));
                node.join(Time::ZERO, "10.0.0.2:7000".parse().unwrap());
                let mut datagram = Vec::new();
                for _ in 0..20 {
                    let Some(next) = node.poll_timeout() else {
                        break;
                    };
                    node.handle_timeout(next);
                    while node.poll_transmit(&mut datagram).is_some() {}
                    while node.poll_event().is_some() {}
                }
                ran += 1;
            }
        }
        assert!(refused > 0 && ran > 0, "refused {refused}, ran {ran}");
    }

    #[test]
    fn durations_are_shown_as_the_files_write_them() {
        assert_eq!(show(MAX_DURATION), "720h");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show(Duration::from_micros(40)), "40us");
        assert_eq!(show(Duration::ZERO), "0s");
    }
}
