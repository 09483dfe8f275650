//! The whole appliance on one end of an in-memory wire, with a simulated
//! clock for a platform, fetched by a smoltcp client.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use host_config::Management;
use netstack::MacAddress;
use netstack::testing::{SimClock, Wire, WireNic};

use super::*;
use crate::platform::SystemInfo;
use crate::test_client::TestClient;

const HOST_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// A platform whose clock is the test's and whose idle just lets time pass.
struct TestPlatform {
    clock: SimClock,
    idles: Vec<Option<Duration>>,
}

impl Platform for TestPlatform {
    fn now(&self) -> Duration {
        to_duration(self.clock.now())
    }

    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            cpus: 4,
            memory_total: 2 << 30,
            memory_free: 1 << 30,
        }
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = 0x5a ^ i as u8);
    }

    fn idle(&mut self, deadline: Option<Duration>) {
        self.idles.push(deadline);
        if let Some(deadline) = deadline {
            self.clock.advance_to(to_instant(deadline));
        }
    }
}

fn static_config() -> HostConfig {
    HostConfig {
        hostname: String::from("keel-test"),
        root_password_hash: None,
        management: Management {
            interface: String::from("eth0"),
            ip: IpMode::Static(StaticIpv4 {
                address: [10, 0, 2, 15],
                prefix_len: 24,
                gateway: Some([10, 0, 2, 2]),
                dns: vec![[10, 0, 2, 3]],
            }),
            ..Management::default()
        },
        ..HostConfig::default()
    }
}

fn setup(config: HostConfig) -> (Appliance<TestPlatform, WireNic>, TestClient) {
    let clock = SimClock::new();
    clock.advance(smoltcp::time::Duration::from_millis(12_345));
    let wire = Wire::default();
    let (host_nic, client_nic) = wire.pair(
        MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        MacAddress([2, 0, 0, 2, 0, 2]),
    );
    let platform = TestPlatform {
        clock: clock.clone(),
        idles: Vec::new(),
    };
    let appliance = Appliance::new(platform, host_nic, config);
    let mut client = TestClient::new(client_nic, CLIENT_IP, &clock);
    client.connect((HOST_IP, HTTP_PORT));
    (appliance, client)
}

#[test]
fn serves_health_over_the_management_interface() {
    let (mut appliance, mut client) = setup(static_config());
    assert_eq!(appliance.management().name(), "eth0");
    assert_eq!(
        appliance.management().ipv4_cidr(),
        Some(Ipv4Cidr::new(HOST_IP, 24))
    );
    assert_eq!(
        appliance.management().gateway(),
        Some(Ipv4Address::new(10, 0, 2, 2))
    );
    let mut side = |_| {
        appliance.poll();
    };

    let response = client.exchange(
        b"GET /health HTTP/1.1\r\nHost: 10.0.2.15\r\n\r\n",
        &mut side,
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let health = response.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "0.1.0");
    assert_eq!(health["hostname"], "keel-test");
    assert_eq!(health["cpus"], 4);
    assert_eq!(health["memory"]["total_bytes"], 2u64 << 30);
    assert_eq!(health["memory"]["free_bytes"], 1u64 << 30);
    assert_eq!(health["management_ip"], "10.0.2.15");
    let uptime = health["uptime_seconds"].as_f64().unwrap();
    assert!((12.345..13.0).contains(&uptime), "{uptime}");

    // Same connection: HEAD, a wrong method and an unknown path.
    let head = client.exchange(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    let post = client.exchange(
        b"POST /health HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        &mut side,
    );
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
    let missing = client.exchange(b"GET /pool HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, br#"{"error":"not found"}"#);
}

#[test]
fn run_loop_idles_with_a_capped_deadline() {
    let (mut appliance, _client) = setup(static_config());
    let start = appliance.platform().now();
    // Nothing is scheduled on an idle static interface with only listening sockets.
    assert_eq!(appliance.poll(), None);
    let deadline = idle_until(start, None).unwrap();
    assert_eq!(deadline, start + MAX_IDLE);
    appliance.platform_mut().idle(Some(deadline));
    assert_eq!(appliance.platform().now(), start + MAX_IDLE);
    assert_eq!(appliance.platform().idles, vec![Some(start + MAX_IDLE)]);
}

#[test]
fn idle_deadline_rules() {
    let now = Duration::from_secs(10);
    assert_eq!(idle_until(now, None), Some(now + MAX_IDLE));
    assert_eq!(
        idle_until(now, Some(now + Duration::from_millis(5))),
        Some(now + Duration::from_millis(5))
    );
    assert_eq!(
        idle_until(now, Some(now + Duration::from_secs(30))),
        Some(now + MAX_IDLE)
    );
    assert_eq!(
        idle_until(now, Some(now)),
        None,
        "work due now: poll again at once"
    );
    assert_eq!(idle_until(now, Some(Duration::ZERO)), None);
}

#[test]
fn dhcp_config_starts_without_an_address() {
    let (appliance, _client) = setup(HostConfig::default());
    assert_eq!(appliance.management().ipv4_cidr(), None);
    assert_eq!(appliance.hostname(), "keel");
}

#[test]
fn host_config_ip_modes_convert() {
    assert_eq!(ip_config(&IpMode::Dhcp), IpConfig::Dhcp);
    let IpMode::Static(ref s) = static_config().management.ip else {
        unreachable!()
    };
    assert_eq!(
        ip_config(&IpMode::Static(s.clone())),
        IpConfig::Static {
            address: Ipv4Cidr::new(HOST_IP, 24),
            gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            dns: vec![Ipv4Address::new(10, 0, 2, 3)],
        }
    );
    for bad in [0, 33, 255] {
        let invalid = StaticIpv4 {
            prefix_len: bad,
            ..s.clone()
        };
        assert_eq!(ip_config(&IpMode::Static(invalid)), IpConfig::Dhcp);
    }
}

#[test]
fn clock_conversions_saturate() {
    assert_eq!(
        to_instant(Duration::from_millis(1500)),
        Instant::from_millis(1500)
    );
    assert_eq!(to_instant(Duration::MAX), Instant::from_micros(i64::MAX));
    assert_eq!(to_duration(Instant::from_millis(-5)), Duration::ZERO);
    assert_eq!(
        to_duration(Instant::from_millis(2)),
        Duration::from_millis(2)
    );
}

#[test]
fn serves_the_xenapi_next_to_health() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let (mut appliance, mut client) = setup(config);
    let mut side = |_| {
        appliance.poll();
    };
    let body = br#"{"id":0,"jsonrpc":"2.0","method":"session.login_with_password","params":["root","pw"]}"#;
    let mut request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let login = client.exchange(&request, &mut side);
    assert_eq!(login.status, 200);
    assert_eq!(login.header("content-type"), Some("application/json"));
    let session = login.json()["result"].as_str().unwrap().to_string();
    assert!(session.starts_with("OpaqueRef:"));

    let call = format!(
        "<?xml version='1.0'?><methodCall><methodName>PIF.get_all_records</methodName><params><param><value><string>{session}</string></value></param></params></methodCall>"
    );
    let request = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{call}",
        call.len()
    );
    let pifs = client.exchange(request.as_bytes(), &mut side);
    assert_eq!(pifs.header("content-type"), Some("text/xml"));
    let text = String::from_utf8(pifs.body).unwrap();
    assert!(
        text.contains("<name>IP</name><value>10.0.2.15</value>"),
        "{text}"
    );
    assert!(
        text.contains("<name>MAC</name><value>52:54:00:12:34:56</value>"),
        "{text}"
    );

    // /health is unchanged on the same connection.
    let health = client.exchange(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn without_a_password_no_login_succeeds() {
    let (mut appliance, mut client) = setup(static_config());
    let mut side = |_| {
        appliance.poll();
    };
    let body = br#"{"id":1,"method":"session.login_with_password","params":["root",""]}"#;
    let mut request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let r = client.exchange(&request, &mut side).json();
    assert_eq!(r["error"][0], "SESSION_AUTHENTICATION_FAILED");
}

fn json_call(method: &str, params: serde_json::Value) -> Vec<u8> {
    let body = serde_json::json!({"id": 1, "jsonrpc": "2.0", "method": method, "params": params})
        .to_string();
    format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn event_from_waits_then_times_out_through_the_poll_loop() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let (mut appliance, mut client) = setup(config);
    let login = client.exchange(
        &json_call(
            "session.login_with_password",
            serde_json::json!(["root", "pw"]),
        ),
        &mut |_| {
            appliance.poll();
        },
    );
    let session = login.json()["result"].as_str().unwrap().to_string();
    let initial = client.exchange(
        &json_call(
            "event.from",
            serde_json::json!([session, ["pool"], "", 0.0]),
        ),
        &mut |_| {
            appliance.poll();
        },
    );
    let token = initial.json()["result"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Nothing changes: the call waits (the loop keeps running) for 3 s.
    let asked = appliance.platform().now();
    client.send(&json_call(
        "event.from",
        serde_json::json!([session, ["pool"], token, 3.0]),
    ));
    client.run_for(smoltcp::time::Duration::from_secs(2), &mut |_| {
        appliance.poll();
    });
    assert!(client.inbox.is_empty(), "answered before anything changed");
    // The loop wakes for the waiter's deadline.
    let due = appliance.api().next_deadline().expect("a waiting call");
    assert!(due >= asked + Duration::from_secs(3) && due < asked + Duration::from_millis(3020));
    assert!(appliance.poll().is_some_and(|next| next <= due));
    let answer = client.response(false, &mut |_| {
        appliance.poll();
    });
    let waited = appliance.platform().now() - asked;
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "{waited:?}"
    );
    assert_eq!(answer.json()["result"]["events"], serde_json::json!([]));
    assert_ne!(answer.json()["result"]["token"], serde_json::json!(null));
}
