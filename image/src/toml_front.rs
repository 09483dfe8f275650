//! The operator's side: host configuration written as TOML.
//!
//! Every error, from a stray quote to a gateway outside the subnet, carries
//! the line and column of the key or value at fault, so the operator goes
//! straight to it. The tree is walked by hand (rather than derived with
//! serde) so that each message names the setting in the operator's words.

use core::net::Ipv4Addr;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::password::hash_password_random;
use crate::schema::{HostConfig, IpMode, Management, StaticIpv4};
use crate::validate::Field;

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
pub fn parse_toml(text: &str) -> Result<HostConfig, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        error_at(text, at, e.message().trim_end())
    })?;
    let mut reader = Reader {
        text,
        spans: Spans::default(),
        password: None,
    };
    let mut cfg = reader.document(doc.get_ref())?;
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

/// Where each setting was written, for errors found after reading.
#[derive(Default)]
struct Spans {
    hostname: Range<usize>,
    password: Range<usize>,
    interface: Range<usize>,
    address: Range<usize>,
    gateway: Range<usize>,
    dns: Vec<Range<usize>>,
}

impl Spans {
    /// Defaulted settings keep span 0..0; they are valid, so never reported.
    fn of(&self, field: Field) -> Range<usize> {
        match field {
            Field::Hostname => self.hostname.clone(),
            Field::RootPasswordHash => self.password.clone(),
            Field::Interface => self.interface.clone(),
            Field::Address => self.address.clone(),
            Field::Gateway => self.gateway.clone(),
            Field::Dns(i) => self.dns.get(i).cloned().unwrap_or_default(),
        }
    }
}

struct Reader<'t> {
    text: &'t str,
    spans: Spans,
    /// A plain-text password, hashed once everything else is known good.
    password: Option<String>,
}

impl Reader<'_> {
    fn err(&self, span: &Range<usize>, message: impl AsRef<str>) -> ConfigError {
        error_at(self.text, span.start, message.as_ref())
    }

    fn document(&mut self, root: &DeTable<'_>) -> Result<HostConfig, ConfigError> {
        let mut cfg = HostConfig::default();
        let mut password_key: Option<Entry<'_, '_>> = None;
        for (key, value) in sorted(root) {
            match key.get_ref().as_ref() {
                "hostname" => {
                    cfg.hostname = self.string(key, value)?.into();
                    self.spans.hostname = value.span();
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
                "management" => cfg.management = self.management(key, value)?,
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key `{other}`; expected hostname, root_password, \
                             root_password_hash or [management]"
                        ),
                    ));
                }
            }
        }
        Ok(cfg)
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

    fn management(
        &mut self,
        table_key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Management, ConfigError> {
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.wrong_type(table_key, value, "a table ([management])"));
        };
        let mut interface = String::from("eth0");
        let mut mode: Option<(&str, Range<usize>)> = None;
        let mut address: Option<([u8; 4], u8)> = None;
        let mut gateway = None;
        let mut dns = Vec::new();
        // Static-only keys, to report if the mode turns out to be DHCP.
        let mut static_keys: Vec<(Range<usize>, String)> = Vec::new();
        for (key, value) in sorted(table) {
            let name = key.get_ref().as_ref();
            match name {
                "interface" => {
                    interface = self.string(key, value)?.into();
                    self.spans.interface = value.span();
                }
                "mode" => mode = Some((self.string(key, value)?, value.span())),
                "address" => {
                    address = Some(self.cidr(key, value)?);
                    self.spans.address = value.span();
                }
                "gateway" => {
                    gateway = Some(self.ipv4(value, self.string(key, value)?)?);
                    self.spans.gateway = value.span();
                }
                "dns" => dns = self.dns(key, value)?,
                other => {
                    return Err(self.err(
                        &key.span(),
                        format!(
                            "unknown key `{other}` in [management]; expected interface, mode, \
                             address, gateway or dns"
                        ),
                    ));
                }
            }
            if matches!(name, "address" | "gateway" | "dns") {
                static_keys.push((key.span(), name.into()));
            }
        }
        let Some((mode, mode_span)) = mode else {
            return Err(self.err(
                &table_key.span(),
                "[management] is missing `mode`: add mode = \"dhcp\" or mode = \"static\"",
            ));
        };
        let ip = match mode {
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
                        "mode = \"static\" needs `address = \"a.b.c.d/n\"` in [management]",
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
        Ok(Management { interface, ip })
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

    fn dns(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Vec<[u8; 4]>, ConfigError> {
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "an array of strings"));
        };
        let mut servers = Vec::with_capacity(items.len());
        self.spans.dns.clear();
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
            self.spans.dns.push(item.span());
        }
        Ok(servers)
    }
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
