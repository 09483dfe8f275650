//! A tap device as a [`Nic`]: this process holds the tap's file descriptor
//! and is the wire end, as QEMU is for a guest NIC. Frames come and go
//! whole, 802.1Q tags included (a packet socket on a veth loses them to the
//! kernel's VLAN offload).
//!
//! The tap can be moved into a test's network namespace after it is opened
//! (`ip link set NAME netns NS`); the descriptor keeps working. The tap's
//! carrier is on while the descriptor is open, which is what
//! [`Nic::link_up`] reports; a tap whose other side is down refuses frames
//! (`EIO`), reported as [`NicError::LinkDown`].

use std::io::ErrorKind;
use std::string::{String, ToString};

use tun_tap::{Iface, Mode};

use super::HostedError;
use crate::nic::{MacAddress, Nic, NicError};
use crate::wire::ETHERNET_HEADER_LEN;

/// A tap device this process is the far end of.
pub struct TapNic {
    iface: Iface,
    name: String,
    mac: MacAddress,
    mtu: usize,
}

impl core::fmt::Debug for TapNic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TapNic")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl TapNic {
    /// Creates tap `name` (it disappears when this is dropped). `mac` is the
    /// address our side sends from; `mtu` the largest IP payload it carries
    /// (set the tap's own MTU to match, with `ip link set NAME mtu N`).
    pub fn create(name: &str, mac: MacAddress, mtu: usize) -> Result<Self, HostedError> {
        let iface = Iface::without_packet_info(name, Mode::Tap).map_err(|e| HostedError::Tap {
            name: name.into(),
            error: e.to_string(),
        })?;
        iface.set_non_blocking().map_err(|e| HostedError::Tap {
            name: name.into(),
            error: e.to_string(),
        })?;
        Ok(TapNic {
            name: iface.name().into(),
            iface,
            mac,
            mtu,
        })
    }

    /// The name the kernel gave the tap.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Nic for TapNic {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn link_up(&self) -> bool {
        true
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        loop {
            match self.iface.recv(buf) {
                Ok(len) => return Ok(Some(len)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(NicError::Device),
            }
        }
    }

    fn can_transmit(&mut self) -> bool {
        true
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        // A tag may come on top of the MTU, as on Linux NICs.
        let max = self.mtu + ETHERNET_HEADER_LEN + crate::wire::VLAN_TAG_LEN;
        if frame.len() < ETHERNET_HEADER_LEN || frame.len() > max {
            return Err(NicError::BadLength {
                len: frame.len(),
                max,
            });
        }
        match self.iface.send(frame) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(NicError::QueueFull),
            Err(e) if e.raw_os_error() == Some(5) => Err(NicError::LinkDown),
            Err(_) => Err(NicError::Device),
        }
    }
}
