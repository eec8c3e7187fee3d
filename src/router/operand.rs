//! The values a shard-key condition compares against: SQL literals and `$n` parameters, and
//! how each becomes a [`KeyValue`] once the parameters of a Bind are known.
//!
//! Part of the router (pure). Parameters are read straight from the Bind message's bytes, in
//! the format the client chose (text or binary); nothing is re-encoded.

use sqlparser::ast::{Expr, UnaryOperator, Value};

use super::RouteError;
use crate::config::{KeyType, KeyValue};
use crate::wire::{Reader, WireError};

/// Something a key is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// The text of a SQL literal (`42`, `'42'`, `-7`).
    Literal(String),
    /// Parameter `$n` (1-based).
    Param(usize),
    /// SQL NULL: matches no row, so no shard.
    Null,
}

impl Operand {
    /// The operand an expression is, looking through casts and parentheses; `None` for
    /// anything computed (`now()`, `k + 1`, a column).
    pub fn from_expr(expr: &Expr) -> Option<Operand> {
        Operand::through_casts(expr, 1)
    }

    /// Looks through at most `casts` casts, each to a type without modifiers: a cast that can
    /// change the value (`'abc'::varchar(2)`, `'042'::int::text`) hides it.
    fn through_casts(expr: &Expr, casts: u8) -> Option<Operand> {
        match expr {
            Expr::Value(value) => from_value(&value.value),
            Expr::Nested(expr) => Operand::through_casts(expr, casts),
            Expr::Cast {
                expr, data_type, ..
            } => {
                let plain = !data_type.to_string().contains('(');
                (plain && casts > 0).then(|| Operand::through_casts(expr, casts - 1))?
            }
            Expr::TypedString(typed) => from_value(&typed.value.value),
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match Operand::through_casts(expr, casts)? {
                Operand::Literal(text) if !text.starts_with('-') => {
                    Some(Operand::Literal(format!("-{text}")))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

fn from_value(value: &Value) -> Option<Operand> {
    match value {
        Value::Number(text, _) => Some(Operand::Literal(text.clone())),
        Value::SingleQuotedString(text) => Some(Operand::Literal(text.clone())),
        Value::Null => Some(Operand::Null),
        Value::Placeholder(name) => {
            let index = name.strip_prefix('$')?.parse().ok()?;
            (index > 0).then_some(Operand::Param(index))
        }
        _ => None,
    }
}

/// Result formats and values of a Bind's parameters, borrowed from the message.
#[derive(Debug, Default)]
pub struct Params<'a> {
    formats: Vec<i16>,
    values: Vec<Option<&'a [u8]>>,
    types: &'a [u32],
}

/// One parameter as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct Param<'a> {
    /// Type oid from the Parse (0 when the client left it to the server).
    pub oid: u32,
    /// Whether the value is in binary format.
    pub binary: bool,
    /// The value; `None` is SQL NULL.
    pub value: Option<&'a [u8]>,
}

impl<'a> Params<'a> {
    /// No parameters (simple protocol).
    pub fn none() -> Params<'static> {
        Params::default()
    }

    /// Reads the parameter part of a Bind body (`rest` starts at the format codes, see
    /// `wire::Bind::rest_offset`); `types` are the statement's declared parameter types.
    pub fn from_bind(rest: &'a [u8], types: &'a [u32]) -> Result<Params<'a>, WireError> {
        let mut r = Reader::new(rest, "Bind");
        let format_count = r.i16()? as u16;
        let formats = (0..format_count)
            .map(|_| r.i16())
            .collect::<Result<_, _>>()?;
        let value_count = r.i16()? as u16;
        let mut values = Vec::with_capacity(usize::from(value_count));
        for _ in 0..value_count {
            let len = r.i32()?;
            values.push(match usize::try_from(len) {
                Ok(len) => Some(r.bytes(len)?),
                Err(_) => None, // -1: NULL
            });
        }
        Ok(Params {
            formats,
            values,
            types,
        })
    }

    /// Text parameters (SQL-level `EXECUTE name(…)` arguments).
    pub fn from_text(values: &'a [Option<String>]) -> Params<'a> {
        Params {
            formats: Vec::new(),
            values: values
                .iter()
                .map(|v| v.as_deref().map(str::as_bytes))
                .collect(),
            types: &[],
        }
    }

    /// Parameter `$n` (1-based), if the Bind has it.
    pub fn get(&self, n: usize) -> Option<Param<'a>> {
        let index = n.checked_sub(1)?;
        let value = *self.values.get(index)?;
        // Protocol: zero format codes = all text, one = applies to all, else one per parameter.
        let format = match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => *self.formats.get(index)?,
        };
        Some(Param {
            oid: self.types.get(index).copied().unwrap_or(0),
            binary: format == 1,
            value,
        })
    }
}

/// The arguments of a SQL-level `EXECUTE name(…)` (the text after the name) as text
/// parameters: literals keep their text, NULL is `None`. Empty when any argument is computed
/// (`now()`), so a key that depends on one is reported missing rather than guessed.
pub fn execute_arguments(args: &str) -> Vec<Option<String>> {
    let args = args.trim().trim_end_matches(';').trim();
    let Some(inner) = args.strip_prefix('(').and_then(|a| a.strip_suffix(')')) else {
        return Vec::new();
    };
    if crate::sql::bounds::depth(inner) > crate::sql::SHALLOW {
        return Vec::new(); // no literal is that deep
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let parsed = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(inner)
        .and_then(|mut p| p.parse_comma_separated(|p| p.parse_expr()));
    let literal = |expr: &Expr| match Operand::from_expr(expr) {
        Some(Operand::Literal(text)) => Some(Some(text)),
        Some(Operand::Null) => Some(None),
        _ => None,
    };
    let arguments = parsed
        .ok()
        .map(|exprs| exprs.iter().map(literal).collect::<Option<_>>());
    arguments.flatten().unwrap_or_default()
}

/// The key an operand stands for; `Ok(None)` for NULL (no row can match it).
pub fn key_value(
    operand: &Operand,
    key_type: KeyType,
    params: &Params<'_>,
) -> Result<Option<KeyValue>, RouteError> {
    match operand {
        Operand::Null => Ok(None),
        Operand::Literal(text) => Ok(Some(KeyValue::parse_text(key_type, text)?)),
        Operand::Param(n) => {
            let param = params.get(*n).ok_or(RouteError::MissingParameter(*n))?;
            let Some(bytes) = param.value else {
                return Ok(None);
            };
            let key = if param.binary {
                KeyValue::from_binary(key_type, param.oid, bytes)?
            } else {
                let text = std::str::from_utf8(bytes).map_err(|_| RouteError::NotUtf8(*n))?;
                KeyValue::parse_text(key_type, text)?
            };
            Ok(Some(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_rest(formats: &[i16], values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((formats.len() as u16).to_be_bytes());
        formats.iter().for_each(|f| out.extend(f.to_be_bytes()));
        out.extend((values.len() as u16).to_be_bytes());
        for value in values {
            match value {
                Some(v) => {
                    out.extend((v.len() as i32).to_be_bytes());
                    out.extend(*v);
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
        out
    }

    #[test]
    fn literal_text_and_binary_parameters_give_the_same_key() {
        let rest = bind_rest(
            &[0, 1, 1],
            &[
                Some(b"42"),
                Some(&42i32.to_be_bytes()),
                Some(&42i64.to_be_bytes()),
            ],
        );
        let types = [0, 23, 20];
        let params = Params::from_bind(&rest, &types).unwrap();
        let want = Some(KeyValue::Integer(42));
        for operand in [
            Operand::Literal("42".into()),
            Operand::Param(1),
            Operand::Param(2),
            Operand::Param(3),
        ] {
            assert_eq!(
                key_value(&operand, KeyType::Integer, &params).unwrap(),
                want,
                "{operand:?}"
            );
        }
    }

    #[test]
    fn null_parameters_and_missing_ones_are_told_apart() {
        let rest = bind_rest(&[], &[None]);
        let params = Params::from_bind(&rest, &[]).unwrap();
        assert_eq!(
            key_value(&Operand::Param(1), KeyType::Text, &params).unwrap(),
            None
        );
        assert!(matches!(
            key_value(&Operand::Param(2), KeyType::Text, &params),
            Err(RouteError::MissingParameter(2))
        ));
    }

    #[test]
    fn casts_negation_and_placeholders_are_operands() {
        let parse = |sql: &str| {
            let dialect = sqlparser::dialect::PostgreSqlDialect {};
            sqlparser::parser::Parser::new(&dialect)
                .try_with_sql(sql)
                .unwrap()
                .parse_expr()
                .unwrap()
        };
        assert_eq!(
            Operand::from_expr(&parse("$3::int8")),
            Some(Operand::Param(3))
        );
        assert_eq!(
            Operand::from_expr(&parse("(-7)")),
            Some(Operand::Literal("-7".into()))
        );
        assert_eq!(
            Operand::from_expr(&parse("'x'::text")),
            Some(Operand::Literal("x".into()))
        );
        assert_eq!(
            Operand::from_expr(&parse("DATE '2026-01-01'")),
            Some(Operand::Literal("2026-01-01".into()))
        );
        assert_eq!(Operand::from_expr(&parse("now()")), None);
        assert_eq!(Operand::from_expr(&parse("'abc'::varchar(2)")), None);
        assert_eq!(Operand::from_expr(&parse("'042'::int::text")), None);
        assert_eq!(
            Operand::from_expr(&parse("('5')::int")),
            Some(Operand::Literal("5".into()))
        );
    }
}
