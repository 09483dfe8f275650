//! A disk reached through a queue: the device side (a virtio-blk device
//! task on some CPU) submits requests by sector and collects completions;
//! the serving side (the appliance's poll loop, which owns the iSCSI
//! sessions) takes requests, runs them, and posts completions. Both hold
//! the same [`DiskChannel`] (an `Arc`); its queues sit behind a spin lock
//! held only to push or pop, never across I/O.
//!
//! The queue is bounded: [`DiskChannel::submit`] refuses a request beyond
//! [`DiskChannel::depth`] in flight (the device keeps it in its virtqueue
//! and tries again after a completion). Completions carry the request's
//! tag, in any order.
//!
//! Each side may register a [`Notify`]: the serving side's is called when
//! a request is queued (the kernel wakes the CPU that runs the poll loop),
//! the device side's when a completion is posted (the kernel wakes the VM's
//! device task), so neither side has to poll the other.
//!
//! [`ChannelDevice`] is a blocking [`BlockDevice`] over a channel for code
//! that wants one (hosted tests; the kernel's virtio-blk device submits
//! many requests itself): it submits one request and waits through a
//! [`Wait`] the caller provides.
//! The waiting must never spin on the CPU that runs the poll loop (that
//! loop is what completes the request); the kernel's device task runs on
//! another CPU and its `Wait` yields or halts until the next interrupt.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::block::{BlockDevice, BlockError, check_range, check_request};

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// `blocks` blocks from `lba`.
    Read { lba: u64, blocks: u32 },
    /// `data` (whole blocks) at `lba`.
    Write { lba: u64, data: Vec<u8> },
    /// Every completed write made durable.
    Flush,
    /// `blocks` blocks from `lba` hold nothing the guest needs: the disk
    /// may reclaim them. Only for a channel made [`DiskChannel::with_discard`].
    Discard { lba: u64, blocks: u64 },
}

/// A request and the tag its completion carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRequest {
    pub tag: u64,
    pub op: DiskOp,
}

/// A request's outcome: the data of a read (empty for a write or flush).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCompletion {
    pub tag: u64,
    pub result: Result<Vec<u8>, BlockError>,
}

/// The disk's shape, fixed at attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskGeometry {
    pub block_size: u32,
    pub num_blocks: u64,
    pub read_only: bool,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// [`DiskChannel::depth`] requests are in flight; try after a completion.
    Full(DiskRequest),
    /// The disk was detached.
    Closed(DiskRequest),
    /// The request is malformed (out of range, not whole blocks, a write
    /// to a read-only disk): answered at once by the caller.
    Invalid(DiskRequest, BlockError),
}

#[derive(Debug, Default)]
struct Queues {
    requests: VecDeque<DiskRequest>,
    completions: VecDeque<DiskCompletion>,
    /// Submitted and not yet collected by the device side.
    in_flight: usize,
    closed: bool,
}

/// The shared queue pair of one attached disk.
#[derive(Debug)]
pub struct DiskChannel {
    geometry: DiskGeometry,
    depth: usize,
    /// Discards served, aligned to this many blocks; `None`: not served.
    discard_alignment: Option<u32>,
    queues: Mutex<Queues>,
    next_tag: AtomicU64,
    on_request: Notifier,
    on_completion: Notifier,
}

/// Told that the other side of a channel has work for it (called without
/// the channel's lock held; it must be quick: wake someone, nothing more).
pub trait Notify: Send + Sync {
    fn notify(&self);
}

#[derive(Default)]
struct Notifier(Mutex<Option<Arc<dyn Notify>>>);

impl Notifier {
    fn set(&self, n: Option<Arc<dyn Notify>>) {
        *self.0.lock() = n;
    }

    fn notify(&self) {
        let n = self.0.lock().clone();
        if let Some(n) = n {
            n.notify();
        }
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.lock().is_some() {
            "Notifier(set)"
        } else {
            "Notifier(none)"
        })
    }
}

impl DiskChannel {
    /// A channel for a disk of `geometry` with at most `depth` (at least 1)
    /// requests in flight.
    pub fn new(geometry: DiskGeometry, depth: usize) -> Self {
        DiskChannel {
            geometry,
            depth: depth.max(1),
            discard_alignment: None,
            queues: Mutex::new(Queues::default()),
            next_tag: AtomicU64::new(1),
            on_request: Notifier::default(),
            on_completion: Notifier::default(),
        }
    }

    /// The serving side answers [`DiskOp::Discard`]; a discard should start
    /// and end on a multiple of `alignment_blocks` (the disk reclaims whole
    /// clusters; at least 1).
    pub fn with_discard(mut self, alignment_blocks: u32) -> Self {
        self.discard_alignment = Some(alignment_blocks.max(1));
        self
    }

    /// `Some(alignment in blocks)` when discards are served.
    pub fn discard_alignment(&self) -> Option<u32> {
        self.discard_alignment
    }

    /// A tag no other request on this channel had (device sides that come
    /// and go, a guest's device reset, never see each other's completions
    /// as theirs).
    pub fn new_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }

    /// Serving side: `n` is called after each request is queued.
    pub fn set_request_notify(&self, n: Option<Arc<dyn Notify>>) {
        self.on_request.set(n);
    }

    /// Device side: `n` is called after each completion is posted.
    pub fn set_completion_notify(&self, n: Option<Arc<dyn Notify>>) {
        self.on_completion.set(n);
    }

    pub fn geometry(&self) -> DiskGeometry {
        self.geometry
    }

    /// Requests in flight at most.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn check(&self, op: &DiskOp) -> Result<(), BlockError> {
        let g = self.geometry;
        let range = |lba: u64, bytes: u64| {
            let bs = u64::from(g.block_size.max(1));
            if !bytes.is_multiple_of(bs) || bytes == 0 {
                return Err(BlockError::Misaligned {
                    len: usize::try_from(bytes).unwrap_or(usize::MAX),
                    block_size: g.block_size,
                });
            }
            check_range(lba, bytes / bs, g.num_blocks)
        };
        match op {
            DiskOp::Read { lba, blocks } => {
                range(*lba, u64::from(*blocks) * u64::from(g.block_size))
            }
            DiskOp::Write { lba, data } => {
                if g.read_only {
                    return Err(BlockError::ReadOnly);
                }
                range(*lba, data.len() as u64)
            }
            DiskOp::Flush => Ok(()),
            DiskOp::Discard { lba, blocks } => {
                if self.discard_alignment.is_none() {
                    return Err(BlockError::Unsupported);
                }
                if g.read_only {
                    return Err(BlockError::ReadOnly);
                }
                let out_of_range = BlockError::OutOfRange {
                    lba: *lba,
                    blocks: *blocks,
                    capacity: g.num_blocks,
                };
                let bytes = blocks
                    .checked_mul(u64::from(g.block_size))
                    .ok_or(out_of_range)?;
                range(*lba, bytes)
            }
        }
    }

    /// Device side: queues `request`.
    pub fn submit(&self, request: DiskRequest) -> Result<(), SubmitError> {
        if let Err(e) = self.check(&request.op) {
            return Err(SubmitError::Invalid(request, e));
        }
        let mut q = self.queues.lock();
        if q.closed {
            return Err(SubmitError::Closed(request));
        }
        if q.in_flight >= self.depth {
            return Err(SubmitError::Full(request));
        }
        q.in_flight += 1;
        q.requests.push_back(request);
        drop(q);
        self.on_request.notify();
        Ok(())
    }

    /// Device side: the next completion, if one arrived.
    pub fn completion(&self) -> Option<DiskCompletion> {
        let mut q = self.queues.lock();
        let c = q.completions.pop_front()?;
        q.in_flight = q.in_flight.saturating_sub(1);
        Some(c)
    }

    /// Device side: whether a completion waits to be collected.
    pub fn has_completions(&self) -> bool {
        !self.queues.lock().completions.is_empty()
    }

    /// Device side: requests submitted whose completion was not collected.
    pub fn in_flight(&self) -> usize {
        self.queues.lock().in_flight
    }

    /// Serving side: takes up to `max` queued requests, oldest first.
    pub fn take_requests(&self, max: usize) -> Vec<DiskRequest> {
        let mut q = self.queues.lock();
        let n = q.requests.len().min(max);
        q.requests.drain(..n).collect()
    }

    /// Serving side: whether requests wait.
    pub fn has_requests(&self) -> bool {
        !self.queues.lock().requests.is_empty()
    }

    /// Serving side: posts a completion.
    pub fn complete(&self, completion: DiskCompletion) {
        self.queues.lock().completions.push_back(completion);
        self.on_completion.notify();
    }

    /// Detaches the disk: later submits are refused, and requests still
    /// queued complete with an I/O error.
    pub fn close(&self) {
        let mut q = self.queues.lock();
        q.closed = true;
        while let Some(r) = q.requests.pop_front() {
            q.completions.push_back(DiskCompletion {
                tag: r.tag,
                result: Err(BlockError::Io),
            });
        }
        drop(q);
        self.on_completion.notify();
    }

    pub fn is_closed(&self) -> bool {
        self.queues.lock().closed
    }
}

/// How a blocking caller waits for a completion. It must let the serving
/// side run: yield to another task, halt until an interrupt, or (hosted)
/// sleep; never spin on the CPU that serves the channel.
pub trait Wait {
    fn wait(&mut self);
}

/// A blocking [`BlockDevice`] over a [`DiskChannel`]: one request at a
/// time, each waited for with `W`.
#[derive(Debug)]
pub struct ChannelDevice<C, W> {
    channel: C,
    wait: W,
}

impl<C: core::ops::Deref<Target = DiskChannel>, W: Wait> ChannelDevice<C, W> {
    pub fn new(channel: C, wait: W) -> Self {
        ChannelDevice { channel, wait }
    }

    fn run(&mut self, op: DiskOp) -> Result<Vec<u8>, BlockError> {
        let tag = self.channel.new_tag();
        let mut request = DiskRequest { tag, op };
        loop {
            match self.channel.submit(request) {
                Ok(()) => break,
                Err(SubmitError::Full(r)) => {
                    request = r;
                    self.wait.wait();
                }
                Err(SubmitError::Closed(_)) => return Err(BlockError::Io),
                Err(SubmitError::Invalid(_, e)) => return Err(e),
            }
        }
        loop {
            if let Some(c) = self.channel.completion() {
                if c.tag == tag {
                    return c.result;
                }
                // Another user's completion: not ours to take. A
                // ChannelDevice must be the channel's only device side.
                log::warn!("disk channel: completion {} is not ours ({tag})", c.tag);
            }
            self.wait.wait();
        }
    }
}

impl<C: core::ops::Deref<Target = DiskChannel>, W: Wait> BlockDevice for ChannelDevice<C, W> {
    fn block_size(&self) -> u32 {
        self.channel.geometry().block_size
    }

    fn num_blocks(&self) -> u64 {
        self.channel.geometry().num_blocks
    }

    fn read_only(&self) -> bool {
        self.channel.geometry().read_only
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let count = buf.len() / self.block_size().max(1) as usize;
        let blocks = u32::try_from(count).map_err(|_| BlockError::OutOfRange {
            lba,
            blocks: count as u64,
            capacity: self.num_blocks(),
        })?;
        let data = self.run(DiskOp::Read { lba, blocks })?;
        if data.len() != buf.len() {
            return Err(BlockError::Io);
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        self.run(DiskOp::Write {
            lba,
            data: buf.to_vec(),
        })
        .map(|_| ())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.run(DiskOp::Flush).map(|_| ())
    }

    fn supports_discard(&self) -> bool {
        self.channel.discard_alignment().is_some()
    }

    fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.run(DiskOp::Discard { lba, blocks }).map(|_| ())
    }
}

/// Serves every queued request of `channel` from `dev` at once (a RAM or
/// file disk, and the reference the tests compare against).
pub fn serve_from<D: BlockDevice + ?Sized>(channel: &DiskChannel, dev: &mut D) -> usize {
    let requests = channel.take_requests(usize::MAX);
    let n = requests.len();
    for r in requests {
        let result = r.op.serve_on(dev);
        channel.complete(DiskCompletion { tag: r.tag, result });
    }
    n
}

impl DiskOp {
    /// Does this on `dev`: a completion's result (a read's data, empty
    /// for the others).
    pub fn serve_on<D: BlockDevice + ?Sized>(self, dev: &mut D) -> Result<Vec<u8>, BlockError> {
        match self {
            DiskOp::Read { lba, blocks } => {
                let mut buf = vec![0u8; blocks as usize * dev.block_size() as usize];
                dev.read_blocks(lba, &mut buf).map(|()| buf)
            }
            DiskOp::Write { lba, data } => dev.write_blocks(lba, &data).map(|()| Vec::new()),
            DiskOp::Flush => dev.flush().map(|()| Vec::new()),
            DiskOp::Discard { lba, blocks } => dev.discard(lba, blocks).map(|()| Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;

    use super::*;
    use crate::mem::MemBlockDevice;

    fn geometry() -> DiskGeometry {
        DiskGeometry {
            block_size: 512,
            num_blocks: 64,
            read_only: false,
        }
    }

    #[test]
    fn requests_queue_to_the_depth_and_complete_by_tag() {
        let ch = DiskChannel::new(geometry(), 2);
        let read = |tag| DiskRequest {
            tag,
            op: DiskOp::Read { lba: 0, blocks: 1 },
        };
        ch.submit(read(1)).unwrap();
        ch.submit(read(2)).unwrap();
        assert!(matches!(ch.submit(read(3)), Err(SubmitError::Full(r)) if r.tag == 3));
        let taken = ch.take_requests(8);
        assert_eq!(taken.len(), 2);
        // Still in flight until the device collects the completion.
        assert!(matches!(ch.submit(read(3)), Err(SubmitError::Full(_))));
        ch.complete(DiskCompletion {
            tag: 2,
            result: Ok(vec![0; 512]),
        });
        assert_eq!(ch.completion().map(|c| c.tag), Some(2));
        ch.submit(read(3)).unwrap();
        assert_eq!(ch.in_flight(), 2);
    }

    #[test]
    fn malformed_requests_are_refused_before_queueing() {
        let ch = DiskChannel::new(
            DiskGeometry {
                read_only: true,
                ..geometry()
            },
            4,
        );
        let cases = [
            DiskOp::Read { lba: 63, blocks: 2 },
            DiskOp::Read { lba: 0, blocks: 0 },
            DiskOp::Write {
                lba: 0,
                data: vec![0; 512],
            },
            DiskOp::Read {
                lba: u64::MAX,
                blocks: 1,
            },
        ];
        let mut got = Vec::new();
        for op in cases {
            match ch.submit(DiskRequest { tag: 1, op }) {
                Err(SubmitError::Invalid(_, e)) => got.push(e),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(got[0], BlockError::OutOfRange { lba: 63, .. }));
        assert!(matches!(got[1], BlockError::Misaligned { len: 0, .. }));
        assert_eq!(got[2], BlockError::ReadOnly);
        assert!(matches!(got[3], BlockError::OutOfRange { .. }));
        assert!(!ch.has_requests());
    }

    #[test]
    fn close_fails_what_is_queued_and_refuses_more() {
        let ch = DiskChannel::new(geometry(), 4);
        ch.submit(DiskRequest {
            tag: 5,
            op: DiskOp::Flush,
        })
        .unwrap();
        ch.close();
        assert_eq!(
            ch.completion(),
            Some(DiskCompletion {
                tag: 5,
                result: Err(BlockError::Io)
            })
        );
        assert!(matches!(
            ch.submit(DiskRequest {
                tag: 6,
                op: DiskOp::Flush
            }),
            Err(SubmitError::Closed(_))
        ));
    }

    #[test]
    fn discard_is_refused_unless_offered_and_checked_like_writes() {
        let plain = DiskChannel::new(geometry(), 4);
        let discard = |lba, blocks| DiskRequest {
            tag: 1,
            op: DiskOp::Discard { lba, blocks },
        };
        assert!(matches!(
            plain.submit(discard(0, 8)),
            Err(SubmitError::Invalid(_, BlockError::Unsupported))
        ));
        let ch = DiskChannel::new(geometry(), 4).with_discard(8);
        assert_eq!(ch.discard_alignment(), Some(8));
        for (lba, blocks) in [(60, 8), (0, 0), (u64::MAX, 1), (1, u64::MAX)] {
            assert!(
                matches!(
                    ch.submit(discard(lba, blocks)),
                    Err(SubmitError::Invalid(..))
                ),
                "{lba} {blocks}"
            );
        }
        ch.submit(discard(8, 16)).unwrap();
        let mut disk = MemBlockDevice::new(512, 64);
        disk.bytes_mut().fill(0xee);
        assert_eq!(serve_from(&ch, &mut disk), 1);
        assert_eq!(ch.completion().map(|c| c.result), Some(Ok(Vec::new())));
        assert!(disk.bytes()[8 * 512..24 * 512].iter().all(|b| *b == 0));
        assert!(disk.bytes()[24 * 512..].iter().all(|b| *b == 0xee));
        let ro = DiskChannel::new(
            DiskGeometry {
                read_only: true,
                ..geometry()
            },
            4,
        )
        .with_discard(1);
        assert!(matches!(
            ro.submit(discard(0, 1)),
            Err(SubmitError::Invalid(_, BlockError::ReadOnly))
        ));
    }

    #[derive(Default)]
    struct Count(core::sync::atomic::AtomicUsize);

    impl Notify for Count {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn each_side_is_notified_of_the_others_work() {
        let ch = DiskChannel::new(geometry(), 4);
        let requests = Arc::new(Count::default());
        let completions = Arc::new(Count::default());
        ch.set_request_notify(Some(Arc::clone(&requests) as Arc<dyn Notify>));
        ch.set_completion_notify(Some(Arc::clone(&completions) as Arc<dyn Notify>));
        let (a, b) = (ch.new_tag(), ch.new_tag());
        assert_ne!(a, b);
        for tag in [a, b] {
            ch.submit(DiskRequest {
                tag,
                op: DiskOp::Flush,
            })
            .unwrap();
        }
        assert_eq!(requests.0.load(Ordering::Relaxed), 2);
        assert_eq!(completions.0.load(Ordering::Relaxed), 0);
        assert!(!ch.has_completions());
        serve_from(&ch, &mut MemBlockDevice::new(512, 64));
        assert_eq!(completions.0.load(Ordering::Relaxed), 2);
        assert!(ch.has_completions());
        // A refused request wakes nobody.
        let _ = ch.submit(DiskRequest {
            tag: 9,
            op: DiskOp::Read { lba: 64, blocks: 1 },
        });
        assert_eq!(requests.0.load(Ordering::Relaxed), 2);
    }

    /// A waiter that serves the channel itself (a single-threaded test
    /// standing in for the other CPU).
    struct ServeOnWait {
        channel: Arc<DiskChannel>,
        disk: MemBlockDevice,
        waits: usize,
    }

    impl Wait for &mut ServeOnWait {
        fn wait(&mut self) {
            self.waits += 1;
            serve_from(&self.channel, &mut self.disk);
        }
    }

    #[test]
    fn the_blocking_adapter_reads_what_it_wrote() {
        let channel = Arc::new(DiskChannel::new(geometry(), 4));
        let mut server = ServeOnWait {
            channel: Arc::clone(&channel),
            disk: MemBlockDevice::new(512, 64),
            waits: 0,
        };
        let mut dev = ChannelDevice::new(Arc::clone(&channel), &mut server);
        assert_eq!(dev.num_blocks(), 64);
        let data: Vec<u8> = (0..1024).map(|i| (i % 253) as u8).collect();
        dev.write_blocks(10, &data).unwrap();
        dev.flush().unwrap();
        let mut back = vec![0u8; 1024];
        dev.read_blocks(10, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            dev.read_blocks(64, &mut back),
            Err(BlockError::OutOfRange { .. })
        ));
        drop(dev);
        assert!(server.waits >= 3);
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_device_thread_and_a_serving_thread_share_the_channel() {
        let channel = Arc::new(DiskChannel::new(geometry(), 8));
        let serving = Arc::clone(&channel);
        let server = std::thread::spawn(move || {
            let mut disk = MemBlockDevice::new(512, 64);
            while !serving.is_closed() {
                if serve_from(&serving, &mut disk) == 0 {
                    std::thread::yield_now();
                }
            }
        });
        struct Yield;
        impl Wait for Yield {
            fn wait(&mut self) {
                std::thread::yield_now();
            }
        }
        let mut dev = ChannelDevice::new(Arc::clone(&channel), Yield);
        let mut model = vec![0u8; 64 * 512];
        let mut seed = 0x1234_5678_u64;
        for _ in 0..500 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let lba = seed % 60;
            let blocks = 1 + (seed >> 8) % 4;
            let at = (lba * 512) as usize;
            let len = (blocks * 512) as usize;
            if seed & 1 == 0 {
                let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
                dev.write_blocks(lba, &data).unwrap();
                model[at..at + len].copy_from_slice(&data);
            } else {
                let mut buf = vec![0u8; len];
                dev.read_blocks(lba, &mut buf).unwrap();
                assert_eq!(buf, model[at..at + len]);
            }
        }
        channel.close();
        server.join().unwrap();
    }
}
