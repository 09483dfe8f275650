//! `PIF.reconfigure_ip`: the arguments are checked as xapi checks them
//! (`xapi_pif.ml`), the management PIF's record changes at once (with its
//! events), and the change is queued for whoever owns the live interface
//! (the appliance's poll loop) to apply. Without such an owner (hosted) the
//! call answers `NOT_IMPLEMENTED`.

use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use crate::platform::Platform;
use crate::xenapi::error::ApiError;
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
        Ok(Value::String(String::new()))
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
