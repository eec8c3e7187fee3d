//! A logical replication connection (`replication=database`) that creates a slot and exports
//! the snapshot it starts from: an online move (`RESHARD`) copies the moving rows at that
//! snapshot and then applies the slot's changes, so every change is either in the copy or
//! in the stream, never in both or neither.

use std::sync::Arc;
use std::time::Duration;

use postgres_protocol::message::frontend;

use super::BackendError;
use super::connect::Handshake;
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
/// transactions that are running to end).
pub async fn create_slot_exporting_snapshot(
    uri: &BackendUri,
    slot: &str,
    timeout: Duration,
) -> Result<ExportedSnapshot, BackendError> {
    let addr: Arc<str> = uri.address().into();
    let work = async {
        let params = [
            ("user", uri.user.as_str()),
            ("database", uri.database.as_str()),
            ("replication", "database"),
            ("application_name", "shardgate reshard"),
        ];
        let (mut hs, _) = Handshake::log_in(uri, addr.clone(), &params).await?;
        hs.read_until_ready().await?;
        let sql = format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT");
        hs.send_with(|buf| frontend::query(&sql, buf)).await?;
        let row = hs.read_first_row().await?;
        let [_, consistent_point, snapshot, _] = row.as_slice() else {
            return Err(hs.protocol("CREATE_REPLICATION_SLOT answered no slot"));
        };
        Ok(ExportedSnapshot {
            snapshot: snapshot.clone(),
            consistent_point: consistent_point.clone(),
            _held: hs.into_stream(),
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Connect {
            addr: addr.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "creating a replication slot timed out",
            ),
        }),
    }
}
