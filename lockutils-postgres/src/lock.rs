//! [`PgLock`] and [`PgGuard`]: the backend's own locks, shared or exclusive, without an
//! in-process lock.

use std::time::Duration;

use lockutils_core::{Error, LOG_TARGET, Wait};

use crate::*;

/// One advisory lock of a [`PgBackend`], with shared and exclusive sides: the crate's own API,
/// without the in-process lock of [`lockutils::lock`](lockutils_core::lock()). Each guard holds the lock in a session
/// of its own, so guards exclude each other within the process too (the server arbitrates).
///
/// ```no_run
/// let db = lockutils_postgres::PgBackend::new("postgres://app@db/locks")?;
/// let lock = db.lock("catalog", Some("glance"))?;
/// let readers = (lock.read()?, lock.read()?); // shared
/// assert!(lock.try_write().is_err());        // the writer is excluded
/// drop(readers);
/// let writer = lock.write()?;
/// assert!(writer.is_held()?);
/// println!("fencing token {}", writer.fencing_token());
/// # Ok::<(), lockutils::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgLock {
    pub(crate) backend: PgBackend,
    pub(crate) name: String,
    pub(crate) key: i64,
}

impl PgLock {
    /// The full name (prefix included) that the key is the hash of.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The advisory-lock key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Takes the lock in `mode` as `wait` allows.
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<PgGuard<'_>, Error> {
        let held = self.backend.inner.take(&self.name, self.key, mode, wait)?;
        Ok(PgGuard {
            lock: self,
            held: Some(held),
        })
    }

    /// The exclusive side, waiting as long as it takes.
    pub fn write(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// The exclusive side if it is free now ([`Error::AcquireLockFailed`] otherwise).
    pub fn try_write(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::Never)
    }

    /// The exclusive side, waiting at most `timeout` (the server's `lock_timeout`).
    pub fn try_write_for(&self, timeout: Duration) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::For(timeout))
    }

    /// The shared side, waiting as long as it takes.
    pub fn read(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// The shared side if it is free now.
    pub fn try_read(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::Never)
    }

    /// The shared side, waiting at most `timeout`.
    pub fn try_read_for(&self, timeout: Duration) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::For(timeout))
    }
}

/// A held [`PgLock`]; released when dropped (a failed release is logged), or with
/// [`release`](Self::release) to see the outcome. Either waits for the server to confirm
/// the release (for a guard of an awaited acquire, at most [`RELEASE_TIMEOUT`]).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct PgGuard<'a> {
    pub(crate) lock: &'a PgLock,
    pub(crate) held: Option<Held>,
}

impl PgGuard<'_> {
    /// The side held.
    pub fn mode(&self) -> Mode {
        self.held().mode
    }

    /// The fencing token of this acquisition: greater than that of every acquisition before
    /// it on the server.
    pub fn fencing_token(&self) -> i64 {
        self.held().token
    }

    /// Whether the lock's session still holds it, asking the server (at most
    /// [`IS_HELD_TIMEOUT`]). `Ok(false)` when the session is gone (server restarted,
    /// connection lost); an error when it cannot tell. Either way, stop acting as the holder.
    pub fn is_held(&self) -> Result<bool, Error> {
        self.lock
            .backend
            .inner
            .is_held(&self.lock.name, self.held())
    }

    /// Releases the lock; an error says that the session failed or no longer held it (the
    /// lock is not held after this either way).
    pub fn release(mut self) -> Result<(), Error> {
        let held = self.held.take().expect("held until release");
        self.lock.backend.inner.release(&self.lock.name, held)
    }

    pub(crate) fn held(&self) -> &Held {
        self.held.as_ref().expect("held until release")
    }
}

impl Drop for PgGuard<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Err(e) = self.lock.backend.inner.release(&self.lock.name, held)
        {
            tracing::warn!(target: LOG_TARGET, lock = self.lock.name.as_str(), "{e}");
        }
    }
}

impl std::fmt::Debug for PgGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGuard")
            .field("name", &self.lock.name)
            .field("mode", &self.mode())
            .field("fencing_token", &self.fencing_token())
            .finish()
    }
}
