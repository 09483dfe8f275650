//! The host configuration, compiled by the `host-config` tool, reaches the
//! image as its boot module; bad files are rejected with their line.

use std::fs;
use std::process::Command;

use qemu_tests::{TestDir, host_config_bin_from_env};

use super::{BOOT_TIMEOUT, health, keel};

const STATIC_CONFIG: &str = r#"hostname = "keel-static-test"
root_password = "qemu-tests-password"

[management]
interface = "eth0"
mode = "static"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
dns = ["10.0.2.3"]
"#;

/// Line 6 holds an address with an octet out of range.
const BAD_CONFIG: &str = r#"hostname = "keel-bad-test"
root_password = "qemu-tests-password"
[management]
interface = "eth0"
mode = "static"
address = "10.0.2.300/24"
gateway = "10.0.2.2"
"#;

#[test]
fn static_ip_from_host_config() {
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let builder = keel(2, 512);
    let (toml, module) = (
        builder.dir().join("static.toml"),
        builder.dir().join("static.bin"),
    );
    fs::write(&toml, STATIC_CONFIG).expect("write the config");
    let output = Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module)
        .output()
        .expect("run host-config");
    assert!(
        output.status.success(),
        "host-config compile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let qemu = builder.initrd(&module).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("static 10.0.2.15/24", BOOT_TIMEOUT)
        .expect("static address on the console");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-static-test", "{json}");
    assert_eq!(json["management_ip"], "10.0.2.15", "{json}");
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn bad_host_config_rejected_with_line_number() {
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let dir = TestDir::for_current_test().expect("test dir");
    let toml = dir.path().join("bad.toml");
    fs::write(&toml, BAD_CONFIG).expect("write the config");
    for args in [vec!["check"], vec!["compile", "-o", "bad.bin"]] {
        let output = Command::new(&tool)
            .current_dir(dir.path())
            .args(&args[..1])
            .arg(&toml)
            .args(&args[1..])
            .output()
            .expect("run host-config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "host-config {args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{}:6:", toml.display())),
            "host-config {args:?} stderr: {stderr}"
        );
        assert!(
            !dir.path().join("bad.bin").exists(),
            "a rejected file must not produce a module"
        );
    }
}
