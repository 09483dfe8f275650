//! The interrupt descriptor table: one entry stub per vector that saves all
//! general-purpose registers into a [`TrapFrame`] and calls `trap_dispatch`.

use core::arch::global_asm;
use core::mem::size_of;

use super::gdt::KERNEL_CS;

/// Vectors the kernel uses, named in one place.
pub mod vector {
    pub const NMI: u8 = 2;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const MACHINE_CHECK: u8 = 18;
    /// Local APIC timer (one-shot wake-ups of idle CPUs).
    pub const TIMER: u8 = 0x20;
    /// The PCI interrupt lines of the host's devices (`drivers::intx`).
    pub const PCI_INTX: u8 = 0x30;
    /// Inter-processor "wake up and look" interrupt.
    pub const IPI_WAKE: u8 = 0xf0;
    /// Local APIC spurious-interrupt vector.
    pub const SPURIOUS: u8 = 0xff;
}

/// Interrupt stack table slots (1-based, as the IDT encodes them).
pub mod ist {
    pub const DOUBLE_FAULT: u8 = 1;
    pub const NMI: u8 = 2;
    pub const MACHINE_CHECK: u8 = 3;
}

/// Registers saved by the entry stubs, in stack order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const EMPTY: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CS,
            ist,
            // present, DPL 0, 64-bit interrupt gate (IF cleared on entry)
            type_attr: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([Gate::EMPTY; 256]);

unsafe extern "C" {
    static isr_table: [u64; 256];
}

/// Fills the IDT. Called once, on the BSP, before interrupts can occur.
pub fn init() {
    // SAFETY: `isr_table` is an immutable table of 256 stub addresses emitted below.
    let handlers = unsafe { &*core::ptr::addr_of!(isr_table) };
    for (v, &handler) in handlers.iter().enumerate() {
        let ist = match v as u8 {
            vector::DOUBLE_FAULT => ist::DOUBLE_FAULT,
            vector::NMI => ist::NMI,
            vector::MACHINE_CHECK => ist::MACHINE_CHECK,
            _ => 0,
        };
        // SAFETY: called once on the BSP before any CPU loads the IDT, so nothing reads it concurrently.
        unsafe { (*core::ptr::addr_of_mut!(IDT)).0[v] = Gate::interrupt(handler, ist) };
    }
}

/// Loads the IDT on the calling CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: the IDT is a static that lives forever and `init` filled it with valid gates.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags))
    };
}

global_asm!(
    r#"
    .section .text.isr, "ax"
    .code64
isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

    /* vectors where the CPU pushes no error code get a zero in its place */
    .macro isr_stub n, has_error
    .balign 16
isr_\n:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\n
    jmp isr_common
    .endm

    .irp n, 0, 1, 2, 3, 4, 5, 6, 7, 9, 15, 16, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41
    isr_stub \n, 0
    .endr
    .irp n, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73
    isr_stub \n, 0
    .endr
    .irp n, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105
    isr_stub \n, 0
    .endr
    .irp n, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137
    isr_stub \n, 0
    .endr
    .irp n, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169
    isr_stub \n, 0
    .endr
    .irp n, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201
    isr_stub \n, 0
    .endr
    .irp n, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233
    isr_stub \n, 0
    .endr
    .irp n, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255
    isr_stub \n, 0
    .endr
    .irp n, 8, 10, 11, 12, 13, 14, 17, 21, 29, 30
    isr_stub \n, 1
    .endr

    .section .rodata.isr, "a"
    .balign 8
    .global isr_table
isr_table:
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    .quad isr_\n
    .endr
    .irp n, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63
    .quad isr_\n
    .endr
    .irp n, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95
    .quad isr_\n
    .endr
    .irp n, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127
    .quad isr_\n
    .endr
    .irp n, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159
    .quad isr_\n
    .endr
    .irp n, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191
    .quad isr_\n
    .endr
    .irp n, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223
    .quad isr_\n
    .endr
    .irp n, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255
    .quad isr_\n
    .endr
    .text
"#,
    options(att_syntax)
);
