//! Ethernet II frames (no FCS): destination, source, EtherType, payload.

use core::fmt;

use super::{WireError, check_len, check_room, read_mac, read_u16, write_u16};
use crate::MacAddress;

/// Bytes of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
}

/// The protocol an Ethernet frame (or an 802.1Q tag) carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q customer VLAN tag (TPID).
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.3 slow protocols: LACP and Marker (802.1AX).
    pub const SLOW_PROTOCOLS: EtherType = EtherType(0x8809);
    /// IEEE 802.1ad service VLAN tag (Q-in-Q).
    pub const QINQ: EtherType = EtherType(0x88a8);
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// A checked view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` once it holds at least a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), ETHERNET_HEADER_LEN)?;
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddress {
        read_mac(self.buffer.as_ref(), field::DST.start)
    }

    pub fn src_addr(&self) -> MacAddress {
        read_mac(self.buffer.as_ref(), field::SRC.start)
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[ETHERNET_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, mac: MacAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    pub fn set_src_addr(&mut self, mac: MacAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[ETHERNET_HEADER_LEN..]
    }
}

/// The header of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddress,
    pub src: MacAddress,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Self {
        EthernetRepr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            ethertype: frame.ethertype(),
        }
    }

    /// Bytes [`EthernetRepr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_HEADER_LEN
    }

    /// Writes the header at the start of `buf`, leaving the payload alone.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf.len(), ETHERNET_HEADER_LEN)?;
        let mut frame = EthernetFrame { buffer: buf };
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x08, 0x06, // ARP
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn parses_and_emits_the_same_bytes() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let repr = EthernetRepr::parse(&frame);
        assert_eq!(repr.dst, MacAddress::BROADCAST);
        assert_eq!(repr.src, MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(repr.ethertype, EtherType::ARP);
        assert_eq!(frame.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        let mut out = [0u8; 18];
        out[14..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        repr.emit(&mut out).unwrap();
        assert_eq!(out, FRAME);
    }

    #[test]
    fn short_buffers_are_refused() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated {
                needed: 14,
                got: 13
            }
        );
        let header_only = EthernetFrame::new_checked(&FRAME[..14]).unwrap();
        assert!(header_only.payload().is_empty());
        let repr = EthernetRepr::parse(&header_only);
        assert_eq!(
            repr.emit(&mut [0u8; 10]),
            Err(WireError::BufferTooSmall {
                needed: 14,
                got: 10
            })
        );
    }
}
