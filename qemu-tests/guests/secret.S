/* Leaves a secret in xmm0 (SSE enabled through CR4.OSFXSR), then halts. */
    .code64
    .text
    .global _start
_start:
    mov %cr4, %rax
    or $0x600, %rax             /* OSFXSR | OSXMMEXCPT */
    mov %rax, %cr4
    movabs $0x5ec2e75ec2e75ec2, %rax
    movq %rax, %xmm0
    cli
    hlt
