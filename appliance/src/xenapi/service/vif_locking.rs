//! VIF locking through the XenAPI: `VIF.set_locking_mode`, the
//! `ipv4_allowed`/`ipv6_allowed` setters, `network.set_default_locking_mode`,
//! and the [`VifPolicy`] the switch enforces for each plugged VIF.
//!
//! A VIF's effective mode is its `locking_mode`, or its network's
//! `default_locking_mode` for `network_default`. It is computed when the
//! VIF is plugged ([`XenApi::vif_policy`]) and after every change, which
//! reaches a plugged VIF at once as a [`NetRequest::SetVifPolicy`].
//! Addresses are single IPv4/IPv6 addresses (no prefixes), kept in their
//! canonical text; anything else is `INVALID_VALUE`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use netstack::switch::VifPolicy;

use super::XenApi;
use super::guest_net::NetRequest;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{NETWORK, VIF};
use crate::xenapi::value::Value;

/// Which of a VIF's allowed-address sets a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn field(self) -> &'static str {
        match self {
            IpFamily::V4 => "ipv4_allowed",
            IpFamily::V6 => "ipv6_allowed",
        }
    }

    /// The canonical text of `text` as an address of this family.
    fn canonical(self, text: &str) -> Result<String, ApiError> {
        let parsed = match self {
            IpFamily::V4 => text.parse::<Ipv4Addr>().map(|a| a.to_string()),
            IpFamily::V6 => text.parse::<Ipv6Addr>().map(|a| a.to_string()),
        };
        parsed.map_err(|_| ApiError::invalid_value(self.field(), text))
    }
}

/// `set_`, `add_` or `remove_` of an allowed-address set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedChange {
    Set,
    Add,
    Remove,
}

/// The addresses of `value` (a set of strings), canonical and without
/// repeats; `INVALID_VALUE` for the first that is not one of `family`.
pub(super) fn allowed_set(family: IpFamily, value: &Value) -> Result<Vec<Value>, ApiError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Nil => &[],
        _ => return Err(ApiError::field_type(family.field())),
    };
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        let text = item
            .as_str()
            .ok_or_else(|| ApiError::field_type(family.field()))?;
        let canonical = Value::String(family.canonical(text)?);
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

impl XenApi {
    /// The policy the switch applies to `vif` now.
    pub(super) fn vif_policy(&self, vif: &str) -> VifPolicy {
        let mut mode = self.field(&VIF, vif, "locking_mode");
        if mode.as_str() == Some("network_default") {
            let network = self.field(&VIF, vif, "network");
            mode = self.field(
                &NETWORK,
                network.as_str().unwrap_or(""),
                "default_locking_mode",
            );
        }
        match mode.as_str() {
            Some("unlocked") => VifPolicy::Unlocked,
            Some("locked") => {
                let addresses = |field: &str| match self.field(&VIF, vif, field) {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                };
                VifPolicy::Locked {
                    ipv4: addresses("ipv4_allowed")
                        .iter()
                        .filter_map(|a| a.as_str()?.parse().ok())
                        .collect(),
                    ipv6: addresses("ipv6_allowed")
                        .iter()
                        .filter_map(|a| a.as_str()?.parse().ok())
                        .collect(),
                }
            }
            // `disabled`, and anything unreadable: pass nothing rather
            // than everything.
            _ => VifPolicy::Disabled,
        }
    }

    /// Queues `vif`'s policy for the switch if it is plugged.
    pub(super) fn apply_vif_policy(&mut self, vif: &str) {
        if self.field(&VIF, vif, "currently_attached") == Value::Bool(true) {
            let policy = self.vif_policy(vif);
            self.net_requests.push(NetRequest::SetVifPolicy {
                vif: String::from(vif),
                policy,
            });
        }
    }

    /// `VIF.set_locking_mode(self, value)` (the value checked by dispatch).
    pub(super) fn vif_set_locking_mode(
        &mut self,
        vif: &str,
        mode: &str,
    ) -> Result<Value, ApiError> {
        self.set(&VIF, vif, "locking_mode", Value::str(mode));
        self.apply_vif_policy(vif);
        Ok(Value::str(""))
    }

    /// `VIF.set_/add_/remove_ipv4_allowed` and the `ipv6` ones.
    pub(super) fn vif_change_allowed(
        &mut self,
        vif: &str,
        family: IpFamily,
        change: AllowedChange,
        value: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let value = value.unwrap_or(&Value::Nil);
        let field = family.field();
        let mut current = match self.field(&VIF, vif, field) {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        match change {
            AllowedChange::Set => current = allowed_set(family, value)?,
            AllowedChange::Add | AllowedChange::Remove => {
                let text = value
                    .as_str()
                    .ok_or_else(|| ApiError::field_type("value"))?;
                let address = Value::String(family.canonical(text)?);
                if change == AllowedChange::Add {
                    if !current.contains(&address) {
                        current.push(address);
                    }
                } else {
                    current.retain(|a| *a != address);
                }
            }
        }
        self.set(&VIF, vif, field, Value::Array(current));
        self.apply_vif_policy(vif);
        Ok(Value::str(""))
    }

    /// `network.set_default_locking_mode(network, value)`: every plugged
    /// VIF of the network in `network_default` mode follows at once.
    pub(super) fn network_set_default_locking_mode(
        &mut self,
        network: &str,
        mode: &str,
    ) -> Result<Value, ApiError> {
        self.set(&NETWORK, network, "default_locking_mode", Value::str(mode));
        for vif in self.refs_in(&NETWORK, network, "VIFs") {
            if self.field(&VIF, &vif, "locking_mode").as_str() == Some("network_default") {
                self.apply_vif_policy(&vif);
            }
        }
        Ok(Value::str(""))
    }
}
