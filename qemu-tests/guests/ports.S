/* Hostile guest: reads and writes ports across the I/O space, then executes
 * an invalid instruction without an IDT: #UD → #DF → triple fault. */
    .code64
    .text
    .global _start
_start:
    xor %ecx, %ecx
1:  mov %cx, %dx
    inb %dx, %al
    mov $0xa5, %al
    cmp $0x3f8, %dx
    jb 2f
    cmp $0x3ff, %dx
    jbe 3f
2:  outb %al, %dx
    inl %dx, %eax
    outl %eax, %dx
3:  add $0x0101, %ecx
    cmp $0x10000, %ecx
    jb 1b
    ud2
