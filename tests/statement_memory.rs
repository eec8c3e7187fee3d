//! Memory a statement costs the router, measured exactly: a global allocator that counts the
//! bytes live on the current thread, and their peak, while one statement is routed. A parse
//! costs over 100 times the text; a statement over `limits.max_statement_bytes` must not be
//! parsed, so routing it costs a small multiple of its size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use shardgate::config::parse_shard_map;
use shardgate::router::{DEFAULT_MAX_STATEMENT_BYTES, Route, Router};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: allocations while the thread's locals are torn down are not counted.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Peak bytes allocated on this thread above what was live when `work` started.
fn peak_of(work: impl FnOnce()) -> usize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    work();
    (PEAK.with(Cell::get) - start).max(0) as usize
}

fn router() -> Router {
    let map =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("shard-maps/demo.yaml"))
            .unwrap();
    Router::new(&parse_shard_map(&map, Path::new("demo.yaml")).unwrap())
}

/// A multi-row INSERT of `rows` rows into `table`.
fn bulk_insert(table: &str, rows: usize) -> String {
    let values: Vec<String> = (0..rows).map(|i| format!("({i}, 'name {i}')")).collect();
    format!(
        "INSERT INTO {table} (user_id, name) VALUES {}",
        values.join(", ")
    )
}

#[test]
fn a_statement_over_the_limit_costs_a_small_multiple_of_its_size() {
    let router = router();
    for table in ["users", "audit_log"] {
        let sql = bulk_insert(table, 60_000);
        assert!(sql.len() > DEFAULT_MAX_STATEMENT_BYTES * 4);
        let peak = peak_of(|| {
            let _ = router.route_simple(&sql, None);
        });
        eprintln!(
            "{table}: {} bytes routed with a peak of {peak} bytes",
            sql.len()
        );
        assert!(
            peak <= 4 * sql.len(),
            "routing {} bytes into {table} peaked at {peak} bytes",
            sql.len()
        );
    }
}

#[test]
fn a_statement_under_the_limit_is_parsed_and_split() {
    // The same shape under the limit is parsed, which is what the limit is there to bound.
    let router = router();
    let sql = bulk_insert("users", 2_000);
    assert!(sql.len() < DEFAULT_MAX_STATEMENT_BYTES);
    let mut route = None;
    let peak = peak_of(|| route = Some(router.route_simple(&sql, None)));
    assert!(matches!(route, Some(Ok(Route::Split(_)))), "{route:?}");
    eprintln!(
        "users: {} bytes parsed with a peak of {peak} bytes",
        sql.len()
    );
    assert!(
        peak <= 200 * DEFAULT_MAX_STATEMENT_BYTES,
        "a parse of {} bytes peaked at {peak} bytes",
        sql.len()
    );
}
