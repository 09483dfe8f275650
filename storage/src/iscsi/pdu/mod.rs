//! iSCSI PDUs (RFC 7143 §11) in the smoltcp `Packet`/`Repr` style.
//!
//! - [`Packet`] wraps a buffer holding BHS + AHS + data segment (+ padding)
//!   and gives checked, non-panicking access to the header fields.
//! - [`Repr`] is the parsed, typed header of every PDU the initiator sends
//!   or receives; `parse` validates, `emit` writes a BHS.
//! - [`frame`] adds the framing on the byte stream: digests, padding, and a
//!   decoder that cuts complete PDUs out of received bytes.

mod frame;
mod repr;

pub use frame::{Decoder, Digests, Frame, encode, encode_with_ahs};
pub use repr::*;

use core::fmt;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Length of a CRC32C digest on the wire.
pub const DIGEST_LEN: usize = 4;
/// The "no tag" value of ITT and TTT fields.
pub const RESERVED_TAG: u32 = 0xffff_ffff;
/// Largest value of the 24-bit DataSegmentLength field.
pub const MAX_DATA_SEGMENT_LEN: usize = (1 << 24) - 1;
/// Largest AHS (TotalAHSLength counts 4-byte words in one byte).
pub const MAX_AHS_LEN: usize = 255 * 4;

/// PDU opcodes (RFC 7143 §11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    Snack = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Opcode::NopOut,
            0x01 => Opcode::ScsiCommand,
            0x02 => Opcode::TaskMgmtRequest,
            0x03 => Opcode::LoginRequest,
            0x04 => Opcode::TextRequest,
            0x05 => Opcode::DataOut,
            0x06 => Opcode::LogoutRequest,
            0x10 => Opcode::Snack,
            0x20 => Opcode::NopIn,
            0x21 => Opcode::ScsiResponse,
            0x22 => Opcode::TaskMgmtResponse,
            0x23 => Opcode::LoginResponse,
            0x24 => Opcode::TextResponse,
            0x25 => Opcode::DataIn,
            0x26 => Opcode::LogoutResponse,
            0x31 => Opcode::R2t,
            0x32 => Opcode::AsyncMessage,
            0x3f => Opcode::Reject,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header says the PDU needs.
    Truncated,
    /// An opcode RFC 7143 does not define.
    UnknownOpcode(u8),
    /// An opcode the initiator never receives or sends (e.g. SNACK).
    UnsupportedOpcode(Opcode),
    /// A data segment above the limit we declared (our MaxRecvDataSegmentLength).
    DataTooLong { len: usize, max: usize },
    /// An AHS whose length is not a multiple of 4 or is too large.
    BadAhs,
    /// The CRC32C header digest does not match.
    HeaderDigest { expected: u32, received: u32 },
    /// The CRC32C data digest does not match.
    DataDigest { expected: u32, received: u32 },
    /// A field holds a value the RFC does not allow.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "truncated PDU"),
            Error::UnknownOpcode(op) => write!(f, "unknown PDU opcode {op:#04x}"),
            Error::UnsupportedOpcode(op) => write!(f, "unsupported PDU opcode {op:?}"),
            Error::DataTooLong { len, max } => write!(
                f,
                "data segment of {len} bytes exceeds our MaxRecvDataSegmentLength {max}"
            ),
            Error::BadAhs => write!(f, "malformed additional header segment"),
            Error::HeaderDigest { expected, received } => write!(
                f,
                "header digest mismatch (computed {expected:#010x}, received {received:#010x}): the connection is corrupt"
            ),
            Error::DataDigest { expected, received } => write!(
                f,
                "data digest mismatch (computed {expected:#010x}, received {received:#010x}): the connection is corrupt"
            ),
            Error::Malformed(what) => write!(f, "malformed PDU: {what}"),
        }
    }
}

impl core::error::Error for Error {}

/// Byte offsets inside the BHS (RFC 7143 §11.2).
pub(crate) mod field {
    pub const OPCODE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const BYTE2: usize = 2;
    pub const BYTE3: usize = 3;
    pub const TOTAL_AHS_LEN: usize = 4;
    pub const DATA_SEGMENT_LEN: usize = 5;
    pub const LUN: usize = 8;
    pub const ITT: usize = 16;
    /// Opcode-specific words at 20, 24, ... 44.
    pub const W20: usize = 20;
    pub const W24: usize = 24;
    pub const W28: usize = 28;
    pub const W32: usize = 32;
    pub const W36: usize = 36;
    pub const W40: usize = 40;
    pub const W44: usize = 44;
    pub const CDB: usize = 32;

    pub const IMMEDIATE_BIT: u8 = 0x40;
    pub const OPCODE_MASK: u8 = 0x3f;
    pub const FINAL_BIT: u8 = 0x80;
}

/// Rounds a data segment length up to the 4-byte boundary.
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Checked access to one PDU (BHS, AHS, data segment and padding; digests
/// are handled by the framing).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the whole PDU the header describes.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < BHS_LEN {
            return Err(Error::Truncated);
        }
        if len < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    pub(crate) fn u16_at(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.byte(i), self.byte(i + 1)])
    }

    pub(crate) fn u32_at(&self, i: usize) -> u32 {
        u32::from_be_bytes([
            self.byte(i),
            self.byte(i + 1),
            self.byte(i + 2),
            self.byte(i + 3),
        ])
    }

    pub(crate) fn bytes_at<const N: usize>(&self, i: usize) -> [u8; N] {
        core::array::from_fn(|k| self.byte(i + k))
    }

    pub fn opcode_raw(&self) -> u8 {
        self.byte(field::OPCODE) & field::OPCODE_MASK
    }

    pub fn opcode(&self) -> Result<Opcode, Error> {
        let raw = self.opcode_raw();
        Opcode::from_u8(raw).ok_or(Error::UnknownOpcode(raw))
    }

    pub fn immediate(&self) -> bool {
        self.byte(field::OPCODE) & field::IMMEDIATE_BIT != 0
    }

    pub fn flags(&self) -> u8 {
        self.byte(field::FLAGS)
    }

    pub fn is_final(&self) -> bool {
        self.flags() & field::FINAL_BIT != 0
    }

    /// Length of the AHS in bytes.
    pub fn total_ahs_len(&self) -> usize {
        usize::from(self.byte(field::TOTAL_AHS_LEN)) * 4
    }

    pub fn data_segment_len(&self) -> usize {
        (usize::from(self.byte(field::DATA_SEGMENT_LEN)) << 16)
            | (usize::from(self.byte(field::DATA_SEGMENT_LEN + 1)) << 8)
            | usize::from(self.byte(field::DATA_SEGMENT_LEN + 2))
    }

    /// BHS + AHS length: what the header digest covers.
    pub fn header_len(&self) -> usize {
        BHS_LEN + self.total_ahs_len()
    }

    /// Whole PDU length without digests, padding included.
    pub fn total_len(&self) -> usize {
        self.header_len() + padded(self.data_segment_len())
    }

    pub fn lun(&self) -> u64 {
        u64::from_be_bytes(self.bytes_at::<8>(field::LUN))
    }

    pub fn itt(&self) -> u32 {
        self.u32_at(field::ITT)
    }

    pub fn bhs(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..BHS_LEN).unwrap_or(b)
    }

    pub fn ahs(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(BHS_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The data segment without padding.
    pub fn data(&self) -> &[u8] {
        let start = self.header_len();
        self.buffer
            .as_ref()
            .get(start..start + self.data_segment_len())
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_byte(&mut self, i: usize, v: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(i) {
            *b = v;
        }
    }

    pub(crate) fn set_u16_at(&mut self, i: usize, v: u16) {
        for (k, b) in v.to_be_bytes().into_iter().enumerate() {
            self.set_byte(i + k, b);
        }
    }

    pub(crate) fn set_u32_at(&mut self, i: usize, v: u32) {
        for (k, b) in v.to_be_bytes().into_iter().enumerate() {
            self.set_byte(i + k, b);
        }
    }

    pub(crate) fn set_bytes_at(&mut self, i: usize, v: &[u8]) {
        for (k, b) in v.iter().enumerate() {
            self.set_byte(i + k, *b);
        }
    }

    pub fn set_opcode(&mut self, op: Opcode, immediate: bool) {
        let imm = if immediate { field::IMMEDIATE_BIT } else { 0 };
        self.set_byte(field::OPCODE, op as u8 | imm);
    }

    pub fn set_flags(&mut self, v: u8) {
        self.set_byte(field::FLAGS, v);
    }

    pub(crate) fn set_byte2(&mut self, v: u8) {
        self.set_byte(field::BYTE2, v);
    }

    pub(crate) fn set_byte3(&mut self, v: u8) {
        self.set_byte(field::BYTE3, v);
    }

    /// Sets TotalAHSLength from a byte count (a multiple of 4, ≤ [`MAX_AHS_LEN`]).
    pub fn set_total_ahs_len(&mut self, bytes: usize) {
        self.set_byte(field::TOTAL_AHS_LEN, (bytes / 4).min(255) as u8);
    }

    pub fn set_data_segment_len(&mut self, len: usize) {
        let len = len.min(MAX_DATA_SEGMENT_LEN);
        self.set_byte(field::DATA_SEGMENT_LEN, (len >> 16) as u8);
        self.set_byte(field::DATA_SEGMENT_LEN + 1, (len >> 8) as u8);
        self.set_byte(field::DATA_SEGMENT_LEN + 2, len as u8);
    }

    pub fn set_lun(&mut self, lun: u64) {
        self.set_bytes_at(field::LUN, &lun.to_be_bytes());
    }

    pub fn set_itt(&mut self, itt: u32) {
        self.set_u32_at(field::ITT, itt);
    }

    pub(crate) fn clear_bhs(&mut self) {
        for i in 0..BHS_LEN {
            self.set_byte(i, 0);
        }
    }
}

/// Fuzz entry point: any bytes, fed to the decoder in every digest mode.
/// Every PDU that parses must re-encode to a PDU that parses to the same
/// header. Never panics except on a round-trip bug.
pub fn fuzz_pdu(data: &[u8]) {
    for (header, data_digest) in [(false, false), (true, true), (true, false)] {
        let digests = Digests {
            header,
            data: data_digest,
        };
        let mut dec = Decoder::new(64 * 1024);
        dec.set_digests(digests);
        dec.feed(data);
        while let Some(frame) = dec.next_frame() {
            let Ok(frame) = frame else { break };
            let mut out = alloc::vec::Vec::new();
            if encode_with_ahs(&mut out, &frame.repr, frame.ahs, frame.data, digests).is_err() {
                continue;
            }
            let mut dec2 = Decoder::new(64 * 1024);
            dec2.set_digests(digests);
            dec2.feed(&out);
            match dec2.next_frame() {
                Some(Ok(f2)) => {
                    assert_eq!(f2.repr, frame.repr);
                    assert_eq!(f2.data, frame.data);
                    assert_eq!(f2.ahs, frame.ahs);
                }
                other => panic!("re-encoded PDU does not parse: {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
