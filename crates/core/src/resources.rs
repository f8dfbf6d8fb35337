//! CPU and memory quantities in the formats the Python control plane's API and Kubernetes use
//! (`"1"`, `"0.5"`, `"500m"`; `"512Mi"`, `"1Gi"`, `"1G"`, `"1048576"`). Serialized as those
//! strings; read from a string or a plain number.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number with an optional known suffix.
    #[error("invalid {kind} quantity {value:?}: {hint}")]
    Invalid {
        /// `cpu` or `memory`.
        kind: &'static str,
        /// The text as given.
        value: String,
        /// What a valid value looks like.
        hint: &'static str,
    },
    /// Zero or negative.
    #[error("{kind} quantity must be greater than zero")]
    NotPositive {
        /// `cpu` or `memory`.
        kind: &'static str,
    },
}

const CPU_HINT: &str = "use cores such as \"1\" or \"0.5\", or millicores such as \"500m\"";
const MEM_HINT: &str = "use bytes or a suffix such as \"512Mi\", \"1Gi\", \"500M\"";

/// A CPU allowance in millicores (1000 = one core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuQuantity(u32);

impl CpuQuantity {
    /// From millicores; zero is refused.
    pub fn from_millis(m: u32) -> Result<Self, QuantityError> {
        if m == 0 {
            return Err(QuantityError::NotPositive { kind: "cpu" });
        }
        Ok(CpuQuantity(m))
    }

    /// Millicores.
    pub fn millis(self) -> u32 {
        self.0
    }

    /// Cores as a fraction.
    pub fn cores(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    /// The Docker `NanoCpus` value for this allowance.
    pub fn nano_cpus(self) -> i64 {
        i64::from(self.0) * 1_000_000
    }
}

impl FromStr for CpuQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::Invalid { kind: "cpu", value: s.to_owned(), hint: CPU_HINT };
        let t = s.trim();
        let millis = if let Some(m) = t.strip_suffix('m') {
            m.parse::<u32>().map_err(|_| bad())?
        } else {
            let cores: f64 = t.parse().map_err(|_| bad())?;
            if !cores.is_finite() || cores > 1_000_000.0 {
                return Err(bad());
            }
            if cores <= 0.0 {
                return Err(QuantityError::NotPositive { kind: "cpu" });
            }
            (cores * 1000.0).round() as u32
        };
        CpuQuantity::from_millis(millis)
    }
}

impl fmt::Display for CpuQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) { write!(f, "{}", self.0 / 1000) } else { write!(f, "{}m", self.0) }
    }
}

/// An amount of memory or disk in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryQuantity(u64);

const SUFFIXES: [(&str, u64); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

impl MemoryQuantity {
    /// From bytes; zero is refused.
    pub fn from_bytes(b: u64) -> Result<Self, QuantityError> {
        if b == 0 {
            return Err(QuantityError::NotPositive { kind: "memory" });
        }
        Ok(MemoryQuantity(b))
    }

    /// From mebibytes.
    pub fn from_mib(mib: u64) -> Result<Self, QuantityError> {
        Self::from_bytes(mib.saturating_mul(1 << 20))
    }

    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole mebibytes, rounded down.
    pub fn mib(self) -> u64 {
        self.0 >> 20
    }
}

impl FromStr for MemoryQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::Invalid { kind: "memory", value: s.to_owned(), hint: MEM_HINT };
        let t = s.trim();
        // Longest suffix first so "MB" wins over "B"-less "M".
        let mut best: Option<(&str, u64)> = None;
        for (suf, mult) in SUFFIXES {
            if t.ends_with(suf) && best.is_none_or(|(b, _)| suf.len() > b.len()) {
                best = Some((suf, mult));
            }
        }
        let (num, mult) = match best {
            Some((suf, mult)) => (&t[..t.len() - suf.len()], mult),
            None => (t, 1),
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        MemoryQuantity::from_bytes(bytes.round() as u64)
    }
}

impl fmt::Display for MemoryQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (suf, mult) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if self.0.is_multiple_of(mult) {
                return write!(f, "{}{}", self.0 / mult, suf);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Serde as the quantity's text, read back from text or a number (`cpu = 2` in TOML).
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = match serde_json::Value::deserialize(d)? {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    other => return Err(serde::de::Error::custom(format!("a quantity, not {other}"))),
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_text!(CpuQuantity, MemoryQuantity);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_as_text() {
        let m: MemoryQuantity = serde_json::from_str(r#""512Mi""#).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#""512Mi""#);
        let c: CpuQuantity = serde_json::from_str("2").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), r#""2""#);
        assert!(serde_json::from_str::<CpuQuantity>(r#""lots""#).is_err());
        assert!(serde_json::from_str::<MemoryQuantity>("true").is_err());
    }

    #[test]
    fn cpu_formats() {
        assert_eq!("1".parse::<CpuQuantity>().unwrap().millis(), 1000);
        assert_eq!("0.5".parse::<CpuQuantity>().unwrap().millis(), 500);
        assert_eq!("250m".parse::<CpuQuantity>().unwrap().millis(), 250);
        assert_eq!("2".parse::<CpuQuantity>().unwrap().nano_cpus(), 2_000_000_000);
        assert_eq!("0.25".parse::<CpuQuantity>().unwrap().to_string(), "250m");
        assert_eq!("3".parse::<CpuQuantity>().unwrap().to_string(), "3");
        for bad in ["", "abc", "-1", "0", "0m", "1.5x", "NaN", "inf", "m"] {
            assert!(bad.parse::<CpuQuantity>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn memory_formats() {
        let mb = |s: &str| s.parse::<MemoryQuantity>().unwrap().bytes();
        assert_eq!(mb("512Mi"), 512 << 20);
        assert_eq!(mb("1Gi"), 1 << 30);
        assert_eq!(mb("1.5Gi"), 3 << 29);
        assert_eq!(mb("500M"), 500_000_000);
        assert_eq!(mb("500MB"), 500_000_000);
        assert_eq!(mb("1048576"), 1 << 20);
        assert_eq!(mb("64Ki"), 64 << 10);
        assert_eq!("512Mi".parse::<MemoryQuantity>().unwrap().to_string(), "512Mi");
        for bad in ["", "Mi", "-1Gi", "0", "1Xi", "1e9", "abc", "1 Gi x", "99999999999999Ti"] {
            assert!(bad.parse::<MemoryQuantity>().is_err(), "{bad} accepted");
        }
    }
}
