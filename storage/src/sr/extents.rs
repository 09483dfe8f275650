//! Where a VDI's bytes live on the SR's device, for a data path that reads
//! and writes the device directly (an attached disk's iSCSI session)
//! instead of going through [`Sr`] for every request.
//!
//! The map holds only allocated clusters: a virtual cluster missing from it
//! reads as zeros. A cluster the VDI's own layer holds ("owned") takes
//! writes in place; any other cluster needs the SR (allocation,
//! copy-on-write from a base layer) and so its journal.

use alloc::collections::BTreeMap;

use super::{Sr, SrError, Uuid, cluster_offset};
use crate::block::BlockDevice;

/// Where one virtual cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset of the cluster on the SR's device.
    pub offset: u64,
    /// The VDI's top layer holds it (a write may go in place).
    pub owned: bool,
}

/// The allocated clusters of a VDI as its top layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiExtents {
    pub cluster_size: u32,
    pub virtual_size: u64,
    pub read_only: bool,
    /// Virtual cluster -> where it is.
    pub clusters: BTreeMap<u64, Extent>,
}

/// A run of a request that falls into one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Byte offset in the VDI.
    pub offset: u64,
    pub len: u64,
    /// Where its bytes are on the device (`None`: unallocated, zeros).
    pub at: Option<Extent>,
}

impl Piece {
    /// Byte offset of the piece on the device, if allocated.
    pub fn device_offset(&self, cluster_size: u32) -> Option<u64> {
        let cs = u64::from(cluster_size.max(1));
        self.at.map(|e| e.offset + self.offset % cs)
    }
}

impl VdiExtents {
    /// The pieces `len` bytes at `offset` split into, one per cluster, in
    /// order; `None` if the range is not inside the VDI.
    pub fn pieces(&self, offset: u64, len: u64) -> Option<alloc::vec::Vec<Piece>> {
        let end = offset.checked_add(len)?;
        if end > self.virtual_size || self.cluster_size == 0 {
            return None;
        }
        let cs = u64::from(self.cluster_size);
        let mut out = alloc::vec::Vec::new();
        let mut pos = offset;
        while pos < end {
            let n = (end - pos).min(cs - pos % cs);
            out.push(Piece {
                offset: pos,
                len: n,
                at: self.clusters.get(&(pos / cs)).copied(),
            });
            pos += n;
        }
        Some(out)
    }

    /// Whether a write of `len` bytes at `offset` can go straight to the
    /// device: every cluster it touches is the VDI's own.
    pub fn writable_in_place(&self, offset: u64, len: u64) -> bool {
        !self.read_only
            && self
                .pieces(offset, len)
                .is_some_and(|p| p.iter().all(|p| p.at.is_some_and(|e| e.owned)))
    }
}

impl<D: BlockDevice> Sr<D> {
    /// The allocated clusters of VDI `uuid` (pending allocations included),
    /// walking its chain: the top layer's own clusters first, then what
    /// shows through from each base below.
    pub fn vdi_extents(&self, uuid: &Uuid) -> Result<VdiExtents, SrError> {
        let id = self.id_of(uuid)?;
        let top = self.state.layers.get(&id).ok_or(SrError::NoSuchVdi)?;
        let mut clusters = BTreeMap::new();
        let mut at = Some(id);
        // A valid chain is short; a cycle in damaged metadata must not loop.
        let mut hops = 0;
        while let Some(i) = at {
            hops += 1;
            if hops > self.state.layers.len() {
                return Err(SrError::Invalid("a cycle in the VDI's chain"));
            }
            let Some(layer) = self.state.layers.get(&i) else {
                break;
            };
            let owned = i == id;
            let pending = self
                .pending
                .range((i, 0)..=(i, u64::MAX))
                .map(|(&(_, v), &p)| (v, p));
            for (v, p) in pending.chain(layer.map.iter().map(|(&v, &p)| (v, p))) {
                clusters.entry(v).or_insert(Extent {
                    offset: cluster_offset(&self.sb, p),
                    owned,
                });
            }
            at = layer.meta.parent;
        }
        Ok(VdiExtents {
            cluster_size: self.sb.cluster_size,
            virtual_size: top.meta.virtual_size,
            read_only: top.meta.read_only,
            clusters,
        })
    }
}
