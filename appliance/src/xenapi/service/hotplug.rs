//! `VBD.plug`/`unplug`/`unplug_force` and `VIF.plug`/`unplug`/`unplug_force`:
//! a VM's devices follow its power state here (attached when it starts,
//! detached when it stops). A running guest gets no device hot-plugged or
//! hot-unplugged, as XenServer does for a guest without PV drivers: the
//! calls say so with xapi's errors, and a device created while the VM runs
//! is attached at its next start.

use alloc::string::String;

use super::XenApi;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{Class, VBD, VIF, VM};
use crate::xenapi::value::Value;

/// The device classes that can be plugged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Device {
    Vbd,
    Vif,
}

impl Device {
    fn class(self) -> &'static Class {
        match self {
            Device::Vbd => &VBD,
            Device::Vif => &VIF,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Device::Vbd => "disks",
            Device::Vif => "NICs",
        }
    }
}

impl XenApi {
    /// `plug` (true) or `unplug`/`unplug_force` (false) of `device`.
    pub(super) fn plug_device(
        &mut self,
        kind: Device,
        device: &str,
        plug: bool,
    ) -> Result<Value, ApiError> {
        let class = kind.class();
        let vm = String::from(self.field(class, device, "VM").as_str().unwrap_or(""));
        let state = String::from(self.field(&VM, &vm, "power_state").as_str().unwrap_or(""));
        if state != "Running" && state != "Paused" {
            return Err(ApiError::new(
                "VM_BAD_POWER_STATE",
                &[&vm, "running", &state.to_lowercase()],
            ));
        }
        let attached = self.field(class, device, "currently_attached") == Value::Bool(true);
        match (plug, attached) {
            (true, true) => Err(ApiError::new("DEVICE_ALREADY_ATTACHED", &[device])),
            (false, false) => Err(ApiError::new("DEVICE_ALREADY_DETACHED", &[device])),
            _ => Err(ApiError::new(
                "OPERATION_NOT_ALLOWED",
                &[&alloc::format!(
                    "this host does not hot-plug {} into or out of a running guest: a VM's devices are attached when it starts and detached when it stops",
                    kind.what()
                )],
            )),
        }
    }
}
