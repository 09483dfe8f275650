//! The fast path of an attached disk: a long-lived iSCSI session (a
//! [`super::Work::Disk`] job) serves the guest's reads, flushes and writes
//! to clusters the VDI owns straight from the LUN (READ(16), WRITE(16),
//! SYNCHRONIZE CACHE(16) on the clusters' device blocks), many at once,
//! without opening the SR.
//!
//! The disk's server ([`super::disk::DiskServer`]) plans each request
//! against the VDI's extents ([`plan`]) and queues it in the [`DiskPath`]
//! it shares with the session; the session takes the plans, runs their
//! commands, and completes each request on the disk's channel as its
//! commands complete. When the session breaks, the requests it had not
//! completed go back to the server ([`FastQueue::take_returned`]), which
//! serves them again (through a new session, or the SR batch path).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;
use storage::BlockError;
use storage::channel::{DiskChannel, DiskCompletion, DiskOp, DiskRequest};
use storage::iscsi::session::{Command, DataTransfer};
use storage::scsi;
use storage::sr::VdiExtents;

/// Bytes of a guest sector (the disk channel's block size).
pub const SECTOR: u64 = 512;

/// One SCSI command of a planned request, by byte offset on the LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `len` bytes at `at` go to the request's buffer at `to`.
    Read {
        at: u64,
        len: u32,
        to: u32,
    },
    /// `len` bytes of an unallocated cluster at `to`: zeros, no command.
    Zeros {
        len: u32,
        to: u32,
    },
    /// `len` bytes of the request's data from `from` go to `at`.
    Write {
        at: u64,
        len: u32,
        from: u32,
    },
    Sync,
}

/// The commands that serve `op` on the VDI whose extents are `ext`, or
/// `None` when the SR must serve it (a write to a cluster the VDI does not
/// own: allocation or copy-on-write; a range outside the VDI).
pub fn plan(op: &DiskOp, ext: &VdiExtents) -> Option<Vec<Step>> {
    match op {
        DiskOp::Read { lba, blocks } => {
            let start = lba.checked_mul(SECTOR)?;
            let len = u64::from(*blocks) * SECTOR;
            let pieces = ext.pieces(start, len)?;
            pieces
                .iter()
                .map(|p| {
                    let to = u32::try_from(p.offset - start).ok()?;
                    let len = u32::try_from(p.len).ok()?;
                    Some(match p.device_offset(ext.cluster_size) {
                        Some(at) => Step::Read { at, len, to },
                        None => Step::Zeros { len, to },
                    })
                })
                .collect()
        }
        DiskOp::Write { lba, data } => {
            let start = lba.checked_mul(SECTOR)?;
            let len = data.len() as u64;
            if !ext.writable_in_place(start, len) {
                return None;
            }
            let pieces = ext.pieces(start, len)?;
            pieces
                .iter()
                .map(|p| {
                    Some(Step::Write {
                        at: p.device_offset(ext.cluster_size)?,
                        len: u32::try_from(p.len).ok()?,
                        from: u32::try_from(p.offset - start).ok()?,
                    })
                })
                .collect()
        }
        DiskOp::Flush => Some(vec![Step::Sync]),
        DiskOp::Discard { .. } => None,
    }
}

/// A request and its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub request: DiskRequest,
    pub steps: Vec<Step>,
}

/// What the server and the session share.
#[derive(Debug, Default)]
pub struct FastQueue {
    /// Planned by the server, not yet taken by the session.
    queue: VecDeque<Planned>,
    /// The session is logged in and has found the LUN.
    ready: bool,
    /// Taken by the session and not completed.
    in_flight: usize,
    /// Taken (or queued) but not served when the session ended, oldest first.
    returned: Vec<DiskRequest>,
    /// The disk is detached: the session ends once its commands are done.
    closing: bool,
}

impl FastQueue {
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// No request queued or in flight on the fast path.
    pub fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }

    pub fn push(&mut self, planned: Planned) {
        self.queue.push_back(planned);
    }

    /// The requests to serve again, oldest first.
    pub fn take_returned(&mut self) -> Vec<DiskRequest> {
        core::mem::take(&mut self.returned)
    }

    pub fn close(&mut self) {
        self.closing = true;
    }
}

/// The fast path of one disk: its channel and the queue shared between its
/// server and its session (equal when they are the same disk's).
#[derive(Debug, Clone)]
pub struct DiskPath {
    pub channel: Arc<DiskChannel>,
    pub shared: Arc<Mutex<FastQueue>>,
}

impl DiskPath {
    pub fn new(channel: Arc<DiskChannel>) -> Self {
        DiskPath {
            channel,
            shared: Arc::new(Mutex::new(FastQueue::default())),
        }
    }
}

impl PartialEq for DiskPath {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for DiskPath {}

/// A request the session is serving.
#[derive(Debug)]
struct Active {
    request: DiskRequest,
    /// The data of a read, filled as its commands complete.
    buf: Vec<u8>,
    /// Commands not completed yet.
    left: usize,
    failed: bool,
}

/// Which request and where in its buffer a command's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandOf {
    pub seq: u64,
    pub to: u32,
}

/// The serving side of a disk session, once its LUN is found.
#[derive(Debug)]
pub struct DiskRun {
    path: DiskPath,
    lun: u64,
    block_size: u64,
    active: BTreeMap<u64, Active>,
    next_seq: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl DiskRun {
    /// Serves `path` from LUN `lun` (wire form) of `block_size`-byte blocks.
    pub fn new(path: DiskPath, lun: u64, block_size: u32) -> Self {
        path.shared.lock().ready = true;
        DiskRun {
            path,
            lun,
            block_size: u64::from(block_size.max(1)),
            active: BTreeMap::new(),
            next_seq: 0,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// The disk was detached and every command of the session completed.
    pub fn finished(&self) -> bool {
        self.active.is_empty() && self.path.shared.lock().closing
    }

    /// The commands of the requests queued since the last call.
    pub fn take_commands(&mut self) -> Vec<(Command, CommandOf)> {
        let taken: Vec<Planned> = {
            let mut s = self.path.shared.lock();
            if s.closing {
                // Detached: nobody waits for these any more.
                for p in s.queue.drain(..) {
                    self.path.channel.complete(DiskCompletion {
                        tag: p.request.tag,
                        result: Err(BlockError::Io),
                    });
                }
                return Vec::new();
            }
            let taken: Vec<Planned> = s.queue.drain(..).collect();
            s.in_flight += taken.len();
            taken
        };
        let mut out = Vec::new();
        for p in taken {
            let seq = self.next_seq;
            self.next_seq += 1;
            let buf_len = match &p.request.op {
                DiskOp::Read { blocks, .. } => (u64::from(*blocks) * SECTOR) as usize,
                _ => 0,
            };
            let mut active = Active {
                request: p.request,
                buf: vec![0u8; buf_len],
                left: 0,
                failed: false,
            };
            for step in p.steps {
                let command = match step {
                    Step::Zeros { .. } => continue,
                    Step::Read { at, len, to } => self.blocks(at, len).map(|(lba, n)| {
                        (
                            Command {
                                lun: self.lun,
                                cdb: scsi::read_16(lba, n),
                                transfer: DataTransfer::Read(len),
                            },
                            to,
                        )
                    }),
                    Step::Write { at, len, from } => {
                        let data = match &active.request.op {
                            DiskOp::Write { data, .. } => data
                                .get(from as usize..from as usize + len as usize)
                                .map(<[u8]>::to_vec),
                            _ => None,
                        };
                        self.blocks(at, len).zip(data).map(|((lba, n), data)| {
                            (
                                Command {
                                    lun: self.lun,
                                    cdb: scsi::write_16(lba, n),
                                    transfer: DataTransfer::Write(data),
                                },
                                0,
                            )
                        })
                    }
                    Step::Sync => Some((
                        Command {
                            lun: self.lun,
                            cdb: scsi::synchronize_cache_16(),
                            transfer: DataTransfer::None,
                        },
                        0,
                    )),
                };
                match command {
                    Some((command, to)) => {
                        active.left += 1;
                        out.push((command, CommandOf { seq, to }));
                    }
                    None => active.failed = true,
                }
            }
            self.active.insert(seq, active);
            // A request of zeros only (or a malformed one) completes now.
            self.settle(seq);
        }
        out
    }

    /// The LUN blocks of `len` bytes at byte `at`, if they are whole blocks.
    fn blocks(&self, at: u64, len: u32) -> Option<(u64, u32)> {
        let len = u64::from(len);
        if !at.is_multiple_of(self.block_size) || !len.is_multiple_of(self.block_size) {
            return None;
        }
        Some((
            at / self.block_size,
            u32::try_from(len / self.block_size).ok()?,
        ))
    }

    /// A command of request `of.seq` ended: its data (a read's), or an error.
    pub fn completed(&mut self, of: CommandOf, result: Result<Vec<u8>, ()>) {
        let Some(a) = self.active.get_mut(&of.seq) else {
            return;
        };
        a.left = a.left.saturating_sub(1);
        match result {
            Ok(data) => match &a.request.op {
                DiskOp::Read { .. } => {
                    self.bytes_read += data.len() as u64;
                    let to = of.to as usize;
                    match a.buf.get_mut(to..to + data.len()) {
                        Some(slot) => slot.copy_from_slice(&data),
                        None => a.failed = true,
                    }
                }
                DiskOp::Write { .. } | DiskOp::Flush | DiskOp::Discard { .. } => {}
            },
            Err(()) => a.failed = true,
        }
        self.settle(of.seq);
    }

    /// Completes request `seq` on the channel if none of its commands is left.
    fn settle(&mut self, seq: u64) {
        if self.active.get(&seq).is_none_or(|a| a.left > 0) {
            return;
        }
        let Some(a) = self.active.remove(&seq) else {
            return;
        };
        if let (false, DiskOp::Write { data, .. }) = (a.failed, &a.request.op) {
            self.bytes_written += data.len() as u64;
        }
        let result = if a.failed {
            Err(BlockError::Io)
        } else {
            Ok(match a.request.op {
                DiskOp::Read { .. } => a.buf,
                _ => Vec::new(),
            })
        };
        self.path.channel.complete(DiskCompletion {
            tag: a.request.tag,
            result,
        });
        let mut s = self.path.shared.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// The session ended before serving everything: what it took and what
    /// waits in the queue go back to the server, to be served again (a
    /// read or write of the same blocks is safe to repeat, as after an
    /// ERL 0 session recovery).
    pub fn release(&mut self) {
        let mut s = self.path.shared.lock();
        s.ready = false;
        let mut back: Vec<DiskRequest> = core::mem::take(&mut self.active)
            .into_values()
            .map(|a| a.request)
            .collect();
        s.in_flight = s.in_flight.saturating_sub(back.len());
        back.extend(s.queue.drain(..).map(|p| p.request));
        let older = core::mem::take(&mut s.returned);
        s.returned = older.into_iter().chain(back).collect();
    }
}

impl Drop for DiskRun {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
pub(crate) mod tests;
