//! Checking a client's proof of identity: SCRAM-SHA-256 (default), MD5 or trust. The SCRAM
//! math is pgwire's state machine; the message exchange is ours because we own the socket.

use bytes::{Buf, BytesMut};
use pgwire::api::auth::sasl::scram::ScramServerAuth;

use super::LoginError;
use super::credentials::{Credential, expected_md5_response, impossible_verifier, scram_secret};
use super::startup::ClientConn;
use crate::config::ClientAuthMethod;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::wire::{encode, tag};

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
const AUTH_OK: i32 = 0;
const AUTH_MD5: i32 = 5;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// Runs the exchange for `method`; on success AuthenticationOk has been sent.
pub(super) async fn authenticate(
    conn: &mut ClientConn,
    method: ClientAuthMethod,
    user: &str,
    credential: Option<&Credential>,
) -> Result<(), LoginError> {
    match method {
        // Trust skips the password, not the list of users: a made-up name would get its own
        // rate-limit bucket and connection count, and its own metric label.
        ClientAuthMethod::Trust if credential.is_none() => {
            return Err(LoginError::Rejected(ErrorReport::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                Blame::Client,
                format!("role \"{user}\" does not exist"),
            )));
        }
        ClientAuthMethod::Trust => {}
        ClientAuthMethod::ScramSha256 => {
            let verifier = credential.and_then(|c| c.scram.clone());
            scram(conn, verifier.unwrap_or_else(impossible_verifier), user).await?
        }
        ClientAuthMethod::Md5 => {
            let inner = credential.and_then(|c| c.md5_inner.as_deref());
            md5(conn, inner, user).await?
        }
    }
    let mut out = BytesMut::new();
    encode::authentication(&mut out, AUTH_OK, &[]);
    conn.write(&out).await
}

async fn scram(
    conn: &mut ClientConn,
    verifier: crate::config::ScramVerifier,
    user: &str,
) -> Result<(), LoginError> {
    let mut out = BytesMut::new();
    encode::authentication_sasl(&mut out, SCRAM_SHA_256);
    conn.write(&out).await?;

    let mut initial = conn.read_password_message().await?;
    let client_first = parse_sasl_initial(&mut initial)?;
    let server = ScramServerAuth::new();
    let (server_first, waiting) = server
        .on_client_first_message_with_secret(&client_first, scram_secret(&verifier))
        .map_err(|e| LoginError::protocol(format!("invalid SCRAM message: {e}")))?;
    out.clear();
    encode::authentication(&mut out, AUTH_SASL_CONTINUE, server_first.as_bytes());
    conn.write(&out).await?;

    let client_final = conn.read_password_message().await?;
    let server_final = waiting
        .on_client_final_message(&client_final)
        .map_err(|_| LoginError::password_failed(user))?;
    out.clear();
    encode::authentication(&mut out, AUTH_SASL_FINAL, server_final.as_bytes());
    conn.write(&out).await
}

/// SASLInitialResponse: mechanism name, then an Int32 length and that many bytes.
fn parse_sasl_initial(body: &mut BytesMut) -> Result<Vec<u8>, LoginError> {
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| LoginError::protocol("malformed SASLInitialResponse"))?;
    if &body[..nul] != SCRAM_SHA_256.as_bytes() {
        return Err(LoginError::protocol(
            "client chose an unsupported SASL mechanism",
        ));
    }
    body.advance(nul + 1);
    if body.len() < 4 {
        return Err(LoginError::protocol("malformed SASLInitialResponse"));
    }
    let len = body.get_i32();
    if len < 0 || len as usize != body.len() {
        return Err(LoginError::protocol("malformed SASLInitialResponse"));
    }
    Ok(body.to_vec())
}

async fn md5(conn: &mut ClientConn, inner: Option<&str>, user: &str) -> Result<(), LoginError> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    encode::authentication(&mut out, AUTH_MD5, &salt);
    conn.write(&out).await?;
    let body = conn.read_password_message().await?;
    let answer = body.strip_suffix(&[0]).unwrap_or(&body);
    match inner {
        Some(inner) if answer == expected_md5_response(inner, salt).as_bytes() => Ok(()),
        _ => Err(LoginError::password_failed(user)),
    }
}

impl ClientConn {
    async fn read_password_message(&mut self) -> Result<BytesMut, LoginError> {
        let (frame_tag, body) = self.read_frame().await?;
        if frame_tag != tag::PASSWORD {
            return Err(LoginError::protocol(format!(
                "expected a password message, got {:?}",
                frame_tag as char
            )));
        }
        Ok(body)
    }
}
