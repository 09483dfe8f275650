//! A guest local APIC (xAPIC, memory-mapped at 0xfee00000): interrupt
//! acceptance with priorities, EOI, the timer in one-shot and periodic modes,
//! LINT0 as the virtual-wire path for the 8259, and the ICR whose IPIs the VM
//! routes. Time comes from the caller.

use core::time::Duration;

pub const BASE: u64 = 0xfee0_0000;
pub const SIZE: u64 = 0x1000;
/// The timer's input clock (the "bus clock") before the divider.
pub const BUS_HZ: u64 = 100_000_000;

mod reg {
    pub const ID: u16 = 0x20;
    pub const VERSION: u16 = 0x30;
    pub const TPR: u16 = 0x80;
    pub const APR: u16 = 0x90;
    pub const PPR: u16 = 0xa0;
    pub const EOI: u16 = 0xb0;
    pub const LDR: u16 = 0xd0;
    pub const DFR: u16 = 0xe0;
    pub const SVR: u16 = 0xf0;
    pub const ISR: u16 = 0x100;
    pub const TMR: u16 = 0x180;
    pub const IRR: u16 = 0x200;
    pub const ESR: u16 = 0x280;
    pub const ICR_LOW: u16 = 0x300;
    pub const ICR_HIGH: u16 = 0x310;
    pub const LVT_TIMER: u16 = 0x320;
    pub const LVT_LINT0: u16 = 0x350;
    pub const LVT_ERROR: u16 = 0x370;
    pub const TIMER_INITIAL: u16 = 0x380;
    pub const TIMER_CURRENT: u16 = 0x390;
    pub const TIMER_DIVIDE: u16 = 0x3e0;
}

const VERSION: u32 = 0x0005_0014; // version 0x14, 6 LVT entries
const MASKED: u32 = 1 << 16;
const SVR_ENABLED: u32 = 1 << 8;
const TIMER_PERIODIC: u32 = 1 << 17;
const DELIVERY_MASK: u32 = 0b111 << 8;
const DELIVERY_EXTINT: u32 = 0b111 << 8;

/// An inter-processor interrupt the guest asked for (the VM delivers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// ICR bits 0..20: vector, delivery mode, destination mode, level, trigger, shorthand.
    pub command: u32,
    /// Destination APIC ID (ICR high bits 24..32).
    pub destination: u8,
}

impl Ipi {
    pub fn vector(&self) -> u8 {
        self.command as u8
    }
    /// 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 6 start-up.
    pub fn delivery_mode(&self) -> u32 {
        (self.command >> 8) & 7
    }
    /// Logical destination mode.
    pub fn logical(&self) -> bool {
        self.command & (1 << 11) != 0
    }
    /// 0 none (use destination), 1 self, 2 all including self, 3 all excluding self.
    pub fn shorthand(&self) -> u32 {
        (self.command >> 18) & 3
    }
}

/// Register and interrupt state, kept plain for migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lapic {
    pub id: u8,
    pub tpr: u32,
    pub ldr: u32,
    pub dfr: u32,
    pub svr: u32,
    pub isr: [u32; 8],
    pub tmr: [u32; 8],
    pub irr: [u32; 8],
    pub esr: u32,
    pub icr_low: u32,
    pub icr_high: u32,
    /// LVT entries in register order: timer, thermal, perf, LINT0, LINT1, error.
    pub lvt: [u32; 6],
    pub timer_initial: u32,
    pub timer_divide: u32,
    pub timer_start: Duration,
    /// When the armed timer next fires.
    pub timer_due: Option<Duration>,
}

fn lvt_index(offset: u16) -> usize {
    usize::from((offset - reg::LVT_TIMER) / 16)
}

fn set_bit(set: &mut [u32; 8], v: u8, on: bool) {
    let w = &mut set[usize::from(v / 32)];
    if on {
        *w |= 1 << (v % 32)
    } else {
        *w &= !(1 << (v % 32))
    }
}
fn highest(set: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| set[i] != 0)
        .map(|i| (i * 32 + 31 - set[i].leading_zeros() as usize) as u8)
}

impl Lapic {
    pub fn new(id: u8) -> Lapic {
        Lapic {
            id,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [MASKED; 6],
            timer_initial: 0,
            timer_divide: 0,
            timer_start: Duration::ZERO,
            timer_due: None,
        }
    }

    /// Whether an interrupt addressed to `destination` reaches this APIC:
    /// physical mode matches the APIC ID (0xff broadcasts), logical flat mode
    /// matches the LDR's bit.
    pub fn matches(&self, destination: u8, logical: bool) -> bool {
        if logical {
            destination & (self.ldr >> 24) as u8 != 0
        } else {
            destination == self.id || destination == 0xff
        }
    }

    pub fn enabled(&self) -> bool {
        self.svr & SVR_ENABLED != 0
    }

    /// Whether 8259 interrupts reach this CPU (LINT0 in ExtINT mode, or the APIC off).
    pub fn accepts_pic(&self) -> bool {
        let lint0 = self.lvt[lvt_index(reg::LVT_LINT0)];
        !self.enabled() || (lint0 & MASKED == 0 && lint0 & DELIVERY_MASK == DELIVERY_EXTINT)
    }

    fn divider(&self) -> u64 {
        // bits 0,1,3 encode 2^(n+1), 0b111 = 1
        let n = (self.timer_divide & 3) | ((self.timer_divide >> 1) & 4);
        if n == 7 { 1 } else { 2 << n }
    }

    fn tick(&self) -> Duration {
        Duration::from_nanos((1_000_000_000 * self.divider() / BUS_HZ).max(1))
    }

    fn period(&self) -> Duration {
        self.tick() * self.timer_initial
    }

    /// Requests `vector` (fixed delivery).
    pub fn accept(&mut self, vector: u8) {
        if vector >= 16 {
            set_bit(&mut self.irr, vector, true);
        }
    }

    fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).map_or(0, u32::from);
        if (self.tpr & 0xf0) >= (isrv & 0xf0) {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The vector the CPU would take now.
    pub fn pending(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        (u32::from(v) & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The CPU takes `vector`.
    pub fn acknowledge(&mut self, vector: u8) {
        set_bit(&mut self.irr, vector, false);
        set_bit(&mut self.isr, vector, true);
    }

    /// Fires the timer if it is due; returns its next deadline.
    pub fn poll_timer(&mut self, now: Duration) -> Option<Duration> {
        let due = self.timer_due?;
        if now >= due {
            if self.lvt[0] & MASKED == 0 && self.enabled() {
                self.accept(self.lvt[0] as u8);
            }
            if self.lvt[0] & TIMER_PERIODIC != 0 && self.timer_initial != 0 {
                let p = self.period();
                let mut next = due + p;
                if next <= now {
                    next = now + p; // skip missed periods rather than storm
                }
                self.timer_due = Some(next);
            } else {
                self.timer_due = None;
            }
        }
        self.timer_due
    }

    fn current_count(&self, now: Duration) -> u32 {
        let Some(due) = self.timer_due else { return 0 };
        let left = due.saturating_sub(now);
        (left.as_nanos() / self.tick().as_nanos().max(1)).min(u128::from(u32::MAX)) as u32
    }

    pub fn read(&self, offset: u16, now: Duration) -> u32 {
        match offset {
            reg::ID => u32::from(self.id) << 24,
            reg::VERSION => VERSION,
            reg::TPR => self.tpr,
            reg::APR => 0,
            reg::PPR => self.ppr(),
            reg::LDR => self.ldr,
            reg::DFR => self.dfr,
            reg::SVR => self.svr,
            o @ reg::ISR..=0x170 => self.isr[usize::from((o - reg::ISR) / 16)],
            o @ reg::TMR..=0x1f0 => self.tmr[usize::from((o - reg::TMR) / 16)],
            o @ reg::IRR..=0x270 => self.irr[usize::from((o - reg::IRR) / 16)],
            reg::ESR => self.esr,
            reg::ICR_LOW => self.icr_low,
            reg::ICR_HIGH => self.icr_high,
            o @ reg::LVT_TIMER..=reg::LVT_ERROR => self.lvt[lvt_index(o)],
            reg::TIMER_INITIAL => self.timer_initial,
            reg::TIMER_CURRENT => self.current_count(now),
            reg::TIMER_DIVIDE => self.timer_divide,
            _ => 0,
        }
    }

    /// A register write; an ICR low write returns the IPI to deliver.
    pub fn write(&mut self, offset: u16, v: u32, now: Duration) -> Option<Ipi> {
        match offset {
            reg::TPR => self.tpr = v & 0xff,
            reg::EOI => {
                if let Some(top) = highest(&self.isr) {
                    set_bit(&mut self.isr, top, false);
                }
            }
            reg::LDR => self.ldr = v & 0xff00_0000,
            reg::DFR => self.dfr = v | 0x0fff_ffff,
            reg::SVR => {
                self.svr = v & 0x3ff;
                if !self.enabled() {
                    for l in &mut self.lvt {
                        *l |= MASKED;
                    }
                }
            }
            reg::ESR => self.esr = 0,
            reg::ICR_HIGH => self.icr_high = v & 0xff00_0000,
            reg::ICR_LOW => {
                self.icr_low = v & !(1 << 12); // delivery is immediate: never pending
                return Some(Ipi {
                    command: v,
                    destination: (self.icr_high >> 24) as u8,
                });
            }
            o @ reg::LVT_TIMER..=reg::LVT_ERROR => {
                self.lvt[lvt_index(o)] = if self.enabled() { v } else { v | MASKED };
            }
            reg::TIMER_INITIAL => {
                self.timer_initial = v;
                self.timer_start = now;
                self.timer_due = (v != 0).then(|| now + self.period());
            }
            reg::TIMER_DIVIDE => self.timer_divide = v & 0b1011,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn enabled() -> Lapic {
        let mut a = Lapic::new(0);
        a.write(reg::SVR, 0x1ff, ms(0));
        a
    }

    #[test]
    fn priorities_and_eoi() {
        let mut a = enabled();
        a.accept(0x31);
        a.accept(0x51);
        assert_eq!(a.pending(), Some(0x51));
        a.acknowledge(0x51);
        assert_eq!(a.pending(), None, "0x31 is below the in-service class");
        a.write(reg::EOI, 0, ms(0));
        assert_eq!(a.pending(), Some(0x31));
        a.write(reg::TPR, 0x40, ms(0));
        assert_eq!(a.pending(), None, "TPR blocks class 3");
        assert_eq!(
            Lapic::new(0).pending(),
            None,
            "software-disabled APIC delivers nothing"
        );
    }

    #[test]
    fn oneshot_and_periodic_timer() {
        let mut a = enabled();
        a.write(reg::TIMER_DIVIDE, 0b1011, ms(0)); // divide by 1: 10 ns ticks
        a.write(reg::LVT_TIMER, 0xec, ms(0));
        a.write(reg::TIMER_INITIAL, 100_000, ms(0)); // 1 ms
        assert_eq!(a.poll_timer(Duration::from_micros(500)), Some(ms(1)));
        assert_eq!(
            a.read(reg::TIMER_CURRENT, Duration::from_micros(500)),
            50_000
        );
        assert_eq!(a.poll_timer(ms(1)), None);
        assert_eq!(a.pending(), Some(0xec));
        a.acknowledge(0xec);
        a.write(reg::EOI, 0, ms(1));
        a.write(reg::LVT_TIMER, 0xec | TIMER_PERIODIC, ms(1));
        a.write(reg::TIMER_INITIAL, 100_000, ms(1));
        assert_eq!(a.poll_timer(ms(2)), Some(ms(3)));
        assert_eq!(a.pending(), Some(0xec));
    }

    #[test]
    fn icr_writes_become_ipis_and_lint0_gates_the_pic() {
        let mut a = enabled();
        a.write(reg::ICR_HIGH, 3 << 24, ms(0));
        let ipi = a.write(reg::ICR_LOW, 0x0000_4608, ms(0)).unwrap();
        assert_eq!(
            (
                ipi.destination,
                ipi.delivery_mode(),
                ipi.vector(),
                ipi.shorthand()
            ),
            (3, 6, 0x08, 0)
        );
        assert!(!a.accepts_pic());
        a.write(reg::LVT_LINT0, 0x700, ms(0));
        assert!(a.accepts_pic());
        assert!(
            Lapic::new(0).accepts_pic(),
            "with the APIC off, the 8259 wires straight to the CPU"
        );
        a.write(reg::LDR, 1 << 24, ms(0));
        assert!(a.matches(0x01, true) && !a.matches(0x02, true));
        assert!(a.matches(0, false) && a.matches(0xff, false) && !a.matches(1, false));
    }
}
