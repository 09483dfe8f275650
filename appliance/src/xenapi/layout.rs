//! The host's network layout as the XenAPI shows it: the physical NICs, the
//! bond that carries management and the VLAN networks on it. Derived from
//! the host config and what the appliance brought up; `host` turns it into
//! PIF, Bond, VLAN and network objects.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use host_config::{BondHashing, BondMode, HostConfig, IpMode, LacpRate};

/// A physical NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicFacts {
    /// `eth<N>`.
    pub device: String,
    pub mac: Option<[u8; 6]>,
    /// Whether it carries traffic (the management uplink or one of its bond's members).
    pub in_use: bool,
}

/// A bond of NICs, as xapi describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondFacts {
    /// `bond<N>`.
    pub device: String,
    /// Member NICs, `eth<N>`; the first is the primary.
    pub members: Vec<String>,
    /// `lacp`, `active-backup` or `balance-slb`.
    pub mode: &'static str,
    /// xapi's bond properties (`hashing_algorithm`, `lacp-time`).
    pub properties: Vec<(&'static str, &'static str)>,
    /// Members that can carry traffic now.
    pub links_up: u32,
}

/// A tagged VLAN network on an uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanFacts {
    /// The network's name in the host config (`storage`); `management`
    /// for a tagged management network.
    pub name: String,
    /// The uplink it is tagged on (`eth0`, `bond0`).
    pub device: String,
    pub tag: u16,
    pub mtu: u16,
    pub dhcp: bool,
    /// Address and prefix length, once there is one.
    pub address: Option<([u8; 4], u8)>,
}

/// Everything the PIF, Bond, VLAN and network objects say. The default
/// (no NICs listed) describes a single NIC: the management one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkLayout {
    /// Every physical NIC, `eth0` first.
    pub nics: Vec<NicFacts>,
    pub bonds: Vec<BondFacts>,
    /// Tagged VLAN networks, the management one (if tagged) included.
    pub vlans: Vec<VlanFacts>,
    /// The management network's tag when it travels tagged.
    pub management_vlan: Option<u16>,
    /// The management network's MTU (0: the default, 1500).
    pub management_mtu: u16,
}

/// The name the management network's VLAN facts carry.
pub const MANAGEMENT: &str = "management";

pub fn mode_name(mode: BondMode) -> &'static str {
    match mode {
        BondMode::Lacp => "lacp",
        BondMode::ActiveBackup => "active-backup",
        BondMode::BalanceSlb => "balance-slb",
    }
}

/// xapi's properties of a bond in `mode` (`xapi_bond.ml`): LACP bonds say
/// how they hash and their LACPDU rate; SLB bonds hash by source MAC.
pub fn properties(bond: &host_config::Bond) -> Vec<(&'static str, &'static str)> {
    match bond.mode {
        BondMode::Lacp => alloc::vec![
            (
                "hashing_algorithm",
                match bond.hashing {
                    BondHashing::SrcMac => "src_mac",
                    BondHashing::TcpUdpPorts => "tcpudp_ports",
                },
            ),
            (
                "lacp-time",
                match bond.lacp_rate {
                    LacpRate::Fast => "fast",
                    LacpRate::Slow => "slow",
                },
            ),
        ],
        BondMode::BalanceSlb => alloc::vec![("hashing_algorithm", "src_mac")],
        BondMode::ActiveBackup => Vec::new(),
    }
}

/// How xapi describes `bond` (its links counted by the caller).
pub fn bond_facts(bond: &host_config::Bond) -> BondFacts {
    BondFacts {
        device: bond.name.clone(),
        members: bond.members.clone(),
        mode: mode_name(bond.mode),
        properties: properties(bond),
        links_up: 0,
    }
}

/// The management uplink `uplink` (`management` names it) becomes `bond`
/// (`Bond.create` on a running host): its members are in use, the networks
/// tagged on the uplink are tagged on the bond, management is on the bond.
pub fn bond_uplink(layout: &mut NetworkLayout, management: &mut String, bond: &host_config::Bond) {
    let old = core::mem::replace(management, bond.name.clone());
    for nic in &mut layout.nics {
        if bond.members.contains(&nic.device) {
            nic.in_use = true;
        }
    }
    for vlan in &mut layout.vlans {
        if vlan.device == old || layout.bonds.iter().any(|b| b.device == vlan.device) {
            vlan.device = bond.name.clone();
        }
    }
    layout.bonds = alloc::vec![bond_facts(bond)];
}

/// The management bond is dissolved (`Bond.destroy`): NIC `nic` alone
/// carries management and the networks tagged on the bond.
pub fn unbond_uplink(layout: &mut NetworkLayout, management: &mut String, nic: &str) {
    let old = core::mem::replace(management, String::from(nic));
    for n in &mut layout.nics {
        n.in_use = n.device == nic;
    }
    for vlan in &mut layout.vlans {
        if vlan.device == old {
            vlan.device = String::from(nic);
        }
    }
    layout.bonds.retain(|b| b.device != old);
}

/// The index of NIC `eth<N>`.
fn nic_index(name: &str) -> Option<usize> {
    name.strip_prefix("eth")?.parse().ok()
}

/// How many NICs the config names (one past the highest `eth<N>`): what a
/// hosted host, which has no NICs of its own, shows.
pub fn named_nics(config: &HostConfig) -> usize {
    let names = core::iter::once(config.management.interface.as_str())
        .chain(
            config
                .bonds
                .iter()
                .flat_map(|b| b.members.iter().map(String::as_str)),
        )
        .chain(config.networks.iter().map(|n| n.interface.as_str()));
    names
        .filter_map(nic_index)
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(1)
        .min(64)
}

/// The layout of a host whose NICs have MACs `nics` (`eth0` first; `None`
/// when unknown), set up from `config`. `brought_up(name)` says whether the
/// host network `name` (a `[[network]]`) was brought up. Only the bond that
/// carries management is made, as the appliance does.
pub fn from_config(
    config: &HostConfig,
    nics: &[Option<[u8; 6]>],
    brought_up: &dyn Fn(&str) -> bool,
) -> NetworkLayout {
    let m = &config.management;
    let uplink = m.interface.as_str();
    let bond = config.bonds.iter().find(|b| b.name == uplink);
    let nics = nics
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let device = format!("eth{i}");
            let in_use = device == uplink || bond.is_some_and(|b| b.members.contains(&device));
            NicFacts {
                device,
                mac: *mac,
                in_use,
            }
        })
        .collect();
    let bonds = bond
        .map(|b| BondFacts {
            device: b.name.clone(),
            members: b.members.clone(),
            mode: mode_name(b.mode),
            properties: properties(b),
            links_up: 0,
        })
        .into_iter()
        .collect();
    let management_vlan = m.vlan.filter(|v| !v.native).map(|v| v.id);
    let mut vlans = Vec::new();
    if let Some(tag) = management_vlan {
        vlans.push(VlanFacts {
            name: String::from(MANAGEMENT),
            device: m.interface.clone(),
            tag,
            mtu: m.mtu,
            dhcp: matches!(m.ip, IpMode::Dhcp),
            address: None,
        });
    }
    for net in &config.networks {
        let Some(vlan) = net.vlan.filter(|v| !v.native) else {
            continue;
        };
        if net.interface != uplink || !brought_up(&net.name) {
            continue;
        }
        let address = match &net.ip {
            IpMode::Static(s) => Some((s.address, s.prefix_len)),
            IpMode::Dhcp => None,
        };
        vlans.push(VlanFacts {
            name: net.name.clone(),
            device: net.interface.clone(),
            tag: vlan.id,
            mtu: net.mtu,
            dhcp: matches!(net.ip, IpMode::Dhcp),
            address,
        });
    }
    NetworkLayout {
        nics,
        bonds,
        vlans,
        management_vlan,
        management_mtu: m.mtu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_config::{Bond, Network, NetworkPurpose, Vlan};

    fn bonded() -> HostConfig {
        let mut config = HostConfig::default();
        let mut bond = Bond::new("bond0", &["eth0", "eth1"], BondMode::Lacp);
        bond.lacp_rate = LacpRate::Slow;
        config.bonds = alloc::vec![bond];
        config.management.interface = String::from("bond0");
        config.management.vlan = Some(Vlan {
            id: 5,
            native: false,
        });
        config.networks = alloc::vec![
            Network {
                name: String::from("storage"),
                purpose: NetworkPurpose::Storage,
                interface: String::from("bond0"),
                vlan: Some(Vlan {
                    id: 20,
                    native: false
                }),
                mtu: 9000,
                ip: IpMode::Dhcp,
            },
            Network {
                name: String::from("elsewhere"),
                purpose: NetworkPurpose::Storage,
                interface: String::from("eth3"),
                vlan: Some(Vlan {
                    id: 30,
                    native: false
                }),
                mtu: 1500,
                ip: IpMode::Dhcp,
            },
        ];
        config
    }

    #[test]
    fn a_default_host_has_one_nic_and_nothing_else() {
        let config = HostConfig::default();
        assert_eq!(named_nics(&config), 1);
        let layout = from_config(&config, &[Some([2, 0, 0, 0, 0, 1])], &|_| true);
        assert_eq!(layout.nics.len(), 1);
        assert!(layout.nics[0].in_use);
        assert!(layout.bonds.is_empty() && layout.vlans.is_empty());
        assert_eq!(layout.management_vlan, None);
    }

    #[test]
    fn bonds_and_tagged_networks_on_the_uplink() {
        let config = bonded();
        assert_eq!(named_nics(&config), 4);
        let layout = from_config(&config, &[None; 4], &|_| true);
        let used: Vec<bool> = layout.nics.iter().map(|n| n.in_use).collect();
        assert_eq!(used, [true, true, false, false]);
        assert_eq!(layout.bonds.len(), 1);
        assert_eq!(layout.bonds[0].mode, "lacp");
        assert_eq!(
            layout.bonds[0].properties,
            [("hashing_algorithm", "tcpudp_ports"), ("lacp-time", "slow")]
        );
        // Management (tagged) and storage; the network on eth3 is not brought up.
        let tags: Vec<(&str, u16)> = layout
            .vlans
            .iter()
            .map(|v| (v.name.as_str(), v.tag))
            .collect();
        assert_eq!(tags, [(MANAGEMENT, 5), ("storage", 20)]);
        assert_eq!(layout.management_vlan, Some(5));
        // A network the appliance did not bring up is not shown.
        let layout = from_config(&config, &[None; 4], &|name| name != "storage");
        assert_eq!(layout.vlans.len(), 1);
    }

    #[test]
    fn native_vlans_are_untagged() {
        let mut config = bonded();
        config.management.vlan = Some(Vlan {
            id: 5,
            native: true,
        });
        config.bonds[0].mode = BondMode::BalanceSlb;
        let layout = from_config(&config, &[None; 2], &|_| true);
        assert_eq!(layout.management_vlan, None);
        assert_eq!(layout.vlans.len(), 1);
        assert_eq!(
            layout.bonds[0].properties,
            [("hashing_algorithm", "src_mac")]
        );
    }
}
