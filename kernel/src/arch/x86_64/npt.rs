//! Nested page tables (AMD NPT): guest-physical → host-physical, built only
//! from the VM's own RAM. Nothing else is mapped, so a guest access outside
//! its RAM exits as a nested page fault instead of reaching host memory.

use alloc::vec::Vec;

use crate::hv::memory::page_plan;
use crate::mem;

const PRESENT: u64 = 1;
const WRITE: u64 = 1 << 1;
/// Nested walks are user-mode accesses: every level must allow them.
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
const FOUR_KIB: u64 = 4 << 10;
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

/// The table entry `index` of `parent` points to, created (zeroed) if absent.
fn next_table(
    parent: u64,
    index: usize,
    alloc: &mut impl FnMut() -> Result<u64, NptError>,
) -> Result<u64, NptError> {
    // SAFETY: `parent` is a live table of the tables being built (a frame
    // they own, mapped in the direct map); `index` < 512 by construction.
    let entry = unsafe { table(parent).add(index) };
    // SAFETY: as above.
    Ok(match unsafe { entry.read() } {
        0 => {
            let child = alloc()?;
            // SAFETY: as above; publishing a fresh, zeroed frame.
            unsafe { entry.write(child | PRESENT | WRITE | USER) };
            child
        }
        e => e & 0x000f_ffff_ffff_f000,
    })
}

impl NestedPageTable {
    /// Maps guest-physical `[0, size)` to host-physical `[host_base, host_base + size)`:
    /// 2 MiB pages where aligned, 4 KiB pages elsewhere (`hv::memory::page_plan`).
    /// Both must be 4 KiB aligned.
    pub fn identity_offset(host_base: u64, size: u64) -> Result<NestedPageTable, NptError> {
        if !host_base.is_multiple_of(FOUR_KIB)
            || !size.is_multiple_of(FOUR_KIB)
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
        for page in page_plan(host_base, size) {
            let gib = (page.gpa / ONE_GIB) as usize;
            let pd = next_table(pdpt, gib, &mut alloc)?;
            let index = ((page.gpa % ONE_GIB) / TWO_MIB) as usize;
            if page.large {
                // SAFETY: `pd` is a live directory of these tables; index < 512.
                unsafe {
                    table(pd)
                        .add(index)
                        .write(page.hpa | PRESENT | WRITE | USER | LARGE)
                };
            } else {
                let pt = next_table(pd, index, &mut alloc)?;
                let slot = ((page.gpa % TWO_MIB) / FOUR_KIB) as usize;
                // SAFETY: `pt` is a live page table of these tables; slot < 512.
                unsafe { table(pt).add(slot).write(page.hpa | PRESENT | WRITE | USER) };
            }
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
