use super::*;

/// The messages PostgreSQL 15 produced for `INSERT (2,'b'); UPDATE … SET v='c' WHERE id=1;
/// DELETE … WHERE id=2` on `t (id int PRIMARY KEY, v text)`, as the slot function returned them.
const RELATION: &[u8] =
    b"R\0\0@\0public\0t\0d\0\x02\x01id\0\0\0\0\x17\xff\xff\xff\xff\0v\0\0\0\0\x19\xff\xff\xff\xff";
const INSERT: &[u8] = b"I\0\0@\0N\0\x02t\0\0\0\x012t\0\0\0\x01b";
const UPDATE: &[u8] = b"U\0\0@\0N\0\x02t\0\0\0\x011t\0\0\0\x01c";
const DELETE: &[u8] = b"D\0\0@\0K\0\x02t\0\0\0\x012n";

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

#[test]
fn decodes_what_postgres_sends() {
    let Change::Relation(relation) = decode(RELATION).unwrap() else {
        panic!("a relation")
    };
    assert_eq!(
        (relation.id, relation.namespace.as_str()),
        (0x4000, "public")
    );
    assert_eq!(relation.name, "t");
    let identity: Vec<(&str, bool)> = (relation.columns.iter())
        .map(|c| (c.name.as_str(), c.identity))
        .collect();
    assert_eq!(identity, [("id", true), ("v", false)]);
    assert_eq!(
        decode(INSERT).unwrap(),
        Change::Insert {
            relation: 0x4000,
            new: vec![text("2"), text("b")]
        }
    );
    assert_eq!(
        decode(UPDATE).unwrap(),
        Change::Update {
            relation: 0x4000,
            old: None,
            new: vec![text("1"), text("c")]
        }
    );
    assert_eq!(
        decode(DELETE).unwrap(),
        Change::Delete {
            relation: 0x4000,
            old: vec![text("2"), Value::Null]
        }
    );
}

#[test]
fn an_update_with_its_old_key_and_an_unchanged_toast_value() {
    let message = b"U\0\0\0\x07K\0\x02t\0\0\0\x011n\x4e\0\x02t\0\0\0\x015u";
    assert_eq!(
        decode(message).unwrap(),
        Change::Update {
            relation: 7,
            old: Some(vec![text("1"), Value::Null]),
            new: vec![text("5"), Value::Unchanged],
        }
    );
}

#[test]
fn truncate_and_transaction_boundaries() {
    assert_eq!(
        decode(b"T\0\0\0\x02\0\0\0\0\x01\0\0\0\x02").unwrap(),
        Change::Truncate {
            relations: vec![1, 2]
        }
    );
    assert_eq!(decode(b"B\0\0").unwrap(), Change::Other(b'B'));
}

#[test]
fn every_cut_of_a_message_is_an_error_not_a_panic() {
    for message in [RELATION, INSERT, UPDATE, DELETE] {
        for end in 0..message.len() {
            assert!(decode(&message[..end]).is_err(), "{:?}", &message[..end]);
        }
    }
    assert!(
        decode(b"I\0\0\0\x01N\0\x01b\0\0\0\x01x").is_err(),
        "binary values are refused"
    );
    assert!(
        decode(b"I\0\0\0\x01N\0\x01t\0\0\0\x01\xff").is_err(),
        "values are UTF-8"
    );
}
