//! Writing a call's outcome in the protocol it came in.

use crate::http::{Response, Status};
use crate::xenapi::error::ApiError;
use crate::xenapi::jsonrpc;
use crate::xenapi::value::Value;
use crate::xenapi::xmlrpc;

/// How the answer must be written.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Wire {
    Xml,
    Json {
        version: jsonrpc::Version,
        id: serde_json::Value,
    },
}

pub(super) fn cors(response: Response) -> Response {
    response.with_header("Access-Control-Allow-Origin", "*")
}

/// A call's answer in the caller's protocol.
pub(super) fn respond(wire: &Wire, result: &Result<Value, ApiError>, bare: bool) -> Response {
    match wire {
        Wire::Json { version, id } => cors(
            Response::new(Status::OK)
                .with_body("application/json", jsonrpc::response(*version, id, result)),
        ),
        Wire::Xml => {
            let body = match (result, bare) {
                (Ok(v), true) => xmlrpc::response(v),
                (Ok(v), false) => xmlrpc::success(v),
                (Err(e), _) => xmlrpc::failure(&e.description()),
            };
            cors(Response::new(Status::OK).with_body("text/xml", body.into_bytes()))
        }
    }
}

/// The answer to a body that is not a call.
pub(super) fn bad_body(message: &str) -> Response {
    cors(Response::json_error(Status::BAD_REQUEST, message))
}
