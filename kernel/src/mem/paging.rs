//! Page-table edits after boot: extending the direct map over RAM above 4 GiB
//! and mapping device MMIO uncached. All tables are reached through the
//! direct map; new tables come from low frames (already mapped).

use spin::Mutex;

use super::PHYS_OFFSET;
use super::global::{alloc_frames, phys_to_virt};
use crate::arch::x86_64::{boot, cpu};
use crate::bootinfo::{BootInfo, MemKind};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const TWO_MIB: u64 = 2 << 20;

static LOCK: Mutex<()> = Mutex::new(());

fn pml4() -> *mut u64 {
    core::ptr::addr_of_mut!(boot::boot_pml4) as *mut u64
}

/// Returns the next-level table of `entry`, allocating it when absent.
///
/// # Safety
/// `table` must point to a live page table reachable through the direct map,
/// and the caller must hold `LOCK`.
unsafe fn next_table(table: *mut u64, index: usize) -> Option<*mut u64> {
    // SAFETY: `index` < 512 by construction of the callers; `table` is valid.
    let entry = unsafe { table.add(index) };
    // SAFETY: `entry` points into a live table.
    let value = unsafe { entry.read_volatile() };
    if value & PRESENT != 0 {
        if value & HUGE != 0 {
            return None;
        }
        return Some(phys_to_virt(value & ADDR_MASK) as *mut u64);
    }
    let frame = alloc_frames(1, 1)?;
    // SAFETY: the new, zeroed table frame is ours; publishing it in a present
    // entry is the architected way to extend the tables.
    unsafe { entry.write_volatile(frame | PRESENT | WRITABLE) };
    Some(phys_to_virt(frame) as *mut u64)
}

/// Maps the 2 MiB page at `virt` to `phys` with `flags`, unless something is
/// mapped there already. Returns false when tables could not be allocated.
fn map_2m(virt: u64, phys: u64, flags: u64) -> bool {
    let _guard = LOCK.lock();
    let i4 = ((virt >> 39) & 511) as usize;
    let i3 = ((virt >> 30) & 511) as usize;
    let i2 = ((virt >> 21) & 511) as usize;
    // SAFETY: the boot PML4 is live and we hold the lock; every table on the
    // walk is reached via the direct map.
    unsafe {
        let Some(pdpt) = next_table(pml4(), i4) else {
            return false;
        };
        let Some(pd) = next_table(pdpt, i3) else {
            return true;
        };
        let e = pd.add(i2);
        if e.read_volatile() & PRESENT == 0 {
            e.write_volatile((phys & !(TWO_MIB - 1)) | PRESENT | WRITABLE | HUGE | flags);
            cpu::invlpg(virt);
        }
    }
    true
}

/// Unmaps the 4 KiB page at `virt` (identity map, below 4 GiB), splitting
/// the 2 MiB page around it into 4 KiB pages with the same attributes.
/// Returns false if `virt` is not mapped by a 2 MiB or 4 KiB page or no
/// frame is left for the new table.
pub fn unmap_4k(virt: u64) -> bool {
    let _guard = LOCK.lock();
    let i4 = ((virt >> 39) & 511) as usize;
    let i3 = ((virt >> 30) & 511) as usize;
    let i2 = ((virt >> 21) & 511) as usize;
    let i1 = ((virt >> 12) & 511) as usize;
    // SAFETY: the boot PML4 is live and we hold the lock; every table on the
    // walk is reached via the direct map. A split table maps exactly what the
    // 2 MiB page did (same frames, same attributes), so replacing the
    // directory entry changes no translation but the guard page's; the TLB
    // is flushed by reloading CR3 before anyone relies on the guard.
    unsafe {
        let Some(pdpt) = next_table(pml4(), i4) else {
            return false;
        };
        let Some(pd) = next_table(pdpt, i3) else {
            return false;
        };
        let pde = pd.add(i2);
        let value = pde.read_volatile();
        if value & PRESENT == 0 {
            return false;
        }
        let pt = if value & HUGE != 0 {
            let Some(frame) = alloc_frames(1, 1) else {
                return false;
            };
            let table = phys_to_virt(frame) as *mut u64;
            let base = value & ADDR_MASK & !(TWO_MIB - 1);
            // Low attribute bits (bit 7 means PAT in a 4 KiB entry, not size) and NX.
            let flags = (value & 0xfff & !HUGE) | (value & (1 << 63));
            for i in 0..512u64 {
                table
                    .add(i as usize)
                    .write_volatile((base + i * 4096) | flags);
            }
            pde.write_volatile(frame | (value & 0xfff & !HUGE));
            table
        } else {
            phys_to_virt(value & ADDR_MASK) as *mut u64
        };
        pt.add(i1).write_volatile(0);
        cpu::write_cr3(cpu::read_cr3());
    }
    true
}

/// The boot tables map the first 4 GiB; map RAM above that into the direct map.
pub fn map_ram_above_4g(bi: &BootInfo) {
    for r in bi.memory.iter().filter(|r| r.kind == MemKind::Usable) {
        let end = r.start.saturating_add(r.len);
        let mut p = r.start.max(1 << 32) & !(TWO_MIB - 1);
        while p < end {
            if !map_2m(PHYS_OFFSET + p, p, 0) {
                log::error!("paging: out of memory for page tables mapping {p:#x}");
                return;
            }
            p += TWO_MIB;
        }
    }
}

/// Makes `[phys, phys + len)` of device memory reachable at `phys_to_virt(phys)`.
/// Below 4 GiB the boot map already covers it (the firmware's MTRRs make the
/// PCI hole uncacheable); above, pages are mapped with caching disabled.
pub fn map_mmio(phys: u64, len: u64) -> u64 {
    let end = phys.saturating_add(len);
    let mut p = phys.max(1 << 32) & !(TWO_MIB - 1);
    while p < end {
        if !map_2m(PHYS_OFFSET + p, p, CACHE_DISABLE | WRITE_THROUGH) {
            log::error!("paging: out of memory mapping MMIO at {p:#x}");
            break;
        }
        p += TWO_MIB;
    }
    phys_to_virt(phys)
}

/// Physical address of the live PML4 (for APs and, later, for VM exits).
pub fn root() -> u64 {
    cpu::read_cr3() & ADDR_MASK
}
