//! `VM.create` and `VM.destroy`: the VM records themselves. A new VM is
//! halted and owns a `VM_metrics` object; `service::vm_power` runs it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::{NULL_REF, default_record};
use crate::xenapi::dispatch::coerce;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{VM, VM_METRICS};
use crate::xenapi::value::Value;

/// Fields `VM.create` takes from its record (xapi's creation fields that
/// this host declares); any other key is ignored, as xapi does.
const CREATE_FIELDS: &[&str] = &[
    "name_label",
    "name_description",
    "user_version",
    "is_a_template",
    "affinity",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "HVM_shadow_multiplier",
    "platform",
    "PCI_bus",
    "other_config",
    "recommendations",
    "xenstore_data",
    "tags",
    "suspend_SR",
    "domain_type",
];

/// Without these a record does not describe a VM: the call is refused with
/// `FIELD_TYPE_ERROR [field]`. The rest default as in the datamodel.
const REQUIRED: &[&str] = &[
    "name_label",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_max",
    "VCPUs_at_startup",
];

impl XenApi {
    pub(super) fn create_vm(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(given) = args else {
            return Err(ApiError::field_type("args"));
        };
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&VM, &uuid);
        for name in REQUIRED {
            if !given.contains_key(*name) {
                return Err(ApiError::field_type(name));
            }
        }
        for name in CREATE_FIELDS {
            let (Some(value), Some((i, field))) = (given.get(*name), VM.field(name)) else {
                continue;
            };
            let value = coerce(value.clone(), &field.ty, field.name)?;
            if let Some(slot) = fields.get_mut(i) {
                *slot = value;
            }
        }
        let int = |fields: &[Value], name: &str| {
            VM.field(name)
                .and_then(|(i, _)| fields.get(i))
                .and_then(Value::as_int)
                .unwrap_or(0)
        };
        let memory = [
            int(&fields, "memory_static_min"),
            int(&fields, "memory_dynamic_min"),
            int(&fields, "memory_dynamic_max"),
            int(&fields, "memory_static_max"),
        ];
        if memory[0] < 0 || memory.windows(2).any(|w| w[0] > w[1]) {
            return Err(ApiError::new(
                "MEMORY_CONSTRAINT_VIOLATION",
                &[
                    "Memory limits must satisfy: 0 <= static_min <= dynamic_min <= dynamic_max <= static_max",
                ],
            ));
        }
        let (vcpus_max, at_startup) = (int(&fields, "VCPUs_max"), int(&fields, "VCPUs_at_startup"));
        if vcpus_max < 1 {
            return Err(ApiError::invalid_value(
                "VCPUs_max",
                &format!("{vcpus_max}"),
            ));
        }
        if !(1..=vcpus_max).contains(&at_startup) {
            return Err(ApiError::invalid_value(
                "VCPUs_at_startup",
                &format!("{at_startup}"),
            ));
        }
        if let Some(affinity) = given.get("affinity").and_then(Value::as_str)
            && !affinity.is_empty()
            && affinity != NULL_REF
            && !self.db.contains("host", affinity)
        {
            return Err(ApiError::handle_invalid("host", affinity));
        }

        let (metrics, metrics_uuid) = new_id(platform);
        self.db.insert(
            &VM_METRICS,
            metrics.clone(),
            default_record(&VM_METRICS, &metrics_uuid),
        );
        for (name, value) in [
            ("metrics", Value::String(metrics)),
            ("domid", Value::Int(-1)),
            (
                "allowed_operations",
                super::vm_power::allowed_operations(
                    "Halted",
                    given.get("is_a_template") == Some(&Value::Bool(true)),
                ),
            ),
        ] {
            if let Some(slot) = VM.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&VM, reference.clone(), fields);
        Ok(Value::String(reference))
    }

    /// Destroys a halted VM and its metrics.
    pub(super) fn destroy_vm(&mut self, vm: &str) -> Result<Value, ApiError> {
        self.check_not_cloning(vm)?;
        let field = |name: &str| {
            let object = self.db.get(&VM, vm)?;
            VM.field(name).map(|(i, _)| object.field(i).clone())
        };
        let state = field("power_state")
            .and_then(|v| v.as_str().map(String::from))
            .ok_or_else(|| ApiError::handle_invalid("VM", vm))?;
        if state != "Halted" {
            return Err(ApiError::new(
                "VM_BAD_POWER_STATE",
                &[vm, "halted", &state.to_lowercase()],
            ));
        }
        let refs = |name: &str| match field(name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        let (vbds, vifs): (Vec<String>, Vec<String>) = (refs("VBDs"), refs("VIFs"));
        if let Some(metrics) = field("metrics").and_then(|v| v.as_str().map(String::from)) {
            self.db.remove(&VM_METRICS, &metrics);
        }
        // Its devices go with it, as in xapi; its disks (VDIs) stay.
        for vbd in vbds {
            self.vbd_destroy(&vbd)?;
        }
        for vif in vifs {
            self.vif_destroy(&vif)?;
        }
        self.db.remove(&VM, vm);
        Ok(Value::str(""))
    }
}
