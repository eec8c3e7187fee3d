use super::*;

fn lexed(sql: &str) -> Vec<(TokenKind, &str)> {
    tokens(sql)
        .filter(|t| t.kind != TokenKind::Space)
        .map(|t| (t.kind, t.text(sql)))
        .collect()
}

#[test]
fn words_numbers_params_and_punctuation() {
    use TokenKind::*;
    assert_eq!(
        lexed("SELECT a$1, t.1, 1.5e-3, .5, $2 FROM \"T\"\"x\";"),
        [
            (Word, "SELECT"),
            (Word, "a$1"),
            (Punct, ","),
            // scan.l reads `t.1` as `t` and the number `.1`, as here.
            (Word, "t"),
            (Number, ".1"),
            (Punct, ","),
            (Number, "1.5e-3"),
            (Punct, ","),
            (Number, ".5"),
            (Punct, ","),
            (Param, "$2"),
            (Word, "FROM"),
            (QuotedIdent, "\"T\"\"x\""),
            (Punct, ";"),
        ]
    );
}

#[test]
fn strings_with_prefixes() {
    use StringStyle::*;
    use TokenKind::String as S;
    assert_eq!(
        lexed("'o''k' E'it\\'s' B'01' x'1F' N'n' U&'\\0041' U&\"i\" e'a' be'x'"),
        [
            (S(Plain), "'o''k'"),
            (S(Escape), "E'it\\'s'"),
            (S(Bits), "B'01'"),
            (S(Bits), "x'1F'"),
            (S(National), "N'n'"),
            (S(Unicode), "U&'\\0041'"),
            (TokenKind::QuotedIdent, "U&\"i\""),
            (S(Escape), "e'a'"),
            (TokenKind::Word, "be"),
            (S(Plain), "'x'"),
        ]
    );
}

#[test]
fn comments_and_dollar_quotes() {
    use TokenKind::*;
    assert_eq!(
        lexed("/* a /* nested */ b */ x -- rest\n$$ ; $$ $t$ $$ $t$ $ $1x"),
        [
            (BlockComment, "/* a /* nested */ b */"),
            (Word, "x"),
            (LineComment, "-- rest"),
            (DollarString, "$$ ; $$"),
            (DollarString, "$t$ $$ $t$"),
            (Punct, "$"),
            (Param, "$1"),
            (Word, "x"),
        ]
    );
}

#[test]
fn operators_end_as_postgres_ends_them() {
    use TokenKind::*;
    assert_eq!(
        lexed("a=-5 b<>c d->>'k' e::int f@-1 g*/*c*/h i||j"),
        [
            (Word, "a"),
            (Operator, "="),
            (Operator, "-"),
            (Number, "5"),
            (Word, "b"),
            (Operator, "<>"),
            (Word, "c"),
            (Word, "d"),
            (Operator, "->>"),
            (TokenKind::String(StringStyle::Plain), "'k'"),
            (Word, "e"),
            (Operator, "::"),
            (Word, "int"),
            (Word, "f"),
            (Operator, "@-"),
            (Number, "1"),
            (Word, "g"),
            (Operator, "*"),
            (BlockComment, "/*c*/"),
            (Word, "h"),
            (Word, "i"),
            (Operator, "||"),
            (Word, "j"),
        ]
    );
}

#[test]
fn what_is_left_open_runs_to_the_end() {
    for sql in [
        "SELECT 'open",
        "SELECT \"open",
        "SELECT /* open",
        "SELECT $q$ open",
    ] {
        let last = tokens(sql).last().unwrap();
        assert_eq!(last.kind, TokenKind::Unterminated, "{sql}");
        assert_eq!(last.end, sql.len());
    }
}

proptest::proptest! {
    #[test]
    fn tokens_cover_any_text_exactly(sql in "(?s).{0,120}") {
        let mut at = 0;
        for token in tokens(&sql) {
            proptest::prop_assert_eq!(token.start, at);
            proptest::prop_assert!(token.end > token.start);
            proptest::prop_assert!(sql.is_char_boundary(token.end));
            at = token.end;
        }
        proptest::prop_assert_eq!(at, sql.len());
    }

    #[test]
    fn known_tokens_separated_by_spaces_lex_back(picks in proptest::collection::vec(0..SAMPLES.len(), 0..40)) {
        let sql = picks.iter().map(|&i| SAMPLES[i].1).collect::<Vec<_>>().join(" ");
        let expected: Vec<_> = picks.iter().map(|&i| SAMPLES[i]).collect();
        proptest::prop_assert_eq!(lexed(&sql), expected);
    }
}

/// Tokens that keep their meaning whatever stands next to them after a space.
const SAMPLES: [(TokenKind, &str); 14] = [
    (TokenKind::Word, "select"),
    (TokenKind::Word, "_a$1"),
    (TokenKind::Number, "42"),
    (TokenKind::Number, "1.5e-3"),
    (TokenKind::Param, "$7"),
    (
        TokenKind::String(StringStyle::Plain),
        "'it''s -- not /* a comment'",
    ),
    (TokenKind::String(StringStyle::Escape), "E'\\\\'"),
    (TokenKind::QuotedIdent, "\"a \"\" b\""),
    (TokenKind::DollarString, "$f$ ' \" $$ $f$"),
    (TokenKind::BlockComment, "/* /* x */ ' */"),
    (TokenKind::Operator, "<>"),
    (TokenKind::Operator, "::"),
    (TokenKind::Punct, "("),
    (TokenKind::Punct, ";"),
];
