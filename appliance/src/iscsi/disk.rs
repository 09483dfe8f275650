//! An attached VDI served to a guest disk through a
//! [`storage::channel::DiskChannel`]: the device side (the kernel's
//! virtio-blk task) submits requests by sector; the poll loop takes the
//! requests queued, runs them as one iSCSI job ([`SrOp::Io`]: the SR's
//! read and write path on the VDI's top layer, clusters allocated on first
//! write and journaled at the job's flush), and posts each completion when
//! the job has ended (so every completed write is durable by then).
//!
//! What this is not yet: a session held for the attachment with the
//! VDI's layer maps cached, so data I/O goes straight to the LUN. Each
//! batch logs in, opens the SR from its journal and logs out; up to
//! [`MAX_BATCH`] requests share that cost, one batch per disk at a time.

use alloc::sync::Arc;
use alloc::vec::Vec;

use storage::BlockError;
use storage::channel::{DiskChannel, DiskCompletion, DiskOp};

use super::{Chunk, IoOp, IoRequest, JobError, JobOutput, JobSpec, SrOp, Work};

/// Requests run by one job at most.
pub const MAX_BATCH: usize = 64;
/// Bytes of writes one job carries at most (the job holds them twice).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The serving side of one attached disk.
#[derive(Debug)]
pub struct DiskServer {
    channel: Arc<DiskChannel>,
    uuid: [u8; 16],
    /// The job spec of the SR's LUN (its op is replaced per batch).
    template: JobSpec,
    /// The tags of the batch whose job runs.
    running: Option<Vec<u64>>,
    /// Requests taken but not yet in a batch (beyond a batch's bounds).
    held: Vec<storage::channel::DiskRequest>,
}

impl DiskServer {
    /// Serves `channel` from VDI `uuid` on the SR that `template` reaches
    /// (a `Work::Sr` spec).
    pub fn new(channel: Arc<DiskChannel>, uuid: [u8; 16], template: JobSpec) -> Self {
        DiskServer {
            channel,
            uuid,
            template,
            running: None,
            held: Vec::new(),
        }
    }

    pub fn channel(&self) -> &Arc<DiskChannel> {
        &self.channel
    }

    /// Whether a batch is being run.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// The job for the next batch, if requests wait and none runs.
    pub fn next_job(&mut self) -> Option<JobSpec> {
        if self.running.is_some() {
            return None;
        }
        let room = MAX_BATCH.saturating_sub(self.held.len());
        self.held.extend(self.channel.take_requests(room));
        if self.held.is_empty() {
            return None;
        }
        let mut requests = Vec::new();
        let mut bytes = 0;
        let mut tags = Vec::new();
        while let Some(r) = self.held.first() {
            let len = match &r.op {
                DiskOp::Write { data, .. } => data.len(),
                _ => 0,
            };
            if !requests.is_empty() && bytes + len > MAX_BATCH_BYTES {
                break;
            }
            bytes += len;
            let r = self.held.remove(0);
            tags.push(r.tag);
            let op = match r.op {
                DiskOp::Read { lba, blocks } => IoOp::Read { lba, blocks },
                DiskOp::Write { lba, data } => IoOp::Write {
                    lba,
                    data: Chunk(data.into()),
                },
                DiskOp::Flush => IoOp::Flush,
            };
            requests.push(IoRequest { tag: r.tag, op });
        }
        let mut spec = self.template.clone();
        if let Work::Sr { op, .. } = &mut spec.work {
            *op = SrOp::Io {
                uuid: self.uuid,
                requests,
            };
        }
        self.running = Some(tags);
        Some(spec)
    }

    /// The batch's job ended: each request completes (with an I/O error
    /// if the job failed: nothing of it is known to be durable).
    pub fn finished(&mut self, result: Result<JobOutput, JobError>) {
        let tags = self.running.take().unwrap_or_default();
        match result {
            Ok(JobOutput::Io(done)) if done.len() == tags.len() => {
                for c in done {
                    self.channel.complete(c);
                }
            }
            other => {
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

    /// Detaches: queued requests fail, later ones are refused.
    pub fn close(&mut self) {
        for r in self.held.drain(..) {
            self.channel.complete(DiskCompletion {
                tag: r.tag,
                result: Err(BlockError::Io),
            });
        }
        self.channel.close();
    }
}
