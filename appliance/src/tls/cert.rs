//! The host's own certificate: an ECDSA P-256 key made from the platform's
//! randomness and a self-signed X.509 v3 certificate naming the hostname
//! (and the management address, when known) — written by a small DER
//! writer, since the X.509 builders need `std`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};

/// The host's TLS identity: its certificate and the key it certifies.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The P-256 private scalar, big-endian.
    key: [u8; 32],
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Why an identity cannot be made or read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The stored record is not one this build wrote.
    BadRecord(&'static str),
    /// The key or certificate could not be encoded.
    Encoding(String),
}

impl core::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IdentityError::BadRecord(why) => write!(f, "stored TLS identity unreadable: {why}"),
            IdentityError::Encoding(why) => write!(f, "TLS identity: {why}"),
        }
    }
}

/// What the certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub hostname: &'a str,
    pub address: Option<[u8; 4]>,
    /// Seconds since the Unix epoch (notBefore is a day earlier), if known.
    pub unix_now: Option<u64>,
}

/// Record format version (first byte of [`Identity::to_record`]).
const RECORD_V1: u8 = 1;

impl Identity {
    /// A new key from `random` (tries further 32-byte draws until one is a
    /// valid scalar) and its self-signed certificate.
    pub fn generate(
        subject: &Subject<'_>,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Identity, IdentityError> {
        let mut key = [0u8; 32];
        let signing = loop {
            random(&mut key);
            if let Ok(k) = SigningKey::from_slice(&key) {
                break k;
            }
        };
        let mut serial = [0u8; 16];
        random(&mut serial);
        let cert_der = self_signed(&signing, subject, &serial);
        Ok(Identity { cert_der, key })
    }

    /// The key as PKCS#8 DER (what rustls loads).
    pub fn key_pkcs8(&self) -> Result<Vec<u8>, IdentityError> {
        let signing = SigningKey::from_slice(&self.key)
            .map_err(|_| IdentityError::Encoding("the key is not a P-256 scalar".into()))?;
        signing
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| IdentityError::Encoding(format!("PKCS#8: {e}")))
    }

    /// `-----BEGIN CERTIFICATE-----` PEM of the certificate.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// SHA-256 of the certificate, `AB:CD:...` (as `openssl x509 -fingerprint -sha256`).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// The stored form: version, certificate length (u32 LE), certificate, key.
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 4 + self.cert_der.len() + 32);
        out.push(RECORD_V1);
        let len = u32::try_from(self.cert_der.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.cert_der);
        out.extend_from_slice(&self.key);
        out
    }

    /// Reads back [`Identity::to_record`]; checks the key is valid.
    pub fn from_record(bytes: &[u8]) -> Result<Identity, IdentityError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(IdentityError::BadRecord("empty"))?;
        if version != RECORD_V1 {
            return Err(IdentityError::BadRecord("unknown version"));
        }
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(IdentityError::BadRecord("truncated"))?;
        let len = usize::try_from(u32::from_le_bytes(len_bytes))
            .map_err(|_| IdentityError::BadRecord("length"))?;
        let rest = rest.get(4..).unwrap_or_default();
        if rest.len() != len.saturating_add(32) {
            return Err(IdentityError::BadRecord("length mismatch"));
        }
        let (cert, key) = rest.split_at(len);
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| IdentityError::BadRecord("key length"))?;
        SigningKey::from_slice(&key).map_err(|_| IdentityError::BadRecord("invalid key"))?;
        Ok(Identity {
            cert_der: cert.to_vec(),
            key,
        })
    }
}

/// SHA-256 of a DER certificate, `AB:CD:...` (as `openssl x509 -fingerprint -sha256`).
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let mut out = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// PEM armour of `der` under `label`, 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(core::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// --- DER -------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const BOOLEAN: u8 = 0x01;

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// commonName (2.5.4.3).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from big-endian bytes.
fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut content = Vec::new();
    match bytes.get(skip..) {
        Some(rest) if !rest.is_empty() => {
            if rest.first().is_some_and(|b| b & 0x80 != 0) {
                content.push(0);
            }
            content.extend_from_slice(rest);
        }
        _ => content.push(0),
    }
    tlv(INTEGER, &content)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let critical = if critical {
        tlv(BOOLEAN, &[0xff])
    } else {
        Vec::new()
    };
    seq(&[&tlv(OID, oid), &critical, &tlv(OCTET_STRING, value)])
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// notBefore: a day before `unix_now` (clocks differ), or 2025-01-01 when
/// the date is unknown. UTCTime, as RFC 5280 asks for years before 2050.
fn not_before(unix_now: Option<u64>) -> Vec<u8> {
    let secs = unix_now.map_or(1_735_689_600, |s| s.saturating_sub(86_400));
    let secs = i64::try_from(secs.min(2_524_607_999)).unwrap_or(0);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let text = format!(
        "{:02}{m:02}{d:02}{:02}{:02}{:02}Z",
        y.rem_euclid(100),
        t / 3600,
        t / 60 % 60,
        t % 60
    );
    tlv(UTC_TIME, text.as_bytes())
}

fn self_signed(key: &SigningKey, subject: &Subject<'_>, serial: &[u8; 16]) -> Vec<u8> {
    let point = key.verifying_key().to_encoded_point(false);
    let spki = seq(&[
        &seq(&[&tlv(OID, OID_EC_PUBLIC_KEY), &tlv(OID, OID_P256)]),
        &bit_string(point.as_bytes()),
    ]);
    // RFC 7093 method 1: the leftmost 160 bits of the key's SHA-256.
    let key_id = Sha256::digest(point.as_bytes());
    let key_id = key_id.get(..20).unwrap_or_default();
    let name = seq(&[&tlv(
        SET,
        &seq(&[
            &tlv(OID, OID_CN),
            &tlv(UTF8_STRING, subject.hostname.as_bytes()),
        ]),
    )]);
    let algorithm = seq(&[&tlv(OID, OID_ECDSA_SHA256)]);
    let validity = seq(&[
        &not_before(subject.unix_now),
        // RFC 5280 4.1.2.5: no well-defined expiration date.
        &tlv(GENERALIZED_TIME, b"99991231235959Z"),
    ]);
    let mut names = tlv(0x82, subject.hostname.as_bytes());
    if let Some(address) = subject.address {
        names.extend_from_slice(&tlv(0x87, &address));
    }
    // A server certificate that is its own trust anchor when pinned: not a
    // CA (webpki-based clients refuse a CA certificate as a server's), with
    // the key identifiers OpenSSL's strict mode wants.
    let extensions = seq(&[
        &extension(OID_BASIC_CONSTRAINTS, true, &seq(&[])),
        // digitalSignature (bit 0) only.
        &extension(OID_KEY_USAGE, true, &tlv(BIT_STRING, &[0x07, 0x80])),
        &extension(
            OID_EXT_KEY_USAGE,
            false,
            &seq(&[&tlv(OID, OID_SERVER_AUTH)]),
        ),
        &extension(OID_SUBJECT_KEY_ID, false, &tlv(OCTET_STRING, key_id)),
        &extension(OID_AUTHORITY_KEY_ID, false, &seq(&[&tlv(0x80, key_id)])),
        &extension(OID_SUBJECT_ALT_NAME, false, &tlv(SEQUENCE, &names)),
    ]);
    let mut serial = *serial;
    // Positive, and never zero.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let tbs = seq(&[
        &tlv(0xa0, &unsigned_integer(&[2])),
        &unsigned_integer(&serial),
        &algorithm,
        &name,
        &validity,
        &name,
        &spki,
        &tlv(0xa3, &extensions),
    ]);
    let signature: Signature = key.sign(&tbs);
    seq(&[&tbs, &algorithm, &bit_string(signature.to_der().as_bytes())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut(&mut [u8]) {
        let mut n = 1u8;
        move |buf: &mut [u8]| {
            for b in buf {
                *b = n;
                n = n.wrapping_mul(31).wrapping_add(7);
            }
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_454), (2026, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(not_before(Some(86_400)), tlv(UTC_TIME, b"700101000000Z"));
        assert_eq!(not_before(None), tlv(UTC_TIME, b"250101000000Z"));
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn long_lengths() {
        assert_eq!(
            tlv(OCTET_STRING, &[0; 200]).get(..3),
            Some(&[4, 0x81, 200][..])
        );
        assert_eq!(
            tlv(OCTET_STRING, &[0; 300]).get(..4),
            Some(&[4, 0x82, 1, 44][..])
        );
    }

    #[test]
    fn record_round_trips_and_bad_records_are_refused() {
        let subject = Subject {
            hostname: "keel-test",
            address: Some([10, 0, 2, 15]),
            unix_now: Some(1_796_515_200),
        };
        let id = Identity::generate(&subject, &mut counter()).unwrap();
        let record = id.to_record();
        assert_eq!(Identity::from_record(&record).unwrap(), id);
        for cut in 0..record.len() {
            assert!(Identity::from_record(&record[..cut]).is_err());
        }
        let mut bad = record.clone();
        bad[0] = 9;
        assert!(Identity::from_record(&bad).is_err());
        assert!(id.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(id.fingerprint().len(), 95);
        // rustls' provider takes the key.
        let der = id.key_pkcs8().unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(der.into());
        assert!(rustls_rustcrypto::sign::any_supported_type(&key).is_ok());
    }
}
