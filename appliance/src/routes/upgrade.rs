//! `PUT /upgrade?session_id=<session ref>`: a signed image (`keel.img`)
//! streamed into the A/B slot not running, then marked for one trial boot
//! (see `image/README.md`). Authenticated the way xapi's HTTP handlers are:
//! the `session_id` query parameter names a live XenAPI session. An
//! optional `task_id` (a pending task from `task.create`, as xapi's import
//! handlers take it) follows the upload: its `progress` is the share of the
//! body received, then it ends `success` (result: the version written) or
//! `failure` (`error_info`: `IMPORT_ERROR` for a refused image,
//! `INTERNAL_ERROR` for a disk failure, a cut upload or a host that cannot
//! take one now).

use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;

use crate::http::{Method, RequestHead, Response, Status};
use crate::platform::{Platform, UpgradeFailure, UpgradeUnavailable};
use crate::xenapi::{UploadOutcome, XenApi};

pub const PATH: &str = "/upgrade";

/// The largest upload a slot takes: the signed header and a full slot's payload.
const MAX_UPLOAD_BYTES: u64 = host_config::signed::HEADER_BYTES as u64
    + host_config::disk_layout::SLOT_PAYLOAD_SECTORS * host_config::disk_layout::SECTOR_BYTES;

/// Checks the method and the session, then claims the upload.
pub fn start(
    head: &RequestHead<'_>,
    length: u64,
    api: &mut XenApi,
    platform: &mut dyn Platform,
) -> Result<(), Response> {
    if head.method != Method::Put {
        return Err(
            Response::json_error(Status::METHOD_NOT_ALLOWED, "method not allowed")
                .with_header("Allow", "PUT"),
        );
    }
    let Some(session) = head.query.and_then(|q| query_param(q, "session_id")) else {
        return Err(Response::json_error(
            Status::UNAUTHORIZED,
            "a session_id query parameter (a XenAPI session from session.login_with_password) is required",
        ));
    };
    // Without a live session nothing is touched, the task included.
    if !api.session_valid(&session, platform.now()) {
        return Err(Response::json_error(
            Status::UNAUTHORIZED,
            "SESSION_INVALID: the session_id is not a live XenAPI session",
        ));
    }
    let task = head.query.and_then(|q| query_param(q, "task_id"));
    if let Some(task) = &task
        && !api.task_pending(task)
    {
        return Err(Response::json_error(
            Status::BAD_REQUEST,
            "task_id is not a pending task (make one with task.create)",
        ));
    }
    // From here a refusal also ends the task, so a client following it sees why.
    let refuse = |api: &mut XenApi, platform: &dyn Platform, status, code, message: &str| {
        if let Some(task) = &task {
            api.finish_upload_task(
                task,
                UploadOutcome::Failed(code, String::from(message)),
                platform,
            );
        }
        Response::json_error(status, message)
    };
    if length > MAX_UPLOAD_BYTES {
        let message = alloc::format!(
            "an upgrade image is at most {MAX_UPLOAD_BYTES} bytes (a slot); this one is {length}"
        );
        return Err(refuse(
            api,
            platform,
            Status::CONTENT_TOO_LARGE,
            "IMPORT_ERROR",
            &message,
        ));
    }
    match platform.upgrade_begin() {
        Ok(()) => {
            if let Some(task) = &task {
                api.upload_task_begin(task, length);
            }
            Ok(())
        }
        Err(UpgradeUnavailable::NoBootDisk) => Err(refuse(
            api,
            platform,
            Status::SERVICE_UNAVAILABLE,
            "INTERNAL_ERROR",
            "this host did not boot from a keel disk (no A/B slots): nothing to upgrade",
        )),
        Err(UpgradeUnavailable::Busy) => Err(refuse(
            api,
            platform,
            Status::CONFLICT,
            "INTERNAL_ERROR",
            "another upgrade upload is in progress",
        )),
    }
}

pub fn chunk(bytes: &[u8], api: &mut XenApi, platform: &mut dyn Platform) -> Result<(), Response> {
    match platform.upgrade_feed(bytes) {
        Ok(()) => {
            api.upload_task_progress(bytes.len());
            Ok(())
        }
        Err(e) => {
            api.upload_task_end(failed(&e), platform);
            Err(failure(&e))
        }
    }
}

/// The upload was cut short: its task fails.
pub fn abort(api: &mut XenApi, platform: &mut dyn Platform) {
    platform.upgrade_abort();
    api.upload_task_end(
        UploadOutcome::Failed(
            "INTERNAL_ERROR",
            String::from("the request body ended before its Content-Length"),
        ),
        platform,
    );
}

fn failed(e: &UpgradeFailure) -> UploadOutcome {
    let code = if e.refused {
        "IMPORT_ERROR"
    } else {
        "INTERNAL_ERROR"
    };
    UploadOutcome::Failed(code, e.message.clone())
}

pub fn end(api: &mut XenApi, platform: &mut dyn Platform) -> Response {
    #[derive(Serialize)]
    struct Written<'a> {
        status: &'a str,
        slot: &'a str,
        version: &'a str,
        next: &'a str,
    }
    let finished = platform.upgrade_finish();
    let outcome = match &finished {
        Ok(written) => UploadOutcome::Done(written.version.clone()),
        Err(e) => failed(e),
    };
    api.upload_task_end(outcome, platform);
    match finished {
        Ok(written) => {
            let body = Written {
                status: "written",
                slot: written.slot,
                version: &written.version,
                next: "host.reboot boots it once on trial; it commits when healthy",
            };
            match serde_json::to_vec(&body) {
                Ok(body) => Response::json(Status::OK, body),
                Err(_) => Response::new(Status::OK),
            }
        }
        Err(e) => failure(&e),
    }
}

fn failure(e: &UpgradeFailure) -> Response {
    let status = if e.refused {
        Status::BAD_REQUEST
    } else {
        Status::INTERNAL_SERVER_ERROR
    };
    Response::json_error(status, &e.message)
}

/// The percent-decoded value of `name` in a query string.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|d| (*d as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn session_id_is_found_and_decoded() {
        assert_eq!(
            query_param("a=1&session_id=OpaqueRef%3Aab-c", "session_id").as_deref(),
            Some("OpaqueRef:ab-c")
        );
        assert_eq!(
            query_param("session_id=OpaqueRef:x", "session_id").as_deref(),
            Some("OpaqueRef:x")
        );
        assert_eq!(query_param("xsession_id=1", "session_id"), None);
        assert_eq!(
            query_param("session_id=%zz%4", "session_id").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(query_param("session_id=%ff", "session_id"), None);
    }
}
