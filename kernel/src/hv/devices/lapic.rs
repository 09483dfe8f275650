//! A guest local APIC: xAPIC (memory-mapped at 0xfee00000) or x2APIC (MSRs
//! 0x800..0x8ff once the guest sets EXTD in IA32_APIC_BASE): interrupt
//! acceptance with priorities, EOI, the timer in one-shot, periodic and
//! TSC-deadline modes, LINT0 as the virtual-wire path for the 8259, and the
//! ICR whose IPIs the VM routes. Time (and the TSC) comes from the caller.

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
    /// x2APIC only: write a vector to send it to this APIC.
    pub const SELF_IPI: u16 = 0x3f0;
}

/// First and last x2APIC register MSRs (register offset = (msr - 0x800) << 4).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

const VERSION: u32 = 0x0005_0014; // version 0x14, 6 LVT entries
const MASKED: u32 = 1 << 16;
const SVR_ENABLED: u32 = 1 << 8;
const TIMER_MODE: u32 = 3 << 17;
const TIMER_PERIODIC: u32 = 1 << 17;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;
const DELIVERY_MASK: u32 = 0b111 << 8;
const DELIVERY_EXTINT: u32 = 0b111 << 8;

/// An inter-processor interrupt the guest asked for (the VM delivers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// ICR bits 0..20: vector, delivery mode, destination mode, level, trigger, shorthand.
    pub command: u32,
    /// Destination: an APIC ID (xAPIC: ICR high bits 24..32; x2APIC: the
    /// 32-bit ID, or cluster and bitmap in logical mode).
    pub destination: u32,
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
    /// In x2APIC mode (registers are MSRs; 32-bit IDs).
    pub x2apic: bool,
    /// The armed IA32_TSC_DEADLINE value (0: disarmed).
    pub tsc_deadline: u64,
}

/// The guest's TSC at one instant, to turn TSC deadlines into times.
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    pub now: Duration,
    pub tsc: u64,
    pub hz: u64,
}

impl TscClock {
    /// When the TSC reaches `value` (now, if it already has).
    pub fn time_of(&self, value: u64) -> Duration {
        let ticks = value.saturating_sub(self.tsc);
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(self.hz.max(1));
        self.now + Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }
}

/// A guest access the APIC refuses (the CPU raises #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

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
            x2apic: false,
            tsc_deadline: 0,
        }
    }

    fn timer_mode(&self) -> u32 {
        self.lvt[0] & TIMER_MODE
    }

    /// Whether an interrupt addressed to `destination` reaches this APIC:
    /// physical mode matches the APIC ID (all ones broadcasts), logical mode
    /// the LDR's bit (xAPIC flat) or cluster and bit (x2APIC).
    pub fn matches(&self, destination: u32, logical: bool) -> bool {
        match (self.x2apic, logical) {
            (false, true) => destination & (self.ldr >> 24) & 0xff != 0,
            (false, false) => destination == u32::from(self.id) || destination == 0xff,
            (true, true) => {
                let ldr = self.x2apic_ldr();
                destination >> 16 == ldr >> 16 && destination & ldr & 0xffff != 0
            }
            (true, false) => destination == u32::from(self.id) || destination == u32::MAX,
        }
    }

    /// The x2APIC logical ID, derived from the APIC ID: cluster in bits
    /// 16..32, one bit of 16 in the low half.
    fn x2apic_ldr(&self) -> u32 {
        (u32::from(self.id >> 4) << 16) | (1 << (self.id & 0xf))
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
            if self.timer_mode() == TIMER_PERIODIC && self.timer_initial != 0 {
                let p = self.period();
                let mut next = due + p;
                if next <= now {
                    next = now + p; // skip missed periods rather than storm
                }
                self.timer_due = Some(next);
            } else {
                self.timer_due = None;
                self.tsc_deadline = 0;
            }
        }
        self.timer_due
    }

    /// A write of IA32_TSC_DEADLINE: arms (or with 0 disarms) the timer when
    /// it is in TSC-deadline mode, and is ignored otherwise, as on hardware.
    pub fn write_tsc_deadline(&mut self, value: u64, clock: TscClock) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = value;
        self.timer_due = (value != 0).then(|| clock.time_of(value));
    }

    /// A read of IA32_TSC_DEADLINE (0 once fired, and outside that mode).
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline
        } else {
            0
        }
    }

    fn current_count(&self, now: Duration) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
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
                    destination: self.icr_high >> 24,
                });
            }
            o @ reg::LVT_TIMER..=reg::LVT_ERROR => {
                let v = if self.enabled() { v } else { v | MASKED };
                if o == reg::LVT_TIMER && v & TIMER_MODE != self.timer_mode() {
                    // Changing timer mode disarms the timer.
                    self.timer_due = None;
                    self.timer_initial = 0;
                    self.tsc_deadline = 0;
                }
                self.lvt[lvt_index(o)] = v;
            }
            reg::TIMER_INITIAL if self.timer_mode() == TIMER_TSC_DEADLINE => {}
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

    /// Switches to x2APIC mode (IA32_APIC_BASE.EXTD set by the guest).
    pub fn enter_x2apic(&mut self) {
        self.x2apic = true;
        self.ldr = self.x2apic_ldr();
    }

    /// RDMSR of an x2APIC register (`msr` in 0x800..=0x8ff).
    pub fn msr_read(&self, msr: u32, now: Duration) -> Result<u64, Refused> {
        if !self.x2apic {
            return Err(Refused);
        }
        let offset = x2apic_offset(msr)?;
        Ok(match offset {
            reg::ID => u64::from(self.id),
            reg::LDR => u64::from(self.x2apic_ldr()),
            reg::ICR_LOW => u64::from(self.icr_low) | (u64::from(self.icr_high) << 32),
            reg::VERSION
            | reg::TPR
            | reg::PPR
            | reg::SVR
            | reg::ISR..=0x270
            | reg::ESR
            | reg::LVT_TIMER..=reg::LVT_ERROR
            | reg::TIMER_INITIAL
            | reg::TIMER_CURRENT
            | reg::TIMER_DIVIDE => u64::from(self.read(offset, now)),
            _ => return Err(Refused),
        })
    }

    /// WRMSR of an x2APIC register; an ICR write returns the IPI to deliver.
    pub fn msr_write(
        &mut self,
        msr: u32,
        value: u64,
        now: Duration,
    ) -> Result<Option<Ipi>, Refused> {
        if !self.x2apic {
            return Err(Refused);
        }
        let offset = x2apic_offset(msr)?;
        let low = value as u32;
        match offset {
            reg::ICR_LOW => {
                self.icr_low = low & !(1 << 12);
                self.icr_high = (value >> 32) as u32;
                Ok(Some(Ipi {
                    command: low,
                    destination: self.icr_high,
                }))
            }
            reg::SELF_IPI => {
                self.accept(low as u8);
                Ok(None)
            }
            reg::EOI if value != 0 => Err(Refused),
            reg::TPR
            | reg::EOI
            | reg::SVR
            | reg::ESR
            | reg::LVT_TIMER..=reg::LVT_ERROR
            | reg::TIMER_INITIAL
            | reg::TIMER_DIVIDE
                if value >> 32 == 0 =>
            {
                Ok(self.write(offset, low, now))
            }
            _ => Err(Refused),
        }
    }
}

/// The register offset of an x2APIC MSR.
fn x2apic_offset(msr: u32) -> Result<u16, Refused> {
    if !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
        return Err(Refused);
    }
    Ok(((msr - X2APIC_MSR_FIRST) << 4) as u16)
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
        assert!(!a.matches(0x100, false), "xAPIC IDs are 8 bits");
        assert!(a.matches(0x01, true) && !a.matches(0x02, true));
        assert!(a.matches(0, false) && a.matches(0xff, false) && !a.matches(1, false));
    }

    fn clock(now: Duration, tsc: u64) -> TscClock {
        TscClock {
            now,
            tsc,
            hz: 1_000_000_000, // 1 tick per ns
        }
    }

    #[test]
    fn tsc_deadline_timer() {
        let mut a = enabled();
        a.write_tsc_deadline(5_000, clock(ms(0), 0));
        assert_eq!(a.timer_due, None, "ignored outside TSC-deadline mode");
        a.write(reg::LVT_TIMER, 0xef | TIMER_TSC_DEADLINE, ms(0));
        a.write(reg::TIMER_INITIAL, 1000, ms(0));
        assert_eq!(
            a.timer_due, None,
            "the initial count is ignored in this mode"
        );
        // TSC at 1_000_000 when the host time is 1 ms: 2 ms of TSC ticks ahead.
        a.write_tsc_deadline(3_000_000, clock(ms(1), 1_000_000));
        assert_eq!(a.read_tsc_deadline(), 3_000_000);
        assert_eq!(a.poll_timer(ms(2)), Some(ms(3)));
        assert_eq!(a.pending(), None);
        assert_eq!(a.poll_timer(ms(3)), None);
        assert_eq!(a.pending(), Some(0xef));
        assert_eq!(a.read_tsc_deadline(), 0, "cleared once it fired");
        // A deadline in the past fires at once; 0 disarms; a mode change disarms.
        a.write_tsc_deadline(1, clock(ms(5), 5_000_000));
        assert_eq!(a.timer_due, Some(ms(5)));
        a.write_tsc_deadline(0, clock(ms(5), 5_000_000));
        assert_eq!(a.timer_due, None);
        a.write_tsc_deadline(9_000_000, clock(ms(5), 5_000_000));
        a.write(reg::LVT_TIMER, 0xef, ms(5));
        assert_eq!((a.timer_due, a.read_tsc_deadline()), (None, 0));
    }

    #[test]
    fn x2apic_registers_are_msrs() {
        let mut a = Lapic::new(0x13);
        assert_eq!(
            a.msr_read(0x802, ms(0)),
            Err(Refused),
            "xAPIC mode: no MSRs"
        );
        a.enter_x2apic();
        a.msr_write(0x80f, 0x1ff, ms(0)).unwrap(); // SVR: enable
        assert_eq!(a.msr_read(0x802, ms(0)), Ok(0x13), "32-bit ID, not shifted");
        assert_eq!(
            a.msr_read(0x80d, ms(0)),
            Ok((1 << 16) | (1 << 3)),
            "cluster 1, bit 3"
        );
        assert_eq!(
            a.msr_write(0x80d, 0, ms(0)),
            Err(Refused),
            "LDR is read-only"
        );
        assert_eq!(
            a.msr_read(0x80e, ms(0)),
            Err(Refused),
            "no DFR in x2APIC mode"
        );
        assert_eq!(a.msr_read(0x831, ms(0)), Err(Refused), "no ICR high half");
        assert_eq!(
            a.msr_write(0x80b, 1, ms(0)),
            Err(Refused),
            "EOI takes only 0"
        );
        assert_eq!(
            a.msr_write(0x808, 1 << 40, ms(0)),
            Err(Refused),
            "reserved bits"
        );
        let ipi = a
            .msr_write(0x830, (0x1234u64 << 32) | 0x40fd, ms(0))
            .unwrap()
            .unwrap();
        assert_eq!((ipi.destination, ipi.vector()), (0x1234, 0xfd));
        assert_eq!(a.msr_read(0x830, ms(0)), Ok((0x1234u64 << 32) | 0x40fd));
        a.msr_write(0x83f, 0x61, ms(0)).unwrap(); // self IPI
        assert_eq!(a.pending(), Some(0x61));
        assert!(a.matches(0x13, false) && a.matches(u32::MAX, false) && !a.matches(0x12, false));
        assert!(a.matches((1 << 16) | 0b1000, true));
        assert!(!a.matches(0b1000, true), "other cluster");
        assert_eq!(a.msr_read(0x900, ms(0)), Err(Refused));
    }
}
