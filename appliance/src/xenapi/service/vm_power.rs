//! VM power operations over the platform's hypervisor: `VM.start`,
//! `clean_shutdown` (the ACPI power button; answered when the guest is
//! really off), `hard_shutdown`, `hard_reboot`, `pause`/`unpause`, and the
//! records following what guests do on their own (a guest `poweroff` shows
//! `Halted`, a guest reset a new domid). Direct kernel boot takes
//! `PV_kernel`/`PV_ramdisk` as `boot:<name>` (see [`boot_source`]).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use super::wire::{Wire, respond};
use super::{XenApi, new_id};
use crate::platform::{BootSource, Platform, VmFailure, VmId, VmStart, VmStatus};
use crate::xenapi::db::{NULL_REF, default_record};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{CONSOLE, HOST, VM, VM_METRICS};
use crate::xenapi::value::{Value, format_datetime};

/// How long `VM.clean_shutdown` waits for the guest to power off after the
/// power button press before failing with `VM_SHUTDOWN_TIMEOUT`.
pub const CLEAN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `VM.hard_reboot` waits for the old instance's vCPUs to stop.
const HARD_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Restarts after crashes allowed within [`CRASH_LOOP_WINDOW`].
pub(super) const CRASH_LOOP_LIMIT: usize = 3;
pub(super) const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);

/// A VM this host runs now.
#[derive(Debug)]
pub(super) struct Running {
    pub id: VmId,
    pub restarts: u32,
    pub paused: bool,
    /// Its `console` object.
    pub console: String,
}

/// What a deferred power call waits for: the VM to be off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitFor {
    /// Then answer (clean or hard shutdown).
    Halt,
    /// Then start it again (hard reboot).
    Restart,
}

/// A power call answered when its VM is off (or its time is up).
#[derive(Debug)]
pub(super) struct VmWait {
    pub vm: String,
    pub kind: WaitFor,
    pub deadline: Duration,
    /// The connection awaiting the answer, if it is a plain call.
    pub ticket: Option<(u64, Wire)>,
    /// The task reporting it, for an `Async.` call.
    pub task: Option<String>,
    /// What the timeout error says.
    pub timeout: Duration,
}

/// A power call's next step.
pub(super) enum Power {
    Done(Result<Value, ApiError>),
    /// Answered when the VM is off: `(vm, kind, timeout)`.
    Wait(String, WaitFor, Duration),
}

/// `PV_kernel`/`PV_ramdisk` → where the file is. `boot:<name>` names a
/// file of the boot-module archive's `library/` folder; `vdi:<uuid>` (a
/// VDI) and ISO-library names are the next sources and are refused plainly
/// until they exist. `Ok(None)` for an empty field.
pub fn boot_source(field: &str, value: &str) -> Result<Option<BootSource>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Some(name) = value.strip_prefix("boot:") {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/+".contains(&b));
        if !ok {
            return Err(format!("{field} {value:?}: not a valid boot file name"));
        }
        return Ok(Some(BootSource::BootFile(name.to_string())));
    }
    if value.starts_with("vdi:") {
        return Err(format!(
            "{field} {value:?}: kernels on VDIs are not supported yet; use boot:<name>"
        ));
    }
    Err(format!(
        "{field} {value:?}: unknown source; this host boots kernels named boot:<name> (files of the boot archive's library/ folder)"
    ))
}

/// What `allowed_operations` lists for a VM in `state`.
pub(super) fn allowed_operations(state: &str, template: bool) -> Value {
    let ops: &[&str] = match (state, template) {
        (_, true) => &["clone", "copy", "provision", "destroy"],
        ("Running", _) => &["clean_shutdown", "hard_shutdown", "hard_reboot", "pause"],
        ("Paused", _) => &["unpause", "hard_shutdown", "hard_reboot"],
        _ => &["start", "clone", "copy", "destroy"],
    };
    Value::Array(ops.iter().map(|op| Value::str(op)).collect())
}

fn bad_power_state(vm: &str, expected: &str, actual: &str) -> ApiError {
    ApiError::new(
        "VM_BAD_POWER_STATE",
        &[vm, expected, &actual.to_lowercase()],
    )
}

impl XenApi {
    fn vm_field(&self, vm: &str, name: &str) -> Option<Value> {
        let object = self.db.get(&VM, vm)?;
        VM.field(name).map(|(i, _)| object.field(i).clone())
    }

    fn vm_str(&self, vm: &str, name: &str) -> String {
        self.vm_field(vm, name)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    fn vm_int(&self, vm: &str, name: &str) -> i64 {
        self.vm_field(vm, name)
            .and_then(|v| v.as_int())
            .unwrap_or(0)
    }

    pub(super) fn set_vm(&mut self, vm: &str, name: &str, value: Value) {
        if let Some((i, _)) = VM.field(name) {
            self.db.set_field(&VM, vm, i, value);
        }
    }

    fn set_metrics(&mut self, vm: &str, name: &str, value: Value) {
        let metrics = self.vm_str(vm, "metrics");
        if let Some((i, _)) = VM_METRICS.field(name) {
            self.db.set_field(&VM_METRICS, &metrics, i, value);
        }
    }

    /// `host.resident_VMs`: the VMs running here.
    fn update_resident_vms(&mut self) {
        let vms = Value::Array(self.running.keys().map(|vm| Value::str(vm)).collect());
        let host = self.refs.host.clone();
        if let Some((i, _)) = HOST.field("resident_VMs") {
            self.db.set_field(&HOST, &host, i, vms);
        }
    }

    fn is_template(&self, vm: &str) -> bool {
        self.vm_field(vm, "is_a_template") == Some(Value::Bool(true))
    }

    /// `VM.start(vm, start_paused, force)`.
    pub(super) fn vm_start(
        &mut self,
        vm: &str,
        start_paused: bool,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if self.is_template(vm) {
            return Err(ApiError::new("VM_IS_TEMPLATE", &[vm]));
        }
        self.check_not_cloning(vm)?;
        let state = self.vm_str(vm, "power_state");
        if state != "Halted" {
            return Err(bad_power_state(vm, "halted", &state));
        }
        self.check_host_enabled()?;
        let bootloader = |msg: &str| ApiError::new("BOOTLOADER_FAILED", &[vm, msg]);
        let kernel =
            boot_source("PV_kernel", &self.vm_str(vm, "PV_kernel")).map_err(|e| bootloader(&e))?;
        let ramdisk = boot_source("PV_ramdisk", &self.vm_str(vm, "PV_ramdisk"))
            .map_err(|e| bootloader(&e))?;
        let Some(kernel) = kernel else {
            return Err(bootloader(
                "PV_kernel is empty: this host boots guests directly from a kernel (PV_kernel = boot:<name>)",
            ));
        };
        let memory = self.vm_int(vm, "memory_static_max");
        let vcpus = self.vm_int(vm, "VCPUs_at_startup");
        let free = platform.system_info().memory_free;
        let needed = u64::try_from(memory).unwrap_or(0);
        // Disk VBDs on iSCSI SRs are attached now (all or none); anything
        // else (a CD, another SR type) is refused with attach's error.
        let nics = self.vm_nics(vm)?;
        let disks = self.attach_vm_disks(vm)?;
        let spec = VmStart {
            disks,
            nics: nics
                .iter()
                .map(|n| crate::platform::VmNicSpec {
                    mac: n.mac,
                    mtu: n.mtu,
                    link: n.link.clone(),
                })
                .collect(),
            name: self.vm_str(vm, "name_label"),
            kernel,
            ramdisk,
            cmdline: self.vm_str(vm, "PV_args"),
            vcpus: u32::try_from(vcpus).unwrap_or(1),
            memory_bytes: needed,
            paused: start_paused,
        };
        let id = match platform.vm_start(spec) {
            Ok(id) => id,
            Err(e) => {
                // The guest never ran: its disks are let go again.
                self.detach_vm_disks(vm);
                return Err(match e {
                    VmFailure::NoHypervisor => ApiError::not_implemented("VM.start"),
                    VmFailure::NoMemory { needed, available } => ApiError::new(
                        "HOST_NOT_ENOUGH_FREE_MEMORY",
                        &[&needed.to_string(), &available.min(free).to_string()],
                    ),
                    VmFailure::Boot(msg) => bootloader(&msg),
                    VmFailure::Other(msg) => ApiError::internal(&msg),
                });
            }
        };
        log::info!("xenapi: VM {vm} started");
        self.plug_vm_nics(vm, &nics);
        self.mark_running(vm, id, start_paused, platform);
        Ok(Value::str(""))
    }

    /// The records of a VM that just started as platform guest `id`.
    fn mark_running(&mut self, vm: &str, id: VmId, paused: bool, platform: &mut dyn Platform) {
        let state = if paused { "Paused" } else { "Running" };
        self.next_domid += 1;
        let (console, console_uuid) = new_id(platform);
        let mut fields = default_record(&CONSOLE, &console_uuid);
        let location = match self.facts.management.address {
            Some(([a, b, c, d], _)) => format!("http://{a}.{b}.{c}.{d}/console?ref={console}"),
            None => format!("/console?ref={console}"),
        };
        for (name, value) in [
            ("protocol", Value::str("vt100")),
            ("location", Value::String(location)),
            ("VM", Value::str(vm)),
        ] {
            if let Some(slot) = CONSOLE.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&CONSOLE, console.clone(), fields);
        self.running.insert(
            vm.to_string(),
            Running {
                id,
                restarts: 0,
                paused,
                console: console.clone(),
            },
        );
        self.update_resident_vms();
        let host = self.refs.host.clone();
        self.set_vm(vm, "power_state", Value::str(state));
        self.set_vm(vm, "resident_on", Value::String(host));
        self.set_vm(vm, "domid", Value::Int(self.next_domid));
        self.set_vm(
            vm,
            "consoles",
            Value::Array(alloc::vec![Value::String(console)]),
        );
        self.set_vm(vm, "allowed_operations", allowed_operations(state, false));
        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
        let vcpus = self.vm_int(vm, "VCPUs_at_startup");
        let memory = self.vm_int(vm, "memory_static_max");
        self.set_metrics(vm, "start_time", now.clone());
        self.set_metrics(vm, "last_updated", now);
        self.set_metrics(vm, "VCPUs_number", Value::Int(vcpus));
        self.set_metrics(vm, "memory_actual", Value::Int(memory));
        self.set_metrics(
            vm,
            "state",
            Value::Array(alloc::vec![Value::str(&state.to_lowercase())]),
        );
    }

    /// The records of a VM that is off now.
    fn mark_halted(&mut self, vm: &str, platform: &dyn Platform) {
        // Its disks' VBDs are detached; requests still queued fail.
        self.detach_vm_disks(vm);
        self.unplug_vm_nics(vm);
        if let Some(r) = self.running.remove(vm) {
            self.db.remove(&CONSOLE, &r.console);
            self.update_resident_vms();
        }
        self.set_vm(vm, "power_state", Value::str("Halted"));
        self.set_vm(vm, "resident_on", Value::str(NULL_REF));
        self.set_vm(vm, "domid", Value::Int(-1));
        self.set_vm(vm, "consoles", Value::Array(Vec::new()));
        let template = self.is_template(vm);
        self.set_vm(
            vm,
            "allowed_operations",
            allowed_operations("Halted", template),
        );
        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
        self.set_metrics(vm, "last_updated", now);
        self.set_metrics(vm, "VCPUs_number", Value::Int(0));
        self.set_metrics(vm, "memory_actual", Value::Int(0));
        self.set_metrics(vm, "state", Value::Array(Vec::new()));
    }

    fn running_id(&self, vm: &str, expected: &str) -> Result<VmId, ApiError> {
        let state = self.vm_str(vm, "power_state");
        match self.running.get(vm) {
            Some(r) if expected.split(", ").any(|s| s.eq_ignore_ascii_case(&state)) => Ok(r.id),
            _ => Err(bad_power_state(vm, expected, &state)),
        }
    }

    /// `VM.clean_shutdown`, `hard_shutdown`, `hard_reboot`, `clean_reboot`,
    /// `pause`, `unpause`.
    pub(super) fn vm_power(&mut self, op: &str, vm: &str, platform: &mut dyn Platform) -> Power {
        let result = match op {
            "clean_shutdown" => self.running_id(vm, "running").and_then(|id| {
                if platform.vm_power_button(id) {
                    Ok(())
                } else {
                    Err(bad_power_state(vm, "running", "halted"))
                }
            }),
            "hard_shutdown" | "hard_reboot" => self.running_id(vm, "running, paused").map(|id| {
                platform.vm_hard_stop(id);
            }),
            "clean_reboot" => {
                // A reboot the guest does itself needs a guest agent; the
                // emulated board has no "reboot" button.
                return Power::Done(
                    self.running_id(vm, "running")
                        .and_then(|_| Err(ApiError::new("VM_LACKS_FEATURE", &[vm]))),
                );
            }
            "pause" | "unpause" => {
                let (from, to, pause) = if op == "pause" {
                    ("running", "Paused", true)
                } else {
                    ("paused", "Running", false)
                };
                return Power::Done(self.running_id(vm, from).and_then(|id| {
                    if !platform.vm_set_paused(id, pause) {
                        return Err(bad_power_state(vm, from, "halted"));
                    }
                    if let Some(r) = self.running.get_mut(vm) {
                        r.paused = pause;
                    }
                    self.set_vm(vm, "power_state", Value::str(to));
                    self.set_vm(vm, "allowed_operations", allowed_operations(to, false));
                    self.set_metrics(
                        vm,
                        "state",
                        Value::Array(alloc::vec![Value::str(&to.to_lowercase())]),
                    );
                    Ok(Value::str(""))
                }));
            }
            _ => return Power::Done(Err(ApiError::not_implemented(&format!("VM.{op}")))),
        };
        match (result, op) {
            (Err(e), _) => Power::Done(Err(e)),
            (Ok(()), "clean_shutdown") => {
                Power::Wait(vm.to_string(), WaitFor::Halt, CLEAN_SHUTDOWN_TIMEOUT)
            }
            (Ok(()), "hard_reboot") => {
                Power::Wait(vm.to_string(), WaitFor::Restart, HARD_STOP_TIMEOUT)
            }
            (Ok(()), _) => Power::Wait(vm.to_string(), WaitFor::Halt, HARD_STOP_TIMEOUT),
        }
    }

    pub(super) fn queue_vm_wait(
        &mut self,
        vm: String,
        kind: WaitFor,
        timeout: Duration,
        ticket: Option<(u64, Wire)>,
        task: Option<String>,
        now: Duration,
    ) {
        self.vm_waits.push(VmWait {
            vm,
            kind,
            deadline: now + timeout,
            ticket,
            task,
            timeout,
        });
    }

    /// Follows the guests: records change with what they do (powered off,
    /// reset, crashed), and power calls waiting for a VM to be off are
    /// answered. The first call also marks VMs that cannot be running
    /// (the host just booted) halted and adds the built-in templates.
    pub fn poll_vms(&mut self, platform: &mut dyn Platform) {
        if !self.vms_checked {
            self.vms_checked = true;
            let stale: Vec<String> = self
                .db
                .objects(VM.name)
                .map(|(r, _)| r.clone())
                .filter(|r| {
                    !self.running.contains_key(r) && self.vm_str(r, "power_state") != "Halted"
                })
                .collect();
            for vm in stale {
                log::info!("xenapi: VM {vm} was not running after boot: Halted");
                self.mark_halted(&vm, platform);
            }
            self.ensure_templates(platform);
            self.plan_auto_poweron();
        }
        if !self.autostart.is_empty() {
            self.auto_poweron(platform);
        }
        let vms: Vec<(String, VmId, u32)> = self
            .running
            .iter()
            .map(|(vm, r)| (vm.clone(), r.id, r.restarts))
            .collect();
        for (vm, id, restarts) in vms {
            match platform.vm_status(id) {
                Some(VmStatus::Running {
                    restarts: now_restarts,
                    ..
                }) => {
                    if now_restarts != restarts
                        && self.vm_str(&vm, "actions_after_reboot") == "destroy"
                    {
                        // The guest reset itself and the VM says a reboot ends it.
                        log::info!(
                            "xenapi: VM {vm} rebooted; actions_after_reboot=destroy: Halted"
                        );
                        platform.vm_hard_stop(id);
                        if let Some(r) = self.running.get_mut(&vm) {
                            r.restarts = now_restarts;
                        }
                    } else if now_restarts != restarts {
                        // The guest reset itself: a new domain, as xapi shows a reboot.
                        if let Some(r) = self.running.get_mut(&vm) {
                            r.restarts = now_restarts;
                        }
                        self.next_domid += 1;
                        self.set_vm(&vm, "domid", Value::Int(self.next_domid));
                        let now = Value::DateTime(format_datetime(self.unix_now(platform)));
                        self.set_metrics(&vm, "start_time", now);
                    }
                }
                Some(VmStatus::Crashed(why)) => {
                    self.mark_halted(&vm, platform);
                    self.after_crash(&vm, &why, platform);
                }
                Some(VmStatus::Halted) | None => {
                    log::info!("xenapi: VM {vm} is off: Halted");
                    self.mark_halted(&vm, platform);
                }
            }
        }
        let now = platform.now();
        let mut i = 0;
        while i < self.vm_waits.len() {
            let off = !self.running.contains_key(&self.vm_waits[i].vm);
            let late = now >= self.vm_waits[i].deadline;
            if !off && !late {
                i += 1;
                continue;
            }
            let wait = self.vm_waits.remove(i);
            let answer = match (off, wait.kind) {
                (true, WaitFor::Halt) => Ok(Value::str("")),
                (true, WaitFor::Restart) => self.vm_start(&wait.vm, false, platform),
                (false, _) => Err(ApiError::new(
                    "VM_SHUTDOWN_TIMEOUT",
                    &[&wait.vm, &wait.timeout.as_secs().to_string()],
                )),
            };
            if let Some(task) = &wait.task {
                self.finish_task(task, &answer, platform);
            }
            if let Some((ticket, wire)) = wait.ticket {
                self.storage_answers
                    .insert(ticket, respond(&wire, &answer, false));
            }
        }
        if let Err(e) = self.persist() {
            log::error!("db: VM changes could not be saved: {e}");
        }
    }

    /// When a waiting power call times out next.
    /// What `actions_after_crash` asks for once a crashed guest is off:
    /// the `*restart` actions start the VM again, unless it crashed
    /// [`CRASH_LOOP_LIMIT`] times within [`CRASH_LOOP_WINDOW`] (then it
    /// stays off, as a guest that cannot boot would only burn the host's
    /// CPU); the others leave it `Halted` (there is no crash dump or
    /// preserved domain here).
    fn after_crash(&mut self, vm: &str, why: &str, platform: &mut dyn Platform) {
        let action = self.vm_str(vm, "actions_after_crash");
        if !action.ends_with("restart") {
            log::warn!("xenapi: VM {vm} crashed: {why}; actions_after_crash={action}: Halted");
            return;
        }
        let now = platform.now();
        let recent = self.crashes.entry(vm.to_string()).or_default();
        recent.retain(|t| now.saturating_sub(*t) < CRASH_LOOP_WINDOW);
        recent.push(now);
        if recent.len() > CRASH_LOOP_LIMIT {
            log::warn!(
                "xenapi: VM {vm} crashed: {why}; {} crashes within {} s: not restarted, Halted",
                recent.len(),
                CRASH_LOOP_WINDOW.as_secs()
            );
            self.crashes.remove(vm);
            return;
        }
        log::warn!("xenapi: VM {vm} crashed: {why}; actions_after_crash={action}: restarting");
        if let Err(e) = self.vm_start(vm, false, platform) {
            log::warn!("xenapi: VM {vm} could not be restarted after its crash: {e:?}");
        }
    }

    pub(super) fn vm_deadline(&self) -> Option<Duration> {
        self.vm_waits.iter().map(|w| w.deadline).min()
    }

    /// The platform guest behind a running VM's console object.
    pub fn console_guest(&self, console: &str) -> Option<VmId> {
        self.running
            .values()
            .find(|r| r.console == console)
            .map(|r| r.id)
    }
}
