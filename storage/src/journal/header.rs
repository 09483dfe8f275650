//! The header of one journal area. Each area keeps two copies in its first
//! two blocks, written one after the other, so a torn header write damages
//! at most one copy and the other still says what the area held before.

use crate::iscsi::crc32c::crc32c;

pub const MAGIC: [u8; 8] = *b"KEELJRNL";
pub const VERSION: u32 = 1;
/// Encoded size; the rest of the block is zero.
pub const LEN: usize = 64;

/// What an area holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaState {
    /// A compaction is writing this area's frames; not yet readable. The
    /// generation is reserved: a retry after a crash takes a newer one, so
    /// frames from the torn attempt can never pass as the retry's.
    Preparing,
    /// The area's frames of this generation are the journal (if it is the
    /// newest active area).
    Active,
}

/// One decoded header copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaHeader {
    pub state: AreaState,
    /// Set at format from the caller's randomness: frames left on the disk
    /// by an earlier journal never match it.
    pub journal_id: u64,
    pub generation: u64,
    pub area: u32,
    pub block_size: u32,
    pub area_blocks: u64,
}

impl AreaHeader {
    pub fn encode(&self, block: &mut [u8]) {
        block.fill(0);
        if block.len() < LEN {
            return;
        }
        block[0..8].copy_from_slice(&MAGIC);
        block[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let state: u32 = match self.state {
            AreaState::Preparing => 1,
            AreaState::Active => 2,
        };
        block[12..16].copy_from_slice(&state.to_le_bytes());
        block[16..24].copy_from_slice(&self.journal_id.to_le_bytes());
        block[24..32].copy_from_slice(&self.generation.to_le_bytes());
        block[32..36].copy_from_slice(&self.area.to_le_bytes());
        block[36..40].copy_from_slice(&self.block_size.to_le_bytes());
        block[40..48].copy_from_slice(&self.area_blocks.to_le_bytes());
        let crc = crc32c(&block[..LEN - 4]);
        block[LEN - 4..LEN].copy_from_slice(&crc.to_le_bytes());
    }

    /// `None` for anything but an intact header of this version.
    pub fn decode(block: &[u8]) -> Option<AreaHeader> {
        let b = block.get(..LEN)?;
        if b[0..8] != MAGIC || u32_at(b, 60) != crc32c(&b[..LEN - 4]) || u32_at(b, 8) != VERSION {
            return None;
        }
        let state = match u32_at(b, 12) {
            1 => AreaState::Preparing,
            2 => AreaState::Active,
            _ => return None,
        };
        Some(AreaHeader {
            state,
            journal_id: u64_at(b, 16),
            generation: u64_at(b, 24),
            area: u32_at(b, 32),
            block_size: u32_at(b, 36),
            area_blocks: u64_at(b, 40),
        })
    }
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_refused() {
        let h = AreaHeader {
            state: AreaState::Active,
            journal_id: 0x1234_5678_9abc,
            generation: 7,
            area: 1,
            block_size: 512,
            area_blocks: 100,
        };
        let mut b = [0u8; 512];
        h.encode(&mut b);
        assert_eq!(AreaHeader::decode(&b), Some(h));
        for bit in 0..LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(AreaHeader::decode(&c), None, "bit {bit}");
        }
        assert_eq!(AreaHeader::decode(&b[..10]), None);
    }
}
