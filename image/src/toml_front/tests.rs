use super::*;
use crate::password::{hash_password, verify_password};
use crate::schema::{Bond, BondMode, NetworkPurpose, Vlan};

/// The error for `text`, which must be rejected.
fn error(text: &str) -> ConfigError {
    parse_toml(text).expect_err("should be rejected")
}

/// Asserts the error is on `line` and its message contains `needle`.
#[track_caller]
fn assert_error(text: &str, line: usize, needle: &str) -> ConfigError {
    let e = error(text);
    assert_eq!(e.line, line, "{e}");
    assert!(
        e.message.contains(needle),
        "{e:?} does not mention {needle:?}"
    );
    e
}

const STATIC: &str = r#"hostname = "xen1"

[management]
interface = "eth1"
mode = "static"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
dns = ["192.0.2.53", "198.51.100.53"]
"#;

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse_toml(""), Ok(HostConfig::default()));
    assert_eq!(parse_toml("# nothing\n"), Ok(HostConfig::default()));
}

#[test]
fn static_configuration() {
    let cfg = parse_toml(STATIC).expect("valid");
    assert_eq!(cfg.hostname, "xen1");
    assert_eq!(cfg.root_password_hash, None);
    assert_eq!(cfg.management.interface, "eth1");
    assert_eq!(
        cfg.management.ip,
        IpMode::Static(StaticIpv4 {
            address: [192, 0, 2, 10],
            prefix_len: 24,
            gateway: Some([192, 0, 2, 1]),
            dns: vec![[192, 0, 2, 53], [198, 51, 100, 53]],
        })
    );
}

#[test]
fn dhcp_and_defaults() {
    let cfg = parse_toml("[management]\nmode = \"dhcp\"\n").expect("valid");
    assert_eq!(cfg, HostConfig::default());
    let cfg = parse_toml("management = { mode = \"dhcp\", interface = \"eth2\" }").expect("valid");
    assert_eq!(cfg.management.interface, "eth2");
    assert_eq!(cfg.hostname, "keel");
}

#[test]
fn plain_password_is_hashed() {
    let cfg = parse_toml("root_password = \"correct horse\"\n").expect("valid");
    let hash = cfg.root_password_hash.expect("hashed");
    assert!(hash.starts_with("$pbkdf2-sha256$i=100000,l=32$"), "{hash}");
    assert_eq!(verify_password(&hash, "correct horse"), Ok(true));
}

#[test]
fn given_hash_is_kept() {
    let hash = hash_password("pw", [5; 16], 1_000);
    let cfg = parse_toml(&format!("root_password_hash = \"{hash}\"")).expect("valid");
    assert_eq!(cfg.root_password_hash, Some(hash));
}

#[test]
fn syntax_errors() {
    assert_error("hostname = \"xen1\"\n\nhostname \"xen2\"\n", 3, "expected");
    assert_error("hostname = \"xen1\n", 1, "");
    assert_error("hostname = \"a\"\nhostname = \"b\"\n", 2, "duplicate");
    assert_error("[management]\nmode = \"dhcp\"\n[management]\n", 3, "");
}

#[test]
fn unknown_keys() {
    let e = assert_error(
        "hostname = \"x\"\nhostnme = \"y\"\n",
        2,
        "unknown key `hostnme`",
    );
    assert_eq!(e.column, 1);
    let e = assert_error(
        "[management]\nmode = \"dhcp\"\n  adress = \"192.0.2.1/24\"\n",
        3,
        "unknown key `adress` in [management]",
    );
    assert_eq!(e.column, 3);
    assert_error("[netwrk]\nmode = \"dhcp\"\n", 1, "unknown key `netwrk`");
    assert_error(
        "[network]\nmode = \"dhcp\"\n",
        1,
        "`network` must be an array of tables ([[network]])",
    );
}

#[test]
fn missing_keys() {
    assert_error(
        "hostname = \"x\"\n[management]\ninterface = \"eth0\"\n",
        2,
        "missing `mode`",
    );
    let e = assert_error(
        "[management]\ninterface = \"eth0\"\nmode = \"static\"\n",
        3,
        "needs `address",
    );
    assert_eq!(e.column, 8, "points at the mode value");
}

#[test]
fn wrong_types() {
    let e = assert_error(
        "\nhostname = 5\n",
        2,
        "`hostname` must be a string, found integer",
    );
    assert_eq!(e.column, 12);
    assert_error("management = \"dhcp\"\n", 1, "`management` must be a table");
    assert_error("[management]\nmode = true\n", 2, "`mode` must be a string");
    assert_error(
        "[management]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\ndns = \"192.0.2.53\"\n",
        4,
        "array",
    );
    assert_error(
        "[management]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\ndns = [\n  \"192.0.2.53\",\n  53,\n]\n",
        6,
        "entries must be strings",
    );
    assert_error("root_password = [\"a\"]\n", 1, "must be a string");
}

#[test]
fn bad_values_point_at_the_value() {
    // Replace one line of STATIC at a time with a bad one, keeping numbering.
    let cases = [
        (1, "hostname = \"xen_1\"", "only letters"),
        (1, "hostname = \"\"", "empty"),
        (4, "interface = \"em1\"", "eth<N>"),
        (5, "mode = \"manual\"", "unknown mode"),
        (6, "address = \"10.0.0.300/24\"", "not an IPv4 address"),
        (6, "address = \"192.0.2.10\"", "needs a prefix length"),
        (6, "address = \"192.0.2.10/33\"", "outside 1..=32"),
        (6, "address = \"192.0.2.10/x\"", "not a number"),
        (6, "address = \"127.0.0.1/8\"", "loopback"),
        (6, "address = \"192.0.2.0/24\"", "network address"),
        (7, "gateway = \"198.51.100.1\"", "not inside 192.0.2.10/24"),
        (7, "gateway = \"192.0.2\"", "not an IPv4 address"),
        (
            8,
            "dns = [\"192.0.2.53\", \"1.1.1.1\", \"8.8.8.8\", \"9.9.9.9\"]",
            "at most 3",
        ),
        (8, "dns = [\"192.0.2.53\", \"224.0.0.251\"]", "multicast"),
    ];
    for (line, replacement, needle) in cases {
        let mut lines: Vec<&str> = STATIC.lines().collect();
        lines[line - 1] = replacement;
        let text = lines.join("\n");
        let e = assert_error(&text, line, needle);
        let value_column = replacement.find(" = ").map(|i| i + 4).unwrap_or(0);
        let column = if replacement.starts_with("dns") {
            // Entry errors point at the entry itself.
            let nth = if needle == "at most 3" { 3 } else { 1 };
            let quotes: Vec<usize> = replacement.match_indices('"').map(|(i, _)| i).collect();
            quotes[nth * 2] + 1
        } else {
            value_column
        };
        assert_eq!(e.column, column, "{replacement}: {e}");
    }
}

#[test]
fn static_keys_in_dhcp_mode() {
    assert_error(
        "[management]\nmode = \"dhcp\"\ninterface = \"eth0\"\ngateway = \"192.0.2.1\"\n",
        4,
        "`gateway` only applies to mode = \"static\"",
    );
    assert_error(
        "[management]\ndns = []\nmode = \"dhcp\"\naddress = \"192.0.2.9/24\"\n",
        2,
        "`dns` only applies",
    );
}

#[test]
fn passwords() {
    assert_error(
        "\n\nroot_password = \"short\"\n",
        3,
        "at least 8 characters",
    );
    assert_error(
        "root_password_hash = \"hunter22\"\n",
        1,
        "not a PBKDF2-SHA256 PHC string",
    );
    let hash = hash_password("pw", [5; 16], 999);
    assert_error(
        &format!("root_password_hash = \"{hash}\"\n"),
        1,
        "iteration count 999",
    );
    let hash = hash_password("pw", [5; 16], 1_000);
    assert_error(
        &format!("root_password = \"long enough\"\n\nroot_password_hash = \"{hash}\"\n"),
        3,
        "conflicts with `root_password`",
    );
}

#[test]
fn display_format() {
    let e = error("\n  bogus = 1\n");
    assert_eq!(e.to_string(), format!("line 2, column 3: {}", e.message));
}

#[test]
fn line_columns_count_characters() {
    assert_eq!(line_column("", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 3), (2, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    // "é" is two bytes but one column.
    assert_eq!(line_column("é = 1", 2), (1, 2));
    assert_eq!(line_column("é = 1", 3), (1, 3));
    assert_eq!(line_column("ab", 99), (1, 3));
}

/// The seed scenario: two NICs in a LACP bond, management untagged on
/// VLAN 5 (native), storage on VLAN 20 with jumbo frames.
const BONDED: &str = r#"hostname = "xen1"

[[bond]]
name = "bond0"
members = ["eth0", "eth1"]
mode = "lacp"
lacp_rate = "fast"
hashing = "tcpudp_ports"

[management]
interface = "bond0"
vlan = 5
native = true
mode = "static"
address = "192.0.2.10/24"
gateway = "192.0.2.1"

[[network]]
name = "storage"
purpose = "storage"
interface = "bond0"
vlan = 20
mtu = 9000
mode = "static"
address = "198.51.100.10/24"

[[network]]
name = "migration"
purpose = "migration"
interface = "bond0"
vlan = 30
mode = "dhcp"
"#;

#[test]
fn bonds_vlans_and_networks() {
    let cfg = parse_toml(BONDED).expect("valid");
    assert_eq!(
        cfg.bonds,
        vec![Bond::new("bond0", &["eth0", "eth1"], BondMode::Lacp)]
    );
    assert_eq!(cfg.management.interface, "bond0");
    assert_eq!(
        cfg.management.vlan,
        Some(Vlan {
            id: 5,
            native: true
        })
    );
    assert_eq!(cfg.management.mtu, 1500);
    assert_eq!(cfg.networks.len(), 2);
    let storage = &cfg.networks[0];
    assert_eq!(
        (storage.name.as_str(), storage.purpose, storage.mtu),
        ("storage", NetworkPurpose::Storage, 9000)
    );
    assert_eq!(
        storage.vlan,
        Some(Vlan {
            id: 20,
            native: false
        })
    );
    assert_eq!(cfg.networks[1].purpose, NetworkPurpose::Migration);
    assert_eq!(cfg.networks[1].ip, IpMode::Dhcp);
    assert_eq!(cfg.networks[1].mtu, 1500);
    // Through the boot module and back.
    assert_eq!(crate::decode(&crate::encode(&cfg)), Ok(cfg));
}

#[test]
fn management_as_a_network_entry() {
    let text = "[[bond]]\nname = \"bond0\"\nmembers = [\"eth0\", \"eth1\"]\nmode = \"active-backup\"\n\
                [[network]]\npurpose = \"management\"\ninterface = \"bond0\"\nmode = \"dhcp\"\n";
    let cfg = parse_toml(text).expect("valid");
    assert_eq!(cfg.management.interface, "bond0");
    assert_eq!(cfg.bonds[0].mode, BondMode::ActiveBackup);
    assert!(cfg.networks.is_empty());
    assert_error(
        "[management]\nmode = \"dhcp\"\n[[network]]\npurpose = \"management\"\nmode = \"dhcp\"\n",
        4,
        "already given",
    );
    assert_error(
        "[[network]]\npurpose = \"management\"\nname = \"mgmt\"\nmode = \"dhcp\"\n",
        3,
        "leave `name` out",
    );
}

/// Replaces line `line` (1-based) of `text`.
fn with_line(text: &str, line: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = replacement;
    lines.join("\n")
}

#[test]
fn network_and_bond_errors_point_at_their_line() {
    let cases = [
        (5, "members = [\"eth0\"]", "2 to 4 member NICs"),
        (
            5,
            "members = [\"eth0\", \"wlan0\"]",
            "not of the form eth<N>",
        ),
        (5, "members = [\"eth0\", \"eth0\"]", "already a member"),
        (5, "members = \"eth0\"", "array of NIC names"),
        (6, "mode = \"round-robin\"", "unknown bond mode"),
        (7, "lacp_rate = \"sometimes\"", "unknown lacp_rate"),
        (8, "hashing = \"dst_mac\"", "unknown hashing"),
        (4, "name = \"team0\"", "bond<N>"),
        (11, "interface = \"bond1\"", "no [[bond]] named bond1"),
        (11, "interface = \"eth1\"", "eth1 is a member of bond0"),
        (12, "vlan = 4095", "within 1..=4094"),
        (12, "vlan = \"5\"", "must be an integer"),
        (13, "native = 1", "true or false"),
        (13, "mtus = 1500", "unknown key `mtus` in [management]"),
        (19, "name = \"Storage\"", "network name"),
        (20, "purpose = \"backup\"", "unknown purpose"),
        (21, "interface = \"eth0\"", "member of bond0"),
        (22, "vlan = 5", "VLAN 5 is used twice on bond0"),
        (23, "mtu = 9216", "within 68..=9000"),
        (
            25,
            "address = \"192.0.2.20/24\"",
            "overlaps the one of management",
        ),
        (25, "address = \"198.51.100.0/24\"", "network address"),
        (28, "name = \"storage\"", "defined twice"),
        (31, "vlan = 20", "used twice"),
        // Migration untagged too, next to native management: the interface is blamed.
    ];
    for (line, replacement, needle) in cases {
        assert_error(&with_line(BONDED, line, replacement), line, needle);
    }
    let text = with_line(BONDED, 31, "mtu = 1500");
    assert_error(&text, 30, "only one network per interface can be untagged");
    // Keys that belong to another mode.
    let text = with_line(BONDED, 6, "mode = \"balance-slb\"");
    assert_error(&text, 7, "`lacp_rate` only applies to mode = \"lacp\"");
    let text = BONDED.replace("vlan = 5\nnative = true\n", "native = true\n");
    assert_error(&text, 12, "`native` only applies with `vlan`");
    assert_error(
        "[[network]]\nname = \"storage\"\nmode = \"dhcp\"\n",
        1,
        "missing `purpose`",
    );
    assert_error(
        "[[network]]\npurpose = \"storage\"\nmode = \"dhcp\"\n",
        1,
        "missing `name`",
    );
    assert_error(
        "[[bond]]\nname = \"bond0\"\nmode = \"lacp\"\n",
        1,
        "missing `members`",
    );
    assert_error("bond = [1]\n", 1, "[[bond]] entries must be tables");
}

#[test]
fn trusted_keys() {
    let a = "a1".repeat(32);
    let b = "B2".repeat(32);
    let cfg = parse_toml(&format!("trusted_keys = [\"{a}\", \"{b}\"]\n")).expect("valid");
    assert_eq!(cfg.trusted_keys, vec![[0xA1; 32], [0xB2; 32]]);
    assert_error(
        &format!("hostname = \"x\"\ntrusted_keys = [\"{a}\", \"abc\"]\n"),
        2,
        "64 hex digits",
    );
    assert_error(
        &format!("trusted_keys = [\n  \"{a}\",\n  \"{a}\",\n]\n"),
        3,
        "listed twice",
    );
    assert_error("trusted_keys = \"abc\"\n", 1, "an array of strings");
    let many: Vec<String> = (0..9u8)
        .map(|i| format!("\"{}\"", format!("{i:02x}").repeat(32)))
        .collect();
    assert_error(
        &format!("trusted_keys = [{}]\n", many.join(", ")),
        1,
        "at most 8",
    );
}

/// A fresh directory for the TLS file tests.
fn tls_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::base64::encode(der);
    let pad = "=".repeat((4 - b64.len() % 4) % 4);
    let body: Vec<String> = format!("{b64}{pad}")
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

#[test]
fn tls_files_are_read_beside_the_config_and_unwrapped() {
    let dir = tls_dir("ok");
    let chain = format!(
        "subject=CN=xen1\n{}{}",
        pem("CERTIFICATE", &[0x30, 1, 2, 3, 4]),
        pem("CERTIFICATE", &[0x30, 9])
    );
    std::fs::write(dir.join("host.crt"), chain).unwrap();
    std::fs::write(
        dir.join("host.key"),
        format!(
            "{}{}",
            pem("EC PARAMETERS", &[6, 8]),
            pem("EC PRIVATE KEY", &[0x30, 0x77, 1])
        ),
    )
    .unwrap();
    let text = "tls_certificate_file = \"host.crt\"\ntls_key_file = \"host.key\"\n";
    let cfg = parse_toml_in(text, &dir).expect("valid");
    let tls = cfg.tls.expect("supplied");
    assert_eq!(
        tls.certificate_chain,
        vec![vec![0x30, 1, 2, 3, 4], vec![0x30, 9]]
    );
    assert_eq!(
        (tls.key, tls.key_kind),
        (vec![0x30, 0x77, 1], KeyKind::Sec1)
    );
    // Relative to the current directory without a base: not found there.
    let e = parse_toml(text).expect_err("not in the current directory");
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn tls_file_errors_point_at_the_setting() {
    let dir = tls_dir("bad");
    let cert = pem("CERTIFICATE", &[0x30, 1]);
    std::fs::write(dir.join("ok.crt"), &cert).unwrap();
    std::fs::write(dir.join("ok.key"), pem("PRIVATE KEY", &[0x30, 2])).unwrap();
    std::fs::write(
        dir.join("two.key"),
        format!(
            "{}{}",
            pem("PRIVATE KEY", &[0x30, 2]),
            pem("PRIVATE KEY", &[0x30, 3])
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("enc.key"),
        pem("ENCRYPTED PRIVATE KEY", &[0x30, 2]),
    )
    .unwrap();
    std::fs::write(dir.join("key.crt"), pem("PRIVATE KEY", &[0x30, 2])).unwrap();
    std::fs::write(dir.join("open.crt"), "-----BEGIN CERTIFICATE-----\nMAE=\n").unwrap();
    std::fs::write(
        dir.join("junk.crt"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty.crt"), "no pem here\n").unwrap();
    std::fs::write(dir.join("huge.crt"), vec![b'A'; 70_000]).unwrap();
    let cases = [
        ("tls_certificate_file = \"ok.crt\"\n", 1, "give both"),
        (
            "hostname = \"x\"\ntls_key_file = \"ok.key\"\n",
            2,
            "give both",
        ),
        (
            "tls_certificate_file = \"ok.crt\"\ntls_key_file = \"two.key\"\n",
            2,
            "exactly one private key",
        ),
        (
            "tls_certificate_file = \"ok.crt\"\ntls_key_file = \"enc.key\"\n",
            2,
            "encrypted",
        ),
        (
            "tls_certificate_file = \"ok.crt\"\ntls_key_file = \"ok.crt\"\n",
            2,
            "not a private key",
        ),
        (
            "tls_certificate_file = \"key.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "only CERTIFICATE",
        ),
        (
            "tls_certificate_file = \"open.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "has no -----END",
        ),
        (
            "tls_certificate_file = \"junk.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "not base64",
        ),
        (
            "tls_certificate_file = \"empty.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "no -----BEGIN CERTIFICATE",
        ),
        (
            "tls_certificate_file = \"huge.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "at most 65536",
        ),
        (
            "tls_certificate_file = \"gone.crt\"\ntls_key_file = \"ok.key\"\n",
            1,
            "cannot read",
        ),
        (
            "tls_certificate_file = \"\"\ntls_key_file = \"ok.key\"\n",
            1,
            "empty",
        ),
        (
            "tls_certificate_file = 3\ntls_key_file = \"ok.key\"\n",
            1,
            "string",
        ),
    ];
    for (text, line, needle) in cases {
        let e = parse_toml_in(text, &dir).expect_err(text);
        assert_eq!(e.line, line, "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e}");
    }
    // The supplied files survive compilation into a module.
    let ok = "tls_certificate_file = \"ok.crt\"\ntls_key_file = \"ok.key\"\n";
    let cfg = parse_toml_in(ok, &dir).expect("valid");
    assert_eq!(crate::module::decode(&crate::module::encode(&cfg)), Ok(cfg));
}
