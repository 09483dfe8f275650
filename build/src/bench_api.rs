//! `cargo xtask bench api`: the hosted XenAPI service (`keel-hosted`, release
//! build) under load over one keep-alive connection. 1000 VMs are created
//! through the API (`VM.create`), then `host.get_record` and
//! `VM.get_all_records` are timed from a std-only Rust load generator (XML-RPC
//! and JSON-RPC) and from the official Python SDK (XML-RPC). Prints
//! `BENCH api-<call>-<client> p50_us=.. p99_us=.. calls_per_s=..`; there is no
//! peer server on this machine, so the figures are recorded in the README.
//! Then HTTPS against plain HTTP (`build/scripts/bench_api_tls.py`):
//! `BENCH api-connect-{plain,tls13,tls12}` (TCP connect, plus a full
//! handshake) and `BENCH api-host-get-record-{plain,tls}-jsonrpc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qemu_tests::run_bounded;

use crate::cmd::{Context, cargo, describe, run_status};
use crate::{Error, Paths, Result};

const VMS: usize = 1000;
const HOST_CALLS: usize = 3000;
const RECORDS_CALLS: usize = 20;
/// The SDK parses XML in Python: fewer calls keep the run short.
const SDK_HOST_CALLS: usize = 1000;
const SDK_RECORDS_CALLS: usize = 5;
const PASSWORD: &str = "keel-bench-password";
/// Any single call slower than this means the server is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const SDK_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections opened (and handshakes made) per TLS figure.
const TLS_CONNECTS: usize = 200;
const TLS_CALLS: usize = 2000;

pub fn api(paths: &Paths) -> Result<()> {
    let mut build = cargo(paths);
    build.args([
        "build",
        "--release",
        "-p",
        "appliance",
        "--features",
        "hosted",
        "--bin",
        "keel-hosted",
    ]);
    println!("{}", describe(&build));
    run_status(&mut build)?;
    let binary = paths.cargo_target.join("release").join("keel-hosted");
    let server = Hosted::start(&binary)?;
    println!("bench api: keel-hosted (release) at {}", server.url());

    let mut rpc = Client::connect(server.port)?;
    let session = rpc.login()?;
    let host = rpc.first_ref(&session, "host.get_all")?;
    let start = Instant::now();
    for i in 0..VMS {
        rpc.create_vm(&session, i)?;
    }
    let created = start.elapsed();
    println!(
        "BENCH api-vm-create-rust-jsonrpc vms={VMS} seconds={:.3} calls_per_s={:.0}",
        created.as_secs_f64(),
        VMS as f64 / created.as_secs_f64()
    );

    for wire in [Wire::Xml, Wire::Json] {
        let name = wire.name();
        let host_call = |rpc: &mut Client| rpc.call(wire, "host.get_record", &[&session, &host]);
        let host_ok = |body: &[u8]| expect(body, "software_version", 1, "host.get_record");
        let records_call = |rpc: &mut Client| rpc.call(wire, "VM.get_all_records", &[&session]);
        let records_ok = |body: &[u8]| expect(body, "bench-vm-", VMS, "VM.get_all_records");
        timed(&mut rpc, 50, host_call, host_ok)?;
        report(
            &format!("api-host-get-record-rust-{name}"),
            &timed(&mut rpc, HOST_CALLS, host_call, host_ok)?,
        );
        timed(&mut rpc, 2, records_call, records_ok)?;
        let sizes = rpc.last_body_len;
        report(
            &format!("api-vm-get-all-records-rust-{name}"),
            &timed(&mut rpc, RECORDS_CALLS, records_call, records_ok)?,
        );
        println!("bench api: VM.get_all_records over {name} is {sizes} bytes");
    }
    if rpc.reconnects > 0 {
        return Err(Error::new(format!(
            "bench api: the server closed the keep-alive connection {} times",
            rpc.reconnects
        )));
    }

    let dir = paths.target.join("bench").join("api");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let mut sdk = Command::new("python3");
    sdk.current_dir(&paths.root).args([
        "build/scripts/bench_api_sdk.py",
        &server.url(),
        PASSWORD,
        &SDK_HOST_CALLS.to_string(),
        &SDK_RECORDS_CALLS.to_string(),
        &VMS.to_string(),
    ]);
    println!("{}", describe(&sdk));
    let finished = run_bounded(sdk, SDK_TIMEOUT, &dir, "sdk")?;
    if !finished.status.success() {
        return Err(Error::new(format!(
            "bench api: the Python SDK run failed ({}):\n{}",
            finished.status,
            finished.output()
        )));
    }
    for (key, name) in [
        ("host_get_record", "api-host-get-record-python-sdk"),
        ("vm_get_all_records", "api-vm-get-all-records-python-sdk"),
    ] {
        let durations = json_list(&finished.stdout, key).ok_or_else(|| {
            Error::new(format!(
                "bench api: no {key:?} list in the SDK's output: {}",
                finished.output()
            ))
        })?;
        report(name, &durations);
    }

    let mut tls = Command::new("python3");
    tls.current_dir(&paths.root).args([
        "build/scripts/bench_api_tls.py",
        &server.url(),
        &server.tls_url(),
        PASSWORD,
        &TLS_CONNECTS.to_string(),
        &TLS_CALLS.to_string(),
    ]);
    println!("{}", describe(&tls));
    let finished = run_bounded(tls, SDK_TIMEOUT, &dir, "tls")?;
    if !finished.status.success() {
        return Err(Error::new(format!(
            "bench api: the TLS run failed ({}):\n{}",
            finished.status,
            finished.output()
        )));
    }
    for (key, name) in [
        ("connect_plain", "api-connect-plain"),
        ("connect_tls13", "api-connect-tls13"),
        ("connect_tls12", "api-connect-tls12"),
        ("call_plain", "api-host-get-record-plain-jsonrpc"),
        ("call_tls", "api-host-get-record-tls-jsonrpc"),
    ] {
        let durations = json_list(&finished.stdout, key).ok_or_else(|| {
            Error::new(format!(
                "bench api: no {key:?} list in the TLS run's output: {}",
                finished.output()
            ))
        })?;
        report(name, &durations);
    }
    Ok(())
}

/// Runs `call` `n` times; returns each call's duration in microseconds.
/// Each answer is checked with `check` after its clock stopped (the check
/// runs in xtask's debug build and would dwarf the call).
fn timed(
    rpc: &mut Client,
    n: usize,
    mut call: impl FnMut(&mut Client) -> Result<Vec<u8>>,
    check: impl Fn(&[u8]) -> Result<()>,
) -> Result<Vec<f64>> {
    let mut durations = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let body = call(rpc)?;
        durations.push(start.elapsed().as_secs_f64() * 1e6);
        check(&body)?;
    }
    Ok(durations)
}

/// The `p`-th percentile by nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, durations: &[f64]) {
    let mut sorted = durations.to_vec();
    sorted.sort_by(f64::total_cmp);
    let total: f64 = durations.iter().sum();
    println!(
        "BENCH {name} calls={} p50_us={:.0} p99_us={:.0} calls_per_s={:.1}",
        durations.len(),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        durations.len() as f64 / (total / 1e6)
    );
}

/// Fails unless `needle` occurs exactly `count` times in `body` (a check
/// that the answer is the whole answer, not an error).
fn expect(body: &[u8], needle: &str, count: usize, call: &str) -> Result<()> {
    let found = body
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count();
    if found == count {
        Ok(())
    } else {
        Err(Error::new(format!(
            "bench api: {call} answered {} bytes with {found} of {count} {needle:?}: {}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )))
    }
}

/// The numbers in the JSON list under `key` in `text` (the SDK script's output).
fn json_list(text: &str, key: &str) -> Option<Vec<f64>> {
    let at = text.find(&format!("\"{key}\""))?;
    let open = at + text[at..].find('[')?;
    let close = open + text[open..].find(']')?;
    text[open + 1..close]
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect()
}

/// keel-hosted, killed by its pid when dropped.
struct Hosted {
    child: Child,
    port: u16,
    tls_port: u16,
}

impl Hosted {
    fn start(binary: &std::path::Path) -> Result<Hosted> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"])
            .args(["--root-password", PASSWORD])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take();
        let mut server = Hosted {
            child,
            port: 0,
            tls_port: 0,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The http line, then the https one.
            let mut lines = String::new();
            if let Some(out) = stdout {
                let mut out = BufReader::new(out);
                let _ = out.read_line(&mut lines);
                let _ = out.read_line(&mut lines);
            }
            let _ = tx.send(lines);
        });
        let lines = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| Error::new("keel-hosted did not report its address within 30 s"))?;
        let port = |scheme: &str| {
            lines
                .lines()
                .find(|l| l.contains(scheme))
                .and_then(|l| l.trim().trim_end_matches('/').rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::new(format!(
                        "keel-hosted said {lines:?}, not its {scheme} address"
                    ))
                })
        };
        server.port = port("http://")?;
        server.tls_port = port("https://")?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn tls_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.tls_port)
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
enum Wire {
    Xml,
    Json,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Xml => "xmlrpc",
            Wire::Json => "jsonrpc",
        }
    }
}

/// A keep-alive HTTP/1.1 XenAPI client over one TCP connection (std only).
struct Client {
    port: u16,
    stream: TcpStream,
    /// Times the server closed the connection and it was reopened.
    reconnects: usize,
    last_body_len: usize,
}

impl Client {
    fn connect(port: u16) -> Result<Client> {
        Ok(Client {
            port,
            stream: open(port)?,
            reconnects: 0,
            last_body_len: 0,
        })
    }

    fn login(&mut self) -> Result<String> {
        let body = self.call(
            Wire::Json,
            "session.login_with_password",
            &["root", PASSWORD],
        )?;
        json_result_string(&body)
            .ok_or_else(|| Error::new(format!("login failed: {}", String::from_utf8_lossy(&body))))
    }

    fn first_ref(&mut self, session: &str, method: &str) -> Result<String> {
        let body = self.call(Wire::Json, method, &[session])?;
        let text = String::from_utf8_lossy(&body);
        let at = text
            .find("OpaqueRef:")
            .ok_or_else(|| Error::new(format!("{method}: {text}")))?;
        Ok(text[at..].chars().take_while(|c| *c != '"').collect())
    }

    fn create_vm(&mut self, session: &str, i: usize) -> Result<()> {
        let record = format!(
            r#"{{"name_label":"bench-vm-{i}","name_description":"created by cargo xtask bench api","memory_static_min":268435456,"memory_dynamic_min":268435456,"memory_dynamic_max":536870912,"memory_static_max":536870912,"VCPUs_max":1,"VCPUs_at_startup":1,"other_config":{{"bench":"{i}"}}}}"#
        );
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"VM.create","params":["{session}",{record}]}}"#
        );
        let body = self.post("/jsonrpc", "application/json", request.as_bytes())?;
        if json_result_string(&body).is_some_and(|r| r.starts_with("OpaqueRef:")) {
            Ok(())
        } else {
            Err(Error::new(format!(
                "VM.create failed: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// A call with string arguments.
    fn call(&mut self, wire: Wire, method: &str, args: &[&str]) -> Result<Vec<u8>> {
        match wire {
            Wire::Json => {
                let params: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":[{}]}}"#,
                    params.join(",")
                );
                self.post("/jsonrpc", "application/json", body.as_bytes())
            }
            Wire::Xml => {
                let params: String = args
                    .iter()
                    .map(|a| format!("<param><value><string>{a}</string></value></param>"))
                    .collect();
                let body = format!(
                    "<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
                );
                self.post("/RPC2", "text/xml", body.as_bytes())
            }
        }
    }

    fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream
            .write_all(&request)
            .context(|| "sending a request".into())?;
        let (head, body) = read_response(&mut self.stream)?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(Error::new(format!("{path}: {head}")));
        }
        if head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close"))
        {
            self.reconnects += 1;
            self.stream = open(self.port)?;
        }
        self.last_body_len = body.len();
        Ok(body)
    }
}

fn open(port: u16) -> Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .context(|| "setting a read timeout".into())?;
    stream
        .set_nodelay(true)
        .context(|| "setting TCP_NODELAY".into())?;
    Ok(stream)
}

/// Reads one response with a `Content-Length` body: its head and body.
fn read_response(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream
            .read(&mut chunk)
            .context(|| "reading a response head".into())?;
        if n == 0 {
            return Err(Error::new("the server closed the connection mid-response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| Error::new(format!("no Content-Length in {head:?}")))?;
    let mut body = buf.split_off(head_end);
    body.reserve(length.saturating_sub(body.len()));
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .context(|| "reading a response body".into())?;
        if n == 0 {
            return Err(Error::new("the server closed the connection mid-body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok((head, body))
}

/// The string `result` of a JSON-RPC answer.
fn json_result_string(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find(r#""result":""#)? + r#""result":""#.len();
    Some(text[at..].chars().take_while(|c| *c != '"').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn reads_the_sdk_output() {
        let out = r#"{"host_get_record": [1.5, 2.0], "vm_get_all_records": [100.25]}"#;
        assert_eq!(json_list(out, "host_get_record"), Some(vec![1.5, 2.0]));
        assert_eq!(json_list(out, "vm_get_all_records"), Some(vec![100.25]));
        assert_eq!(json_list(out, "missing"), None);
        assert_eq!(
            json_list(r#"{"host_get_record": [x]}"#, "host_get_record"),
            None
        );
    }

    #[test]
    fn json_results_and_counts() {
        let body = br#"{"jsonrpc":"2.0","result":"OpaqueRef:abc","id":1}"#;
        assert_eq!(json_result_string(body).as_deref(), Some("OpaqueRef:abc"));
        assert!(expect(b"a-b-a-b", "a-", 2, "x").is_ok());
        assert!(expect(b"a-b", "a-", 2, "x").is_err());
    }
}
