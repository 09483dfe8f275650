//! `Bond.create`/`destroy`/`set_mode`/`set_property`: the records xapi
//! would show, the errors it would give, the uplink changes queued for the
//! appliance, and the bond made again after a reboot.

use super::guest_net::{network, vif};
use super::*;
use crate::xenapi::{NetRequest, NicFacts, UplinkSpec};
use host_config::{BondHashing, BondMode, LacpRate};
use serde_json::json;

/// The host's facts with NICs `eth0` (management) to `eth<count-1>`.
fn nics(api: &XenApi, count: u8) -> HostFacts {
    let mut facts = api.facts().clone();
    facts.networks.nics = (0..count)
        .map(|i| NicFacts {
            device: format!("eth{i}"),
            mac: Some([2, 0, 0, 0, 0, 1 + i]),
            in_use: i == 0,
        })
        .collect();
    facts
}

/// A boot with `count` NICs: live unless `hosted`, on `store` if given.
fn boot(count: u8, store: Option<&SharedStore>, hosted: bool) -> (XenApi, FakePlatform, String) {
    let (old, mut p) = service();
    let mut api = XenApi::new(&root_config(), nics(&old, count), &mut p);
    if !hosted {
        api.enable_live_network();
    }
    if let Some(store) = store {
        api.attach_store(Box::new(store.clone()), &mut p).unwrap();
    }
    let s = login(&mut api, &mut p);
    (api, p, s)
}

fn pif(
    api: &mut XenApi,
    p: &mut FakePlatform,
    s: &str,
    device: &str,
) -> (String, serde_json::Value) {
    let pifs = ok(api, p, "PIF.get_all_records", json!([s]));
    pifs.as_object()
        .unwrap()
        .iter()
        .find(|(_, r)| r["device"] == device && r["VLAN"] == -1)
        .map(|(k, r)| (k.clone(), r.clone()))
        .unwrap_or_else(|| panic!("no PIF {device}: {pifs}"))
}

fn uplinks(api: &mut XenApi) -> Vec<UplinkSpec> {
    api.take_net_requests()
        .into_iter()
        .filter_map(|r| match r {
            NetRequest::SetUplink(spec) => Some(spec),
            _ => None,
        })
        .collect()
}

#[test]
fn a_bond_takes_management_over_and_destroy_gives_it_back() {
    let (mut api, mut p, s) = boot(3, None, false);
    let (api, p) = (&mut api, &mut p);
    let (eth0, _) = pif(api, p, &s, "eth0");
    let (eth1, _) = pif(api, p, &s, "eth1");
    let net = network(api, p, &s, "Bond 0+1");
    // A VM on the management network: its VIF follows management.
    let vm = ok(api, p, "VM.create", json!([s, vm_record("web")]));
    let eth0_net = ok(api, p, "PIF.get_network", json!([s, eth0]));
    let vif = ok(
        api,
        p,
        "VIF.create",
        json!([
            s,
            vif(eth0_net.as_str().unwrap(), vm.as_str().unwrap(), "0", "")
        ]),
    );
    // Members in any order: the management NIC is the primary one.
    let bond = ok(
        api,
        p,
        "Bond.create",
        json!([s, net, [eth1, eth0], "", "lacp",
               {"hashing_algorithm": "src_mac", "lacp-time": "slow", "lacp-fallback-ab": "false"}]),
    );
    let bond = bond.as_str().unwrap().to_string();
    let record = ok(api, p, "Bond.get_record", json!([s, bond]));
    assert_eq!(record["mode"], "lacp");
    assert_eq!(record["properties"]["hashing_algorithm"], "src_mac");
    assert_eq!(record["properties"]["lacp-time"], "slow");
    assert_eq!(record["primary_slave"], eth0.as_str());
    let slaves: Vec<&str> = record["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(slaves, [eth0.as_str(), eth1.as_str()]);
    let (master, bond0) = pif(api, p, &s, "bond0");
    assert_eq!(record["master"], master.as_str());
    assert_eq!(bond0["network"], net.as_str());
    assert_eq!(bond0["management"], true);
    assert_eq!(bond0["physical"], false);
    assert_eq!(bond0["IP"], "192.0.2.10");
    assert_eq!(
        bond0["MAC"], "02:00:00:00:00:01",
        "the management NIC's MAC"
    );
    assert_eq!(bond0["bond_master_of"], json!([bond]));
    for member in [&eth0, &eth1] {
        let r = ok(api, p, "PIF.get_record", json!([s, member]));
        assert_eq!(r["bond_slave_of"], bond.as_str());
        assert_eq!(r["management"], false);
    }
    let n = ok(api, p, "network.get_record", json!([s, net]));
    assert_eq!(
        n["name_label"], "Bond 0+1",
        "the caller's network keeps its name"
    );
    assert_eq!(n["PIFs"], json!([master]));
    assert_eq!(n["VIFs"], json!([vif]));
    assert_eq!(ok(api, p, "VIF.get_network", json!([s, vif])), json!(net));
    let mut expected = host_config::Bond::new("bond0", &["eth0", "eth1"], BondMode::Lacp);
    expected.hashing = BondHashing::SrcMac;
    expected.lacp_rate = LacpRate::Slow;
    assert_eq!(uplinks(api), [UplinkSpec::Bond(expected.clone())]);

    // A member already in a bond.
    let (eth2, _) = pif(api, p, &s, "eth2");
    let other = network(api, p, &s, "other");
    assert_eq!(
        err(
            api,
            p,
            "Bond.create",
            json!([s, other, [eth1, eth2], "", "lacp", {}])
        ),
        json!(["PIF_ALREADY_BONDED", eth1])
    );

    // set_property and set_mode: the record follows, the bond is made again.
    ok(
        api,
        p,
        "Bond.set_property",
        json!([s, bond, "lacp-time", "fast"]),
    );
    expected.lacp_rate = LacpRate::Fast;
    assert_eq!(uplinks(api), [UplinkSpec::Bond(expected.clone())]);
    let record = ok(api, p, "Bond.get_record", json!([s, bond]));
    assert_eq!(record["properties"]["lacp-time"], "fast");
    assert_eq!(
        err(
            api,
            p,
            "Bond.set_property",
            json!([s, bond, "lacp-time", "sometimes"])
        ),
        json!(["INVALID_VALUE", "lacp-time", "sometimes"])
    );
    ok(api, p, "Bond.set_mode", json!([s, bond, "active-backup"]));
    expected.mode = BondMode::ActiveBackup;
    assert_eq!(uplinks(api), [UplinkSpec::Bond(expected)]);
    let record = ok(api, p, "Bond.get_record", json!([s, bond]));
    assert_eq!(record["mode"], "active-backup");
    assert_eq!(record["properties"], json!({}));

    // The seed story puts VLAN networks on the bond next.
    let vlan_net = network(api, p, &s, "vlan30");
    let untagged = ok(
        api,
        p,
        "pool.create_VLAN_from_PIF",
        json!([s, master, vlan_net, "30"]),
    )[0]
    .as_str()
    .unwrap()
    .to_string();
    assert!(matches!(
        api.take_net_requests().as_slice(),
        [NetRequest::CarryVlan { tag: 30, mtu: 1500 }]
    ));
    let r = ok(api, p, "PIF.get_record", json!([s, untagged]));
    assert_eq!(r["device"], "bond0");

    // Destroy: management is back on eth0, the bond and its PIF are gone;
    // the VLAN made on the bond moves to eth0.
    ok(api, p, "Bond.destroy", json!([s, bond]));
    assert_eq!(uplinks(api), [UplinkSpec::Nic("eth0".into())]);
    let r = ok(api, p, "PIF.get_record", json!([s, untagged]));
    assert_eq!(r["device"], "eth0");
    assert_eq!(ok(api, p, "VIF.get_network", json!([s, vif])), eth0_net);
    let vlan = r["VLAN_master_of"].as_str().unwrap().to_string();
    assert_eq!(
        ok(api, p, "VLAN.get_tagged_PIF", json!([s, vlan])),
        json!(eth0)
    );
    let eth0_vlans = ok(api, p, "PIF.get_VLAN_slave_of", json!([s, eth0]));
    assert_eq!(eth0_vlans, json!([vlan]));
    assert_eq!(ok(api, p, "Bond.get_all", json!([s])), json!([]));
    let (_, eth0_record) = pif(api, p, &s, "eth0");
    assert_eq!(eth0_record["management"], true);
    assert_eq!(eth0_record["bond_slave_of"], "OpaqueRef:NULL");
    assert_eq!(eth0_record["IP"], "192.0.2.10");
    let devices: Vec<String> = ok(api, p, "PIF.get_all_records", json!([s]))
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["device"].as_str().unwrap().to_string())
        .collect();
    assert!(!devices.contains(&"bond0".to_string()), "{devices:?}");
}

#[test]
fn bond_create_refuses_what_xapi_refuses_and_what_this_host_cannot_carry() {
    let (mut api, mut p, s) = boot(3, None, false);
    let (api, p) = (&mut api, &mut p);
    let (eth0, _) = pif(api, p, &s, "eth0");
    let (eth1, _) = pif(api, p, &s, "eth1");
    let (eth2, _) = pif(api, p, &s, "eth2");
    let net = network(api, p, &s, "bond");
    let create = |api: &mut XenApi,
                  p: &mut FakePlatform,
                  members: serde_json::Value,
                  mac: &str,
                  mode: &str,
                  props: serde_json::Value| {
        err(
            api,
            p,
            "Bond.create",
            json!([s, net, members, mac, mode, props]),
        )
    };
    assert_eq!(
        create(api, p, json!([eth0]), "", "lacp", json!({})),
        json!(["PIF_BOND_NEEDS_MORE_MEMBERS"])
    );
    assert_eq!(
        create(
            api,
            p,
            json!([eth0, "OpaqueRef:nope"]),
            "",
            "lacp",
            json!({})
        )[0],
        "HANDLE_INVALID"
    );
    assert_eq!(
        create(api, p, json!([eth0, eth1]), "", "round-robin", json!({}))[0],
        "INVALID_VALUE"
    );
    assert_eq!(
        create(
            api,
            p,
            json!([eth0, eth1]),
            "",
            "lacp",
            json!({"hashing_algorithm": "l3"})
        ),
        json!(["INVALID_VALUE", "hashing_algorithm", "l3"])
    );
    assert_eq!(
        create(
            api,
            p,
            json!([eth0, eth1]),
            "",
            "lacp",
            json!({"lacp-fallback-ab": "true"})
        )[0],
        "VALUE_NOT_SUPPORTED"
    );
    assert_eq!(
        create(
            api,
            p,
            json!([eth0, eth1]),
            "02:00:00:00:00:99",
            "lacp",
            json!({})
        )[0],
        "VALUE_NOT_SUPPORTED"
    );
    assert_eq!(
        create(api, p, json!([eth0, eth1]), "not a mac", "lacp", json!({})),
        json!(["MAC_INVALID", "not a mac"])
    );
    // Two spare NICs: the switch has one uplink, the management one.
    let refused = create(api, p, json!([eth1, eth2]), "", "active-backup", json!({}));
    assert_eq!(refused[0], "VALUE_NOT_SUPPORTED", "{refused}");
    assert!(
        refused[3]
            .as_str()
            .unwrap()
            .contains("carrying management (eth0)"),
        "{refused}"
    );
    // The management network already has its PIF.
    let management = ok(api, p, "PIF.get_network", json!([s, eth0]));
    assert_eq!(
        err(
            api,
            p,
            "Bond.create",
            json!([s, management, [eth0, eth1], "", "lacp", {}])
        )[0],
        "NETWORK_ALREADY_CONNECTED"
    );
    assert!(uplinks(api).is_empty(), "nothing was queued");
    assert_eq!(ok(api, p, "Bond.get_all", json!([s])), json!([]));

    // Hosted: no one to change the switch.
    let (mut hosted, mut hp, hs) = boot(2, None, true);
    let (h0, _) = pif(&mut hosted, &mut hp, &hs, "eth0");
    let (h1, _) = pif(&mut hosted, &mut hp, &hs, "eth1");
    let hnet = network(&mut hosted, &mut hp, &hs, "bond");
    assert_eq!(
        err(
            &mut hosted,
            &mut hp,
            "Bond.create",
            json!([hs, hnet, [h0, h1], "", "lacp", {}])
        )[0],
        "NOT_IMPLEMENTED"
    );
}

#[test]
fn an_api_bond_is_made_again_after_a_reboot() {
    let store = SharedStore::default();
    let (mut api, mut p, s) = boot(2, Some(&store), false);
    let (eth0, _) = pif(&mut api, &mut p, &s, "eth0");
    let (eth1, _) = pif(&mut api, &mut p, &s, "eth1");
    let net = network(&mut api, &mut p, &s, "Bond 0+1");
    let bond = ok(
        &mut api,
        &mut p,
        "Bond.create",
        json!([s, net, [eth0, eth1], "02:00:00:00:00:01", "balance-slb", {}]),
    );
    assert_eq!(uplinks(&mut api).len(), 1);
    drop(api);

    let (mut api, mut p, s) = boot(2, Some(&store), false);
    let expected = host_config::Bond {
        hashing: BondHashing::SrcMac,
        ..host_config::Bond::new("bond0", &["eth0", "eth1"], BondMode::BalanceSlb)
    };
    assert_eq!(uplinks(&mut api), [UplinkSpec::Bond(expected)]);
    assert_eq!(api.facts().management.device, "bond0");
    assert_eq!(
        ok(&mut api, &mut p, "Bond.get_all", json!([s])),
        json!([bond])
    );
    let (master, bond0) = pif(&mut api, &mut p, &s, "bond0");
    assert_eq!(bond0["management"], true);
    assert_eq!(bond0["network"], net.as_str());
    let record = ok(&mut api, &mut p, "Bond.get_record", json!([s, bond]));
    assert_eq!(record["master"], master.as_str());
    assert_eq!(record["mode"], "balance-slb");
    ok(&mut api, &mut p, "Bond.destroy", json!([s, bond]));
    drop(api);

    // Destroyed before this boot: eth0 alone again.
    let (mut api, _p, _s) = boot(2, Some(&store), false);
    assert!(uplinks(&mut api).is_empty());
    assert_eq!(api.facts().management.device, "eth0");
}

#[test]
fn a_tagged_management_network_moves_onto_the_bond() {
    let (old, mut p) = service();
    let mut facts = nics(&old, 2);
    facts.networks.management_vlan = Some(5);
    facts.networks.vlans = vec![crate::xenapi::VlanFacts {
        name: String::from(crate::xenapi::MANAGEMENT_NETWORK),
        device: String::from("eth0"),
        tag: 5,
        mtu: 1500,
        dhcp: false,
        address: None,
    }];
    let mut api = XenApi::new(&root_config(), facts, &mut p);
    api.enable_live_network();
    let s = login(&mut api, &mut p);
    let (api, p) = (&mut api, &mut p);
    let (eth0, _) = pif(api, p, &s, "eth0");
    let (eth1, _) = pif(api, p, &s, "eth1");
    let net = network(api, p, &s, "Bond 0+1");
    ok(
        api,
        p,
        "Bond.create",
        json!([s, net, [eth0, eth1], "", "active-backup", {}]),
    );
    let pifs = ok(api, p, "PIF.get_all_records", json!([s]));
    let management: Vec<(String, i64)> = pifs
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["management"] == true)
        .map(|r| {
            (
                r["device"].as_str().unwrap().to_string(),
                r["VLAN"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(management, [("bond0".to_string(), 5)]);
    assert_eq!(uplinks(api).len(), 1);
}

#[test]
fn a_plugged_vif_moved_onto_the_bond_takes_its_networks_locking() {
    let (mut api, mut p, s) = boot(2, None, false);
    let (api, p) = (&mut api, &mut p);
    let (eth0, _) = pif(api, p, &s, "eth0");
    let (eth1, _) = pif(api, p, &s, "eth1");
    let net = network(api, p, &s, "Bond 0+1");
    ok(
        api,
        p,
        "network.set_default_locking_mode",
        json!([s, net, "disabled"]),
    );
    let vm = ok(api, p, "VM.create", json!([s, vm_record("web")]));
    let eth0_net = ok(api, p, "PIF.get_network", json!([s, eth0]));
    let vif = ok(
        api,
        p,
        "VIF.create",
        json!([
            s,
            vif(eth0_net.as_str().unwrap(), vm.as_str().unwrap(), "0", "")
        ]),
    );
    let vif = vif.as_str().unwrap().to_string();
    // As if its VM ran: the VIF is plugged.
    let attached = crate::xenapi::schema::VIF
        .field("currently_attached")
        .map(|(i, _)| i)
        .unwrap();
    api.db.set_field(
        &crate::xenapi::schema::VIF,
        &vif,
        attached,
        Value::Bool(true),
    );
    api.take_net_requests();
    ok(
        api,
        p,
        "Bond.create",
        json!([s, net, [eth0, eth1], "", "active-backup"]),
    );
    let policies: Vec<_> = api
        .take_net_requests()
        .into_iter()
        .filter_map(|r| match r {
            NetRequest::SetVifPolicy { vif: v, policy } if v == vif => Some(policy),
            _ => None,
        })
        .collect();
    assert_eq!(
        policies,
        [netstack::switch::VifPolicy::Disabled],
        "network_default follows the bond network's default"
    );
}

#[test]
fn a_spare_nic_cannot_be_plugged_on_its_own() {
    let (mut api, mut p, s) = boot(2, None, false);
    let (api, p) = (&mut api, &mut p);
    let (eth1, record) = pif(api, p, &s, "eth1");
    assert_eq!(record["currently_attached"], false);
    let r = err(api, p, "PIF.plug", json!([s, eth1]));
    assert_eq!(r[0], "VALUE_NOT_SUPPORTED", "{r}");
    // Unplugging what is not plugged is no change, as in xapi.
    ok(api, p, "PIF.unplug", json!([s, eth1]));
    // A bond's member changes with the bond.
    let (eth0, _) = pif(api, p, &s, "eth0");
    let net = network(api, p, &s, "Bond 0+1");
    ok(
        api,
        p,
        "Bond.create",
        json!([s, net, [eth0, eth1], "", "active-backup"]),
    );
    assert_eq!(
        ok(api, p, "PIF.get_currently_attached", json!([s, eth1])),
        true
    );
    let r = err(api, p, "PIF.unplug", json!([s, eth1]));
    assert_eq!(r[0], "OPERATION_NOT_ALLOWED", "{r}");
}
