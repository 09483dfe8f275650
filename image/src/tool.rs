//! File-level operations shared by the `host-config` binary and `cargo xtask`,
//! with errors already in `FILE:LINE:COLUMN: message` form.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::module::{decode, encode};
use crate::password::PasswordHash;
use crate::schema::{HostConfig, IpMode};
use crate::toml_front::parse_toml;

/// Reads and validates a TOML host configuration.
pub fn load_file(path: &Path) -> Result<HostConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_toml(&text)
        .map_err(|e| format!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message))
}

/// Reads a TOML host configuration and compiles it into a boot module.
pub fn compile_file(path: &Path) -> Result<Vec<u8>, String> {
    load_file(path).map(|cfg| encode(&cfg))
}

/// Reads and decodes a boot module file.
pub fn read_module(path: &Path) -> Result<HostConfig, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// One line: `<hostname>, management <dhcp|static a.b.c.d/n>`.
pub fn summary(cfg: &HostConfig) -> String {
    let ip = match &cfg.management.ip {
        IpMode::Dhcp => "dhcp".into(),
        IpMode::Static(s) => format!("static {}/{}", Ipv4Addr::from(s.address), s.prefix_len),
    };
    format!("{}, management {ip}", cfg.hostname)
}

/// Every setting, one per line, except the password hash itself: only
/// whether one is set and its cost (the hash is a secret's fingerprint).
pub fn describe(cfg: &HostConfig) -> String {
    let mut out = format!("hostname:      {}\n", cfg.hostname);
    let password = match cfg.root_password_hash.as_deref().map(PasswordHash::parse) {
        None => "not set (API logins are refused)".into(),
        Some(Ok(h)) => format!("set (pbkdf2-sha256, {} iterations)", h.iterations),
        Some(Err(e)) => format!("set but unusable: {e}"),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(out, "root password: {password}");
    let _ = writeln!(out, "interface:     {}", cfg.management.interface);
    match &cfg.management.ip {
        IpMode::Dhcp => {
            let _ = writeln!(out, "mode:          dhcp");
        }
        IpMode::Static(s) => {
            let _ = writeln!(out, "mode:          static");
            let _ = writeln!(
                out,
                "address:       {}/{}",
                Ipv4Addr::from(s.address),
                s.prefix_len
            );
            let gateway = s
                .gateway
                .map_or_else(|| "none".into(), |g| Ipv4Addr::from(g).to_string());
            let _ = writeln!(out, "gateway:       {gateway}");
            let dns: Vec<String> = s
                .dns
                .iter()
                .map(|&d| Ipv4Addr::from(d).to_string())
                .collect();
            let dns = if dns.is_empty() {
                "none".into()
            } else {
                dns.join(", ")
            };
            let _ = writeln!(out, "dns:           {dns}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("host-config.example.toml")
    }

    #[test]
    fn example_file_compiles_and_decodes() {
        let bytes = compile_file(&example()).expect("the shipped example compiles");
        let cfg = decode(&bytes).expect("and decodes");
        assert_eq!(summary(&cfg), "xen1, management static 192.0.2.10/24");
        let shown = describe(&cfg);
        assert!(shown.contains("root password: set (pbkdf2-sha256, 100000 iterations)"));
        assert!(!shown.contains("$pbkdf2"), "show must not print the hash");
    }

    #[test]
    fn errors_name_the_file() {
        let missing = Path::new("/nonexistent/host.toml");
        let e = compile_file(missing).expect_err("no such file");
        assert!(e.starts_with("/nonexistent/host.toml: cannot read:"), "{e}");
    }
}
