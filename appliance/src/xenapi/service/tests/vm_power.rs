//! VM power operations, the template and clone, over a fake hypervisor.

use super::*;

fn with_hv(obeys_button: bool) -> (XenApi, FakePlatform, String) {
    let (mut api, mut p) = service();
    p.hv = Some(FakeHv {
        obeys_button,
        ..FakeHv::default()
    });
    api.poll_vms(&mut p);
    let s = login(&mut api, &mut p);
    (api, p, s)
}

/// The template, cloned into a VM that boots `boot:debian/vmlinuz`.
fn debian_vm(api: &mut XenApi, p: &mut FakePlatform, s: &str) -> String {
    let templates = ok(
        api,
        p,
        "VM.get_by_name_label",
        serde_json::json!([s, "Debian-style direct boot"]),
    );
    let template = templates[0].as_str().unwrap().to_string();
    let record = ok(api, p, "VM.get_record", serde_json::json!([s, template]));
    assert_eq!(record["is_a_template"], true);
    assert_eq!(record["is_default_template"], true);
    assert_eq!(record["PV_args"], "console=ttyS0");
    assert_eq!(
        err(
            api,
            p,
            "VM.start",
            serde_json::json!([s, template, false, false])
        ),
        serde_json::json!(["VM_IS_TEMPLATE", template])
    );
    let vm = ok(api, p, "VM.clone", serde_json::json!([s, template, "deb1"]));
    let vm = vm.as_str().unwrap().to_string();
    ok(api, p, "VM.provision", serde_json::json!([s, vm]));
    ok(
        api,
        p,
        "VM.set_is_a_template",
        serde_json::json!([s, vm, false]),
    );
    ok(
        api,
        p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:debian/vmlinuz"]),
    );
    vm
}

#[test]
fn start_follows_the_guest_until_it_powers_off() {
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    let token = ok(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], "", 0.0]),
    )["token"]
        .clone();
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let r = ok(
        &mut api,
        &mut p,
        "VM.get_record",
        serde_json::json!([s, vm]),
    );
    assert_eq!(r["power_state"], "Running");
    assert_eq!(r["domid"], 1);
    assert_ne!(r["resident_on"], NULL_REF);
    assert!(
        r["allowed_operations"]
            .as_array()
            .unwrap()
            .contains(&"clean_shutdown".into())
    );
    let host_ref = r["resident_on"].clone();
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "host.get_resident_VMs",
            serde_json::json!([s, host_ref])
        ),
        serde_json::json!([vm])
    );
    let console = r["consoles"][0].as_str().unwrap().to_string();
    let c = ok(
        &mut api,
        &mut p,
        "console.get_record",
        serde_json::json!([s, console]),
    );
    assert_eq!(c["protocol"], "vt100");
    assert_eq!(
        c["location"],
        format!("http://192.0.2.10/console?ref={console}")
    );
    let m = ok(
        &mut api,
        &mut p,
        "VM_metrics.get_record",
        serde_json::json!([s, r["metrics"]]),
    );
    assert_eq!(m["VCPUs_number"], 1);
    assert_eq!(m["memory_actual"], 256 << 20);
    let (spec, _) = p.hv.as_ref().unwrap().guests.get(&1).unwrap().clone();
    assert_eq!(spec.cmdline, "console=ttyS0");
    assert_eq!(spec.vcpus, 1);
    assert_eq!(spec.memory_bytes, 256 << 20);
    let ev = ok(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], token, 0.0]),
    );
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ref"] == vm.as_str() && e["snapshot"]["power_state"] == "Running")
    );
    let token = ev["token"].clone();

    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.start",
            serde_json::json!([s, vm, false, false])
        ),
        serde_json::json!(["VM_BAD_POWER_STATE", vm, "halted", "running"])
    );
    assert_eq!(
        err(&mut api, &mut p, "VM.destroy", serde_json::json!([s, vm])),
        serde_json::json!(["VM_BAD_POWER_STATE", vm, "halted", "running"])
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.clean_reboot",
            serde_json::json!([s, vm])
        ),
        serde_json::json!(["VM_LACKS_FEATURE", vm])
    );
    // The guest powers off by itself: the VM is Halted, with an event.
    p.set_status(crate::platform::VmId(1), crate::platform::VmStatus::Halted);
    api.poll_vms(&mut p);
    let r = ok(
        &mut api,
        &mut p,
        "VM.get_record",
        serde_json::json!([s, vm]),
    );
    assert_eq!(r["power_state"], "Halted");
    assert_eq!(r["domid"], -1);
    assert_eq!(r["consoles"], serde_json::json!([]));
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "host.get_resident_VMs",
            serde_json::json!([s, host_ref])
        ),
        serde_json::json!([])
    );
    // start_on this host is start.
    ok(
        &mut api,
        &mut p,
        "VM.start_on",
        serde_json::json!([s, vm, host_ref, false, false]),
    );
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Running"
    );
    p.set_status(crate::platform::VmId(2), crate::platform::VmStatus::Halted);
    api.poll_vms(&mut p);
    let ev = ok(
        &mut api,
        &mut p,
        "event.from",
        serde_json::json!([s, ["vm"], token, 0.0]),
    );
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ref"] == vm.as_str() && e["snapshot"]["power_state"] == "Halted")
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "console.get_record",
            serde_json::json!([s, console])
        )[0],
        "HANDLE_INVALID"
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.hard_shutdown",
            serde_json::json!([s, vm])
        ),
        serde_json::json!(["VM_BAD_POWER_STATE", vm, "running, paused", "halted"])
    );
}

#[test]
fn clean_shutdown_is_answered_when_the_guest_is_off_or_times_out() {
    let (mut api, mut p, s) = with_hv(true);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "VM.clean_shutdown", "params": [s, vm]}).to_string();
    let Reply::Later(ticket) = post(&mut api, &mut p, "/jsonrpc", &body) else {
        panic!("clean_shutdown answers when the guest is off")
    };
    assert!(api.resume(ticket, &mut p).is_none());
    api.poll_vms(&mut p);
    let answer = api.resume(ticket, &mut p).expect("answered once off");
    let r: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
    assert_eq!(r["result"], "");
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Halted"
    );

    // A guest that ignores the button: the Async task fails after the timeout.
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let task = ok(
        &mut api,
        &mut p,
        "Async.VM.clean_shutdown",
        serde_json::json!([s, vm]),
    );
    api.poll_vms(&mut p);
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "task.get_status",
            serde_json::json!([s, task])
        ),
        "pending"
    );
    p.now += super::super::vm_power::CLEAN_SHUTDOWN_TIMEOUT;
    api.poll_vms(&mut p);
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "task.get_status",
            serde_json::json!([s, task])
        ),
        "failure"
    );
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "task.get_error_info",
            serde_json::json!([s, task])
        ),
        serde_json::json!(["VM_SHUTDOWN_TIMEOUT", vm, "300"])
    );
    // Still running; hard_shutdown ends it.
    let task = ok(
        &mut api,
        &mut p,
        "Async.VM.hard_shutdown",
        serde_json::json!([s, vm]),
    );
    api.poll_vms(&mut p);
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "task.get_status",
            serde_json::json!([s, task])
        ),
        "success"
    );
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Halted"
    );
}

#[test]
fn pause_unpause_and_hard_reboot() {
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, true, false]),
    );
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Paused"
    );
    assert_eq!(
        err(&mut api, &mut p, "VM.pause", serde_json::json!([s, vm])),
        serde_json::json!(["VM_BAD_POWER_STATE", vm, "running", "paused"])
    );
    ok(&mut api, &mut p, "VM.unpause", serde_json::json!([s, vm]));
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Running"
    );
    ok(&mut api, &mut p, "VM.pause", serde_json::json!([s, vm]));
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Paused"
    );
    let task = ok(
        &mut api,
        &mut p,
        "Async.VM.hard_reboot",
        serde_json::json!([s, vm]),
    );
    api.poll_vms(&mut p);
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "task.get_status",
            serde_json::json!([s, task])
        ),
        "success"
    );
    let r = ok(
        &mut api,
        &mut p,
        "VM.get_record",
        serde_json::json!([s, vm]),
    );
    assert_eq!(r["power_state"], "Running");
    assert_eq!(r["domid"], 2, "a new domain");
    assert_eq!(p.hv.as_ref().unwrap().guests.len(), 2);
}

#[test]
fn start_errors_are_xapis() {
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "vdi:1234"]),
    );
    let e = err(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    assert_eq!(e[0], "BOOTLOADER_FAILED");
    assert!(e[2].as_str().unwrap().contains("not supported yet"), "{e}");
    ok(
        &mut api,
        &mut p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:../x"]),
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.start",
            serde_json::json!([s, vm, false, false])
        )[0],
        "BOOTLOADER_FAILED"
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:other"]),
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.start",
            serde_json::json!([s, vm, false, false])
        )[0],
        "BOOTLOADER_FAILED"
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:debian/vmlinuz"]),
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_memory",
        serde_json::json!([s, vm, 2i64 << 30]),
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.start",
            serde_json::json!([s, vm, false, false])
        ),
        serde_json::json!([
            "HOST_NOT_ENOUGH_FREE_MEMORY",
            (2u64 << 30).to_string(),
            (1u64 << 30).to_string()
        ])
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.set_memory_limits",
            serde_json::json!([s, vm, 64, 32, 32, 32])
        )[0],
        "MEMORY_CONSTRAINT_VIOLATION"
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_memory_limits",
        serde_json::json!([s, vm, 32 << 20, 128 << 20, 64 << 20, 128 << 20]),
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.set_VCPUs_at_startup",
            serde_json::json!([s, vm, 2])
        ),
        serde_json::json!(["INVALID_VALUE", "VCPUs_at_startup", "2"])
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_VCPUs_max",
        serde_json::json!([s, vm, 2]),
    );
    ok(
        &mut api,
        &mut p,
        "VM.set_VCPUs_at_startup",
        serde_json::json!([s, vm, 2]),
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.set_VCPUs_max",
            serde_json::json!([s, vm, 1])
        ),
        serde_json::json!(["INVALID_VALUE", "VCPUs_max", "1"])
    );
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let (spec, _) = p.hv.as_ref().unwrap().guests.get(&1).unwrap().clone();
    assert_eq!((spec.vcpus, spec.memory_bytes), (2, 128 << 20));
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.set_memory",
            serde_json::json!([s, vm, 64 << 20])
        ),
        serde_json::json!(["VM_BAD_POWER_STATE", vm, "halted", "running"])
    );
}

#[test]
fn without_a_hypervisor_start_is_refused_and_stale_states_are_halted() {
    let (mut api, mut p) = service();
    api.poll_vms(&mut p);
    let s = login(&mut api, &mut p);
    let vm = debian_vm(&mut api, &mut p, &s);
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "VM.start",
            serde_json::json!([s, vm, false, false])
        ),
        serde_json::json!(["NOT_IMPLEMENTED", "VM.start"])
    );
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Halted"
    );
}

#[test]
fn auto_poweron_starts_marked_vms_in_order_after_their_delay() {
    let (mut api, mut p) = service();
    p.hv = Some(FakeHv::default());
    api.poll_vms(&mut p);
    let s = login(&mut api, &mut p);
    let a = debian_vm(&mut api, &mut p, &s);
    let b = ok(
        &mut api,
        &mut p,
        "VM.clone",
        serde_json::json!([s, a, "deb2"]),
    )
    .as_str()
    .unwrap()
    .to_string();
    let c = ok(
        &mut api,
        &mut p,
        "VM.clone",
        serde_json::json!([s, a, "deb3"]),
    )
    .as_str()
    .unwrap()
    .to_string();
    for (vm, order) in [(&a, 2), (&b, 1)] {
        ok(
            &mut api,
            &mut p,
            "VM.add_to_other_config",
            serde_json::json!([s, vm, "auto_poweron", "true"]),
        );
        ok(
            &mut api,
            &mut p,
            "VM.set_order",
            serde_json::json!([s, vm, order]),
        );
    }
    ok(
        &mut api,
        &mut p,
        "VM.set_start_delay",
        serde_json::json!([s, b, 30]),
    );
    let pool = ok(&mut api, &mut p, "pool.get_all", serde_json::json!([s]))[0].clone();
    ok(
        &mut api,
        &mut p,
        "pool.add_to_other_config",
        serde_json::json!([s, pool, "auto_poweron", "true"]),
    );
    // As after a reboot: the records are looked at again.
    api.vms_checked = false;
    api.poll_vms(&mut p);
    let state = |api: &mut XenApi, p: &mut FakePlatform, vm: &str| {
        ok(api, p, "VM.get_power_state", serde_json::json!([s, vm]))
    };
    assert_eq!(state(&mut api, &mut p, &b), "Running", "order 1 first");
    assert_eq!(
        state(&mut api, &mut p, &a),
        "Halted",
        "waits for b's start_delay"
    );
    p.now += Duration::from_secs(30);
    api.poll_vms(&mut p);
    assert_eq!(state(&mut api, &mut p, &a), "Running");
    assert_eq!(state(&mut api, &mut p, &c), "Halted", "not marked");
}

#[test]
fn console_connect_carries_the_guest_console_both_ways() {
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let console = ok(
        &mut api,
        &mut p,
        "VM.get_consoles",
        serde_json::json!([s, vm]),
    )[0]
    .as_str()
    .unwrap()
    .to_string();
    let connect = |api: &mut XenApi, p: &mut FakePlatform, query: &str| {
        let raw = format!("CONNECT /console?{query} HTTP/1.0\r\n\r\n");
        let Ok(Parse::Complete { request, .. }) = parse_request(raw.as_bytes(), &Limits::default())
        else {
            panic!("request must parse");
        };
        api.console_connect(&request, p)
    };
    let status = |reply: Reply| match reply {
        Reply::Now(r) => r.status().code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status(connect(
            &mut api,
            &mut p,
            &format!("ref={console}&session_id=OpaqueRef:nope")
        )),
        401
    );
    assert_eq!(
        status(connect(
            &mut api,
            &mut p,
            &format!("ref=OpaqueRef:nope&session_id={s}")
        )),
        404
    );
    let Reply::Tunnel(ticket) = connect(&mut api, &mut p, &format!("ref={console}&session_id={s}"))
    else {
        panic!("tunnel")
    };
    let mut out = Vec::new();
    assert_eq!(api.console_io(ticket, b"", &mut out, &mut p), Some(0));
    assert_eq!(out, b"boot ok\n");
    out.clear();
    assert_eq!(api.console_io(ticket, b"ls\n", &mut out, &mut p), Some(3));
    assert_eq!(api.console_io(ticket, b"", &mut out, &mut p), Some(0));
    assert_eq!(
        out, b"ls\n",
        "what was typed reached the guest, and its echo came back"
    );
    p.set_status(crate::platform::VmId(1), crate::platform::VmStatus::Halted);
    api.poll_vms(&mut p);
    assert_eq!(
        api.console_io(ticket, b"", &mut out, &mut p),
        None,
        "the VM is off: closed"
    );
}

#[test]
fn a_guest_reset_is_a_new_domain_and_a_crash_follows_actions_after_crash() {
    let (mut api, mut p, s) = with_hv(false);
    let vm = debian_vm(&mut api, &mut p, &s);
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let domid = |api: &mut XenApi, p: &mut FakePlatform| {
        ok(api, p, "VM.get_domid", serde_json::json!([s, vm]))
    };
    assert_eq!(domid(&mut api, &mut p), 1);
    // The kernel restarted the guest after it reset itself.
    let g = p.hv.as_mut().unwrap().guests.get_mut(&1).unwrap();
    g.1 = crate::platform::VmStatus::Running {
        paused: false,
        restarts: 1,
    };
    api.poll_vms(&mut p);
    assert_eq!(domid(&mut api, &mut p), 2);
    assert_eq!(
        ok(
            &mut api,
            &mut p,
            "VM.get_power_state",
            serde_json::json!([s, vm])
        ),
        "Running"
    );
    let state = |api: &mut XenApi, p: &mut FakePlatform| {
        ok(api, p, "VM.get_power_state", serde_json::json!([s, vm]))
    };
    let crash = |api: &mut XenApi, p: &mut FakePlatform| {
        let id = p.hv.as_ref().unwrap().guests.len() as u64;
        p.set_status(
            crate::platform::VmId(id),
            crate::platform::VmStatus::Crashed("triple fault".into()),
        );
        api.poll_vms(p);
    };
    // actions_after_crash=restart (the default): started again, a new domain.
    crash(&mut api, &mut p);
    assert_eq!(state(&mut api, &mut p), "Running");
    assert_eq!(domid(&mut api, &mut p), 3);
    assert_eq!(p.hv.as_ref().unwrap().guests.len(), 2);
    // A crash loop ends: the fourth crash within a minute is not restarted.
    crash(&mut api, &mut p);
    crash(&mut api, &mut p);
    assert_eq!(state(&mut api, &mut p), "Running");
    crash(&mut api, &mut p);
    assert_eq!(state(&mut api, &mut p), "Halted");
    assert_eq!(domid(&mut api, &mut p), -1);
    // actions_after_crash=destroy: off at the first crash.
    ok(
        &mut api,
        &mut p,
        "VM.set_actions_after_crash",
        serde_json::json!([s, vm, "destroy"]),
    );
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    crash(&mut api, &mut p);
    assert_eq!(state(&mut api, &mut p), "Halted");
    // actions_after_reboot=destroy: a guest reset ends the VM.
    ok(
        &mut api,
        &mut p,
        "VM.set_actions_after_reboot",
        serde_json::json!([s, vm, "destroy"]),
    );
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    let id = p.hv.as_ref().unwrap().guests.len() as u64;
    p.hv.as_mut().unwrap().guests.get_mut(&id).unwrap().1 = crate::platform::VmStatus::Running {
        paused: false,
        restarts: 1,
    };
    api.poll_vms(&mut p);
    api.poll_vms(&mut p);
    assert_eq!(state(&mut api, &mut p), "Halted");
}

#[test]
fn maintenance_with_a_running_vm() {
    let (mut api, mut p, s) = with_hv(true);
    let vm = debian_vm(&mut api, &mut p, &s);
    let host = ok(&mut api, &mut p, "host.get_all", serde_json::json!([s]))[0].clone();
    ok(
        &mut api,
        &mut p,
        "VM.start",
        serde_json::json!([s, vm, false, false]),
    );
    ok(
        &mut api,
        &mut p,
        "host.disable",
        serde_json::json!([s, host]),
    );
    // A pool of one has nowhere to move it, and the host is in use.
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "host.evacuate",
            serde_json::json!([s, host])
        ),
        serde_json::json!(["NO_HOSTS_AVAILABLE"])
    );
    assert_eq!(
        err(
            &mut api,
            &mut p,
            "host.shutdown",
            serde_json::json!([s, host])
        ),
        serde_json::json!(["HOST_IN_USE", host, "vm", vm])
    );
}
