//! IEEE 802.3 slow protocols (EtherType 0x8809): the first payload byte, the
//! subtype, says which PDU follows. Slow-protocol frames go to a reserved
//! group address that bridges never forward, so each one stays on its link.

use super::{
    ETHERNET_HEADER_LEN, EtherType, EthernetRepr, LACPDU_LEN, LacpduPacket, LacpduRepr,
    MarkerPacket, MarkerRepr, WireError, check_len, check_room,
};
use crate::MacAddress;

/// Destination of every slow-protocols frame: 01-80-C2-00-00-02.
pub const SLOW_PROTOCOLS_MULTICAST: MacAddress = MacAddress([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);

pub const SUBTYPE_LACP: u8 = 1;
pub const SUBTYPE_MARKER: u8 = 2;

/// A slow-protocols PDU this stack understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPdu {
    Lacp(LacpduRepr),
    Marker(MarkerRepr),
}

impl SlowPdu {
    /// Parses the payload of a frame whose EtherType is [`EtherType::SLOW_PROTOCOLS`].
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        check_len(payload, 1)?;
        match payload[0] {
            SUBTYPE_LACP => Ok(SlowPdu::Lacp(LacpduRepr::parse(
                &LacpduPacket::new_checked(payload)?,
            ))),
            SUBTYPE_MARKER => Ok(SlowPdu::Marker(MarkerRepr::parse(
                &MarkerPacket::new_checked(payload)?,
            ))),
            other => Err(WireError::UnknownSubtype(other)),
        }
    }

    /// Writes the PDU (110 bytes for both kinds) at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        match self {
            SlowPdu::Lacp(repr) => repr.emit(buf),
            SlowPdu::Marker(repr) => repr.emit(buf),
        }
    }
}

/// Length of a whole slow-protocols frame as [`emit_slow_frame`] writes it.
pub const fn slow_frame_len() -> usize {
    ETHERNET_HEADER_LEN + LACPDU_LEN
}

/// Writes a complete slow-protocols frame from `src` carrying `pdu` into `buf`;
/// returns its length.
pub fn emit_slow_frame(src: MacAddress, pdu: &SlowPdu, buf: &mut [u8]) -> Result<usize, WireError> {
    let len = slow_frame_len();
    check_room(buf.len(), len)?;
    EthernetRepr {
        dst: SLOW_PROTOCOLS_MULTICAST,
        src,
        ethertype: EtherType::SLOW_PROTOCOLS,
    }
    .emit(buf)?;
    pdu.emit(&mut buf[ETHERNET_HEADER_LEN..len])?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, lacpdu, marker};

    #[test]
    fn dispatches_on_subtype() {
        assert!(matches!(
            SlowPdu::parse(&lacpdu::tests::HAND_MADE),
            Ok(SlowPdu::Lacp(_))
        ));
        assert!(matches!(
            SlowPdu::parse(&marker::tests::HAND_MADE),
            Ok(SlowPdu::Marker(_))
        ));
        assert_eq!(
            SlowPdu::parse(&[]),
            Err(WireError::Truncated { needed: 1, got: 0 })
        );
        // Subtype 3 is OAM (802.3ah), not ours.
        assert_eq!(SlowPdu::parse(&[3; 120]), Err(WireError::UnknownSubtype(3)));
    }

    #[test]
    fn whole_frame_is_addressed_to_the_slow_protocols_group() {
        let pdu = SlowPdu::parse(&lacpdu::tests::HAND_MADE).unwrap();
        let src = MacAddress([2, 0, 0, 0, 0, 9]);
        let mut buf = [0u8; 200];
        let len = emit_slow_frame(src, &pdu, &mut buf).unwrap();
        assert_eq!(len, 124);
        let frame = EthernetFrame::new_checked(&buf[..len]).unwrap();
        let eth = EthernetRepr::parse(&frame);
        assert_eq!(eth.dst, SLOW_PROTOCOLS_MULTICAST);
        assert_eq!(eth.src, src);
        assert_eq!(eth.ethertype, EtherType::SLOW_PROTOCOLS);
        assert_eq!(frame.payload(), &lacpdu::tests::HAND_MADE[..]);
        assert!(emit_slow_frame(src, &pdu, &mut [0u8; 123]).is_err());
    }
}
