//! xapi's raw disk transfer handlers: `PUT /import_raw_vdi` and
//! `GET /export_raw_vdi`, with `session_id=`, `vdi=`, `format=raw` and an
//! optional `task_id=` (a pending task from `task.create`) whose
//! `progress` follows the bytes written or sent, then `success` or
//! `failure` with the XenAPI error.
//!
//! Both stream: an import takes the request body [`PIECE`] bytes at a time
//! and writes each piece into the VDI's top layer with an iSCSI job
//! (`SrOp::WriteVdi`: the SR's own write path, so a cluster is allocated on
//! first write, copied from the parent of a clone, and journaled crash-safe
//! at the job's flush) before it takes more of the body (back-pressure on
//! the client); an export reads the VDI a piece at a time
//! (`SrOp::ReadVdi`, holes and unwritten clusters read as zeros, a clone
//! shows its parent's data) while the previous piece is being sent. Memory
//! is bounded by two pieces per transfer whatever the VDI's size.
//!
//! Errors, before anything is touched: no session `401`
//! (`SESSION_INVALID`), an unknown VDI `404` (`HANDLE_INVALID [VDI, ref]`),
//! a VDI being imported into or exported, or attached to a running VM
//! `409` (`VDI_IN_USE [vdi, op]`), a read-only VDI `409` (`VDI_READ_ONLY`),
//! a format other than raw `400`, a body larger than the VDI `413`
//! (`VDI_TOO_SMALL [vdi, bytes]`), a VDI on an SR that is not iSCSI `400`
//! (`SR_OPERATION_NOT_SUPPORTED`). A refusal also fails the task. A cut
//! upload fails the task (`INTERNAL_ERROR`); the pieces written before the
//! cut stay written (the VDI holds the new data up to a piece boundary at
//! or below the bytes received, and its old data after it). A failed
//! write or read fails the task with the SR's error and ends the request
//! (`500` for an import, a short body for an export).
//!
//! Into an ISO library (an `iso` SR, see `iso_library`) an import is the
//! whole ISO in one request (its length rounded up to 512 bytes must be the
//! VDI's size, else `400` `INVALID_VALUE`); after its last piece the ISO is
//! finished (`SrOp::FinishIso`) and the VDI is read-only from then on. An
//! import into an ISO that fails or is cut destroys the VDI.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use super::srs::{job_error, parse_uuid};
use crate::http::{Method, Request, RequestHead, Response, Status};
use crate::iscsi::{Chunk, JobError, JobOutput, SrOp};
use crate::platform::Platform;
use crate::routes::upgrade::query_param;
use crate::server::{BodyCut, Reply, Ticket};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{TASK, VBD, VDI};
use crate::xenapi::value::Value;

pub const IMPORT_RAW_PATH: &str = "/import_raw_vdi";
pub const EXPORT_RAW_PATH: &str = "/export_raw_vdi";

/// Bytes written or read by one iSCSI job.
pub const PIECE: usize = 1024 * 1024;

/// An import in progress, by the ticket of its request body.
#[derive(Debug)]
pub(super) struct Import {
    vdi: String,
    sr: String,
    uuid: [u8; 16],
    length: u64,
    /// Body bytes taken (written, being written, or buffered).
    taken: u64,
    /// Bytes written to the VDI.
    written: u64,
    /// Taken, not yet handed to a job.
    buffer: Vec<u8>,
    /// The job writing a piece, and its length.
    job: Option<(u64, usize)>,
    task: Option<String>,
    /// The whole body was taken.
    ended: bool,
    /// The body was cut short: no further piece is written.
    aborted: bool,
    /// Why the import failed, once it did.
    failed: Option<ApiError>,
    /// The answer was asked for (the body ended): set once it is ready.
    answered: bool,
    percent: u64,
    /// An ISO uploaded into an ISO library (see `iso_library`): finished
    /// (read-only) after its last piece, destroyed if the upload fails.
    iso: bool,
    /// The job finishing the ISO is running (or has ended: `iso_done`).
    iso_finishing: bool,
    iso_done: bool,
}

/// An export in progress, by the ticket of its response body.
#[derive(Debug)]
pub(super) struct Export {
    vdi: String,
    sr: String,
    uuid: [u8; 16],
    size: u64,
    /// Next byte to ask a job for.
    asked: u64,
    /// Bytes handed to the connection.
    sent: u64,
    /// Read, not yet handed over (from `ready_at`).
    ready: Vec<u8>,
    ready_at: usize,
    job: Option<u64>,
    task: Option<String>,
    failed: bool,
    percent: u64,
}

/// Which transfer a storage job belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum TransferJob {
    Import(u64),
    Export(u64),
}

/// A refusal: the HTTP answer, and the error its task ends with.
fn refusal(status: Status, error: &ApiError) -> Response {
    let text = error.description().join(" ");
    Response::json_error(status, &text)
}

impl Import {
    pub(super) fn vdi(&self) -> &str {
        &self.vdi
    }
}

impl Export {
    pub(super) fn vdi(&self) -> &str {
        &self.vdi
    }
}

impl XenApi {
    fn transfer_busy(&self, vdi: &str) -> Option<&'static str> {
        if self.imports.values().any(|i| i.vdi == vdi) {
            return Some("import_raw_vdi");
        }
        if self.exports.values().any(|e| e.vdi == vdi) {
            return Some("export_raw_vdi");
        }
        let attached = self.db.objects("VBD").any(|(r, _)| {
            self.field(&VBD, r, "VDI").as_str() == Some(vdi)
                && self.field(&VBD, r, "currently_attached") == Value::Bool(true)
        });
        let attached = attached || self.disks.values().any(|d| d.vdi_of(self) == Some(vdi));
        attached.then_some("attached")
    }

    /// The checks both handlers share; the VDI ref, its SR and uuid, and
    /// the task.
    #[allow(clippy::type_complexity)]
    fn transfer_checks(
        &mut self,
        method: Method<'_>,
        wanted: Method<'static>,
        query: Option<&str>,
        platform: &mut dyn Platform,
    ) -> Result<(String, String, [u8; 16], Option<String>), Response> {
        if method != wanted {
            let allow = if wanted == Method::Put { "PUT" } else { "GET" };
            return Err(
                Response::json_error(Status::METHOD_NOT_ALLOWED, "method not allowed")
                    .with_header("Allow", allow),
            );
        }
        let param = |name| query.and_then(|q| query_param(q, name));
        let Some(session) = param("session_id") else {
            return Err(Response::json_error(
                Status::UNAUTHORIZED,
                "a session_id query parameter (a XenAPI session from session.login_with_password) is required",
            ));
        };
        if !self.session_valid(&session, platform.now()) {
            return Err(refusal(
                Status::UNAUTHORIZED,
                &ApiError::session_invalid(&session),
            ));
        }
        let task = param("task_id");
        if let Some(task) = &task
            && !self.task_pending(task)
        {
            return Err(Response::json_error(
                Status::BAD_REQUEST,
                "task_id is not a pending task (make one with task.create)",
            ));
        }
        let checked = (|| {
            let vdi = param("vdi").unwrap_or_default();
            if !self.db.contains("VDI", &vdi) {
                return Err((Status::NOT_FOUND, ApiError::handle_invalid("VDI", &vdi)));
            }
            match param("format").as_deref() {
                None | Some("raw") => {}
                Some(other) => {
                    return Err((
                        Status::BAD_REQUEST,
                        ApiError::new(
                            "INTERNAL_ERROR",
                            &[&format!("format {other} is not supported here (only raw)")],
                        ),
                    ));
                }
            }
            let sr = String::from(self.field(&VDI, &vdi, "SR").as_str().unwrap_or(""));
            self.sr_config(&sr).map_err(|e| (Status::BAD_REQUEST, e))?;
            let uuid = self
                .field(&VDI, &vdi, "uuid")
                .as_str()
                .and_then(parse_uuid)
                .ok_or_else(|| (Status::NOT_FOUND, ApiError::handle_invalid("VDI", &vdi)))?;
            if let Some(op) = self.transfer_busy(&vdi) {
                return Err((Status::CONFLICT, ApiError::new("VDI_IN_USE", &[&vdi, op])));
            }
            Ok((vdi, sr, uuid))
        })();
        match checked {
            Ok((vdi, sr, uuid)) => Ok((vdi, sr, uuid, task)),
            Err((status, e)) => {
                if let Some(task) = &task {
                    self.finish_task(task, &Err(e.clone()), platform);
                }
                Err(refusal(status, &e))
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_ticket;
        self.next_ticket += 1;
        id
    }

    fn transfer_job(&mut self, sr: &str, op: SrOp, owner: TransferJob) -> Result<u64, ApiError> {
        let config = self.sr_config(sr)?;
        let spec = self.sr_spec(&config, op)?;
        let id = self.next_id();
        self.storage_queue.push_back((id, spec));
        self.transfer_jobs.insert(id, owner);
        Ok(id)
    }

    fn set_progress(&mut self, task: &str, done: u64, total: u64, percent: &mut u64) {
        let p = (done.saturating_mul(100) / total.max(1)).min(99);
        if p != *percent {
            *percent = p;
            if let Some((i, _)) = TASK.field("progress") {
                self.db
                    .set_field(&TASK, task, i, Value::Double(p as f64 / 100.0));
            }
        }
    }

    /// `PUT /import_raw_vdi`: checks, then takes the body.
    pub fn import_start(
        &mut self,
        head: &RequestHead<'_>,
        length: u64,
        platform: &mut dyn Platform,
    ) -> Result<Ticket, Response> {
        let (vdi, sr, uuid, task) =
            self.transfer_checks(head.method, Method::Put, head.query, platform)?;
        let size = self.field(&VDI, &vdi, "virtual_size").as_int().unwrap_or(0);
        let refuse = |api: &mut XenApi, platform: &mut dyn Platform, status, e: ApiError| {
            if let Some(task) = &task {
                api.finish_task(task, &Err(e.clone()), platform);
            }
            Err(refusal(status, &e))
        };
        if self.field(&VDI, &vdi, "read_only") == Value::Bool(true) {
            return refuse(
                self,
                platform,
                Status::CONFLICT,
                ApiError::new("VDI_READ_ONLY", &[&vdi]),
            );
        }
        let iso = self.is_iso_sr(&sr);
        if iso && length.next_multiple_of(512) != u64::try_from(size).unwrap_or(0) {
            return refuse(
                self,
                platform,
                Status::BAD_REQUEST,
                ApiError::invalid_value(
                    "Content-Length",
                    &format!(
                        "{length}: an ISO is uploaded whole, in one request of its size ({size} bytes, given to VDI.create)"
                    ),
                ),
            );
        }
        if length > u64::try_from(size).unwrap_or(0) {
            return refuse(
                self,
                platform,
                Status::CONTENT_TOO_LARGE,
                ApiError::new("VDI_TOO_SMALL", &[&vdi, &format!("{length}")]),
            );
        }
        let ticket = self.next_id();
        log::info!("vdi: import of {length} bytes into {vdi} begins");
        if let Some(task) = &task
            && let Some((i, _)) = TASK.field("progress")
        {
            self.db.set_field(&TASK, task, i, Value::Double(0.0));
        }
        self.imports.insert(
            ticket,
            Import {
                vdi,
                sr,
                uuid,
                length,
                taken: 0,
                written: 0,
                buffer: Vec::new(),
                job: None,
                task,
                ended: false,
                aborted: false,
                failed: None,
                answered: false,
                percent: 0,
                iso,
                iso_finishing: false,
                iso_done: false,
            },
        );
        Ok(Ticket(ticket))
    }

    /// Takes what fits in the piece being filled; none while a full piece
    /// waits for the job before it.
    pub fn import_chunk(
        &mut self,
        ticket: Ticket,
        bytes: &[u8],
        platform: &mut dyn Platform,
    ) -> Result<usize, Response> {
        let Some(import) = self.imports.get_mut(&ticket.0) else {
            return Err(Response::json_error(
                Status::INTERNAL_SERVER_ERROR,
                "the import is gone",
            ));
        };
        if let Some(e) = &import.failed {
            let response = refusal(Status::INTERNAL_SERVER_ERROR, e);
            self.end_import(ticket.0, platform);
            return Err(response);
        }
        let n = bytes.len().min(PIECE - import.buffer.len());
        import
            .buffer
            .extend_from_slice(bytes.get(..n).unwrap_or_default());
        import.taken += n as u64;
        self.import_pump(ticket.0, platform);
        Ok(n)
    }

    /// The whole body was taken: answered once the last piece is written.
    pub fn import_end(&mut self, ticket: Ticket, platform: &mut dyn Platform) -> Reply {
        if let Some(import) = self.imports.get_mut(&ticket.0) {
            import.ended = true;
            import.answered = true;
        }
        self.import_pump(ticket.0, platform);
        Reply::Later(ticket)
    }

    /// The body was cut short: the task fails once the piece being
    /// written (if any) is done.
    pub fn import_abort(&mut self, ticket: Ticket, platform: &mut dyn Platform) {
        if let Some(import) = self.imports.get_mut(&ticket.0) {
            import.aborted = true;
            import.buffer = Vec::new();
            if import.failed.is_none() {
                import.failed = Some(ApiError::internal(&format!(
                    "the request body ended after {} of its {} bytes; the first {} bytes were written",
                    import.taken,
                    import.length,
                    import.written + import.job.map_or(0, |(_, n)| n as u64)
                )));
            }
        }
        self.import_pump(ticket.0, platform);
    }

    /// Starts `op` on `sr` for import `id`, carrying `len` bytes of its
    /// body; a job that cannot start fails the import.
    fn import_job(&mut self, id: u64, sr: &str, op: SrOp, len: usize, platform: &mut dyn Platform) {
        match self.transfer_job(sr, op, TransferJob::Import(id)) {
            Ok(job) => {
                if let Some(import) = self.imports.get_mut(&id) {
                    import.job = Some((job, len));
                }
            }
            Err(e) => {
                if let Some(import) = self.imports.get_mut(&id) {
                    import.failed = Some(e);
                }
                self.import_pump(id, platform);
            }
        }
    }

    /// Starts the next piece's job, or finishes the import.
    fn import_pump(&mut self, id: u64, platform: &mut dyn Platform) {
        let Some(import) = self.imports.get_mut(&id) else {
            return;
        };
        if import.job.is_some() {
            return;
        }
        if import.failed.is_none()
            && !import.buffer.is_empty()
            && (import.buffer.len() == PIECE || import.ended)
        {
            let data = core::mem::take(&mut import.buffer);
            let len = data.len();
            let op = SrOp::WriteVdi {
                uuid: import.uuid,
                offset: import.written,
                data: Chunk(data.into()),
            };
            let sr = import.sr.clone();
            self.import_job(id, &sr, op, len, platform);
            return;
        }
        let done = import.failed.is_some() || (import.ended && import.buffer.is_empty());
        if done && import.failed.is_none() && import.iso && !import.iso_finishing {
            import.iso_finishing = true;
            let (sr, op) = (import.sr.clone(), SrOp::FinishIso { uuid: import.uuid });
            self.import_job(id, &sr, op, 0, platform);
            return;
        }
        if done && (import.answered || import.aborted) {
            self.end_import(id, platform);
        }
    }

    /// Ends an import: its task and its answer.
    fn end_import(&mut self, id: u64, platform: &mut dyn Platform) {
        let Some(import) = self.imports.remove(&id) else {
            return;
        };
        let result = match &import.failed {
            Some(e) => Err(e.clone()),
            None => Ok(Value::str("")),
        };
        match &result {
            Ok(_) => log::info!(
                "vdi: import of {} bytes into {} done",
                import.written,
                import.vdi
            ),
            Err(e) => log::warn!("vdi: import into {} failed: {e:?}", import.vdi),
        }
        if import.iso {
            if result.is_ok() && import.iso_done {
                self.iso_finished(&import.vdi);
            } else {
                self.iso_discard(&import.vdi);
            }
            if let Err(e) = self.persist() {
                log::error!("db: the ISO's new state could not be saved: {e}");
            }
        }
        if let Some(task) = &import.task {
            self.finish_task(task, &result, platform);
        }
        if import.answered {
            let response = match &result {
                Ok(_) => Response::new(Status::OK),
                Err(e) => refusal(Status::INTERNAL_SERVER_ERROR, e),
            };
            self.storage_answers.insert(id, response);
        }
    }

    /// `GET /export_raw_vdi`: checks, then a body of the VDI's size that
    /// [`XenApi::export_chunk`] supplies.
    pub fn export_start(&mut self, request: &Request<'_>, platform: &mut dyn Platform) -> Response {
        // HEAD is answered as GET without the body.
        let method = match request.method() {
            Method::Head => Method::Get,
            m => m,
        };
        let (vdi, sr, uuid, task) =
            match self.transfer_checks(method, Method::Get, request.query(), platform) {
                Ok(c) => c,
                Err(response) => return response,
            };
        let size = u64::try_from(self.field(&VDI, &vdi, "virtual_size").as_int().unwrap_or(0))
            .unwrap_or(0);
        let ticket = self.next_id();
        log::info!("vdi: export of {vdi} ({size} bytes) begins");
        self.exports.insert(
            ticket,
            Export {
                vdi,
                sr,
                uuid,
                size,
                asked: 0,
                sent: 0,
                ready: Vec::new(),
                ready_at: 0,
                job: None,
                task,
                failed: false,
                percent: 0,
            },
        );
        self.export_pump(ticket);
        Response::streamed(Status::OK, "application/octet-stream", size, ticket)
            .with_header("Content-Disposition", "attachment; filename=\"disk.raw\"")
    }

    /// Asks for the next piece if none is being read and none waits.
    fn export_pump(&mut self, id: u64) {
        let Some(export) = self.exports.get_mut(&id) else {
            return;
        };
        if export.job.is_some() || export.failed || export.asked >= export.size {
            return;
        }
        if export.ready.len() - export.ready_at > 0 {
            return;
        }
        let len = (export.size - export.asked).min(PIECE as u64) as u32;
        let op = SrOp::ReadVdi {
            uuid: export.uuid,
            offset: export.asked,
            len,
        };
        let sr = export.sr.clone();
        match self.transfer_job(&sr, op, TransferJob::Export(id)) {
            Ok(job) => {
                if let Some(export) = self.exports.get_mut(&id) {
                    export.job = Some(job);
                    export.asked += u64::from(len);
                }
            }
            Err(e) => {
                log::warn!("vdi: export cannot read: {e:?}");
                if let Some(export) = self.exports.get_mut(&id) {
                    export.failed = true;
                }
            }
        }
    }

    /// The next bytes of an export's body.
    pub fn export_chunk(
        &mut self,
        ticket: Ticket,
        max: usize,
        platform: &mut dyn Platform,
    ) -> Result<Option<Vec<u8>>, BodyCut> {
        let id = ticket.0;
        let Some(export) = self.exports.get_mut(&id) else {
            return Err(BodyCut);
        };
        if export.failed {
            return Err(BodyCut);
        }
        let waiting = export.ready.len() - export.ready_at;
        if waiting == 0 {
            self.export_pump(id);
            return Ok(None);
        }
        let n = waiting.min(max);
        let out = export
            .ready
            .get(export.ready_at..export.ready_at + n)
            .unwrap_or_default()
            .to_vec();
        export.ready_at += n;
        export.sent += n as u64;
        if export.ready_at == export.ready.len() {
            export.ready = Vec::new();
            export.ready_at = 0;
        }
        let (sent, size) = (export.sent, export.size);
        if let Some(task) = export.task.clone() {
            let mut percent = export.percent;
            self.set_progress(&task, sent, size, &mut percent);
            if let Some(export) = self.exports.get_mut(&id) {
                export.percent = percent;
            }
        }
        if sent >= size {
            if let Some(export) = self.exports.remove(&id) {
                log::info!("vdi: export of {} ({} bytes) done", export.vdi, export.sent);
                if let Some(task) = &export.task {
                    self.finish_task(task, &Ok(Value::str("")), platform);
                }
            }
        } else {
            self.export_pump(id);
        }
        Ok(Some(out))
    }

    /// The connection of an export went away (or its body is complete).
    pub(super) fn export_cancel(&mut self, id: u64, platform: &mut dyn Platform) {
        if let Some(export) = self.exports.remove(&id) {
            if export.sent < export.size {
                log::warn!(
                    "vdi: export of {} ended after {} of {} bytes",
                    export.vdi,
                    export.sent,
                    export.size
                );
            }
            if let Some(task) = &export.task
                && self.task_pending(task)
            {
                let e = ApiError::internal(&format!(
                    "the export ended after {} of its {} bytes",
                    export.sent, export.size
                ));
                self.finish_task(task, &Err(e), platform);
            }
        }
    }

    /// A transfer's job ended.
    pub(super) fn transfer_finished(
        &mut self,
        owner: TransferJob,
        result: Result<JobOutput, JobError>,
        platform: &mut dyn Platform,
    ) {
        match owner {
            TransferJob::Import(id) => {
                let Some(import) = self.imports.get_mut(&id) else {
                    return;
                };
                let (_, len) = import.job.take().unwrap_or((0, 0));
                match result {
                    Ok(JobOutput::Sr(_)) => {
                        import.iso_done = import.iso_finishing;
                        import.written += len as u64;
                        let (written, length) = (import.written, import.length);
                        if let Some(task) = import.task.clone() {
                            let mut percent = import.percent;
                            self.set_progress(&task, written, length, &mut percent);
                            if let Some(import) = self.imports.get_mut(&id) {
                                import.percent = percent;
                            }
                        }
                    }
                    Ok(other) => {
                        import.failed = Some(ApiError::internal(&format!(
                            "unexpected storage result {other:?}"
                        )));
                    }
                    Err(e) => {
                        if import.failed.is_none() {
                            import.failed = Some(job_error(&e));
                        }
                    }
                }
                self.import_pump(id, platform);
            }
            TransferJob::Export(id) => {
                let Some(export) = self.exports.get_mut(&id) else {
                    return;
                };
                export.job = None;
                match result {
                    Ok(JobOutput::Data(data)) => {
                        export.ready = data;
                        export.ready_at = 0;
                    }
                    other => {
                        log::warn!("vdi: export read failed: {other:?}");
                        export.failed = true;
                        if let Some(task) = export.task.clone() {
                            let e = match other {
                                Err(e) => job_error(&e),
                                Ok(_) => ApiError::internal("unexpected storage result"),
                            };
                            self.finish_task(&task, &Err(e), platform);
                        }
                    }
                }
            }
        }
    }
}

/// Which transfers a storage job id belongs to, kept by the service.
pub(super) type TransferJobs = BTreeMap<u64, TransferJob>;
