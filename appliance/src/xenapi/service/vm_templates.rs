//! The built-in template, `VM.provision`, the memory and
//! vCPU setters with xapi's constraints, and `auto_poweron` at boot.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use super::vm_power::allowed_operations;
use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::default_record;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{POOL, VM, VM_METRICS};
use crate::xenapi::value::Value;

/// The built-in template's `name_label`.
pub const DIRECT_BOOT_TEMPLATE: &str = "Debian-style direct boot";
const TEMPLATE_MEMORY: i64 = 256 << 20;

fn memory_violation() -> ApiError {
    ApiError::new(
        "MEMORY_CONSTRAINT_VIOLATION",
        &[
            "Memory limits must satisfy: 0 <= static_min <= dynamic_min <= dynamic_max <= static_max",
        ],
    )
}

fn set(fields: &mut [Value], name: &str, value: Value) {
    if let Some(slot) = VM.field(name).and_then(|(i, _)| fields.get_mut(i)) {
        *slot = value;
    }
}

fn get<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    VM.field(name).and_then(|(i, _)| fields.get(i))
}

fn map_get<'a>(value: Option<&'a Value>, key: &str) -> Option<&'a str> {
    match value {
        Some(Value::Struct(m)) => m.get(key).and_then(Value::as_str),
        _ => None,
    }
}

impl XenApi {
    pub(super) fn vm_state_is_halted(&self, vm: &str) -> Result<(), ApiError> {
        let object = self
            .db
            .get(&VM, vm)
            .ok_or_else(|| ApiError::handle_invalid("VM", vm))?;
        let state = get(&object.fields, "power_state")
            .and_then(Value::as_str)
            .unwrap_or("Halted");
        if state == "Halted" {
            Ok(())
        } else {
            Err(ApiError::new(
                "VM_BAD_POWER_STATE",
                &[vm, "halted", &state.to_lowercase()],
            ))
        }
    }

    pub(super) fn new_metrics(&mut self, platform: &mut dyn Platform) -> String {
        let (metrics, uuid) = new_id(platform);
        self.db.insert(
            &VM_METRICS,
            metrics.clone(),
            default_record(&VM_METRICS, &uuid),
        );
        metrics
    }

    /// Adds the built-in template unless it is there already.
    pub(super) fn ensure_templates(&mut self, platform: &mut dyn Platform) {
        let exists = self.db.objects(VM.name).any(|(_, o)| {
            get(&o.fields, "is_default_template") == Some(&Value::Bool(true))
                && get(&o.fields, "name_label").and_then(Value::as_str)
                    == Some(DIRECT_BOOT_TEMPLATE)
        });
        if exists {
            return;
        }
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&VM, &uuid);
        let metrics = self.new_metrics(platform);
        for (name, value) in [
            ("name_label", Value::str(DIRECT_BOOT_TEMPLATE)),
            (
                "name_description",
                Value::str(
                    "A Linux guest booted directly from a kernel and initrd: set PV_kernel and PV_ramdisk to boot:<name> (files of the boot archive's library/ folder); the serial console is ttyS0",
                ),
            ),
            ("is_a_template", Value::Bool(true)),
            ("is_default_template", Value::Bool(true)),
            ("memory_static_min", Value::Int(TEMPLATE_MEMORY)),
            ("memory_dynamic_min", Value::Int(TEMPLATE_MEMORY)),
            ("memory_dynamic_max", Value::Int(TEMPLATE_MEMORY)),
            ("memory_static_max", Value::Int(TEMPLATE_MEMORY)),
            ("VCPUs_max", Value::Int(1)),
            ("VCPUs_at_startup", Value::Int(1)),
            ("PV_args", Value::str("console=ttyS0")),
            ("domain_type", Value::str("pv")),
            ("metrics", Value::String(metrics)),
            ("domid", Value::Int(-1)),
            ("allowed_operations", allowed_operations("Halted", true)),
        ] {
            set(&mut fields, name, value);
        }
        self.db.insert(&VM, reference, fields);
        log::info!("xenapi: built-in template {DIRECT_BOOT_TEMPLATE:?} added");
    }

    /// `VM.provision(vm)`: creates the disks the template's
    /// `other_config:disks` lists. The built-in template lists none.
    pub(super) fn provision_vm(&mut self, vm: &str) -> Result<Value, ApiError> {
        self.vm_state_is_halted(vm)?;
        let object = self
            .db
            .get(&VM, vm)
            .ok_or_else(|| ApiError::handle_invalid("VM", vm))?;
        let disks = map_get(get(&object.fields, "other_config"), "disks").unwrap_or("");
        if disks.contains("<disk") {
            return Err(ApiError::not_implemented("VM.provision"));
        }
        Ok(Value::str(""))
    }

    /// `VM.set_memory_limits`, and `VM.set_memory` (all but static_min).
    pub(super) fn set_memory_limits(
        &mut self,
        vm: &str,
        limits: [i64; 4],
    ) -> Result<Value, ApiError> {
        self.vm_state_is_halted(vm)?;
        let [smin, smax, dmin, dmax] = limits;
        if smin < 0 || smin > dmin || dmin > dmax || dmax > smax {
            return Err(memory_violation());
        }
        for (name, value) in [
            ("memory_static_min", smin),
            ("memory_static_max", smax),
            ("memory_dynamic_min", dmin),
            ("memory_dynamic_max", dmax),
        ] {
            self.set_vm(vm, name, Value::Int(value));
        }
        Ok(Value::str(""))
    }

    pub(super) fn set_memory(&mut self, vm: &str, value: i64) -> Result<Value, ApiError> {
        let smin = self
            .db
            .get(&VM, vm)
            .and_then(|o| get(&o.fields, "memory_static_min"))
            .and_then(Value::as_int)
            .unwrap_or(0);
        self.set_memory_limits(vm, [smin, value, value, value])
    }

    /// `VM.set_VCPUs_max` (`max`) and `VM.set_VCPUs_at_startup`.
    pub(super) fn set_vcpus(&mut self, vm: &str, max: bool, value: i64) -> Result<Value, ApiError> {
        self.vm_state_is_halted(vm)?;
        let other = |name: &str| {
            self.db
                .get(&VM, vm)
                .and_then(|o| get(&o.fields, name))
                .and_then(Value::as_int)
                .unwrap_or(1)
        };
        let (field, ok) = if max {
            (
                "VCPUs_max",
                (1..=64).contains(&value) && value >= other("VCPUs_at_startup"),
            )
        } else {
            (
                "VCPUs_at_startup",
                value >= 1 && value <= other("VCPUs_max"),
            )
        };
        if !ok {
            return Err(ApiError::invalid_value(field, &value.to_string()));
        }
        self.set_vm(vm, field, Value::Int(value));
        Ok(Value::str(""))
    }

    /// At boot, when the pool's `other_config:auto_poweron` is `true`: the
    /// VMs with `other_config:auto_poweron=true`, in `order`, each
    /// `start_delay` seconds after the one before it.
    pub(super) fn plan_auto_poweron(&mut self) {
        let pool_on = self
            .db
            .get(&POOL, &self.refs.pool)
            .and_then(|o| {
                POOL.field("other_config")
                    .map(|(i, _)| map_get(Some(o.field(i)), "auto_poweron") == Some("true"))
            })
            .unwrap_or(false);
        if !pool_on {
            return;
        }
        let mut vms: Vec<(i64, String)> = self
            .db
            .objects(VM.name)
            .filter(|(_, o)| {
                get(&o.fields, "is_a_template") != Some(&Value::Bool(true))
                    && map_get(get(&o.fields, "other_config"), "auto_poweron") == Some("true")
            })
            .map(|(r, o)| {
                let order = get(&o.fields, "order").and_then(Value::as_int).unwrap_or(0);
                (order, r.clone())
            })
            .collect();
        vms.sort();
        self.autostart = vms.into_iter().map(|(_, vm)| vm).collect();
    }

    /// Starts the next auto-power-on VM when its turn comes.
    pub(super) fn auto_poweron(&mut self, platform: &mut dyn Platform) {
        if platform.now() < self.autostart_at {
            return;
        }
        let Some(vm) = self.autostart.pop_front() else {
            return;
        };
        match self.vm_start(&vm, false, platform) {
            Ok(_) => log::info!("xenapi: auto_poweron started VM {vm}"),
            Err(e) => log::error!(
                "xenapi: auto_poweron could not start VM {vm}: {}",
                e.description().join(" ")
            ),
        }
        let delay = self
            .db
            .get(&VM, &vm)
            .and_then(|o| get(&o.fields, "start_delay"))
            .and_then(Value::as_int)
            .unwrap_or(0);
        self.autostart_at = platform.now() + Duration::from_secs(u64::try_from(delay).unwrap_or(0));
    }
}
