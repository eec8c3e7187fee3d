//! The client half of PostgreSQL authentication, for logging the proxy into its backends:
//! trust, cleartext password, MD5 and SCRAM-SHA-256 (PostgreSQL docs, "SASL Authentication").

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::BackendError;
use super::connect::Handshake;

impl Handshake<'_> {
    /// Answers Authentication requests until AuthenticationOk.
    pub(super) async fn authenticate(&mut self) -> Result<(), BackendError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.next_message().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    let password = self.password()?.to_owned();
                    self.send_with(|buf| frontend::password_message(password.as_bytes(), buf))
                        .await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(
                        self.uri.user.as_bytes(),
                        self.password()?.as_bytes(),
                        body.salt(),
                    );
                    self.send_with(|buf| frontend::password_message(hash.as_bytes(), buf))
                        .await?;
                }
                Message::AuthenticationSasl(body) => {
                    scram = Some(self.start_scram(body).await?);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let scram = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("unexpected SASL continue"))?;
                    scram
                        .update(body.data())
                        .map_err(|e| self.protocol(e.to_string()))?;
                    let reply = scram.message().to_vec();
                    self.send_with(|buf| frontend::sasl_response(&reply, buf))
                        .await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let scram = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("unexpected SASL final"))?;
                    scram
                        .finish(body.data())
                        .map_err(|e| self.protocol(e.to_string()))?;
                }
                Message::ErrorResponse(body) => return Err(self.refused(body)),
                _ => return Err(self.protocol("unsupported authentication request")),
            }
        }
    }

    async fn start_scram(
        &mut self,
        body: postgres_protocol::message::backend::AuthenticationSaslBody,
    ) -> Result<ScramSha256, BackendError> {
        let mut mechanisms = body.mechanisms();
        let mut offered = false;
        while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechanisms)
            .map_err(|e| self.protocol(e.to_string()))?
        {
            offered |= m == SCRAM_SHA_256;
        }
        if !offered {
            return Err(self.protocol("server offers no SASL mechanism we support"));
        }
        let scram = ScramSha256::new(self.password()?.as_bytes(), ChannelBinding::unsupported());
        let first = scram.message().to_vec();
        self.send_with(|buf| frontend::sasl_initial_response(SCRAM_SHA_256, &first, buf))
            .await?;
        Ok(scram)
    }

    fn password(&self) -> Result<&str, BackendError> {
        self.uri
            .password
            .as_deref()
            .ok_or_else(|| self.protocol("server asks for a password but the backend URI has none"))
    }
}
