//! How deep a statement's syntax tree can get, measured from its tokens before sqlparser builds
//! the tree, so that no statement a client sends can overflow the proxy's stack.
//!
//! Part of the `sql` leaf (pure). sqlparser bounds its own recursion (50 nested parentheses or
//! subqueries), but a chain of binary operators at one level (`a OR b OR …`, `1 + 1 + …`,
//! `x::t::t…`, `SELECT … UNION SELECT …`) is parsed in a loop into a left-deep tree, and every
//! walk over that tree — ours, sqlparser's `Display`, and the tree's `Drop` — recurses once per
//! operator. [`depth`] bounds that tree's depth from above: the nesting of brackets plus, on
//! the path to the deepest point, the tokens chained at each level. Every operator and every
//! word counts, since sqlparser takes words as infix operators too (`AND`, `XOR`, `REGEXP`,
//! `OPERATOR(…)`, `MEMBER OF`, `IS DISTINCT FROM`, …) and a list of them would go stale. So it
//! overestimates (`a = 1 OR b = 2` counts five), never underestimates: a level's count restarts
//! only where an expression surely ends (a `,` or `;` at that level, or `WHEN`/`THEN`/`ELSE`
//! directly inside a `CASE`).

use super::lexer::{Token, TokenKind, tokens};

/// Upper bound of the syntax-tree depth sqlparser would build for `sql` (see the module
/// docs). Linear in the text, no allocation beyond one entry per open bracket.
pub fn depth(sql: &str) -> usize {
    let mut walk = Walk::default();
    for token in tokens(sql).filter(|t| t.is_significant()) {
        walk.step(sql, token);
    }
    walk.deepest
}

/// Where one open bracket (or CASE) started counting.
#[derive(Debug, Clone, Copy)]
struct Level {
    /// Operators chained at the enclosing level when this one opened.
    outer_chain: usize,
    /// Whether `CASE` opened it (so `WHEN`/`THEN`/`ELSE` separate expressions).
    case: bool,
}

#[derive(Debug, Default)]
struct Walk {
    open: Vec<Level>,
    /// Sum of `outer_chain` over `open`.
    enclosing: usize,
    /// Operators chained so far at the innermost level.
    chain: usize,
    deepest: usize,
}

impl Walk {
    fn step(&mut self, sql: &str, token: Token) {
        let text = token.text(sql);
        match token.kind {
            TokenKind::Operator => self.chain += 1,
            TokenKind::Punct => self.punctuation(text),
            TokenKind::Word => self.word(text),
            _ => {}
        }
        let depth = self.open.len() + self.enclosing + self.chain;
        self.deepest = self.deepest.max(depth);
    }

    fn punctuation(&mut self, text: &str) {
        match text {
            "(" => self.push(false),
            // A subscript may nest its base one level deeper.
            "[" => {
                self.chain += 1;
                self.push(false);
            }
            ")" | "]" => self.pop(),
            "," => self.chain = 0,
            ";" => {
                *self = Walk {
                    deepest: self.deepest,
                    ..Walk::default()
                }
            }
            _ => {}
        }
    }

    fn word(&mut self, text: &str) {
        let is = |keyword: &str| text.eq_ignore_ascii_case(keyword);
        let in_case = self.open.last().is_some_and(|level| level.case);
        if is("case") {
            self.push(true);
        } else if is("end") && in_case {
            self.pop();
        } else if in_case && (is("when") || is("then") || is("else")) {
            self.chain = 0;
        } else {
            self.chain += 1;
        }
    }

    fn push(&mut self, case: bool) {
        self.open.push(Level {
            outer_chain: self.chain,
            case,
        });
        self.enclosing += self.chain;
        self.chain = 0;
    }

    /// A closing bracket without an opening one closes nothing (the parser will refuse it).
    fn pop(&mut self) {
        if let Some(level) = self.open.pop() {
            self.enclosing -= level.outer_chain;
            self.chain = level.outer_chain;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::depth;

    #[test]
    fn chains_count_once_per_operator_and_word() {
        assert_eq!(depth("SELECT 1"), 1);
        assert_eq!(depth("SELECT a + b"), 4);
        let or_chain = (1..=100).map(|i| format!("k = {i}")).collect::<Vec<_>>();
        let sql = format!("SELECT k FROM t WHERE {}", or_chain.join(" OR "));
        assert_eq!(depth(&sql), 5 + 100 * 2 + 99);
        let casts = ["1"; 50].join("::int8::");
        assert_eq!(depth(&format!("SELECT {casts}")), 1 + 49 * 3);
    }

    #[test]
    fn infix_words_sqlparser_chains_are_counted() {
        let glues = [
            " XOR ",
            " REGEXP ",
            " RLIKE ",
            " OPERATOR(+) ",
            " MEMBER OF (1) XOR ",
        ];
        for glue in glues {
            let sql = format!("SELECT 1{}", format!("{glue}1").repeat(1_000));
            assert!(depth(&sql) >= 1_000, "{glue}: {}", depth(&sql));
        }
    }

    #[test]
    fn lists_and_statements_restart_the_count() {
        // Words before the list count, the list's items do not add up.
        let row = "(1 + 2, 3 * 4)";
        let values = vec![row; 1000].join(", ");
        assert_eq!(depth(&format!("INSERT INTO t VALUES {values}")), 6);
        let list = (1..=1000).map(|i| i.to_string()).collect::<Vec<_>>();
        let sql = format!("SELECT k FROM t WHERE k IN ({})", list.join(", "));
        assert_eq!(depth(&sql), 8);
        assert_eq!(depth("SELECT 1 + 1 + 1; SELECT 2"), 3);
    }

    #[test]
    fn brackets_add_their_enclosing_chain() {
        // SELECT 1 + (2 + (3 + 4)): the innermost `+` sits under the chain before each
        // bracket and the brackets themselves.
        assert_eq!(depth("SELECT 1 + (2 + (3 + 4))"), 6);
        assert_eq!(depth("SELECT 1 + (2) + 3"), 3);
        let nested = format!("SELECT {}1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(depth(&nested), 41);
    }

    #[test]
    fn case_branches_are_separate_expressions_but_the_chain_around_case_is_not() {
        let whens = (1..=500).map(|i| format!("WHEN k = {i} THEN {i}"));
        let case = format!("SELECT CASE {} END", whens.collect::<Vec<_>>().join(" "));
        assert_eq!(depth(&case), 4);
        let around = format!(
            "SELECT {} 1",
            "1 + CASE WHEN true THEN 1 END + ".repeat(300)
        );
        assert!(depth(&around) >= 600, "{}", depth(&around));
    }

    #[test]
    fn quoted_text_and_comments_count_nothing() {
        let sql = "SELECT '1 + 1 + (((', \"a+b\" -- + + +\n /* ((( */";
        assert_eq!(depth(sql), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(sql in "(?s).{0,200}") {
            let _ = depth(&sql);
        }

        #[test]
        fn a_chain_is_never_undercounted(ops in proptest::collection::vec(0..6usize, 1..200)) {
            let glue = [" + ", " OR ", "::int + ", " || ", ", ", " AND (1) + "];
            let mut sql = String::from("SELECT 1");
            let mut since_comma = 0usize;
            let mut deepest = 0usize;
            for op in ops {
                sql.push_str(glue[op]);
                sql.push('1');
                since_comma = match op {
                    4 => 0,
                    2 | 5 => since_comma + 2,
                    _ => since_comma + 1,
                };
                deepest = deepest.max(since_comma);
            }
            proptest::prop_assert!(depth(&sql) >= deepest, "{}: {} < {}", sql, depth(&sql), deepest);
        }
    }
}
