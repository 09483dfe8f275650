//! The Intel ICH9 TCO watchdog's registers and timer arithmetic (the
//! hardware side is `drivers::watchdog`). Pure, so it is tested on the host.
//!
//! The TCO timer counts down in 0.6 s ticks from `TCO_TMR` (10 bits). At
//! the first expiry it sets `TIMEOUT` in `TCO1_STS` (and may raise an SMI)
//! and reloads; at the second expiry the chipset resets the machine unless
//! `NO_REBOOT` in GCS (or the SPKR pin strap, QEMU's `ICH9-LPC.noreboot`)
//! forbids it. A deadline of D seconds is therefore two periods of D/2.

use core::time::Duration;

/// PCI location of the LPC bridge (bus 0, device 31, function 0).
pub const LPC_DEVICE: u8 = 31;
pub const LPC_FUNCTION: u8 = 0;
pub const INTEL_VENDOR: u16 = 0x8086;
/// ICH9 family LPC device IDs (82801I: 0x2910..0x291f; QEMU's q35 is 0x2918).
pub const ICH9_LPC_IDS: core::ops::RangeInclusive<u16> = 0x2910..=0x291f;

/// LPC configuration registers.
pub const LPC_PMBASE: u16 = 0x40;
pub const LPC_PMBASE_MASK: u32 = 0xff80;
pub const LPC_ACPI_CNTL: u16 = 0x44;
pub const LPC_ACPI_EN: u32 = 1 << 7;
pub const LPC_RCBA: u16 = 0xf0;
pub const LPC_RCBA_EN: u32 = 1;
pub const LPC_RCBA_MASK: u32 = 0xffff_c000;

/// General Control and Status in the root complex register block.
pub const RCBA_GCS: u64 = 0x3410;
pub const GCS_NO_REBOOT: u32 = 1 << 5;

/// The TCO block's offset in the ACPI PM I/O block.
pub const PMBASE_TCO: u16 = 0x60;
/// Registers, as offsets from the TCO base.
pub const TCO_RLD: u16 = 0x00;
pub const TCO1_STS: u16 = 0x04;
pub const TCO2_STS: u16 = 0x06;
pub const TCO1_CNT: u16 = 0x08;
pub const TCO_TMR: u16 = 0x12;
/// `TCO1_STS`: the timer expired once.
pub const TCO1_TIMEOUT: u16 = 1 << 3;
/// `TCO2_STS`: the timer expired twice (the last reset was the watchdog's).
pub const TCO2_SECOND_TO: u16 = 1 << 1;
/// `TCO2_STS`: the second timeout happened before the BIOS cleared it.
pub const TCO2_BOOT: u16 = 1 << 2;
/// `TCO1_CNT`: the timer is halted.
pub const TCO1_TMR_HLT: u16 = 1 << 11;
/// `TCO_TMR`'s count field.
pub const TCO_TMR_MASK: u16 = 0x3ff;

/// One timer tick.
pub const TICK: Duration = Duration::from_millis(600);
/// The smallest count the hardware takes (0..3 are reserved).
pub const MIN_TICKS: u16 = 4;
/// The largest count that fits `TCO_TMR`.
pub const MAX_TICKS: u16 = 0x3ff;

/// The count for `deadline` (to the reset, two periods), rounded up and
/// clamped to what the hardware takes, and the deadline it really gives.
pub fn ticks_for(deadline: Duration) -> (u16, Duration) {
    let period_ms = deadline.as_millis().div_ceil(2);
    let tick_ms = TICK.as_millis();
    let ticks = period_ms.div_ceil(tick_ms);
    let ticks = u16::try_from(ticks)
        .unwrap_or(MAX_TICKS)
        .clamp(MIN_TICKS, MAX_TICKS);
    (ticks, TICK * u32::from(ticks) * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_two_periods_of_whole_ticks() {
        assert_eq!(
            ticks_for(Duration::from_secs(240)),
            (200, Duration::from_secs(240))
        );
        // 31 s: 15.5 s per period, 26 ticks (15.6 s), 31.2 s in all.
        assert_eq!(
            ticks_for(Duration::from_secs(31)),
            (26, Duration::from_millis(31_200))
        );
        assert_eq!(ticks_for(Duration::ZERO).0, MIN_TICKS);
        assert_eq!(ticks_for(Duration::from_secs(1)).0, MIN_TICKS);
        let (ticks, real) = ticks_for(Duration::from_secs(100_000));
        assert_eq!(ticks, MAX_TICKS);
        assert_eq!(real, Duration::from_millis(1_227_600));
        assert_eq!(ticks_for(Duration::MAX).0, MAX_TICKS);
    }
}
