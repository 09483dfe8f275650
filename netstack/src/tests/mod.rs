//! Hosted tests of host interfaces over the in-memory wire.

mod dhcp;
mod dhcp_server;
mod host_networks;
mod tcp;
mod uplink_swap;

use std::sync::{Mutex, Once};

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::testing::{SimClock, WireNic};
use crate::{HostInterface, IpConfig};

/// A static interface at `ip`/24 without gateway.
fn static_iface(
    name: &str,
    nic: WireNic,
    ip: Ipv4Address,
    clock: &SimClock,
    seed: u64,
) -> HostInterface<WireNic> {
    let config = IpConfig::Static {
        address: Ipv4Cidr::new(ip, 24),
        gateway: None,
        dns: Vec::new(),
    };
    HostInterface::new(name, nic, config, clock.now(), seed)
}

/// Log lines from every test in this binary (tests use distinct MACs to tell theirs apart).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Info {
            LOG.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Starts capturing `info` and more severe log lines.
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&CaptureLogger).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Whether any captured line equals `line`.
fn logged(line: &str) -> bool {
    LOG.lock().unwrap().iter().any(|l| l == line)
}
