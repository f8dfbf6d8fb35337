//! Reaching a destination: resolve, keep the addresses the rules allow, connect to exactly those.

use crate::address::AddressRules;
use crate::decision::{Decision, Failure};
use crate::destination::{Destination, Host};
use crate::resolve::Resolver;
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;

/// Opens TCP connections to checked addresses.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Connects to `address`, which the address rules have allowed.
    async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream>;
}

/// Plain TCP connections, with `TCP_NODELAY` (the proxy relays what it gets as it gets it).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

#[async_trait::async_trait]
impl Connector for TcpConnector {
    async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// What the proxy reaches destinations with.
pub(crate) struct Dialer<'a> {
    pub(crate) resolver: &'a dyn Resolver,
    pub(crate) connector: &'a dyn Connector,
    pub(crate) rules: &'a AddressRules,
}

impl Dialer<'_> {
    /// Connects to `destination`, setting `address` to each address as it is judged or tried;
    /// the error is the decision for the attempt. No connection is made to an address the rules
    /// refuse, and the connection goes to the very address that was checked.
    pub(crate) async fn dial(
        &self,
        destination: &Destination,
        address: &mut Option<IpAddr>,
    ) -> Result<TcpStream, Decision> {
        let candidates = match &destination.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.resolver.resolve(name).await.map_err(|error| {
                tracing::debug!(%error, "egress name did not resolve");
                Decision::Error(Failure::ResolveFailed)
            })?,
        };
        let mut refused = None;
        let mut permitted = Vec::new();
        for ip in candidates.into_iter().map(|ip| ip.to_canonical()) {
            match self.rules.check(ip) {
                Ok(()) => permitted.push(ip),
                Err(class) => {
                    refused.get_or_insert((ip, class));
                }
            }
        }
        if permitted.is_empty() {
            let (ip, class) = refused.ok_or(Decision::Error(Failure::ResolveFailed))?;
            *address = Some(ip);
            return Err(Decision::DeniedAddress(class));
        }
        for ip in permitted {
            *address = Some(ip);
            match self.connector.connect(SocketAddr::new(ip, destination.port)).await {
                Ok(stream) => return Ok(stream),
                Err(error) => tracing::debug!(%ip, %error, "egress connect failed"),
            }
        }
        Err(Decision::Error(Failure::ConnectFailed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::AddressClass;
    use crate::resolve::StaticResolver;
    use std::sync::Mutex;

    /// Records every address it is asked for and connects to none.
    #[derive(Default)]
    struct Refusing(Mutex<Vec<SocketAddr>>);

    #[async_trait::async_trait]
    impl Connector for Refusing {
        async fn connect(&self, address: SocketAddr) -> io::Result<TcpStream> {
            self.0.lock().unwrap().push(address);
            Err(io::ErrorKind::ConnectionRefused.into())
        }
    }

    async fn dial(
        names: &[(&str, &[&str])],
        allowed: &[&str],
        target: &str,
    ) -> (Decision, Option<IpAddr>, Vec<String>) {
        let resolver = StaticResolver::new();
        for (name, addresses) in names {
            resolver.insert(name, addresses.iter().map(|a| a.parse().unwrap()).collect());
        }
        let rules = AddressRules::new(allowed.iter().map(|a| a.parse().unwrap()).collect(), vec![]);
        let connector = Refusing::default();
        let dialer = Dialer { resolver: &resolver, connector: &connector, rules: &rules };
        let mut address = None;
        let error =
            dialer.dial(&Destination::parse_authority(target).unwrap(), &mut address).await.unwrap_err();
        let tried = connector.0.lock().unwrap().iter().map(SocketAddr::to_string).collect();
        (error, address, tried)
    }

    #[tokio::test]
    async fn forbidden_addresses_are_never_tried() {
        let (decision, address, tried) =
            dial(&[("a.test", &["10.0.0.1", "192.168.1.1"])], &[], "a.test:80").await;
        assert_eq!(decision, Decision::DeniedAddress(AddressClass::Private));
        assert_eq!(address, Some("10.0.0.1".parse().unwrap()), "the first refused address is recorded");
        assert!(tried.is_empty(), "{tried:?}");

        let (decision, _, tried) = dial(&[], &[], "[::ffff:169.254.169.254]:80").await;
        assert_eq!(decision, Decision::DeniedAddress(AddressClass::LinkLocal));
        assert!(tried.is_empty(), "{tried:?}");
    }

    #[tokio::test]
    async fn only_the_permitted_addresses_of_a_name_are_tried_in_order() {
        let names: &[(&str, &[&str])] = &[("a.test", &["10.0.0.1", "127.0.0.1", "169.254.1.1", "127.0.0.2"])];
        let (decision, address, tried) = dial(names, &["127.0.0.0/8"], "a.test:8080").await;
        assert_eq!(decision, Decision::Error(Failure::ConnectFailed));
        assert_eq!(address, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(tried, ["127.0.0.1:8080", "127.0.0.2:8080"]);
    }

    #[tokio::test]
    async fn literals_skip_the_resolver_and_connect_to_their_plain_form() {
        let (decision, _, tried) = dial(&[], &["127.0.0.1"], "[::ffff:127.0.0.1]:9").await;
        assert_eq!(decision, Decision::Error(Failure::ConnectFailed));
        assert_eq!(tried, ["127.0.0.1:9"]);
    }

    #[tokio::test]
    async fn unknown_names_fail_without_a_connection() {
        let (decision, address, tried) = dial(&[], &["127.0.0.1"], "nowhere.test:80").await;
        assert_eq!(decision, Decision::Error(Failure::ResolveFailed));
        assert_eq!(address, None);
        assert!(tried.is_empty());
    }
}
