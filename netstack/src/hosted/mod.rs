//! Hosted NICs for tests on Linux (feature `hosted`): a [`PacketNic`] sends
//! and receives whole Ethernet frames on an existing Linux interface (a veth
//! end, a tap, a dummy) through an `AF_PACKET` socket, with the interface's
//! carrier as its link state. The kernel takes 802.1Q tags off the frames a
//! packet socket receives (they travel in `PACKET_AUXDATA`, which has no safe
//! wrapper), so a `PacketNic` carries untagged traffic only; trunks use taps.
//!
//! The socket work goes through the `nix` crate's safe wrappers, so this
//! module needs no `unsafe`; it needs `std`, root (or `CAP_NET_RAW`) and is
//! never part of the image. [`TapNic`] is the other hosted NIC: a tap device
//! whose far end is this process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::string::String;
use std::{fmt, format, fs};

use nix::errno::Errno;
use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, bind, recvfrom, send,
    socket,
};

use crate::nic::{MacAddress, Nic, NicError};

mod tap;
pub use tap::TapNic;

/// `sll_pkttype` of a frame this host sent (linux/if_packet.h): packet sockets
/// see their own transmissions, which must not come back as received.
const PACKET_OUTGOING: u8 = 4;

/// Why a [`PacketNic`] could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostedError {
    /// No interface of that name in this network namespace.
    NoSuchInterface(String),
    /// A system call failed; `Errno::EPERM` means the test needs root.
    Os { call: &'static str, errno: Errno },
    /// The interface's MAC address could not be read from sysfs.
    Mac(String),
    /// A tap device could not be created (needs root and `/dev/net/tun`).
    Tap { name: String, error: String },
}

impl fmt::Display for HostedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostedError::NoSuchInterface(name) => {
                write!(
                    f,
                    "no interface {name} (create it first, e.g. with `ip link add`)"
                )
            }
            HostedError::Os { call, errno } => {
                write!(
                    f,
                    "{call} failed: {errno} (packet sockets need root or CAP_NET_RAW)"
                )
            }
            HostedError::Mac(name) => write!(f, "cannot read the MAC address of {name}"),
            HostedError::Tap { name, error } => write!(
                f,
                "cannot create tap {name}: {error} (taps need root and /dev/net/tun)"
            ),
        }
    }
}

/// A Linux network interface as a [`Nic`].
#[derive(Debug)]
pub struct PacketNic {
    fd: OwnedFd,
    name: String,
    mac: MacAddress,
    mtu: usize,
}

impl PacketNic {
    /// Opens interface `name` (it must exist and be up to carry frames).
    pub fn open(name: &str) -> Result<Self, HostedError> {
        let os = |call| move |errno| HostedError::Os { call, errno };
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(os("socket(AF_PACKET)"))?;
        // getifaddrs reports each interface's link-layer address with its
        // index filled in: exactly what bind wants.
        let link = getifaddrs()
            .map_err(os("getifaddrs"))?
            .filter(|ifa| ifa.interface_name == name)
            .find_map(|ifa| ifa.address.and_then(|a| a.as_link_addr().copied()))
            .ok_or_else(|| HostedError::NoSuchInterface(name.into()))?;
        bind(fd.as_raw_fd(), &link).map_err(os("bind"))?;
        let mac = read_sysfs(name, "address")
            .and_then(|s| parse_mac(&s))
            .ok_or_else(|| HostedError::Mac(name.into()))?;
        let mtu = read_sysfs(name, "mtu")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500);
        Ok(PacketNic {
            fd,
            name: name.into(),
            mac,
            mtu,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn read_sysfs(name: &str, attr: &str) -> Option<String> {
    fs::read_to_string(format!("/sys/class/net/{name}/{attr}")).ok()
}

fn parse_mac(text: &str) -> Option<MacAddress> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in mac.iter_mut() {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddress(mac))
}

impl Nic for PacketNic {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    /// The interface's carrier; reading it fails while the interface is down.
    fn link_up(&self) -> bool {
        read_sysfs(&self.name, "carrier").is_some_and(|s| s.trim() == "1")
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        loop {
            match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), buf) {
                Ok((_, Some(from))) if from.pkttype() == PACKET_OUTGOING => continue,
                Ok((len, _)) => return Ok(Some(len)),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(_) => return Err(NicError::Device),
            }
        }
    }

    fn can_transmit(&mut self) -> bool {
        true
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        match send(self.fd.as_raw_fd(), frame, MsgFlags::empty()) {
            Ok(_) => Ok(()),
            Err(Errno::EAGAIN | Errno::ENOBUFS) => Err(NicError::QueueFull),
            Err(Errno::EMSGSIZE) => Err(NicError::BadLength {
                len: frame.len(),
                max: self.mtu + crate::wire::ETHERNET_HEADER_LEN,
            }),
            Err(Errno::ENETDOWN | Errno::ENXIO) => Err(NicError::LinkDown),
            Err(_) => Err(NicError::Device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_mac_addresses() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5a\n"),
            Some(MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x5a]))
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn a_missing_interface_is_reported_by_name() {
        match PacketNic::open("keel-nosuch0") {
            Err(HostedError::NoSuchInterface(name)) => assert_eq!(name, "keel-nosuch0"),
            // Without root the socket itself is refused first.
            Err(HostedError::Os { errno, .. }) => assert_eq!(errno, Errno::EPERM),
            other => panic!("unexpected {other:?}"),
        }
    }
}
