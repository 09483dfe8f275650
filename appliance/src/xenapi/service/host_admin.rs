//! Maintenance of the host: `host.disable` / `enable` (a disabled host
//! starts no VM), `host.evacuate` (this host is a pool of one: running VMs
//! have nowhere to go) and `host.shutdown` (only when disabled and idle,
//! as xapi requires).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::HOST;
use crate::xenapi::value::Value;

/// The state store's record of a host disabled with `auto_enable` false.
const STAYS_DISABLED_KEY: &str = "keel/host_stays_disabled";

impl XenApi {
    fn host_enabled(&self) -> bool {
        self.field(&HOST, &self.refs.host, "enabled") != Value::Bool(false)
    }

    /// `HOST_DISABLED` while the host is disabled (`VM.start`).
    pub(super) fn check_host_enabled(&self) -> Result<(), ApiError> {
        match self.host_enabled() {
            true => Ok(()),
            false => Err(ApiError::new("HOST_DISABLED", &[&self.refs.host])),
        }
    }

    /// `host.enable`, and `host.disable(host, auto_enable)`: with
    /// `auto_enable` false the host stays disabled across restarts until
    /// `host.enable`.
    pub(super) fn host_set_enabled(
        &mut self,
        host: &str,
        enabled: bool,
        auto_enable: bool,
    ) -> Result<Value, ApiError> {
        let stays = !enabled && !auto_enable;
        let record = stays.then(|| Vec::from(&b"1"[..]));
        self.save_internal(STAYS_DISABLED_KEY, record, "the host's state")?;
        self.set(&HOST, host, "enabled", Value::Bool(enabled));
        log::info!(
            "host: {} through the API{}",
            if enabled { "enabled" } else { "disabled" },
            if stays { " (until host.enable)" } else { "" }
        );
        Ok(Value::str(""))
    }

    /// At boot the host comes up enabled, as xapi's does, unless it was
    /// disabled with `auto_enable` false.
    pub(super) fn enable_host_at_boot(&mut self, internal: &BTreeMap<String, Vec<u8>>) {
        let host = self.refs.host.clone();
        let stays = internal.contains_key(STAYS_DISABLED_KEY);
        match (self.host_enabled(), stays) {
            (_, true) => log::info!("host: disabled until host.enable"),
            (false, false) => log::info!("host: it was disabled before the restart; enabled again"),
            (true, false) => {}
        }
        self.set(&HOST, &host, "enabled", Value::Bool(!stays));
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
