//! xapi's console protocol: `CONNECT /console?ref=<console>&session_id=<s>`
//! (the `location` of a running VM's `console` object), answered `200 OK`,
//! then raw bytes both ways: what the guest wrote to its serial port
//! (starting with what its console ring still holds), and what the client
//! types into the UART's receive side.

use alloc::vec::Vec;

use super::XenApi;
use crate::http::{Method, Request, Response, Status};
use crate::platform::{Platform, VmId};
use crate::server::{Reply, Ticket};

/// Where consoles are served.
pub const CONSOLE_PATH: &str = "/console";

/// One open console connection.
#[derive(Debug)]
pub(super) struct ConsoleTunnel {
    console: alloc::string::String,
    guest: VmId,
    /// Console position sent so far.
    position: u64,
}

/// The value of `key` in a query string (no percent-decoding: refs and
/// session ids are plain tokens).
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

impl XenApi {
    /// Opens a console connection (see the module doc).
    pub fn console_connect(&mut self, request: &Request<'_>, platform: &mut dyn Platform) -> Reply {
        if request.method() != Method::Other("CONNECT") {
            return Reply::Now(
                Response::json_error(
                    Status::METHOD_NOT_ALLOWED,
                    "consoles are opened with CONNECT /console?ref=<console>&session_id=<session>",
                )
                .with_header("Allow", "CONNECT"),
            );
        }
        let query = request.query().unwrap_or("");
        let session = query_value(query, "session_id").unwrap_or("");
        if self.check_session(session, platform.now()).is_err() {
            return Reply::Now(Response::json_error(
                Status::UNAUTHORIZED,
                "session_id is not a valid session",
            ));
        }
        let console = query_value(query, "ref")
            .or_else(|| query_value(query, "uuid"))
            .unwrap_or("");
        let Some(guest) = self.console_guest(console) else {
            return Reply::Now(Response::json_error(
                Status::NOT_FOUND,
                "no such console: ref= must be the console of a running VM",
            ));
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.consoles.insert(
            ticket,
            ConsoleTunnel {
                console: console.into(),
                guest,
                position: 0,
            },
        );
        Reply::Tunnel(Ticket(ticket))
    }

    /// Moves a console connection's bytes; `None` once its VM stopped.
    pub fn console_io(
        &mut self,
        ticket: Ticket,
        input: &[u8],
        output: &mut Vec<u8>,
        platform: &mut dyn Platform,
    ) -> Option<usize> {
        let tunnel = self.consoles.get(&ticket.0)?;
        if self.console_guest(&tunnel.console) != Some(tunnel.guest) {
            self.consoles.remove(&ticket.0);
            return None;
        }
        let tunnel = self.consoles.get_mut(&ticket.0)?;
        let (bytes, position) = platform.vm_console_read(tunnel.guest, tunnel.position)?;
        output.extend_from_slice(&bytes);
        tunnel.position = position;
        let taken = if input.is_empty() {
            0
        } else {
            platform.vm_console_write(tunnel.guest, input)
        };
        Some(taken)
    }

    pub fn console_close(&mut self, ticket: Ticket) {
        self.consoles.remove(&ticket.0);
    }
}
