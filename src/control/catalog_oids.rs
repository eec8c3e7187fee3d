//! The oids a client is shown are the catalog shard's. A client's catalog queries (pgjdbc's
//! `getTableName`, a driver looking up a type it does not know) run on the default shard, but
//! a row description comes from whichever shard answered, and objects made after `initdb`
//! have each server's next free oid: the default shard also holds unmapped tables and
//! shardgate's own, so its `orders` may have the oid another shard gave `users`. Descriptions
//! from other shards are therefore translated (see `wire::oids`) through a map of each shard's
//! user tables and types to the default shard's objects of the same schema and name.
//!
//! A task per database reads the catalogs whole at start, every [`REFRESH`], and soon after
//! DDL ran through this proxy (at most once per [`MIN_GAP`]). A description that names an oid
//! the map does not know waits while the proxy looks that oid up ([`CatalogOids::resolve`]):
//! a single shard's in the backend's read buffer, a merged or federated read's by running the
//! read again (the client saw nothing of it yet). Where waiting is not possible (a
//! broadcast's `RETURNING`, a read calling a function that may write) it is shown as no table
//! (as a computed column is) or as the shard's own type oid, never as another table, and a
//! reading follows. Other sessions' temporary objects are no object of the default
//! shard's.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::BytesMut;

use super::ControlConn;
use super::EpochTask;
use crate::config::BackendUri;
use crate::wire::oids::{OidKind, translate_description};

/// How the proxy's catalog readers are named in `pg_stat_activity`.
const APPLICATION: &str = "shardgate catalog";

/// The catalogs are read again at least this often (DDL not run through this proxy).
const REFRESH: Duration = Duration::from_secs(30);

/// …and at most this often, however many unknown oids descriptions name.
const MIN_GAP: Duration = Duration::from_secs(1);

/// One shard's user oids and the default shard's oid of the same object (0: none there).
#[derive(Debug, Default, PartialEq)]
pub struct OidMap(HashMap<(OidKind, u32), u32>);

/// A user object of a catalog: what it is, its schema and name, and its oid there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogObject {
    /// Table or type.
    pub kind: OidKind,
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its oid in that catalog.
    pub oid: u32,
}

impl OidMap {
    /// Maps `shard`'s objects to `catalog`'s objects of the same kind, schema and name.
    pub fn between(catalog: &[CatalogObject], shard: &[CatalogObject]) -> Self {
        let by_name: HashMap<(OidKind, &str, &str), u32> = (catalog.iter())
            .map(|o| ((o.kind, o.schema.as_str(), o.name.as_str()), o.oid))
            .collect();
        let counterpart = |o: &CatalogObject| {
            let key = (o.kind, o.schema.as_str(), o.name.as_str());
            let found = by_name
                .get(&key)
                .copied()
                .filter(|_| !is_temporary(&o.schema));
            ((o.kind, o.oid), found.unwrap_or(0))
        };
        OidMap(shard.iter().map(counterpart).collect())
    }

    /// The default shard's oid of this shard's object `oid`: `Some(0)` when it has none,
    /// `None` when the map does not know `oid`.
    fn get(&self, kind: OidKind, oid: u32) -> Option<u32> {
        self.0.get(&(kind, oid)).copied()
    }
}

/// Whether `schema` holds a session's temporary objects (`pg_temp_3` names a different
/// session's schema on every server).
fn is_temporary(schema: &str) -> bool {
    schema.starts_with("pg_temp_") || schema.starts_with("pg_toast_temp_")
}

/// What a database's descriptions are translated with (kept across reloads: the shards'
/// catalogs outlive a shard map).
#[derive(Debug, Default)]
pub struct CatalogOids {
    state: RwLock<State>,
    /// Asks the task for a reading.
    wake: tokio::sync::Notify,
    /// One lookup at a time: sessions that miss the same oids at once (a table made behind
    /// the proxy's back, then read by many clients) wait for one lookup instead of each
    /// opening connections of its own.
    resolving: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// Where the catalogs are (of the newest shard map), once the task started: the shards
    /// other than the default one are those whose oids are translated.
    catalogs: Option<Arc<Catalogs>>,
    /// Their maps, by shard name, once read.
    maps: HashMap<String, Arc<OidMap>>,
}

/// Oids of a description that a shard's map does not know yet.
pub type Unknown = Vec<(OidKind, u32)>;

impl CatalogOids {
    /// The frame to send instead of `body`, a RowDescription or ParameterDescription from
    /// `shard` (a shard's name, or the federation's leg name), or `None` to send it as it is:
    /// always so for the default shard's and for sources the task does not read. Oids the map
    /// does not know are shown as no table or as the shard's own type, and a reading of the
    /// catalogs follows.
    pub fn translate(&self, shard: &str, frame_tag: u8, body: &[u8]) -> Option<BytesMut> {
        let (frame, unknown) = self.translate_with(shard, frame_tag, body);
        if !unknown.is_empty() {
            self.wake.notify_one();
        }
        frame
    }

    /// As [`Self::translate`], but the oids the map does not know are returned instead (to
    /// [`Self::resolve`] before the description is sent).
    pub fn translate_known(
        &self,
        shard: &str,
        frame_tag: u8,
        body: &[u8],
    ) -> Result<Option<BytesMut>, Unknown> {
        let (frame, unknown) = self.translate_with(shard, frame_tag, body);
        if unknown.is_empty() {
            Ok(frame)
        } else {
            Err(unknown)
        }
    }

    /// The translated frame (`None`: unchanged), with unknown oids shown as no table or as
    /// the shard's own type, and those oids.
    fn translate_with(
        &self,
        shard: &str,
        frame_tag: u8,
        body: &[u8],
    ) -> (Option<BytesMut>, Unknown) {
        let mut unknown = Vec::new();
        let mut map: Option<Option<Arc<OidMap>>> = None;
        let mut translate = |kind: OidKind, oid: u32| {
            let Some(map) = map.get_or_insert_with(|| self.map_of(shard)) else {
                return oid;
            };
            match (map.get(kind, oid), kind) {
                (Some(0), OidKind::Type) => oid,
                (Some(counterpart), _) => counterpart,
                (None, kind) => {
                    if !unknown.contains(&(kind, oid)) {
                        unknown.push((kind, oid));
                    }
                    match kind {
                        OidKind::Relation => 0,
                        OidKind::Type => oid,
                    }
                }
            }
        };
        let frame = translate_description(frame_tag, body, &mut translate);
        (frame, unknown)
    }

    /// Looks up `unknown` (oids of `shard`'s) and the default shard's objects of the same
    /// names. Afterwards the map knows each of them: as none where the lookup could not tell
    /// (a server down, no answer within the connect timeout) until the next reading.
    pub async fn resolve(&self, shard: &str, unknown: &[(OidKind, u32)]) {
        let _turn = self.resolving.lock().await;
        let known = self.map_of(shard).unwrap_or_default();
        let unknown: Vec<_> = (unknown.iter())
            .filter(|(kind, oid)| known.get(*kind, *oid).is_none())
            .copied()
            .collect();
        if unknown.is_empty() {
            return; // Looked up while this session waited for its turn.
        }
        let catalogs = self.read().catalogs.clone();
        let mut found = HashMap::new();
        if let Some(catalogs) = catalogs {
            let limit = catalogs.connect_timeout * 2;
            let lookup = tokio::time::timeout(limit, look_up(&catalogs, shard, &unknown));
            match lookup.await {
                Ok(Ok(map)) => found = map.0,
                Ok(Err(why)) => tracing::warn!(%shard, %why, "cannot look up catalog oids"),
                Err(_) => tracing::warn!(%shard, "looking up catalog oids took over {limit:?}"),
            }
        }
        for key in unknown {
            found.entry(key).or_insert(0);
        }
        let known = self.read().maps.get(shard).cloned().unwrap_or_default();
        let mut map = known.0.clone();
        map.extend(found);
        self.write()
            .maps
            .insert(shard.to_owned(), Arc::new(OidMap(map)));
    }

    /// DDL ran through this proxy: read the catalogs again soon.
    pub fn schema_changed(&self) {
        self.wake.notify_one();
    }

    /// `shard`'s map (empty until read), or `None` when its oids are shown as they are.
    fn map_of(&self, shard: &str) -> Option<Arc<OidMap>> {
        let state = self.read();
        let translated = (state.catalogs.as_ref()).is_some_and(|c| c.other(shard).is_some());
        translated.then(|| state.maps.get(shard).cloned().unwrap_or_default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `shard`'s map read from `from`, unless a newer shard map's task reads other
    /// catalogs now; whether `from` is still the current one.
    fn store(&self, from: &Arc<Catalogs>, shard: &str, map: OidMap) -> bool {
        let mut state = self.write();
        let current = state.catalogs.as_ref().is_none_or(|c| Arc::ptr_eq(c, from));
        if current {
            state.maps.insert(shard.to_owned(), Arc::new(map));
        }
        current
    }

    /// A new shard map's catalogs: a new default shard makes every map stale.
    fn read_from(&self, catalogs: &Arc<Catalogs>) {
        let mut state = self.write();
        if (state.catalogs.as_ref()).is_some_and(|old| old.default != catalogs.default) {
            state.maps.clear();
        }
        state.catalogs = Some(catalogs.clone());
    }
}

/// The primaries whose catalogs are read: the default shard's, whose oids clients are shown,
/// and the other shards'.
#[derive(Debug, Clone)]
pub struct Catalogs {
    /// The default shard's primary.
    pub default: BackendUri,
    /// Every other shard's name and primary.
    pub others: Vec<(String, BackendUri)>,
    /// How long connecting to one may take.
    pub connect_timeout: Duration,
}

impl Catalogs {
    /// The primary of `shard`, one of the others.
    fn other(&self, shard: &str) -> Option<&BackendUri> {
        let mut others = self.others.iter();
        others.find(|(name, _)| name == shard).map(|(_, uri)| uri)
    }
}

/// Starts reading `catalogs` into `view` (outside a runtime, as in unit tests: nothing).
pub fn start(catalogs: Catalogs, view: Arc<CatalogOids>) -> Option<EpochTask> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let catalogs = Arc::new(catalogs);
    view.read_from(&catalogs);
    let task = runtime.spawn(async move {
        loop {
            // An older shard map's task (its epoch still held by a session) stops here.
            match tokio::time::timeout(REFRESH, read_all(&catalogs, &view)).await {
                Ok(false) => return,
                Ok(true) => {}
                Err(_) => tracing::warn!("reading the catalogs got no answer in {REFRESH:?}"),
            }
            tokio::time::sleep(MIN_GAP).await;
            let _ = tokio::time::timeout(REFRESH - MIN_GAP, view.wake.notified()).await;
        }
    });
    Some(EpochTask(task))
}

/// Reads the default shard's catalog and every other one's, and stores their maps. A
/// database on the default shard's server that does not exist (a federation not built yet)
/// is not connected to. False when a newer shard map's catalogs replaced these.
async fn read_all(catalogs: &Arc<Catalogs>, view: &CatalogOids) -> bool {
    let connect = ControlConn::connect(&catalogs.default, APPLICATION, catalogs.connect_timeout);
    let default = connect.await;
    let catalog = match &default {
        Ok(conn) => read_objects(conn, Filter::All).await,
        Err(why) => Err(why.clone()),
    };
    let databases = match &default {
        Ok(conn) => databases(conn).await,
        Err(_) => Vec::new(),
    };
    let catalog = match catalog {
        Ok(objects) => objects,
        Err(why) => {
            tracing::debug!(%why, "cannot read the default shard's catalog");
            return true;
        }
    };
    let same_server =
        |uri: &BackendUri| uri.host == catalogs.default.host && uri.port == catalogs.default.port;
    let readable = (catalogs.others.iter())
        .filter(|(_, uri)| !same_server(uri) || databases.contains(&uri.database));
    let readings = readable.map(|(name, uri)| async move {
        let connect = ControlConn::connect(uri, APPLICATION, catalogs.connect_timeout);
        let objects = match connect.await {
            Ok(conn) => read_objects(&conn, Filter::All).await,
            Err(why) => Err(why),
        };
        (name, objects)
    });
    let mut current = true;
    for (name, objects) in futures::future::join_all(readings).await {
        match objects {
            Ok(objects) => {
                let map = OidMap::between(&catalog, &objects);
                current &= view.store(catalogs, name, map);
            }
            Err(why) => tracing::debug!(shard = %name, %why, "cannot read a shard's catalog"),
        }
    }
    current
}

/// The databases of a server.
async fn databases(conn: &ControlConn) -> Vec<String> {
    let sql = "SELECT datname::text FROM pg_catalog.pg_database";
    let rows = conn.client.query(sql, &[]).await.unwrap_or_default();
    rows.iter().filter_map(|row| row.try_get(0).ok()).collect()
}

/// `shard`'s objects of the oids `unknown`, mapped to the default shard's objects.
async fn look_up(
    catalogs: &Catalogs,
    shard: &str,
    unknown: &[(OidKind, u32)],
) -> Result<OidMap, String> {
    let uri =
        (catalogs.other(shard)).ok_or_else(|| format!("{shard} is not a shard of the map"))?;
    let oids = |kind: OidKind| -> Vec<i64> {
        let of_kind = unknown.iter().filter(move |(k, _)| *k == kind);
        of_kind.map(|(_, oid)| i64::from(*oid)).collect()
    };
    let by_oid = Filter::Oids(oids(OidKind::Relation), oids(OidKind::Type));
    let timeout = catalogs.connect_timeout;
    let conn = ControlConn::connect(uri, APPLICATION, timeout).await?;
    let objects = read_objects(&conn, by_oid).await?;
    let schemas = objects.iter().map(|o| o.schema.clone()).collect();
    let names = objects.iter().map(|o| o.name.clone()).collect();
    let by_name = Filter::Names(schemas, names);
    let conn = ControlConn::connect(&catalogs.default, APPLICATION, timeout).await?;
    let catalog = read_objects(&conn, by_name).await?;
    Ok(OidMap::between(&catalog, &objects))
}

/// Tables (and views, sequences, …: whatever a column can come from) and types made after
/// `initdb`, those a [`Filter`] keeps.
const USER_OBJECTS: &str = "\
    SELECT kind, oid, schema, name FROM ( \
      SELECT 'r' AS kind, c.oid::int8 AS oid, n.nspname::text AS schema, c.relname::text AS name \
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
      WHERE c.oid >= 16384 AND c.relkind NOT IN ('i', 'I', 't') \
      UNION ALL \
      SELECT 't', t.oid::int8, n.nspname::text, t.typname::text \
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
      WHERE t.oid >= 16384) AS o";

/// Which user objects a reading wants.
enum Filter {
    /// Every one.
    All,
    /// Tables and types of these oids.
    Oids(Vec<i64>, Vec<i64>),
    /// Those in one of these schemas with one of these names.
    Names(Vec<String>, Vec<String>),
}

async fn read_objects(conn: &ControlConn, filter: Filter) -> Result<Vec<CatalogObject>, String> {
    let client = &conn.client;
    let rows = match &filter {
        Filter::All => client.query(USER_OBJECTS, &[]).await,
        Filter::Oids(tables, types) => {
            let sql = format!(
                "{USER_OBJECTS} WHERE (kind = 'r' AND oid = ANY($1)) \
                 OR (kind = 't' AND oid = ANY($2))"
            );
            client.query(&sql, &[tables, types]).await
        }
        Filter::Names(schemas, names) => {
            let sql = format!("{USER_OBJECTS} WHERE schema = ANY($1) AND name = ANY($2)");
            client.query(&sql, &[schemas, names]).await
        }
    };
    let object = |row: &tokio_postgres::Row| -> Result<CatalogObject, tokio_postgres::Error> {
        let kind: &str = row.try_get(0)?;
        let oid: i64 = row.try_get(1)?;
        Ok(CatalogObject {
            kind: if kind == "r" {
                OidKind::Relation
            } else {
                OidKind::Type
            },
            schema: row.try_get(2)?,
            name: row.try_get(3)?,
            oid: oid as u32,
        })
    };
    let rows = rows.map_err(|e| e.to_string())?;
    rows.iter()
        .map(object)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{HEADER_LEN, tag};

    fn object(kind: OidKind, name: &str, oid: u32) -> CatalogObject {
        let schema = "public".to_owned();
        let name = name.to_owned();
        CatalogObject {
            kind,
            schema,
            name,
            oid,
        }
    }

    fn catalogs(default_port: u16) -> Arc<Catalogs> {
        let uri = |port| crate::config::BackendUri::parse(&format!("postgres://u@h:{port}/d"));
        Arc::new(Catalogs {
            default: uri(default_port).unwrap(),
            others: vec![("s1".to_owned(), uri(5434).unwrap())],
            connect_timeout: Duration::from_secs(1),
        })
    }

    fn view_of(shard: &str, map: OidMap) -> CatalogOids {
        let view = CatalogOids::default();
        let catalogs = catalogs(5433);
        view.read_from(&catalogs);
        assert!(view.store(&catalogs, shard, map));
        view
    }

    /// A RowDescription body of one column of `table` and `type_oid`.
    fn one_column(table: u32, type_oid: u32) -> Vec<u8> {
        let mut body = 1u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"c\0");
        body.extend_from_slice(&table.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&type_oid.to_be_bytes());
        body.extend_from_slice(&[0, 4, 255, 255, 255, 255, 0, 0]);
        body
    }

    #[test]
    fn objects_map_by_kind_schema_and_name() {
        use OidKind::{Relation, Type};
        let catalog = [
            object(Relation, "users", 16386),
            object(Relation, "orders", 16449),
            object(Type, "mood", 16450),
        ];
        let shard = [
            object(Relation, "users", 16386),
            object(Relation, "orders", 16435),
            object(Type, "mood", 16436),
            object(Relation, "only_here", 16440),
            object(Type, "orders", 16437),
        ];
        let map = OidMap::between(&catalog, &shard);
        assert_eq!(map.get(Relation, 16386), Some(16386));
        assert_eq!(map.get(Relation, 16435), Some(16449));
        assert_eq!(map.get(Type, 16436), Some(16450));
        assert_eq!(map.get(Relation, 16440), Some(0), "no such table there");
        assert_eq!(
            map.get(Type, 16437),
            Some(0),
            "a table's name is not a type's"
        );
        assert_eq!(map.get(Relation, 16999), None);
    }

    #[test]
    fn a_description_shows_the_default_shards_oids() {
        let catalog = [object(OidKind::Relation, "orders", 16449)];
        let shard = [object(OidKind::Relation, "orders", 16435)];
        let view = view_of("s1", OidMap::between(&catalog, &shard));
        let frame = view.translate_known("s1", tag::ROW_DESCRIPTION, &one_column(16435, 23));
        assert_eq!(
            &frame.unwrap().unwrap()[HEADER_LEN..],
            &one_column(16449, 23)[..]
        );
        let default_shards = view.translate("s0", tag::ROW_DESCRIPTION, &one_column(16435, 23));
        assert!(
            default_shards.is_none(),
            "the default shard's oids are the ones shown"
        );
        let unread = view.translate("elsewhere", tag::ROW_DESCRIPTION, &one_column(16435, 23));
        assert!(
            unread.is_none(),
            "a source the task does not read is shown as it is"
        );
    }

    #[test]
    fn unknown_oids_are_named_or_shown_as_no_table_and_the_shards_own_type() {
        let view = view_of("s1", OidMap::default());
        let body = one_column(16435, 16436);
        let unknown = view.translate_known("s1", tag::ROW_DESCRIPTION, &body);
        let both = vec![(OidKind::Relation, 16435), (OidKind::Type, 16436)];
        assert_eq!(unknown.unwrap_err(), both);
        let frame = view.translate("s1", tag::ROW_DESCRIPTION, &body);
        assert_eq!(
            &frame.unwrap()[HEADER_LEN..],
            &one_column(0, 16436)[..],
            "no table rather than maybe another one; the shard's own type oid"
        );
    }

    #[tokio::test]
    async fn oids_that_cannot_be_looked_up_are_known_as_none_until_the_next_reading() {
        let view = view_of("s1", OidMap::default());
        let unknown = [(OidKind::Relation, 16435), (OidKind::Type, 16436)];
        view.resolve("s1", &unknown).await;
        let body = one_column(16435, 16436);
        let frame = view.translate_known("s1", tag::ROW_DESCRIPTION, &body);
        assert_eq!(
            &frame.unwrap().unwrap()[HEADER_LEN..],
            &one_column(0, 16436)[..]
        );
    }

    #[test]
    fn other_sessions_temporary_objects_are_none_of_the_default_shards() {
        let temporary = |oid| CatalogObject {
            schema: "pg_temp_3".to_owned(),
            ..object(OidKind::Relation, "scratch", oid)
        };
        let map = OidMap::between(&[temporary(16500)], &[temporary(16600)]);
        assert_eq!(map.get(OidKind::Relation, 16600), Some(0));
    }

    #[test]
    fn an_older_shard_maps_reading_is_not_stored_and_a_new_default_shard_forgets_every_map() {
        let known = HashMap::from([((OidKind::Relation, 16435), 16449)]);
        let view = view_of("s1", OidMap(known));
        view.read_from(&catalogs(5433));
        let map = view.map_of("s1").unwrap();
        assert_eq!(map.get(OidKind::Relation, 16435), Some(16449));
        let old = catalogs(5433);
        assert!(
            !view.store(&old, "s1", OidMap::default()),
            "not the current catalogs"
        );
        view.read_from(&catalogs(6000));
        assert_eq!(
            view.map_of("s1").unwrap().get(OidKind::Relation, 16435),
            None
        );
    }

    #[tokio::test]
    async fn sessions_missing_the_same_oids_at_once_share_one_lookup() {
        // A "shard" that takes connections and never answers: each lookup is one connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counting = accepted.clone();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        let uri =
            |port| crate::config::BackendUri::parse(&format!("postgres://u@127.0.0.1:{port}/d"));
        let catalogs = Arc::new(Catalogs {
            default: uri(port).unwrap(),
            others: vec![("s1".to_owned(), uri(port).unwrap())],
            connect_timeout: Duration::from_millis(200),
        });
        let view = CatalogOids::default();
        view.read_from(&catalogs);
        let unknown = [(OidKind::Relation, 16435)];
        tokio::join!(view.resolve("s1", &unknown), view.resolve("s1", &unknown));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        let known = view.translate_known("s1", tag::ROW_DESCRIPTION, &one_column(16435, 23));
        assert_eq!(
            &known.unwrap().unwrap()[HEADER_LEN..],
            &one_column(0, 23)[..]
        );
        server.abort();
    }
}
