//! The operator's side: host configuration written as TOML.
//!
//! Every error, from a stray quote to a gateway outside the subnet, carries
//! the line and column of the key or value at fault, so the operator goes
//! straight to it. The tree is walked by hand (rather than derived with
//! serde) so that each message names the setting in the operator's words.

use core::net::Ipv4Addr;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::password::hash_password_random;
use crate::schema::{
    Bond, BondHashing, BondMode, DEFAULT_MTU, HostConfig, IpMode, KeyKind, LacpRate, Management,
    Network, NetworkPurpose, StaticIpv4, SuppliedTls, Vlan,
};
use crate::validate::{BondField, Field, NetworkField};

/// Shortest plain-text root password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A problem in a TOML host configuration, at a 1-based line and column
/// (columns count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Parses, validates and (for a plain `root_password`) hashes a TOML host
/// configuration.
///
/// `tls_certificate_file`/`tls_key_file` are read relative to the current
/// directory; [`parse_toml_in`] names another.
pub fn parse_toml(text: &str) -> Result<HostConfig, ConfigError> {
    parse_toml_in(text, Path::new("."))
}

/// [`parse_toml`] with relative file names (`tls_certificate_file`,
/// `tls_key_file`) taken from `base`, the TOML file's own directory.
pub fn parse_toml_in(text: &str, base: &Path) -> Result<HostConfig, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        error_at(text, at, e.message().trim_end())
    })?;
    let mut reader = Reader {
        text,
        spans: Spans::default(),
        password: None,
        tls_files: TlsFiles::default(),
    };
    let mut cfg = reader.document(doc.get_ref())?;
    cfg.tls = reader.tls_files.load(text, base)?;
    let spans = reader.spans;
    cfg.validate()
        .map_err(|e| error_at(text, spans.of(e.field()).start, &e.to_string()))?;
    // Hash last: it is the slow step, and pointless for a config that fails.
    if let Some(password) = reader.password {
        let hash = hash_password_random(&password)
            .map_err(|e| error_at(text, spans.password.start, &e.to_string()))?;
        cfg.root_password_hash = Some(hash);
    }
    Ok(cfg)
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

/// Where each entry of an array setting was written.
type EntrySpans = Vec<Range<usize>>;

/// Where each setting was written, for errors found after reading.
#[derive(Default)]
struct Spans {
    password: Range<usize>,
    at: HashMap<Field, Range<usize>>,
}

impl Spans {
    /// Defaulted settings keep span 0..0; they are valid, so never reported.
    fn of(&self, field: Field) -> Range<usize> {
        match field {
            Field::RootPasswordHash => self.password.clone(),
            other => self.at.get(&other).cloned().unwrap_or_default(),
        }
    }

    fn set(&mut self, field: Field, span: Range<usize>) {
        self.at.insert(field, span);
    }
}

/// What a `[management]` or `[[network]]` table says, before it is known
/// where it goes.
struct NetTable {
    name: Option<(String, Range<usize>)>,
    purpose: Option<(String, Range<usize>)>,
    interface: String,
    vlan: Option<Vlan>,
    mtu: u16,
    ip: IpMode,
    /// Where each setting was written, by network field.
    spans: Vec<(NetworkField, Range<usize>)>,
}

/// Which kind of table is being read, for messages and allowed keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Management,
    Network,
}

impl Section {
    fn title(self) -> &'static str {
        match self {
            Section::Management => "[management]",
            Section::Network => "[[network]]",
        }
    }
}

struct Reader<'t> {
    text: &'t str,
    spans: Spans,
    /// A plain-text password, hashed once everything else is known good.
    password: Option<String>,
    tls_files: TlsFiles,
}

/// The `tls_certificate_file` and `tls_key_file` settings, with the spans
/// of their values.
#[derive(Default)]
struct TlsFiles {
    certificate: Option<(String, Range<usize>)>,
    key: Option<(String, Range<usize>)>,
    /// Where the first of the two was written (for "give both").
    first: Option<Range<usize>>,
}

/// Most a certificate chain or key file may hold: far above any real one,
/// far below what would bloat the boot module.
pub const MAX_TLS_FILE_LEN: u64 = 64 * 1024;

impl TlsFiles {
    /// Reads and unwraps both files, or none; errors point at the setting.
    fn load(&self, text: &str, base: &Path) -> Result<Option<SuppliedTls>, ConfigError> {
        let (certificate, key) = match (&self.certificate, &self.key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) | (None, Some(_)) => {
                let at = self.first.clone().unwrap_or_default();
                return Err(error_at(
                    text,
                    at.start,
                    "give both `tls_certificate_file` and `tls_key_file` (PEM files: the \
                     host's certificate chain and its private key), or neither (the host \
                     makes its own certificate)",
                ));
            }
        };
        let read = |(name, span): &(String, Range<usize>)| {
            let path = base.join(name);
            let at = (path.display().to_string(), span.start);
            let fail = |why: String| error_at(text, at.1, &format!("{}: {why}", at.0));
            let len = std::fs::metadata(&path)
                .map_err(|e| fail(format!("cannot read: {e}")))?
                .len();
            if len > MAX_TLS_FILE_LEN {
                return Err(fail(format!(
                    "{len} bytes; a PEM certificate chain or key is at most {MAX_TLS_FILE_LEN}"
                )));
            }
            let pem =
                std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
            let blocks = pem_blocks(&pem).map_err(fail)?;
            Ok::<_, ConfigError>((blocks, at))
        };
        let fail_at =
            |at: &(String, usize), why: String| error_at(text, at.1, &format!("{}: {why}", at.0));
        let (blocks, at) = read(certificate)?;
        let fail = |why: String| fail_at(&at, why);
        let mut chain = Vec::new();
        for (label, der) in blocks {
            if label != "CERTIFICATE" {
                return Err(fail(format!(
                    "holds a {label:?} PEM block; `tls_certificate_file` holds only \
                     CERTIFICATE blocks (the host's first, then intermediates)"
                )));
            }
            chain.push(der);
        }
        if chain.is_empty() {
            return Err(fail("holds no -----BEGIN CERTIFICATE----- block".into()));
        }
        let (blocks, at) = read(key)?;
        let fail = |why: String| fail_at(&at, why);
        let mut keys = blocks
            .into_iter()
            .filter(|(label, _)| label != "EC PARAMETERS");
        let (Some((label, der)), None) = (keys.next(), keys.next()) else {
            return Err(fail(
                "must hold exactly one private key PEM block (PRIVATE KEY, EC PRIVATE KEY \
                 or RSA PRIVATE KEY)"
                    .into(),
            ));
        };
        let key_kind = match label.as_str() {
            "PRIVATE KEY" => KeyKind::Pkcs8,
            "EC PRIVATE KEY" => KeyKind::Sec1,
            "RSA PRIVATE KEY" => KeyKind::Pkcs1,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(fail(
                    "the key is encrypted; the host cannot ask for its passphrase at boot: \
                     decrypt it (openssl pkey -in KEY -out PLAIN)"
                        .into(),
                ));
            }
            other => {
                return Err(fail(format!(
                    "holds a {other:?} PEM block, not a private key (PRIVATE KEY, EC PRIVATE \
                     KEY or RSA PRIVATE KEY)"
                )));
            }
        };
        Ok(Some(SuppliedTls {
            certificate_chain: chain,
            key: der,
            key_kind,
        }))
    }
}

/// The `-----BEGIN <label>-----` blocks of a PEM text, decoded; text
/// outside blocks (openssl's "Bag Attributes", comments) is ignored.
pub fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let n = n + 1;
        match &mut open {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    open = Some((label.to_string(), String::new(), n));
                }
            }
            Some((label, body, start)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(format!(
                            "line {n}: -----END {end}----- closes -----BEGIN {label}----- \
                             of line {start}"
                        ));
                    }
                    if body.contains(':') {
                        return Err(format!(
                            "line {start}: the {label} block has headers (an encrypted \
                             legacy key?); the host needs a plain one"
                        ));
                    }
                    let b64 = body.trim_end_matches('=');
                    let der = crate::base64::decode(b64)
                        .filter(|d| !d.is_empty())
                        .ok_or_else(|| format!("line {start}: the {label} block is not base64"))?;
                    blocks.push((core::mem::take(label), der));
                    open = None;
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, _, start)) = open {
        return Err(format!(
            "line {start}: -----BEGIN {label}----- has no -----END {label}-----"
        ));
    }
    Ok(blocks)
}

impl Reader<'_> {
    fn err(&self, span: &Range<usize>, message: impl AsRef<str>) -> ConfigError {
        error_at(self.text, span.start, message.as_ref())
    }

    fn document(&mut self, root: &DeTable<'_>) -> Result<HostConfig, ConfigError> {
        let mut cfg = HostConfig::default();
        let mut password_key: Option<Entry<'_, '_>> = None;
        // Where the management network was given, to refuse a second one.
        let mut management_at: Option<Range<usize>> = None;
        for (key, value) in sorted(root) {
            match key.get_ref().as_ref() {
                "hostname" => {
                    cfg.hostname = self.string(key, value)?.into();
                    self.spans.set(Field::Hostname, value.span());
                }
                "root_password" | "root_password_hash" => {
                    if let Some((first, _)) = password_key {
                        return Err(self.err(
                            &key.span(),
                            format!(
                                "`{}` conflicts with `{}` above: give either a plain \
                                 password or a hash, not both",
                                key.get_ref(),
                                first.get_ref()
                            ),
                        ));
                    }
                    password_key = Some((key, value));
                    self.password_entry(&mut cfg, key, value)?;
                }
                "management" => {
                    let DeValue::Table(table) = value.get_ref() else {
                        return Err(self.wrong_type(key, value, "a table ([management])"));
                    };
                    let net = self.net_table(&key.span(), table, Section::Management)?;
                    cfg.management = self.place_management(net);
                    management_at = Some(key.span());
                }
                "bond" => {
                    let items = self.array_of_tables(key, value, "[[bond]]")?;
                    for (table, span) in items {
                        let index = cfg.bonds.len();
                        let bond = self.bond(index, &span, table)?;
                        cfg.bonds.push(bond);
                    }
                }
                "network" => {
                    let items = self.array_of_tables(key, value, "[[network]]")?;
                    for (table, span) in items {
                        let net = self.net_table(&span, table, Section::Network)?;
                        let Some((purpose, purpose_span)) = net.purpose.clone() else {
                            return Err(self.err(
                                &span,
                                "[[network]] is missing `purpose`: add purpose = \
                                 \"management\", \"storage\" or \"migration\"",
                            ));
                        };
                        let purpose = match purpose.as_str() {
                            "management" => {
                                if management_at.is_some() {
                                    return Err(self.err(
                                        &purpose_span,
                                        "a management network is already given above; \
                                         a host has one",
                                    ));
                                }
                                if let Some((name, name_span)) = &net.name
                                    && name != "management"
                                {
                                    return Err(self.err(
                                        name_span,
                                        "the management network is named \"management\"; \
                                         leave `name` out",
                                    ));
                                }
                                cfg.management = self.place_management(net);
                                management_at = Some(span);
                                continue;
                            }
                            "storage" => NetworkPurpose::Storage,
                            "migration" => NetworkPurpose::Migration,
                            other => {
                                return Err(self.err(
                                    &purpose_span,
                                    format!(
                                        "unknown purpose {other:?}; expected \"management\", \
                                         \"storage\" or \"migration\""
                                    ),
                                ));
                            }
                        };
                        let Some((name, _)) = net.name.clone() else {
                            return Err(self.err(
                                &span,
                                "[[network]] is missing `name`: the host's interface name on \
                                 it, e.g. name = \"storage\"",
                            ));
                        };
                        let index = cfg.networks.len();
                        for (field, span) in &net.spans {
                            self.spans.set(Field::Network(index, *field), span.clone());
                        }
                        cfg.networks.push(Network {
                            name,
                            purpose,
                            interface: net.interface,
                            vlan: net.vlan,
                            mtu: net.mtu,
                            ip: net.ip,
                        });
                    }
                }
                "trusted_keys" => cfg.trusted_keys = self.trusted_keys(key, value)?,
                "tls_certificate_file" | "tls_key_file" => {
                    let path = self.string(key, value)?;
                    if path.is_empty() {
                        return Err(self.err(&value.span(), "the file name is empty"));
                    }
                    let entry = Some((String::from(path), value.span()));
                    if key.get_ref() == "tls_key_file" {
                        self.tls_files.key = entry;
                    } else {
                        self.tls_files.certificate = entry;
                    }
                    self.tls_files.first.get_or_insert(key.span());
                }
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key `{other}`; expected hostname, root_password, \
                             root_password_hash, trusted_keys, tls_certificate_file, \
                             tls_key_file, [management], [[bond]] or [[network]]"
                        ),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// Records where the management settings were written and builds them.
    fn place_management(&mut self, net: NetTable) -> Management {
        for (field, span) in &net.spans {
            let at = match field {
                NetworkField::Interface => Field::Interface,
                NetworkField::Vlan => Field::ManagementVlan,
                NetworkField::Mtu => Field::ManagementMtu,
                NetworkField::Address => Field::Address,
                NetworkField::Gateway => Field::Gateway,
                NetworkField::Dns(i) => Field::Dns(*i),
                NetworkField::Name => continue,
            };
            self.spans.set(at, span.clone());
        }
        Management {
            interface: net.interface,
            ip: net.ip,
            vlan: net.vlan,
            mtu: net.mtu,
        }
    }

    /// The tables of a `[[name]]` array, with the span of each.
    fn array_of_tables<'a, 'i>(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Result<Vec<(&'a DeTable<'i>, Range<usize>)>, ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, &format!("an array of tables ({what})")));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Table(table) => Ok((table, item.span())),
                other => Err(self.err(
                    &item.span(),
                    format!("{what} entries must be tables, found {}", other.type_str()),
                )),
            })
            .collect()
    }

    fn password_entry(
        &mut self,
        cfg: &mut HostConfig,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<(), ConfigError> {
        let text = self.string(key, value)?;
        self.spans.password = value.span();
        if key.get_ref() == "root_password_hash" {
            cfg.root_password_hash = Some(text.into());
        } else if text.chars().count() < MIN_PASSWORD_LEN {
            return Err(self.err(
                &value.span(),
                format!("root_password must be at least {MIN_PASSWORD_LEN} characters long"),
            ));
        } else {
            self.password = Some(text.into());
        }
        Ok(())
    }

    fn bond(
        &mut self,
        index: usize,
        table_span: &Range<usize>,
        table: &DeTable<'_>,
    ) -> Result<Bond, ConfigError> {
        let mut name = None;
        let mut members = None;
        let mut mode: Option<(BondMode, Range<usize>)> = None;
        let mut bond = Bond::new("", &[], BondMode::Lacp);
        let mut lacp_keys: Vec<(Range<usize>, String)> = Vec::new();
        for (key, value) in sorted(table) {
            let key_name = key.get_ref().as_ref();
            match key_name {
                "name" => {
                    name = Some(String::from(self.string(key, value)?));
                    self.spans
                        .set(Field::Bond(index, BondField::Name), value.span());
                }
                "members" => {
                    let DeValue::Array(items) = value.get_ref() else {
                        return Err(self.wrong_type(key, value, "an array of NIC names"));
                    };
                    let mut list = Vec::new();
                    for (j, item) in items.iter().enumerate() {
                        let nic = item.get_ref().as_str().ok_or_else(|| {
                            self.err(
                                &item.span(),
                                format!(
                                    "`members` entries must be strings, found {}",
                                    item.get_ref().type_str()
                                ),
                            )
                        })?;
                        self.spans
                            .set(Field::Bond(index, BondField::Member(j)), item.span());
                        list.push(String::from(nic));
                    }
                    self.spans
                        .set(Field::Bond(index, BondField::Members), value.span());
                    members = Some(list);
                }
                "mode" => {
                    let text = self.string(key, value)?;
                    let parsed = match text {
                        "lacp" => BondMode::Lacp,
                        "active-backup" => BondMode::ActiveBackup,
                        "balance-slb" => BondMode::BalanceSlb,
                        other => {
                            return Err(self.err(
                                &value.span(),
                                format!(
                                    "unknown bond mode {other:?}; expected \"lacp\", \
                                     \"active-backup\" or \"balance-slb\""
                                ),
                            ));
                        }
                    };
                    mode = Some((parsed, value.span()));
                }
                "hashing" => {
                    bond.hashing = match self.string(key, value)? {
                        "src_mac" => BondHashing::SrcMac,
                        "tcpudp_ports" => BondHashing::TcpUdpPorts,
                        other => {
                            return Err(self.err(
                                &value.span(),
                                format!(
                                    "unknown hashing {other:?}; expected \"src_mac\" or \
                                     \"tcpudp_ports\""
                                ),
                            ));
                        }
                    };
                }
                "lacp_rate" => {
                    bond.lacp_rate = match self.string(key, value)? {
                        "fast" => LacpRate::Fast,
                        "slow" => LacpRate::Slow,
                        other => {
                            return Err(self.err(
                                &value.span(),
                                format!(
                                    "unknown lacp_rate {other:?}; expected \"fast\" or \"slow\""
                                ),
                            ));
                        }
                    };
                }
                "lacp_system_priority" => {
                    bond.lacp_system_priority = self.number(key, value, 1..=65535)?;
                }
                "lacp_port_priority" => {
                    bond.lacp_port_priority = self.number(key, value, 1..=65535)?;
                }
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key `{other}` in [[bond]]; expected name, members, mode, \
                             hashing, lacp_rate, lacp_system_priority or lacp_port_priority"
                        ),
                    ));
                }
            }
            if matches!(
                key_name,
                "hashing" | "lacp_rate" | "lacp_system_priority" | "lacp_port_priority"
            ) {
                lacp_keys.push((key.span(), key_name.into()));
            }
        }
        let missing = |what: &str| self.err(table_span, format!("[[bond]] is missing `{what}`"));
        bond.name = name.ok_or_else(|| missing("name"))?;
        bond.members = members.ok_or_else(|| missing("members"))?;
        let (mode, _) = mode.ok_or_else(|| missing("mode"))?;
        if mode != BondMode::Lacp
            && let Some((span, key)) = lacp_keys.first()
        {
            return Err(self.err(
                span,
                format!("`{key}` only applies to mode = \"lacp\"; remove it or switch the mode"),
            ));
        }
        bond.mode = mode;
        Ok(bond)
    }

    /// Reads a `[management]` or `[[network]]` table.
    fn net_table(
        &mut self,
        table_span: &Range<usize>,
        table: &DeTable<'_>,
        section: Section,
    ) -> Result<NetTable, ConfigError> {
        let title = section.title();
        let mut net = NetTable {
            name: None,
            purpose: None,
            interface: String::from("eth0"),
            vlan: None,
            mtu: DEFAULT_MTU,
            ip: IpMode::Dhcp,
            spans: Vec::new(),
        };
        let mut mode: Option<(&str, Range<usize>)> = None;
        let mut address: Option<([u8; 4], u8)> = None;
        let mut gateway = None;
        let mut dns = Vec::new();
        let mut vlan_id: Option<u16> = None;
        let mut native: Option<(bool, Range<usize>)> = None;
        // Static-only keys, to report if the mode turns out to be DHCP.
        let mut static_keys: Vec<(Range<usize>, String)> = Vec::new();
        for (key, value) in sorted(table) {
            let name = key.get_ref().as_ref();
            match name {
                "name" if section == Section::Network => {
                    net.name = Some((self.string(key, value)?.into(), value.span()));
                    net.spans.push((NetworkField::Name, value.span()));
                }
                "purpose" if section == Section::Network => {
                    net.purpose = Some((self.string(key, value)?.into(), value.span()));
                }
                "interface" => {
                    net.interface = self.string(key, value)?.into();
                    net.spans.push((NetworkField::Interface, value.span()));
                }
                "vlan" => {
                    vlan_id = Some(self.number(key, value, 1..=4094)?);
                    net.spans.push((NetworkField::Vlan, value.span()));
                }
                "native" => {
                    let flag = value
                        .get_ref()
                        .as_bool()
                        .ok_or_else(|| self.wrong_type(key, value, "true or false"))?;
                    native = Some((flag, key.span()));
                }
                "mtu" => {
                    net.mtu = self.number(key, value, 68..=9000)?;
                    net.spans.push((NetworkField::Mtu, value.span()));
                }
                "mode" => mode = Some((self.string(key, value)?, value.span())),
                "address" => {
                    address = Some(self.cidr(key, value)?);
                    net.spans.push((NetworkField::Address, value.span()));
                }
                "gateway" => {
                    gateway = Some(self.ipv4(value, self.string(key, value)?)?);
                    net.spans.push((NetworkField::Gateway, value.span()));
                }
                "dns" => {
                    let (servers, spans) = self.dns(key, value)?;
                    dns = servers;
                    for (i, span) in spans.into_iter().enumerate() {
                        net.spans.push((NetworkField::Dns(i), span));
                    }
                }
                other => {
                    let expected = match section {
                        Section::Management => {
                            "interface, mode, address, gateway, dns, vlan, native or mtu"
                        }
                        Section::Network => {
                            "name, purpose, interface, mode, address, gateway, dns, vlan, \
                             native or mtu"
                        }
                    };
                    return Err(self.err(
                        &key.span(),
                        format!("unknown key `{other}` in {title}; expected {expected}"),
                    ));
                }
            }
            if matches!(name, "address" | "gateway" | "dns") {
                static_keys.push((key.span(), name.into()));
            }
        }
        net.vlan = match (vlan_id, native) {
            (Some(id), native) => Some(Vlan {
                id,
                native: native.is_some_and(|(n, _)| n),
            }),
            (None, Some((_, span))) => {
                return Err(self.err(
                    &span,
                    "`native` only applies with `vlan`: it says that VLAN travels untagged",
                ));
            }
            (None, None) => None,
        };
        let Some((mode, mode_span)) = mode else {
            return Err(self.err(
                table_span,
                format!("{title} is missing `mode`: add mode = \"dhcp\" or mode = \"static\""),
            ));
        };
        net.ip = match mode {
            "dhcp" => {
                if let Some((span, name)) = static_keys.first() {
                    return Err(self.err(
                        span,
                        format!(
                            "`{name}` only applies to mode = \"static\"; remove it or \
                             switch the mode"
                        ),
                    ));
                }
                IpMode::Dhcp
            }
            "static" => {
                let Some((address, prefix_len)) = address else {
                    return Err(self.err(
                        &mode_span,
                        format!("mode = \"static\" needs `address = \"a.b.c.d/n\"` in {title}"),
                    ));
                };
                IpMode::Static(StaticIpv4 {
                    address,
                    prefix_len,
                    gateway,
                    dns,
                })
            }
            other => {
                return Err(self.err(
                    &mode_span,
                    format!("unknown mode {other:?}; expected \"dhcp\" or \"static\""),
                ));
            }
        };
        Ok(net)
    }

    /// An integer setting within `range`.
    fn number(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        range: std::ops::RangeInclusive<u16>,
    ) -> Result<u16, ConfigError> {
        let DeValue::Integer(int) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an integer"));
        };
        i64::from_str_radix(int.as_str(), int.radix())
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                self.err(
                    &value.span(),
                    format!(
                        "`{}` must be within {}..={}",
                        key.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    fn string<'v>(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &'v Spanned<DeValue<'_>>,
    ) -> Result<&'v str, ConfigError> {
        value
            .get_ref()
            .as_str()
            .ok_or_else(|| self.wrong_type(key, value, "a string"))
    }

    fn wrong_type(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        expected: &str,
    ) -> ConfigError {
        self.err(
            &value.span(),
            format!(
                "`{}` must be {expected}, found {}",
                key.get_ref(),
                value.get_ref().type_str()
            ),
        )
    }

    fn ipv4(&self, value: &Spanned<DeValue<'_>>, text: &str) -> Result<[u8; 4], ConfigError> {
        text.parse::<Ipv4Addr>().map(|a| a.octets()).map_err(|_| {
            self.err(
                &value.span(),
                format!("{text:?} is not an IPv4 address (a.b.c.d)"),
            )
        })
    }

    fn cidr(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<([u8; 4], u8), ConfigError> {
        let text = self.string(key, value)?;
        let Some((address, prefix)) = text.split_once('/') else {
            return Err(self.err(
                &value.span(),
                format!("address {text:?} needs a prefix length, e.g. \"192.0.2.10/24\""),
            ));
        };
        let address = self.ipv4(value, address)?;
        // Range-checked by validate(); here only "is it a small number".
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|_| prefix.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                self.err(
                    &value.span(),
                    format!("prefix length {prefix:?} is not a number 1..=32"),
                )
            })?;
        Ok((address, prefix))
    }

    /// DNS servers, and where each was written.
    #[allow(clippy::type_complexity)]
    fn trusted_keys(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Vec<[u8; 32]>, ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an array of strings"));
        };
        let mut keys = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(parsed) = item.get_ref().as_str().and_then(parse_hex_key) else {
                return Err(self.err(
                    &item.span(),
                    "`trusted_keys` entries are ed25519 public keys: 64 hex digits \
                     (the build's keel-signing.pub)",
                ));
            };
            keys.push(parsed);
            self.spans.set(Field::TrustedKey(i), item.span());
        }
        Ok(keys)
    }

    fn dns(
        &self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<(Vec<[u8; 4]>, EntrySpans), ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an array of strings"));
        };
        let mut servers = Vec::with_capacity(items.len());
        let mut spans = Vec::with_capacity(items.len());
        for item in items.iter() {
            let text = item.get_ref().as_str().ok_or_else(|| {
                self.err(
                    &item.span(),
                    format!(
                        "`dns` entries must be strings, found {}",
                        item.get_ref().type_str()
                    ),
                )
            })?;
            servers.push(self.ipv4(item, text)?);
            spans.push(item.span());
        }
        Ok((servers, spans))
    }
}

/// 64 hex digits as 32 bytes.
fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Table entries in the order they were written (the map sorts by key), so
/// the first problem in the file is the one reported.
fn sorted<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

fn error_at(text: &str, offset: usize, message: &str) -> ConfigError {
    let (line, column) = line_column(text, offset);
    ConfigError {
        line,
        column,
        message: message.into(),
    }
}

/// 1-based line and character column of byte `offset` (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (at, c) in text.char_indices() {
        if at >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests;
