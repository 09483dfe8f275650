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

/// The server side of TLS for a certificate chain and key the operator
/// supplied in the host config, and what the XenAPI says of it. Refused
/// (with the reason, for the log) when the key does not load with the
/// provider or does not match the first certificate: a signature made with
/// the key must verify with the certificate's public key.
pub fn supplied_server_config(
    supplied: &host_config::SuppliedTls,
    clock: Arc<Clock>,
) -> Result<(Arc<rustls::ServerConfig>, crate::xenapi::ServerCertificate), String> {
    use host_config::KeyKind;
    use rustls::pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
    let Some(leaf) = supplied.certificate_chain.first() else {
        return Err("the certificate file holds no certificate".into());
    };
    let chain: Vec<CertificateDer<'static>> = supplied
        .certificate_chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let key: PrivateKeyDer<'static> = match supplied.key_kind {
        KeyKind::Pkcs8 => PrivatePkcs8KeyDer::from(supplied.key.clone()).into(),
        KeyKind::Sec1 => PrivateSec1KeyDer::from(supplied.key.clone()).into(),
        KeyKind::Pkcs1 => PrivatePkcs1KeyDer::from(supplied.key.clone()).into(),
    };
    let provider = Arc::new(rustls_rustcrypto::provider());
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            alloc::format!(
                "the key does not load ({e}); supported: ECDSA P-256 and P-384, RSA, Ed25519 \
                 in PKCS#8, SEC 1 or PKCS#1"
            )
        })?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let cert = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| alloc::format!("the certificate cannot be read ({e:?})"))?;
    let mapping = provider.signature_verification_algorithms.mapping;
    let schemes: Vec<rustls::SignatureScheme> = mapping.iter().map(|(s, _)| *s).collect();
    let signer = signing.choose_scheme(&schemes).ok_or_else(|| {
        String::from("the key signs with no scheme this build can check a certificate with")
    })?;
    const PROBE: &[u8] = b"keel: does the supplied key match its certificate?";
    let signature = signer
        .sign(PROBE)
        .map_err(|e| alloc::format!("the key cannot sign ({e})"))?;
    let matches = mapping
        .iter()
        .filter(|(s, _)| *s == signer.scheme())
        .flat_map(|(_, algs)| algs.iter())
        .any(|alg| cert.verify_signature(*alg, PROBE, &signature).is_ok());
    if !matches {
        return Err(
            "the key does not match the certificate (a signature made with the key does not \
             verify with the certificate's public key)"
                .into(),
        );
    }
    let mut config = rustls::ServerConfig::builder_with_details(provider, clock)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| alloc::format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| alloc::format!("TLS certificate: {e}"))?;
    config.send_tls13_tickets = 0;
    let certificate = crate::xenapi::ServerCertificate {
        pem: cert::pem("CERTIFICATE", leaf),
        sha256: cert::fingerprint(leaf),
    };
    Ok((Arc::new(config), certificate))
}

/// Where the certificate HTTPS serves came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The host config's `tls_certificate_file`/`tls_key_file`.
    Supplied,
    /// The host's own, read from the configuration store.
    Stored,
    /// The host's own, made now (and stored when there is a store).
    Generated,
}

impl Source {
    /// The word the serial log uses.
    pub fn word(self) -> &'static str {
        match self {
            Source::Supplied => "supplied",
            Source::Stored => "stored",
            Source::Generated => "new",
        }
    }
}

/// What HTTPS serves, from [`host_tls`].
#[derive(Debug)]
pub struct HostTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certificate: crate::xenapi::ServerCertificate,
    pub source: Source,
    /// Why the supplied certificate is not the one served, if one was
    /// supplied and refused (the caller logs it).
    pub refused: Option<String>,
}

/// The host's TLS setup: the supplied certificate when it is usable, else
/// the host's own from `store`, made there at first boot. The supplied one
/// is never written to the store: removing it from the host config brings
/// the host's own certificate back.
pub fn host_tls(
    supplied: Option<&host_config::SuppliedTls>,
    store: Option<&mut dyn crate::xenapi::StateStore>,
    subject: &Subject<'_>,
    random: &mut dyn FnMut(&mut [u8]),
    clock: Arc<Clock>,
) -> Result<HostTls, String> {
    let mut refused = None;
    if let Some(supplied) = supplied {
        match supplied_server_config(supplied, Arc::clone(&clock)) {
            Ok((config, certificate)) => {
                return Ok(HostTls {
                    config,
                    certificate,
                    source: Source::Supplied,
                    refused,
                });
            }
            Err(e) => refused = Some(e),
        }
    }
    let (identity, source) = match store {
        Some(store) => {
            let (identity, origin) = store::load_or_generate(store, subject, random)?;
            let source = match origin {
                store::Origin::Stored => Source::Stored,
                store::Origin::Generated => Source::Generated,
            };
            (identity, source)
        }
        None => (
            Identity::generate(subject, random).map_err(|e| alloc::format!("{e}"))?,
            Source::Generated,
        ),
    };
    Ok(HostTls {
        config: server_config(&identity, clock)?,
        certificate: server_certificate(&identity),
        source,
        refused,
    })
}

/// What the XenAPI and `/health` say of `identity`.
pub fn server_certificate(identity: &Identity) -> crate::xenapi::ServerCertificate {
    crate::xenapi::ServerCertificate {
        pem: identity.cert_pem(),
        sha256: identity.fingerprint(),
    }
}
