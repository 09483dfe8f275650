//! The user workflow of issue 8, end to end through the PyPI `XenAPI` SDK
//! (`workflow_flow.py`) against the image: the host boots with `bond0` (eth1
//! and eth2 in LACP with Open vSwitch, `lacp_switch`), management on it and a
//! storage VLAN; the flow logs in, creates an iSCSI SR on a tgtd LUN with
//! mutual CHAP (tgtd on the storage VLAN, in the namespace), a network on
//! VLAN 30 over the bond, a VDI holding a real ext4 root filesystem (built
//! here with `mke2fs -d`: static busybox, an `/sbin/init`, a web root), and a
//! VM from the template with a VBD on it and a VIF on VLAN 30. The guest is
//! the stock Debian kernel: its initrd loads the virtio and ext4 modules,
//! mounts `/dev/vda` and switches root; the root's init takes its address
//! from `keel.ip=` on the command line and serves `/www` with busybox httpd.
//! From an OVS port on VLAN 30 the flow pings the guest and reads its files;
//! its VIF's locking mode, changed on the running guest (disabled, locked to
//! no, its own, another address, the network's default), stops and restores
//! the pings at once;
//! it writes data in the guest over the console, shuts it down through the
//! ACPI power button, starts it again and finds the data; `VM.clone` of the
//! halted VM (its disk a copy-on-write clone, its VIF a MAC of its own,
//! its address changed in `PV_args`) boots beside the running original and
//! is reached too. Timings are FIGURE lines; every wait is bounded.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{run_bounded, workspace_root};

use super::iscsi_sr::{LUN_BYTES, Tgtd};
use super::lacp_switch::{
    CONFIG, LacpSwitch, MGMT_AND_STORAGE, MGMT_IP, PASSWORD, Port, STORAGE_PEER,
    prerequisites_missing,
};
use super::{BOOT_TIMEOUT, keel};

/// The test host on VLAN 30 and the guests' addresses there.
pub(super) const VLAN: u16 = 30;
const VLAN_PEER: &str = "10.30.0.1/24";
pub(super) const GUEST_IP: &str = "10.30.0.11";
const CLONE_IP: &str = "10.30.0.12";
/// The root filesystem's size: busybox (about 2 MiB) and room to write.
const ROOT_MIB: u32 = 16;
/// What the guest serves at `/index.html`, from its root filesystem.
const INDEX: &str = "KEEL-WORKFLOW-ROOT-FS-SERVES-THIS\n";
/// Three guest boots under our hypervisor under TCG, and the setup.
const FLOW_TIMEOUT: Duration = Duration::from_secs(420);
const HARD_TIMEOUT: Duration = Duration::from_secs(480);

/// The peer's modules the initrd loads after the virtio-pci transport, in
/// load order (dependencies first; crc32c before jbd2 and ext4, their
/// `softdep`); then `button` (ACPI power button, from the kernel package).
const MODULES: &[&str] = &[
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "crc16",
    "mbcache",
    "crc32c_generic",
    "jbd2",
    "ext4",
];
/// The initrd's init after [`super::GUEST_INIT_PREAMBLE`]: `/dev/vda`
/// becomes the root.
const INITRD_INIT: &str = r#"mkdir -p /newroot
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if ! mount -t ext4 /dev/vda /newroot; then
    echo KEEL-WF-ROOT-MOUNT-FAILED > /dev/console
    poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"#;

/// The root filesystem's init (PID 1 after `switch_root`).
const ROOT_INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
ip=$(sed -n 's/.*keel\.ip=\([0-9.\/]*\).*/\1/p' /proc/cmdline)
ip link set lo up
if ip link set eth0 up && ip addr add "$ip" dev eth0; then
    echo "KEEL-WF-NET eth0 $ip $(cat /sys/class/net/eth0/address)"
else
    echo "KEEL-WF-NO-NET $ip"
fi
echo "${ip%/*}" > /www/whoami.txt
httpd -p 80 -h /www
(
    while :; do
        read n rest < /sys/firmware/acpi/interrupts/ff_pwr_btn
        if [ "${n:-0}" != 0 ]; then
            echo KEEL-WF-POWER-BUTTON
            sync
            mount -o remount,ro /
            poweroff -f
        fi
        sleep 0.2
    done
) &
echo "KEEL-WF-READY $ip"
exec sh </dev/console >/dev/console 2>&1
"#;

/// The ext4 root filesystem image: `mke2fs -t ext4 -d` of a tree with
/// static busybox and its applet links, the init and the web root.
fn root_image(dir: &Path) -> PathBuf {
    let tree = dir.join("rootfs");
    for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "www"] {
        fs::create_dir_all(tree.join(sub)).expect("rootfs dir");
    }
    fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    // Relative links: `busybox --install` would name the build host's path.
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list: {list:?}");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet))
                .expect("applet link");
        }
    }
    fs::write(tree.join("sbin/init"), ROOT_INIT).expect("init");
    fs::write(tree.join("www/index.html"), INDEX).expect("index");
    let mut chmod = Command::new("chmod");
    chmod.arg("755").arg(tree.join("sbin/init"));
    assert!(chmod.status().is_ok_and(|s| s.success()), "chmod");
    let image = dir.join("root.ext4");
    let out = Command::new("timeout")
        .arg("60")
        .args(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "keel-root", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg(format!("{ROOT_MIB}M"))
        .output()
        .expect("mke2fs (e2fsprogs)");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn guest_initrd(peer: &Path) -> Vec<u8> {
    let modules = [super::VIRTIO_PCI_MODULES, MODULES].concat();
    let init = format!("{}{INITRD_INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &format!("{} button", modules.join(" ")));
    let button = super::vm_lifecycle::button_module(peer);
    super::peer_initrd(
        &modules,
        &[
            ("modules/button.ko", 0o644, &button),
            ("init", 0o755, init.as_bytes()),
        ],
    )
}

/// The workflow's host, running: the image in QEMU with `bond0` in LACP
/// with OVS (both members enabled), tgtd with mutual CHAP on the storage
/// VLAN, a test host port on VLAN 30, and the boot archive's library
/// holding the Debian kernel and the guest initrd that boots `/dev/vda`
/// as an ext4 root ([`root_image`]). Field order is drop order: QEMU, then
/// tgtd, then the switch and its namespace.
pub(super) struct WorkflowHost {
    pub(super) qemu: qemu_tests::Qemu,
    pub(super) tgtd: Tgtd,
    pub(super) switch: LacpSwitch,
    /// The ext4 root image for the guests' VDI.
    pub(super) root: PathBuf,
}

impl WorkflowHost {
    /// Boots it (namespace `keel-<name>-<pid>`, 2 CPUs and 1 GiB) with a
    /// LUN of `lun_bytes`; every process it starts dies after `hard_timeout`.
    pub(super) fn start(name: &str, lun_bytes: u64, hard_timeout: Duration) -> WorkflowHost {
        let builder = keel(2, 1024).hard_timeout(hard_timeout);
        let peer = workspace_root().join("target/peer");
        let mut cpio = Cpio::default();
        cpio.file(
            "host-config.bin",
            0o644,
            &fs::read(super::compile_host_config(builder.dir(), name, CONFIG)).expect("the config"),
        );
        super::debian_library(&mut cpio, &guest_initrd(&peer));
        let archive = builder.dir().join("modules.cpio");
        fs::write(&archive, cpio.finish()).expect("write archive");
        let root = root_image(builder.dir());

        let mut ports = MGMT_AND_STORAGE.to_vec();
        ports.push(Port {
            name: "vlan30",
            tag: VLAN,
            cidr: VLAN_PEER,
            mtu: None,
        });
        let switch = LacpSwitch::start(
            name,
            &builder.dir().join("ovs"),
            &[5, 20, VLAN],
            &ports,
            hard_timeout,
        );
        let tgtd = Tgtd::start_in(
            builder.dir(),
            &switch.ns.0,
            STORAGE_PEER,
            lun_bytes,
            hard_timeout,
        );
        let qemu = builder
            .initrd(&archive)
            .tap(&switch.taps[0])
            .tap(&switch.taps[1])
            .netns(&switch.ns.0)
            .spawn()
            .expect("spawn QEMU");
        qemu.wait_for_serial("net: storage on bond0 VLAN 20", BOOT_TIMEOUT)
            .expect("storage network up on the console");
        let lacp = switch.wait_both_members_enabled(&qemu);
        println!(
            "FIGURE workflow host {name}: OVS enabled both bond members {:.1} s after the storage network came up",
            lacp.as_secs_f64()
        );
        WorkflowHost {
            qemu,
            tgtd,
            switch,
            root,
        }
    }

    /// `python3 script` in the namespace (it reaches the management address
    /// through OVS and the bond, and VLAN 30 from its port there) with the
    /// SDK flows' environment: the API, the root image, VLAN 30 and the
    /// test host's address there, the guest's address, the iSCSI target and its CHAP secrets.
    pub(super) fn flow(&self, script: &str) -> Command {
        let mut python = Command::new("ip");
        python
            .args(["netns", "exec", &self.switch.ns.0, "python3"])
            .arg(workspace_root().join("qemu-tests/tests/image").join(script))
            .env("KEEL_URL", format!("http://{MGMT_IP}"))
            .env("KEEL_PASSWORD", PASSWORD)
            .env("ROOT_IMAGE", &self.root)
            .env("INDEX", INDEX.trim())
            .env("VLAN", VLAN.to_string())
            .env("VLAN_PEER", VLAN_PEER)
            .env("GUEST_IP", GUEST_IP);
        self.tgtd.sdk_env(&mut python, STORAGE_PEER);
        python
    }

    /// Asserts the guests' boots went right: every module loaded, the root
    /// mounted, the network configured, no panic.
    pub(super) fn assert_guests_booted(serial: &str) {
        let tail = super::serial_end(serial);
        for bad in [
            "KEEL-INSMOD-FAILED",
            "KEEL-WF-ROOT-MOUNT-FAILED",
            "KEEL-WF-NO-NET",
            "Kernel panic",
        ] {
            assert!(!serial.contains(bad), "{bad}\n{tail}");
        }
    }
}

#[test]
fn the_issue_8_workflow_sr_vlan_network_vdi_vm_clone_through_the_sdk() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP the_issue_8_workflow_sr_vlan_network_vdi_vm_clone_through_the_sdk: {why}");
        return;
    }
    let host = WorkflowHost::start("qwf", LUN_BYTES, HARD_TIMEOUT);
    let mut python = host.flow("workflow_flow.py");
    python.env("CLONE_IP", CLONE_IP);
    let finished =
        run_bounded(python, FLOW_TIMEOUT, host.qemu.dir(), "workflow_flow").expect("the flow ends");
    let serial =
        super::assert_flow_passed(&finished, &host.qemu, "workflow_flow.py", "KEEL-WF-FLOW-OK");
    WorkflowHost::assert_guests_booted(&serial);
    let tail = super::serial_end(&serial);
    // The first shutdown went through the guest's ACPI power button.
    assert!(
        serial
            .lines()
            .any(|l| l.contains("vm wf1: ") && l.contains("KEEL-WF-POWER-BUTTON")),
        "{tail}"
    );
    // The flow's locking changes reached the switch port of the running
    // guest's VIF (appliance log lines), not just the database.
    for mode in [": disabled", ": locked to [", ": unlocked (MAC locked)"] {
        assert!(
            serial
                .lines()
                .any(|l| l.contains("vif: OpaqueRef:") && l.contains(mode)),
            "{mode}\n{tail}"
        );
    }
    assert!(
        host.switch.both_members_enabled(),
        "both members still enabled"
    );
    drop(host);
}
