//! Validation of `auth` and `users`: unique names, and a secret each user's method can use.
//!
//! Part of the config stage. Owns the rule "which stored secret can answer which
//! authentication method". Problem messages name the secret's kind, never its value.

use std::collections::HashMap;

use super::Problems;
use crate::config::raw::{RawAuthMethod, RawUser};
use crate::config::secret::{ScramVerifier, normalize_md5_hash};
use crate::config::{ClientAuthMethod, UserEntry, UserSecret};

/// The domain form of `auth.method`.
pub(super) fn auth_method(raw: RawAuthMethod) -> ClientAuthMethod {
    match raw {
        RawAuthMethod::ScramSha256 => ClientAuthMethod::ScramSha256,
        RawAuthMethod::Md5 => ClientAuthMethod::Md5,
        RawAuthMethod::Trust => ClientAuthMethod::Trust,
    }
}

/// Validates every user; invalid ones are left out and reported.
pub(super) fn users(
    raw: &[RawUser],
    method: ClientAuthMethod,
    problems: &mut Problems,
) -> Vec<UserEntry> {
    if raw.is_empty() {
        problems.add("users", "at least one user is required");
    }
    let mut seen = HashMap::new();
    let mut entries = Vec::with_capacity(raw.len());
    for (i, user) in raw.iter().enumerate() {
        let path = format!("users[{i}]");
        problems.unique_name(&mut seen, format!("{path}.name"), &user.name, "user");
        if let Some(secret) = secret(user, method, &path, problems) {
            entries.push(UserEntry {
                name: user.name.clone(),
                secret,
            });
        }
    }
    entries
}

/// The one secret a user gives, checked against the method; `path` is `users[i]`.
fn secret(
    user: &RawUser,
    method: ClientAuthMethod,
    path: &str,
    problems: &mut Problems,
) -> Option<UserSecret> {
    let given = [&user.password, &user.scram_verifier, &user.md5];
    match given.iter().filter(|secret| secret.is_some()).count() {
        0 => missing_secret(method, path, problems),
        1 => {}
        _ => {
            problems.add(path, "give only one of password, scram_verifier, md5");
            return None;
        }
    }
    if let Some(password) = &user.password {
        return password_secret(password, path, problems);
    }
    if let Some(verifier) = &user.scram_verifier {
        return verifier_secret(verifier, method, path, problems);
    }
    if let Some(hash) = &user.md5 {
        return md5_secret(hash, method, path, problems);
    }
    Some(UserSecret::None)
}

fn missing_secret(method: ClientAuthMethod, path: &str, problems: &mut Problems) {
    match method {
        ClientAuthMethod::ScramSha256 => problems.add(
            path,
            "needs a password or scram_verifier (auth.method is scram-sha-256)",
        ),
        ClientAuthMethod::Md5 => {
            problems.add(path, "needs a password or md5 hash (auth.method is md5)");
        }
        ClientAuthMethod::Trust => {}
    }
}

fn password_secret(password: &str, path: &str, problems: &mut Problems) -> Option<UserSecret> {
    if password.is_empty() {
        problems.add(format!("{path}.password"), "must not be empty");
        return None;
    }
    Some(UserSecret::Password(password.to_owned()))
}

fn verifier_secret(
    verifier: &str,
    method: ClientAuthMethod,
    path: &str,
    problems: &mut Problems,
) -> Option<UserSecret> {
    let path = format!("{path}.scram_verifier");
    if method == ClientAuthMethod::Md5 {
        let message =
            "a SCRAM verifier cannot answer md5 authentication; give a password or md5 hash";
        problems.add(path, message);
        return None;
    }
    problems.check(&path, ScramVerifier::parse(verifier))?;
    Some(UserSecret::ScramVerifier(verifier.to_owned()))
}

fn md5_secret(
    hash: &str,
    method: ClientAuthMethod,
    path: &str,
    problems: &mut Problems,
) -> Option<UserSecret> {
    let path = format!("{path}.md5");
    if method == ClientAuthMethod::ScramSha256 {
        let message = "an md5 hash cannot answer scram-sha-256 authentication; \
                       give a password or scram_verifier";
        problems.add(path, message);
        return None;
    }
    let normalized = problems.check(&path, normalize_md5_hash(hash))?;
    Some(UserSecret::Md5Hash(normalized))
}
