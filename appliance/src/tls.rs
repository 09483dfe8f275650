//! HTTPS: the host's TLS identity and a TLS layer between a connection's
//! bytes and the HTTP state machine ([`crate::server::Connection`]).
//!
//! rustls without `std`: its unbuffered server connection, driven from the
//! poll loop (never blocking), with the RustCrypto provider
//! (`rustls-rustcrypto`, pure Rust; see the appliance README for why).
//! TLS 1.2 and 1.3, ECDHE (X25519, P-256, P-384) with AES-GCM and
//! ChaCha20-Poly1305 only: the provider has no CBC suites, no RSA key
//! exchange, no SSLv3. No session resumption: every connection makes a
//! full handshake.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::time_provider::TimeProvider;

pub mod cert;
mod session;
pub mod store;

pub use cert::{Identity, IdentityError, Subject};
pub use session::TlsConnection;

/// Where HTTPS listens.
pub const HTTPS_PORT: u16 = 443;

/// The wall clock rustls reads: the seconds the poll loop last stored from
/// the platform. rustls refuses to complete a handshake without a time (it
/// stamps session data with it), yet a server without client certificates
/// checks no certificate date: a platform that does not know the date gives
/// [`UNKNOWN_DATE_EPOCH`] plus the time since boot.
#[derive(Debug)]
pub struct Clock(AtomicU64);

/// 2025-01-01T00:00:00Z, where the clock starts when the date is unknown.
pub const UNKNOWN_DATE_EPOCH: u64 = 1_735_689_600;

impl Default for Clock {
    fn default() -> Self {
        Clock(AtomicU64::new(UNKNOWN_DATE_EPOCH))
    }
}

impl Clock {
    /// Stores the time now: seconds since the Unix epoch if known, and the
    /// time since boot.
    pub fn set(&self, unix_seconds: Option<u64>, since_boot: core::time::Duration) {
        let now = unix_seconds.unwrap_or(UNKNOWN_DATE_EPOCH + since_boot.as_secs());
        self.0.store(now, Ordering::Relaxed);
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = self.0.load(Ordering::Relaxed);
        Some(UnixTime::since_unix_epoch(core::time::Duration::from_secs(
            secs,
        )))
    }
}

/// The server side of TLS for `identity`: what every HTTPS connection shares.
pub fn server_config(
    identity: &Identity,
    clock: Arc<Clock>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = identity.key_pkcs8().map_err(|e| alloc::format!("{e}"))?;
    let chain: Vec<CertificateDer<'static>> = alloc::vec![identity.cert_der.clone().into()];
    let mut config =
        rustls::ServerConfig::builder_with_details(Arc::new(rustls_rustcrypto::provider()), clock)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| alloc::format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.into()))
            .map_err(|e| alloc::format!("TLS certificate: {e}"))?;
    // Nothing is kept to resume a session from (no session store, no
    // ticket key without `std`): tickets would only cost bytes.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// What the XenAPI and `/health` say of `identity`.
pub fn server_certificate(identity: &Identity) -> crate::xenapi::ServerCertificate {
    crate::xenapi::ServerCertificate {
        pem: identity.cert_pem(),
        sha256: identity.fingerprint(),
    }
}
