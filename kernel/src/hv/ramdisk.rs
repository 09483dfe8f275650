//! A guest disk held in host memory, made from an image the host already
//! has in a buffer (a boot file): the buffer becomes the disk without a
//! second copy, padded to whole 512-byte sectors.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use storage::block::{BlockDevice, BlockError, check_request};

const SECTOR: usize = 512;

#[derive(Debug)]
pub struct RamDisk {
    data: Vec<u8>,
}

impl RamDisk {
    /// The image as a disk; fails (instead of aborting the host) when the
    /// padding to a whole sector cannot be allocated.
    pub fn from_image(mut image: Vec<u8>) -> Result<RamDisk, TryReserveError> {
        let padded = image.len().div_ceil(SECTOR) * SECTOR;
        image.try_reserve_exact(padded - image.len())?;
        image.resize(padded, 0);
        Ok(RamDisk { data: image })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl BlockDevice for RamDisk {
    fn block_size(&self) -> u32 {
        SECTOR as u32
    }
    fn num_blocks(&self) -> u64 {
        (self.data.len() / SECTOR) as u64
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let at = lba as usize * SECTOR;
        buf.copy_from_slice(&self.data[at..at + buf.len()]);
        Ok(())
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let at = lba as usize * SECTOR;
        self.data[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_becomes_a_padded_disk() {
        let mut d = RamDisk::from_image(b"KEEL".to_vec()).unwrap();
        assert_eq!(d.num_blocks(), 1);
        let mut s = [0u8; 512];
        d.read_blocks(0, &mut s).unwrap();
        assert_eq!(&s[..5], b"KEEL\0");
        d.write_blocks(0, &[7u8; 512]).unwrap();
        assert_eq!(d.bytes()[511], 7);
        assert!(d.read_blocks(1, &mut s).is_err());
        assert!(d.write_blocks(0, &[0u8; 100]).is_err());
        assert_eq!(RamDisk::from_image(Vec::new()).unwrap().num_blocks(), 0);
        assert_eq!(RamDisk::from_image(vec![1; 1024]).unwrap().num_blocks(), 2);
    }
}
