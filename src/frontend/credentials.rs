//! What the proxy checks client logins against, derived once from the config so a login costs
//! no key derivation: SCRAM verifiers (salted and iterated at load) and MD5 inner hashes.

use std::collections::HashMap;

use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};

use crate::config::{ScramVerifier, UserEntry, UserSecret};

const SCRAM_ITERATIONS: u32 = 4096;

/// Derives a verifier from a plain password with a fresh random salt.
fn verifier_from_password(password: &str) -> ScramVerifier {
    let salt: [u8; 16] = rand::random();
    let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
    let secret = ScramSecret::verifier_from_salted_password(
        salt.to_vec(),
        salted,
        SCRAM_ITERATIONS as usize,
    );
    let ScramSecret::Verifier {
        stored_key,
        server_key,
        ..
    } = secret
    else {
        unreachable!("verifier_from_salted_password returns a verifier")
    };
    ScramVerifier {
        iterations: SCRAM_ITERATIONS,
        salt: salt.to_vec(),
        stored_key: stored_key.try_into().expect("SHA-256 digests are 32 bytes"),
        server_key: server_key
            .try_into()
            .expect("HMAC-SHA-256 outputs are 32 bytes"),
    }
}

/// A verifier no password matches: unknown users go through the same exchange as known ones
/// and fail at the end, so a client cannot probe which users exist.
pub fn impossible_verifier() -> ScramVerifier {
    ScramVerifier {
        iterations: SCRAM_ITERATIONS,
        salt: rand::random::<[u8; 16]>().to_vec(),
        stored_key: rand::random(),
        server_key: rand::random(),
    }
}

/// The verifier in the form pgwire's SCRAM server state machine takes.
pub fn scram_secret(verifier: &ScramVerifier) -> ScramSecret {
    ScramSecret::Verifier {
        salt: verifier.salt.clone(),
        iterations: verifier.iterations as usize,
        stored_key: verifier.stored_key.to_vec(),
        server_key: verifier.server_key.to_vec(),
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
            scram: Some(verifier_from_password(password)),
            md5_inner: Some(format!(
                "{:x}",
                md5::compute(format!("{password}{}", user.name))
            )),
        },
        UserSecret::ScramVerifier(text) => Credential {
            // Validated when the config was loaded.
            scram: ScramVerifier::parse(text).ok(),
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
}
