//! Which OS user the PostgreSQL programs run as, and handing directories to that user.
//!
//! Owns the root case: initdb and postgres refuse to run as root, so when the effective uid is
//! 0 they run as the `postgres` system user (uid/gid set on the child, which also drops root's
//! supplementary groups) and the directories they write are chowned to it. For an ordinary user
//! everything runs as that user and no ownership changes. It must never chown or chmod anything
//! but the directories and files the cluster itself creates, plus `o+x` on the base dir.

use std::ffi::CStr;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::error::LocalClusterError;

/// The account that owns data directories and runs PostgreSQL programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// The current (non-root) user.
    CurrentUser,
    /// The `postgres` system user, because this process is root.
    System {
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// `System` when the effective uid is 0, else `CurrentUser`.
    pub(crate) fn detect() -> Result<Self, LocalClusterError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let (uid, gid) = lookup_user(c"postgres").ok_or(LocalClusterError::NoPostgresUser)?;
        Ok(RunAs::System { uid, gid })
    }

    /// Makes `command` run as this account.
    pub(crate) fn apply(&self, command: &mut Command) {
        if let RunAs::System { uid, gid } = *self {
            command.uid(uid).gid(gid);
        }
    }

    /// Creates `path` (its parent must exist) with mode 0700, owned by this account, as
    /// PostgreSQL requires of data directories; an existing empty directory is adopted.
    pub(crate) fn make_private_dir(&self, path: &Path) -> Result<(), LocalClusterError> {
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_empty_dir(path) => {
                let private = std::fs::Permissions::from_mode(0o700);
                std::fs::set_permissions(path, private)
                    .map_err(LocalClusterError::io("set permissions of", path))?;
            }
            Err(e) => return Err(LocalClusterError::io("create directory", path)(e)),
        }
        self.chown(path)
    }

    /// Gives a file or directory the cluster created to this account.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalClusterError> {
        match *self {
            RunAs::CurrentUser => Ok(()),
            RunAs::System { uid, gid } => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(LocalClusterError::io("change owner of", path)),
        }
    }

    /// Makes sure this account can reach `base` (absolute, existing): adds `o+x` to `base`
    /// itself, and fails naming the first ancestor it cannot traverse.
    pub(crate) fn ensure_traversable(&self, base: &Path) -> Result<(), LocalClusterError> {
        let RunAs::System { uid, gid } = *self else {
            return Ok(());
        };
        let meta = std::fs::metadata(base).map_err(LocalClusterError::io("inspect", base))?;
        if !can_traverse(&meta, uid, gid) {
            let mode = std::fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o011);
            std::fs::set_permissions(base, mode)
                .map_err(LocalClusterError::io("set permissions of", base))?;
        }
        for ancestor in base.ancestors().skip(1) {
            let meta =
                std::fs::metadata(ancestor).map_err(LocalClusterError::io("inspect", ancestor))?;
            if !can_traverse(&meta, uid, gid) {
                return Err(LocalClusterError::NotTraversable {
                    path: ancestor.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `uid`/`gid` may search a directory with this metadata (supplementary groups of the
/// postgres user are not considered: a conservative answer).
fn can_traverse(meta: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.mode();
    if meta.uid() == uid {
        mode & 0o100 != 0
    } else if meta.gid() == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// uid and gid of a user, via the re-entrant `getpwnam_r` (start-up runs on several threads).
fn lookup_user(name: &CStr) -> Option<(u32, u32)> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct; it is only read
    // after getpwnam_r reports success and fills it in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and `buffer.len()` is the
    // true size of `buffer`; the strings it points into are not used after `buffer` drops.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some((entry.pw_uid, entry.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root() {
        assert_eq!(lookup_user(c"root"), Some((0, 0)));
        assert_eq!(lookup_user(c"no-such-user-shardgate"), None);
    }

    #[test]
    fn base_gets_search_bit_and_closed_ancestors_are_named() {
        let nobody = RunAs::System {
            uid: 65534,
            gid: 65534,
        };
        let open = tempfile::tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        nobody.ensure_traversable(open.path()).unwrap();
        let mode = std::fs::metadata(open.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o711);
        let closed = open.path().join("closed");
        let base = closed.join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = nobody.ensure_traversable(&base).unwrap_err();
        assert!(
            matches!(&error, LocalClusterError::NotTraversable { path } if *path == closed),
            "{error}"
        );
    }

    #[test]
    fn make_private_dir_adopts_empty_and_refuses_full() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("data");
        RunAs::CurrentUser.make_private_dir(&dir).unwrap();
        RunAs::CurrentUser.make_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(dir.join("file"), "x").unwrap();
        assert!(RunAs::CurrentUser.make_private_dir(&dir).is_err());
    }
}
