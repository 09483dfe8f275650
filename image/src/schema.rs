//! The host configuration as the appliance sees it after compilation.
//! Field order is part of the boot-module format (postcard is positional):
//! append new fields at the end and bump the module format version.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// First-boot settings of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// Host name (RFC 1123 label rules, at most 63 characters).
    pub hostname: String,
    /// Salted hash of the root password in PHC string form
    /// (`$pbkdf2-sha256$i=<iterations>,l=32$<salt b64>$<hash b64>`).
    /// `None` means no password was provisioned: API logins are refused.
    pub root_password_hash: Option<String>,
    /// The management interface.
    pub management: Management,
}

/// The management network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Management {
    /// Which NIC carries management traffic: `eth0` is the first NIC found.
    pub interface: String,
    /// How it gets its IPv4 address.
    pub ip: IpMode,
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

impl Default for HostConfig {
    /// What a host without a config module boots with: DHCP on `eth0`, no root password.
    fn default() -> Self {
        HostConfig {
            hostname: String::from("keel"),
            root_password_hash: None,
            management: Management {
                interface: String::from("eth0"),
                ip: IpMode::Dhcp,
            },
        }
    }
}
