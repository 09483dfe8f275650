//! The seed story's bond made in XenCenter: a host boots with management on
//! one NIC (`eth1`, a tap in an Open vSwitch LACP bond that falls back to
//! active-backup on that tap while no LACP partner answers), then
//! `Bond.create` through the Python SDK bonds it with the spare `eth2` in
//! `lacp` mode. OVS negotiates LACP with both members, `/health` still
//! answers and the Bond record counts two links; after a reboot on the same
//! state disk the bond is there again; `Bond.destroy` puts management back
//! on `eth1` alone, still answering.
//!
//! QEMU runs inside the switch's namespace (see `lacp_switch`); the Python
//! client too, under `timeout`. Needs root and Open vSwitch, else SKIP.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::{Qemu, TestDir};

use super::lacp_switch::{LacpSwitch, MGMT_AND_STORAGE, Netns, prerequisites_missing};
use super::{BOOT_TIMEOUT, keel};

const CONFIG: &str = r#"hostname = "keel-bond-api-test"
root_password = "qemu-tests-password"

[management]
interface = "eth1"
vlan = 5
native = true
mode = "static"
address = "10.218.5.2/24"
"#;
const PASSWORD: &str = "qemu-tests-password";
const MGMT_IP: &str = "10.218.5.2";
/// The state disk (the database keeps the bond across the reboot).
const DISK_BYTES: u64 = 16 << 20;

/// Runs a Python snippet with a logged-in `XenAPI` session `s` in the
/// namespace, under a 90 s timeout; returns its stdout.
fn python(ns: &Netns, qemu: &Qemu, body: &str) -> String {
    let script = format!(
        "import XenAPI, sys, time\n\
         s = XenAPI.Session('http://{MGMT_IP}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         x = s.xenapi\n\
         pifs = x.PIF.get_all_records()\n\
         def pif(device):\n    \
             return [r for r, p in pifs.items() if p['device'] == device and p['VLAN'] == '-1'][0]\n\
         {body}\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "timeout", "90", "python3", "-c"])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client failed: {}{}\nserial:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        qemu.serial_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (60 s at most) for `/health` on the management address; how long it took.
fn wait_health(ns: &Netns, qemu: &Qemu) -> Duration {
    let url = format!("http://{MGMT_IP}/health");
    let start = Instant::now();
    loop {
        match ns.run(&["curl", "-s", "-m", "3", &url]) {
            Ok(body) if body.contains("\"status\":\"ok\"") => return start.elapsed(),
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "GET {url}: {other:?}\n{}",
                qemu.serial_tail(30)
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn boot(disk: &Path, module: &Path, switch: &LacpSwitch, run: &str) -> Qemu {
    keel(2, 512)
        .name(&format!("bond-api-{run}"))
        .expect("run dir")
        .initrd(module)
        .disk(disk)
        .tap(&switch.taps[0])
        .tap(&switch.taps[1])
        .netns(&switch.ns.0)
        .spawn()
        .expect("spawn QEMU")
}

#[test]
fn bond_create_makes_the_management_nic_an_lacp_bond_that_survives_a_reboot() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP bond_create_makes_the_management_nic_an_lacp_bond: {why}");
        return;
    }
    let dir = TestDir::new("bond-api").expect("test dir");
    let disk = super::blank_disk(dir.path().join("state.img"), DISK_BYTES);
    let module = super::compile_host_config(dir.path(), "bond-api", CONFIG);
    let switch = LacpSwitch::start(
        "qbapi",
        &dir.path().join("ovs"),
        &[5],
        &MGMT_AND_STORAGE[..1],
        Duration::from_secs(280),
    );
    // Until the host answers LACP, OVS uses the first tap alone (eth1).
    switch
        .ovs
        .vsctl(
            &switch.ns,
            &[
                "set",
                "port",
                "bond0",
                "other_config:lacp-fallback-ab=true",
                &format!("other_config:bond-primary={}", switch.taps[0]),
            ],
        )
        .expect("fallback to active-backup");
    let ns = &switch.ns;

    let qemu = boot(&disk, &module, &switch, "first");
    qemu.wait_for_serial("net: eth1 on eth1 VLAN 5 (native, untagged)", BOOT_TIMEOUT)
        .expect("management on eth1");
    wait_health(ns, &qemu);
    assert!(!switch.both_members_enabled(), "no LACP partner yet");

    // XenCenter's way: a network for the bond, then Bond.create. The
    // figures count from the client's start (Python's own start included).
    let start = Instant::now();
    let out = python(
        ns,
        &qemu,
        "net = x.network.create({'name_label': 'Bond 1+2', 'name_description': '', \
         'MTU': '1500', 'other_config': {}})\n\
         t = time.time()\n\
         b = x.Bond.create(net, [pif('eth1'), pif('eth2')], '', 'lacp', \
         {'hashing_algorithm': 'tcpudp_ports', 'lacp-time': 'fast'})\n\
         print('BOND', b, 'ANSWERED_IN %.1f' % (time.time() - t))",
    );
    assert!(out.contains("BOND OpaqueRef:"), "{out}");
    let answered_in = out
        .split("ANSWERED_IN ")
        .nth(1)
        .map(str::trim)
        .unwrap_or("?")
        .to_string();
    switch.wait_both_members_enabled(&qemu);
    let enabled = start.elapsed();
    wait_health(ns, &qemu);
    eprintln!(
        "FIGURE image_bond_create answered_in={answered_in}s lacp_both_members_after={:.1}s health_after={:.1}s",
        enabled.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    let check = "deadline = time.time() + 30\n\
         while True:\n    \
             bonds = x.Bond.get_all_records()\n    \
             assert len(bonds) == 1, bonds\n    \
             ref, bond = list(bonds.items())[0]\n    \
             if bond['links_up'] == '2' or time.time() > deadline:\n        \
                 break\n    \
             time.sleep(0.5)\n\
         master = x.PIF.get_record(bond['master'])\n\
         assert bond['links_up'] == '2', bond\n\
         assert bond['mode'] == 'lacp', bond\n\
         assert bond['properties']['lacp-time'] == 'fast', bond\n\
         assert master['device'] == 'bond0' and master['management'], master\n\
         assert master['IP'] == '10.218.5.2', master\n\
         assert x.network.get_name_label(master['network']) == 'Bond 1+2'\n\
         assert x.PIF.get_bond_slave_of(pif('eth2')) == ref\n\
         assert not x.PIF.get_management(pif('eth1'))\n\
         print('CHECKED', ref)";
    let out = python(ns, &qemu, check);
    assert!(out.contains("CHECKED"), "{out}");
    assert!(
        qemu.serial()
            .contains("net: management uplink is now bond0 (lacp of eth1, eth2)"),
        "{}",
        qemu.serial_tail(30)
    );
    qemu.kill();
    drop(qemu);

    // The same state disk: the bond is made again at boot.
    let qemu = boot(&disk, &module, &switch, "second");
    qemu.wait_for_serial("net: management uplink is now bond0", BOOT_TIMEOUT)
        .expect("the bond made again");
    switch.wait_both_members_enabled(&qemu);
    wait_health(ns, &qemu);
    let out = python(ns, &qemu, check);
    assert!(out.contains("CHECKED"), "{out}");

    // Destroyed: eth1 alone carries management again (OVS falls back).
    let out = python(
        ns,
        &qemu,
        "x.Bond.destroy(x.Bond.get_all()[0])\n\
         print('DESTROYED')",
    );
    assert!(out.contains("DESTROYED"), "{out}");
    // The uplink changes a moment after the answer.
    qemu.wait_for_serial("net: management uplink is now eth1 (eth1)", BOOT_TIMEOUT)
        .expect("management back on eth1");
    wait_health(ns, &qemu);
    let out = python(
        ns,
        &qemu,
        "assert x.Bond.get_all() == []\n\
         assert x.PIF.get_management(pif('eth1'))\n\
         assert x.PIF.get_IP(pif('eth1')) == '10.218.5.2'\n\
         print('UNBONDED')",
    );
    assert!(out.contains("UNBONDED"), "{out}");
    drop(qemu);
    drop(switch);
}
