//! What a guest VIF may send and receive beyond its MAC lock: XenAPI's VIF
//! locking modes, enforced by the switch.
//!
//! Every mode that passes traffic keeps the VIF's source MAC locked (a
//! guest never sends from another MAC: stricter than xapi's `unlocked`,
//! like ESXi's forged-transmit reject). On top of that:
//!
//! - [`VifPolicy::Unlocked`]: no further filtering.
//! - [`VifPolicy::Disabled`]: nothing in or out.
//! - [`VifPolicy::Locked`]: from the guest, IPv4 needs a source in `ipv4`,
//!   ARP a sender IP in `ipv4` and the VIF's MAC as sender hardware
//!   address, IPv6 a source in `ipv6`; every other EtherType is dropped. To
//!   the guest, IPv4 must be for an address in `ipv4`, ARP must target one
//!   (broadcast ARP requests for it pass), IPv6 must be for an address in
//!   `ipv6`; every other EtherType is dropped. With no addresses at all no
//!   traffic passes (as xapi says).
//!
//! IPv6 needs neighbour discovery, so a VIF with at least one `ipv6`
//! address also passes: from the guest, the unspecified source `::` on
//! ICMPv6 (duplicate address detection, MLD) and the link-local address
//! derived from its MAC (EUI-64, `fe80::/64`); to the guest, that
//! link-local address, the solicited-node multicast group of each allowed
//! address (and of the link-local one), and all-nodes `ff02::1` (router
//! advertisements). A guest using RFC 7217 or privacy link-local addresses
//! must have them listed. DHCP (source 0.0.0.0) is not allowed from a
//! locked VIF: a locked VIF has static addresses, as in xapi.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use super::stats::DropReason;
use crate::nic::MacAddress;
use crate::wire::EtherType;

/// The filtering a VIF's port applies (its source MAC is always locked).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VifPolicy {
    /// Any traffic from the VIF's MAC, any traffic to the VIF.
    #[default]
    Unlocked,
    /// Only IP traffic from and to these addresses (and ARP for the IPv4
    /// ones, neighbour discovery for the IPv6 ones).
    Locked {
        ipv4: Vec<Ipv4Addr>,
        ipv6: Vec<Ipv6Addr>,
    },
    /// No traffic at all.
    Disabled,
}

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ARP_IPV4_LEN: usize = 28;
const ICMPV6: u8 = 58;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl VifPolicy {
    /// Whether a frame the guest sent (from `mac`, already checked) may
    /// enter the switch; `l3` is what follows its Ethernet header (and tag).
    pub(super) fn check_from_guest(
        &self,
        mac: MacAddress,
        ethertype: u16,
        l3: &[u8],
    ) -> Result<(), DropReason> {
        let (ipv4, ipv6) = match self {
            VifPolicy::Unlocked => return Ok(()),
            VifPolicy::Disabled => return Err(DropReason::VifDisabled),
            VifPolicy::Locked { ipv4, ipv6 } => (ipv4, ipv6),
        };
        let allowed = match EtherType(ethertype) {
            EtherType::IPV4 => ipv4_at(l3, 12).is_some_and(|src| {
                l3.len() >= IPV4_HEADER_LEN && l3[0] >> 4 == 4 && ipv4.contains(&src)
            }),
            EtherType::ARP => arp_ipv4(l3)
                .is_some_and(|arp| arp.sender_mac == mac.0 && ipv4.contains(&arp.sender_ip)),
            EtherType::IPV6 => match ipv6_header(l3) {
                Some((next, src, _)) if !ipv6.is_empty() => {
                    ipv6.contains(&src)
                        || src == mac.ipv6_link_local()
                        || (src == Ipv6Addr::UNSPECIFIED && next == ICMPV6)
                }
                _ => false,
            },
            _ => return Err(DropReason::LockedProtocol),
        };
        if allowed {
            Ok(())
        } else {
            Err(DropReason::LockedSource)
        }
    }

    /// Whether a frame may leave the switch towards the guest whose VIF has
    /// `mac`; `l3` is what follows the frame's Ethernet header (and tag).
    pub(super) fn admits_to_guest(&self, mac: MacAddress, ethertype: u16, l3: &[u8]) -> bool {
        let (ipv4, ipv6) = match self {
            VifPolicy::Unlocked => return true,
            VifPolicy::Disabled => return false,
            VifPolicy::Locked { ipv4, ipv6 } => (ipv4, ipv6),
        };
        match EtherType(ethertype) {
            EtherType::IPV4 => ipv4_at(l3, 16).is_some_and(|dst| {
                l3.len() >= IPV4_HEADER_LEN && l3[0] >> 4 == 4 && ipv4.contains(&dst)
            }),
            EtherType::ARP => arp_ipv4(l3).is_some_and(|arp| ipv4.contains(&arp.target_ip)),
            EtherType::IPV6 => match ipv6_header(l3) {
                Some((_, _, dst)) if !ipv6.is_empty() => {
                    let own = mac.ipv6_link_local();
                    ipv6.contains(&dst)
                        || dst == own
                        || dst == ALL_NODES
                        || ipv6.iter().chain([&own]).any(|a| solicited_node(*a) == dst)
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// The IPv4 address at `at`, when `l3` holds it.
fn ipv4_at(l3: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b = l3.get(at..at + 4)?;
    Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn ipv6_at(l3: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = l3.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Next header, source and destination of an IPv6 header.
fn ipv6_header(l3: &[u8]) -> Option<(u8, Ipv6Addr, Ipv6Addr)> {
    if l3.len() < IPV6_HEADER_LEN || l3[0] >> 4 != 6 {
        return None;
    }
    Some((l3[6], ipv6_at(l3, 8)?, ipv6_at(l3, 24)?))
}

struct ArpIpv4 {
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
}

/// An ARP packet for IPv4 over Ethernet (any operation).
fn arp_ipv4(l3: &[u8]) -> Option<ArpIpv4> {
    if l3.len() < ARP_IPV4_LEN || l3[..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return None;
    }
    Some(ArpIpv4 {
        sender_mac: l3.get(8..14)?.try_into().ok()?,
        sender_ip: ipv4_at(l3, 14)?,
        target_ip: ipv4_at(l3, 24)?,
    })
}

/// The solicited-node multicast group of `addr` (`ff02::1:ffXX:XXXX`).
fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let a = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15],
    ])
}
