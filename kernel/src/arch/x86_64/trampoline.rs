//! The application-processor start-up trampoline: 16-bit real mode (where a
//! SIPI leaves an AP) → 32-bit protected mode → long mode on the BSP's page
//! tables → a Rust entry with its own stack. It is copied to
//! [`TRAMPOLINE_BASE`] and its mailbox filled before each AP is started.

use core::arch::global_asm;

/// Physical (and identity-mapped) address the trampoline runs at; the SIPI
/// vector is this address >> 12.
pub const TRAMPOLINE_BASE: u64 = 0x8000;

unsafe extern "C" {
    pub static ap_trampoline_start: u8;
    pub static ap_trampoline_end: u8;
    pub static ap_mailbox_cr3: u8;
    pub static ap_mailbox_efer: u8;
    pub static ap_mailbox_stack: u8;
    pub static ap_mailbox_entry: u8;
    pub static ap_mailbox_arg: u8;
}

global_asm!(
    r#"
    .section .text.trampoline, "ax"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl tramp_gdt_ptr - ap_trampoline_start
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $({base} + tramp_prot32 - ap_trampoline_start)

    .code32
tramp_prot32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl {base} + ap_mailbox_cr3 - ap_trampoline_start, %eax
    movl %eax, %cr3
    movl {base} + ap_mailbox_efer - ap_trampoline_start, %eax
    xorl %edx, %edx
    movl $0xC0000080, %ecx
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x18, $({base} + tramp_long - ap_trampoline_start)

    .code64
tramp_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq {base} + ap_mailbox_stack - ap_trampoline_start, %rsp
    movq {base} + ap_mailbox_arg - ap_trampoline_start, %rdi
    movq {base} + ap_mailbox_entry - ap_trampoline_start, %rax
    xorl %ebp, %ebp
    pushq $0
    jmpq *%rax

    .balign 16
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff     /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff     /* 0x10: data */
    .quad 0x00af9a000000ffff     /* 0x18: 64-bit code */
tramp_gdt_ptr:
    .short 31
    .long {base} + tramp_gdt - ap_trampoline_start

    .balign 8
    .global ap_mailbox_cr3
ap_mailbox_cr3:
    .long 0
    .global ap_mailbox_efer
ap_mailbox_efer:
    .long 0
    .global ap_mailbox_stack
ap_mailbox_stack:
    .quad 0
    .global ap_mailbox_entry
ap_mailbox_entry:
    .quad 0
    .global ap_mailbox_arg
ap_mailbox_arg:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    .code64
    .text
"#,
    base = const TRAMPOLINE_BASE,
    options(att_syntax)
);
