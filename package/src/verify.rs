//! Digests and detached ed25519 signatures of package archives.
//!
//! A signature signs the message `crpc-package-sha256:<hex digest>`: signing the digest lets a
//! publisher sign without re-reading the archive, and the domain prefix keeps the key from being
//! usable to sign anything else by accident.
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not the ones published.
    #[error("sha256 mismatch: expected {expected}, got {actual} (the download is corrupt or was tampered with)")]
    Digest {
        /// Recorded at publish.
        expected: String,
        /// Of the bytes at hand.
        actual: String,
    },
    /// Trusted keys are configured but the version carries no signature.
    #[error("the package is not signed, and trusted keys are configured")]
    Unsigned,
    /// The signature is malformed.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// No trusted key made this signature.
    #[error("the signature was not made by any trusted key")]
    Untrusted,
    /// A key file or string is malformed.
    #[error("bad key: {0}")]
    BadKey(String),
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn message(digest_hex: &str) -> Vec<u8> {
    format!("crpc-package-sha256:{digest_hex}").into_bytes()
}

/// Public keys whose signatures are accepted. Empty: signatures are not required.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
}

impl TrustedKeys {
    /// From hex-encoded 32-byte public keys.
    pub fn from_hex<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Self, VerifyError> {
        let mut out = Vec::new();
        for k in keys {
            out.push(parse_public(k)?);
        }
        Ok(TrustedKeys { keys: out })
    }

    /// From files holding one hex public key each (blank lines and `#` comments ignored).
    pub fn from_files(paths: &[impl AsRef<Path>]) -> Result<Self, VerifyError> {
        let mut texts = Vec::new();
        for p in paths {
            let t = std::fs::read_to_string(p.as_ref())
                .map_err(|e| VerifyError::BadKey(format!("{}: {e}", p.as_ref().display())))?;
            texts.extend(
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Self::from_hex(texts.iter().map(String::as_str))
    }

    /// No keys: signatures are not checked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn parse_public(k: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes: [u8; 32] = hex::decode(k.trim())
        .map_err(|e| VerifyError::BadKey(e.to_string()))?
        .try_into()
        .map_err(|_| VerifyError::BadKey("a public key is 32 bytes (64 hex characters)".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| VerifyError::BadKey(e.to_string()))
}

/// Checks the digest, then (with trusted keys) the signature.
pub fn verify(
    bytes: &[u8],
    expected_sha256: &str,
    signature_hex: Option<&str>,
    trusted: &TrustedKeys,
) -> Result<(), VerifyError> {
    let actual = sha256_hex(bytes);
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(VerifyError::Digest {
            expected: expected_sha256.to_string(),
            actual,
        });
    }
    if trusted.is_empty() {
        return Ok(());
    }
    let sig = signature_hex.ok_or(VerifyError::Unsigned)?;
    let sig = parse_signature(sig)?;
    let msg = message(&actual);
    if trusted.keys.iter().any(|k| k.verify(&msg, &sig).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Untrusted)
    }
}

/// Parses a hex signature (64 bytes).
pub fn parse_signature(sig: &str) -> Result<Signature, VerifyError> {
    let bytes: [u8; 64] = hex::decode(sig.trim())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .try_into()
        .map_err(|_| {
            VerifyError::Malformed("a signature is 64 bytes (128 hex characters)".into())
        })?;
    Ok(Signature::from_bytes(&bytes))
}

/// A signing key from its hex secret (32 bytes).
pub fn signing_key(secret_hex: &str) -> Result<SigningKey, VerifyError> {
    let bytes: [u8; 32] = hex::decode(secret_hex.trim())
        .map_err(|e| VerifyError::BadKey(e.to_string()))?
        .try_into()
        .map_err(|_| VerifyError::BadKey("a secret key is 32 bytes (64 hex characters)".into()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A fresh key pair: (secret hex, public hex).
pub fn generate_key() -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&secret);
    (
        hex::encode(secret),
        hex::encode(key.verifying_key().to_bytes()),
    )
}

/// Signs an archive: hex signature over its digest.
pub fn sign(bytes: &[u8], key: &SigningKey) -> String {
    hex::encode(key.sign(&message(&sha256_hex(bytes))).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_signature_are_enforced() {
        let (secret, public) = generate_key();
        let (_, other_public) = generate_key();
        let key = signing_key(&secret).unwrap();
        let bytes = b"archive bytes".to_vec();
        let digest = sha256_hex(&bytes);
        let sig = sign(&bytes, &key);
        let trusted = TrustedKeys::from_hex([public.as_str()]).unwrap();
        assert!(verify(&bytes, &digest, Some(&sig), &trusted).is_ok());
        assert!(verify(&bytes, &digest, None, &TrustedKeys::default()).is_ok());
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            verify(&flipped, &digest, Some(&sig), &trusted),
            Err(VerifyError::Digest { .. })
        ));
        let wrong = TrustedKeys::from_hex([other_public.as_str()]).unwrap();
        assert_eq!(
            verify(&bytes, &digest, Some(&sig), &wrong),
            Err(VerifyError::Untrusted)
        );
        assert_eq!(
            verify(&bytes, &digest, None, &trusted),
            Err(VerifyError::Unsigned)
        );
    }
}
