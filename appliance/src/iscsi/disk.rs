//! An attached VDI served to a guest disk through a
//! [`storage::channel::DiskChannel`]: the device side (the kernel's
//! virtio-blk task) submits requests by sector, and the poll loop serves
//! them two ways.
//!
//! - **Fast path**: a disk session ([`super::Work::Disk`], see
//!   [`super::fast`]) logged in once for the attachment serves reads,
//!   flushes and writes to clusters the VDI owns straight from the LUN,
//!   many at once, from the VDI's extents.
//! - **Slow path**: what needs the SR's metadata (a write that allocates or
//!   copies on write), and everything while the session is not ready or
//!   the extents are not known, runs as one iSCSI batch job
//!   ([`SrOp::Io`]: the SR's read and write path on the VDI's top layer,
//!   clusters journaled at the job's end), which also hands back the VDI's
//!   extents. Each completion is posted when the job has ended.
//!
//! One mode at a time: a slow request waits until the fast path has
//! nothing in flight, and the requests after it wait for its batch, so the
//! extents the fast path plans with are never stale and a flush covers
//! every write completed before it. The batch job is an SR job and follows
//! the one-writer-per-LUN rule; the session only moves data and does not.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use storage::BlockError;
use storage::channel::{DiskChannel, DiskCompletion, DiskOp, DiskRequest};
use storage::sr::VdiExtents;

use super::fast::{DiskPath, Planned, plan};
use super::{Chunk, IoOp, IoRequest, JobError, JobOutput, JobSpec, SrOp, Work};

/// Sessions that may fail one after the other (without getting ready in
/// between) before the disk keeps to the slow path.
pub const MAX_SESSION_FAILURES: u32 = 3;
/// Batches that succeed on the slow path, after it gave up on sessions,
/// before one more session is tried (the target may be back: a login per
/// this many batches is little).
pub const SESSION_RETRY_AFTER_BATCHES: u32 = 64;

/// Requests run by one job at most.
pub const MAX_BATCH: usize = 64;
/// Bytes of writes one job carries at most (the job holds them twice).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A job a disk needs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskJob {
    /// A batch of requests through the SR ([`SrOp::Io`]).
    Batch(JobSpec),
    /// The disk's session (it runs until the disk is detached or it breaks).
    Session(JobSpec),
}

/// The serving side of one attached disk.
#[derive(Debug)]
pub struct DiskServer {
    channel: Arc<DiskChannel>,
    uuid: [u8; 16],
    /// The job spec of the SR's LUN (its op is replaced per batch).
    template: JobSpec,
    path: DiskPath,
    /// Where the VDI's clusters are, as the last batch left them.
    extents: Option<VdiExtents>,
    /// The tags of the batch whose job runs.
    running: Option<Vec<u64>>,
    /// Requests taken and not handed to either path yet, oldest first.
    held: VecDeque<DiskRequest>,
    session_running: bool,
    session_failures: u32,
    /// Batches done since sessions were given up.
    batches_without_session: u32,
    closed: bool,
}

impl DiskServer {
    /// Serves `channel` from VDI `uuid` on the SR that `template` reaches
    /// (a `Work::Sr` spec, or a `Work::Local` one: a host disk has no
    /// session, its batches are served on the disk itself).
    pub fn new(channel: Arc<DiskChannel>, uuid: [u8; 16], template: JobSpec) -> Self {
        DiskServer {
            path: DiskPath::new(Arc::clone(&channel)),
            channel,
            uuid,
            template,
            extents: None,
            running: None,
            held: VecDeque::new(),
            session_running: false,
            session_failures: 0,
            batches_without_session: 0,
            closed: false,
        }
    }

    pub fn channel(&self) -> &Arc<DiskChannel> {
        &self.channel
    }

    /// What the disk shares with its session.
    pub fn path(&self) -> &DiskPath {
        &self.path
    }

    /// Whether a batch is being run.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Whether requests wait for the fast path to drain before their batch
    /// can start (the caller should ask [`Self::next_job`] again soon).
    pub fn waiting(&self) -> bool {
        self.running.is_none() && !self.held.is_empty()
    }

    fn scsi_id(&self) -> Option<&String> {
        match &self.template.work {
            Work::Sr { scsi_id, .. } => Some(scsi_id),
            _ => None,
        }
    }

    /// Hands requests waiting to the fast path; returns a job to run if
    /// one is needed: the disk's session (again, after it broke), or the
    /// next batch.
    pub fn next_job(&mut self) -> Option<DiskJob> {
        if self.closed {
            return None;
        }
        if !self.session_running
            && self.session_failures < MAX_SESSION_FAILURES
            && let Some(scsi_id) = self.scsi_id().cloned()
        {
            self.session_running = true;
            let mut spec = self.template.clone();
            spec.work = Work::Disk {
                scsi_id,
                path: self.path.clone(),
            };
            return Some(DiskJob::Session(spec));
        }
        let ready = {
            let mut shared = self.path.shared.lock();
            // What a broken session did not serve goes first, in order.
            for r in shared.take_returned().into_iter().rev() {
                self.held.push_front(r);
            }
            shared.ready()
        };
        if ready {
            self.session_failures = 0;
        }
        // A discard changes the SR's metadata: `plan` leaves it to the
        // slow path, like an allocating write.
        self.held.extend(self.channel.take_requests(usize::MAX));
        if self.running.is_some() || self.held.is_empty() {
            return None;
        }
        if ready && let Some(ext) = &self.extents {
            let mut shared = self.path.shared.lock();
            while let Some(steps) = self.held.front().and_then(|r| plan(&r.op, ext)) {
                if let Some(request) = self.held.pop_front() {
                    shared.push(Planned { request, steps });
                }
            }
        }
        if self.held.is_empty() || !self.path.shared.lock().idle() {
            return None;
        }
        self.batch().map(DiskJob::Batch)
    }

    /// The batch job for the requests held, from the oldest.
    fn batch(&mut self) -> Option<JobSpec> {
        let mut requests = Vec::new();
        let mut bytes = 0;
        let mut tags = Vec::new();
        while let Some(r) = self.held.front() {
            let len = match &r.op {
                DiskOp::Write { data, .. } => data.len(),
                _ => 0,
            };
            if !requests.is_empty()
                && (bytes + len > MAX_BATCH_BYTES || requests.len() >= MAX_BATCH)
            {
                break;
            }
            bytes += len;
            let r = self.held.pop_front()?;
            tags.push(r.tag);
            let op = match r.op {
                DiskOp::Read { lba, blocks } => IoOp::Read { lba, blocks },
                DiskOp::Write { lba, data } => IoOp::Write {
                    lba,
                    data: Chunk(data.into()),
                },
                DiskOp::Flush => IoOp::Flush,
                DiskOp::Discard { lba, blocks } => IoOp::Discard { lba, blocks },
            };
            requests.push(IoRequest { tag: r.tag, op });
        }
        let mut spec = self.template.clone();
        if let Some(op) = spec.sr_op_mut() {
            *op = SrOp::Io {
                uuid: self.uuid,
                requests,
            };
        }
        self.running = Some(tags);
        Some(spec)
    }

    /// The batch's job ended: each request completes (with an I/O error
    /// if the job failed: nothing of it is known to be durable), and the
    /// fast path plans with the extents it left.
    pub fn finished(&mut self, result: Result<JobOutput, JobError>) {
        let tags = self.running.take().unwrap_or_default();
        match result {
            Ok(JobOutput::Io { done, extents }) if done.len() == tags.len() => {
                self.extents = Some(extents);
                if self.session_failures >= MAX_SESSION_FAILURES {
                    self.batches_without_session += 1;
                    if self.batches_without_session >= SESSION_RETRY_AFTER_BATCHES {
                        // One more try; its failure gives up again.
                        self.batches_without_session = 0;
                        self.session_failures = MAX_SESSION_FAILURES - 1;
                    }
                }
                for c in done {
                    self.channel.complete(c);
                }
            }
            other => {
                // What the failed batch changed is not known.
                self.extents = None;
                if let Err(e) = &other {
                    log::warn!("disk: a batch of {} requests failed: {e}", tags.len());
                }
                for tag in tags {
                    self.channel.complete(DiskCompletion {
                        tag,
                        result: Err(BlockError::Io),
                    });
                }
            }
        }
    }

    /// The disk's session ended: after a failure a new one is started
    /// (up to [`MAX_SESSION_FAILURES`] in a row that never got ready, then
    /// one after every [`SESSION_RETRY_AFTER_BATCHES`] batches); meanwhile
    /// the slow path serves everything.
    pub fn session_ended(&mut self, result: Result<JobOutput, JobError>) {
        self.session_running = false;
        if let Err(e) = result {
            self.session_failures += 1;
            log::warn!(
                "disk: its session ended: {e}{}",
                if self.session_failures >= MAX_SESSION_FAILURES {
                    "; serving it through the SR for a while"
                } else {
                    "; starting another"
                }
            );
        }
    }

    /// Detaches: queued requests fail, later ones are refused, and the
    /// session logs out once its commands completed.
    pub fn close(&mut self) {
        self.closed = true;
        let returned = {
            let mut shared = self.path.shared.lock();
            shared.close();
            shared.take_returned()
        };
        for r in returned.into_iter().chain(self.held.drain(..)) {
            self.channel.complete(DiskCompletion {
                tag: r.tag,
                result: Err(BlockError::Io),
            });
        }
        self.channel.close();
    }
}

#[cfg(test)]
mod tests;
