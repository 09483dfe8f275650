//! File-level operations shared by the `host-config` binary and `cargo xtask`,
//! with errors already in `FILE:LINE:COLUMN: message` form.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::module::{decode, encode};
use crate::password::PasswordHash;
use crate::schema::{
    BondHashing, BondMode, HostConfig, IpMode, KeyKind, LacpRate, NetworkPurpose, Vlan,
};
use crate::toml_front::parse_toml_in;

/// Reads and validates a TOML host configuration.
pub fn load_file(path: &Path) -> Result<HostConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_toml_in(&text, base)
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

/// One line: `<hostname>, management <dhcp|static a.b.c.d/n>`, then where
/// management runs when that is a bond or VLAN, each further network, and
/// the bonds.
pub fn summary(cfg: &HostConfig) -> String {
    let m = &cfg.management;
    let mut out = format!("{}, management {}", cfg.hostname, ip_text(&m.ip));
    if m.vlan.is_some() || m.interface.starts_with("bond") || m.mtu != crate::DEFAULT_MTU {
        out.push_str(&placement(&m.interface, m.vlan, m.mtu));
    }
    for net in &cfg.networks {
        let _ = write!(
            out,
            ", {} {}{}",
            net.name,
            ip_text(&net.ip),
            placement(&net.interface, net.vlan, net.mtu)
        );
    }
    for bond in &cfg.bonds {
        let _ = write!(
            out,
            "; {} {} of {}",
            bond.name,
            mode_text(bond.mode),
            bond.members.join("+")
        );
    }
    out
}

fn ip_text(ip: &IpMode) -> String {
    match ip {
        IpMode::Dhcp => "dhcp".into(),
        IpMode::Static(s) => format!("static {}/{}", Ipv4Addr::from(s.address), s.prefix_len),
    }
}

/// ` on <interface>[ VLAN n[ native]][ MTU m]`.
fn placement(interface: &str, vlan: Option<Vlan>, mtu: u16) -> String {
    let mut out = format!(" on {interface}");
    if let Some(v) = vlan {
        let _ = write!(
            out,
            " VLAN {}{}",
            v.id,
            if v.native { " native" } else { "" }
        );
    }
    if mtu != crate::DEFAULT_MTU {
        let _ = write!(out, " MTU {mtu}");
    }
    out
}

fn mode_text(mode: BondMode) -> &'static str {
    match mode {
        BondMode::Lacp => "lacp",
        BondMode::ActiveBackup => "active-backup",
        BondMode::BalanceSlb => "balance-slb",
    }
}

fn vlan_text(vlan: Option<Vlan>) -> String {
    match vlan {
        None => "none (untagged)".into(),
        Some(v) if v.native => format!("{} (native: untagged on the wire)", v.id),
        Some(v) => format!("{} (tagged)", v.id),
    }
}

/// The IP lines of `describe`, indented by `indent`.
fn describe_ip(out: &mut String, indent: &str, ip: &IpMode) {
    match ip {
        IpMode::Dhcp => {
            let _ = writeln!(out, "{indent}mode:          dhcp");
        }
        IpMode::Static(s) => {
            let _ = writeln!(out, "{indent}mode:          static");
            let _ = writeln!(
                out,
                "{indent}address:       {}/{}",
                Ipv4Addr::from(s.address),
                s.prefix_len
            );
            let gateway = s
                .gateway
                .map_or_else(|| "none".into(), |g| Ipv4Addr::from(g).to_string());
            let _ = writeln!(out, "{indent}gateway:       {gateway}");
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
            let _ = writeln!(out, "{indent}dns:           {dns}");
        }
    }
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
    let m = &cfg.management;
    let _ = writeln!(out, "interface:     {}", m.interface);
    describe_ip(&mut out, "", &m.ip);
    let _ = writeln!(out, "vlan:          {}", vlan_text(m.vlan));
    let _ = writeln!(out, "mtu:           {}", m.mtu);
    for bond in &cfg.bonds {
        let _ = writeln!(out, "bond {}:", bond.name);
        let _ = writeln!(out, "  members:     {}", bond.members.join(", "));
        let _ = writeln!(out, "  mode:        {}", mode_text(bond.mode));
        if bond.mode == BondMode::Lacp {
            let hashing = match bond.hashing {
                BondHashing::SrcMac => "src_mac",
                BondHashing::TcpUdpPorts => "tcpudp_ports",
            };
            let rate = match bond.lacp_rate {
                LacpRate::Fast => "fast",
                LacpRate::Slow => "slow",
            };
            let _ = writeln!(out, "  hashing:     {hashing}");
            let _ = writeln!(out, "  lacp rate:   {rate}");
            let _ = writeln!(
                out,
                "  priorities:  system {}, port {}",
                bond.lacp_system_priority, bond.lacp_port_priority
            );
        }
    }
    for net in &cfg.networks {
        let purpose = match net.purpose {
            NetworkPurpose::Storage => "storage",
            NetworkPurpose::Migration => "migration",
        };
        let _ = writeln!(out, "network {} ({purpose}):", net.name);
        let _ = writeln!(out, "  interface:     {}", net.interface);
        let _ = writeln!(out, "  vlan:          {}", vlan_text(net.vlan));
        let _ = writeln!(out, "  mtu:           {}", net.mtu);
        describe_ip(&mut out, "  ", &net.ip);
    }
    let _ = writeln!(out, "trusted keys:  {}", cfg.trusted_keys.len());
    for key in &cfg.trusted_keys {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "  ed25519 {hex}");
    }
    match &cfg.tls {
        None => {
            let _ = writeln!(out, "tls:           made by the host at first boot");
        }
        Some(tls) => {
            let kind = match tls.key_kind {
                KeyKind::Pkcs8 => "PKCS#8",
                KeyKind::Sec1 => "SEC 1 EC",
                KeyKind::Pkcs1 => "PKCS#1 RSA",
            };
            let _ = writeln!(
                out,
                "tls:           supplied: {} certificate(s), {kind} key",
                tls.certificate_chain.len()
            );
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
        assert_eq!(
            summary(&cfg),
            "xen1, management static 192.0.2.10/24 on bond0 VLAN 5 native, \
             storage static 198.51.100.10/24 on bond0 VLAN 20 MTU 9000; bond0 lacp of eth0+eth1"
        );
        let shown = describe(&cfg);
        assert!(shown.contains("root password: set (pbkdf2-sha256, 100000 iterations)"));
        assert!(!shown.contains("$pbkdf2"), "show must not print the hash");
        assert!(
            shown.contains("vlan:          5 (native: untagged on the wire)"),
            "{shown}"
        );
        assert!(shown.contains("network storage (storage):"), "{shown}");
        assert!(shown.contains("  members:     eth0, eth1"), "{shown}");
    }

    #[test]
    fn errors_name_the_file() {
        let missing = Path::new("/nonexistent/host.toml");
        let e = compile_file(missing).expect_err("no such file");
        assert!(e.starts_with("/nonexistent/host.toml: cannot read:"), "{e}");
    }
}
