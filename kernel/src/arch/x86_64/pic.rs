//! The legacy 8259 PICs: remapped away from the exception vectors and fully
//! masked, since interrupts go through the APICs.

use super::cpu::outb;

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;

pub fn disable() {
    // SAFETY: the standard 8259 initialisation sequence on the PC PIC ports;
    // vectors 0xe0..0xef are unused by the kernel, and all lines end masked.
    unsafe {
        outb(PIC1_CMD, 0x11);
        outb(PIC2_CMD, 0x11);
        outb(PIC1_DATA, 0xe0);
        outb(PIC2_DATA, 0xe8);
        outb(PIC1_DATA, 0x04);
        outb(PIC2_DATA, 0x02);
        outb(PIC1_DATA, 0x01);
        outb(PIC2_DATA, 0x01);
        outb(PIC1_DATA, 0xff);
        outb(PIC2_DATA, 0xff);
    }
}
