//! Guest VIFs on the host's switch: the MAC a guest gets from its name, and
//! plugging a VM's virtio-net (its [`VifLink`]) into a host network.

use alloc::string::String;

use netstack::switch::{PortId, VifLink};
use netstack::{HostNetworks, MacAddress, Nic};

/// Xen's OUI: a VIF's MAC is `00:16:3e` and three bytes from the VM's name,
/// the first below 0x80 (the half of the range Xen tools generate from).
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The MAC of NIC `index` of VM `vm`: stable across boots and hosts, so a
/// guest keeps its DHCP lease. FNV-1a of the name and the index.
pub fn guest_mac(vm: &str, index: u8) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in vm.bytes().chain([0, index]) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_be_bytes();
    [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], a & 0x7f, b, c]
}

/// Where a VIF was plugged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluggedVif {
    pub port: PortId,
    pub vlan: u16,
    /// The network's MTU, for the guest's device to announce.
    pub mtu: u16,
}

/// Why a VIF could not be plugged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VifError {
    /// No host network of that name (`management` names the management one).
    NoSuchNetwork(String),
    Switch(String),
}

impl core::fmt::Display for VifError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VifError::NoSuchNetwork(n) => write!(
                f,
                "no host network {n:?} (use `management` or a host interface name)"
            ),
            VifError::Switch(e) => write!(f, "switch: {e}"),
        }
    }
}

/// Plugs VM `vm`'s VIF (the switch side of `link`) into host network
/// `network` (`management` or a host interface's name), locked to `mac`.
pub fn plug<N: Nic>(
    net: &mut HostNetworks<N>,
    vm: &str,
    network: &str,
    mac: [u8; 6],
    link: VifLink,
) -> Result<PluggedVif, VifError> {
    let name = if network == crate::xenapi::MANAGEMENT_NETWORK {
        String::from(net.primary().name())
    } else {
        String::from(network)
    };
    let vlan = net
        .vlan(&name)
        .ok_or_else(|| VifError::NoSuchNetwork(network.into()))?;
    plug_vlan(net, vm, &name, vlan, mac, link)
}

/// Plugs VM `vm`'s VIF into the network on switch VLAN `vlan` (a host
/// network's, or a guest VLAN the uplink carries; `network` names it in
/// the log), locked to `mac`.
pub fn plug_vlan<N: Nic>(
    net: &mut HostNetworks<N>,
    vm: &str,
    network: &str,
    vlan: u16,
    mac: [u8; 6],
    link: VifLink,
) -> Result<PluggedVif, VifError> {
    let mtu = net
        .switch()
        .network_mtu(vlan)
        .and_then(|m| u16::try_from(m).ok())
        .ok_or_else(|| VifError::NoSuchNetwork(alloc::format!("VLAN {vlan}")))?;
    let port = net
        .add_vif(vlan, MacAddress(mac), link)
        .map_err(|e| VifError::Switch(alloc::format!("{e}")))?;
    log::info!(
        "vif: vm {vm}: {} on network {network} (VLAN {vlan}, MTU {mtu}) at switch {port}",
        MacAddress(mac)
    );
    Ok(PluggedVif { port, vlan, mtu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_macs_are_stable_xen_style_and_differ_by_vm_and_index() {
        let a = guest_mac("guest", 0);
        assert_eq!(a, guest_mac("guest", 0));
        assert_eq!(&a[..3], &XEN_OUI);
        assert!(a[3] < 0x80);
        assert_ne!(a, guest_mac("guest", 1));
        assert_ne!(a, guest_mac("guest2", 0));
        assert!(!MacAddress(a).is_multicast());
    }
}
