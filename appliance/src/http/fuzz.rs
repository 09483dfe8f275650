//! Entry point for the fuzz target (`cargo xtask fuzz`): arbitrary bytes in,
//! the parser's invariants checked. It panics only when an invariant breaks,
//! which is exactly what a fuzzer should find.

use super::request::{Limits, Parse, parse_head, parse_request};
use super::response::Response;

/// Limits small enough that a fuzzer reaches every limit check quickly.
const TIGHT: Limits = Limits {
    max_head_bytes: 256,
    max_headers: 4,
    max_target_bytes: 32,
    max_body_bytes: 64,
};

/// Parses `data` under default and tight limits and checks that:
/// - a complete request consumes at least one byte and at most `data`;
/// - every strictly shorter prefix of it is incomplete (feeding bytes one by
///   one can never produce a different request or error first);
/// - re-parsing exactly the consumed bytes gives the same request;
/// - the head parser agrees with the full parser;
/// - an error always has a response that serializes.
pub fn fuzz_parse(data: &[u8]) {
    for limits in [Limits::default(), TIGHT] {
        check(data, &limits);
    }
}

fn check(data: &[u8], limits: &Limits) {
    match parse_request(data, limits) {
        Ok(Parse::Complete { request, consumed }) => {
            assert!(
                consumed > 0 && consumed <= data.len(),
                "consumed {consumed} of {}",
                data.len()
            );
            let again = parse_request(&data[..consumed], limits);
            assert_eq!(
                again,
                Ok(Parse::Complete {
                    request: request.clone(),
                    consumed
                })
            );
            match parse_head(data, limits) {
                Ok(Some(head)) => assert_eq!(head, request.head),
                other => panic!("head parser disagrees: {other:?}"),
            }
            for cut in prefix_cuts(consumed) {
                assert_eq!(
                    parse_request(&data[..cut], limits),
                    Ok(Parse::Incomplete),
                    "prefix of {cut} bytes"
                );
            }
            // Exercise the accessors.
            let _ = (
                request.keep_alive(),
                request.head.expects_continue(),
                request.method().as_str(),
            );
            let _ = request.headers().iter().count();
        }
        Ok(Parse::Incomplete) => {}
        Err(error) => {
            let response = Response::for_error(&error);
            assert!(response.status().code() >= 400);
            let _ = response.to_bytes(false);
        }
    }
}

/// Every prefix length for short requests; a spread of them for long ones,
/// so one fuzz input stays cheap.
fn prefix_cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = if len <= 512 { 1 } else { len / 256 };
    (0..len).step_by(step).chain(len.checked_sub(1))
}
