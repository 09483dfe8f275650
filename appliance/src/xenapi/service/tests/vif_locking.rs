//! VIF locking modes through the API: records, validation, and the switch
//! policy a plugged VIF gets at plug and after every change.

use core::net::{Ipv4Addr, Ipv6Addr};

use netstack::switch::VifPolicy;

use super::guest_net::{live, management_network, network, vif, vm};
use super::*;
use crate::xenapi::NetRequest;
use serde_json::json;

/// The policies queued for the switch since the last look, by VIF.
fn policies(api: &mut XenApi) -> Vec<(String, VifPolicy)> {
    api.take_net_requests()
        .into_iter()
        .filter_map(|r| match r {
            NetRequest::PlugVif { vif, policy, .. } | NetRequest::SetVifPolicy { vif, policy } => {
                Some((vif, policy))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn locking_fields_are_validated_and_kept_canonical() {
    let (mut api, mut p, s) = live();
    let (api, p) = (&mut api, &mut p);
    let net = network(api, p, &s, "guests");
    assert_eq!(
        ok(api, p, "network.get_default_locking_mode", json!([s, net])),
        "unlocked"
    );
    let guest = vm(api, p, &s, "locked");
    let mut record = vif(&net, &guest, "0", "");
    record["locking_mode"] = json!("locked");
    record["ipv4_allowed"] = json!(["10.0.0.5", "10.0.0.5"]);
    record["ipv6_allowed"] = json!(["2001:DB8:0::5"]);
    let v = ok(api, p, "VIF.create", json!([s, record]))
        .as_str()
        .unwrap()
        .to_string();
    let r = ok(api, p, "VIF.get_record", json!([s, v]));
    assert_eq!(r["locking_mode"], "locked");
    assert_eq!(r["ipv4_allowed"], json!(["10.0.0.5"]));
    assert_eq!(r["ipv6_allowed"], json!(["2001:db8::5"]));

    for (field, value) in [
        ("ipv4_allowed", json!(["10.0.0.300"])),
        ("ipv4_allowed", json!(["2001:db8::1"])),
        ("ipv4_allowed", json!(["10.0.0.0/24"])),
        ("ipv6_allowed", json!(["10.0.0.1"])),
        ("locking_mode", json!("sometimes")),
    ] {
        let mut record = vif(&net, &guest, "1", "");
        record[field] = value.clone();
        let e = err(api, p, "VIF.create", json!([s, record]));
        assert_eq!(e[0], "INVALID_VALUE", "{field} {value}: {e}");
        assert_eq!(e[1], field);
    }
    assert_eq!(ok(api, p, "VM.get_VIFs", json!([s, guest])), json!([v]));

    assert_eq!(
        err(api, p, "VIF.set_locking_mode", json!([s, v, "sometimes"]))[0],
        "INVALID_VALUE"
    );
    assert_eq!(
        err(api, p, "VIF.add_ipv4_allowed", json!([s, v, "fe80::1"])),
        json!(["INVALID_VALUE", "ipv4_allowed", "fe80::1"])
    );
    assert_eq!(
        err(
            api,
            p,
            "VIF.set_ipv6_allowed",
            json!([s, v, ["::1", "nope"]])
        ),
        json!(["INVALID_VALUE", "ipv6_allowed", "nope"])
    );
    assert_eq!(
        err(
            api,
            p,
            "VIF.set_locking_mode",
            json!([s, "OpaqueRef:nope", "locked"])
        )[0],
        "HANDLE_INVALID"
    );
    // xapi's network default is unlocked or disabled only.
    assert_eq!(
        err(
            api,
            p,
            "network.set_default_locking_mode",
            json!([s, net, "locked"])
        )[0],
        "INVALID_VALUE"
    );
    ok(api, p, "VIF.add_ipv4_allowed", json!([s, v, "10.0.0.6"]));
    ok(api, p, "VIF.add_ipv4_allowed", json!([s, v, "10.0.0.6"]));
    ok(api, p, "VIF.remove_ipv4_allowed", json!([s, v, "10.0.0.5"]));
    ok(api, p, "VIF.remove_ipv4_allowed", json!([s, v, "10.9.9.9"]));
    assert_eq!(
        ok(api, p, "VIF.get_ipv4_allowed", json!([s, v])),
        json!(["10.0.0.6"])
    );
    ok(
        api,
        p,
        "VIF.set_ipv6_allowed",
        json!([s, v, ["2001:db8::7", "fe80::1"]]),
    );
    ok(
        api,
        p,
        "VIF.remove_ipv6_allowed",
        json!([s, v, "FE80:0::1"]),
    );
    assert_eq!(
        ok(api, p, "VIF.get_ipv6_allowed", json!([s, v])),
        json!(["2001:db8::7"])
    );
    ok(api, p, "VIF.set_locking_mode", json!([s, v, "disabled"]));
    assert_eq!(
        ok(api, p, "VIF.get_locking_mode", json!([s, v])),
        "disabled"
    );
    ok(
        api,
        p,
        "network.set_default_locking_mode",
        json!([s, net, "disabled"]),
    );
    assert_eq!(
        ok(api, p, "network.get_default_locking_mode", json!([s, net])),
        "disabled"
    );
    // Nothing is plugged: nothing for the switch.
    assert!(policies(api).is_empty());
}

#[test]
fn a_plugged_vif_follows_every_locking_change_at_once() {
    let (mut api, mut p, s) = live();
    let (api, p) = (&mut api, &mut p);
    let net = management_network(api, p, &s);
    let guest = vm(api, p, &s, "web");
    let v = ok(api, p, "VIF.create", json!([s, vif(&net, &guest, "0", "")]))
        .as_str()
        .unwrap()
        .to_string();
    ok(api, p, "VM.start", json!([s, guest, false, false]));
    assert_eq!(policies(api), [(v.clone(), VifPolicy::Unlocked)]);

    // network_default follows the network.
    ok(
        api,
        p,
        "network.set_default_locking_mode",
        json!([s, net, "disabled"]),
    );
    assert_eq!(policies(api), [(v.clone(), VifPolicy::Disabled)]);
    ok(api, p, "VIF.set_locking_mode", json!([s, v, "locked"]));
    let none = VifPolicy::Locked {
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    assert_eq!(policies(api), [(v.clone(), none)]);
    ok(api, p, "VIF.add_ipv4_allowed", json!([s, v, "192.0.2.10"]));
    ok(
        api,
        p,
        "VIF.set_ipv6_allowed",
        json!([s, v, ["2001:db8::a"]]),
    );
    let locked = VifPolicy::Locked {
        ipv4: vec![Ipv4Addr::new(192, 0, 2, 10)],
        ipv6: vec!["2001:db8::a".parse::<Ipv6Addr>().unwrap()],
    };
    let changes = policies(api);
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1], (v.clone(), locked.clone()));
    // Not network_default any more: the network's default leaves it be.
    ok(
        api,
        p,
        "network.set_default_locking_mode",
        json!([s, net, "unlocked"]),
    );
    assert!(policies(api).is_empty());
    ok(
        api,
        p,
        "VIF.set_locking_mode",
        json!([s, v, "network_default"]),
    );
    assert_eq!(policies(api), [(v.clone(), VifPolicy::Unlocked)]);

    // A restart plugs the VIF with the mode it has then.
    ok(api, p, "VIF.set_locking_mode", json!([s, v, "locked"]));
    ok(api, p, "Async.VM.hard_shutdown", json!([s, guest]));
    api.poll_vms(p);
    let _ = api.take_net_requests();
    ok(api, p, "VIF.set_locking_mode", json!([s, v, "disabled"]));
    assert!(policies(api).is_empty(), "an unplugged VIF has no port");
    ok(api, p, "VIF.set_locking_mode", json!([s, v, "locked"]));
    ok(api, p, "VM.start", json!([s, guest, false, false]));
    assert_eq!(policies(api), [(v.clone(), locked)]);
}
