//! Puts the locked versions of tokio-postgres and sqlx into the binary, for the PASS/FAIL lines.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (krate, var) in [("tokio-postgres", "TOKIO_POSTGRES_VERSION"), ("sqlx", "SQLX_VERSION")] {
        let version = locked_version(&lock, krate).unwrap_or_else(|| "unknown".to_owned());
        println!("cargo:rustc-env={var}={version}");
    }
}

fn locked_version(lock: &str, krate: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{krate}\"") {
            let next = lines.next()?;
            return next.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_owned);
        }
    }
    None
}
