//! `Bond.create`, `Bond.destroy`, `Bond.set_mode` and `Bond.set_property`
//! on the running host.
//!
//! The switch has one uplink, the one carrying management: a bond made
//! through the API must take the management NIC in, and that uplink becomes
//! the bond (management, the host networks and guest VLANs on it stay up).
//! As in xapi, the bond's master PIF (`bond<N>`) joins the network given,
//! the members get `bond_slave_of`, management and its addressing move to
//! the master, and VLANs made through the API on a member move to it.
//!
//! The change of uplink is queued as [`NetRequest::SetUplink`] for the
//! appliance's poll loop. The master PIF is marked like an API VLAN's
//! ([`API_ORIGIN`]): at boot, once the database is loaded, the bond it
//! describes replaces the host config's single-NIC uplink again
//! ([`XenApi::restore_bond`]). Bonds of the host config are left alone.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use host_config::{Bond as BondSpec, BondHashing, BondMode, LacpRate};

use super::guest_net::{API_ORIGIN, NetRequest, parse_mac};
use super::{XenApi, new_id};
use crate::platform::Platform;
use crate::xenapi::db::{NULL_REF, default_record};
use crate::xenapi::error::ApiError;
use crate::xenapi::layout;
use crate::xenapi::schema::{BOND, HOST, NETWORK, PIF, VLAN};
use crate::xenapi::value::Value;

/// Most members a bond takes (netstack's and XenServer's limit).
const MAX_MEMBERS: usize = netstack::bond::MAX_MEMBERS;

/// What the management uplink is to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkSpec {
    /// The NIC `eth<N>` alone.
    Nic(String),
    /// A bond of NICs.
    Bond(BondSpec),
}

fn unsupported(what: &str, value: &str, why: &str) -> ApiError {
    ApiError::new("VALUE_NOT_SUPPORTED", &[what, value, why])
}

fn parse_mode(mode: &str) -> Result<BondMode, ApiError> {
    match mode {
        "lacp" => Ok(BondMode::Lacp),
        "active-backup" => Ok(BondMode::ActiveBackup),
        "balance-slb" => Ok(BondMode::BalanceSlb),
        other => Err(ApiError::invalid_value("mode", other)),
    }
}

/// Applies xapi's bond property `name` = `value` to `spec`. Properties
/// this host does not know are ignored, as xapi ignores them.
fn apply_property(spec: &mut BondSpec, name: &str, value: &str) -> Result<(), ApiError> {
    match name {
        "hashing_algorithm" => {
            spec.hashing = match value {
                "src_mac" => BondHashing::SrcMac,
                "tcpudp_ports" if spec.mode != BondMode::BalanceSlb => BondHashing::TcpUdpPorts,
                _ => return Err(ApiError::invalid_value(name, value)),
            }
        }
        "lacp-time" => {
            spec.lacp_rate = match value {
                "fast" => LacpRate::Fast,
                "slow" => LacpRate::Slow,
                _ => return Err(ApiError::invalid_value(name, value)),
            }
        }
        "lacp-fallback-ab" => match value {
            "false" => {}
            "true" => {
                return Err(unsupported(
                    name,
                    value,
                    "an LACP bond here never falls back to active-backup: without a partner its members carry nothing",
                ));
            }
            _ => return Err(ApiError::invalid_value(name, value)),
        },
        other => log::info!("xenapi: bond property {other}={value} ignored"),
    }
    Ok(())
}

fn properties_of(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Struct(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), String::from(v))))
            .collect(),
        _ => Vec::new(),
    }
}

impl XenApi {
    /// The PIF device of `pif` and whether it is a physical, untagged NIC.
    fn nic_device(&self, pif: &str) -> Option<String> {
        let device = String::from(self.field(&PIF, pif, "device").as_str()?);
        let physical = self.field(&PIF, pif, "physical") == Value::Bool(true);
        let untagged = self.field(&PIF, pif, "VLAN").as_int() == Some(-1);
        (physical && untagged && device.starts_with("eth")).then_some(device)
    }

    /// Whether `bond` was made through the API (its master PIF says so).
    fn bond_made_by_api(&self, bond: &str) -> bool {
        let master = self.field(&BOND, bond, "master");
        master.as_str().is_some_and(|m| self.made_by_api(m))
    }

    /// `OPERATION_NOT_ALLOWED` unless `bond` was made through the API: the
    /// host config's bonds change with the host config (`verb`: what the
    /// caller wanted to do).
    fn check_bond_made_by_api(&self, bond: &str, verb: &str) -> Result<(), ApiError> {
        if self.bond_made_by_api(bond) {
            return Ok(());
        }
        Err(ApiError::new(
            "OPERATION_NOT_ALLOWED",
            &[&format!(
                "this bond comes from the host config; change the host config to {verb} it"
            )],
        ))
    }

    /// What the Bond record `bond` describes, primary member first.
    fn bond_spec(&self, bond: &str) -> Option<BondSpec> {
        let master = String::from(self.field(&BOND, bond, "master").as_str()?);
        let name = String::from(self.field(&PIF, &master, "device").as_str()?);
        let primary = String::from(self.field(&BOND, bond, "primary_slave").as_str()?);
        let mut slaves = self.refs_in(&BOND, bond, "slaves");
        slaves.sort_by_key(|s| *s != primary);
        let members: Vec<String> = slaves
            .iter()
            .filter_map(|s| self.field(&PIF, s, "device").as_str().map(String::from))
            .collect();
        let mode = parse_mode(self.field(&BOND, bond, "mode").as_str()?).ok()?;
        let mut spec = BondSpec::new(&name, &[], mode);
        spec.members = members;
        let properties = self.field(&BOND, bond, "properties");
        for (k, v) in properties_of(Some(&properties)) {
            apply_property(&mut spec, &k, &v).ok()?;
        }
        Some(spec)
    }

    /// The management uplink becomes `spec` in the host objects (the
    /// appliance changes the switch with the queued request).
    fn show_uplink(&mut self, spec: &UplinkSpec, platform: &mut dyn Platform) {
        let mut facts = self.facts.clone();
        let (layout, device) = (&mut facts.networks, &mut facts.management.device);
        match spec {
            UplinkSpec::Bond(bond) => layout::bond_uplink(layout, device, bond),
            UplinkSpec::Nic(nic) => layout::unbond_uplink(layout, device, nic),
        }
        self.update_facts(facts, platform);
    }

    /// Moves the VLANs made through the API from PIF `from` to PIF `to`
    /// (their untagged PIFs take `to`'s device).
    fn move_api_vlans(&mut self, from: &str, to: &str) {
        let device = self.field(&PIF, to, "device");
        for vlan in self.refs_in(&PIF, from, "VLAN_slave_of") {
            let untagged = self.text(&VLAN, &vlan, "untagged_PIF");
            if !self.made_by_api(&untagged) {
                continue;
            }
            self.set(&VLAN, &vlan, "tagged_PIF", Value::str(to));
            self.set(&PIF, &untagged, "device", device.clone());
            self.remove_from_set(&PIF, from, "VLAN_slave_of", &vlan);
            self.add_to_set(&PIF, to, "VLAN_slave_of", &vlan);
        }
    }

    /// Moves the VIFs on network `from` to network `to` (xapi moves the
    /// members' VIFs onto the bond's network and back). A plugged VIF keeps
    /// its switch port: both networks are the management one, before and after.
    fn move_vifs(&mut self, from: &str, to: &str) {
        if from == to {
            return;
        }
        for vif in self.refs_in(&NETWORK, from, "VIFs") {
            self.relink_vif(&vif, from, to);
            // A `network_default` VIF follows its new network's default.
            self.apply_vif_policy(&vif);
        }
    }

    /// `Bond.create(network, members, MAC, mode, properties)`.
    pub(super) fn bond_create(
        &mut self,
        network: &str,
        members: Option<&Value>,
        mac: &str,
        mode: &str,
        properties: Option<&Value>,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        self.check_bond_members(members)?;
        let mode = parse_mode(mode)?;
        let members: Vec<String> = match members {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => return Err(ApiError::field_type("members")),
        };
        if members.len() > MAX_MEMBERS {
            return Err(unsupported(
                "members",
                &format!("{}", members.len()),
                &format!("a bond takes at most {MAX_MEMBERS} NICs"),
            ));
        }
        let mut devices = Vec::new();
        for (i, pif) in members.iter().enumerate() {
            if members[..i].contains(pif) {
                return Err(ApiError::invalid_value("members", pif));
            }
            if self.text(&PIF, pif, "host") != self.refs.host {
                return Err(ApiError::new("PIF_CANNOT_BOND_CROSS_HOST", &[]));
            }
            if self
                .field(&PIF, pif, "VLAN_master_of")
                .as_str()
                .is_some_and(|v| v != NULL_REF)
            {
                return Err(ApiError::new("PIF_IS_VLAN", &[pif]));
            }
            let Some(device) = self.nic_device(pif) else {
                return Err(unsupported(
                    "members",
                    pif,
                    "only physical NICs can be bonded",
                ));
            };
            devices.push(device);
        }
        // The NIC carrying management (its untagged PIF, also when the
        // management network is tagged on it).
        let uplink = self.facts.management.device.clone();
        let Some(primary) = devices.iter().position(|d| *d == uplink) else {
            return Err(unsupported(
                "members",
                &members.join(","),
                &format!(
                    "the switch has one uplink, the one carrying management ({}): a bond must take it in",
                    self.facts.management.device
                ),
            ));
        };
        // The management NIC is the primary member: the bond answers to its
        // MAC, so the host's addresses (and DHCP leases) stay.
        devices.swap(0, primary);
        let management = members[primary].clone();
        let own_mac = self.text(&PIF, &management, "MAC");
        if !mac.is_empty() {
            let asked = parse_mac(mac).ok_or_else(|| ApiError::new("MAC_INVALID", &[mac]))?;
            if parse_mac(&own_mac) != Some(asked) {
                return Err(unsupported(
                    "MAC",
                    mac,
                    &format!("the bond keeps the management NIC's MAC ({own_mac})"),
                ));
            }
        }
        if network == NULL_REF || !self.db.contains(NETWORK.name, network) {
            return Err(ApiError::handle_invalid("network", network));
        }
        if let Some(pif) = self.refs_in(&NETWORK, network, "PIFs").first() {
            return Err(ApiError::new("NETWORK_ALREADY_CONNECTED", &[network, pif]));
        }
        let name = self.free_name(&PIF, "device", "bond");
        let mut spec = BondSpec::new(&name, &[], mode);
        spec.members = devices;
        let given = properties_of(properties);
        for (k, v) in &given {
            apply_property(&mut spec, k, v)?;
        }
        if !self.live_network() {
            return Err(ApiError::not_implemented("Bond.create"));
        }

        // The master PIF on `network`; the host-object reconciliation fills
        // in the rest (its Bond, the members' fields, management).
        let (master, uuid) = new_id(platform);
        let mut fields = default_record(&PIF, &uuid);
        let other = Value::Struct(
            [(String::from(API_ORIGIN.0), Value::str(API_ORIGIN.1))]
                .into_iter()
                .collect(),
        );
        for (field, value) in [
            ("device", Value::str(&name)),
            ("host", Value::str(&self.refs.host)),
            ("network", Value::str(network)),
            ("physical", Value::Bool(false)),
            ("other_config", other),
        ] {
            if let Some(slot) = PIF.field(field).and_then(|(i, _)| fields.get_mut(i)) {
                *slot = value;
            }
        }
        self.db.insert(&PIF, master.clone(), fields);
        let uplink = UplinkSpec::Bond(spec.clone());
        self.show_uplink(&uplink, platform);
        self.move_api_vlans(&management, &master);
        for member in &members {
            let from = self.text(&PIF, member, "network");
            self.move_vifs(&from, network);
        }
        let bond = self
            .db
            .objects(BOND.name)
            .find(|(r, _)| self.text(&BOND, r, "master") == master)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| ApiError::internal("the bond's record was not made"))?;
        self.net_requests.push(NetRequest::SetUplink(uplink));
        log::info!(
            "xenapi: {name} of {} ({}) on network {network}",
            spec.members.join(", "),
            layout::mode_name(spec.mode)
        );
        Ok(Value::String(bond))
    }

    /// `Bond.destroy(self)`: a bond made through the API; management goes
    /// back to its primary member.
    pub(super) fn bond_destroy(
        &mut self,
        bond: &str,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        self.check_bond_made_by_api(bond, "remove")?;
        let master = self.text(&BOND, bond, "master");
        let primary = self.text(&BOND, bond, "primary_slave");
        let Some(nic) = self.nic_device(&primary) else {
            return Err(ApiError::internal("the bond's primary member is not a NIC"));
        };
        self.move_api_vlans(&master, &primary);
        let network = self.text(&PIF, &master, "network");
        let back = self.text(&PIF, &primary, "network");
        self.move_vifs(&network, &back);
        self.remove_from_set(&NETWORK, &network, "PIFs", &master);
        let host = self.refs.host.clone();
        self.remove_from_set(&HOST, &host, "PIFs", &master);
        self.db.remove(&BOND, bond);
        self.db.remove(&PIF, &master);
        let uplink = UplinkSpec::Nic(nic.clone());
        self.show_uplink(&uplink, platform);
        self.net_requests.push(NetRequest::SetUplink(uplink));
        log::info!("xenapi: bond {bond} destroyed, management back on {nic}");
        Ok(Value::str(""))
    }

    /// `Bond.set_mode(self, value)` and `Bond.set_property(self, name,
    /// value)`: the record changes and the bond is made again that way.
    pub(super) fn bond_change(
        &mut self,
        bond: &str,
        mode: Option<&str>,
        property: Option<(&str, &str)>,
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        self.check_bond_made_by_api(bond, "change")?;
        let mut spec = self
            .bond_spec(bond)
            .ok_or_else(|| ApiError::internal("the bond's record cannot be read"))?;
        if let Some(mode) = mode {
            spec.mode = parse_mode(mode)?;
            if spec.mode == BondMode::BalanceSlb {
                spec.hashing = BondHashing::SrcMac;
            }
        }
        if let Some((name, value)) = property {
            apply_property(&mut spec, name, value)?;
        }
        let uplink = UplinkSpec::Bond(spec.clone());
        self.show_uplink(&uplink, platform);
        self.net_requests.push(NetRequest::SetUplink(uplink));
        log::info!(
            "xenapi: {} is now {} {:?}",
            spec.name,
            layout::mode_name(spec.mode),
            layout::properties(&spec)
        );
        Ok(Value::str(""))
    }

    /// At boot, once the database is loaded: the bond made through the API
    /// replaces the host config's uplink again. Before the host objects are
    /// brought up to date, so that they keep the bond.
    pub(super) fn restore_bond(&mut self) {
        if !self.live_network() {
            return;
        }
        let bonds: Vec<String> = self.db.objects(BOND.name).map(|(r, _)| r.clone()).collect();
        let Some(spec) = bonds
            .iter()
            .filter(|b| self.bond_made_by_api(b))
            .find_map(|b| self.bond_spec(b))
        else {
            return;
        };
        let management = self.facts.management.device.clone();
        if !spec.members.contains(&management) {
            log::error!(
                "net: {} from Bond.create does not take in the management NIC {management} any more: not made",
                spec.name
            );
            return;
        }
        log::info!(
            "net: {} of {} from Bond.create made again",
            spec.name,
            spec.members.join(", ")
        );
        let (layout, device) = (&mut self.facts.networks, &mut self.facts.management.device);
        layout::bond_uplink(layout, device, &spec);
        self.net_requests
            .insert(0, NetRequest::SetUplink(UplinkSpec::Bond(spec)));
    }
}
