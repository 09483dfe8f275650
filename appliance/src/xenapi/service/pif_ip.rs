//! `PIF.reconfigure_ip`: the arguments are checked as xapi checks them
//! (`xapi_pif.ml`), the management PIF's record changes at once (with its
//! events), and the change is queued for whoever owns the live interface
//! (the appliance's poll loop) to apply. Without such an owner (hosted) the
//! call answers `NOT_IMPLEMENTED`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::PIF;
use crate::xenapi::value::Value;

/// What the management interface is to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpChange {
    Dhcp,
    Static {
        address: [u8; 4],
        prefix_len: u8,
        gateway: Option<[u8; 4]>,
        dns: Vec<[u8; 4]>,
    },
}

/// A dotted-quad IPv4 address, as xapi's `assert_is_valid_ip`.
fn ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The prefix length of a contiguous netmask.
fn prefix_len(mask: [u8; 4]) -> Option<u8> {
    let bits = u32::from_be_bytes(mask);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0 && len > 0).then_some(len as u8)
}

/// `other_config` keys on the management PIF that keep a
/// `PIF.reconfigure_ip` across reboots: the addressing asked for, and the
/// host config's addressing it replaced. At boot the change is applied again
/// only while the host config still says what it said then: new boot media
/// with other addressing is a newer intent and wins.
pub const OVERRIDE_KEY: &str = "keel_ip_override";
pub const REPLACED_KEY: &str = "keel_ip_replaced";

impl IpChange {
    /// `dhcp`, or `static,<ip>,<prefix>,<gateway or empty>,<dns;dns>`.
    pub fn encode(&self) -> String {
        let dotted = |a: &[u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        match self {
            IpChange::Dhcp => String::from("dhcp"),
            IpChange::Static {
                address,
                prefix_len,
                gateway,
                dns,
            } => format!(
                "static,{},{prefix_len},{},{}",
                dotted(address),
                gateway.as_ref().map(dotted).unwrap_or_default(),
                dns.iter().map(dotted).collect::<Vec<_>>().join(";")
            ),
        }
    }

    /// The inverse of [`IpChange::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<IpChange> {
        if text == "dhcp" {
            return Some(IpChange::Dhcp);
        }
        let mut parts = text.strip_prefix("static,")?.split(',');
        let address = ipv4(parts.next()?)?;
        let prefix_len = parts
            .next()?
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))?;
        let gateway = match parts.next()? {
            "" => None,
            g => Some(ipv4(g)?),
        };
        let dns = match parts.next()? {
            "" => Vec::new(),
            d => d.split(';').map(ipv4).collect::<Option<Vec<_>>>()?,
        };
        parts.next().is_none().then_some(IpChange::Static {
            address,
            prefix_len,
            gateway,
            dns,
        })
    }
}

/// The host config's management addressing, in [`IpChange::encode`]'s form.
pub fn config_addressing(config: &host_config::HostConfig) -> String {
    match &config.management.ip {
        host_config::IpMode::Dhcp => IpChange::Dhcp.encode(),
        host_config::IpMode::Static(s) => IpChange::Static {
            address: s.address,
            prefix_len: s.prefix_len,
            gateway: s.gateway,
            dns: s.dns.clone(),
        }
        .encode(),
    }
}

fn invalid(what: &str) -> ApiError {
    ApiError::new("INVALID_IP_ADDRESS_SPECIFIED", &[what])
}

impl XenApi {
    /// Lets `PIF.reconfigure_ip` change the management interface: the
    /// caller takes the changes with [`XenApi::take_ip_changes`] and
    /// applies them.
    pub fn enable_live_network(&mut self) {
        self.ip_changes.get_or_insert_with(Vec::new);
    }

    /// The address changes made since the last call, oldest first.
    pub fn take_ip_changes(&mut self) -> Vec<IpChange> {
        self.ip_changes
            .as_mut()
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// `PIF.reconfigure_ip(self, mode, IP, netmask, gateway, DNS)`.
    pub(super) fn reconfigure_ip(
        &mut self,
        pif: &str,
        [mode, ip, netmask, gateway, dns]: [&str; 5],
        platform: &mut dyn Platform,
    ) -> Result<Value, ApiError> {
        // xapi reads the enum case-insensitively.
        let change = match mode.to_ascii_lowercase().as_str() {
            "none" => {
                if pif == self.refs.pif {
                    return Err(ApiError::new("PIF_IS_MANAGEMENT_INTERFACE", &[pif]));
                }
                None
            }
            "dhcp" => Some(IpChange::Dhcp),
            "static" => {
                let address = ipv4(ip).ok_or_else(|| invalid("IP"))?;
                let prefix_len = ipv4(netmask)
                    .and_then(prefix_len)
                    .ok_or_else(|| invalid("netmask"))?;
                let gateway = match gateway {
                    "" => None,
                    g => Some(ipv4(g).ok_or_else(|| invalid("gateway"))?),
                };
                let dns = dns
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| ipv4(d).ok_or_else(|| invalid("DNS")))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(IpChange::Static {
                    address,
                    prefix_len,
                    gateway,
                    dns,
                })
            }
            _ => {
                return Err(ApiError::new("FIELD_TYPE_ERROR", &["mode"]));
            }
        };
        let name = String::from("PIF.reconfigure_ip");
        if pif != self.refs.pif {
            return Err(ApiError::not_implemented(&alloc::format!(
                "{name} on a PIF other than the management one"
            )));
        }
        let (Some(change), Some(queue)) = (change, self.ip_changes.as_mut()) else {
            return Err(ApiError::not_implemented(&alloc::format!(
                "{name} (this host's network is not managed here)"
            )));
        };
        queue.push(change.clone());
        // Kept for the next boots (see OVERRIDE_KEY).
        let pif = self.refs.pif.clone();
        let mut other = match self.field(&PIF, &pif, "other_config") {
            Value::Struct(m) => m,
            _ => alloc::collections::BTreeMap::new(),
        };
        other.insert(String::from(OVERRIDE_KEY), Value::String(change.encode()));
        other.insert(
            String::from(REPLACED_KEY),
            Value::String(self.config_addressing.clone()),
        );
        self.set(&PIF, &pif, "other_config", Value::Struct(other));
        self.show_addressing(&change, platform);
        Ok(Value::String(String::new()))
    }

    /// At boot, once the database is loaded: a `PIF.reconfigure_ip` made
    /// under the same host config is applied again.
    pub(super) fn restore_addressing(&mut self, platform: &mut dyn Platform) {
        let pif = self.refs.pif.clone();
        let Value::Struct(mut other) = self.field(&PIF, &pif, "other_config") else {
            return;
        };
        let Some(stored) = other
            .get(OVERRIDE_KEY)
            .and_then(Value::as_str)
            .map(String::from)
        else {
            return;
        };
        let replaced = other.get(REPLACED_KEY).and_then(Value::as_str);
        let change = IpChange::decode(&stored);
        match (change, replaced == Some(self.config_addressing.as_str())) {
            (Some(change), true) if self.ip_changes.is_some() => {
                log::info!("net: management addressing from PIF.reconfigure_ip kept: {stored}");
                if let Some(queue) = self.ip_changes.as_mut() {
                    queue.push(change.clone());
                }
                self.show_addressing(&change, platform);
            }
            (Some(_), true) => {}
            (decoded, _) => {
                if decoded.is_none() {
                    log::warn!(
                        "net: unreadable {OVERRIDE_KEY} {stored:?} on the management PIF: dropped"
                    );
                } else {
                    log::info!(
                        "net: the host config's management addressing changed since PIF.reconfigure_ip: the host config applies"
                    );
                }
                other.remove(OVERRIDE_KEY);
                other.remove(REPLACED_KEY);
                self.set(&PIF, &pif, "other_config", Value::Struct(other));
            }
        }
    }

    /// The host objects show `change` as the management addressing.
    fn show_addressing(&mut self, change: &IpChange, platform: &mut dyn Platform) {
        let change = change.clone();
        let mut facts = self.facts.clone();
        let m = &mut facts.management;
        match change {
            IpChange::Dhcp => {
                m.dhcp = true;
                m.address = None;
                m.gateway = None;
                m.dns.clear();
            }
            IpChange::Static {
                address,
                prefix_len,
                gateway,
                dns,
            } => {
                m.dhcp = false;
                m.address = Some((address, prefix_len));
                m.gateway = gateway;
                m.dns = dns;
            }
        }
        self.update_facts(facts, platform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_masks() {
        assert_eq!(ipv4("10.0.2.20"), Some([10, 0, 2, 20]));
        for bad in [
            "",
            "10.0.2",
            "10.0.2.20.1",
            "10.0.2.256",
            "a.b.c.d",
            "10..2.2",
            "+1.0.0.0",
        ] {
            assert_eq!(ipv4(bad), None, "{bad}");
        }
        assert_eq!(prefix_len([255, 255, 255, 0]), Some(24));
        assert_eq!(prefix_len([255; 4]), Some(32));
        assert_eq!(prefix_len([255, 0, 255, 0]), None);
        assert_eq!(prefix_len([0; 4]), None);
    }
}
