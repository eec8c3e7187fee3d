//! Stored client secrets in the formats PostgreSQL keeps in `pg_authid.rolpassword`.
//!
//! Part of the config stage: owns checking and decoding SCRAM verifiers and MD5 hashes, so
//! validation can reject a malformed one and the frontend can decode a validated one without
//! re-checking. Pure; it never derives keys from passwords and never renders key material.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why a stored secret is malformed. Messages never echo the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    #[error(
        "SCRAM verifier must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> \
         (as in pg_authid.rolpassword)"
    )]
    ScramShape,
    /// The iteration count is not a positive whole number.
    #[error("SCRAM verifier iteration count must be a whole number from 1 to 4294967295")]
    ScramIterations,
    /// A part is not valid standard base64, or is empty.
    #[error("SCRAM verifier {part} is not valid, non-empty base64")]
    ScramBase64 {
        /// Which part: `salt`, `StoredKey` or `ServerKey`.
        part: &'static str,
    },
    /// A key that does not have the 32 bytes of a SHA-256 digest.
    #[error("SCRAM verifier {part} must decode to 32 bytes (a SHA-256 digest), not {len}")]
    ScramKeyLength {
        /// `StoredKey` or `ServerKey`.
        part: &'static str,
        /// Decoded length.
        len: usize,
    },
    /// Not `md5` followed by 32 hex digits.
    #[error("md5 hash must be `md5` followed by 32 hex digits (as in pg_authid.rolpassword)")]
    Md5Shape,
}

/// A decoded SCRAM-SHA-256 verifier: what the frontend needs to check a client's proof
/// (RFC 5802 §3) without ever knowing the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count the client must use.
    pub iterations: u32,
    /// Salt sent to the client in the server-first message.
    pub salt: Vec<u8>,
    /// `SHA-256(ClientKey)`: checks the client proof.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server-final message.
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Decodes `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the format
    /// PostgreSQL stores and `\password` produces, with standard (padded) base64.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(SecretError::ScramShape)?;
        let (iterations_salt, keys) = rest.split_once('$').ok_or(SecretError::ScramShape)?;
        let (iterations, salt) = iterations_salt
            .split_once(':')
            .ok_or(SecretError::ScramShape)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(SecretError::ScramShape)?;
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(SecretError::ScramIterations),
        };
        Ok(Self {
            iterations,
            salt: decode(salt, "salt")?,
            stored_key: decode_key(stored_key, "StoredKey")?,
            server_key: decode_key(server_key, "ServerKey")?,
        })
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Salt and iterations travel in clear text during SCRAM; the keys never do.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

fn decode(text: &str, part: &'static str) -> Result<Vec<u8>, SecretError> {
    match STANDARD.decode(text) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(SecretError::ScramBase64 { part }),
    }
}

fn decode_key(text: &str, part: &'static str) -> Result<[u8; 32], SecretError> {
    let bytes = decode(text, part)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| SecretError::ScramKeyLength { part, len })
}

/// Checks an MD5 password hash (`md5` + 32 hex digits) and returns it with lowercase hex: the
/// form PostgreSQL stores, and the text the AuthenticationMD5Password challenge is computed
/// over, so an uppercase hash in the config still matches what clients send.
pub fn normalize_md5_hash(text: &str) -> Result<String, SecretError> {
    let hex = text.strip_prefix("md5").ok_or(SecretError::Md5Shape)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SecretError::Md5Shape);
    }
    Ok(format!("md5{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5802 keys for password "app", salt "saltsaltsaltsalt", 4096 iterations.
    const VERIFIER: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
        67JFtZNI0yaS8i+7fP8/m/zCGx7Aa697n5KX1HseycM=:\
        5/1Y0k/ettsWQ3XOOoMkGMphA7V8yuRhvhBAbo3XowA=";

    #[test]
    fn parses_a_postgres_verifier() {
        let verifier = ScramVerifier::parse(VERIFIER).unwrap();
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt, b"saltsaltsaltsalt");
        assert_eq!(verifier.stored_key[0], 0xeb);
        let debug = format!("{verifier:?}");
        assert!(!debug.contains("67JF") && debug.contains("4096"), "{debug}");
    }

    #[test]
    fn rejects_malformed_verifiers() {
        let bad = |text: &str| ScramVerifier::parse(text).unwrap_err();
        assert_eq!(
            bad("SCRAM-SHA-1$4096:c2FsdA==$a:b"),
            SecretError::ScramShape
        );
        assert_eq!(
            bad("SCRAM-SHA-256$4096:c2FsdA==:a:b"),
            SecretError::ScramShape
        );
        assert_eq!(
            bad("SCRAM-SHA-256$0:c2FsdA==$a:b"),
            SecretError::ScramIterations
        );
        assert_eq!(
            bad("SCRAM-SHA-256$x:c2FsdA==$a:b"),
            SecretError::ScramIterations
        );
        let no_salt = "SCRAM-SHA-256$4096:$a:b";
        assert_eq!(bad(no_salt), SecretError::ScramBase64 { part: "salt" });
        let short = "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:c2FsdA==";
        let len = SecretError::ScramKeyLength {
            part: "StoredKey",
            len: 4,
        };
        assert_eq!(bad(short), len);
    }

    #[test]
    fn md5_hash_needs_prefix_and_32_hex_digits() {
        let hash = "md5ABCDEF0123456789abcdef0123456789";
        assert_eq!(normalize_md5_hash(hash).unwrap(), hash.to_ascii_lowercase());
        assert_eq!(
            normalize_md5_hash("abcdef0123456789abcdef0123456789"),
            Err(SecretError::Md5Shape)
        );
        assert_eq!(normalize_md5_hash("md5abc"), Err(SecretError::Md5Shape));
        assert_eq!(
            normalize_md5_hash("md5zzzzzz0123456789abcdef0123456789"),
            Err(SecretError::Md5Shape)
        );
    }
}
