//! Nested page tables (AMD NPT): guest-physical → host-physical, built only
//! from the VM's own RAM. Nothing else is mapped, so a guest access outside
//! its RAM exits as a nested page fault instead of reaching host memory.

use alloc::vec::Vec;

use crate::mem;

const PRESENT: u64 = 1;
const WRITE: u64 = 1 << 1;
/// Nested walks are user-mode accesses: every level must allow them.
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;

/// The tables of one VM; their frames are freed on drop.
#[derive(Debug)]
pub struct NestedPageTable {
    root: u64,
    frames: Vec<u64>,
}

/// Why the tables could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NptError {
    OutOfMemory,
    Misaligned,
}

fn table(phys: u64) -> *mut u64 {
    mem::phys_to_virt(phys) as *mut u64
}

impl NestedPageTable {
    /// Maps guest-physical `[0, size)` to host-physical `[host_base, host_base + size)`
    /// with 2 MiB pages; both must be 2 MiB aligned.
    pub fn identity_offset(host_base: u64, size: u64) -> Result<NestedPageTable, NptError> {
        if !host_base.is_multiple_of(TWO_MIB)
            || !size.is_multiple_of(TWO_MIB)
            || size > 512 * ONE_GIB
        {
            return Err(NptError::Misaligned);
        }
        let mut frames = Vec::new();
        let mut alloc = || -> Result<u64, NptError> {
            let f = mem::alloc_frames(1, 1).ok_or(NptError::OutOfMemory)?;
            frames.push(f);
            Ok(f)
        };
        let root = alloc()?;
        let pdpt = alloc()?;
        // SAFETY: `root` is a fresh, zeroed frame owned by these tables.
        unsafe { table(root).write(pdpt | PRESENT | WRITE | USER) };
        let mut gpa = 0;
        while gpa < size {
            let gib = (gpa / ONE_GIB) as usize;
            // SAFETY: `pdpt` is a live table of these tables; gib < 512.
            let entry = unsafe { table(pdpt).add(gib) };
            // SAFETY: as above.
            let pd = match unsafe { entry.read() } {
                0 => {
                    let pd = alloc()?;
                    // SAFETY: as above; publishing the fresh, zeroed directory.
                    unsafe { entry.write(pd | PRESENT | WRITE | USER) };
                    pd
                }
                e => e & 0x000f_ffff_ffff_f000,
            };
            let index = ((gpa % ONE_GIB) / TWO_MIB) as usize;
            // SAFETY: `pd` is a live directory of these tables; index < 512.
            unsafe {
                table(pd)
                    .add(index)
                    .write((host_base + gpa) | PRESENT | WRITE | USER | LARGE)
            };
            gpa += TWO_MIB;
        }
        Ok(NestedPageTable { root, frames })
    }

    /// The nested CR3.
    pub fn root(&self) -> u64 {
        self.root
    }
}

impl Drop for NestedPageTable {
    fn drop(&mut self) {
        for &f in &self.frames {
            mem::free_frames(f, 1);
        }
    }
}
