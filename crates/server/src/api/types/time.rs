//! Timestamps in responses: RFC 3339 in UTC with exactly three fractional digits
//! (`2026-01-02T03:04:05.678Z`), whatever precision the value was recorded with, so every
//! response, and a record read back after it was first answered, shows the same string.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// For `DateTime<Utc>` fields (`#[serde(with = "time::millis")]`).
pub mod millis {
    use super::*;

    /// Writes the timestamp with millisecond precision.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    /// Reads any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::deserialize(d)
    }
}

/// For `Option<DateTime<Utc>>` fields (`#[serde(with = "time::opt_millis")]`).
pub mod opt_millis {
    use super::*;

    /// Writes the timestamp with millisecond precision, or `null`.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Reads an RFC 3339 timestamp or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super::millis")]
        a: chrono::DateTime<chrono::Utc>,
        #[serde(with = "super::opt_millis")]
        b: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[test]
    fn always_three_digits() {
        let whole = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let nanos = whole + chrono::Duration::nanoseconds(678_901_234);
        let json = serde_json::to_string(&T { a: whole, b: Some(nanos) }).unwrap();
        assert_eq!(json, r#"{"a":"2026-01-02T03:04:05.000Z","b":"2026-01-02T03:04:05.678Z"}"#);
        assert_eq!(
            serde_json::to_string(&T { a: whole, b: None }).unwrap(),
            r#"{"a":"2026-01-02T03:04:05.000Z","b":null}"#
        );
        let back: T = serde_json::from_str(&json).unwrap();
        assert_eq!((back.a, back.b), (whole, Some(whole + chrono::Duration::milliseconds(678))));
    }
}
