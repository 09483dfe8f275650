/* Prints a line and resets the machine: through the reset control register
 * (port 0xcf9, bit 2) by default, or with --defsym KBD=1 through the
 * keyboard controller's pulse-reset command (0xfe to port 0x64). A host
 * restarts a VM whose guest resets, so this prints again and again. */
    .ifndef KBD
    .set KBD, 0
    .endif
    .code64
    .text
    .global _start
_start:
    lea msg(%rip), %rsi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:
    .if KBD
    mov $0x64, %dx
    mov $0xfe, %al
    .else
    mov $0xcf9, %dx
    mov $0x06, %al
    .endif
    outb %al, %dx
    /* not reached: the reset ends the VM */
    lea fail(%rip), %rsi
    cli
    hlt

    .data
msg:  .asciz "booting, then resetting\n"
fail: .asciz "STILL RUNNING AFTER RESET\n"
