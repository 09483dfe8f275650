/* Port I/O with the string instructions: REP OUTSB prints a line, INSB reads
 * the UART's line status register into memory, and an OUTSW through an FS
 * segment override writes two bytes. */
    .code64
    .text
    .global _start
_start:
    cld
    lea msg(%rip), %rsi
    mov $(msg_end - msg), %ecx
    mov $0x3f8, %dx
    rep outsb

    lea lsr(%rip), %rdi
    mov $0x3fd, %dx
    insb
    movzbl lsr(%rip), %eax
    and $0x60, %al          /* transmitter empty */
    cmp $0x60, %al
    jne fail
    lea msg_ins(%rip), %rsi
    mov $(msg_ins_end - msg_ins), %ecx
    mov $0x3f8, %dx
    rep outsb

    /* FS base -> pair; OUTSW with an FS override sends "ok" as a 2-byte write
       the UART model refuses (it takes bytes only), so check RSI moved by 2 */
    lea pair(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    mov $0xc0000100, %ecx   /* IA32_FS_BASE */
    wrmsr
    xor %esi, %esi
    mov $0x3f8, %dx
    fs outsw
    cmp $2, %rsi
    jne fail
    lea msg_seg(%rip), %rsi
    mov $(msg_seg_end - msg_seg), %ecx
    mov $0x3f8, %dx
    rep outsb
    cli
    hlt

fail:
    lea msg_fail(%rip), %rsi
    mov $(msg_fail_end - msg_fail), %ecx
    mov $0x3f8, %dx
    rep outsb
    cli
    hlt

    .data
msg:      .ascii "REP OUTSB printed this line\n"
msg_end:
msg_ins:  .ascii "INSB read the line status\n"
msg_ins_end:
msg_seg:  .ascii "OUTSW through FS advanced RSI\n"
msg_seg_end:
msg_fail: .ascii "STRING I/O CHECK FAILED\n"
msg_fail_end:
lsr:      .byte 0
pair:     .ascii "ok"
