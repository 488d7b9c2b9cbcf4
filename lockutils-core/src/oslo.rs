//! oslo's free functions over lock files: `external_lock`, `remove_external_lock_file` and the
//! prefix-bound helpers (`lock_with_prefix`, `remove_external_lock_file_with_prefix`).

use std::path::Path;

use crate::config::lock_file_path;
use crate::error::Error;
use crate::fair::{FairLock, FairLocks};
use crate::interprocess::InterProcessLock;
use crate::lock::{LOG_TARGET, LockBuilder, LockGuard, lock};
use crate::semaphore::Semaphores;

/// oslo's `external_lock(name, lock_file_prefix, lock_path)`: the [`InterProcessLock`] on the
/// lock file of `name` (see [`lock_file_path`] for the file's name).
pub fn external_lock(
    name: &str,
    prefix: Option<&str>,
    lock_path: Option<&Path>,
) -> Result<InterProcessLock, Error> {
    Ok(InterProcessLock::with_name(
        name,
        lock_file_path(name, prefix, lock_path)?,
    ))
}

/// Removes the lock file of `name`, safely: oslo's `remove_external_lock_file`.
///
/// Takes the lock (in-process, then the file), unlinks the file while holding it, then
/// releases. A process that was waiting on the old file notices, when it gets it, that the
/// path no longer names it, and moves to the new file: two holders never coexist (oslo
/// deletes without the file lock, which lets them). A missing file is fine. Any other failure
/// is returned, and logged as oslo's WARNING `Failed to remove file PATH`.
pub fn remove_external_lock_file(
    name: &str,
    prefix: Option<&str>,
    lock_path: Option<&Path>,
) -> Result<(), Error> {
    let path = lock_file_path(name, prefix, lock_path)?;
    if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    let result = with_prefix(lock(name), prefix, lock_path)
        .external(true)
        .do_log(false)
        .acquire()
        .and_then(|guard| {
            let removed = guard.with_external_cache(|cache| {
                crate::backend::remove_held_lock_file(cache, name, &path)
            });
            drop(guard);
            removed
        });
    if result.is_err() {
        tracing::warn!(target: LOG_TARGET, lock = name, "Failed to remove file {}", path.display());
    }
    result
}

fn with_prefix<'a>(
    builder: LockBuilder<'a>,
    prefix: Option<&'a str>,
    lock_path: Option<&'a Path>,
) -> LockBuilder<'a> {
    let builder = match prefix {
        Some(prefix) => builder.prefix(prefix),
        None => builder,
    };
    match lock_path {
        Some(path) => builder.lock_path(path),
        None => builder,
    }
}

/// Locks and lock-file removal bound to one lock file prefix: what oslo projects make with
/// `lock_with_prefix('nova')` and `remove_external_lock_file_with_prefix('nova')`.
///
/// ```
/// // once, in the project:
/// static NOVA: std::sync::LazyLock<lockutils::Prefix> =
///     std::sync::LazyLock::new(|| lockutils::lock_with_prefix("nova"));
///
/// // anywhere:
/// let dir = tempfile::tempdir()?;
/// let guard = NOVA.lock("instance-1").external(true).lock_path(dir.path()).acquire()?;
/// assert!(dir.path().join("nova-instance-1").exists());
/// drop(guard);
/// NOVA.remove_external_lock_file("instance-1", Some(dir.path()))?;
/// assert!(!dir.path().join("nova-instance-1").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    prefix: String,
}

impl Prefix {
    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// [`lock`](crate::lock())`(name)` with this prefix.
    pub fn lock<'a>(&'a self, name: &'a str) -> LockBuilder<'a> {
        lock(name).prefix(&self.prefix)
    }

    /// [`remove_external_lock_file`] with this prefix.
    pub fn remove_external_lock_file(
        &self,
        name: &str,
        lock_path: Option<&Path>,
    ) -> Result<(), Error> {
        remove_external_lock_file(name, Some(&self.prefix), lock_path)
    }
}

/// oslo's `lock_with_prefix(prefix)`: locks bound to a lock file prefix.
pub fn lock_with_prefix(prefix: impl Into<String>) -> Prefix {
    Prefix {
        prefix: prefix.into(),
    }
}

/// oslo's `remove_external_lock_file_with_prefix(prefix)`: lock file removal bound to a
/// prefix. The same value as [`lock_with_prefix`] gives.
pub fn remove_external_lock_file_with_prefix(prefix: impl Into<String>) -> Prefix {
    lock_with_prefix(prefix)
}

/// Takes the in-process (non-fair) lock for `name`: oslo's `internal_lock`.
///
/// Uses `semaphores`, or [`Semaphores::global`] for `None`. With `blocking == false`, one try.
/// Logs nothing.
pub fn internal_lock(
    name: &str,
    semaphores: Option<&Semaphores>,
    blocking: bool,
) -> Result<LockGuard, Error> {
    let builder = lock(name).blocking(blocking).do_log(false);
    match semaphores {
        Some(semaphores) => builder.semaphores(semaphores),
        None => builder,
    }
    .acquire()
}

/// The fair lock for `name` in [`FairLocks::global`]: oslo's `internal_fair_lock`.
///
/// Like oslo, this returns the lock itself; take its write side (what `lock(name).fair(true)`
/// does) with [`write`](crate::ReaderWriterLock::write), or its read side.
pub fn internal_fair_lock(name: &str) -> FairLock {
    FairLocks::global().get(name)
}
