//! Whether a statement may change data: what read-your-writes needs to know.
//!
//! Part of the router (pure). A session that ran a statement that may write on a shard reads
//! that shard from its primary from then on; everything else may read from a replica.

use super::plan::{Kind, Plan, Target};
use super::{Router, normalize};

impl Plan {
    /// Whether the statement may change data or schema, or lock rows (anything but plain
    /// reads and session commands; text the parser cannot read counts as a write), so it must
    /// run on a primary and later reads of the session must see it.
    pub fn may_write(&self) -> bool {
        self.parts.iter().any(|part| {
            !matches!(part.kind, Kind::Read | Kind::Session)
                || part.target.is_opaque()
                || part.locks_rows
                || part.calls_unknown_function
        })
    }

    /// Whether the statement runs where it does only because it names no table of the map
    /// (the default shard, or anywhere): a fallback route, not one chosen by a key.
    pub fn names_no_map_table(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part.target, Target::DefaultShard | Target::Anywhere))
    }
}

impl Router {
    /// [`Plan::may_write`] of `sql`. `literals_inline`: a simple-protocol text, looked up by
    /// its normalized form so it costs no parse.
    pub fn may_write(&self, sql: &str, literals_inline: bool) -> bool {
        let normalized = literals_inline.then(|| normalize::normalize(sql)).flatten();
        let plan = match &normalized {
            Some((text, _)) => self.plan(text),
            None => self.plan(sql),
        };
        plan.may_write()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_shard_map;

    #[test]
    fn reads_and_session_commands_do_not_write() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/shard-maps/demo.yaml"))
                .unwrap();
        let map = parse_shard_map(&text, std::path::Path::new("demo.yaml")).unwrap();
        let router = super::Router::new(&map);
        for sql in [
            "SELECT * FROM users WHERE user_id = 1",
            "SET search_path = x",
            "BEGIN",
        ] {
            assert!(!router.may_write(sql, true), "{sql}");
        }
        for sql in [
            "INSERT INTO users (user_id, name) VALUES (1, 'a')",
            "UPDATE users SET name = 'b' WHERE user_id = $1",
            "CREATE TABLE t (a int)",
            "DO $$ BEGIN END $$",
            "SELECT * FROM users WHERE user_id = 1 FOR UPDATE",
            "SELECT nextval('ids')",
            "SELECT my_function(name) FROM users WHERE user_id = $1",
        ] {
            assert!(router.may_write(sql, true), "{sql}");
        }
    }
}
