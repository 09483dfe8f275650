/* A guest that never halts or exits on its own: it keeps a pattern in xmm0
 * and xmm1 and a value in XCR0, spins, and checks after every round that
 * nothing changed them. With ROUNDS=0 it spins forever (printing a tick
 * every 16 rounds); otherwise it reports after ROUNDS rounds and halts.
 * Two such guests on one host CPU prove preemptive time slicing (the one
 * that spins forever cannot starve the other) and that each vCPU's
 * extended state and XCR0 are switched with it.
 * Assemble with --defsym PATTERN=<u32> --defsym ROUNDS=<n> --defsym XCR0=1|3. */
    .code64
    .text
    .global _start
_start:
    mov %cr4, %rax
    or $0x40600, %rax       /* OSFXSR, OSXMMEXCPT, OSXSAVE */
    mov %rax, %cr4
    xor %edx, %edx
    mov $XCR0, %eax
    xor %ecx, %ecx
    xsetbv
    mov $PATTERN, %eax
    movd %eax, %xmm0
    pshufd $0, %xmm0, %xmm0     /* the pattern in all four lanes */
    pcmpeqd %xmm1, %xmm1
    pxor %xmm0, %xmm1           /* xmm1 = ~xmm0 */
    xor %r12, %r12              /* rounds done */

round:
    mov $200000, %ecx
1:  dec %ecx
    jnz 1b
    /* xmm0 must still hold the pattern in every lane, xmm1 its complement */
    mov $PATTERN, %eax
    movd %eax, %xmm2
    pshufd $0, %xmm2, %xmm2
    pcmpeqd %xmm0, %xmm2
    pmovmskb %xmm2, %eax
    cmp $0xffff, %eax
    jne corrupt
    pcmpeqd %xmm3, %xmm3
    pxor %xmm0, %xmm3
    pcmpeqd %xmm1, %xmm3
    pmovmskb %xmm3, %eax
    cmp $0xffff, %eax
    jne corrupt
    xor %ecx, %ecx
    xgetbv
    cmp $XCR0, %eax
    jne corrupt
    inc %r12
    test $15, %r12
    jnz 2f
    lea msg_tick(%rip), %rsi
    call puts
2:  cmp $ROUNDS, %r12
    jne round
    lea msg_done(%rip), %rsi
    call puts
    cli
    hlt

corrupt:
    lea msg_bad(%rip), %rsi
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
msg_tick: .asciz "tick\n"
msg_done: .asciz "spun, registers intact\n"
msg_bad:  .asciz "REGISTERS CHANGED UNDER ME\n"
