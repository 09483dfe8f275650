//! The rules every host configuration must satisfy, whichever way it
//! arrived (TOML on the build host, or a decoded boot module on the host).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use crate::password::{PasswordHash, PasswordHashError};
use crate::schema::{HostConfig, IpMode, StaticIpv4, Vlan};

/// Most DNS servers a static configuration may list (what resolvers
/// conventionally use; more would never be tried).
pub const MAX_DNS_SERVERS: usize = 3;
/// Most upgrade signing keys a host trusts (a current and a next one, with room).
pub const MAX_TRUSTED_KEYS: usize = 8;

/// Most bonds a host may define.
pub const MAX_BONDS: usize = 4;
/// Fewest and most members of a bond (XenServer's limits).
pub const BOND_MEMBERS: core::ops::RangeInclusive<usize> = 2..=4;
/// Most host networks besides management.
pub const MAX_NETWORKS: usize = 8;
/// Smallest and largest network MTU.
pub const MTU_RANGE: core::ops::RangeInclusive<u16> = 68..=9000;

/// Which setting a [`ValidationError`] is about, so a front end can point
/// at where the operator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Hostname,
    RootPasswordHash,
    Interface,
    /// The static address or its prefix length.
    Address,
    Gateway,
    /// The DNS server at this index.
    Dns(usize),
    ManagementVlan,
    ManagementMtu,
    /// A setting of the bond at this index.
    Bond(usize, BondField),
    /// A setting of the network at this index.
    Network(usize, NetworkField),
    /// The trusted key at this index.
    TrustedKey(usize),
}

/// A setting of a bond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BondField {
    Name,
    /// The member list as a whole.
    Members,
    /// The member at this index.
    Member(usize),
}

/// A setting of a host network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkField {
    Name,
    Interface,
    Vlan,
    Mtu,
    Address,
    Gateway,
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
    TooManyTrustedKeys(usize),
    /// The key at this index repeats an earlier one.
    DuplicateTrustedKey(usize),
    TooManyBonds(usize),
    BondName(usize, String),
    DuplicateBondName(usize, String),
    BondMemberCount {
        bond: usize,
        count: usize,
    },
    BondMemberName {
        bond: usize,
        member: usize,
        name: String,
    },
    /// A NIC listed twice, in one bond or two.
    MemberReused {
        bond: usize,
        member: usize,
        name: String,
    },
    /// A network (or management) names a bond no `[[bond]]` defines.
    UnknownBond {
        at: Field,
        name: String,
    },
    /// A network (or management) uses a NIC that is a bond member.
    InterfaceIsBonded {
        at: Field,
        nic: String,
        bond: String,
    },
    NetworkInterface(usize, String),
    VlanId {
        at: Field,
        id: u16,
    },
    Mtu {
        at: Field,
        mtu: u16,
    },
    /// Two networks on one interface with the same VLAN.
    DuplicateVlan {
        at: Field,
        interface: String,
        id: u16,
    },
    /// A second untagged (no VLAN, or native VLAN) network on one interface.
    SecondUntagged {
        at: Field,
        interface: String,
        other: String,
    },
    TooManyNetworks(usize),
    NetworkName(usize, String),
    DuplicateNetworkName(usize, String),
    /// A network's static IP settings are wrong; `error` says how.
    NetworkIp {
        index: usize,
        error: Box<ValidationError>,
    },
    /// Two networks' static subnets overlap: the host could not tell which
    /// interface reaches an address in both.
    SubnetOverlap {
        at: Field,
        other: String,
    },
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
            Self::TooManyTrustedKeys(_) => Field::TrustedKey(MAX_TRUSTED_KEYS),
            Self::DuplicateTrustedKey(index) => Field::TrustedKey(*index),
            Self::TooManyBonds(_) => Field::Bond(MAX_BONDS, BondField::Name),
            Self::BondName(i, _) | Self::DuplicateBondName(i, _) => {
                Field::Bond(*i, BondField::Name)
            }
            Self::BondMemberCount { bond, .. } => Field::Bond(*bond, BondField::Members),
            Self::BondMemberName { bond, member, .. } | Self::MemberReused { bond, member, .. } => {
                Field::Bond(*bond, BondField::Member(*member))
            }
            Self::UnknownBond { at, .. }
            | Self::InterfaceIsBonded { at, .. }
            | Self::VlanId { at, .. }
            | Self::Mtu { at, .. }
            | Self::DuplicateVlan { at, .. }
            | Self::SecondUntagged { at, .. }
            | Self::SubnetOverlap { at, .. } => *at,
            Self::NetworkInterface(i, _) => Field::Network(*i, NetworkField::Interface),
            Self::TooManyNetworks(_) => Field::Network(MAX_NETWORKS, NetworkField::Name),
            Self::NetworkName(i, _) | Self::DuplicateNetworkName(i, _) => {
                Field::Network(*i, NetworkField::Name)
            }
            Self::NetworkIp { index, error } => Field::Network(
                *index,
                match error.field() {
                    Field::Gateway => NetworkField::Gateway,
                    Field::Dns(j) => NetworkField::Dns(j),
                    _ => NetworkField::Address,
                },
            ),
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
                "interface {name:?} is neither eth<N> (eth0 is the first NIC found, \
                 N at most 255, no leading zeros) nor a bond<N> defined by a [[bond]]"
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
            Self::TooManyTrustedKeys(n) => write!(
                f,
                "{n} trusted keys given; at most {MAX_TRUSTED_KEYS} are allowed"
            ),
            Self::DuplicateTrustedKey(_) => write!(f, "this trusted key is listed twice"),
            Self::TooManyBonds(n) => {
                write!(f, "{n} bonds given; at most {MAX_BONDS} are supported")
            }
            Self::BondName(_, name) => write!(
                f,
                "bond name {name:?} is not of the form bond<N> (N at most 255, no leading zeros)"
            ),
            Self::DuplicateBondName(_, name) => write!(f, "bond {name} is defined twice"),
            Self::BondMemberCount { count, .. } => write!(
                f,
                "a bond takes {} to {} member NICs, {count} given",
                BOND_MEMBERS.start(),
                BOND_MEMBERS.end()
            ),
            Self::BondMemberName { name, .. } => {
                write!(f, "bond member {name:?} is not of the form eth<N>")
            }
            Self::MemberReused { name, .. } => {
                write!(
                    f,
                    "{name} is already a member of a bond; a NIC joins one bond once"
                )
            }
            Self::UnknownBond { name, .. } => {
                write!(
                    f,
                    "no [[bond]] named {name}: define it, or use a NIC (eth<N>)"
                )
            }
            Self::InterfaceIsBonded { nic, bond, .. } => write!(
                f,
                "{nic} is a member of {bond}; put the network on {bond} instead"
            ),
            Self::NetworkInterface(_, name) => write!(
                f,
                "interface {name:?} is neither eth<N> nor a bond<N> defined by a [[bond]]"
            ),
            Self::VlanId { id, .. } => write!(f, "VLAN {id} is outside 1..=4094"),
            Self::Mtu { mtu, .. } => write!(
                f,
                "MTU {mtu} is outside {}..={}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
            Self::DuplicateVlan { interface, id, .. } => {
                write!(f, "VLAN {id} is used twice on {interface}")
            }
            Self::SecondUntagged {
                interface, other, ..
            } => write!(
                f,
                "{interface} already carries {other} untagged (no VLAN or a native VLAN); \
                 only one network per interface can be untagged"
            ),
            Self::TooManyNetworks(n) => write!(
                f,
                "{n} networks given; at most {MAX_NETWORKS} besides management are supported"
            ),
            Self::NetworkName(_, name) => write!(
                f,
                "network name {name:?} must be 1 to 15 characters a-z, 0-9 and '-', \
                 starting with a letter, and not \"management\", eth<N> or bond<N>"
            ),
            Self::DuplicateNetworkName(_, name) => write!(f, "network {name} is defined twice"),
            Self::NetworkIp { error, .. } => error.fmt(f),
            Self::SubnetOverlap { other, .. } => write!(
                f,
                "this subnet overlaps the one of {other}; each network needs its own subnet"
            ),
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
        match &self.management.ip {
            IpMode::Dhcp => {}
            IpMode::Static(s) => s.validate()?,
        }
        self.validate_bonds()?;
        self.validate_uplink(&self.management.interface, Field::Interface)?;
        check_vlan(self.management.vlan, Field::ManagementVlan)?;
        check_mtu(self.management.mtu, Field::ManagementMtu)?;
        self.validate_networks()?;
        self.validate_trusted_keys()
    }

    fn validate_trusted_keys(&self) -> Result<(), ValidationError> {
        if self.trusted_keys.len() > MAX_TRUSTED_KEYS {
            return Err(ValidationError::TooManyTrustedKeys(self.trusted_keys.len()));
        }
        for (i, key) in self.trusted_keys.iter().enumerate() {
            if self.trusted_keys[..i].contains(key) {
                return Err(ValidationError::DuplicateTrustedKey(i));
            }
        }
        Ok(())
    }

    fn validate_bonds(&self) -> Result<(), ValidationError> {
        if self.bonds.len() > MAX_BONDS {
            return Err(ValidationError::TooManyBonds(self.bonds.len()));
        }
        let mut seen_members: Vec<&str> = Vec::new();
        for (i, bond) in self.bonds.iter().enumerate() {
            if !numbered(&bond.name, "bond") {
                return Err(ValidationError::BondName(i, bond.name.clone()));
            }
            if self.bonds[..i].iter().any(|b| b.name == bond.name) {
                return Err(ValidationError::DuplicateBondName(i, bond.name.clone()));
            }
            if !BOND_MEMBERS.contains(&bond.members.len()) {
                return Err(ValidationError::BondMemberCount {
                    bond: i,
                    count: bond.members.len(),
                });
            }
            for (j, member) in bond.members.iter().enumerate() {
                if !numbered(member, "eth") {
                    return Err(ValidationError::BondMemberName {
                        bond: i,
                        member: j,
                        name: member.clone(),
                    });
                }
                if seen_members.contains(&member.as_str()) {
                    return Err(ValidationError::MemberReused {
                        bond: i,
                        member: j,
                        name: member.clone(),
                    });
                }
                seen_members.push(member);
            }
        }
        Ok(())
    }

    /// `name` is a NIC outside every bond, or a defined bond.
    fn validate_uplink(&self, name: &str, at: Field) -> Result<(), ValidationError> {
        if numbered(name, "eth") {
            if let Some(bond) = self
                .bonds
                .iter()
                .find(|b| b.members.iter().any(|m| m == name))
            {
                return Err(ValidationError::InterfaceIsBonded {
                    at,
                    nic: name.into(),
                    bond: bond.name.clone(),
                });
            }
            return Ok(());
        }
        if numbered(name, "bond") {
            if self.bonds.iter().any(|b| b.name == name) {
                return Ok(());
            }
            return Err(ValidationError::UnknownBond {
                at,
                name: name.into(),
            });
        }
        Err(match at {
            Field::Network(i, _) => ValidationError::NetworkInterface(i, name.into()),
            _ => ValidationError::InterfaceName(name.into()),
        })
    }

    fn validate_networks(&self) -> Result<(), ValidationError> {
        if self.networks.len() > MAX_NETWORKS {
            return Err(ValidationError::TooManyNetworks(self.networks.len()));
        }
        // Networks checked so far, management first: (name, interface, vlan, ip).
        let mut placed: Vec<(&str, &str, Option<Vlan>, &IpMode)> = Vec::new();
        placed.push((
            "management",
            &self.management.interface,
            self.management.vlan,
            &self.management.ip,
        ));
        for (i, net) in self.networks.iter().enumerate() {
            let at = |f| Field::Network(i, f);
            if !network_name_ok(&net.name) {
                return Err(ValidationError::NetworkName(i, net.name.clone()));
            }
            if self.networks[..i].iter().any(|n| n.name == net.name) {
                return Err(ValidationError::DuplicateNetworkName(i, net.name.clone()));
            }
            self.validate_uplink(&net.interface, at(NetworkField::Interface))?;
            check_vlan(net.vlan, at(NetworkField::Vlan))?;
            check_mtu(net.mtu, at(NetworkField::Mtu))?;
            if let IpMode::Static(s) = &net.ip {
                s.validate().map_err(|e| ValidationError::NetworkIp {
                    index: i,
                    error: Box::new(e),
                })?;
            }
            for (other, interface, vlan, _) in &placed {
                if *interface != net.interface {
                    continue;
                }
                let untagged = |v: Option<Vlan>| v.is_none_or(|v| v.native);
                if untagged(*vlan) && untagged(net.vlan) {
                    // Blame the VLAN setting, or the interface when there is none.
                    let field = if net.vlan.is_some() {
                        NetworkField::Vlan
                    } else {
                        NetworkField::Interface
                    };
                    return Err(ValidationError::SecondUntagged {
                        at: at(field),
                        interface: net.interface.clone(),
                        other: (*other).into(),
                    });
                }
                if let (Some(a), Some(b)) = (vlan, net.vlan)
                    && a.id == b.id
                {
                    return Err(ValidationError::DuplicateVlan {
                        at: at(NetworkField::Vlan),
                        interface: net.interface.clone(),
                        id: b.id,
                    });
                }
            }
            for (other, _, _, ip) in &placed {
                if let (IpMode::Static(a), IpMode::Static(b)) = (ip, &net.ip)
                    && overlap(a, b)
                {
                    return Err(ValidationError::SubnetOverlap {
                        at: at(NetworkField::Address),
                        other: (*other).into(),
                    });
                }
            }
            placed.push((&net.name, &net.interface, net.vlan, &net.ip));
        }
        Ok(())
    }
}

fn check_vlan(vlan: Option<Vlan>, at: Field) -> Result<(), ValidationError> {
    match vlan {
        Some(v) if !(1..=4094).contains(&v.id) => Err(ValidationError::VlanId { at, id: v.id }),
        _ => Ok(()),
    }
}

fn check_mtu(mtu: u16, at: Field) -> Result<(), ValidationError> {
    if MTU_RANGE.contains(&mtu) {
        Ok(())
    } else {
        Err(ValidationError::Mtu { at, mtu })
    }
}

/// Whether two static subnets share addresses.
fn overlap(a: &StaticIpv4, b: &StaticIpv4) -> bool {
    let mask = a.netmask() & b.netmask();
    u32::from_be_bytes(a.address) & mask == u32::from_be_bytes(b.address) & mask
}

/// 1 to 15 characters a-z, 0-9, '-', starting with a letter; "management"
/// is the management network's own name, and `eth<N>`/`bond<N>` name the
/// management interface after its uplink.
fn network_name_ok(name: &str) -> bool {
    !numbered(name, "eth")
        && !numbered(name, "bond")
        && (1..=15).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != "management"
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

/// `<prefix><N>`, N at most 255 without leading zeros: NICs (`eth`) are
/// numbered in discovery order, so only this form names one; bonds follow.
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|n| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
            && n.parse::<u8>().is_ok()
    })
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
                ..Management::default()
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

    fn bonded() -> HostConfig {
        use crate::schema::{Bond, BondMode, Network, NetworkPurpose};
        HostConfig {
            management: Management {
                interface: "bond0".into(),
                ip: IpMode::Static(StaticIpv4 {
                    address: [192, 0, 2, 10],
                    prefix_len: 24,
                    gateway: None,
                    dns: vec![],
                }),
                vlan: Some(Vlan {
                    id: 5,
                    native: true,
                }),
                mtu: 1500,
            },
            bonds: vec![Bond::new("bond0", &["eth0", "eth1"], BondMode::Lacp)],
            networks: vec![Network {
                name: "storage".into(),
                purpose: NetworkPurpose::Storage,
                interface: "bond0".into(),
                vlan: Some(Vlan {
                    id: 20,
                    native: false,
                }),
                mtu: 9000,
                ip: IpMode::Static(StaticIpv4 {
                    address: [198, 51, 100, 10],
                    prefix_len: 24,
                    gateway: None,
                    dns: vec![],
                }),
            }],
            ..HostConfig::default()
        }
    }

    #[test]
    fn bonds() {
        assert_eq!(bonded().validate(), Ok(()));
        let mut cfg = bonded();
        cfg.bonds[0].name = "bond01".into();
        assert_eq!(err(&cfg), ValidationError::BondName(0, "bond01".into()));
        assert_eq!(err(&cfg).field(), Field::Bond(0, BondField::Name));
        let mut cfg = bonded();
        cfg.bonds[0].members = vec!["eth0".into()];
        assert!(matches!(
            err(&cfg),
            ValidationError::BondMemberCount { count: 1, .. }
        ));
        cfg.bonds[0].members = ["eth0", "eth1", "eth2", "eth3", "eth4"]
            .map(String::from)
            .into();
        assert!(matches!(
            err(&cfg),
            ValidationError::BondMemberCount { count: 5, .. }
        ));
        cfg.bonds[0].members = vec!["eth0".into(), "em1".into()];
        assert_eq!(err(&cfg).field(), Field::Bond(0, BondField::Member(1)));
        cfg.bonds[0].members = vec!["eth0".into(), "eth0".into()];
        assert!(matches!(
            err(&cfg),
            ValidationError::MemberReused { member: 1, .. }
        ));
        let mut cfg = bonded();
        let mut second = cfg.bonds[0].clone();
        second.name = "bond1".into();
        second.members = vec!["eth2".into(), "eth1".into()];
        cfg.bonds.push(second.clone());
        assert_eq!(err(&cfg).field(), Field::Bond(1, BondField::Member(1)));
        second.members = vec!["eth2".into(), "eth3".into()];
        second.name = "bond0".into();
        cfg.bonds[1] = second;
        assert!(matches!(
            err(&cfg),
            ValidationError::DuplicateBondName(1, _)
        ));
        let mut cfg = bonded();
        cfg.bonds = (0..5)
            .map(|i| {
                let mut b = cfg.bonds[0].clone();
                b.name = format!("bond{i}");
                b.members = vec![format!("eth{}", 2 * i), format!("eth{}", 2 * i + 1)];
                b
            })
            .collect();
        assert_eq!(err(&cfg), ValidationError::TooManyBonds(5));
    }

    #[test]
    fn interfaces_must_exist_and_not_be_bonded() {
        let mut cfg = bonded();
        cfg.management.interface = "bond1".into();
        assert!(matches!(
            err(&cfg),
            ValidationError::UnknownBond {
                at: Field::Interface,
                ..
            }
        ));
        cfg.management.interface = "eth1".into();
        let e = err(&cfg);
        assert_eq!(
            e.to_string(),
            "eth1 is a member of bond0; put the network on bond0 instead"
        );
        assert_eq!(e.field(), Field::Interface);
        let mut cfg = bonded();
        cfg.networks[0].interface = "br0".into();
        assert_eq!(
            err(&cfg),
            ValidationError::NetworkInterface(0, "br0".into())
        );
        cfg.networks[0].interface = "eth2".into();
        cfg.networks[0].vlan = None;
        assert_eq!(
            cfg.validate(),
            Ok(()),
            "a network of its own on a spare NIC"
        );
    }

    #[test]
    fn vlans_and_mtus() {
        let mut cfg = bonded();
        cfg.networks[0].vlan = Some(Vlan {
            id: 5,
            native: false,
        });
        assert!(matches!(
            err(&cfg),
            ValidationError::DuplicateVlan { id: 5, .. }
        ));
        cfg.networks[0].vlan = Some(Vlan {
            id: 4095,
            native: false,
        });
        assert_eq!(err(&cfg).field(), Field::Network(0, NetworkField::Vlan));
        cfg.networks[0].vlan = Some(Vlan {
            id: 21,
            native: true,
        });
        let e = err(&cfg);
        assert!(matches!(e, ValidationError::SecondUntagged { .. }), "{e}");
        cfg.networks[0].vlan = None;
        assert!(matches!(err(&cfg), ValidationError::SecondUntagged { .. }));
        // Management tagged: storage may then be the untagged one.
        cfg.management.vlan = Some(Vlan {
            id: 5,
            native: false,
        });
        assert_eq!(cfg.validate(), Ok(()));
        cfg.management.vlan = Some(Vlan {
            id: 0,
            native: false,
        });
        assert_eq!(err(&cfg).field(), Field::ManagementVlan);
        let mut cfg = bonded();
        cfg.networks[0].mtu = 9001;
        assert_eq!(err(&cfg).field(), Field::Network(0, NetworkField::Mtu));
        cfg.networks[0].mtu = 9000;
        cfg.management.mtu = 67;
        assert_eq!(err(&cfg).field(), Field::ManagementMtu);
    }

    #[test]
    fn network_names_and_addresses() {
        let mut cfg = bonded();
        for bad in [
            "",
            "Storage",
            "1st",
            "management",
            "a-very-long-name-x",
            "eth2",
            "bond0",
        ] {
            cfg.networks[0].name = bad.into();
            assert_eq!(
                err(&cfg),
                ValidationError::NetworkName(0, bad.into()),
                "{bad}"
            );
        }
        let mut cfg = bonded();
        let mut second = cfg.networks[0].clone();
        second.vlan = Some(Vlan {
            id: 30,
            native: false,
        });
        second.ip = IpMode::Dhcp;
        cfg.networks.push(second.clone());
        assert!(matches!(
            err(&cfg),
            ValidationError::DuplicateNetworkName(1, _)
        ));
        second.name = "migration".into();
        second.ip = IpMode::Static(StaticIpv4 {
            address: [192, 0, 2, 99],
            prefix_len: 25,
            gateway: None,
            dns: vec![],
        });
        cfg.networks[1] = second.clone();
        let e = err(&cfg);
        assert!(matches!(e, ValidationError::SubnetOverlap { .. }), "{e}");
        assert_eq!(e.field(), Field::Network(1, NetworkField::Address));
        second.ip = IpMode::Static(StaticIpv4 {
            address: [203, 0, 113, 5],
            prefix_len: 24,
            gateway: Some([198, 51, 100, 1]),
            dns: vec![],
        });
        cfg.networks[1] = second;
        let e = err(&cfg);
        assert_eq!(e.field(), Field::Network(1, NetworkField::Gateway));
        assert!(
            e.to_string()
                .starts_with("gateway 198.51.100.1 is not inside"),
            "{e}"
        );
        cfg.networks.truncate(1);
        cfg.networks = (0..9)
            .map(|i| {
                let mut n = cfg.networks[0].clone();
                n.name = format!("n{i}");
                n.vlan = Some(Vlan {
                    id: 100 + i,
                    native: false,
                });
                n.ip = IpMode::Dhcp;
                n
            })
            .collect();
        assert_eq!(err(&cfg), ValidationError::TooManyNetworks(9));
    }
}
