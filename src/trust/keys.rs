//! ed25519 keys and signatures of registrations, in the base64 forms the EdgeNode carries.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::encoding::{canonical_bytes, EncodingError};
use crate::api::EdgeNodeSpec;

/// Bytes of an ed25519 public key, secret key (seed) and signature.
pub const PUBLIC_KEY_BYTES: usize = 32;
pub const SECRET_KEY_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;

/// Why a registration's signature does not check out, in words for its operator.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SignatureError {
    #[error("publicKey is not valid base64: {0}")]
    PublicKeyBase64(String),
    #[error("publicKey decodes to {0} bytes; an ed25519 public key has 32")]
    PublicKeyLength(usize),
    #[error("publicKey is not an ed25519 public key (not a point on the curve)")]
    PublicKeyInvalid,
    #[error("signature is not valid base64: {0}")]
    SignatureBase64(String),
    #[error("signature decodes to {0} bytes; an ed25519 signature has 64")]
    SignatureLength(usize),
    #[error("the registration cannot be encoded: {0}")]
    Encoding(#[from] EncodingError),
    #[error("the signature does not match the registration and publicKey (forged, made with another key, or a signed field changed after signing)")]
    Mismatch,
}

impl SignatureError {
    /// The registration is unreadable (as opposed to readable but wrongly signed).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, SignatureError::Mismatch)
    }
}

/// Why a node key file cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not valid base64: {0}")]
    Base64(String),
    #[error("the key decodes to {0} bytes; an ed25519 secret key (seed) has 32")]
    Length(usize),
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// A node operator's secret signing key. Its `Debug` never shows the secret.
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; SECRET_KEY_BYTES];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The key with this 32-byte seed (tests and the worked example use fixed seeds).
    pub fn from_seed(seed: [u8; SECRET_KEY_BYTES]) -> Self {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    /// Reads the key file format: the seed in base64, surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        let seed: [u8; SECRET_KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Self::from_seed(seed))
    }

    /// The key file format: the seed in base64.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.to_bytes())
    }

    /// The public key as an EdgeNode's `publicKey` (44 characters).
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs arbitrary bytes; the signature in base64 (88 characters).
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        BASE64.encode(self.0.sign(message).to_bytes())
    }

    /// Sets `spec.publicKey` to this key and `spec.signature` to its signature over the
    /// canonical encoding.
    pub fn sign(&self, spec: &mut EdgeNodeSpec) -> Result<(), EncodingError> {
        spec.public_key = self.public_key_base64();
        spec.signature = self.sign_bytes(&canonical_bytes(spec)?);
        Ok(())
    }
}

/// Decodes a base64 ed25519 public key (as in `publicKey` or a trust policy).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SignatureError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| SignatureError::PublicKeyBase64(e.to_string()))?;
    let bytes: [u8; PUBLIC_KEY_BYTES] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SignatureError::PublicKeyLength(bytes.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::PublicKeyInvalid)
}

fn parse_signature(text: &str) -> Result<Signature, SignatureError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| SignatureError::SignatureBase64(e.to_string()))?;
    let bytes: [u8; SIGNATURE_BYTES] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SignatureError::SignatureLength(bytes.len()))?;
    Ok(Signature::from_bytes(&bytes))
}

/// Whether `spec.signature` is `spec.publicKey`'s ed25519 signature over the canonical
/// encoding of `spec`. Strict verification: weak keys and malleable signatures are refused.
pub fn verify_signature(spec: &EdgeNodeSpec) -> Result<(), SignatureError> {
    let key = parse_public_key(&spec.public_key)?;
    let signature = parse_signature(&spec.signature)?;
    let message = canonical_bytes(spec)?;
    key.verify_strict(&message, &signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::encoding::tests::spec;

    fn key(n: u8) -> NodeKey {
        NodeKey::from_seed([n; 32])
    }

    #[test]
    fn a_signed_registration_verifies() {
        let mut s = spec();
        key(1).sign(&mut s).expect("signs");
        assert_eq!(s.public_key.len(), 44);
        assert_eq!(s.signature.len(), 88);
        assert_eq!(verify_signature(&s), Ok(()));
    }

    #[test]
    fn a_changed_field_or_another_key_breaks_it() {
        let mut s = spec();
        key(1).sign(&mut s).expect("signs");
        let mut tampered = s.clone();
        tampered.price_per_hour = Some(0.01);
        assert_eq!(verify_signature(&tampered), Err(SignatureError::Mismatch));
        let mut other_key = s.clone();
        other_key.public_key = key(2).public_key_base64();
        assert_eq!(verify_signature(&other_key), Err(SignatureError::Mismatch));
    }

    #[test]
    fn unreadable_keys_and_signatures_say_what_is_wrong() {
        let mut s = spec();
        key(1).sign(&mut s).expect("signs");
        let with = |f: fn(&mut EdgeNodeSpec)| {
            let mut t = s.clone();
            f(&mut t);
            verify_signature(&t)
        };
        assert!(matches!(
            with(|t| t.public_key = "not base64!".into()),
            Err(SignatureError::PublicKeyBase64(_))
        ));
        assert_eq!(
            with(|t| t.public_key = "AAAA".into()),
            Err(SignatureError::PublicKeyLength(3))
        );
        assert!(matches!(
            with(|t| t.signature = "%%".into()),
            Err(SignatureError::SignatureBase64(_))
        ));
        assert_eq!(
            with(|t| t.signature = BASE64.encode([0u8; 63])),
            Err(SignatureError::SignatureLength(63))
        );
        assert_eq!(
            with(|t| t.price_per_hour = Some(f64::NAN)),
            Err(SignatureError::Encoding(EncodingError::NotFinite {
                field: "pricePerHour"
            }))
        );
        // 43 A's and '=' decode to 32 zero bytes: the identity point, a weak key.
        let weak = with(|t| t.public_key = format!("{}=", "A".repeat(43)));
        assert!(
            matches!(
                weak,
                Err(SignatureError::PublicKeyInvalid) | Err(SignatureError::Mismatch)
            ),
            "{weak:?}"
        );
    }

    #[test]
    fn key_files_round_trip_and_debug_hides_the_secret() {
        let k = key(7);
        let text = k.to_base64();
        let back = NodeKey::from_base64(&format!("  {text}\n")).expect("reads");
        assert_eq!(back.public_key_base64(), k.public_key_base64());
        assert!(!format!("{k:?}").contains(&text));
        assert_eq!(
            NodeKey::from_base64("AAAA").map(|_| ()),
            Err(KeyError::Length(3))
        );
        assert!(matches!(
            NodeKey::from_base64("***"),
            Err(KeyError::Base64(_))
        ));
    }

    #[test]
    fn generated_keys_differ() {
        let a = NodeKey::generate().expect("random");
        let b = NodeKey::generate().expect("random");
        assert_ne!(a.public_key_base64(), b.public_key_base64());
    }
}
