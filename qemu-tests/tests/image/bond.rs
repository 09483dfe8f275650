//! The seed scenario in the image: two extra NICs on taps that are members
//! of an Open vSwitch LACP bond (`balance-tcp`, fast) in a namespace of the
//! test's own; the host config bonds them (`bond0` of eth1 and eth2), puts
//! management on VLAN 5 (native, untagged) and storage on VLAN 20 with MTU
//! 9000. From OVS internal ports on those VLANs, `/health` answers on the
//! management address and the storage address answers 8000-byte pings that
//! may not be fragmented (`ping -M do -s 8000`); OVS shows both members
//! enabled with us as its LACP partner, and the XenAPI (JSON-RPC) shows the
//! PIFs, the Bond and the VLAN that were brought up.
//!
//! QEMU runs inside the namespace (its taps are there); the switch is
//! `lacp_switch`'s. Needs root and Open vSwitch, else it says SKIP.

use std::time::{Duration, Instant};

use super::lacp_switch::{
    CONFIG, LacpSwitch, MGMT_AND_STORAGE, MGMT_IP, PASSWORD, STORAGE_IP, prerequisites_missing,
};
use super::{BOOT_TIMEOUT, keel};

#[test]
fn management_and_storage_vlans_over_a_lacp_bond_with_open_vswitch() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP management_and_storage_vlans_over_a_lacp_bond_with_open_vswitch: {why}");
        return;
    }
    let builder = keel(2, 512);
    let module = super::compile_host_config(builder.dir(), "bond", CONFIG);
    let switch = LacpSwitch::start(
        "qbond",
        &builder.dir().join("ovs"),
        &[5, 20],
        &MGMT_AND_STORAGE,
        Duration::from_secs(200),
    );
    let (ns, taps) = (&switch.ns, &switch.taps);

    let qemu = builder
        .initrd(&module)
        .tap(&taps[0])
        .tap(&taps[1])
        .netns(&ns.0)
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("net: storage on bond0 VLAN 20", BOOT_TIMEOUT)
        .expect("storage network up on the console");
    let serial = qemu.serial();
    assert!(
        serial.contains("net: bond0 on bond0 VLAN 5 (native, untagged)"),
        "{}",
        qemu.serial_tail(30)
    );

    // LACP: OVS enables both members with us as partner.
    let enabled_after = switch.wait_both_members_enabled(&qemu);
    eprintln!(
        "FIGURE image_lacp_both_members_enabled_after={:.1}s",
        enabled_after.as_secs_f64()
    );

    // /health on the management address, native VLAN 5.
    let url = format!("http://{MGMT_IP}/health");
    let start = Instant::now();
    let body = loop {
        match ns.run(&["curl", "-s", "-m", "5", &url]) {
            Ok(body) if body.contains("\"status\":\"ok\"") => break body,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "GET {url}: {other:?}\n{}",
                qemu.serial_tail(30)
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        body.contains(&format!("\"management_ip\":\"{MGMT_IP}\"")),
        "{body}"
    );
    assert!(body.contains("\"hostname\":\"keel-bond-test\""), "{body}");

    // The storage address on VLAN 20, with jumbo frames that may not be
    // fragmented: 8000 bytes of ICMP payload, 8028-byte IP packets.
    let ping = ns.run(&[
        "ping", "-M", "do", "-s", "8000", "-c", "3", "-W", "3", STORAGE_IP,
    ]);
    assert!(
        ping.as_ref()
            .is_ok_and(|out| out.contains(" 0% packet loss") && out.contains("8008 bytes from")),
        "ping -M do -s 8000 {STORAGE_IP}: {ping:?}\n{}",
        qemu.serial_tail(30)
    );
    assert!(switch.both_members_enabled(), "both members still enabled");

    // The XenAPI shows what was brought up: a PIF per NIC, the bond and its
    // master PIF, the storage VLAN with its PIF and network.
    let call = |method: &str, params: serde_json::Value| -> serde_json::Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let out = ns
            .run(&[
                "curl",
                "-s",
                "-m",
                "10",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("http://{MGMT_IP}/jsonrpc"),
            ])
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let answer: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: {e}: {out}"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    };
    let session = call(
        "session.login_with_password",
        serde_json::json!(["root", PASSWORD]),
    );
    let session = session.as_str().expect("a session ref").to_string();
    let records = |class: &str| {
        let all = call(
            &format!("{class}.get_all_records"),
            serde_json::json!([session]),
        );
        all.as_object().expect("records").clone()
    };
    let pifs = records("PIF");
    let pif = |device: &str, vlan: i64| {
        pifs.iter()
            .find(|(_, p)| p["device"] == device && p["VLAN"] == vlan)
            .map(|(r, p)| (r.clone(), p.clone()))
            .unwrap_or_else(|| panic!("no PIF {device} VLAN {vlan}: {pifs:?}"))
    };
    assert_eq!(pifs.len(), 5, "eth0..eth2, bond0, bond0 VLAN 20: {pifs:?}");
    let (master, bond_pif) = pif("bond0", -1);
    assert_eq!(bond_pif["management"], true);
    assert_eq!(bond_pif["IP"], MGMT_IP);
    assert_eq!(bond_pif["MTU"], 9000);
    let (storage_ref, storage) = pif("bond0", 20);
    assert_eq!(storage["IP"], STORAGE_IP);
    assert_eq!(storage["MTU"], 9000);
    let bonds = records("Bond");
    let (bond_ref, bond) = bonds.iter().next().expect("a Bond");
    assert_eq!(bond["master"], master.as_str());
    assert_eq!(bond["mode"], "lacp");
    assert_eq!(bond["properties"]["lacp-time"], "fast");
    assert_eq!(bond["primary_slave"], pif("eth1", -1).0.as_str());
    assert_eq!(pif("eth2", -1).1["bond_slave_of"], bond_ref.as_str());
    let vlans = records("VLAN");
    let (_, vlan) = vlans.iter().next().expect("a VLAN");
    assert_eq!(vlan["tag"], 20);
    assert_eq!(vlan["tagged_PIF"], master.as_str());
    assert_eq!(vlan["untagged_PIF"], storage_ref.as_str());
    drop(qemu);
    drop(switch);
}
