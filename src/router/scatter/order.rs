//! ORDER BY keys as the merge sorts them: direction, NULLS placement and collation.
//!
//! Part of the scatter planner (pure). Which value a key sorts on is the mode's business
//! (`passthrough`, `grouped`); this owns what every key must satisfy. The merge compares
//! text bytewise, so a collation in a sort key must be one that sorts bytewise too; it never
//! accepts another.

use sqlparser::ast::{Expr, OrderByExpr, OrderByKind, OrderBySort, Query};

use super::construct::Construct;
use super::items::unparenthesized;
use super::{Planned, Unsupported, walk};
use crate::merge::plan::{Slot, SortKey};
use crate::router::scope::ident_name;

/// Collations that order text by its bytes (in UTF-8, code-point order).
const BYTEWISE_COLLATIONS: [&str; 3] = ["C", "POSIX", "ucs_basic"];

/// The ORDER BY keys of a query (none without ORDER BY).
pub(super) fn keys(query: &Query) -> Planned<&[OrderByExpr]> {
    let Some(order_by) = &query.order_by else {
        return Ok(&[]);
    };
    match &order_by.kind {
        OrderByKind::Expressions(keys) if order_by.interpolate.is_none() => Ok(keys),
        _ => Err(Unsupported(Construct::OrderBySyntax)),
    }
}

/// The merge's sort key for `key` reading `value`; PostgreSQL puts NULLs first exactly when
/// the order is descending, unless told otherwise.
pub(super) fn sort_key(value: Slot, key: &OrderByExpr) -> Planned<SortKey> {
    if key.with_fill.is_some() {
        return Err(Unsupported(Construct::OrderByWithFill));
    }
    let descending = match &key.options.sort {
        None | Some(OrderBySort::Asc) => false,
        Some(OrderBySort::Desc) => true,
        Some(OrderBySort::Using(_)) => return Err(Unsupported(Construct::OrderByUsing)),
    };
    Ok(SortKey {
        value,
        descending,
        nulls_first: key.options.nulls_first.unwrap_or(descending),
        // Any COLLATE in a key is a bytewise one (see `check_collations`).
        bytewise: matches!(unparenthesized(&key.expr), Expr::Collate { .. }),
    })
}

/// Refuses a sort key with a collation that does not sort bytewise, at any depth (the
/// outermost COLLATE decides the order, but an inner one can become the result's).
pub(super) fn check_collations(key: &Expr) -> Planned<()> {
    let other_collation = |expr: &Expr| match expr {
        Expr::Collate { collation, .. } => !bytewise(collation),
        _ => false,
    };
    if walk::any(key, &other_collation) {
        return Err(Unsupported(Construct::CollatedSort(key.to_string())));
    }
    Ok(())
}

/// A sort key without its outer parentheses and (bytewise) COLLATE: the value it sorts.
pub(super) fn sorted_value(key: &Expr) -> &Expr {
    match unparenthesized(key) {
        Expr::Collate { expr, .. } => sorted_value(expr),
        other => other,
    }
}

/// Whether a collation name is bytewise: `"C"`, `"POSIX"` or `ucs_basic`, optionally in
/// `pg_catalog`.
fn bytewise(collation: &sqlparser::ast::ObjectName) -> bool {
    let parts: Vec<String> = (collation.0.iter())
        .filter_map(|part| part.as_ident().map(ident_name))
        .collect();
    match parts.as_slice() {
        [name] => BYTEWISE_COLLATIONS.contains(&name.as_str()),
        [schema, name] => schema == "pg_catalog" && BYTEWISE_COLLATIONS.contains(&name.as_str()),
        _ => false,
    }
}
