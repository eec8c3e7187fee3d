//! Savepoints of the client's transaction, kept so that they work across shards: a
//! transaction that spans shards runs SAVEPOINT, RELEASE and ROLLBACK TO on every shard it
//! reached, and a shard it reaches later gets the savepoints still open replayed after its
//! BEGIN, so that `ROLLBACK TO` undoes what the transaction did there since, too.
//!
//! Part of the session stage: the list and the statements' parsing (pure); `spanning` runs
//! them on the parked backends.

use super::statements::{Word, next_word, split_statements};

/// One savepoint command of the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SavepointCommand {
    /// `SAVEPOINT name`.
    Set(Savepoint),
    /// `RELEASE [SAVEPOINT] name`: it and every later one are gone.
    Release(String),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`: every later one is gone.
    RollbackTo(String),
}

/// An open savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Savepoint {
    /// The name as PostgreSQL resolves it (folded unless quoted), for RELEASE and ROLLBACK TO.
    name: String,
    /// The name as the client wrote it, to create it again on another shard.
    written: String,
}

/// The savepoints open in the transaction, oldest first.
#[derive(Debug, Default)]
pub(super) struct Savepoints(Vec<Savepoint>);

impl Savepoints {
    /// Applies a command the backend in use is about to run.
    pub(super) fn apply(&mut self, command: &SavepointCommand) {
        match command {
            SavepointCommand::Set(savepoint) => self.0.push(savepoint.clone()),
            SavepointCommand::Release(name) => {
                if let Some(at) = self.position(name) {
                    self.0.truncate(at);
                }
            }
            SavepointCommand::RollbackTo(name) => {
                if let Some(at) = self.position(name) {
                    self.0.truncate(at + 1);
                }
            }
        }
    }

    /// The most recent savepoint of that name (PostgreSQL's choice when names repeat).
    fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().rposition(|s| s.name == name)
    }

    /// Whether any is open: a failure may then be rolled back to one, so the transaction's
    /// other shards must stay in it.
    pub(super) fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// The statements that open them again on a shard joining the transaction.
    pub(super) fn replay(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|s| format!("SAVEPOINT {}", s.written))
    }

    /// The transaction ended: none is open.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// The savepoint command `sql` is, when it is exactly one. Cheap for every other statement:
/// only its first word is read.
pub(super) fn savepoint_command(sql: &str) -> Option<SavepointCommand> {
    let (first, _) = next_word(sql)?;
    if !(first.is("savepoint") || first.is("release") || first.is("rollback")) {
        return None;
    }
    let mut statements = split_statements(sql);
    let (Some(statement), None) = (statements.next(), statements.next()) else {
        return None;
    };
    let (first, rest) = next_word(statement)?;
    let words: Vec<Word<'_>> =
        std::iter::successors(next_word(rest), |(_, after)| next_word(after))
            .map(|(word, _)| word)
            .collect();
    if first.is("savepoint") {
        let [name] = words.as_slice() else {
            return None;
        };
        let written = written(name);
        return Some(SavepointCommand::Set(Savepoint {
            name: name.name(),
            written,
        }));
    }
    if first.is("release") {
        let name = match words.as_slice() {
            [keyword, name] if keyword.is("savepoint") => name,
            [name] => name,
            _ => return None,
        };
        return Some(SavepointCommand::Release(name.name()));
    }
    let words = match words.as_slice() {
        [noise, rest @ ..] if noise.is("work") || noise.is("transaction") => rest,
        all => all,
    };
    let name = match words {
        [to, keyword, name] if to.is("to") && keyword.is("savepoint") => name,
        [to, name] if to.is("to") => name,
        _ => return None,
    };
    Some(SavepointCommand::RollbackTo(name.name()))
}

/// A savepoint name as it can be written again.
fn written(name: &Word<'_>) -> String {
    let folded = name.name();
    if name.is(&folded) {
        folded
    } else {
        format!("\"{}\"", folded.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(sql: &str) -> Savepoint {
        match savepoint_command(sql) {
            Some(SavepointCommand::Set(savepoint)) => savepoint,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn the_three_commands_are_read_in_every_spelling() {
        assert_eq!(set("SAVEPOINT a").name, "a");
        assert_eq!(set("savepoint \"My Point\";").written, "\"My Point\"");
        assert_eq!(set("SAVEPOINT Upper").written, "upper");
        let release = |name: &str| Some(SavepointCommand::Release(name.into()));
        assert_eq!(savepoint_command("RELEASE SAVEPOINT a"), release("a"));
        assert_eq!(savepoint_command("release A"), release("a"));
        let back = |name: &str| Some(SavepointCommand::RollbackTo(name.into()));
        assert_eq!(savepoint_command("ROLLBACK TO SAVEPOINT a"), back("a"));
        assert_eq!(savepoint_command("ROLLBACK WORK TO a"), back("a"));
        assert_eq!(
            savepoint_command("rollback transaction to savepoint b"),
            back("b")
        );
        for other in [
            "ROLLBACK",
            "ROLLBACK AND CHAIN",
            "SELECT 1",
            "SAVEPOINT a; SELECT 1",
            "RELEASE",
        ] {
            assert_eq!(savepoint_command(other), None, "{other}");
        }
    }

    #[test]
    fn release_and_rollback_to_close_the_later_savepoints() {
        let mut open = Savepoints::default();
        for sql in ["SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT a", "SAVEPOINT c"] {
            open.apply(&savepoint_command(sql).unwrap());
        }
        open.apply(&savepoint_command("ROLLBACK TO a").unwrap());
        let replayed: Vec<String> = open.replay().collect();
        assert_eq!(replayed, ["SAVEPOINT a", "SAVEPOINT b", "SAVEPOINT a"]);
        open.apply(&savepoint_command("RELEASE b").unwrap());
        assert_eq!(open.replay().collect::<Vec<_>>(), ["SAVEPOINT a"]);
        open.apply(&savepoint_command("RELEASE nothing").unwrap());
        assert!(open.any());
        open.clear();
        assert!(!open.any());
    }
}
