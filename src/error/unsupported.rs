//! Everything the proxy refuses as not supported (SQLSTATE 0A000) other than the cross-shard
//! read constructs the merge cannot compute (those are `router::scatter::Construct`): by kind,
//! so each is counted (`shardgate_unsupported_total{kind}`) and tested by what it is, and its
//! message is worded here only.
//!
//! The router refuses statements (writes that reach several shards, statements it cannot
//! analyse); the session refuses uses of statements (a transaction or an extended-protocol
//! batch that would have to span shards in a way not supported yet).

/// A statement, or a use of one, that the proxy does not support (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    // Statements (the router).
    /// The statements of one simple query need different shards.
    #[error("the statements of this query need different shards; send them one by one")]
    StatementsOnDifferentShards,
    /// A multi-statement query over different shards with transaction control in it.
    #[error(
        "the statements of this query need different shards and it controls its transaction (BEGIN, COMMIT, SAVEPOINT, …); send the transaction control statements on their own"
    )]
    TransactionControlAmongShards,
    /// A multi-statement query over different shards with a statement that changes the session.
    #[error(
        "the statements of this query need different shards and one changes the session (SET, RESET, LISTEN, PREPARE, a temporary table, …); send that statement on its own"
    )]
    SessionStateAmongShards,
    /// A `shardgate.shard_key` hint that disagrees with the statement's own key.
    #[error("the statement's shard key is on another shard than the shard_key hint {key} names")]
    HintDisagrees {
        /// The hinted key.
        key: String,
    },
    /// A `shardgate.shard_key` hint on a statement about no sharded table.
    #[error("a shard_key hint needs a sharded table; {table} is not one")]
    HintWithoutShardedTable {
        /// The table the statement names.
        table: String,
    },
    /// An UPDATE/DELETE without its key of a table with `multi_shard_writes: refuse`.
    #[error(
        "a write to {table} must name its shard key {key} (e.g. WHERE {key} = …): the shard map refuses writes to several shards of {table} (`multi_shard_writes: refuse`)"
    )]
    WriteWithoutKey {
        /// The table written.
        table: String,
        /// Its shard key column.
        key: String,
    },
    /// An UPDATE/DELETE whose key condition reaches several shards.
    #[error(
        "this write to {table} touches {shards} shards (narrow it with WHERE {key} = …): the shard map refuses writes to several shards of {table} (`multi_shard_writes: refuse`)"
    )]
    WriteToSeveralShards {
        /// The table written.
        table: String,
        /// Its shard key column.
        key: String,
        /// How many shards it reaches.
        shards: usize,
    },
    /// A row of an INSERT with a NULL key.
    #[error("row {row} of the INSERT into {table} has a NULL shard key {key}")]
    NullKeyInInsert {
        /// The table.
        table: String,
        /// Its shard key column.
        key: String,
        /// The row, from 1.
        row: usize,
    },
    /// An INSERT whose source has no rows the router can see.
    #[error("an INSERT into {table} without rows")]
    InsertWithoutRows {
        /// The table.
        table: String,
    },
    /// An INSERT … SELECT reading a sharded table.
    #[error("INSERT INTO {table} reads the sharded table {other}")]
    InsertReadsSharded {
        /// The table written.
        table: String,
        /// The sharded table read.
        other: String,
    },
    /// An INSERT into a sharded table without a column list.
    #[error(
        "INSERT INTO {table} has no column list; name the columns so the shard key can be found"
    )]
    InsertWithoutColumns {
        /// The table.
        table: String,
    },
    /// A statement on indexes (DROP, ALTER, COMMENT ON, REINDEX) naming no map table: it runs
    /// where the indexes' tables are, which only the catalog tells (the session reads it).
    #[error(
        "a statement on index {} runs where its table is, which shardgate reads from the catalog when it runs",
        indexes.join(", ")
    )]
    IndexTableUnknown {
        /// The indexes, as written.
        indexes: Vec<String>,
    },
    /// An INSERT into a sharded table whose columns leave out the key.
    #[error("INSERT INTO {table} does not set the shard key {key}")]
    InsertWithoutKey {
        /// The table.
        table: String,
        /// Its shard key column.
        key: String,
    },
    /// An INSERT whose key is an expression in some row.
    #[error(
        "INSERT INTO {table}: the shard key {key} must be a literal or a parameter in every row (INSERT … SELECT only of constants)"
    )]
    InsertKeyNotConstant {
        /// The table.
        table: String,
        /// Its shard key column.
        key: String,
    },
    /// An UPDATE/DELETE of an unmapped table reading a sharded one.
    #[error("{verb} of a table outside the map reads the sharded table {other}")]
    UnmappedWriteReadsSharded {
        /// `UPDATE` or `DELETE`.
        verb: &'static str,
        /// The sharded table read.
        other: String,
    },
    /// An UPDATE/DELETE of a reference table reading a sharded one.
    #[error("{verb} of the reference table {table} reads a sharded table")]
    ReferenceWriteReadsSharded {
        /// `UPDATE` or `DELETE`.
        verb: &'static str,
        /// The reference table written.
        table: String,
    },
    /// An UPDATE/DELETE reading another sharded table in a subquery.
    #[error("{verb} of {table} reads {other} in a subquery")]
    WriteReadsInSubquery {
        /// `UPDATE` or `DELETE`.
        verb: &'static str,
        /// The table written.
        table: String,
        /// The sharded table read.
        other: String,
    },
    /// An UPDATE/DELETE joining sharded tables other than on their key.
    #[error("{verb} of {table} joins sharded tables other than on their shard key")]
    WriteJoinsOffKey {
        /// `UPDATE` or `DELETE`.
        verb: &'static str,
        /// The table written.
        table: String,
    },
    /// An UPDATE (or INSERT … ON CONFLICT DO UPDATE) setting the shard key.
    #[error(
        "changing the shard key {key} of {table} would move rows between shards, which is not supported"
    )]
    ShardKeyChange {
        /// The table.
        table: String,
        /// Its shard key column.
        key: String,
    },
    /// An UPDATE of the shard key through the extended protocol.
    #[error(
        "an UPDATE that changes the shard key (moving rows between shards) runs only as a simple query so far; send it through the simple protocol"
    )]
    MoveRowsThroughExtended,
    /// A statement the router does not analyse, naming a map table.
    #[error(
        "{what} naming the sharded or reference table {table} is not supported; send its statements separately"
    )]
    UnanalysedStatement {
        /// What kind of statement.
        what: &'static str,
        /// The map table it names.
        table: String,
    },
    /// `CREATE TABLE … AS` or a view over a sharded table.
    #[error("a table or view defined by a query over the sharded table {table} is not supported")]
    DerivedFromSharded {
        /// The sharded table read.
        table: String,
    },
    /// `COPY … FROM` a server-side file or program into a reference table.
    #[error(
        "COPY FROM a server file or program into the reference table {table} is not supported; use COPY … FROM STDIN (psql's \\copy)"
    )]
    CopyIntoReference {
        /// The table.
        table: String,
    },
    /// `COPY … FROM` a server-side file or program into a sharded table.
    #[error(
        "COPY FROM a server file or program into the sharded table {table} is not supported; use COPY … FROM STDIN (psql's \\copy)"
    )]
    CopyIntoSharded {
        /// The table.
        table: String,
    },
    /// A COPY naming a map table whose options shardgate cannot read.
    #[error(
        "COPY naming {table} has options shardgate cannot read yet (such as HEADER MATCH), so it cannot tell where its rows go"
    )]
    CopyOptionsUnread {
        /// The map table named.
        table: String,
    },
    /// `COPY … FROM STDIN` into a map table outside a simple Query of its own.
    #[error(
        "COPY FROM STDIN into a sharded or reference table runs only as a simple query of its own so far (not through the extended protocol, PREPARE or among other statements)"
    )]
    CopyInNotAlone,
    /// A COPY row into a sharded table whose columns leave out the shard key.
    #[error("COPY into {table} does not set the shard key {key}")]
    CopyWithoutKey {
        /// The table.
        table: String,
        /// Its shard key column.
        key: String,
    },
    /// A multi-row INSERT whose rows go to several shards, in a form that cannot be split.
    #[error("this INSERT cannot be split by shard")]
    UnsplittableInsert,
    /// A cross-shard read the router cannot plan (`reason`: what it reads).
    #[error(
        "this read cannot be computed across shards: {reason}; send it to one shard with its shard key in WHERE, or name a shard with /* shard: NAME */"
    )]
    ScatterNotComputable {
        /// Why, in the router's words.
        reason: String,
    },
    /// A cross-shard plan asked for a statement that reads no sharded table.
    #[error("only reads of sharded tables are planned across shards")]
    ScatterNotAShardedRead,
    /// A cross-shard plan asked for something other than one SELECT.
    #[error(
        "only a single SELECT can be computed across shards; send it to one shard with its shard key in WHERE, or name a shard with /* shard: NAME */"
    )]
    ScatterNotOneSelect,
    /// Unparseable text naming a sharded table, outside a transaction on one shard.
    #[error(
        "shardgate cannot parse this statement and it names a sharded table; add a /* shard: NAME */ or /* shard_key: VALUE */ comment"
    )]
    UnparsedNamesShardedTable,
    /// More directory keys missing from the cache than one statement may look up.
    #[error("the statement names too many keys missing from a directory table's cache")]
    TooManyDirectoryMisses,

    // Uses of statements (the session).
    /// A cross-shard read run through SQL-level `EXECUTE` with arguments that are not
    /// constants.
    #[error(
        "this prepared read needs rows from {shards} shards, which shardgate merges from EXECUTE with constant arguments only; pass constants, or send the statement itself"
    )]
    ScatterFromSqlPrepared {
        /// How many shards it needs.
        shards: usize,
    },
    /// SQL-level `EXECUTE` of a statement routed by its parameters, with arguments that are
    /// expressions.
    #[error(
        "EXECUTE of a statement on sharded tables takes constant arguments only (shardgate routes it by them); pass constants, or send the statement itself"
    )]
    ExecuteArgumentsNotConstant,
    /// A write to several shards run through SQL-level `EXECUTE`.
    #[error(
        "a statement that runs on several shards cannot run from a SQL-level prepared statement (EXECUTE) yet; send the statement itself"
    )]
    SpreadFromSqlPrepared,
    /// A statement on several primaries on a connection pinned to one backend.
    #[error(
        "this connection is pinned to its backend (session state such as LISTEN or temporary tables) and this statement needs several shards"
    )]
    SpreadWhilePinned,
    /// A statement on several primaries that creates session state, inside a transaction.
    #[error(
        "a statement that runs on several shards and creates session state (temporary objects, LISTEN) cannot be part of a transaction: PostgreSQL cannot commit it in two phases; run it outside BEGIN … COMMIT"
    )]
    SpreadPinsInTransaction,
    /// A portal for several primaries with RETURNING, described apart from its Execute.
    #[error(
        "a statement with RETURNING that runs on several shards must be executed right after its portal is described (Bind, Describe, Execute); send them together"
    )]
    SpreadReturningDescribedApart,
    /// A connection pinned to one backend whose statement needs another shard.
    #[error(
        "this connection is pinned to its backend on shard {held} (session state such as LISTEN or temporary tables) and this statement needs shard {needed}"
    )]
    PinnedToOtherShard {
        /// The shard of the pinned backend.
        held: String,
        /// The shard the statement needs.
        needed: String,
    },
    /// A cross-shard read on a connection pinned to one backend.
    #[error(
        "a read that needs several shards cannot run on a connection pinned to one backend (LISTEN, temporary tables, session advisory locks, WITH HOLD cursors); narrow it to one shard with its shard key"
    )]
    ScatterWhilePinned,
    /// A replica read sharing a batch with a statement that needs the primary.
    #[error(
        "a read sent to a replica shares its extended-protocol batch with a statement that needs the primary; send a Sync between them"
    )]
    ReplicaReadSharesBatch,
    /// A deferred transaction's first statement sharing a batch with messages before it.
    #[error(
        "a transaction's first statement must not share an extended-protocol batch with messages sent before it; send a Sync first"
    )]
    FirstStatementSharesBatch,
    /// A portal for several primaries (or a cross-shard COPY) with other messages between
    /// its Bind and its Execute.
    #[error(
        "a portal that writes on several shards (or copies from several) must be executed right after its Bind (and Describe); other messages in between are not supported yet"
    )]
    PortalNotExecutedAtOnce,
    /// An Execute resuming a cross-shard portal past the rows the proxy could hold for it.
    #[error(
        "the rest of this cross-shard result is larger than limits.max_merge_bytes ({limit} bytes), which is what shardgate holds for a suspended portal; fetch all rows in one Execute, or raise the limit"
    )]
    PartialFetchAcrossShards {
        /// The limit, in bytes.
        limit: usize,
    },
    /// An aggregate (found in the catalog) the merge cannot combine.
    #[error(
        "the aggregate {name} is not one shardgate can combine across shards; add the shard key to WHERE or name a shard with /* shard: NAME */"
    )]
    UncombinableAggregate {
        /// The aggregate's name.
        name: String,
    },
    /// A read only the federation database computes, inside a transaction block (the
    /// federation reads the shards outside the client's transaction).
    #[error(
        "{reason}; shardgate answers such reads in its federation database, which reads outside this transaction: inside a transaction block only at READ COMMITTED before the transaction writes or sets anything locally; run the read before the writes, or outside the block"
    )]
    FederatedInTransaction {
        /// Why the merge cannot compute it.
        reason: String,
    },
    /// A FETCH of a cross-shard cursor asking for another result format than its rows have.
    #[error(
        "a cursor over several shards returns its rows in the format it was declared with (text, or binary for DECLARE … BINARY CURSOR); fetch them in that format"
    )]
    CursorFormatChanged,
    /// FETCH or MOVE of a cross-shard cursor in a direction other than forward.
    #[error(
        "a cursor over several shards fetches forward only (FETCH [FORWARD] n, NEXT, ALL); declare it again to read from the start"
    )]
    CursorBackward,
    /// COMMIT/ROLLBACK with other statements in one query, in a spanning transaction.
    #[error("in a transaction that spans shards, send COMMIT or ROLLBACK on its own")]
    EndNotAlone,
    /// AND CHAIN or PREPARE TRANSACTION in a spanning transaction.
    #[error(
        "COMMIT/ROLLBACK AND CHAIN and PREPARE TRANSACTION are not supported in a transaction that spans shards yet; end it with COMMIT or ROLLBACK"
    )]
    ChainOrPrepareWhileSpanning,
    /// SAVEPOINT, RELEASE or ROLLBACK TO among other statements of one query, in a spanning
    /// transaction.
    #[error(
        "in a transaction that spans shards, send SAVEPOINT, RELEASE and ROLLBACK TO as queries of their own (not among other statements)"
    )]
    SavepointWhileSpanning,
}

impl Unsupported {
    /// A fixed word for the metric's `kind` label.
    pub fn kind(&self) -> &'static str {
        use Unsupported::*;
        match self {
            StatementsOnDifferentShards => "statements_on_different_shards",
            TransactionControlAmongShards => "transaction_control_among_shards",
            SessionStateAmongShards => "session_state_among_shards",
            HintDisagrees { .. } => "hint_disagrees",
            HintWithoutShardedTable { .. } => "hint_without_sharded_table",
            WriteWithoutKey { .. } => "write_without_key",
            WriteToSeveralShards { .. } => "write_to_several_shards",
            NullKeyInInsert { .. } => "null_key_in_insert",
            InsertWithoutRows { .. } => "insert_without_rows",
            InsertReadsSharded { .. } => "insert_reads_sharded",
            InsertWithoutColumns { .. } => "insert_without_columns",
            InsertWithoutKey { .. } => "insert_without_key",
            IndexTableUnknown { .. } => "index_table_unknown",
            InsertKeyNotConstant { .. } => "insert_key_not_constant",
            UnmappedWriteReadsSharded { .. } => "unmapped_write_reads_sharded",
            ReferenceWriteReadsSharded { .. } => "reference_write_reads_sharded",
            WriteReadsInSubquery { .. } => "write_reads_in_subquery",
            WriteJoinsOffKey { .. } => "write_joins_off_key",
            ShardKeyChange { .. } => "shard_key_change",
            MoveRowsThroughExtended => "move_rows_through_extended",
            UnanalysedStatement { .. } => "unanalysed_statement",
            DerivedFromSharded { .. } => "derived_from_sharded",
            CopyIntoReference { .. } => "copy_into_reference",
            CopyIntoSharded { .. } => "copy_into_sharded",
            CopyInNotAlone => "copy_in_not_alone",
            CopyOptionsUnread { .. } => "copy_options_unread",
            CopyWithoutKey { .. } => "copy_without_key",
            UnsplittableInsert => "unsplittable_insert",
            ScatterNotComputable { .. } => "scatter_not_computable",
            ScatterNotAShardedRead => "scatter_not_a_sharded_read",
            ScatterNotOneSelect => "scatter_not_one_select",
            UnparsedNamesShardedTable => "unparsed_names_sharded_table",
            TooManyDirectoryMisses => "too_many_directory_misses",
            ScatterFromSqlPrepared { .. } => "scatter_from_sql_prepared",
            ExecuteArgumentsNotConstant => "execute_arguments_not_constant",
            SpreadFromSqlPrepared => "spread_from_sql_prepared",
            SpreadWhilePinned => "spread_while_pinned",
            SpreadPinsInTransaction => "spread_pins_in_transaction",
            SpreadReturningDescribedApart => "spread_returning_described_apart",
            PinnedToOtherShard { .. } => "pinned_to_other_shard",
            ScatterWhilePinned => "scatter_while_pinned",
            ReplicaReadSharesBatch => "replica_read_shares_batch",
            FirstStatementSharesBatch => "first_statement_shares_batch",
            PortalNotExecutedAtOnce => "portal_not_executed_at_once",
            PartialFetchAcrossShards { .. } => "partial_fetch_across_shards",
            UncombinableAggregate { .. } => "uncombinable_aggregate",
            FederatedInTransaction { .. } => "federated_in_transaction",
            CursorBackward => "cursor_backward",
            CursorFormatChanged => "cursor_format_changed",
            EndNotAlone => "end_not_alone",
            ChainOrPrepareWhileSpanning => "chain_or_prepare_while_spanning",
            SavepointWhileSpanning => "savepoint_while_spanning",
        }
    }

    /// The error the client sees: 0A000, the client's to change, worded above.
    pub fn report(&self) -> super::ErrorReport {
        super::ErrorReport::error(
            super::sqlstate::FEATURE_NOT_SUPPORTED,
            super::Blame::Client,
            format!("shardgate: {self}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_0a000_worded_once_and_labelled_by_kind() {
        let refusal = Unsupported::WriteToSeveralShards {
            table: "users".into(),
            key: "user_id".into(),
            shards: 2,
        };
        let report = refusal.report();
        assert_eq!(report.code, "0A000");
        assert!(
            report
                .message
                .starts_with("shardgate: this write to users touches 2 shards"),
            "{}",
            report.message
        );
        assert_eq!(refusal.kind(), "write_to_several_shards");
        assert_eq!(
            Unsupported::SavepointWhileSpanning.kind(),
            "savepoint_while_spanning"
        );
    }
}
