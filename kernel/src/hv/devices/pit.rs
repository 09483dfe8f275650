//! The 8254 programmable interval timer: channel 0 drives IRQ 0, channel 2
//! (gated through port 0x61) is what Linux reads to calibrate. Time comes
//! from the caller as a `Duration` since an arbitrary origin.

use core::time::Duration;

/// Input clock of the 8254.
pub const HZ: u64 = 1_193_182;

pub const CHANNEL0: u16 = 0x40;
pub const CHANNEL2: u16 = 0x42;
pub const COMMAND: u16 = 0x43;
/// System control port B: bit 0 gates channel 2, bit 5 shows its output.
pub const PORT_B: u16 = 0x61;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channel {
    pub mode: u8,
    /// 1 = low byte, 2 = high byte, 3 = low then high.
    pub access: u8,
    /// Reload value; 0 means 65536.
    pub reload: u16,
    pub loaded_at: Duration,
    pub counting: bool,
    pub latch: Option<u16>,
    /// In low/high access, whether the next read/write is the high byte.
    pub read_high: bool,
    pub write_high: bool,
    pub pending_low: u8,
    /// For channel 0: ticks of the period already turned into IRQs.
    pub fired: u64,
}

impl Channel {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            0x10000
        } else {
            u64::from(self.reload)
        }
    }

    fn elapsed_ticks(&self, now: Duration) -> u64 {
        (now.saturating_sub(self.loaded_at).as_nanos() * u128::from(HZ) / 1_000_000_000) as u64
    }

    fn count(&self, now: Duration) -> u16 {
        if !self.counting {
            return self.reload;
        }
        let e = self.elapsed_ticks(now);
        let p = self.period();
        match self.mode {
            0 | 1 => (p.saturating_sub(e) & 0xffff) as u16,
            _ => ((p - e % p) & 0xffff) as u16,
        }
    }

    fn out(&self, now: Duration) -> bool {
        if !self.counting {
            return false;
        }
        let e = self.elapsed_ticks(now);
        match self.mode {
            0 | 1 => e >= self.period(),
            3 => e % self.period() < self.period() / 2,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pit {
    pub channels: [Channel; 3],
    pub gate2: bool,
    pub speaker: bool,
}

impl Pit {
    fn channel_of(port: u16) -> Option<usize> {
        match port {
            0x40..=0x42 => Some(usize::from(port - 0x40)),
            _ => None,
        }
    }

    pub fn read(&mut self, port: u16, now: Duration) -> u8 {
        if port == PORT_B {
            let out2 = self.channels[2].out(now);
            return u8::from(self.gate2) | (u8::from(self.speaker) << 1) | (u8::from(out2) << 5);
        }
        let Some(i) = Self::channel_of(port) else {
            return 0xff;
        };
        let c = &mut self.channels[i];
        let value = c.latch.unwrap_or_else(|| c.count(now));
        let byte = match c.access {
            1 => value as u8,
            2 => (value >> 8) as u8,
            _ => {
                let b = if c.read_high {
                    (value >> 8) as u8
                } else {
                    value as u8
                };
                c.read_high = !c.read_high;
                if !c.read_high {
                    c.latch = None;
                }
                return b;
            }
        };
        c.latch = None;
        byte
    }

    pub fn write(&mut self, port: u16, v: u8, now: Duration) {
        match port {
            PORT_B => {
                let gate = v & 1 != 0;
                if gate && !self.gate2 {
                    // A rising gate restarts channel 2's count.
                    self.channels[2].loaded_at = now;
                }
                self.gate2 = gate;
                self.speaker = v & 2 != 0;
            }
            COMMAND => {
                let i = usize::from(v >> 6);
                if i == 3 {
                    return; // read-back command: not used by Linux here
                }
                let c = &mut self.channels[i];
                let access = (v >> 4) & 3;
                if access == 0 {
                    c.latch = Some(c.count(now));
                    c.read_high = false;
                    return;
                }
                *c = Channel {
                    mode: (v >> 1) & 7,
                    access,
                    ..Channel::default()
                };
                if c.mode > 5 {
                    c.mode &= 3;
                }
            }
            _ => {
                let Some(i) = Self::channel_of(port) else {
                    return;
                };
                let c = &mut self.channels[i];
                let reload = match c.access {
                    1 => u16::from(v),
                    2 => u16::from(v) << 8,
                    _ if !c.write_high => {
                        c.pending_low = v;
                        c.write_high = true;
                        return;
                    }
                    _ => {
                        c.write_high = false;
                        u16::from(c.pending_low) | (u16::from(v) << 8)
                    }
                };
                c.reload = reload;
                c.loaded_at = now;
                c.counting = true;
                c.fired = 0;
            }
        }
    }

    /// Channel 0 interrupts that became due by `now` (0 or more), and when the next is due.
    pub fn poll_irq0(&mut self, now: Duration) -> (u64, Option<Duration>) {
        let c = &mut self.channels[0];
        if !c.counting {
            return (0, None);
        }
        let p = c.period();
        let periods = c.elapsed_ticks(now) / p;
        let tick = |n: u64| {
            c.loaded_at
                + Duration::from_nanos((u128::from(n * p) * 1_000_000_000 / u128::from(HZ)) as u64)
        };
        match c.mode {
            0 | 1 => {
                if periods >= 1 && c.fired == 0 {
                    c.fired = 1;
                    (1, None)
                } else if c.fired == 0 {
                    (0, Some(tick(1)))
                } else {
                    (0, None)
                }
            }
            _ => {
                let due = periods.saturating_sub(c.fired);
                c.fired = periods;
                (due, Some(tick(periods + 1)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn periodic_channel0_fires_at_the_programmed_rate() {
        let mut p = Pit::default();
        // Linux: mode 2, lo/hi, LATCH = HZ/1000
        p.write(COMMAND, 0x34, ms(0));
        let latch = (HZ / 1000) as u16;
        p.write(CHANNEL0, latch as u8, ms(0));
        p.write(CHANNEL0, (latch >> 8) as u8, ms(0));
        let (n, next) = p.poll_irq0(ms(0));
        assert_eq!(n, 0);
        assert!(next.unwrap() <= ms(1) && next.unwrap() > Duration::from_micros(990));
        let (n, _) = p.poll_irq0(ms(10) + Duration::from_micros(5));
        assert_eq!(n, 10);
        assert_eq!(p.poll_irq0(ms(10) + Duration::from_micros(6)).0, 0);
    }

    #[test]
    fn channel2_counts_down_while_gated_and_latches() {
        let mut p = Pit::default();
        p.write(PORT_B, 0x01, ms(0));
        p.write(COMMAND, 0xb0, ms(0)); // ch2, lo/hi, mode 0
        p.write(CHANNEL2, 0xff, ms(0));
        p.write(CHANNEL2, 0xff, ms(0));
        assert_eq!(p.read(PORT_B, ms(1)) & 0x20, 0, "not yet expired");
        p.write(COMMAND, 0x80, ms(10)); // latch ch2
        let lo = p.read(CHANNEL2, ms(20));
        let hi = p.read(CHANNEL2, ms(20));
        let v = u16::from(lo) | (u16::from(hi) << 8);
        let expect = 0xffff - (HZ / 100) as u16;
        assert!(v.abs_diff(expect) <= 2, "{v} vs {expect}");
        assert_ne!(
            p.read(PORT_B, ms(60)) & 0x20,
            0,
            "expired after 65535 ticks"
        );
    }
}
