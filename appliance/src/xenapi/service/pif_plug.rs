//! `PIF.plug` and `PIF.unplug`. What this host can take down and bring
//! back at run time is a guest VLAN made through the API: unplugging its
//! PIF stops the uplink carrying the VLAN (no VM may have a VIF on it
//! plugged), plugging carries it again; the state is kept across reboots.
//! The management PIF is refused as xapi refuses it; the host config's own
//! interfaces (a storage VLAN) change with the host config, a bond's
//! members with the bond;
//! a spare NIC cannot be brought up on its own, as the switch has one
//! uplink.

use alloc::string::String;

use super::XenApi;
use super::guest_net::NetRequest;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{NETWORK, PIF, VIF};
use crate::xenapi::value::Value;

impl XenApi {
    fn pif_attached(&self, pif: &str) -> bool {
        self.field(&PIF, pif, "currently_attached") == Value::Bool(true)
    }

    /// The tag and MTU of `pif` if it is a guest VLAN made through the API.
    fn api_vlan(&self, pif: &str) -> Option<(u16, u16)> {
        if !self.made_by_api(pif) || self.field(&PIF, pif, "physical") != Value::Bool(false) {
            return None;
        }
        let tag = self.field(&PIF, pif, "VLAN").as_int()?;
        let mtu = self.field(&PIF, pif, "MTU").as_int().unwrap_or(1500);
        Some((u16::try_from(tag).ok()?, u16::try_from(mtu).ok()?))
    }

    fn not_changeable(pif: &str, why: &str) -> ApiError {
        ApiError::new("OPERATION_NOT_ALLOWED", &[&alloc::format!("{pif}: {why}")])
    }

    pub(super) fn pif_unplug(&mut self, pif: &str) -> Result<Value, ApiError> {
        if self.field(&PIF, pif, "management") == Value::Bool(true) {
            return Err(ApiError::new("PIF_IS_MANAGEMENT_INTERFACE", &[pif]));
        }
        if self.field(&PIF, pif, "disallow_unplug") == Value::Bool(true) {
            return Err(ApiError::new("PIF_DOES_NOT_ALLOW_UNPLUG", &[pif]));
        }
        if !self.pif_attached(pif) {
            return Ok(Value::str(""));
        }
        let Some((tag, _)) = self.api_vlan(pif) else {
            return Err(Self::not_changeable(
                pif,
                "only a guest VLAN made through the API is unplugged at run time here (the host config's interfaces change with the host config, a bond's with the bond)",
            ));
        };
        let network = self.text(&PIF, pif, "network");
        let in_use = self
            .refs_in(&NETWORK, &network, "VIFs")
            .iter()
            .any(|v| self.field(&VIF, v, "currently_attached") == Value::Bool(true));
        if in_use {
            return Err(Self::not_changeable(
                pif,
                "a running VM has a VIF on its network; stop it or move the VIF first",
            ));
        }
        self.set(&PIF, pif, "currently_attached", Value::Bool(false));
        self.net_requests.push(NetRequest::DropVlan { tag });
        log::info!("xenapi: PIF {pif} (VLAN {tag}) unplugged");
        Ok(Value::str(""))
    }

    pub(super) fn pif_plug(&mut self, pif: &str) -> Result<Value, ApiError> {
        if self.pif_attached(pif) {
            return Ok(Value::str(""));
        }
        let Some((tag, mtu)) = self.api_vlan(pif) else {
            let uplink = String::from(self.facts.management.device.as_str());
            return Err(ApiError::new(
                "VALUE_NOT_SUPPORTED",
                &[
                    "self",
                    pif,
                    &alloc::format!(
                        "this host carries networks only on its management uplink ({uplink})"
                    ),
                ],
            ));
        };
        self.set(&PIF, pif, "currently_attached", Value::Bool(true));
        self.net_requests.push(NetRequest::CarryVlan { tag, mtu });
        log::info!("xenapi: PIF {pif} (VLAN {tag}) plugged");
        Ok(Value::str(""))
    }
}
