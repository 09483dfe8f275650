//! Carrier debouncing (`updelay` / `downdelay`): a member's link must stay
//! up (or down) for the configured delay before the bond acts on it, so a
//! flapping cable or a switch port still booting does not move traffic back
//! and forth. The first reading after the bond is built counts at once.

use smoltcp::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) struct CarrierFilter {
    /// What the NIC says now, and since when.
    raw: bool,
    since: Instant,
    /// What the bond acts on.
    effective: bool,
    seen: bool,
}

impl CarrierFilter {
    pub(crate) fn new() -> Self {
        CarrierFilter {
            raw: false,
            since: Instant::ZERO,
            effective: false,
            seen: false,
        }
    }

    pub(crate) fn effective(&self) -> bool {
        self.effective
    }

    /// Feeds the NIC's carrier at `now`; returns the new effective carrier
    /// when it changes.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        raw: bool,
        updelay: Duration,
        downdelay: Duration,
    ) -> Option<bool> {
        if !self.seen {
            self.seen = true;
            self.raw = raw;
            self.since = now;
            self.effective = raw;
            return raw.then_some(true);
        }
        if raw != self.raw {
            self.raw = raw;
            self.since = now;
        }
        if self.raw != self.effective && now >= self.since + delay(self.raw, updelay, downdelay) {
            self.effective = self.raw;
            return Some(self.effective);
        }
        None
    }

    /// When a pending change takes effect.
    pub(crate) fn deadline(&self, updelay: Duration, downdelay: Duration) -> Option<Instant> {
        (self.raw != self.effective).then(|| self.since + delay(self.raw, updelay, downdelay))
    }
}

fn delay(up: bool, updelay: Duration, downdelay: Duration) -> Duration {
    if up { updelay } else { downdelay }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Duration = Duration::from_millis(1000);
    const DOWN: Duration = Duration::from_millis(200);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms as i64)
    }

    #[test]
    fn first_reading_counts_at_once_then_changes_wait_their_delay() {
        let mut c = CarrierFilter::new();
        assert_eq!(c.update(at(0), true, UP, DOWN), Some(true));
        // A 100 ms blip is ignored.
        assert_eq!(c.update(at(10), false, UP, DOWN), None);
        assert_eq!(c.deadline(UP, DOWN), Some(at(210)));
        assert_eq!(c.update(at(110), true, UP, DOWN), None);
        assert_eq!(c.deadline(UP, DOWN), None);
        assert!(c.effective());
        // A real outage counts after the down delay.
        assert_eq!(c.update(at(1000), false, UP, DOWN), None);
        assert_eq!(c.update(at(1199), false, UP, DOWN), None);
        assert_eq!(c.update(at(1200), false, UP, DOWN), Some(false));
        // And the link must be back for the up delay.
        assert_eq!(c.update(at(2000), true, UP, DOWN), None);
        assert_eq!(c.update(at(2999), true, UP, DOWN), None);
        assert_eq!(c.update(at(3000), true, UP, DOWN), Some(true));
    }

    #[test]
    fn zero_delays_follow_the_nic_exactly() {
        let mut c = CarrierFilter::new();
        assert_eq!(c.update(at(0), false, Duration::ZERO, Duration::ZERO), None);
        assert_eq!(
            c.update(at(1), true, Duration::ZERO, Duration::ZERO),
            Some(true)
        );
        assert_eq!(
            c.update(at(2), false, Duration::ZERO, Duration::ZERO),
            Some(false)
        );
    }
}
