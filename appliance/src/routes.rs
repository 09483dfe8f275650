//! What the appliance serves over HTTP: `/health`, and the XenAPI on `/`,
//! `/RPC2`, `/xmlrpc` and `/jsonrpc`, and `PUT /upgrade` (streamed, see
//! [`upgrade`]). The image and the hosted server use the same [`Endpoints`].

use alloc::vec::Vec;
use core::time::Duration;

use smoltcp::wire::Ipv4Address;

use crate::health::HealthReport;
use crate::http::{Method, Request, RequestHead, Response, Status};
use crate::platform::Platform;
use crate::server::{BodyCut, Handler, Reply, Ticket};
use crate::xenapi::XenApi;

pub(crate) mod upgrade;

/// Every endpoint, over the service state and the platform, for one poll.
pub struct Endpoints<'a> {
    pub api: &'a mut XenApi,
    pub platform: &'a mut dyn Platform,
    pub hostname: &'a str,
    pub management_ip: Option<Ipv4Address>,
    pub uptime: Duration,
}

impl core::fmt::Debug for Endpoints<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoints")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl Handler for Endpoints<'_> {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        if XenApi::serves(request.path()) {
            return self.api.handle(request, self.platform);
        }
        if request.path() == crate::xenapi::CONSOLE_PATH {
            return self.api.console_connect(request, self.platform);
        }
        if request.path() == crate::xenapi::EXPORT_RAW_PATH {
            return Reply::Now(self.api.export_start(request, self.platform));
        }
        let platform = &*self.platform;
        let (hostname, uptime, ip) = (self.hostname, self.uptime, self.management_ip);
        let tls = self.api.server_certificate().map(|c| c.sha256.as_str());
        Reply::Now(route(request, || {
            HealthReport::new(hostname, uptime, platform.system_info(), ip)
                .with_tls(tls)
                .with_boot(platform.boot_slots())
        }))
    }

    fn resume(&mut self, ticket: Ticket) -> Option<Response> {
        self.api.resume(ticket, self.platform)
    }

    fn cancel(&mut self, ticket: Ticket) {
        self.api.cancel(ticket, self.platform);
    }

    fn streams(&self, head: &RequestHead<'_>) -> bool {
        head.path == upgrade::PATH || head.path == crate::xenapi::IMPORT_RAW_PATH
    }

    fn stream_start(&mut self, head: &RequestHead<'_>, length: u64) -> Result<Ticket, Response> {
        if head.path == crate::xenapi::IMPORT_RAW_PATH {
            return self.api.import_start(head, length, self.platform);
        }
        upgrade::start(head, length, self.api, self.platform).map(|()| UPGRADE_TICKET)
    }

    fn stream_chunk(&mut self, ticket: Ticket, bytes: &[u8]) -> Result<usize, Response> {
        if ticket == UPGRADE_TICKET {
            return upgrade::chunk(bytes, self.api, self.platform).map(|()| bytes.len());
        }
        self.api.import_chunk(ticket, bytes, self.platform)
    }

    fn stream_end(&mut self, ticket: Ticket) -> Reply {
        if ticket == UPGRADE_TICKET {
            return Reply::Now(upgrade::end(self.api, self.platform));
        }
        self.api.import_end(ticket, self.platform)
    }

    fn stream_abort(&mut self, ticket: Ticket) {
        if ticket == UPGRADE_TICKET {
            upgrade::abort(self.api, self.platform);
        } else {
            self.api.import_abort(ticket, self.platform);
        }
    }

    fn body_chunk(&mut self, ticket: Ticket, max: usize) -> Result<Option<Vec<u8>>, BodyCut> {
        self.api.export_chunk(ticket, max, self.platform)
    }

    fn tunnel_io(
        &mut self,
        ticket: Ticket,
        input: &[u8],
        output: &mut alloc::vec::Vec<u8>,
    ) -> Option<usize> {
        self.api.console_io(ticket, input, output, self.platform)
    }

    fn tunnel_close(&mut self, ticket: Ticket) {
        self.api.console_close(ticket);
    }
}

/// The ticket of the upgrade upload (one runs at a time); the service's
/// tickets count up from 1 and never reach it.
const UPGRADE_TICKET: Ticket = Ticket(u64::MAX);

/// Answers `request`. `health` builds the report only when it is asked for.
pub fn route<'h>(request: &Request<'_>, health: impl FnOnce() -> HealthReport<'h>) -> Response {
    match request.path() {
        "/health" => match request.method() {
            // HEAD gets the same response; the server leaves out the body.
            Method::Get | Method::Head => match health().to_json() {
                Ok(body) => Response::json(Status::OK, body),
                Err(e) => {
                    log::error!("http: cannot serialize the health report: {e}");
                    Response::json_error(Status::INTERNAL_SERVER_ERROR, "health report unavailable")
                }
            },
            _ => Response::json_error(Status::METHOD_NOT_ALLOWED, "method not allowed")
                .with_header("Allow", "GET, HEAD"),
        },
        _ => Response::json_error(Status::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::http::{Limits, Parse, parse_request};
    use crate::platform::SystemInfo;

    fn answer(raw: &[u8]) -> Response {
        let Ok(Parse::Complete { request, .. }) = parse_request(raw, &Limits::default()) else {
            panic!("test request must parse");
        };
        let system = SystemInfo {
            cpus: 2,
            memory_total: 1,
            memory_free: 1,
        };
        route(&request, || {
            HealthReport::new("h", Duration::ZERO, system, None)
        })
    }

    #[test]
    fn health_get_and_head() {
        for raw in [
            &b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let response = answer(raw);
            assert_eq!(response.status(), Status::OK);
            assert_eq!(response.header("content-type"), Some("application/json"));
            assert!(response.body().starts_with(br#"{"status":"ok""#));
        }
        assert_eq!(
            answer(b"GET /health?x=1 HTTP/1.1\r\nHost: h\r\n\r\n").status(),
            Status::OK
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let response = answer(b"POST /health HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(response.status(), Status::METHOD_NOT_ALLOWED);
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
        assert_eq!(response.body(), br#"{"error":"method not allowed"}"#);
    }

    #[test]
    fn anything_else_is_404() {
        for raw in [
            &b"GET /health/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let response = answer(raw);
            assert_eq!(response.status(), Status::NOT_FOUND);
            assert_eq!(response.body(), br#"{"error":"not found"}"#);
        }
    }
}
