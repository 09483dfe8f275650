//! The wire between a guest's virtio-net device and its VIF port on the
//! switch: two bounded frame queues shared between CPUs (the VM's device
//! task runs on an application processor, the switch in the host's poll
//! loop on the boot CPU), each side with a [`Wake`] the other calls when it
//! puts a frame into an empty queue, so neither side polls while idle.
//!
//! Full queues drop the new frame and count it: a guest that floods its NIC
//! costs at most [`VIF_QUEUE`] frames of memory per direction.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

/// Frames each direction holds before dropping.
pub const VIF_QUEUE: usize = 256;

/// Gets one side of a [`VifLink`] to look at its queue (wakes its task or CPU).
pub trait Wake: Send + Sync + fmt::Debug {
    fn wake(&self);
}

/// Counters of one [`VifLink`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifLinkStats {
    /// Frames the guest sent that the switch side took.
    pub to_host: u64,
    /// Frames the switch sent that the guest side took.
    pub to_guest: u64,
    /// Frames the guest sent while the queue to the switch was full.
    pub to_host_dropped: u64,
    /// Frames for the guest while its queue was full.
    pub to_guest_dropped: u64,
}

#[derive(Default)]
struct Queue {
    frames: Mutex<VecDeque<Vec<u8>>>,
    passed: AtomicU64,
    dropped: AtomicU64,
    /// Who to wake when a frame goes into the empty queue.
    reader: Mutex<Option<Arc<dyn Wake>>>,
}

impl Queue {
    fn push(&self, frame: &[u8]) -> bool {
        let was_empty = {
            let mut q = self.frames.lock();
            if q.len() >= VIF_QUEUE {
                drop(q);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let was_empty = q.is_empty();
            q.push_back(frame.to_vec());
            was_empty
        };
        // The reader drains the queue until it finds it empty, so a frame
        // into a non-empty queue will be seen without a wake.
        if was_empty && let Some(w) = self.reader.lock().as_ref() {
            w.wake();
        }
        true
    }

    fn pop(&self) -> Option<Vec<u8>> {
        let frame = self.frames.lock().pop_front();
        if frame.is_some() {
            self.passed.fetch_add(1, Ordering::Relaxed);
        }
        frame
    }

    fn is_empty(&self) -> bool {
        self.frames.lock().is_empty()
    }
}

#[derive(Default)]
struct Shared {
    to_host: Queue,
    to_guest: Queue,
}

/// Both ends of one VIF's wire; clones share it. The guest side calls the
/// `guest_*` methods, the switch side the `host_*` ones.
#[derive(Clone, Default)]
pub struct VifLink(Arc<Shared>);

impl fmt::Debug for VifLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VifLink").field(&self.stats()).finish()
    }
}

impl VifLink {
    pub fn new() -> VifLink {
        VifLink::default()
    }

    /// Woken when a frame for the guest arrives in its empty queue.
    pub fn set_guest_waker(&self, w: Arc<dyn Wake>) {
        *self.0.to_guest.reader.lock() = Some(w);
    }

    /// Woken when the guest sends into the empty queue to the switch.
    pub fn set_host_waker(&self, w: Arc<dyn Wake>) {
        *self.0.to_host.reader.lock() = Some(w);
    }

    /// A frame from the guest; `false` (counted) if the switch side is behind.
    pub fn guest_send(&self, frame: &[u8]) -> bool {
        self.0.to_host.push(frame)
    }

    pub fn guest_receive(&self) -> Option<Vec<u8>> {
        self.0.to_guest.pop()
    }

    pub fn guest_has_frames(&self) -> bool {
        !self.0.to_guest.is_empty()
    }

    /// A frame from the switch; `false` (counted) if the guest is behind.
    pub fn host_send(&self, frame: &[u8]) -> bool {
        self.0.to_guest.push(frame)
    }

    pub fn host_receive(&self) -> Option<Vec<u8>> {
        self.0.to_host.pop()
    }

    pub fn host_has_frames(&self) -> bool {
        !self.0.to_host.is_empty()
    }

    pub fn stats(&self) -> VifLinkStats {
        let s = &self.0;
        VifLinkStats {
            to_host: s.to_host.passed.load(Ordering::Relaxed),
            to_guest: s.to_guest.passed.load(Ordering::Relaxed),
            to_host_dropped: s.to_host.dropped.load(Ordering::Relaxed),
            to_guest_dropped: s.to_guest.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    #[derive(Debug, Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn frames_cross_bounded_and_wake_the_reader_once_per_batch() {
        let link = VifLink::new();
        let host = Arc::new(Count::default());
        let guest = Arc::new(Count::default());
        link.set_host_waker(host.clone());
        link.set_guest_waker(guest.clone());
        assert!(link.guest_send(b"one"));
        assert!(link.guest_send(b"two"));
        assert_eq!(host.0.load(Ordering::SeqCst), 1, "one wake for a batch");
        assert_eq!(guest.0.load(Ordering::SeqCst), 0);
        assert!(link.host_has_frames());
        assert_eq!(link.host_receive().as_deref(), Some(&b"one"[..]));
        assert_eq!(link.host_receive().as_deref(), Some(&b"two"[..]));
        assert_eq!(link.host_receive(), None);
        assert!(link.guest_send(b"three"));
        assert_eq!(host.0.load(Ordering::SeqCst), 2, "empty again: woken again");

        for i in 0..VIF_QUEUE + 10 {
            link.host_send(&[i as u8]);
        }
        assert_eq!(guest.0.load(Ordering::SeqCst), 1);
        let mut got = 0;
        while let Some(f) = link.guest_receive() {
            assert_eq!(f, [got as u8]);
            got += 1;
        }
        assert_eq!(got, VIF_QUEUE);
        let s = link.stats();
        assert_eq!(
            (s.to_host, s.to_guest, s.to_host_dropped, s.to_guest_dropped),
            (2, VIF_QUEUE as u64, 0, 10)
        );
    }
}
