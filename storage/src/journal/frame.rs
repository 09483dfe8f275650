//! One journal frame: a checksummed payload starting on a block boundary.
//!
//! ```text
//! 0  magic "KJFR"   4  payload length   8  generation   16 sequence
//! 24 reserved (0)   28 CRC32C of (journal id, bytes 0..28, payload)
//! 32 payload, then zero padding to the next block boundary
//! ```
//! The generation and the journal id in the checksum make frames of an
//! earlier use of the area (or of an earlier journal) fail it.

use alloc::vec::Vec;

use super::header::{u32_at, u64_at};
use crate::iscsi::crc32c::Crc32c;

pub const MAGIC: [u8; 4] = *b"KJFR";
pub const HEADER_LEN: usize = 32;

/// The header fields a frame must have to belong where it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub journal_id: u64,
    pub generation: u64,
}

/// What the bytes at a block boundary are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Not a frame of this journal and generation (stale or empty space).
    Foreign,
    /// A frame of this generation whose payload is `len` bytes, claiming
    /// sequence `seq`; the checksum is verified by [`verify`].
    Frame { seq: u64, len: usize },
}

/// Looks at a frame header.
pub fn probe(head: &[u8], expect: Expect) -> Probe {
    let Some(h) = head.get(..HEADER_LEN) else {
        return Probe::Foreign;
    };
    if h[0..4] != MAGIC || u64_at(h, 8) != expect.generation || u32_at(h, 24) != 0 {
        return Probe::Foreign;
    }
    Probe::Frame {
        seq: u64_at(h, 16),
        len: u32_at(h, 4) as usize,
    }
}

fn checksum(journal_id: u64, head: &[u8], payload: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(&journal_id.to_le_bytes());
    c.update(head.get(..28).unwrap_or(&[]));
    c.update(payload);
    c.finish()
}

/// Whether `frame` (header and payload, at least) is intact.
pub fn verify(frame: &[u8], journal_id: u64) -> bool {
    let len = u32_at(frame, 4) as usize;
    let Some(payload) = frame.get(HEADER_LEN..HEADER_LEN + len) else {
        return false;
    };
    checksum(journal_id, frame, payload) == u32_at(frame, 28)
}

/// Blocks a frame with a `len`-byte payload occupies.
pub fn blocks_for(len: usize, block_size: u32) -> u64 {
    (HEADER_LEN + len).div_ceil(block_size as usize) as u64
}

/// The frame's bytes, padded to whole blocks.
pub fn encode(payload: &[u8], seq: u64, expect: Expect, block_size: u32) -> Vec<u8> {
    let total = blocks_for(payload.len(), block_size) as usize * block_size as usize;
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&expect.generation.to_le_bytes());
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    let crc = checksum(expect.journal_id, &f, payload);
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(payload);
    f.resize(total, 0);
    f
}
