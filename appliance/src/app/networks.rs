//! From the host config to the host's networks: the uplink that carries
//! management (one NIC, or a bond of them), the virtual switch, and a host
//! interface per network on that uplink (management first, then storage
//! and migration networks), each on its VLAN with its MTU.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use host_config::{BondHashing, BondMode, HostConfig, LacpRate, Vlan};
use netstack::bond::{Bond, BondConfig, BondMode as NetBondMode, HashPolicy};
use netstack::lacp::{LacpConfig, LacpRate as NetLacpRate};
use netstack::switch::{MAX_VLAN, VlanMode, VlanSet};
use netstack::{HostNetworks, NetworkConfig, Nic, Uplink};
use smoltcp::time::Instant;

use super::ip_config;

/// Why the host's networks could not be brought up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    /// The config names a NIC the machine does not have.
    NoSuchNic {
        name: String,
        found: usize,
    },
    /// The management interface names a bond the config does not define
    /// (the host tool refuses such a config; the module is data).
    NoSuchBond(String),
    Bond(String),
    Networks(String),
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::NoSuchNic { name, found } => {
                write!(f, "NIC {name} does not exist ({found} NICs found)")
            }
            NetworkError::NoSuchBond(name) => write!(f, "no bond {name} in the host config"),
            NetworkError::Bond(e) => write!(f, "bond: {e}"),
            NetworkError::Networks(e) => write!(f, "{e}"),
        }
    }
}

/// The host's networks over the management uplink, and the NICs it leaves
/// spare. The management
/// interface is the first one and is named after its uplink (`eth0`,
/// `bond0`), as XenServer names the management PIF's device.
///
/// Not inlined: it runs once, and its temporaries must not stay on the
/// caller's (the boot stack's) frame for the host's lifetime.
#[inline(never)]
pub fn build<N: Nic>(
    config: &HostConfig,
    nics: Vec<N>,
    now: Instant,
    seed: u64,
) -> Result<(HostNetworks<Uplink<N>>, Nics<N>), NetworkError> {
    let found = nics.len();
    let mut nics: Vec<Option<N>> = nics.into_iter().map(Some).collect();
    let mut take = |name: &str| -> Result<N, NetworkError> {
        nic_index(name)
            .and_then(|i| nics.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| NetworkError::NoSuchNic {
                name: name.into(),
                found,
            })
    };
    let uplink_name = config.management.interface.as_str();
    let (uplink, uplink_nics) = match config.bonds.iter().find(|b| b.name == uplink_name) {
        Some(bond) => {
            let members = bond
                .members
                .iter()
                .map(|m| take(m))
                .collect::<Result<Vec<N>, _>>()?;
            let indices = bond.members.iter().filter_map(|m| nic_index(m)).collect();
            let bond = make_bond(bond, members, now)?;
            (Uplink::Bond(Box::new(bond)), indices)
        }
        None if uplink_name.starts_with("bond") => {
            return Err(NetworkError::NoSuchBond(uplink_name.into()));
        }
        None => (
            Uplink::Nic(take(uplink_name)?),
            nic_index(uplink_name).into_iter().collect(),
        ),
    };
    // The NICs the uplink does not use wait for a bond made through the API.
    let spare = nics
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n)))
        .collect();
    let nics = Nics {
        uplink: uplink_nics,
        spare,
    };

    // Management first, then the networks that share its uplink.
    let mut wanted: Vec<(String, Option<Vlan>, u16, &host_config::IpMode)> = Vec::new();
    let m = &config.management;
    wanted.push((m.interface.clone(), m.vlan, m.mtu, &m.ip));
    for net in &config.networks {
        if net.interface != uplink_name {
            log::error!(
                "net: network {} is on {}; only networks on the management interface ({uplink_name}) are brought up yet",
                net.name,
                net.interface
            );
            continue;
        }
        if usize::from(net.mtu) > uplink.mtu() {
            log::error!(
                "net: network {} wants MTU {} but {uplink_name} carries {}; not brought up",
                net.name,
                net.mtu,
                uplink.mtu()
            );
            continue;
        }
        wanted.push((net.name.clone(), net.vlan, net.mtu, &net.ip));
    }

    // The switch needs a VLAN ID for an untagged network without one: the
    // highest ID no tagged network uses.
    let tagged: Vec<u16> = wanted
        .iter()
        .filter_map(|(_, v, ..)| v.map(|v| v.id))
        .collect();
    let spare = (1..=MAX_VLAN)
        .rev()
        .find(|id| !tagged.contains(id))
        .unwrap_or(MAX_VLAN);
    let mut native = None;
    let mut allowed = Vec::new();
    let mut networks = Vec::new();
    for (name, vlan, mtu, ip) in wanted {
        let id = match vlan {
            Some(v) if !v.native => {
                allowed.push(v.id);
                v.id
            }
            Some(v) => {
                native = Some(v.id);
                v.id
            }
            None => {
                native = Some(spare);
                spare
            }
        };
        networks.push(NetworkConfig {
            name,
            vlan: id,
            mtu: usize::from(mtu),
            ip: ip_config(ip),
            mac: None,
        });
    }
    let vlans = match (native, allowed.is_empty()) {
        (Some(id), true) => VlanMode::Access(id),
        (native, _) => VlanMode::Trunk {
            native,
            allowed: VlanSet::of(&allowed).map_err(|e| NetworkError::Networks(format!("{e}")))?,
        },
    };
    let nets = HostNetworks::new(uplink, vlans, &networks, now, seed)
        .map_err(|e| NetworkError::Networks(format!("{e}")))?;
    for iface in nets.interfaces() {
        let vlan = nets.vlan(iface.name()).filter(|id| tagged.contains(id));
        match (vlan, native) {
            (Some(id), Some(n)) if id == n => {
                log::info!(
                    "net: {} on {uplink_name} VLAN {id} (native, untagged)",
                    iface.name()
                )
            }
            (Some(id), _) => log::info!("net: {} on {uplink_name} VLAN {id}", iface.name()),
            (None, _) => log::info!("net: {} on {uplink_name} untagged", iface.name()),
        }
    }
    Ok((nets, nics))
}

/// The netstack bond `bond` of the host config (or of `Bond.create`)
/// describes, over `members` (in `bond.members` order).
pub(super) fn make_bond<N: Nic>(
    bond: &host_config::Bond,
    members: Vec<N>,
    now: Instant,
) -> Result<Bond<N>, NetworkError> {
    let system = members.first().map(Nic::mac).unwrap_or_default();
    let mode = match bond.mode {
        BondMode::Lacp => {
            let mut lacp = LacpConfig::new(system);
            lacp.system_priority = bond.lacp_system_priority;
            lacp.rate = match bond.lacp_rate {
                LacpRate::Fast => NetLacpRate::Fast,
                LacpRate::Slow => NetLacpRate::Slow,
            };
            let hash = match bond.hashing {
                BondHashing::SrcMac => HashPolicy::SrcMac,
                BondHashing::TcpUdpPorts => HashPolicy::TcpUdpPorts,
            };
            NetBondMode::Lacp { hash, lacp }
        }
        BondMode::ActiveBackup => NetBondMode::ActiveBackup,
        BondMode::BalanceSlb => NetBondMode::BalanceSlb,
    };
    let mut bond_config = BondConfig::new(mode);
    bond_config.port_priority = bond.lacp_port_priority;
    Bond::new(bond_config, members, now).map_err(|e| NetworkError::Bond(format!("{e}")))
}

/// The host's NICs by index (`eth<N>`): those the uplink is made of, in its
/// order, and the others.
#[derive(Debug)]
pub struct Nics<N> {
    pub uplink: Vec<usize>,
    pub spare: BTreeMap<usize, N>,
}

/// The index of NIC `eth<N>`.
pub(super) fn nic_index(name: &str) -> Option<usize> {
    name.strip_prefix("eth")?.parse().ok()
}
