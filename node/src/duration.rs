//! Durations in configuration files as humans write them: `"500ms"`,
//! `"1.5s"`, `"2m"`, or a bare number of milliseconds.
//!
//! Reading one never panics: a negative, NaN, infinite or absurd value
//! (more than [`MAX`], 100 years) is an error that says so. How long each
//! setting may sensibly be is its core's `validate` (at most
//! [`crate::config::MAX_DURATION`]).

use std::fmt;
use std::time::Duration;

use serde::{de, Deserializer, Serializer};

/// Longest duration read at all: 100 years. Anything longer is a typo, and
/// beyond `u64` seconds a `Duration` cannot hold it.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parse `"250ms"`, `"1.5s"`, `"2m"`, `"1h"` or `"40us"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("`{text}` is negative; a duration is at least 0"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. \"500ms\", \"1.5s\")"))?;
    let seconds_per_unit = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" | "" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use us, ms, s, m or h)"
            ))
        }
    };
    from_secs(value * seconds_per_unit).map_err(|e| format!("`{text}` {e}"))
}

/// `seconds` as a duration, if it is a number from 0 to [`MAX`].
fn from_secs(seconds: f64) -> Result<Duration, String> {
    if seconds.is_nan() {
        return Err("is not a number".into());
    }
    if seconds < 0.0 {
        return Err("is negative; a duration is at least 0".into());
    }
    if seconds > MAX.as_secs_f64() {
        return Err("is more than 100 years".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// Serialise as milliseconds with a unit, e.g. `"1500ms"`.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_secs_f64() * 1000.0))
}

/// A duration written as text (`"500ms"`) or as a number of milliseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"500ms\" or \"1.5s\", or a number of milliseconds")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Duration, E> {
        // `{:?}`: 1e300 as `1e300`, not as 301 digits.
        from_secs(ms / 1000.0).map_err(|e| E::custom(format!("{ms:?} ms {e}")))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
        self.visit_f64(ms as f64)
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
        self.visit_f64(ms as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_nonsense() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("40us"), Ok(Duration::from_micros(40)));
        assert!(parse("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse("fast").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Setting {
        #[serde(with = "super")]
        t: Duration,
    }

    fn read(value: &str) -> Result<Duration, String> {
        toml::from_str::<Setting>(&format!("t = {value}\n"))
            .map(|s| s.t)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn numbers_are_milliseconds_and_text_has_units() {
        assert_eq!(read("250"), Ok(Duration::from_millis(250)));
        assert_eq!(read("1.5"), Ok(Duration::from_micros(1500)));
        assert_eq!(read("\"2h\""), Ok(Duration::from_secs(7200)));
        assert_eq!(read("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn absurd_durations_are_errors_not_panics() {
        let cases = [
            ("1e300", "more than 100 years"),
            ("9223372036854775807", "more than 100 years"),
            ("18446744073709551615", "too large"),
            ("-1", "negative"),
            ("-0.5", "negative"),
            ("nan", "not a number"),
            ("inf", "more than 100 years"),
            ("-inf", "negative"),
            ("\"1e300s\"", "unknown unit"),
            ("\"1000000000000h\"", "more than 100 years"),
            ("\"-1s\"", "negative"),
            ("\"nan\"", "not a duration"),
            ("\"inf\"", "not a duration"),
            ("\"\"", "not a duration"),
            ("true", "a duration such as"),
        ];
        for (value, problem) in cases {
            let e = read(value).unwrap_err();
            assert!(e.contains(problem), "{value}: {e}");
        }
        assert_eq!(
            read("3153600000000"),
            Ok(MAX),
            "100 years in ms is the largest"
        );
    }

    #[test]
    fn json_numbers_and_strings_too() {
        let read = |json: &str| serde_json::from_str::<Setting>(json).map(|s| s.t);
        assert_eq!(read(r#"{"t": 1500}"#).unwrap(), Duration::from_millis(1500));
        assert!(read(r#"{"t": 1e300}"#).is_err());
        assert!(read(r#"{"t": -1}"#).is_err());
        assert!(read(r#"{"t": "1e300"}"#).is_err());
    }
}
