//! The environment contract, one-line reporting and per-check timeouts shared by both suites.

use std::future::Future;
use std::time::Duration;

/// Where the proxy is, from the variables `tests/drivers/run` sets.
pub struct Env {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db: String,
    pub admin_url: String,
}

impl Env {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let port = var("SHARDGATE_PORT", "6432").parse().unwrap_or(6432);
        Env {
            host: var("SHARDGATE_HOST", "127.0.0.1"),
            port,
            user: var("SHARDGATE_USER", "app"),
            password: var("SHARDGATE_PASSWORD", "app"),
            db: var("SHARDGATE_DB", "app"),
            admin_url: var(
                "SHARDGATE_ADMIN_URL",
                &format!("postgres://admin:admin@127.0.0.1:{port}/shardgate"),
            ),
        }
    }

    /// A libpq-style URL (sqlx's form).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.db
        )
    }

    /// A key=value string (tokio-postgres' form), with a connect timeout.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={} password={} dbname={} connect_timeout=10",
            self.host, self.port, self.user, self.password, self.db
        )
    }
}

/// Why a check failed: an assertion or a driver error (with its SQLSTATE when the server sent one).
#[derive(Debug)]
pub struct Failure(pub String);

pub type Outcome = Result<(), Failure>;

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure(s.to_owned())
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure(describe_tokio(&e))
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure(describe_sqlx(&e))
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server sent one.
pub fn tokio_code(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|db| db.code().code().to_owned())
}

pub fn describe_tokio(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => format!("{e}"),
    }
}

/// The SQLSTATE of a sqlx error, if the server sent one.
pub fn sqlx_code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

pub fn describe_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => format!(
            "SQLSTATE {}: {}",
            db.code().unwrap_or_default(),
            db.message()
        ),
        other => format!("{other}"),
    }
}

/// Fails unless `actual == expected`.
pub fn check_eq<T: PartialEq + std::fmt::Debug>(actual: T, expected: T, what: &str) -> Outcome {
    if actual == expected {
        Ok(())
    } else {
        Err(Failure(format!("{what}: got {actual:?}, expected {expected:?}")))
    }
}

/// Fails unless `result` is an error with SQLSTATE `code`.
pub fn expect_code<T, E>(
    result: Result<T, E>,
    code: &str,
    what: &str,
    code_of: impl Fn(&E) -> Option<String>,
    describe: impl Fn(&E) -> String,
) -> Outcome {
    match result {
        Ok(_) => Err(Failure(format!("{what}: expected SQLSTATE {code}, but it succeeded"))),
        Err(e) if code_of(&e).as_deref() == Some(code) => Ok(()),
        Err(e) => Err(Failure(format!("{what}: expected SQLSTATE {code}, got {}", describe(&e)))),
    }
}

/// One suite's reporter: prints one line per check.
pub struct Reporter {
    pub driver: &'static str,
    pub version: &'static str,
}

impl Reporter {
    /// Runs one check under `limit` and prints its line.
    pub async fn check<F: Future<Output = Outcome>>(&self, name: &str, limit: Duration, fut: F) {
        let line = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(())) => format!("PASS {} {} | {name}", self.driver, self.version),
            Ok(Err(Failure(msg))) => format!("FAIL {} {} | {name} | {}", self.driver, self.version, one_line(&msg)),
            Err(_) => format!("FAIL {} {} | {name} | timed out after {limit:?}", self.driver, self.version),
        };
        println!("{line}");
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Retries `probe` until it yields `expected` or 5 s passed. For cross-shard counts of rows other
/// sessions wrote: those reads go to replicas, which may lag a little (README, "Replicas and
/// read-your-writes").
pub async fn eventually<T, F, Fut>(mut probe: F, expected: T, what: &str) -> Outcome
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = probe().await?;
        if got == expected {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Failure(format!("{what}: got {got:?}, expected {expected:?} (after 5 s)")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shard names, from the admin console (`SHOW SHARDS`, simple protocol).
pub async fn shard_names(env: &Env) -> Result<Vec<String>, Failure> {
    let (client, conn) = tokio_postgres::connect(&env.admin_url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    let mut names = Vec::new();
    for msg in client.simple_query("SHOW SHARDS").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = msg {
            if let Some(name) = row.get("shard") {
                names.push(name.to_owned());
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(names)
}

/// Deletes the ids `lo..=hi` shard by shard, one single-shard DELETE each (with a
/// `/* shard: NAME */` hint), so the setup does not depend on the writes to several shards that
/// the `multi_shard_update` checks test.
pub async fn clean_range(env: &Env, lo: i64, hi: i64) -> Outcome {
    let (client, conn) = tokio_postgres::connect(&env.conninfo(), tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    for shard in shard_names(env).await? {
        client
            .batch_execute(&format!(
                "/* shard: {shard} */ DELETE FROM matrix_items WHERE id BETWEEN {lo} AND {hi}"
            ))
            .await?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}
