//! The hardware watchdog: the TCO timer of Intel ICH9-family chipsets (in the
//! LPC bridge at 00:1f.0; QEMU's q35 has it). An upgrade's trial boot arms it
//! early, before the appliance starts; the appliance disarms it when the
//! trial commits. A trial that hangs (or never becomes healthy, so never
//! commits) is reset by the chipset, and GRUB then boots the committed slot.
//!
//! Register layout and timing are in [`crate::tco`]. The sequence follows
//! the ICH9 datasheet (and Linux's `iTCO_wdt`, version 2): PMBASE and RCBA
//! from the LPC configuration space, clear `NO_REBOOT` in GCS, halt, set the
//! count, clear the status bits, reload, unhalt.

use core::time::Duration;

use spin::Mutex;

use crate::arch::x86_64::cpu;
use crate::tco::*;
use crate::{mem, pci, time};

/// Why there is no watchdog to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogError {
    /// No ICH9-family LPC bridge at 00:1f.0 (vendor, device found there).
    NoTco { vendor: u16, device: u16 },
    /// The firmware left the ACPI PM I/O block (and so the TCO block) off.
    PmDisabled,
    /// The firmware left the root complex register block off: GCS, whose
    /// `NO_REBOOT` bit stops the reset, cannot be reached.
    RcbaDisabled,
    /// `NO_REBOOT` stays set (locked by the platform): the timer would expire
    /// without resetting anything.
    NoRebootLocked,
    /// The timer did not start (`TCO_TMR_HLT` stays set, the TCO is locked).
    WontStart,
}

impl core::fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WatchdogError::NoTco { vendor, device } => write!(
                f,
                "no ICH9 TCO watchdog (the device at 00:1f.0 is {vendor:04x}:{device:04x})"
            ),
            WatchdogError::PmDisabled => {
                f.write_str("the firmware left the ACPI PM block (PMBASE) disabled")
            }
            WatchdogError::RcbaDisabled => {
                f.write_str("the firmware left the root complex register block (RCBA) disabled")
            }
            WatchdogError::NoRebootLocked => f.write_str(
                "the chipset's NO_REBOOT bit cannot be cleared: the watchdog could not reset",
            ),
            WatchdogError::WontStart => f.write_str("the TCO timer does not start (locked)"),
        }
    }
}

/// The TCO block found on this machine.
#[derive(Debug, Clone, Copy)]
struct Tco {
    /// I/O port of the TCO block (PMBASE + 0x60).
    base: u16,
    /// Virtual address of GCS in the mapped RCBA.
    gcs: u64,
}

/// The watchdog while armed: the TCO block and the latest reset time.
#[derive(Debug, Clone, Copy)]
struct Armed {
    tco: Tco,
    /// Time since boot by which the machine resets unless disarmed.
    reset_by: Duration,
}

static ARMED: Mutex<Option<Armed>> = Mutex::new(None);

impl Tco {
    fn read(&self, reg: u16) -> u16 {
        // SAFETY: `base` is the TCO block inside the ACPI PM I/O range the
        // firmware assigned to the LPC bridge; TCO registers have no read
        // side effects.
        unsafe { cpu::inw(self.base + reg) }
    }

    fn write(&self, reg: u16, value: u16) {
        // SAFETY: as in `read`; the values written follow the datasheet
        // (status bits are write-1-to-clear, RLD takes any value).
        unsafe { cpu::outw(self.base + reg, value) }
    }

    fn gcs(&self) -> u32 {
        // SAFETY: `gcs` is GCS inside the 16 KiB RCBA window, mapped
        // uncached by `find`; a 32-bit aligned register.
        unsafe { core::ptr::read_volatile(self.gcs as *const u32) }
    }

    fn set_gcs(&self, value: u32) {
        // SAFETY: as in `gcs`; only the NO_REBOOT bit is changed by callers.
        unsafe { core::ptr::write_volatile(self.gcs as *mut u32, value) }
    }

    fn halt(&self) {
        self.write(TCO1_CNT, self.read(TCO1_CNT) | TCO1_TMR_HLT);
    }
}

/// Finds the TCO block through the LPC bridge's configuration space.
fn find() -> Result<Tco, WatchdogError> {
    let cam = pci::cam();
    let id = cam.read_config(0, LPC_DEVICE, LPC_FUNCTION, 0);
    let (vendor, device) = (id as u16, (id >> 16) as u16);
    if vendor != INTEL_VENDOR || !ICH9_LPC_IDS.contains(&device) {
        return Err(WatchdogError::NoTco { vendor, device });
    }
    let acpi = cam.read_config(0, LPC_DEVICE, LPC_FUNCTION, LPC_ACPI_CNTL);
    let pmbase = cam.read_config(0, LPC_DEVICE, LPC_FUNCTION, LPC_PMBASE) & LPC_PMBASE_MASK;
    if acpi & LPC_ACPI_EN == 0 || pmbase == 0 {
        return Err(WatchdogError::PmDisabled);
    }
    let rcba = cam.read_config(0, LPC_DEVICE, LPC_FUNCTION, LPC_RCBA);
    if rcba & LPC_RCBA_EN == 0 {
        return Err(WatchdogError::RcbaDisabled);
    }
    let rcba = u64::from(rcba & LPC_RCBA_MASK);
    let window = mem::paging::map_mmio(rcba, 0x4000);
    Ok(Tco {
        // PMBASE is a 16-bit I/O address (masked to 0xff80).
        base: pmbase as u16 + PMBASE_TCO,
        gcs: window + RCBA_GCS,
    })
}

/// Whether the last reset was the watchdog's (second timeout), as the
/// chipset remembers it across a warm reset; clears the record. `None`
/// without a TCO.
pub fn last_reset_was_watchdog() -> Option<bool> {
    let tco = find().ok()?;
    let sts = tco.read(TCO2_STS);
    if sts & (TCO2_SECOND_TO | TCO2_BOOT) != 0 {
        tco.write(TCO2_STS, TCO2_SECOND_TO | TCO2_BOOT);
    }
    Some(sts & TCO2_SECOND_TO != 0)
}

/// Starts the watchdog: the machine resets `deadline` from now (rounded up
/// to the hardware's steps) unless [`disarm`] runs first. Returns the
/// deadline the hardware was given.
pub fn arm(deadline: Duration) -> Result<Duration, WatchdogError> {
    let tco = find()?;
    tco.halt();
    tco.set_gcs(tco.gcs() & !GCS_NO_REBOOT);
    if tco.gcs() & GCS_NO_REBOOT != 0 {
        return Err(WatchdogError::NoRebootLocked);
    }
    let (ticks, real) = ticks_for(deadline);
    tco.write(TCO_TMR, (tco.read(TCO_TMR) & !TCO_TMR_MASK) | ticks);
    tco.write(TCO1_STS, TCO1_TIMEOUT);
    tco.write(TCO2_STS, TCO2_SECOND_TO | TCO2_BOOT);
    tco.write(TCO_RLD, 1);
    tco.write(TCO1_CNT, tco.read(TCO1_CNT) & !TCO1_TMR_HLT);
    if tco.read(TCO1_CNT) & TCO1_TMR_HLT != 0 {
        tco.set_gcs(tco.gcs() | GCS_NO_REBOOT);
        return Err(WatchdogError::WontStart);
    }
    *ARMED.lock() = Some(Armed {
        tco,
        reset_by: time::now() + real,
    });
    Ok(real)
}

/// Stops the watchdog (halts the timer, sets `NO_REBOOT` again). Returns
/// whether it was armed.
pub fn disarm() -> bool {
    let Some(armed) = ARMED.lock().take() else {
        return false;
    };
    armed.tco.halt();
    armed.tco.set_gcs(armed.tco.gcs() | GCS_NO_REBOOT);
    armed.tco.write(TCO1_STS, TCO1_TIMEOUT);
    true
}

/// When armed: the time since boot by which the machine resets.
pub fn reset_by() -> Option<Duration> {
    ARMED.lock().map(|a| a.reset_by)
}
