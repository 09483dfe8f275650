//! Networks, VLANs and VIFs through the API, and the switch changes they
//! queue for the network owner.

use super::*;
use crate::xenapi::{NetRequest, VifTarget};
use serde_json::json;

pub(super) fn live() -> (XenApi, FakePlatform, String) {
    let (mut api, mut p) = service();
    p.hv = Some(FakeHv::default());
    api.enable_live_network();
    api.poll_vms(&mut p);
    let s = login(&mut api, &mut p);
    (api, p, s)
}

/// As [`live`], on `store` (a boot, again after a reboot).
fn live_on(store: &SharedStore) -> (XenApi, FakePlatform, String) {
    let (old, mut p) = service();
    p.hv = Some(FakeHv::default());
    let mut api = XenApi::new(&root_config(), old.facts().clone(), &mut p);
    api.enable_live_network();
    api.attach_store(Box::new(store.clone()), &mut p).unwrap();
    api.poll_vms(&mut p);
    let s = login(&mut api, &mut p);
    (api, p, s)
}

pub(super) fn network(api: &mut XenApi, p: &mut FakePlatform, s: &str, label: &str) -> String {
    let net = ok(
        api,
        p,
        "network.create",
        json!([s, {"name_label": label, "name_description": "", "MTU": "1500", "other_config": {}}]),
    );
    net.as_str().unwrap().to_string()
}

pub(super) fn management_pif(api: &mut XenApi, p: &mut FakePlatform, s: &str) -> String {
    let pifs = ok(api, p, "PIF.get_all_records", json!([s]));
    pifs.as_object()
        .unwrap()
        .iter()
        .find(|(_, r)| r["management"] == true)
        .map(|(k, _)| k.clone())
        .unwrap()
}

/// The network of the management PIF.
pub(super) fn management_network(api: &mut XenApi, p: &mut FakePlatform, s: &str) -> String {
    let pif = management_pif(api, p, s);
    ok(api, p, "PIF.get_network", json!([s, pif]))
        .as_str()
        .unwrap()
        .to_string()
}

pub(super) fn vm(api: &mut XenApi, p: &mut FakePlatform, s: &str, name: &str) -> String {
    let template = ok(
        api,
        p,
        "VM.get_by_name_label",
        json!([s, "Debian-style direct boot"]),
    )[0]
    .as_str()
    .unwrap()
    .to_string();
    let vm = ok(api, p, "VM.clone", json!([s, template, name]))
        .as_str()
        .unwrap()
        .to_string();
    ok(api, p, "VM.set_is_a_template", json!([s, vm, false]));
    ok(
        api,
        p,
        "VM.set_PV_kernel",
        json!([s, vm, "boot:debian/vmlinuz"]),
    );
    vm
}

pub(super) fn vif(net: &str, vm: &str, device: &str, mac: &str) -> serde_json::Value {
    json!({"device": device, "network": net, "VM": vm, "MAC": mac, "MTU": "1500",
           "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
}

#[test]
fn a_vlan_network_is_carried_and_a_vif_on_it_follows_its_vm() {
    let (mut api, mut p, s) = live();
    let (api, p) = (&mut api, &mut p);
    assert!(
        api.take_net_requests().is_empty(),
        "nothing made through the API yet"
    );
    let net = network(api, p, &s, "vlan30");
    let record = ok(api, p, "network.get_record", json!([s, net]));
    assert_eq!(record["MTU"], 1500);
    assert!(record["bridge"].as_str().unwrap().starts_with("xapi"));
    let pif = management_pif(api, p, &s);
    let created = ok(
        api,
        p,
        "pool.create_VLAN_from_PIF",
        json!([s, pif, net, "30"]),
    );
    let untagged = created[0].as_str().unwrap().to_string();
    let r = ok(api, p, "PIF.get_record", json!([s, untagged]));
    assert_eq!(
        (r["VLAN"].clone(), r["network"].clone(), r["device"].clone()),
        (json!(30), json!(net), json!("eth0"))
    );
    assert_eq!(r["other_config"]["keel_origin"], "api");
    let vlan = r["VLAN_master_of"].as_str().unwrap().to_string();
    assert_eq!(ok(api, p, "VLAN.get_tag", json!([s, vlan])), 30);
    assert_eq!(
        ok(api, p, "PIF.get_VLAN_slave_of", json!([s, pif])),
        json!([vlan])
    );
    assert_eq!(
        ok(api, p, "network.get_PIFs", json!([s, net])),
        json!([untagged])
    );
    assert!(matches!(
        api.take_net_requests().as_slice(),
        [NetRequest::CarryVlan { tag: 30, mtu: 1500 }]
    ));
    assert_eq!(
        err(api, p, "VLAN.create", json!([s, pif, "30", net]))[0],
        "PIF_VLAN_EXISTS"
    );
    let other = network(api, p, &s, "other");
    assert_eq!(
        err(api, p, "VLAN.create", json!([s, untagged, "31", other]))[0],
        "PIF_IS_VLAN"
    );
    assert_eq!(
        err(api, p, "VLAN.create", json!([s, pif, "4095", other]))[0],
        "VLAN_TAG_INVALID"
    );
    assert_eq!(
        err(api, p, "VLAN.create", json!([s, pif, "31", net]))[0],
        "NETWORK_ALREADY_CONNECTED"
    );
    assert_eq!(
        err(api, p, "network.destroy", json!([s, net]))[0],
        "NETWORK_CONTAINS_PIF"
    );

    // A host-facts update (a DHCP lease, say) keeps the API's VLAN.
    let mut facts = api.facts().clone();
    facts.management.address = Some(([192, 0, 2, 77], 24));
    api.update_facts(facts, p);
    assert_eq!(
        ok(api, p, "PIF.get_VLAN_slave_of", json!([s, pif])),
        json!([vlan])
    );
    assert_eq!(
        ok(api, p, "VLAN.get_untagged_PIF", json!([s, vlan])),
        json!(untagged)
    );

    let guest = vm(api, p, &s, "web");
    let v = ok(api, p, "VIF.create", json!([s, vif(&net, &guest, "0", "")]))
        .as_str()
        .unwrap()
        .to_string();
    let r = ok(api, p, "VIF.get_record", json!([s, v]));
    assert_eq!(r["MAC_autogenerated"], true);
    assert!(r["MAC"].as_str().unwrap().starts_with("00:16:3e:"));
    assert_eq!(r["currently_attached"], false);
    assert_eq!(ok(api, p, "VM.get_VIFs", json!([s, guest])), json!([v]));
    assert_eq!(ok(api, p, "network.get_VIFs", json!([s, net])), json!([v]));
    assert_eq!(
        err(api, p, "VIF.create", json!([s, vif(&net, &guest, "0", "")]))[0],
        "DEVICE_ALREADY_EXISTS"
    );
    assert_eq!(
        err(api, p, "VIF.create", json!([s, vif(&net, &guest, "9", "")]))[0],
        "INVALID_DEVICE"
    );
    assert_eq!(
        err(
            api,
            p,
            "VIF.create",
            json!([s, vif(&net, &guest, "1", "01:00:5e:00:00:01")])
        )[0],
        "MAC_INVALID"
    );
    assert_eq!(
        err(api, p, "VIF.plug", json!([s, v]))[0],
        "VM_BAD_POWER_STATE"
    );

    ok(api, p, "VM.start", json!([s, guest, false, false]));
    let mac = r["MAC"].as_str().unwrap().to_string();
    let started = &p.hv.as_ref().unwrap().guests.values().last().unwrap().0;
    assert_eq!(started.nics.len(), 1);
    assert_eq!(
        crate::xenapi::service::guest_net::parse_mac(&mac),
        Some(started.nics[0].mac)
    );
    match api.take_net_requests().as_slice() {
        [
            NetRequest::PlugVif {
                vif,
                target: VifTarget::Vlan(30),
                mac: m,
                ..
            },
        ] => {
            assert_eq!(vif, &v);
            assert_eq!(*m, started.nics[0].mac);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(api, p, "VIF.get_currently_attached", json!([s, v])),
        true
    );
    assert_eq!(
        err(api, p, "VIF.destroy", json!([s, v]))[0],
        "OPERATION_NOT_ALLOWED"
    );
    for call in ["VIF.unplug", "VIF.unplug_force"] {
        assert_eq!(err(api, p, call, json!([s, v]))[0], "OPERATION_NOT_ALLOWED");
    }
    assert_eq!(
        err(api, p, "VIF.plug", json!([s, v])),
        json!(["DEVICE_ALREADY_ATTACHED", v])
    );
    assert_eq!(
        err(api, p, "VLAN.destroy", json!([s, vlan]))[0],
        "OPERATION_NOT_ALLOWED"
    );

    ok(api, p, "Async.VM.hard_shutdown", json!([s, guest]));
    api.poll_vms(p);
    assert!(
        matches!(api.take_net_requests().as_slice(), [NetRequest::UnplugVif { vif }] if *vif == v)
    );
    assert_eq!(
        ok(api, p, "VIF.get_currently_attached", json!([s, v])),
        false
    );

    ok(api, p, "VLAN.destroy", json!([s, vlan]));
    assert!(matches!(
        api.take_net_requests().as_slice(),
        [NetRequest::DropVlan { tag: 30 }]
    ));
    assert_eq!(
        ok(api, p, "PIF.get_VLAN_slave_of", json!([s, pif])),
        json!([])
    );
    assert_eq!(ok(api, p, "network.get_PIFs", json!([s, net])), json!([]));
    // A VM with a VIF on a network the switch does not carry does not start.
    assert_eq!(
        err(api, p, "VM.start", json!([s, guest, false, false])),
        json!(["VM_REQUIRES_NETWORK", guest, net])
    );
    assert_eq!(
        err(api, p, "network.destroy", json!([s, net]))[0],
        "NETWORK_CONTAINS_VIF"
    );
    ok(api, p, "VM.destroy", json!([s, guest]));
    assert_eq!(ok(api, p, "network.get_VIFs", json!([s, net])), json!([]));
    ok(api, p, "network.destroy", json!([s, net]));
}

#[test]
fn a_vif_on_the_management_network_plugs_there() {
    let (mut api, mut p, s) = live();
    let (api, p) = (&mut api, &mut p);
    let net = management_network(api, p, &s);
    let guest = vm(api, p, &s, "g");
    ok(
        api,
        p,
        "VIF.create",
        json!([s, vif(&net, &guest, "0", "00:16:3e:12:34:56")]),
    );
    ok(api, p, "VM.start", json!([s, guest, false, false]));
    match api.take_net_requests().as_slice() {
        [
            NetRequest::PlugVif {
                target: VifTarget::HostNetwork(name),
                mac,
                ..
            },
        ] => {
            assert_eq!(name, crate::xenapi::MANAGEMENT_NETWORK);
            assert_eq!(*mac, [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_a_network_owner_vlans_are_not_implemented_and_vifs_are_records() {
    let (mut api, mut p) = service();
    let s = login(&mut api, &mut p);
    let (api, p) = (&mut api, &mut p);
    let net = network(api, p, &s, "n");
    let pif = management_pif(api, p, &s);
    assert_eq!(
        err(api, p, "VLAN.create", json!([s, pif, "30", net]))[0],
        "NOT_IMPLEMENTED"
    );
    assert_eq!(
        err(
            api,
            p,
            "network.create",
            json!([s, {"name_label": "big", "MTU": "9001"}])
        )[0],
        "INVALID_VALUE"
    );
    api.poll_vms(p);
    let guest = vm(api, p, &s, "g");
    let v = ok(api, p, "VIF.create", json!([s, vif(&net, &guest, "0", "")]))
        .as_str()
        .unwrap()
        .to_string();
    ok(api, p, "VIF.destroy", json!([s, v]));
    assert_eq!(ok(api, p, "VM.get_VIFs", json!([s, guest])), json!([]));
    assert!(api.take_net_requests().is_empty());
}

/// VLAN 30 made on the management PIF for a new network, and a new VM
/// `web` with a VIF on it: the VLAN's untagged PIF and the VM. The switch
/// changes this queued are taken.
fn web_on_vlan30(api: &mut XenApi, p: &mut FakePlatform, s: &str) -> (String, String) {
    let net = network(api, p, s, "vlan30");
    let mgmt = management_pif(api, p, s);
    let untagged = ok(
        api,
        p,
        "pool.create_VLAN_from_PIF",
        json!([s, mgmt, net, "30"]),
    )[0]
    .as_str()
    .unwrap()
    .to_string();
    let guest = vm(api, p, s, "web");
    ok(api, p, "VIF.create", json!([s, vif(&net, &guest, "0", "")]));
    api.take_net_requests();
    (untagged, guest)
}

#[test]
fn after_a_reboot_api_vlans_are_carried_before_any_vif_is_plugged() {
    let store = SharedStore::default();
    let boot = || live_on(&store);
    let (mut api, mut p, s) = boot();
    let (_, guest) = web_on_vlan30(&mut api, &mut p, &s);
    drop(api);

    let (mut api, mut p, s) = boot();
    // A VM started before the first poll (auto_poweron starts them there).
    ok(
        &mut api,
        &mut p,
        "VM.start",
        json!([s, guest, false, false]),
    );
    match api.take_net_requests().as_slice() {
        [
            NetRequest::CarryVlan { tag: 30, mtu: 1500 },
            NetRequest::PlugVif {
                target: VifTarget::Vlan(30),
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
    assert!(api.take_net_requests().is_empty(), "restored once");
}

#[test]
fn an_api_vlan_pif_unplugs_and_plugs_and_stays_down_across_a_reboot() {
    let store = SharedStore::default();
    let boot = || live_on(&store);
    let (mut api, mut p, s) = boot();
    let (api1, p1) = (&mut api, &mut p);
    let (untagged, guest) = web_on_vlan30(api1, p1, &s);
    let mgmt = management_pif(api1, p1, &s);
    assert_eq!(
        err(api1, p1, "PIF.unplug", json!([s, mgmt])),
        json!(["PIF_IS_MANAGEMENT_INTERFACE", mgmt])
    );
    // A running VM on the VLAN keeps it up.
    ok(api1, p1, "VM.start", json!([s, guest, false, false]));
    assert_eq!(
        err(api1, p1, "PIF.unplug", json!([s, untagged]))[0],
        "OPERATION_NOT_ALLOWED"
    );
    ok(api1, p1, "Async.VM.hard_shutdown", json!([s, guest]));
    api1.poll_vms(p1);
    assert_eq!(
        ok(api1, p1, "VM.get_power_state", json!([s, guest])),
        "Halted"
    );
    api1.take_net_requests();
    ok(api1, p1, "PIF.unplug", json!([s, untagged]));
    assert_eq!(
        ok(api1, p1, "PIF.get_currently_attached", json!([s, untagged])),
        false
    );
    assert!(matches!(
        api1.take_net_requests().as_slice(),
        [NetRequest::DropVlan { tag: 30 }]
    ));
    // Its network is not carried: the VM cannot start.
    assert_eq!(
        err(api1, p1, "VM.start", json!([s, guest, false, false]))[0],
        "VM_REQUIRES_NETWORK"
    );
    drop(api);

    // Down after a reboot too; PIF.plug carries it again.
    let (mut api, mut p, s) = boot();
    assert!(
        api.take_net_requests().is_empty(),
        "an unplugged VLAN stays down"
    );
    ok(&mut api, &mut p, "PIF.plug", json!([s, untagged]));
    assert!(matches!(
        api.take_net_requests().as_slice(),
        [NetRequest::CarryVlan { tag: 30, mtu: 1500 }]
    ));
    ok(&mut api, &mut p, "PIF.plug", json!([s, untagged]));
    assert!(
        api.take_net_requests().is_empty(),
        "plugging twice is a no-op"
    );
    ok(
        &mut api,
        &mut p,
        "VM.start",
        json!([s, guest, false, false]),
    );
}

#[test]
fn a_running_vms_vif_moves_on_the_switch_and_a_halted_ones_at_its_start() {
    let (mut api, mut p, s) = live();
    let (api, p) = (&mut api, &mut p);
    let mgmt = management_pif(api, p, &s);
    let management = ok(api, p, "PIF.get_network", json!([s, mgmt]));
    let net = network(api, p, &s, "vlan30");
    ok(
        api,
        p,
        "pool.create_VLAN_from_PIF",
        json!([s, mgmt, net, "30"]),
    );
    let private = network(api, p, &s, "private");
    let guest = vm(api, p, &s, "web");
    let vif = ok(
        api,
        p,
        "VIF.create",
        json!([s, vif(management.as_str().unwrap(), &guest, "0", "")]),
    );
    // Halted: only the record changes; the start plugs it on VLAN 30.
    ok(api, p, "VIF.move", json!([s, vif, net]));
    assert_eq!(
        ok(api, p, "network.get_VIFs", json!([s, net])),
        json!([vif])
    );
    assert_eq!(
        ok(api, p, "network.get_VIFs", json!([s, management])),
        json!([])
    );
    api.take_net_requests();
    ok(api, p, "VM.start", json!([s, guest, false, false]));
    assert!(matches!(
        api.take_net_requests().as_slice(),
        [NetRequest::PlugVif {
            target: VifTarget::Vlan(30),
            ..
        }]
    ));
    // Running: moved on the switch at once, with its MAC and locking.
    ok(api, p, "VIF.move", json!([s, vif, management]));
    match api.take_net_requests().as_slice() {
        [
            NetRequest::MoveVif {
                vif: v,
                target: VifTarget::HostNetwork(_),
                ..
            },
        ] => {
            assert_eq!(json!(v), vif)
        }
        other => panic!("{other:?}"),
    }
    // A network the switch does not carry: refused, nothing changes.
    assert_eq!(
        err(api, p, "VIF.move", json!([s, vif, private]))[0],
        "VM_REQUIRES_NETWORK"
    );
    assert_eq!(ok(api, p, "VIF.get_network", json!([s, vif])), management);
    assert!(api.take_net_requests().is_empty());
}
