use super::*;
use crate::wire::pgoutput::Column;

/// `items (id bigint, note text, "Odd" timestamptz)`; the identity is `id`, or `"Odd"`.
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
        generated_always: vec![false; 3],
        key: 0,
        key_in_identity,
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn params(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

#[test]
fn an_insert_sends_every_value_cast_to_its_columns_type() {
    let row = vec![text("7"), text("it's"), Value::Null];
    let sql = items(true).insert_whole(&row).unwrap();
    assert_eq!(
        sql.text,
        "INSERT INTO \"items\" (\"id\", \"note\", \"Odd\") \
         VALUES ($1::bigint, $2::text, $3::timestamp with time zone)"
    );
    assert_eq!(sql.params, params(&[Some("7"), Some("it's"), None]));
    let unsent = vec![text("7"), Value::Unchanged, Value::Null];
    let refused = items(true).insert_whole(&unsent).unwrap_err();
    assert!(refused.contains("TOASTed"), "{refused}");
}

#[test]
fn an_update_sets_what_was_sent_on_the_row_the_move_wrote() {
    let known = items(true);
    let row = vec![text("7"), Value::Unchanged, text("2026-12-07 10:00:00+00")];
    let by_identity = Row::Identity {
        identity: &row,
        xid: "812",
    };
    let sql = known.update(&row, &by_identity).unwrap();
    assert_eq!(
        sql.text,
        "UPDATE \"items\" SET \"id\" = $1::bigint, \"Odd\" = $2::timestamp with time zone \
         WHERE ctid = (SELECT ctid FROM \"items\" WHERE xmin = $3::xid AND \"id\" = $4::bigint LIMIT 1)"
    );
    assert_eq!(
        sql.params,
        params(&[
            Some("7"),
            Some("2026-12-07 10:00:00+00"),
            Some("812"),
            Some("7")
        ])
    );
    let sql = known.delete(&Row::At("(0,1)")).unwrap();
    assert_eq!(sql.text, "DELETE FROM \"items\" WHERE ctid = $1::tid");
    assert_eq!(sql.params, params(&[Some("(0,1)")]));
}

#[test]
fn an_identity_matches_nulls_and_refuses_unsent_values() {
    let known = items(false);
    let identity = vec![Value::Null, Value::Null, Value::Null];
    let sql = known.candidates(&identity, "9").unwrap();
    assert_eq!(
        sql.text,
        "SELECT ctid::text, \"id\"::text FROM \"items\" WHERE xmin = $1::xid AND \"Odd\" IS NULL"
    );
    let unsent = vec![Value::Null, Value::Null, Value::Unchanged];
    assert!(known.candidates(&unsent, "9").is_err());
}

#[test]
fn an_identity_generated_always_is_inserted_overriding_and_never_updated() {
    let mut known = items(true);
    known.generated_always = vec![true, false, false];
    let row = vec![text("7"), text("n"), Value::Null];
    let insert = known.insert_whole(&row).unwrap();
    assert!(
        insert.text.contains(") OVERRIDING SYSTEM VALUE VALUES ("),
        "{}",
        insert.text
    );
    let update = known.update(&row, &Row::At("(0,1)")).unwrap();
    assert!(
        update
            .text
            .starts_with("UPDATE \"items\" SET \"note\" = $1::text, \"Odd\""),
        "{}",
        update.text
    );
}
