//! The narrow interface between the network layer and NIC drivers.
//!
//! Drivers (the kernel's virtio-net, later e1000e) implement [`Nic`]; everything
//! above (host interfaces, bonds, the switch) only sees this trait. Frames are
//! whole Ethernet frames without FCS. The caller owns the buffers.

use core::fmt;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub const BROADCAST: MacAddress = MacAddress([0xff; 6]);

    /// True for group (multicast and broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for locally administered addresses.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The IPv6 link-local address an interface with this MAC takes:
    /// `fe80::/64` and the modified EUI-64 interface identifier (RFC 4291
    /// appendix A).
    pub fn ipv6_link_local(&self) -> core::net::Ipv6Addr {
        let m = self.0;
        core::net::Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a NIC operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicError {
    /// The transmit ring is full; retry after the next poll.
    QueueFull,
    /// The frame is larger than the NIC's MTU allows, or smaller than a header.
    BadLength { len: usize, max: usize },
    /// The caller's receive buffer is smaller than the pending frame; the frame was dropped.
    BufferTooSmall { needed: usize },
    /// The device reported an error or is in an unusable state.
    Device,
    /// No link to send on (a bond with no usable member); the frame was dropped.
    LinkDown,
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicError::QueueFull => write!(f, "transmit queue full"),
            NicError::BadLength { len, max } => write!(f, "frame of {len} bytes (limit {max})"),
            NicError::BufferTooSmall { needed } => {
                write!(f, "receive buffer too small (frame needs {needed} bytes)")
            }
            NicError::Device => write!(f, "device error"),
            NicError::LinkDown => write!(f, "no link: check cabling and the partner switch"),
        }
    }
}

/// A network interface card as the network layer sees it: a poll-driven
/// source and sink of Ethernet frames.
pub trait Nic {
    /// The NIC's burned-in (or configured) MAC address.
    fn mac(&self) -> MacAddress;

    /// Largest Ethernet payload (IP MTU) the NIC carries; the frame is 14 bytes more.
    fn mtu(&self) -> usize;

    /// Whether the link (carrier) is up.
    fn link_up(&self) -> bool;

    /// Copies the next received frame into `buf` and returns its length, or
    /// `Ok(None)` when nothing is pending.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError>;

    /// Whether a call to [`Nic::transmit`] would be accepted now.
    fn can_transmit(&mut self) -> bool;

    /// Queues one frame for transmission.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError>;
}

impl<N: Nic + ?Sized> Nic for alloc::boxed::Box<N> {
    fn mac(&self) -> MacAddress {
        (**self).mac()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn link_up(&self) -> bool {
        (**self).link_up()
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        (**self).receive(buf)
    }
    fn can_transmit(&mut self) -> bool {
        (**self).can_transmit()
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        (**self).transmit(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_display_and_flags() {
        let m = MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(m.to_string(), "52:54:00:12:34:56");
        assert!(!m.is_multicast());
        // QEMU's 52:54:00 prefix has the locally-administered bit (0x02) set.
        assert!(m.is_local());
        assert!(!MacAddress([0x00, 0x1b, 0x21, 0, 0, 1]).is_local());
        assert!(MacAddress::BROADCAST.is_multicast());
        assert!(MacAddress([0x02, 0, 0, 0, 0, 1]).is_local());
    }
}
