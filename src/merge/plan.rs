//! The contract between the router and the merge stage: how the rows several shards return
//! become the one result a single PostgreSQL would have answered.
//!
//! The router (`router::scatter`) reads a cross-shard SELECT and produces a [`ScatterPlan`]:
//! the SQL every shard runs and a [`MergePlan`]. The merge stage ([`super::Merger`]) runs the
//! plan over the shards' DataRows. Both sides name only the types here; nothing in this file
//! does work.
//!
//! The shard SQL keeps the client's select list as it is (so the shards' RowDescription gives
//! the client's column names, types and type modifiers) and appends `hidden` columns after
//! it: copies of sort keys, group keys and aggregate partials, fetched in binary so the merge
//! decodes one format per type, whatever DateStyle or format the client chose. Hidden columns
//! are counted from the end, so `SELECT *` needs no expansion. Visible columns are fetched in
//! the client's format and forwarded as bytes, except aggregates the merge computes.

/// A cross-shard read: what each shard runs and how the results combine.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPlan {
    /// The statement every shard runs (parameters `$n` unchanged, so the client's Bind values
    /// apply as they are).
    pub shard_sql: String,
    /// Number of visible (client) columns when the select list says it (`None` with a `*`):
    /// the executor needs it to ask per-column result formats in its Bind.
    pub visible: Option<usize>,
    /// How the shard results combine.
    pub merge: MergePlan,
    /// Names of the functions a pass-through select list or sort key calls that are not
    /// built-in aggregates. One created with CREATE AGGREGATE would be computed per shard (a
    /// row each) instead of once: the executor asks the catalog and refuses those.
    pub functions: Vec<String>,
}

impl ScatterPlan {
    /// `sql` run as it is on each leg, its rows passed through: a read one backend answers
    /// whole (the federation database's).
    pub fn pass_through(sql: &str) -> Self {
        Self {
            shard_sql: sql.to_owned(),
            visible: None,
            merge: MergePlan::default(),
            functions: Vec::new(),
        }
    }
}

/// How shard results combine into the client's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergePlan {
    /// Columns appended to the shard select list after the client's, each fetched in binary.
    pub hidden: usize,
    /// `None`: no aggregates, each shard row is a client row (its visible fields as bytes).
    pub aggregation: Option<Aggregation>,
    /// `SELECT DISTINCT` without aggregates: these hidden columns (one per visible column, in
    /// order) are compared to drop duplicates across shards.
    pub distinct: Option<Vec<usize>>,
    /// Order of the final rows; empty: any order (rows stream as they arrive).
    pub order: Vec<SortKey>,
    /// Rows skipped after merging (the shards were sent `LIMIT offset + limit`, no OFFSET).
    pub offset: Option<Count>,
    /// Rows returned after the offset.
    pub limit: Option<Count>,
}

/// A row count from the statement: a literal, or a Bind parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `LIMIT 10`.
    Value(u64),
    /// `LIMIT $2`: parameter number (1-based, as in the SQL).
    Param(usize),
}

/// One ORDER BY key of the final rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The value sorted on.
    pub value: Slot,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST` (PostgreSQL's default: true for DESC, false for ASC).
    pub nulls_first: bool,
    /// The key carries an explicit bytewise collation (`COLLATE "C"`), so text sorts the
    /// merge's way whatever the database's default collation.
    pub bytewise: bool,
}

/// A value of a merged row that the merge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A hidden column, by index among the hidden columns (0 = the first one appended).
    Hidden(usize),
    /// The final value of an aggregate, by index in [`Aggregation::aggregates`] (grouped
    /// queries only).
    Aggregate(usize),
}

/// A query with aggregates or GROUP BY: shard rows are partial results per group.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// Hidden columns holding the group key. Empty: the whole result is one group, answered
    /// with exactly one row even when no shard has a row (COUNT 0, SUM NULL).
    pub group_keys: Vec<usize>,
    /// Every aggregate the query computes (select list, HAVING, ORDER BY).
    pub aggregates: Vec<Aggregate>,
    /// What each visible column shows, by visible index.
    pub columns: Vec<Output>,
    /// HAVING, evaluated on merged groups.
    pub having: Option<Predicate>,
}

/// What one visible column of a grouped result shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A non-aggregate expression of the group key (the same on every row of the group): the
    /// visible bytes of the group's first shard row.
    GroupValue,
    /// An aggregate's final value. COUNT/SUM/AVG/bool_and/bool_or are encoded by the merge in
    /// the column's format for the column's type (from the shards' RowDescription); MIN/MAX
    /// show the visible bytes of the shard row whose partial won.
    Aggregate(usize),
}

/// One aggregate and the hidden columns holding each shard's partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// How partials combine.
    pub function: Function,
    /// Hidden columns read: one, except AVG (`[SUM(x), COUNT(x)]`).
    pub inputs: Vec<usize>,
}

/// Aggregates the merge can combine exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// COUNT(*) or COUNT(x): partials are int8 counts; final = their sum.
    Count,
    /// SUM(x): final = sum of the non-NULL partials in the partials' type (NULL if none).
    Sum,
    /// MIN(x): the smallest non-NULL partial.
    Min,
    /// MAX(x): the largest non-NULL partial.
    Max,
    /// AVG(x) from `[SUM(x), COUNT(x)]`: sum / count in AVG's result type (numeric for
    /// integer and numeric input, float8 for float input), NULL when the count is 0.
    Avg,
    /// bool_and(x) (also `every`).
    BoolAnd,
    /// bool_or(x).
    BoolOr,
}

/// A HAVING condition over merged groups.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// All hold.
    And(Vec<Predicate>),
    /// One holds.
    Or(Vec<Predicate>),
    /// Does not hold (SQL three-valued logic: NOT NULL is NULL).
    Not(Box<Predicate>),
    /// `left op right`.
    Compare {
        /// Left side.
        left: Operand,
        /// Operator.
        op: CompareOp,
        /// Right side.
        right: Operand,
    },
    /// `value IS NULL` (`negated`: IS NOT NULL).
    IsNull {
        /// The value tested.
        value: Slot,
        /// IS NOT NULL.
        negated: bool,
    },
}

/// A side of a HAVING comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A group key (hidden column) or an aggregate's final value.
    Slot(Slot),
    /// A constant's text, read as the type of the other side (`HAVING count(*) > 5`).
    Literal(String),
    /// A Bind parameter (1-based), read as the type of the other side.
    Param(usize),
}

/// Comparison operators of HAVING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>` / `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}
