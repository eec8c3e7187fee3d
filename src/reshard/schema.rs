//! Moving tables a shard of the new map does not have yet (typically a shard that joins):
//! created from a source's catalog in the target's open transaction, before any row is copied,
//! so that they appear with the rows at the switch and vanish with a move that fails.
//!
//! What is created: the columns (types, collations, defaults, NOT NULL, identity and generated
//! columns), the constraints (primary key, unique, check, exclusion, foreign keys), the other
//! indexes, the triggers and a replica identity other than the default. Refused by name: a
//! partitioned or inheriting table, and a default taken from a sequence (every shard would
//! count on its own: make the table on the new shard by hand). Grants, policies, comments and
//! statistics settings are not copied.

use std::collections::HashMap;

use super::copy::{self, Side};
use super::stream::Maps;
use crate::config::Shard;
use crate::control::ControlConn;
use crate::sql::quote;

/// The statements that create each table missing on a target of the move.
pub type Missing = HashMap<String, Vec<(String, Definition)>>;

/// The statements that create one table: the table itself (columns, constraints, indexes,
/// triggers, replica identity), then its foreign keys, once every table is there.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    table: Vec<String>,
    foreign_keys: Vec<String>,
}

/// For every target the new map places a moving table on, the moving tables it lacks, with
/// the statements that create them (read from the first source shard that has the table).
pub async fn missing(
    maps: &Maps<'_>,
    tables: &[String],
    timeout: std::time::Duration,
) -> Result<Missing, String> {
    let mut missing: Missing = HashMap::new();
    let mut definitions: HashMap<String, Definition> = HashMap::new();
    for table in tables {
        for id in maps.new.shards_of_table(table) {
            let shard = maps.new.map().shard(id);
            if holding(shard, table, timeout).await?.is_some() {
                continue;
            }
            if !definitions.contains_key(table) {
                definitions.insert(table.clone(), definition(maps, table, timeout).await?);
            }
            let statements = definitions[table].clone();
            (missing.entry(shard.name.clone()).or_default()).push((table.clone(), statements));
        }
    }
    Ok(missing)
}

/// Creates, in `target`'s open transaction, the tables `missing` lists for it; their
/// foreign keys once every one of them is there.
pub async fn create(target: &Side, missing: &Missing) -> Result<(), String> {
    let tables = missing.get(&target.shard).map_or(&[][..], Vec::as_slice);
    for (table, definition) in tables {
        tracing::info!(
            shard = target.shard,
            table,
            "RESHARD creates the table on its new shard"
        );
        run(target, table, &definition.table).await?;
    }
    for (table, definition) in tables {
        run(target, table, &definition.foreign_keys).await?;
    }
    Ok(())
}

async fn run(target: &Side, table: &str, statements: &[String]) -> Result<(), String> {
    for sql in statements {
        (target.conn.client.batch_execute(sql).await)
            .map_err(|e| format!("creating table {table}: {}", copy::on(&target.shard, e)))?;
    }
    Ok(())
}

/// A connection to `shard`'s primary when it has `table`.
async fn holding(
    shard: &Shard,
    table: &str,
    timeout: std::time::Duration,
) -> Result<Option<ControlConn>, String> {
    let conn = copy::connect(&shard.primary, timeout)
        .await
        .map_err(|why| format!("shard {}: {why}", shard.name))?;
    let sql = "SELECT to_regclass($1) IS NOT NULL";
    let row = (conn.client.query_one(sql, &[&quote::ident(table)]).await)
        .map_err(|e| copy::on(&shard.name, e))?;
    Ok(row.get::<_, bool>(0).then_some(conn))
}

/// The statements that create `table` as the first source that has it defines it.
async fn definition(
    maps: &Maps<'_>,
    table: &str,
    timeout: std::time::Duration,
) -> Result<Definition, String> {
    for shard in &maps.old.map().shards {
        if let Some(conn) = holding(shard, table, timeout).await? {
            return read_definition(&conn, table)
                .await
                .map_err(|why| format!("table {table} on shard {}: {why}", shard.name));
        }
    }
    Err(format!(
        "table {table} exists on no shard of the map in force"
    ))
}

const KIND_SQL: &str = "SELECT c.relkind::text, c.relispartition, \
     EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid), c.relreplident::text \
     FROM pg_class c WHERE c.oid = to_regclass($1)";

const COLUMNS_SQL: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
     a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
     CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(n.nspname) || '.' || quote_ident(co.collname) END \
     FROM pg_attribute a \
     JOIN pg_type t ON t.oid = a.atttypid \
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     LEFT JOIN pg_collation co ON co.oid = a.attcollation \
     LEFT JOIN pg_namespace n ON n.oid = co.collnamespace \
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

const CONSTRAINTS_SQL: &str = "SELECT conname::text, pg_get_constraintdef(oid), contype = 'f' \
     FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'c', 'x', 'f') \
     ORDER BY conname";

const INDEXES_SQL: &str = "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
     WHERE i.indrelid = to_regclass($1) \
     AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid \
     AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x')) \
     ORDER BY i.indexrelid";

const TRIGGERS_SQL: &str = "SELECT pg_get_triggerdef(oid), tgname::text, tgenabled::text \
     FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal ORDER BY tgname";

const IDENTITY_INDEX_SQL: &str = "SELECT c.relname::text FROM pg_index i \
     JOIN pg_class c ON c.oid = i.indexrelid \
     WHERE i.indrelid = to_regclass($1) AND i.indisreplident";

async fn read_definition(conn: &ControlConn, table: &str) -> Result<Definition, String> {
    let name = quote::ident(table);
    let query =
        async |sql: &str| (conn.client.query(sql, &[&name]).await).map_err(|e| e.to_string());
    let kind = query(KIND_SQL).await?;
    let kind = kind.first().ok_or("it is gone")?;
    let (relkind, partition, inherits, identity): (String, bool, bool, String) =
        (kind.get(0), kind.get(1), kind.get(2), kind.get(3));
    if relkind != "r" || partition || inherits {
        return Err("a partitioned or inheriting table is not created by RESHARD; create it on the new shard first".into());
    }
    let mut columns = Vec::new();
    for row in query(COLUMNS_SQL).await? {
        columns.push(column(
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            (row.get(4), row.get(5)),
            row.get(6),
        )?);
    }
    let mut statements = vec![format!("CREATE TABLE {name} ({})", columns.join(", "))];
    let mut foreign_keys = Vec::new();
    for row in query(CONSTRAINTS_SQL).await? {
        let (constraint, definition, foreign): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        let constraint = quote::ident(&constraint);
        let sql = format!("ALTER TABLE {name} ADD CONSTRAINT {constraint} {definition}");
        match foreign {
            true => foreign_keys.push(sql),
            false => statements.push(sql),
        }
    }
    statements.extend(
        query(INDEXES_SQL)
            .await?
            .iter()
            .map(|row| row.get::<_, String>(0)),
    );
    for row in query(TRIGGERS_SQL).await? {
        let (definition, trigger, enabled): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        statements.push(definition);
        let trigger = quote::ident(&trigger);
        let state = match enabled.as_str() {
            "D" => "DISABLE TRIGGER",
            "R" => "ENABLE REPLICA TRIGGER",
            "A" => "ENABLE ALWAYS TRIGGER",
            _ => continue,
        };
        statements.push(format!("ALTER TABLE {name} {state} {trigger}"));
    }
    match identity.as_str() {
        "f" => statements.push(format!("ALTER TABLE {name} REPLICA IDENTITY FULL")),
        "n" => statements.push(format!("ALTER TABLE {name} REPLICA IDENTITY NOTHING")),
        "i" => {
            if let Some(row) = query(IDENTITY_INDEX_SQL).await?.first() {
                let index = quote::ident(&row.get::<_, String>(0));
                statements.push(format!(
                    "ALTER TABLE {name} REPLICA IDENTITY USING INDEX {index}"
                ));
            }
        }
        _ => {}
    }
    Ok(Definition {
        table: statements,
        foreign_keys,
    })
}

/// One column's definition in CREATE TABLE.
fn column(
    name: String,
    type_name: String,
    not_null: bool,
    default: Option<String>,
    (identity, generated): (String, String),
    collation: Option<String>,
) -> Result<String, String> {
    let mut definition = format!("{} {type_name}", quote::ident(&name));
    if let Some(collation) = collation {
        definition += &format!(" COLLATE {collation}");
    }
    match (identity.as_str(), generated.as_str(), default) {
        ("a" | "d", _, _) => {
            return Err(format!(
                "column {name} is an identity column; every shard would count on its own: create the table on the new shard first"
            ));
        }
        (_, "s", Some(expression)) => {
            definition += &format!(" GENERATED ALWAYS AS ({expression}) STORED");
        }
        (_, _, Some(expression)) if expression.contains("nextval(") => {
            return Err(format!(
                "column {name} takes its default from a sequence ({expression}); every shard would count on its own: create the table on the new shard first"
            ));
        }
        (_, _, Some(expression)) => definition += &format!(" DEFAULT {expression}"),
        _ => {}
    }
    if not_null {
        definition += " NOT NULL";
    }
    Ok(definition)
}

#[cfg(test)]
mod tests {
    use super::column;

    fn plain(name: &str, type_name: &str) -> (String, String) {
        (name.to_owned(), type_name.to_owned())
    }

    #[test]
    fn columns_keep_their_defaults_collations_and_generation() {
        let (name, ty) = plain("note", "text");
        let with_default = column(
            name,
            ty,
            true,
            Some("'x'::text".into()),
            (String::new(), String::new()),
            Some("pg_catalog.\"C\"".into()),
        );
        assert_eq!(
            with_default.unwrap(),
            "\"note\" text COLLATE pg_catalog.\"C\" DEFAULT 'x'::text NOT NULL"
        );
        let (name, ty) = plain("id", "bigint");
        let identity = column(name, ty, true, None, ("a".into(), String::new()), None);
        assert!(identity.unwrap_err().contains("identity column"));
        let (name, ty) = plain("twice", "bigint");
        let generated = column(
            name,
            ty,
            false,
            Some("(id * 2)".into()),
            (String::new(), "s".into()),
            None,
        );
        assert_eq!(
            generated.unwrap(),
            "\"twice\" bigint GENERATED ALWAYS AS ((id * 2)) STORED"
        );
    }

    #[test]
    fn a_default_from_a_sequence_is_refused_by_name() {
        let (name, ty) = plain("id", "integer");
        let default = Some("nextval('items_id_seq'::regclass)".to_owned());
        let refused = column(
            name,
            ty,
            true,
            default,
            (String::new(), String::new()),
            None,
        );
        assert!(refused.unwrap_err().contains("sequence"));
    }
}
