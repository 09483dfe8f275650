//! HTTPS: the host's TLS identity and a TLS layer between a connection's
//! bytes and the HTTP state machine ([`crate::server::Connection`]).
//!
//! rustls without `std`: its unbuffered server connection, driven from the
//! poll loop (never blocking), with the RustCrypto provider
//! (`rustls-rustcrypto`, pure Rust; see the appliance README for why).
//! TLS 1.2 and 1.3, ECDHE (X25519, P-256, P-384) with AES-GCM and
//! ChaCha20-Poly1305 only: the provider has no CBC suites, no RSA key
//! exchange, no SSLv3.

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

/// The wall clock rustls reads (session tickets): the seconds the poll loop
/// last stored from the platform. A TLS server without client certificates
/// checks no certificate dates, so a clock the platform does not know
/// (`None`) only means tickets are refused.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// Stores the time now (seconds since the Unix epoch).
    pub fn set(&self, unix_seconds: Option<u64>) {
        self.0.store(unix_seconds.unwrap_or(0), Ordering::Relaxed);
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(UnixTime::since_unix_epoch(core::time::Duration::from_secs(
                secs,
            ))),
        }
    }
}

/// The server side of TLS for `identity`: what every HTTPS connection shares.
pub fn server_config(
    identity: &Identity,
    clock: Arc<Clock>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = identity.key_pkcs8().map_err(|e| alloc::format!("{e}"))?;
    let chain: Vec<CertificateDer<'static>> = alloc::vec![identity.cert_der.clone().into()];
    let config =
        rustls::ServerConfig::builder_with_details(Arc::new(rustls_rustcrypto::provider()), clock)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| alloc::format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.into()))
            .map_err(|e| alloc::format!("TLS certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// What the XenAPI and `/health` say of `identity`.
pub fn server_certificate(identity: &Identity) -> crate::xenapi::ServerCertificate {
    crate::xenapi::ServerCertificate {
        pem: identity.cert_pem(),
        sha256: identity.fingerprint(),
    }
}
