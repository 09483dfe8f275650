//! The XenAPI served by the image, driven by the same clients as the hosted
//! service: the pytest suite with the PyPI `XenAPI` SDK (which also runs
//! Xen Orchestra's npm `xen-api` client) against the forwarded port; then
//! `host.disable` and `host.shutdown` power the machine off.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use qemu_tests::{PortRelay, Qemu, run_bounded, workspace_root};

use super::{BOOT_TIMEOUT, health, keel};

const HOSTNAME: &str = "keel-api-test";
const PASSWORD: &str = "qemu-xenapi-password";
/// The address QEMU's user network leases to the image.
const ADDRESS: &str = "10.0.2.15";

/// The suite takes about 30 s under TCG on an idle machine; CI shares 2 cores.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
const HARD_TIMEOUT: Duration = Duration::from_secs(420);

/// Compiles the host config naming the host and its root password.
fn host_config(dir: &std::path::Path) -> PathBuf {
    super::compile_host_config(
        dir,
        "api",
        &format!("hostname = \"{HOSTNAME}\"\nroot_password = \"{PASSWORD}\"\n"),
    )
}

fn boot() -> Qemu {
    let builder = keel(2, 512).hard_timeout(HARD_TIMEOUT);
    let module = host_config(builder.dir());
    let qemu = builder.initrd(module).spawn().expect("spawn QEMU");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], HOSTNAME, "{json}");
    qemu
}

#[test]
fn python_sdk_and_xen_orchestra_client_against_the_image() {
    let qemu = boot();
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");
    // Xen Orchestra's client opens a connection per object class at once;
    // QEMU's port forward queues one (see `PortRelay`), the relay all of them.
    let relay = PortRelay::start(([127, 0, 0, 1], qemu.http_port()).into()).expect("relay");
    let tls_relay =
        PortRelay::start(([127, 0, 0, 1], qemu.https_port()).into()).expect("https relay");
    let root = workspace_root();
    let mut pytest = Command::new("python3");
    pytest
        .current_dir(&root)
        .args([
            "-m",
            "pytest",
            "appliance/tests/python",
            // It restarts keel-hosted processes of its own; the image's
            // database is tested across reboots by `persistence.rs`.
            "--ignore=appliance/tests/python/test_persistence.py",
            // It starts keel-hosted with a bonded host config; the image's
            // network layout is checked by `bond.rs`.
            "--ignore=appliance/tests/python/test_networks.py",
            // It starts keel-hosted with certificates of its own; the image
            // serving a supplied certificate is checked by `persistence.rs`.
            "--ignore=appliance/tests/python/test_supplied_certificate.py",
            // It starts keel-hosted with files as host disks; the image's
            // local SRs are checked by `local_sr.rs`.
            "--ignore=appliance/tests/python/test_local_sr.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .env("KEEL_URL", format!("http://127.0.0.1:{}", relay.port()))
        .env(
            "KEEL_TLS_URL",
            format!("https://127.0.0.1:{}", tls_relay.port()),
        )
        .env("KEEL_PASSWORD", PASSWORD)
        .env("KEEL_HOSTNAME", HOSTNAME)
        .env("KEEL_ADDRESS", ADDRESS)
        // test_iscsi.py's tgtd listens on the host's loopback: 10.0.2.2 from the guest.
        .env("KEEL_ISCSI_ADDRESS", "10.0.2.2")
        .env_remove("KEEL_HOSTED");
    let finished =
        run_bounded(pytest, SUITE_TIMEOUT, qemu.dir(), "pytest").expect("pytest finishes");
    assert!(
        finished.status.success(),
        "pytest against the image failed ({}):\n{}",
        finished.status,
        finished.output()
    );
    assert!(
        finished.stdout.contains(" passed") && !finished.stdout.contains(" skipped"),
        "{}",
        finished.output()
    );
    // Whatever the suite threw at it, the host is still up.
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    assert!(qemu.try_exit_status().expect("poll QEMU").is_none());

    // Maintenance mode, then host.shutdown powers the machine off (ACPI S5).
    let script = format!(
        "import XenAPI\n\
         s = XenAPI.Session('http://127.0.0.1:{port}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}', '2.21', 'shutdown')\n\
         host = s.xenapi.host.get_all()[0]\n\
         s.xenapi.host.disable(host)\n\
         s.xenapi.host.evacuate(host)\n\
         print(repr(s.xenapi.host.shutdown(host)))\n",
        port = relay.port()
    );
    let mut shutdown = Command::new("python3");
    shutdown.arg("-c").arg(&script);
    let finished = run_bounded(
        shutdown,
        Duration::from_secs(60),
        qemu.dir(),
        "host.shutdown",
    )
    .expect("host.shutdown answers");
    assert!(finished.status.success(), "{}", finished.output());
    assert_eq!(finished.stdout.trim(), "''", "{}", finished.output());
    qemu.wait_for_serial("power: off (ACPI S5)", super::EXIT_TIMEOUT)
        .expect("the host powers off");
    let status = qemu
        .wait_exit(super::EXIT_TIMEOUT)
        .expect("QEMU exits on S5");
    assert_eq!(status.code(), Some(0), "{status}");
}
