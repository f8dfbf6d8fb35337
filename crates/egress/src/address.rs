//! Which resolved addresses the proxy may connect to: forbidden ranges and operator exceptions.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why an address is not reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, deprecated
    /// site-local `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT, `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Other special-purpose or unrouted space: `192.0.0.0/24`, `192.88.99.0/24`, `240.0.0.0/4`,
    /// IPv4-compatible and IPv4-translated IPv6, discard-only `100::/64`, `2001::/23` (Teredo
    /// among them), 6to4 `2002::/16`, SRv6 `5f00::/16`, and IPv6 outside `2000::/3`.
    Reserved,
    /// One of the host's own addresses (passed to [`AddressRules::new`]).
    HostAddress,
}

impl AddressClass {
    /// A stable snake_case name, used in decisions and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link_local",
            AddressClass::SharedAddressSpace => "shared_address_space",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
            AddressClass::HostAddress => "host_address",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use AddressClass::*;

/// Forbidden IPv4 ranges, the first match wins (so `255.255.255.255` is a broadcast address
/// before it is reserved).
const V4: &[(Ipv4Addr, u8, AddressClass)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, Unspecified), // "this network", RFC 791
    (Ipv4Addr::new(10, 0, 0, 0), 8, Private),    // RFC 1918
    (Ipv4Addr::new(100, 64, 0, 0), 10, SharedAddressSpace), // RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8, Loopback),  // RFC 1122
    (Ipv4Addr::new(169, 254, 0, 0), 16, LinkLocal), // RFC 3927
    (Ipv4Addr::new(172, 16, 0, 0), 12, Private), // RFC 1918
    (Ipv4Addr::new(192, 0, 0, 0), 24, Reserved), // IETF protocol assignments, RFC 6890
    (Ipv4Addr::new(192, 0, 2, 0), 24, Documentation), // TEST-NET-1, RFC 5737
    (Ipv4Addr::new(192, 88, 99, 0), 24, Reserved), // 6to4 relay anycast, RFC 7526
    (Ipv4Addr::new(192, 168, 0, 0), 16, Private), // RFC 1918
    (Ipv4Addr::new(198, 18, 0, 0), 15, Benchmarking), // RFC 2544
    (Ipv4Addr::new(198, 51, 100, 0), 24, Documentation), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24, Documentation), // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4, Multicast), // RFC 5771
    (Ipv4Addr::new(255, 255, 255, 255), 32, Broadcast), // RFC 919
    (Ipv4Addr::new(240, 0, 0, 0), 4, Reserved),  // RFC 1112
];

/// Forbidden IPv6 ranges, the first match wins; anything outside `2000::/3` is forbidden too.
const V6: &[(Ipv6Addr, u8, AddressClass)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, Unspecified),
    (Ipv6Addr::LOCALHOST, 128, Loopback),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, Reserved), // IPv4-compatible, RFC 4291
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96, Reserved), // IPv4-translated, RFC 2765
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Private), // local-use NAT64, RFC 8215
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Reserved), // discard-only, RFC 6666
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, Benchmarking), // RFC 5180
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, Reserved), // IETF protocol assignments, RFC 2928
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Documentation), // RFC 3849
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, Reserved), // 6to4, RFC 3056
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Documentation), // RFC 9637
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, Reserved), // SRv6 SIDs, RFC 9602
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Private), // unique local, RFC 4193
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, LinkLocal), // RFC 4291
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Private), // site-local, RFC 3879
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Multicast), // RFC 4291
];

/// The NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits are an IPv4 address.
const NAT64: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// The IPv6 global unicast block, `2000::/3`.
const GLOBAL_UNICAST: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits()
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits()
}

/// The address the rules judge: the IPv4 address inside an IPv4-mapped or NAT64 address,
/// otherwise the address itself.
fn effective(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if in_v6(v6, NAT64) => IpAddr::V4(Ipv4Addr::from_bits(v6.to_bits() as u32)),
        other => other,
    }
}

/// The forbidden class `ip` belongs to by itself, or `None` for an ordinary public address.
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) and NAT64 addresses of the well-known prefix
/// (`64:ff9b::a.b.c.d`) are judged by the IPv4 address they carry; outside the IPv6 global
/// unicast block `2000::/3` nothing is reachable. Operator allowances and the host's own
/// addresses are [`AddressRules`]'s.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match effective(ip) {
        IpAddr::V4(v4) => V4.iter().find(|(net, len, _)| in_v4(v4, (*net, *len))).map(|(_, _, c)| *c),
        IpAddr::V6(v6) => V6
            .iter()
            .find(|(net, len, _)| in_v6(v6, (*net, *len)))
            .map(|(_, _, c)| *c)
            .or_else(|| (!in_v6(v6, GLOBAL_UNICAST)).then_some(Reserved)),
    }
}

/// An address or a CIDR range the operator makes reachable (`egress.allowed_addresses`):
/// `127.0.0.1`, `10.1.0.0/16`, `::1`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AddressRange(IpNet);

/// Why an `allowed_addresses` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRangeError {
    /// Neither an address nor `address/prefix`.
    #[error("{0:?} is not an IP address or a CIDR range")]
    Invalid(String),
    /// An IPv4-mapped IPv6 address or range: the rules judge these as IPv4.
    #[error("{0:?} is IPv4-mapped: write the IPv4 address or range instead")]
    Ipv4Mapped(String),
}

impl AddressRange {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for AddressRange {
    type Err = AddressRangeError;

    fn from_str(raw: &str) -> Result<AddressRange, AddressRangeError> {
        let net = match raw.contains('/') {
            true => raw.parse::<IpNet>().ok(),
            false => raw.parse::<IpAddr>().ok().map(IpNet::from),
        }
        .ok_or_else(|| AddressRangeError::Invalid(raw.to_owned()))?;
        if let IpNet::V6(v6) = net
            && v6.prefix_len() >= 96
            && v6.network().to_ipv4_mapped().is_some()
        {
            return Err(AddressRangeError::Ipv4Mapped(raw.to_owned()));
        }
        Ok(AddressRange(net.trunc()))
    }
}

impl TryFrom<String> for AddressRange {
    type Error = AddressRangeError;

    fn try_from(raw: String) -> Result<AddressRange, AddressRangeError> {
        raw.parse()
    }
}

impl From<AddressRange> for String {
    fn from(range: AddressRange) -> String {
        range.to_string()
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.prefix_len() == self.0.max_prefix_len() {
            true => write!(f, "{}", self.0.addr()),
            false => write!(f, "{}", self.0),
        }
    }
}

/// The address rules in force: never a special-purpose address ([`classify`]) nor one of the
/// host's own, whatever a name resolves to, unless the operator lists the address (or a range
/// holding it) in `egress.allowed_addresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRules {
    allowed: Vec<AddressRange>,
    host_addresses: Vec<IpAddr>,
}

impl AddressRules {
    /// Rules that make `allowed` reachable and keep `host_addresses` (the addresses of the host
    /// the proxy runs on, which a public one among them would not otherwise stop) unreachable.
    pub fn new(allowed: Vec<AddressRange>, host_addresses: Vec<IpAddr>) -> AddressRules {
        let host_addresses = host_addresses.into_iter().map(effective).collect();
        AddressRules { allowed, host_addresses }
    }

    /// Whether the proxy may connect to `ip`, and if not, why.
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressClass> {
        let judged = effective(ip);
        if self.allowed.iter().any(|range| range.contains(judged) || range.contains(ip)) {
            return Ok(());
        }
        if let Some(class) = classify(ip) {
            return Err(class);
        }
        match self.host_addresses.contains(&judged) {
            true => Err(HostAddress),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    /// Every range of both tables, at its first and last address, and the neighbours just
    /// outside where those are public.
    #[test]
    fn every_special_range_is_forbidden() {
        for (addr, class) in [
            ("0.0.0.0", Unspecified),
            ("0.255.255.255", Unspecified),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.0", LinkLocal),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.0.0.0", Reserved),
            ("192.0.0.255", Reserved),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.0.1", Private),
            ("192.168.255.255", Private),
            ("198.18.0.0", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.255", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::2", Reserved),
            ("::7f00:1", Reserved),
            ("::ffff:0:7f00:1", Reserved),
            ("64:ff9b:1::1", Private),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:1ff:ffff::1", Reserved),
            ("2001:2::1", Benchmarking),
            ("2001:db8::1", Documentation),
            ("2001:db8:ffff::1", Documentation),
            ("2002:7f00:1::1", Reserved),
            ("3fff::1", Documentation),
            ("3fff:fff::1", Documentation),
            ("5f00::1", Reserved),
            ("fc00::1", Private),
            ("fdff:ffff::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("1::1", Reserved),
            ("4000::1", Reserved),
            ("e000::1", Reserved),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:200::1",
            "2001:db9::1",
            "2003::1",
            "2606:4700::1111",
            "3fff:1000::1",
            "3ffe::1",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn mapped_and_nat64_addresses_are_judged_by_their_ipv4_address() {
        for (addr, class) in [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:100.64.0.1", Some(SharedAddressSpace)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::ffff:1.1.1.1", None),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::192.168.1.1", Some(Private)),
            ("64:ff9b::1.1.1.1", None),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn the_hosts_own_addresses_are_forbidden() {
        let host = ["8.8.4.4", "::ffff:9.9.9.9", "2606:4700::1", "127.0.0.1"].map(ip);
        let rules = AddressRules::new(vec![], host.to_vec());
        assert_eq!(rules.check(ip("8.8.4.4")), Err(HostAddress));
        assert_eq!(rules.check(ip("::ffff:8.8.4.4")), Err(HostAddress));
        assert_eq!(rules.check(ip("64:ff9b::8.8.4.4")), Err(HostAddress));
        assert_eq!(rules.check(ip("9.9.9.9")), Err(HostAddress));
        assert_eq!(rules.check(ip("2606:4700::1")), Err(HostAddress));
        assert_eq!(rules.check(ip("2606:4700::2")), Ok(()));
        assert_eq!(rules.check(ip("8.8.8.8")), Ok(()));
        assert_eq!(rules.check(ip("127.0.0.1")), Err(Loopback), "the more telling reason wins");
    }

    #[test]
    fn the_operator_can_list_addresses_and_ranges() {
        let allowed = ["127.0.0.1", "10.20.0.0/16", "fd00::/8", "8.8.4.4"].map(|r| r.parse().unwrap());
        let rules = AddressRules::new(allowed.to_vec(), vec![ip("8.8.4.4")]);
        for ok in ["127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "10.20.3.4", "fd12::1", "8.8.4.4"] {
            assert_eq!(rules.check(ip(ok)), Ok(()), "{ok}");
        }
        for (denied, class) in [
            ("127.0.0.2", Loopback),
            ("10.21.0.1", Private),
            ("fc00::1", Private),
            ("::1", Loopback),
            ("169.254.169.254", LinkLocal),
        ] {
            assert_eq!(rules.check(ip(denied)), Err(class), "{denied}");
        }
    }

    #[test]
    fn address_ranges_parse_strictly() {
        for (raw, shown) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1/32", "127.0.0.1"),
            ("10.1.2.3/16", "10.1.0.0/16"),
            ("::1", "::1"),
            ("FD00::/8", "fd00::/8"),
        ] {
            assert_eq!(raw.parse::<AddressRange>().unwrap().to_string(), shown, "{raw}");
        }
        for bad in ["", "localhost", "10.0.0.0/33", "10.0.0/8", "1.2.3.4/", "[::1]"] {
            assert_eq!(bad.parse::<AddressRange>(), Err(AddressRangeError::Invalid(bad.into())), "{bad}");
        }
        for mapped in ["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"] {
            assert_eq!(
                mapped.parse::<AddressRange>(),
                Err(AddressRangeError::Ipv4Mapped(mapped.into())),
                "{mapped}"
            );
        }
    }
}
