//! Driver checks for tokio-postgres and sqlx against a running shardgate, per the contract of
//! `tests/drivers/run`: the proxy's address comes from `SHARDGATE_*`, each check prints one
//! `PASS <driver> <version> | <check>` or `FAIL … | <check> | <message>` line, and a check
//! that hangs fails at its timeout instead of stalling the run.
//!
//! `shardgate-driver-checks [tokio-postgres] [sqlx]` (both when no argument is given).

mod report;
mod sqlx_checks;
mod tokio_pg;

#[tokio::main]
async fn main() {
    let env = report::Env::from_env();
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let all = wanted.is_empty();
    if all || wanted.iter().any(|w| w == "tokio-postgres") {
        tokio_pg::run(&env).await;
    }
    if all || wanted.iter().any(|w| w == "sqlx") {
        sqlx_checks::run(&env).await;
    }
}
