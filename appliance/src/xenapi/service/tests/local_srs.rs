//! Local SRs (`lvm`/`ext` on a host disk): the calls end to end, their
//! jobs run on in-memory disks by [`LocalDisks`] as the platforms run them.

use super::vm_clone::{Fixture, answer, deferred, error, fixture, ok, text};
use super::*;
use crate::local_disks::{HostDiskInfo, LocalDisks};
use storage::mem::MemBlockDevice;

const DISK_BYTES: u64 = 256 << 20;
const BY_ID: &str = "/dev/disk/by-id/virtio-data";

fn disks() -> LocalDisks {
    let mut d = LocalDisks::new();
    for (device, by_id, reserved) in [
        ("/dev/vda", None, Some("the host's state disk")),
        ("/dev/vdb", Some(BY_ID), None),
    ] {
        d.add(
            HostDiskInfo {
                device: String::from(device),
                by_id: by_id.map(String::from),
                size: DISK_BYTES,
                reserved: reserved.map(String::from),
            },
            alloc::boxed::Box::new(MemBlockDevice::new(512, DISK_BYTES / 512)),
        );
    }
    d
}

/// A deferred call, its jobs run on the disks, then its answer.
fn run(
    f: &mut Fixture,
    local: &mut LocalDisks,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let ticket = deferred(f, method, params);
    let (left, ran) = local.run_jobs(f.api.take_storage_jobs(), &mut f.api, &mut f.p);
    assert!(ran && left.is_empty(), "{method}: {left:?}");
    answer(f, ticket)
}

fn result(r: serde_json::Value) -> serde_json::Value {
    assert!(r["error"].is_null(), "{r}");
    r["result"].clone()
}

const NO_SR: &str = "<?xml version=\"1.0\" ?>\n<SRlist/>\n";

/// `SR.probe` of `/dev/vdb`: the `<SRlist>`.
fn probe(f: &mut Fixture, local: &mut LocalDisks, host: &str) -> String {
    let s = f.s.clone();
    let params = serde_json::json!([s, host, {"device": "/dev/vdb"}, "lvm", {}]);
    text(call(f, local, "SR.probe", params))
}

/// A deferred call that must succeed: its result.
fn call(
    f: &mut Fixture,
    local: &mut LocalDisks,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    result(run(f, local, method, params))
}

#[test]
fn local_sr_lifecycle() {
    let mut f = fixture();
    let mut local = disks();
    f.api.set_host_disks(local.infos());
    let s = f.s.clone();
    let host = text(ok(&mut f, "host.get_all", serde_json::json!([s]))[0].clone());

    // No device: sm's error 90 with the candidate disks (not the state disk).
    let e = error(
        &mut f,
        "SR.probe",
        serde_json::json!([s, host, {}, "lvm", {}]),
    );
    assert_eq!(e[0], "SR_BACKEND_FAILURE_90", "{e}");
    let xml = e[3].as_str().unwrap();
    assert!(
        xml.contains("<path>/dev/vdb</path>")
            && xml.contains(&format!("<id>{BY_ID}</id>"))
            && xml.contains(&format!("<size>{DISK_BYTES}</size>"))
            && !xml.contains("/dev/vda"),
        "{xml}"
    );

    // A blank disk holds no SR.
    assert_eq!(probe(&mut f, &mut local, &host), NO_SR);

    // The state disk, a disk that is not there, a shared local SR: refused.
    for (device, shared, code) in [
        ("/dev/vda", false, "SR_BACKEND_FAILURE_70"),
        ("/dev/vdz", false, "SR_BACKEND_FAILURE_70"),
        ("/dev/vdb", true, "INVALID_VALUE"),
    ] {
        let e = error(
            &mut f,
            "SR.create",
            serde_json::json!([s, host, {"device": device}, "0", "x", "", "lvm", "user", shared, {}]),
        );
        assert_eq!(e[0], code, "{device}: {e}");
    }
    assert!(f.api.take_storage_jobs().is_empty());

    // Created by its stable name; the type asked for is kept.
    let sr = text(call(
        &mut f,
        &mut local,
        "SR.create",
        serde_json::json!([s, host, {"device": BY_ID}, "0", "local", "", "ext", "user", false, {}]),
    ));
    let record = ok(&mut f, "SR.get_record", serde_json::json!([s, sr]));
    assert_eq!(record["type"], "ext");
    assert_eq!(record["shared"], false);
    let size = record["physical_size"]
        .as_i64()
        .or_else(|| record["physical_size"].as_str()?.parse().ok())
        .unwrap();
    assert!(size > 0 && size as u64 <= DISK_BYTES, "{record}");
    let pbd = text(record["PBDs"][0].clone());
    assert_eq!(
        ok(
            &mut f,
            "PBD.get_currently_attached",
            serde_json::json!([s, pbd])
        ),
        true
    );
    let uuid = text(record["uuid"].clone());

    // The disk is in use now, by either name.
    let e = error(
        &mut f,
        "SR.create",
        serde_json::json!([s, host, {"device": "/dev/vdb"}, "0", "x", "", "lvm", "user", false, {}]),
    );
    assert_eq!(e[0], "SR_BACKEND_FAILURE_70", "{e}");
    let found = probe(&mut f, &mut local, &host);
    assert!(found.contains(&uuid), "{found}");

    // VDIs as on an iSCSI SR.
    let vdi = text(result(run(
        &mut f,
        &mut local,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": "disk", "virtual_size": "16777216",
            "type": "user", "sharable": false, "read_only": false, "other_config": {}}]),
    )));
    let snap = text(call(
        &mut f,
        &mut local,
        "VDI.snapshot",
        serde_json::json!([s, vdi, {}]),
    ));
    let clone = text(call(
        &mut f,
        &mut local,
        "VDI.clone",
        serde_json::json!([s, vdi, {}]),
    ));
    assert_eq!(
        ok(
            &mut f,
            "VDI.get_is_a_snapshot",
            serde_json::json!([s, snap])
        ),
        true
    );
    call(
        &mut f,
        &mut local,
        "VDI.destroy",
        serde_json::json!([s, clone]),
    );
    let vdis = ok(&mut f, "SR.get_VDIs", serde_json::json!([s, sr]));
    assert_eq!(vdis.as_array().unwrap().len(), 2, "{vdis}");

    // Grown to whole sectors; never shrunk.
    call(
        &mut f,
        &mut local,
        "VDI.resize",
        serde_json::json!([s, vdi, "33554000"]),
    );
    let size = ok(&mut f, "VDI.get_virtual_size", serde_json::json!([s, vdi]));
    assert_eq!(size.to_string().trim_matches('"'), "33554432");
    let e = error(&mut f, "VDI.resize", serde_json::json!([s, vdi, "1048576"]));
    assert_eq!(e[0], "SR_BACKEND_FAILURE_79", "{e}");

    // Forgotten, then introduced and plugged again: its VDIs come back.
    ok(&mut f, "SR.forget", serde_json::json!([s, sr]));
    let sr = text(ok(
        &mut f,
        "SR.introduce",
        serde_json::json!([s, uuid, "again", "", "lvm", "user", false, {}]),
    ));
    let pbd = text(ok(
        &mut f,
        "PBD.create",
        serde_json::json!([s, {"host": host, "SR": sr, "device_config": {"device": "/dev/vdb"}}]),
    ));
    call(&mut f, &mut local, "PBD.plug", serde_json::json!([s, pbd]));
    let vdis = ok(&mut f, "SR.get_VDIs", serde_json::json!([s, sr]));
    assert_eq!(vdis.as_array().unwrap().len(), 2, "{vdis}");
    call(&mut f, &mut local, "SR.scan", serde_json::json!([s, sr]));

    // Destroyed once empty: the disk holds no SR any more.
    let e = error(&mut f, "SR.destroy", serde_json::json!([s, sr]));
    assert_eq!(e[0], "SR_NOT_EMPTY", "{e}");
    let vdis = ok(&mut f, "SR.get_VDIs", serde_json::json!([s, sr]));
    for vdi in vdis.as_array().unwrap() {
        call(
            &mut f,
            &mut local,
            "VDI.destroy",
            serde_json::json!([s, vdi]),
        );
    }
    call(&mut f, &mut local, "SR.destroy", serde_json::json!([s, sr]));
    assert_eq!(probe(&mut f, &mut local, &host), NO_SR);
}
