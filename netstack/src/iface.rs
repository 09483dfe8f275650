//! A host IP interface: what XenServer calls a PIF with an IP address.
//!
//! One [`HostInterface`] is one smoltcp `Interface` with its own `SocketSet`
//! over one [`Nic`] (smoltcp ties one interface to one device). It gets its
//! IPv4 address statically or from DHCP, keeps the default route in step with
//! the gateway, and reports what it has. It always has its IPv6 link-local
//! address (`fe80::/64` from its MAC, modified EUI-64, as RFC 4291 forms
//! it): services listening on a port answer there too (smoltcp has no
//! SLAAC or DHCPv6 client, so that is the IPv6 it can configure by itself). It never reads a clock: every call
//! that can advance a timer takes `now` from the caller and [`HostInterface::poll`]
//! returns when it wants to be called again.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{AnySocket, dhcpv4, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
    Ipv6Address, Ipv6Cidr,
};

use crate::device::{DeviceStats, NicDevice};
use crate::nic::{MacAddress, Nic};

/// How a host interface gets its IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    /// Ask a DHCP server; the interface has no address until a lease arrives.
    Dhcp,
    /// A fixed address, optional default gateway and DNS servers.
    Static {
        address: Ipv4Cidr,
        gateway: Option<Ipv4Address>,
        dns: Vec<Ipv4Address>,
    },
}

/// One host IP interface over one NIC.
pub struct HostInterface<N: Nic> {
    name: String,
    mac: MacAddress,
    device: NicDevice<N>,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// The DHCP client socket, in DHCP mode.
    dhcp: Option<SocketHandle>,
    address: Option<Ipv4Cidr>,
    gateway: Option<Ipv4Address>,
    dns: Vec<Ipv4Address>,
    link_up: bool,
}

impl<N: Nic> HostInterface<N> {
    /// Brings up interface `name` on `nic`. `random_seed` seeds smoltcp's
    /// generator (TCP initial sequence numbers, ephemeral choices, DHCP
    /// transaction ids): it must differ from boot to boot.
    pub fn new(name: &str, nic: N, config: IpConfig, now: Instant, random_seed: u64) -> Self {
        let mut device = NicDevice::new(nic);
        let mac = usable_mac(name, device.mac(), random_seed);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        iface_config.random_seed = random_seed;
        let iface = Interface::new(iface_config, &mut device, now);
        let link_up = device.nic().link_up();

        let mut this = HostInterface {
            name: String::from(name),
            mac,
            device,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dhcp: None,
            address: None,
            gateway: None,
            dns: Vec::new(),
            link_up,
        };
        match config {
            IpConfig::Dhcp => {
                // No IPv4 address until the lease; the link-local one now.
                this.apply(None, None, Vec::new());
                this.dhcp = Some(this.sockets.add(dhcpv4::Socket::new()));
                log::info!("net: {} {} DHCP", this.name, this.mac);
            }
            IpConfig::Static {
                address,
                gateway,
                dns,
            } => {
                this.apply(Some(address), gateway, dns);
                log::info!("net: {} {} static {}", this.name, this.mac, address);
            }
        }
        this
    }

    /// Changes how the interface gets its address, live (`PIF.reconfigure_ip`):
    /// `None` leaves it without an address. The DHCP client, if any, is
    /// dropped first (its lease is abandoned, not released); a new one starts
    /// discovery at the next poll. Open sockets stay; connections bound to an
    /// address the interface no longer has stop getting answers.
    pub fn reconfigure(&mut self, config: Option<IpConfig>) {
        if let Some(handle) = self.dhcp.take() {
            self.sockets.remove(handle);
        }
        match config {
            None => {
                self.apply(None, None, Vec::new());
                log::info!("net: {} {} no address", self.name, self.mac);
            }
            Some(IpConfig::Dhcp) => {
                self.apply(None, None, Vec::new());
                self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
                log::info!("net: {} {} DHCP", self.name, self.mac);
            }
            Some(IpConfig::Static {
                address,
                gateway,
                dns,
            }) => {
                self.apply(Some(address), gateway, dns);
                log::info!("net: {} {} static {}", self.name, self.mac, address);
            }
        }
    }

    /// Whether the address comes from DHCP.
    pub fn uses_dhcp(&self) -> bool {
        self.dhcp.is_some()
    }

    /// Does all pending network work: receives and answers frames, runs
    /// socket timers, sends what sockets queued, and applies DHCP changes.
    /// Returns when to call again (`None`: only when a frame arrives; a time
    /// at or before `now`: straight away).
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        self.watch_link();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        if self.process_dhcp() {
            // A new address or route lets sockets that waited for one send now.
            self.iface.poll(now, &mut self.device, &mut self.sockets);
        }
        self.iface.poll_at(now, &self.sockets)
    }

    /// The interface name (`eth0`, `xenbr0`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names the interface anew: the management interface is named after
    /// its uplink, which a bond made at run time replaces (`eth0` becomes
    /// `bond0`).
    pub fn rename(&mut self, name: &str) {
        log::info!("net: {} is now {name}", self.name);
        self.name = String::from(name);
    }

    /// The MAC address the interface uses.
    pub fn mac(&self) -> MacAddress {
        self.mac
    }

    /// The IPv4 address and prefix, once configured.
    pub fn ipv4_cidr(&self) -> Option<Ipv4Cidr> {
        self.address
    }

    /// The IPv6 link-local address (always configured).
    pub fn ipv6_link_local(&self) -> Ipv6Address {
        link_local(self.mac).address()
    }

    /// The default gateway, if any.
    pub fn gateway(&self) -> Option<Ipv4Address> {
        self.gateway
    }

    /// DNS servers from the static configuration or the DHCP lease.
    pub fn dns_servers(&self) -> &[Ipv4Address] {
        &self.dns
    }

    /// Whether the NIC reported carrier at the last poll.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Frame counters of the underlying device.
    pub fn stats(&self) -> DeviceStats {
        self.device.stats()
    }

    /// The NIC under the interface.
    pub fn nic(&self) -> &N {
        self.device.nic()
    }

    /// The NIC under the interface, mutably.
    pub fn nic_mut(&mut self) -> &mut N {
        self.device.nic_mut()
    }

    /// The interface's sockets.
    pub fn sockets(&self) -> &SocketSet<'static> {
        &self.sockets
    }

    /// The interface's sockets, mutably.
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.sockets
    }

    /// Adds a socket to the interface.
    pub fn add_socket<T: AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        self.sockets.add(socket)
    }

    /// Opens an outgoing TCP connection on the socket `handle` (which needs
    /// the interface's context, hence a method here rather than on the socket).
    pub fn connect_tcp(
        &mut self,
        handle: SocketHandle,
        remote: impl Into<IpEndpoint>,
        local: impl Into<IpListenEndpoint>,
    ) -> Result<(), tcp::ConnectError> {
        let socket = self.sockets.get_mut::<tcp::Socket<'static>>(handle);
        socket.connect(self.iface.context(), remote, local)
    }

    /// Notices carrier changes. When the link comes back in DHCP mode the
    /// client restarts discovery at once: the host may now be on another
    /// network, and waiting for the retry timer would leave it unreachable.
    fn watch_link(&mut self) {
        let up = self.device.nic().link_up();
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        log::info!(
            "net: {} {} link {}",
            self.name,
            self.mac,
            if up { "up" } else { "down" }
        );
        if let (true, Some(handle)) = (up, self.dhcp) {
            self.sockets
                .get_mut::<dhcpv4::Socket<'static>>(handle)
                .reset();
        }
    }

    /// Applies a DHCP lease change; true when the configuration changed.
    fn process_dhcp(&mut self) -> bool {
        let Some(handle) = self.dhcp else {
            return false;
        };
        // Copy the lease out first: the event borrows the socket set.
        let change = match self
            .sockets
            .get_mut::<dhcpv4::Socket<'static>>(handle)
            .poll()
        {
            None => return false,
            Some(dhcpv4::Event::Configured(lease)) => Some((
                lease.address,
                lease.router,
                lease.dns_servers.iter().copied().collect::<Vec<_>>(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        match change {
            Some((address, gateway, dns)) => {
                self.apply(Some(address), gateway, dns);
                match gateway {
                    Some(gw) => log::info!(
                        "net: {} {} DHCP lease {} gw {}",
                        self.name,
                        self.mac,
                        address,
                        gw
                    ),
                    None => log::info!(
                        "net: {} {} DHCP lease {} gw none",
                        self.name,
                        self.mac,
                        address
                    ),
                }
            }
            None => {
                if let Some(old) = self.address {
                    log::warn!("net: {} {} DHCP lease {} lost", self.name, self.mac, old);
                }
                self.apply(None, None, Vec::new());
            }
        }
        true
    }

    /// Makes `address`, `gateway` and `dns` the interface's configuration.
    fn apply(
        &mut self,
        address: Option<Ipv4Cidr>,
        gateway: Option<Ipv4Address>,
        dns: Vec<Ipv4Address>,
    ) {
        let name = &self.name;
        let link_local = link_local(self.mac);
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(cidr) = address
                && addrs.push(IpCidr::Ipv4(cidr)).is_err()
            {
                log::error!("net: {name} address table full, {cidr} not applied");
            }
            if addrs.push(IpCidr::Ipv6(link_local)).is_err() {
                log::error!("net: {name} address table full, {link_local} not applied");
            }
        });
        let routes = self.iface.routes_mut();
        match gateway {
            Some(gw) => {
                if routes.add_default_ipv4_route(gw).is_err() {
                    log::error!("net: {name} route table full, default route via {gw} not applied");
                }
            }
            None => {
                routes.remove_default_ipv4_route();
            }
        }
        self.address = address;
        self.gateway = gateway;
        self.dns = dns;
    }
}

/// The link-local address of an interface with `mac`, as a `/64`.
fn link_local(mac: MacAddress) -> Ipv6Cidr {
    Ipv6Cidr::new(mac.ipv6_link_local(), 64)
}

/// The MAC to give smoltcp. smoltcp panics on a group address, and a driver
/// reporting one is broken hardware or firmware; rather than take the host
/// down, use a locally administered address derived from the seed and say so.
fn usable_mac(name: &str, mac: MacAddress, seed: u64) -> MacAddress {
    if !mac.is_multicast() {
        return mac;
    }
    let b = seed.to_le_bytes();
    let replacement = MacAddress([0x02, b[1], b[2], b[3], b[4], b[5]]);
    log::error!("net: {name} NIC reports group MAC {mac}; using {replacement} instead");
    replacement
}

impl<N: Nic> fmt::Debug for HostInterface<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostInterface")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .field("dhcp", &self.dhcp.is_some())
            .field("address", &self.address)
            .field("gateway", &self.gateway)
            .field("dns", &self.dns)
            .field("link_up", &self.link_up)
            .field("stats", &self.device.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_the_modified_eui64_of_the_mac() {
        // As Linux forms it for 52:54:00:12:34:56.
        let ll = link_local(MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(ll.prefix_len(), 64);
        assert_eq!(
            ll.address(),
            Ipv6Address::new(0xfe80, 0, 0, 0, 0x5054, 0x00ff, 0xfe12, 0x3456)
        );
    }

    #[test]
    fn group_mac_is_replaced_by_a_local_unicast_one() {
        let fixed = usable_mac(
            "eth0",
            MacAddress([0x01, 0, 0x5e, 0, 0, 1]),
            0x0102_0304_0506_0708,
        );
        assert!(!fixed.is_multicast());
        assert!(fixed.is_local());
        let good = MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(usable_mac("eth0", good, 1), good);
    }
}
