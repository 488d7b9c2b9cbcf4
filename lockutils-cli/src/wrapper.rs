//! oslo's `lockutils-wrapper`: a command with a private lock directory of its own.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::supervise::run_command;
use crate::{EXIT_ERROR, EXIT_USAGE};

/// oslo's `lockutils-wrapper`: runs `command` with `OSLO_LOCK_PATH` set to a new private
/// directory (mode 0700), removes the directory afterwards, and returns the command's exit
/// status. If the directory cannot be removed, that is reported on stderr, and the status is
/// [`EXIT_ERROR`] when the command succeeded (a failed command's own status is kept).
pub fn wrapper(program: &str, command: &[OsString]) -> i32 {
    let Some((cmd, args)) = command.split_first() else {
        eprintln!("usage: {program} COMMAND [ARGS...]");
        return EXIT_USAGE;
    };
    let dir = match private_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{program}: cannot create a private lock directory: {e}");
            return EXIT_ERROR;
        }
    };
    let mut child = Command::new(cmd);
    child.args(args).env(lockutils::LOCK_PATH_ENV, &dir);
    let code = run_command(program, child);
    let removed = std::fs::remove_dir_all(&dir);
    if let Err(e) = &removed {
        eprintln!("{program}: cannot remove {}: {e}", dir.display());
    }
    status_after_cleanup(code, &removed)
}

/// The wrapper's status: the command's, unless the command succeeded and the clean-up
/// failed (the command's own failure says more than ours; its success must not hide ours).
fn status_after_cleanup(code: i32, removed: &io::Result<()>) -> i32 {
    match removed {
        Err(_) if code == 0 => EXIT_ERROR,
        _ => code,
    }
}

/// A new directory only this user can use, in the system's temporary directory.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let pid = std::process::id();
    for attempt in 0..1000u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("lockutils-{pid}-{nanos:x}-{attempt}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free directory name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_clean_up_fails_the_wrapper_only_when_the_command_succeeded() {
        let failed: io::Result<()> = Err(io::Error::other("busy"));
        assert_eq!(status_after_cleanup(0, &failed), EXIT_ERROR);
        assert_eq!(status_after_cleanup(3, &failed), 3);
        assert_eq!(status_after_cleanup(0, &Ok(())), 0);
        assert_eq!(status_after_cleanup(137, &Ok(())), 137);
    }
}
