//! A scripted DHCP server for tests: answers DISCOVER with OFFER and REQUEST
//! with ACK for one fixed address, answers ARP for its own address, and can be
//! told to go silent.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress,
    EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr,
    UdpPacket, UdpRepr,
};

use crate::nic::Nic;
use crate::testing::WireNic;

pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
pub const OFFERED_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
pub const DNS_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 3);
const NETMASK: Ipv4Address = Ipv4Address::new(255, 255, 255, 0);

pub struct DhcpServer {
    nic: WireNic,
    mac: EthernetAddress,
    pub lease_secs: u32,
    pub silent: bool,
    /// Every DHCP message type received, in order.
    pub seen: Vec<DhcpMessageType>,
}

impl DhcpServer {
    pub fn new(nic: WireNic, lease_secs: u32) -> Self {
        let mac = EthernetAddress(nic.mac().0);
        DhcpServer {
            nic,
            mac,
            lease_secs,
            silent: false,
            seen: Vec::new(),
        }
    }

    /// Handles every frame waiting at the server's NIC.
    pub fn poll(&mut self) {
        let mut buf = vec![0u8; 1514];
        while let Ok(Some(len)) = self.nic.receive(&mut buf) {
            let frame = &buf[..len];
            let reply = match EthernetFrame::new_checked(frame).map(|f| f.ethertype()) {
                Ok(EthernetProtocol::Arp) => self.answer_arp(frame),
                Ok(EthernetProtocol::Ipv4) => self.answer_dhcp(frame),
                _ => None,
            };
            if let (Some(reply), false) = (reply, self.silent) {
                self.nic.transmit(&reply).unwrap();
            }
        }
    }

    fn answer_arp(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?
        else {
            return None;
        };
        if operation != ArpOperation::Request || target_protocol_addr != SERVER_IP {
            return None;
        }
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.mac,
            source_protocol_addr: SERVER_IP,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let mut out = vec![0u8; 14 + arp.buffer_len()];
        EthernetRepr {
            src_addr: self.mac,
            dst_addr: source_hardware_addr,
            ethertype: EthernetProtocol::Arp,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        arp.emit(&mut ArpPacket::new_unchecked(&mut out[14..]));
        Some(out)
    }

    fn answer_dhcp(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let caps = ChecksumCapabilities::default();
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
        if ip_repr.next_header != IpProtocol::Udp {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        let udp_repr = UdpRepr::parse(
            &udp,
            &ip_repr.src_addr.into(),
            &ip_repr.dst_addr.into(),
            &caps,
        )
        .ok()?;
        if udp_repr.dst_port != 67 {
            return None;
        }
        let dhcp = DhcpPacket::new_checked(udp.payload()).ok()?;
        let request = DhcpRepr::parse(&dhcp).ok()?;
        self.seen.push(request.message_type);
        let reply_type = match request.message_type {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request => DhcpMessageType::Ack,
            _ => return None,
        };
        Some(self.reply(
            reply_type,
            request.transaction_id,
            request.client_hardware_address,
        ))
    }

    fn reply(&self, message_type: DhcpMessageType, xid: u32, client: EthernetAddress) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let mut dns = heapless::Vec::new();
        dns.push(DNS_IP).unwrap();
        let dhcp = DhcpRepr {
            message_type,
            transaction_id: xid,
            secs: 0,
            client_hardware_address: client,
            client_ip: Ipv4Address::UNSPECIFIED,
            your_ip: OFFERED_IP,
            server_ip: SERVER_IP,
            router: Some(SERVER_IP),
            subnet_mask: Some(NETMASK),
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(SERVER_IP),
            parameter_request_list: None,
            dns_servers: Some(dns),
            max_size: None,
            lease_duration: Some(self.lease_secs),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let dhcp_len = dhcp.buffer_len();
        let udp_len = 8 + dhcp_len;
        let ip_repr = Ipv4Repr {
            src_addr: SERVER_IP,
            dst_addr: Ipv4Address::BROADCAST,
            next_header: IpProtocol::Udp,
            payload_len: udp_len,
            hop_limit: 64,
        };
        let mut out = vec![0u8; 14 + 20 + udp_len];
        EthernetRepr {
            src_addr: self.mac,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
        ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[14..]), &caps);
        UdpRepr {
            src_port: 67,
            dst_port: 68,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut out[34..]),
            &SERVER_IP.into(),
            &Ipv4Address::BROADCAST.into(),
            dhcp_len,
            |buf| dhcp.emit(&mut DhcpPacket::new_unchecked(buf)).unwrap(),
            &caps,
        );
        out
    }
}
