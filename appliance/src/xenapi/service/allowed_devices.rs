//! `VM.get_allowed_VBD_devices` and `VM.get_allowed_VIF_devices`: the
//! device numbers a new VBD (`userdevice`) or VIF (`device`) of a VM may
//! take, the ones its devices do not hold, in order (what XenCenter and
//! Xen Orchestra offer when a disk or NIC is added).

use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use super::guest_net::MAX_VIF_DEVICE;
use super::srs::field_index;
use super::vbds::MAX_VBD_DEVICE;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{VBD, VIF, VM};
use crate::xenapi::value::Value;

impl XenApi {
    /// `set` is the VM's field listing the devices: `VBDs` or `VIFs`.
    pub(super) fn allowed_devices(&self, vm: &str, set: &str) -> Result<Value, ApiError> {
        if !self.db.contains("VM", vm) {
            return Err(ApiError::handle_invalid("VM", vm));
        }
        let (class, field, max) = match set {
            "VBDs" => (&VBD, "userdevice", MAX_VBD_DEVICE),
            _ => (&VIF, "device", MAX_VIF_DEVICE),
        };
        let taken: Vec<String> = self
            .refs_in(&VM, vm, set)
            .iter()
            .filter_map(|d| self.db.get(class, d))
            .filter_map(|o| {
                o.field(field_index(class, field))
                    .as_str()
                    .map(String::from)
            })
            .collect();
        Ok(Value::Array(
            (0..max)
                .map(|n| alloc::format!("{n}"))
                .filter(|n| !taken.contains(n))
                .map(Value::String)
                .collect(),
        ))
    }
}
