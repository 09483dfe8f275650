/* A hand-built stand-in for a Hermit application (no Hermit toolchain on
 * this machine): a static PIE carrying Hermit's entry-version note, entered
 * the way uhyve enters Hermit (64-bit mode, boot information in RDI, CPU
 * number in RSI). It checks what a Hermit kernel reads from the boot
 * information (see hermit-entry's RawBootInfo), that its own absolute
 * pointers were relocated, and prints one line per check. */
    .ifndef ENTRY_VERSION
    .set ENTRY_VERSION, 4
    .endif
    .section .note.hermit, "a", @note
    .balign 4
    .long 7                 /* namesz: "HERMIT\0" */
    .long 1                 /* descsz */
    .long 0x5a00            /* NT_HERMIT_ENTRY_VERSION */
    .asciz "HERMIT"
    .balign 4
    .byte ENTRY_VERSION
    .balign 4

    .text
    .global _start
_start:
    mov %rdi, %rbx          /* boot information */
    test %rsi, %rsi
    jnz fail                /* CPU 0 */
    lea msg_entry(%rip), %rsi
    call puts

    cmpw $0x3f8, 16(%rbx)   /* hardware_info.serial_port_base */
    jne fail
    cmpl $1, 80(%rbx)       /* platform_info: the Uhyve variant */
    jne fail
    cmpq $1, 96(%rbx)       /* num_cpus */
    jne fail
    cmpq $0, 104(%rbx)      /* cpu_freq (kHz) is known */
    je fail
    lea _start(%rip), %rax  /* this code lies in the reported image range */
    cmp 32(%rbx), %rax
    jb fail
    cmp 40(%rbx), %rax
    jae fail
    cmpq $0x100000, 8(%rbx) /* phys_addr_end: the guest's RAM */
    jb fail
    lea msg_info(%rip), %rsi
    call puts

    lea msg_reloc(%rip), %rax
    cmp msg_ptr(%rip), %rax /* an absolute pointer, fixed up by the loader */
    jne fail
    mov msg_ptr(%rip), %rsi
    call puts
    cli
    hlt

fail:
    lea msg_fail(%rip), %rsi
    call puts
    cli
    hlt

/* writes the NUL-terminated string at %rsi to COM1 */
puts:
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  ret

    .data
msg_ptr:   .quad msg_reloc
msg_entry: .asciz "entered in 64-bit mode as CPU 0\n"
msg_info:  .asciz "boot info: serial 0x3f8, uhyve platform, 1 CPU, image range ok\n"
msg_reloc: .asciz "relocations applied\n"
msg_fail:  .asciz "HERMIT CHECK FAILED\n"
