//! Boot to service: banner, SMP bring-up, DHCP, HTTP `/health`.

use super::{BOOT_TIMEOUT, health, keel};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[test]
fn boot_and_health() {
    let qemu = keel(4, 2048).spawn().expect("spawn QEMU");
    let banner = qemu
        .wait_for_serial("keel 0.1.0 (", BOOT_TIMEOUT)
        .expect("boot banner");
    assert!(banner.contains("keel 0.1.0 ("), "{banner}");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    assert_eq!(json["version"], "0.1.0", "{json}");
    assert!(
        json["build_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{json}"
    );
    assert!(
        json["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{json}"
    );
    assert!(
        json["uptime_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{json}"
    );
    assert_eq!(json["cpus"], 4, "{json}");
    assert_eq!(json["management_ip"], "10.0.2.15", "{json}");
    let total = json["memory"]["total_bytes"]
        .as_f64()
        .expect("memory.total_bytes is a number");
    assert!(
        (total - 2.0 * GIB).abs() <= 0.1 * 2.0 * GIB,
        "memory.total_bytes {total} is not within 10% of 2 GiB"
    );
    let free = json["memory"]["free_bytes"]
        .as_f64()
        .expect("memory.free_bytes is a number");
    assert!(
        free > 0.0 && free <= total,
        "memory.free_bytes {free} of {total}"
    );
    // What the console said on the way up.
    let serial = qemu.serial();
    for line in [
        "smp: 4 of 4 CPUs online",
        "net: eth0 52:54:00:12:34:56 DHCP lease 10.0.2.15/24",
        "http: serving on port 80",
    ] {
        assert!(serial.contains(line), "serial lacks {line:?}");
    }
}

fn smp(cpus: u32) {
    let qemu = keel(cpus, 512).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(&format!("smp: {cpus} of {cpus} CPUs online"), BOOT_TIMEOUT)
        .expect("all CPUs online");
    let (_, json) = health(&qemu);
    assert_eq!(json["cpus"], cpus, "{json}");
}

#[test]
fn smp_1_cpu() {
    smp(1);
}

#[test]
fn smp_2_cpus() {
    smp(2);
}

#[test]
fn smp_4_cpus() {
    smp(4);
}

#[test]
fn smp_8_cpus() {
    smp(8);
}

#[test]
fn nic_interrupts_wake_the_idle_boot_cpu() {
    let qemu = keel(2, 512).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("intx: PCI lines (GSI 16..23) routed", BOOT_TIMEOUT)
        .expect("the PCI lines are routed");
    // DHCP and the request below arrive as frames: their interrupts wake
    // the boot CPU, after which it sleeps up to 500 ms between deadlines.
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    qemu.wait_for_serial("intx: first PCI interrupt taken", BOOT_TIMEOUT)
        .expect("a NIC interrupt arrived");
    // Requests keep being answered with the long sleep in force.
    for _ in 0..5 {
        let (_, json) = health(&qemu);
        assert_eq!(json["status"], "ok", "{json}");
    }
}
