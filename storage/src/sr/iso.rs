//! The ISO library: ISOs written once as read-only VDIs, found by name.

use alloc::vec;
use alloc::vec::Vec;

use super::record::Record;
use super::{Sr, SrError, SrType, Uuid, VdiInfo};
use crate::block::BlockDevice;

impl<D: BlockDevice> Sr<D> {
    /// Adds an ISO to an ISO library: `size` bytes produced by `fill(offset,
    /// buf)`, stored as a read-only VDI. Until the last byte is written the
    /// VDI stays writable and out of [`Self::isos`].
    pub fn import_iso<E>(
        &mut self,
        uuid: Uuid,
        name: &str,
        size: u64,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, SrError> {
        if self.sb.sr_type != SrType::Iso {
            return Err(SrError::WrongSrType(self.sb.sr_type));
        }
        if self.isos().iter().any(|i| i.name == name) {
            return Err(SrError::NameInUse);
        }
        let id = self.new_layer(uuid, name, size.next_multiple_of(512))?;
        let cs = u64::from(self.sb.cluster_size);
        let mut buf = vec![0u8; cs as usize];
        let mut at = 0;
        while at < size {
            let n = (size - at).min(cs) as usize;
            let chunk = &mut buf[..n.next_multiple_of(512)];
            chunk.fill(0);
            if let Err(e) = fill(at, &mut chunk[..n]) {
                return Ok(Err(e));
            }
            self.write_layer(id, at, chunk)?;
            at += n as u64;
        }
        // commit journals the clusters (after flushing their data) first.
        self.commit(Record::SetReadOnly {
            id,
            read_only: true,
        })?;
        Ok(Ok(()))
    }

    /// The ISOs of an ISO library, complete ones only.
    pub fn isos(&self) -> Vec<VdiInfo> {
        if self.sb.sr_type != SrType::Iso {
            return Vec::new();
        }
        self.vdis().into_iter().filter(|v| v.read_only).collect()
    }
}
