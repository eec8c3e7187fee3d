//! Aggregate calls: which calls are aggregates, and the per-shard partials of those the merge
//! combines exactly.
//!
//! Part of the scatter planner (pure). PostgreSQL's built-in aggregates are known by name, and
//! any call with FILTER, WITHIN GROUP, or DISTINCT or ORDER BY among its arguments is one too;
//! aggregates created with CREATE AGGREGATE are not visible from the text alone. It never
//! accepts an aggregate whose partials would not combine into PostgreSQL's exact answer.

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectNamePart,
};

use super::construct::Construct;
use super::{Planned, Unsupported};
use crate::merge::plan::Function as Combine;
use crate::router::scope::ident_name;

/// PostgreSQL's built-in aggregates (and GROUPING, valid only beside them), by name.
#[rustfmt::skip]
const AGGREGATES: &[&str] = &[
    "any_value", "array_agg", "avg", "bit_and", "bit_or", "bit_xor", "bool_and", "bool_or", "corr",
    "count", "covar_pop", "covar_samp", "cume_dist", "dense_rank", "every", "grouping", "json_agg",
    "json_agg_strict", "json_arrayagg", "json_object_agg", "json_object_agg_strict",
    "json_object_agg_unique", "json_object_agg_unique_strict", "json_objectagg", "jsonb_agg",
    "jsonb_agg_strict", "jsonb_object_agg", "jsonb_object_agg_strict", "max", "min", "mode",
    "percent_rank", "percentile_cont", "percentile_disc", "range_agg", "range_intersect_agg",
    "rank", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope",
    "regr_sxx", "regr_sxy", "regr_syy", "stddev", "stddev_pop", "stddev_samp", "string_agg", "sum",
    "var_pop", "var_samp", "variance", "xmlagg",
];

/// An aggregate the merge combines, and the expressions each shard computes for it.
pub(super) struct Partials {
    /// How the partials combine.
    pub function: Combine,
    /// One partial, or for AVG `[SUM(x), COUNT(x)]`.
    pub inputs: Vec<Expr>,
}

/// Whether a call is an aggregate (or a window function, which the caller refuses first).
pub(super) fn is_aggregate(call: &Function) -> bool {
    let marked = call.filter.is_some()
        || !call.within_group.is_empty()
        || matches!(&call.args, FunctionArguments::List(list)
            if list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
                || !list.clauses.is_empty());
    marked || builtin_name(call).is_some_and(|name| AGGREGATES.contains(&name.as_str()))
}

/// Whether `expr` is an aggregate call.
pub(super) fn is_aggregate_expr(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(call) if is_aggregate(call))
}

/// The partials of an aggregate call across shards, or what about it cannot be combined.
pub(super) fn partials(call: &Function) -> Planned<Partials> {
    plain_call(call)?;
    let name = builtin_name(call).unwrap_or_default();
    let function = match name.as_str() {
        "count" => Combine::Count,
        "sum" => Combine::Sum,
        "min" => Combine::Min,
        "max" => Combine::Max,
        "avg" => Combine::Avg,
        "bool_and" | "every" => Combine::BoolAnd,
        "bool_or" => Combine::BoolOr,
        _ => return Err(Unsupported(Construct::Aggregate(call.name.to_string()))),
    };
    single_argument(call, function == Combine::Count)?;
    let whole = Expr::Function(call.clone());
    let inputs = match function {
        Combine::Avg => vec![renamed(call, "sum"), renamed(call, "count")],
        _ => vec![whole],
    };
    Ok(Partials { function, inputs })
}

/// Refuses what makes any aggregate's partials uncombinable.
fn plain_call(call: &Function) -> Planned<()> {
    let refuse = |construct| Err(Unsupported(construct));
    if call.over.is_some() {
        return refuse(Construct::WindowFunctions);
    }
    if call.filter.is_some() {
        return refuse(Construct::AggregateFilter);
    }
    if !call.within_group.is_empty() {
        return refuse(Construct::OrderedSetAggregate);
    }
    if call.null_treatment.is_some() || !matches!(call.parameters, FunctionArguments::None) {
        return refuse(Construct::AggregateCallSyntax);
    }
    let FunctionArguments::List(list) = &call.args else {
        return refuse(Construct::AggregateCallSyntax);
    };
    if list.duplicate_treatment == Some(DuplicateTreatment::Distinct) {
        return refuse(Construct::DistinctAggregate);
    }
    if !list.clauses.is_empty() {
        return refuse(Construct::AggregateClauses);
    }
    Ok(())
}

/// One positional argument (`count` also takes `*`).
fn single_argument(call: &Function, star_allowed: bool) -> Planned<()> {
    let args = match &call.args {
        FunctionArguments::List(list) => list.args.as_slice(),
        _ => &[],
    };
    match args {
        [
            FunctionArg::Unnamed(FunctionArgExpr::Expr(_) | FunctionArgExpr::QualifiedWildcard(_)),
        ] => Ok(()),
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if star_allowed => Ok(()),
        _ => Err(Unsupported(Construct::AggregateArguments(call.to_string()))),
    }
}

/// The same call to another aggregate (AVG's partials).
fn renamed(call: &Function, name: &str) -> Expr {
    let mut call = call.clone();
    if let Some(ObjectNamePart::Identifier(last)) = call.name.0.last_mut() {
        last.value = name.to_owned();
    }
    Expr::Function(call)
}

/// The name of a call to a built-in: unqualified or in `pg_catalog`.
fn builtin_name(call: &Function) -> Option<String> {
    let parts: Vec<String> = (call.name.0.iter())
        .map(|part| part.as_ident().map(ident_name))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [name] => Some(name.clone()),
        [schema, name] if schema == "pg_catalog" => Some(name.clone()),
        _ => None,
    }
}
