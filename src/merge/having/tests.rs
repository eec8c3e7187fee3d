use super::*;

/// Slot 0: a count (int8) of 5; slot 1: a NULL sum (numeric); slot 2: a text "b".
fn slot_type(slot: Slot) -> Result<SqlType, MergeError> {
    match slot {
        Slot::Aggregate(0) => Ok(SqlType::Int8),
        Slot::Aggregate(1) => Ok(SqlType::Numeric),
        Slot::Hidden(2) => Ok(SqlType::Bpchar),
        Slot::Hidden(3) => Ok(SqlType::Date),
        Slot::Hidden(4) => Ok(SqlType::Float4),
        _ => Err(MergeError::Contract("no such slot".into())),
    }
}

fn value(slot: TypedSlot) -> Result<Option<Value<'static>>, MergeError> {
    Ok(match slot.slot {
        Slot::Aggregate(0) => Some(Value::Int(5)),
        Slot::Hidden(2) => Some(Value::Bytes(b"b")),
        Slot::Hidden(4) => Some(Value::Float(0.1f32.into())),
        _ => None,
    })
}

const COUNT: Operand = Operand::Slot(Slot::Aggregate(0));
const SUM: Operand = Operand::Slot(Slot::Aggregate(1));
const NAME: Operand = Operand::Slot(Slot::Hidden(2));

fn compare(left: Operand, op: CompareOp, right: Operand) -> Predicate {
    Predicate::Compare { left, op, right }
}

fn literal(text: &str) -> Operand {
    Operand::Literal(text.into())
}

fn eval_with(predicate: &Predicate, params: &[ParamValue<'_>]) -> Result<Option<bool>, MergeError> {
    let scope = Scope {
        slot_type: &slot_type,
        params,
    };
    Condition::resolve(predicate, &scope)?.eval(&value)
}

fn eval(predicate: &Predicate) -> Option<bool> {
    eval_with(predicate, &[]).unwrap()
}

#[test]
fn comparisons_read_constants_as_the_other_sides_type() {
    assert_eq!(
        eval(&compare(COUNT, CompareOp::Gt, literal("4"))),
        Some(true)
    );
    assert_eq!(
        eval(&compare(COUNT, CompareOp::Lt, literal("4.5"))),
        Some(false)
    );
    assert_eq!(
        eval(&compare(literal("5.0"), CompareOp::Eq, COUNT)),
        Some(true)
    );
    assert_eq!(
        eval(&compare(COUNT, CompareOp::GtEq, literal("5e0"))),
        Some(true)
    );
    assert_eq!(
        eval(&compare(COUNT, CompareOp::NotEq, literal("5"))),
        Some(false)
    );
    assert_eq!(
        eval(&compare(NAME, CompareOp::Eq, literal("b  "))),
        Some(true)
    );
    assert_eq!(
        eval(&compare(NAME, CompareOp::LtEq, literal("a"))),
        Some(false)
    );
}

#[test]
fn null_makes_comparisons_unknown_and_logic_three_valued() {
    let unknown = compare(SUM, CompareOp::Gt, literal("1"));
    let yes = compare(COUNT, CompareOp::Eq, literal("5"));
    let no = compare(COUNT, CompareOp::Eq, literal("6"));
    assert_eq!(eval(&unknown), None);
    assert_eq!(eval(&Predicate::Not(Box::new(unknown.clone()))), None);
    assert_eq!(
        eval(&Predicate::And(vec![yes.clone(), unknown.clone()])),
        None
    );
    assert_eq!(
        eval(&Predicate::And(vec![unknown.clone(), no.clone()])),
        Some(false)
    );
    assert_eq!(
        eval(&Predicate::Or(vec![unknown.clone(), yes.clone()])),
        Some(true)
    );
    assert_eq!(eval(&Predicate::Or(vec![no.clone(), unknown])), None);
    assert_eq!(eval(&Predicate::Or(vec![no.clone(), no])), Some(false));
    let is_null = |negated| Predicate::IsNull {
        value: Slot::Aggregate(1),
        negated,
    };
    assert_eq!(
        (eval(&is_null(false)), eval(&is_null(true))),
        (Some(true), Some(false))
    );
}

#[test]
fn parameters_in_text_and_binary_and_null() {
    let four = 4i32.to_be_bytes();
    let four_eight = 4i64.to_be_bytes();
    let params = [
        ParamValue {
            oid: 0,
            binary: false,
            value: Some(b"4"),
        },
        ParamValue {
            oid: 23,
            binary: true,
            value: Some(&four),
        },
        ParamValue {
            oid: 0,
            binary: true,
            value: Some(&four_eight),
        },
        ParamValue {
            oid: 20,
            binary: true,
            value: None,
        },
    ];
    for n in 1..=3 {
        let predicate = compare(COUNT, CompareOp::Gt, Operand::Param(n));
        assert_eq!(
            eval_with(&predicate, &params).unwrap(),
            Some(true),
            "parameter {n}"
        );
    }
    let null = compare(COUNT, CompareOp::Gt, Operand::Param(4));
    assert_eq!(eval_with(&null, &params).unwrap(), None);
}

#[test]
fn what_cannot_be_read_is_refused_with_postgres_sqlstates() {
    let code = |predicate: &Predicate, params: &[ParamValue<'_>]| {
        eval_with(predicate, params)
            .unwrap_err()
            .report()
            .code
            .to_string()
    };
    assert_eq!(
        code(&compare(COUNT, CompareOp::Gt, literal("many")), &[]),
        "22P02"
    );
    assert_eq!(
        code(&compare(COUNT, CompareOp::Gt, Operand::Param(1)), &[]),
        "42P02"
    );
    let odd = [ParamValue {
        oid: 20,
        binary: true,
        value: Some(&[1, 2, 3]),
    }];
    assert_eq!(
        code(&compare(COUNT, CompareOp::Gt, Operand::Param(1)), &odd),
        "22P03"
    );
    let text_param = [ParamValue {
        oid: 25,
        binary: true,
        value: Some(b"x"),
    }];
    assert_eq!(
        code(
            &compare(COUNT, CompareOp::Gt, Operand::Param(1)),
            &text_param
        ),
        "0A000"
    );
    assert_eq!(code(&compare(COUNT, CompareOp::Eq, NAME), &[]), "0A000");
    assert_eq!(
        code(&compare(literal("1"), CompareOp::Eq, literal("1")), &[]),
        "0A000"
    );
    let date = Operand::Slot(Slot::Hidden(3));
    assert_eq!(
        code(&compare(date, CompareOp::Gt, literal("2024-01-01")), &[]),
        "0A000"
    );
    assert_eq!(
        code(
            &compare(Operand::Slot(Slot::Hidden(9)), CompareOp::Gt, literal("1")),
            &[]
        ),
        "XX000"
    );
}

#[test]
fn booleans_read_as_boolin_does() {
    for (text, expected) in [
        ("t", Some(true)),
        ("YES", Some(true)),
        ("on", Some(true)),
        ("1", Some(true)),
    ] {
        assert_eq!(parse_bool(text), expected, "{text}");
    }
    for (text, expected) in [
        ("fal", Some(false)),
        ("n", Some(false)),
        ("of", Some(false)),
        (" 0 ", Some(false)),
    ] {
        assert_eq!(parse_bool(text), expected, "{text}");
    }
    for text in ["o", "", "2", "truee", "yess"] {
        assert_eq!(parse_bool(text), None, "{text}");
    }
}
