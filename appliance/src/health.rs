//! The `/health` report: what a load balancer, the QEMU image tests and an
//! operator's `curl` need to know the host is up and which build it runs.

use alloc::vec::Vec;
use core::time::Duration;

use serde::{Serialize, Serializer};
use smoltcp::wire::Ipv4Address;

use crate::platform::{BootSlots, SystemInfo};

/// This build's version (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Identifies the exact build; the image build sets `KEEL_BUILD_ID`.
pub const BUILD_ID: &str = match option_env!("KEEL_BUILD_ID") {
    Some(id) => id,
    None => "dev",
};

/// The body of `GET /health`. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport<'a> {
    pub status: &'static str,
    pub version: &'static str,
    pub build_id: &'static str,
    pub hostname: &'a str,
    /// Seconds since boot, to the millisecond.
    pub uptime_seconds: f64,
    pub cpus: u32,
    pub memory: MemoryReport,
    /// The management interface's address; `null` until it has one.
    #[serde(serialize_with = "dotted_quad")]
    pub management_ip: Option<Ipv4Address>,
    /// SHA-256 of the HTTPS certificate (`AB:CD:...`, to pin); absent
    /// without HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sha256: Option<&'a str>,
    /// The A/B slots; absent unless booted from a keel disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSlots>,
}

/// RAM figures in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl<'a> HealthReport<'a> {
    /// A healthy report from the current facts.
    pub fn new(
        hostname: &'a str,
        uptime: Duration,
        system: SystemInfo,
        management_ip: Option<Ipv4Address>,
    ) -> Self {
        HealthReport {
            status: "ok",
            version: VERSION,
            build_id: BUILD_ID,
            hostname,
            // Whole milliseconds, so the JSON reads 12.345 rather than 12.345678901.
            uptime_seconds: uptime.as_secs() as f64 + f64::from(uptime.subsec_millis()) / 1000.0,
            cpus: system.cpus,
            memory: MemoryReport {
                total_bytes: system.memory_total,
                free_bytes: system.memory_free,
            },
            management_ip,
            tls_sha256: None,
            boot: None,
        }
    }

    /// The report with the HTTPS certificate's fingerprint.
    pub fn with_tls(mut self, sha256: Option<&'a str>) -> Self {
        self.tls_sha256 = sha256;
        self
    }

    /// The report with the host's A/B slots.
    pub fn with_boot(mut self, boot: Option<BootSlots>) -> Self {
        self.boot = boot;
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// `"10.0.2.15"` rather than serde's default for addresses (which would need
/// std and, in binary formats, is a byte array).
fn dotted_quad<S: Serializer>(ip: &Option<Ipv4Address>, serializer: S) -> Result<S::Ok, S::Error> {
    match ip {
        Some(ip) => serializer.collect_str(ip),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> SystemInfo {
        SystemInfo {
            cpus: 4,
            memory_total: 123,
            memory_free: 45,
        }
    }

    #[test]
    fn serializes_to_the_documented_shape() {
        let report = HealthReport::new(
            "keel",
            Duration::from_micros(12_345_678),
            system(),
            Some(Ipv4Address::new(10, 0, 2, 15)),
        );
        let json = String::from_utf8(report.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"status":"ok","version":"0.1.0","build_id":"{BUILD_ID}","hostname":"keel","uptime_seconds":12.345,"cpus":4,"memory":{{"total_bytes":123,"free_bytes":45}},"management_ip":"10.0.2.15"}}"#
            )
        );
    }

    #[test]
    fn management_ip_is_null_until_configured_and_names_are_escaped() {
        let report = HealthReport::new("a\"b", Duration::ZERO, system(), None);
        let value: serde_json::Value = serde_json::from_slice(&report.to_json().unwrap()).unwrap();
        assert!(value["management_ip"].is_null());
        assert_eq!(value["hostname"], "a\"b");
        assert_eq!(value["uptime_seconds"], 0.0);
    }

    #[test]
    fn version_and_build_id() {
        assert_eq!(VERSION, "0.1.0");
        assert!(!BUILD_ID.is_empty());
    }
}
