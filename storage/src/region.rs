//! A contiguous run of blocks on a device that one on-disk structure owns
//! (a journal, an SR's data area), and byte-addressed I/O on it.

use alloc::vec;

use crate::block::{BlockDevice, BlockError};

/// Blocks `[start_lba, start_lba + blocks)` of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start_lba: u64,
    pub blocks: u64,
}

impl Region {
    /// Checks that the region lies on `dev`.
    pub fn check(&self, dev: &(impl BlockDevice + ?Sized)) -> Result<(), BlockError> {
        match self.start_lba.checked_add(self.blocks) {
            Some(end) if end <= dev.num_blocks() => Ok(()),
            _ => Err(BlockError::OutOfRange {
                lba: self.start_lba,
                blocks: self.blocks,
                capacity: dev.num_blocks(),
            }),
        }
    }
}

/// Reads `buf.len()` bytes at byte `offset` of the device, whatever the
/// alignment (unaligned edges go through a bounce block).
pub fn read_bytes(
    dev: &mut (impl BlockDevice + ?Sized),
    offset: u64,
    buf: &mut [u8],
) -> Result<(), BlockError> {
    let bs = u64::from(dev.block_size());
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let lba = pos / bs;
        let within = (pos % bs) as usize;
        let left = buf.len() - done;
        if within == 0 && left as u64 >= bs {
            // The aligned middle in one request.
            let n = (left as u64 / bs * bs) as usize;
            dev.read_blocks(lba, &mut buf[done..done + n])?;
            done += n;
        } else {
            let mut block = vec![0u8; bs as usize];
            dev.read_blocks(lba, &mut block)?;
            let n = left.min(bs as usize - within);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
    }
    Ok(())
}

/// Writes `data` at byte `offset`; unaligned edges are read, merged and
/// written back.
pub fn write_bytes(
    dev: &mut (impl BlockDevice + ?Sized),
    offset: u64,
    data: &[u8],
) -> Result<(), BlockError> {
    let bs = u64::from(dev.block_size());
    let mut done = 0usize;
    while done < data.len() {
        let pos = offset + done as u64;
        let lba = pos / bs;
        let within = (pos % bs) as usize;
        let left = data.len() - done;
        if within == 0 && left as u64 >= bs {
            let n = (left as u64 / bs * bs) as usize;
            dev.write_blocks(lba, &data[done..done + n])?;
            done += n;
        } else {
            let mut block = vec![0u8; bs as usize];
            dev.read_blocks(lba, &mut block)?;
            let n = left.min(bs as usize - within);
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            dev.write_blocks(lba, &block)?;
            done += n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemBlockDevice;

    #[test]
    fn unaligned_bytes_round_trip() {
        let mut d = MemBlockDevice::new(512, 8);
        let data: alloc::vec::Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        write_bytes(&mut d, 300, &data).expect("write");
        let mut back = vec![0u8; 1500];
        read_bytes(&mut d, 300, &mut back).expect("read");
        assert_eq!(back, data);
        assert_eq!(d.bytes()[299], 0);
        assert_eq!(d.bytes()[1800], 0);
        assert!(read_bytes(&mut d, 4000, &mut [0u8; 200]).is_err());
    }
}
