//! A task that follows an HTTP upload (`PUT /upgrade?task_id=...`), as
//! xapi's import handlers take `task_id=`: the client makes the task with
//! `task.create`, passes it with the upload, and watches its `progress`
//! (the share of the body received), then `status`, `result` or
//! `error_info`. One upload runs at a time, so one task is followed.

use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::schema::TASK;
use crate::xenapi::value::{Value, format_datetime};
use crate::xenapi::xmlrpc;

/// The task of the upload in progress.
#[derive(Debug, Clone)]
pub(super) struct UploadTask {
    task: String,
    total: u64,
    received: u64,
    /// Progress last written, in percent: `progress` changes (each an
    /// event) only when this does.
    percent: u64,
}

/// How an upload ended, for its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Written; the value is the task's result (here the version written).
    Done(String),
    /// Failed: the xapi error code and its message (`error_info`).
    Failed(&'static str, String),
}

impl XenApi {
    /// Whether `task` is a task that is still `pending` (a task an upload
    /// can report through).
    pub fn task_pending(&self, task: &str) -> bool {
        let Some((status, _)) = TASK.field("status") else {
            return false;
        };
        self.db
            .get(&TASK, task)
            .is_some_and(|o| *o.field(status) == Value::str("pending"))
    }

    /// An upload of `total` bytes reports through pending `task` from now on.
    pub fn upload_task_begin(&mut self, task: &str, total: u64) {
        self.upload = Some(UploadTask {
            task: String::from(task),
            total,
            received: 0,
            percent: 0,
        });
        self.set_task(task, "progress", Value::Double(0.0));
    }

    /// `bytes` more of the upload arrived.
    pub fn upload_task_progress(&mut self, bytes: usize) {
        let Some(upload) = self.upload.as_mut() else {
            return;
        };
        upload.received = upload.received.saturating_add(bytes as u64);
        // The last percent is left for the end: received is not written yet.
        let percent = (upload.received.saturating_mul(100) / upload.total.max(1)).min(99);
        if percent == upload.percent {
            return;
        }
        upload.percent = percent;
        let task = upload.task.clone();
        self.set_task(&task, "progress", Value::Double(percent as f64 / 100.0));
    }

    /// The upload ended: its task finishes with `outcome`. No effect when
    /// the upload had no task.
    pub fn upload_task_end(&mut self, outcome: UploadOutcome, platform: &dyn Platform) {
        if let Some(upload) = self.upload.take() {
            self.finish_upload_task(&upload.task, outcome, platform);
        }
    }

    /// Finishes pending `task` with `outcome` (an upload refused before it began).
    pub fn finish_upload_task(
        &mut self,
        task: &str,
        outcome: UploadOutcome,
        platform: &dyn Platform,
    ) {
        if !self.task_pending(task) {
            return;
        }
        match outcome {
            UploadOutcome::Done(result) => {
                let mut xml = String::new();
                xmlrpc::write_value(&mut xml, &Value::String(result));
                self.set_task(task, "result", Value::String(xml));
                self.set_task(task, "progress", Value::Double(1.0));
                self.set_task(task, "status", Value::str("success"));
            }
            UploadOutcome::Failed(code, message) => {
                let info: Vec<Value> = [Value::str(code), Value::String(message)].into();
                self.set_task(task, "error_info", Value::Array(info));
                self.set_task(task, "status", Value::str("failure"));
            }
        }
        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
        self.set_task(task, "finished", now);
    }

    fn set_task(&mut self, task: &str, field: &str, value: Value) {
        if let Some((i, _)) = TASK.field(field) {
            self.db.set_field(&TASK, task, i, value);
        }
    }
}
