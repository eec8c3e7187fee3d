use super::*;

/// Every piece of `data` fed in chunks of `chunk` bytes: (what, its bytes, line).
fn split(format: CopyFormat, key: usize, data: &[u8], chunk: usize) -> Vec<(String, Vec<u8>, u64)> {
    let mut splitter = RowSplitter::new(format, key);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = data.chunks(chunk.max(1)).collect();
    for (i, piece) in chunks.iter().enumerate() {
        splitter.feed(piece);
        let last = i + 1 == chunks.len();
        while let Some(found) = splitter.next(last).unwrap() {
            let what = match &found.piece {
                Piece::Header => "header".to_owned(),
                Piece::End => "end".to_owned(),
                Piece::Row(Key::Null) => "null".to_owned(),
                Piece::Row(Key::Missing) => "missing".to_owned(),
                Piece::Row(Key::Text(text)) => String::from_utf8_lossy(text).into_owned(),
                Piece::Row(Key::Binary(bytes)) => format!("{bytes:?}"),
            };
            let (len, line) = (found.len, found.line);
            out.push((what, splitter.bytes(len).to_vec(), line));
            splitter.consume(len);
        }
    }
    out
}

fn keys(pieces: &[(String, Vec<u8>, u64)]) -> Vec<&str> {
    pieces.iter().map(|(what, _, _)| what.as_str()).collect()
}

#[test]
fn text_rows_end_at_unescaped_line_endings_and_keep_their_bytes() {
    let data = b"1\ta\n2\tline\\\nbreak\r\n\\N\tx\r3\\t4\ty\n5";
    let pieces = split(CopyFormat::text(), 0, data, 64);
    assert_eq!(keys(&pieces), ["1", "2", "null", "3\t4", "5"]);
    let joined: Vec<u8> = pieces
        .iter()
        .flat_map(|(_, bytes, _)| bytes.clone())
        .collect();
    assert_eq!(
        joined, data,
        "rows cover the data exactly, endings included"
    );
    assert_eq!(
        pieces.iter().map(|p| p.2).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn text_keys_undo_escapes_and_find_later_fields() {
    let format = CopyFormat::Text {
        delimiter: b'|',
        null: b"NULL".to_vec(),
    };
    let data = b"a\\|b|k\\101\\x42\\\\|z\nx|NULL\nonly\n";
    let pieces = split(format, 1, data, 3);
    assert_eq!(keys(&pieces), ["kAB\\", "null", "missing"]);
}

#[test]
fn the_end_marker_ends_the_data() {
    let pieces = split(CopyFormat::text(), 0, b"1\n\\.\n2\n", 1);
    assert_eq!(keys(&pieces), ["1", "end"]);
}

#[test]
fn csv_quotes_hold_delimiters_newlines_and_doubled_quotes() {
    let csv = CsvOptions {
        header: true,
        ..CsvOptions::new()
    };
    let data =
        b"id,note\n\"1\",\"a,\nb\"\n\"2\"\"x\",c\n,empty is null\n\"\",quoted empty is not\n";
    let pieces = split(CopyFormat::Csv(csv), 0, data, 2);
    assert_eq!(keys(&pieces), ["header", "1", "2\"x", "null", ""]);
    assert_eq!(
        pieces.iter().map(|p| p.2).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

#[test]
fn csv_options_change_what_is_null_and_how_quotes_escape() {
    let csv = CsvOptions {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
        null: b"NA".to_vec(),
        ..CsvOptions::new()
    };
    let data = b"'it\\'s';1\nNA;2\n'NA';3\nx;'a\\\\'\n";
    let pieces = split(CopyFormat::Csv(csv.clone()), 0, data, 5);
    assert_eq!(keys(&pieces), ["it's", "null", "NA", "x"]);
    let forced = CsvOptions {
        key_force_not_null: true,
        ..csv.clone()
    };
    assert_eq!(
        keys(&split(CopyFormat::Csv(forced), 0, b"NA;1\n", 1)),
        ["NA"]
    );
    let forced = CsvOptions {
        key_force_null: true,
        ..csv
    };
    assert_eq!(
        keys(&split(CopyFormat::Csv(forced), 0, b"'NA';1\n", 1)),
        ["null"]
    );
}

#[test]
fn an_open_csv_quote_at_the_end_is_an_error() {
    let mut splitter = RowSplitter::new(CopyFormat::Csv(CsvOptions::new()), 0);
    splitter.feed(b"1,ok\n\"2,never closed\n");
    assert!(splitter.next(true).unwrap().is_some());
    splitter.consume(5);
    assert_eq!(
        splitter.next(true),
        Err(CopyDataError::Unfinished { line: 2 })
    );
}

fn binary_data(rows: &[Option<&[u8]>]) -> Vec<u8> {
    let mut data = BINARY_SIGNATURE.to_vec();
    data.extend(0i32.to_be_bytes());
    data.extend(4i32.to_be_bytes());
    data.extend(b"ext!");
    for key in rows {
        data.extend(2i16.to_be_bytes());
        match key {
            Some(key) => {
                data.extend((key.len() as i32).to_be_bytes());
                data.extend(*key);
            }
            None => data.extend((-1i32).to_be_bytes()),
        }
        data.extend(3i32.to_be_bytes());
        data.extend(b"abc");
    }
    data.extend((-1i16).to_be_bytes());
    data
}

#[test]
fn binary_tuples_are_whole_and_their_key_fields_found() {
    let data = binary_data(&[Some(&7i64.to_be_bytes()), None]);
    let pieces = split(CopyFormat::Binary, 0, &data, 3);
    let seven = format!("{:?}", 7i64.to_be_bytes());
    assert_eq!(keys(&pieces), ["header", seven.as_str(), "null", "end"]);
    assert_eq!(pieces.iter().map(|p| p.2).collect::<Vec<_>>(), [0, 1, 2, 2]);
    let joined: Vec<u8> = pieces
        .iter()
        .flat_map(|(_, bytes, _)| bytes.clone())
        .collect();
    assert_eq!(joined, data);
}

#[test]
fn binary_data_without_the_signature_or_cut_short_is_refused() {
    let mut splitter = RowSplitter::new(CopyFormat::Binary, 0);
    splitter.feed(b"1\tnot binary\n");
    assert_eq!(splitter.next(false), Err(CopyDataError::BadSignature));
    let data = binary_data(&[Some(b"k")]);
    let mut splitter = RowSplitter::new(CopyFormat::Binary, 0);
    splitter.feed(&data[..data.len() - 6]);
    let header = splitter.next(true).unwrap().unwrap().len;
    splitter.consume(header);
    assert_eq!(
        splitter.next(true),
        Err(CopyDataError::Unfinished { line: 1 })
    );
}

proptest::proptest! {
    /// However the data is cut into messages, the rows and keys are the same.
    #[test]
    fn chunking_never_changes_the_rows(chunk in 1usize..40, csv in proptest::bool::ANY) {
        let (format, data): (CopyFormat, &[u8]) = if csv {
            let csv = CsvOptions { header: true, ..CsvOptions::new() };
            (CopyFormat::Csv(csv), b"k,v\n\"a\nb\",1\r\n\"c\"\"d\",2\n,3\ne,\"x,\ny\"\n")
        } else {
            (CopyFormat::text(), b"a\\\nb\t1\r\nc\\\\\t2\n\\N\t3\re\t4")
        };
        let whole = split(format.clone(), 0, data, data.len());
        proptest::prop_assert_eq!(split(format, 0, data, chunk), whole);
    }
}
