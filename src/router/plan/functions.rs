//! Function calls a statement makes, as far as read-your-writes and replica reads care: a
//! SELECT that calls a function which may write (`SELECT nextval('s')`, a user's function that
//! UPDATEs) must run on a primary, and the session must then read that shard's writes.
//!
//! Part of the router (pure, on tokens). Strict: any call of a name outside a list of
//! built-ins known to have no side effects counts, so a replica never runs it.

use sqlparser::tokenizer::{Token, Word};

/// Built-in functions and aggregates without side effects (and SQL keywords written like
/// calls), by lower-case name.
#[rustfmt::skip]
const WITHOUT_SIDE_EFFECTS: &[&str] = &[
    // SQL syntax that takes parentheses.
    "in", "values", "exists", "any", "all", "some", "array", "row", "over", "filter", "within",
    "cast", "extract", "substring", "trim", "position", "overlay", "interval", "using", "on",
    "as", "from", "join", "lateral", "tablesample", "partition", "rows", "range", "groups",
    "conflict", "references", "check", "key", "unique", "with", "select", "where", "and", "or",
    "not", "when", "then", "else", "case", "is", "distinct", "returning", "set", "into",
    "rollup", "cube", "grouping", "sets", "by", "limit", "offset", "fetch", "except", "union",
    "intersect", "like", "ilike", "similar", "between", "do", "update", "nothing", "default",
    // Types with modifiers.
    "varchar", "char", "character", "varying", "numeric", "decimal", "time", "timestamp",
    "timestamptz", "bit", "float", "double", "precision",
    // Aggregates and window functions.
    "count", "sum", "avg", "min", "max", "every", "bool_and", "bool_or", "string_agg",
    "array_agg", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "stddev",
    "variance", "row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value",
    "ntile", "percent_rank", "cume_dist", "stddev_pop", "stddev_samp", "var_pop", "var_samp",
    "bit_and", "bit_or", "bit_xor", "corr", "covar_pop", "covar_samp", "regr_slope",
    "regr_intercept", "regr_count", "regr_r2", "regr_avgx", "regr_avgy", "regr_sxx", "regr_syy",
    "regr_sxy", "percentile_cont", "percentile_disc", "mode", "xmlagg", "range_agg",
    "range_intersect_agg", "nth_value",
    // Scalar built-ins.
    "coalesce", "nullif", "greatest", "least", "upper", "lower", "initcap", "length",
    "char_length", "octet_length", "substr", "btrim", "ltrim", "rtrim", "replace", "concat",
    "concat_ws", "format", "left", "right", "lpad", "rpad", "split_part", "strpos", "md5",
    "starts_with", "regexp_replace", "regexp_match", "regexp_matches", "abs", "ceil", "ceiling",
    "floor", "round", "trunc", "sqrt", "power", "mod", "sign", "now", "current_timestamp",
    "current_date", "localtimestamp", "date_trunc", "date_part", "age", "to_char", "to_date",
    "to_timestamp", "to_number", "make_date", "make_timestamp", "make_interval",
    "array_length", "array_position", "unnest", "cardinality", "json_build_object",
    "jsonb_build_object", "to_json", "to_jsonb", "row_to_json", "jsonb_array_length",
    "json_array_length", "jsonb_extract_path_text", "generate_series",
];

/// Whether `word` followed by `rest` is a call of a function not known to be free of side
/// effects.
pub(super) fn calls_unknown_function(word: &Word, rest: &[Token]) -> bool {
    let next = rest.iter().find(|t| !matches!(t, Token::Whitespace(_)));
    if !matches!(next, Some(Token::LParen)) {
        return false;
    }
    let name = word.value.to_lowercase();
    !WITHOUT_SIDE_EFFECTS.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};

    fn calls(sql: &str) -> bool {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        (tokens.iter().enumerate()).any(|(i, t)| match t {
            Token::Word(w) => super::calls_unknown_function(w, &tokens[i + 1..]),
            _ => false,
        })
    }

    #[test]
    fn only_calls_of_unknown_functions_count() {
        for sql in [
            "SELECT count(*), upper(name) FROM users WHERE user_id IN (1, 2)",
            "SELECT name::varchar(10) FROM users WHERE user_id = 1",
            "SELECT * FROM users WHERE EXISTS (SELECT 1)",
        ] {
            assert!(!calls(sql), "{sql}");
        }
        for sql in [
            "SELECT nextval('s')",
            "SELECT rename_user(1, 'x')",
            "SELECT * FROM users WHERE user_id = f (1)",
        ] {
            assert!(calls(sql), "{sql}");
        }
    }
}
