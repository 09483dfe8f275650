//! The legacy 8259A interrupt controller pair (master at 0x20, slave at 0xa0,
//! cascaded on IRQ 2), edge-triggered, as Linux programs it when it runs
//! without an APIC.

/// One 8259A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chip {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    pub vector_base: u8,
    /// Next initialisation word expected (0 = initialised).
    pub init_step: u8,
    pub needs_icw4: bool,
    pub auto_eoi: bool,
    pub read_isr: bool,
}

impl Chip {
    fn highest(bits: u8) -> Option<u8> {
        (0..8).find(|i| bits & (1 << i) != 0)
    }

    /// The IRQ this chip would deliver now: the highest-priority requested,
    /// unmasked line above everything in service.
    fn pending(&self) -> Option<u8> {
        let req = Self::highest(self.irr & !self.imr)?;
        match Self::highest(self.isr) {
            Some(busy) if busy <= req => None,
            _ => Some(req),
        }
    }

    fn ack(&mut self, irq: u8) {
        self.irr &= !(1 << irq);
        if !self.auto_eoi {
            self.isr |= 1 << irq;
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1: start initialisation
            *self = Chip {
                needs_icw4: v & 1 != 0,
                init_step: 2,
                ..Chip::default()
            };
        } else if v & 0x08 != 0 {
            // OCW3: register to read
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
        } else {
            // OCW2: end of interrupt
            match v >> 5 {
                0b001 => {
                    if let Some(i) = Self::highest(self.isr) {
                        self.isr &= !(1 << i);
                    }
                }
                0b011 => self.isr &= !(1 << (v & 7)),
                _ => {}
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init_step {
            2 => {
                self.vector_base = v & 0xf8;
                self.init_step = 3;
            }
            3 => self.init_step = if self.needs_icw4 { 4 } else { 0 },
            4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.init_step = 0;
            }
            _ => self.imr = v,
        }
    }

    fn read_command(&self) -> u8 {
        if self.read_isr { self.isr } else { self.irr }
    }
}

/// The master/slave pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pic {
    pub master: Chip,
    pub slave: Chip,
}

pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xa0;
pub const SLAVE_DATA: u16 = 0xa1;
const CASCADE: u8 = 2;

impl Default for Pic {
    fn default() -> Self {
        // Everything masked until the guest programs it.
        let masked = Chip {
            imr: 0xff,
            ..Chip::default()
        };
        Pic {
            master: masked,
            slave: masked,
        }
    }
}

impl Pic {
    /// An edge on ISA line `irq` (0..16).
    pub fn raise(&mut self, irq: u8) {
        match irq {
            0..=7 => self.master.irr |= 1 << irq,
            8..=15 => self.slave.irr |= 1 << (irq - 8),
            _ => {}
        }
    }

    fn cascade_level(&mut self) {
        if self.slave.pending().is_some() {
            self.master.irr |= 1 << CASCADE;
        } else {
            self.master.irr &= !(1 << CASCADE);
        }
    }

    /// The vector the CPU would receive if it took an interrupt now.
    pub fn pending_vector(&mut self) -> Option<u8> {
        self.cascade_level();
        let irq = self.master.pending()?;
        if irq == CASCADE {
            let s = self.slave.pending()?;
            return Some(self.slave.vector_base + s);
        }
        Some(self.master.vector_base + irq)
    }

    /// The CPU takes the pending interrupt (INTA); returns its vector.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.cascade_level();
        let irq = self.master.pending()?;
        self.master.ack(irq);
        if irq == CASCADE {
            let s = self.slave.pending()?;
            self.slave.ack(s);
            return Some(self.slave.vector_base + s);
        }
        Some(self.master.vector_base + irq)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            MASTER_CMD => self.master.read_command(),
            MASTER_DATA => self.master.imr,
            SLAVE_CMD => self.slave.read_command(),
            SLAVE_DATA => self.slave.imr,
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            MASTER_CMD => self.master.write_command(v),
            MASTER_DATA => self.master.write_data(v),
            SLAVE_CMD => self.slave.write_command(v),
            SLAVE_DATA => self.slave.write_data(v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's init_8259A sequence: vectors 0x30/0x38, cascade on 2.
    fn linux_init() -> Pic {
        let mut p = Pic::default();
        for (port, v) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
        ] {
            p.write(port, v);
        }
        p.write(0x21, 0xfb); // all masked but the cascade
        p.write(0xa1, 0xff);
        p
    }

    #[test]
    fn masked_lines_wait_and_priority_orders_delivery() {
        let mut p = linux_init();
        p.raise(0);
        assert_eq!(p.pending_vector(), None, "IRQ0 is masked");
        p.write(0x21, 0xfa); // unmask 0 (and keep 2)
        p.raise(4);
        p.write(0x21, 0xea); // unmask 4 too
        assert_eq!(p.acknowledge(), Some(0x30));
        assert_eq!(
            p.pending_vector(),
            None,
            "IRQ4 waits while IRQ0 is in service"
        );
        p.write(0x20, 0x20); // EOI
        assert_eq!(p.acknowledge(), Some(0x34));
        p.write(0x20, 0x20);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn slave_lines_cascade_through_irq2() {
        let mut p = linux_init();
        p.write(0xa1, 0xfe); // unmask IRQ8
        p.raise(8);
        assert_eq!(p.acknowledge(), Some(0x38));
        p.write(0x0b, 0);
        p.write(0x20, 0x0b);
        assert_eq!(p.read(0x20), 1 << 2, "ISR shows the cascade in service");
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        assert_eq!(p.read(0x20), 0);
    }
}
