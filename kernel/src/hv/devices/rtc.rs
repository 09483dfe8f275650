//! The CMOS real-time clock at ports 0x70/0x71, in BCD and 24-hour mode,
//! never showing an update in progress. The wall-clock time comes from the
//! caller (seconds since the Unix epoch).

pub const INDEX: u16 = 0x70;
pub const DATA: u16 = 0x71;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtc {
    pub index: u8,
    /// General-purpose CMOS bytes (0x0e..0x80) the guest may use.
    pub nvram: [u8; 128],
}

impl Default for Rtc {
    fn default() -> Self {
        Rtc {
            index: 0,
            nvram: [0; 128],
        }
    }
}

fn bcd(v: u64) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// (year, month, day) of a day count since 1970-01-01 (civil calendar).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    ((y + i64::from(m <= 2)) as u64, m as u64, d as u64)
}

impl Rtc {
    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            INDEX => self.index = v & 0x7f,
            DATA if self.index >= 0x0e => self.nvram[usize::from(self.index)] = v,
            _ => {}
        }
    }

    pub fn read(&self, port: u16, unix_seconds: u64) -> u8 {
        if port != DATA {
            return 0xff;
        }
        let secs = unix_seconds % 86_400;
        let (year, month, day) = civil(unix_seconds / 86_400);
        match self.index {
            0x00 => bcd(secs % 60),
            0x02 => bcd(secs / 60 % 60),
            0x04 => bcd(secs / 3600),
            0x06 => bcd((unix_seconds / 86_400 + 4) % 7 + 1), // 1970-01-01 was a Thursday
            0x07 => bcd(day),
            0x08 => bcd(month),
            0x09 => bcd(year % 100),
            0x32 => bcd(year / 100),
            0x0a => 0x26, // no update in progress, 32.768 kHz divider
            0x0b => 0x02, // 24-hour, BCD, no interrupts
            0x0c => 0x00,
            0x0d => 0x80, // battery good
            i => self.nvram[usize::from(i)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(r: &mut Rtc, i: u8, t: u64) -> u8 {
        r.write(INDEX, i);
        r.read(DATA, t)
    }

    #[test]
    fn reports_bcd_calendar_time() {
        let mut r = Rtc::default();
        // 2026-11-22 03:38:02 UTC
        let t = 1_795_318_682;
        assert_eq!(
            [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(|i| at(&mut r, i, t)),
            [0x02, 0x38, 0x03, 0x22, 0x11, 0x26, 0x20]
        );
        assert_eq!(at(&mut r, 0x0a, t) & 0x80, 0, "never mid-update");
        assert_eq!(at(&mut r, 0x07, 0), 0x01);
        r.write(INDEX, 0x40);
        r.write(DATA, 0x5a);
        assert_eq!(r.read(DATA, 0), 0x5a);
    }
}
