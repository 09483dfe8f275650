//! `Bond.create` and `Bond.destroy` through the poll loop: the management
//! NIC and a spare one become `bond0` while the client's connection to the
//! API goes on, and back.

use super::*;

#[test]
fn bond_create_makes_the_uplink_a_bond_and_destroy_undoes_it() {
    let mut config = static_config();
    config.root_password_hash = Some(host_config::hash_password("pw", [9; 16], 1_000));
    let clock = SimClock::new();
    let (wire0, wire1) = (Wire::default(), Wire::default());
    let (h0, client_nic) = wire0.pair(
        MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        MacAddress([2, 0, 0, 2, 0, 2]),
    );
    let (h1, _far_end) = wire1.pair(
        MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x57]),
        MacAddress([2, 0, 0, 2, 0, 3]),
    );
    let platform = TestPlatform {
        clock: clock.clone(),
        idles: Vec::new(),
    };
    let mut appliance = Appliance::new(platform, vec![h0, h1], config).expect("networks");
    assert!(matches!(appliance.networks().uplink(), Uplink::Nic(_)));
    let mut client = TestClient::new(client_nic, CLIENT_IP, &clock);
    client.connect((HOST_IP, HTTP_PORT));
    let mut call = |appliance: &mut Appliance<TestPlatform, WireNic>,
                    method: &str,
                    params: serde_json::Value| {
        let mut side = |_| {
            appliance.poll();
        };
        let r = client
            .exchange(&json_call(method, params), &mut side)
            .json();
        assert!(r["error"].is_null(), "{method}: {r}");
        r["result"].clone()
    };
    let s = call(
        &mut appliance,
        "session.login_with_password",
        serde_json::json!(["root", "pw"]),
    );
    let pifs = call(
        &mut appliance,
        "PIF.get_all_records",
        serde_json::json!([s]),
    );
    let pif = |device: &str| {
        pifs.as_object()
            .unwrap()
            .iter()
            .find(|(_, r)| r["device"] == device)
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    let (eth0, eth1) = (pif("eth0"), pif("eth1"));
    let net = call(
        &mut appliance,
        "network.create",
        serde_json::json!([s, {"name_label": "Bond 0+1", "name_description": "", "MTU": "1500", "other_config": {}}]),
    );
    let bond = call(
        &mut appliance,
        "Bond.create",
        serde_json::json!([s, net, [eth0, eth1], "", "active-backup", {}]),
    );
    // The answer left over eth0 alone; the bond comes a moment later.
    assert_eq!(appliance.management().name(), "eth0");
    settle(&mut appliance);
    assert_eq!(appliance.management().name(), "bond0");
    let members = appliance
        .networks()
        .uplink()
        .bond()
        .map(|b| b.member_count());
    assert_eq!(members, Some(2));
    assert_eq!(
        appliance.management().mac(),
        MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    // The same connection still answers, from the bond, which counts both links.
    let record = call(
        &mut appliance,
        "Bond.get_record",
        serde_json::json!([s, bond]),
    );
    assert_eq!(record["links_up"], 2, "{record}");
    let master = call(
        &mut appliance,
        "PIF.get_record",
        serde_json::json!([s, record["master"]]),
    );
    assert_eq!(master["device"], "bond0");
    assert_eq!(master["management"], true);
    assert_eq!(master["IP"], "10.0.2.15");
    assert!(
        wire1.stats(netstack::testing::End::A).carried == 0,
        "active-backup keeps eth0 active"
    );

    call(&mut appliance, "Bond.destroy", serde_json::json!([s, bond]));
    settle(&mut appliance);
    assert_eq!(appliance.management().name(), "eth0");
    assert!(matches!(appliance.networks().uplink(), Uplink::Nic(_)));
    settle(&mut appliance);
    let eth0_record = call(
        &mut appliance,
        "PIF.get_record",
        serde_json::json!([s, eth0]),
    );
    assert_eq!(eth0_record["management"], true);
    // Made again: the spare NIC came back from the bond.
    let net2 = call(
        &mut appliance,
        "network.create",
        serde_json::json!([s, {"name_label": "again", "name_description": "", "MTU": "1500", "other_config": {}}]),
    );
    call(
        &mut appliance,
        "Bond.create",
        serde_json::json!([s, net2, [eth1, eth0], "", "balance-slb", {}]),
    );
    settle(&mut appliance);
    assert_eq!(
        appliance
            .networks()
            .uplink()
            .bond()
            .map(|b| b.member_count()),
        Some(2)
    );
}
