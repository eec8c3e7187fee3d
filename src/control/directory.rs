//! Directory tables in PostgreSQL: key → shard entries shared by every proxy, read through
//! bb8-postgres when a key is not cached, and kept fresh by LISTEN/NOTIFY.
//!
//! Part of the control plane. The router only reads the cache, through the
//! [`Directory`] trait it defines (a read changes nothing); the session fetches a missing key
//! ([`DirectoryLookup::fetch`]), routes again, then settles it ([`DirectoryLookup::settle`]).
//! Correctness over speed: a key is kept only while the LISTEN connection is up, and a fetch
//! that raced a notification (or ran while nothing was listening) is dropped once the route
//! that asked settled it, so no proxy keeps serving a changed entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bb8_postgres::PostgresConnectionManager;
use futures::StreamExt;
use tokio::sync::OnceCell;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::config::tables::LookupTable;
use crate::config::{KeyValue, ShardId};
use crate::router::strategy::Directory;

/// Pool size per directory table; look-ups are short single-row reads.
const POOL_SIZE: u32 = 4;

/// A directory table and what this proxy knows of it.
pub struct DirectoryLookup {
    spec: LookupTable,
    cache: Mutex<HashMap<KeyValue, Cached>>,
    /// Bumped on every notification, so a fetch can tell it raced one.
    generation: AtomicU64,
    listening: Arc<AtomicBool>,
    pool: OnceCell<bb8::Pool<PostgresConnectionManager<NoTls>>>,
    listener: OnceCell<()>,
}

/// A cached answer: the shard of a key (`None`: the table has no row for it).
#[derive(Debug, Clone, Copy)]
enum Cached {
    /// Kept until a notification drops it.
    Kept(Option<ShardId>),
    /// Fetched while changes could not be watched: good for the one route that asked.
    Once(Option<ShardId>),
}

/// Why a directory look-up failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The directory database could not be queried.
    #[error("directory table {table} cannot be read: {message}")]
    Unavailable {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// A row names a shard the map does not have.
    #[error(
        "directory table {table} places key {key} on {shard:?}, which is not a shard of the map"
    )]
    UnknownShard {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The name in the row.
        shard: String,
    },
}

impl std::fmt::Debug for DirectoryLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryLookup")
            .field("table", &self.spec.table)
            .finish()
    }
}

impl DirectoryLookup {
    /// A lookup with an empty cache; connects on first use.
    pub fn new(spec: LookupTable) -> Arc<Self> {
        Arc::new(DirectoryLookup {
            spec,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: Arc::new(AtomicBool::new(false)),
            pool: OnceCell::new(),
            listener: OnceCell::new(),
        })
    }

    /// Drops `key`'s answer if it was fetched for one route only (see the module docs): the
    /// session calls it once the route that fetched it is made.
    pub fn settle(&self, key: &KeyValue) {
        let mut cache = self.lock();
        if matches!(cache.get(key), Some(Cached::Once(_))) {
            cache.remove(key);
        }
    }

    /// Reads `key`'s row from the table and caches it: until a notification drops it when
    /// changes are being watched, else for the next route only.
    pub async fn fetch(self: &Arc<Self>, key: &KeyValue) -> Result<Option<ShardId>, LookupError> {
        self.ensure_listening().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let shard_name = self.query(key).await?;
        let shard = match shard_name {
            None => None,
            Some(name) => Some(self.shard_id(key, name)?),
        };
        // Checked under the cache lock, which `invalidate` bumps the generation under: a
        // notification cannot slip between the check and the insert.
        let mut cache = self.lock();
        let fresh = self.generation.load(Ordering::SeqCst) == generation;
        let entry = if fresh && self.listening.load(Ordering::SeqCst) {
            Cached::Kept(shard)
        } else {
            Cached::Once(shard)
        };
        if cache.len() >= self.spec.cache_entries {
            cache.clear();
        }
        cache.insert(key.clone(), entry);
        Ok(shard)
    }

    async fn query(&self, key: &KeyValue) -> Result<Option<String>, LookupError> {
        let unavailable = |message: String| LookupError::Unavailable {
            table: self.spec.table.clone(),
            message,
        };
        let pool = self
            .pool
            .get_or_init(|| async {
                let manager = PostgresConnectionManager::new(client_config(&self.spec), NoTls);
                bb8::Pool::builder()
                    .max_size(POOL_SIZE)
                    .build_unchecked(manager)
            })
            .await;
        let conn = pool.get().await.map_err(|e| unavailable(e.to_string()))?;
        // The table name was validated as plain identifiers; the key goes as a parameter.
        let sql = format!("SELECT shard FROM {} WHERE key = $1", self.spec.table);
        let row = conn
            .query_opt(&sql, &[&key.to_string()])
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(row.map(|row| row.get::<_, String>(0)))
    }

    fn shard_id(&self, key: &KeyValue, name: String) -> Result<ShardId, LookupError> {
        let found = self.spec.shards.iter().find(|(_, n)| *n == name);
        found
            .map(|(id, _)| *id)
            .ok_or_else(|| LookupError::UnknownShard {
                table: self.spec.table.clone(),
                key: key.to_string(),
                shard: name,
            })
    }

    /// Starts the LISTEN connection once. It runs until this lookup is dropped (a newer map
    /// replaced it) or the connection fails; then nothing more is cached.
    async fn ensure_listening(self: &Arc<Self>) {
        self.listener
            .get_or_init(|| async {
                let weak = Arc::downgrade(self);
                match listen(&self.spec, weak).await {
                    Ok(()) => self.listening.store(true, Ordering::SeqCst),
                    Err(error) => tracing::warn!(table = %self.spec.table, %error,
                        "cannot LISTEN for directory changes; directory entries are not cached"),
                }
            })
            .await;
    }

    fn invalidate(&self, payload: &str) {
        let mut cache = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if payload.is_empty() {
            cache.clear();
        } else {
            cache.retain(|key, _| key.to_string() != payload);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyValue, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Directory for DirectoryLookup {
    fn cached(&self, key: &KeyValue) -> Option<Option<ShardId>> {
        match self.lock().get(key).copied()? {
            Cached::Kept(shard) | Cached::Once(shard) => Some(shard),
        }
    }
}

/// Connects, LISTENs, and spawns the task that applies notifications.
async fn listen(
    spec: &LookupTable,
    lookup: Weak<DirectoryLookup>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = client_config(spec).connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let channel = spec.channel.clone();
    let driver = tokio::spawn(async move {
        // Checks now and then whether a newer map dropped this lookup, to close the connection.
        let mut alive = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = alive.tick() => {
                    if lookup.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            let Some(current) = lookup.upgrade() else {
                return;
            };
            match message {
                Some(Ok(AsyncMessage::Notification(note))) => current.invalidate(note.payload()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        if let Some(lookup) = lookup.upgrade() {
            lookup.listening.store(false, Ordering::SeqCst);
            lookup.invalidate("");
            tracing::warn!(table = %lookup.spec.table, "directory LISTEN connection lost; caching stops");
        }
    });
    let listened = client.batch_execute(&format!("LISTEN {channel}")).await;
    if let Err(error) = listened {
        driver.abort();
        return Err(error);
    }
    // The client must outlive the LISTEN: park it in a task that ends with the driver.
    tokio::spawn(async move {
        let _client = client;
        let _ = driver.await;
    });
    Ok(())
}

fn client_config(spec: &LookupTable) -> tokio_postgres::Config {
    let timeout = std::time::Duration::from_secs(5);
    super::client_config(&spec.uri, "shardgate directory", timeout)
}
