//! The host's side of a host port: a [`Nic`] whose wire is two bounded frame
//! queues to and from the switch. A [`crate::HostInterface`] over it is the
//! thin smoltcp device wrapper per host network: smoltcp sees a plain
//! Ethernet NIC with the network's MTU, never a VLAN tag.
//!
//! Frame buffers are recycled, so the steady state does not allocate.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::nic::{MacAddress, Nic, NicError};
use crate::wire::ETHERNET_HEADER_LEN;

/// Frames each direction holds before refusing more (a TCP window of
/// jumbo frames fits).
pub const HOST_PORT_QUEUE: usize = 256;

/// Counters of one host port's queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostPortStats {
    /// Frames the switch delivered while the receive queue was full.
    pub rx_queue_full: u64,
    /// Frames the interface sent while the transmit queue was full.
    pub tx_queue_full: u64,
}

#[derive(Debug)]
pub struct HostPort {
    mac: MacAddress,
    mtu: usize,
    link_up: bool,
    /// From the switch to the interface.
    rx: VecDeque<Vec<u8>>,
    /// From the interface to the switch.
    tx: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    stats: HostPortStats,
}

impl HostPort {
    /// A port for an interface with `mac` on a network of `mtu`.
    pub fn new(mac: MacAddress, mtu: usize) -> Self {
        HostPort {
            mac,
            mtu,
            link_up: true,
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            spare: Vec::new(),
            stats: HostPortStats::default(),
        }
    }

    /// Carrier as the interface sees it: the uplink's.
    pub fn set_link_up(&mut self, up: bool) {
        self.link_up = up;
    }

    pub fn stats(&self) -> HostPortStats {
        self.stats
    }

    fn buffer(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        buf
    }

    /// A frame from the switch for the interface; dropped and counted when
    /// the interface has not kept up.
    pub fn deliver(&mut self, frame: &[u8]) {
        if self.rx.len() >= HOST_PORT_QUEUE {
            self.stats.rx_queue_full += 1;
            return;
        }
        let buf = self.buffer(frame);
        self.rx.push_back(buf);
    }

    /// Hands the oldest frame the interface sent to `f` (the switch).
    pub fn take_sent<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let buf = self.tx.pop_front()?;
        let result = f(&buf);
        self.spare.push(buf);
        Some(result)
    }

    /// Whether the interface has frames waiting for the switch.
    pub fn has_sent(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Whether frames from the switch wait for the interface.
    pub fn has_received(&self) -> bool {
        !self.rx.is_empty()
    }
}

impl Nic for HostPort {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn link_up(&self) -> bool {
        self.link_up
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        let Some(frame) = self.rx.pop_front() else {
            return Ok(None);
        };
        let result = match buf.get_mut(..frame.len()) {
            Some(dst) => {
                dst.copy_from_slice(&frame);
                Ok(Some(frame.len()))
            }
            None => Err(NicError::BufferTooSmall {
                needed: frame.len(),
            }),
        };
        self.spare.push(frame);
        result
    }

    fn can_transmit(&mut self) -> bool {
        self.tx.len() < HOST_PORT_QUEUE
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        let max = self.mtu + ETHERNET_HEADER_LEN;
        if frame.len() < ETHERNET_HEADER_LEN || frame.len() > max {
            return Err(NicError::BadLength {
                len: frame.len(),
                max,
            });
        }
        if self.tx.len() >= HOST_PORT_QUEUE {
            self.stats.tx_queue_full += 1;
            return Err(NicError::QueueFull);
        }
        let buf = self.buffer(frame);
        self.tx.push_back(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pass_both_ways_and_queues_are_bounded() {
        let mut port = HostPort::new(MacAddress([2, 0, 0, 0, 0, 1]), 1500);
        port.deliver(&[1; 60]);
        let mut buf = [0u8; 1514];
        assert_eq!(port.receive(&mut buf), Ok(Some(60)));
        assert_eq!(buf[..60], [1; 60]);
        assert_eq!(port.receive(&mut buf), Ok(None));

        port.transmit(&[2; 1514]).unwrap();
        assert_eq!(
            port.transmit(&[2; 1515]),
            Err(NicError::BadLength {
                len: 1515,
                max: 1514
            })
        );
        assert!(port.transmit(&[2; 13]).is_err());
        assert_eq!(port.take_sent(|f| f.len()), Some(1514));
        assert_eq!(port.take_sent(|f| f.len()), None);

        for _ in 0..HOST_PORT_QUEUE + 3 {
            port.deliver(&[3; 60]);
        }
        assert_eq!(port.stats().rx_queue_full, 3);
        for _ in 0..HOST_PORT_QUEUE {
            port.transmit(&[4; 60]).unwrap();
        }
        assert!(!port.can_transmit());
        assert_eq!(port.transmit(&[4; 60]), Err(NicError::QueueFull));
        assert_eq!(port.stats().tx_queue_full, 1);
        // A receive buffer too small for the frame: it is dropped, not kept.
        assert_eq!(
            port.receive(&mut [0u8; 10]),
            Err(NicError::BufferTooSmall { needed: 60 })
        );
        port.set_link_up(false);
        assert!(!port.link_up());
    }
}
