//! `VM.clone`/`VM.copy` of a VM with disks on an iSCSI SR and VIFs: the
//! jobs' results are made up here (the job itself is checked against tgtd
//! in `crate::iscsi::tests`, the whole call in the pytest suite).

use super::*;
use crate::iscsi::{JobError, JobOutput, SrOp, SrSummary, VdiClone, Work};
use storage::sr::VdiInfo;

const SR_UUID: [u8; 16] = [0x5a; 16];

pub(super) struct Fixture {
    pub(super) api: XenApi,
    pub(super) p: FakePlatform,
    pub(super) s: String,
    /// The VDIs on the SR (what a job's summary lists).
    pub(super) vdis: Vec<VdiInfo>,
}

pub(super) fn ok(f: &mut Fixture, method: &str, params: serde_json::Value) -> serde_json::Value {
    let r = json(&mut f.api, &mut f.p, method, params);
    assert!(r["error"].is_null(), "{method}: {r}");
    r["result"].clone()
}

pub(super) fn error(f: &mut Fixture, method: &str, params: serde_json::Value) -> serde_json::Value {
    let r = json(&mut f.api, &mut f.p, method, params);
    assert!(r["result"].is_null(), "{method} must fail: {r}");
    let mut all = vec![r["error"]["message"].clone()];
    all.extend(r["error"]["data"].as_array().cloned().unwrap_or_default());
    serde_json::Value::Array(all)
}

pub(super) fn text(v: serde_json::Value) -> String {
    v.as_str().expect("a string").to_string()
}

fn count(f: &mut Fixture, class: &str) -> usize {
    let s = f.s.clone();
    ok(f, &format!("{class}.get_all"), serde_json::json!([s]))
        .as_array()
        .map_or(0, Vec::len)
}

/// A call answered when its job ends: its ticket.
pub(super) fn deferred(f: &mut Fixture, method: &str, params: serde_json::Value) -> Ticket {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params})
        .to_string();
    let Reply::Later(ticket) = post(&mut f.api, &mut f.p, "/jsonrpc", &body) else {
        panic!("{method} must wait for its job")
    };
    ticket
}

pub(super) fn answer(f: &mut Fixture, ticket: Ticket) -> serde_json::Value {
    let response = f.api.resume(ticket, &mut f.p).expect("answered");
    serde_json::from_slice(response.body()).unwrap()
}

fn summary(vdis: &[VdiInfo]) -> SrSummary {
    SrSummary {
        uuid: SR_UUID,
        sr_type: storage::sr::SrType::Iscsi,
        physical_size: 1 << 30,
        physical_utilisation: 4 << 20,
        vdis: vdis.to_vec(),
    }
}

fn info(uuid: [u8; 16], name: &str, size: u64, origin: Option<[u8; 16]>) -> VdiInfo {
    VdiInfo {
        uuid,
        name: String::from(name),
        virtual_size: size,
        read_only: false,
        physical_utilisation: 0,
        chain_len: 1,
        origin,
        is_a_snapshot: false,
    }
}

/// An iSCSI SR (introduced, with a PBD naming its LUN), as storage calls
/// need it.
fn iscsi_sr(f: &mut Fixture, name: &str, uuid: [u8; 16]) -> String {
    let s = f.s.clone();
    let host = text(ok(f, "host.get_all", serde_json::json!([s]))[0].clone());
    let sr = text(ok(
        f,
        "SR.introduce",
        serde_json::json!([
            s,
            crate::xenapi::db::uuid_from(uuid),
            name,
            "",
            "lvmoiscsi",
            "user",
            true,
            {}
        ]),
    ));
    let config = serde_json::json!({"target": "192.0.2.20", "targetIQN": "iqn.2026-12.example:pool",
        "SCSIid": format!("36001405{name}")});
    ok(
        f,
        "PBD.create",
        serde_json::json!([s, {"host": host, "SR": sr, "device_config": config}]),
    );
    sr
}

fn make_vdi(f: &mut Fixture, sr: &str, name: &str, size: u64) -> (String, [u8; 16]) {
    let s = f.s.clone();
    let ticket = deferred(
        f,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": name, "name_description": "d", "type": "user",
            "virtual_size": size.to_string(), "other_config": {"k": name}}]),
    );
    let (id, spec) = f.api.take_storage_jobs().remove(0);
    let Work::Sr {
        op: SrOp::CreateVdi { uuid, .. },
        ..
    } = spec.work
    else {
        panic!("a VDI create job")
    };
    f.vdis.push(info(uuid, name, size, None));
    let out = summary(&f.vdis);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    (text(answer(f, ticket)["result"].clone()), uuid)
}

/// A halted VM with two disks on `sr` (userdevice 1 made first) and two
/// VIFs on the management network, one with a generated MAC.
fn vm_with_devices(f: &mut Fixture, sr: &str) -> (String, Vec<(String, [u8; 16])>, String) {
    let s = f.s.clone();
    let vm = text(ok(
        f,
        "VM.create",
        serde_json::json!([s, vm_record("orig")]),
    ));
    let data = make_vdi(f, sr, "data", 4 << 20);
    let root = make_vdi(f, sr, "root", 8 << 20);
    for (vdi, device, mode, bootable) in [(&data.0, "1", "RO", false), (&root.0, "0", "RW", true)] {
        ok(
            f,
            "VBD.create",
            serde_json::json!([s, {"VM": vm, "VDI": vdi, "userdevice": device, "bootable": bootable,
                "mode": mode, "type": "Disk", "empty": false, "other_config": {"position": device}}]),
        );
    }
    let network = text(ok(f, "network.get_all", serde_json::json!([s]))[0].clone());
    for (device, mac) in [("0", ""), ("1", "02:00:00:00:00:42")] {
        ok(
            f,
            "VIF.create",
            serde_json::json!([s, {"VM": vm, "network": network, "device": device, "MAC": mac,
                "MTU": "1500", "other_config": {"nic": device}, "qos_algorithm_type": "",
                "qos_algorithm_params": {}}]),
        );
    }
    (vm, vec![root, data], network)
}

pub(super) fn fixture() -> Fixture {
    let (mut api, mut p) = service();
    api.enable_storage_driver();
    let s = login(&mut api, &mut p);
    Fixture {
        api,
        p,
        s,
        vdis: Vec::new(),
    }
}

/// The clone job the platform was given: its id and copies.
fn clone_job(f: &mut Fixture) -> (u64, Vec<VdiClone>) {
    let mut jobs = f.api.take_storage_jobs();
    assert_eq!(jobs.len(), 1, "one job for all the disks");
    let (id, spec) = jobs.remove(0);
    let Work::Sr {
        op: SrOp::CloneVdis { clones },
        ..
    } = spec.work
    else {
        panic!("a clone job: {:?}", spec.work)
    };
    (id, clones)
}

/// The SR made the clones: its summary lists them.
fn clones_made(f: &mut Fixture, clones: &[VdiClone]) -> SrSummary {
    for c in clones {
        let size = f
            .vdis
            .iter()
            .find(|v| v.uuid == c.of)
            .map_or(0, |v| v.virtual_size);
        f.vdis.push(info(c.new, &c.name, size, Some(c.of)));
    }
    summary(&f.vdis)
}

fn record(f: &mut Fixture, class: &str, reference: &serde_json::Value) -> serde_json::Value {
    let s = f.s.clone();
    ok(
        f,
        &format!("{class}.get_record"),
        serde_json::json!([s, reference]),
    )
}

#[test]
fn clone_copies_disks_copy_on_write_and_the_vifs_with_new_macs() {
    let mut f = fixture();
    let s = f.s.clone();
    let sr = iscsi_sr(&mut f, "pool", SR_UUID);
    let (vm, disks, network) = vm_with_devices(&mut f, &sr);
    let token = text(
        ok(
            &mut f,
            "event.from",
            serde_json::json!([s, ["VM", "VBD", "VDI", "VIF"], "", 0.0]),
        )["token"]
            .clone(),
    );
    let before = [
        count(&mut f, "VM"),
        count(&mut f, "VBD"),
        count(&mut f, "VDI"),
        count(&mut f, "VIF"),
    ];

    let ticket = deferred(&mut f, "VM.clone", serde_json::json!([s, vm, "copy"]));
    let (id, clones) = clone_job(&mut f);
    // In userdevice order, each under its original's name.
    let asked: Vec<([u8; 16], &str)> = clones.iter().map(|c| (c.of, c.name.as_str())).collect();
    assert_eq!(asked, vec![(disks[0].1, "root"), (disks[1].1, "data")]);
    assert_ne!(clones[0].new, clones[1].new);
    // Nothing is recorded before the disks exist, and the VM is held.
    assert!(f.api.resume(ticket, &mut f.p).is_none());
    assert_eq!(count(&mut f, "VM"), before[0]);
    for (method, args) in [
        ("VM.start", serde_json::json!([s, vm, false, false])),
        ("VM.destroy", serde_json::json!([s, vm])),
        ("VM.clone", serde_json::json!([s, vm, "another"])),
    ] {
        let r = json(&mut f.api, &mut f.p, method, args);
        assert_eq!(
            r["error"]["message"], "OTHER_OPERATION_IN_PROGRESS",
            "{method}: {r}"
        );
        assert_eq!(
            r["error"]["data"],
            serde_json::json!(["VM", vm]),
            "{method}"
        );
    }
    let out = clones_made(&mut f, &clones);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    let clone = answer(&mut f, ticket)["result"].clone();
    assert!(clone.is_string(), "{clone}");
    assert_eq!(
        [
            count(&mut f, "VM"),
            count(&mut f, "VBD"),
            count(&mut f, "VDI"),
            count(&mut f, "VIF"),
        ],
        [before[0] + 1, before[1] + 2, before[2] + 2, before[3] + 2]
    );

    let r = record(&mut f, "VM", &clone);
    assert_eq!(r["name_label"], "copy");
    assert_eq!(r["power_state"], "Halted");
    let original = record(&mut f, "VM", &serde_json::json!(vm));
    for field in ["memory_static_max", "VCPUs_max", "other_config"] {
        assert_eq!(r[field], original[field], "{field}");
    }
    assert_ne!(r["uuid"], original["uuid"]);
    // Each VBD copied onto the clone of its disk.
    let vbds = r["VBDs"].as_array().unwrap().clone();
    assert_eq!(vbds.len(), 2);
    let mut seen = Vec::new();
    for vbd in &vbds {
        let b = record(&mut f, "VBD", vbd);
        assert_eq!(b["VM"], clone);
        assert_eq!(b["currently_attached"], false);
        assert_eq!(b["type"], "Disk");
        let device = b["userdevice"].as_str().unwrap().to_string();
        let (mode, bootable, of) = match device.as_str() {
            "0" => ("RW", true, &disks[0]),
            "1" => ("RO", false, &disks[1]),
            other => panic!("userdevice {other}"),
        };
        assert_eq!(
            (b["mode"].as_str(), b["bootable"].as_bool()),
            (Some(mode), Some(bootable))
        );
        assert_eq!(b["other_config"]["position"], device.as_str());
        assert_ne!(b["VDI"], of.0.as_str(), "a clone, not the original disk");
        let d = record(&mut f, "VDI", &b["VDI"]);
        let made = clones.iter().find(|c| c.of == of.1).unwrap();
        assert_eq!(d["uuid"], crate::xenapi::db::uuid_from(made.new));
        assert_eq!(d["SR"], sr.as_str());
        assert_eq!(d["VBDs"], serde_json::json!([vbd]));
        assert_eq!(d["is_a_snapshot"], false);
        assert_eq!(d["read_only"], false);
        let source = record(&mut f, "VDI", &serde_json::json!(of.0));
        for field in [
            "name_label",
            "name_description",
            "type",
            "other_config",
            "virtual_size",
        ] {
            assert_eq!(d[field], source[field], "{field}");
        }
        seen.push(device);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1"]);
    // The original keeps its own devices.
    assert_eq!(original["VBDs"].as_array().map(Vec::len), Some(2));
    assert!(
        original["VBDs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !vbds.contains(v))
    );

    // VIFs: same network, device, MTU and settings; a generated MAC is
    // generated again, a given one kept.
    let vifs = r["VIFs"].as_array().unwrap().clone();
    assert_eq!(vifs.len(), 2);
    let on_network = ok(&mut f, "network.get_VIFs", serde_json::json!([s, network]));
    for vif in &vifs {
        assert!(on_network.as_array().unwrap().contains(vif), "{on_network}");
        let v = record(&mut f, "VIF", vif);
        assert_eq!(v["VM"], clone);
        assert_eq!(v["network"], network.as_str());
        assert_eq!(v["currently_attached"], false);
        let device = v["device"].as_str().unwrap().to_string();
        assert_eq!(v["other_config"]["nic"], device.as_str());
        let source = original["VIFs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| record(&mut f, "VIF", o))
            .find(|o| o["device"] == device.as_str())
            .expect("the original VIF");
        assert_eq!(v["MAC_autogenerated"], source["MAC_autogenerated"]);
        assert_eq!(v["MTU"], source["MTU"]);
        let mac = v["MAC"].as_str().unwrap();
        if device == "1" {
            assert_eq!(mac, "02:00:00:00:00:42");
        } else {
            assert_ne!(mac, source["MAC"].as_str().unwrap());
            assert!(mac.starts_with("00:16:3e:"), "{mac}");
            assert!(u8::from_str_radix(&mac[9..11], 16).unwrap() < 0x80, "{mac}");
            assert_eq!(mac.len(), 17);
        }
    }

    // Each new object was announced.
    let events = ok(
        &mut f,
        "event.from",
        serde_json::json!([s, ["VM", "VBD", "VDI", "VIF"], token, 0.0]),
    );
    let added: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "add")
        .map(|e| (text(e["class"].clone()), text(e["ref"].clone())))
        .collect();
    assert!(
        added.contains(&("vm".into(), text(clone.clone()))),
        "{added:?}"
    );
    for vbd in &vbds {
        assert!(
            added.contains(&("vbd".into(), text(vbd.clone()))),
            "{added:?}"
        );
    }
    assert_eq!(
        added.iter().filter(|(c, _)| c == "vdi").count(),
        2,
        "{added:?}"
    );
    assert_eq!(
        added.iter().filter(|(c, _)| c == "vif").count(),
        2,
        "{added:?}"
    );

    // The clone is a VM like any other: VM.destroy takes its devices, its
    // disks stay.
    ok(&mut f, "VM.destroy", serde_json::json!([s, clone]));
    assert_eq!(count(&mut f, "VBD"), before[1]);
    assert_eq!(count(&mut f, "VIF"), before[3]);
    assert_eq!(count(&mut f, "VDI"), before[2] + 2);
}

#[test]
fn a_failed_clone_job_leaves_nothing_behind() {
    let mut f = fixture();
    let s = f.s.clone();
    let sr = iscsi_sr(&mut f, "pool", SR_UUID);
    let (vm, _, _) = vm_with_devices(&mut f, &sr);
    let before = [
        count(&mut f, "VM"),
        count(&mut f, "VBD"),
        count(&mut f, "VDI"),
        count(&mut f, "VIF"),
    ];
    let after = |f: &mut Fixture| {
        [
            count(f, "VM"),
            count(f, "VBD"),
            count(f, "VDI"),
            count(f, "VIF"),
        ]
    };

    // The SR refused: nothing was written, nothing recorded.
    let ticket = deferred(&mut f, "VM.clone", serde_json::json!([s, vm, "copy"]));
    let (id, _) = clone_job(&mut f);
    f.api.storage_finished(
        id,
        Err(JobError::Sr(String::from("the SR is full"))),
        &mut f.p,
    );
    let r = answer(&mut f, ticket);
    assert_eq!(r["error"]["message"], "SR_BACKEND_FAILURE_47", "{r}");
    assert_eq!(r["error"]["data"].as_array().map(Vec::len), Some(3), "{r}");
    assert_eq!(after(&mut f), before);

    // The session broke while the clones were written: the error names
    // them (all or none exist on the SR).
    let ticket = deferred(&mut f, "VM.clone", serde_json::json!([s, vm, "copy"]));
    let (id, clones) = clone_job(&mut f);
    f.api.storage_finished(
        id,
        Err(JobError::Session(String::from("connection reset"))),
        &mut f.p,
    );
    let r = answer(&mut f, ticket);
    assert_eq!(r["error"]["message"], "SR_BACKEND_FAILURE_47", "{r}");
    let note = r["error"]["data"][3].as_str().unwrap_or("").to_string();
    for c in &clones {
        assert!(
            note.contains(&crate::xenapi::db::uuid_from(c.new)),
            "{note}"
        );
    }
    assert!(note.contains("SR.scan"), "{note}");
    assert_eq!(after(&mut f), before);

    // Through a task: it fails, still nothing made.
    let task = text(ok(
        &mut f,
        "Async.VM.clone",
        serde_json::json!([s, vm, "copy"]),
    ));
    assert_eq!(
        ok(&mut f, "task.get_status", serde_json::json!([s, task])),
        "pending"
    );
    let (id, _) = clone_job(&mut f);
    f.api
        .storage_finished(id, Err(JobError::Login(String::from("refused"))), &mut f.p);
    let t = record(&mut f, "task", &serde_json::json!(task));
    assert_eq!(t["status"], "failure", "{t}");
    assert_eq!(t["error_info"][0], "SR_BACKEND_FAILURE_68");
    assert_eq!(after(&mut f), before);
}

#[test]
fn async_clone_and_copy_within_the_sr() {
    let mut f = fixture();
    let s = f.s.clone();
    let sr = iscsi_sr(&mut f, "pool", SR_UUID);
    let (vm, _, _) = vm_with_devices(&mut f, &sr);

    let task = text(ok(
        &mut f,
        "Async.VM.clone",
        serde_json::json!([s, vm, "by-task"]),
    ));
    assert_eq!(
        ok(&mut f, "task.get_status", serde_json::json!([s, task])),
        "pending"
    );
    let (id, clones) = clone_job(&mut f);
    let out = clones_made(&mut f, &clones);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    let t = record(&mut f, "task", &serde_json::json!(task));
    assert_eq!(t["status"], "success", "{t}");
    let made = text(t["result"].clone())
        .trim_start_matches("<value>")
        .trim_end_matches("</value>")
        .to_string();
    assert_eq!(
        ok(&mut f, "VM.get_name_label", serde_json::json!([s, made])),
        "by-task"
    );

    // VM.copy with no SR, or the disks' SR: the same copy-on-write clone.
    for (name, target) in [("copy-null", "OpaqueRef:NULL"), ("copy-same", sr.as_str())] {
        let ticket = deferred(&mut f, "VM.copy", serde_json::json!([s, vm, name, target]));
        let (id, clones) = clone_job(&mut f);
        assert_eq!(clones.len(), 2);
        let out = clones_made(&mut f, &clones);
        f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
        let copy = answer(&mut f, ticket)["result"].clone();
        assert_eq!(record(&mut f, "VM", &copy)["name_label"], name);
    }
}

#[test]
fn clones_that_cannot_be_made_in_one_job_are_refused_before_any() {
    let mut f = fixture();
    let s = f.s.clone();
    let sr = iscsi_sr(&mut f, "pool", SR_UUID);
    let other = iscsi_sr(&mut f, "other", [0x6b; 16]);
    let (vm, _, _) = vm_with_devices(&mut f, &sr);
    let vms = count(&mut f, "VM");

    // A full copy to another SR is not made here.
    let r = error(
        &mut f,
        "VM.copy",
        serde_json::json!([s, vm, "elsewhere", other]),
    );
    assert_eq!(r[0], "VALUE_NOT_SUPPORTED");
    assert_eq!(
        (r[1].as_str(), r[2].as_str()),
        (Some("sr"), Some(other.as_str()))
    );

    // Disks on two SRs.
    let (far, _) = make_vdi(&mut f, &other, "far", 1 << 20);
    ok(
        &mut f,
        "VBD.create",
        serde_json::json!([s, {"VM": vm, "VDI": far, "userdevice": "2", "bootable": false,
            "mode": "RW", "type": "Disk", "empty": false, "other_config": {}}]),
    );
    let r = error(&mut f, "VM.clone", serde_json::json!([s, vm, "split"]));
    assert_eq!(r[0], "OPERATION_NOT_ALLOWED");
    assert!(r[1].as_str().unwrap().contains("more than one SR"), "{r}");
    let task = text(ok(
        &mut f,
        "Async.VM.clone",
        serde_json::json!([s, vm, "split"]),
    ));
    let t = record(&mut f, "task", &serde_json::json!(task));
    assert_eq!(
        (t["status"].as_str(), t["error_info"][0].as_str()),
        (Some("failure"), Some("OPERATION_NOT_ALLOWED"))
    );
    assert!(f.api.take_storage_jobs().is_empty());
    assert_eq!(count(&mut f, "VM"), vms);

    // A running VM is not cloned.
    let mut g = fixture();
    let s = g.s.clone();
    g.p.hv = Some(FakeHv::default());
    let sr = iscsi_sr(&mut g, "pool", SR_UUID);
    let (vm, _, _) = vm_with_devices(&mut g, &sr);
    // (The fake platform starts no guest NICs.)
    for vif in ok(&mut g, "VM.get_VIFs", serde_json::json!([s, vm]))
        .as_array()
        .unwrap()
        .clone()
    {
        ok(&mut g, "VIF.destroy", serde_json::json!([s, vif]));
    }
    ok(
        &mut g,
        "VM.set_PV_kernel",
        serde_json::json!([s, vm, "boot:debian/vmlinuz"]),
    );
    ok(&mut g, "VM.start", serde_json::json!([s, vm, false, false]));
    let r = error(&mut g, "VM.clone", serde_json::json!([s, vm, "hot"]));
    assert_eq!(r[0], "VM_BAD_POWER_STATE");
    // The disks attached for the start have their I/O jobs; no clone job.
    assert!(g.api.take_storage_jobs().iter().all(|(_, spec)| !matches!(
        &spec.work,
        Work::Sr {
            op: SrOp::CloneVdis { .. },
            ..
        }
    )));
}

#[test]
fn without_an_iscsi_driver_a_vm_with_disks_is_not_cloned_and_one_without_is() {
    let mut f = fixture();
    let s = f.s.clone();
    let sr = iscsi_sr(&mut f, "pool", SR_UUID);
    let (vm, _, _) = vm_with_devices(&mut f, &sr);
    f.api.storage_driver = false;
    let r = error(&mut f, "VM.clone", serde_json::json!([s, vm, "c"]));
    assert_eq!(r[0], "NOT_IMPLEMENTED");
    // A VM without disks is cloned at once, its VIFs with it.
    let bare = text(ok(
        &mut f,
        "VM.create",
        serde_json::json!([s, vm_record("bare")]),
    ));
    let network = text(ok(&mut f, "network.get_all", serde_json::json!([s]))[0].clone());
    ok(
        &mut f,
        "VIF.create",
        serde_json::json!([s, {"VM": bare, "network": network, "device": "0", "MAC": "",
            "MTU": "1500", "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}]),
    );
    let c = ok(&mut f, "VM.clone", serde_json::json!([s, bare, "c"]));
    let r = record(&mut f, "VM", &c);
    assert_eq!(r["VBDs"], serde_json::json!([]));
    assert_eq!(r["VIFs"].as_array().map(Vec::len), Some(1));
}
