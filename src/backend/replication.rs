//! A logical replication connection (`replication=database`) that creates a slot and exports
//! the snapshot it starts from: an online move (`RESHARD`) copies the moving rows at that
//! snapshot and then applies the slot's changes, so every change is either in the copy or
//! in the stream, never in both or neither.

use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::message::frontend;

use super::connect::Handshake;
use super::{BackendError, CancelTarget, send_cancel};
use crate::config::BackendUri;

/// A slot just created, and the snapshot it starts from. The snapshot can be imported
/// (`SET TRANSACTION SNAPSHOT`) only while this connection lives; drop it once imported.
pub struct ExportedSnapshot {
    /// The snapshot's name.
    pub snapshot: String,
    /// The WAL position the slot's changes start after.
    pub consistent_point: String,
    _held: tokio::net::TcpStream,
}

/// Creates logical replication slot `slot` (output plugin `pgoutput`) on `uri`'s server and
/// exports its starting snapshot, giving up after `timeout` (creating a slot waits for the
/// transactions that are running to end). A creation that gives up is cancelled on the
/// server, which then drops the half-made slot: a slot nobody reads would keep WAL.
pub async fn create_slot_exporting_snapshot(
    uri: &BackendUri,
    slot: &str,
    timeout: Duration,
) -> Result<ExportedSnapshot, BackendError> {
    let addr: Arc<str> = uri.address().into();
    let timed_out = |what: &str| BackendError::Connect {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned()),
    };
    let params = [
        ("user", uri.user.as_str()),
        ("database", uri.database.as_str()),
        ("replication", "database"),
        ("application_name", "shardgate reshard"),
    ];
    let log_in = async {
        let (mut hs, peer) = Handshake::log_in(uri, addr.clone(), &params).await?;
        let (_, key) = hs.read_until_ready().await?;
        Ok::<_, BackendError>((hs, CancelTarget::new(peer, key)))
    };
    let (mut hs, cancel) = tokio::time::timeout(timeout, log_in)
        .await
        .map_err(|_| timed_out("logging in for a replication slot timed out"))??;
    let sql = format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT");
    let create = async {
        hs.send_with(|buf| frontend::query(&sql, buf)).await?;
        hs.read_first_row().await
    };
    let row = match tokio::time::timeout(timeout, create).await {
        Ok(row) => row?,
        Err(_) => {
            if let Err(error) = send_cancel(cancel).await {
                tracing::warn!(slot, %error, "could not cancel the creation of a replication slot");
            }
            return Err(timed_out("creating a replication slot timed out"));
        }
    };
    let [_, consistent_point, snapshot, _] = row.as_slice() else {
        return Err(hs.protocol("CREATE_REPLICATION_SLOT answered no slot"));
    };
    Ok(ExportedSnapshot {
        snapshot: snapshot.clone(),
        consistent_point: consistent_point.clone(),
        _held: hs.into_stream(),
    })
}
