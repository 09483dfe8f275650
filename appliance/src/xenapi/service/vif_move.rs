//! `VIF.move(self, network)`: a VIF changes network. A halted VM's VIF is
//! plugged into the new network at its next start; a running VM's is
//! moved on the switch at once ([`NetRequest::MoveVif`]): the guest keeps
//! its NIC (no hot-plug needed) and its link now reaches the new network,
//! as xapi's unplug and plug of the VIF does.

use alloc::string::String;

use super::XenApi;
use super::guest_net::{NetRequest, parse_mac};
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{NETWORK, VIF, VM};
use crate::xenapi::value::Value;

impl XenApi {
    /// VIF `vif` moves from network `from` to `to` in the records: its
    /// `network` and both networks' `VIFs`.
    pub(super) fn relink_vif(&mut self, vif: &str, from: &str, to: &str) {
        self.set(&VIF, vif, "network", Value::str(to));
        self.remove_from_set(&NETWORK, from, "VIFs", vif);
        self.add_to_set(&NETWORK, to, "VIFs", vif);
    }

    pub(super) fn vif_move(&mut self, vif: &str, network: &str) -> Result<Value, ApiError> {
        if !self.db.contains(VIF.name, vif) {
            return Err(ApiError::handle_invalid("VIF", vif));
        }
        if !self.db.contains(NETWORK.name, network) {
            return Err(ApiError::handle_invalid("network", network));
        }
        let from = self.text(&VIF, vif, "network");
        if from == network {
            return Ok(Value::str(""));
        }
        let vm = self.text(&VIF, vif, "VM");
        let plugged = self.field(&VIF, vif, "currently_attached") == Value::Bool(true);
        // A running VM's VIF must land on a network the switch carries.
        let target = match plugged {
            true => Some(self.vif_target(&vm, network)?),
            false => None,
        };
        self.relink_vif(vif, &from, network);
        if let Some(target) = target {
            let mac_text = self.text(&VIF, vif, "MAC");
            let mac =
                parse_mac(&mac_text).ok_or_else(|| ApiError::new("MAC_INVALID", &[&mac_text]))?;
            let policy = self.vif_policy(vif);
            self.net_requests.push(NetRequest::MoveVif {
                vif: String::from(vif),
                vm: self.text(&VM, &vm, "name_label"),
                target,
                mac,
                policy,
            });
        }
        Ok(Value::str(""))
    }
}
