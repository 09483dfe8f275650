//! The Marker PDU of IEEE 802.1AX (slow protocols subtype 2): a distributor
//! asks "has everything I sent on this link arrived?" and the partner's
//! responder sends the same information back as a Marker Response.

use super::{WireError, check_len, check_room, read_mac, read_u16, write_u16};
use crate::MacAddress;

/// Bytes of a Marker PDU (without the Ethernet header).
pub const MARKER_PDU_LEN: usize = 110;

const VERSION: u8 = 1;
const TLV_INFORMATION: u8 = 1;
const TLV_RESPONSE: u8 = 2;
const MARKER_TLV_LEN: u8 = 16;

mod field {
    pub const SUBTYPE: usize = 0;
    pub const VERSION: usize = 1;
    pub const TLV_TYPE: usize = 2;
    pub const TLV_LEN: usize = 3;
    pub const REQUESTER_PORT: usize = 4;
    pub const REQUESTER_SYSTEM: usize = 6;
    pub const TRANSACTION_ID: usize = 12;
    pub const TERMINATOR: usize = 18;
}

/// Whether a Marker PDU asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Information,
    Response,
}

/// A checked view of a Marker PDU (the Ethernet payload, from the subtype).
#[derive(Debug, Clone)]
pub struct MarkerPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MarkerPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        check_len(buf, MARKER_PDU_LEN)?;
        if buf[field::SUBTYPE] != super::SUBTYPE_MARKER {
            return Err(WireError::UnknownSubtype(buf[field::SUBTYPE]));
        }
        if buf[field::VERSION] == 0 {
            return Err(WireError::BadVersion(0));
        }
        let (t, l) = (buf[field::TLV_TYPE], buf[field::TLV_LEN]);
        if !matches!(t, TLV_INFORMATION | TLV_RESPONSE) || l != MARKER_TLV_LEN {
            return Err(WireError::BadTlv {
                offset: field::TLV_TYPE,
                tlv_type: t,
                length: l,
            });
        }
        Ok(MarkerPacket { buffer })
    }

    pub fn kind(&self) -> MarkerKind {
        if self.buffer.as_ref()[field::TLV_TYPE] == TLV_RESPONSE {
            MarkerKind::Response
        } else {
            MarkerKind::Information
        }
    }

    pub fn requester_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::REQUESTER_PORT)
    }

    pub fn requester_system(&self) -> MacAddress {
        read_mac(self.buffer.as_ref(), field::REQUESTER_SYSTEM)
    }

    pub fn transaction_id(&self) -> u32 {
        let b = self.buffer.as_ref();
        let at = field::TRANSACTION_ID;
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
}

/// A Marker PDU in high-level form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerRepr {
    pub kind: MarkerKind,
    pub requester_port: u16,
    pub requester_system: MacAddress,
    pub transaction_id: u32,
}

impl MarkerRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &MarkerPacket<T>) -> Self {
        MarkerRepr {
            kind: packet.kind(),
            requester_port: packet.requester_port(),
            requester_system: packet.requester_system(),
            transaction_id: packet.transaction_id(),
        }
    }

    /// The Marker Response a responder sends back for this Information PDU.
    pub fn response(&self) -> Self {
        MarkerRepr {
            kind: MarkerKind::Response,
            ..*self
        }
    }

    pub const fn buffer_len(&self) -> usize {
        MARKER_PDU_LEN
    }

    /// Writes a version-1 Marker PDU into `buf[..110]`, reserved bytes zeroed.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf.len(), MARKER_PDU_LEN)?;
        let buf = &mut buf[..MARKER_PDU_LEN];
        buf.fill(0);
        buf[field::SUBTYPE] = super::SUBTYPE_MARKER;
        buf[field::VERSION] = VERSION;
        buf[field::TLV_TYPE] = match self.kind {
            MarkerKind::Information => TLV_INFORMATION,
            MarkerKind::Response => TLV_RESPONSE,
        };
        buf[field::TLV_LEN] = MARKER_TLV_LEN;
        write_u16(buf, field::REQUESTER_PORT, self.requester_port);
        let sys = field::REQUESTER_SYSTEM;
        buf[sys..sys + 6].copy_from_slice(&self.requester_system.0);
        let tid = field::TRANSACTION_ID;
        buf[tid..tid + 4].copy_from_slice(&self.transaction_id.to_be_bytes());
        // Terminator (type 0, length 0) and padding: the zeros from `fill`.
        debug_assert_eq!(buf[field::TERMINATOR], 0);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Marker Information PDU by hand (802.1AX-2008 figure 5-12): port 3 of
    /// system 00:1b:21:aa:bb:01, transaction 0x01020304.
    #[rustfmt::skip]
    pub(crate) const HAND_MADE: [u8; MARKER_PDU_LEN] = {
        let mut pdu = [0u8; MARKER_PDU_LEN];
        let head: [u8; 20] = [
            0x02, 0x01,                         // subtype Marker, version 1
            0x01, 0x10,                         // Marker Information, length 16
            0x00, 0x03,                         // requester port
            0x00, 0x1b, 0x21, 0xaa, 0xbb, 0x01, // requester system
            0x01, 0x02, 0x03, 0x04,             // transaction id
            0x00, 0x00,                         // pad
            0x00, 0x00,                         // terminator
        ];
        let mut i = 0;
        while i < head.len() {
            pdu[i] = head[i];
            i += 1;
        }
        pdu
    };

    #[test]
    fn marker_round_trip_and_response() {
        let packet = MarkerPacket::new_checked(&HAND_MADE[..]).unwrap();
        let repr = MarkerRepr::parse(&packet);
        assert_eq!(
            repr,
            MarkerRepr {
                kind: MarkerKind::Information,
                requester_port: 3,
                requester_system: MacAddress([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0x01]),
                transaction_id: 0x0102_0304,
            }
        );
        let mut out = [0xffu8; MARKER_PDU_LEN];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, HAND_MADE);
        repr.response().emit(&mut out).unwrap();
        let mut expected = HAND_MADE;
        expected[2] = 2;
        assert_eq!(out, expected);
    }

    #[test]
    fn malformed_markers_are_refused() {
        let check = |b: &[u8]| MarkerPacket::new_checked(b).map(|_| ());
        assert!(matches!(
            check(&HAND_MADE[..100]),
            Err(WireError::Truncated { .. })
        ));
        for (at, value) in [(0, 1u8), (1, 0), (2, 3), (3, 20)] {
            let mut bad = HAND_MADE;
            bad[at] = value;
            assert!(check(&bad).is_err(), "byte {at} = {value}");
        }
    }
}
