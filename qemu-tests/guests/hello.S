/* Well-behaved guest: prints, probes, handles an injected #GP, halts. */
    .code64
    .text
    .global _start
_start:
    lea msg_hello(%rip), %rsi
    call puts

    /* hypervisor signature leaf */
    mov $0x40000000, %eax
    cpuid
    lea sig(%rip), %rdi
    mov %ebx, 0(%rdi)
    mov %ecx, 4(%rdi)
    mov %edx, 8(%rdi)
    lea msg_sig(%rip), %rsi
    call puts

    /* an IDT with a #GP handler, then an MSR no CPU has */
    lea gp_handler(%rip), %rax
    lea idt(%rip), %rdi
    mov %ax, 13*16+0(%rdi)
    movw $0x10, 13*16+2(%rdi)
    movw $0x8e00, 13*16+4(%rdi)
    shr $16, %rax
    mov %ax, 13*16+6(%rdi)
    shr $16, %rax
    mov %eax, 13*16+8(%rdi)
    lidt idtr(%rip)
    mov $0x4b4b4b4b, %ecx
    rdmsr
    lea msg_after(%rip), %rsi
    call puts

    cli
    hlt
    jmp .

gp_handler:
    lea msg_gp(%rip), %rsi
    call puts
    addq $2, 8(%rsp)        /* step over the 2-byte RDMSR */
    add $8, %rsp            /* drop the error code */
    iretq

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
msg_hello: .asciz "hello from a keel guest\n"
msg_sig:   .ascii "hypervisor "
sig:       .ascii "????????????"
           .asciz "\n"
msg_gp:    .asciz "#GP for an unknown MSR\n"
msg_after: .asciz "resumed after the #GP\n"
    .balign 16
idt:       .fill 32 * 16, 1, 0
idtr:      .short 32 * 16 - 1
           .quad idt
