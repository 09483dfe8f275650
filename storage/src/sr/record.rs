//! SR metadata records: one journal frame each, applied in order. Every
//! metadata change of an SR is exactly one record, so it is on disk whole
//! or not at all.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A layer's metadata: a VDI (visible) or a hidden base layer that holds
/// the content shared by the snapshots and clones above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// The VDI uuid; zero for hidden layers.
    pub uuid: [u8; 16],
    pub name: String,
    /// Bytes the VDI shows (a multiple of 512).
    pub virtual_size: u64,
    pub read_only: bool,
    pub hidden: bool,
    /// Layer whose content shows through where this one has no cluster.
    pub parent: Option<u32>,
    /// The VDI this one was snapshotted or cloned from (XenAPI
    /// `snapshot_of` for snapshots); it may have been deleted since.
    pub origin: Option<[u8; 16]>,
    pub is_a_snapshot: bool,
}

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A new layer. Its parent must exist and be hidden.
    Create {
        id: u32,
        meta: LayerMeta,
    },
    /// Physical clusters now hold these virtual clusters of the layer:
    /// `(virtual, physical)`. Written after the data landed.
    Map {
        id: u32,
        clusters: Vec<(u64, u64)>,
    },
    /// Freezes VDI `vdi`: its clusters move to the new hidden layer `base`,
    /// which becomes the parent of `vdi` and of the new VDI `child` (a
    /// snapshot if read-only, else a clone).
    Snapshot {
        vdi: u32,
        base: u32,
        child: u32,
        child_meta: LayerMeta,
    },
    /// Grows a VDI.
    Resize {
        id: u32,
        virtual_size: u64,
    },
    SetReadOnly {
        id: u32,
        read_only: bool,
    },
    SetName {
        id: u32,
        name: String,
    },
    /// Removes a VDI, frees its clusters, and removes the hidden layers
    /// below that no VDI uses any more.
    Delete {
        id: u32,
    },
    /// Merges the hidden parent of `id` (of which `id` is the only child)
    /// into `id`: its clusters that `id` does not shadow move up, the others
    /// are freed.
    Coalesce {
        id: u32,
    },
    /// Frees virtual clusters of VDI `id`'s own layer (discard); they read
    /// as zeros afterwards, so none may be mapped by a layer below.
    /// Appended last: older journals decode unchanged.
    Unmap {
        id: u32,
        clusters: Vec<u64>,
    },
}
