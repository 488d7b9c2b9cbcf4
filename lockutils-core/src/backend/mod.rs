//! External-lock backends: the [`ExternalBackend`] trait, the file backend
//! ([`FileBackend`], lock files as oslo's), and which backend takes the external locks of [`lock`](crate::lock())`(..)
//! .external(true)` and `#[synchronized(.., external = true)]`.
//!
//! # Selection
//! For each external acquire, the first of these that applies wins:
//! 1. the lock's own [`.backend(..)`](crate::LockBuilder::backend);
//! 2. the process-wide backend set from code with [`set_external_backend`];
//! 3. the URL of the configuration in force: the `backend_url` option of
//!    `[oslo_concurrency]` given to [`configure`](crate::configure), else the
//!    `LOCKUTILS_BACKEND_URL` environment variable. Its scheme names a backend registered
//!    with [`register_backend`] (a backend crate's `install()` does that);
//! 4. lock files ([`FileBackend`]), as oslo.
//!
//! A URL whose scheme nobody registered makes every external acquire fail with
//! [`Error::Backend`], naming the lock, the URL (without its password) and the fix: locks
//! never silently fall back to files, which would not exclude the other hosts.
//!
//! The URL is read again after each [`configure`](crate::configure) or
//! [`set_defaults`](crate::set_defaults); one backend is made per distinct URL and kept for
//! the life of the process (it owns the connection pool).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;
use crate::queue::{Mode, Wait};

mod file;
/// The idle closer of lock files, for the tests of the floors above.
#[cfg(test)]
pub(crate) use file::close_idle_descriptors;
mod select;

pub use file::FileBackend;
#[cfg(unix)]
pub(crate) use file::held_file_descriptor;
pub(crate) use file::remove_held_lock_file;
pub use select::{
    BackendFactory, BackendsByUrl, backend_for_url, external_backend, install_backend,
    register_backend, set_external_backend,
};

/// Which external lock to take: what a backend needs to find it.
#[derive(Debug, Clone, Copy)]
pub struct ExternalTarget<'a> {
    /// The lock's name, as given to [`lock`](crate::lock()).
    pub name: &'a str,
    /// The lock file prefix, if any.
    pub prefix: Option<&'a str>,
    /// The lock directory given with the lock, if any.
    pub lock_path: Option<&'a Path>,
    /// For polling backends, the longest pause between two tries of a timed wait.
    pub delay: Duration,
    /// Which side: [`Mode::Shared`] only for a backend whose
    /// [`supports_shared`](ExternalBackend::supports_shared) says it can.
    pub mode: Mode,
    /// Whether the lock was asked for fair ([`LockBuilder::fair`](crate::LockBuilder::fair)):
    /// a backend that can serve waiters of all processes in arrival order does so (lock
    /// files do, on Linux); the others serve them in their own order.
    pub fair: bool,
}

/// State a backend keeps for one lock name while the name's in-process lock exists (an
/// open file, a connection...). Only touched while the in-process lock is held.
#[derive(Default)]
pub struct ExternalCache {
    state: Option<Box<dyn Any + Send + Sync>>,
    /// How many guards of this name's (reentrant) in-process lock hold the external lock.
    /// Only the first takes it from the backend and only the last releases it: a nested
    /// `lock(n).fair(true).external(true)` does not drop the outer one's file lock (oslo does).
    pub(crate) depth: usize,
    /// The backend holding the external lock while `depth > 0`.
    pub(crate) holder: Option<&'static dyn ExternalBackend>,
}

impl ExternalCache {
    /// The backend's state of type `T`, created with `init` if missing or of another type.
    pub fn get_or_insert_with<T: Any + Send + Sync>(&mut self, init: impl FnOnce() -> T) -> &mut T {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        self.state
            .as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .expect("state of type T was just ensured")
    }

    /// Counts one more guard level holding the external lock through `backend`.
    pub(crate) fn enter(&mut self, backend: &'static dyn ExternalBackend) {
        self.depth += 1;
        self.holder = Some(backend);
    }

    /// Drops whatever state is kept.
    pub fn clear(&mut self) {
        self.state = None;
    }
}

impl fmt::Debug for ExternalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalCache")
            .field("filled", &self.state.is_some())
            .finish()
    }
}

/// What a registry keeps per name that holds the name's [`ExternalCache`] (the lock layer
/// decides what else it keeps there), so that this floor can reach the caches without
/// knowing the rest.
pub(crate) trait HasExternalCache {
    /// The name's external-lock state.
    fn external_cache(&self) -> &Mutex<ExternalCache>;
}

impl HasExternalCache for Mutex<ExternalCache> {
    fn external_cache(&self) -> &Mutex<ExternalCache> {
        self
    }
}

/// How lockutils holds a lock outside the process. [`lock`](crate::lock()) calls it with the
/// in-process lock of the name held, so a backend never sees two concurrent calls for one
/// name from one process (fair and non-fair locks of a name are distinct, as in oslo).
pub trait ExternalBackend: Send + Sync {
    /// Takes the external lock of `target` as `wait` allows. Busy and not allowed to wait
    /// (long enough) is [`Error::AcquireLockFailed`].
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error>;

    /// Releases what [`acquire`](Self::acquire) took for the lock `name`; on an error the
    /// lock must be released all the same (by closing what holds it).
    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error>;

    /// Whether what `cache` holds (after an `acquire` not yet released) is the external lock
    /// of `target`. A reentrant in-process holder asking again with another prefix or lock
    /// path asks for a different lock, which it must not be told it holds.
    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error>;

    /// [`acquire`](Self::acquire) for an async task, without blocking the thread: what
    /// [`LockBuilder::acquire_async`](crate::LockBuilder::acquire_async) with `external(true)` awaits. `cache` may be locked only
    /// between awaits (never across one); `deadline` is when a `Wait::For` wait ends. Dropping
    /// the future before it completes must leave nothing held (or have it let go as soon as
    /// it is got).
    ///
    /// The default fails with [`Error::Backend`]: a backend that cannot be awaited says so
    /// rather than blocking an executor thread.
    fn acquire_async<'a>(
        &'a self,
        target: ExternalTarget<'a>,
        cache: &'a Mutex<ExternalCache>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> AcquireFuture<'a> {
        let _ = (cache, wait, deadline);
        let error = Error::backend(
            target.name,
            self.describe(),
            "this external-lock backend cannot be awaited: use acquire() on a blocking thread, \
             or enable the backend's async support",
        );
        Box::pin(std::future::ready(Err(error)))
    }

    /// Whether this backend can take the shared side ([`Mode::Shared`] in
    /// [`ExternalTarget::mode`]): many holders at once, none exclusive. The default is
    /// `false`: `lock(name).shared(true).external(true)` then fails with [`Error::Backend`]
    /// saying so, rather than locking exclusively.
    fn supports_shared(&self) -> bool {
        false
    }

    /// What this backend locks, for messages: e.g. its server's URL without the password.
    /// Must hold no secret.
    fn describe(&self) -> String {
        "external-lock backend".to_owned()
    }

    /// Whether the external lock that `cache` holds (after an `acquire` not yet released) is
    /// still held: a lock that lives in a server session is lost with the session. An error
    /// says why it is not known (and the lock must then be taken as lost). The default, for
    /// locks that cannot be lost while the process lives, is `Ok(true)`.
    fn is_held(&self, name: &str, cache: &mut ExternalCache) -> Result<bool, Error> {
        let _ = (name, cache);
        Ok(true)
    }

    /// The locks this backend's server reports as held now, by anyone (this process or
    /// another, lockutils or not), whose lockutils name starts with `prefix` (all with
    /// `None`): what `lockutils list --backend-url` prints. The default fails with
    /// [`Error::Backend`]: a backend that cannot list says so.
    fn list_held(&self, prefix: Option<&str>) -> Result<Vec<HeldExternalLock>, Error> {
        let _ = prefix;
        Err(Error::backend(
            "*",
            self.describe(),
            "this external-lock backend cannot list the locks it holds",
        ))
    }

    /// A fencing token of the acquisition that `cache` holds: a number that grows strictly
    /// from one acquisition of any lock of the backend to the next, for storage that refuses
    /// writes with a token older than the last one it saw. `None` if the backend has none.
    fn fencing_token(&self, cache: &mut ExternalCache) -> Option<i64> {
        let _ = cache;
        None
    }
}

/// One lock that a backend's server reports as held: an item of
/// [`ExternalBackend::list_held`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldExternalLock {
    /// The lock's name, as lockutils would spell it (with its prefix, if any).
    pub name: String,
    /// How long the server keeps the lock if its holder stops renewing it (a lease's time
    /// to live); `None` for locks that live as long as their holder's session.
    pub expires_in: Option<Duration>,
    /// What else the server says about the holder (a session, a lease id...), if anything.
    /// Holds no secret.
    pub detail: Option<String>,
}

impl HeldExternalLock {
    /// A held lock named `name`, with nothing else known.
    pub fn new(name: impl Into<String>) -> Self {
        HeldExternalLock {
            name: name.into(),
            expires_in: None,
            detail: None,
        }
    }

    /// With the time left before the server lets the lock go unless renewed.
    #[must_use]
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }

    /// With what else the server says about the holder.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The future of [`ExternalBackend::acquire_async`].
pub type AcquireFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;
