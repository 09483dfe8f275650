//! The rules every host configuration must satisfy, whichever way it
//! arrived (TOML on the build host, or a decoded boot module on the host).

use alloc::string::String;
use core::fmt;
use core::net::Ipv4Addr;

use crate::password::{PasswordHash, PasswordHashError};
use crate::schema::{HostConfig, IpMode, StaticIpv4};

/// Most DNS servers a static configuration may list (what resolvers
/// conventionally use; more would never be tried).
pub const MAX_DNS_SERVERS: usize = 3;

/// Which setting a [`ValidationError`] is about, so a front end can point
/// at where the operator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Hostname,
    RootPasswordHash,
    Interface,
    /// The static address or its prefix length.
    Address,
    Gateway,
    /// The DNS server at this index.
    Dns(usize),
}

/// Why a host configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    HostnameEmpty,
    HostnameTooLong(usize),
    HostnameBadChar(char),
    HostnameHyphenAtEdge,
    InterfaceName(String),
    PrefixLen(u8),
    /// The static address cannot be a host's address; the `&str` says why.
    AddressUnusable(Ipv4Addr, &'static str),
    GatewayOutsideSubnet {
        gateway: Ipv4Addr,
        address: Ipv4Addr,
        prefix_len: u8,
    },
    GatewayIsHostAddress(Ipv4Addr),
    TooManyDnsServers(usize),
    /// The DNS server at this index cannot be a server's address; the `&str` says why.
    DnsServerUnusable(usize, Ipv4Addr, &'static str),
    PasswordHash(PasswordHashError),
}

impl ValidationError {
    /// The setting at fault.
    pub fn field(&self) -> Field {
        match self {
            Self::HostnameEmpty
            | Self::HostnameTooLong(_)
            | Self::HostnameBadChar(_)
            | Self::HostnameHyphenAtEdge => Field::Hostname,
            Self::InterfaceName(_) => Field::Interface,
            Self::PrefixLen(_) | Self::AddressUnusable(..) => Field::Address,
            Self::GatewayOutsideSubnet { .. } | Self::GatewayIsHostAddress(_) => Field::Gateway,
            // The first server over the limit is the one to remove.
            Self::TooManyDnsServers(_) => Field::Dns(MAX_DNS_SERVERS),
            Self::DnsServerUnusable(index, ..) => Field::Dns(*index),
            Self::PasswordHash(_) => Field::RootPasswordHash,
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostnameEmpty => write!(f, "hostname is empty"),
            Self::HostnameTooLong(n) => {
                write!(f, "hostname is {n} characters long; at most 63 are allowed")
            }
            Self::HostnameBadChar(c) => write!(
                f,
                "hostname contains {c:?}; only letters a-z, digits 0-9 and '-' are allowed"
            ),
            Self::HostnameHyphenAtEdge => write!(f, "hostname must not start or end with '-'"),
            Self::InterfaceName(name) => write!(
                f,
                "interface {name:?} is not of the form eth<N> (eth0 is the first NIC found, \
                 N at most 255, no leading zeros)"
            ),
            Self::PrefixLen(n) => write!(f, "prefix length /{n} is outside 1..=32"),
            Self::AddressUnusable(a, why) => write!(f, "{a} cannot be a host address: {why}"),
            Self::GatewayOutsideSubnet {
                gateway,
                address,
                prefix_len,
            } => write!(
                f,
                "gateway {gateway} is not inside {address}/{prefix_len}; \
                 the gateway must be reachable on the management subnet"
            ),
            Self::GatewayIsHostAddress(a) => write!(f, "gateway {a} is the host's own address"),
            Self::TooManyDnsServers(n) => {
                write!(
                    f,
                    "{n} DNS servers given; at most {MAX_DNS_SERVERS} are used"
                )
            }
            Self::DnsServerUnusable(_, a, why) => write!(f, "DNS server {a} is unusable: {why}"),
            Self::PasswordHash(e) => e.fmt(f),
        }
    }
}

impl HostConfig {
    /// Checks every setting; the first fault found is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_hostname(&self.hostname)?;
        if let Some(phc) = &self.root_password_hash {
            PasswordHash::parse(phc).map_err(ValidationError::PasswordHash)?;
        }
        validate_interface(&self.management.interface)?;
        match &self.management.ip {
            IpMode::Dhcp => Ok(()),
            IpMode::Static(s) => s.validate(),
        }
    }
}

impl StaticIpv4 {
    /// The network mask for `prefix_len` (meaningful once that is 1..=32).
    pub fn netmask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=32).contains(&self.prefix_len) {
            return Err(ValidationError::PrefixLen(self.prefix_len));
        }
        let address = Ipv4Addr::from(self.address);
        if let Some(why) = unusable(address) {
            return Err(ValidationError::AddressUnusable(address, why));
        }
        let mask = self.netmask();
        let host = u32::from(address);
        // /31 and /32 have no network or broadcast address (RFC 3021).
        if self.prefix_len <= 30 {
            if host & !mask == 0 {
                return Err(ValidationError::AddressUnusable(
                    address,
                    "it is the network address",
                ));
            }
            if host & !mask == !mask {
                return Err(ValidationError::AddressUnusable(
                    address,
                    "it is the subnet's broadcast address",
                ));
            }
        }
        if let Some(gateway) = self.gateway.map(Ipv4Addr::from) {
            if u32::from(gateway) & mask != host & mask {
                return Err(ValidationError::GatewayOutsideSubnet {
                    gateway,
                    address,
                    prefix_len: self.prefix_len,
                });
            }
            if gateway == address {
                return Err(ValidationError::GatewayIsHostAddress(gateway));
            }
        }
        if self.dns.len() > MAX_DNS_SERVERS {
            return Err(ValidationError::TooManyDnsServers(self.dns.len()));
        }
        for (index, server) in self.dns.iter().map(|&d| Ipv4Addr::from(d)).enumerate() {
            // Loopback is fine for a server in general, but nothing on this
            // host answers DNS, so it is a mistake here too.
            if let Some(why) = unusable(server) {
                return Err(ValidationError::DnsServerUnusable(index, server, why));
            }
        }
        Ok(())
    }
}

/// Why `a` cannot be a unicast address of a remote or local host, if it cannot.
fn unusable(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("0.0.0.0 is the unspecified address")
    } else if a.is_broadcast() {
        Some("255.255.255.255 is the broadcast address")
    } else if a.is_multicast() {
        Some("224.0.0.0/4 is multicast")
    } else if a.is_loopback() {
        Some("127.0.0.0/8 is loopback")
    } else {
        None
    }
}

/// RFC 1123 host-name label.
fn validate_hostname(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::HostnameEmpty);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(ValidationError::HostnameBadChar(c));
    }
    // All ASCII from here, so bytes are characters.
    if name.len() > 63 {
        return Err(ValidationError::HostnameTooLong(name.len()));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(ValidationError::HostnameHyphenAtEdge);
    }
    Ok(())
}

/// `eth<N>`: NICs are numbered in discovery order, so only this form names one.
fn validate_interface(name: &str) -> Result<(), ValidationError> {
    let ok = name.strip_prefix("eth").is_some_and(|n| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
            && n.parse::<u8>().is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::InterfaceName(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::hash_password;
    use crate::schema::Management;
    use alloc::vec;

    fn with_static(address: [u8; 4], prefix_len: u8, gateway: Option<[u8; 4]>) -> HostConfig {
        HostConfig {
            management: Management {
                interface: "eth0".into(),
                ip: IpMode::Static(StaticIpv4 {
                    address,
                    prefix_len,
                    gateway,
                    dns: vec![],
                }),
            },
            ..HostConfig::default()
        }
    }

    fn err(cfg: &HostConfig) -> ValidationError {
        cfg.validate().expect_err("should be rejected")
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(HostConfig::default().validate(), Ok(()));
    }

    #[test]
    fn hostnames() {
        let mut cfg = HostConfig::default();
        for good in ["a", "xen1", "XEN-1", "0", &"a".repeat(63)] {
            cfg.hostname = good.into();
            assert_eq!(cfg.validate(), Ok(()), "{good}");
        }
        let bad = [
            ("", ValidationError::HostnameEmpty),
            ("xen_1", ValidationError::HostnameBadChar('_')),
            ("xen.lab", ValidationError::HostnameBadChar('.')),
            ("hôte", ValidationError::HostnameBadChar('ô')),
            ("-xen", ValidationError::HostnameHyphenAtEdge),
            ("xen-", ValidationError::HostnameHyphenAtEdge),
        ];
        for (name, want) in bad {
            cfg.hostname = name.into();
            assert_eq!(err(&cfg), want, "{name}");
        }
        cfg.hostname = "a".repeat(64);
        assert_eq!(err(&cfg), ValidationError::HostnameTooLong(64));
    }

    #[test]
    fn interfaces() {
        let mut cfg = HostConfig::default();
        for good in ["eth0", "eth1", "eth10", "eth255"] {
            cfg.management.interface = good.into();
            assert_eq!(cfg.validate(), Ok(()), "{good}");
        }
        for bad in [
            "eth", "eth01", "eth256", "eth-1", "en0", "eth0 ", "ETH0", "eth+1",
        ] {
            cfg.management.interface = bad.into();
            assert_eq!(err(&cfg), ValidationError::InterfaceName(bad.into()));
        }
    }

    #[test]
    fn static_addresses() {
        assert_eq!(
            with_static([192, 0, 2, 10], 24, Some([192, 0, 2, 1])).validate(),
            Ok(())
        );
        assert_eq!(with_static([10, 0, 0, 0], 31, None).validate(), Ok(()));
        assert_eq!(with_static([10, 0, 0, 7], 32, None).validate(), Ok(()));
        assert_eq!(
            err(&with_static([192, 0, 2, 10], 0, None)),
            ValidationError::PrefixLen(0)
        );
        assert_eq!(
            err(&with_static([192, 0, 2, 10], 33, None)),
            ValidationError::PrefixLen(33)
        );
        for (a, p) in [
            ([0, 0, 0, 0], 8),
            ([255, 255, 255, 255], 32),
            ([224, 0, 0, 1], 24),
            ([127, 0, 0, 1], 8),
            ([192, 0, 2, 0], 24),
            ([192, 0, 2, 255], 24),
        ] {
            assert!(
                matches!(
                    err(&with_static(a, p, None)),
                    ValidationError::AddressUnusable(..)
                ),
                "{a:?}/{p}"
            );
        }
    }

    #[test]
    fn gateways() {
        let e = err(&with_static([192, 0, 2, 10], 24, Some([192, 0, 3, 1])));
        assert!(matches!(e, ValidationError::GatewayOutsideSubnet { .. }));
        assert_eq!(e.field(), Field::Gateway);
        let e = err(&with_static([192, 0, 2, 10], 24, Some([192, 0, 2, 10])));
        assert!(matches!(e, ValidationError::GatewayIsHostAddress(_)));
        assert_eq!(
            with_static([10, 1, 2, 3], 8, Some([10, 200, 0, 1])).validate(),
            Ok(())
        );
    }

    #[test]
    fn dns_servers() {
        let mut cfg = with_static([192, 0, 2, 10], 24, None);
        let IpMode::Static(s) = &mut cfg.management.ip else {
            unreachable!()
        };
        s.dns = vec![[192, 0, 2, 53]; 3];
        assert_eq!(cfg.validate(), Ok(()));
        let IpMode::Static(s) = &mut cfg.management.ip else {
            unreachable!()
        };
        s.dns.push([192, 0, 2, 54]);
        assert_eq!(err(&cfg), ValidationError::TooManyDnsServers(4));
        assert_eq!(err(&cfg).field(), Field::Dns(3));
        let IpMode::Static(s) = &mut cfg.management.ip else {
            unreachable!()
        };
        s.dns = vec![[192, 0, 2, 53], [224, 0, 0, 251]];
        assert!(matches!(
            err(&cfg),
            ValidationError::DnsServerUnusable(1, ..)
        ));
        assert_eq!(err(&cfg).field(), Field::Dns(1));
    }

    #[test]
    fn password_hash_must_parse() {
        let mut cfg = HostConfig {
            root_password_hash: Some(hash_password("pw", [3; 16], 1_000)),
            ..HostConfig::default()
        };
        assert_eq!(cfg.validate(), Ok(()));
        cfg.root_password_hash = Some("hunter2".into());
        assert_eq!(
            err(&cfg),
            ValidationError::PasswordHash(PasswordHashError::UnsupportedScheme)
        );
        assert_eq!(err(&cfg).field(), Field::RootPasswordHash);
    }
}
