use super::*;
use crate::merge::tests::{description, row};

fn layout(columns: &[(u32, i16)], hidden: usize) -> Layout {
    Layout::parse(&description(columns), hidden).unwrap()
}

#[test]
fn the_client_description_keeps_only_the_visible_columns() {
    let layout = layout(&[(25, 0), (23, 1), (20, 1)], 2);
    assert_eq!(layout.visible, 1);
    assert_eq!(
        layout.columns[2],
        Column {
            name: "c2".into(),
            oid: 20,
            binary: true
        }
    );
    let mut expected = vec![b'T'];
    let visible = description(&[(25, 0)]);
    expected.extend_from_slice(&((visible.len() + 4) as i32).to_be_bytes());
    expected.extend_from_slice(&visible);
    assert_eq!(layout.description, expected);
}

#[test]
fn a_plan_hiding_more_columns_than_there_are_is_a_contract_error() {
    let error = Layout::parse(&description(&[(25, 0)]), 2).unwrap_err();
    assert!(matches!(error, MergeError::Contract(_)), "{error}");
}

#[test]
fn a_row_is_split_at_its_first_hidden_field() {
    let layout = layout(&[(25, 0), (25, 0), (20, 1), (20, 1)], 2);
    let frame = row(&[Some(b"ab"), None, Some(b"12345678"), Some(b"x")]);
    let row = Row::parse(&frame, &layout).unwrap();
    assert_eq!(row.visible(0).unwrap(), Some(&b"ab"[..]));
    assert_eq!(row.visible(1).unwrap(), None);
    assert_eq!(row.hidden(0).unwrap(), Some(&b"12345678"[..]));
    assert_eq!(row.hidden(1).unwrap(), Some(&b"x"[..]));
    assert!(row.hidden(2).is_err());
    let mut out = BytesMut::new();
    row.write_visible(layout.visible, &mut out);
    assert_eq!(
        &out[..],
        &super::super::tests::row(&[Some(b"ab"), None])[..]
    );
}

#[test]
fn frames_that_do_not_match_the_description_are_malformed() {
    let layout = layout(&[(25, 0), (20, 1)], 1);
    let good = row(&[Some(b"a"), Some(b"b")]);
    let mut wrong_tag = good.clone();
    wrong_tag[0] = b'T';
    let mut long_length = good.clone();
    long_length[4] += 1;
    let mut trailing = good.clone();
    trailing.push(0);
    let mut field_too_long = good.clone();
    field_too_long[10] = 9;
    let cases = [
        wrong_tag,
        long_length,
        trailing,
        field_too_long,
        row(&[Some(b"a")]),
        good[..6].to_vec(),
    ];
    for frame in cases {
        let error = Row::parse(&frame, &layout).unwrap_err();
        assert!(
            matches!(error, MergeError::Malformed(_)),
            "{frame:?}: {error}"
        );
    }
    assert!(check_header(&row(&[Some(b"a")]), 2).is_err());
    assert!(check_header(&good, 2).is_ok());
}

#[test]
fn a_row_that_fails_half_written_leaves_the_buffer_as_it_was() {
    let mut out = BytesMut::from(&b"kept"[..]);
    let result: Result<(), &str> = write_row(&mut out, 2, |row| {
        row.field(Some(b"x"));
        Err("no")
    });
    assert!(result.is_err());
    assert_eq!(&out[..], b"kept");
    write_row::<()>(&mut out, 2, |row| {
        row.field(None);
        row.field_with(|out| {
            out.extend_from_slice(b"yz");
            Ok(())
        })
    })
    .unwrap();
    assert_eq!(
        &out[4..],
        &super::super::tests::row(&[None, Some(b"yz")])[..]
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        hidden in 0usize..3,
    ) {
        let _ = Layout::parse(&bytes, hidden);
        let layout = layout(&[(25, 0), (20, 1), (20, 1)], 2);
        let _ = check_header(&bytes, 3);
        if let Ok(row) = Row::parse(&bytes, &layout) {
            for i in 0..3 {
                let _ = (row.visible(i), row.hidden(i));
            }
        }
        let _ = Row::checked(&bytes, hidden * 7).hidden(hidden);
    }
}
