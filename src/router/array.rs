//! Array operands of `key = ANY(…)`: a `'{1,2,3}'` literal, or a parameter in text or binary
//! array format, read into the keys it holds.
//!
//! Part of the router (pure). Only one-dimensional arrays of plain elements are understood;
//! anything else is an error rather than a guess, since a wrong guess would route rows away
//! from their shard.

use super::RouteError;
use super::operand::{Operand, Params};
use crate::config::{KeyType, KeyValue};
use crate::wire::Reader;

/// The non-NULL keys in an array operand.
pub fn keys(
    operand: &Operand,
    key_type: KeyType,
    params: &Params<'_>,
) -> Result<Vec<KeyValue>, RouteError> {
    match operand {
        Operand::Null => Ok(Vec::new()),
        Operand::Literal(text) => text_array(text, key_type),
        Operand::Param(n) => {
            let param = params.get(*n).ok_or(RouteError::MissingParameter(*n))?;
            let Some(bytes) = param.value else {
                return Ok(Vec::new());
            };
            if param.binary {
                binary_array(bytes, key_type).ok_or(RouteError::BadArray(*n))?
            } else {
                let text = std::str::from_utf8(bytes).map_err(|_| RouteError::NotUtf8(*n))?;
                text_array(text, key_type)
            }
        }
    }
}

/// `{1,2,"x y",NULL}`: elements split on commas, double quotes and backslashes honoured.
fn text_array(text: &str, key_type: KeyType) -> Result<Vec<KeyValue>, RouteError> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| RouteError::BadArrayText(truncate(text)))?;
    let mut keys = Vec::new();
    for element in split_elements(inner).ok_or_else(|| RouteError::BadArrayText(truncate(text)))? {
        match element {
            Element::Null => {}
            Element::Value(value) => keys.push(KeyValue::parse_text(key_type, &value)?),
        }
    }
    Ok(keys)
}

enum Element {
    Null,
    Value(String),
}

fn split_elements(inner: &str) -> Option<Vec<Element>> {
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return Some(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let (value, quoted) = if chars.next_if_eq(&'"').is_some() {
            (quoted_element(&mut chars)?, true)
        } else {
            let mut value = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '{' || c == '"' || c == '\\' {
                    return None; // nested arrays and escapes: not a shape we read
                }
                value.push(c);
            }
            (value.trim().to_owned(), false)
        };
        let null = !quoted && value.eq_ignore_ascii_case("null");
        elements.push(if null {
            Element::Null
        } else {
            Element::Value(value)
        });
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Some(elements),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

fn quoted_element(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
}

/// Binary array format (array_send): ndim, has-null flag, element oid, per dimension
/// (length, lower bound), then each element as length + bytes (-1 for NULL).
fn binary_array(bytes: &[u8], key_type: KeyType) -> Option<Result<Vec<KeyValue>, RouteError>> {
    let mut r = Reader::new(bytes, "array");
    let ndim = r.i32().ok()?;
    let _has_null = r.i32().ok()?;
    let oid = r.i32().ok()? as u32;
    let count = match ndim {
        0 => 0,
        1 => {
            let len = usize::try_from(r.i32().ok()?).ok()?;
            let _lower_bound = r.i32().ok()?;
            len
        }
        _ => return None,
    };
    let mut keys = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Ok(len) = usize::try_from(r.i32().ok()?) else {
            continue; // NULL element
        };
        match KeyValue::from_binary(key_type, oid, r.bytes(len).ok()?) {
            Ok(key) => keys.push(key),
            Err(e) => return Some(Err(e.into())),
        }
    }
    r.is_empty().then_some(Ok(keys))
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_with_quotes_and_nulls() {
        let keys = text_array(r#"{1, 2 ,NULL,"3"}"#, KeyType::Integer).unwrap();
        assert_eq!(keys, [1, 2, 3].map(KeyValue::Integer));
        let keys = text_array(r#"{"a,b","c\"d",null,"NULL"}"#, KeyType::Text).unwrap();
        let want = ["a,b", "c\"d", "NULL"].map(|s| KeyValue::Text(s.into()));
        assert_eq!(keys, want);
        assert_eq!(text_array("{}", KeyType::Integer).unwrap(), []);
        assert!(text_array("{{1,2},{3,4}}", KeyType::Integer).is_err());
        assert!(text_array("1,2", KeyType::Integer).is_err());
        assert!(text_array(r"{a\,b}", KeyType::Text).is_err());
    }

    #[test]
    fn binary_int8_array() {
        let mut bytes = Vec::new();
        for word in [1i32, 1, 20, 3, 1] {
            bytes.extend(word.to_be_bytes());
        }
        for value in [Some(7i64), None, Some(9)] {
            match value {
                Some(v) => {
                    bytes.extend(8i32.to_be_bytes());
                    bytes.extend(v.to_be_bytes());
                }
                None => bytes.extend((-1i32).to_be_bytes()),
            }
        }
        let keys = binary_array(&bytes, KeyType::Integer).unwrap().unwrap();
        assert_eq!(keys, [7, 9].map(KeyValue::Integer));
        assert!(binary_array(&bytes[..bytes.len() - 1], KeyType::Integer).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_array_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = binary_array(&bytes, KeyType::Integer);
            let _ = text_array(&String::from_utf8_lossy(&bytes), KeyType::Text);
        }
    }
}
