//! ACPI fixed hardware: the PM timer (3.579545 MHz, 32-bit), the PM1 event
//! registers with the fixed power button (the host "presses" it to ask the
//! guest to shut down; the guest sees PWRBTN_STS and an SCI), and the PM1
//! control register, through which a guest powers itself off (SLP_TYP for S5
//! with SLP_EN).

use core::time::Duration;

/// ACPI PM timer frequency.
pub const PM_TIMER_HZ: u64 = 3_579_545;
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;
/// PM1 status/enable bit of the fixed power button.
pub const PWRBTN: u16 = 1 << 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pm {
    pub pm1_status: u16,
    pub pm1_enable: u16,
    pub pm1_control: u16,
}

/// What a PM1 control write asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepRequest {
    /// Enter the sleep state with this SLP_TYP.
    Sleep(u8),
}

impl Pm {
    /// The PM timer value at `now`.
    pub fn timer(now: Duration) -> u32 {
        (now.as_nanos() * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u32
    }

    /// A read of `offset` within PM1a_EVT (0..4) or PM1a_CNT (`cnt`).
    pub fn read_event(&self, offset: u16) -> u16 {
        if offset < 2 {
            self.pm1_status
        } else {
            self.pm1_enable
        }
    }

    pub fn write_event(&mut self, offset: u16, value: u16) {
        if offset < 2 {
            self.pm1_status &= !value; // write 1 to clear
        } else {
            self.pm1_enable = value;
        }
    }

    /// The control register always shows SCI_EN: there is no legacy mode.
    pub fn read_control(&self) -> u16 {
        self.pm1_control | SCI_EN
    }

    /// The power button is pressed (and released).
    pub fn press_power_button(&mut self) {
        self.pm1_status |= PWRBTN;
    }

    /// Whether the SCI is asserted: an enabled event is pending.
    pub fn sci(&self) -> bool {
        self.pm1_status & self.pm1_enable & PWRBTN != 0
    }

    pub fn write_control(&mut self, value: u16) -> Option<SleepRequest> {
        self.pm1_control = value & !SLP_EN;
        (value & SLP_EN != 0).then_some(SleepRequest::Sleep(((value >> 10) & 7) as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_runs_at_the_acpi_rate() {
        assert_eq!(Pm::timer(Duration::from_secs(1)), PM_TIMER_HZ as u32);
        assert_eq!(Pm::timer(Duration::from_millis(1)), 3579);
    }

    #[test]
    fn slp_en_requests_sleep_type() {
        let mut p = Pm::default();
        assert_eq!(p.read_control() & 1, 1);
        assert_eq!(p.write_control(5 << 10), None);
        assert_eq!(
            p.write_control((5 << 10) | SLP_EN),
            Some(SleepRequest::Sleep(5))
        );
        p.pm1_status = 0x0101;
        p.write_event(0, 0x0100);
        assert_eq!(p.read_event(0), 0x0001);
    }

    #[test]
    fn power_button_raises_sci_when_enabled_until_acknowledged() {
        let mut pm = Pm::default();
        pm.press_power_button();
        assert!(!pm.sci(), "not enabled yet");
        assert_eq!(pm.read_event(0) & PWRBTN, PWRBTN, "but the status shows it");
        pm.write_event(2, PWRBTN);
        assert!(pm.sci());
        pm.write_event(0, PWRBTN); // the guest acknowledges
        assert!(!pm.sci());
        assert_eq!(pm.read_event(0), 0);
    }
}
