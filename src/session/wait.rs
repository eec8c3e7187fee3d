//! Waiting for a backend without losing sight of the client or the proxy's shutdown: a
//! checkout can wait long (a paused pool holds it until RESUME), and a client that leaves
//! meanwhile, or a drain that runs out, must end the wait rather than run the statement
//! afterwards for nobody.

use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::limits::Phase;
use crate::clients::ClientState;
use crate::error::{Blame, ErrorReport, sqlstate};
use crate::execute::{self, PumpEvent};

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    /// Runs `wait` (a checkout), shown as `waiting` in the client registry, while reading
    /// whatever the client sends meanwhile into its input buffer. Fails when the client closes
    /// its socket (the session then ends) or the shutdown's drain runs out (the serve loop then
    /// closes the session with 57P01).
    ///
    /// `wait` comes boxed: a checkout future is over a KiB, and held inline it would be held
    /// twice (as the argument and pinned) in every session's future, idle or not.
    pub(super) async fn watched<T>(
        &mut self,
        mut wait: std::pin::Pin<Box<impl Future<Output = Result<T, ErrorReport>>>>,
    ) -> Result<T, ErrorReport> {
        self.env.client.set_state(ClientState::Waiting);
        let mut phase = self.env.limits.phase.clone();
        loop {
            let client = execute::pump(&mut self.client, None, &mut self.bufs, true);
            tokio::select! {
                outcome = &mut wait => return outcome,
                event = client => match event {
                    Ok(PumpEvent::ClientData) => continue,
                    _ => {
                        self.terminated = true;
                        return Err(gave_up("the client closed its connection"));
                    }
                },
                _ = phase.wait_for(|p| *p == Phase::Closing) => {
                    return Err(gave_up("the proxy is shutting down"));
                }
            }
        }
    }
}

fn gave_up(why: &str) -> ErrorReport {
    ErrorReport::error(
        sqlstate::ADMIN_SHUTDOWN,
        Blame::Proxy,
        format!("stopped waiting for a server connection: {why}"),
    )
}
