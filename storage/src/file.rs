//! A file as a block device (hosted tests, the CLI).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::block::{BlockDevice, BlockError, check_request};

/// A regular file of whole blocks.
#[derive(Debug)]
pub struct FileBlockDevice {
    file: File,
    block_size: u32,
    blocks: u64,
    read_only: bool,
}

impl FileBlockDevice {
    /// Opens `path`; a trailing partial block is ignored.
    pub fn open(path: &Path, block_size: u32, read_only: bool) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(FileBlockDevice {
            file,
            block_size: block_size.max(1),
            blocks: len / u64::from(block_size.max(1)),
            read_only,
        })
    }
}

impl BlockDevice for FileBlockDevice {
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.blocks
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        self.file
            .read_exact_at(buf, lba * u64::from(self.block_size))
            .map_err(|_| BlockError::Io)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check_request(self, lba, buf.len())?;
        self.file
            .write_all_at(buf, lba * u64::from(self.block_size))
            .map_err(|_| BlockError::Io)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|_| BlockError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let path = std::env::temp_dir().join(format!("keel-fbd-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 4096 + 100]).expect("create");
        let mut d = FileBlockDevice::open(&path, 512, false).expect("open");
        assert_eq!(d.num_blocks(), 8);
        d.write_blocks(2, &[7u8; 1024]).expect("write");
        let mut b = [0u8; 512];
        d.read_blocks(3, &mut b).expect("read");
        assert_eq!(b, [7u8; 512]);
        assert!(matches!(
            d.read_blocks(8, &mut b),
            Err(BlockError::OutOfRange { .. })
        ));
        d.flush().expect("flush");
        std::fs::remove_file(&path).ok();
    }
}
