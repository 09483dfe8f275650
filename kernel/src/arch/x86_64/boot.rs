//! Boot entry: the PVH ELF note (QEMU `-kernel`), the multiboot2 header
//! (GRUB), and the 32-bit code both protocols enter, which builds the boot
//! page tables, enters long mode and calls `kernel_boot`.
//!
//! Boot page tables: identity map of the low 4 GiB in 2 MiB pages (the kernel
//! runs at its physical load address), except the first 2 MiB which use 4 KiB
//! pages so that page 0 stays unmapped and null dereferences fault. The same
//! 4 GiB also appear at `PHYS_OFFSET` (PML4 slot 256, sharing the identity
//! map's page directories except for the first GiB, where page 0 is mapped):
//! the start of the direct map, which `mem::paging` extends over all RAM.

use core::arch::global_asm;

/// Boot protocol numbers passed to `kernel_boot` in `edi`.
pub const PROTO_UNKNOWN: u32 = 0;
pub const PROTO_PVH: u32 = 1;
pub const PROTO_MULTIBOOT2: u32 = 2;

unsafe extern "C" {
    /// The live PML4 (built by the boot code, extended by `mem::paging`).
    pub static mut boot_pml4: [u64; 512];
    /// The PDPT shared by the identity map and the direct map's first 4 GiB.
    pub static mut boot_pdpt: [u64; 512];
    /// Top of the BSP's boot stack.
    pub static boot_stack_top: u8;
    /// Bottom of the BSP's boot stack.
    pub static boot_stack_bottom: u8;
    /// The page below the boot stack, unmapped as its guard.
    pub static boot_stack_guard: u8;
}

global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long 0xE85250D6
    .long 0
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header_start))
    /* entry address tag: GRUB jumps to mb2_entry in 32-bit protected mode */
    .balign 8
    .short 3
    .short 0
    .long 12
    .long mb2_entry
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18                 /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_entry
    .balign 4

    .section .text.boot, "ax"
    .code32
    .global pvh_entry
pvh_entry:
    cli
    movl %ebx, %esi          /* hvm_start_info */
    movl ${pvh}, %ebp
    jmp boot32

    .global mb2_entry
mb2_entry:
    cli
    movl %ebx, %esi          /* multiboot2 information */
    movl ${mb2}, %ebp
    cmpl $0x36d76289, %eax
    je boot32
    movl ${unknown}, %ebp

boot32:
    cld
    movl $boot_stack_top, %esp

    /* zero the 9 pages of boot page tables */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $(9 * 1024), %ecx
    rep stosl

    /* PML4[0] (identity) -> boot_pdpt; PML4[256] (direct map) -> boot_pdpt_direct */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pdpt_direct, %eax
    orl $3, %eax
    movl %eax, boot_pml4 + 256 * 8

    /* PDPT[0..4] -> four page directories */
    movl $boot_pd, %eax
    orl $3, %eax
    xorl %ecx, %ecx
1:  movl %eax, boot_pdpt(,%ecx,8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 1b

    /* the direct map shares GiBs 1..3, but has its own first GiB (page 0 mapped there) */
    movl $boot_pd_direct0, %eax
    orl $3, %eax
    movl %eax, boot_pdpt_direct
    movl $boot_pd + 4096, %eax
    orl $3, %eax
    xorl %ecx, %ecx
6:  movl %eax, boot_pdpt_direct + 8(,%ecx,8)
    addl $4096, %eax
    incl %ecx
    cmpl $3, %ecx
    jb 6b
    movl $0x83, %eax
    xorl %ecx, %ecx
7:  movl %eax, boot_pd_direct0(,%ecx,8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $512, %ecx
    jb 7b

    /* 2048 x 2 MiB pages: present, writable, large */
    movl $0x83, %eax
    xorl %ecx, %ecx
2:  movl %eax, boot_pd(,%ecx,8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

    /* the first 2 MiB in 4 KiB pages, page 0 left unmapped */
    movl $boot_pt0, %eax
    orl $3, %eax
    movl %eax, boot_pd
    movl $0x1003, %eax
    movl $1, %ecx
3:  movl %eax, boot_pt0(,%ecx,8)
    addl $0x1000, %eax
    incl %ecx
    cmpl $512, %ecx
    jb 3b

    /* CR4.PAE */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    /* EFER.LME, and EFER.NXE when the CPU has NX */
    movl $0x80000001, %eax
    cpuid
    movl $0x100, %ebx
    btl $20, %edx
    jnc 4f
    orl $0x800, %ebx
4:  movl $0xC0000080, %ecx
    rdmsr
    orl %ebx, %eax
    wrmsr

    /* paging + write protect + protected mode */
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    movl %ebp, %edi
    movl %esi, %esi
    xorl %ebp, %ebp
    call kernel_boot
5:  hlt
    jmp 5b

    .section .rodata.boot, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff     /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff     /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
    .global boot_pdpt
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
boot_pt0:
    .skip 4096
    .global boot_pdpt_direct
boot_pdpt_direct:
    .skip 4096
boot_pd_direct0:
    .skip 4096
    /* Unmapped once paging is ours: a boot-stack overflow faults here
       instead of running over the page tables above. */
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 262144
    .global boot_stack_top
boot_stack_top:
    .code64
    .text
"#,
    pvh = const PROTO_PVH,
    mb2 = const PROTO_MULTIBOOT2,
    unknown = const PROTO_UNKNOWN,
    options(att_syntax)
);
