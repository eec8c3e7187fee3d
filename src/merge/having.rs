//! Part of the merge stage (pure): HAVING, evaluated on merged groups.
//!
//! Owns resolving the plan's [`Predicate`] once per statement (each constant, literal or Bind
//! parameter, read as the type of the slot it is compared with; two slots only when their
//! types compare in PostgreSQL) and evaluating it with SQL's three-valued logic: a
//! comparison with NULL is unknown, and a group is kept only when the condition is true. It
//! never reads a shard row: slot values come from the grouping.

use std::cmp::Ordering;

use bytes::BufMut;

use super::numeric::Numeric;
use super::plan::{CompareOp, Operand, Predicate, Slot};
use super::value::{SqlType, Value};
use super::{MergeError, ParamValue};

/// A slot and the type of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TypedSlot {
    /// Which value.
    pub(super) slot: Slot,
    /// Its type.
    pub(super) ty: SqlType,
}

impl TypedSlot {
    /// `slot`, with the type `slot_type` gives it.
    pub(super) fn resolve(
        slot: Slot,
        slot_type: &dyn Fn(Slot) -> Result<SqlType, MergeError>,
    ) -> Result<TypedSlot, MergeError> {
        Ok(TypedSlot {
            slot,
            ty: slot_type(slot)?,
        })
    }
}

/// A resolved HAVING condition.
#[derive(Debug)]
pub(super) enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        left: Side,
        op: CompareOp,
        right: Side,
    },
    IsNull {
        slot: TypedSlot,
        negated: bool,
    },
}

/// One side of a comparison.
#[derive(Debug)]
pub(super) enum Side {
    Slot(TypedSlot),
    /// A constant in binary of its type; `None` is NULL.
    Constant(Option<(SqlType, Vec<u8>)>),
}

/// What the statement gives to read a HAVING: slot types and Bind parameters.
pub(super) struct Scope<'a, 'p> {
    /// The type of a slot's values (errors for unknown slots).
    pub(super) slot_type: &'a dyn Fn(Slot) -> Result<SqlType, MergeError>,
    /// The Bind's parameters.
    pub(super) params: &'a [ParamValue<'p>],
}

impl Condition {
    /// Resolves `predicate` within `scope`.
    pub(super) fn resolve(
        predicate: &Predicate,
        scope: &Scope<'_, '_>,
    ) -> Result<Condition, MergeError> {
        let all = |items: &[Predicate]| -> Result<Vec<Condition>, MergeError> {
            items.iter().map(|p| Condition::resolve(p, scope)).collect()
        };
        Ok(match predicate {
            Predicate::And(items) => Condition::All(all(items)?),
            Predicate::Or(items) => Condition::Any(all(items)?),
            Predicate::Not(inner) => Condition::Not(Box::new(Condition::resolve(inner, scope)?)),
            Predicate::IsNull { value, negated } => Condition::IsNull {
                slot: TypedSlot::resolve(*value, scope.slot_type)?,
                negated: *negated,
            },
            Predicate::Compare { left, op, right } => {
                let (left, right) = resolve_sides(left, right, scope)?;
                Condition::Compare {
                    left,
                    op: *op,
                    right,
                }
            }
        })
    }

    /// True, false, or unknown (`None`) for the group whose slot values `value` gives.
    pub(super) fn eval<'a>(
        &self,
        value: &dyn Fn(TypedSlot) -> Result<Option<Value<'a>>, MergeError>,
    ) -> Result<Option<bool>, MergeError> {
        match self {
            Condition::All(items) => fold(items, value, false),
            Condition::Any(items) => fold(items, value, true),
            Condition::Not(inner) => Ok(inner.eval(value)?.map(|v| !v)),
            Condition::IsNull { slot, negated } => Ok(Some(value(*slot)?.is_none() != *negated)),
            Condition::Compare { left, op, right } => {
                let (Some(a), Some(b)) = (left.value(value)?, right.value(value)?) else {
                    return Ok(None);
                };
                Ok(Some(holds(*op, a.compare(&b))))
            }
        }
    }
}

/// AND (`decisive` false) or OR (`decisive` true): one decisive item decides, else any
/// unknown item makes the whole unknown.
fn fold<'a>(
    items: &[Condition],
    value: &dyn Fn(TypedSlot) -> Result<Option<Value<'a>>, MergeError>,
    decisive: bool,
) -> Result<Option<bool>, MergeError> {
    let mut result = Some(!decisive);
    for item in items {
        match item.eval(value)? {
            Some(v) if v == decisive => return Ok(Some(decisive)),
            Some(_) => {}
            None => result = None,
        }
    }
    Ok(result)
}

fn holds(op: CompareOp, order: Ordering) -> bool {
    match op {
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::NotEq => order != Ordering::Equal,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::LtEq => order != Ordering::Greater,
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::GtEq => order != Ordering::Less,
    }
}

impl Side {
    fn value<'s, 'a: 's>(
        &'s self,
        value: &dyn Fn(TypedSlot) -> Result<Option<Value<'a>>, MergeError>,
    ) -> Result<Option<Value<'s>>, MergeError> {
        match self {
            Side::Slot(slot) => value(*slot),
            Side::Constant(None) => Ok(None),
            Side::Constant(Some((ty, bytes))) => ty.decode(bytes).map(Some),
        }
    }
}

fn resolve_sides(
    left: &Operand,
    right: &Operand,
    scope: &Scope<'_, '_>,
) -> Result<(Side, Side), MergeError> {
    let slot_type = |operand: &Operand| match operand {
        Operand::Slot(slot) => (scope.slot_type)(*slot).map(Some),
        Operand::Literal(_) | Operand::Param(_) => Ok(None),
    };
    let (left_type, right_type) = (slot_type(left)?, slot_type(right)?);
    if let (Some(a), Some(b)) = (left_type, right_type)
        && a.family() != b.family()
    {
        return Err(MergeError::Unsupported(format!(
            "HAVING comparing {} with {} across shards",
            a.name(),
            b.name()
        )));
    }
    // Constants are read as the type of the slot on the other side.
    let anchor = left_type.or(right_type).ok_or_else(|| {
        MergeError::Unsupported("HAVING comparing two constants across shards".into())
    })?;
    Ok((side(left, anchor, scope)?, side(right, anchor, scope)?))
}

/// A side of a comparison; a literal or parameter is read as comparable with `anchor`.
fn side(operand: &Operand, anchor: SqlType, scope: &Scope<'_, '_>) -> Result<Side, MergeError> {
    let constant = match operand {
        Operand::Slot(slot) => return Ok(Side::Slot(TypedSlot::resolve(*slot, scope.slot_type)?)),
        Operand::Literal(text) => Some(from_text(text, anchor)?),
        Operand::Param(number) => {
            let param = number
                .checked_sub(1)
                .and_then(|i| scope.params.get(i))
                .ok_or(MergeError::NoParameter(*number))?;
            from_param(param, *number, anchor)?
        }
    };
    Ok(Side::Constant(constant))
}

fn from_param(
    param: &ParamValue<'_>,
    number: usize,
    ty: SqlType,
) -> Result<Option<(SqlType, Vec<u8>)>, MergeError> {
    let Some(bytes) = param.value else {
        return Ok(None);
    };
    if !param.binary {
        return from_text(&String::from_utf8_lossy(bytes), ty).map(Some);
    }
    let declared = match param.oid {
        0 => ty,
        oid => SqlType::from_oid(oid)
            .filter(|declared| declared.family() == ty.family())
            .ok_or_else(|| {
                MergeError::Unsupported(format!(
                    "HAVING comparing {} with a parameter of type oid {oid}",
                    ty.name()
                ))
            })?,
    };
    declared
        .decode(bytes)
        .map_err(|_| MergeError::BadBinaryParameter(number))?;
    Ok(Some((declared, bytes.to_vec())))
}

/// A constant's text read for comparison with type `ty`: integers and numerics as numeric
/// (so `count(*) > 2.5` compares exactly), floats as their own type, text as it is.
fn from_text(text: &str, ty: SqlType) -> Result<(SqlType, Vec<u8>), MergeError> {
    let invalid = || MergeError::InvalidInput {
        type_name: ty.name(),
        text: text.to_owned(),
    };
    let mut bytes = Vec::new();
    let read = match ty {
        // float4 = 0.1 compares with 0.1 read as float4, as PostgreSQL casts it.
        SqlType::Float4 => {
            bytes.put_f32(text.trim().parse().map_err(|_| invalid())?);
            SqlType::Float4
        }
        SqlType::Float8 => {
            bytes.put_f64(text.trim().parse().map_err(|_| invalid())?);
            SqlType::Float8
        }
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Oid | SqlType::Numeric => {
            Numeric::parse(text)
                .ok_or_else(invalid)?
                .write_binary(&mut bytes)?;
            SqlType::Numeric
        }
        SqlType::Bool => {
            bytes.put_u8(u8::from(parse_bool(text).ok_or_else(invalid)?));
            SqlType::Bool
        }
        SqlType::Text | SqlType::Varchar | SqlType::Name | SqlType::Bpchar => {
            bytes.put_slice(text.as_bytes());
            ty
        }
        other => {
            return Err(MergeError::Unsupported(format!(
                "HAVING comparing {} with a constant across shards",
                other.name()
            )));
        }
    };
    Ok((read, bytes))
}

/// boolin: true/false, yes/no, on/off, 1/0, any unique prefix, any case.
fn parse_bool(text: &str) -> Option<bool> {
    let word = text.trim().to_ascii_lowercase();
    let prefix_of = |full: &str, min: usize| word.len() >= min && full.starts_with(&word);
    match () {
        _ if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || word == "1" => {
            Some(true)
        }
        _ if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || word == "0" => {
            Some(false)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
