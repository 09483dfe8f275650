//! The ISO library: ISOs written once as read-only VDIs, found by name.
//!
//! An ISO is written either in one call ([`Sr::import_iso`]) or in steps
//! (an upload over the network, a piece per job, possibly across opens of
//! the SR): [`Sr::begin_iso`], [`Sr::write`] of its bytes, then
//! [`Sr::finish_iso`]. Until it is finished the VDI stays writable and out
//! of [`Sr::isos`]; a cut upload leaves no half ISO listed.

use alloc::vec;
use alloc::vec::Vec;

use super::record::Record;
use super::{Sr, SrError, SrType, Uuid, VdiInfo};
use crate::block::BlockDevice;

impl<D: BlockDevice> Sr<D> {
    fn require_iso_sr(&self) -> Result<(), SrError> {
        match self.sb.sr_type {
            SrType::Iso => Ok(()),
            other => Err(SrError::WrongSrType(other)),
        }
    }

    /// Starts an ISO of `size` bytes (rounded up to a 512-byte block): a
    /// writable VDI, not listed until [`Self::finish_iso`]. A complete ISO
    /// of the same name is refused; an unfinished one of that name (an
    /// upload that was cut) is replaced.
    pub fn begin_iso(&mut self, uuid: Uuid, name: &str, size: u64) -> Result<(), SrError> {
        self.require_iso_sr()?;
        if self.isos().iter().any(|i| i.name == name) {
            return Err(SrError::NameInUse);
        }
        let unfinished: Vec<Uuid> = self
            .vdis()
            .into_iter()
            .filter(|v| !v.read_only && v.name == name)
            .map(|v| v.uuid)
            .collect();
        for old in unfinished {
            self.delete(&old)?;
        }
        self.new_layer(uuid, name, size.next_multiple_of(512))
            .map(|_| ())
    }

    /// Ends an ISO begun with [`Self::begin_iso`]: its bytes are made
    /// durable, then it becomes read-only and listed.
    pub fn finish_iso(&mut self, uuid: &Uuid) -> Result<(), SrError> {
        self.require_iso_sr()?;
        let id = self.id_of(uuid)?;
        // commit journals the clusters (after flushing their data) first.
        self.commit(Record::SetReadOnly {
            id,
            read_only: true,
        })
    }

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
        self.begin_iso(uuid, name, size)?;
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
            self.write(&uuid, at, chunk)?;
            at += n as u64;
        }
        self.finish_iso(&uuid)?;
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
