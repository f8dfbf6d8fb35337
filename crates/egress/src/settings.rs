//! The operator's egress settings, an `[egress]` section for the server to embed, with defaults.

use crate::address::{AddressRange, AddressRules};
use crate::destination::Host;
use crate::limits::{
    DEFAULT_BANDWIDTH_KIB_PER_SEC, DEFAULT_CONNECT_TIMEOUT_SEC, DEFAULT_IDLE_TIMEOUT_SEC,
    DEFAULT_MAX_CONNECTIONS, Limits,
};
use crate::pattern::Pattern;
use crate::policy::Permitted;
use crate::resolve::{ResolveError, Resolver, StaticResolver, SystemResolver};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Egress: which destinations sessions may ask for, which special addresses are reachable
/// anyway, and the per-session limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// `host:port` patterns bounding every session's allow-list (`pypi.org:443`,
    /// `*.githubusercontent.com:443`, `*:443`, `127.0.0.1:*`). Empty (the default): egress is
    /// disabled, and a session asking for an allow-list is refused with `egress_not_permitted`.
    pub permitted: Vec<Pattern>,
    /// Addresses and CIDR ranges reachable although they are loopback, private, link-local or
    /// otherwise special, or the host's own (`127.0.0.1`, `10.20.0.0/16`). Default: none.
    pub allowed_addresses: Vec<AddressRange>,
    /// Connections one session may have open at once (1 to 65536); one more gets 429.
    /// Default 64.
    pub max_connections_per_session: usize,
    /// Bandwidth of one session in KiB/s, both directions together, shared by all its
    /// connections. `0`: unlimited. Default 16384 (16 MiB/s).
    pub bandwidth_kib_per_sec: u64,
    /// Seconds to resolve a name and connect to it (1 to 86400). Default 10.
    pub connect_timeout_sec: u64,
    /// Seconds a connection to a destination may pass with no traffic before it is closed
    /// (1 to 86400). Default 300.
    pub idle_timeout_sec: u64,
    /// Names the proxy resolves itself, before asking the system's resolver: each DNS name
    /// (any case) maps to its addresses, tried in order (an internal mirror, a test server on
    /// loopback). Their addresses are judged like any other. Default: none.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            permitted: Vec::new(),
            allowed_addresses: Vec::new(),
            max_connections_per_session: DEFAULT_MAX_CONNECTIONS,
            bandwidth_kib_per_sec: DEFAULT_BANDWIDTH_KIB_PER_SEC,
            connect_timeout_sec: DEFAULT_CONNECT_TIMEOUT_SEC,
            idle_timeout_sec: DEFAULT_IDLE_TIMEOUT_SEC,
            hosts: BTreeMap::new(),
        }
    }
}

/// Most connections a session may be given at once.
pub const MAX_CONNECTIONS_PER_SESSION: u64 = 65_536;

/// Longest connect or idle timeout, seconds (a day).
pub const MAX_TIMEOUT_SEC: u64 = 86_400;

/// A setting the section could be read with but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A limit out of range.
    #[error("egress.{setting}: must be from 1 to {max}")]
    Range {
        /// The setting's name.
        setting: &'static str,
        /// Its largest value.
        max: u64,
    },
    /// An entry of `egress.hosts` that is not a DNS name, or maps to no address.
    #[error("egress.hosts: {name:?} {why}")]
    Host {
        /// The entry's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl EgressSettings {
    /// Checks what deserialization cannot: the ranges of the limits and the names of `hosts`.
    /// (Patterns and address ranges are checked as they are read.)
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (name, addresses) in &self.hosts {
            let why = match Host::parse(name) {
                Ok(Host::Name(_)) if addresses.is_empty() => "maps to no address",
                Ok(Host::Name(_)) => continue,
                Ok(Host::Ip(_)) => "is an address, not a name",
                Err(_) => "is not a DNS name",
            };
            return Err(SettingsError::Host { name: name.clone(), why });
        }
        for (setting, value, max) in [
            (
                "max_connections_per_session",
                self.max_connections_per_session as u64,
                MAX_CONNECTIONS_PER_SESSION,
            ),
            ("connect_timeout_sec", self.connect_timeout_sec, MAX_TIMEOUT_SEC),
            ("idle_timeout_sec", self.idle_timeout_sec, MAX_TIMEOUT_SEC),
        ] {
            if !(1..=max).contains(&value) {
                return Err(SettingsError::Range { setting, max });
            }
        }
        Ok(())
    }

    /// The operator's bound on sessions' allow-lists.
    pub fn permitted(&self) -> Permitted {
        Permitted::new(self.permitted.clone())
    }

    /// The address rules, given the host's own addresses.
    pub fn address_rules(&self, host_addresses: Vec<IpAddr>) -> AddressRules {
        AddressRules::new(self.allowed_addresses.clone(), host_addresses)
    }

    /// The resolver: `hosts` first, then the system's.
    pub fn resolver(&self) -> Arc<dyn Resolver> {
        let table = StaticResolver::new();
        for (name, addresses) in &self.hosts {
            table.insert(name.trim_end_matches('.'), addresses.clone());
        }
        Arc::new(TableFirst { table, system: SystemResolver })
    }

    /// The per-session limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections_per_session,
            bandwidth: (self.bandwidth_kib_per_sec > 0)
                .then(|| self.bandwidth_kib_per_sec.saturating_mul(1024)),
            connect_timeout: Duration::from_secs(self.connect_timeout_sec),
            idle_timeout: Duration::from_secs(self.idle_timeout_sec),
        }
    }
}

/// The operator's `hosts` table, then the system's resolver for any other name.
struct TableFirst {
    table: StaticResolver,
    system: SystemResolver,
}

#[async_trait::async_trait]
impl Resolver for TableFirst {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.table.resolve(name).await {
            Ok(addresses) => Ok(addresses),
            Err(_) => self.system.resolve(name).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_disable_egress() {
        let settings: EgressSettings = toml::from_str("").unwrap();
        assert_eq!(settings, EgressSettings::default());
        assert!(settings.permitted().is_disabled());
        assert_eq!(settings.validate(), Ok(()));
        let limits = settings.limits();
        assert_eq!(limits.max_connections, 64);
        assert_eq!(limits.bandwidth, Some(16 << 20));
        assert_eq!(limits.connect_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(300));
    }

    #[test]
    fn a_section_reads_and_round_trips() {
        let settings: EgressSettings = toml::from_str(
            r#"
            permitted = ["PyPI.org:443", "*.pythonhosted.org:443", "127.0.0.1:*"]
            allowed_addresses = ["127.0.0.1", "10.20.0.0/16"]
            max_connections_per_session = 4
            bandwidth_kib_per_sec = 0
            "#,
        )
        .unwrap();
        assert_eq!(settings.permitted.len(), 3);
        assert_eq!(settings.limits().bandwidth, None, "0 is unlimited");
        assert_eq!(settings.limits().max_connections, 4);
        let rules = settings.address_rules(vec![]);
        assert_eq!(rules.check("10.20.1.1".parse().unwrap()), Ok(()));
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["permitted"][0], "pypi.org:443");
        assert_eq!(json["allowed_addresses"][1], "10.20.0.0/16");
        assert_eq!(serde_json::from_value::<EgressSettings>(json).unwrap(), settings);
    }

    #[test]
    fn mistakes_are_reported() {
        for (text, expected) in [
            (r#"permitted = ["pypi.org"]"#, "has no port"),
            (r#"allowed_addresses = ["localhost"]"#, "not an IP address or a CIDR range"),
            ("no_such_setting = 1", "unknown field"),
        ] {
            let error = toml::from_str::<EgressSettings>(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        for (setting, max) in [
            ("max_connections_per_session", MAX_CONNECTIONS_PER_SESSION),
            ("connect_timeout_sec", MAX_TIMEOUT_SEC),
            ("idle_timeout_sec", MAX_TIMEOUT_SEC),
        ] {
            for value in [0, max + 1] {
                let settings: EgressSettings = toml::from_str(&format!("{setting} = {value}")).unwrap();
                let error = settings.validate().unwrap_err();
                assert_eq!(error.to_string(), format!("egress.{setting}: must be from 1 to {max}"));
            }
            let settings: EgressSettings = toml::from_str(&format!("{setting} = {max}")).unwrap();
            assert_eq!(settings.validate(), Ok(()));
        }
        for (hosts, expected) in [
            (
                r#"hosts = { "10.0.0.1" = ["127.0.0.1"] }"#,
                r#"egress.hosts: "10.0.0.1" is an address, not a name"#,
            ),
            (r#"hosts = { "a b" = ["127.0.0.1"] }"#, r#"egress.hosts: "a b" is not a DNS name"#),
            (r#"hosts = { "a.test" = [] }"#, r#"egress.hosts: "a.test" maps to no address"#),
        ] {
            let settings: EgressSettings = toml::from_str(hosts).unwrap();
            assert_eq!(settings.validate().unwrap_err().to_string(), expected);
        }
        let bad_address = toml::from_str::<EgressSettings>(r#"hosts = { "a.test" = ["nowhere"] }"#);
        assert!(bad_address.is_err(), "addresses are checked as they are read");
    }

    /// `hosts` answers first, in any case; other names go to the system's resolver.
    #[tokio::test]
    async fn the_hosts_table_answers_before_the_system() {
        let settings: EgressSettings =
            toml::from_str(r#"hosts = { "Mirror.Internal" = ["127.0.0.2", "::1"] }"#).unwrap();
        let resolver = settings.resolver();
        let found = resolver.resolve("mirror.internal").await.unwrap();
        assert_eq!(found, ["127.0.0.2".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        let system = resolver.resolve("localhost").await.unwrap();
        assert!(system.iter().all(IpAddr::is_loopback), "{system:?}");
    }
}
