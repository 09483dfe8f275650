//! The XenAPI database lives on the state disk: what a client changed is
//! there after a reboot, and after a power cut in the middle of a stream of
//! changes every acknowledged change is. A disk with other data on it is
//! never taken. Driven with the PyPI `XenAPI` SDK.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host_config::artifacts;
use host_config::disk_layout::{self, Role, SECTOR_BYTES};
use qemu_tests::{Qemu, TestDir, host_config_bin_from_env, media_from_env};

use super::{BOOT_TIMEOUT, health, keel};

const PASSWORD: &str = "qemu-persist-password";
const DISK_BYTES: u64 = 16 << 20;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn host_config(dir: &Path) -> PathBuf {
    host_config_with(dir, "persist", "")
}

/// A module from `<name>.toml` in `dir`: the hostname and password, then `extra`.
fn host_config_with(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let (toml, module) = (
        dir.join(format!("{name}.toml")),
        dir.join(format!("{name}.bin")),
    );
    fs::write(
        &toml,
        format!("hostname = \"keel-persist\"\nroot_password = \"{PASSWORD}\"\n{extra}"),
    )
    .expect("write the config");
    let out = Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module)
        .output()
        .expect("run host-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    module
}

/// A blank state disk of [`DISK_BYTES`] in `dir`.
fn blank_disk(dir: &Path) -> PathBuf {
    super::blank_disk(dir.join("state.img"), DISK_BYTES)
}

fn boot(disk: &Path, module: &Path) -> Qemu {
    let qemu = keel(2, 512)
        .initrd(module)
        .disk(disk)
        .spawn()
        .expect("spawn QEMU");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    qemu
}

/// Runs a Python snippet with a logged-in `XenAPI` session `s` against `qemu`;
/// returns its stdout.
fn python(qemu: &Qemu, body: &str) -> String {
    let script = format!(
        "import XenAPI, sys\n\
         s = XenAPI.Session('http://127.0.0.1:{}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         {body}\n",
        qemu.http_port()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client failed: {}\nserial:\n{}",
        String::from_utf8_lossy(&out.stderr),
        qemu.serial_tail(20)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The HTTPS certificate's fingerprint as the serial log announces it
/// (`stored` or `new`), checked against the one the server presents over TLS
/// and the one `/health` reports.
fn tls_fingerprint(qemu: &Qemu, origin: &str) -> String {
    let line = qemu
        .wait_for_serial(
            &format!("tls: serving https on port 443 with the {origin} certificate, sha256 "),
            BOOT_TIMEOUT,
        )
        .expect("the https line");
    let logged = line
        .rsplit("sha256 ")
        .next()
        .expect("a fingerprint")
        .trim()
        .to_string();
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import ssl, hashlib, json, urllib.request\n\
             pem = ssl.get_server_certificate(('127.0.0.1', {port}))\n\
             der = ssl.PEM_cert_to_DER_cert(pem)\n\
             print(':'.join('%02X' % b for b in hashlib.sha256(der).digest()))\n\
             ctx = ssl.create_default_context(cadata=pem)\n\
             ctx.check_hostname = False\n\
             h = json.load(urllib.request.urlopen('https://127.0.0.1:{port}/health', context=ctx, timeout=60))\n\
             print(h['tls_sha256'])\n",
            port = qemu.https_port()
        ))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "https client failed: {}\nserial:\n{}",
        String::from_utf8_lossy(&out.stderr),
        qemu.serial_tail(20)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let seen: Vec<&str> = stdout.lines().collect();
    assert_eq!(seen, [logged.as_str(), logged.as_str()], "{stdout}");
    logged
}

#[test]
fn the_database_survives_reboots_and_power_cuts() {
    let dir = TestDir::new("persistence").expect("test dir");
    let disk = blank_disk(dir.path());
    let module = host_config(dir.path());

    // First boot: a blank disk becomes the state store; make changes.
    let qemu = boot(&disk, &module);
    qemu.wait_for_serial(
        "db: blk0 was blank: formatted the whole disk as the state store",
        BOOT_TIMEOUT,
    )
    .expect("the blank disk is taken");
    // The host's certificate is made at first boot and kept in the store.
    let certificate = tls_fingerprint(&qemu, "new");
    let before = python(
        &qemu,
        "p = s.xenapi.pool.get_all()[0]\n\
         s.xenapi.pool.set_name_label(p, 'survives-reboots')\n\
         h = s.xenapi.host.get_all()[0]\n\
         s.xenapi.host.add_to_other_config(h, 'rack', 'r7')\n\
         print(s.xenapi.host.get_uuid(h))",
    );
    // Power cut: no shutdown, nothing flushed on the way out.
    qemu.kill();
    drop(qemu);

    // Second boot: the same objects, the same host identity.
    let qemu = boot(&disk, &module);
    qemu.wait_for_serial("db: database on blk0 (the whole disk):", BOOT_TIMEOUT)
        .expect("the store is opened");
    assert_eq!(tls_fingerprint(&qemu, "stored"), certificate);
    let after = python(
        &qemu,
        "p = s.xenapi.pool.get_all()[0]\n\
         h = s.xenapi.host.get_all()[0]\n\
         print(s.xenapi.host.get_uuid(h))\n\
         print(s.xenapi.pool.get_name_label(p))\n\
         print(s.xenapi.host.get_other_config(h)['rack'])",
    );
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines, [before.trim(), "survives-reboots", "r7"], "{after}");

    // A stream of changes, cut in the middle: every acknowledged one is kept.
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import XenAPI, sys\n\
             s = XenAPI.Session('http://127.0.0.1:{}')\n\
             s.xenapi.login_with_password('root', '{PASSWORD}')\n\
             p = s.xenapi.pool.get_all()[0]\n\
             for i in range(100000):\n    \
                 s.xenapi.pool.set_name_description(p, 'change-%d' % i)\n    \
                 print(i, flush=True)\n",
            qemu.http_port()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the client");
    let mut acked: Option<u64> = None;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    {
        let stdout = client.stdout.take().expect("client stdout");
        let mut lines = BufReader::new(stdout).lines();
        while acked.is_none_or(|n| n < 30) && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => acked = line.trim().parse().ok(),
                _ => break,
            }
        }
        // Cut the power while changes are still coming in.
        qemu.kill();
        for line in lines.map_while(Result::ok) {
            if let Ok(n) = line.trim().parse() {
                acked = Some(n);
            }
        }
    }
    let _ = client.kill();
    let _ = client.wait();
    let acked = acked.expect("the client made changes");
    drop(qemu);

    let qemu = boot(&disk, &module);
    qemu.wait_for_serial("db: database on blk0 (the whole disk):", BOOT_TIMEOUT)
        .expect("the store opens after the power cut");
    let kept = python(
        &qemu,
        "print(s.xenapi.pool.get_name_description(s.xenapi.pool.get_all()[0]))",
    );
    let kept: u64 = kept
        .trim()
        .strip_prefix("change-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected description {kept:?}"));
    eprintln!("power cut after change-{acked} was acknowledged; change-{kept} was kept");
    // The change in flight when the power went may or may not have landed.
    assert!(
        kept == acked || kept == acked + 1,
        "acknowledged up to change-{acked}, found change-{kept}"
    );
    assert!(!qemu.serial().contains("KERNEL PANIC"));
}

#[test]
fn a_disk_with_other_data_is_not_taken() {
    let dir = TestDir::new("persistence-foreign").expect("test dir");
    let disk = dir.path().join("foreign.img");
    let pattern: Vec<u8> = (0..DISK_BYTES / 16).map(|i| (i * 7 + 1) as u8).collect();
    fs::write(&disk, &pattern).expect("write the foreign disk");
    let module = host_config(dir.path());
    let qemu = boot(&disk, &module);
    qemu.wait_for_serial("db: no state disk", BOOT_TIMEOUT)
        .expect("no state disk is chosen");
    assert!(
        qemu.serial().contains("db: blk0 is not a state disk"),
        "the reason is logged"
    );
    python(
        &qemu,
        "s.xenapi.pool.set_name_label(s.xenapi.pool.get_all()[0], 'in-memory')",
    );
    qemu.kill();
    assert_eq!(
        fs::read(&disk).expect("read back"),
        pattern,
        "the disk was written"
    );
}

#[test]
fn on_a_keel_disk_the_database_lives_in_the_state_partition() {
    let dir = TestDir::new("persistence-keel-disk").expect("test dir");
    let disk = dir.path().join("keel-disk.img");
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    fs::copy(media.join(artifacts::DISK_IMAGE), &disk).expect("copy the disk image");
    let original = fs::read(&disk).expect("read the disk image");
    let module = host_config(dir.path());

    let qemu = boot(&disk, &module);
    qemu.wait_for_serial(
        "db: blk0 was blank: formatted its keel state partition as the state store",
        BOOT_TIMEOUT,
    )
    .expect("the state partition is taken");
    python(
        &qemu,
        "s.xenapi.pool.set_name_label(s.xenapi.pool.get_all()[0], 'on-the-keel-disk')",
    );
    qemu.kill();
    drop(qemu);

    let qemu = boot(&disk, &module);
    qemu.wait_for_serial(
        "db: database on blk0 (its keel state partition):",
        BOOT_TIMEOUT,
    )
    .expect("the store is found again");
    let label = python(
        &qemu,
        "print(s.xenapi.pool.get_name_label(s.xenapi.pool.get_all()[0]))",
    );
    assert_eq!(label.trim(), "on-the-keel-disk");
    qemu.kill();

    // Boot code, ESP and both slots are exactly as built.
    let state = disk_layout::partition(Role::State);
    let (start, end) = (
        (state.first_lba * SECTOR_BYTES) as usize,
        ((state.last_lba() + 1) * SECTOR_BYTES) as usize,
    );
    let now = fs::read(&disk).expect("read back");
    assert!(
        now[..start] == original[..start],
        "written outside the state partition"
    );
    assert!(
        now[end..] == original[end..],
        "written outside the state partition"
    );
    assert!(
        now[start..end] != original[start..end],
        "the state partition holds the store"
    );
}

/// A self-signed ECDSA P-256 certificate and key from openssl, `<name>.crt`
/// and `<name>.key` in `dir`; returns the certificate's SHA-256 as
/// `AB:CD:...`.
fn openssl_certificate(dir: &Path, name: &str) -> String {
    let out = Command::new("timeout")
        .args(["60", "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .args(["-subj", &format!("/CN={name}")])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("timeout")
        .args([
            "60",
            "openssl",
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
        ])
        .arg(dir.join(format!("{name}.crt")))
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit('=')
        .next()
        .expect("a fingerprint")
        .to_string()
}

#[test]
fn a_certificate_supplied_in_the_host_config_is_served() {
    let dir = TestDir::new("persistence-supplied-tls").expect("test dir");
    let disk = blank_disk(dir.path());
    let supplied = openssl_certificate(dir.path(), "supplied");
    openssl_certificate(dir.path(), "other");
    let at = |cert: &str, key: &str| {
        format!(
            "tls_certificate_file = \"{}\"\ntls_key_file = \"{}\"\n",
            dir.path().join(format!("{cert}.crt")).display(),
            dir.path().join(format!("{key}.key")).display()
        )
    };
    let good = host_config_with(dir.path(), "good", &at("supplied", "supplied"));
    let qemu = boot(&disk, &good);
    assert_eq!(tls_fingerprint(&qemu, "supplied"), supplied);
    qemu.kill();
    drop(qemu);

    // A key that is not the certificate's: logged, and the host's own
    // certificate (made now: the supplied one was never stored) is served.
    let mismatched = host_config_with(dir.path(), "mismatched", &at("supplied", "other"));
    let qemu = boot(&disk, &mismatched);
    let own = tls_fingerprint(&qemu, "new");
    assert_ne!(own, supplied);
    assert!(
        qemu.serial().contains(
            "tls: the certificate supplied in the host config cannot be used: the key does not \
             match the certificate"
        ),
        "the reason is logged:\n{}",
        qemu.serial_tail(30)
    );
    assert!(!qemu.serial().contains("KERNEL PANIC"));
}

#[test]
fn a_vm_marked_auto_poweron_starts_at_the_next_boot() {
    let dir = TestDir::new("auto-poweron").expect("test dir");
    let disk = blank_disk(dir.path());
    let config = fs::read(host_config(dir.path())).expect("read the host config");
    let peer = qemu_tests::workspace_root().join("target/peer");
    let mut cpio = qemu_tests::cpio::Cpio::default();
    cpio.file("host-config.bin", 0o644, &config);
    cpio.directory("library");
    cpio.directory("library/debian");
    cpio.file(
        "library/debian/vmlinuz",
        0o644,
        &fs::read(peer.join("vmlinuz")).expect("target/peer/vmlinuz (run `cargo xtask setup`)"),
    );
    // The peer's initrd says it ran and powers off.
    cpio.file(
        "library/debian/initrd",
        0o644,
        &fs::read(peer.join("initrd.gz")).expect("target/peer/initrd.gz"),
    );
    let module = dir.path().join("modules.cpio");
    fs::write(&module, cpio.finish()).expect("write the archive");

    let qemu = boot(&disk, &module);
    python(
        &qemu,
        "x = s.xenapi\n\
         p = x.pool.get_all()[0]\n\
         x.pool.add_to_other_config(p, 'auto_poweron', 'true')\n\
         t = x.VM.get_by_name_label('Debian-style direct boot')[0]\n\
         for name in ['autostart', 'stays-off']:\n    \
             vm = x.VM.clone(t, name)\n    \
             x.VM.provision(vm)\n    \
             x.VM.set_is_a_template(vm, False)\n    \
             x.VM.set_PV_kernel(vm, 'boot:debian/vmlinuz')\n    \
             x.VM.set_PV_ramdisk(vm, 'boot:debian/initrd')\n    \
             x.VM.set_PV_args(vm, 'console=ttyS0 quiet')\n    \
             m = str(128 << 20)\n    \
             x.VM.set_memory_limits(vm, m, m, m, m)\n\
         x.VM.add_to_other_config(x.VM.get_by_name_label('autostart')[0], 'auto_poweron', 'true')",
    );
    assert!(
        !qemu.serial().contains("vm autostart:"),
        "nothing starts before the reboot"
    );
    qemu.kill();
    drop(qemu);

    let qemu = boot(&disk, &module);
    qemu.wait_for_serial("vm autostart: KEEL-PEER-INIT-REACHED", BOOT_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "the VM was not started at boot: {e}\n{}",
                qemu.serial_tail(30)
            )
        });
    let started = python(
        &qemu,
        "x = s.xenapi\n\
         for name in ['autostart', 'stays-off']:\n    \
             vm = x.VM.get_by_name_label(name)[0]\n    \
             print(name, x.VM_metrics.get_start_time(x.VM.get_metrics(vm)).value[:4])",
    );
    assert!(started.contains("autostart 20"), "{started}");
    assert!(started.contains("stays-off 1970"), "{started}");
    assert!(!qemu.serial().contains("vm stays-off:"));
}

#[test]
fn a_reconfigured_management_address_is_kept_across_a_reboot() {
    let dir = TestDir::new("reconfigure-ip").expect("test dir");
    let disk = blank_disk(dir.path());
    // The host config asks for DHCP; QEMU's user network leases 10.0.2.15,
    // which the static configuration keeps (the port forward points there).
    let module = host_config(dir.path());
    let qemu = boot(&disk, &module);
    qemu.wait_for_serial("DHCP lease 10.0.2.15/24", BOOT_TIMEOUT)
        .expect("the lease");
    python(
        &qemu,
        "x = s.xenapi\n\
         pif = [p for p in x.PIF.get_all() if x.PIF.get_management(p)][0]\n\
         x.PIF.reconfigure_ip(pif, 'Static', '10.0.2.15', '255.255.255.0', '10.0.2.2', '10.0.2.3')",
    );
    qemu.wait_for_serial("static 10.0.2.15/24", BOOT_TIMEOUT)
        .expect("applied live");
    qemu.kill();
    drop(qemu);

    let qemu = boot(&disk, &module);
    qemu.wait_for_serial(
        "net: management addressing from PIF.reconfigure_ip kept: static,10.0.2.15,24,10.0.2.2,10.0.2.3",
        BOOT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", qemu.serial_tail(30)));
    let shown = python(
        &qemu,
        "x = s.xenapi\n\
         pif = [p for p in x.PIF.get_all() if x.PIF.get_management(p)][0]\n\
         print(x.PIF.get_ip_configuration_mode(pif), x.PIF.get_IP(pif), x.PIF.get_gateway(pif))",
    );
    assert_eq!(shown.trim(), "Static 10.0.2.15 10.0.2.2", "{shown}");
}
