//! `lockutils run`: a command run while holding a lock.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::supervise::{die_with_parent, run_command};
use crate::{EXIT_ERROR, EXIT_LOCK_FAILED, EXIT_USAGE};

/// What `lockutils run` takes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The lock name.
    pub name: String,
    /// Take the inter-process lock file too (default on).
    pub external: bool,
    /// Lock file prefix.
    pub prefix: Option<String>,
    /// Lock directory (falls back to `OSLO_LOCK_PATH`).
    pub lock_path: Option<PathBuf>,
    /// Take the shared (reader) side of the inter-process reader/writer lock.
    pub shared: bool,
    /// Take the fair lock: on lock files, processes are served in the order they asked.
    pub fair: bool,
    /// One try only.
    pub nonblocking: bool,
    /// Wait at most this long.
    pub timeout: Option<std::time::Duration>,
}

/// `lockutils run`: holds the lock while `command` runs; returns the command's status, or
/// [`EXIT_LOCK_FAILED`] if the lock was not taken.
pub fn run(options: &RunOptions, command: &[OsString]) -> i32 {
    const PROGRAM: &str = "lockutils run";
    let Some((cmd, args)) = command.split_first() else {
        eprintln!("usage: lockutils run NAME [OPTIONS] -- COMMAND [ARGS...]");
        return EXIT_USAGE;
    };
    // A backend URL (LOCKUTILS_BACKEND_URL) moves external locks off lock files.
    let url = backend_url();
    let on_files = (options.external || options.shared) && url.is_none();
    let file = match check_run_options(options, on_files) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            return EXIT_USAGE;
        }
    };
    let lock_path = options.lock_path.as_deref();
    // Where the lock is, for a busy lock's message (other errors say it themselves).
    let place = match (&url, &file) {
        (Some(url), _) => format!(" on {}", lockutils::redact_url(url)),
        (None, Some(file)) => format!(" (file {})", file.display()),
        (None, None) => String::new(),
    };
    let failed = |e: lockutils::Error| {
        if e.is_acquire_failed() {
            eprintln!("{PROGRAM}: {e}{place}");
            EXIT_LOCK_FAILED
        } else {
            eprintln!("{PROGRAM}: {e}");
            EXIT_ERROR
        }
    };
    let mut child = Command::new(cmd);
    child.args(args);
    // --shared takes the shared side of the external lock (it implies --external): the read
    // lock on the lock file, or a shared lock on whatever server the backend URL names.
    let mut builder = lockutils::lock(&options.name)
        .external(options.external || options.shared)
        .shared(options.shared)
        .fair(options.fair)
        .blocking(!options.nonblocking)
        .do_log(false);
    if let Some(prefix) = &options.prefix {
        builder = builder.prefix(prefix);
    }
    if let Some(dir) = lock_path {
        builder = builder.lock_path(dir);
    }
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    match builder.acquire() {
        Ok(guard) => {
            if guard.is_external() && !guard.share_with_child(&mut child) {
                die_with_parent(&mut child);
            }
            run_command(PROGRAM, child)
        }
        Err(e) => failed(e),
    }
}

/// What `run` can tell is wrong before it tries the lock: a message that names the flag or
/// variable to fix (exit [`EXIT_USAGE`]). On lock files, returns the lock file's path.
fn check_run_options(options: &RunOptions, on_files: bool) -> Result<Option<PathBuf>, String> {
    if let Some(prefix) = &options.prefix
        && prefix.contains(['/', '\\', '\0'])
    {
        return Err(format!(
            "--prefix {prefix:?}: a lock file prefix cannot contain '/', '\\' or a NUL byte"
        ));
    }
    if !on_files {
        return Ok(None);
    }
    let (dir, from) = match &options.lock_path {
        Some(dir) => (dir.clone(), "--lock-path"),
        None => match lockutils::LockConfig::from_env().lock_path {
            Some(dir) => (dir, lockutils::LOCK_PATH_ENV),
            None => {
                return Err(
                    "no lock directory: pass --lock-path or set OSLO_LOCK_PATH (or --external \
                     false for a lock inside this process only)"
                        .to_owned(),
                );
            }
        },
    };
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{from} {}: not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{from} {}: no such directory (lockutils run does not create lock \
                 directories: check the path, or create it)",
                dir.display()
            ));
        }
        Err(e) => return Err(format!("{from} {}: {e}", dir.display())),
    }
    lockutils::lock_file_path(&options.name, options.prefix.as_deref(), Some(&dir))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The backend URL in force, unless it names lock files (`file://`).
fn backend_url() -> Option<String> {
    lockutils::current_config()
        .backend_url
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty() && !url.to_ascii_lowercase().starts_with("file://"))
}
