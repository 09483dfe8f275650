//! `lvmoiscsi` SRs: `SR.probe`, `SR.create`, `SR.scan`, `SR.forget`,
//! `VDI.create` and `VDI.destroy`, with xapi's and sm's semantics.
//!
//! Calls that need the target become an [`crate::iscsi::JobSpec`] that the
//! platform runs without blocking (the appliance's poll loop); the call is
//! answered when the job ends (a deferred reply, or a task for `Async.`).
//!
//! The probe protocol is the one Xen Orchestra drives by errors:
//! device_config without `targetIQN` → `SR_BACKEND_FAILURE_96` with the
//! target IQNs as XML; without `SCSIid` → `SR_BACKEND_FAILURE_107` with the
//! LUNs; complete → `<SRlist>` of the SRs found on the LUN. The XML is
//! laid out as sm prints it (Python's minidom `toprettyxml`).
//!
//! The SR on the LUN is this project's own format (see `storage::sr`:
//! superblock, journal, thin data clusters), not LVM: the type name
//! `lvmoiscsi` is kept so that clients create it the way they create an
//! iSCSI SR on XenServer. An `iso` SR (an ISO library, see `iso_library`)
//! lives on a LUN the same way and takes the same calls.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::iso_library::{ISO_TYPE, storage_type};
use super::local_srs::{is_local, names_host_disk};
use super::{XenApi, new_id};
use crate::iscsi::{
    Credentials, DEFAULT_PORT, JobError, JobOutput, JobSpec, LunEntry, Portal, SrOp, SrSummary,
    Work, parse_ipv4,
};
use crate::platform::Platform;
use crate::xenapi::db::{NULL_REF, default_record, uuid_from};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{Class, HOST, PBD, SR, VDI};
use crate::xenapi::value::Value;

/// Fields `VDI.create` takes from its record (others are ignored, as xapi does).
const VDI_CREATE_FIELDS: &[&str] = &[
    "name_label",
    "name_description",
    "other_config",
    "sharable",
    "read_only",
    "tags",
    "type",
];

/// SR types of VDIs this host creates on an iSCSI LUN.
pub const ISCSI_TYPES: &[&str] = &["lvmoiscsi", "iscsi"];

/// Whether SRs of XenAPI type `sr_type` live on an iSCSI LUN here (VDI
/// SRs, and ISO libraries).
pub fn on_lun(sr_type: &str) -> bool {
    ISCSI_TYPES.contains(&sr_type) || sr_type == ISO_TYPE
}

/// Whether SRs of XenAPI type `sr_type` are in this project's SR format
/// (on an iSCSI LUN, or on a host disk: see `local_srs`).
pub fn has_sr_format(sr_type: &str) -> bool {
    on_lun(sr_type) || is_local(sr_type)
}

/// What to do with a job's result.
#[derive(Debug, Clone)]
pub(crate) enum Completion {
    Probe,
    CreateSr {
        host: String,
        device_config: BTreeMap<String, Value>,
        name_label: String,
        name_description: String,
        sr_type: String,
        content_type: String,
        shared: bool,
        sm_config: Value,
    },
    Scan {
        sr: String,
    },
    CreateVdi {
        sr: String,
        uuid: [u8; 16],
        record: BTreeMap<String, Value>,
    },
    DestroyVdi {
        sr: String,
        vdi: String,
    },
    ResizeVdi {
        sr: String,
        vdi: String,
    },
    /// `VDI.snapshot` (read-only) or `VDI.clone` of `of`.
    CopyVdi {
        sr: String,
        of: String,
        uuid: [u8; 16],
        snapshot: bool,
    },
    /// `PBD.plug`, and every iSCSI PBD at boot.
    Plug {
        pbd: String,
        sr: String,
    },
    DestroySr {
        sr: String,
    },
    /// `VM.clone`/`VM.copy` of a VM with disks (see `vm_clone`).
    CloneVm(alloc::boxed::Box<super::vm_clone::ClonePlan>),
}

/// A call waiting for its job.
#[derive(Debug)]
pub(crate) struct StorageCall {
    pub spec: JobSpec,
    pub completion: Completion,
}

/// sm's error: `SR_BACKEND_FAILURE_<code> ["", reason, stderr]`.
fn backend(code: u32, reason: &str, detail: &str) -> ApiError {
    ApiError::new(&format!("SR_BACKEND_FAILURE_{code}"), &["", reason, detail])
}

pub(super) fn job_error(e: &JobError) -> ApiError {
    match e {
        // sm's ISCSITarget.
        JobError::Unreachable(w) => backend(141, "Unable to connect to iSCSI service on target", w),
        // sm's ISCSILogin.
        JobError::Login(w) => backend(
            68,
            "Unable to login to iSCSI target (check the CHAP user names and secrets)",
            w,
        ),
        JobError::Session(w) => backend(47, "The SR is not available", w),
        JobError::NoSuchLun(_, luns) => backend(
            107,
            "The SCSIid parameter is missing or incorrect",
            &luns_xml(luns),
        ),
        JobError::Sr(w) => backend(47, "The SR is not available", w),
    }
}

/// Text as minidom escapes it.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn element(out: &mut String, depth: usize, name: &str, text: &str) {
    for _ in 0..depth {
        out.push('\t');
    }
    out.push_str(&format!("<{name}>{}</{name}>\n", escape(text)));
}

pub(super) const XML_HEAD: &str = "<?xml version=\"1.0\" ?>\n";

/// sm's `print_entries`: one `<TGT>` per target address.
pub(crate) fn iqns_xml(
    targets: &[storage::iscsi::client::DiscoveredTarget],
    asked: &str,
) -> String {
    let mut out = String::from(XML_HEAD);
    out.push_str("<iscsi-target-iqns>\n");
    let mut index = 0;
    for t in targets {
        let mut portals = t.portals();
        if portals.is_empty() {
            // A target that gives no address is reached where it was asked.
            portals.push(storage::iscsi::url::Portal {
                host: String::from(asked),
                port: DEFAULT_PORT,
                tpgt: None,
            });
        }
        for p in portals {
            out.push_str("\t<TGT>\n");
            element(&mut out, 2, "Index", &format!("{index}"));
            element(&mut out, 2, "IPAddress", &p.host);
            if p.port != DEFAULT_PORT {
                element(&mut out, 2, "Port", &format!("{}", p.port));
            }
            element(&mut out, 2, "TargetIQN", &t.name);
            out.push_str("\t</TGT>\n");
            index += 1;
        }
    }
    out.push_str("</iscsi-target-iqns>\n");
    out
}

/// sm's LUN list: `<iscsi-target><LUN><vendor/><serial/><LUNid/><size/><SCSIid/></LUN>…`
/// (an empty value is left out, as sm does).
pub(crate) fn luns_xml(luns: &[LunEntry]) -> String {
    let mut out = String::from(XML_HEAD);
    if luns.is_empty() {
        out.push_str("<iscsi-target/>\n");
        return out;
    }
    out.push_str("<iscsi-target>\n");
    for l in luns {
        out.push_str("\t<LUN>\n");
        for (name, value) in [
            ("vendor", l.vendor.clone()),
            ("serial", l.serial.clone()),
            ("LUNid", format!("{}", l.lun)),
            ("size", format!("{}", l.size)),
            ("SCSIid", l.scsi_id.clone()),
        ] {
            if !value.is_empty() {
                element(&mut out, 2, name, &value);
            }
        }
        out.push_str("\t</LUN>\n");
    }
    out.push_str("</iscsi-target>\n");
    out
}

/// The `<SRlist>` a complete probe answers.
pub(crate) fn sr_list_xml(found: Option<&SrSummary>) -> String {
    let mut out = String::from(XML_HEAD);
    match found {
        None => out.push_str("<SRlist/>\n"),
        Some(s) => {
            out.push_str("<SRlist>\n\t<SR>\n");
            element(&mut out, 2, "UUID", &uuid_from(s.uuid));
            out.push_str("\t</SR>\n</SRlist>\n");
        }
    }
    out
}

/// The trimmed, non-empty value of `key` in a `device_config`.
pub(super) fn config_str<'a>(config: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(super) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let text = core::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

pub(super) fn field_index(class: &Class, name: &str) -> usize {
    class.field(name).map_or(usize::MAX, |(i, _)| i)
}

impl XenApi {
    pub(super) fn field(&self, class: &Class, reference: &str, name: &str) -> Value {
        self.db
            .get(class, reference)
            .map(|o| o.field(field_index(class, name)).clone())
            .unwrap_or(Value::Nil)
    }

    pub(super) fn set(&mut self, class: &Class, reference: &str, name: &str, value: Value) {
        self.db
            .set_field(class, reference, field_index(class, name), value);
    }

    pub(super) fn add_to_set(&mut self, class: &Class, reference: &str, name: &str, item: &str) {
        let mut items = match self.field(class, reference, name) {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        if !items.iter().any(|v| v.as_str() == Some(item)) {
            items.push(Value::str(item));
            self.set(class, reference, name, Value::Array(items));
        }
    }

    pub(super) fn remove_from_set(
        &mut self,
        class: &Class,
        reference: &str,
        name: &str,
        item: &str,
    ) {
        if let Value::Array(mut items) = self.field(class, reference, name) {
            items.retain(|v| v.as_str() != Some(item));
            self.set(class, reference, name, Value::Array(items));
        }
    }

    /// The initiator name this host logs in with.
    fn initiator_name(&self) -> String {
        if let Value::Struct(other) = self.field(&HOST, &self.refs.host, "other_config")
            && let Some(iqn) = other.get("iscsi_iqn").and_then(Value::as_str)
            && !iqn.is_empty()
        {
            return String::from(iqn);
        }
        let name: String = self
            .facts
            .hostname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("iqn.2026-11.dev.keel:{name}")
    }

    /// A job for `device_config`, its work chosen by what the config names
    /// (the probe protocol): no IQN → discovery; no SCSIid → the LUNs.
    fn iscsi_spec(&self, config: &BTreeMap<String, Value>, op: SrOp) -> Result<JobSpec, ApiError> {
        let target = config_str(config, "target")
            .ok_or_else(|| ApiError::invalid_value("device_config:target", ""))?;
        // sm takes a comma-separated list for multipathing; the first is used here.
        let first = target.split(',').next().unwrap_or(target);
        let ip = parse_ipv4(first).ok_or_else(|| {
            backend(
                141,
                "Unable to connect to iSCSI service on target",
                &format!("{first} is not an IPv4 address (this host does not resolve names)"),
            )
        })?;
        let port = match config.get("port") {
            None => DEFAULT_PORT,
            Some(v) => match v
                .as_int()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(p) if (1..=65535).contains(&p) => p as u16,
                _ if v.as_str().is_some_and(|s| s.trim().is_empty()) => DEFAULT_PORT,
                _ => {
                    return Err(ApiError::invalid_value(
                        "device_config:port",
                        v.as_str().unwrap_or("not a port number"),
                    ));
                }
            },
        };
        let creds = |user: &str, password: &str| -> Result<Option<Credentials>, ApiError> {
            let secret = self.config_password(config, password)?;
            Ok(config_str(config, user)
                .zip(secret.filter(|s| !s.trim().is_empty()))
                .map(|(user, secret)| Credentials {
                    user: String::from(user),
                    secret: String::from(secret.trim()),
                }))
        };
        let chap = creds("chapuser", "chappassword")?;
        let mut mutual = creds("incoming_chapuser", "incoming_chappassword")?;
        if mutual.is_some() && chap.is_none() {
            return Err(ApiError::invalid_value(
                "device_config:incoming_chapuser",
                "mutual CHAP needs chapuser and chappassword too",
            ));
        }
        let target_iqn = config_str(config, "targetIQN").map(String::from);
        let scsi_id = config_str(config, "SCSIid").map(String::from);
        let work = match (&target_iqn, scsi_id) {
            // As sm does, discovery authenticates one way only.
            (None, _) => {
                mutual = None;
                Work::Discover
            }
            (Some(_), None) => Work::Luns,
            (Some(_), Some(scsi_id)) => Work::Sr { scsi_id, op },
        };
        Ok(JobSpec {
            portal: Portal { ip, port },
            initiator: self.initiator_name(),
            target_iqn,
            chap,
            mutual,
            work,
        })
    }

    pub(super) fn sr_probe(&self, config: &Value, sr_type: &str) -> Result<StorageCall, ApiError> {
        if !has_sr_format(sr_type) {
            return Err(ApiError::new("SR_UNKNOWN_DRIVER", &[sr_type]));
        }
        let Value::Struct(config) = config else {
            return Err(ApiError::field_type("device_config"));
        };
        if is_local(sr_type) {
            return Ok(StorageCall {
                spec: self.local_spec(config, SrOp::Probe)?,
                completion: Completion::Probe,
            });
        }
        Ok(StorageCall {
            spec: self.iscsi_spec(config, SrOp::Probe)?,
            completion: Completion::Probe,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn sr_create(
        &self,
        host: &str,
        config: &Value,
        name_label: &str,
        name_description: &str,
        sr_type: &str,
        content_type: &str,
        shared: bool,
        sm_config: Value,
        platform: &mut dyn Platform,
    ) -> Result<StorageCall, ApiError> {
        if !has_sr_format(sr_type) {
            return Err(ApiError::new("SR_UNKNOWN_DRIVER", &[sr_type]));
        }
        let Value::Struct(config) = config else {
            return Err(ApiError::field_type("device_config"));
        };
        let (_, uuid) = new_id(platform);
        let uuid = parse_uuid(&uuid).ok_or_else(|| ApiError::internal("bad uuid"))?;
        let format = SrOp::Format {
            uuid,
            sr_type: storage_type(sr_type),
        };
        Ok(StorageCall {
            spec: if is_local(sr_type) {
                self.local_create_spec(config, shared, format)?
            } else {
                self.iscsi_spec(config, format)?
            },
            completion: Completion::CreateSr {
                host: String::from(host),
                device_config: config.clone(),
                name_label: String::from(name_label),
                name_description: String::from(name_description),
                sr_type: String::from(sr_type),
                content_type: String::from(content_type),
                shared,
                sm_config,
            },
        })
    }

    /// The device_config of the SR's (first) PBD: how to reach its LUN.
    pub(super) fn sr_config(&self, sr: &str) -> Result<BTreeMap<String, Value>, ApiError> {
        let sr_type = self.field(&SR, sr, "type");
        if !sr_type.as_str().is_some_and(has_sr_format) {
            return Err(ApiError::new("SR_OPERATION_NOT_SUPPORTED", &[sr]));
        }
        let pbds = match self.field(&SR, sr, "PBDs") {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        for pbd in pbds.iter().filter_map(Value::as_str) {
            if let Value::Struct(config) = self.field(&PBD, pbd, "device_config") {
                return Ok(config);
            }
        }
        Err(ApiError::new("SR_HAS_NO_PBDS", &[sr]))
    }

    pub(super) fn sr_scan(&self, sr: &str) -> Result<StorageCall, ApiError> {
        let config = self.sr_config(sr)?;
        Ok(StorageCall {
            spec: self.sr_spec(&config, SrOp::Scan)?,
            completion: Completion::Scan {
                sr: String::from(sr),
            },
        })
    }

    /// A job on an SR's LUN: the config must name it completely.
    pub(super) fn sr_spec(
        &self,
        config: &BTreeMap<String, Value>,
        op: SrOp,
    ) -> Result<JobSpec, ApiError> {
        if names_host_disk(config) {
            return self.local_spec(config, op);
        }
        let spec = self.iscsi_spec(config, op)?;
        if !matches!(spec.work, Work::Sr { .. }) {
            return Err(ApiError::internal(
                "the SR's PBD does not name its LUN (targetIQN and SCSIid)",
            ));
        }
        Ok(spec)
    }

    /// `SR.forget`: the objects go, the LUN is left as it is.
    pub(super) fn sr_forget(&mut self, sr: &str) -> Result<Value, ApiError> {
        let vdis = match self.field(&SR, sr, "VDIs") {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        for vdi in vdis.iter().filter_map(Value::as_str) {
            self.db.remove(&VDI, vdi);
        }
        let pbds = match self.field(&SR, sr, "PBDs") {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let host = self.refs.host.clone();
        for pbd in pbds.iter().filter_map(Value::as_str) {
            self.drop_config_secrets(&self.field(&PBD, pbd, "device_config"));
            self.db.remove(&PBD, pbd);
            self.remove_from_set(&HOST, &host, "PBDs", pbd);
        }
        self.db.remove(&SR, sr);
        Ok(Value::str(""))
    }

    /// `SR.introduce`: an SR record for an SR that exists on some LUN;
    /// `PBD.create` then says how to reach it and `PBD.plug` attaches it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sr_introduce(
        &mut self,
        uuid: &str,
        name_label: &str,
        name_description: &str,
        sr_type: &str,
        content_type: &str,
        shared: bool,
        sm_config: Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if !has_sr_format(sr_type) {
            return Err(ApiError::new("SR_UNKNOWN_DRIVER", &[sr_type]));
        }
        let uuid = match uuid {
            "" => {
                let (_, u) = new_id(platform);
                u
            }
            u => {
                let bytes = parse_uuid(u).ok_or_else(|| ApiError::invalid_value("uuid", u))?;
                let _ = bytes;
                u.to_ascii_lowercase()
            }
        };
        if self
            .db
            .objects("SR")
            .any(|(_, o)| o.field(field_index(&SR, "uuid")).as_str() == Some(uuid.as_str()))
        {
            return Err(ApiError::new("SR_UUID_EXISTS", &[&uuid]));
        }
        let (sr, _) = new_id(platform);
        let mut fields = default_record(&SR, &uuid);
        for (name, v) in [
            ("name_label", Value::str(name_label)),
            ("name_description", Value::str(name_description)),
            ("type", Value::str(sr_type)),
            ("content_type", Value::str(content_type)),
            ("shared", Value::Bool(shared)),
        ] {
            if let Some(slot) = fields.get_mut(field_index(&SR, name)) {
                *slot = v;
            }
        }
        if let (Value::Struct(_), Some(slot)) =
            (&sm_config, fields.get_mut(field_index(&SR, "sm_config")))
        {
            *slot = sm_config;
        }
        self.db.insert(&SR, sr.clone(), fields);
        Ok(Value::String(sr))
    }

    /// `PBD.create({host, SR, device_config})`: detached until plugged.
    pub(super) fn pbd_create(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(record) = args else {
            return Err(ApiError::field_type("args"));
        };
        let get = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
        let (host, sr) = (get("host"), get("SR"));
        if !self.db.contains("host", host) {
            return Err(ApiError::handle_invalid("host", host));
        }
        if !self.db.contains("SR", sr) {
            return Err(ApiError::handle_invalid("SR", sr));
        }
        let Some(Value::Struct(config)) = record.get("device_config") else {
            return Err(ApiError::field_type("device_config"));
        };
        if let Some((existing, _)) = self.db.objects("PBD").find(|(_, o)| {
            o.field(field_index(&PBD, "SR")).as_str() == Some(sr)
                && o.field(field_index(&PBD, "host")).as_str() == Some(host)
        }) {
            return Err(ApiError::new("PBD_EXISTS", &[sr, host, existing]));
        }
        let (host, sr) = (String::from(host), String::from(sr));
        let other_config = record
            .get("other_config")
            .cloned()
            .unwrap_or(Value::Struct(BTreeMap::new()));
        let config = self.hide_passwords(config.clone(), platform);
        let (pbd, uuid) = new_id(platform);
        let mut fields = default_record(&PBD, &uuid);
        for (name, v) in [
            ("host", Value::str(&host)),
            ("SR", Value::str(&sr)),
            ("device_config", Value::Struct(config)),
            ("other_config", other_config),
        ] {
            if let Some(slot) = fields.get_mut(field_index(&PBD, name)) {
                *slot = v;
            }
        }
        self.db.insert(&PBD, pbd.clone(), fields);
        self.add_to_set(&SR, &sr, "PBDs", &pbd);
        self.add_to_set(&HOST, &host, "PBDs", &pbd);
        Ok(Value::String(pbd))
    }

    /// `PBD.destroy`: only a detached one, as xapi.
    pub(super) fn pbd_destroy(&mut self, pbd: &str) -> Result<Value, ApiError> {
        if self.field(&PBD, pbd, "currently_attached") == Value::Bool(true) {
            return Err(ApiError::new(
                "OPERATION_NOT_ALLOWED",
                &["PBD is currently attached"],
            ));
        }
        let sr = String::from(self.field(&PBD, pbd, "SR").as_str().unwrap_or(""));
        let host = String::from(self.field(&PBD, pbd, "host").as_str().unwrap_or(""));
        self.drop_config_secrets(&self.field(&PBD, pbd, "device_config"));
        self.db.remove(&PBD, pbd);
        self.remove_from_set(&SR, &sr, "PBDs", pbd);
        self.remove_from_set(&HOST, &host, "PBDs", pbd);
        Ok(Value::str(""))
    }

    /// `PBD.plug`: log in, open the SR on the LUN, list its VDIs. No
    /// session is kept open between calls (each storage call logs in), so
    /// plugged means "reachable and readable when last checked".
    pub(super) fn pbd_plug(&self, pbd: &str) -> Result<StorageCall, ApiError> {
        let sr = String::from(self.field(&PBD, pbd, "SR").as_str().unwrap_or(""));
        let Value::Struct(config) = self.field(&PBD, pbd, "device_config") else {
            return Err(ApiError::field_type("device_config"));
        };
        let sr_type = self.field(&SR, &sr, "type");
        if !sr_type.as_str().is_some_and(has_sr_format) {
            return Err(ApiError::new("SR_OPERATION_NOT_SUPPORTED", &[&sr]));
        }
        Ok(StorageCall {
            spec: self.sr_spec(&config, SrOp::Scan)?,
            completion: Completion::Plug {
                pbd: String::from(pbd),
                sr,
            },
        })
    }

    pub(super) fn pbd_unplug(&mut self, pbd: &str) -> Result<Value, ApiError> {
        self.set(&PBD, pbd, "currently_attached", Value::Bool(false));
        Ok(Value::str(""))
    }

    /// At boot (the database just loaded): every iSCSI PBD of this host is
    /// detached until its SR has been opened again; jobs to do so are queued.
    pub(crate) fn replug_storage(&mut self) {
        if !self.storage_driver {
            return;
        }
        let host = self.refs.host.clone();
        let pbds: Vec<String> = self
            .db
            .objects("PBD")
            .filter(|(_, o)| o.field(field_index(&PBD, "host")).as_str() == Some(host.as_str()))
            .map(|(r, _)| r.clone())
            .collect();
        for pbd in pbds {
            self.set(&PBD, &pbd, "currently_attached", Value::Bool(false));
            match self.pbd_plug(&pbd) {
                Ok(call) => {
                    let id = self.next_ticket;
                    self.next_ticket += 1;
                    log::info!("sr: plugging PBD {pbd} again at boot");
                    self.queue_storage(id, call, None, None);
                }
                Err(e) => log::warn!("sr: PBD {pbd} is not plugged at boot: {e:?}"),
            }
        }
    }

    /// `SR.destroy`: the SR must hold no VDIs; its superblocks are erased
    /// on the LUN, then its objects go.
    pub(super) fn sr_destroy(&self, sr: &str) -> Result<StorageCall, ApiError> {
        if matches!(self.field(&SR, sr, "VDIs"), Value::Array(a) if !a.is_empty()) {
            return Err(ApiError::new("SR_NOT_EMPTY", &[]));
        }
        let config = self.sr_config(sr)?;
        Ok(StorageCall {
            spec: self.sr_spec(&config, SrOp::Wipe)?,
            completion: Completion::DestroySr {
                sr: String::from(sr),
            },
        })
    }

    pub(super) fn vdi_create(
        &self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<StorageCall, ApiError> {
        let Value::Struct(record) = args else {
            return Err(ApiError::field_type("args"));
        };
        let sr = record
            .get("SR")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::field_type("SR"))?;
        if !self.db.contains("SR", sr) {
            return Err(ApiError::handle_invalid("SR", sr));
        }
        let size = record
            .get("virtual_size")
            .and_then(|v| {
                v.as_int()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| ApiError::field_type("virtual_size"))?;
        if size <= 0 {
            return Err(ApiError::invalid_value("virtual_size", &format!("{size}")));
        }
        let name = record
            .get("name_label")
            .and_then(Value::as_str)
            .unwrap_or("");
        // The fields kept from the record, typed as declared ("false" from
        // a client that sends strings becomes a bool), checked before the
        // VDI exists on the LUN.
        let mut kept = BTreeMap::new();
        for key in VDI_CREATE_FIELDS {
            if let (Some(v), Some((_, field))) = (record.get(*key), VDI.field(key)) {
                let v = crate::xenapi::dispatch::coerce(v.clone(), &field.ty, key)?;
                kept.insert(String::from(*key), v);
            }
        }
        if self.is_iso_sr(sr) {
            self.iso_name_free(sr, name)?;
            // Read-only once uploaded (see `iso_library`), not before.
            kept.insert(String::from("read_only"), Value::Bool(false));
        }
        let record = &kept;
        let config = self.sr_config(sr)?;
        let (_, uuid) = new_id(platform);
        let uuid = parse_uuid(&uuid).ok_or_else(|| ApiError::internal("bad uuid"))?;
        Ok(StorageCall {
            spec: self.sr_spec(
                &config,
                SrOp::CreateVdi {
                    uuid,
                    name: String::from(name),
                    size: size as u64,
                },
            )?,
            completion: Completion::CreateVdi {
                sr: String::from(sr),
                uuid,
                record: record.clone(),
            },
        })
    }

    /// `VDI.snapshot` and `VDI.clone`: a new VDI sharing `vdi`'s clusters
    /// (copy-on-write in the SR), read-only for a snapshot.
    pub(super) fn vdi_copy(
        &self,
        vdi: &str,
        snapshot: bool,
        platform: &mut dyn Platform,
    ) -> Result<StorageCall, ApiError> {
        self.refuse_attached(vdi, if snapshot { "snapshot" } else { "clone" })?;
        let sr = self.field(&VDI, vdi, "SR");
        let sr = sr.as_str().unwrap_or(NULL_REF);
        if self.is_iso_sr(sr) {
            // An ISO library holds ISOs, not disks to copy.
            return Err(ApiError::new("SR_OPERATION_NOT_SUPPORTED", &[sr]));
        }
        let of = self
            .field(&VDI, vdi, "uuid")
            .as_str()
            .and_then(parse_uuid)
            .ok_or_else(|| ApiError::handle_invalid("VDI", vdi))?;
        let name = String::from(self.field(&VDI, vdi, "name_label").as_str().unwrap_or(""));
        let config = self.sr_config(sr)?;
        let (_, uuid) = new_id(platform);
        let uuid = parse_uuid(&uuid).ok_or_else(|| ApiError::internal("bad uuid"))?;
        Ok(StorageCall {
            spec: self.sr_spec(
                &config,
                SrOp::CopyVdi {
                    of,
                    new: uuid,
                    name,
                    snapshot,
                },
            )?,
            completion: Completion::CopyVdi {
                sr: String::from(sr),
                of: String::from(vdi),
                uuid,
                snapshot,
            },
        })
    }

    /// `VDI.resize`: grows a VDI of a detached disk (to whole sectors);
    /// shrinking is refused as sm refuses it.
    pub(super) fn vdi_resize(
        &self,
        vdi: &str,
        size: Option<&Value>,
    ) -> Result<StorageCall, ApiError> {
        self.refuse_attached(vdi, "resize")?;
        let sr = self.field(&VDI, vdi, "SR");
        let sr = sr.as_str().unwrap_or(NULL_REF);
        if self.is_iso_sr(sr) {
            return Err(ApiError::new("SR_OPERATION_NOT_SUPPORTED", &[sr]));
        }
        let size = size
            .and_then(|v| {
                v.as_int()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::invalid_value("size", "not a positive number of bytes"))?;
        let size = (size as u64).div_ceil(512) * 512;
        let current = self.field(&VDI, vdi, "virtual_size").as_int().unwrap_or(0);
        if size < current as u64 {
            return Err(backend(79, "VDI Invalid size", "shrinking is not allowed"));
        }
        let uuid = self
            .field(&VDI, vdi, "uuid")
            .as_str()
            .and_then(parse_uuid)
            .ok_or_else(|| ApiError::handle_invalid("VDI", vdi))?;
        let config = self.sr_config(sr)?;
        Ok(StorageCall {
            spec: self.sr_spec(&config, SrOp::ResizeVdi { uuid, size })?,
            completion: Completion::ResizeVdi {
                sr: String::from(sr),
                vdi: String::from(vdi),
            },
        })
    }

    pub(super) fn vdi_destroy(&self, vdi: &str) -> Result<StorageCall, ApiError> {
        self.refuse_attached(vdi, "destroy")?;
        let sr = self.field(&VDI, vdi, "SR");
        let sr = sr.as_str().unwrap_or(NULL_REF);
        let uuid = self.field(&VDI, vdi, "uuid");
        let uuid = uuid
            .as_str()
            .and_then(parse_uuid)
            .ok_or_else(|| ApiError::handle_invalid("VDI", vdi))?;
        let config = self.sr_config(sr)?;
        Ok(StorageCall {
            spec: self.sr_spec(&config, SrOp::DeleteVdi { uuid })?,
            completion: Completion::DestroyVdi {
                sr: String::from(sr),
                vdi: String::from(vdi),
            },
        })
    }

    /// Applies a finished job to the objects; the call's answer.
    pub(crate) fn storage_result(
        &mut self,
        completion: Completion,
        asked: &str,
        result: Result<JobOutput, JobError>,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if let Completion::CloneVm(plan) = &completion {
            self.clone_ended(plan);
        }
        if let (Completion::CloneVm(plan), Err(e)) = (&completion, &result) {
            return Err(plan.failed(e));
        }
        let output = result.map_err(|e| job_error(&e))?;
        match (completion, output) {
            (_, JobOutput::Targets(targets)) => Err(backend(
                96,
                "The request is missing or has an incorrect target IQN parameter",
                &iqns_xml(&targets, asked),
            )),
            (_, JobOutput::Luns(luns)) => Err(backend(
                107,
                "The SCSIid parameter is missing or incorrect",
                &luns_xml(&luns),
            )),
            (Completion::Probe, JobOutput::NoSr) => Ok(Value::String(sr_list_xml(None))),
            (Completion::Probe, JobOutput::Sr(s)) => Ok(Value::String(sr_list_xml(Some(&s)))),
            (
                Completion::CreateSr {
                    host,
                    device_config,
                    name_label,
                    name_description,
                    sr_type,
                    content_type,
                    shared,
                    sm_config,
                },
                JobOutput::Sr(s),
            ) => {
                let sr_uuid = uuid_from(s.uuid);
                let (sr, _) = new_id(platform);
                let mut fields = default_record(&SR, &sr_uuid);
                let mut put = |name: &str, v: Value| {
                    if let Some(slot) = fields.get_mut(field_index(&SR, name)) {
                        *slot = v;
                    }
                };
                put("name_label", Value::String(name_label));
                put("name_description", Value::String(name_description));
                let content_type = match (sr_type.as_str(), content_type.as_str()) {
                    (ISO_TYPE, "") => String::from(ISO_TYPE),
                    _ => content_type,
                };
                put("type", Value::String(sr_type));
                put("content_type", Value::String(content_type));
                put("shared", Value::Bool(shared));
                put("physical_size", Value::Int(s.physical_size as i64));
                put(
                    "physical_utilisation",
                    Value::Int(s.physical_utilisation as i64),
                );
                if let Value::Struct(_) = sm_config {
                    put("sm_config", sm_config);
                }
                self.db.insert(&SR, sr.clone(), fields);
                let device_config = self.hide_passwords(device_config, platform);
                let (pbd, pbd_uuid) = new_id(platform);
                let mut fields = default_record(&PBD, &pbd_uuid);
                for (name, v) in [
                    ("host", Value::String(host.clone())),
                    ("SR", Value::String(sr.clone())),
                    ("device_config", Value::Struct(device_config)),
                    ("currently_attached", Value::Bool(true)),
                ] {
                    if let Some(slot) = fields.get_mut(field_index(&PBD, name)) {
                        *slot = v;
                    }
                }
                self.db.insert(&PBD, pbd.clone(), fields);
                self.add_to_set(&SR, &sr, "PBDs", &pbd);
                self.add_to_set(&HOST, &host, "PBDs", &pbd);
                Ok(Value::String(sr))
            }
            (Completion::Scan { sr }, JobOutput::Sr(s)) => {
                self.sync_vdis(&sr, &s, false, platform);
                Ok(Value::str(""))
            }
            (Completion::CreateVdi { sr, uuid, record }, JobOutput::Sr(s)) => {
                let info = s
                    .vdis
                    .iter()
                    .find(|v| v.uuid == uuid)
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::internal("the VDI was created but the SR does not list it")
                    })?;
                let (vdi, _) = new_id(platform);
                let mut fields = default_record(&VDI, &uuid_from(uuid));
                let mut put = |name: &str, v: Value| {
                    if let Some(slot) = fields.get_mut(field_index(&VDI, name)) {
                        *slot = v;
                    }
                };
                for key in VDI_CREATE_FIELDS {
                    if let Some(v) = record.get(*key) {
                        put(key, v.clone());
                    }
                }
                put("SR", Value::String(sr.clone()));
                put("virtual_size", Value::Int(info.virtual_size as i64));
                put(
                    "physical_utilisation",
                    Value::Int(info.physical_utilisation as i64),
                );
                put("location", Value::String(uuid_from(uuid)));
                self.db.insert(&VDI, vdi.clone(), fields);
                self.add_to_set(&SR, &sr, "VDIs", &vdi);
                self.sr_sizes(&sr, &s);
                Ok(Value::String(vdi))
            }
            (
                Completion::CopyVdi {
                    sr,
                    of,
                    uuid,
                    snapshot,
                },
                JobOutput::Sr(s),
            ) => {
                let info = s
                    .vdis
                    .iter()
                    .find(|v| v.uuid == uuid)
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::internal("the VDI was copied but the SR does not list the copy")
                    })?;
                let vdi = self.insert_vdi_copy(&sr, &of, &info, snapshot, platform);
                self.sr_sizes(&sr, &s);
                Ok(Value::String(vdi))
            }
            (Completion::CloneVm(plan), JobOutput::Sr(s)) => {
                self.finish_vm_clone(*plan, &s, platform)
            }
            (Completion::Plug { pbd, sr }, JobOutput::Sr(s)) => {
                let expected = self.field(&SR, &sr, "uuid");
                if expected.as_str() != Some(uuid_from(s.uuid).as_str()) {
                    return Err(backend(
                        47,
                        "The SR is not available",
                        &format!(
                            "the LUN holds SR {} where SR {} was expected",
                            uuid_from(s.uuid),
                            expected.as_str().unwrap_or("?")
                        ),
                    ));
                }
                let want = storage_type(self.field(&SR, &sr, "type").as_str().unwrap_or(""));
                if s.sr_type != want {
                    return Err(backend(
                        47,
                        "The SR is not available",
                        &format!(
                            "the LUN holds an SR of storage type {:?} where {want:?} was expected",
                            s.sr_type
                        ),
                    ));
                }
                self.set(&PBD, &pbd, "currently_attached", Value::Bool(true));
                // Plugged again at boot or by hand: no upload is awaited.
                self.sync_vdis(&sr, &s, true, platform);
                log::info!(
                    "sr: PBD {pbd} plugged: SR {} with {} VDIs",
                    uuid_from(s.uuid),
                    s.vdis.len()
                );
                Ok(Value::str(""))
            }
            (Completion::DestroySr { sr }, JobOutput::Sr(_)) => self.sr_forget(&sr),
            (Completion::ResizeVdi { sr, vdi }, JobOutput::Sr(s)) => {
                let uuid = self.field(&VDI, &vdi, "uuid");
                let info = s
                    .vdis
                    .iter()
                    .find(|v| uuid.as_str() == Some(uuid_from(v.uuid).as_str()))
                    .ok_or_else(|| {
                        ApiError::internal("the VDI was resized but the SR does not list it")
                    })?;
                self.set(
                    &VDI,
                    &vdi,
                    "virtual_size",
                    Value::Int(info.virtual_size as i64),
                );
                self.sr_sizes(&sr, &s);
                Ok(Value::str(""))
            }
            (Completion::DestroyVdi { sr, vdi }, JobOutput::Sr(s)) => {
                if let Value::String(of) = self.field(&VDI, &vdi, "snapshot_of") {
                    self.remove_from_set(&VDI, &of, "snapshots", &vdi);
                }
                self.db.remove(&VDI, &vdi);
                self.remove_from_set(&SR, &sr, "VDIs", &vdi);
                self.sr_sizes(&sr, &s);
                Ok(Value::str(""))
            }
            (_, other) => Err(ApiError::internal(&format!(
                "unexpected storage result {other:?}"
            ))),
        }
    }

    /// The record of a copy the SR made of VDI `of` (`VDI.snapshot`,
    /// `VDI.clone`, `VM.clone`): it keeps the original's description and type.
    pub(super) fn insert_vdi_copy(
        &mut self,
        sr: &str,
        of: &str,
        info: &storage::sr::VdiInfo,
        snapshot: bool,
        platform: &mut dyn Platform,
    ) -> String {
        let (vdi, _) = new_id(platform);
        let mut fields = default_record(&VDI, &uuid_from(info.uuid));
        let copied: Vec<(&str, Value)> = ["name_description", "type", "sharable", "other_config"]
            .iter()
            .map(|k| (*k, self.field(&VDI, of, k)))
            .collect();
        let mut put = |name: &str, v: Value| {
            if let Some(slot) = fields.get_mut(field_index(&VDI, name)) {
                *slot = v;
            }
        };
        for (k, v) in copied {
            if v != Value::Nil {
                put(k, v);
            }
        }
        put("name_label", Value::String(info.name.clone()));
        put("SR", Value::str(sr));
        put("virtual_size", Value::Int(info.virtual_size as i64));
        put(
            "physical_utilisation",
            Value::Int(info.physical_utilisation as i64),
        );
        put("read_only", Value::Bool(info.read_only));
        put("is_a_snapshot", Value::Bool(snapshot));
        if snapshot {
            put("snapshot_of", Value::str(of));
            let now = crate::xenapi::value::format_datetime(self.unix_now(platform));
            put("snapshot_time", Value::DateTime(now));
        }
        put("location", Value::String(uuid_from(info.uuid)));
        self.db.insert(&VDI, vdi.clone(), fields);
        self.add_to_set(&SR, sr, "VDIs", &vdi);
        if snapshot {
            self.add_to_set(&VDI, of, "snapshots", &vdi);
        }
        vdi
    }

    pub(super) fn sr_sizes(&mut self, sr: &str, s: &SrSummary) {
        self.set(&SR, sr, "physical_size", Value::Int(s.physical_size as i64));
        self.set(
            &SR,
            sr,
            "physical_utilisation",
            Value::Int(s.physical_utilisation as i64),
        );
        let allocated: u64 = s.vdis.iter().map(|v| v.virtual_size).sum();
        self.set(&SR, sr, "virtual_allocation", Value::Int(allocated as i64));
    }

    /// `SR.scan`: VDI objects follow the VDIs on the LUN (on an ISO
    /// library, those it lists: see [`XenApi::listed_vdis`]).
    fn sync_vdis(&mut self, sr: &str, s: &SrSummary, restarted: bool, platform: &mut dyn Platform) {
        let listed: Vec<storage::sr::VdiInfo> = self
            .listed_vdis(sr, s, restarted)
            .into_iter()
            .cloned()
            .collect();
        let known: Vec<(String, String)> = self
            .db
            .objects("VDI")
            .filter(|(_, o)| o.field(field_index(&VDI, "SR")).as_str() == Some(sr))
            .map(|(r, o)| {
                (
                    r.clone(),
                    String::from(o.field(field_index(&VDI, "uuid")).as_str().unwrap_or("")),
                )
            })
            .collect();
        for (reference, uuid) in &known {
            match listed.iter().find(|v| uuid_from(v.uuid) == *uuid) {
                None => {
                    self.db.remove(&VDI, reference);
                    self.remove_from_set(&SR, sr, "VDIs", reference);
                }
                Some(info) => {
                    self.set(
                        &VDI,
                        reference,
                        "virtual_size",
                        Value::Int(info.virtual_size as i64),
                    );
                    self.set(
                        &VDI,
                        reference,
                        "physical_utilisation",
                        Value::Int(info.physical_utilisation as i64),
                    );
                    if s.sr_type == storage::sr::SrType::Iso && info.read_only {
                        self.set(&VDI, reference, "read_only", Value::Bool(true));
                    }
                }
            }
        }
        for info in &listed {
            let uuid = uuid_from(info.uuid);
            if known.iter().any(|(_, u)| *u == uuid) {
                continue;
            }
            let (vdi, _) = new_id(platform);
            let mut fields = default_record(&VDI, &uuid);
            for (name, v) in [
                ("name_label", Value::String(info.name.clone())),
                ("SR", Value::str(sr)),
                ("virtual_size", Value::Int(info.virtual_size as i64)),
                (
                    "physical_utilisation",
                    Value::Int(info.physical_utilisation as i64),
                ),
                ("read_only", Value::Bool(info.read_only)),
                ("is_a_snapshot", Value::Bool(info.is_a_snapshot)),
                ("location", Value::String(uuid.clone())),
            ] {
                if let Some(slot) = fields.get_mut(field_index(&VDI, name)) {
                    *slot = v;
                }
            }
            self.db.insert(&VDI, vdi.clone(), fields);
            self.add_to_set(&SR, sr, "VDIs", &vdi);
        }
        self.sr_sizes(sr, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::iscsi::client::DiscoveredTarget;

    #[test]
    fn iqn_list_as_sm_prints_it() {
        let targets = [DiscoveredTarget {
            name: String::from("iqn.2026-11.dev.keel:lun-pool"),
            addresses: alloc::vec![String::from("10.0.2.2:3261,1")],
        }];
        assert_eq!(
            iqns_xml(&targets, "10.0.2.2"),
            "<?xml version=\"1.0\" ?>\n<iscsi-target-iqns>\n\t<TGT>\n\t\t<Index>0</Index>\n\t\t<IPAddress>10.0.2.2</IPAddress>\n\t\t<Port>3261</Port>\n\t\t<TargetIQN>iqn.2026-11.dev.keel:lun-pool</TargetIQN>\n\t</TGT>\n</iscsi-target-iqns>\n"
        );
    }

    #[test]
    fn lun_list_leaves_out_empty_values() {
        let luns = [LunEntry {
            lun: 1,
            vendor: String::from("IET"),
            serial: String::new(),
            size: 16 << 20,
            scsi_id: String::from("360000000000000000e00000000010001"),
        }];
        let xml = luns_xml(&luns);
        assert!(xml.contains("\t\t<vendor>IET</vendor>\n"), "{xml}");
        assert!(!xml.contains("serial"), "{xml}");
        assert!(xml.contains("<LUNid>1</LUNid>") && xml.contains("<size>16777216</size>"));
        assert!(xml.contains("<SCSIid>360000000000000000e00000000010001</SCSIid>"));
    }

    #[test]
    fn uuids_round_trip() {
        let text = uuid_from([0x12u8; 16]);
        assert_eq!(parse_uuid(&text).map(uuid_from), Some(text));
        assert_eq!(parse_uuid("not-a-uuid"), None);
    }
}
