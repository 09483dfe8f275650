//! Requests in flight: a group is what goes to the disk channel as one
//! request: a guest request alone, or several adjacent reads (or writes)
//! the guest made available together, merged. Each guest request of a
//! group is completed from the group's result.

use alloc::vec;
use alloc::vec::Vec;
use core::num::NonZeroU32;

use storage::BlockError;
use storage::channel::DiskOp;

use super::request::{Kind, S_IOERR, S_OK, S_UNSUPP};
use super::{HEADER, MAX_REQUEST_BYTES};
use crate::hv::memory::GuestMemory;
use crate::hv::virtio::queue::{Chain, Queue, QueueError};

/// One guest request of a group: its chain (descriptors copied when it was
/// taken) and where its bytes sit in the group's data.
#[derive(Debug)]
pub struct Part {
    pub chain: Chain,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug)]
pub struct Group {
    /// The whole group's request (its range spans every part).
    pub kind: Kind,
    pub parts: Vec<Part>,
}

impl Group {
    pub fn new(chain: Chain, kind: Kind) -> Group {
        Group {
            parts: vec![Part {
                chain,
                offset: 0,
                len: kind.bytes(),
            }],
            kind,
        }
    }

    /// Bytes the group moves through host memory.
    pub fn bytes(&self) -> u64 {
        self.kind.bytes()
    }

    /// Appends `kind` when it continues this group (a read right after its
    /// last block for a read group, a write for a write group) and the
    /// whole stays within [`MAX_REQUEST_BYTES`]; otherwise hands the chain
    /// back.
    pub fn merge(&mut self, chain: Chain, kind: Kind, block_size: NonZeroU32) -> Result<(), Chain> {
        let bs = u64::from(block_size.get());
        let grown = match (&mut self.kind, kind) {
            (
                Kind::Read { lba, len },
                Kind::Read {
                    lba: next,
                    len: more,
                },
            )
            | (
                Kind::Write { lba, len },
                Kind::Write {
                    lba: next,
                    len: more,
                },
            ) if *lba + *len / bs == next && *len + more <= MAX_REQUEST_BYTES => {
                let offset = *len;
                *len += more;
                Some((offset, more))
            }
            _ => None,
        };
        let Some((offset, len)) = grown else {
            return Err(chain);
        };
        self.parts.push(Part { chain, offset, len });
        Ok(())
    }

    /// The channel request: a write's data is copied from the guest now.
    pub fn op(&self, mem: &GuestMemory<'_>, block_size: NonZeroU32) -> Result<DiskOp, QueueError> {
        let bs = u64::from(block_size.get());
        Ok(match self.kind {
            Kind::Read { lba, len } => DiskOp::Read {
                lba,
                // At most MAX_REQUEST_BYTES, far below 2^32 blocks.
                blocks: u32::try_from(len / bs).unwrap_or(u32::MAX),
            },
            Kind::Write { lba, len } => {
                // The parts follow each other (each starts where the last
                // ended), so their bytes are appended, never zeroed first.
                let mut data = Vec::with_capacity(len as usize);
                for p in &self.parts {
                    p.chain
                        .append_to(mem, HEADER as u64, p.len as usize, &mut data)?;
                    if data.len() as u64 != p.offset + p.len {
                        return Err(QueueError::Malformed("a write shorter than it was"));
                    }
                }
                DiskOp::Write { lba, data }
            }
            Kind::Zeroes { lba, len } => DiskOp::Write {
                lba,
                data: vec![0u8; len as usize],
            },
            Kind::Flush => DiskOp::Flush,
            Kind::Discard { lba, blocks } => DiskOp::Discard { lba, blocks },
        })
    }

    /// Completes every guest request of the group with `result`: a read's
    /// bytes into its buffers, the status byte, the used ring. Returns the
    /// requests that failed.
    pub fn complete(
        self,
        result: Result<Vec<u8>, BlockError>,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<u64, QueueError> {
        let is_read = matches!(self.kind, Kind::Read { .. });
        let status = match &result {
            Ok(data) if is_read && data.len() as u64 != self.bytes() => S_IOERR,
            Ok(_) => S_OK,
            Err(BlockError::Unsupported) => S_UNSUPP,
            Err(_) => S_IOERR,
        };
        let mut failed = 0;
        for p in self.parts {
            let mut written = 0u64;
            if let (S_OK, true, Ok(data)) = (status, is_read, &result) {
                let from = &data[p.offset as usize..(p.offset + p.len) as usize];
                written = p.chain.write(mem, 0, from)? as u64;
            }
            answer(queue, mem, &p.chain, status, written)?;
            if status != S_OK {
                failed += 1;
            }
        }
        Ok(failed)
    }
}

/// Writes `status` into the chain's last writable byte and puts the chain
/// on the used ring with `written` data bytes (plus the status byte).
pub fn answer(
    queue: &mut Queue,
    mem: &mut GuestMemory<'_>,
    chain: &Chain,
    status: u8,
    written: u64,
) -> Result<(), QueueError> {
    let status_at = chain.writable_len().saturating_sub(1);
    chain.write(mem, status_at, &[status])?;
    let len = u32::try_from(written + 1).unwrap_or(u32::MAX);
    queue.push_used(mem, chain.head, len)
}
