//! Running PostgreSQL programs: as the right user, in a clean environment, with failures
//! turned into [`CommandFailure`]s.
//!
//! Owns the process environment of every program a cluster runs. It clears the caller's
//! environment (a stray `PGDATA`, `PGPORT` or `PGHOST` must not redirect a test cluster) and
//! runs from `/` (a root-owned, 0700 working directory would make postgres complain). It must
//! never pass a password on a command line.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::binaries::PgBinaries;
use super::error::{CommandFailure, LocalClusterError};
use super::os_user::RunAs;

/// The programs to run and the account to run them as, shared by every server of a cluster.
#[derive(Debug)]
pub(crate) struct Toolbox {
    /// Where the programs are.
    pub(crate) binaries: PgBinaries,
    /// Who runs them.
    pub(crate) run_as: RunAs,
}

impl Toolbox {
    /// Finds the binaries and decides the account (root → `postgres`).
    pub(crate) fn detect() -> Result<Self, LocalClusterError> {
        let binaries = PgBinaries::find().map_err(LocalClusterError::MissingBinaries)?;
        let run_as = RunAs::detect()?;
        Ok(Self { binaries, run_as })
    }

    /// A command for `program` with a clean environment, run as the cluster's account.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LC_ALL", "C")
            .env("LANG", "C")
            // initdb would otherwise scan the whole zoneinfo tree to guess the system zone.
            .env("TZ", "UTC")
            .current_dir("/")
            .stdin(Stdio::null());
        self.run_as.apply(&mut command);
        command
    }
}

/// Runs `command` to completion; a non-zero exit becomes [`LocalClusterError::Command`] with
/// the tail of its output and, when given, of the server `log`.
pub(crate) fn run(command: &mut Command, log: Option<&Path>) -> Result<Output, LocalClusterError> {
    let program = Path::new(command.get_program()).to_path_buf();
    let output = command
        .output()
        .map_err(|source| LocalClusterError::Spawn { program, source })?;
    if output.status.success() {
        return Ok(output);
    }
    let mut failure = CommandFailure::new(
        render(command),
        output.status,
        &output.stderr,
        &output.stdout,
    );
    if let Some(log) = log {
        failure = failure.with_log(log.to_path_buf());
    }
    Err(LocalClusterError::Command(Box::new(failure)))
}

/// The command line as text, for error messages.
fn render(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_command_and_stderr() {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "echo boom >&2; exit 3"]);
        let error = run(&mut command, None).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("`/bin/sh -c echo boom >&2; exit 3` failed"),
            "{text}"
        );
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let error = run(&mut Command::new("/nonexistent/initdb"), None).unwrap_err();
        assert!(matches!(error, LocalClusterError::Spawn { .. }), "{error}");
    }
}
