//! Routing hints from applications that know better than the SQL shows: a leading comment
//! `/* shard: s1 */` or `/* shard_key: 42 */`, or the session settings `shardgate.shard` and
//! `shardgate.shard_key` (kept by the session, handed to the router per statement).
//!
//! Part of the router (pure).

/// A shard or a key the application names for a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Run on the shard with this name.
    Shard(String),
    /// Route as if the statement's shard key were this value (in its text form).
    ShardKey(String),
}

impl Hint {
    /// The hint in the comments that open `sql`, if any.
    pub fn leading(sql: &str) -> Option<Hint> {
        let mut rest = sql.trim_start();
        while let Some(after) = rest.strip_prefix("/*") {
            let end = after.find("*/")?;
            if let Some(hint) = Hint::from_comment(&after[..end]) {
                return Some(hint);
            }
            rest = after[end + 2..].trim_start();
        }
        None
    }

    /// `shard: NAME` or `shard_key: VALUE` (the value may be single-quoted).
    fn from_comment(comment: &str) -> Option<Hint> {
        let (name, value) = comment.split_once(':')?;
        Hint::from_setting(name.trim(), value.trim())
    }

    /// A hint from a setting name (`shard`, `shard_key`, with or without `shardgate.`) and its
    /// value; `None` for other names and empty values.
    pub fn from_setting(name: &str, value: &str) -> Option<Hint> {
        let value = value.trim();
        let quoted = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''));
        let value = match quoted {
            Some(inner) => inner.replace("''", "'"),
            None => value.to_owned(),
        };
        if value.is_empty() {
            return None;
        }
        match name.to_ascii_lowercase().trim_start_matches("shardgate.") {
            "shard" => Some(Hint::Shard(value)),
            "shard_key" => Some(Hint::ShardKey(value)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_comments_carry_hints() {
        let shard = Some(Hint::Shard("s1".into()));
        assert_eq!(Hint::leading("/* shard: s1 */ SELECT 1"), shard);
        assert_eq!(Hint::leading("  /* app=x */ /*shard:s1*/SELECT 1"), shard);
        assert_eq!(
            Hint::leading("/* shard_key: '42' */ UPDATE t SET x = 1"),
            Some(Hint::ShardKey("42".into()))
        );
        assert_eq!(Hint::leading("SELECT 1 /* shard: s1 */"), None);
        assert_eq!(Hint::leading("/* shard: */ SELECT 1"), None);
        assert_eq!(Hint::leading("/* unterminated shard: s1"), None);
        assert_eq!(Hint::leading("/* other: s1 */ SELECT 1"), None);
        assert_eq!(
            Hint::leading("/* shard_key: 'O''Brien' */ SELECT 1"),
            Some(Hint::ShardKey("O'Brien".into()))
        );
    }
}
