//! The map tables a statement reads from its FROM and JOIN clauses, the names they go by, and
//! whether sharded ones are joined on their shard key.
//!
//! Part of the router (pure). Only the top level of a statement is analysed; tables inside
//! subqueries and CTEs are found by the token scan in `plan` and treated as unnarrowed.

use std::collections::HashMap;

use sqlparser::ast::{
    BinaryOperator, Expr, Join, JoinConstraint, JoinOperator, ObjectName, TableFactor,
    TableWithJoins,
};

use crate::config::{Placement, ShardMap, Sharding};

/// A sharded table as it appears in one statement.
#[derive(Debug, Clone)]
pub struct ScopedTable {
    /// Its name in the map.
    pub table: String,
    /// The name the statement refers to it by (its alias, else its name).
    pub reference: String,
    /// Its placement.
    pub sharding: Sharding,
}

/// The map tables at the top level of a statement.
#[derive(Debug, Default)]
pub struct Scope {
    /// Sharded tables, in order of appearance.
    pub sharded: Vec<ScopedTable>,
    /// Names (in the map) of every map table seen, sharded or reference.
    pub seen: Vec<String>,
    /// Conditions of inner joins; they narrow the rows like WHERE does only when no outer join
    /// keeps rows they would filter (see [`Scope::narrowing_join_conditions`]).
    inner_join_conditions: Vec<Expr>,
    /// Some join is not an inner join.
    has_outer_join: bool,
    /// Key-to-key equalities found, as pairs of indexes into `sharded`.
    joined: Vec<(usize, usize)>,
}

impl Scope {
    /// Adds every table of a FROM list (with joins).
    pub fn add_from(&mut self, map: &ShardMap, from: &[TableWithJoins]) {
        for item in from {
            self.add_factor(map, &item.relation);
            for join in &item.joins {
                self.add_join(map, join);
            }
        }
    }

    /// Adds one table named in a statement (INSERT/UPDATE/DELETE target or FROM item).
    pub fn add_table(&mut self, map: &ShardMap, name: &ObjectName, alias: Option<&str>) {
        let Some(table) = map_table_name(name) else {
            return;
        };
        let Some(entry) = map.tables.get(&table) else {
            return;
        };
        self.seen.push(table.clone());
        if let Placement::Sharded(sharding) = &entry.placement {
            let reference = alias.map_or_else(|| table.clone(), str::to_lowercase);
            self.sharded.push(ScopedTable {
                table,
                reference,
                sharding: sharding.clone(),
            });
        }
    }

    fn add_factor(&mut self, map: &ShardMap, factor: &TableFactor) {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                self.add_table(map, name, alias.as_ref().map(|a| a.name.value.as_str()));
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.add_from(map, std::slice::from_ref(table_with_joins)),
            _ => {}
        }
    }

    fn add_join(&mut self, map: &ShardMap, join: &Join) {
        let before = self.sharded.len();
        self.add_factor(map, &join.relation);
        let (constraint, inner) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (c, true),
            JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c) => (c, false),
            _ => {
                self.has_outer_join = true;
                return;
            }
        };
        self.has_outer_join |= !inner;
        match constraint {
            JoinConstraint::On(expr) => {
                self.note_key_equalities(expr);
                if inner {
                    self.inner_join_conditions.push(expr.clone());
                }
            }
            JoinConstraint::Using(columns) => self.note_using(before, columns),
            _ => {}
        }
    }

    /// `JOIN b USING (k)`: the new table's key equals an earlier table's when both keys are `k`.
    fn note_using(&mut self, joined_at: usize, columns: &[ObjectName]) {
        let names: Vec<String> = columns.iter().filter_map(map_table_name).collect();
        for new in joined_at..self.sharded.len() {
            let key = &self.sharded[new].sharding.key_column;
            if !names.contains(key) {
                continue;
            }
            let earlier = (0..joined_at).find(|&i| &self.sharded[i].sharding.key_column == key);
            if let Some(earlier) = earlier {
                self.joined.push((earlier, new));
            }
        }
    }

    /// Inner-join conditions that filter the result: none when an outer join could bring back
    /// rows they exclude (`a JOIN b ON … AND a.k = 5 RIGHT JOIN c …`).
    pub fn narrowing_join_conditions(&self) -> &[Expr] {
        if self.has_outer_join {
            &[]
        } else {
            &self.inner_join_conditions
        }
    }

    /// Records `a.key = b.key` conjuncts of a WHERE or ON clause.
    pub fn note_key_equalities(&mut self, expr: &Expr) {
        let mut found = Vec::new();
        self.key_equalities(expr, &mut found);
        self.joined.extend(found);
    }

    /// The `a.key = b.key` conjuncts of `expr`, as pairs of indexes into `sharded`.
    pub(super) fn key_equalities(&self, expr: &Expr, found: &mut Vec<(usize, usize)>) {
        match expr {
            Expr::Nested(inner) => self.key_equalities(inner, found),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                self.key_equalities(left, found);
                self.key_equalities(right, found);
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                if let (Some(a), Some(b)) = (self.key_of(left), self.key_of(right))
                    && a != b
                {
                    found.push((a, b));
                }
            }
            _ => {}
        }
    }

    /// Whether `expr` is the shard key of a sharded table in scope.
    pub fn is_key(&self, expr: &Expr) -> bool {
        self.key_of(expr).is_some()
    }

    /// Which scoped table's key `expr` names. An unqualified column counts when it is the key
    /// column of a table in scope (PostgreSQL would reject it if it were ambiguous).
    pub(super) fn key_of(&self, expr: &Expr) -> Option<usize> {
        let (qualifier, column) = match expr {
            Expr::Identifier(ident) => (None, ident),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                (Some(&parts[parts.len() - 2]), &parts[parts.len() - 1])
            }
            Expr::Nested(inner) => return self.key_of(inner),
            _ => return None,
        };
        let column = ident_name(column);
        self.sharded.iter().position(|t| {
            t.sharding.key_column == column
                && qualifier.is_none_or(|q| {
                    let q = ident_name(q);
                    q == t.reference || q == t.table
                })
        })
    }

    /// Whether every sharded table is joined to the others on the key, so that a key value
    /// picks one shard for all of them.
    pub fn joined_on_key(&self) -> bool {
        let n = self.sharded.len();
        let mut component: Vec<usize> = (0..n).collect();
        for &(a, b) in &self.joined {
            let (ca, cb) = (component[a], component[b]);
            component
                .iter_mut()
                .filter(|c| **c == cb)
                .for_each(|c| *c = ca);
        }
        component.iter().all(|c| *c == component[0])
    }

    /// The co-location groups of the sharded tables in scope.
    pub fn groups(&self) -> HashMap<&str, &ScopedTable> {
        (self.sharded.iter())
            .map(|t| (t.sharding.group.as_str(), t))
            .collect()
    }
}

/// A column or table name as SQL: quoted unless PostgreSQL would fold it to itself.
pub fn identifier(name: &str) -> sqlparser::ast::Ident {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && (name.chars()).all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        sqlparser::ast::Ident::new(name)
    } else {
        sqlparser::ast::Ident::with_quote('"', name)
    }
}

/// The map name of a table reference: its last part, lower-cased unless quoted.
pub fn map_table_name(name: &ObjectName) -> Option<String> {
    let last = name.0.last()?.as_ident()?;
    Some(ident_name(last))
}

/// An identifier as PostgreSQL folds it: lower case unless quoted.
pub fn ident_name(ident: &sqlparser::ast::Ident) -> String {
    folded(&ident.value, ident.quote_style.is_some())
}

/// A name as written, folded to lower case unless it was quoted.
pub fn folded(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_owned()
    } else {
        value.to_lowercase()
    }
}
