//! Isolation (issue 8): a guest that hammers its disk and one that floods
//! its NIC do not stop another guest's console from answering or the API
//! from responding. The boot archive's guest `hammer` loads the peer's
//! virtio modules and loops direct I/O writes and reads over its 8 MiB
//! virtio disk for as long as it lives; its guest `flood` gets a lease on
//! the management network through its VIF and streams zeros to a sink of
//! this test (slirp's gateway forwards to it) in a loop, as fast as the
//! switch, the uplink and slirp take them; meanwhile `isolation_flow.py` starts a XenAPI VM from the template, types
//! commands into its serial console over `CONNECT /console` and reads the
//! answers, and calls `host.get_record` and `GET /health`. All waits are
//! bounded; the latencies are printed as FIGURE lines, not asserted.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{PortRelay, run_bounded, workspace_root};

use super::vm_lifecycle::{PASSWORD, guest_initrd, host_config};
use super::{BOOT_TIMEOUT, assert_flow_passed, debian_library, health, keel, serial_end};

/// One guest boot under our hypervisor under TCG, beside the hammer.
const FLOW_TIMEOUT: Duration = Duration::from_secs(420);
const HARD_TIMEOUT: Duration = Duration::from_secs(600);
const HAMMER_DISK_BYTES: usize = 8 << 20;

/// The init after [`super::GUEST_INIT_PREAMBLE`].
const HAMMER_INIT: &str = r#"i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || echo KEEL-HAMMER-NO-DISK > /dev/console
n=0
while :; do
    dd if=/dev/urandom of=/dev/vda bs=64k count=128 oflag=direct 2>/dev/null || echo KEEL-HAMMER-WRITE-FAILED > /dev/console
    dd if=/dev/vda of=/dev/null bs=64k count=128 iflag=direct 2>/dev/null || echo KEEL-HAMMER-READ-FAILED > /dev/console
    n=$((n+1))
    echo "KEEL-HAMMER-PASS $n" > /dev/console
done
"#;

/// The flood guest's modules after the virtio-pci transport, in load order.
const NET_MODULES: &[&str] = &["failover", "net_failover", "virtio_net"];

/// The flood guest's init after [`super::GUEST_INIT_PREAMBLE`].
const FLOOD_INIT: &str = r#"i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 2 -s /udhcpc.script > /dev/null 2>&1 || echo KEEL-FLOOD-NO-LEASE > /dev/console
n=0
while :; do
    dd if=/dev/zero bs=64k count=64 2>/dev/null | nc -w 20 10.0.2.2 SINK_PORT > /dev/null
    n=$((n+1))
    echo "KEEL-FLOOD-PASS $n" > /dev/console
done
"#;

/// busybox udhcpc's hook: configures the lease.
const UDHCPC_SCRIPT: &str = r#"#!/bin/busybox sh
case "$1" in
bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "$router" dev "$interface"
    ;;
esac
exit 0
"#;

fn flood_initrd(sink_port: u16) -> Vec<u8> {
    let modules = [super::VIRTIO_PCI_MODULES, NET_MODULES].concat();
    let init = format!("{}{FLOOD_INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &modules.join(" "))
        .replace("SINK_PORT", &sink_port.to_string());
    super::peer_initrd(
        &modules,
        &[
            ("init", 0o755, init.as_bytes()),
            ("udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes()),
        ],
    )
}

/// Accepts every connection on `sink` and adds what it reads to `total`.
fn run_sink(sink: TcpListener, total: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for stream in sink.incoming().flatten() {
            let total = Arc::clone(&total);
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
}

fn hammer_initrd() -> Vec<u8> {
    let modules = [super::VIRTIO_PCI_MODULES, &["virtio_blk"]].concat();
    let init = format!("{}{HAMMER_INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &modules.join(" "));
    super::peer_initrd(&modules, &[("init", 0o755, init.as_bytes())])
}

/// The highest `KEEL-HAMMER-PASS n` in `serial`, if any.
fn hammer_passes(serial: &str) -> Option<u64> {
    serial
        .lines()
        .filter_map(|l| l.split("vm hammer: KEEL-HAMMER-PASS ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
}

#[test]
fn disk_hammering_and_nic_flooding_guests_do_not_starve_another_guests_console_or_the_api() {
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let sink_port = sink.local_addr().expect("sink address").port();
    let flooded = Arc::new(AtomicU64::new(0));
    run_sink(sink, Arc::clone(&flooded));
    // Three Debian guests' boot files are copied to the heap (1/16 of RAM).
    let builder = keel(2, 1536).hard_timeout(HARD_TIMEOUT);
    let peer = workspace_root().join("target/peer");
    let vmlinuz =
        fs::read(peer.join("vmlinuz")).expect("target/peer/vmlinuz (run `cargo xtask setup`)");
    let mut cpio = Cpio::default();
    cpio.file("host-config.bin", 0o644, &host_config(builder.dir()));
    debian_library(&mut cpio, &guest_initrd(&peer));
    cpio.file("guests/hammer/kernel", 0o644, &vmlinuz);
    cpio.file("guests/hammer/initrd", 0o644, &hammer_initrd());
    cpio.file("guests/hammer/cmdline", 0o644, b"console=ttyS0 quiet");
    cpio.file("guests/hammer/disk", 0o644, &vec![0u8; HAMMER_DISK_BYTES]);
    cpio.file("guests/flood/kernel", 0o644, &vmlinuz);
    cpio.file("guests/flood/initrd", 0o644, &flood_initrd(sink_port));
    cpio.file("guests/flood/cmdline", 0o644, b"console=ttyS0 quiet");
    cpio.file("guests/flood/nic", 0o644, b"management");
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    health(&qemu);
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");
    qemu.wait_for_serial("vm hammer: KEEL-HAMMER-PASS 2", Duration::from_secs(240))
        .expect("the hammer guest loops over its disk");
    let before = hammer_passes(&qemu.serial()).unwrap_or(0);
    qemu.wait_for_serial("vm flood: KEEL-FLOOD-PASS 2", Duration::from_secs(240))
        .expect("the flood guest streams through its VIF");
    let flooded_before = flooded.load(Ordering::Relaxed);

    let relay = PortRelay::start(([127, 0, 0, 1], qemu.http_port()).into()).expect("relay");
    let mut python = Command::new("python3");
    python
        .current_dir(workspace_root())
        .arg("qemu-tests/tests/image/isolation_flow.py")
        .env("KEEL_URL", format!("http://127.0.0.1:{}", relay.port()))
        .env("KEEL_PASSWORD", PASSWORD);
    let finished =
        run_bounded(python, FLOW_TIMEOUT, qemu.dir(), "isolation_flow").expect("the flow ends");
    let serial = assert_flow_passed(
        &finished,
        &qemu,
        "isolation_flow.py",
        "KEEL-ISOLATION-FLOW-OK",
    );
    let tail = serial_end(&serial);
    // The hammer kept going while the other guest and the API answered.
    let after = hammer_passes(&serial).unwrap_or(0);
    assert!(
        after > before,
        "the hammer guest made no progress during the flow ({before} passes before, {after} after)\n{tail}"
    );
    println!(
        "FIGURE hammer passes (8 MiB direct write + read) during the flow: {}",
        after - before
    );
    let flooded_after = flooded.load(Ordering::Relaxed);
    assert!(
        flooded_after > flooded_before,
        "the flood guest sent nothing during the flow\n{tail}"
    );
    println!(
        "FIGURE flood guest bytes through its VIF during the flow: {} KiB",
        (flooded_after - flooded_before) / 1024
    );
    for bad in [
        "KEEL-INSMOD-FAILED",
        "KEEL-HAMMER-NO-DISK",
        "KEEL-HAMMER-WRITE-FAILED",
        "KEEL-HAMMER-READ-FAILED",
        "KEEL-FLOOD-NO-LEASE",
        "soft lockup",
        "Kernel panic",
    ] {
        assert!(!serial.contains(bad), "{bad}\n{tail}");
    }
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}
