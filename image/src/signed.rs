//! Signed keel images: a 4096-byte header (manifest and ed25519 signature)
//! followed by the ELF the boot loader starts. The same bytes are the
//! upgrade bundle and the contents of an A/B slot.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "KEELIMG1"
//! 8       2     format version, u16 LE (1)
//! 10      2     zero
//! 12      4     header length, u32 LE (4096): the ELF starts here
//! 16      8     payload (ELF) length, u64 LE
//! 24      32    SHA-256 of the payload
//! 56      64    version string, UTF-8, NUL-padded
//! 120     32    ed25519 public key of the signer
//! 152     64    ed25519 signature over bytes 0..152
//! 216     3880  zero
//! ```
//!
//! The signature covers the payload through its hash, so a verifier can
//! check the header first, then hash a streamed payload without holding it
//! ([`PayloadCheck`]). Verification is `no_std` for the appliance.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Header bytes before the payload (8 sectors).
pub const HEADER_BYTES: usize = 4096;
/// First bytes of every signed image.
pub const MAGIC: [u8; 8] = *b"KEELIMG1";
/// The header layout this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Longest version string.
pub const VERSION_BYTES: usize = 64;

const SIGNED_BYTES: usize = 152;
const SIGNATURE_AT: usize = SIGNED_BYTES;
const SIGNATURE_END: usize = SIGNATURE_AT + 64;

/// An ed25519 public key as a host config lists it.
pub type PublicKey = [u8; 32];

/// Why an image is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Shorter than its header, or not starting with "KEELIMG1".
    NotAnImage,
    UnsupportedVersion(u16),
    /// Header fields that cannot be right (length, version text, padding).
    MalformedHeader,
    /// The signer's key is not among the trusted keys.
    UntrustedKey,
    /// The signature does not match the header.
    BadSignature,
    /// The payload is longer or shorter than the header says.
    LengthMismatch {
        expected: u64,
        actual: u64,
    },
    /// The payload's SHA-256 differs from the signed one.
    DigestMismatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnImage => f.write_str("not a signed keel image (no KEELIMG1 header)"),
            Self::UnsupportedVersion(v) => {
                write!(f, "signed image format {v} is not supported (this build reads {FORMAT_VERSION})")
            }
            Self::MalformedHeader => f.write_str("signed image header is malformed"),
            Self::UntrustedKey => f.write_str(
                "image is signed by a key this host does not trust (add it to trusted_keys in the host config)",
            ),
            Self::BadSignature => f.write_str("image signature does not verify"),
            Self::LengthMismatch { expected, actual } => write!(
                f,
                "image payload is {actual} bytes, its header says {expected}"
            ),
            Self::DigestMismatch => f.write_str("image payload does not match its signed SHA-256"),
        }
    }
}

/// Why an image cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The version string is longer than 64 bytes or holds NUL.
    BadVersion,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVersion => f.write_str("version string must be 1..=64 bytes without NUL"),
        }
    }
}

/// What a header states about its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    version: [u8; VERSION_BYTES],
    version_len: usize,
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    pub signer: PublicKey,
}

impl Manifest {
    /// The image's version string (checked UTF-8 at parse).
    pub fn version(&self) -> &str {
        core::str::from_utf8(&self.version[..self.version_len]).unwrap_or("")
    }
}

/// A parsed header whose signature is not checked yet.
#[derive(Debug, Clone)]
pub struct Header {
    manifest: Manifest,
    signed: [u8; SIGNED_BYTES],
    signature: [u8; 64],
}

impl Header {
    /// Reads the header from the first [`HEADER_BYTES`] of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Header, VerifyError> {
        let h = bytes.get(..HEADER_BYTES).ok_or(VerifyError::NotAnImage)?;
        if h[0..8] != MAGIC {
            return Err(VerifyError::NotAnImage);
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != FORMAT_VERSION {
            return Err(VerifyError::UnsupportedVersion(version));
        }
        let header_len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if header_len as usize != HEADER_BYTES
            || h[10..12] != [0, 0]
            || h[SIGNATURE_END..].iter().any(|&b| b != 0)
        {
            return Err(VerifyError::MalformedHeader);
        }
        let text = &h[56..56 + VERSION_BYTES];
        let version_len = text.iter().position(|&b| b == 0).unwrap_or(VERSION_BYTES);
        if version_len == 0
            || text[version_len..].iter().any(|&b| b != 0)
            || core::str::from_utf8(&text[..version_len]).is_err()
        {
            return Err(VerifyError::MalformedHeader);
        }
        let mut manifest = Manifest {
            version: [0; VERSION_BYTES],
            version_len,
            payload_len: u64::from_le_bytes(array(&h[16..24])),
            payload_sha256: array(&h[24..56]),
            signer: array(&h[120..152]),
        };
        manifest.version.copy_from_slice(text);
        Ok(Header {
            manifest,
            signed: array(&h[..SIGNED_BYTES]),
            signature: array(&h[SIGNATURE_AT..SIGNATURE_END]),
        })
    }

    /// Checks that a trusted key signed this header; returns its manifest.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<&Manifest, VerifyError> {
        if !trusted.contains(&self.manifest.signer) {
            return Err(VerifyError::UntrustedKey);
        }
        let key = VerifyingKey::from_bytes(&self.manifest.signer)
            .map_err(|_| VerifyError::BadSignature)?;
        key.verify_strict(&self.signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(&self.manifest)
    }

    /// The manifest as stated (unverified).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// Hashes a payload as it streams in and compares it with a verified manifest.
#[derive(Debug, Clone)]
pub struct PayloadCheck {
    expected_len: u64,
    expected_sha256: [u8; 32],
    seen: u64,
    hasher: Sha256,
}

impl PayloadCheck {
    pub fn new(manifest: &Manifest) -> PayloadCheck {
        PayloadCheck {
            expected_len: manifest.payload_len,
            expected_sha256: manifest.payload_sha256,
            seen: 0,
            hasher: Sha256::new(),
        }
    }

    /// Feeds the next payload bytes; fails as soon as there are too many.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), VerifyError> {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.seen > self.expected_len {
            return Err(VerifyError::LengthMismatch {
                expected: self.expected_len,
                actual: self.seen,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// Checks the length and digest of everything fed.
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.seen != self.expected_len {
            return Err(VerifyError::LengthMismatch {
                expected: self.expected_len,
                actual: self.seen,
            });
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        if digest != self.expected_sha256 {
            return Err(VerifyError::DigestMismatch);
        }
        Ok(())
    }
}

/// Verifies a whole image held in memory; returns its manifest.
pub fn verify(image: &[u8], trusted: &[PublicKey]) -> Result<Manifest, VerifyError> {
    let header = Header::parse(image)?;
    let manifest = header.verify(trusted)?.clone();
    let mut check = PayloadCheck::new(&manifest);
    check.update(&image[HEADER_BYTES..])?;
    check.finish()?;
    Ok(manifest)
}

/// The header for `payload`, signed with the 32-byte ed25519 secret `seed`.
pub fn sign(
    payload: &[u8],
    version: &str,
    seed: &[u8; 32],
) -> Result<[u8; HEADER_BYTES], SignError> {
    if version.is_empty() || version.len() > VERSION_BYTES || version.contains('\0') {
        return Err(SignError::BadVersion);
    }
    let key = SigningKey::from_bytes(seed);
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[24..56].copy_from_slice(&Sha256::digest(payload));
    h[56..56 + version.len()].copy_from_slice(version.as_bytes());
    h[120..152].copy_from_slice(key.verifying_key().as_bytes());
    let signature = key.sign(&h[..SIGNED_BYTES]);
    h[SIGNATURE_AT..SIGNATURE_END].copy_from_slice(&signature.to_bytes());
    Ok(h)
}

/// The public key of the 32-byte secret `seed`.
pub fn public_key(seed: &[u8; 32]) -> PublicKey {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const SEED: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [8; 32];

    fn image(payload: &[u8]) -> Vec<u8> {
        let mut image = sign(payload, "0.1.0+test", &SEED).expect("sign").to_vec();
        image.extend_from_slice(payload);
        image
    }

    #[test]
    fn good_signature_is_accepted() {
        let payload = b"\x7fELF pretend kernel bytes".repeat(100);
        let image = image(&payload);
        let manifest = verify(&image, &[public_key(&OTHER), public_key(&SEED)]).expect("verifies");
        assert_eq!(manifest.version(), "0.1.0+test");
        assert_eq!(manifest.payload_len, payload.len() as u64);
        // Streamed in odd chunks, the same answer.
        let header = Header::parse(&image).expect("header");
        let mut check = PayloadCheck::new(header.verify(&[public_key(&SEED)]).expect("sig"));
        for chunk in image[HEADER_BYTES..].chunks(333) {
            check.update(chunk).expect("chunk");
        }
        check.finish().expect("digest");
    }

    #[test]
    fn flipped_payload_byte_is_refused() {
        let mut image = image(&[1u8; 5000]);
        image[HEADER_BYTES + 1234] ^= 1;
        assert_eq!(
            verify(&image, &[public_key(&SEED)]),
            Err(VerifyError::DigestMismatch)
        );
    }

    #[test]
    fn flipped_header_byte_is_refused() {
        for at in [20, 30, 60, 130, 160, 200] {
            let mut image = image(&[1u8; 100]);
            image[at] ^= 1;
            let result = verify(&image, &[public_key(&SEED)]);
            assert!(
                matches!(
                    result,
                    Err(VerifyError::BadSignature
                        | VerifyError::UntrustedKey
                        | VerifyError::MalformedHeader)
                ),
                "byte {at}: {result:?}"
            );
        }
    }

    #[test]
    fn wrong_key_is_refused() {
        let image = image(&[1u8; 100]);
        assert_eq!(
            verify(&image, &[public_key(&OTHER)]),
            Err(VerifyError::UntrustedKey)
        );
        assert_eq!(verify(&image, &[]), Err(VerifyError::UntrustedKey));
        // A header re-labelled with a trusted signer but signed by another key.
        let mut forged = image.clone();
        forged[120..152].copy_from_slice(&public_key(&OTHER));
        assert_eq!(
            verify(&forged, &[public_key(&OTHER)]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn truncated_or_extended_payload_is_refused() {
        let image = image(&[1u8; 100]);
        assert!(matches!(
            verify(&image[..image.len() - 1], &[public_key(&SEED)]),
            Err(VerifyError::LengthMismatch { .. })
        ));
        let mut longer = image.clone();
        longer.push(0);
        assert!(matches!(
            verify(&longer, &[public_key(&SEED)]),
            Err(VerifyError::LengthMismatch { .. })
        ));
        assert_eq!(
            verify(&image[..100], &[public_key(&SEED)]),
            Err(VerifyError::NotAnImage)
        );
    }

    #[test]
    fn bad_versions_are_refused_at_signing() {
        assert_eq!(sign(b"x", "", &SEED), Err(SignError::BadVersion));
        assert_eq!(
            sign(b"x", &"v".repeat(65), &SEED),
            Err(SignError::BadVersion)
        );
    }
}
