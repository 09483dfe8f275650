//! Discard (TRIM/UNMAP from a guest): the clusters of a VDI that a range
//! covers whole go back to the SR's free space.
//!
//! A cluster is released only where nothing below the VDI's own layer
//! maps it, so afterwards it reads as zeros: a discarded cluster never
//! shows a base layer's older content (and never another VDI's data, as
//! the cluster is free only once the record that unmapped it is durable,
//! like a deleted VDI's). A cluster that shadows a base (a clone's
//! rewrite of its template's data) stays: releasing it would make the
//! base's bytes reappear, and zeroing it would need a marker the format
//! does not have. Parts of a range smaller than a cluster are left as
//! they are, as discard allows.

use alloc::vec::Vec;

use super::record::Record;
use super::{Sr, SrError, Uuid};
use crate::block::BlockDevice;

impl<D: BlockDevice> Sr<D> {
    /// Releases the clusters `[offset, offset + len)` of VDI `uuid` covers
    /// whole and only its own layer maps. Returns the bytes released.
    pub fn discard(&mut self, uuid: &Uuid, offset: u64, len: u64) -> Result<u64, SrError> {
        self.require_vdi_sr()?;
        let id = self.id_of(uuid)?;
        let (size, read_only, parent) = self
            .state
            .layers
            .get(&id)
            .map(|l| (l.meta.virtual_size, l.meta.read_only, l.meta.parent))
            .ok_or(SrError::NoSuchVdi)?;
        if read_only {
            return Err(SrError::ReadOnly);
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= size)
            .ok_or(SrError::OutOfRange { offset, len, size })?;
        let cs = self.state.cluster_size;
        // The last cluster of a VDI whose size is not a cluster multiple
        // counts as whole when the range reaches the VDI's end.
        let first = offset.div_ceil(cs);
        let last = if end == size {
            end.div_ceil(cs)
        } else {
            end / cs
        };
        if first >= last {
            return Ok(0);
        }
        // Allocations not journaled yet become map entries first.
        self.journal_pending()?;
        let clusters: Vec<u64> = self
            .state
            .layers
            .get(&id)
            .map(|l| l.map.range(first..last).map(|(&v, _)| v).collect())
            .unwrap_or_default();
        let clusters: Vec<u64> = clusters
            .into_iter()
            .filter(|&v| parent.is_none_or(|p| self.state.locate(p, v).is_none()))
            .collect();
        if clusters.is_empty() {
            return Ok(0);
        }
        let released = clusters.len() as u64 * cs;
        self.commit_record(Record::Unmap { id, clusters })?;
        Ok(released)
    }
}
