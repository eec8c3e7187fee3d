//! The client's select list, and which of its items an ORDER BY or GROUP BY element names.
//!
//! Part of the scatter planner (pure). It follows PostgreSQL 15's resolution rules: a
//! position names an item; a bare name in ORDER BY is an output name first, in GROUP BY an
//! input column first. It never changes the select list: the shards keep it as written.

use sqlparser::ast::{Expr, SelectItem, Value};

use super::construct::Construct;
use super::{Planned, Unsupported, walk};
use crate::router::scope::ident_name;

/// The select list, item by item.
pub(super) struct Items<'a> {
    items: Vec<Item<'a>>,
}

/// One select item.
enum Item<'a> {
    /// An expression, with the output name PostgreSQL gives it when that is sure: its alias
    /// (`aliased`), else the name of a plain column.
    Expr {
        expr: &'a Expr,
        name: Option<String>,
        aliased: bool,
    },
    /// `*` or `t.*`: a number of columns only the server knows.
    Wildcard,
}

impl<'a> Items<'a> {
    /// The items of a projection.
    pub(super) fn new(projection: &'a [SelectItem]) -> Planned<Items<'a>> {
        let item = |select_item: &'a SelectItem| match select_item {
            SelectItem::UnnamedExpr(expr) => Ok(Item::Expr {
                expr,
                name: output_name(expr),
                aliased: false,
            }),
            // sqlparser reads PostgreSQL's postfix `x ISNULL` as `x AS isnull`; the shards
            // would be sent the alias.
            SelectItem::ExprWithAlias { alias, .. }
                if alias.quote_style.is_none() && alias.value.eq_ignore_ascii_case("isnull") =>
            {
                Err(Unsupported(Construct::IsNullPostfix))
            }
            SelectItem::ExprWithAlias { expr, alias } => Ok(Item::Expr {
                expr,
                name: Some(ident_name(alias)),
                aliased: true,
            }),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Ok(Item::Wildcard),
            SelectItem::ExprWithAliases { .. } => Err(Unsupported(Construct::AliasList)),
        };
        let items = projection.iter().map(item).collect::<Planned<_>>()?;
        Ok(Items { items })
    }

    /// The number of client columns, unless a `*` hides it.
    pub(super) fn visible(&self) -> Option<usize> {
        let starred = self.items.iter().any(|i| matches!(i, Item::Wildcard));
        (!starred).then_some(self.items.len())
    }

    /// Every item's expression; `what` names the construct that needs them all.
    pub(super) fn exprs(&self, what: &str) -> Planned<Vec<&'a Expr>> {
        let expr = |item: &Item<'a>| match item {
            Item::Expr { expr, .. } => Ok(*expr),
            Item::Wildcard => Err(Unsupported(Construct::WildcardWith(what.to_string()))),
        };
        self.items.iter().map(expr).collect()
    }

    /// The expressions of the items that are not `*`.
    pub(super) fn all_exprs(&self) -> Vec<&'a Expr> {
        (0..self.items.len()).filter_map(|i| self.expr(i)).collect()
    }

    /// The first item that is the same value as `expr`.
    pub(super) fn find(&self, expr: &Expr) -> Option<usize> {
        (0..self.items.len()).find(|&i| self.expr(i).is_some_and(|e| same_value(e, expr)))
    }

    /// The item an ORDER BY key names (by position, or a bare name by output name), if any.
    pub(super) fn order_target(&self, key: &Expr) -> Planned<Option<usize>> {
        let name = match self.element(key)? {
            Element::Position(index) => return Ok(Some(index)),
            Element::Name(name) => name,
            Element::Expression => return Ok(None),
        };
        let named =
            |i: &usize| matches!(&self.items[*i], Item::Expr { name: Some(n), .. } if *n == name);
        let matches: Vec<usize> = (0..self.items.len()).filter(named).collect();
        let exprs: Vec<&Expr> = matches.iter().filter_map(|&i| self.expr(i)).collect();
        if exprs.iter().any(|e| !same_value(e, exprs[0])) {
            return Err(Unsupported(Construct::AmbiguousOrderBy(key.to_string())));
        }
        Ok(matches.first().copied())
    }

    /// The item a GROUP BY element names: by position, or a bare name that is an alias and
    /// not an input column. An alias is taken for an input column when its own expression
    /// reads a column of that name (`date_trunc('day', at) AS at`), as PostgreSQL would.
    pub(super) fn group_target(&self, element: &Expr) -> Planned<Option<usize>> {
        let name = match self.element(element)? {
            Element::Position(index) => return Ok(Some(index)),
            Element::Name(name) => name,
            Element::Expression => return Ok(None),
        };
        let is_alias = |item: &Item<'a>| match item {
            Item::Expr {
                expr,
                name: Some(n),
                aliased: true,
            } => *n == name && !walk::any(expr, &|e| column_name(e).as_ref() == Some(&name)),
            _ => false,
        };
        match self.items.iter().position(is_alias) {
            // PostgreSQL takes an input column of that name before the alias, and which
            // columns the tables have is not in the text: refuse rather than guess.
            Some(_) => Err(Unsupported(Construct::GroupByAlias(name.to_string()))),
            None => Ok(None),
        }
    }

    /// The expression of item `index` (none for a `*`).
    pub(super) fn expr(&self, index: usize) -> Option<&'a Expr> {
        match self.items.get(index)? {
            Item::Expr { expr, .. } => Some(expr),
            Item::Wildcard => None,
        }
    }

    /// What an ORDER BY or GROUP BY element is: `2` must name an expression item.
    fn element(&self, element: &Expr) -> Planned<Element> {
        let text = match element {
            Expr::Identifier(ident) => return Ok(Element::Name(ident_name(ident))),
            Expr::Value(value) => match &value.value {
                Value::Number(text, _) => text,
                _ => return Ok(Element::Expression),
            },
            _ => return Ok(Element::Expression),
        };
        let index = text.parse::<usize>().ok().and_then(|p| p.checked_sub(1));
        let before_any_star =
            |i: usize| (self.items[..=i].iter()).all(|item| matches!(item, Item::Expr { .. }));
        match index {
            Some(i) if i < self.items.len() && before_any_star(i) => Ok(Element::Position(i)),
            _ => Err(Unsupported(Construct::Position(text.to_string()))),
        }
    }
}

/// An ORDER BY or GROUP BY element, before the clause's rules say what it names.
enum Element {
    /// `2`: the second select item (0-based here).
    Position(usize),
    /// A bare name, folded.
    Name(String),
    /// Anything else: an expression of input columns.
    Expression,
}

/// Whether two expressions of one valid statement are the same value: equal as written up
/// to parentheses, or the same column with or without its table (an unqualified column that
/// PostgreSQL accepts is the only one of that name in scope).
pub(super) fn same_value(a: &Expr, b: &Expr) -> bool {
    let (a, b) = (unparenthesized(a), unparenthesized(b));
    match (column_ref(a), column_ref(b)) {
        (Some((ta, ca)), Some((tb, cb))) => ca == cb && (ta.is_none() || tb.is_none() || ta == tb),
        _ => a == b,
    }
}

/// `expr` without enclosing parentheses.
pub(super) fn unparenthesized(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// A column reference as (table, column), folded as PostgreSQL folds names.
fn column_ref(expr: &Expr) -> Option<(Option<String>, String)> {
    match expr {
        Expr::Identifier(column) => Some((None, ident_name(column))),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let table = ident_name(&parts[parts.len() - 2]);
            Some((Some(table), ident_name(&parts[parts.len() - 1])))
        }
        _ => None,
    }
}

/// The column a column reference reads.
fn column_name(expr: &Expr) -> Option<String> {
    column_ref(expr).map(|(_, column)| column)
}

/// The name PostgreSQL gives an unaliased select item (FigureColname): a column's name, also
/// through casts, COLLATE and parentheses (`qty::text` is "qty"), a function's name; other
/// expressions have none the planner relies on.
fn output_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Cast { expr, .. } | Expr::Collate { expr, .. } | Expr::Nested(expr) => {
            output_name(expr)
        }
        Expr::Function(call) => call.name.0.last()?.as_ident().map(ident_name),
        other => column_name(other),
    }
}
