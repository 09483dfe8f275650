//! Guest networking through the XenAPI: `network.create`/`destroy`,
//! `VLAN.create`/`pool.create_VLAN_from_PIF`/`VLAN.destroy` on the
//! management uplink, `VIF.create`/`destroy`/`plug`/`unplug`, and the NICs a
//! starting VM gets.
//!
//! The switch belongs to the appliance, not to this service: what must
//! change on it (a VLAN carried or dropped, a VIF plugged or unplugged) is
//! queued as a [`NetRequest`] for the appliance's poll loop, which applies it
//! right after the call (see [`XenApi::take_net_requests`]). Without such an
//! owner (hosted) VLAN changes answer `NOT_IMPLEMENTED`.
//!
//! A VLAN made through the API has an untagged PIF marked with
//! `other_config:keel_origin=api` ([`API_ORIGIN`]): the host-config
//! reconciliation keeps it across boots, and the first poll after boot
//! carries it on the switch again. VIFs are attached when their VM starts
//! and detached when it stops; hot-plug into a running guest is not
//! offered (the VIF is attached at the VM's next start, as XenServer does
//! for a guest without PV drivers).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use netstack::switch::{VifLink, VifPolicy};

use super::vif_locking::{IpFamily, allowed_set};
use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::{NULL_REF, default_record};
use crate::xenapi::dispatch::coerce;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{NETWORK, PIF, VIF, VLAN, VM};
use crate::xenapi::value::Value;

/// `other_config` key and value on the untagged PIF of a VLAN made through
/// the API (not from the host config).
pub const API_ORIGIN: (&str, &str) = ("keel_origin", "api");
/// The MTU range a network may have (the switch's).
const MTU_RANGE: core::ops::RangeInclusive<i64> = 68..=9000;
/// VIF devices a VM may have (`0`..`6`, as xapi offers an HVM guest).
pub(super) const MAX_VIF_DEVICE: u32 = 7;

/// Where a VIF is plugged on the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VifTarget {
    /// The management network (`management`) or a host network of the host
    /// config, by its interface name.
    HostNetwork(String),
    /// A guest VLAN carried on the uplink.
    Vlan(u16),
}

/// A change the switch's owner applies after the call that made it.
#[derive(Debug, Clone)]
pub enum NetRequest {
    /// Carry VLAN `tag` (with this MTU) on the uplink for guests.
    CarryVlan { tag: u16, mtu: u16 },
    /// Stop carrying it.
    DropVlan { tag: u16 },
    /// Plug VIF `vif` of the VM named `vm` in: the switch side of `link`,
    /// locked to `mac`, filtered by `policy` (its effective locking mode).
    PlugVif {
        vif: String,
        vm: String,
        target: VifTarget,
        mac: [u8; 6],
        link: VifLink,
        policy: VifPolicy,
    },
    /// The locking of plugged VIF `vif` changed: the switch applies
    /// `policy` from now on.
    SetVifPolicy { vif: String, policy: VifPolicy },
    /// Unplug VIF `vif` (its VM stopped).
    UnplugVif { vif: String },
    /// Plugged VIF `vif` of the VM named `vm` moves to `target` (`VIF.move`):
    /// its switch port goes, a new one on `target` takes the same link, MAC
    /// and `policy`. The guest's NIC stays as it is.
    MoveVif {
        vif: String,
        vm: String,
        target: VifTarget,
        mac: [u8; 6],
        policy: VifPolicy,
    },
    /// Make the management uplink this NIC or bond (see `bonds`).
    SetUplink(super::bonds::UplinkSpec),
}

/// A NIC a starting VM gets: the guest side of a VIF.
#[derive(Debug, Clone)]
pub struct VmNic {
    pub vif: String,
    pub mac: [u8; 6],
    /// What the guest's device announces.
    pub mtu: u16,
    pub link: VifLink,
    target: VifTarget,
}

/// `aa:bb:cc:dd:ee:ff` (either case) as bytes; a unicast address only.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && out[0] & 1 == 0 && out != [0; 6]).then_some(out)
}

fn mac_text(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn not_allowed(why: &str) -> ApiError {
    ApiError::new("OPERATION_NOT_ALLOWED", &[why])
}

impl XenApi {
    pub(super) fn text(
        &self,
        class: &'static crate::xenapi::schema::Class,
        r: &str,
        f: &str,
    ) -> String {
        String::from(self.field(class, r, f).as_str().unwrap_or(""))
    }

    pub(super) fn refs_in(
        &self,
        class: &'static crate::xenapi::schema::Class,
        r: &str,
        f: &str,
    ) -> Vec<String> {
        match self.field(class, r, f) {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first of `prefix0`, `prefix1`, ... that no `class` object has
    /// in `field` (xapi's `xapi<N>` bridges, `bond<N>` devices).
    pub(super) fn free_name(
        &self,
        class: &'static crate::xenapi::schema::Class,
        field: &str,
        prefix: &str,
    ) -> String {
        let taken: Vec<String> = self
            .db
            .objects(class.name)
            .map(|(r, _)| self.text(class, r, field))
            .collect();
        (0..)
            .map(|n| format!("{prefix}{n}"))
            .find(|name| !taken.contains(name))
            .unwrap_or_default()
    }

    /// Whether an owner applies [`NetRequest`]s (the image's appliance).
    pub(super) fn live_network(&self) -> bool {
        self.ip_changes.is_some()
    }

    /// Whether the untagged PIF of a VLAN was made through the API.
    pub(super) fn made_by_api(&self, pif: &str) -> bool {
        match self.field(&PIF, pif, "other_config") {
            Value::Struct(m) => m.get(API_ORIGIN.0).and_then(Value::as_str) == Some(API_ORIGIN.1),
            _ => false,
        }
    }

    /// The changes for the switch since the last call. The first call
    /// after boot also carries the VLANs made through the API before.
    pub fn take_net_requests(&mut self) -> Vec<NetRequest> {
        if !self.net_restored {
            self.net_restored = true;
            let vlans: Vec<(String, String)> = self
                .db
                .objects(VLAN.name)
                .map(|(r, _)| (r.clone(), self.text(&VLAN, r, "untagged_PIF")))
                .collect();
            let mut restored = Vec::new();
            for (vlan, untagged) in vlans {
                // An unplugged one (`PIF.unplug`) stays down.
                if !self.made_by_api(&untagged)
                    || self.field(&PIF, &untagged, "currently_attached") != Value::Bool(true)
                {
                    continue;
                }
                let tag = self.field(&VLAN, &vlan, "tag").as_int().unwrap_or(-1);
                let mtu = self.field(&PIF, &untagged, "MTU").as_int().unwrap_or(1500);
                if let (Ok(tag), Ok(mtu)) = (u16::try_from(tag), u16::try_from(mtu)) {
                    restored.push(NetRequest::CarryVlan { tag, mtu });
                }
            }
            // Before anything queued already: a VM started at boot
            // (auto_poweron) plugs its VIFs into these VLANs.
            restored.append(&mut self.net_requests);
            self.net_requests = restored;
        }
        core::mem::take(&mut self.net_requests)
    }

    /// `network.create(record)`: a network with no PIF yet (`VLAN.create`
    /// gives it one on the uplink).
    pub(super) fn network_create(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(given) = args else {
            return Err(ApiError::field_type("args"));
        };
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&NETWORK, &uuid);
        for name in [
            "name_label",
            "name_description",
            "MTU",
            "other_config",
            "tags",
        ] {
            let (Some(value), Some((i, field))) = (given.get(name), NETWORK.field(name)) else {
                continue;
            };
            if let Some(slot) = fields.get_mut(i) {
                *slot = coerce(value.clone(), &field.ty, field.name)?;
            }
        }
        let mtu = NETWORK
            .field("MTU")
            .and_then(|(i, _)| fields.get(i))
            .and_then(Value::as_int)
            .unwrap_or(1500);
        if !MTU_RANGE.contains(&mtu) {
            return Err(ApiError::invalid_value("MTU", &mtu.to_string()));
        }
        // A bridge name no other network has, as xapi's `xapi<N>`.
        let bridge = self.free_name(&NETWORK, "bridge", "xapi");
        if let Some(slot) = NETWORK.field("bridge").and_then(|(i, _)| fields.get_mut(i)) {
            *slot = Value::String(bridge);
        }
        self.db.insert(&NETWORK, reference.clone(), fields);
        Ok(Value::String(reference))
    }

    /// `network.destroy(self)`: only a network with no PIF and no VIF.
    pub(super) fn network_destroy(&mut self, network: &str) -> Result<Value, ApiError> {
        if network == self.refs.network {
            return Err(ApiError::new(
                "PIF_IS_MANAGEMENT_INTERFACE",
                &[&self.refs.pif.clone()],
            ));
        }
        let pifs = self.refs_in(&NETWORK, network, "PIFs");
        if !pifs.is_empty() {
            let pifs: Vec<&str> = pifs.iter().map(String::as_str).collect();
            return Err(ApiError::new("NETWORK_CONTAINS_PIF", &pifs));
        }
        let vifs = self.refs_in(&NETWORK, network, "VIFs");
        if !vifs.is_empty() {
            let vifs: Vec<&str> = vifs.iter().map(String::as_str).collect();
            return Err(ApiError::new("NETWORK_CONTAINS_VIF", &vifs));
        }
        self.db.remove(&NETWORK, network);
        Ok(Value::str(""))
    }

    /// `VLAN.create(tagged_PIF, tag, network)` and
    /// `pool.create_VLAN_from_PIF(pif, network, tag)`: the uplink trunks the
    /// VLAN from now on; returns the VLAN and its untagged PIF.
    pub(super) fn vlan_create(
        &mut self,
        tagged: &str,
        tag: i64,
        network: &str,
        platform: &mut dyn Platform,
    ) -> Result<(String, String), ApiError> {
        self.check_vlan(tagged, tag)?;
        let vid = u16::try_from(tag).ok().filter(|t| *t >= 1).ok_or_else(|| {
            ApiError::new(
                "VALUE_NOT_SUPPORTED",
                &[
                    "tag",
                    "0",
                    "VLAN 0 (priority tags only) cannot carry a network",
                ],
            )
        })?;
        if network == NULL_REF || !self.db.contains(NETWORK.name, network) {
            return Err(ApiError::handle_invalid("network", network));
        }
        if let Some(pif) = self.refs_in(&NETWORK, network, "PIFs").first() {
            return Err(ApiError::new("NETWORK_ALREADY_CONNECTED", &[network, pif]));
        }
        let uplink = self.facts.management.device.clone();
        if self.text(&PIF, tagged, "device") != uplink
            || self.field(&PIF, tagged, "VLAN").as_int() != Some(-1)
        {
            return Err(ApiError::new(
                "VALUE_NOT_SUPPORTED",
                &[
                    "tagged_PIF",
                    tagged,
                    &format!("only the management uplink ({uplink}) carries VLANs on this host"),
                ],
            ));
        }
        let mtu = self
            .field(&NETWORK, network, "MTU")
            .as_int()
            .unwrap_or(1500);
        let uplink_mtu = self.field(&PIF, tagged, "MTU").as_int().unwrap_or(1500);
        if mtu > uplink_mtu {
            return Err(ApiError::new(
                "VALUE_NOT_SUPPORTED",
                &[
                    "MTU",
                    &mtu.to_string(),
                    &format!("the network's MTU is above its uplink's ({uplink_mtu})"),
                ],
            ));
        }
        if !self.live_network() {
            return Err(ApiError::not_implemented("VLAN.create"));
        }
        let (pif, pif_uuid) = new_id(platform);
        let (vlan, vlan_uuid) = new_id(platform);
        let mut fields = default_record(&PIF, &pif_uuid);
        let other = Value::Struct(
            [(String::from(API_ORIGIN.0), Value::str(API_ORIGIN.1))]
                .into_iter()
                .collect(),
        );
        for (name, value) in [
            ("device", self.field(&PIF, tagged, "device")),
            ("host", self.field(&PIF, tagged, "host")),
            ("MAC", self.field(&PIF, tagged, "MAC")),
            ("network", Value::str(network)),
            ("VLAN", Value::Int(tag)),
            ("MTU", Value::Int(mtu)),
            ("physical", Value::Bool(false)),
            ("currently_attached", Value::Bool(true)),
            ("management", Value::Bool(false)),
            ("ip_configuration_mode", Value::str("None")),
            ("VLAN_master_of", Value::str(&vlan)),
            ("other_config", other),
        ] {
            if let Some(slot) = PIF.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&PIF, pif.clone(), fields);
        let mut fields = default_record(&VLAN, &vlan_uuid);
        for (name, value) in [
            ("tagged_PIF", Value::str(tagged)),
            ("untagged_PIF", Value::str(&pif)),
            ("tag", Value::Int(tag)),
        ] {
            if let Some(slot) = VLAN.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&VLAN, vlan.clone(), fields);
        self.add_to_set(&PIF, tagged, "VLAN_slave_of", &vlan);
        self.add_to_set(&NETWORK, network, "PIFs", &pif);
        let host = self.refs.host.clone();
        self.add_to_set(&crate::xenapi::schema::HOST, &host, "PIFs", &pif);
        self.net_requests.push(NetRequest::CarryVlan {
            tag: vid,
            mtu: u16::try_from(mtu).unwrap_or(1500),
        });
        log::info!("xenapi: VLAN {vid} on {uplink} for network {network}");
        Ok((vlan, pif))
    }

    /// `pool.create_VLAN(device, network, VLAN)`: [`Self::vlan_create`] on
    /// this host's physical PIF of `device`; answers the untagged PIF, as
    /// `pool.create_VLAN_from_PIF` does.
    pub(super) fn pool_create_vlan(
        &mut self,
        device: &str,
        tag: i64,
        network: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let host = self.refs.host.clone();
        let pif = self
            .refs_in(&crate::xenapi::schema::HOST, &host, "PIFs")
            .into_iter()
            .find(|p| {
                self.text(&PIF, p, "device") == device
                    && self.field(&PIF, p, "VLAN").as_int() == Some(-1)
            })
            .ok_or_else(|| ApiError::invalid_value("device", device))?;
        self.vlan_create(&pif, tag, network, platform)
            .map(|(_, pif)| Value::Array(alloc::vec![Value::String(pif)]))
    }

    /// `VLAN.destroy(self)`: a VLAN made through the API whose network has
    /// no VIF attached to a running VM.
    pub(super) fn vlan_destroy(&mut self, vlan: &str) -> Result<Value, ApiError> {
        let untagged = self.text(&VLAN, vlan, "untagged_PIF");
        if !self.made_by_api(&untagged) {
            return Err(not_allowed(
                "this VLAN comes from the host config; change the host config to remove it",
            ));
        }
        let network = self.text(&PIF, &untagged, "network");
        let attached = self
            .refs_in(&NETWORK, &network, "VIFs")
            .iter()
            .any(|v| self.field(&VIF, v, "currently_attached") == Value::Bool(true));
        if attached {
            return Err(not_allowed(
                "a running VM has a VIF on this VLAN's network; stop it first",
            ));
        }
        let tagged = self.text(&VLAN, vlan, "tagged_PIF");
        let tag = self.field(&VLAN, vlan, "tag").as_int().unwrap_or(-1);
        self.remove_from_set(&PIF, &tagged, "VLAN_slave_of", vlan);
        self.remove_from_set(&NETWORK, &network, "PIFs", &untagged);
        let host = self.refs.host.clone();
        self.remove_from_set(&crate::xenapi::schema::HOST, &host, "PIFs", &untagged);
        self.db.remove(&PIF, &untagged);
        self.db.remove(&VLAN, vlan);
        if let Ok(tag) = u16::try_from(tag) {
            self.net_requests.push(NetRequest::DropVlan { tag });
        }
        Ok(Value::str(""))
    }

    /// `VIF.create(record)`.
    pub(super) fn vif_create(
        &mut self,
        args: &Value,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        let Value::Struct(given) = args else {
            return Err(ApiError::field_type("args"));
        };
        let text = |name: &str| {
            given
                .get(name)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| ApiError::field_type(name))
        };
        let vm = text("VM")?;
        if !self.db.contains(VM.name, &vm) {
            return Err(ApiError::handle_invalid("VM", &vm));
        }
        let network = text("network")?;
        if !self.db.contains(NETWORK.name, &network) {
            return Err(ApiError::handle_invalid("network", &network));
        }
        let device = text("device")?;
        if !device.parse::<u32>().is_ok_and(|d| d < MAX_VIF_DEVICE) {
            return Err(ApiError::new("INVALID_DEVICE", &[&device]));
        }
        let taken = self
            .refs_in(&VM, &vm, "VIFs")
            .iter()
            .any(|v| self.text(&VIF, v, "device") == device);
        if taken {
            return Err(ApiError::new("DEVICE_ALREADY_EXISTS", &[&device]));
        }
        let asked = given.get("MAC").and_then(Value::as_str).unwrap_or("");
        let (mac, generated) = if asked.is_empty() {
            let mut bytes = [0u8; 3];
            platform.fill_random(&mut bytes);
            (
                [0x00, 0x16, 0x3e, bytes[0] & 0x7f, bytes[1], bytes[2]],
                true,
            )
        } else {
            (
                parse_mac(asked).ok_or_else(|| ApiError::new("MAC_INVALID", &[asked]))?,
                false,
            )
        };
        let mtu = match given.get("MTU") {
            Some(v) => coerce(v.clone(), &crate::xenapi::schema::Ty::Int, "MTU")?
                .as_int()
                .unwrap_or(1500),
            None => self
                .field(&NETWORK, &network, "MTU")
                .as_int()
                .unwrap_or(1500),
        };
        if !MTU_RANGE.contains(&mtu) {
            return Err(ApiError::invalid_value("MTU", &mtu.to_string()));
        }
        let mut allowed = Vec::new();
        for family in [IpFamily::V4, IpFamily::V6] {
            if let Some(value) = given.get(family.field()) {
                allowed.push((family.field(), allowed_set(family, value)?));
            }
        }
        let (reference, uuid) = new_id(platform);
        let mut fields = default_record(&VIF, &uuid);
        for name in [
            "other_config",
            "qos_algorithm_type",
            "qos_algorithm_params",
            "locking_mode",
        ] {
            let (Some(value), Some((i, field))) = (given.get(name), VIF.field(name)) else {
                continue;
            };
            if let Some(slot) = fields.get_mut(i) {
                *slot = coerce(value.clone(), &field.ty, field.name)?;
            }
        }
        for (name, value) in [
            ("VM", Value::str(&vm)),
            ("network", Value::str(&network)),
            ("device", Value::String(device)),
            ("MAC", Value::String(mac_text(mac))),
            ("MAC_autogenerated", Value::Bool(generated)),
            ("MTU", Value::Int(mtu)),
            ("currently_attached", Value::Bool(false)),
        ]
        .into_iter()
        .chain(allowed.into_iter().map(|(f, a)| (f, Value::Array(a))))
        {
            if let Some(slot) = VIF.field(name).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&VIF, reference.clone(), fields);
        self.add_to_set(&VM, &vm, "VIFs", &reference);
        self.add_to_set(&NETWORK, &network, "VIFs", &reference);
        Ok(Value::String(reference))
    }

    /// `VIF.destroy(self)`: not while attached to a running VM.
    pub(super) fn vif_destroy(&mut self, vif: &str) -> Result<Value, ApiError> {
        if self.field(&VIF, vif, "currently_attached") == Value::Bool(true) {
            return Err(not_allowed("the VIF is attached to a running VM"));
        }
        let vm = self.text(&VIF, vif, "VM");
        let network = self.text(&VIF, vif, "network");
        self.remove_from_set(&VM, &vm, "VIFs", vif);
        self.remove_from_set(&NETWORK, &network, "VIFs", vif);
        self.db.remove(&VIF, vif);
        Ok(Value::str(""))
    }

    /// Where `network` is on this host's switch.
    pub(super) fn vif_target(&self, vm: &str, network: &str) -> Result<VifTarget, ApiError> {
        if network == self.refs.network {
            return Ok(VifTarget::HostNetwork(String::from(
                crate::xenapi::MANAGEMENT_NETWORK,
            )));
        }
        let host = self.refs.host.as_str();
        let pif = self
            .refs_in(&NETWORK, network, "PIFs")
            .into_iter()
            .find(|p| self.text(&PIF, p, "host") == host);
        let tag = pif
            .as_deref()
            // An unplugged PIF carries nothing.
            .filter(|p| self.field(&PIF, p, "currently_attached") == Value::Bool(true))
            .and_then(|p| self.field(&PIF, p, "VLAN").as_int())
            .and_then(|t| u16::try_from(t).ok())
            .filter(|t| *t >= 1);
        match tag {
            Some(tag) => Ok(VifTarget::Vlan(tag)),
            // A network on another NIC, or with no PIF at all (a private
            // network): the switch carries neither yet.
            None => Err(ApiError::new("VM_REQUIRES_NETWORK", &[vm, network])),
        }
    }

    /// The NICs `vm` starts with: one per VIF, in device order. Nothing is
    /// plugged until [`XenApi::plug_vm_nics`].
    pub(super) fn vm_nics(&self, vm: &str) -> Result<Vec<VmNic>, ApiError> {
        let mut vifs = self.refs_in(&VM, vm, "VIFs");
        if vifs.is_empty() {
            return Ok(Vec::new());
        }
        if !self.live_network() {
            return Err(ApiError::not_implemented("VM.start with VIFs"));
        }
        vifs.sort_by_key(|v| {
            self.text(&VIF, v, "device")
                .parse::<u32>()
                .unwrap_or(u32::MAX)
        });
        vifs.into_iter()
            .map(|vif| {
                let network = self.text(&VIF, &vif, "network");
                let target = self.vif_target(vm, &network)?;
                let mac_text = self.text(&VIF, &vif, "MAC");
                let mac = parse_mac(&mac_text)
                    .ok_or_else(|| ApiError::new("MAC_INVALID", &[&mac_text]))?;
                let mtu = self.field(&VIF, &vif, "MTU").as_int().unwrap_or(1500);
                Ok(VmNic {
                    vif,
                    mac,
                    mtu: u16::try_from(mtu).unwrap_or(1500),
                    link: VifLink::new(),
                    target,
                })
            })
            .collect()
    }

    /// The VM started with `nics`: they are plugged into the switch.
    pub(super) fn plug_vm_nics(&mut self, vm: &str, nics: &[VmNic]) {
        let name = self.text(&VM, vm, "name_label");
        for nic in nics {
            self.set(&VIF, &nic.vif, "currently_attached", Value::Bool(true));
            self.net_requests.push(NetRequest::PlugVif {
                vif: nic.vif.clone(),
                vm: name.clone(),
                target: nic.target.clone(),
                mac: nic.mac,
                link: nic.link.clone(),
                policy: self.vif_policy(&nic.vif),
            });
        }
    }

    /// `vm` stopped: its attached VIFs are unplugged.
    pub(super) fn unplug_vm_nics(&mut self, vm: &str) {
        for vif in self.refs_in(&VM, vm, "VIFs") {
            if self.field(&VIF, &vif, "currently_attached") == Value::Bool(true) {
                self.set(&VIF, &vif, "currently_attached", Value::Bool(false));
                self.net_requests.push(NetRequest::UnplugVif { vif });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_as_xapi_writes_them() {
        assert_eq!(
            parse_mac("00:16:3e:0A:bb:01"),
            Some([0x00, 0x16, 0x3e, 0x0a, 0xbb, 0x01])
        );
        for bad in [
            "",
            "00:16:3e:0a:bb",
            "00:16:3e:0a:bb:01:02",
            "00-16-3e-0a-bb-01",
            "0:16:3e:0a:bb:01",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "zz:16:3e:0a:bb:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            mac_text([0, 0x16, 0x3e, 1, 0xab, 0xff]),
            "00:16:3e:01:ab:ff"
        );
    }
}
