//! The forwarding database: which port a (VLAN, MAC) was last seen on, and
//! when. Entries age out after [`Fdb::aging`] without traffic; the caller's
//! `now` is the only clock.

use alloc::collections::BTreeMap;

use smoltcp::time::{Duration, Instant};

use super::PortId;
use crate::nic::MacAddress;

/// IEEE 802.1D's default ageing time.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);

/// Default bound on learned addresses; past it, new addresses are flooded
/// to rather than learned, so a guest sending from random MACs cannot
/// exhaust host memory.
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// New entry, or refreshed on the same port.
    Fresh,
    /// The address moved from another port.
    Moved { from: PortId },
    /// The table is full; nothing was recorded.
    TableFull,
}

#[derive(Debug)]
pub struct Fdb {
    entries: BTreeMap<(u16, MacAddress), Entry>,
    aging: Duration,
    max_entries: usize,
}

impl Fdb {
    pub fn new(aging: Duration, max_entries: usize) -> Self {
        Fdb {
            entries: BTreeMap::new(),
            aging,
            max_entries,
        }
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now >= entry.seen + self.aging
    }

    /// Records that `mac` on `vid` sent through `port` at `now`.
    pub fn learn(&mut self, vid: u16, mac: MacAddress, port: PortId, now: Instant) -> Learned {
        let full = self.entries.len() >= self.max_entries;
        match self.entries.get_mut(&(vid, mac)) {
            Some(entry) => {
                let from = entry.port;
                *entry = Entry { port, seen: now };
                if from == port {
                    Learned::Fresh
                } else {
                    Learned::Moved { from }
                }
            }
            None if full => Learned::TableFull,
            None => {
                self.entries.insert((vid, mac), Entry { port, seen: now });
                Learned::Fresh
            }
        }
    }

    /// The port `mac` on `vid` was last seen on, unless that has aged out.
    pub fn lookup(&self, vid: u16, mac: MacAddress, now: Instant) -> Option<PortId> {
        self.entries
            .get(&(vid, mac))
            .filter(|e| !self.expired(e, now))
            .map(|e| e.port)
    }

    /// Drops aged entries; returns how many went and when the next one will.
    pub fn age(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let before = self.entries.len();
        let aging = self.aging;
        self.entries.retain(|_, e| now < e.seen + aging);
        let next = self.entries.values().map(|e| e.seen + aging).min();
        (before - self.entries.len(), next)
    }

    /// Forgets everything learned on `port` (it went down or away).
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.port != port);
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xa]);

    #[test]
    fn learns_moves_and_ages() {
        let mut fdb = Fdb::new(Duration::from_secs(10), 4);
        let t0 = Instant::from_secs(100);
        assert_eq!(fdb.learn(5, A, PortId(1), t0), Learned::Fresh);
        assert_eq!(fdb.lookup(5, A, t0), Some(PortId(1)));
        assert_eq!(fdb.lookup(6, A, t0), None, "per VLAN");
        assert_eq!(
            fdb.learn(5, A, PortId(2), t0 + Duration::from_secs(5)),
            Learned::Moved { from: PortId(1) }
        );
        // Refreshed at t0+5: alive until t0+15.
        assert_eq!(
            fdb.lookup(5, A, t0 + Duration::from_secs(14)),
            Some(PortId(2))
        );
        assert_eq!(fdb.lookup(5, A, t0 + Duration::from_secs(15)), None);
        assert_eq!(
            fdb.age(t0 + Duration::from_secs(14)),
            (0, Some(t0 + Duration::from_secs(15)))
        );
        assert_eq!(fdb.age(t0 + Duration::from_secs(15)), (1, None));
        assert_eq!(fdb.len(), 0);
    }

    #[test]
    fn a_full_table_stops_learning_new_addresses() {
        let mut fdb = Fdb::new(DEFAULT_AGING, 2);
        let now = Instant::ZERO;
        let mac = |i: u8| MacAddress([2, 0, 0, 0, 0, i]);
        assert_eq!(fdb.learn(1, mac(1), PortId(0), now), Learned::Fresh);
        assert_eq!(fdb.learn(1, mac(2), PortId(0), now), Learned::Fresh);
        assert_eq!(fdb.learn(1, mac(3), PortId(0), now), Learned::TableFull);
        // Known addresses still refresh and move.
        assert_eq!(
            fdb.learn(1, mac(2), PortId(1), now),
            Learned::Moved { from: PortId(0) }
        );
        assert_eq!(fdb.flush_port(PortId(0)), 1);
        assert_eq!(fdb.lookup(1, mac(2), now), Some(PortId(1)));
        assert_eq!(fdb.len(), 1);
    }
}
