/* Hostile virtio driver: finds its virtio-blk at 00:01.0 through ECAM,
 * negotiates VERSION_1, then hands the device a descriptor chain that loops
 * (descriptor 0 names itself as next) and notifies. The device must stop
 * with DEVICE_NEEDS_RESET (the host carries on); after a reset the guest
 * pokes the rest of the BAR and config space with garbage and halts. */
    .code64
    .text
    .global _start

    .set ECAM_DEV1, 0xe0008000
    .set DESC,  0x1000000
    .set AVAIL, 0x1001000
    .set USED,  0x1002000

_start:
    mov $ECAM_DEV1, %edi
    movl (%rdi), %eax
    cmp $0x10421af4, %eax
    jne no_device
    movw $2, 4(%rdi)            /* memory decoding on */
    movl 0x10(%rdi), %ebx       /* BAR0 */
    and $0xfffffff0, %ebx

    movb $0, 0x14(%rbx)         /* reset */
    movb $3, 0x14(%rbx)         /* ACKNOWLEDGE | DRIVER */
    movl $1, 0x08(%rbx)         /* driver_feature_select = 1 */
    movl $1, 0x0c(%rbx)         /* VERSION_1 */
    movb $11, 0x14(%rbx)        /* | FEATURES_OK */
    movb 0x14(%rbx), %al
    test $8, %al
    jz no_features
    lea msg_features(%rip), %rsi
    call puts

    /* the looping chain: descriptor 0 -> descriptor 0 */
    mov $DESC, %edi
    movq $0x1003000, (%rdi)     /* addr */
    movl $16, 8(%rdi)           /* len */
    movw $1, 12(%rdi)           /* NEXT */
    movw $0, 14(%rdi)           /* next = 0 */
    mov $AVAIL, %edi
    movw $0, (%rdi)             /* flags */
    movw $0, 4(%rdi)            /* ring[0] = 0 */
    movw $1, 2(%rdi)            /* idx = 1 */

    movw $0, 0x16(%rbx)         /* queue_select */
    movw $8, 0x18(%rbx)         /* queue_size */
    movl $DESC, 0x20(%rbx)
    movl $0, 0x24(%rbx)
    movl $AVAIL, 0x28(%rbx)
    movl $0, 0x2c(%rbx)
    movl $USED, 0x30(%rbx)
    movl $0, 0x34(%rbx)
    movw $1, 0x1c(%rbx)         /* queue_enable */
    movb $15, 0x14(%rbx)        /* | DRIVER_OK */
    movw $0, 0x3000(%rbx)       /* notify queue 0 */

    /* the device task serves the notify: wait for NEEDS_RESET (bounded) */
    mov $1000000, %ecx
1:  movb 0x14(%rbx), %al
    test $64, %al
    jnz broken
    pause
    dec %ecx
    jnz 1b
    lea msg_served(%rip), %rsi
    call puts
    jmp garbage
broken:
    lea msg_reset(%rip), %rsi
    call puts

garbage:
    movb $0, 0x14(%rbx)         /* reset, then nonsense everywhere */
    movl $0xffffffff, 0x18(%rbx)
    movl $0xdeadbeef, 0x1c(%rbx)
    movw $0x7fff, 0x3ffc(%rbx)
    movl $0xffffffff, 0x4000(%rbx)
    movl $0x12345678, 0x7ffc(%rbx)
    movl 0x7ff0(%rbx), %eax
    mov $ECAM_DEV1, %edi
    movl $0xffffffff, 0x10(%rdi)   /* BAR sizing, never restored */
    movl $0xffffffff, 0xffc(%rdi)
    movl 0x800(%rdi), %eax
    mov $0xe00ff000, %edi          /* a device that does not exist */
    movl (%rdi), %eax
    cmp $0xffffffff, %eax
    jne done
    lea msg_garbage(%rip), %rsi
    call puts
done:
    cli
    hlt
    jmp .

no_device:
    lea msg_nodev(%rip), %rsi
    call puts
    jmp done
no_features:
    lea msg_nofeat(%rip), %rsi
    call puts
    jmp done

/* writes the NUL-terminated string at %rsi to COM1 */
puts:
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  ret

    .section .rodata
msg_features: .asciz "KEEL-VIRTIO-FEATURES-OK\n"
msg_reset:    .asciz "KEEL-VIRTIO-NEEDS-RESET\n"
msg_served:   .asciz "KEEL-VIRTIO-LOOP-SERVED\n"
msg_garbage:  .asciz "KEEL-VIRTIO-GARBAGE-DONE\n"
msg_nodev:    .asciz "KEEL-VIRTIO-NO-DEVICE\n"
msg_nofeat:   .asciz "KEEL-VIRTIO-NO-FEATURES-OK\n"
