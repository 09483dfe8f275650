//! The host's networks over one uplink: the virtual switch with the uplink
//! (a bond or NIC) on one port and one smoltcp [`HostInterface`] per host
//! network (management, storage, migration) on host ports, each on its
//! VLAN with its own MTU and IP configuration.
//!
//! [`HostNetworks::poll`] moves frames between uplink, switch and
//! interfaces and runs the interfaces; it takes `now` from the caller like
//! every state machine here. A bond uplink runs its own timers: poll it
//! (through [`HostNetworks::uplink_mut`]) before this.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::time::Instant;

use crate::iface::{HostInterface, IpConfig};
use crate::nic::{MacAddress, Nic, NicError};
use crate::switch::{
    HostPort, PortId, SCRATCH_LEN, Switch, SwitchError, VifLink, VlanMode, VlanSet, Wake,
};

/// Frames taken from the uplink per poll before the interfaces get a turn.
const UPLINK_FRAMES_PER_POLL: usize = 128;
/// Rounds of "run the interfaces, switch what they sent" per poll: enough
/// for a reply to a frame sent between two host interfaces.
const ROUNDS_PER_POLL: usize = 3;
/// Frames taken from each guest VIF per poll, so one flooding guest cannot
/// keep the host's own interfaces (and its API) from their turn.
const VIF_FRAMES_PER_POLL: usize = 64;
/// Receive buffer for the uplink: any jumbo frame, tagged, with room to
/// spare so a frame over the limit arrives whole and is counted as oversize
/// rather than truncated.
const UPLINK_BUFFER_LEN: usize = 16 * 1024;

/// One host network to bring up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Interface name (`mgmt`, `storage`, ...), unique per host.
    pub name: String,
    /// VLAN ID; on the uplink's native VLAN it travels untagged.
    pub vlan: u16,
    /// IP MTU of the network, 68..=9000.
    pub mtu: usize,
    pub ip: IpConfig,
    /// The interface's MAC; the uplink's when `None` (the VLANs keep the
    /// interfaces apart, as Linux VLAN devices on a bond do).
    pub mac: Option<MacAddress>,
}

/// Why the host networks could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNetworksError {
    /// At least one network is needed.
    NoNetworks,
    Switch(SwitchError),
    DuplicateName(String),
    /// The uplink's MTU is below what a network needs.
    UplinkMtu {
        network: String,
        mtu: usize,
        uplink: usize,
    },
}

impl fmt::Display for HostNetworksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostNetworksError::NoNetworks => write!(f, "no host network to bring up"),
            HostNetworksError::Switch(e) => write!(f, "{e}"),
            HostNetworksError::DuplicateName(n) => write!(f, "two host networks named {n}"),
            HostNetworksError::UplinkMtu {
                network,
                mtu,
                uplink,
            } => write!(
                f,
                "network {network} wants MTU {mtu} but the uplink carries {uplink}: raise the NIC MTU"
            ),
        }
    }
}

impl From<SwitchError> for HostNetworksError {
    fn from(e: SwitchError) -> Self {
        HostNetworksError::Switch(e)
    }
}

/// Uplink counters kept here (the switch counts per port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkStats {
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Frames the uplink's queue refused.
    pub tx_queue_full: u64,
}

#[derive(Debug)]
struct HostNetwork {
    vlan: u16,
    port: PortId,
    iface: HostInterface<HostPort>,
}

/// A guest's VIF: its switch port and the wire to its virtio-net device.
#[derive(Debug)]
struct Vif {
    port: PortId,
    link: VifLink,
}

/// The uplink, the switch and the host interfaces (at least one).
#[derive(Debug)]
pub struct HostNetworks<U: Nic> {
    uplink: U,
    uplink_port: PortId,
    uplink_up: bool,
    switch: Switch,
    networks: Vec<HostNetwork>,
    vifs: Vec<Vif>,
    /// Given to every VIF's link: wakes whoever polls these networks when a
    /// guest sends.
    vif_waker: Option<Arc<dyn Wake>>,
    buffer: Vec<u8>,
    scratch: Vec<u8>,
    stats: UplinkStats,
}

impl<U: Nic> HostNetworks<U> {
    /// Brings up `networks` over `uplink`, whose VLANs are `uplink_vlans`
    /// (usually a trunk with the management network native).
    pub fn new(
        uplink: U,
        uplink_vlans: VlanMode,
        networks: &[NetworkConfig],
        now: Instant,
        random_seed: u64,
    ) -> Result<Self, HostNetworksError> {
        if networks.is_empty() {
            return Err(HostNetworksError::NoNetworks);
        }
        let mut switch = Switch::new();
        for (i, net) in networks.iter().enumerate() {
            if networks[..i].iter().any(|n| n.name == net.name) {
                return Err(HostNetworksError::DuplicateName(net.name.clone()));
            }
            if net.mtu > uplink.mtu() {
                return Err(HostNetworksError::UplinkMtu {
                    network: net.name.clone(),
                    mtu: net.mtu,
                    uplink: uplink.mtu(),
                });
            }
            switch.add_network(net.vlan, net.mtu)?;
        }
        let uplink_port = switch.add_uplink(uplink_vlans)?;
        let mut host = Vec::new();
        for (i, net) in networks.iter().enumerate() {
            let port = switch.add_host_port(net.vlan)?;
            let mac = net.mac.unwrap_or_else(|| uplink.mac());
            let nic = HostPort::new(mac, net.mtu);
            let seed = random_seed.wrapping_add(i as u64);
            let iface = HostInterface::new(&net.name, nic, net.ip.clone(), now, seed);
            host.push(HostNetwork {
                vlan: net.vlan,
                port,
                iface,
            });
        }
        Ok(HostNetworks {
            uplink_up: uplink.link_up(),
            uplink,
            uplink_port,
            switch,
            networks: host,
            vifs: Vec::new(),
            vif_waker: None,
            buffer: vec![0; UPLINK_BUFFER_LEN],
            scratch: vec![0; SCRATCH_LEN],
            stats: UplinkStats::default(),
        })
    }

    /// Moves frames uplink → switch → interfaces and back, runs the
    /// interfaces' timers and the switch's ageing. Returns when to call
    /// again (`None`: only when a frame arrives).
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        self.track_link();
        let mut more_from_uplink = false;
        for taken in 0..=UPLINK_FRAMES_PER_POLL {
            if taken == UPLINK_FRAMES_PER_POLL {
                more_from_uplink = true;
                break;
            }
            match self.uplink.receive(&mut self.buffer) {
                Ok(Some(len)) => {
                    let len = len.min(self.buffer.len());
                    self.switch_frame(now, self.uplink_port, len);
                }
                Ok(None) => break,
                Err(_) => {
                    self.stats.rx_errors += 1;
                    break;
                }
            }
        }
        let mut more_from_vifs = false;
        for i in 0..self.vifs.len() {
            more_from_vifs |= self.drain_vif(now, i);
        }
        let mut due = self.switch.poll(now);
        for _ in 0..ROUNDS_PER_POLL {
            for net in &mut self.networks {
                due = earliest(due, net.iface.poll(now));
            }
            let mut moved = false;
            for i in 0..self.networks.len() {
                moved |= self.drain_host_port(now, i);
            }
            if !moved {
                break;
            }
        }
        let pending = self
            .networks
            .iter()
            .any(|n| n.iface.nic().has_received() || n.iface.nic().has_sent());
        if more_from_uplink || more_from_vifs || pending {
            return Some(now);
        }
        due
    }

    /// Switches what host interface `i` sent; true if there was anything.
    fn drain_host_port(&mut self, now: Instant, i: usize) -> bool {
        let mut moved = false;
        loop {
            let Some(net) = self.networks.get_mut(i) else {
                return moved;
            };
            let port = net.port;
            let buffer = &mut self.buffer;
            let Some(len) = net.iface.nic_mut().take_sent(|frame| {
                let len = frame.len().min(buffer.len());
                buffer[..len].copy_from_slice(&frame[..len]);
                len
            }) else {
                return moved;
            };
            moved = true;
            self.switch_frame(now, port, len);
        }
    }

    /// Switches up to [`VIF_FRAMES_PER_POLL`] frames guest VIF `i` sent;
    /// true if it has more.
    fn drain_vif(&mut self, now: Instant, i: usize) -> bool {
        for _ in 0..VIF_FRAMES_PER_POLL {
            let Some(vif) = self.vifs.get(i) else {
                return false;
            };
            let port = vif.port;
            let Some(frame) = vif.link.host_receive() else {
                return false;
            };
            let len = frame.len().min(self.buffer.len());
            self.buffer[..len].copy_from_slice(&frame[..len]);
            self.switch_frame(now, port, len);
        }
        self.vifs.get(i).is_some_and(|v| v.link.host_has_frames())
    }

    /// Who to wake when a guest sends on any VIF (now and later ones).
    pub fn set_vif_waker(&mut self, waker: Arc<dyn Wake>) {
        for v in &self.vifs {
            v.link.set_host_waker(Arc::clone(&waker));
        }
        self.vif_waker = Some(waker);
    }

    /// Plugs a guest VIF into the network on `vlan`, locked to `mac`: the
    /// switch side of `link`, whose other side is the guest's virtio-net.
    /// The guest device should announce [`Switch::network_mtu`] of `vlan`.
    pub fn add_vif(
        &mut self,
        vlan: u16,
        mac: MacAddress,
        link: VifLink,
    ) -> Result<PortId, SwitchError> {
        let port = self.switch.add_vif(vlan, mac)?;
        if let Some(w) = &self.vif_waker {
            link.set_host_waker(Arc::clone(w));
        }
        self.vifs.push(Vif { port, link });
        Ok(port)
    }

    /// Sets the locking policy of the VIF on `port` (see
    /// [`Switch::set_vif_policy`]): in force from the next frame.
    pub fn set_vif_policy(
        &mut self,
        port: PortId,
        policy: crate::switch::VifPolicy,
    ) -> Result<(), SwitchError> {
        self.switch.set_vif_policy(port, policy)
    }

    /// Carries VLAN `vid` with MTU `mtu` for guests: defines its network on
    /// the switch and has the uplink trunk it (an access uplink becomes a
    /// trunk with its VLAN native). The host gets no interface on it.
    /// Carrying a VLAN again updates its MTU.
    pub fn carry_vlan(&mut self, vid: u16, mtu: usize) -> Result<(), HostNetworksError> {
        if mtu > self.uplink.mtu() {
            return Err(HostNetworksError::UplinkMtu {
                network: alloc::format!("VLAN {vid}"),
                mtu,
                uplink: self.uplink.mtu(),
            });
        }
        let mode = self
            .switch
            .port_vlans(self.uplink_port)
            .cloned()
            .ok_or(SwitchError::NoSuchPort(self.uplink_port))?;
        let mode = match mode {
            VlanMode::Access(native) if native == vid => VlanMode::Access(native),
            VlanMode::Access(native) => VlanMode::Trunk {
                native: Some(native),
                allowed: VlanSet::of(&[vid]).map_err(SwitchError::from)?,
            },
            VlanMode::Trunk {
                native,
                mut allowed,
            } => {
                if native != Some(vid) {
                    allowed.insert(vid).map_err(SwitchError::from)?;
                }
                VlanMode::Trunk { native, allowed }
            }
        };
        self.switch.add_network(vid, mtu)?;
        self.switch.set_port_vlans(self.uplink_port, mode)?;
        Ok(())
    }

    /// Stops carrying guest VLAN `vid` (see [`HostNetworks::carry_vlan`]):
    /// refused while a VIF or a host interface is on it.
    pub fn drop_vlan(&mut self, vid: u16) -> Result<(), HostNetworksError> {
        if self.networks.iter().any(|n| n.vlan == vid) {
            return Err(SwitchError::NetworkInUse(vid).into());
        }
        // First, so that a VLAN still in use is left as it was.
        self.switch.remove_network(vid)?;
        let mode = self
            .switch
            .port_vlans(self.uplink_port)
            .cloned()
            .ok_or(SwitchError::NoSuchPort(self.uplink_port))?;
        if let VlanMode::Trunk {
            native,
            mut allowed,
        } = mode
        {
            allowed.remove(vid);
            self.switch
                .set_port_vlans(self.uplink_port, VlanMode::Trunk { native, allowed })?;
        }
        Ok(())
    }

    /// Replaces the uplink at run time: `rebuild` takes the uplink (its
    /// place holds `U::default()` meanwhile) and gives back the one to use
    /// from now on (the same one when it could not build another) and what
    /// to report. The switch port keeps its VLANs; host interfaces, VIFs and
    /// their addresses stay as they are, so the new uplink should answer to
    /// the old one's MAC (a bond of the old NIC and others does, with that
    /// NIC first). The interfaces follow the new uplink's carrier at once.
    pub fn replace_uplink_with<R>(&mut self, rebuild: impl FnOnce(U) -> (U, R)) -> R
    where
        U: Default,
    {
        let old = core::mem::take(&mut self.uplink);
        let (uplink, report) = rebuild(old);
        self.uplink = uplink;
        self.track_link();
        report
    }

    /// Unplugs the VIF on `port` (its learned addresses go with it).
    pub fn remove_vif(&mut self, port: PortId) -> Result<(), SwitchError> {
        let i = self
            .vifs
            .iter()
            .position(|v| v.port == port)
            .ok_or(SwitchError::NoSuchPort(port))?;
        self.vifs.remove(i);
        self.switch.remove_port(port)
    }

    /// The wire of the VIF on `port`.
    pub fn vif_link(&self, port: PortId) -> Option<&VifLink> {
        self.vifs.iter().find(|v| v.port == port).map(|v| &v.link)
    }

    /// Switches `self.buffer[..len]`, which arrived on `ingress`.
    fn switch_frame(&mut self, now: Instant, ingress: PortId, len: usize) {
        let HostNetworks {
            uplink,
            uplink_port,
            switch,
            networks,
            vifs,
            buffer,
            scratch,
            stats,
            ..
        } = self;
        let frame = &buffer[..len];
        switch.forward(now, ingress, frame, scratch, &mut |to, copy| {
            if to == *uplink_port {
                match uplink.transmit(copy) {
                    Ok(()) => {}
                    Err(NicError::QueueFull) => stats.tx_queue_full += 1,
                    Err(_) => stats.tx_errors += 1,
                }
            } else if let Some(net) = networks.iter_mut().find(|n| n.port == to) {
                net.iface.nic_mut().deliver(copy);
            } else if let Some(vif) = vifs.iter().find(|v| v.port == to) {
                // A full queue drops the copy; the link counts it.
                vif.link.host_send(copy);
            }
        });
    }

    /// Follows the uplink's carrier: the switch stops using it (and forgets
    /// what it learned there) and the interfaces see the link go.
    fn track_link(&mut self) {
        let up = self.uplink.link_up();
        if up == self.uplink_up {
            return;
        }
        self.uplink_up = up;
        let _ = self.switch.set_port_up(self.uplink_port, up);
        for net in &mut self.networks {
            net.iface.nic_mut().set_link_up(up);
        }
    }

    /// The interface of host network `name`.
    pub fn interface(&self, name: &str) -> Option<&HostInterface<HostPort>> {
        self.networks
            .iter()
            .find(|n| n.iface.name() == name)
            .map(|n| &n.iface)
    }

    pub fn interface_mut(&mut self, name: &str) -> Option<&mut HostInterface<HostPort>> {
        self.networks
            .iter_mut()
            .find(|n| n.iface.name() == name)
            .map(|n| &mut n.iface)
    }

    /// The first network's interface (the host's management interface).
    pub fn primary(&self) -> &HostInterface<HostPort> {
        // `new` refuses an empty list and nothing removes networks.
        &self.networks[0].iface
    }

    pub fn primary_mut(&mut self) -> &mut HostInterface<HostPort> {
        &mut self.networks[0].iface
    }

    /// The VLAN of host network `name`.
    pub fn vlan(&self, name: &str) -> Option<u16> {
        self.networks
            .iter()
            .find(|n| n.iface.name() == name)
            .map(|n| n.vlan)
    }

    /// Every host interface, in configuration order.
    pub fn interfaces(&self) -> impl Iterator<Item = &HostInterface<HostPort>> {
        self.networks.iter().map(|n| &n.iface)
    }

    pub fn uplink(&self) -> &U {
        &self.uplink
    }

    pub fn uplink_mut(&mut self) -> &mut U {
        &mut self.uplink
    }

    pub fn uplink_port(&self) -> PortId {
        self.uplink_port
    }

    pub fn uplink_stats(&self) -> UplinkStats {
        self.stats
    }

    pub fn switch(&self) -> &Switch {
        &self.switch
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
