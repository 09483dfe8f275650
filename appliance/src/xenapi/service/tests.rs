//! The service end to end through HTTP requests, on a fake platform.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::http::{Limits, Parse, parse_request};
use crate::platform::SystemInfo;
use crate::xenapi::host::ManagementFacts;

struct FakePlatform {
    now: Duration,
    counter: u64,
    /// A fake hypervisor: guests by id, `None` for a hosted-style platform.
    hv: Option<FakeHv>,
}

#[derive(Default)]
struct FakeHv {
    guests: BTreeMap<u64, (crate::platform::VmStart, crate::platform::VmStatus)>,
    /// The guest obeys the power button (powers off at once).
    obeys_button: bool,
    console_in: Vec<u8>,
}

impl Platform for FakePlatform {
    fn now(&self) -> Duration {
        self.now
    }
    fn system_info(&self) -> SystemInfo {
        SystemInfo {
            cpus: 4,
            memory_total: 2 << 30,
            memory_free: 1 << 30,
        }
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        self.counter += 1;
        let bytes = self.counter.to_le_bytes();
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = bytes[i % 8] ^ (i as u8));
    }
    fn idle(&mut self, _deadline: Option<Duration>) {}
    fn vm_start(
        &mut self,
        spec: crate::platform::VmStart,
    ) -> Result<crate::platform::VmId, crate::platform::VmFailure> {
        use crate::platform::{BootSource, VmFailure, VmId, VmStatus};
        let Some(hv) = self.hv.as_mut() else {
            return Err(VmFailure::NoHypervisor);
        };
        if spec.kernel != BootSource::BootFile("debian/vmlinuz".into()) {
            return Err(VmFailure::Boot("no boot file".into()));
        }
        if spec.memory_bytes > 1 << 30 {
            return Err(VmFailure::NoMemory {
                needed: spec.memory_bytes,
                available: 1 << 30,
            });
        }
        let id = hv.guests.len() as u64 + 1;
        let paused = spec.paused;
        hv.guests.insert(
            id,
            (
                spec,
                VmStatus::Running {
                    paused,
                    restarts: 0,
                },
            ),
        );
        Ok(VmId(id))
    }
    fn vm_status(&self, id: crate::platform::VmId) -> Option<crate::platform::VmStatus> {
        self.hv.as_ref()?.guests.get(&id.0).map(|g| g.1.clone())
    }
    fn vm_hard_stop(&mut self, id: crate::platform::VmId) -> bool {
        self.set_status(id, crate::platform::VmStatus::Halted)
    }
    fn vm_power_button(&mut self, id: crate::platform::VmId) -> bool {
        let obeys = self.hv.as_ref().is_some_and(|h| h.obeys_button);
        if obeys {
            self.set_status(id, crate::platform::VmStatus::Halted)
        } else {
            self.vm_status(id).is_some()
        }
    }
    fn vm_set_paused(&mut self, id: crate::platform::VmId, paused: bool) -> bool {
        self.set_status(
            id,
            crate::platform::VmStatus::Running {
                paused,
                restarts: 0,
            },
        )
    }
    fn vm_console_read(&self, id: crate::platform::VmId, from: u64) -> Option<(Vec<u8>, u64)> {
        // The guest wrote "boot ok\n" then echoes what it was sent.
        self.vm_status(id)?;
        let mut all = b"boot ok\n".to_vec();
        all.extend_from_slice(&self.hv.as_ref()?.console_in);
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
        Some((all[from..].to_vec(), all.len() as u64))
    }
    fn vm_console_write(&mut self, _id: crate::platform::VmId, bytes: &[u8]) -> usize {
        self.hv.as_mut().map_or(0, |h| {
            h.console_in.extend_from_slice(bytes);
            bytes.len()
        })
    }
}

impl FakePlatform {
    fn set_status(&mut self, id: crate::platform::VmId, to: crate::platform::VmStatus) -> bool {
        let Some(g) = self.hv.as_mut().and_then(|h| h.guests.get_mut(&id.0)) else {
            return false;
        };
        let was_running = matches!(g.1, crate::platform::VmStatus::Running { .. });
        if was_running {
            g.1 = to;
        }
        was_running
    }
}

/// A host config whose root password is `secret` (what [`login`] gives).
fn root_config() -> HostConfig {
    HostConfig {
        root_password_hash: Some(host_config::hash_password("secret", [3; 16], 1_000)),
        ..HostConfig::default()
    }
}

fn service() -> (XenApi, FakePlatform) {
    let mut platform = FakePlatform {
        now: Duration::from_secs(10),
        counter: 0,
        hv: None,
    };
    let config = root_config();
    let facts = HostFacts {
        hostname: String::from("xen1"),
        system: platform.system_info(),
        management: ManagementFacts {
            device: String::from("eth0"),
            mac: Some([2, 0, 0, 0, 0, 1]),
            dhcp: false,
            address: Some(([192, 0, 2, 10], 24)),
            gateway: Some([192, 0, 2, 1]),
            dns: vec![[192, 0, 2, 53]],
        },
        networks: Default::default(),
        boot: None,
    };
    let api = XenApi::new(&config, facts, &mut platform);
    (api, platform)
}

fn post(api: &mut XenApi, platform: &mut FakePlatform, path: &str, body: &str) -> Reply {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(Parse::Complete { request, .. }) = parse_request(raw.as_bytes(), &Limits::default())
    else {
        panic!("request must parse");
    };
    api.handle(&request, platform)
}

fn json(
    api: &mut XenApi,
    platform: &mut FakePlatform,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
        .to_string();
    let Reply::Now(response) = post(api, platform, "/jsonrpc", &body) else {
        panic!("deferred")
    };
    assert_eq!(response.status(), Status::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice(response.body()).unwrap()
}

fn login(api: &mut XenApi, platform: &mut FakePlatform) -> String {
    let r = json(
        api,
        platform,
        "session.login_with_password",
        serde_json::json!(["root", "secret"]),
    );
    String::from(r["result"].as_str().unwrap())
}

#[test]
fn xmlrpc_login_failure_is_shaped_like_xapi() {
    let (mut api, mut p) = service();
    let body = "<?xml version='1.0'?><methodCall><methodName>session.login_with_password</methodName><params><param><value><string>root</string></value></param><param><value><string>wrong</string></value></param><param><value><string>2.21</string></value></param><param><value><string>t</string></value></param></params></methodCall>";
    let Reply::Now(response) = post(&mut api, &mut p, "/RPC2", body) else {
        panic!()
    };
    assert_eq!(response.status(), Status::OK);
    assert_eq!(response.header("content-type"), Some("text/xml"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let text = core::str::from_utf8(response.body()).unwrap();
    assert!(text.contains("<member><name>Status</name><value>Failure</value></member><member><name>ErrorDescription</name><value><array><data><value>SESSION_AUTHENTICATION_FAILED</value><value>root</value><value>Authentication failure</value></data></array></value></member>"), "{text}");
}

#[test]
fn session_is_checked_before_the_method_name() {
    let (mut api, mut p) = service();
    let r = json(
        &mut api,
        &mut p,
        "No.such_method",
        serde_json::json!(["OpaqueRef:bogus"]),
    );
    assert_eq!(r["error"]["message"], "SESSION_INVALID");
    assert_eq!(r["error"]["data"], serde_json::json!(["OpaqueRef:bogus"]));
    let s = login(&mut api, &mut p);
    let r = json(&mut api, &mut p, "No.such_method", serde_json::json!([s]));
    assert_eq!(r["error"]["data"], serde_json::json!(["No.such_method"]));
    assert_eq!(r["error"]["message"], "MESSAGE_METHOD_UNKNOWN");
    let r = json(&mut api, &mut p, "VM.get_record", serde_json::json!([s]));
    assert_eq!(
        r["error"]["data"],
        serde_json::json!(["VM.get_record", "1", "0"])
    );
}

#[test]
fn records_describe_this_host() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let pools = json(
        &mut api,
        &mut p,
        "pool.get_all_records",
        serde_json::json!([s]),
    )["result"]
        .clone();
    let pools = pools.as_object().unwrap();
    assert_eq!(pools.len(), 1);
    let master = pools.values().next().unwrap()["master"]
        .as_str()
        .unwrap()
        .to_string();
    let host = json(
        &mut api,
        &mut p,
        "host.get_record",
        serde_json::json!([s, master]),
    )["result"]
        .clone();
    assert_eq!(host["name_label"], "xen1");
    assert_eq!(host["address"], "192.0.2.10");
    assert_eq!(host["API_version_major"], 2);
    assert_eq!(host["API_version_minor"], 21);
    assert_eq!(host["cpu_info"]["cpu_count"], "4");
    let metrics = json(
        &mut api,
        &mut p,
        "host_metrics.get_record",
        serde_json::json!([s, host["metrics"]]),
    )["result"]
        .clone();
    assert_eq!(metrics["memory_total"], 2i64 << 30);
    let pifs = json(
        &mut api,
        &mut p,
        "PIF.get_all_records",
        serde_json::json!([s]),
    )["result"]
        .clone();
    let pif = pifs.as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(pif["IP"], "192.0.2.10");
    assert_eq!(pif["netmask"], "255.255.255.0");
    assert_eq!(pif["MAC"], "02:00:00:00:00:01");
    assert_eq!(pif["DNS"], "192.0.2.53");
    let r = json(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, "OpaqueRef:NULL", false, false]),
    );
    assert_eq!(r["error"]["message"], "HANDLE_INVALID");
    let r = json(
        &mut api,
        &mut p,
        "SR.create",
        serde_json::json!([s, master, {}, "0", "x", "", "lvmoiscsi", "user", true]),
    );
    assert_eq!(r["error"]["message"], "NOT_IMPLEMENTED");
    assert_eq!(r["error"]["data"], serde_json::json!(["SR.create"]));
}

#[test]
fn event_from_waits_without_blocking_and_sees_changes() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let all = json(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["*"], "", 0.0]),
    )["result"]
        .clone();
    let token = all["token"].as_str().unwrap().to_string();
    assert_eq!(all["events"].as_array().unwrap().len(), 5);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "event.from", "params": [s, ["pool"], token, 30.0]}).to_string();
    let Reply::Later(ticket) = post(&mut api, &mut p, "/jsonrpc", &body) else {
        panic!("must wait")
    };
    assert!(api.resume(ticket, &mut p).is_none());
    assert_eq!(api.next_deadline(), Some(Duration::from_secs(40)));
    // Another session's change wakes it.
    let pool = json(&mut api, &mut p, "pool.get_all", serde_json::json!([s]))["result"][0].clone();
    let r = json(
        &mut api,
        &mut p,
        "pool.add_to_other_config",
        serde_json::json!([s, pool, "xo:1", "{}"]),
    );
    assert_eq!(r["result"], "");
    let r = json(
        &mut api,
        &mut p,
        "pool.add_to_other_config",
        serde_json::json!([s, pool, "xo:1", "{}"]),
    );
    assert_eq!(r["error"]["message"], "MAP_DUPLICATE_KEY");
    let response = api.resume(ticket, &mut p).expect("woken by the change");
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let events = body["result"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["operation"], "mod");
    assert_eq!(events[0]["snapshot"]["other_config"]["xo:1"], "{}");
    // A timeout answers empty.
    let token = body["result"]["token"].as_str().unwrap().to_string();
    let body =
        serde_json::json!({"id": 2, "method": "event.from", "params": [s, ["pool"], token, 1.0]})
            .to_string();
    let Reply::Later(ticket) = post(&mut api, &mut p, "/jsonrpc", &body) else {
        panic!("must wait")
    };
    p.now += Duration::from_secs(1);
    let response = api.resume(ticket, &mut p).expect("timed out");
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["result"]["events"], serde_json::json!([]));
    assert_eq!(body["error"], serde_json::Value::Null);
}

#[test]
fn sessions_expire_when_idle_and_logout_ends_them() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    p.now += SESSION_IDLE_TIMEOUT - Duration::from_secs(1);
    assert!(json(&mut api, &mut p, "pool.get_all", serde_json::json!([s]))["result"].is_array());
    p.now += SESSION_IDLE_TIMEOUT;
    assert_eq!(
        json(&mut api, &mut p, "pool.get_all", serde_json::json!([s]))["error"]["message"],
        "SESSION_INVALID"
    );
    let s = login(&mut api, &mut p);
    json(&mut api, &mut p, "session.logout", serde_json::json!([s]));
    assert_eq!(
        json(&mut api, &mut p, "pool.get_all", serde_json::json!([s]))["error"]["message"],
        "SESSION_INVALID"
    );
}

#[test]
fn async_calls_report_through_tasks() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let task = json(
        &mut api,
        &mut p,
        "Async.pool.get_all",
        serde_json::json!([s]),
    )["result"]
        .clone();
    let record = json(
        &mut api,
        &mut p,
        "task.get_record",
        serde_json::json!([s, task]),
    )["result"]
        .clone();
    assert_eq!(record["status"], "success");
    let result = record["result"].as_str().unwrap();
    assert!(
        result.starts_with("<value><array><data><value>OpaqueRef:"),
        "{result}"
    );
}

#[test]
fn bodies_that_are_not_calls_get_400_and_other_methods_405() {
    let (mut api, mut p) = service();
    for (path, body) in [
        ("/", "<methodCall>"),
        ("/jsonrpc", "{\"method\":\"x\"}"),
        ("/RPC2", "<!DOCTYPE x><x/>"),
    ] {
        let Reply::Now(r) = post(&mut api, &mut p, path, body) else {
            panic!()
        };
        assert_eq!(r.status(), Status::BAD_REQUEST, "{path} {body}");
    }
    let raw = b"GET /RPC2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let Ok(Parse::Complete { request, .. }) = parse_request(raw, &Limits::default()) else {
        panic!()
    };
    let Reply::Now(r) = api.handle(&request, &mut p) else {
        panic!()
    };
    assert_eq!(r.status(), Status::METHOD_NOT_ALLOWED);
    let _: Vec<u8> = Vec::new();
}

#[test]
fn set_helpers_labels_and_underscore_names() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let pool = json(&mut api, &mut p, "pool_get_all", serde_json::json!([s]))["result"][0].clone();
    for _ in 0..2 {
        json(
            &mut api,
            &mut p,
            "pool.add_tags",
            serde_json::json!([s, pool, "blue"]),
        );
    }
    let tags = json(
        &mut api,
        &mut p,
        "pool.get_tags",
        serde_json::json!([s, pool]),
    );
    assert_eq!(tags["result"], serde_json::json!(["blue"]));
    json(
        &mut api,
        &mut p,
        "pool.remove_tags",
        serde_json::json!([s, pool, "blue"]),
    );
    let tags = json(
        &mut api,
        &mut p,
        "pool.get_tags",
        serde_json::json!([s, pool]),
    );
    assert_eq!(tags["result"], serde_json::json!([]));
    json(
        &mut api,
        &mut p,
        "pool.set_name_label",
        serde_json::json!([s, pool, "lab"]),
    );
    let found = json(
        &mut api,
        &mut p,
        "pool.get_by_name_label",
        serde_json::json!([s, "lab"]),
    );
    assert_eq!(found["result"], serde_json::json!([pool]));
    let none = json(
        &mut api,
        &mut p,
        "pool.get_by_name_label",
        serde_json::json!([s, "x"]),
    );
    assert_eq!(none["result"], serde_json::json!([]));
}

#[test]
fn async_failures_land_in_error_info() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let task = json(
        &mut api,
        &mut p,
        "Async.pool.disable_ha",
        serde_json::json!([s]),
    )["result"]
        .clone();
    let record = json(
        &mut api,
        &mut p,
        "task.get_record",
        serde_json::json!([s, task]),
    )["result"]
        .clone();
    assert_eq!(record["status"], "failure");
    assert_eq!(
        record["error_info"],
        serde_json::json!(["NOT_IMPLEMENTED", "pool.disable_ha"])
    );
    assert_eq!(record["progress"], 1.0);
    let unknown = json(&mut api, &mut p, "Async.VM.fly", serde_json::json!([s]));
    assert_eq!(unknown["error"]["message"], "MESSAGE_METHOD_UNKNOWN");
    // A call that cannot be made gets no task.
    let tasks = json(&mut api, &mut p, "task.get_all", serde_json::json!([s]))["result"].clone();
    let extra = json(
        &mut api,
        &mut p,
        "Async.pool.get_all",
        serde_json::json!([s, "extra"]),
    );
    assert_eq!(
        extra["error"],
        serde_json::json!({"code": 1, "message": "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "data": ["Async.pool.get_all", "0", "1"]})
    );
    let after = json(&mut api, &mut p, "task.get_all", serde_json::json!([s]))["result"].clone();
    assert_eq!(tasks, after);
}

#[test]
fn cors_preflight() {
    let (mut api, mut p) = service();
    let raw = b"OPTIONS /jsonrpc HTTP/1.1\r\nHost: h\r\n\r\n";
    let Ok(Parse::Complete { request, .. }) = parse_request(raw, &Limits::default()) else {
        panic!()
    };
    let Reply::Now(r) = api.handle(&request, &mut p) else {
        panic!()
    };
    assert_eq!(r.status(), Status::OK);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
}

#[test]
fn finished_tasks_make_room_for_new_ones() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let keep = json(
        &mut api,
        &mut p,
        "task.create",
        serde_json::json!([s, "mine", ""]),
    )["result"]
        .clone();
    for _ in 0..super::tasks::MAX_TASKS + 5 {
        json(
            &mut api,
            &mut p,
            "Async.pool.get_all",
            serde_json::json!([s]),
        );
    }
    let all = json(&mut api, &mut p, "task.get_all", serde_json::json!([s]))["result"].clone();
    assert_eq!(all.as_array().unwrap().len(), super::tasks::MAX_TASKS);
    assert!(
        all.as_array().unwrap().contains(&keep),
        "the pending task stays"
    );
}

fn vm_record(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name_label": name,
        "memory_static_min": 268435456, "memory_dynamic_min": 268435456,
        "memory_dynamic_max": "536870912", "memory_static_max": 536870912,
        "VCPUs_max": 2, "VCPUs_at_startup": 1,
        "other_config": {"auto_poweron": "true"},
        "not_a_field": "ignored",
    })
}

#[test]
fn vm_create_makes_a_halted_vm_with_metrics_and_destroy_removes_both() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let token = json(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], "", 0.0]),
    )["result"]["token"]
        .clone();
    let vm = json(
        &mut api,
        &mut p,
        "VM.create",
        serde_json::json!([s, vm_record("web")]),
    )["result"]
        .clone();
    let record = json(
        &mut api,
        &mut p,
        "VM.get_record",
        serde_json::json!([s, vm]),
    )["result"]
        .clone();
    assert_eq!(record["name_label"], "web");
    assert_eq!(record["power_state"], "Halted");
    assert_eq!(record["memory_dynamic_max"], 536870912);
    assert_eq!(record["VCPUs_max"], 2);
    assert_eq!(record["domid"], -1);
    assert_eq!(record["other_config"]["auto_poweron"], "true");
    assert_eq!(
        record["allowed_operations"],
        serde_json::json!(["start", "clone", "copy", "destroy"])
    );
    let metrics = record["metrics"].clone();
    assert!(
        json(
            &mut api,
            &mut p,
            "VM_metrics.get_record",
            serde_json::json!([s, metrics])
        )
        .get("result")
        .is_some()
    );
    let added = json(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], token, 0.0]),
    )["result"]
        .clone();
    assert_eq!(added["events"][0]["operation"], "add");
    assert_eq!(added["events"][0]["ref"], vm);

    let destroyed = json(&mut api, &mut p, "VM.destroy", serde_json::json!([s, vm]));
    assert_eq!(destroyed["result"], "");
    let gone = json(
        &mut api,
        &mut p,
        "VM.get_record",
        serde_json::json!([s, vm]),
    );
    assert_eq!(gone["error"]["message"], "HANDLE_INVALID");
    let gone = json(
        &mut api,
        &mut p,
        "VM_metrics.get_record",
        serde_json::json!([s, metrics]),
    );
    assert_eq!(gone["error"]["message"], "HANDLE_INVALID");
    let deleted = json(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], added["token"], 0.0]),
    )["result"]
        .clone();
    assert_eq!(deleted["events"][0]["operation"], "del");
}

#[test]
fn vm_create_checks_its_record() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let mut error = |record: serde_json::Value| {
        let reply = json(
            &mut api,
            &mut p,
            "VM.create",
            serde_json::json!([s, record]),
        );
        let mut description = vec![reply["error"]["message"].clone()];
        description.extend(
            reply["error"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        description
    };
    let with = |key: &str, value: serde_json::Value| {
        let mut record = vm_record("x");
        record[key] = value;
        record
    };
    let without = |key: &str| {
        let mut record = vm_record("x");
        record.as_object_mut().unwrap().remove(key);
        record
    };
    assert_eq!(
        error(without("VCPUs_max")),
        ["FIELD_TYPE_ERROR", "VCPUs_max"]
    );
    assert_eq!(
        error(with("VCPUs_max", serde_json::json!("many"))),
        ["FIELD_TYPE_ERROR", "VCPUs_max"]
    );
    assert_eq!(
        error(with("VCPUs_at_startup", serde_json::json!(3))),
        ["INVALID_VALUE", "VCPUs_at_startup", "3"]
    );
    assert_eq!(
        error(with("VCPUs_max", serde_json::json!(0)))[..2],
        ["INVALID_VALUE", "VCPUs_max"]
    );
    assert_eq!(
        error(with("memory_dynamic_min", serde_json::json!(1i64 << 40)))[0],
        "MEMORY_CONSTRAINT_VIOLATION"
    );
    assert_eq!(
        error(with("affinity", serde_json::json!("OpaqueRef:nope"))),
        ["HANDLE_INVALID", "host", "OpaqueRef:nope"]
    );
    assert_eq!(
        error(serde_json::json!("not a record")),
        ["FIELD_TYPE_ERROR", "args"]
    );
    let count = json(&mut api, &mut p, "VM.get_all", serde_json::json!([s]))["result"]
        .as_array()
        .map(Vec::len);
    assert_eq!(count, Some(0), "no VM was made by a refused call");
}

#[test]
fn host_reboot_on_a_platform_that_cannot_is_an_honest_error() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let host = json(&mut api, &mut p, "host.get_all", serde_json::json!([s]))["result"][0].clone();
    let answer = json(
        &mut api,
        &mut p,
        "host.reboot",
        serde_json::json!([s, host]),
    );
    assert_eq!(answer["error"]["message"], "NOT_IMPLEMENTED");
    assert_eq!(answer["error"]["data"][0], "host.reboot");
    assert!(
        answer["error"]["data"][1]
            .as_str()
            .is_some_and(|m| m.contains("cannot reboot")),
        "{answer}"
    );
    let bad = json(
        &mut api,
        &mut p,
        "host.reboot",
        serde_json::json!([s, "OpaqueRef:nope"]),
    );
    assert_eq!(bad["error"]["message"], "HANDLE_INVALID");
}

#[test]
fn an_upload_reports_through_its_task() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let task = |api: &mut XenApi, p: &mut FakePlatform| {
        json(
            api,
            p,
            "task.create",
            serde_json::json!([s, "upgrade", "keel.img"]),
        )["result"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let record = |api: &mut XenApi, p: &mut FakePlatform, t: &str| {
        json(api, p, "task.get_record", serde_json::json!([s, t]))["result"].clone()
    };

    let ok = task(&mut api, &mut p);
    assert!(api.task_pending(&ok));
    assert!(!api.task_pending("OpaqueRef:nothing"));
    api.upload_task_begin(&ok, 1000);
    api.upload_task_progress(10);
    assert_eq!(record(&mut api, &mut p, &ok)["progress"], 0.01);
    api.upload_task_progress(500);
    assert_eq!(record(&mut api, &mut p, &ok)["progress"], 0.51);
    api.upload_task_progress(490);
    let r = record(&mut api, &mut p, &ok);
    assert_eq!(r["progress"], 0.99, "all received, not yet written: {r}");
    assert_eq!(r["status"], "pending");
    api.upload_task_end(UploadOutcome::Done("9.9.9".into()), &p);
    let r = record(&mut api, &mut p, &ok);
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["progress"], 1.0);
    assert_eq!(r["result"], "<value>9.9.9</value>");
    assert!(!api.task_pending(&ok));
    // The upload is over: nothing more reaches the task.
    api.upload_task_progress(1);
    api.upload_task_end(UploadOutcome::Failed("INTERNAL_ERROR", "late".into()), &p);
    assert_eq!(record(&mut api, &mut p, &ok)["status"], "success");

    let bad = task(&mut api, &mut p);
    api.upload_task_begin(&bad, 0);
    api.upload_task_end(
        UploadOutcome::Failed("IMPORT_ERROR", "upgrade refused: bad signature".into()),
        &p,
    );
    let r = record(&mut api, &mut p, &bad);
    assert_eq!(r["status"], "failure", "{r}");
    assert_eq!(
        r["error_info"],
        serde_json::json!(["IMPORT_ERROR", "upgrade refused: bad signature"])
    );
    assert!(r["finished"].as_str().is_some_and(|f| !f.is_empty()), "{r}");

    // A refusal before the upload began ends a pending task only.
    let early = task(&mut api, &mut p);
    api.finish_upload_task(
        &early,
        UploadOutcome::Failed("INTERNAL_ERROR", "busy".into()),
        &p,
    );
    assert_eq!(record(&mut api, &mut p, &early)["status"], "failure");
    api.finish_upload_task(&early, UploadOutcome::Done("x".into()), &p);
    assert_eq!(record(&mut api, &mut p, &early)["status"], "failure");
}

/// Storage calls become iSCSI jobs for the platform; each is answered when
/// its job ends (here the results are made up: the jobs themselves are
/// tested against tgtd in `crate::iscsi::tests`).
#[test]
fn storage_calls_are_answered_when_their_job_ends() {
    use crate::iscsi::{JobError, JobOutput, SrOp, SrSummary, Work};
    use storage::iscsi::client::DiscoveredTarget;

    let (mut api, mut p) = service();
    api.enable_storage_driver();
    let s = login(&mut api, &mut p);
    let host = json(&mut api, &mut p, "host.get_all", serde_json::json!([s]))["result"][0]
        .as_str()
        .unwrap()
        .to_string();
    let deferred = |api: &mut XenApi, p: &mut FakePlatform, method: &str, params| {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params})
                .to_string();
        let Reply::Later(ticket) = post(api, p, "/jsonrpc", &body) else {
            panic!("{method} must wait for its job")
        };
        assert!(api.resume(ticket, p).is_none());
        ticket
    };
    let answer = |api: &mut XenApi, p: &mut FakePlatform, ticket| -> serde_json::Value {
        let response = api.resume(ticket, p).expect("answered once the job ended");
        serde_json::from_slice(response.body()).unwrap()
    };

    // No IQN: discovery, answered with the IQN list as SR_BACKEND_FAILURE_96.
    let config = serde_json::json!({"target": "192.0.2.20", "chapuser": "u", "chappassword": "p",
        "incoming_chapuser": "t", "incoming_chappassword": "q"});
    let ticket = deferred(
        &mut api,
        &mut p,
        "SR.probe",
        serde_json::json!([s, host, config, "lvmoiscsi", {}]),
    );
    let jobs = api.take_storage_jobs();
    assert_eq!(jobs.len(), 1);
    let (id, spec) = &jobs[0];
    assert_eq!(spec.work, Work::Discover);
    assert_eq!((spec.portal.ip, spec.portal.port), ([192, 0, 2, 20], 3260));
    assert!(
        spec.chap.is_some() && spec.mutual.is_none(),
        "discovery is one-way CHAP"
    );
    let found = DiscoveredTarget {
        name: String::from("iqn.2026-12.example:pool"),
        addresses: vec![String::from("192.0.2.20:3260,1")],
    };
    api.storage_finished(*id, Ok(JobOutput::Targets(vec![found])), &mut p);
    let r = answer(&mut api, &mut p, ticket);
    assert_eq!(r["error"]["message"], "SR_BACKEND_FAILURE_96", "{r}");
    let data = r["error"]["data"].as_array().unwrap();
    assert_eq!(data[0], "");
    let xml = data[2].as_str().unwrap();
    assert!(
        xml.contains("<IPAddress>192.0.2.20</IPAddress>")
            && xml.contains("<TargetIQN>iqn.2026-12.example:pool</TargetIQN>"),
        "{xml}"
    );

    // An unreachable target is SR_BACKEND_FAILURE_141.
    let ticket = deferred(
        &mut api,
        &mut p,
        "SR.probe",
        serde_json::json!([s, host, config, "lvmoiscsi", {}]),
    );
    let (id, _) = api.take_storage_jobs().remove(0);
    api.storage_finished(
        id,
        Err(JobError::Unreachable(String::from("refused"))),
        &mut p,
    );
    assert_eq!(
        answer(&mut api, &mut p, ticket)["error"]["message"],
        "SR_BACKEND_FAILURE_141"
    );

    // Async.SR.create: a pending task until the format job ends.
    let mut full = config.clone();
    full["targetIQN"] = "iqn.2026-12.example:pool".into();
    full["SCSIid"] = "36001405abcdef".into();
    full["port"] = 3261.into();
    let task = json(
        &mut api,
        &mut p,
        "Async.SR.create",
        serde_json::json!([
            s,
            host,
            full,
            "0",
            "pool-sr",
            "",
            "lvmoiscsi",
            "user",
            true,
            {}
        ]),
    )["result"]
        .as_str()
        .unwrap()
        .to_string();
    let status = |api: &mut XenApi, p: &mut FakePlatform| {
        json(api, p, "task.get_status", serde_json::json!([s, task]))["result"].clone()
    };
    assert_eq!(status(&mut api, &mut p), "pending");
    let (id, spec) = api.take_storage_jobs().remove(0);
    assert_eq!(spec.portal.port, 3261);
    assert!(spec.mutual.is_some());
    let Work::Sr {
        scsi_id,
        op: SrOp::Format { uuid, .. },
    } = spec.work
    else {
        panic!("a format job: {:?}", spec.work)
    };
    assert_eq!(scsi_id, "36001405abcdef");
    let summary = SrSummary {
        uuid,
        sr_type: storage::sr::SrType::Iscsi,
        physical_size: 1 << 30,
        physical_utilisation: 0,
        vdis: Vec::new(),
    };
    api.storage_finished(id, Ok(JobOutput::Sr(summary)), &mut p);
    assert_eq!(status(&mut api, &mut p), "success");
    let result = json(
        &mut api,
        &mut p,
        "task.get_result",
        serde_json::json!([s, task]),
    )["result"]
        .clone();
    let sr = result
        .as_str()
        .unwrap()
        .trim_start_matches("<value>")
        .trim_end_matches("</value>")
        .to_string();
    let record = json(
        &mut api,
        &mut p,
        "SR.get_record",
        serde_json::json!([s, sr]),
    )["result"]
        .clone();
    assert_eq!(record["type"], "lvmoiscsi");
    assert_eq!(record["shared"], true);
    assert_eq!(record["physical_size"], 1 << 30);
    assert_eq!(record["uuid"], crate::xenapi::db::uuid_from(uuid));
    let pbd = record["PBDs"][0].clone();
    let pbd = json(
        &mut api,
        &mut p,
        "PBD.get_record",
        serde_json::json!([s, pbd]),
    )["result"]
        .clone();
    assert_eq!(pbd["currently_attached"], true);
    assert_eq!(pbd["host"], host.as_str());
    assert_eq!(pbd["device_config"]["port"], "3261");

    // A VDI.create whose login is refused: SR_BACKEND_FAILURE_68, no VDI.
    let ticket = deferred(
        &mut api,
        &mut p,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": "d", "virtual_size": "1048576", "sharable": "false"}]),
    );
    let (id, spec) = api.take_storage_jobs().remove(0);
    assert!(matches!(
        spec.work,
        Work::Sr {
            op: SrOp::CreateVdi { size: 1048576, .. },
            ..
        }
    ));
    api.storage_finished(id, Err(JobError::Login(String::from("refused"))), &mut p);
    assert_eq!(
        answer(&mut api, &mut p, ticket)["error"]["message"],
        "SR_BACKEND_FAILURE_68"
    );
    let vdis = json(&mut api, &mut p, "VDI.get_all", serde_json::json!([s]))["result"].clone();
    assert_eq!(vdis, serde_json::json!([]));
    // A record with a wrong type is refused before any job.
    let r = json(
        &mut api,
        &mut p,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "virtual_size": "1048576", "sharable": "maybe"}]),
    );
    assert_eq!(r["error"]["message"], "FIELD_TYPE_ERROR");
    assert!(api.take_storage_jobs().is_empty());

    // A VDI made, a VM with a VBD for it; the VM's disks attached at its
    // start serve I/O through their channel as batch jobs.
    let ticket = deferred(
        &mut api,
        &mut p,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": "root", "virtual_size": "1048576"}]),
    );
    let (id, spec) = api.take_storage_jobs().remove(0);
    let Work::Sr {
        op: SrOp::CreateVdi { uuid: vdi_uuid, .. },
        ..
    } = spec.work
    else {
        panic!("a VDI create job")
    };
    let info = storage::sr::VdiInfo {
        uuid: vdi_uuid,
        name: String::from("root"),
        virtual_size: 1048576,
        read_only: false,
        physical_utilisation: 0,
        chain_len: 1,
        origin: None,
        is_a_snapshot: false,
    };
    let summary = SrSummary {
        uuid,
        sr_type: storage::sr::SrType::Iscsi,
        physical_size: 1 << 30,
        physical_utilisation: 0,
        vdis: alloc::vec![info],
    };
    api.storage_finished(id, Ok(JobOutput::Sr(summary)), &mut p);
    let vdi = answer(&mut api, &mut p, ticket)["result"]
        .as_str()
        .unwrap()
        .to_string();
    let vm = json(
        &mut api,
        &mut p,
        "VM.create",
        serde_json::json!([s, {"name_label": "g", "memory_static_max": "1", "memory_dynamic_max": "1",
            "memory_dynamic_min": "1", "memory_static_min": "1", "VCPUs_max": "1", "VCPUs_at_startup": "1"}]),
    )["result"]
        .as_str()
        .unwrap()
        .to_string();
    let vbd_record = serde_json::json!({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": true,
        "mode": "RW", "type": "Disk", "empty": false, "other_config": {}});
    let vbd = json(
        &mut api,
        &mut p,
        "VBD.create",
        serde_json::json!([s, vbd_record]),
    )["result"]
        .as_str()
        .unwrap()
        .to_string();
    let again = json(
        &mut api,
        &mut p,
        "VBD.create",
        serde_json::json!([s, vbd_record]),
    );
    assert_eq!(again["error"]["message"], "DEVICE_ALREADY_EXISTS");
    let bad = json(
        &mut api,
        &mut p,
        "VBD.create",
        serde_json::json!([s, {"VM": vm, "VDI": "OpaqueRef:nope", "userdevice": "1", "type": "Disk"}]),
    );
    assert_eq!(bad["error"]["message"], "HANDLE_INVALID");
    let get = |api: &mut XenApi, p: &mut FakePlatform, m: &str, r: &str| {
        json(api, p, m, serde_json::json!([s, r]))["result"].clone()
    };
    assert_eq!(
        get(&mut api, &mut p, "VM.get_VBDs", &vm),
        serde_json::json!([vbd])
    );
    assert_eq!(
        get(&mut api, &mut p, "VDI.get_VBDs", &vdi),
        serde_json::json!([vbd])
    );
    assert_eq!(
        get(&mut api, &mut p, "VBD.get_currently_attached", &vbd),
        false
    );

    let disks = api.attach_vm_disks(&vm).expect("attached");
    assert_eq!(disks.len(), 1);
    assert_eq!(
        get(&mut api, &mut p, "VBD.get_currently_attached", &vbd),
        true
    );
    assert_eq!(get(&mut api, &mut p, "VBD.get_device", &vbd), "xvda");
    let refused = json(&mut api, &mut p, "VBD.destroy", serde_json::json!([s, vbd]));
    assert_eq!(refused["error"]["message"], "OPERATION_NOT_ALLOWED");
    // Its clusters may be written in place by the disk's fast path: they
    // must not become shared or freed under it.
    for m in ["VDI.snapshot", "VDI.clone", "VDI.destroy"] {
        let args = if m == "VDI.destroy" {
            serde_json::json!([s, vdi])
        } else {
            serde_json::json!([s, vdi, {}])
        };
        let refused = json(&mut api, &mut p, m, args);
        assert_eq!(refused["error"]["message"], "VDI_IN_USE", "{m}: {refused}");
    }
    let channel = &disks[0].channel;
    assert_eq!(channel.geometry().num_blocks, 2048);
    use storage::channel::{DiskCompletion, DiskOp, DiskRequest};
    channel
        .submit(DiskRequest {
            tag: 7,
            op: DiskOp::Read { lba: 8, blocks: 2 },
        })
        .unwrap();
    channel
        .submit(DiskRequest {
            tag: 8,
            op: DiskOp::Flush,
        })
        .unwrap();
    let mut jobs = api.take_storage_jobs();
    assert_eq!(jobs.len(), 2, "the disk's session and a batch");
    let (session, spec) = jobs.remove(0);
    assert!(matches!(spec.work, Work::Disk { .. }), "{spec:?}");
    // Until the session is ready (and a batch told the extents), requests
    // go through the SR.
    let (id, spec) = jobs.remove(0);
    let Work::Sr {
        op: SrOp::Io { uuid: u, requests },
        ..
    } = spec.work
    else {
        panic!("a batch job")
    };
    assert_eq!(u, vdi_uuid);
    assert_eq!(requests.len(), 2);
    // One batch at a time per disk.
    channel
        .submit(DiskRequest {
            tag: 9,
            op: DiskOp::Flush,
        })
        .unwrap();
    assert!(api.take_storage_jobs().is_empty());
    let done = alloc::vec![
        DiskCompletion {
            tag: 7,
            result: Ok(alloc::vec![5; 1024]),
        },
        DiskCompletion {
            tag: 8,
            result: Ok(Vec::new()),
        },
    ];
    let extents = storage::sr::VdiExtents {
        cluster_size: 1 << 20,
        virtual_size: 1 << 20,
        read_only: false,
        clusters: Default::default(),
    };
    api.storage_finished(id, Ok(JobOutput::Io { done, extents }), &mut p);
    assert_eq!(channel.completion().map(|c| c.tag), Some(7));
    assert_eq!(channel.completion().map(|c| c.tag), Some(8));
    // The next batch; its job fails: the request fails with an I/O error.
    let (id, _) = api.take_storage_jobs().remove(0);
    api.storage_finished(id, Err(JobError::Session(String::from("gone"))), &mut p);
    assert_eq!(
        channel.completion(),
        Some(DiskCompletion {
            tag: 9,
            result: Err(storage::BlockError::Io)
        })
    );
    // A session that breaks is started again.
    api.storage_finished(
        session,
        Err(JobError::Session(String::from("reset"))),
        &mut p,
    );
    let jobs = api.take_storage_jobs();
    assert_eq!(jobs.len(), 1);
    assert!(matches!(jobs[0].1.work, Work::Disk { .. }));
    api.detach_vm_disks(&vm);
    assert!(channel.is_closed());
    assert_eq!(
        get(&mut api, &mut p, "VBD.get_currently_attached", &vbd),
        false
    );
    // VM.start attaches the VBD and hands its channel to the guest; the
    // guest powering off detaches it.
    p.hv = Some(FakeHv::default());
    json(
        &mut api,
        &mut p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:debian/vmlinuz"]),
    );
    let started = json(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    assert_eq!(started["result"], "", "{started}");
    assert_eq!(
        get(&mut api, &mut p, "VBD.get_currently_attached", &vbd),
        true
    );
    let (&guest, started_disks) = {
        let hv = p.hv.as_ref().unwrap();
        let (id, (spec, _)) = hv.guests.iter().next().expect("a guest");
        (id, spec.disks.clone())
    };
    assert_eq!(started_disks.len(), 1);
    assert_eq!(started_disks[0].vbd, vbd);
    assert_eq!(started_disks[0].channel.geometry().num_blocks, 2048);
    assert!(!started_disks[0].channel.is_closed());
    p.set_status(
        crate::platform::VmId(guest),
        crate::platform::VmStatus::Halted,
    );
    api.poll_vms(&mut p);
    assert!(started_disks[0].channel.is_closed());
    assert_eq!(
        get(&mut api, &mut p, "VBD.get_currently_attached", &vbd),
        false
    );
    assert_eq!(get(&mut api, &mut p, "VM.get_power_state", &vm), "Halted");
    let r = json(&mut api, &mut p, "VBD.destroy", serde_json::json!([s, vbd]));
    assert_eq!(r["result"], "");
    assert_eq!(
        get(&mut api, &mut p, "VM.get_VBDs", &vm),
        serde_json::json!([])
    );
}

/// A call that must succeed: its result.
fn ok(
    api: &mut XenApi,
    p: &mut FakePlatform,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let r = json(api, p, method, params);
    assert!(r["error"].is_null(), "{method}: {r}");
    r["result"].clone()
}

/// A call that must fail: `[code, params...]`.
fn err(
    api: &mut XenApi,
    p: &mut FakePlatform,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let r = json(api, p, method, params);
    let mut all = vec![r["error"]["message"].clone()];
    all.extend(r["error"]["data"].as_array().cloned().unwrap_or_default());
    serde_json::Value::Array(all)
}

/// The schema version and the records.
pub(super) type Stored = (u32, BTreeMap<String, Vec<u8>>);

/// A state store two services (two boots) share.
#[derive(Clone, Default)]
pub(super) struct SharedStore(std::rc::Rc<std::cell::RefCell<Stored>>);

impl crate::xenapi::StateStore for SharedStore {
    fn records(&self) -> (u32, Vec<(String, Vec<u8>)>) {
        let s = self.0.borrow();
        (
            s.0,
            s.1.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )
    }
    fn commit(&mut self, changes: Vec<crate::xenapi::Change>, version: u32) -> Result<(), String> {
        let mut s = self.0.borrow_mut();
        for c in changes {
            match c {
                crate::xenapi::Change::Put { key, value } => s.1.insert(key, value),
                crate::xenapi::Change::Delete { key } => s.1.remove(&key),
            };
        }
        s.0 = version;
        Ok(())
    }
}

mod bonds;
mod guest_net;
mod iso_library;
mod local_srs;
mod pif_ip;
mod vif_locking;
mod vm_clone;
mod vm_power;
