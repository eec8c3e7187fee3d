//! Quoting for the SQL the proxy writes itself (catalog look-ups, settings replayed on a
//! backend, federation scripts, probes of the shards): one spelling, so no caller forgets a
//! doubled quote.

/// A double-quoted identifier: `users` → `"users"`, `a"b` → `"a""b"`.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal. Only quotes are doubled: the proxy's own sessions keep PostgreSQL's
/// default `standard_conforming_strings = on`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("back\\slash"), "'back\\slash'");
    }
}
