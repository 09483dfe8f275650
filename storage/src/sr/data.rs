//! The data path: reads fall through the chain, writes allocate in the
//! top layer, and allocations wait in memory for the next flush.

use alloc::vec;
use alloc::vec::Vec;

use super::record::Record;
use super::{MAX_PENDING, Sr, SrError, Uuid, cluster_offset};
use crate::block::BlockDevice;
use crate::region::{read_bytes, write_bytes};

impl<D: BlockDevice> Sr<D> {
    /// Journals the clusters allocated since the last flush, after making
    /// their data durable.
    pub(super) fn journal_pending(&mut self) -> Result<(), SrError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.dev.flush()?;
        // One record per layer (at most MAX_PENDING clusters in all), in
        // one frame.
        let mut by_layer: alloc::collections::BTreeMap<u32, Vec<(u64, u64)>> =
            alloc::collections::BTreeMap::new();
        for (&(id, v), &p) in &self.pending {
            by_layer.entry(id).or_default().push((v, p));
        }
        let recs = by_layer
            .into_iter()
            .map(|(id, clusters)| Record::Map { id, clusters })
            .collect();
        self.commit_records(recs)?;
        self.pending.clear();
        self.reserved.clear();
        Ok(())
    }

    fn check_range(&self, id: u32, offset: u64, len: usize) -> Result<(), SrError> {
        let size = self
            .state
            .layers
            .get(&id)
            .map_or(0, |l| l.meta.virtual_size);
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(SrError::OutOfRange {
                offset,
                len: len as u64,
                size,
            }),
        }
    }

    /// Physical cluster holding virtual cluster `v` as layer `id` sees it,
    /// pending allocations included.
    fn locate(&self, id: u32, v: u64) -> Option<u64> {
        let mut at = Some(id);
        while let Some(i) = at {
            if let Some(&p) = self.pending.get(&(i, v)) {
                return Some(p);
            }
            let l = self.state.layers.get(&i)?;
            if let Some(&p) = l.map.get(&v) {
                return Some(p);
            }
            at = l.meta.parent;
        }
        None
    }

    /// Reads the bytes layer `id` shows at `offset`.
    pub(super) fn read_layer(
        &mut self,
        id: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), SrError> {
        self.check_range(id, offset, buf.len())?;
        let cs = u64::from(self.sb.cluster_size);
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % cs;
            let n = (buf.len() - done).min((cs - within) as usize);
            let piece = &mut buf[done..done + n];
            match self.locate(id, pos / cs) {
                Some(p) => read_bytes(&mut self.dev, cluster_offset(&self.sb, p) + within, piece)?,
                None => piece.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Writes into layer `id` (a VDI), allocating clusters it lacks.
    pub(super) fn write_layer(&mut self, id: u32, offset: u64, data: &[u8]) -> Result<(), SrError> {
        self.check_range(id, offset, data.len())?;
        let cs = u64::from(self.sb.cluster_size);
        let mut done = 0;
        while done < data.len() {
            let pos = offset + done as u64;
            let (v, within) = (pos / cs, pos % cs);
            let n = (data.len() - done).min((cs - within) as usize);
            let piece = &data[done..done + n];
            let own = self.pending.get(&(id, v)).copied().or_else(|| {
                self.state
                    .layers
                    .get(&id)
                    .and_then(|l| l.map.get(&v).copied())
            });
            match own {
                Some(p) => write_bytes(&mut self.dev, cluster_offset(&self.sb, p) + within, piece)?,
                None => self.allocate(id, v, within, piece)?,
            }
            done += n;
        }
        Ok(())
    }

    /// Writes a whole new cluster for virtual cluster `v` of layer `id`:
    /// what shows through from below, with `piece` at `within`; it is
    /// journaled at the next flush.
    fn allocate(&mut self, id: u32, v: u64, within: u64, piece: &[u8]) -> Result<(), SrError> {
        if self.pending.len() >= MAX_PENDING {
            self.journal_pending()?;
        }
        let cs = u64::from(self.sb.cluster_size);
        if self.state.used.used() + self.reserved.len() as u64 >= self.sb.clusters {
            return Err(SrError::NoSpace);
        }
        let mut from = self.alloc_hint;
        let phys = loop {
            let p = self.state.used.find_clear(from).ok_or(SrError::NoSpace)?;
            if !self.reserved.contains(&p) {
                break p;
            }
            from = p + 1;
        };
        let mut cluster = vec![0u8; cs as usize];
        if (piece.len() as u64) < cs {
            let parent = self.state.layers.get(&id).and_then(|l| l.meta.parent);
            if let Some(below) = parent.and_then(|p| self.locate(p, v)) {
                read_bytes(&mut self.dev, cluster_offset(&self.sb, below), &mut cluster)?;
            }
        }
        cluster[within as usize..within as usize + piece.len()].copy_from_slice(piece);
        write_bytes(&mut self.dev, cluster_offset(&self.sb, phys), &cluster)?;
        self.alloc_hint = phys + 1;
        self.pending.insert((id, v), phys);
        self.reserved.insert(phys);
        Ok(())
    }

    /// Reads from a VDI.
    pub fn read(&mut self, uuid: &Uuid, offset: u64, buf: &mut [u8]) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        self.read_layer(id, offset, buf)
    }

    /// Writes to a VDI.
    pub fn write(&mut self, uuid: &Uuid, offset: u64, data: &[u8]) -> Result<(), SrError> {
        let id = self.id_of(uuid)?;
        if self.state.layers.get(&id).is_some_and(|l| l.meta.read_only) {
            return Err(SrError::ReadOnly);
        }
        self.write_layer(id, offset, data)
    }

    /// Makes every completed write durable.
    pub fn flush(&mut self) -> Result<(), SrError> {
        if self.pending.is_empty() {
            Ok(self.dev.flush()?)
        } else {
            self.journal_pending()
        }
    }
}
