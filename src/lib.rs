//! # lockutils
//!
//! Named locks for Rust services, with the names and behaviour of OpenStack's
//! `oslo_concurrency.lockutils` — and stricter and faster than it.
//!
//! A critical section is guarded by a lock *name*: every user of the name `"instance-42"` in
//! the process shares one lock, created on first use and dropped when nobody uses it any more.
//!
//! ```
//! // Exclusive section for one instance; the guard releases on drop (also on panic).
//! let guard = lockutils::lock("instance-42").acquire()?;
//! assert_eq!(guard.name(), "instance-42");
//! drop(guard);
//! # Ok::<(), lockutils::Error>(())
//! ```
//!
//! ## The pieces
//! - [`lock()`] — the builder most code uses: `.blocking(false)`, `.timeout(d)`, `.fair(true)`,
//!   `.semaphores(&s)`, `.fair_locks(&f)`, `.do_log(false)`, then `.acquire()` for a
//!   [`LockGuard`]. Failing to get a lock is [`Error::AcquireLockFailed`], displayed as
//!   oslo's `Failed to acquire the lock NAME`.
//! - [`Semaphores`] and [`FairLocks`] — garbage-collected registries of named locks. Separate
//!   instances are separate namespaces; the global ones back [`lock()`].
//! - [`Semaphore`] — a counting semaphore; [`ReaderWriterLock`] — fasteners' reader/writer
//!   lock (reentrant, writer-preferring, no upgrades).
//! - [`internal_lock`] and [`internal_fair_lock`] — oslo's free functions.
//!
//! ## Guarantees
//! - **Fairness.** Every primitive sits on one FIFO waiter queue: waiters are served in the
//!   order they arrived, and a non-blocking try never jumps the queue.
//! - **Reentrancy.** Fair locks and both sides of a [`ReaderWriterLock`] are reentrant for the
//!   holding thread; the default (semaphore) lock is not, as in oslo.
//! - **Timeouts and tries leave nothing behind.** A waiter that gives up leaves the queue.
//! - **No panics on user input.** Every acquire path reports problems as an [`Error`] that
//!   names the lock.
//!
//! ## `#[synchronized]`
//! oslo's decorator, as an attribute: the function runs with the lock held. What a lock
//! failure becomes is decided by the compiler from the return type, aliases seen through: a
//! `Result<_, E>` with `E: From<lockutils::Error>` returns `Err(e.into())`; a `Result<_, E>`
//! whose `E` lacks that `From` is a compile error saying so (implement it, or write
//! `on_lock_error = "panic"`); any other type panics, whatever it is called. `blocking = false`
//! and `timeout` need the first kind. The generated code adds no warning to your crate. See
//! [`macro@synchronized`] for the arguments, and [`synchronized_with_prefix!`] to bind a
//! project's lock file prefix once.
//!
//! ```
//! use lockutils::synchronized;
//!
//! struct Instance {
//!     uuid: String,
//! }
//!
//! #[synchronized(format!("instance-{}", instance.uuid), timeout = "5s")]
//! fn reboot(instance: &Instance) -> Result<(), lockutils::Error> {
//!     Ok(()) // one reboot per instance at a time
//! }
//! # reboot(&Instance { uuid: "1".into() }).unwrap();
//! ```
//!
//! ## Across processes
//! `lock(name).external(true)` also takes a lock file in the lock directory, so that
//! processes on one host exclude each other, Python oslo.concurrency processes included:
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let guard = lockutils::lock("instance-42")
//!     .external(true)
//!     .prefix("nova")
//!     .lock_path(dir.path())
//!     .acquire()?;
//! assert!(dir.path().join("nova-instance-42").exists());
//! # drop(guard);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - **File names are oslo's**: `/` in the name becomes `_`, the prefix is joined with `-`
//!   ([`lock_file_path`]). The directory is the lock's `.lock_path()`, else the configured one
//!   ([`configure`], [`set_defaults`], then `OSLO_LOCK_PATH`), else
//!   [`Error::LockPathRequired`]. [`LockConfig::from_ini_file`] reads a `nova.conf`.
//! - **The lock primitive** on Linux is the open-file-description lock (`F_OFD_SETLK`), which
//!   conflicts with the POSIX record locks Python takes, and is owned by the open file (so
//!   threads with their own descriptors exclude each other too). It is never `flock(2)`.
//! - **Waiting** without a timeout blocks in the kernel: the waiter gets the lock the moment
//!   the holder releases it or dies. Timed waits try with growing pauses up to `.delay()`.
//! - **Files** are created as needed (with their directories), opened with `O_CLOEXEC` (no
//!   descriptor leaks into children) and `O_NOFOLLOW` (a planted symbolic link is refused),
//!   never truncated, never deleted on release. Names that cannot be a file in the lock
//!   directory are [`Error::InvalidName`].
//! - **Deleting lock files is safe** with [`remove_external_lock_file`]: it deletes while
//!   holding the lock, and a waiter that then gets the deleted file notices and moves on to
//!   the new one. The open descriptor of a name is kept while its in-process lock exists.
//! - [`external_lock`] / [`InterProcessLock`] and [`InterProcessReaderWriterLock`] are the
//!   file locks on their own; [`lock_with_prefix`] binds a prefix once per project.
//!
//! ## Across hosts
//! The external lock comes from a backend ([`ExternalBackend`]): lock files unless another is
//! selected — for one lock with [`LockBuilder::backend`], for the process with
//! [`set_external_backend`], or by the URL of the configuration (`backend_url` in
//! `[oslo_concurrency]`, else [`BACKEND_URL_ENV`], `LOCKUTILS_BACKEND_URL`) whose scheme a
//! backend crate registered with [`register_backend`]. The `lockutils-postgres` crate is such a
//! backend, on PostgreSQL advisory locks: `lockutils_postgres::install()`, then
//! `LOCKUTILS_BACKEND_URL=postgres://...`, and `external(true)` locks exclude across hosts.
//! A URL whose scheme nobody registered is an [`Error::Backend`], never a silent fallback to
//! files. [`LockGuard::is_external_held`] and [`LockGuard::fencing_token`] tell a holder
//! whether a lock held on a server is still its own.
//!
//! ## Logs
//! With `do_log(true)` (the default) [`lock()`] writes oslo's DEBUG lines through `tracing`
//! on target [`LOG_TARGET`] (`"lockutils"`): `Acquiring lock "NAME"`, `Acquired lock "NAME"`,
//! `Releasing lock "NAME"`, and `Acquired external semaphore "NAME"` for external locks,
//! with the name also in the structured field `lock`.

#![warn(missing_docs)]

pub use lockutils_core::{
    AcquireFuture, BACKEND_URL_ENV, BackendFactory, BackendsByUrl, HeldExternalLock,
    backend_for_url, external_backend, install_backend, lock_file_name, redact_url,
    register_backend, set_external_backend,
};
pub use lockutils_core::{
    AsyncLockGuard, AsyncReadGuard, AsyncWriteGuard, DEFAULT_DELAY, Error, ExternalBackend,
    ExternalCache, ExternalTarget, FairLock, FairLocks, FileBackend, GuardNoSend, GuardSend,
    InterProcessGuard, InterProcessLock, InterProcessReadGuard, InterProcessReaderWriterLock,
    InterProcessWriteGuard, LOCK_PATH_ENV, LOG_TARGET, LockBuilder, LockConfig, LockGuard,
    MAX_KEPT_DESCRIPTORS, Mode, Named, NamedSemaphore, Owner, Prefix, RawGuard, RawLock, ReadGuard,
    ReadSide, ReaderWriterLock, Semaphore, SemaphoreGuard, Semaphores, Wait, WriteGuard, WriteSide,
    configure, current_config, external_lock, get_lock_path, internal_fair_lock, internal_lock,
    lock, lock_file_path, lock_with_prefix, parse_duration, remove_external_lock_file,
    remove_external_lock_file_with_prefix, set_defaults,
};
pub use lockutils_core::{DEFAULT_DIRECTORY_MODE, lock_directory_mode, set_lock_directory_mode};
pub use lockutils_macros::{synchronized, synchronized_with_prefix};

/// A lock directory as a whole: listing its lock files and removing unused ones safely
/// (Linux; what `lockutils list` and `lockutils clean` use).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod lock_dir {
    pub use lockutils_core::lock_dir::*;
}

/// The README's Rust examples, compiled and run as doctests so that none can rot or hang.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Support for the code the macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use lockutils_core::__private::*;
    pub use lockutils_macros::synchronized_prefixed;
}
