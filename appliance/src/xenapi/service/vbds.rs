//! `VBD.create` and `VBD.destroy` for disks on iSCSI SRs and read-only CD
//! drives of ISOs in an ISO library, and the disks a
//! starting VM gets: [`XenApi::attach_vm_disks`] attaches each of the VM's
//! disk VBDs (a [`DiskChannel`] served from the poll loop, see
//! [`crate::iscsi::disk`]) and [`XenApi::detach_vm_disks`] lets them go.
//! `VBD.plug`/`unplug` (hot-plug on a running VM) are not served yet.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use storage::channel::{DiskChannel, DiskGeometry};

use super::srs::{field_index, parse_uuid};
use super::{XenApi, new_id};
use crate::iscsi::disk::{DiskJob, DiskServer};
use crate::iscsi::{JobError, JobOutput, SrOp};
use crate::platform::Platform;
use crate::xenapi::db::{NULL_REF, default_record};
use crate::xenapi::dispatch::coerce;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{VBD, VDI, VM};
use crate::xenapi::value::Value;

/// VBD devices (`userdevice`) a VM may have: `0`..`15`.
pub(super) const MAX_VBD_DEVICE: u32 = 16;

/// Requests in flight per attached disk.
pub const DISK_QUEUE_DEPTH: usize = 64;

/// Fields `VBD.create` takes from its record.
pub(super) const CREATE_FIELDS: &[&str] = &[
    "userdevice",
    "bootable",
    "mode",
    "type",
    "unpluggable",
    "empty",
    "other_config",
    "qos_algorithm_type",
    "qos_algorithm_params",
];

/// A disk attached for a VM.
#[derive(Debug)]
pub(super) struct AttachedDisk {
    vm: String,
    vbd: String,
    server: DiskServer,
}

/// What a starting VM gets for one of its disk VBDs.
#[derive(Debug, Clone)]
pub struct VmDisk {
    pub vbd: String,
    /// `userdevice` (the disk's position: 0 is the first).
    pub userdevice: String,
    /// The device side of the disk: submit requests, collect completions.
    pub channel: Arc<DiskChannel>,
    pub read_only: bool,
}

impl AttachedDisk {
    /// The VDI this disk serves, as the VBD names it.
    pub(super) fn vdi_of<'a>(&self, api: &'a XenApi) -> Option<&'a str> {
        let object = api.db.get(&VBD, &self.vbd)?;
        object.field(field_index(&VBD, "VDI")).as_str()
    }
}

impl XenApi {
    pub(super) fn vbd_create(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(given) = args else {
            return Err(ApiError::field_type("args"));
        };
        let vm = given
            .get("VM")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::field_type("VM"))?;
        if !self.db.contains("VM", vm) {
            return Err(ApiError::handle_invalid("VM", vm));
        }
        let vdi = given
            .get("VDI")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::field_type("VDI"))?;
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&VBD, &uuid);
        for name in CREATE_FIELDS {
            let (Some(value), Some((i, field))) = (given.get(*name), VBD.field(name)) else {
                continue;
            };
            let value = coerce(value.clone(), &field.ty, field.name)?;
            if let Some(slot) = fields.get_mut(i) {
                *slot = value;
            }
        }
        let get = |fields: &[Value], name: &str| {
            fields
                .get(field_index(&VBD, name))
                .cloned()
                .unwrap_or(Value::Nil)
        };
        let cd = get(&fields, "type").as_str() == Some("CD");
        let empty = get(&fields, "empty") == Value::Bool(true);
        if !cd && get(&fields, "type").as_str() != Some("Disk") {
            return Err(ApiError::not_implemented(
                "VBD.create of a drive other than Disk or CD",
            ));
        }
        if empty && !cd {
            // Only removable media may be absent.
            return Err(ApiError::new("VBD_NOT_REMOVABLE_MEDIA", &[NULL_REF]));
        }
        // An empty CD drive (VBD.insert fills it) has no VDI.
        let vdi = if empty { NULL_REF } else { vdi };
        if cd && get(&fields, "mode").as_str() != Some("RO") {
            return Err(ApiError::new("VBD_CDS_MUST_BE_READONLY", &[]));
        }
        if !empty {
            if vdi == NULL_REF || !self.db.contains("VDI", vdi) {
                return Err(ApiError::handle_invalid("VDI", vdi));
            }
            if cd {
                self.check_cd(vdi, get(&fields, "mode").as_str())?;
            }
            let sr = self.field(&VDI, vdi, "SR");
            self.sr_config(sr.as_str().unwrap_or(NULL_REF))?;
            if get(&fields, "mode").as_str() == Some("RW")
                && self.field(&VDI, vdi, "read_only") == Value::Bool(true)
            {
                return Err(ApiError::new("VDI_READ_ONLY", &[vdi]));
            }
        }
        // userdevice: a number not taken on this VM, or "autodetect".
        let taken: Vec<String> = self
            .vm_vbds(vm)
            .iter()
            .map(|v| String::from(self.field(&VBD, v, "userdevice").as_str().unwrap_or("")))
            .collect();
        let asked = String::from(get(&fields, "userdevice").as_str().unwrap_or(""));
        let device = if asked.is_empty() || asked == "autodetect" {
            (0..MAX_VBD_DEVICE)
                .map(|n| format!("{n}"))
                .find(|n| !taken.contains(n))
                .ok_or_else(|| ApiError::new("INVALID_DEVICE", &["autodetect"]))?
        } else if asked.parse::<u32>().is_ok_and(|n| n < MAX_VBD_DEVICE) {
            if taken.contains(&asked) {
                return Err(ApiError::new("DEVICE_ALREADY_EXISTS", &[&asked]));
            }
            asked
        } else {
            return Err(ApiError::new("INVALID_DEVICE", &[&asked]));
        };
        for (name, value) in [
            ("VM", Value::str(vm)),
            ("VDI", Value::str(vdi)),
            ("userdevice", Value::String(device)),
            ("currently_attached", Value::Bool(false)),
        ] {
            if let Some(slot) = fields.get_mut(field_index(&VBD, name)) {
                *slot = value;
            }
        }
        self.db.insert(&VBD, reference.clone(), fields);
        self.add_to_set(&VM, vm, "VBDs", &reference);
        if vdi != NULL_REF {
            self.add_to_set(&VDI, vdi, "VBDs", &reference);
        }
        Ok(Value::String(reference))
    }

    pub(super) fn vbd_destroy(&mut self, vbd: &str) -> Result<Value, ApiError> {
        if !self.db.contains("VBD", vbd) {
            return Err(ApiError::handle_invalid("VBD", vbd));
        }
        if self.field(&VBD, vbd, "currently_attached") == Value::Bool(true) {
            return Err(ApiError::new(
                "OPERATION_NOT_ALLOWED",
                &["the VBD is attached to a running VM"],
            ));
        }
        let vm = self.field(&VBD, vbd, "VM");
        let vdi = self.field(&VBD, vbd, "VDI");
        if let Some(vm) = vm.as_str() {
            self.remove_from_set(&VM, vm, "VBDs", vbd);
        }
        if let Some(vdi) = vdi.as_str() {
            self.remove_from_set(&VDI, vdi, "VBDs", vbd);
        }
        self.db.remove(&VBD, vbd);
        Ok(Value::str(""))
    }

    fn vm_vbds(&self, vm: &str) -> Vec<String> {
        self.db
            .objects("VBD")
            .filter(|(_, o)| o.field(field_index(&VBD, "VM")).as_str() == Some(vm))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Attaches every disk VBD of `vm` for a start: one disk handle per
    /// VBD, in `userdevice` order; the VBDs show `currently_attached`.
    /// All or none: on an error, those attached already are let go.
    pub fn attach_vm_disks(&mut self, vm: &str) -> Result<Vec<VmDisk>, ApiError> {
        if !self.db.contains("VM", vm) {
            return Err(ApiError::handle_invalid("VM", vm));
        }
        // An empty CD drive gives the guest no device (no media change
        // while it runs, see `cd_media`).
        let mut vbds: Vec<String> = self
            .vm_vbds(vm)
            .into_iter()
            .filter(|v| self.field(&VBD, v, "empty") != Value::Bool(true))
            .collect();
        vbds.sort_by_key(|v| {
            self.field(&VBD, v, "userdevice")
                .as_str()
                .and_then(|d| d.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        let mut out = Vec::new();
        for vbd in vbds {
            match self.attach_vbd(vm, &vbd) {
                Ok(disk) => out.push(disk),
                Err(e) => {
                    self.detach_vm_disks(vm);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn attach_vbd(&mut self, vm: &str, vbd: &str) -> Result<VmDisk, ApiError> {
        if self.disks.values().any(|d| d.vbd == vbd) {
            return Err(ApiError::new("DEVICE_ALREADY_ATTACHED", &[vbd]));
        }
        let vdi = String::from(self.field(&VBD, vbd, "VDI").as_str().unwrap_or(NULL_REF));
        if !self.db.contains("VDI", &vdi) {
            return Err(ApiError::handle_invalid("VDI", &vdi));
        }
        // A read-only VDI (an ISO) may be attached to several VMs at once.
        let shared = self.field(&VDI, &vdi, "read_only") == Value::Bool(true);
        if self.imports.values().any(|i| i.vdi() == vdi)
            || self.exports.values().any(|e| e.vdi() == vdi)
            || (!shared
                && self
                    .disks
                    .values()
                    .any(|d| self.field(&VBD, &d.vbd, "VDI").as_str() == Some(vdi.as_str())))
        {
            return Err(ApiError::new("VDI_IN_USE", &[&vdi, "attach"]));
        }
        let uuid = self
            .field(&VDI, &vdi, "uuid")
            .as_str()
            .and_then(parse_uuid)
            .ok_or_else(|| ApiError::handle_invalid("VDI", &vdi))?;
        let size = u64::try_from(self.field(&VDI, &vdi, "virtual_size").as_int().unwrap_or(0))
            .unwrap_or(0);
        let read_only = self.field(&VBD, vbd, "mode").as_str() == Some("RO")
            || self.field(&VDI, &vdi, "read_only") == Value::Bool(true);
        let sr = String::from(self.field(&VDI, &vdi, "SR").as_str().unwrap_or(NULL_REF));
        let config = self.sr_config(&sr)?;
        let template = self.sr_spec(&config, SrOp::Scan)?;
        let channel = DiskChannel::new(
            DiskGeometry {
                block_size: 512,
                num_blocks: size / 512,
                read_only,
            },
            DISK_QUEUE_DEPTH,
        );
        // A writable disk takes discards; the SR reclaims whole clusters
        // (the size this appliance formats SRs with), so a guest aligns
        // its discards to them.
        let channel = Arc::new(match read_only {
            true => channel,
            false => channel.with_discard(storage::sr::DEFAULT_CLUSTER_SIZE / 512),
        });
        let id = self.next_ticket;
        self.next_ticket += 1;
        self.disks.insert(
            id,
            AttachedDisk {
                vm: String::from(vm),
                vbd: String::from(vbd),
                server: DiskServer::new(Arc::clone(&channel), uuid, template),
            },
        );
        let userdevice = String::from(self.field(&VBD, vbd, "userdevice").as_str().unwrap_or("0"));
        let letter = userdevice
            .parse::<u8>()
            .ok()
            .filter(|n| *n < 26)
            .map_or('a', |n| char::from(b'a' + n));
        self.set(&VBD, vbd, "currently_attached", Value::Bool(true));
        self.set(&VBD, vbd, "device", Value::String(format!("xvd{letter}")));
        log::info!(
            "vbd: {vbd} attached ({} blocks{})",
            size / 512,
            if read_only { ", read-only" } else { "" }
        );
        Ok(VmDisk {
            vbd: String::from(vbd),
            userdevice,
            channel,
            read_only,
        })
    }

    /// Lets go of `vm`'s disks (it stopped): requests still queued fail,
    /// the device side sees the channel closed; the VBDs are detached.
    pub fn detach_vm_disks(&mut self, vm: &str) {
        let ids: Vec<u64> = self
            .disks
            .iter()
            .filter(|(_, d)| d.vm == vm)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(mut d) = self.disks.remove(&id) {
                d.server.close();
            }
        }
        // Every VBD of the VM shows detached, also those a previous boot
        // left marked attached.
        let mut changed = false;
        for vbd in self.vm_vbds(vm) {
            if self.field(&VBD, &vbd, "currently_attached") == Value::Bool(true) {
                self.set(&VBD, &vbd, "currently_attached", Value::Bool(false));
                self.set(&VBD, &vbd, "device", Value::str(""));
                changed = true;
            }
        }
        if changed && let Err(e) = self.persist() {
            log::error!("db: VBD changes could not be saved: {e}");
        }
    }

    /// A CD drive (xapi's rules): read-only, of an ISO whose upload has
    /// finished. The guest sees it as a read-only virtio-blk disk.
    pub(super) fn check_cd(&self, vdi: &str, mode: Option<&str>) -> Result<(), ApiError> {
        if mode != Some("RO") {
            return Err(ApiError::new("VBD_CDS_MUST_BE_READONLY", &[]));
        }
        if self.field(&VDI, vdi, "read_only") != Value::Bool(true) {
            // An ISO being uploaded (or a writable disk) is no CD.
            return Err(ApiError::new("VDI_NOT_AVAILABLE", &[vdi]));
        }
        Ok(())
    }

    /// `VDI_IN_USE [vdi, op]` while `vdi` is attached to a running VM: its
    /// disk's fast path writes in place to the clusters it owns, so its
    /// clusters must not become shared (snapshot, clone) or freed (destroy)
    /// under it.
    pub(super) fn refuse_attached(&self, vdi: &str, op: &str) -> Result<(), ApiError> {
        if self.disks.values().any(|d| d.vdi_of(self) == Some(vdi)) {
            return Err(ApiError::new("VDI_IN_USE", &[vdi, op]));
        }
        Ok(())
    }

    /// Queues the jobs the attached disks need (their sessions, batches
    /// of requests for the SR).
    pub(super) fn pump_disks(&mut self) {
        let mut jobs = Vec::new();
        for (id, d) in &mut self.disks {
            while let Some(job) = d.server.next_job() {
                jobs.push((*id, job));
            }
        }
        for (disk, job) in jobs {
            let id = self.next_ticket;
            self.next_ticket += 1;
            let (spec, session) = match job {
                DiskJob::Batch(spec) => (spec, false),
                DiskJob::Session(spec) => (spec, true),
            };
            self.storage_queue.push_back((id, spec));
            self.disk_jobs.insert(id, (disk, session));
        }
    }

    /// Whether a disk's requests wait for its fast path to drain (ask
    /// again soon: nothing else wakes the poll loop for it).
    pub fn disks_waiting(&self) -> bool {
        self.disks.values().any(|d| d.server.waiting())
    }

    /// A disk's job ended.
    pub(super) fn disk_finished(
        &mut self,
        (disk, session): (u64, bool),
        result: Result<JobOutput, JobError>,
    ) {
        if let Some(d) = self.disks.get_mut(&disk) {
            if session {
                d.server.session_ended(result);
            } else {
                d.server.finished(result);
            }
        }
    }
}

/// Attached disks by id.
pub(super) type Disks = BTreeMap<u64, AttachedDisk>;
