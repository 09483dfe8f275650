//! Flow hashing for bonds: which bucket a frame falls in. Every frame of a
//! flow hashes the same, so a flow stays on one member and in order.
//!
//! The policies carry XenServer's names: `src_mac` hashes the source MAC and
//! VLAN; `tcpudp_ports` hashes IP addresses, protocol and TCP/UDP ports (the
//! Linux `layer3+4` idea), falling back to the MAC addresses for frames that
//! are not unfragmented TCP or UDP, so a fragmented datagram stays in order.

use crate::wire::{ETHERNET_HEADER_LEN, EtherType, VLAN_TAG_LEN};

/// How a bond spreads flows over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    /// Source MAC and VLAN (XenServer `src_mac`).
    SrcMac,
    /// IP addresses, protocol and TCP/UDP ports (XenServer `tcpudp_ports`).
    TcpUdpPorts,
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
/// IPv4 flags/fragment offset bits meaning "part of a fragmented datagram".
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_FRAGMENT_OFFSET: u16 = 0x1fff;

/// FNV-1a, 32 bits: tiny, allocation-free and good enough to spread buckets.
#[derive(Debug, Clone, Copy)]
struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Fnv(0x811c_9dc5)
    }
    fn add(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
        self
    }
}

/// The hash of `frame` under `policy`. Any byte string is accepted.
pub fn flow_hash(policy: HashPolicy, frame: &[u8]) -> u32 {
    let src_mac = frame.get(6..12).unwrap_or(&[]);
    let (vlan, ethertype, l3) = split_vlan(frame);
    match policy {
        HashPolicy::SrcMac => Fnv::new().add(src_mac).add(&vlan.to_be_bytes()).0,
        HashPolicy::TcpUdpPorts => match l4_hash(ethertype, l3) {
            Some(h) => h,
            None => {
                Fnv::new()
                    .add(frame.get(..12).unwrap_or(frame))
                    .add(&vlan.to_be_bytes())
                    .add(&ethertype.0.to_be_bytes())
                    .0
            }
        },
    }
}

/// The VLAN ID (0 when untagged), the inner EtherType and the bytes after them.
fn split_vlan(frame: &[u8]) -> (u16, EtherType, &[u8]) {
    let read = |at: usize| {
        frame
            .get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let outer = EtherType(read(12));
    if outer == EtherType::VLAN {
        let vid = read(14) & 0x0fff;
        let inner = EtherType(read(16));
        let rest = frame
            .get(ETHERNET_HEADER_LEN + VLAN_TAG_LEN..)
            .unwrap_or(&[]);
        (vid, inner, rest)
    } else {
        (0, outer, frame.get(ETHERNET_HEADER_LEN..).unwrap_or(&[]))
    }
}

/// Hash of addresses, protocol and ports, for unfragmented TCP/UDP over IP.
fn l4_hash(ethertype: EtherType, l3: &[u8]) -> Option<u32> {
    let (proto, addrs, l4) = match ethertype {
        EtherType::IPV4 => {
            let ihl = usize::from(l3.first()? & 0x0f) * 4;
            if ihl < IPV4_MIN_HEADER {
                return None;
            }
            let flags = u16::from_be_bytes([*l3.get(6)?, *l3.get(7)?]);
            if flags & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET) != 0 {
                return None;
            }
            (*l3.get(9)?, l3.get(12..20)?, l3.get(ihl..)?)
        }
        // Only a TCP/UDP header right after the fixed header; extension
        // headers (fragments among them) fall back to the MAC hash.
        EtherType::IPV6 => (*l3.get(6)?, l3.get(8..40)?, l3.get(IPV6_HEADER..)?),
        _ => return None,
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let ports = l4.get(..4)?;
    Some(Fnv::new().add(addrs).add(&[proto]).add(ports).0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An Ethernet/IPv4/UDP frame from `src_mac` with the given ports.
    pub(crate) fn udp_frame(src_mac: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 0xee, 2, 0, 0, 0, 0, src_mac, 0x08, 0x00];
        let mut ip = vec![0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, IPPROTO_UDP, 0, 0];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn ports_spread_flows_and_each_flow_hashes_the_same() {
        let a = flow_hash(HashPolicy::TcpUdpPorts, &udp_frame(1, 1000, 80));
        assert_eq!(
            a,
            flow_hash(HashPolicy::TcpUdpPorts, &udp_frame(1, 1000, 80))
        );
        let distinct: std::collections::HashSet<u32> = (0..64)
            .map(|p| flow_hash(HashPolicy::TcpUdpPorts, &udp_frame(1, 1000 + p, 80)))
            .collect();
        assert_eq!(distinct.len(), 64);
        // src_mac ignores ports.
        assert_eq!(
            flow_hash(HashPolicy::SrcMac, &udp_frame(1, 1, 2)),
            flow_hash(HashPolicy::SrcMac, &udp_frame(1, 3, 4))
        );
        assert_ne!(
            flow_hash(HashPolicy::SrcMac, &udp_frame(1, 1, 2)),
            flow_hash(HashPolicy::SrcMac, &udp_frame(2, 1, 2))
        );
    }

    #[test]
    fn fragments_and_other_protocols_fall_back_to_macs() {
        let mut first = udp_frame(1, 1000, 80);
        first[14 + 6] |= 0x20; // more fragments
        let mut later = udp_frame(1, 0, 0);
        later[14 + 7] = 0x10; // offset 16
        assert_eq!(
            flow_hash(HashPolicy::TcpUdpPorts, &first),
            flow_hash(HashPolicy::TcpUdpPorts, &later),
            "all fragments of a datagram hash alike"
        );
        let mut icmp = udp_frame(1, 1, 2);
        icmp[14 + 9] = 1;
        assert_eq!(
            flow_hash(HashPolicy::TcpUdpPorts, &icmp),
            flow_hash(HashPolicy::TcpUdpPorts, &{
                let mut other = udp_frame(1, 7, 9);
                other[14 + 9] = 1;
                other
            })
        );
    }

    #[test]
    fn tagged_frames_hash_their_inner_flow_and_garbage_is_fine() {
        let plain = udp_frame(1, 1000, 80);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(
            flow_hash(HashPolicy::TcpUdpPorts, &tagged),
            flow_hash(HashPolicy::TcpUdpPorts, &plain)
        );
        assert_ne!(
            flow_hash(HashPolicy::SrcMac, &tagged),
            flow_hash(HashPolicy::SrcMac, &plain),
            "the VLAN is part of the src_mac hash"
        );
        for len in 0..plain.len() {
            flow_hash(HashPolicy::TcpUdpPorts, &plain[..len]);
            flow_hash(HashPolicy::SrcMac, &tagged[..len]);
        }
        let mut bad_ihl = plain.clone();
        bad_ihl[14] = 0x4f;
        flow_hash(HashPolicy::TcpUdpPorts, &bad_ihl);
    }
}
