//! A 16550A UART as guests see it at 0x3f8: enough for Linux's 8250 driver
//! and early console to probe it and write through it. Transmitted bytes go
//! to a [`ConsoleSink`]; bytes the host types (the XenAPI console) wait in a
//! bounded receive FIFO, with the data-ready status and interrupt.

/// Where transmitted bytes go.
pub trait ConsoleSink {
    fn put(&mut self, byte: u8);
}

mod reg {
    pub const DATA: u16 = 0; // RBR/THR, DLL with DLAB
    pub const IER: u16 = 1; // DLM with DLAB
    pub const IIR_FCR: u16 = 2;
    pub const LCR: u16 = 3;
    pub const MCR: u16 = 4;
    pub const LSR: u16 = 5;
    pub const MSR: u16 = 6;
    pub const SCR: u16 = 7;
}

const LCR_DLAB: u8 = 0x80;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_FIFO_ENABLED: u8 = 0xc0;
const MCR_LOOPBACK: u8 = 0x10;
/// On PCs, OUT2 gates the UART's interrupt onto the ISA line.
const MCR_OUT2: u8 = 0x08;
const IER_THRE: u8 = 0x02;
const IIR_THRE: u8 = 0x02;
/// "Received data available": ranks above THRE in IIR.
const IIR_RDA: u8 = 0x04;
const IER_RDA: u8 = 0x01;
const LSR_DR: u8 = 0x01;
/// Bytes the receive FIFO holds; input beyond it waits with the host.
pub const RX_FIFO: usize = 64;

/// Register state, kept plain so it can be saved for migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UartState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub scr: u8,
    pub dll: u8,
    pub dlm: u8,
    pub fifo_enabled: bool,
    /// Byte held in loopback mode (what a guest reads back when probing).
    pub loopback: Option<u8>,
    /// A "transmitter holding register empty" interrupt is pending.
    pub thre_pending: bool,
}

#[derive(Debug, Default)]
pub struct Uart<S: ConsoleSink> {
    pub state: UartState,
    pub sink: S,
    /// Received bytes the guest has not read yet.
    pub rx: heapless::Deque<u8, RX_FIFO>,
}

impl<S: ConsoleSink> Uart<S> {
    pub fn new(sink: S) -> Uart<S> {
        Uart {
            state: UartState {
                dll: 1,
                ..UartState::default()
            },
            sink,
            rx: heapless::Deque::new(),
        }
    }

    /// Bytes arriving on the line (the host's console input): as many as
    /// the receive FIFO has room for; returns how many were taken.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut taken = 0;
        for b in bytes {
            if self.rx.push_back(*b).is_err() {
                break;
            }
            taken += 1;
        }
        taken
    }

    /// A read of register `offset` (0..8).
    pub fn read(&mut self, offset: u16) -> u8 {
        let s = &mut self.state;
        let dlab = s.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => s.dll,
            reg::DATA => match s.loopback.take() {
                Some(b) => b,
                None => self.rx.pop_front().unwrap_or(0),
            },
            reg::IER if dlab => s.dlm,
            reg::IER => s.ier,
            reg::IIR_FCR => {
                let fifo = if s.fifo_enabled { IIR_FIFO_ENABLED } else { 0 };
                // Received data ranks first and stays until the FIFO is read;
                // reading IIR while it reports THRE acknowledges that interrupt.
                if !self.rx.is_empty() && s.ier & IER_RDA != 0 {
                    IIR_RDA | fifo
                } else if s.thre_pending && s.ier & IER_THRE != 0 {
                    s.thre_pending = false;
                    IIR_THRE | fifo
                } else {
                    IIR_NO_INTERRUPT | fifo
                }
            }
            reg::LCR => s.lcr,
            reg::MCR => s.mcr,
            reg::LSR => {
                let ready =
                    s.loopback.is_some() || (s.mcr & MCR_LOOPBACK == 0 && !self.rx.is_empty());
                LSR_THRE | LSR_TEMT | if ready { LSR_DR } else { 0 }
            }
            // In loopback, modem outputs appear on the inputs (Linux's probe checks this).
            // RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD.
            reg::MSR if s.mcr & MCR_LOOPBACK != 0 => {
                ((s.mcr & 0x02) << 3) | ((s.mcr & 0x01) << 5) | ((s.mcr & 0x0c) << 4)
            }
            reg::MSR => 0xb0, // DCD, DSR, CTS asserted: a cable is attached
            reg::SCR => s.scr,
            _ => 0xff,
        }
    }

    /// A write of `value` to register `offset` (0..8).
    pub fn write(&mut self, offset: u16, value: u8) {
        let dlab = self.state.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => self.state.dll = value,
            reg::DATA if self.state.mcr & MCR_LOOPBACK != 0 => self.state.loopback = Some(value),
            reg::DATA => {
                // Transmission is instant: the holding register is empty again.
                self.sink.put(value);
                self.state.thre_pending = true;
            }
            reg::IER if dlab => self.state.dlm = value,
            reg::IER => {
                // Enabling THRE while the register is empty interrupts at once.
                self.state.thre_pending = value & IER_THRE != 0 && self.state.ier & IER_THRE == 0
                    || self.state.thre_pending;
                self.state.ier = value & 0x0f;
            }
            reg::IIR_FCR => self.state.fifo_enabled = value & 1 != 0,
            reg::LCR => self.state.lcr = value,
            reg::MCR => self.state.mcr = value & 0x1f,
            reg::SCR => self.state.scr = value,
            _ => {}
        }
    }
}

impl<S: ConsoleSink> Uart<S> {
    /// Level of the UART's interrupt line (ISA IRQ 4 for COM1).
    pub fn interrupt_line(&self) -> bool {
        let s = &self.state;
        let rda = !self.rx.is_empty() && s.ier & IER_RDA != 0 && s.mcr & MCR_LOOPBACK == 0;
        (rda || s.thre_pending && s.ier & IER_THRE != 0) && s.mcr & MCR_OUT2 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<u8>);
    impl ConsoleSink for Collect {
        fn put(&mut self, b: u8) {
            self.0.push(b);
        }
    }

    #[test]
    fn transmits_and_reports_empty_holding_register() {
        let mut u = Uart::new(Collect::default());
        assert_ne!(u.read(5) & LSR_THRE, 0);
        for b in b"hi\n" {
            u.write(0, *b);
        }
        assert_eq!(u.sink.0, b"hi\n");
    }

    #[test]
    fn divisor_latch_and_scratch_and_loopback_probe() {
        let mut u = Uart::new(Collect::default());
        u.write(3, 0x83); // DLAB + 8N1
        u.write(0, 0x01);
        u.write(1, 0x00);
        assert_eq!((u.read(0), u.read(1)), (1, 0));
        u.write(3, 0x03);
        u.write(7, 0x5a);
        assert_eq!(u.read(7), 0x5a);
        // Linux's autoconfig: loopback with OUT2|RTS, expects CTS|DCD back in MSR
        u.write(4, 0x10 | 0x0a);
        assert_eq!(u.read(6) & 0xf0, 0x90);
        u.write(0, b'x');
        assert_eq!(u.read(5) & 1, 1);
        assert_eq!(u.read(0), b'x');
        assert!(
            u.sink.0.is_empty(),
            "loopback bytes never reach the console"
        );
        assert_eq!(u.read(9), 0xff);
    }

    #[test]
    fn transmit_interrupts_follow_ier_out2_and_iir_reads() {
        let mut u = Uart::new(Collect::default());
        u.write(4, MCR_OUT2);
        assert!(!u.interrupt_line());
        u.write(1, IER_THRE);
        assert!(
            u.interrupt_line(),
            "enabling THRE on an empty register interrupts"
        );
        assert_eq!(u.read(2) & 0x0f, IIR_THRE);
        assert!(!u.interrupt_line(), "reading IIR acknowledged it");
        u.write(0, b'a');
        assert!(u.interrupt_line());
        u.write(4, 0);
        assert!(!u.interrupt_line(), "OUT2 low keeps the line quiet");
    }

    #[test]
    fn received_bytes_are_read_in_order_with_data_ready_and_their_interrupt() {
        let mut u = Uart::new(Collect::default());
        u.write(4, MCR_OUT2);
        u.write(1, IER_RDA);
        assert_eq!(u.read(5) & LSR_DR, 0);
        assert!(!u.interrupt_line());
        assert_eq!(u.receive(b"ls\n"), 3);
        assert!(u.interrupt_line());
        assert_eq!(u.read(2) & 0x0f, IIR_RDA);
        assert!(
            u.interrupt_line(),
            "reading IIR does not acknowledge received data"
        );
        let mut got = Vec::new();
        while u.read(5) & LSR_DR != 0 {
            got.push(u.read(0));
        }
        assert_eq!(got, b"ls\n");
        assert!(!u.interrupt_line());
        assert_eq!(u.read(2) & 0x0f, IIR_NO_INTERRUPT);
        let long = [b'x'; RX_FIFO + 10];
        assert_eq!(u.receive(&long), RX_FIFO, "a full FIFO refuses the rest");
    }
}
