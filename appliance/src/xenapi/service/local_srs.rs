//! Local SRs (`lvm`, `ext`): an SR on one of this host's own disks,
//! named as XenServer names it, `device_config:device=/dev/vdb` (or the
//! disk's stable `/dev/disk/by-id/...` name).
//!
//! Everything after the disk is found is the iSCSI SR's path (`srs`): the
//! same calls, completions and on-disk format (`storage::sr`, of type
//! `Local`); only the job runs on the host disk (`Work::Local`, see
//! `crate::local_disks`) rather than over a session. `lvm` and `ext` are
//! one format here: the type asked for is recorded on the SR, as xapi does.
//!
//! The probe follows sm: without `device` it fails with
//! `SR_BACKEND_FAILURE_90` and the host's candidate disks as a `<Devlist>`;
//! with it, the `<SRlist>` of the SR on that disk.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use super::srs::{XML_HEAD, config_str, element, field_index};
use crate::iscsi::{JobSpec, SrOp};
use crate::local_disks::HostDiskInfo;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{PBD, SR};
use crate::xenapi::value::Value;

/// SR types made on a host disk.
pub const LOCAL_TYPES: &[&str] = &["lvm", "ext"];

/// Whether SRs of XenAPI type `sr_type` live on a host disk.
pub fn is_local(sr_type: &str) -> bool {
    LOCAL_TYPES.contains(&sr_type)
}

/// sm's `ConfigDeviceMissing`.
fn device_missing(disks: &[HostDiskInfo]) -> ApiError {
    ApiError::new(
        "SR_BACKEND_FAILURE_90",
        &[
            "",
            "The request is missing the device parameter",
            &devlist_xml(disks),
        ],
    )
}

/// sm's `InvalidDev` (a device that is not there, or not for an SR).
fn invalid_device(detail: &str) -> ApiError {
    ApiError::new(
        "SR_BACKEND_FAILURE_70",
        &["", "Invalid device specified", detail],
    )
}

/// The candidate disks as sm's `<Devlist>`, laid out as minidom prints it.
pub(crate) fn devlist_xml(disks: &[HostDiskInfo]) -> String {
    let mut out = String::from(XML_HEAD);
    let candidates: Vec<&HostDiskInfo> = disks.iter().filter(|d| d.reserved.is_none()).collect();
    if candidates.is_empty() {
        out.push_str("<Devlist/>\n");
        return out;
    }
    out.push_str("<Devlist>\n");
    for d in candidates {
        out.push_str("\t<BlockDevice>\n");
        element(&mut out, 2, "path", &d.device);
        element(&mut out, 2, "size", &format!("{}", d.size));
        element(&mut out, 2, "vendor", "virtio");
        if let Some(id) = &d.by_id {
            element(&mut out, 2, "id", id);
        }
        out.push_str("\t</BlockDevice>\n");
    }
    out.push_str("</Devlist>\n");
    out
}

fn device_of(config: &BTreeMap<String, Value>) -> Option<&str> {
    config_str(config, "device")
}

/// Whether `config` names a host disk (a local SR's PBD) rather than a target.
pub(super) fn names_host_disk(config: &BTreeMap<String, Value>) -> bool {
    device_of(config).is_some() && !config.contains_key("target")
}

impl XenApi {
    /// The host's disks, as the platform found them (at boot).
    pub fn set_host_disks(&mut self, disks: Vec<HostDiskInfo>) {
        for d in &disks {
            log::info!(
                "sr: host disk {} ({}, {} bytes){}",
                d.device,
                d.by_id.as_deref().unwrap_or("no serial"),
                d.size,
                d.reserved
                    .as_deref()
                    .map(|why| format!(": {why}, not for SRs"))
                    .unwrap_or_default()
            );
        }
        self.host_disks = disks;
    }

    /// The disk `config` names, if it may hold an SR.
    fn host_disk(&self, config: &BTreeMap<String, Value>) -> Result<&HostDiskInfo, ApiError> {
        let Some(device) = device_of(config) else {
            return Err(device_missing(&self.host_disks));
        };
        let disk = self
            .host_disks
            .iter()
            .find(|d| d.named(device))
            .ok_or_else(|| {
                invalid_device(&format!(
                    "this host has no disk {device} (SR.probe without a device lists them)"
                ))
            })?;
        if let Some(why) = &disk.reserved {
            return Err(invalid_device(&format!(
                "{device} is {why}; it cannot hold an SR"
            )));
        }
        Ok(disk)
    }

    /// The job of `op` on the SR of the disk `config` names.
    pub(super) fn local_spec(
        &self,
        config: &BTreeMap<String, Value>,
        op: SrOp,
    ) -> Result<JobSpec, ApiError> {
        let disk = self.host_disk(config)?;
        Ok(JobSpec::local(&disk.device, op))
    }

    /// `SR.create` on a disk: it must not hold an SR this host knows (a
    /// PBD names it, by either of its names), and a local SR is not shared.
    pub(super) fn local_create_spec(
        &self,
        config: &BTreeMap<String, Value>,
        shared: bool,
        op: SrOp,
    ) -> Result<JobSpec, ApiError> {
        if shared {
            return Err(ApiError::invalid_value(
                "shared",
                "true (a local SR is on one host's disk)",
            ));
        }
        let disk = self.host_disk(config)?;
        let in_use = self.db.objects("PBD").find_map(|(_, o)| {
            let Value::Struct(c) = o.field(field_index(&PBD, "device_config")) else {
                return None;
            };
            let sr = o.field(field_index(&PBD, "SR")).as_str()?;
            (names_host_disk(c) && device_of(c).is_some_and(|d| disk.named(d)))
                .then(|| String::from(sr))
        });
        if let Some(sr) = in_use {
            let uuid = self.field(&SR, &sr, "uuid");
            return Err(invalid_device(&format!(
                "{} holds SR {} of this host; SR.destroy or SR.forget it first",
                disk.device,
                uuid.as_str().unwrap_or(&sr)
            )));
        }
        Ok(JobSpec::local(&disk.device, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devlist_lists_candidates_only() {
        let disks = [
            HostDiskInfo {
                device: String::from("/dev/vda"),
                by_id: None,
                size: 1 << 30,
                reserved: Some(String::from("the host's state disk")),
            },
            HostDiskInfo {
                device: String::from("/dev/vdb"),
                by_id: Some(String::from("/dev/disk/by-id/virtio-data")),
                size: 2 << 30,
                reserved: None,
            },
        ];
        assert_eq!(
            devlist_xml(&disks),
            "<?xml version=\"1.0\" ?>\n<Devlist>\n\t<BlockDevice>\n\t\t<path>/dev/vdb</path>\n\t\t<size>2147483648</size>\n\t\t<vendor>virtio</vendor>\n\t\t<id>/dev/disk/by-id/virtio-data</id>\n\t</BlockDevice>\n</Devlist>\n"
        );
        assert_eq!(
            devlist_xml(&disks[..1]),
            "<?xml version=\"1.0\" ?>\n<Devlist/>\n"
        );
    }
}
