//! `VBD.insert` and `VBD.eject`: the ISO in a VM's CD drive. The guest's
//! CD is a read-only virtio-blk disk, which has no removable media: the
//! media changes while the VM is halted and the guest sees it at its next
//! start; a running VM's drive answers `OPERATION_NOT_ALLOWED` (as VBD
//! hot-plug does). XenServer changes media live on HVM guests through its
//! emulated IDE drive; this host has no such device.

use super::XenApi;
use crate::xenapi::db::NULL_REF;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{VBD, VDI, VM};
use crate::xenapi::value::Value;

impl XenApi {
    /// The checks both calls share: a CD drive of a halted VM.
    fn cd_drive_of_halted_vm(&self, vbd: &str) -> Result<(), ApiError> {
        if !self.db.contains("VBD", vbd) {
            return Err(ApiError::handle_invalid("VBD", vbd));
        }
        if self.field(&VBD, vbd, "type").as_str() != Some("CD") {
            return Err(ApiError::new("VBD_NOT_REMOVABLE_MEDIA", &[vbd]));
        }
        let vm = self.field(&VBD, vbd, "VM");
        let vm = vm.as_str().unwrap_or(NULL_REF);
        if self.field(&VM, vm, "power_state").as_str() != Some("Halted") {
            return Err(ApiError::new(
                "OPERATION_NOT_ALLOWED",
                &[
                    "the CD's media changes while its VM is halted: virtio-blk has no removable media",
                ],
            ));
        }
        Ok(())
    }

    fn set_media(&mut self, vbd: &str, vdi: &str) {
        if let Some(old) = self.field(&VBD, vbd, "VDI").as_str()
            && old != NULL_REF
        {
            let old = alloc::string::String::from(old);
            self.remove_from_set(&VDI, &old, "VBDs", vbd);
        }
        self.set(&VBD, vbd, "VDI", Value::str(vdi));
        self.set(&VBD, vbd, "empty", Value::Bool(vdi == NULL_REF));
        if vdi != NULL_REF {
            self.add_to_set(&VDI, vdi, "VBDs", vbd);
        }
    }

    /// `VBD.insert(vbd, vdi)`: an ISO into an empty CD drive.
    pub(super) fn vbd_insert(&mut self, vbd: &str, vdi: &str) -> Result<Value, ApiError> {
        self.cd_drive_of_halted_vm(vbd)?;
        if self.field(&VBD, vbd, "empty") != Value::Bool(true) {
            return Err(ApiError::new("VBD_NOT_EMPTY", &[vbd]));
        }
        if !self.db.contains("VDI", vdi) {
            return Err(ApiError::handle_invalid("VDI", vdi));
        }
        self.check_cd(vdi, self.field(&VBD, vbd, "mode").as_str())?;
        self.set_media(vbd, vdi);
        Ok(Value::str(""))
    }

    /// `VBD.eject(vbd)`: the drive is empty afterwards.
    pub(super) fn vbd_eject(&mut self, vbd: &str) -> Result<Value, ApiError> {
        self.cd_drive_of_halted_vm(vbd)?;
        if self.field(&VBD, vbd, "empty") == Value::Bool(true) {
            return Err(ApiError::new("VBD_IS_EMPTY", &[vbd]));
        }
        self.set_media(vbd, NULL_REF);
        Ok(Value::str(""))
    }
}
