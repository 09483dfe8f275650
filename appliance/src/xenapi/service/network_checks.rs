//! What xapi checks before it makes a bond or a VLAN, done here too: a
//! request xapi would refuse is refused with xapi's error first (see
//! `bonds` and `guest_net` for what follows).

use alloc::format;
use alloc::string::String;

use super::XenApi;
use crate::xenapi::db::NULL_REF;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{PIF, VLAN};
use crate::xenapi::value::Value;

/// Highest VLAN tag xapi accepts.
const MAX_TAG: i64 = 4094;

impl XenApi {
    fn pif_field(&self, pif: &str, field: &str) -> Value {
        let Some((index, _)) = PIF.field(field) else {
            return Value::Nil;
        };
        self.db
            .get(&PIF, pif)
            .map_or(Value::Nil, |o| o.field(index).clone())
    }

    /// `Bond.create`'s members: at least two, none already in a bond
    /// (`PIF_BOND_NEEDS_MORE_MEMBERS`, `PIF_ALREADY_BONDED [pif]`).
    pub(super) fn check_bond_members(&self, members: Option<&Value>) -> Result<(), ApiError> {
        let Some(Value::Array(members)) = members else {
            return Err(ApiError::field_type("members"));
        };
        if members.len() < 2 {
            return Err(ApiError::new("PIF_BOND_NEEDS_MORE_MEMBERS", &[]));
        }
        for pif in members.iter().filter_map(Value::as_str) {
            let bonded = self.pif_field(pif, "bond_slave_of");
            if bonded.as_str().is_some_and(|b| b != NULL_REF) {
                return Err(ApiError::new("PIF_ALREADY_BONDED", &[pif]));
            }
        }
        Ok(())
    }

    /// A VLAN `tag` on `pif`: a tag in 0..=4094 (`VLAN_TAG_INVALID [tag]`),
    /// on a PIF that is not itself a VLAN (`PIF_IS_VLAN [pif]`) and has no
    /// VLAN with that tag yet (`PIF_VLAN_EXISTS [device]`).
    pub(super) fn check_vlan(&self, pif: &str, tag: i64) -> Result<(), ApiError> {
        if !(0..=MAX_TAG).contains(&tag) {
            return Err(ApiError::new("VLAN_TAG_INVALID", &[&format!("{tag}")]));
        }
        if self
            .pif_field(pif, "VLAN_master_of")
            .as_str()
            .is_some_and(|v| v != NULL_REF)
        {
            return Err(ApiError::new("PIF_IS_VLAN", &[pif]));
        }
        let Value::Array(vlans) = self.pif_field(pif, "VLAN_slave_of") else {
            return Ok(());
        };
        let tag_index = VLAN.field("tag").map_or(usize::MAX, |(i, _)| i);
        let exists = vlans
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| self.db.get(&VLAN, v))
            .any(|v| v.field(tag_index).as_int() == Some(tag));
        if exists {
            let device = self.pif_field(pif, "device");
            let device = device.as_str().map(String::from).unwrap_or_default();
            return Err(ApiError::new("PIF_VLAN_EXISTS", &[&device]));
        }
        Ok(())
    }
}
