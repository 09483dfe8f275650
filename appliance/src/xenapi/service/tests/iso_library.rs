//! `iso` SRs (ISO libraries) on a LUN: the calls and the jobs they queue,
//! the jobs' results made up here (the jobs run against tgtd in
//! `crate::iscsi::tests`, the whole flow in the pytest suite).

use super::vm_clone::{Fixture, answer, deferred, error, fixture, ok, text};
use super::*;
use crate::iscsi::{JobOutput, SrOp, SrSummary, Work};
use storage::sr::{SrType, VdiInfo};

const LUN: &str = "36001405isolib";

fn config() -> serde_json::Value {
    serde_json::json!({"target": "192.0.2.30", "targetIQN": "iqn.2026-12.example:isos",
        "SCSIid": LUN})
}

fn summary(uuid: [u8; 16], sr_type: SrType, vdis: &[VdiInfo]) -> SrSummary {
    SrSummary {
        uuid,
        sr_type,
        physical_size: 1 << 30,
        physical_utilisation: 0,
        vdis: vdis.to_vec(),
    }
}

fn iso(uuid: [u8; 16], name: &str, read_only: bool) -> VdiInfo {
    VdiInfo {
        uuid,
        name: String::from(name),
        virtual_size: 4 << 20,
        read_only,
        physical_utilisation: 4 << 20,
        chain_len: 1,
        origin: None,
        is_a_snapshot: false,
    }
}

/// `SR.create` of type `iso`: formats the LUN as an ISO library.
fn create_iso_sr(f: &mut Fixture) -> (String, [u8; 16]) {
    let s = f.s.clone();
    let host = text(ok(f, "host.get_all", serde_json::json!([s]))[0].clone());
    let ticket = deferred(
        f,
        "SR.create",
        serde_json::json!([s, host, config(), "0", "isos", "", "iso", "", true, {}]),
    );
    let (id, spec) = f.api.take_storage_jobs().remove(0);
    let Work::Sr {
        op: SrOp::Format { uuid, sr_type },
        ..
    } = spec.work
    else {
        panic!("a format job: {:?}", spec.work)
    };
    assert_eq!(sr_type, SrType::Iso);
    let out = summary(uuid, SrType::Iso, &[]);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    (text(answer(f, ticket)["result"].clone()), uuid)
}

#[test]
fn an_iso_library_lists_finished_isos_and_gives_read_only_cds() {
    let mut f = fixture();
    let s = f.s.clone();
    let (sr, sr_uuid) = create_iso_sr(&mut f);
    let record = ok(&mut f, "SR.get_record", serde_json::json!([s, sr]));
    assert_eq!(
        (record["type"].clone(), record["content_type"].clone()),
        ("iso".into(), "iso".into())
    );

    // VDI.create starts an ISO: writable until its upload is finished.
    let ticket = deferred(
        &mut f,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": "a.iso", "virtual_size": "4194304",
            "read_only": true}]),
    );
    let (id, spec) = f.api.take_storage_jobs().remove(0);
    let Work::Sr {
        op: SrOp::CreateVdi { uuid: a, .. },
        ..
    } = spec.work
    else {
        panic!("a create job")
    };
    let mut on_lun = vec![iso(a, "a.iso", false)];
    let out = summary(sr_uuid, SrType::Iso, &on_lun);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    let vdi = text(answer(&mut f, ticket)["result"].clone());
    assert_eq!(
        ok(&mut f, "VDI.get_read_only", serde_json::json!([s, vdi])),
        false
    );
    // Another ISO of the same name is refused before any job.
    let clash = error(
        &mut f,
        "VDI.create",
        serde_json::json!([s, {"SR": sr, "name_label": "a.iso", "virtual_size": "512"}]),
    );
    assert_eq!(clash[0], "INVALID_VALUE", "{clash}");
    assert_eq!(clash[1], "name_label");
    assert!(f.api.take_storage_jobs().is_empty());
    // No CD of an ISO being uploaded; ISOs are not copied.
    let vm = text(ok(
        &mut f,
        "VM.create",
        serde_json::json!([s, vm_record("cd")]),
    ));
    let cd = serde_json::json!({"VM": vm, "VDI": vdi, "userdevice": "3", "bootable": false,
        "mode": "RO", "type": "CD", "empty": false, "other_config": {}});
    let r = error(&mut f, "VBD.create", serde_json::json!([s, cd]));
    assert_eq!(r[0], "VDI_NOT_AVAILABLE", "{r}");
    let r = error(&mut f, "VDI.clone", serde_json::json!([s, vdi, {}]));
    assert_eq!(r[0], "SR_OPERATION_NOT_SUPPORTED", "{r}");

    // A scan during the upload keeps the awaited ISO and lists no
    // unfinished one it does not await.
    on_lun.push(iso([0xb0; 16], "cut.iso", false));
    let ticket = deferred(&mut f, "SR.scan", serde_json::json!([s, sr]));
    let (id, _) = f.api.take_storage_jobs().remove(0);
    let out = summary(sr_uuid, SrType::Iso, &on_lun);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    answer(&mut f, ticket);
    let listed = ok(&mut f, "SR.get_VDIs", serde_json::json!([s, sr]));
    assert_eq!(listed, serde_json::json!([vdi]));

    // Finished on the LUN: a scan shows it read-only; a CD of it must be RO.
    on_lun[0].read_only = true;
    let ticket = deferred(&mut f, "SR.scan", serde_json::json!([s, sr]));
    let (id, _) = f.api.take_storage_jobs().remove(0);
    let out = summary(sr_uuid, SrType::Iso, &on_lun);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    answer(&mut f, ticket);
    let record = ok(&mut f, "VDI.get_record", serde_json::json!([s, vdi]));
    assert_eq!(record["read_only"], true);
    assert_eq!(record["is_a_snapshot"], false);
    assert_eq!(record["name_label"], "a.iso");
    let mut rw = cd.clone();
    rw["mode"] = "RW".into();
    let r = error(&mut f, "VBD.create", serde_json::json!([s, rw]));
    assert_eq!(r[0], "VBD_CDS_MUST_BE_READONLY", "{r}");
    // An empty drive: no VDI, and no device for the guest.
    let mut empty = cd.clone();
    empty["empty"] = true.into();
    empty["userdevice"] = "4".into();
    let drive = text(ok(&mut f, "VBD.create", serde_json::json!([s, empty])));
    let record = ok(&mut f, "VBD.get_record", serde_json::json!([s, drive]));
    assert_eq!(record["VDI"], "OpaqueRef:NULL", "{record}");
    let vbd = text(ok(&mut f, "VBD.create", serde_json::json!([s, cd])));
    let disks = f.api.attach_vm_disks(&vm).expect("attached");
    assert_eq!(disks.len(), 1, "the empty drive gives no disk");
    assert!(disks[0].read_only);
    assert!(disks[0].channel.geometry().read_only);
    assert_eq!(disks[0].channel.geometry().num_blocks, 8192);
    assert_eq!(
        ok(&mut f, "VBD.get_device", serde_json::json!([s, vbd])),
        "xvdd"
    );
    // Another VM may have the same ISO in its drive at the same time.
    let other = text(ok(
        &mut f,
        "VM.create",
        serde_json::json!([s, vm_record("cd2")]),
    ));
    let mut cd2 = cd.clone();
    cd2["VM"] = other.clone().into();
    ok(&mut f, "VBD.create", serde_json::json!([s, cd2]));
    let shared = f.api.attach_vm_disks(&other).expect("the ISO is shared");
    assert_eq!(shared.len(), 1);
    f.api.detach_vm_disks(&other);
    // The media of a running VM's drive does not change.
    let state = crate::xenapi::schema::VM
        .field("power_state")
        .map(|(i, _)| i)
        .unwrap();
    f.api.db.set_field(
        &crate::xenapi::schema::VM,
        &vm,
        state,
        Value::str("Running"),
    );
    let r = error(&mut f, "VBD.eject", serde_json::json!([s, vbd]));
    assert_eq!(r[0], "OPERATION_NOT_ALLOWED", "{r}");
    let r = error(&mut f, "VBD.insert", serde_json::json!([s, drive, vdi]));
    assert_eq!(r[0], "OPERATION_NOT_ALLOWED", "{r}");
    f.api
        .db
        .set_field(&crate::xenapi::schema::VM, &vm, state, Value::str("Halted"));
    f.api.detach_vm_disks(&vm);

    // PBD.plug (as at boot) lists finished ISOs only, and refuses a LUN
    // that holds another kind of SR.
    let pbd = text(ok(&mut f, "SR.get_PBDs", serde_json::json!([s, sr]))[0].clone());
    ok(&mut f, "PBD.unplug", serde_json::json!([s, pbd]));
    let ticket = deferred(&mut f, "PBD.plug", serde_json::json!([s, pbd]));
    let (id, _) = f.api.take_storage_jobs().remove(0);
    let out = summary(sr_uuid, SrType::Iscsi, &on_lun);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    assert_eq!(
        answer(&mut f, ticket)["error"]["message"],
        "SR_BACKEND_FAILURE_47"
    );
    let ticket = deferred(&mut f, "PBD.plug", serde_json::json!([s, pbd]));
    let (id, _) = f.api.take_storage_jobs().remove(0);
    on_lun[1].read_only = false;
    let out = summary(sr_uuid, SrType::Iso, &on_lun);
    f.api.storage_finished(id, Ok(JobOutput::Sr(out)), &mut f.p);
    assert!(answer(&mut f, ticket)["error"].is_null());
    assert_eq!(
        ok(&mut f, "SR.get_VDIs", serde_json::json!([s, sr])),
        serde_json::json!([vdi])
    );
}
