//! The text a local cluster writes: server settings, `pg_hba.conf`, setup SQL, URIs.
//!
//! Pure functions over strings, so quoting can be tested without a server. Owns the quoting
//! rules for each format (postgresql.conf strings, SQL identifiers and literals, pg_hba fields,
//! URI components) and the spec checks that keep names within what those rules can express.
//! It must never do I/O.

use std::path::Path;

use super::error::LocalClusterError;
use super::{BackendAuth, ClusterSpec};

/// Name of the per-server file that holds `port`; included from postgresql.conf so a replica
/// (which copies its primary's postgresql.conf) and a port retry only rewrite this file.
pub(crate) const PORT_CONF: &str = "shardgate_port.conf";

/// Rejects specs whose names the quoting rules below cannot carry, before anything is created.
pub(crate) fn validate_spec(spec: &ClusterSpec) -> Result<(), LocalClusterError> {
    let invalid = |field, problem| Err(LocalClusterError::InvalidSpec { field, problem });
    if spec.shards == 0 {
        return invalid("shards", "must be at least 1");
    }
    for (field, value) in [("user", &spec.user), ("database", &spec.database)] {
        if value.is_empty() {
            return invalid(field, "must not be empty");
        }
        if value.len() > 63 {
            return invalid(field, "must be at most 63 bytes (PostgreSQL's NAMEDATALEN)");
        }
        if value.contains('"') || value.chars().any(char::is_control) {
            return invalid(
                field,
                "must not contain double quotes or control characters",
            );
        }
    }
    if spec.password.contains('\0') {
        return invalid("password", "must not contain NUL");
    }
    Ok(())
}

/// Settings appended to every primary's postgresql.conf (replicas copy them): local-only,
/// with room for replicas and many test clients.
///
/// Durability: an acknowledged commit survives a crash of PostgreSQL (kill -9 of any of its
/// processes), because `synchronous_commit = on` makes every COMMIT wait until its WAL is
/// written to the OS (with `off`, up to three WAL-writer rounds of acknowledged commits sat in
/// shared memory and were lost: 24 of 129,181 in a kill -9 under load). `fsync = off` and
/// `full_page_writes = off` stay: the OS page cache outlives a crashed postmaster, so written
/// WAL and data pages are intact after kill -9; only a crash of the OS itself (or power loss)
/// could lose them, and these throwaway servers live on tmpfs (see `scratch_dir`), which loses
/// everything then anyway. The price of `on`, measured with pgbench, is in NOTES-durable.md.
///
/// Replication is what a production deployment with read replicas runs: asynchronous (no
/// `synchronous_standby_names`, so a write's acknowledgement never waits for a replica; causal
/// reads give read-after-write without it), each replica on a slot of its own, with
/// `hot_standby_feedback` (vacuum on the primary keeps the rows a replica's running reads
/// need, instead of cancelling those reads) and `max_slot_wal_keep_size` (a replica gone for
/// good cannot make its primary keep WAL until the disk is full).
///
/// `wal_level = logical`: `RESHARD` streams the changes made while it copies from a logical
/// replication slot, so writes to the keys that move wait only for the last catch-up.
///
/// `max_prepared_transactions` as high as `max_connections`: every transaction that writes on
/// several shards commits in two phases (see `control::two_phase`); replicas need at least as
/// many as their primary.
pub(crate) fn server_settings(socket_dir: &Path) -> String {
    format!(
        "\n# shardgate local cluster: throwaway demo/test server; acknowledged commits survive\n\
         # a crash of PostgreSQL (synchronous_commit), not of the OS (fsync off)\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = {}\n\
         max_connections = 300\n\
         wal_level = logical\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         hot_standby = on\n\
         hot_standby_feedback = on\n\
         max_prepared_transactions = 300\n\
         max_slot_wal_keep_size = '1GB'\n\
         fsync = off\n\
         synchronous_commit = on\n\
         full_page_writes = off\n\
         include_if_exists = '{PORT_CONF}'\n",
        conf_string(&socket_dir.to_string_lossy())
    )
}

/// The whole of the per-server port file.
pub(crate) fn port_conf(port: u16) -> String {
    format!("port = {port}\n")
}

/// pg_hba.conf: unix sockets trusted (setup and replication), TCP from 127.0.0.1 only for the
/// spec's user, with the spec's method.
pub(crate) fn hba(user: &str, auth: BackendAuth) -> String {
    format!(
        "# shardgate local cluster\n\
         # TYPE  DATABASE     USER  ADDRESS       METHOD\n\
         local   all          all                 trust\n\
         local   replication  all                 trust\n\
         host    all          \"{user}\"  127.0.0.1/32  {}\n",
        auth.hba_method()
    )
}

/// Creates (or, for the bootstrap superuser's own name, alters) the login role, with its
/// password stored in the form the auth method needs.
pub(crate) fn role_sql(user: &str, password: &str, auth: BackendAuth, exists: bool) -> String {
    let verb = if exists { "ALTER" } else { "CREATE" };
    format!(
        "SET password_encryption = '{}'; {verb} ROLE {} LOGIN SUPERUSER PASSWORD {}",
        auth.password_encryption(),
        quote_ident(user),
        quote_literal(password)
    )
}

/// Creates the database owned by the role.
pub(crate) fn database_sql(database: &str, owner: &str) -> String {
    format!(
        "CREATE DATABASE {} OWNER {}",
        quote_ident(database),
        quote_ident(owner)
    )
}

/// A SQL identifier in double quotes.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (standard_conforming_strings is on, so only quotes are doubled).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A postgresql.conf string value.
fn conf_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// Percent-encodes a URI component: everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_each_format() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(conf_string("/t/o'k\\"), "'/t/o''k\\\\'");
        assert_eq!(percent_encode("us er@x:p/w%"), "us%20er%40x%3Ap%2Fw%25");
        assert_eq!(percent_encode("plain-user_1.x~"), "plain-user_1.x~");
    }

    #[test]
    fn hba_names_user_and_method() {
        let text = hba("app", BackendAuth::Md5);
        assert!(
            text.contains("host    all          \"app\"  127.0.0.1/32  md5\n"),
            "{text}"
        );
        assert!(hba("app", BackendAuth::Trust).ends_with("trust\n"));
        assert!(hba("app", BackendAuth::Password).ends_with(" password\n"));
        assert!(hba("app", BackendAuth::ScramSha256).ends_with("scram-sha-256\n"));
    }

    #[test]
    fn md5_role_stores_md5_password() {
        let sql = role_sql("app", "p'w", BackendAuth::Md5, false);
        assert_eq!(
            sql,
            "SET password_encryption = 'md5'; CREATE ROLE \"app\" LOGIN SUPERUSER PASSWORD 'p''w'"
        );
        assert!(role_sql("postgres", "x", BackendAuth::ScramSha256, true).contains("ALTER ROLE"));
    }

    #[test]
    fn settings_include_port_file() {
        let text = server_settings(Path::new("/tmp/x/run"));
        assert!(
            text.contains("unix_socket_directories = '/tmp/x/run'"),
            "{text}"
        );
        assert!(
            text.contains("include_if_exists = 'shardgate_port.conf'"),
            "{text}"
        );
    }

    /// Acknowledged commits must survive kill -9 of a postmaster (issue 12): the demo and
    /// test servers wait for each commit's WAL write.
    #[test]
    fn settings_keep_acknowledged_commits() {
        let text = server_settings(Path::new("/tmp/x/run"));
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.split_once('='))
                .filter(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().to_owned())
                .next_back()
        };
        assert_eq!(value("synchronous_commit").as_deref(), Some("on"), "{text}");
        assert_eq!(value("fsync").as_deref(), Some("off"), "{text}");
    }

    #[test]
    fn rejects_unquotable_specs() {
        let mut spec = ClusterSpec::new("/tmp/x");
        assert!(validate_spec(&spec).is_ok());
        spec.user = "a\"b".into();
        assert!(validate_spec(&spec).is_err());
        spec = ClusterSpec {
            shards: 0,
            ..ClusterSpec::new("/tmp/x")
        };
        assert!(validate_spec(&spec).is_err());
        spec = ClusterSpec {
            database: String::new(),
            ..ClusterSpec::new("/tmp/x")
        };
        assert!(validate_spec(&spec).is_err());
    }
}
