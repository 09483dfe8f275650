//! Test doubles for hosted tests: an in-memory Ethernet wire joining two
//! [`Nic`]s back to back, and a simulated clock.
//!
//! Built for this crate's tests and, with the `testing` feature, for other
//! crates' tests. Single-threaded by design (`Rc`), like the poll loops it
//! drives.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use smoltcp::time::{Duration, Instant};

use crate::nic::{MacAddress, Nic, NicError};

/// One of the two ends of a [`Wire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    A,
    B,
}

impl End {
    fn index(self) -> usize {
        match self {
            End::A => 0,
            End::B => 1,
        }
    }

    fn other(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }
}

/// Frames sent from `from` that the wire carried, dropped or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames delivered into the other end's receive queue.
    pub carried: u64,
    /// Frames lost on purpose (`drop_every`) or because the link was down.
    pub lost: u64,
    /// Transmit attempts refused because the queue was full.
    pub refused: u64,
}

#[derive(Debug)]
struct WireState {
    mtu: usize,
    /// Frames in flight towards each end, indexed by the receiving end.
    queues: [VecDeque<Vec<u8>>; 2],
    queue_limit: usize,
    link_up: bool,
    /// Lose every n-th frame sent (counting both directions).
    drop_every: Option<u64>,
    sent: u64,
    stats: [WireStats; 2],
    capture: Option<Vec<(End, Vec<u8>)>>,
}

/// An Ethernet segment with exactly two stations. Clone it to keep a control
/// handle after handing the NICs away.
#[derive(Debug, Clone)]
pub struct Wire {
    state: Rc<RefCell<WireState>>,
}

impl Default for Wire {
    fn default() -> Self {
        Self::new(1500, 64)
    }
}

impl Wire {
    /// A wire carrying frames up to `mtu` + 14 bytes, each direction holding at
    /// most `queue_limit` frames in flight.
    pub fn new(mtu: usize, queue_limit: usize) -> Self {
        Wire {
            state: Rc::new(RefCell::new(WireState {
                mtu,
                queues: [VecDeque::new(), VecDeque::new()],
                queue_limit,
                link_up: true,
                drop_every: None,
                sent: 0,
                stats: [WireStats::default(); 2],
                capture: None,
            })),
        }
    }

    /// The NIC at `end`, with address `mac`.
    pub fn nic(&self, end: End, mac: MacAddress) -> WireNic {
        WireNic {
            wire: self.clone(),
            end,
            mac,
        }
    }

    /// Both NICs at once: `A` gets `mac_a`, `B` gets `mac_b`.
    pub fn pair(&self, mac_a: MacAddress, mac_b: MacAddress) -> (WireNic, WireNic) {
        (self.nic(End::A, mac_a), self.nic(End::B, mac_b))
    }

    /// Changes how many frames each direction holds.
    pub fn set_queue_limit(&self, limit: usize) {
        self.state.borrow_mut().queue_limit = limit;
    }

    /// Loses every `n`-th frame (None: lose nothing).
    pub fn set_drop_every(&self, n: Option<u64>) {
        self.state.borrow_mut().drop_every = n.filter(|&n| n > 0);
    }

    /// Pulls the cable (false) or plugs it back in; frames sent while it is
    /// out are lost, frames in flight stay queued.
    pub fn set_link_up(&self, up: bool) {
        self.state.borrow_mut().link_up = up;
    }

    /// Starts keeping a copy of every carried frame.
    pub fn start_capture(&self) {
        self.state.borrow_mut().capture = Some(Vec::new());
    }

    /// The frames carried since [`Wire::start_capture`] or the last call, with the end that sent each.
    pub fn take_captured(&self) -> Vec<(End, Vec<u8>)> {
        self.state
            .borrow_mut()
            .capture
            .as_mut()
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// Frames waiting to be received at `end`.
    pub fn pending(&self, end: End) -> usize {
        self.state.borrow().queues[end.index()].len()
    }

    /// Counters for frames sent from `end`.
    pub fn stats(&self, from: End) -> WireStats {
        self.state.borrow().stats[from.index()]
    }
}

/// One end of a [`Wire`], as a [`Nic`].
#[derive(Debug)]
pub struct WireNic {
    wire: Wire,
    end: End,
    mac: MacAddress,
}

impl WireNic {
    /// The wire this NIC is plugged into.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }
}

impl Nic for WireNic {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.wire.state.borrow().mtu
    }

    fn link_up(&self) -> bool {
        self.wire.state.borrow().link_up
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        let mut state = self.wire.state.borrow_mut();
        let queue = &mut state.queues[self.end.index()];
        let Some(frame) = queue.pop_front() else {
            return Ok(None);
        };
        let Some(dst) = buf.get_mut(..frame.len()) else {
            return Err(NicError::BufferTooSmall {
                needed: frame.len(),
            });
        };
        dst.copy_from_slice(&frame);
        Ok(Some(frame.len()))
    }

    fn can_transmit(&mut self) -> bool {
        let state = self.wire.state.borrow();
        state.queues[self.end.other().index()].len() < state.queue_limit
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        let mut state = self.wire.state.borrow_mut();
        let max = state.mtu + 14;
        if frame.len() < 14 || frame.len() > max {
            return Err(NicError::BadLength {
                len: frame.len(),
                max,
            });
        }
        let from = self.end.index();
        let to = self.end.other().index();
        if state.queues[to].len() >= state.queue_limit {
            state.stats[from].refused += 1;
            return Err(NicError::QueueFull);
        }
        state.sent += 1;
        let unlucky = state
            .drop_every
            .is_some_and(|n| state.sent.is_multiple_of(n));
        if !state.link_up || unlucky {
            state.stats[from].lost += 1;
            return Ok(());
        }
        state.stats[from].carried += 1;
        state.queues[to].push_back(frame.to_vec());
        if let Some(capture) = state.capture.as_mut() {
            capture.push((self.end, frame.to_vec()));
        }
        Ok(())
    }
}

/// A clock tests move by hand. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    micros: Rc<Cell<i64>>,
}

impl SimClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current simulated time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.micros.get())
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.micros
            .set(self.micros.get().saturating_add(by.total_micros() as i64));
    }

    /// Moves time forward to `to`, if it is later than now.
    pub fn advance_to(&self, to: Instant) {
        if to.total_micros() > self.micros.get() {
            self.micros.set(to.total_micros());
        }
    }
}

/// Calls `step(now)` every `tick` of simulated time until it returns true or
/// `limit` of simulated time has passed; returns whether it succeeded.
pub fn run_until(
    clock: &SimClock,
    tick: Duration,
    limit: Duration,
    mut step: impl FnMut(Instant) -> bool,
) -> bool {
    let end = clock.now() + limit;
    while clock.now() <= end {
        if step(clock.now()) {
            return true;
        }
        clock.advance(tick);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn frames_cross_in_order_and_respect_the_queue_limit() {
        let wire = Wire::new(1500, 2);
        let (mut a, mut b) = wire.pair(MAC_A, MAC_B);
        assert!(a.can_transmit());
        a.transmit(&[1; 60]).unwrap();
        a.transmit(&[2; 60]).unwrap();
        assert!(!a.can_transmit());
        assert_eq!(a.transmit(&[3; 60]), Err(NicError::QueueFull));
        assert_eq!(wire.stats(End::A).refused, 1);
        let mut buf = [0u8; 1514];
        assert_eq!(b.receive(&mut buf).unwrap(), Some(60));
        assert_eq!(buf[0], 1);
        assert_eq!(b.receive(&mut buf).unwrap(), Some(60));
        assert_eq!(buf[0], 2);
        assert_eq!(b.receive(&mut buf).unwrap(), None);
        assert_eq!(a.receive(&mut buf).unwrap(), None);
    }

    #[test]
    fn drop_knob_and_link_loss() {
        let wire = Wire::default();
        let (mut a, _b) = wire.pair(MAC_A, MAC_B);
        wire.set_drop_every(Some(2));
        for _ in 0..4 {
            a.transmit(&[0; 60]).unwrap();
        }
        assert_eq!(wire.pending(End::B), 2);
        wire.set_drop_every(None);
        wire.set_link_up(false);
        a.transmit(&[0; 60]).unwrap();
        assert_eq!(wire.pending(End::B), 2);
        assert_eq!(wire.stats(End::A).lost, 3);
        assert_eq!(
            a.transmit(&[0; 9000]),
            Err(NicError::BadLength {
                len: 9000,
                max: 1514
            })
        );
    }

    #[test]
    fn clock_moves_only_forward_and_is_shared() {
        let clock = SimClock::new();
        let other = clock.clone();
        clock.advance(Duration::from_millis(5));
        assert_eq!(other.now(), Instant::from_millis(5));
        other.advance_to(Instant::from_millis(3));
        assert_eq!(clock.now(), Instant::from_millis(5));
        assert!(run_until(
            &clock,
            Duration::from_millis(1),
            Duration::from_millis(10),
            |now| now >= Instant::from_millis(9)
        ));
        assert!(!run_until(
            &clock,
            Duration::from_millis(1),
            Duration::from_millis(2),
            |_| false
        ));
    }
}
