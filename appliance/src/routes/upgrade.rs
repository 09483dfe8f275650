//! `PUT /upgrade?session_id=<session ref>`: a signed image (`keel.img`)
//! streamed into the A/B slot not running, then marked for one trial boot
//! (see `image/README.md`). Authenticated the way xapi's HTTP handlers are:
//! the `session_id` query parameter names a live XenAPI session.

use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;

use crate::http::{Method, RequestHead, Response, Status};
use crate::platform::{Platform, UpgradeFailure, UpgradeUnavailable};
use crate::xenapi::XenApi;

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
    if !api.session_valid(&session, platform.now()) {
        return Err(Response::json_error(
            Status::UNAUTHORIZED,
            "SESSION_INVALID: the session_id is not a live XenAPI session",
        ));
    }
    if length > MAX_UPLOAD_BYTES {
        return Err(Response::json_error(
            Status::CONTENT_TOO_LARGE,
            &alloc::format!(
                "an upgrade image is at most {MAX_UPLOAD_BYTES} bytes (a slot); this one is {length}"
            ),
        ));
    }
    platform.upgrade_begin().map_err(|e| match e {
        UpgradeUnavailable::NoBootDisk => Response::json_error(
            Status::SERVICE_UNAVAILABLE,
            "this host did not boot from a keel disk (no A/B slots): nothing to upgrade",
        ),
        UpgradeUnavailable::Busy => {
            Response::json_error(Status::CONFLICT, "another upgrade upload is in progress")
        }
    })
}

pub fn chunk(bytes: &[u8], platform: &mut dyn Platform) -> Result<(), Response> {
    platform.upgrade_feed(bytes).map_err(|e| failure(&e))
}

pub fn end(platform: &mut dyn Platform) -> Response {
    #[derive(Serialize)]
    struct Written<'a> {
        status: &'a str,
        slot: &'a str,
        version: &'a str,
        next: &'a str,
    }
    match platform.upgrade_finish() {
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
fn query_param(query: &str, name: &str) -> Option<String> {
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
