//! The SQL that builds the federation database from the shard map and the default shard's
//! catalog (pure: facts in, statements out).
//!
//! What it builds, every time from scratch inside one transaction (readers see the old
//! federation or the new one, never half of one):
//! - one postgres_fdw server per shard (`shardgate_<shard>`, async scans, large fetches) and a
//!   user mapping with the credentials the proxy uses for that shard;
//! - each schema of the application, with its enum types and a foreign table per table of
//!   the default shard (`IMPORT FOREIGN SCHEMA`), so unmapped and reference tables read the
//!   default shard's rows;
//! - for each sharded table instead, a view of the same name: the `UNION ALL` of its foreign
//!   tables on every shard (imported into `shardgate_<shard>` schemas), so it holds every
//!   shard's rows once, as the table of one big server would.

use std::fmt::Write;

use crate::config::BackendUri;
use crate::sql::quote::{ident, literal};

/// A shard the federation reads from, and how to reach it.
#[derive(Debug, Clone)]
pub struct ShardServer {
    /// The shard's name in the map.
    pub name: String,
    /// The server of the shard it reads.
    pub uri: BackendUri,
}

/// What the default shard's catalog says the federation must present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Schemas holding the application's relations, with their relation names.
    pub schemas: Vec<(String, Vec<String>)>,
    /// Enum types of those schemas: schema, name, labels in order.
    pub enums: Vec<(String, String, Vec<String>)>,
}

/// The name of the postgres_fdw server for shard `name`.
fn server_name(name: &str) -> String {
    format!("shardgate_{name}")
}

/// The statements that drop what an earlier build left: the servers named (their user
/// mappings and foreign tables go with them) and the schemas named.
pub fn teardown(servers: &[String], schemas: &[String]) -> Vec<String> {
    let servers = servers
        .iter()
        .map(|s| format!("DROP SERVER IF EXISTS {} CASCADE", ident(s)));
    let schemas = schemas
        .iter()
        .map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(s)));
    servers.chain(schemas).collect()
}

/// The statements that build the federation (postgres_fdw installed): `shards` (the default one at `default`),
/// `sharded` the map's sharded table names, `catalog` what the default shard holds.
pub fn build(
    shards: &[ShardServer],
    default: usize,
    sharded: &[String],
    catalog: &Catalog,
) -> Vec<String> {
    let mut sql = Vec::new();
    for shard in shards {
        sql.extend(server(shard));
    }
    for (schema, _) in &catalog.schemas {
        sql.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)));
    }
    for (schema, name, labels) in &catalog.enums {
        let labels: Vec<String> = labels.iter().map(|l| literal(l)).collect();
        sql.push(format!(
            "CREATE TYPE {}.{} AS ENUM ({})",
            ident(schema),
            ident(name),
            labels.join(", ")
        ));
    }
    let default_server = server_name(&shards[default].name);
    for (schema, relations) in &catalog.schemas {
        let spread: Vec<&String> = relations.iter().filter(|r| sharded.contains(r)).collect();
        let mut import = format!("IMPORT FOREIGN SCHEMA {}", ident(schema));
        if !spread.is_empty() {
            let names: Vec<String> = spread.iter().map(|r| ident(r)).collect();
            let _ = write!(import, " EXCEPT ({})", names.join(", "));
        }
        let _ = write!(
            import,
            " FROM SERVER {} INTO {}",
            ident(&default_server),
            ident(schema)
        );
        sql.push(import);
        for table in spread {
            sql.extend(union_view(shards, schema, table));
        }
    }
    sql
}

/// The statements that point the servers of a federation built by [`build`] at `targets`
/// instead (the same shards' replicas: the foreign tables imported from the primaries fit
/// them, as a physical replica's catalog is its primary's).
pub fn repoint(targets: &[ShardServer]) -> Vec<String> {
    let mut sql = Vec::new();
    for target in targets {
        let name = ident(&server_name(&target.name));
        let uri = &target.uri;
        sql.push(format!(
            "ALTER SERVER {name} OPTIONS (SET host {}, SET port {}, SET dbname {})",
            literal(&uri.host),
            literal(&uri.port.to_string()),
            literal(&uri.database),
        ));
        sql.push(format!("DROP USER MAPPING FOR PUBLIC SERVER {name}"));
        sql.push(user_mapping(&name, uri));
    }
    sql
}

/// The statements that let `role` (the login a copy's reads use, when it is not the one that
/// built it) read what the copy presents in `schemas`. Its views read their foreign tables
/// with their owner's rights, so the schemas of the shards' parts need nothing.
pub fn grant_reads(schemas: impl Iterator<Item = String>, role: &str) -> Vec<String> {
    let role = ident(role);
    let grants = schemas.map(|schema| {
        let schema = ident(&schema);
        [
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        ]
    });
    grants.flatten().collect()
}

/// A shard's server and user mapping.
fn server(shard: &ShardServer) -> Vec<String> {
    let name = ident(&server_name(&shard.name));
    let uri = &shard.uri;
    vec![
        format!(
            "CREATE SERVER {name} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {}, port {}, \
             dbname {}, async_capable 'true', fetch_size '10000', \
             application_name 'shardgate federation')",
            literal(&uri.host),
            literal(&uri.port.to_string()),
            literal(&uri.database),
        ),
        user_mapping(&name, uri),
    ]
}

/// The user mapping of server `name` (quoted) with `uri`'s credentials.
fn user_mapping(name: &str, uri: &BackendUri) -> String {
    let mut mapping = format!("user {}", literal(&uri.user));
    if let Some(password) = &uri.password {
        let _ = write!(mapping, ", password {}", literal(password));
    }
    format!("CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS ({mapping})")
}

/// `schema.table` as the `UNION ALL` of its copy on every shard.
fn union_view(shards: &[ShardServer], schema: &str, table: &str) -> Vec<String> {
    let mut sql = Vec::new();
    let mut parts = Vec::new();
    for shard in shards {
        let local = parts_schema(&shard.name, schema);
        sql.push(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&local)));
        sql.push(format!(
            "IMPORT FOREIGN SCHEMA {} LIMIT TO ({}) FROM SERVER {} INTO {}",
            ident(schema),
            ident(table),
            ident(&server_name(&shard.name)),
            ident(&local)
        ));
        parts.push(format!("SELECT * FROM {}.{}", ident(&local), ident(table)));
    }
    sql.push(format!(
        "CREATE VIEW {}.{} AS {}",
        ident(schema),
        ident(table),
        parts.join(" UNION ALL ")
    ));
    sql
}

/// The schema holding shard `shard`'s copies of the sharded tables of `schema`.
fn parts_schema(shard: &str, schema: &str) -> String {
    match schema {
        "public" => format!("shardgate_{shard}"),
        _ => format!("shardgate_{shard}_{schema}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards() -> Vec<ShardServer> {
        ["s0", "s1"]
            .iter()
            .enumerate()
            .map(|(i, name)| ShardServer {
                name: (*name).into(),
                uri: BackendUri::parse(&format!("postgres://app:p'w@127.0.0.1:{}/app", 5433 + i))
                    .unwrap(),
            })
            .collect()
    }

    #[test]
    fn sharded_tables_become_views_of_every_shard_and_the_rest_read_the_default_shard() {
        let catalog = Catalog {
            schemas: vec![
                ("public".into(), vec!["users".into(), "countries".into()]),
                ("billing".into(), vec!["invoices".into()]),
            ],
            enums: vec![(
                "public".into(),
                "tier".into(),
                vec!["free".into(), "pro".into()],
            )],
        };
        let sql = build(&shards(), 0, &["users".into(), "orders".into()], &catalog);
        let has = |wanted: &str| sql.iter().any(|s| s == wanted);
        assert!(has(
            "CREATE USER MAPPING FOR PUBLIC SERVER \"shardgate_s1\" OPTIONS (user 'app', password 'p''w')"
        ));
        assert!(has(
            "CREATE TYPE \"public\".\"tier\" AS ENUM ('free', 'pro')"
        ));
        assert!(has(
            "IMPORT FOREIGN SCHEMA \"public\" EXCEPT (\"users\") FROM SERVER \"shardgate_s0\" INTO \"public\""
        ));
        assert!(has(
            "IMPORT FOREIGN SCHEMA \"billing\" FROM SERVER \"shardgate_s0\" INTO \"billing\""
        ));
        assert!(has(
            "CREATE VIEW \"public\".\"users\" AS SELECT * FROM \"shardgate_s0\".\"users\" \
             UNION ALL SELECT * FROM \"shardgate_s1\".\"users\""
        ));
        // The types exist before the tables that use them are imported.
        let position = |prefix: &str| sql.iter().position(|s| s.starts_with(prefix)).unwrap();
        assert!(position("CREATE TYPE") < position("IMPORT FOREIGN SCHEMA"));
        assert!(
            !sql.iter().any(|s| s.contains("\"orders\"")),
            "orders is not on the shard"
        );
    }

    #[test]
    fn repointing_moves_each_server_and_its_credentials_to_its_target() {
        let mut targets = shards();
        targets[1].uri = BackendUri::parse("postgres://reader@10.0.0.9:6001/app").unwrap();
        let sql = repoint(&targets[1..]);
        assert_eq!(
            sql,
            [
                "ALTER SERVER \"shardgate_s1\" OPTIONS (SET host '10.0.0.9', SET port '6001', \
                 SET dbname 'app')",
                "DROP USER MAPPING FOR PUBLIC SERVER \"shardgate_s1\"",
                "CREATE USER MAPPING FOR PUBLIC SERVER \"shardgate_s1\" OPTIONS (user 'reader')",
            ]
        );
    }

    #[test]
    fn teardown_drops_servers_with_what_uses_them_then_schemas() {
        let sql = teardown(&["shardgate_s0".into()], &["public".into()]);
        assert_eq!(
            sql,
            [
                "DROP SERVER IF EXISTS \"shardgate_s0\" CASCADE",
                "DROP SCHEMA IF EXISTS \"public\" CASCADE"
            ]
        );
    }
}
