//! A VDI as a [`BlockDevice`], for virtio-blk backends and raw imports.

use super::Sr;
use crate::block::{BlockDevice, BlockError, check_range, check_request};

/// Block size VDIs show.
pub const VDI_BLOCK_SIZE: u32 = 512;

/// One VDI of an SR, borrowed for I/O.
#[derive(Debug)]
pub struct VdiDevice<'a, D> {
    sr: &'a mut Sr<D>,
    id: u32,
}

impl<'a, D: BlockDevice> VdiDevice<'a, D> {
    pub(super) fn new(sr: &'a mut Sr<D>, id: u32) -> Self {
        VdiDevice { sr, id }
    }
}

fn block_error(e: super::SrError) -> BlockError {
    match e {
        super::SrError::Block(b) => b,
        super::SrError::ReadOnly => BlockError::ReadOnly,
        _ => BlockError::Io,
    }
}

impl<D: BlockDevice> BlockDevice for VdiDevice<'_, D> {
    fn block_size(&self) -> u32 {
        VDI_BLOCK_SIZE
    }
    fn num_blocks(&self) -> u64 {
        self.sr
            .state
            .layers
            .get(&self.id)
            .map_or(0, |l| l.meta.virtual_size / u64::from(VDI_BLOCK_SIZE))
    }
    fn read_only(&self) -> bool {
        self.sr
            .state
            .layers
            .get(&self.id)
            .is_none_or(|l| l.meta.read_only)
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        self.sr
            .read_layer(self.id, lba * u64::from(VDI_BLOCK_SIZE), buf)
            .map_err(block_error)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        check_request(self, lba, buf.len())?;
        self.sr
            .write_layer(self.id, lba * u64::from(VDI_BLOCK_SIZE), buf)
            .map_err(block_error)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.sr.flush().map_err(block_error)
    }
    fn supports_discard(&self) -> bool {
        !self.read_only()
    }
    /// Whole clusters only this VDI maps go back to the SR
    /// ([`Sr::discard`](super::Sr::discard)); the rest is left as it is.
    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.read_only() {
            return Err(BlockError::ReadOnly);
        }
        let bs = u64::from(VDI_BLOCK_SIZE);
        check_range(lba, blocks, self.num_blocks())?;
        let uuid = self
            .sr
            .state
            .layers
            .get(&self.id)
            .map(|l| l.meta.uuid)
            .ok_or(BlockError::Io)?;
        self.sr
            .discard(&uuid, lba * bs, blocks * bs)
            .map(|_| ())
            .map_err(block_error)
    }
}
