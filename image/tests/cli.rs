//! Runs the built `host-config` binary the way an operator does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GOOD: &str = r#"hostname = "xen1"
root_password = "correct horse battery"

[management]
interface = "eth0"
mode = "static"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
"#;

fn host_config(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-config"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// A scratch directory per test, under the target dir cargo gives tests.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("host-config-cli")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn check_compile_show_a_good_file() {
    let dir = scratch("good");
    let toml = dir.join("host.toml");
    let module = dir.join("host.bin");
    std::fs::write(&toml, GOOD).expect("write");

    let out = host_config(&["check", path(&toml)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: xen1, management static 192.0.2.10/24\n"
    );

    let out = host_config(&["compile", path(&toml), "-o", path(&module)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bytes = std::fs::read(&module).expect("module written");
    assert_eq!(&bytes[..8], b"KEELHCFG");
    assert_eq!(
        host_config::decode(&bytes).expect("decodes").hostname,
        "xen1"
    );

    let out = host_config(&["show", path(&module)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("hostname:      xen1"), "{shown}");
    assert!(shown.contains("root password: set"), "{shown}");
    assert!(
        !shown.contains("pbkdf2-sha256$"),
        "show leaks the hash: {shown}"
    );
}

#[test]
fn bad_address_reports_its_line() {
    let dir = scratch("bad-address");
    let toml = dir.join("host.toml");
    let module = dir.join("host.bin");
    std::fs::write(&toml, GOOD.replace("192.0.2.10/24", "10.0.0.300/24")).expect("write");

    for args in [
        vec!["check", path(&toml)],
        vec!["compile", path(&toml), "-o", path(&module)],
    ] {
        let out = host_config(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("{}:7:11: ", toml.display())),
            "{stderr}"
        );
        assert!(stderr.contains(":7:"), "{stderr}");
        assert!(stderr.contains("10.0.0.300"), "{stderr}");
    }
    assert!(!module.exists(), "no module is written for a bad file");
}

#[test]
fn show_rejects_a_corrupt_module() {
    let dir = scratch("corrupt");
    let module = dir.join("host.bin");
    let mut bytes = host_config::encode(&host_config::HostConfig::default());
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&module, bytes).expect("write");
    let out = host_config(&["show", path(&module)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checksum mismatch"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["check"],
        &["compile", "x.toml"],
        &["show", "a", "b"],
    ] {
        let out = host_config(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("usage:"), "{args:?}");
    }
    assert_eq!(host_config(&["--help"]).status.code(), Some(0));
}

#[test]
fn missing_file_exits_1() {
    let out = host_config(&["check", "/nonexistent/host.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("/nonexistent/host.toml: cannot read:"));
}

#[test]
fn shipped_example_checks() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("host-config.example.toml");
    let out = host_config(&["check", path(&example)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
