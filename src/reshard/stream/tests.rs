use super::*;
use crate::wire::pgoutput::Column;

/// `items (id bigint, note text, "Odd" timestamptz)` whose identity is `id`.
fn items(key_in_identity: bool) -> Known {
    let column = |name: &str, identity| Column {
        name: name.to_owned(),
        identity,
    };
    Known {
        relation: Relation {
            id: 1,
            namespace: "public".into(),
            name: "items".into(),
            columns: vec![
                column("id", key_in_identity),
                column("note", false),
                column("Odd", !key_in_identity),
            ],
        },
        table: "items".into(),
        types: vec![
            "bigint".into(),
            "text".into(),
            "timestamp with time zone".into(),
        ],
        key: 0,
        key_in_identity,
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

#[test]
fn an_insert_writes_every_value_as_its_columns_type() {
    let row = vec![text("7"), text("it's"), Value::Null];
    assert_eq!(
        items(true).insert_whole(&row).unwrap(),
        "INSERT INTO \"items\" (\"id\", \"note\", \"Odd\") \
         VALUES ('7'::bigint, 'it''s'::text, NULL)"
    );
    let unsent = vec![text("7"), Value::Unchanged, Value::Null];
    let refused = items(true).insert_whole(&unsent).unwrap_err();
    assert!(refused.contains("TOASTed"), "{refused}");
}

#[test]
fn an_update_sets_what_was_sent_on_the_row_the_move_wrote() {
    let known = items(true);
    let row = vec![text("7"), Value::Unchanged, text("2026-12-07 10:00:00+00")];
    let locate = known.locate_by(&row, "812").unwrap();
    assert_eq!(
        locate,
        "ctid = (SELECT ctid FROM \"items\" WHERE xmin = '812'::xid AND \"id\" = '7'::bigint LIMIT 1)"
    );
    assert_eq!(
        known.update(&row, "ctid = '(0,1)'::tid").unwrap(),
        "UPDATE \"items\" SET \"id\" = '7'::bigint, \"Odd\" = '2026-12-07 10:00:00+00'::timestamp with time zone \
         WHERE ctid = '(0,1)'::tid"
    );
    assert_eq!(
        known.delete("ctid = x"),
        "DELETE FROM \"items\" WHERE ctid = x"
    );
}

#[test]
fn an_identity_matches_nulls_and_refuses_unsent_values() {
    let known = items(false);
    let identity = vec![Value::Null, Value::Null, Value::Null];
    assert_eq!(
        known.matching(&identity, "9").unwrap(),
        "xmin = '9'::xid AND \"Odd\" IS NULL"
    );
    let unsent = vec![Value::Null, Value::Null, Value::Unchanged];
    assert!(known.matching(&unsent, "9").is_err());
}
