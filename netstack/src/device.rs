//! `smoltcp::phy::Device` over any [`Nic`].
//!
//! smoltcp pulls frames through tokens; a [`Nic`] is poll-driven and copies
//! into caller buffers. The adapter owns one receive buffer and one transmit
//! buffer (both sized for a whole frame) and reuses them, so the steady state
//! allocates nothing.
//!
//! Back-pressure: [`NicDevice`] refuses a transmit token while the NIC says
//! its ring is full, so smoltcp keeps the data queued in its sockets and
//! retries on the next poll. A frame the NIC still rejects once built (for
//! example a reply generated while receiving) is dropped and counted; nothing
//! ever waits for the hardware.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::nic::{MacAddress, Nic, NicError};

/// Bytes of Ethernet header in front of the IP MTU (no FCS, no 802.1Q tag).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Default TCP burst, in frames. smoltcp clamps the receive window it
/// advertises to `burst * MSS`; keeping that below a typical RX ring (virtio-net
/// queues hold 256 descriptors) stops a fast peer from overrunning the ring
/// between two polls (smoltcp issue #949).
pub const DEFAULT_MAX_BURST: usize = 32;

/// Consecutive receive errors tolerated in one `receive` call before giving the
/// CPU back; a NIC that fails every frame must not pin the poll loop.
const MAX_RX_ERRORS_PER_CALL: usize = 16;

/// Frame and byte counters of one [`NicDevice`], in the direction they name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames handed to smoltcp.
    pub rx_frames: u64,
    /// Bytes in those frames (Ethernet header included).
    pub rx_bytes: u64,
    /// Frames the NIC failed to deliver (device errors, frames larger than the buffer).
    pub rx_errors: u64,
    /// Frames the NIC accepted for transmission.
    pub tx_frames: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// Frames the NIC rejected for a reason other than a full queue.
    pub tx_errors: u64,
    /// Frames dropped because the NIC's transmit queue was full when they were sent.
    pub tx_dropped: u64,
    /// Times smoltcp asked to transmit while the queue was full and was told to retry.
    pub tx_deferred: u64,
}

#[derive(Debug, Default)]
struct RxCounters {
    frames: u64,
    bytes: u64,
    errors: u64,
}

#[derive(Debug, Default)]
struct TxCounters {
    frames: u64,
    bytes: u64,
    errors: u64,
    dropped: u64,
    deferred: u64,
}

/// A [`Nic`] seen as a smoltcp Ethernet device.
#[derive(Debug)]
pub struct NicDevice<N: Nic> {
    nic: N,
    rx_buffer: Vec<u8>,
    tx_buffer: Vec<u8>,
    rx: RxCounters,
    tx: TxCounters,
    max_burst: usize,
}

impl<N: Nic> NicDevice<N> {
    /// Wraps `nic` with the default burst size.
    pub fn new(nic: N) -> Self {
        Self::with_max_burst(nic, DEFAULT_MAX_BURST)
    }

    /// Wraps `nic`; `max_burst` is how many frames the NIC can absorb between
    /// two polls (at least 1).
    pub fn with_max_burst(nic: N, max_burst: usize) -> Self {
        let frame_len = frame_len(&nic);
        NicDevice {
            nic,
            rx_buffer: vec![0; frame_len],
            tx_buffer: vec![0; frame_len],
            rx: RxCounters::default(),
            tx: TxCounters::default(),
            max_burst: max_burst.max(1),
        }
    }

    /// The NIC's MAC address.
    pub fn mac(&self) -> MacAddress {
        self.nic.mac()
    }

    /// The wrapped NIC.
    pub fn nic(&self) -> &N {
        &self.nic
    }

    /// The wrapped NIC, mutably (drivers expose interrupt acknowledgement and the like).
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }

    /// Gives the NIC back.
    pub fn into_inner(self) -> N {
        self.nic
    }

    /// Counters since creation.
    pub fn stats(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx.frames,
            rx_bytes: self.rx.bytes,
            rx_errors: self.rx.errors,
            tx_frames: self.tx.frames,
            tx_bytes: self.tx.bytes,
            tx_errors: self.tx.errors,
            tx_dropped: self.tx.dropped,
            tx_deferred: self.tx.deferred,
        }
    }

    /// Pulls the next good frame into `rx_buffer`, returning its length.
    fn receive_frame(&mut self) -> Option<usize> {
        // The MTU may change at run time (a bond renegotiating, say); follow it.
        let wanted = frame_len(&self.nic);
        if self.rx_buffer.len() < wanted {
            self.rx_buffer.resize(wanted, 0);
        }
        for _ in 0..MAX_RX_ERRORS_PER_CALL {
            match self.nic.receive(&mut self.rx_buffer) {
                Ok(None) => return None,
                Ok(Some(len)) if len <= self.rx_buffer.len() => {
                    self.rx.frames += 1;
                    self.rx.bytes += len as u64;
                    return Some(len);
                }
                // A driver claiming more bytes than the buffer holds is a
                // driver bug; skip the frame rather than trust the length.
                Ok(Some(_))
                | Err(NicError::BufferTooSmall { .. })
                | Err(NicError::BadLength { .. }) => {
                    self.rx.errors += 1;
                }
                Err(NicError::QueueFull) | Err(NicError::Device) | Err(NicError::LinkDown) => {
                    self.rx.errors += 1;
                    return None;
                }
            }
        }
        None
    }
}

/// Largest frame `nic` carries: its IP MTU plus the Ethernet header.
fn frame_len<N: Nic>(nic: &N) -> usize {
    nic.mtu().saturating_add(ETHERNET_HEADER_LEN)
}

impl<N: Nic> phy::Device for NicDevice<N> {
    type RxToken<'a>
        = NicRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = NicTxToken<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let len = self.receive_frame()?;
        let rx = NicRxToken {
            frame: self.rx_buffer.get(..len)?,
        };
        let tx = NicTxToken {
            nic: &mut self.nic,
            buffer: &mut self.tx_buffer,
            counters: &mut self.tx,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if !self.nic.can_transmit() {
            self.tx.deferred += 1;
            return None;
        }
        Some(NicTxToken {
            nic: &mut self.nic,
            buffer: &mut self.tx_buffer,
            counters: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = frame_len(&self.nic);
        caps.max_burst_size = Some(self.max_burst);
        caps
    }
}

/// One received frame, borrowed from the device's receive buffer.
#[derive(Debug)]
pub struct NicRxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for NicRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Permission to send one frame: smoltcp builds it in the device's transmit
/// buffer, then it goes to [`Nic::transmit`].
#[derive(Debug)]
pub struct NicTxToken<'a, N: Nic> {
    nic: &'a mut N,
    buffer: &'a mut Vec<u8>,
    counters: &'a mut TxCounters,
}

impl<N: Nic> phy::TxToken for NicTxToken<'_, N> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU it was given, but the
        // closure must run whatever `len` is, so grow rather than fail here;
        // the NIC then rejects an oversized frame and it is counted.
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        let frame = &mut self.buffer[..len];
        let result = f(frame);
        match self.nic.transmit(frame) {
            Ok(()) => {
                self.counters.frames += 1;
                self.counters.bytes += len as u64;
            }
            Err(NicError::QueueFull) => self.counters.dropped += 1,
            Err(_) => self.counters.errors += 1,
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use smoltcp::phy::{Device, RxToken, TxToken};

    /// A NIC scripted per test: queued receive results, a transmit log.
    struct ScriptedNic {
        mtu: usize,
        rx: VecDeque<Result<Vec<u8>, NicError>>,
        sent: Vec<Vec<u8>>,
        tx_room: usize,
        tx_error: Option<NicError>,
    }

    impl ScriptedNic {
        fn new() -> Self {
            ScriptedNic {
                mtu: 1500,
                rx: VecDeque::new(),
                sent: Vec::new(),
                tx_room: 8,
                tx_error: None,
            }
        }
    }

    impl Nic for ScriptedNic {
        fn mac(&self) -> MacAddress {
            MacAddress([2, 0, 0, 0, 0, 1])
        }
        fn mtu(&self) -> usize {
            self.mtu
        }
        fn link_up(&self) -> bool {
            true
        }
        fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
            match self.rx.pop_front() {
                None => Ok(None),
                Some(Err(e)) => Err(e),
                Some(Ok(frame)) if frame.len() > buf.len() => Err(NicError::BufferTooSmall {
                    needed: frame.len(),
                }),
                Some(Ok(frame)) => {
                    buf[..frame.len()].copy_from_slice(&frame);
                    Ok(Some(frame.len()))
                }
            }
        }
        fn can_transmit(&mut self) -> bool {
            self.tx_room > 0
        }
        fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
            if let Some(e) = self.tx_error {
                return Err(e);
            }
            if self.tx_room == 0 {
                return Err(NicError::QueueFull);
            }
            if frame.len() > self.mtu + ETHERNET_HEADER_LEN {
                return Err(NicError::BadLength {
                    len: frame.len(),
                    max: self.mtu + ETHERNET_HEADER_LEN,
                });
            }
            self.tx_room -= 1;
            self.sent.push(frame.to_vec());
            Ok(())
        }
    }

    #[test]
    fn capabilities_describe_an_ethernet_frame() {
        let device = NicDevice::with_max_burst(ScriptedNic::new(), 4);
        let caps = device.capabilities();
        assert_eq!(caps.medium, Medium::Ethernet);
        assert_eq!(caps.max_transmission_unit, 1514);
        assert_eq!(caps.max_burst_size, Some(4));
        assert_eq!(
            NicDevice::with_max_burst(ScriptedNic::new(), 0)
                .capabilities()
                .max_burst_size,
            Some(1)
        );
    }

    #[test]
    fn receive_hands_over_the_frame_and_counts_it() {
        let mut nic = ScriptedNic::new();
        nic.rx.push_back(Ok(vec![0xab; 60]));
        let mut device = NicDevice::new(nic);
        let (rx, _tx) = device.receive(Instant::ZERO).expect("a frame is pending");
        assert_eq!(rx.consume(|f| f.to_vec()), vec![0xab; 60]);
        assert!(device.receive(Instant::ZERO).is_none());
        let stats = device.stats();
        assert_eq!(
            (stats.rx_frames, stats.rx_bytes, stats.rx_errors),
            (1, 60, 0)
        );
    }

    #[test]
    fn receive_skips_bad_frames_and_stops_on_device_errors() {
        let mut nic = ScriptedNic::new();
        nic.rx.push_back(Ok(vec![0; 4000])); // larger than the buffer
        nic.rx.push_back(Ok(vec![1; 64]));
        nic.rx.push_back(Err(NicError::Device));
        nic.rx.push_back(Ok(vec![2; 64]));
        let mut device = NicDevice::new(nic);
        let (rx, _) = device
            .receive(Instant::ZERO)
            .expect("the good frame after the bad one");
        assert_eq!(rx.consume(|f| f[0]), 1);
        assert!(
            device.receive(Instant::ZERO).is_none(),
            "a device error ends this call"
        );
        let (rx, _) = device
            .receive(Instant::ZERO)
            .expect("the next call carries on");
        assert_eq!(rx.consume(|f| f[0]), 2);
        assert_eq!(device.stats().rx_errors, 2);
        assert_eq!(device.stats().rx_frames, 2);
    }

    #[test]
    fn a_nic_that_always_fails_does_not_spin() {
        let mut nic = ScriptedNic::new();
        for _ in 0..100 {
            nic.rx
                .push_back(Err(NicError::BufferTooSmall { needed: 9000 }));
        }
        let mut device = NicDevice::new(nic);
        assert!(device.receive(Instant::ZERO).is_none());
        assert_eq!(device.stats().rx_errors, MAX_RX_ERRORS_PER_CALL as u64);
    }

    #[test]
    fn transmit_builds_the_frame_and_sends_it() {
        let mut device = NicDevice::new(ScriptedNic::new());
        let token = device.transmit(Instant::ZERO).expect("queue has room");
        token.consume(42, |buf| buf.fill(7));
        assert_eq!(device.nic().sent, vec![vec![7; 42]]);
        let stats = device.stats();
        assert_eq!((stats.tx_frames, stats.tx_bytes), (1, 42));
    }

    #[test]
    fn a_full_queue_defers_then_drops_without_blocking() {
        let mut nic = ScriptedNic::new();
        nic.tx_room = 0;
        nic.rx.push_back(Ok(vec![0; 60]));
        let mut device = NicDevice::new(nic);
        assert!(device.transmit(Instant::ZERO).is_none());
        assert_eq!(device.stats().tx_deferred, 1);
        // A reply token comes with every received frame; it drops when the queue is full.
        let (_, tx) = device.receive(Instant::ZERO).expect("frame");
        tx.consume(60, |_| ());
        assert_eq!(device.stats().tx_dropped, 1);
        assert!(device.nic().sent.is_empty());
    }

    #[test]
    fn oversized_and_failed_frames_are_counted_as_errors() {
        let mut device = NicDevice::new(ScriptedNic::new());
        let token = device.transmit(Instant::ZERO).expect("room");
        token.consume(3000, |buf| buf.fill(1));
        assert_eq!(device.stats().tx_errors, 1);
        device.nic_mut().tx_error = Some(NicError::Device);
        device
            .transmit(Instant::ZERO)
            .expect("room")
            .consume(60, |_| ());
        assert_eq!(device.stats().tx_errors, 2);
        assert_eq!(device.stats().tx_frames, 0);
    }

    #[test]
    fn receive_buffer_follows_a_larger_mtu() {
        let mut device = NicDevice::new(ScriptedNic::new());
        device.nic_mut().mtu = 9000;
        device.nic_mut().rx.push_back(Ok(vec![5; 9014]));
        let (rx, _) = device.receive(Instant::ZERO).expect("jumbo frame");
        assert_eq!(rx.consume(|f| f.len()), 9014);
    }
}
