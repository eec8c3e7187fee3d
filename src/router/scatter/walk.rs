//! Every sub-expression of an expression, and the subqueries it holds.
//!
//! Part of the scatter planner (pure). sqlparser 0.64 has no visitor without a feature we
//! cannot use, so this walks the `Expr` tree by hand. The match is exhaustive on purpose: a
//! new variant must be placed here before it compiles, so nothing the planner must see (a
//! window function, a subquery reading a sharded table) can hide in a branch it skipped.
//! It never descends into subqueries: it hands them to the caller, whose rules differ.

use sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, InTarget, JsonPathElem, ListAggOnOverflow, OrderByExpr, Query, Subscript,
    WindowFrameBound, WindowType,
};

use super::Planned;

/// A node met while walking.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    /// An expression (every one, the walked expression itself included).
    Expr(&'a Expr),
    /// A subquery; the walk does not enter it.
    Subquery(&'a Query),
}

/// Calls `visit` on `expr`, each expression inside it and each subquery inside it, parents
/// before children; the first error stops the walk.
pub(super) fn walk<'a>(
    expr: &'a Expr,
    visit: &mut dyn FnMut(Node<'a>) -> Planned<()>,
) -> Planned<()> {
    visit(Node::Expr(expr))?;
    let mut children = Children {
        exprs: Vec::new(),
        queries: Vec::new(),
    };
    children.of(expr);
    for query in children.queries {
        visit(Node::Subquery(query))?;
    }
    for child in children.exprs {
        walk(child, visit)?;
    }
    Ok(())
}

/// Whether `expr` holds an expression for which `found` is true (subqueries not entered).
pub(super) fn any(expr: &Expr, found: &dyn Fn(&Expr) -> bool) -> bool {
    let mut seen = false;
    let _ = walk(expr, &mut |node| {
        seen |= matches!(node, Node::Expr(e) if found(e));
        Ok(())
    });
    seen
}

/// The direct children of one expression.
struct Children<'a> {
    exprs: Vec<&'a Expr>,
    queries: Vec<&'a Query>,
}

impl<'a> Children<'a> {
    // One flat match over every variant, longer than functions here usually are: splitting
    // it would need a catch-all arm, and the point of the match is that it has none.
    fn of(&mut self, expr: &'a Expr) {
        match expr {
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::TypedString(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..)
            | Expr::MatchAgainst { .. } => {}
            Expr::IsFalse(e)
            | Expr::IsNotFalse(e)
            | Expr::IsTrue(e)
            | Expr::IsNotTrue(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::IsUnknown(e)
            | Expr::IsNotUnknown(e)
            | Expr::Nested(e)
            | Expr::OuterJoin(e)
            | Expr::Prior(e)
            | Expr::IsJson { expr: e, .. }
            | Expr::IsNormalized { expr: e, .. }
            | Expr::UnaryOp { expr: e, .. }
            | Expr::Cast { expr: e, .. }
            | Expr::Extract { expr: e, .. }
            | Expr::Ceil { expr: e, .. }
            | Expr::Floor { expr: e, .. }
            | Expr::Collate { expr: e, .. }
            | Expr::Prefixed { value: e, .. }
            | Expr::Named { expr: e, .. } => self.exprs.push(e),
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::BinaryOp {
                left: a, right: b, ..
            }
            | Expr::AnyOp {
                left: a, right: b, ..
            }
            | Expr::AllOp {
                left: a, right: b, ..
            }
            | Expr::RLike {
                expr: a,
                pattern: b,
                ..
            }
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::Position { expr: a, r#in: b } => self.exprs.extend([&**a, &**b]),
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.exprs.extend([&**expr, &**pattern]);
                self.exprs.extend(escape_char.as_deref());
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.exprs.extend([&**expr, &**low, &**high]);
            }
            Expr::In { expr, target, .. } => {
                self.exprs.push(expr);
                self.in_target(target);
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.exprs.push(expr);
                self.exprs.extend(substring_from.as_deref());
                self.exprs.extend(substring_for.as_deref());
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.exprs.push(expr);
                self.exprs.extend(trim_what.as_deref());
                self.exprs.extend(trim_characters.iter().flatten());
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.exprs
                    .extend([&**expr, &**overlay_what, &**overlay_from]);
                self.exprs.extend(overlay_for.as_deref());
            }
            Expr::Convert { expr, styles, .. } => {
                self.exprs.push(expr);
                self.exprs.extend(styles);
            }
            Expr::Function(function) => self.function(function),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.exprs.extend(operand.as_deref());
                for when in conditions {
                    self.exprs.extend([&when.condition, &when.result]);
                }
                self.exprs.extend(else_result.as_deref());
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.queries.push(subquery),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.exprs.extend(sets.iter().flatten());
            }
            Expr::Tuple(items) => self.exprs.extend(items),
            Expr::Struct { values, .. } => self.exprs.extend(values),
            Expr::Dictionary(fields) => self.exprs.extend(fields.iter().map(|f| &*f.value)),
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.exprs.extend([&*entry.key, &*entry.value]);
                }
            }
            Expr::Array(array) => self.exprs.extend(&array.elem),
            Expr::Interval(interval) => self.exprs.push(&interval.value),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.exprs.push(root);
                access_chain.iter().for_each(|access| self.access(access));
            }
            Expr::JsonAccess { value, path } => {
                self.exprs.push(value);
                for element in &path.path {
                    match element {
                        JsonPathElem::Dot { .. } => {}
                        JsonPathElem::Bracket { key } | JsonPathElem::ColonBracket { key } => {
                            self.exprs.push(key);
                        }
                    }
                }
            }
            Expr::Lambda(lambda) => self.exprs.push(&lambda.body),
            Expr::MemberOf(member) => self.exprs.extend([&*member.value, &*member.array]),
        }
    }

    fn in_target(&mut self, target: &'a InTarget) {
        match target {
            InTarget::List(items) => self.exprs.extend(items),
            InTarget::Subquery(query) => self.queries.push(query),
            InTarget::Unnest(array) => self.exprs.push(array),
            InTarget::Table { args, .. } => self.args(args.iter().flatten()),
        }
    }

    fn access(&mut self, access: &'a AccessExpr) {
        match access {
            AccessExpr::Dot(expr) => self.exprs.push(expr),
            AccessExpr::Subscript(Subscript::Index { index }) => self.exprs.push(index),
            AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            }) => {
                self.exprs.extend(lower_bound);
                self.exprs.extend(upper_bound);
                self.exprs.extend(stride);
            }
        }
    }

    fn function(&mut self, function: &'a Function) {
        self.arguments(&function.parameters);
        self.arguments(&function.args);
        self.order_by(&function.within_group);
        self.exprs.extend(function.filter.as_deref());
        if let Some(WindowType::WindowSpec(spec)) = &function.over {
            self.exprs.extend(&spec.partition_by);
            self.order_by(&spec.order_by);
            let frame = spec.window_frame.iter();
            let bounds = frame.flat_map(|f| std::iter::once(&f.start_bound).chain(&f.end_bound));
            for bound in bounds {
                if let WindowFrameBound::Preceding(Some(e)) | WindowFrameBound::Following(Some(e)) =
                    bound
                {
                    self.exprs.push(e);
                }
            }
        }
    }

    fn arguments(&mut self, arguments: &'a FunctionArguments) {
        match arguments {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => self.queries.push(query),
            FunctionArguments::List(list) => {
                self.args(&list.args);
                list.clauses.iter().for_each(|clause| self.clause(clause));
            }
        }
    }

    fn args(&mut self, args: impl IntoIterator<Item = &'a FunctionArg>) {
        for arg in args {
            let (name, value) = match arg {
                FunctionArg::Named { arg, .. } | FunctionArg::Unnamed(arg) => (None, arg),
                FunctionArg::ExprNamed { name, arg, .. } => (Some(name), arg),
            };
            self.exprs.extend(name);
            if let FunctionArgExpr::Expr(expr) = value {
                self.exprs.push(expr);
            }
        }
    }

    fn clause(&mut self, clause: &'a FunctionArgumentClause) {
        match clause {
            FunctionArgumentClause::Where(expr) | FunctionArgumentClause::Limit(expr) => {
                self.exprs.push(expr);
            }
            FunctionArgumentClause::Having(bound) => self.exprs.push(&bound.1),
            FunctionArgumentClause::OrderBy(order) => self.order_by(order),
            FunctionArgumentClause::OnOverflow(ListAggOnOverflow::Truncate { filler, .. }) => {
                self.exprs.extend(filler.as_deref());
            }
            FunctionArgumentClause::OnOverflow(ListAggOnOverflow::Error)
            | FunctionArgumentClause::IgnoreOrRespectNulls(_)
            | FunctionArgumentClause::Separator(_)
            | FunctionArgumentClause::JsonNullClause(_)
            | FunctionArgumentClause::JsonReturningClause(_) => {}
        }
    }

    fn order_by(&mut self, order: &'a [OrderByExpr]) {
        self.exprs.extend(order.iter().map(|o| &o.expr));
    }
}
