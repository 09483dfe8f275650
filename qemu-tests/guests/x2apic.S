/* Drives the local APIC the way a modern kernel does: switches it to x2APIC
 * mode (registers as MSRs), arms the timer in TSC-deadline mode and halts
 * until it fires, then sends itself an IPI through the x2APIC SELF_IPI MSR.
 * Prints what it checked; halts with interrupts off at the end. */
    .code64
    .text
    .global _start
_start:
    /* IDT: vector 0xef (timer) and 0xee (self IPI) */
    lea idt(%rip), %rdi
    lea timer_handler(%rip), %rax
    mov $0xef, %ecx
    call set_gate
    lea ipi_handler(%rip), %rax
    mov $0xee, %ecx
    call set_gate
    lidt idtr(%rip)

    /* CPUID.1: ECX bit 21 x2APIC, bit 24 TSC-deadline */
    mov $1, %eax
    cpuid
    bt $21, %ecx
    jnc fail
    bt $24, %ecx
    jnc fail

    /* IA32_APIC_BASE |= EXTD */
    mov $0x1b, %ecx
    rdmsr
    or $0x400, %eax
    wrmsr
    rdmsr
    bt $10, %eax
    jnc fail
    /* x2APIC ID of vCPU 0 is 0; software-enable through SVR */
    mov $0x802, %ecx
    rdmsr
    test %eax, %eax
    jnz fail
    mov $0x80f, %ecx
    mov $0x1ff, %eax
    xor %edx, %edx
    wrmsr
    lea msg_x2apic(%rip), %rsi
    call puts

    /* LVT timer: vector 0xef, TSC-deadline mode */
    mov $0x832, %ecx
    mov $(0xef | (2 << 17)), %eax
    xor %edx, %edx
    wrmsr
    /* deadline = TSC + 20,000,000 (a few ms) */
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    add $20000000, %rdx
    mov %rdx, %rax
    shr $32, %rdx
    mov $0x6e0, %ecx
    wrmsr
1:  sti
    hlt
    cli
    cmpb $0, fired(%rip)
    je 1b
    /* the deadline reads back as 0 once it fired */
    mov $0x6e0, %ecx
    rdmsr
    or %edx, %eax
    jnz fail
    lea msg_deadline(%rip), %rsi
    call puts

    /* self IPI, vector 0xee */
    mov $0x83f, %ecx
    mov $0xee, %eax
    xor %edx, %edx
    wrmsr
    sti
    nop
    cli
    cmpb $0, ipi(%rip)
    je fail
    lea msg_ipi(%rip), %rsi
    call puts
    cli
    hlt

fail:
    lea msg_fail(%rip), %rsi
    call puts
    cli
    hlt

timer_handler:
    movb $1, fired(%rip)
    jmp eoi
ipi_handler:
    movb $1, ipi(%rip)
eoi:
    push %rax
    push %rcx
    push %rdx
    mov $0x80b, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

/* gate %ecx of the IDT at %rdi -> handler %rax (64-bit interrupt gate, CS 0x10) */
set_gate:
    shl $4, %ecx
    add %rdi, %rcx
    mov %ax, 0(%rcx)
    movw $0x10, 2(%rcx)
    movw $0x8e00, 4(%rcx)
    shr $16, %rax
    mov %ax, 6(%rcx)
    shr $16, %rax
    mov %eax, 8(%rcx)
    movl $0, 12(%rcx)
    ret

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
fired: .byte 0
ipi:   .byte 0
msg_x2apic:   .asciz "x2APIC mode on, ID 0\n"
msg_deadline: .asciz "TSC-deadline timer fired\n"
msg_ipi:      .asciz "self IPI through x2APIC delivered\n"
msg_fail:     .asciz "x2APIC CHECK FAILED\n"
    .balign 16
idt:   .fill 256 * 16, 1, 0
idtr:  .short 256 * 16 - 1
       .quad idt
