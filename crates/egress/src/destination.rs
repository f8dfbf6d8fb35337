//! What a request asks to reach: a host and a port, from a CONNECT authority or an `http://` URI.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS name accepted (RFC 1035), without its trailing dot.
pub const MAX_NAME_LEN: usize = 253;

/// Longest label of a DNS name (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Why a host, a destination or a pattern could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing where a host should be.
    #[error("the host is empty")]
    EmptyHost,
    /// Not a DNS name (ASCII labels of letters, digits, `-` and `_`) nor an IPv4 address.
    #[error("{0:?} is not a host name or an IP address (IPv6 goes in brackets)")]
    InvalidHost(String),
    /// Something in brackets that is not an IPv6 address.
    #[error("{0:?} is not an IPv6 address in brackets")]
    InvalidIpv6(String),
    /// No `:port`.
    #[error("{0:?} has no port: write host:port")]
    MissingPort(String),
    /// A port that is not a number from 1 to 65535.
    #[error("{0:?} is not a port (1 to 65535)")]
    InvalidPort(String),
    /// A `*` anywhere but alone or as the whole first label.
    #[error("{0:?}: `*` stands alone or as the first label (`*.example.com`)")]
    MisplacedWildcard(String),
    /// Longer than any valid host and port.
    #[error("longer than {0} characters")]
    TooLong(usize),
}

/// A destination host as the client named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address; an IPv4-mapped IPv6 address is held as the IPv4 address.
    Ip(IpAddr),
}

impl Host {
    /// Reads a host as an authority writes it: a DNS name, a dotted IPv4 address, or an IPv6
    /// address in brackets. Names are lower-cased and lose one trailing dot.
    pub fn parse(raw: &str) -> Result<Host, ParseError> {
        if raw.is_empty() {
            return Err(ParseError::EmptyHost);
        }
        if let Some(inner) = raw.strip_prefix('[') {
            let ip = inner
                .strip_suffix(']')
                .and_then(|s| s.parse::<Ipv6Addr>().ok())
                .ok_or_else(|| ParseError::InvalidIpv6(raw.to_owned()))?;
            return Ok(Host::Ip(IpAddr::V6(ip).to_canonical()));
        }
        if let Ok(ip) = raw.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        normalize_name(raw).map(Host::Name).ok_or_else(|| ParseError::InvalidHost(raw.to_owned()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A host and a port: what one CONNECT or one forwarded request asks to reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The host, as the client named it.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

impl Destination {
    /// Reads `host:port`, the authority of a CONNECT request; the port is required.
    pub fn parse_authority(raw: &str) -> Result<Destination, ParseError> {
        let (host, port) = split_host_port(raw)?;
        let port = port.ok_or_else(|| ParseError::MissingPort(raw.to_owned()))?;
        Ok(Destination { host: Host::parse(host)?, port: parse_port(port)? })
    }

    /// The destination of an absolute-form `http://` URI: its authority, port 80 unless the URI
    /// names one. `None` for any other scheme or a URI without a host.
    pub fn from_http_uri(uri: &http::Uri) -> Option<Result<Destination, ParseError>> {
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return None;
        }
        let authority = uri.authority()?;
        let port = match authority.port() {
            Some(port) => parse_port(port.as_str()),
            None => Ok(80),
        };
        Some(port.and_then(|port| Ok(Destination { host: Host::parse(authority.host())?, port })))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Splits `host[:port]`, where an IPv6 host is in brackets. The host keeps its brackets.
pub(crate) fn split_host_port(raw: &str) -> Result<(&str, Option<&str>), ParseError> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or_else(|| ParseError::InvalidIpv6(raw.to_owned()))?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(|| ParseError::InvalidIpv6(raw.to_owned())),
        };
    }
    match raw.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(ParseError::InvalidHost(host.to_owned())),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((raw, None)),
    }
}

/// Reads a port: 1 to 65535, digits only.
pub(crate) fn parse_port(raw: &str) -> Result<u16, ParseError> {
    let invalid = || ParseError::InvalidPort(raw.to_owned());
    if raw.is_empty() || raw.len() > 5 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    raw.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(invalid)
}

/// The name lower-cased and without one trailing dot, if it is a DNS name: labels of 1 to 63
/// ASCII letters, digits, `-` or `_`, not starting or ending with `-`, at most 253 characters in
/// all, and a last label that is not all digits (so `127.1` or `2130706433`, which resolvers
/// read as addresses, are never taken for names).
pub(crate) fn normalize_name(raw: &str) -> Option<String> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let valid_label = |label: &str| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last = name.rsplit('.').next()?;
    let numeric = last.bytes().all(|b| b.is_ascii_digit());
    (name.len() <= MAX_NAME_LEN && name.split('.').all(valid_label) && !numeric).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses() {
        assert_eq!(Host::parse("PyPI.org").unwrap(), Host::Name("pypi.org".into()));
        assert_eq!(Host::parse("pypi.org.").unwrap(), Host::Name("pypi.org".into()));
        assert_eq!(Host::parse("a_b.example").unwrap(), Host::Name("a_b.example".into()));
        assert_eq!(Host::parse("localhost").unwrap(), Host::Name("localhost".into()));
        assert_eq!(Host::parse("127.0.0.1").unwrap(), Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(Host::parse("[::1]").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            Host::parse("[::ffff:10.0.0.1]").unwrap(),
            Host::Ip("10.0.0.1".parse().unwrap()),
            "an IPv4-mapped address is its IPv4 address"
        );
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".bc";
        for bad in [
            "",
            "::1",
            "[::1",
            "[nope]",
            "[fe80::1%25eth0]",
            "exa mple.com",
            "exämple.com",
            "-a.example",
            "a-.example",
            "a..example",
            ".example",
            "127.1",
            "2130706433",
            "0x7f.1",
            "1.2.3.4.5",
            "*.example.com",
            "example.com/path",
            "user@example.com",
            &long_label,
            &long_name,
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Host::parse(&["a"; 126].join(".")).unwrap().to_string().len(), 251);
    }

    #[test]
    fn authorities_need_a_port() {
        let d = Destination::parse_authority("Example.COM:443").unwrap();
        assert_eq!(d, Destination { host: Host::Name("example.com".into()), port: 443 });
        assert_eq!(d.to_string(), "example.com:443");
        let d = Destination::parse_authority("[2001:db8::1]:8443").unwrap();
        assert_eq!(d.to_string(), "[2001:db8::1]:8443");
        for (bad, error) in [
            ("example.com", ParseError::MissingPort("example.com".into())),
            ("example.com:", ParseError::InvalidPort(String::new())),
            ("example.com:0", ParseError::InvalidPort("0".into())),
            ("example.com:65536", ParseError::InvalidPort("65536".into())),
            ("example.com:+80", ParseError::InvalidPort("+80".into())),
            ("example.com:080000", ParseError::InvalidPort("080000".into())),
            ("::1:80", ParseError::InvalidHost("::1".into())),
            ("[::1]80", ParseError::InvalidIpv6("[::1]80".into())),
            ("[::1]", ParseError::MissingPort("[::1]".into())),
            (":80", ParseError::EmptyHost),
        ] {
            assert_eq!(Destination::parse_authority(bad), Err(error), "{bad:?}");
        }
    }

    #[test]
    fn http_uris_default_to_port_80() {
        let dest = |uri: &str| Destination::from_http_uri(&uri.parse().unwrap());
        assert_eq!(dest("http://Example.com/a?b").unwrap().unwrap().to_string(), "example.com:80");
        assert_eq!(dest("http://example.com:8080/").unwrap().unwrap().to_string(), "example.com:8080");
        assert_eq!(dest("http://[::1]:81/").unwrap().unwrap().to_string(), "[::1]:81");
        assert_eq!(dest("http://u:p@example.com/").unwrap().unwrap().to_string(), "example.com:80");
        assert!(dest("https://example.com/").is_none(), "https goes through CONNECT");
        assert!(dest("/relative").is_none());
        assert!(dest("http://example.com:0/").unwrap().is_err());
        assert!(dest("http://127.1/").unwrap().is_err());
    }
}
