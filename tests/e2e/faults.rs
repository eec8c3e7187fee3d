//! Faults at the process level (issue 12, "no input and no fault takes the proxy down"): a
//! primary or a replica killed with SIGKILL under load, a COMMIT torn by a dying shard, atomic
//! commits (of transactions and of statements on several primaries) broken for real, a storm
//! of shard-map reloads, a thousand clients on a small pool, and a protocol fuzzer.
//!
//! Each test is bounded (counted loops or a few seconds of load, everything stops by itself)
//! and checks, from the client side, that the proxy kept serving, that no acknowledged write
//! was lost (acknowledged inserts are counted by the clients and compared with the rows on the
//! shards, read directly), and that the only errors were the documented SQLSTATEs.

mod atomic;
mod broadcast_atomic;
mod fuzz;
mod kills;
mod load;
mod torn;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shardgate::config::{Config, ShardId};
use shardgate::local_cluster::LocalServer;
use shardgate::router::{Params, Route, Router};

use crate::harness::connect_direct;

/// SIGKILLs `server`'s postmaster, as a crash would, and waits until it is gone. Its backends
/// notice on their own (PostgreSQL's postmaster-death check) and exit.
fn kill_postmaster(server: &LocalServer) {
    let pid_file = server.data_dir().join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid of a running server");
    let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: signals a postmaster this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z"))
    {
        assert!(
            Instant::now() < deadline,
            "postmaster {pid} survived SIGKILL"
        );
        #[allow(clippy::disallowed_methods)] // a short wait for a process; a second worker serves
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a killed server again (crash recovery replays its WAL). The first tries may find
/// the dead postmaster's backends still holding its shared memory while they exit.
fn restart(server: &mut LocalServer) {
    server.stop().expect("a killed server counts as stopped");
    let mut attempt = 0;
    while let Err(error) = server.start() {
        attempt += 1;
        assert!(attempt < 5, "restarting {} failed: {error}", server.name());
        #[allow(clippy::disallowed_methods)] // the server's start is synchronous too
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first `n` ids of `table` (hashed on `id`) that `config`'s map puts on `shard`.
fn ids_on(config: &Config, table: &str, shard: u32, n: usize) -> Vec<i64> {
    let router = Router::new(&config.databases[0].shard_map);
    let on = |id: i64| {
        let plan = router.plan(&format!("SELECT * FROM {table} WHERE id = {id}"));
        match router.route(&plan, &Params::none(), None) {
            Ok(Route::Shard(ShardId(s))) => s == shard,
            other => panic!("{table} id {id}: {other:?}"),
        }
    };
    (1..).filter(|&id| on(id)).take(n).collect()
}

/// Every `id` of `table` on each of `primaries`, read directly.
async fn stored_ids(primaries: &[String], table: &str) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for uri in primaries {
        let rows = connect_direct(uri)
            .await
            .query(&format!("SELECT id FROM {table}"), &[])
            .await
            .unwrap();
        ids.extend(rows.iter().map(|row| row.get::<_, i64>(0)));
    }
    ids
}

/// The SQLSTATE of a client error, or `"closed"` for a connection that ended without one.
fn code_of(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| "closed".to_owned(), |e| e.code().code().to_owned())
}

/// Panics raised in the proxy's own code (`src/`) since the hook was installed. A panicking
/// session task would not stop the in-process proxy (tokio catches it), so fault tests count
/// them. Test assertions live under `tests/` and are not counted; the count is process-wide,
/// so a proxy panic during any test fails whichever test checks next.
static PROXY_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Proxy panics seen since [`ProxyPanics::watch`].
struct ProxyPanics(usize);

impl ProxyPanics {
    fn watch() -> Self {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info
                    .location()
                    .is_some_and(|l| l.file().starts_with("src/"))
                {
                    PROXY_PANICS.fetch_add(1, Ordering::SeqCst);
                }
                previous(info);
            }));
        });
        Self(PROXY_PANICS.load(Ordering::SeqCst))
    }

    fn assert_none(&self) {
        let panics = PROXY_PANICS.load(Ordering::SeqCst) - self.0;
        assert_eq!(panics, 0, "the proxy panicked (see the log above)");
    }
}

/// A deferred trigger for `table` (columns `id`, `note`), to create on one shard: at COMMIT, a
/// row with note `refuse` fails the commit and one with `slow` sleeps `sleep_s` seconds, so a
/// test can break things while the COMMIT runs.
fn at_commit_trigger(table: &str, sleep_s: u32) -> String {
    format!(
        "CREATE FUNCTION {table}_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.note = 'refuse' THEN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'; END IF;
    IF NEW.note = 'slow' THEN PERFORM pg_sleep({sleep_s}); END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER {table}_at_commit AFTER INSERT ON {table}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_at_commit();"
    )
}

/// BEGIN; one insert into `table` per row, in order (the last one's shard is the backend in
/// use at COMMIT; the other is parked).
async fn two_shard_transaction(
    client: &tokio_postgres::Client,
    table: &str,
    rows: [(i64, &str); 2],
) {
    client.batch_execute("BEGIN").await.unwrap();
    for (id, note) in rows {
        let sql = format!("INSERT INTO {table} (id, note) VALUES ({id}, '{note}')");
        client.batch_execute(&sql).await.unwrap();
    }
}
