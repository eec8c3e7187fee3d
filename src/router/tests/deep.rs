//! Statements deep and wide enough to overflow a naive walk: routed (or refused with 54001) on a
//! thread whose stack is a tokio worker's, in a debug build.

use super::*;

/// A tokio worker thread's stack.
const WORKER_STACK: usize = 2 * 1024 * 1024;

fn on_worker_stack(test: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new().stack_size(WORKER_STACK);
    thread
        .spawn(test)
        .unwrap()
        .join()
        .expect("no overflow, no panic");
}

fn chain(term: impl Fn(usize) -> String, glue: &str, count: usize) -> String {
    (1..=count).map(term).collect::<Vec<_>>().join(glue)
}

#[test]
fn a_long_or_chain_on_the_key_routes_and_plans_its_merge() {
    on_worker_stack(|| {
        let router = router();
        let keys = chain(|i| format!("user_id = {i}"), " OR ", 2_000);
        let sql = format!("SELECT count(*) FROM users WHERE {keys}");
        assert_eq!(route(&router, &sql), Ok(Route::Scatter(all())));
        assert!(router.scatter(&sql).is_ok());
        let (simple, _) = router.route_simple_planned(&sql, None);
        assert_eq!(simple, Ok(Route::Scatter(all())));
        let one_key = format!(
            "SELECT * FROM users WHERE {}",
            chain(|_| "user_id = 7".into(), " OR ", 3_000)
        );
        assert_eq!(
            route(&router, &one_key),
            Ok(Route::Shard(user_shard(&router, 7)))
        );
    });
}

#[test]
fn too_deep_on_a_sharded_table_is_refused_with_54001() {
    on_worker_stack(|| {
        let router = router();
        let keys = chain(|_| "user_id = 1".into(), " AND ", 10_000);
        let sql = format!("SELECT * FROM users WHERE {keys}");
        let error = route(&router, &sql).unwrap_err();
        assert!(matches!(error, RouteError::TooDeep(_)), "{error:?}");
        assert_eq!(
            error.report().code,
            crate::error::sqlstate::STATEMENT_TOO_COMPLEX
        );
        let (simple, _) = router.route_simple_planned(&sql, None);
        assert!(matches!(simple, Err(RouteError::TooDeep(_))));
    });
}

#[test]
fn too_deep_without_map_tables_goes_to_the_default_shard_untouched() {
    on_worker_stack(|| {
        let router = router();
        let sum = format!("SELECT {}", chain(|_| "1".into(), "+", 100_000));
        assert_eq!(route(&router, &sum), Ok(shard(0)));
        let catalog = format!(
            "SELECT * FROM pg_class WHERE {}",
            chain(|i| format!("oid = {i}"), " OR ", 20_000)
        );
        assert_eq!(route(&router, &catalog), Ok(shard(0)));
        let hinted = format!(
            "/* shard: s2 */ SELECT * FROM users WHERE {}",
            chain(|_| "user_id = 1".into(), " AND ", 20_000)
        );
        assert_eq!(router.route_simple(&hinted, None), Ok(shard(2)));
    });
}

#[test]
fn deep_but_allowed_shapes_of_every_kind_plan_on_a_worker_stack() {
    on_worker_stack(|| {
        let router = router();
        let depth = crate::sql::MAX_DEPTH - 10;
        let statements = [
            format!("SELECT {} FROM users", chain(|_| "1".into(), " + ", depth)),
            format!(
                "SELECT * FROM users WHERE user_id = 1 AND {}",
                chain(|_| "name".into(), " || ", depth)
            ),
            format!("SELECT 1{}", "::int8".repeat(depth)),
            chain(
                |i| format!("SELECT user_id FROM users WHERE user_id = {i}"),
                " UNION ",
                depth / 10,
            ),
            format!(
                "SELECT sum(user_id) FROM users HAVING {}",
                chain(|_| "sum(user_id) > 1".into(), " OR ", depth / 3)
            ),
            format!(
                "INSERT INTO users (user_id, name) VALUES (1, {})",
                chain(|_| "'a'".into(), " || ", depth)
            ),
            format!(
                "UPDATE users SET name = {} WHERE user_id = 1",
                chain(|_| "name".into(), " || ", depth)
            ),
        ];
        for sql in statements {
            let _ = route(&router, &sql);
            let _ = router.route_simple(&sql, None);
            let _ = router.scatter(&sql);
        }
    });
}

#[test]
fn infix_words_chain_as_deep_as_operators() {
    on_worker_stack(|| {
        let router = router();
        // sqlparser takes XOR as an infix operator in every dialect: 40,000 of them under the
        // size limit once overflowed a worker's stack when dropping the tree.
        let xor = format!("SELECT 1{}", " XOR 1".repeat(40_000));
        assert_eq!(route(&router, &xor), Ok(shard(0)));
        let keyed = format!(
            "SELECT * FROM users WHERE user_id = 1{}",
            " XOR 1".repeat(40_000)
        );
        assert!(matches!(
            route(&router, &keyed),
            Err(RouteError::TooDeep(_))
        ));
    });
}

#[test]
fn execute_arguments_too_deep_for_a_literal_are_none() {
    on_worker_stack(|| {
        let args = format!("({})", chain(|_| "1".into(), "+", 50_000));
        assert!(execute_arguments(&args).is_empty());
    });
}

#[test]
fn statements_over_the_size_limit_route_by_the_tables_they_name() {
    let router = router().with_max_statement_bytes(64 * 1024);
    let rows = |table: &str| {
        let rows = (1..=10_000).map(|i| format!("({i}, 'n{i}')"));
        let rows = rows.collect::<Vec<_>>().join(", ");
        format!("INSERT INTO {table} (user_id, name) VALUES {rows}")
    };
    let error = router.route_simple(&rows("users"), None).unwrap_err();
    assert!(
        matches!(&error, RouteError::TooLarge { table, .. } if table == "users"),
        "{error:?}"
    );
    assert_eq!(
        error.report().code,
        crate::error::sqlstate::PROGRAM_LIMIT_EXCEEDED
    );
    assert_eq!(router.route_simple(&rows("audit_log"), None), Ok(shard(0)));
    let hinted = format!("/* shard: s1 */ {}", rows("users"));
    assert_eq!(router.route_simple(&hinted, None), Ok(shard(1)));
    // Under the limit the same statement is parsed and split by key.
    let small = Router::new(router.map());
    assert!(matches!(
        small.route_simple(&rows("users"), None),
        Ok(Route::Split(_))
    ));
}

/// Random expressions: nested up to a few levels, with chains up to thousands long.
fn expression() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just("user_id".to_owned()),
        Just("name".to_owned()),
        (0i64..100).prop_map(|n| n.to_string()),
        Just("$1".to_owned()),
        Just("'x''y'".to_owned()),
        Just("NULL".to_owned()),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        let glue = prop_oneof![
            Just(" AND "),
            Just(" OR "),
            Just(" + "),
            Just(" = "),
            Just(" || "),
            Just("::int8 + "),
        ];
        prop_oneof![
            (inner.clone(), glue, 1usize..1_500).prop_map(|(term, glue, n)| {
                // Chains of chains would grow to gigabytes: each one stays under 256 KiB
                // (longer texts are routed without parsing, see the size-limit test above).
                let n = n.min((256 << 10) / (term.len() + glue.len())).max(1);
                vec![term; n].join(glue)
            }),
            inner.clone().prop_map(|e| format!("({e})")),
            inner.clone().prop_map(|e| format!("NOT {e}")),
            inner.clone().prop_map(|e| format!("coalesce({e}, 1)")),
            inner
                .clone()
                .prop_map(|e| format!("CASE WHEN {e} THEN 1 ELSE 2 END")),
            inner
                .clone()
                .prop_map(|e| format!("user_id IN ({e}, 2, 3)")),
            inner.prop_map(|e| format!("EXISTS (SELECT 1 FROM orders WHERE {e})")),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// The SQL fuzzer: whatever the shape, routing answers (a route or an error) on a worker
    /// stack; it never overflows or panics.
    #[test]
    fn any_expression_routes_without_overflow(select in expression(), filter in expression()) {
        on_worker_stack(move || {
            let router = router();
            for sql in [
                format!("SELECT {select} FROM users WHERE {filter}"),
                format!("SELECT count(*) FROM users WHERE {filter} GROUP BY name HAVING {select}"),
                format!("UPDATE users SET name = {select} WHERE {filter}"),
                format!("SELECT {select}"),
            ] {
                let _ = router.route_simple(&sql, None);
                let _ = route(&router, &sql);
                let _ = router.scatter(&sql);
            }
        });
    }
}
