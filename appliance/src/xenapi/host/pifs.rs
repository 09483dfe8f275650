//! The host's PIFs, bonds, VLANs and their networks, kept in line with the
//! network layout: one PIF per physical NIC, a bond master PIF and a Bond
//! per bond, a VLAN PIF, a VLAN and a network per tagged network. Objects
//! found again (same host, device and VLAN) keep their references and
//! uuids; those the layout no longer has are removed.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{HostFacts, HostRefs, dotted, get, mac_text, map, netmask, set};
use crate::xenapi::db::{Db, NULL_REF, default_record};
use crate::xenapi::layout::MANAGEMENT;
use crate::xenapi::schema::{BOND, Class, HOST, NETWORK, PIF, VLAN};
use crate::xenapi::value::Value;

/// What one PIF (and its network) should say.
#[derive(Debug)]
struct PifSpec {
    device: String,
    /// The VLAN tag, -1 for none.
    vlan: i64,
    physical: bool,
    mac: String,
    mtu: i64,
    management: bool,
    attached: bool,
    /// How a PIF other than management is addressed: mode and address.
    ip: (&'static str, Option<([u8; 4], u8)>),
    network_label: String,
    bridge: String,
}

const DEFAULT_MTU: u16 = 1500;

fn mtu(m: u16) -> i64 {
    i64::from(if m == 0 { DEFAULT_MTU } else { m })
}

/// The PIFs the layout calls for: physical NICs, then bonds, then VLANs.
fn specs(facts: &HostFacts) -> Vec<PifSpec> {
    let layout = &facts.networks;
    let m = &facts.management;
    let attached = m.address.is_some();
    let uplink_mtu = layout
        .vlans
        .iter()
        .map(|v| mtu(v.mtu))
        .chain([mtu(layout.management_mtu)])
        .max()
        .unwrap_or(i64::from(DEFAULT_MTU));
    let mut nics: Vec<(String, Option<[u8; 6]>, bool)> = layout
        .nics
        .iter()
        .map(|n| (n.device.clone(), n.mac, n.in_use))
        .collect();
    if nics.is_empty() {
        nics.push((m.device.clone(), m.mac, true));
    }
    let untagged_management = layout.management_vlan.is_none();
    let is_management = |device: &str| untagged_management && device == m.device;
    let nic_mac = |device: &str| -> String {
        nics.iter()
            .find(|(d, ..)| d == device)
            .and_then(|(_, mac, _)| *mac)
            .map(mac_text)
            .unwrap_or_default()
    };
    // The management PIF shows the management interface's MAC.
    let mac_of = |device: &str, fallback: &str| -> String {
        match m.mac {
            Some(mac) if is_management(device) => mac_text(mac),
            _ => nic_mac(fallback),
        }
    };
    let none = ("None", None);
    let mut out = Vec::new();
    for (i, (device, _, in_use)) in nics.iter().enumerate() {
        let management = is_management(device);
        out.push(PifSpec {
            device: device.clone(),
            vlan: -1,
            physical: true,
            mac: mac_of(device, device),
            mtu: if *in_use {
                uplink_mtu
            } else {
                i64::from(DEFAULT_MTU)
            },
            management,
            attached: if management { attached } else { *in_use },
            ip: none,
            network_label: format!("Pool-wide network associated with {device}"),
            bridge: format!("xenbr{i}"),
        });
    }
    let mut bridges = 0..;
    for bond in &layout.bonds {
        let management = is_management(&bond.device);
        let primary = bond.members.first().map(String::as_str).unwrap_or("");
        out.push(PifSpec {
            device: bond.device.clone(),
            vlan: -1,
            physical: false,
            mac: mac_of(&bond.device, primary),
            mtu: uplink_mtu,
            management,
            attached: if management { attached } else { true },
            ip: none,
            network_label: format!("Pool-wide network associated with {}", bond.device),
            bridge: format!("xapi{}", bridges.next().unwrap_or(0)),
        });
    }
    for vlan in &layout.vlans {
        let management = vlan.name == MANAGEMENT && layout.management_vlan == Some(vlan.tag);
        let mac = out
            .iter()
            .find(|s| s.device == vlan.device && s.vlan == -1)
            .map(|s| s.mac.clone())
            .unwrap_or_default();
        out.push(PifSpec {
            device: vlan.device.clone(),
            vlan: i64::from(vlan.tag),
            physical: false,
            mac,
            mtu: mtu(vlan.mtu),
            management,
            attached: if management { attached } else { true },
            ip: (if vlan.dhcp { "DHCP" } else { "Static" }, vlan.address),
            network_label: vlan.name.clone(),
            bridge: format!("xapi{}", bridges.next().unwrap_or(0)),
        });
    }
    out
}

fn field_str(db: &Db, class: &'static Class, reference: &str, field: &str) -> String {
    get(db, class, reference, field)
        .as_ref()
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_default()
}

/// Whether `pif` was made through the API: the untagged PIF of a VLAN, or
/// the master PIF of a bond.
fn made_by_api(db: &Db, pif: &str) -> bool {
    let (key, value) = crate::xenapi::API_ORIGIN;
    match get(db, &PIF, pif, "other_config") {
        Some(Value::Struct(m)) => m.get(key).and_then(Value::as_str) == Some(value),
        _ => false,
    }
}

fn ref_set(values: &[&String]) -> Value {
    Value::Array(values.iter().map(|r| Value::String((*r).clone())).collect())
}

/// Makes the PIF, Bond, VLAN and network objects match `facts`; points
/// `refs.pif`/`refs.network` at the management PIF and its network.
pub(super) fn reconcile(
    db: &mut Db,
    refs: &mut HostRefs,
    facts: &HostFacts,
    new_id: &mut dyn FnMut() -> (String, String),
) {
    let specs = specs(facts);
    // This host's PIFs by (device, VLAN).
    let mut existing: BTreeMap<(String, i64), String> = BTreeMap::new();
    for (reference, _) in db.objects(PIF.name) {
        if field_str(db, &PIF, reference, "host") == refs.host {
            let device = field_str(db, &PIF, reference, "device");
            let vlan = get(db, &PIF, reference, "VLAN")
                .and_then(|v| v.as_int())
                .unwrap_or(-1);
            existing.insert((device, vlan), reference.clone());
        }
    }
    let mut pifs: Vec<String> = Vec::new();
    for spec in &specs {
        let key = (spec.device.clone(), spec.vlan);
        let pif = match existing.remove(&key) {
            Some(pif) => pif,
            None => {
                let (pif, uuid) = new_id();
                db.insert(&PIF, pif.clone(), default_record(&PIF, &uuid));
                set(db, &PIF, &pif, "host", Value::String(refs.host.clone()));
                pif
            }
        };
        let mut network = field_str(db, &PIF, &pif, "network");
        if !db.contains(NETWORK.name, &network) {
            let (reference, uuid) = new_id();
            db.insert(&NETWORK, reference.clone(), default_record(&NETWORK, &uuid));
            set(db, &PIF, &pif, "network", Value::String(reference.clone()));
            network = reference;
        }
        let net =
            |db: &mut Db, field: &str, value: Value| set(db, &NETWORK, &network, field, value);
        // A bond made through the API is on the network its caller made
        // (named and bridged by them).
        if !made_by_api(db, &pif) {
            net(db, "bridge", Value::String(spec.bridge.clone()));
            net(db, "name_label", Value::String(spec.network_label.clone()));
        }
        net(db, "PIFs", Value::Array(vec![Value::String(pif.clone())]));
        net(db, "MTU", Value::Int(spec.mtu));
        let field = |db: &mut Db, field: &str, value: Value| set(db, &PIF, &pif, field, value);
        field(db, "device", Value::String(spec.device.clone()));
        field(db, "VLAN", Value::Int(spec.vlan));
        field(db, "physical", Value::Bool(spec.physical));
        field(db, "MAC", Value::String(spec.mac.clone()));
        field(db, "MTU", Value::Int(spec.mtu));
        field(db, "management", Value::Bool(spec.management));
        field(db, "currently_attached", Value::Bool(spec.attached));
        if spec.management {
            refs.pif = pif.clone();
            refs.network = network;
        } else {
            // The management PIF's addressing is the host's (`update`).
            let (mode, address) = spec.ip;
            field(db, "ip_configuration_mode", Value::str(mode));
            let ip = address.map(|(ip, _)| dotted(ip)).unwrap_or_default();
            let mask = address
                .map(|(_, prefix)| dotted(netmask(prefix)))
                .unwrap_or_default();
            field(db, "IP", Value::String(ip));
            field(db, "netmask", Value::String(mask));
        }
        pifs.push(pif);
    }
    // VLANs made through the API on a PIF the layout still has are kept:
    // the layout knows only the host config's.
    let api_vlans: Vec<(String, String, String)> = db
        .objects(VLAN.name)
        .filter_map(|(r, _)| {
            let tagged = field_str(db, &VLAN, r, "tagged_PIF");
            let untagged = field_str(db, &VLAN, r, "untagged_PIF");
            (made_by_api(db, &untagged) && pifs.contains(&tagged))
                .then(|| (r.clone(), tagged, untagged))
        })
        .collect();
    existing.retain(|_, p| !api_vlans.iter().any(|(_, _, u)| u == p));
    let pif_of = |device: &str, vlan: i64| -> Option<&String> {
        specs
            .iter()
            .zip(&pifs)
            .find(|(s, _)| s.device == device && s.vlan == vlan)
            .map(|(_, p)| p)
    };

    // Bonds and VLANs, and the PIF fields that point at them.
    let mut master_of: BTreeMap<&String, Vec<Value>> = BTreeMap::new();
    let mut slave_of: BTreeMap<&String, Value> = BTreeMap::new();
    let mut vlan_master_of: BTreeMap<&String, Value> = BTreeMap::new();
    let mut vlan_slave_of: BTreeMap<&String, Vec<Value>> = BTreeMap::new();
    let mut bonds: Vec<String> = Vec::new();
    for bond in &facts.networks.bonds {
        let Some(master) = pif_of(&bond.device, -1) else {
            continue;
        };
        let slaves: Vec<&String> = bond.members.iter().filter_map(|m| pif_of(m, -1)).collect();
        let found = db
            .objects(BOND.name)
            .find(|(r, _)| field_str(db, &BOND, r, "master") == *master)
            .map(|(r, _)| r.clone());
        let reference = found.unwrap_or_else(|| {
            let (reference, uuid) = new_id();
            db.insert(&BOND, reference.clone(), default_record(&BOND, &uuid));
            reference
        });
        let field =
            |db: &mut Db, field: &str, value: Value| set(db, &BOND, &reference, field, value);
        field(db, "master", Value::String(master.clone()));
        field(db, "slaves", ref_set(&slaves));
        let primary = slaves
            .first()
            .map_or(String::from(NULL_REF), |p| (*p).clone());
        field(db, "primary_slave", Value::String(primary));
        field(db, "mode", Value::str(bond.mode));
        let properties: Vec<(&str, String)> = bond
            .properties
            .iter()
            .map(|(k, v)| (*k, String::from(*v)))
            .collect();
        field(db, "properties", map(&properties));
        field(db, "links_up", Value::Int(i64::from(bond.links_up)));
        master_of
            .entry(master)
            .or_default()
            .push(Value::String(reference.clone()));
        for slave in slaves {
            slave_of.insert(slave, Value::String(reference.clone()));
        }
        bonds.push(reference);
    }
    let mut vlans: Vec<String> = Vec::new();
    for vlan in &facts.networks.vlans {
        let tag = i64::from(vlan.tag);
        let (Some(tagged), Some(untagged)) = (pif_of(&vlan.device, -1), pif_of(&vlan.device, tag))
        else {
            continue;
        };
        let found = db
            .objects(VLAN.name)
            .find(|(r, _)| field_str(db, &VLAN, r, "untagged_PIF") == *untagged)
            .map(|(r, _)| r.clone());
        let reference = found.unwrap_or_else(|| {
            let (reference, uuid) = new_id();
            db.insert(&VLAN, reference.clone(), default_record(&VLAN, &uuid));
            reference
        });
        let field =
            |db: &mut Db, field: &str, value: Value| set(db, &VLAN, &reference, field, value);
        field(db, "tagged_PIF", Value::String(tagged.clone()));
        field(db, "untagged_PIF", Value::String(untagged.clone()));
        field(db, "tag", Value::Int(tag));
        vlan_master_of.insert(untagged, Value::String(reference.clone()));
        vlan_slave_of
            .entry(tagged)
            .or_default()
            .push(Value::String(reference.clone()));
        vlans.push(reference);
    }
    for (vlan, tagged, _) in &api_vlans {
        if let Some(tagged) = pifs.iter().find(|p| *p == tagged) {
            vlan_slave_of
                .entry(tagged)
                .or_default()
                .push(Value::String(vlan.clone()));
        }
        vlans.push(vlan.clone());
    }
    for pif in &pifs {
        let null = || Value::str(NULL_REF);
        let master = Value::Array(master_of.remove(pif).unwrap_or_default());
        let slave = slave_of.remove(pif).unwrap_or_else(null);
        let vlan_master = vlan_master_of.remove(pif).unwrap_or_else(null);
        let vlan_slave = Value::Array(vlan_slave_of.remove(pif).unwrap_or_default());
        set(db, &PIF, pif, "bond_master_of", master);
        set(db, &PIF, pif, "bond_slave_of", slave);
        set(db, &PIF, pif, "VLAN_master_of", vlan_master);
        set(db, &PIF, pif, "VLAN_slave_of", vlan_slave);
    }

    // What the layout no longer has: PIFs left in `existing`, the bonds and
    // VLANs built on them, and networks nothing else uses.
    let stale = |db: &Db, class: &'static Class, field: &str, kept: &[String]| -> Vec<String> {
        db.objects(class.name)
            .map(|(r, _)| r.clone())
            .filter(|r| {
                !kept.contains(r)
                    && existing
                        .values()
                        .any(|p| *p == field_str(db, class, r, field))
            })
            .collect()
    };
    for bond in stale(db, &BOND, "master", &bonds) {
        db.remove(&BOND, &bond);
    }
    for vlan in stale(db, &VLAN, "untagged_PIF", &vlans) {
        db.remove(&VLAN, &vlan);
    }
    for pif in existing.into_values() {
        let network = field_str(db, &PIF, &pif, "network");
        db.remove(&PIF, &pif);
        let unused =
            matches!(get(db, &NETWORK, &network, "VIFs"), Some(Value::Array(v)) if v.is_empty());
        if unused {
            db.remove(&NETWORK, &network);
        } else if let Some(Value::Array(mut others)) = get(db, &NETWORK, &network, "PIFs") {
            others.retain(|p| p.as_str() != Some(pif.as_str()));
            set(db, &NETWORK, &network, "PIFs", Value::Array(others));
        }
    }

    let listed: Vec<&String> = pifs
        .iter()
        .chain(api_vlans.iter().map(|(_, _, untagged)| untagged))
        .collect();
    set(db, &HOST, &refs.host, "PIFs", ref_set(&listed));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::SystemInfo;
    use crate::xenapi::host::{ManagementFacts, create, update};
    use crate::xenapi::layout::{BondFacts, NetworkLayout, NicFacts, VlanFacts};

    fn ids() -> impl FnMut() -> (String, String) {
        let mut n = 0u32;
        move || {
            n += 1;
            (format!("OpaqueRef:{n}"), format!("uuid-{n}"))
        }
    }

    fn facts(networks: NetworkLayout) -> HostFacts {
        HostFacts {
            hostname: String::from("h"),
            system: SystemInfo {
                cpus: 1,
                memory_total: 1 << 30,
                memory_free: 1 << 29,
            },
            management: ManagementFacts {
                device: String::from("eth0"),
                mac: Some([2, 0, 0, 0, 0, 1]),
                dhcp: false,
                address: Some(([192, 0, 2, 10], 24)),
                gateway: None,
                dns: Vec::new(),
            },
            networks,
            boot: None,
        }
    }

    fn nic(i: u8, in_use: bool) -> NicFacts {
        NicFacts {
            device: format!("eth{i}"),
            mac: Some([2, 0, 0, 0, 1, i]),
            in_use,
        }
    }

    fn text(db: &Db, class: &'static Class, r: &str, f: &str) -> String {
        field_str(db, class, r, f)
    }

    fn bonded() -> NetworkLayout {
        NetworkLayout {
            nics: vec![nic(0, true), nic(1, true), nic(2, false)],
            bonds: vec![BondFacts {
                device: String::from("bond0"),
                members: vec![String::from("eth0"), String::from("eth1")],
                mode: "active-backup",
                properties: Vec::new(),
                links_up: 2,
            }],
            vlans: vec![VlanFacts {
                name: String::from("storage"),
                device: String::from("bond0"),
                tag: 20,
                mtu: 9000,
                dhcp: false,
                address: Some(([198, 51, 100, 10], 24)),
            }],
            management_vlan: None,
            management_mtu: 1500,
        }
    }

    #[test]
    fn one_nic_is_one_pif_on_xenbr0() {
        let mut db = Db::new();
        let refs = create(&mut db, &facts(NetworkLayout::default()), ids());
        assert_eq!(db.count("PIF"), 1);
        assert_eq!(db.count("network"), 1);
        assert_eq!(db.count("Bond") + db.count("VLAN"), 0);
        assert_eq!(text(&db, &PIF, &refs.pif, "device"), "eth0");
        assert_eq!(text(&db, &PIF, &refs.pif, "MAC"), "02:00:00:00:00:01");
        assert_eq!(text(&db, &PIF, &refs.pif, "network"), refs.network);
        assert_eq!(
            get(&db, &PIF, &refs.pif, "management"),
            Some(Value::Bool(true))
        );
        assert_eq!(text(&db, &NETWORK, &refs.network, "bridge"), "xenbr0");
        assert_eq!(
            text(&db, &NETWORK, &refs.network, "name_label"),
            "Pool-wide network associated with eth0"
        );
        assert_eq!(text(&db, &PIF, &refs.pif, "IP"), "192.0.2.10");
    }

    #[test]
    fn a_bond_and_a_vlan_and_back_to_one_nic() {
        let mut db = Db::new();
        let mut new_id = ids();
        let mut f = facts(bonded());
        f.management.device = String::from("bond0");
        let mut refs = create(&mut db, &f, &mut new_id);
        assert_eq!(db.count("PIF"), 5);
        assert_eq!(db.count("network"), 5);
        assert_eq!(text(&db, &PIF, &refs.pif, "device"), "bond0");
        assert_eq!(
            get(&db, &PIF, &refs.pif, "physical"),
            Some(Value::Bool(false))
        );
        assert_eq!(get(&db, &PIF, &refs.pif, "MTU"), Some(Value::Int(9000)));
        let (bond, _) = db.objects("Bond").next().unwrap();
        let bond = bond.clone();
        assert_eq!(text(&db, &BOND, &bond, "master"), refs.pif);
        assert_eq!(text(&db, &BOND, &bond, "mode"), "active-backup");
        assert_eq!(get(&db, &BOND, &bond, "links_up"), Some(Value::Int(2)));
        let (vlan, _) = db.objects("VLAN").next().unwrap();
        let vlan = vlan.clone();
        assert_eq!(text(&db, &VLAN, &vlan, "tagged_PIF"), refs.pif);
        let untagged = text(&db, &VLAN, &vlan, "untagged_PIF");
        assert_eq!(text(&db, &PIF, &untagged, "VLAN_master_of"), vlan);
        assert_eq!(text(&db, &PIF, &untagged, "IP"), "198.51.100.10");
        assert_eq!(
            get(&db, &PIF, &refs.pif, "VLAN_slave_of"),
            Some(Value::Array(vec![Value::String(vlan.clone())]))
        );

        // Same layout again: nothing changes.
        let generation = db.generation();
        update(&mut db, &mut refs, &f, &mut new_id);
        assert_eq!(db.generation(), generation);

        // Back to eth0 alone: the bond, the VLAN and their PIFs and networks go.
        let eth0 = db
            .objects("PIF")
            .find(|(r, _)| text(&db, &PIF, r, "device") == "eth0")
            .map(|(r, _)| r.clone())
            .unwrap();
        let f = facts(NetworkLayout {
            nics: vec![nic(0, true), nic(1, false), nic(2, false)],
            ..NetworkLayout::default()
        });
        update(&mut db, &mut refs, &f, &mut new_id);
        assert_eq!(db.count("Bond") + db.count("VLAN"), 0);
        assert_eq!(db.count("PIF"), 3);
        assert_eq!(db.count("network"), 3);
        assert_eq!(refs.pif, eth0, "eth0 keeps its PIF");
        assert_eq!(get(&db, &PIF, &eth0, "management"), Some(Value::Bool(true)));
        assert_eq!(text(&db, &PIF, &eth0, "bond_slave_of"), NULL_REF);
    }
}
