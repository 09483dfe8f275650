//! IEEE 802.1Q tags: the 4 bytes (TPID 0x8100, then PCP/DEI/VID) between an
//! Ethernet frame's source address and its EtherType.

use super::{
    ETHERNET_HEADER_LEN, EtherType, WireError, check_len, check_room, read_u16, write_u16,
};

/// Bytes one 802.1Q tag adds to a frame.
pub const VLAN_TAG_LEN: usize = 4;

/// Largest usable VLAN ID; 4095 is reserved.
const MAX_VID: u16 = 4094;
const VID_MASK: u16 = 0x0fff;
const DEI_BIT: u16 = 0x1000;
const PCP_SHIFT: u16 = 13;
const MAX_PCP: u8 = 7;

/// The Tag Control Information of an 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTci {
    /// Priority Code Point (802.1p class of service), 0..=7.
    pub pcp: u8,
    /// Drop Eligible Indicator.
    pub dei: bool,
    /// VLAN ID; 0 means priority-tagged only.
    pub vid: u16,
}

impl VlanTci {
    /// A TCI for `vid` with priority `pcp`, refusing values the tag cannot carry.
    pub fn new(pcp: u8, dei: bool, vid: u16) -> Result<Self, WireError> {
        if vid > MAX_VID {
            return Err(WireError::BadVlanId(vid));
        }
        Ok(VlanTci {
            pcp: pcp.min(MAX_PCP),
            dei,
            vid,
        })
    }

    /// Decodes the 16 TCI bits as they are on the wire.
    pub fn from_bits(bits: u16) -> Self {
        VlanTci {
            pcp: (bits >> PCP_SHIFT) as u8,
            dei: bits & DEI_BIT != 0,
            vid: bits & VID_MASK,
        }
    }

    /// The 16 TCI bits; out-of-range fields are masked.
    pub fn to_bits(self) -> u16 {
        (u16::from(self.pcp & MAX_PCP) << PCP_SHIFT)
            | if self.dei { DEI_BIT } else { 0 }
            | (self.vid & VID_MASK)
    }
}

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
}

/// A checked view of the 802.1Q tag at the start of an Ethernet payload whose
/// outer EtherType is [`EtherType::VLAN`].
#[derive(Debug, Clone)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len(buffer.as_ref(), VLAN_TAG_LEN)?;
        Ok(VlanPacket { buffer })
    }

    pub fn tci(&self) -> VlanTci {
        VlanTci::from_bits(read_u16(self.buffer.as_ref(), field::TCI))
    }

    /// The EtherType of what follows the tag.
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VLAN_TAG_LEN..]
    }
}

/// An 802.1Q tag in high-level form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    pub tci: VlanTci,
    /// The inner EtherType.
    pub ethertype: EtherType,
}

impl VlanRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &VlanPacket<T>) -> Self {
        VlanRepr {
            tci: packet.tci(),
            ethertype: packet.ethertype(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        VLAN_TAG_LEN
    }

    /// Writes the tag (TCI and inner EtherType) at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf.len(), VLAN_TAG_LEN)?;
        write_u16(buf, field::TCI, self.tci.to_bits());
        write_u16(buf, field::ETHERTYPE, self.ethertype.0);
        Ok(())
    }
}

/// Offset of the outer EtherType (where a tag goes) in an Ethernet frame.
const TAG_OFFSET: usize = 12;

/// Tags the frame in `buf[..len]` in place with `tci`; `buf` needs 4 spare
/// bytes after the frame. Returns the new length.
pub fn insert_tag(buf: &mut [u8], len: usize, tci: VlanTci) -> Result<usize, WireError> {
    let frame = buf.get(..len).ok_or(WireError::BufferTooSmall {
        needed: len,
        got: buf.len(),
    })?;
    check_len(frame, ETHERNET_HEADER_LEN)?;
    let tagged_len = len + VLAN_TAG_LEN;
    check_room(buf.len(), tagged_len)?;
    buf.copy_within(TAG_OFFSET..len, TAG_OFFSET + VLAN_TAG_LEN);
    write_u16(buf, TAG_OFFSET, EtherType::VLAN.0);
    write_u16(buf, TAG_OFFSET + 2, tci.to_bits());
    Ok(tagged_len)
}

/// Removes the outer 802.1Q tag from the frame in `buf[..len]` in place.
/// Returns the tag and the new length.
pub fn remove_tag(buf: &mut [u8], len: usize) -> Result<(VlanTci, usize), WireError> {
    let frame = buf.get(..len).ok_or(WireError::BufferTooSmall {
        needed: len,
        got: buf.len(),
    })?;
    check_len(frame, ETHERNET_HEADER_LEN + VLAN_TAG_LEN)?;
    if read_u16(frame, TAG_OFFSET) != EtherType::VLAN.0 {
        return Err(WireError::NotTagged);
    }
    let tci = VlanTci::from_bits(read_u16(frame, TAG_OFFSET + 2));
    buf.copy_within(TAG_OFFSET + VLAN_TAG_LEN..len, TAG_OFFSET);
    Ok((tci, len - VLAN_TAG_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, EthernetRepr};

    /// An ARP request broadcast from 52:54:00:00:00:01, untagged (42 bytes).
    fn untagged() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend((0u8..28).map(|i| i.wrapping_mul(7)));
        f
    }

    #[test]
    fn tci_bits_round_trip() {
        let tci = VlanTci::new(5, true, 20).unwrap();
        assert_eq!(tci.to_bits(), 0xb014);
        assert_eq!(VlanTci::from_bits(0xb014), tci);
        assert_eq!(VlanTci::from_bits(0xffff).vid, 4095);
        assert_eq!(
            VlanTci::new(0, false, 4095),
            Err(WireError::BadVlanId(4095))
        );
        assert_eq!(VlanTci::new(9, false, 1).unwrap().pcp, 7);
        for bits in [0u16, 1, 0x0fff, 0x1000, 0xe000, 0xffff, 0x2005] {
            assert_eq!(VlanTci::from_bits(bits).to_bits(), bits);
        }
    }

    #[test]
    fn insert_then_remove_restores_the_frame() {
        let plain = untagged();
        let mut buf = plain.clone();
        buf.resize(plain.len() + VLAN_TAG_LEN, 0);
        let tci = VlanTci::new(3, false, 5).unwrap();
        let len = insert_tag(&mut buf, plain.len(), tci).unwrap();
        assert_eq!(len, 46);
        assert_eq!(&buf[12..18], &[0x81, 0x00, 0x60, 0x05, 0x08, 0x06]);
        let frame = EthernetFrame::new_checked(&buf[..len]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame).ethertype, EtherType::VLAN);
        let tag = VlanPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(
            VlanRepr::parse(&tag),
            VlanRepr {
                tci,
                ethertype: EtherType::ARP
            }
        );
        assert_eq!(tag.payload(), &plain[14..]);

        let (got, len) = remove_tag(&mut buf, len).unwrap();
        assert_eq!(got, tci);
        assert_eq!(&buf[..len], &plain[..]);
    }

    #[test]
    fn helpers_refuse_what_they_cannot_do() {
        let plain = untagged();
        let mut exact = plain.clone();
        assert_eq!(
            insert_tag(&mut exact, plain.len(), VlanTci::default()),
            Err(WireError::BufferTooSmall {
                needed: 46,
                got: 42
            })
        );
        assert_eq!(exact, plain, "a refused insert leaves the frame alone");
        assert_eq!(
            remove_tag(&mut exact, plain.len()),
            Err(WireError::NotTagged)
        );
        assert!(remove_tag(&mut exact, 100).is_err());
        assert!(remove_tag(&mut exact[..16], 16).is_err());
        assert!(insert_tag(&mut [0u8; 20], 10, VlanTci::default()).is_err());
        assert!(VlanPacket::new_checked(&[0u8; 3][..]).is_err());
        let repr = VlanRepr {
            tci: VlanTci::default(),
            ethertype: EtherType::IPV4,
        };
        assert!(repr.emit(&mut [0u8; 3]).is_err());
        let mut four = [0u8; 4];
        repr.emit(&mut four).unwrap();
        assert_eq!(four, [0, 0, 0x08, 0x00]);
    }
}
