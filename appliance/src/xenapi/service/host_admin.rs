//! Maintenance of the host: `host.disable` / `enable` (a disabled host
//! starts no VM), `host.evacuate` (this host is a pool of one: running VMs
//! have nowhere to go) and `host.shutdown` (only when disabled and idle,
//! as xapi requires).

use alloc::string::String;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::HOST;
use crate::xenapi::value::Value;

impl XenApi {
    fn host_enabled(&self) -> bool {
        let host = &self.refs.host;
        HOST.field("enabled")
            .and_then(|(i, _)| self.db.get(&HOST, host).map(|o| o.field(i).clone()))
            != Some(Value::Bool(false))
    }

    /// `HOST_DISABLED` while the host is disabled (`VM.start`).
    pub(super) fn check_host_enabled(&self) -> Result<(), ApiError> {
        match self.host_enabled() {
            true => Ok(()),
            false => Err(ApiError::new("HOST_DISABLED", &[&self.refs.host])),
        }
    }

    pub(super) fn host_set_enabled(
        &mut self,
        host: &str,
        enabled: bool,
    ) -> Result<Value, ApiError> {
        if let Some((i, _)) = HOST.field("enabled") {
            self.db.set_field(&HOST, host, i, Value::Bool(enabled));
        }
        log::info!(
            "host: {} through the API",
            if enabled { "enabled" } else { "disabled" }
        );
        Ok(Value::str(""))
    }

    /// At boot the host comes up enabled, as xapi's does.
    pub(super) fn enable_host_at_boot(&mut self) {
        let host = self.refs.host.clone();
        if !self.host_enabled() {
            log::info!("host: it was disabled before the restart; enabled again");
        }
        if let Some((i, _)) = HOST.field("enabled") {
            self.db.set_field(&HOST, &host, i, Value::Bool(true));
        }
    }

    /// The first VM running here, if any.
    fn a_running_vm(&self) -> Option<String> {
        self.running.keys().next().cloned()
    }

    /// `host.evacuate`: migrates the running VMs to other hosts of the
    /// pool; this pool has no other host, so with VMs running it fails as
    /// xapi does when no host can take them, and without any it is done.
    pub(super) fn host_evacuate(&mut self, _host: &str) -> Result<Value, ApiError> {
        match self.a_running_vm() {
            Some(_) => Err(ApiError::new("NO_HOSTS_AVAILABLE", &[])),
            None => Ok(Value::str("")),
        }
    }

    /// `host.shutdown`: powers the machine off; it must be disabled and run
    /// no VM (`HOST_NOT_DISABLED`, `HOST_IN_USE`), as xapi asks.
    pub(super) fn host_shutdown(
        &mut self,
        host: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        if self.host_enabled() {
            return Err(ApiError::new("HOST_NOT_DISABLED", &[]));
        }
        if let Some(vm) = self.a_running_vm() {
            return Err(ApiError::new("HOST_IN_USE", &[host, "vm", &vm]));
        }
        platform
            .shutdown()
            .map(|()| Value::str(""))
            .map_err(|e| ApiError::new("NOT_IMPLEMENTED", &["host.shutdown", &e]))
    }
}
