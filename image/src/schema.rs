//! The host configuration as the appliance sees it after compilation.
//! Field order is part of the boot-module format (postcard is positional):
//! append new fields at the end and bump the module format version (and
//! keep reading the old one, see [`crate::module`]).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// IP MTU of a network unless configured.
pub const DEFAULT_MTU: u16 = 1500;

/// First-boot settings of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// Host name (RFC 1123 label rules, at most 63 characters).
    pub hostname: String,
    /// Salted hash of the root password in PHC string form
    /// (`$pbkdf2-sha256$i=<iterations>,l=32$<salt b64>$<hash b64>`).
    /// `None` means no password was provisioned: API logins are refused.
    pub root_password_hash: Option<String>,
    /// The management network.
    pub management: Management,
    /// Bonds of NICs (format 2 on).
    pub bonds: Vec<Bond>,
    /// Host networks besides management: storage, migration (format 2 on).
    pub networks: Vec<Network>,
    /// ed25519 public keys whose signed images this host accepts as
    /// upgrades (the build's `keel-signing.pub`). Empty: upgrades are
    /// refused. Format 3 on; the module carries them after the rest of the
    /// payload (see [`crate::module`]), hence `skip` here.
    #[serde(skip)]
    pub trusted_keys: Vec<[u8; 32]>,
    /// The HTTPS certificate and key the operator supplies
    /// (`tls_certificate_file`/`tls_key_file`); `None`: the host makes its
    /// own at first boot. Format 4 on, after the trusted keys, hence `skip`.
    #[serde(skip)]
    pub tls: Option<SuppliedTls>,
}

/// A certificate chain and its private key, as the host-config tool read
/// them from PEM files. The appliance checks that the key loads and matches
/// the first certificate; the tool only checks the PEM armour.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppliedTls {
    /// DER certificates, the host's own first, then any intermediates.
    pub certificate_chain: Vec<Vec<u8>>,
    /// The private key, DER, in the encoding `key_kind` names.
    pub key: Vec<u8>,
    pub key_kind: KeyKind,
}

impl core::fmt::Debug for SuppliedTls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key.
        f.debug_struct("SuppliedTls")
            .field("certificates", &self.certificate_chain.len())
            .field("key_kind", &self.key_kind)
            .finish_non_exhaustive()
    }
}

/// How a supplied private key is encoded (its PEM label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// `PRIVATE KEY`: PKCS#8, any algorithm.
    Pkcs8,
    /// `EC PRIVATE KEY`: SEC 1.
    Sec1,
    /// `RSA PRIVATE KEY`: PKCS#1.
    Pkcs1,
}

/// The management network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Management {
    /// What carries management traffic: `eth<N>` (eth0 is the first NIC
    /// found) or a bond's name.
    pub interface: String,
    /// How it gets its IPv4 address.
    pub ip: IpMode,
    /// The management VLAN; `None`: untagged, no VLAN (format 2 on).
    pub vlan: Option<Vlan>,
    /// IP MTU, 68..=9000 (format 2 on).
    pub mtu: u16,
}

/// A network's 802.1Q VLAN on its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vlan {
    /// VLAN ID, 1..=4094.
    pub id: u16,
    /// The interface's native VLAN: its frames travel untagged (the
    /// physical switch port's native/PVID VLAN).
    pub native: bool,
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpMode {
    Dhcp,
    Static(StaticIpv4),
}

/// A static IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticIpv4 {
    pub address: [u8; 4],
    /// Prefix length, 1..=32.
    pub prefix_len: u8,
    pub gateway: Option<[u8; 4]>,
    /// DNS servers, at most 3.
    pub dns: Vec<[u8; 4]>,
}

/// A bond: 2 to 4 NICs used as one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bond {
    /// `bond<N>`; networks name it as their interface.
    pub name: String,
    /// Member NICs, `eth<N>`, each in at most one bond.
    pub members: Vec<String>,
    pub mode: BondMode,
    /// How `lacp` bonds spread flows over members.
    pub hashing: BondHashing,
    /// How often `lacp` bonds ask the partner for LACPDUs.
    pub lacp_rate: LacpRate,
    /// LACP system priority (lower wins the aggregation decisions).
    pub lacp_system_priority: u16,
    /// LACP port priority of every member.
    pub lacp_port_priority: u16,
}

/// The bond modes XenServer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BondMode {
    /// IEEE 802.1AX link aggregation with the switch.
    Lacp,
    /// One member carries all traffic; another takes over when it fails.
    ActiveBackup,
    /// Source-MAC load balancing, no switch support needed.
    BalanceSlb,
}

/// Flow hashing of `lacp` bonds, by XenServer's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BondHashing {
    SrcMac,
    TcpUdpPorts,
}

/// LACPDU rate asked of the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LacpRate {
    /// Every second, 3 s timeout.
    Fast,
    /// Every 30 s, 90 s timeout.
    Slow,
}

/// A host network other than management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Interface name of the host on it (`storage`, `migration`, ...).
    pub name: String,
    pub purpose: NetworkPurpose,
    /// `eth<N>` or a bond's name.
    pub interface: String,
    pub vlan: Option<Vlan>,
    /// IP MTU, 68..=9000.
    pub mtu: u16,
    pub ip: IpMode,
}

/// What a host network is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkPurpose {
    /// iSCSI and other storage traffic.
    Storage,
    /// VM live migration.
    Migration,
}

/// LACP priority both ends use unless told otherwise (802.1AX default).
pub const DEFAULT_LACP_PRIORITY: u16 = 32768;

impl Bond {
    /// A bond of `members` in `mode`, with the defaults: `tcpudp_ports`
    /// hashing, fast LACP rate, priorities 32768.
    pub fn new(name: &str, members: &[&str], mode: BondMode) -> Self {
        Bond {
            name: name.into(),
            members: members.iter().map(|&m| String::from(m)).collect(),
            mode,
            hashing: BondHashing::TcpUdpPorts,
            lacp_rate: LacpRate::Fast,
            lacp_system_priority: DEFAULT_LACP_PRIORITY,
            lacp_port_priority: DEFAULT_LACP_PRIORITY,
        }
    }
}

impl Default for Management {
    /// DHCP on `eth0`, untagged, MTU 1500.
    fn default() -> Self {
        Management {
            interface: String::from("eth0"),
            ip: IpMode::Dhcp,
            vlan: None,
            mtu: DEFAULT_MTU,
        }
    }
}

impl Default for HostConfig {
    /// What a host without a config module boots with: DHCP on `eth0`, no root password.
    fn default() -> Self {
        HostConfig {
            hostname: String::from("keel"),
            root_password_hash: None,
            management: Management::default(),
            bonds: Vec::new(),
            networks: Vec::new(),
            trusted_keys: Vec::new(),
            tls: None,
        }
    }
}

/// Format 1 of the boot module's payload, still read (a host upgraded to an
/// image with bonds and VLANs keeps booting from its old module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostConfigV1 {
    pub hostname: String,
    pub root_password_hash: Option<String>,
    pub management: ManagementV1,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManagementV1 {
    pub interface: String,
    pub ip: IpMode,
}

impl From<HostConfigV1> for HostConfig {
    fn from(v1: HostConfigV1) -> Self {
        HostConfig {
            hostname: v1.hostname,
            root_password_hash: v1.root_password_hash,
            management: Management {
                interface: v1.management.interface,
                ip: v1.management.ip,
                ..Management::default()
            },
            bonds: Vec::new(),
            networks: Vec::new(),
            trusted_keys: Vec::new(),
            tls: None,
        }
    }
}
