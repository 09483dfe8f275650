//! The SR's metadata in memory, rebuilt at open by applying the journal's
//! records. `check` decides whether a record is valid before it is
//! journaled; `apply` then cannot fail, so replay and live updates are the
//! same code.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::record::{LayerMeta, Record};

/// Why a record cannot apply (an inconsistent journal, or a caller bug the
/// SR refuses before journaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inconsistent(pub &'static str);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub meta: LayerMeta,
    /// Virtual cluster -> physical cluster.
    pub map: BTreeMap<u64, u64>,
}

/// Which physical clusters are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
    len: u64,
    used: u64,
}

impl Bitmap {
    pub fn new(len: u64) -> Self {
        Bitmap {
            words: vec![0; len.div_ceil(64) as usize],
            len,
            used: 0,
        }
    }
    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    pub fn set(&mut self, i: u64, on: bool) {
        if i >= self.len || self.get(i) == on {
            return;
        }
        self.words[(i / 64) as usize] ^= 1 << (i % 64);
        if on {
            self.used += 1;
        } else {
            self.used -= 1;
        }
    }
    pub fn used(&self) -> u64 {
        self.used
    }
    /// A clear bit at or after `from` (wrapping), if any.
    pub fn find_clear(&self, from: u64) -> Option<u64> {
        if self.used >= self.len {
            return None;
        }
        let start = if from < self.len { from } else { 0 };
        (start..self.len)
            .chain(0..start)
            .find(|&i| self.words[(i / 64) as usize] != u64::MAX && !self.get(i))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrState {
    pub layers: BTreeMap<u32, Layer>,
    pub used: Bitmap,
    pub cluster_size: u64,
}

impl SrState {
    pub fn new(clusters: u64, cluster_size: u32) -> Self {
        SrState {
            layers: BTreeMap::new(),
            used: Bitmap::new(clusters),
            cluster_size: u64::from(cluster_size),
        }
    }

    pub fn children(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        self.layers
            .iter()
            .filter(move |(_, l)| l.meta.parent == Some(id))
            .map(|(&i, _)| i)
    }

    fn layer(&self, id: u32) -> Result<&Layer, Inconsistent> {
        self.layers.get(&id).ok_or(Inconsistent("no such layer"))
    }

    fn visible_leaf(&self, id: u32) -> Result<&Layer, Inconsistent> {
        let l = self.layer(id)?;
        if l.meta.hidden || self.children(id).next().is_some() {
            return Err(Inconsistent("not a VDI"));
        }
        Ok(l)
    }

    fn check_meta(&self, m: &LayerMeta) -> Result<(), Inconsistent> {
        if !m.virtual_size.is_multiple_of(512) {
            return Err(Inconsistent("virtual size not a multiple of 512"));
        }
        if let Some(p) = m.parent {
            let parent = self.layer(p)?;
            if !parent.meta.hidden {
                return Err(Inconsistent("parent is not a hidden layer"));
            }
            if parent.meta.virtual_size > m.virtual_size {
                return Err(Inconsistent("layer smaller than its parent"));
            }
        }
        Ok(())
    }

    /// Whether `rec` may apply to the current state.
    pub fn check(&self, rec: &Record) -> Result<(), Inconsistent> {
        match rec {
            Record::Create { id, meta } => {
                if self.layers.contains_key(id) {
                    return Err(Inconsistent("layer id in use"));
                }
                self.check_meta(meta)
            }
            Record::Map { id, clusters } => {
                let l = self.layer(*id)?;
                let virtual_clusters = l.meta.virtual_size.div_ceil(self.cluster_size);
                let mut seen = BTreeMap::new();
                for &(v, p) in clusters {
                    if v >= virtual_clusters || p >= self.used.len {
                        return Err(Inconsistent("cluster out of range"));
                    }
                    if self.used.get(p) || seen.insert(p, ()).is_some() {
                        return Err(Inconsistent("physical cluster already mapped"));
                    }
                    if l.map.contains_key(&v) {
                        return Err(Inconsistent("virtual cluster already mapped"));
                    }
                }
                let virtuals: alloc::collections::BTreeSet<u64> =
                    clusters.iter().map(|c| c.0).collect();
                if virtuals.len() != clusters.len() {
                    return Err(Inconsistent("virtual cluster mapped twice"));
                }
                Ok(())
            }
            Record::Snapshot {
                vdi,
                base,
                child,
                child_meta,
            } => {
                let v = self.visible_leaf(*vdi)?;
                if base == child || [base, child].iter().any(|i| self.layers.contains_key(i)) {
                    return Err(Inconsistent("layer id in use"));
                }
                if child_meta.hidden
                    || child_meta.parent != Some(*base)
                    || child_meta.virtual_size != v.meta.virtual_size
                {
                    return Err(Inconsistent("bad snapshot layer"));
                }
                Ok(())
            }
            Record::Resize { id, virtual_size } => {
                let l = self.visible_leaf(*id)?;
                if *virtual_size < l.meta.virtual_size || !virtual_size.is_multiple_of(512) {
                    return Err(Inconsistent("a VDI only grows, by 512-byte steps"));
                }
                Ok(())
            }
            Record::SetReadOnly { id, .. } | Record::SetName { id, .. } | Record::Delete { id } => {
                self.visible_leaf(*id).map(|_| ())
            }
            Record::Unmap { id, clusters } => {
                let l = self.visible_leaf(*id)?;
                let mut seen = alloc::collections::BTreeSet::new();
                for v in clusters {
                    if !l.map.contains_key(v) || !seen.insert(*v) {
                        return Err(Inconsistent("unmapping a cluster the layer does not map"));
                    }
                    if l.meta.parent.is_some_and(|p| self.locate(p, *v).is_some()) {
                        return Err(Inconsistent("unmapping a cluster a base layer maps"));
                    }
                }
                Ok(())
            }
            Record::Coalesce { id } => {
                let p = self
                    .layer(*id)?
                    .meta
                    .parent
                    .ok_or(Inconsistent("no parent"))?;
                if !self.layer(p)?.meta.hidden || self.children(p).count() != 1 {
                    return Err(Inconsistent("parent is shared"));
                }
                Ok(())
            }
        }
    }

    /// Checks, then applies `rec`.
    pub fn apply(&mut self, rec: Record) -> Result<(), Inconsistent> {
        self.check(&rec)?;
        match rec {
            Record::Create { id, meta } => {
                self.layers.insert(
                    id,
                    Layer {
                        meta,
                        map: BTreeMap::new(),
                    },
                );
            }
            Record::Map { id, clusters } => {
                for (v, p) in clusters {
                    self.used.set(p, true);
                    if let Some(l) = self.layers.get_mut(&id) {
                        l.map.insert(v, p);
                    }
                }
            }
            Record::Snapshot {
                vdi,
                base,
                child,
                child_meta,
            } => {
                if let Some(v) = self.layers.get_mut(&vdi) {
                    let base_layer = Layer {
                        meta: LayerMeta {
                            uuid: [0; 16],
                            name: alloc::string::String::new(),
                            virtual_size: v.meta.virtual_size,
                            read_only: true,
                            hidden: true,
                            parent: v.meta.parent,
                            origin: None,
                            is_a_snapshot: false,
                        },
                        map: core::mem::take(&mut v.map),
                    };
                    v.meta.parent = Some(base);
                    self.layers.insert(base, base_layer);
                    self.layers.insert(
                        child,
                        Layer {
                            meta: child_meta,
                            map: BTreeMap::new(),
                        },
                    );
                }
            }
            Record::Resize { id, virtual_size } => {
                if let Some(l) = self.layers.get_mut(&id) {
                    l.meta.virtual_size = virtual_size;
                }
            }
            Record::SetReadOnly { id, read_only } => {
                if let Some(l) = self.layers.get_mut(&id) {
                    l.meta.read_only = read_only;
                }
            }
            Record::SetName { id, name } => {
                if let Some(l) = self.layers.get_mut(&id) {
                    l.meta.name = name;
                }
            }
            Record::Delete { id } => {
                // Up the chain while the layer is unused.
                let mut next = Some(id);
                while let Some(id) = next {
                    let Some(l) = self.layers.remove(&id) else {
                        break;
                    };
                    for p in l.map.values() {
                        self.used.set(*p, false);
                    }
                    next = l.meta.parent.filter(|&p| self.children(p).next().is_none());
                }
            }
            Record::Unmap { id, clusters } => {
                if let Some(l) = self.layers.get_mut(&id) {
                    for v in clusters {
                        if let Some(p) = l.map.remove(&v) {
                            self.used.set(p, false);
                        }
                    }
                }
            }
            Record::Coalesce { id } => {
                let parent = self.layers.get(&id).and_then(|l| l.meta.parent);
                if let Some(p) = parent.and_then(|p| self.layers.remove(&p)) {
                    let mut freed = Vec::new();
                    if let Some(l) = self.layers.get_mut(&id) {
                        for (v, phys) in p.map {
                            match l.map.entry(v) {
                                alloc::collections::btree_map::Entry::Occupied(_) => {
                                    freed.push(phys)
                                }
                                alloc::collections::btree_map::Entry::Vacant(e) => {
                                    e.insert(phys);
                                }
                            }
                        }
                        l.meta.parent = p.meta.parent;
                    }
                    for phys in freed {
                        self.used.set(phys, false);
                    }
                }
            }
        }
        Ok(())
    }

    /// Physical cluster holding virtual cluster `v` as layer `id` sees it.
    pub fn locate(&self, id: u32, v: u64) -> Option<u64> {
        let mut at = Some(id);
        while let Some(i) = at {
            let l = self.layers.get(&i)?;
            if let Some(&p) = l.map.get(&v) {
                return Some(p);
            }
            at = l.meta.parent;
        }
        None
    }

    /// Layers from `id` down to its root.
    pub fn chain_len(&self, id: u32) -> usize {
        let mut n = 0;
        let mut at = Some(id);
        while let Some(l) = at.and_then(|i| self.layers.get(&i)) {
            n += 1;
            at = l.meta.parent;
        }
        n
    }

    /// An unused layer id.
    pub fn free_id(&self, after: u32) -> u32 {
        let mut id = after.wrapping_add(1).max(1);
        while self.layers.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        id
    }

    /// The state as records (parents before children), for compaction.
    pub fn snapshot(&self, max_map: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut stack: Vec<u32> = self
            .layers
            .iter()
            .filter(|(_, l)| l.meta.parent.is_none())
            .map(|(&i, _)| i)
            .collect();
        while let Some(id) = stack.pop() {
            let Some(l) = self.layers.get(&id) else {
                continue;
            };
            out.push(Record::Create {
                id,
                meta: l.meta.clone(),
            });
            let pairs: Vec<(u64, u64)> = l.map.iter().map(|(&v, &p)| (v, p)).collect();
            for chunk in pairs.chunks(max_map.max(1)) {
                out.push(Record::Map {
                    id,
                    clusters: chunk.to_vec(),
                });
            }
            stack.extend(self.children(id));
        }
        out
    }
}
