//! Per-CPU GDT and TSS. The TSS exists for its interrupt stack table: double
//! faults, NMIs and machine checks run on their own known-good stacks, so a
//! kernel stack overflow is still reported instead of triple-faulting.

use core::mem::size_of;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x18;

/// Size of each interrupt stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

const _: () = assert!(size_of::<Tss>() == 104);

/// Everything one CPU's descriptor tables need, kept together so it can live
/// in a static (BSP) or a leaked heap allocation (APs).
#[repr(C, align(16))]
#[derive(Debug)]
pub struct CpuTables {
    gdt: [u64; 5],
    tss: Tss,
    ist_stacks: [[u8; IST_STACK_SIZE]; 3],
}

impl CpuTables {
    pub const fn new() -> CpuTables {
        CpuTables {
            gdt: [0; 5],
            tss: Tss {
                reserved0: 0,
                rsp: [0; 3],
                reserved1: 0,
                ist: [0; 7],
                reserved2: 0,
                reserved3: 0,
                iomap_base: size_of::<Tss>() as u16,
            },
            ist_stacks: [[0; IST_STACK_SIZE]; 3],
        }
    }

    /// Fills the tables and loads them (GDT, segment registers, TSS) on the calling CPU.
    pub fn load(&'static mut self) {
        for (i, stack) in self.ist_stacks.iter().enumerate() {
            // Stacks grow down; keep the top 16-byte aligned.
            let top = (stack.as_ptr() as u64 + IST_STACK_SIZE as u64) & !0xf;
            self.tss.ist[i] = top;
        }
        let base = core::ptr::addr_of!(self.tss) as u64;
        let limit = (size_of::<Tss>() - 1) as u64;
        self.gdt[0] = 0;
        self.gdt[1] = 0x00af_9a00_0000_ffff; // 64-bit code, DPL 0
        self.gdt[2] = 0x00cf_9200_0000_ffff; // data
        self.gdt[3] = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40) // present, 64-bit available TSS
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        self.gdt[4] = base >> 32;

        #[repr(C, packed)]
        struct Pointer {
            limit: u16,
            base: u64,
        }
        let ptr = Pointer {
            limit: (size_of::<[u64; 5]>() - 1) as u16,
            base: self.gdt.as_ptr() as u64,
        };
        // SAFETY: the GDT is 'static and holds valid code/data/TSS descriptors at
        // the selectors loaded here; the far return reloads CS with the same
        // 64-bit code selector the CPU is already executing under.
        unsafe {
            core::arch::asm!(
                "lgdt [{ptr}]",
                "push {cs}",
                "lea {tmp}, [rip + 2f]",
                "push {tmp}",
                "retfq",
                "2:",
                "mov ds, {ds:x}",
                "mov es, {ds:x}",
                "mov ss, {ds:x}",
                "ltr {tss:x}",
                ptr = in(reg) &ptr,
                cs = const KERNEL_CS as u64,
                ds = in(reg) KERNEL_DS as u64,
                tss = in(reg) TSS_SEL as u64,
                tmp = out(reg) _,
            );
        }
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}
