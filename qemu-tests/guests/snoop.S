/* Prints the low 8 bytes of xmm0 as it finds them: a fresh guest must see
 * zero, never what an earlier guest on the same host CPU left there. */
    .code64
    .text
    .global _start
_start:
    mov %cr4, %rax
    or $0x600, %rax
    mov %rax, %cr4
    movq %xmm0, %rbx
    mov $0x3f8, %dx
    lea prefix(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  mov $16, %ecx
3:  rol $4, %rbx
    mov %bl, %al
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 4f
    add $('a' - '9' - 1), %al
4:  outb %al, %dx
    dec %ecx
    jnz 3b
    mov $'\n', %al
    outb %al, %dx
    cli
    hlt
    .data
prefix: .asciz "xmm0="
