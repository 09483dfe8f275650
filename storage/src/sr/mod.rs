//! Storage repositories (SRs) and their virtual disks (VDIs).
//!
//! One on-disk format serves the three SR types (`local` on a host disk,
//! `iscsi` on a LUN, `iso` for an ISO library). The device holds a
//! superblock (see [`superblock`]), a lease record for pool-level locking,
//! a metadata [`Journal`] and the data clusters.
//!
//! **Clusters.** Space is allocated in clusters of [`DEFAULT_CLUSTER_SIZE`]
//! (1 MiB; a format parameter, 64 KiB to 4 MiB). XenServer's VHD uses 2 MiB
//! blocks, qcow2 64 KiB. 1 MiB keeps the metadata small (one map entry per
//! MiB: about 8 MiB of journal snapshot per TiB, held in memory) while the
//! copy on first write to a cluster (reading the parent's 1 MiB) stays about
//! a millisecond on a disk or a 10 GbE LUN; smaller clusters multiply the
//! metadata, larger ones the copy and the space a sparse guest wastes.
//!
//! **Layers.** A VDI is the top layer of a chain: reads fall through to the
//! parent where a layer has no cluster; writes allocate in the top layer,
//! copying the rest of the cluster from below. A snapshot or clone freezes
//! the VDI's clusters into a new hidden base layer under both the VDI and
//! the new one, so only metadata changes. Coalesce merges a hidden base
//! with its only child; delete frees a VDI's clusters and the bases nothing
//! uses any more, and coalesces the sibling left alone.
//!
//! **Crash safety.** Every metadata change is one journal record
//! ([`record::Record`]). New clusters are written and flushed before the
//! record that maps them, and a freed cluster is reused only after the
//! record that freed it is durable: after a power loss at any point every
//! VDI reads what it held before or after the interrupted operation, never
//! another VDI's data. Writes to clusters a VDI already owns go in place.
//!
//! **Write cache.** Like a disk with a volatile cache, a write is durable
//! once [`Sr::flush`] (or the VDI device's flush) returns: clusters a write
//! allocates are mapped in memory at once and journaled at the next flush
//! (or after [`MAX_PENDING`] of them, or before any other metadata change),
//! so a guest's stream of allocating writes costs one journal record and
//! two device flushes per flush instead of per cluster.

mod data;
mod discard;
mod error;
pub mod extents;
mod iso;
pub mod record;
pub mod state;
pub mod superblock;
mod vdi;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::journal::{Journal, JournalError, Recovery};
use crate::region::{Region, read_bytes, write_bytes};
pub use error::SrError;
pub use extents::{Extent, Piece, VdiExtents};
use record::{LayerMeta, Record};
use state::SrState;
pub use superblock::{Lease, SrType, Superblock, SuperblockError};
pub use vdi::VdiDevice;

pub const DEFAULT_CLUSTER_SIZE: u32 = 1 << 20;
pub const MIN_CLUSTER_SIZE: u32 = 64 * 1024;
pub const MAX_CLUSTER_SIZE: u32 = 4 << 20;
/// Map entries per record in a compaction snapshot.
const SNAPSHOT_MAP_ENTRIES: usize = 4096;
/// Records are packed into snapshot frames of about this size.
const SNAPSHOT_FRAME_BYTES: usize = 64 * 1024;
/// Allocated clusters kept unjournaled at most (then they are journaled
/// without waiting for a flush).
pub const MAX_PENDING: usize = 256;

pub type Uuid = [u8; 16];

/// A VDI as the API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiInfo {
    pub uuid: Uuid,
    pub name: String,
    pub virtual_size: u64,
    pub read_only: bool,
    /// Bytes of clusters this VDI's own layer holds (not its bases').
    pub physical_utilisation: u64,
    /// Layers in the chain (1: no parent).
    pub chain_len: usize,
    /// The VDI this one was snapshotted or cloned from.
    pub origin: Option<Uuid>,
    pub is_a_snapshot: bool,
}

/// An open SR on a device it owns.
#[derive(Debug)]
pub struct Sr<D> {
    dev: D,
    sb: Superblock,
    journal: Journal,
    state: SrState,
    lease: Option<Lease>,
    alloc_hint: u64,
    last_id: u32,
    /// Clusters written for a layer but not journaled yet:
    /// (layer, virtual cluster) -> physical cluster.
    pending: BTreeMap<(u32, u64), u64>,
    /// The physical clusters of `pending`.
    reserved: BTreeSet<u64>,
}

fn journal_region(sb: &Superblock) -> Region {
    let bs = u64::from(sb.block_size);
    Region {
        start_lba: superblock::JOURNAL_OFFSET / bs,
        blocks: sb.journal_len / bs,
    }
}

fn cluster_offset(sb: &Superblock, phys: u64) -> u64 {
    sb.data_offset + phys * u64::from(sb.cluster_size)
}

impl<D: BlockDevice> Sr<D> {
    /// Formats `dev` as an empty SR. `uuid` must be random: it also seeds
    /// the journal id, so metadata of an SR formatted here before is never
    /// read as ours.
    pub fn format(dev: D, sr_type: SrType, uuid: Uuid, cluster_size: u32) -> Result<Self, SrError> {
        Self::format_with_journal(dev, sr_type, uuid, cluster_size, None)
    }

    /// Formats with a journal of `journal_len` bytes instead of the size
    /// derived from the device (tests use a small one to compact often).
    pub(crate) fn format_with_journal(
        mut dev: D,
        sr_type: SrType,
        uuid: Uuid,
        cluster_size: u32,
        journal_len: Option<u64>,
    ) -> Result<Self, SrError> {
        let bs = dev.block_size();
        if !cluster_size.is_power_of_two()
            || !(MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&cluster_size)
            || bs == 0
            || !superblock::SECTOR.is_multiple_of(u64::from(bs))
        {
            return Err(SrError::BadGeometry);
        }
        let bytes = dev.num_blocks().saturating_mul(u64::from(bs));
        let cs = u64::from(cluster_size);
        // Two areas, each able to hold a snapshot of every cluster's map
        // entry (about 8 bytes) four times over.
        let journal_len = journal_len
            .unwrap_or((bytes / cs * 64).max(256 * 1024).max(256 * u64::from(bs)))
            .next_multiple_of(superblock::SECTOR);
        let data_offset = (superblock::JOURNAL_OFFSET + journal_len).next_multiple_of(cs);
        let clusters = bytes.saturating_sub(data_offset) / cs;
        if clusters == 0 {
            return Err(SrError::DeviceTooSmall { bytes });
        }
        let sb = Superblock {
            sr_type,
            generation: 1,
            uuid,
            cluster_size,
            block_size: bs,
            journal_len,
            data_offset,
            clusters,
        };
        let journal_id = u64::from_le_bytes([
            uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7],
        ]) ^ u64::from_le_bytes([
            uuid[8], uuid[9], uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15],
        ]);
        // The superblock goes last: until it is written the device is not
        // an SR, and a half-formatted one is never opened.
        let mut sector = vec![0u8; superblock::SECTOR as usize];
        write_bytes(&mut dev, superblock::SUPERBLOCK_COPIES[1], &sector)?;
        write_bytes(&mut dev, superblock::SUPERBLOCK_COPIES[0], &sector)?;
        dev.flush()?;
        let journal = Journal::format(&mut dev, journal_region(&sb), journal_id)?;
        let lease = Lease::default();
        lease.encode(&mut sector);
        write_bytes(&mut dev, superblock::LEASE_OFFSET, &sector)?;
        sb.encode(&mut sector);
        for at in superblock::SUPERBLOCK_COPIES {
            write_bytes(&mut dev, at, &sector)?;
            dev.flush()?;
        }
        Ok(Sr {
            dev,
            sb,
            journal,
            state: SrState::new(clusters, cluster_size),
            lease: Some(lease),
            alloc_hint: 0,
            last_id: 0,
            pending: BTreeMap::new(),
            reserved: BTreeSet::new(),
        })
    }

    /// Opens the SR on `dev`, replaying its metadata.
    pub fn open(mut dev: D) -> Result<Self, SrError> {
        let mut sector = vec![0u8; superblock::SECTOR as usize];
        let mut best: Option<Superblock> = None;
        let mut first_err = None;
        for at in superblock::SUPERBLOCK_COPIES {
            if u64::from(dev.block_size()) > superblock::SECTOR {
                return Err(SrError::BadGeometry);
            }
            read_bytes(&mut dev, at, &mut sector)?;
            match Superblock::decode(&sector) {
                Ok(sb) if best.is_none_or(|b| sb.generation > b.generation) => best = Some(sb),
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let sb = best.ok_or(SrError::Superblock(
            first_err.unwrap_or(SuperblockError::NotAnSr),
        ))?;
        let bytes = dev.num_blocks().saturating_mul(u64::from(dev.block_size()));
        if sb.block_size != dev.block_size() {
            return Err(SrError::BadGeometry);
        }
        if sb.data_offset + sb.clusters * u64::from(sb.cluster_size) > bytes {
            return Err(SrError::DeviceTooSmall { bytes });
        }
        read_bytes(&mut dev, superblock::LEASE_OFFSET, &mut sector)?;
        let lease = Lease::decode(&sector);
        let (journal, frames, _report) =
            Journal::open(&mut dev, journal_region(&sb), Recovery::Strict)?;
        let mut state = SrState::new(sb.clusters, sb.cluster_size);
        let mut record = 0;
        for f in &frames {
            let recs: Vec<Record> =
                postcard::from_bytes(f).map_err(|_| SrError::BadRecord { record })?;
            for rec in recs {
                state
                    .apply(rec)
                    .map_err(|e| SrError::Inconsistent { record, why: e.0 })?;
                record += 1;
            }
        }
        let last_id = state.layers.keys().next_back().copied().unwrap_or(0);
        Ok(Sr {
            dev,
            sb,
            journal,
            state,
            lease,
            alloc_hint: 0,
            last_id,
            pending: BTreeMap::new(),
            reserved: BTreeSet::new(),
        })
    }

    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    pub fn sr_type(&self) -> SrType {
        self.sb.sr_type
    }

    /// The lease record (`None` if damaged).
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }

    /// Bytes of data clusters.
    pub fn physical_size(&self) -> u64 {
        self.sb.clusters * u64::from(self.sb.cluster_size)
    }

    /// Bytes of data clusters in use.
    pub fn physical_utilisation(&self) -> u64 {
        (self.state.used.used() + self.reserved.len() as u64) * u64::from(self.sb.cluster_size)
    }

    pub fn device(&mut self) -> &mut D {
        &mut self.dev
    }

    /// The device, dropping writes not flushed yet (what a power loss
    /// does); see [`Self::close`].
    pub fn into_device(self) -> D {
        self.dev
    }

    /// Flushes, then hands the device back.
    pub fn close(mut self) -> Result<D, SrError> {
        self.flush()?;
        Ok(self.dev)
    }

    /// Journals pending clusters, then `rec`.
    fn commit(&mut self, rec: Record) -> Result<(), SrError> {
        self.state.check(&rec)?;
        self.journal_pending()?;
        self.commit_record(rec)
    }

    /// Journals `rec` (compacting if the journal is full) and applies it.
    fn commit_record(&mut self, rec: Record) -> Result<(), SrError> {
        self.commit_records(alloc::vec![rec])
    }

    /// Journals `recs` as one frame (all or none of them survive a crash)
    /// and applies them. Each is checked against the current state, so they
    /// must not depend on each other (maps of distinct layers do not).
    pub(super) fn commit_records(&mut self, recs: Vec<Record>) -> Result<(), SrError> {
        for r in &recs {
            self.state.check(r)?;
        }
        let bytes = postcard::to_allocvec(&recs).map_err(|_| SrError::Invalid("unencodable"))?;
        match self.journal.append(&mut self.dev, &bytes) {
            Err(JournalError::Full { .. }) => {
                let mut frames = self.snapshot_frames()?;
                frames.push(bytes);
                self.journal.compact(&mut self.dev, &frames)?;
            }
            r => r?,
        }
        for r in recs {
            self.state.apply(r)?;
        }
        Ok(())
    }

    /// The state as journal frames of up to [`SNAPSHOT_FRAME_BYTES`].
    fn snapshot_frames(&self) -> Result<Vec<Vec<u8>>, SrError> {
        let mut frames = Vec::new();
        let (mut group, mut size) = (Vec::new(), 0);
        for r in self.state.snapshot(SNAPSHOT_MAP_ENTRIES) {
            size += postcard::to_allocvec(&r)
                .map_err(|_| SrError::Invalid("unencodable"))?
                .len();
            group.push(r);
            if size >= SNAPSHOT_FRAME_BYTES {
                frames.push(
                    postcard::to_allocvec(&group).map_err(|_| SrError::Invalid("unencodable"))?,
                );
                group.clear();
                size = 0;
            }
        }
        if !group.is_empty() {
            frames
                .push(postcard::to_allocvec(&group).map_err(|_| SrError::Invalid("unencodable"))?);
        }
        Ok(frames)
    }

    fn id_of(&self, uuid: &Uuid) -> Result<u32, SrError> {
        self.state
            .layers
            .iter()
            .find(|(_, l)| !l.meta.hidden && l.meta.uuid == *uuid)
            .map(|(&i, _)| i)
            .ok_or(SrError::NoSuchVdi)
    }

    fn info(&self, id: u32) -> Option<VdiInfo> {
        let l = self.state.layers.get(&id)?;
        Some(VdiInfo {
            uuid: l.meta.uuid,
            name: l.meta.name.clone(),
            virtual_size: l.meta.virtual_size,
            read_only: l.meta.read_only,
            physical_utilisation: (l.map.len()
                + self.pending.range((id, 0)..=(id, u64::MAX)).count())
                as u64
                * u64::from(self.sb.cluster_size),
            chain_len: self.state.chain_len(id),
            origin: l.meta.origin,
            is_a_snapshot: l.meta.is_a_snapshot,
        })
    }

    /// The VDIs (hidden base layers are not VDIs).
    pub fn vdis(&self) -> Vec<VdiInfo> {
        self.state
            .layers
            .iter()
            .filter(|(_, l)| !l.meta.hidden)
            .filter_map(|(&i, _)| self.info(i))
            .collect()
    }

    pub fn vdi(&self, uuid: &Uuid) -> Result<VdiInfo, SrError> {
        self.id_of(uuid)
            .and_then(|i| self.info(i).ok_or(SrError::NoSuchVdi))
    }

    fn next_id(&mut self) -> u32 {
        self.last_id = self.state.free_id(self.last_id);
        self.last_id
    }

    fn new_layer(&mut self, uuid: Uuid, name: &str, size: u64) -> Result<u32, SrError> {
        if self.id_of(&uuid).is_ok() {
            return Err(SrError::UuidInUse);
        }
        let id = self.next_id();
        self.commit(Record::Create {
            id,
            meta: LayerMeta {
                uuid,
                name: name.into(),
                virtual_size: size,
                read_only: false,
                hidden: false,
                parent: None,
                origin: None,
                is_a_snapshot: false,
            },
        })?;
        Ok(id)
    }

    fn require_vdi_sr(&self) -> Result<(), SrError> {
        match self.sb.sr_type {
            SrType::Iso => Err(SrError::WrongSrType(SrType::Iso)),
            _ => Ok(()),
        }
    }

    /// A new empty (all-zero, thin) VDI of `size` bytes.
    pub fn create_vdi(&mut self, uuid: Uuid, name: &str, size: u64) -> Result<(), SrError> {
        self.require_vdi_sr()?;
        self.new_layer(uuid, name, size).map(|_| ())
    }

    fn snapshot_or_clone(
        &mut self,
        of: &Uuid,
        new: Uuid,
        name: &str,
        read_only: bool,
    ) -> Result<(), SrError> {
        self.require_vdi_sr()?;
        let vdi = self.id_of(of)?;
        if self.id_of(&new).is_ok() {
            return Err(SrError::UuidInUse);
        }
        let base = self.next_id();
        let child = self.next_id();
        let size = self
            .state
            .layers
            .get(&vdi)
            .map_or(0, |l| l.meta.virtual_size);
        self.commit(Record::Snapshot {
            vdi,
            base,
            child,
            child_meta: LayerMeta {
                uuid: new,
                name: name.into(),
                virtual_size: size,
                read_only,
                hidden: false,
                parent: Some(base),
                origin: Some(*of),
                is_a_snapshot: read_only,
            },
        })
    }

    /// A read-only point-in-time copy of VDI `of`, sharing its clusters.
    pub fn snapshot(&mut self, of: &Uuid, new: Uuid, name: &str) -> Result<(), SrError> {
        self.snapshot_or_clone(of, new, name, true)
    }

    /// A writable copy of VDI `of`, sharing its clusters until written.
    pub fn clone_vdi(&mut self, of: &Uuid, new: Uuid, name: &str) -> Result<(), SrError> {
        self.snapshot_or_clone(of, new, name, false)
    }

    /// Writable copies of several VDIs (`(of, new, name)` each), sharing
    /// their clusters until written, made in one journal frame: after a
    /// crash either all of them exist or none (a VM's disks, `VM.clone`).
    /// Each VDI may appear once, and no new uuid may be in use.
    pub fn clone_vdis(&mut self, clones: &[(Uuid, Uuid, &str)]) -> Result<(), SrError> {
        self.require_vdi_sr()?;
        let mut records = Vec::with_capacity(clones.len());
        for (i, (of, new, name)) in clones.iter().enumerate() {
            let vdi = self.id_of(of)?;
            let earlier = &clones[..i];
            if self.id_of(new).is_ok() || earlier.iter().any(|(_, n, _)| n == new) {
                return Err(SrError::UuidInUse);
            }
            if earlier.iter().any(|(o, _, _)| o == of) {
                return Err(SrError::Invalid("a VDI is cloned once per call"));
            }
            let size = self
                .state
                .layers
                .get(&vdi)
                .map_or(0, |l| l.meta.virtual_size);
            // Ids from `next_id` grow from the last one handed out, so the
            // records of one frame never share an id.
            let base = self.next_id();
            let child = self.next_id();
            records.push(Record::Snapshot {
                vdi,
                base,
                child,
                child_meta: LayerMeta {
                    uuid: *new,
                    name: (*name).into(),
                    virtual_size: size,
                    read_only: false,
                    hidden: false,
                    parent: Some(base),
                    origin: Some(*of),
                    is_a_snapshot: false,
                },
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        self.journal_pending()?;
        self.commit_records(records)
    }

    /// Grows a VDI (shrinking would lose data and is refused).
    pub fn resize(&mut self, uuid: &Uuid, size: u64) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        self.commit(Record::Resize {
            id,
            virtual_size: size,
        })
    }

    pub fn set_read_only(&mut self, uuid: &Uuid, read_only: bool) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        self.commit(Record::SetReadOnly { id, read_only })
    }

    pub fn set_name(&mut self, uuid: &Uuid, name: &str) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        self.commit(Record::SetName {
            id,
            name: name.into(),
        })
    }

    /// Deletes a VDI; its clusters, and those of bases no VDI uses any
    /// more, are free once this returns. The chain left with a single
    /// child is coalesced.
    pub fn delete(&mut self, uuid: &Uuid) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        let parent = self.state.layers.get(&id).and_then(|l| l.meta.parent);
        self.commit(Record::Delete { id })?;
        // The sibling left alone on the parent absorbs it.
        if let Some(p) = parent.filter(|p| self.state.layers.contains_key(p)) {
            let kids: Vec<u32> = self.state.children(p).collect();
            if let [only] = kids[..] {
                self.commit(Record::Coalesce { id: only })?;
            }
        }
        Ok(())
    }

    /// Merges into `uuid` every base below it that no other VDI shares.
    /// Returns the number of layers merged.
    pub fn coalesce(&mut self, uuid: &Uuid) -> Result<usize, SrError> {
        let id = self.id_of(uuid)?;
        let mut merged = 0;
        while self.state.check(&Record::Coalesce { id }).is_ok() {
            self.commit(Record::Coalesce { id })?;
            merged += 1;
        }
        Ok(merged)
    }

    /// A VDI as a block device of 512-byte blocks.
    pub fn vdi_device(&mut self, uuid: &Uuid) -> Result<VdiDevice<'_, D>, SrError> {
        let id = self.id_of(uuid)?;
        Ok(VdiDevice::new(self, id))
    }
}

/// Fuzz entry point: opens an SR on arbitrary bytes (512-byte blocks) and
/// reads every VDI it finds; must never panic.
pub fn fuzz_sr(data: &[u8]) {
    let blocks = (data.len() / 512) as u64;
    let mut dev = crate::mem::MemBlockDevice::new(512, blocks);
    dev.bytes_mut()
        .copy_from_slice(&data[..blocks as usize * 512]);
    if let Ok(mut sr) = Sr::open(dev) {
        let mut buf = [0u8; 4096];
        for v in sr.vdis() {
            for at in [0, v.virtual_size.saturating_sub(4096)] {
                let _ = sr.read(&v.uuid, at, &mut buf);
            }
        }
    }
}

#[cfg(test)]
mod tests;
