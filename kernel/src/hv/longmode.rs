//! Starting a guest directly in 64-bit mode (Linux's 64-bit boot protocol,
//! Hermit, the test guests): the loader writes a GDT and identity page tables
//! into low guest memory and describes the CPU state the backend must set.

use super::memory::{GuestAddress, GuestMemory, OutOfBounds};

/// Guest-physical layout of the loader's structures (all below 1 MiB).
pub const GDT: u64 = 0x1000;
pub const PML4: u64 = 0x2000;
pub const PDPT: u64 = 0x3000;
/// Four page directories: identity map of the first 4 GiB in 2 MiB pages.
pub const PD: u64 = 0x4000;
/// Everything below this is the loader's; images load at or above it.
pub const LOADER_END: u64 = 0x10_0000;

/// Linux's boot protocol fixes these (__BOOT_CS, __BOOT_DS); other guests don't care.
pub const CODE_SELECTOR: u16 = 0x10;
pub const DATA_SELECTOR: u16 = 0x18;

/// Control-register and entry state for a 64-bit start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LongModeEntry {
    pub rip: u64,
    pub rsp: u64,
    /// First argument (Hermit: boot info; Linux: boot_params in RSI instead).
    pub rdi: u64,
    pub rsi: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
}

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 2;
const PTE_LARGE: u64 = 1 << 7;

/// Writes the GDT and page tables; returns the entry state for `entry` with
/// the stack at `stack_top`.
pub fn prepare(
    mem: &mut GuestMemory<'_>,
    entry: u64,
    stack_top: u64,
) -> Result<LongModeEntry, OutOfBounds> {
    // null, unused, 64-bit code (0x10), data (0x18)
    let gdt: [u64; 4] = [0, 0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_u64(GuestAddress(GDT + 8 * i as u64), *d)?;
    }
    mem.fill(GuestAddress(PML4), 0x1000 * 6, 0)?;
    mem.write_u64(GuestAddress(PML4), PDPT | PTE_PRESENT | PTE_WRITE)?;
    for i in 0..4u64 {
        mem.write_u64(
            GuestAddress(PDPT + 8 * i),
            (PD + 0x1000 * i) | PTE_PRESENT | PTE_WRITE,
        )?;
    }
    for i in 0..2048u64 {
        mem.write_u64(
            GuestAddress(PD + 8 * i),
            (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE,
        )?;
    }
    Ok(LongModeEntry {
        rip: entry,
        rsp: stack_top,
        rdi: 0,
        rsi: 0,
        cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
        cr3: PML4,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        gdt_base: GDT,
        gdt_limit: (gdt.len() * 8 - 1) as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_low_memory_with_large_pages() {
        let mut ram = vec![0u8; 0x20_0000];
        let mut m = GuestMemory::new(&mut ram);
        let e = prepare(&mut m, 0x10_0000, 0x1f_f000).unwrap();
        assert_eq!(e.cr3, PML4);
        assert_eq!(m.read_u64(GuestAddress(PML4)).unwrap() & !0xfff, PDPT);
        assert_eq!(m.read_u64(GuestAddress(PD + 8)).unwrap(), (1 << 21) | 0x83);
        assert_eq!(
            m.read_u64(GuestAddress(GDT + u64::from(CODE_SELECTOR)))
                .unwrap()
                >> 53
                & 1,
            1,
            "code segment is 64-bit"
        );
        let mut tiny = vec![0u8; 0x3000];
        assert!(prepare(&mut GuestMemory::new(&mut tiny), 0, 0).is_err());
    }
}
