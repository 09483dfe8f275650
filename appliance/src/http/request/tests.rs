//! Byte-array tests of the request parser.

use super::*;
use crate::http::fuzz::fuzz_parse;

fn limits() -> Limits {
    Limits::default()
}

fn complete(buf: &[u8]) -> (Request<'_>, usize) {
    match parse_request(buf, &limits()) {
        Ok(Parse::Complete { request, consumed }) => (request, consumed),
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> HttpError {
    match parse_request(buf, &limits()) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn status(buf: &[u8]) -> u16 {
    error(buf).status().code()
}

const GET: &[u8] =
    b"GET /health?verbose=1 HTTP/1.1\r\nHost: 10.0.2.15\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";

#[test]
fn simple_get() {
    let (request, consumed) = complete(GET);
    assert_eq!(consumed, GET.len());
    assert_eq!(request.method(), Method::Get);
    assert_eq!(request.head.target, "/health?verbose=1");
    assert_eq!(request.path(), "/health");
    assert_eq!(request.query(), Some("verbose=1"));
    assert_eq!(request.version(), Version::Http11);
    assert_eq!(request.headers().len(), 3);
    assert_eq!(request.headers().get("host"), Some(&b"10.0.2.15"[..]));
    assert_eq!(request.headers().get_str("USER-AGENT"), Some("test"));
    assert!(request.body.is_empty());
    assert!(request.keep_alive());
}

#[test]
fn post_with_content_length_body() {
    let buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
    let (request, consumed) = complete(buf);
    assert_eq!(request.method(), Method::Post);
    assert_eq!(&request.body[..], b"hello");
    assert_eq!(&buf[consumed..], b"EXTRA");
    assert!(matches!(request.body, Cow::Borrowed(_)));
}

#[test]
fn chunked_body_is_decoded() {
    let buf = b"POST /RPC2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<?xml\r\n3\r\n ?>\r\n0\r\n\r\n";
    let (request, consumed) = complete(buf);
    assert_eq!(&request.body[..], b"<?xml ?>");
    assert_eq!(consumed, buf.len());
}

#[test]
fn pipelined_pair() {
    let mut buf = GET.to_vec();
    buf.extend_from_slice(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    let (first, consumed) = complete(&buf);
    assert_eq!(first.path(), "/health");
    let (second, rest) = complete(&buf[consumed..]);
    assert_eq!(second.path(), "/x");
    assert_eq!(&second.body[..], b"ok");
    assert!(!second.keep_alive());
    assert_eq!(consumed + rest, buf.len());
}

/// Feeding a request one byte at a time: every prefix is incomplete, the
/// whole gives the same request as parsing it at once.
#[test]
fn split_at_every_offset() {
    let requests: [&[u8]; 4] = [
        GET,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        b"\r\nGET / HTTP/1.0\nConnection: keep-alive\n\n",
    ];
    for full in requests {
        let (expected, consumed) = complete(full);
        assert_eq!(consumed, full.len());
        for cut in 0..full.len() {
            assert_eq!(
                parse_request(&full[..cut], &limits()),
                Ok(Parse::Incomplete),
                "{full:?} cut at {cut}"
            );
        }
        // Bytes arriving in two pieces at every split point, re-parsed from the accumulated buffer.
        for cut in 0..=full.len() {
            let mut acc = full[..cut].to_vec();
            acc.extend_from_slice(&full[cut..]);
            assert_eq!(complete(&acc).0, expected);
        }
    }
}

/// A request the parser rejects is rejected with the same status whatever
/// prefix of it has arrived: early rejection never disagrees with late rejection.
#[test]
fn errors_do_not_depend_on_how_bytes_arrive() {
    let bad: [&[u8]; 6] = [
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
    ];
    for full in bad {
        let expected = match parse_request(full, &limits()) {
            Err(e) => e.status(),
            other => panic!("{full:?} should fail, got {other:?}"),
        };
        for cut in 0..full.len() {
            match parse_request(&full[..cut], &limits()) {
                Ok(Parse::Incomplete) => {}
                Err(e) => assert_eq!(e.status(), expected, "{full:?} cut at {cut}"),
                Ok(complete) => panic!("{full:?} cut at {cut} parsed as {complete:?}"),
            }
        }
    }
}

#[test]
fn binary_garbage_is_refused_on_its_first_byte() {
    // A TLS ClientHello sent to the plain-HTTP port.
    assert_eq!(
        parse_request(b"\x16", &limits()),
        Err(HttpError::BadRequestLine)
    );
}

#[test]
fn keep_alive_semantics() {
    let keep = |buf: &[u8]| complete(buf).0.keep_alive();
    assert!(keep(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"
    ));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

#[test]
fn bare_lf_lines_are_accepted_but_bare_cr_is_not() {
    let (request, _) = complete(b"GET /x HTTP/1.1\nHost: h\n\n");
    assert_eq!(request.path(), "/x");
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
}

#[test]
fn leading_empty_lines_are_skipped() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let (request, consumed) = complete(buf);
    assert_eq!(request.path(), "/");
    assert_eq!(consumed, buf.len());
    assert_eq!(parse_request(b"\r", &limits()), Ok(Parse::Incomplete));
}

#[test]
fn bad_request_lines() {
    for line in [
        &b"GET\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / HTTX/1.1\r\n\r\n",
        b"GET / http/1.1\r\n\r\n",
        b"GET / HTTP/1.10\r\n\r\n",
        b"GET relative HTTP/1.1\r\n\r\n",
        b"GET /#frag HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
    ] {
        assert_eq!(status(line), 400, "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
    let long_method = [&[b'A'; MAX_METHOD_LEN + 1][..], b" / HTTP/1.1\r\n\r\n"].concat();
    assert_eq!(status(&long_method), 400);
}

#[test]
fn target_forms() {
    let (r, _) = complete(b"GET http://10.0.2.15:80/health?x HTTP/1.1\r\nHost: 10.0.2.15\r\n\r\n");
    assert_eq!((r.path(), r.query()), ("/health", Some("x")));
    let (r, _) = complete(b"GET HTTP://host HTTP/1.1\r\nHost: host\r\n\r\n");
    assert_eq!((r.path(), r.query()), ("/", None));
    let (r, _) = complete(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((r.method(), r.path()), (Method::Options, "*"));
    let (r, _) = complete(b"PATCH /?a=1?b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (r.method(), r.path(), r.query()),
        (Method::Other("PATCH"), "/", Some("a=1?b"))
    );
    assert_eq!(r.method().as_str(), "PATCH");
    let (r, _) = complete(b"get / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        r.method(),
        Method::Other("get"),
        "methods are case-sensitive"
    );
}

#[test]
fn target_too_long_is_414_even_before_the_line_ends() {
    let limit = limits().max_target_bytes;
    let long = [
        &b"GET /"[..],
        &vec![b'a'; limit][..],
        b" HTTP/1.1\r\nHost: h\r\n\r\n",
    ]
    .concat();
    assert_eq!(error(&long), HttpError::TargetTooLong { limit });
    assert_eq!(
        error(&long[..limit + 10]),
        HttpError::TargetTooLong { limit }
    );
}

#[test]
fn oversize_header_block_is_431() {
    let limit = limits().max_head_bytes;
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    buf.extend(std::iter::repeat_n(b'a', limit));
    // Refused as soon as the limit is crossed, without waiting for the end of the line.
    assert_eq!(error(&buf), HttpError::HeaderBlockTooLarge { limit });
    buf.extend_from_slice(b"\r\n\r\n");
    assert_eq!(error(&buf), HttpError::HeaderBlockTooLarge { limit });
    assert_eq!(status(&buf), 431);

    // Exactly at the limit is fine.
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: \r\n\r\n";
    let mut exact = head[..head.len() - 4].to_vec();
    exact.extend(std::iter::repeat_n(b'p', limit - head.len()));
    exact.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exact.len(), limit);
    complete(&exact);
}

#[test]
fn too_many_headers_is_431() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..limits().max_headers {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(error(&buf), HttpError::TooManyHeaders { limit: 64 });
}

#[test]
fn oversize_body_is_413_before_it_arrives() {
    let limit = limits().max_body_bytes;
    let buf = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    assert_eq!(error(buf.as_bytes()), HttpError::BodyTooLarge { limit });
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        413
    );
    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n";
    assert_eq!(status(chunked), 413);
    // A custom limit applies.
    let small = Limits {
        max_body_bytes: 4,
        ..limits()
    };
    assert_eq!(
        parse_request(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            &small
        ),
        Err(HttpError::BodyTooLarge { limit: 4 })
    );
}

#[test]
fn header_syntax_errors() {
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        HttpError::BadHeader
    );
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"),
        HttpError::BadHeader
    );
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n"),
        HttpError::BadHeader
    );
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n"),
        HttpError::BadHeader
    );
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n continued\r\n\r\n"),
        HttpError::ObsoleteLineFolding
    );
    // obs-text in values is allowed and kept as bytes.
    let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9 \t\r\n\r\n");
    assert_eq!(r.headers().get("x-name"), Some("café".as_bytes()));
}

#[test]
fn host_rules() {
    assert_eq!(error(b"GET / HTTP/1.1\r\n\r\n"), HttpError::BadHost);
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        HttpError::BadHost
    );
    assert_eq!(
        error(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        HttpError::BadHost
    );
    complete(b"GET / HTTP/1.0\r\n\r\n");
}

#[test]
fn framing_errors() {
    let both =
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(error(both), HttpError::AmbiguousFraming);
    assert_eq!(
        error(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::AmbiguousFraming
    );
    let te = |v: &str| {
        error(format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n").as_bytes())
    };
    assert_eq!(te("gzip, chunked"), HttpError::UnsupportedTransferCoding);
    assert_eq!(te("gzip, chunked").status().code(), 501);
    assert_eq!(te("chunked, gzip"), HttpError::BadTransferEncoding);
    assert_eq!(te("chunked, chunked"), HttpError::BadTransferEncoding);
    assert_eq!(te(""), HttpError::BadTransferEncoding);
    let cl = |v: &str| {
        let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\nabc");
        parse_request(buf.as_bytes(), &limits()).map(|p| matches!(p, Parse::Complete { .. }))
    };
    assert_eq!(cl("+3"), Err(HttpError::BadContentLength));
    assert_eq!(cl("3, 4"), Err(HttpError::BadContentLength));
    assert_eq!(cl("-1"), Err(HttpError::BadContentLength));
    assert_eq!(cl("3, 3"), Ok(true));
    assert_eq!(cl("0003"), Ok(true));
}

#[test]
fn expect_continue_is_visible_in_the_head() {
    let buf = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(parse_request(buf, &limits()), Ok(Parse::Incomplete));
    let head = parse_head(buf, &limits()).unwrap().unwrap();
    assert!(head.expects_continue());
    assert_eq!(head.len, buf.len());
}

/// Random mutations of valid requests through the fuzz entry point: nothing
/// panics and every invariant it checks holds.
#[test]
fn fuzz_smoke() {
    let seeds: [&[u8]; 5] = [
        GET,
        b"POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\n\n",
        b"",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for seed in seeds {
        fuzz_parse(seed);
        for _ in 0..3000 {
            let mut input = seed.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let pos = if input.is_empty() {
                    0
                } else {
                    (r as usize >> 8) % input.len()
                };
                match r % 4 {
                    0 if !input.is_empty() => input[pos] = (r >> 40) as u8,
                    1 => input.insert(pos, b"\r\n :;,0aZ\x00\x7f\xff"[(r >> 32) as usize % 12]),
                    2 if !input.is_empty() => {
                        input.remove(pos);
                    }
                    _ => input.truncate(pos),
                }
            }
            fuzz_parse(&input);
        }
    }
}
