//! `COPY table [(columns)] FROM STDIN [options]` into a sharded or reference table: where its
//! rows go and how to read them. Every row of a sharded table goes to its key's shard, and
//! every row of a reference table to every shard; the session splits the client's data
//! (see `wire::copy_rows`) and streams each shard its own rows under the same statement.
//! And `COPY … TO STDOUT` of several shards: the query it reads, run as a cross-shard read
//! whose merged rows are written as COPY data (see `merge::copy_out`).

use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident};
use sqlparser::dialect::PostgreSqlDialect;

use super::Target;
use crate::config::{Placement, ShardMap, Sharding};
use crate::router::scope::ident_name;
use crate::wire::copy_rows::{CopyFormat, CsvOptions, ForceQuote};

/// A COPY FROM STDIN into a map table.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The map table.
    pub table: String,
    /// Its placement: `None` for a reference table (every shard takes every row).
    pub sharding: Option<Sharding>,
    /// The columns named, folded (empty: every column but generated ones, in catalog order).
    pub columns: Vec<String>,
    /// How the data is read.
    pub format: CopyFormat,
}

/// The target of a COPY FROM STDIN into `table` (a map table) with these options.
pub fn copy_in(
    map: &ShardMap,
    table: &str,
    columns: &[Ident],
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Target {
    let sharding = match &map.tables[table].placement {
        Placement::Sharded(sharding) => Some(sharding.clone()),
        Placement::Reference => None,
    };
    let key = sharding
        .as_ref()
        .map(|s| s.key_column.clone())
        .unwrap_or_default();
    Target::CopyIn(Box::new(CopyIn {
        table: table.to_owned(),
        sharding,
        columns: columns.iter().map(ident_name).collect(),
        format: format_of(options, legacy, &key),
    }))
}

/// The data format the options describe (PostgreSQL's defaults otherwise). `key` is the shard
/// key column, whose FORCE_NULL / FORCE_NOT_NULL decide whether its null string is NULL.
fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption], key: &str) -> CopyFormat {
    let names_key = |columns: &[Ident]| columns.iter().any(|c| ident_name(c) == key);
    let mut kind = "text";
    let (mut delimiter, mut null, mut csv) = (None, None, CsvOptions::new());
    for option in options {
        match option {
            CopyOption::Format(name) => {
                kind = if name.value.eq_ignore_ascii_case("csv") {
                    "csv"
                } else if name.value.eq_ignore_ascii_case("binary") {
                    "binary"
                } else {
                    "text"
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c as u8),
            CopyOption::Null(text) => null = Some(text.as_bytes().to_vec()),
            CopyOption::Header(header) => csv.header = *header,
            CopyOption::Quote(c) => csv.quote = *c as u8,
            CopyOption::Escape(c) => csv.escape = *c as u8,
            CopyOption::ForceNotNull(columns) => csv.key_force_not_null |= names_key(columns),
            CopyOption::ForceNull(columns) => csv.key_force_null |= names_key(columns),
            CopyOption::ForceQuote(columns) => csv.force_quote = force_quote(columns),
            _ => {}
        }
    }
    let mut escape_set = options.iter().any(|o| matches!(o, CopyOption::Escape(_)));
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => kind = "binary",
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c as u8),
            CopyLegacyOption::Null(text) => null = Some(text.as_bytes().to_vec()),
            CopyLegacyOption::Csv(csv_options) => {
                kind = "csv";
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => csv.header = true,
                        CopyLegacyCsvOption::Quote(c) => csv.quote = *c as u8,
                        CopyLegacyCsvOption::Escape(c) => {
                            csv.escape = *c as u8;
                            escape_set = true;
                        }
                        CopyLegacyCsvOption::ForceNotNull(columns) => {
                            csv.key_force_not_null |= names_key(columns)
                        }
                        CopyLegacyCsvOption::ForceQuote(columns) => {
                            csv.force_quote = force_quote(columns)
                        }
                    }
                }
            }
            _ => {}
        }
    }
    match kind {
        "binary" => CopyFormat::Binary,
        "csv" => {
            if !escape_set {
                csv.escape = csv.quote;
            }
            csv.delimiter = delimiter.unwrap_or(b',');
            csv.null = null.unwrap_or_default();
            CopyFormat::Csv(csv)
        }
        _ => CopyFormat::Text {
            delimiter: delimiter.unwrap_or(b'\t'),
            null: null.unwrap_or_else(|| b"\\N".to_vec()),
        },
    }
}

/// The parser reads `FORCE_QUOTE *` as the quoted name `"*"` (see [`spelled_for_parser`]).
fn force_quote(columns: &[Ident]) -> ForceQuote {
    match columns {
        [star] if star.value == "*" && star.quote_style.is_some() => ForceQuote::All,
        _ => ForceQuote::Columns(columns.iter().map(ident_name).collect()),
    }
}

/// A `COPY … TO STDOUT` that reads several shards: the query whose merged rows it writes, and
/// how it writes them.
#[derive(Debug, Clone)]
pub struct CopyOut {
    /// `SELECT` text of what it copies (`COPY t (a, b)` → `SELECT a, b FROM t`).
    pub query: String,
    /// Its output format.
    pub format: CopyFormat,
    /// A CSV header line first.
    pub header: bool,
}

/// What the COPY TO STDOUT in `sql` copies, if `sql` is one.
pub fn copy_out(sql: &str) -> Option<CopyOut> {
    use sqlparser::ast::{CopySource, CopyTarget, Statement};
    // Asked of every cross-shard read: only a COPY is parsed again.
    if !is_copy(sql) {
        return None;
    }
    let spelled = spelled_for_parser(sql);
    let sql = spelled.as_deref().unwrap_or(sql);
    let statements = sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        },
    ] = statements.as_slice()
    else {
        return None;
    };
    let query = match source {
        CopySource::Query(query) => query.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let names: Vec<String> = columns.iter().map(ToString::to_string).collect();
            format!("SELECT {} FROM {table_name}", names.join(", "))
        }
    };
    let format = format_of(options, legacy_options, "");
    let header = matches!(&format, CopyFormat::Csv(csv) if csv.header);
    Some(CopyOut {
        query,
        format,
        header,
    })
}

/// Whether `sql` is a COPY statement (its first word).
pub fn is_copy(sql: &str) -> bool {
    let first = crate::sql::lexer::tokens(sql).find(|token| token.is_significant());
    first.is_some_and(|token| token.text(sql).eq_ignore_ascii_case("copy"))
}

/// `sql` spelled so the parser takes what PostgreSQL takes: the values of its boolean COPY
/// options (`FREEZE`, `HEADER`) written `TRUE` or `FALSE` where PostgreSQL also takes `ON`,
/// `OFF`, `1` and `0`, and `FORCE_QUOTE *` (or `FORCE QUOTE *`) as the quoted name `"*"`;
/// `None` when nothing changes.
pub fn spelled_for_parser(sql: &str) -> Option<String> {
    use crate::sql::lexer::tokens;
    let significant: Vec<_> = tokens(sql).filter(|t| t.is_significant()).collect();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for pair in significant.windows(2) {
        let (option, value) = (pair[0].text(sql), pair[1].text(sql));
        let is = |word: &str| option.eq_ignore_ascii_case(word);
        let spelled = match value.to_ascii_lowercase().as_str() {
            "on" | "1" if is("freeze") || is("header") => "TRUE",
            "off" | "0" if is("freeze") || is("header") => "FALSE",
            "*" if is("force_quote") => "(\"*\")",
            "*" if is("quote") => "\"*\"",
            _ => continue,
        };
        out.push_str(&sql[copied..pair[1].start]);
        out.push_str(spelled);
        copied = pair[1].end;
    }
    (copied > 0).then(|| {
        out.push_str(&sql[copied..]);
        out
    })
}
