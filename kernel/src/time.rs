//! Monotonic time from the TSC, calibrated against the ACPI PM timer; and the
//! local APIC timer rate, calibrated against the TSC.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::x86_64::{apic, cpu};

/// ACPI PM timer frequency (fixed by the ACPI specification).
const PM_TIMER_HZ: u64 = 3_579_545;

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// APIC timer ticks (bus clock / 16) per millisecond.
static APIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Marks time zero. First thing at boot.
pub fn mark_boot() {
    TSC_AT_BOOT.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// Time since boot; zero until the TSC is calibrated.
pub fn now() -> Duration {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return Duration::ZERO;
    }
    let ticks = cpu::rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64)
}

/// The TSC rate in Hz (0 until calibrated).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Spins for `d` (needs a calibrated TSC).
pub fn spin_for(d: Duration) {
    let hz = TSC_HZ.load(Ordering::Relaxed).max(1);
    let ticks = (d.as_nanos() * u128::from(hz) / 1_000_000_000) as u64;
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < ticks {
        cpu::pause();
    }
}

/// Why the clocks could not be calibrated.
#[derive(Debug, Clone, Copy)]
pub enum ClockError {
    NoPmTimer,
    TscNotRunning,
}

/// Measures the TSC rate over ~50 ms of the ACPI PM timer at I/O `port`.
pub fn calibrate_tsc(pm_port: Option<u16>, pm_32bit: bool) -> Result<u64, ClockError> {
    let port = pm_port.ok_or(ClockError::NoPmTimer)?;
    let mask: u32 = if pm_32bit { u32::MAX } else { 0x00ff_ffff };
    // SAFETY: the PM timer is a read-only counter at the port the FADT names.
    let read = || unsafe { cpu::inl(port) } & mask;
    let target = PM_TIMER_HZ / 20; // 50 ms
    let start_pm = read();
    let start_tsc = cpu::rdtsc();
    let mut elapsed: u64 = 0;
    let mut last = start_pm;
    // Bounded by iterations as well, in case the PM timer is stuck.
    for _ in 0..200_000_000u64 {
        let v = read();
        elapsed += u64::from(v.wrapping_sub(last) & mask);
        last = v;
        if elapsed >= target {
            break;
        }
    }
    let tsc = cpu::rdtsc().wrapping_sub(start_tsc);
    if elapsed < target || tsc == 0 {
        return Err(ClockError::TscNotRunning);
    }
    let hz = tsc * PM_TIMER_HZ / elapsed;
    TSC_HZ.store(hz, Ordering::Relaxed);
    Ok(hz)
}

/// Measures the local APIC timer against the TSC (calling CPU; all CPUs share the bus clock).
pub fn calibrate_apic_timer() -> u64 {
    apic::timer_start_masked();
    let start = apic::timer_current();
    spin_for(Duration::from_millis(10));
    let end = apic::timer_current();
    apic::timer_stop();
    let per_ms = u64::from(start.wrapping_sub(end)) / 10;
    APIC_TICKS_PER_MS.store(per_ms.max(1), Ordering::Relaxed);
    per_ms
}

/// Arms the calling CPU's APIC timer to fire at `deadline` (time since boot),
/// or after `max_wait` if that is sooner.
pub fn arm_timer(deadline: Duration) {
    let per_ms = APIC_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
    let wait = deadline.saturating_sub(now());
    let ticks = (wait.as_micros() * u128::from(per_ms) / 1000).clamp(1, u128::from(u32::MAX));
    apic::timer_oneshot(ticks as u32);
}

static WALL_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Unix seconds of (year, month, day, hour, minute, second), civil calendar.
fn unix_seconds(y: u64, m: u64, d: u64, hh: u64, mm: u64, ss: u64) -> u64 {
    let (y, m) = if m <= 2 {
        (y as i64 - 1, m + 9)
    } else {
        (y as i64, m - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days.max(0) as u64) * 86_400 + hh * 3600 + mm * 60 + ss
}

/// Reads the machine's CMOS real-time clock (UTC, as PC firmware and QEMU keep it).
pub fn read_cmos_clock() {
    let read = |reg: u8| {
        // SAFETY: 0x70/0x71 are the CMOS index/data ports; reading clock
        // registers has no side effects (NMI stays enabled: bit 7 clear).
        unsafe {
            cpu::outb(0x70, reg);
            cpu::inb(0x71)
        }
    };
    for _ in 0..1_000_000 {
        if read(0x0a) & 0x80 == 0 {
            break;
        }
        cpu::pause();
    }
    let binary = read(0x0b) & 0x04 != 0;
    let val = |reg: u8| {
        let v = read(reg);
        u64::from(if binary {
            v
        } else {
            (v >> 4) * 10 + (v & 0x0f)
        })
    };
    let (ss, mm, hh, d, m, y, c) = (
        val(0),
        val(2),
        val(4) & 0x3f,
        val(7),
        val(8),
        val(9),
        val(0x32),
    );
    let year = if (19..=21).contains(&c) {
        c * 100 + y
    } else {
        2000 + y
    };
    let t = unix_seconds(year, m.clamp(1, 12), d.clamp(1, 31), hh, mm, ss);
    WALL_AT_BOOT.store(t.saturating_sub(now().as_secs()), Ordering::Relaxed);
}

/// Seconds since the Unix epoch (0 until the CMOS clock was read).
pub fn wall_clock() -> u64 {
    let base = WALL_AT_BOOT.load(Ordering::Relaxed);
    if base == 0 { 0 } else { base + now().as_secs() }
}
