//! The `host:port` pattern language of session allow-lists and of the operator's bound.

use crate::destination::{Destination, Host, ParseError, normalize_name, parse_port, split_host_port};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Longest pattern accepted: the longest name, `*.` and `:65535`, with room to spare.
pub const MAX_PATTERN_LEN: usize = 270;

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `*`: any host, named or literal.
    Any,
    /// Exactly this name.
    Name(String),
    /// `*.suffix`: any name that ends in `.suffix` (held without the `*.`).
    Below(String),
    /// Exactly this address, written as a literal by the client.
    Ip(IpAddr),
}

/// The port part of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortPattern {
    /// `*`: any port.
    Any,
    /// Exactly this port.
    Port(u16),
}

/// One `host:port` pattern.
///
/// - host: a DNS name (`pypi.org`), `*.suffix` (any name strictly below `suffix`, not `suffix`
///   itself), an IPv4 address, an IPv6 address in brackets, or `*` (any host);
/// - port: a number from 1 to 65535, or `*` (any port). The port is never implied: `pypi.org`
///   alone is an error, so a forgotten port cannot silently widen (or narrow) an entry.
///
/// Names compare case-insensitively and without a trailing dot. A pattern matches what the client
/// *named*: a name pattern never matches an IP literal, nor an address pattern a name that
/// resolves to it; which addresses may be reached at all is [`crate::address`]'s business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern {
    host: HostPattern,
    port: PortPattern,
}

impl Pattern {
    /// Whether a request for `destination` matches this pattern.
    pub fn matches(&self, destination: &Destination) -> bool {
        let host = match (&self.host, &destination.host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Name(pattern), Host::Name(name)) => pattern == name,
            (HostPattern::Below(suffix), Host::Name(name)) => is_below(name, suffix),
            (HostPattern::Ip(pattern), Host::Ip(ip)) => pattern == ip,
            _ => false,
        };
        host && self.port.covers(&PortPattern::Port(destination.port))
    }

    /// Whether everything `other` matches, this pattern matches too (how the operator's
    /// `egress.permitted` bounds a session's allow-list).
    pub fn covers(&self, other: &Pattern) -> bool {
        let host = match (&self.host, &other.host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
            (HostPattern::Below(suffix), HostPattern::Name(name)) => is_below(name, suffix),
            (HostPattern::Below(suffix), HostPattern::Below(other)) => {
                other == suffix || is_below(other, suffix)
            }
            (HostPattern::Ip(a), HostPattern::Ip(b)) => a == b,
            _ => false,
        };
        host && self.port.covers(&other.port)
    }

    /// The host part.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The port part.
    pub fn port(&self) -> PortPattern {
        self.port
    }
}

impl PortPattern {
    fn covers(&self, other: &PortPattern) -> bool {
        match (self, other) {
            (PortPattern::Any, _) => true,
            (PortPattern::Port(a), PortPattern::Port(b)) => a == b,
            (PortPattern::Port(_), PortPattern::Any) => false,
        }
    }
}

/// Whether `name` lies strictly below `suffix` (`a.b.example` below `example`, not `example` nor
/// `xexample`).
fn is_below(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix).is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

impl FromStr for Pattern {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Pattern, ParseError> {
        if raw.len() > MAX_PATTERN_LEN {
            return Err(ParseError::TooLong(MAX_PATTERN_LEN));
        }
        let (host, port) = split_host_port(raw)?;
        let port = match port {
            None => return Err(ParseError::MissingPort(raw.to_owned())),
            Some("*") => PortPattern::Any,
            Some(port) => PortPattern::Port(parse_port(port)?),
        };
        let host = match host {
            "*" => HostPattern::Any,
            _ => match host.strip_prefix("*.") {
                Some(suffix) if !suffix.contains('*') => normalize_name(suffix)
                    .map(HostPattern::Below)
                    .ok_or_else(|| ParseError::InvalidHost(suffix.to_owned()))?,
                _ if host.contains('*') => return Err(ParseError::MisplacedWildcard(host.to_owned())),
                _ => match Host::parse(host)? {
                    Host::Name(name) => HostPattern::Name(name),
                    Host::Ip(ip) => HostPattern::Ip(ip),
                },
            },
        };
        Ok(Pattern { host, port })
    }
}

impl TryFrom<String> for Pattern {
    type Error = ParseError;

    fn try_from(raw: String) -> Result<Pattern, ParseError> {
        raw.parse()
    }
}

impl From<Pattern> for String {
    fn from(pattern: Pattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Name(name) => f.write_str(name)?,
            HostPattern::Below(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Ip(ip) => write!(f, "{}", Host::Ip(*ip))?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Port(port) => write!(f, ":{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Pattern {
        raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn dest(raw: &str) -> Destination {
        Destination::parse_authority(raw).unwrap()
    }

    #[test]
    fn patterns_parse_and_print_canonically() {
        for (raw, canonical) in [
            ("pypi.org:443", "pypi.org:443"),
            ("PyPI.Org.:443", "pypi.org:443"),
            ("*.githubusercontent.com:443", "*.githubusercontent.com:443"),
            ("*.Example.com:*", "*.example.com:*"),
            ("*:443", "*:443"),
            ("*:*", "*:*"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:80", "[::1]:80"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1:80"),
            ("[2001:DB8::1]:*", "[2001:db8::1]:*"),
            ("a:1", "a:1"),
            ("x.y:65535", "x.y:65535"),
        ] {
            assert_eq!(p(raw).to_string(), canonical, "{raw}");
            assert_eq!(p(canonical), p(raw), "{raw} round-trips");
        }
        assert_eq!(p("*.example.com:443").host(), &HostPattern::Below("example.com".into()));
        assert_eq!(p("example.com:*").port(), PortPattern::Any);
    }

    #[test]
    fn bad_patterns_say_why() {
        use ParseError::*;
        for (raw, error) in [
            ("pypi.org", MissingPort("pypi.org".into())),
            ("*", MissingPort("*".into())),
            ("*.example.com", MissingPort("*.example.com".into())),
            ("[::1]", MissingPort("[::1]".into())),
            ("pypi.org:", InvalidPort(String::new())),
            ("pypi.org:0", InvalidPort("0".into())),
            ("pypi.org:65536", InvalidPort("65536".into())),
            ("pypi.org:4x3", InvalidPort("4x3".into())),
            ("pypi.org:**", InvalidPort("**".into())),
            ("pypi.org:-1", InvalidPort("-1".into())),
            (":443", EmptyHost),
            ("a.*.example:443", MisplacedWildcard("a.*.example".into())),
            ("*example.com:443", MisplacedWildcard("*example.com".into())),
            ("**.example.com:443", MisplacedWildcard("**.example.com".into())),
            ("*.*.example.com:443", MisplacedWildcard("*.*.example.com".into())),
            ("example.*:443", MisplacedWildcard("example.*".into())),
            ("*.:443", InvalidHost("".into())),
            ("*.123:443", InvalidHost("123".into())),
            ("exa mple.com:443", InvalidHost("exa mple.com".into())),
            ("bücher.example:443", InvalidHost("bücher.example".into())),
            ("::1:443", InvalidHost("::1".into())),
            ("[::1:443", InvalidIpv6("[::1:443".into())),
            ("10.0.0.0/8:443", InvalidHost("10.0.0.0/8".into())),
            ("http://pypi.org:443", InvalidHost("http://pypi.org".into())),
        ] {
            assert_eq!(raw.parse::<Pattern>(), Err(error), "{raw:?}");
        }
        let long = format!("{}.com:443", "a".repeat(MAX_PATTERN_LEN));
        assert_eq!(long.parse::<Pattern>(), Err(TooLong(MAX_PATTERN_LEN)));
    }

    #[test]
    fn names_match_exactly_and_wildcards_match_below() {
        let exact = p("pypi.org:443");
        assert!(exact.matches(&dest("pypi.org:443")));
        assert!(exact.matches(&dest("PYPI.ORG.:443")));
        assert!(!exact.matches(&dest("pypi.org:80")));
        assert!(!exact.matches(&dest("files.pypi.org:443")));
        assert!(!exact.matches(&dest("pypi.org.evil.example:443")));

        let below = p("*.example.com:443");
        assert!(below.matches(&dest("a.example.com:443")));
        assert!(below.matches(&dest("a.b.example.com:443")));
        assert!(!below.matches(&dest("example.com:443")), "the suffix itself is not below it");
        assert!(!below.matches(&dest("xexample.com:443")));
        assert!(!below.matches(&dest("a.example.com.evil:443")));
        assert!(!below.matches(&dest("a.example.com:444")));

        let any_port = p("example.com:*");
        assert!(any_port.matches(&dest("example.com:1")));
        assert!(any_port.matches(&dest("example.com:65535")));

        let any = p("*:443");
        assert!(any.matches(&dest("example.com:443")));
        assert!(any.matches(&dest("10.0.0.1:443")), "address rules, not patterns, stop this");
        assert!(!any.matches(&dest("example.com:80")));
    }

    #[test]
    fn addresses_match_only_literals() {
        let v4 = p("127.0.0.1:80");
        assert!(v4.matches(&dest("127.0.0.1:80")));
        assert!(v4.matches(&dest("[::ffff:127.0.0.1]:80")));
        assert!(!v4.matches(&dest("127.0.0.2:80")));
        assert!(!v4.matches(&dest("localhost:80")), "a name is not its address");
        let v6 = p("[::1]:80");
        assert!(v6.matches(&dest("[0:0::1]:80")));
        assert!(!v6.matches(&dest("127.0.0.1:80")));
        assert!(!p("localhost:80").matches(&dest("127.0.0.1:80")));
        assert!("*.0.0.1:80".parse::<Pattern>().is_err(), "no wildcard over addresses");
    }

    #[test]
    fn coverage_of_session_entries_by_operator_patterns() {
        // (operator, session, covered)
        for (op, session, covered) in [
            ("*:*", "anything.example:1", true),
            ("*:*", "*:*", true),
            ("*:*", "[::1]:5", true),
            ("*:443", "*:443", true),
            ("*:443", "*:*", false),
            ("*:443", "a.example:80", false),
            ("pypi.org:443", "pypi.org:443", true),
            ("pypi.org:443", "PyPI.org.:443", true),
            ("pypi.org:443", "pypi.org:80", false),
            ("pypi.org:443", "pypi.org:*", false),
            ("pypi.org:*", "pypi.org:22", true),
            ("pypi.org:443", "files.pypi.org:443", false),
            ("pypi.org:443", "*.pypi.org:443", false),
            ("pypi.org:443", "*:443", false),
            ("*.example.com:443", "a.example.com:443", true),
            ("*.example.com:443", "a.b.example.com:443", true),
            ("*.example.com:443", "*.example.com:443", true),
            ("*.example.com:443", "*.b.example.com:443", true),
            ("*.example.com:443", "example.com:443", false),
            ("*.example.com:443", "*.com:443", false),
            ("*.example.com:443", "*.xexample.com:443", false),
            ("*.example.com:443", "a.example.com:*", false),
            ("*.example.com:*", "*.a.example.com:8443", true),
            ("*.example.com:443", "127.0.0.1:443", false),
            ("*.example.com:443", "*:443", false),
            ("127.0.0.1:*", "127.0.0.1:8080", true),
            ("127.0.0.1:*", "[::ffff:127.0.0.1]:8080", true),
            ("127.0.0.1:*", "127.0.0.2:8080", false),
            ("127.0.0.1:*", "localhost:8080", false),
            ("[::1]:*", "[::1]:1", true),
            ("localhost:*", "127.0.0.1:80", false),
        ] {
            assert_eq!(p(op).covers(&p(session)), covered, "{op} covers {session}?");
        }
    }

    #[test]
    fn patterns_are_strings_in_settings_and_records() {
        let json = serde_json::to_string(&p("*.Example.com:443")).unwrap();
        assert_eq!(json, r#""*.example.com:443""#);
        assert_eq!(serde_json::from_str::<Pattern>(&json).unwrap(), p("*.example.com:443"));
        let error = serde_json::from_str::<Pattern>(r#""pypi.org""#).unwrap_err().to_string();
        assert!(error.contains("has no port"), "{error}");
    }
}
