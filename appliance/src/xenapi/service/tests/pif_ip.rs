//! `PIF.reconfigure_ip` across reboots: kept while the host config says
//! what it said when the change was made.

use super::*;
use crate::xenapi::IpChange;
use serde_json::json;

/// A boot: a live service on `store` with `config`.
fn boot(store: &SharedStore, config: &HostConfig) -> (XenApi, FakePlatform) {
    let (old, mut p) = service();
    let mut api = XenApi::new(config, old.facts().clone(), &mut p);
    api.enable_live_network();
    api.attach_store(Box::new(store.clone()), &mut p).unwrap();
    (api, p)
}

fn config(ip: host_config::IpMode) -> HostConfig {
    let mut c = root_config();
    c.management.ip = ip;
    c
}

#[test]
fn a_reconfigured_management_address_survives_a_reboot_under_the_same_host_config() {
    let store = SharedStore::default();
    let dhcp = config(host_config::IpMode::Dhcp);
    let (mut api, mut p) = boot(&store, &dhcp);
    assert!(api.take_ip_changes().is_empty());
    let s = login(&mut api, &mut p);
    let pif = json(&mut api, &mut p, "PIF.get_all", json!([s]))["result"][0].clone();
    let r = json(
        &mut api,
        &mut p,
        "PIF.reconfigure_ip",
        json!([
            s,
            pif,
            "Static",
            "10.0.2.15",
            "255.255.255.0",
            "10.0.2.2",
            "10.0.2.3"
        ]),
    );
    assert!(r["error"].is_null(), "{r}");
    let wanted = IpChange::Static {
        address: [10, 0, 2, 15],
        prefix_len: 24,
        gateway: Some([10, 0, 2, 2]),
        dns: vec![[10, 0, 2, 3]],
    };
    assert_eq!(api.take_ip_changes(), vec![wanted.clone()]);
    drop(api);

    // Same host config: the change is applied again and the PIF shows it.
    let (mut api, mut p) = boot(&store, &dhcp);
    assert_eq!(api.take_ip_changes(), vec![wanted]);
    let s = login(&mut api, &mut p);
    let record = json(&mut api, &mut p, "PIF.get_record", json!([s, pif]))["result"].clone();
    assert_eq!(record["ip_configuration_mode"], "Static");
    assert_eq!(record["IP"], "10.0.2.15");
    drop(api);

    // New boot media with other addressing: the host config wins, for good.
    let other = config(host_config::IpMode::Static(host_config::StaticIpv4 {
        address: [10, 0, 2, 40],
        prefix_len: 24,
        gateway: None,
        dns: Vec::new(),
    }));
    let (mut api, _) = boot(&store, &other);
    assert!(api.take_ip_changes().is_empty());
    drop(api);
    let (mut api, _) = boot(&store, &dhcp);
    assert!(api.take_ip_changes().is_empty(), "the override was dropped");
}

#[test]
fn stored_changes_round_trip_and_junk_is_refused() {
    for change in [
        IpChange::Dhcp,
        IpChange::Static {
            address: [192, 0, 2, 1],
            prefix_len: 32,
            gateway: None,
            dns: Vec::new(),
        },
        IpChange::Static {
            address: [10, 1, 2, 3],
            prefix_len: 8,
            gateway: Some([10, 0, 0, 1]),
            dns: vec![[1, 1, 1, 1], [8, 8, 8, 8]],
        },
    ] {
        assert_eq!(IpChange::decode(&change.encode()), Some(change));
    }
    for junk in [
        "",
        "DHCP",
        "static",
        "static,10.0.0.1,33,,",
        "static,10.0.0.1,24,,,extra",
        "static,10.0.0.300,24,,",
        "static,10.0.0.1,24,x,",
    ] {
        assert_eq!(IpChange::decode(junk), None, "{junk}");
    }
}
