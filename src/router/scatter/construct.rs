//! The constructs a cross-shard read can contain that the streaming merge cannot compute, by
//! kind: refusals are counted and tested by kind, and their words are written here once.
//!
//! Part of the router (pure). A variant's text is the subject of the client's message
//! "… cannot be computed across shards (…)"; the fields carry the SQL the client wrote.

use std::fmt;

/// The words of [`Construct::OuterJoinOffKey`] (too long for one line of the match).
const OUTER_JOIN_OFF_KEY: &str = "a query with outer joins where sharded tables are joined other than by their shard key in the join's own ON or in WHERE";

/// A construct of a read that needs several shards and that the merge cannot compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Construct {
    /// `EXPLAIN` of a read that needs several shards.
    Explain,
    /// Anything but one query (several statements, a non-query).
    OtherStatement,
    /// `WITH` at the top of the query.
    CommonTableExpressions,
    /// `WITH` inside a subquery.
    CteInSubquery,
    /// `FOR UPDATE` / `FOR SHARE`.
    RowLocks,
    /// `UNION`, `VALUES`, … instead of one SELECT.
    SetOperation,
    /// `SELECT INTO`, `TOP`, and other SELECT syntax the merge does not model.
    SelectSyntax,
    /// `DISTINCT ON`.
    DistinctOn,
    /// Window functions (`OVER`, `WINDOW`).
    WindowFunctions,
    /// `GROUP BY ALL`.
    GroupByAll,
    /// `GROUP BY … WITH ROLLUP` and other modifiers.
    GroupByModifiers,
    /// `GROUPING SETS`, `ROLLUP`, `CUBE`, `()`.
    GroupingSets,
    /// `SELECT DISTINCT` with `GROUP BY`.
    DistinctWithGroupBy,
    /// An aggregate in `GROUP BY`.
    AggregateInGroupBy,
    /// ORDER BY in a form other than a list of expressions.
    OrderBySyntax,
    /// `ORDER BY … WITH FILL`.
    OrderByWithFill,
    /// `ORDER BY … USING`.
    OrderByUsing,
    /// A sort key whose collation does not sort bytewise (the key as written).
    CollatedSort(String),
    /// An ORDER BY name that matches several select items.
    AmbiguousOrderBy(String),
    /// `SELECT DISTINCT` ordered by an expression outside the select list.
    DistinctOrderedByHidden(String),
    /// An ORDER BY key of a grouped read that is neither a group key nor an aggregate.
    OrderByNotGrouped(String),
    /// A position in ORDER BY or GROUP BY that names no select item before any `*`.
    Position(String),
    /// `GROUP BY` a select-list alias.
    GroupByAlias(String),
    /// LIMIT in a form other than `LIMIT n [OFFSET m]`.
    LimitSyntax,
    /// Both LIMIT and FETCH FIRST.
    LimitAndFetch,
    /// `FETCH FIRST … WITH TIES` or `PERCENT`.
    FetchWithTiesOrPercent,
    /// A LIMIT/OFFSET/FETCH count that is not a number or a parameter.
    ComputedCount,
    /// A FROM item other than a table, a join or a subquery the merge understands.
    FromItem,
    /// `TABLESAMPLE` on a sharded table.
    TableSample,
    /// Column aliases on a sharded table.
    ColumnAliases,
    /// A use of a sharded table the analysis does not follow (its name).
    TableUse(String),
    /// A join of sharded tables with a table outside the map (its name).
    UnmappedJoin(String),
    /// A kind of join other than inner, left, right, full or cross.
    JoinKind,
    /// An outer join that keeps reference-table rows against sharded ones.
    OuterJoinKeepingCopies,
    /// Outer joins where sharded tables meet other than by their key in the join's ON.
    OuterJoinOffKey,
    /// A subquery the analysis does not follow.
    Subquery,
    /// A subquery that writes.
    WritingSubquery,
    /// An aggregate inside a subquery.
    AggregateInSubquery,
    /// A FROM item of a subquery other than tables and joins.
    SubqueryFromItem,
    /// A subquery reading a sharded table (its name).
    SubqueryOfShardedTable(String),
    /// A subquery reading a table outside the map (its name).
    SubqueryOfUnmappedTable(String),
    /// A select item with a list of aliases.
    AliasList,
    /// `ISNULL` after a select item.
    IsNullPostfix,
    /// `SELECT *` with a clause that needs the columns named (the clause).
    WildcardWith(String),
    /// An aggregate the merge cannot combine (its name).
    Aggregate(String),
    /// An aggregate call with arguments the merge cannot combine (the call).
    AggregateArguments(String),
    /// Aggregates with `FILTER`.
    AggregateFilter,
    /// Ordered-set aggregates (`WITHIN GROUP`).
    OrderedSetAggregate,
    /// Aggregate call syntax the merge does not model (`IGNORE NULLS`, parameters).
    AggregateCallSyntax,
    /// `DISTINCT` inside an aggregate.
    DistinctAggregate,
    /// `ORDER BY` or other clauses inside aggregate arguments.
    AggregateClauses,
    /// An aggregate inside an expression (the select item).
    AggregateInExpression(String),
    /// A select item that is neither an aggregate nor a group key.
    UngroupedItem(String),
    /// A HAVING condition the merge cannot evaluate.
    Having(String),
}

impl Construct {
    /// A short, stable name of the kind (for counting and tests).
    pub fn kind(&self) -> &'static str {
        use Construct::*;
        match self {
            Explain => "explain",
            OtherStatement => "other_statement",
            CommonTableExpressions | CteInSubquery => "cte",
            RowLocks => "row_locks",
            SetOperation => "set_operation",
            SelectSyntax => "select_syntax",
            DistinctOn => "distinct_on",
            WindowFunctions => "window_function",
            GroupByAll | GroupByModifiers | GroupingSets | GroupByAlias(_) => "group_by",
            DistinctWithGroupBy | DistinctOrderedByHidden(_) => "distinct",
            OrderBySyntax | OrderByWithFill | OrderByUsing | AmbiguousOrderBy(_) => "order_by",
            OrderByNotGrouped(_) | Position(_) => "order_by",
            CollatedSort(_) => "collation",
            LimitSyntax | LimitAndFetch | FetchWithTiesOrPercent | ComputedCount => "limit",
            FromItem | TableSample | ColumnAliases | TableUse(_) => "from",
            UnmappedJoin(_) | JoinKind | OuterJoinKeepingCopies | OuterJoinOffKey => "join",
            Subquery | WritingSubquery | AggregateInSubquery | SubqueryFromItem => "subquery",
            SubqueryOfShardedTable(_) | SubqueryOfUnmappedTable(_) => "subquery",
            AliasList | IsNullPostfix | WildcardWith(_) => "select_list",
            Aggregate(_) | AggregateArguments(_) | AggregateFilter | OrderedSetAggregate => {
                "aggregate"
            }
            AggregateCallSyntax | DistinctAggregate | AggregateClauses => "aggregate",
            AggregateInGroupBy | AggregateInExpression(_) | UngroupedItem(_) => "aggregate",
            Having(_) => "having",
        }
    }
}

impl fmt::Display for Construct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Construct::*;
        match self {
            Explain => f.write_str("EXPLAIN"),
            OtherStatement => f.write_str("this statement"),
            CommonTableExpressions => f.write_str("WITH (common table expressions)"),
            CteInSubquery => f.write_str("WITH inside a subquery"),
            RowLocks => f.write_str("FOR UPDATE / FOR SHARE"),
            SetOperation => f.write_str("a query other than one SELECT (UNION, VALUES, …)"),
            SelectSyntax => f.write_str("this SELECT syntax"),
            DistinctOn => f.write_str("DISTINCT ON"),
            WindowFunctions => f.write_str("window functions"),
            GroupByAll => f.write_str("GROUP BY ALL"),
            GroupByModifiers => f.write_str("GROUP BY … WITH modifiers"),
            GroupingSets => f.write_str("GROUPING SETS, ROLLUP, CUBE and () in GROUP BY"),
            DistinctWithGroupBy => f.write_str("SELECT DISTINCT with GROUP BY"),
            AggregateInGroupBy => f.write_str("an aggregate in GROUP BY"),
            OrderBySyntax => f.write_str("this ORDER BY syntax"),
            OrderByWithFill => f.write_str("ORDER BY … WITH FILL"),
            OrderByUsing => f.write_str("ORDER BY … USING"),
            CollatedSort(key) => write!(
                f,
                "sorting by {key} (only the \"C\" and \"POSIX\" collations sort bytewise, as the merge does)"
            ),
            AmbiguousOrderBy(key) => write!(f, "the ambiguous ORDER BY name {key}"),
            DistinctOrderedByHidden(key) => {
                write!(f, "SELECT DISTINCT ordered by {key} (not in the select list)")
            }
            OrderByNotGrouped(key) => write!(
                f,
                "ORDER BY {key} (neither a GROUP BY expression nor an aggregate)"
            ),
            Position(text) => write!(
                f,
                "the position {text} in ORDER BY or GROUP BY (it must name a select item before any *)"
            ),
            GroupByAlias(name) => write!(
                f,
                "GROUP BY {name} where {name} is a select-list alias (PostgreSQL would group by \
                 an input column of that name if there is one; write the expression or its \
                 position instead)"
            ),
            LimitSyntax => f.write_str("this LIMIT syntax"),
            LimitAndFetch => f.write_str("both LIMIT and FETCH FIRST"),
            FetchWithTiesOrPercent => f.write_str("FETCH FIRST … WITH TIES or PERCENT"),
            ComputedCount => f.write_str(
                "a LIMIT, OFFSET or FETCH count that is not a number or a $n parameter",
            ),
            FromItem => f.write_str("this kind of FROM item"),
            TableSample => f.write_str("TABLESAMPLE on a sharded table"),
            ColumnAliases => f.write_str("column aliases on a sharded table"),
            TableUse(name) => write!(f, "this use of {name}"),
            UnmappedJoin(name) => write!(
                f,
                "joining {name} (not in the shard map, so each shard has its own) with sharded tables"
            ),
            JoinKind => f.write_str("this kind of join"),
            OuterJoinKeepingCopies => f.write_str(
                "an outer join that keeps the rows of reference tables against sharded ones (every shard would keep them)",
            ),
            OuterJoinOffKey => f.write_str(OUTER_JOIN_OFF_KEY),
            Subquery => f.write_str("this subquery"),
            WritingSubquery => f.write_str("a subquery that writes"),
            AggregateInSubquery => f.write_str("an aggregate inside a subquery"),
            SubqueryFromItem => f.write_str("this FROM item in a subquery"),
            SubqueryOfShardedTable(name) => {
                write!(f, "a subquery reading the sharded table {name}")
            }
            SubqueryOfUnmappedTable(name) => write!(
                f,
                "a subquery reading {name} (not in the shard map, so each shard has its own)"
            ),
            AliasList => f.write_str("a list of aliases"),
            IsNullPostfix => f.write_str("ISNULL after a select item (write IS NULL)"),
            WildcardWith(what) => write!(f, "SELECT * with {what}"),
            Aggregate(name) => write!(f, "the aggregate {name}"),
            AggregateArguments(call) => write!(f, "the call {call}"),
            AggregateFilter => f.write_str("aggregates with FILTER"),
            OrderedSetAggregate => f.write_str("ordered-set aggregates (WITHIN GROUP)"),
            AggregateCallSyntax => f.write_str("this aggregate call syntax"),
            DistinctAggregate => f.write_str("DISTINCT inside aggregates"),
            AggregateClauses => {
                f.write_str("ORDER BY or other clauses inside aggregate arguments")
            }
            AggregateInExpression(item) => {
                write!(f, "an aggregate inside an expression ({item})")
            }
            UngroupedItem(item) => write!(
                f,
                "the select item {item} (neither an aggregate nor a GROUP BY expression)"
            ),
            Having(condition) => write!(f, "the HAVING condition {condition}"),
        }
    }
}
