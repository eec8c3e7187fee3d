//! Finding the PostgreSQL programs a local cluster runs.
//!
//! Owns the search order: `pg_config --bindir`, then the highest `/usr/lib/postgresql/*/bin`
//! (Debian's layout, which keeps server programs off PATH), then PATH. The required programs are
//! taken from one place together, so initdb, pg_ctl and postgres are of one version. It must
//! never guess: when something is missing the error names each program and every place looked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Server programs a cluster cannot start without.
const REQUIRED: [&str; 4] = ["initdb", "pg_ctl", "postgres", "pg_basebackup"];

/// Where Debian and Ubuntu install each major version's programs.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The PostgreSQL programs in use: required server programs plus optional client tools that
/// tests use when present (`psql`, `pgbench`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// Creates a data directory.
    pub initdb: PathBuf,
    /// Starts and stops servers.
    pub pg_ctl: PathBuf,
    /// The server itself (initdb and pg_ctl find it beside themselves).
    pub postgres: PathBuf,
    /// Clones a primary into a replica.
    pub pg_basebackup: PathBuf,
    /// Interactive client, if installed (tests and the demo's hints use it).
    pub psql: Option<PathBuf>,
    /// Load generator, if installed (benchmarks and load tests use it).
    pub pgbench: Option<PathBuf>,
    /// Dump and restore, if installed (tests of dumps through the proxy use them).
    pub pg_dump: Option<PathBuf>,
    /// See `pg_dump`.
    pub pg_restore: Option<PathBuf>,
}

/// Every place searched and what was missing there: the body of a "binaries not found" error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBinaries {
    /// Places in search order.
    pub searched: Vec<SearchedPlace>,
}

/// One place searched for the required programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedPlace {
    /// Human description, e.g. `pg_config --bindir (/usr/bin)`.
    pub place: String,
    /// Directories looked in (one, or each PATH entry).
    pub dirs: Vec<PathBuf>,
    /// Required programs not found there.
    pub missing: Vec<&'static str>,
}

impl fmt::Display for MissingBinaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgreSQL server programs not found (need {}):",
            REQUIRED.join(", ")
        )?;
        for place in &self.searched {
            write!(
                f,
                "\n  {}: missing {}",
                place.place,
                place.missing.join(", ")
            )?;
        }
        write!(
            f,
            "\n  install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql)"
        )
    }
}

impl std::error::Error for MissingBinaries {}

impl PgBinaries {
    /// Searches pg_config's bindir, the highest `/usr/lib/postgresql/*/bin`, then PATH, and
    /// takes all required programs from the first place that has every one of them.
    pub fn find() -> Result<Self, MissingBinaries> {
        let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut places = Vec::new();
        if let Some(pg_config) = find_in(&path_dirs, "pg_config") {
            places.push(pg_config_place(&pg_config));
        }
        places.push(versioned_place(Path::new(VERSIONED_ROOT)));
        places.push(Candidate::new(
            format!("PATH ({})", join_dirs(&path_dirs)),
            path_dirs.clone(),
        ));
        find_among(places, &path_dirs)
    }
}

/// A place to look: a description and its directories.
struct Candidate {
    place: String,
    dirs: Vec<PathBuf>,
}

impl Candidate {
    fn new(place: String, dirs: Vec<PathBuf>) -> Self {
        Self { place, dirs }
    }
}

/// The first candidate holding every required program wins; extras fall back to PATH.
fn find_among(
    places: Vec<Candidate>,
    path_dirs: &[PathBuf],
) -> Result<PgBinaries, MissingBinaries> {
    let mut searched = Vec::new();
    for candidate in places {
        match take_from(candidate, path_dirs) {
            Ok(binaries) => return Ok(binaries),
            Err(place) => searched.push(place),
        }
    }
    Err(MissingBinaries { searched })
}

/// All required programs from `candidate`, or what was missing there.
fn take_from(candidate: Candidate, path_dirs: &[PathBuf]) -> Result<PgBinaries, SearchedPlace> {
    let dirs = &candidate.dirs;
    let found: Vec<Option<PathBuf>> = REQUIRED.iter().map(|name| find_in(dirs, name)).collect();
    if let [
        Some(initdb),
        Some(pg_ctl),
        Some(postgres),
        Some(pg_basebackup),
    ] = &found[..]
    {
        let extra = |name| find_in(dirs, name).or_else(|| find_in(path_dirs, name));
        return Ok(PgBinaries {
            initdb: initdb.clone(),
            pg_ctl: pg_ctl.clone(),
            postgres: postgres.clone(),
            pg_basebackup: pg_basebackup.clone(),
            psql: extra("psql"),
            pgbench: extra("pgbench"),
            pg_dump: extra("pg_dump"),
            pg_restore: extra("pg_restore"),
        });
    }
    let missing = REQUIRED.iter().zip(&found).filter(|(_, f)| f.is_none());
    let missing = missing.map(|(name, _)| *name).collect();
    Err(SearchedPlace {
        place: candidate.place,
        dirs: candidate.dirs,
        missing,
    })
}

/// `pg_config --bindir`; a pg_config that fails to answer is reported as a place with no dirs.
fn pg_config_place(pg_config: &Path) -> Candidate {
    let output = Command::new(pg_config).arg("--bindir").output();
    match output {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            Candidate::new(format!("pg_config --bindir ({})", dir.display()), vec![dir])
        }
        _ => Candidate::new(
            format!("{} --bindir (failed)", pg_config.display()),
            Vec::new(),
        ),
    }
}

/// The `bin` dir of the highest numeric version under `root` (e.g. `/usr/lib/postgresql/16`).
fn versioned_place(root: &Path) -> Candidate {
    let highest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.is_dir())
        .max_by(|a, b| a.0.cmp(&b.0));
    match highest {
        Some((_, bin)) => Candidate::new(
            format!("{} (highest installed version)", bin.display()),
            vec![bin],
        ),
        None => Candidate::new(
            format!("{}/*/bin (none installed)", root.display()),
            Vec::new(),
        ),
    }
}

/// The first `dir/name` that is an executable regular file (symlinks followed).
fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|dir| dir.join(name)).find(|path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    shown.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_program(dir: &Path, name: &str) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn takes_required_programs_from_one_place() {
        let partial = tempfile::tempdir().unwrap();
        let full = tempfile::tempdir().unwrap();
        fake_program(partial.path(), "initdb");
        for name in REQUIRED {
            fake_program(full.path(), name);
        }
        fake_program(full.path(), "psql");
        let places = vec![
            Candidate::new("partial".into(), vec![partial.path().into()]),
            Candidate::new("full".into(), vec![full.path().into()]),
        ];
        let found = find_among(places, &[]).unwrap();
        assert_eq!(found.initdb, full.path().join("initdb"));
        assert_eq!(found.psql, Some(full.path().join("psql")));
        assert_eq!(found.pgbench, None);
    }

    #[test]
    fn missing_programs_are_named_per_place() {
        let dir = tempfile::tempdir().unwrap();
        fake_program(dir.path(), "initdb");
        std::fs::write(dir.path().join("pg_ctl"), "not executable").unwrap();
        let places = vec![Candidate::new("here".into(), vec![dir.path().into()])];
        let error = find_among(places, &[]).unwrap_err();
        assert_eq!(
            error.searched[0].missing,
            vec!["pg_ctl", "postgres", "pg_basebackup"]
        );
        let text = error.to_string();
        assert!(
            text.contains("here: missing pg_ctl, postgres, pg_basebackup"),
            "{text}"
        );
    }

    #[test]
    fn picks_highest_numeric_version() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "16", "notes"] {
            std::fs::create_dir_all(root.path().join(version).join("bin")).unwrap();
        }
        let place = versioned_place(root.path());
        assert_eq!(place.dirs, vec![root.path().join("16").join("bin")]);
        let empty = tempfile::tempdir().unwrap();
        assert!(versioned_place(empty.path()).dirs.is_empty());
    }
}
