//! `log` backend: timestamped, levelled lines on the serial console.

use core::fmt::Write;

use log::{LevelFilter, Log, Metadata, Record};

use crate::{percpu, serial, time};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Third-party crates (virtio-drivers, smoltcp) only get to say warnings and errors.
        let ours = [
            "kernel",
            "appliance",
            "netstack",
            "storage",
            "keel",
            "host_config",
        ]
        .iter()
        .any(|c| metadata.target().starts_with(c));
        metadata.level() <= log::max_level() && (ours || metadata.level() <= log::Level::Warn)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = time::now();
        let cpu = percpu::index();
        serial::with_console(|c| {
            let _ = writeln!(
                c,
                "[{:>5}.{:06}] {:<5} cpu{}: {}",
                t.as_secs(),
                t.subsec_micros(),
                record.level(),
                cpu,
                record.args()
            );
        });
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (from `loglevel=` on the command line).
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        Some("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(filter);
    }
}
