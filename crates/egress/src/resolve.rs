//! Name resolution, by the proxy itself, so the address it checks is the address it connects to.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::RwLock;

/// Why a name did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name has no address.
    #[error("{0}: no such name")]
    NotFound(String),
    /// The lookup failed.
    #[error("{name}: {source}")]
    Lookup {
        /// The name.
        name: String,
        /// What failed.
        source: io::Error,
    },
}

/// Turns a DNS name into addresses.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The addresses of `name` (lower-case, without a trailing dot), in the order to try them.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The host's resolver (`getaddrinfo` through tokio's `lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let found = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|source| ResolveError::Lookup { name: name.to_owned(), source })?;
        let mut addresses: Vec<IpAddr> = Vec::new();
        for address in found {
            if !addresses.contains(&address.ip()) {
                addresses.push(address.ip());
            }
        }
        match addresses.is_empty() {
            true => Err(ResolveError::NotFound(name.to_owned())),
            false => Ok(addresses),
        }
    }
}

/// A fixed table of names, changeable while the proxy runs (tests map names to loopback, then
/// re-map them to forbidden addresses).
#[derive(Debug, Default)]
pub struct StaticResolver {
    names: RwLock<HashMap<String, Vec<IpAddr>>>,
}

impl StaticResolver {
    /// An empty table: every name fails to resolve.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Maps `name` (any case) to `addresses`, replacing what it mapped to before.
    pub fn insert(&self, name: &str, addresses: Vec<IpAddr>) {
        self.names.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_ascii_lowercase(), addresses);
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .get(name)
            .filter(|addresses| !addresses.is_empty())
            .cloned()
            .ok_or_else(|| ResolveError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_static_table_answers_and_can_change() {
        let resolver = StaticResolver::new();
        assert!(matches!(resolver.resolve("a.test").await, Err(ResolveError::NotFound(_))));
        resolver.insert("A.test", vec!["127.0.0.1".parse().unwrap()]);
        assert_eq!(resolver.resolve("a.test").await.unwrap(), ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        resolver.insert("a.test", vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(resolver.resolve("a.test").await.unwrap().len(), 2);
        resolver.insert("a.test", vec![]);
        assert!(resolver.resolve("a.test").await.is_err());
    }

    /// `localhost` comes from the hosts file: no query leaves the machine.
    #[tokio::test]
    async fn the_system_resolver_knows_localhost() {
        let addresses = SystemResolver.resolve("localhost").await.unwrap();
        assert!(addresses.iter().all(IpAddr::is_loopback), "{addresses:?}");
    }
}
