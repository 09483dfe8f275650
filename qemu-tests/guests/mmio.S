/* Hostile guest: writes to guest-physical memory that is not its RAM. */
    .code64
    .text
    .global _start
_start:
    mov $0xf0000000, %rdi
    movl $0xdeadbeef, (%rdi)
    hlt
