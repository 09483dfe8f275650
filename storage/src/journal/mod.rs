//! A crash-safe journal on a device region: checksummed frames appended in
//! order, compacted into the other of two alternating areas.
//!
//! The region is split into two areas. The active one is the area whose
//! header (two copies) says `Active` with the newest generation; its frames
//! of that generation, in sequence from 0, are the journal. An append writes
//! one frame starting on a fresh block and flushes: blocks of completed
//! frames are never written again while their area is active, so a torn
//! append can only lose itself. Compaction writes a snapshot of the owner's
//! state as frames into the other area under a new generation, flushes, and
//! only then marks that area active: a crash at any byte leaves either the
//! old journal or the new one.
//!
//! The owner (the config store, an SR) decides what frames mean; the journal
//! only keeps them. Callers pass the device in, so one disk can hold several
//! structures.

mod frame;
mod header;

/// Little-endian field readers shared with the SR superblock.
pub mod header_bytes {
    pub use super::header::{u32_at, u64_at};
}

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockDevice, BlockError};
use crate::region::Region;
use frame::{Expect, Probe};
use header::{AreaHeader, AreaState};

/// Header copies at the start of each area.
const HEADER_BLOCKS: u64 = 2;
/// Read-ahead while replaying.
const WINDOW_BYTES: u64 = 256 * 1024;

/// Why a journal operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError {
    Block(BlockError),
    /// The region cannot hold two areas of a header and a frame each.
    RegionTooSmall {
        blocks: u64,
    },
    /// No intact journal header in the region.
    NotFormatted,
    /// An intact frame follows a damaged one: the disk changed under us
    /// (bit flips, a foreign write), not a power loss. `offset` is the byte
    /// offset of the damaged frame on the device.
    Corrupt {
        offset: u64,
    },
    /// The frame (or snapshot) does not fit in an area.
    Full {
        needed_blocks: u64,
        free_blocks: u64,
    },
    /// A write failed earlier; what reached the disk is unknown until the
    /// journal is opened again.
    Poisoned,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Block(e) => write!(f, "journal I/O: {e}"),
            JournalError::RegionTooSmall { blocks } => {
                write!(f, "a journal region of {blocks} blocks is too small")
            }
            JournalError::NotFormatted => write!(f, "no journal in this region (not formatted)"),
            JournalError::Corrupt { offset } => write!(
                f,
                "journal damaged at byte {offset}: later records exist (bit rot or a foreign write); open with salvage to keep the records before it"
            ),
            JournalError::Full {
                needed_blocks,
                free_blocks,
            } => write!(
                f,
                "journal full: {needed_blocks} blocks needed, {free_blocks} free"
            ),
            JournalError::Poisoned => {
                write!(f, "an earlier write failed; reopen the journal")
            }
        }
    }
}

impl core::error::Error for JournalError {}

impl From<BlockError> for JournalError {
    fn from(e: BlockError) -> Self {
        JournalError::Block(e)
    }
}

/// What to do with a damaged frame that has intact frames after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open ([`JournalError::Corrupt`]).
    Strict,
    /// Open with the frames before the damage; the next append overwrites it.
    Salvage,
}

/// Damage found (and survived) while opening.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// A header copy of the active area is damaged (the other one was used).
    pub damaged_header_copy: bool,
    /// The last frame was torn (an interrupted append; it is dropped).
    pub torn_tail: bool,
    /// With [`Recovery::Salvage`]: byte offset of the damage, whose later
    /// frames were dropped.
    pub salvaged_at: Option<u64>,
}

/// An open journal. It holds no device: pass the same one to every call.
#[derive(Debug, Clone)]
pub struct Journal {
    region: Region,
    block_size: u32,
    area_blocks: u64,
    journal_id: u64,
    active: u32,
    generation: u64,
    /// Generation the next compaction takes (above every header on disk).
    next_generation: u64,
    /// Sequence number of the next frame.
    seq: u64,
    /// First free block in the active area, from the area start.
    tail: u64,
    poisoned: bool,
}

impl Journal {
    fn geometry(dev: &(impl BlockDevice + ?Sized), region: Region) -> Result<u64, JournalError> {
        region.check(dev)?;
        let area_blocks = region.blocks / 2;
        if area_blocks < HEADER_BLOCKS + 1 || dev.block_size() < header::LEN as u32 {
            return Err(JournalError::RegionTooSmall {
                blocks: region.blocks,
            });
        }
        Ok(area_blocks)
    }

    fn area_lba(&self, area: u32) -> u64 {
        self.region.start_lba + u64::from(area) * self.area_blocks
    }

    /// Writes an empty journal in area 0. `journal_id` should differ from
    /// any journal formatted on this region before (take it from a random
    /// source). Old headers are not erased but outnumbered: the new
    /// generations are above every header found, so the frames of an old
    /// journal never pass as ours even under the same id.
    pub fn format(
        dev: &mut (impl BlockDevice + ?Sized),
        region: Region,
        journal_id: u64,
    ) -> Result<Journal, JournalError> {
        let area_blocks = Self::geometry(dev, region)?;
        let bs = dev.block_size();
        let mut newest = 0;
        let mut block = vec![0u8; bs as usize];
        for area in 0..2u64 {
            for copy in 0..HEADER_BLOCKS {
                dev.read_blocks(region.start_lba + area * area_blocks + copy, &mut block)?;
                if let Some(h) = AreaHeader::decode(&block) {
                    newest = newest.max(h.generation);
                }
            }
        }
        let reserved = newest.saturating_add(1);
        let generation = reserved.saturating_add(1);
        let mut j = Journal {
            region,
            block_size: bs,
            area_blocks,
            journal_id,
            active: 0,
            generation,
            next_generation: generation.saturating_add(1),
            seq: 0,
            tail: HEADER_BLOCKS,
            poisoned: false,
        };
        // Area 1 first: an old journal active there stops being active.
        j.write_header(dev, 1, AreaState::Preparing, reserved)?;
        j.write_header(dev, 0, AreaState::Active, generation)?;
        Ok(j)
    }

    /// Writes both header copies of `area`, copy 0 first, flushing after
    /// each so a crash damages at most one.
    fn write_header(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        area: u32,
        state: AreaState,
        generation: u64,
    ) -> Result<(), JournalError> {
        let h = AreaHeader {
            state,
            journal_id: self.journal_id,
            generation,
            area,
            block_size: self.block_size,
            area_blocks: self.area_blocks,
        };
        let mut block = vec![0u8; self.block_size as usize];
        h.encode(&mut block);
        let lba = self.area_lba(area);
        for copy in 0..HEADER_BLOCKS {
            self.io(|| dev.write_blocks(lba + copy, &block))?;
            self.io(|| dev.flush())?;
        }
        Ok(())
    }

    /// Runs one device operation; a failure poisons the journal.
    fn io(&mut self, op: impl FnOnce() -> Result<(), BlockError>) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        op().map_err(|e| {
            self.poisoned = true;
            JournalError::Block(e)
        })
    }

    /// Opens the journal and returns its frames' payloads in order.
    pub fn open(
        dev: &mut (impl BlockDevice + ?Sized),
        region: Region,
        recovery: Recovery,
    ) -> Result<(Journal, Vec<Vec<u8>>, OpenReport), JournalError> {
        let area_blocks = Self::geometry(dev, region)?;
        let bs = dev.block_size();
        // Every intact header copy: (area, copy, header).
        let mut copies: Vec<(u32, AreaHeader)> = Vec::new();
        let mut block = vec![0u8; bs as usize];
        for area in 0..2u32 {
            for copy in 0..HEADER_BLOCKS {
                dev.read_blocks(
                    region.start_lba + u64::from(area) * area_blocks + copy,
                    &mut block,
                )?;
                if let Some(h) = AreaHeader::decode(&block)
                    && h.area == area
                    && h.block_size == bs
                    && h.area_blocks == area_blocks
                {
                    copies.push((area, h));
                }
            }
        }
        let newest_active = copies
            .iter()
            .filter(|(_, h)| h.state == AreaState::Active)
            .max_by_key(|(_, h)| h.generation)
            .copied();
        let Some((active, head)) = newest_active else {
            return Err(JournalError::NotFormatted);
        };
        let mine = |h: &AreaHeader| h.journal_id == head.journal_id;
        let next_generation = copies
            .iter()
            .filter(|(_, h)| mine(h))
            .map(|(_, h)| h.generation)
            .max()
            .unwrap_or(head.generation)
            .saturating_add(1);
        let mut report = OpenReport {
            damaged_header_copy: copies
                .iter()
                .filter(|(a, h)| *a == active && *h == head)
                .count()
                < HEADER_BLOCKS as usize,
            ..OpenReport::default()
        };
        let mut j = Journal {
            region,
            block_size: bs,
            area_blocks,
            journal_id: head.journal_id,
            active,
            generation: head.generation,
            next_generation,
            seq: 0,
            tail: HEADER_BLOCKS,
            poisoned: false,
        };
        let expect = Expect {
            journal_id: j.journal_id,
            generation: j.generation,
        };
        let mut cursor = Cursor::new(j.area_lba(active), area_blocks, bs);
        let mut frames = Vec::new();
        loop {
            match cursor.frame(dev, j.tail, expect)? {
                Some((seq, payload)) if seq == j.seq => {
                    j.tail += frame::blocks_for(payload.len(), bs);
                    j.seq += 1;
                    frames.push(payload);
                }
                _ => break,
            }
        }
        // Past the end: stale frames and free space, a torn last frame, or
        // damage. Damage is an intact frame of ours with a later sequence.
        let mut at = j.tail;
        if let Probe::Frame { .. } = cursor.probe(dev, at, expect)? {
            report.torn_tail = true;
        }
        while at < area_blocks {
            if let Probe::Frame { seq, .. } = cursor.probe(dev, at, expect)?
                && seq > j.seq
                && cursor.frame(dev, at, expect)?.is_some()
            {
                let offset = (j.area_lba(active) + j.tail) * u64::from(bs);
                match recovery {
                    Recovery::Strict => return Err(JournalError::Corrupt { offset }),
                    Recovery::Salvage => {
                        report.salvaged_at = Some(offset);
                        report.torn_tail = false;
                        break;
                    }
                }
            }
            at += 1;
        }
        Ok((j, frames, report))
    }

    /// Blocks left in the active area.
    pub fn free_blocks(&self) -> u64 {
        self.area_blocks - self.tail
    }

    /// Blocks available to frames in one area.
    pub fn capacity_blocks(&self) -> u64 {
        self.area_blocks - HEADER_BLOCKS
    }

    /// Blocks a frame with this payload takes.
    pub fn frame_blocks(&self, payload_len: usize) -> u64 {
        frame::blocks_for(payload_len, self.block_size)
    }

    /// The journal's id (from format).
    pub fn id(&self) -> u64 {
        self.journal_id
    }

    /// The active area's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Appends one frame and makes it durable. On `Full`, nothing was
    /// written: compact, then retry.
    pub fn append(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        payload: &[u8],
    ) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let needed = self.frame_blocks(payload.len());
        if needed > self.free_blocks() || payload.len() > u32::MAX as usize {
            return Err(JournalError::Full {
                needed_blocks: needed,
                free_blocks: self.free_blocks(),
            });
        }
        let expect = Expect {
            journal_id: self.journal_id,
            generation: self.generation,
        };
        let bytes = frame::encode(payload, self.seq, expect, self.block_size);
        let lba = self.area_lba(self.active) + self.tail;
        self.io(|| dev.write_blocks(lba, &bytes))?;
        self.io(|| dev.flush())?;
        self.tail += needed;
        self.seq += 1;
        Ok(())
    }

    /// Replaces the journal by `frames` (the owner's snapshot of its
    /// state), written to the other area. On `Full` nothing changed.
    pub fn compact(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        frames: &[Vec<u8>],
    ) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let needed: u64 = frames.iter().map(|f| self.frame_blocks(f.len())).sum();
        if needed > self.capacity_blocks() {
            return Err(JournalError::Full {
                needed_blocks: needed,
                free_blocks: self.capacity_blocks(),
            });
        }
        let target = 1 - self.active;
        let generation = self.next_generation;
        // Reserve the generation on disk before any frame carries it.
        self.next_generation = generation + 1;
        self.write_header(dev, target, AreaState::Preparing, generation)?;
        let expect = Expect {
            journal_id: self.journal_id,
            generation,
        };
        let mut at = HEADER_BLOCKS;
        let mut batch = Vec::new();
        let base = self.area_lba(target);
        for (seq, f) in frames.iter().enumerate() {
            batch.extend_from_slice(&frame::encode(f, seq as u64, expect, self.block_size));
            if batch.len() as u64 >= WINDOW_BYTES || seq + 1 == frames.len() {
                let blocks = batch.len() as u64 / u64::from(self.block_size);
                self.io(|| dev.write_blocks(base + at, &batch))?;
                at += blocks;
                batch.clear();
            }
        }
        self.io(|| dev.flush())?;
        self.write_header(dev, target, AreaState::Active, generation)?;
        self.active = target;
        self.generation = generation;
        self.seq = frames.len() as u64;
        self.tail = at;
        Ok(())
    }
}

/// Reads an area through a read-ahead window.
struct Cursor {
    base_lba: u64,
    area_blocks: u64,
    block_size: u64,
    start: u64,
    window: Vec<u8>,
}

impl Cursor {
    fn new(base_lba: u64, area_blocks: u64, block_size: u32) -> Self {
        Cursor {
            base_lba,
            area_blocks,
            block_size: u64::from(block_size),
            start: 0,
            window: Vec::new(),
        }
    }

    /// Blocks `[block, block + count)` of the area, or an empty slice if
    /// they pass the area's end.
    fn blocks(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        block: u64,
        count: u64,
    ) -> Result<&[u8], JournalError> {
        let end = match block.checked_add(count) {
            Some(e) if e <= self.area_blocks => e,
            _ => return Ok(&[]),
        };
        let have = self.window.len() as u64 / self.block_size;
        if block < self.start || end > self.start + have {
            let want = count.max(WINDOW_BYTES / self.block_size);
            let n = want.min(self.area_blocks - block);
            self.window.resize((n * self.block_size) as usize, 0);
            dev.read_blocks(self.base_lba + block, &mut self.window)?;
            self.start = block;
        }
        let from = ((block - self.start) * self.block_size) as usize;
        let to = from + (count * self.block_size) as usize;
        Ok(&self.window[from..to])
    }

    fn probe(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        block: u64,
        expect: Expect,
    ) -> Result<Probe, JournalError> {
        Ok(frame::probe(self.blocks(dev, block, 1)?, expect))
    }

    /// The intact frame at `block`, if any: (sequence, payload).
    fn frame(
        &mut self,
        dev: &mut (impl BlockDevice + ?Sized),
        block: u64,
        expect: Expect,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        let Probe::Frame { seq, len } = self.probe(dev, block, expect)? else {
            return Ok(None);
        };
        let count = frame::blocks_for(len, self.block_size as u32);
        let bytes = self.blocks(dev, block, count)?;
        if bytes.is_empty() || !frame::verify(bytes, expect.journal_id) {
            return Ok(None);
        }
        Ok(Some((
            seq,
            bytes[frame::HEADER_LEN..frame::HEADER_LEN + len].to_vec(),
        )))
    }
}

/// Fuzz entry point: opens a journal on arbitrary bytes (as a 2-area
/// region of 512-byte blocks) both ways; must never panic.
pub fn fuzz_journal(data: &[u8]) {
    let blocks = (data.len() / 512) as u64;
    let mut dev = crate::mem::MemBlockDevice::new(512, blocks);
    dev.bytes_mut()
        .copy_from_slice(&data[..blocks as usize * 512]);
    let region = Region {
        start_lba: 0,
        blocks,
    };
    for r in [Recovery::Strict, Recovery::Salvage] {
        let _ = Journal::open(&mut dev, region, r);
    }
}

#[cfg(test)]
mod tests;
