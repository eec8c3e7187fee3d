//! What the proxy checks client logins against, derived once from the config so a login costs
//! no key derivation: SCRAM verifiers (salted and iterated at load) and MD5 inner hashes.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};

use crate::config::{UserEntry, UserSecret};

const SCRAM_ITERATIONS: usize = 4096;

/// A SCRAM-SHA-256 verifier as stored in `pg_authid`.
#[derive(Clone)]
pub struct ScramVerifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramVerifier {
    /// Derives a verifier from a plain password with a fresh random salt.
    pub fn from_password(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self::from_secret(ScramSecret::verifier_from_salted_password(
            salt.to_vec(),
            salted,
            SCRAM_ITERATIONS,
        ))
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iterations.parse().ok()?,
            stored_key: STANDARD.decode(stored).ok()?,
            server_key: STANDARD.decode(server).ok()?,
        })
    }

    /// A verifier no password matches: unknown users go through the same exchange as known
    /// ones and fail at the end, so a client cannot probe which users exist.
    pub fn impossible() -> Self {
        let salt: [u8; 16] = rand::random();
        let key: [u8; 32] = rand::random();
        Self {
            salt: salt.to_vec(),
            iterations: SCRAM_ITERATIONS,
            stored_key: key.to_vec(),
            server_key: key.to_vec(),
        }
    }

    fn from_secret(secret: ScramSecret) -> Self {
        match secret {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Self {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            ScramSecret::SaltedPassword { .. } => unreachable!("verifier_from_salted_password"),
        }
    }

    /// The secret in the form pgwire's SCRAM server state machine takes.
    pub fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// One user's login secrets.
#[derive(Clone, Default)]
pub struct Credential {
    /// For SCRAM logins.
    pub scram: Option<ScramVerifier>,
    /// hex(md5(password || user)), for MD5 logins.
    pub md5_inner: Option<String>,
}

/// Every configured user's credentials, by name.
#[derive(Clone, Default)]
pub struct Credentials(HashMap<String, Credential>);

impl Credentials {
    /// Derives credentials for every user (SCRAM key derivation happens here, once).
    pub fn from_users(users: &[UserEntry]) -> Self {
        Self(
            users
                .iter()
                .map(|u| (u.name.clone(), credential(u)))
                .collect(),
        )
    }

    /// The credential of `user`, if configured.
    pub fn get(&self, user: &str) -> Option<&Credential> {
        self.0.get(user)
    }
}

fn credential(user: &UserEntry) -> Credential {
    match &user.secret {
        UserSecret::Password(password) => Credential {
            scram: Some(ScramVerifier::from_password(password)),
            md5_inner: Some(format!("{:x}", md5::compute(format!("{password}{}", user.name)))),
        },
        UserSecret::ScramVerifier(text) => Credential {
            scram: ScramVerifier::parse(text),
            md5_inner: None,
        },
        UserSecret::Md5Hash(hash) => Credential {
            scram: None,
            md5_inner: hash.strip_prefix("md5").map(str::to_owned),
        },
        UserSecret::None => Credential::default(),
    }
}

/// The response an MD5 client must send: `md5` || hex(md5(inner || salt)).
pub fn expected_md5_response(md5_inner: &str, salt: [u8; 4]) -> String {
    let mut input = md5_inner.as_bytes().to_vec();
    input.extend_from_slice(&salt);
    format!("md5{:x}", md5::compute(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_libpq_client_hash() {
        let salt = [1, 2, 3, 4];
        let inner = format!("{:x}", md5::compute("secretalice"));
        let client = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        assert_eq!(expected_md5_response(&inner, salt), client);
    }

    #[test]
    fn parses_pg_authid_verifier() {
        let v = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVk:c2VydmVy";
        let parsed = ScramVerifier::parse(v).unwrap();
        assert_eq!(parsed.iterations, 4096);
        assert_eq!(parsed.salt, b"saltsalt");
        assert!(ScramVerifier::parse("md5abc").is_none());
    }
}
