//! How deep a statement's syntax tree can get, measured from its tokens before sqlparser builds
//! the tree, so that no statement a client sends can overflow the proxy's stack.
//!
//! Part of the `sql` leaf (pure). sqlparser bounds its own recursion (50 nested parentheses or
//! subqueries), but a chain of binary operators at one level (`a OR b OR …`, `1 + 1 + …`,
//! `x::t::t…`, `SELECT … UNION SELECT …`) is parsed in a loop into a left-deep tree, and every
//! walk over that tree — ours, sqlparser's `Display`, and the tree's `Drop` — recurses once per
//! operator. [`depth`] bounds that tree's depth from above: the nesting of brackets plus, on
//! the path to the deepest point, the operators chained at each level. It may overestimate
//! (`a = 1 OR b = 2` counts both `=` and `OR`), never underestimate: a level's count restarts
//! only where an expression surely ends (a `,` or `;` at that level, or `WHEN`/`THEN`/`ELSE`
//! directly inside a `CASE`).

use super::lexer::{Token, TokenKind, tokens};

/// Keywords that join two expressions into one, or modify one (each may add a tree level).
const OPERATOR_WORDS: [&str; 18] = [
    "and",
    "or",
    "not",
    "is",
    "isnull",
    "notnull",
    "like",
    "ilike",
    "similar",
    "between",
    "in",
    "at",
    "collate",
    "overlaps",
    "union",
    "intersect",
    "except",
    "escape",
];

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
        } else if OPERATOR_WORDS.iter().any(|word| is(word)) {
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
    fn chains_count_once_per_operator() {
        assert_eq!(depth("SELECT 1"), 0);
        assert_eq!(depth("SELECT a + b"), 1);
        let or_chain = (1..=100).map(|i| format!("k = {i}")).collect::<Vec<_>>();
        assert_eq!(
            depth(&format!("SELECT k FROM t WHERE {}", or_chain.join(" OR "))),
            199
        );
        assert_eq!(depth(&format!("SELECT {}", ["1"; 50].join("::int8::"))), 98);
    }

    #[test]
    fn lists_and_statements_restart_the_count() {
        let row = "(1 + 2, 3 * 4)";
        let values = vec![row; 1000].join(", ");
        assert_eq!(depth(&format!("INSERT INTO t VALUES {values}")), 2);
        let list = (1..=1000).map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(
            depth(&format!("SELECT k FROM t WHERE k IN ({})", list.join(", "))),
            2
        );
        assert_eq!(depth("SELECT 1 + 1 + 1; SELECT 2"), 2);
    }

    #[test]
    fn brackets_add_their_enclosing_chain() {
        // 1 + (2 + (3 + 4)): the innermost `+` sits under two chained ones and two brackets.
        assert_eq!(depth("SELECT 1 + (2 + (3 + 4))"), 5);
        assert_eq!(depth("SELECT 1 + (2) + 3"), 2);
        assert_eq!(
            depth(&format!("SELECT {}1{}", "(".repeat(40), ")".repeat(40))),
            40
        );
    }

    #[test]
    fn case_branches_are_separate_expressions_but_the_chain_around_case_is_not() {
        let whens = (1..=500).map(|i| format!("WHEN k = {i} THEN {i}"));
        let case = format!("SELECT CASE {} END", whens.collect::<Vec<_>>().join(" "));
        assert_eq!(depth(&case), 2);
        let around = format!(
            "SELECT {} 1",
            "1 + CASE WHEN true THEN 1 END + ".repeat(300)
        );
        assert!(depth(&around) >= 600, "{}", depth(&around));
    }

    #[test]
    fn quoted_text_and_comments_count_nothing() {
        assert_eq!(
            depth("SELECT '1 + 1 + (((', \"a+b\" -- + + +\n /* ((( */"),
            0
        );
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
