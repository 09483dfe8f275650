//! Wire formats the host's link layer speaks: Ethernet II, 802.1Q tags and the
//! IEEE 802.1AX slow protocols (LACPDU, Marker PDU).
//!
//! Each format follows the smoltcp pattern: a `…Packet<T: AsRef<[u8]>>` view
//! whose constructor checks the length once, so its accessors cannot panic,
//! and a `…Repr` with `parse` and `emit` for the high-level form. Nothing here
//! allocates.

mod ethernet;
pub mod fuzz;
mod lacpdu;
mod marker;
mod slow;
mod vlan;

use core::fmt;

pub use ethernet::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame, EthernetRepr};
pub use lacpdu::{LACPDU_LEN, LacpState, LacpduPacket, LacpduRepr, PortInfo};
pub use marker::{MARKER_PDU_LEN, MarkerKind, MarkerPacket, MarkerRepr};
pub use slow::{
    SLOW_PROTOCOLS_MULTICAST, SUBTYPE_LACP, SUBTYPE_MARKER, SlowPdu, emit_slow_frame,
    slow_frame_len,
};
pub use vlan::{VLAN_TAG_LEN, VlanPacket, VlanRepr, VlanTci, insert_tag, remove_tag};

/// Why a buffer is not a valid frame or PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the format needs.
    Truncated { needed: usize, got: usize },
    /// A slow-protocols subtype this stack does not speak.
    UnknownSubtype(u8),
    /// Protocol version 0, which no standard defines.
    BadVersion(u8),
    /// A TLV at a fixed position has the wrong type or length.
    BadTlv {
        offset: usize,
        tlv_type: u8,
        length: u8,
    },
    /// A VLAN ID outside 0..=4094 (4095 is reserved).
    BadVlanId(u16),
    /// The frame carries no 802.1Q tag where one was expected.
    NotTagged,
    /// The output buffer is too small for what is being written.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { needed, got } => {
                write!(f, "truncated: {got} bytes, the format needs {needed}")
            }
            WireError::UnknownSubtype(s) => write!(f, "unknown slow-protocols subtype {s}"),
            WireError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            WireError::BadTlv {
                offset,
                tlv_type,
                length,
            } => write!(
                f,
                "unexpected TLV type {tlv_type} length {length} at offset {offset}"
            ),
            WireError::BadVlanId(v) => write!(f, "VLAN ID {v} out of range 0..=4094"),
            WireError::NotTagged => write!(f, "frame has no 802.1Q tag"),
            WireError::BufferTooSmall { needed, got } => {
                write!(f, "output buffer of {got} bytes, {needed} needed")
            }
        }
    }
}

/// `Ok` when `buf` holds at least `needed` bytes.
fn check_len(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// `Ok` when an output buffer of `got` bytes can take `needed`.
fn check_room(got: usize, needed: usize) -> Result<(), WireError> {
    if got < needed {
        Err(WireError::BufferTooSmall { needed, got })
    } else {
        Ok(())
    }
}

/// Reads a big-endian u16 at `at`; the caller has checked the length.
fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Writes a big-endian u16 at `at`; the caller has checked the length.
fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Reads a MAC address at `at`; the caller has checked the length.
fn read_mac(buf: &[u8], at: usize) -> crate::MacAddress {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&buf[at..at + 6]);
    crate::MacAddress(mac)
}
