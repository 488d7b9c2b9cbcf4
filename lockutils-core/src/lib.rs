//! The runtime of [lockutils](https://docs.rs/lockutils): named in-process locks with the names
//! and behaviour of OpenStack's `oslo_concurrency.lockutils`.
//!
//! Depend on the `lockutils` facade crate rather than on this one; it re-exports everything
//! here and holds the user documentation.
//!
//! # Layout
//! - `queue`: the one fair FIFO waiter queue (a counting semaphore) under every primitive.
//! - [`semaphore`]: [`Semaphore`] and the [`Semaphores`] registry.
//! - [`rwlock`]: [`ReaderWriterLock`], fasteners' semantics.
//! - [`fair`]: [`FairLocks`], the registry of fair (reader/writer) locks.
//! - `registry`: the sharded, garbage-collected name map behind both registries.
//! - [`lock`](mod@lock): the [`lock()`] builder and its [`LockGuard`].
//! - [`config`]: lock directories, `[oslo_concurrency]` options, lock file names.
//! - `file`: lock files and the OS record locks on them.
//! - [`lock_dir`]: a lock directory as a whole: listing its lock files and removing unused
//!   ones safely (Linux).
//! - `file_wait`: waiting for a lock file on behalf of an async task (helper threads).
//! - `timer`: the runtime-agnostic timer behind async timeouts.
//! - [`external`]: the external-lock backend trait, the file backend, [`InterProcessLock`],
//!   [`InterProcessReaderWriterLock`] and oslo's removal and prefix helpers.
//! - [`backend`]: which external backend `external(true)` uses (code, `backend_url`,
//!   `LOCKUTILS_BACKEND_URL`, registered URL schemes).
//! - [`error`]: the one [`Error`] type.

#![warn(missing_docs)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
pub mod backend;
pub mod config;
pub mod error;
pub mod external;
pub mod fair;
mod file;
mod file_wait;
mod interprocess;
pub mod lock;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod lock_dir;
mod oslo;
mod queue;
mod registry;
pub mod rwlock;
pub mod semaphore;
mod sync;
mod timer;

pub use backend::{BackendFactory, external_backend, register_backend, set_external_backend};
pub use config::{
    BACKEND_URL_ENV, LOCK_PATH_ENV, LockConfig, configure, current_config, get_lock_path,
    lock_file_name, lock_file_path, parse_duration, redact_url, set_defaults,
};
pub use error::Error;
pub use external::{
    AcquireFuture, DEFAULT_DELAY, ExternalBackend, ExternalCache, ExternalTarget, FileBackend,
    InterProcessGuard, InterProcessLock, InterProcessReadGuard, InterProcessReaderWriterLock,
    InterProcessWriteGuard, MAX_KEPT_DESCRIPTORS, Prefix, external_lock, lock_with_prefix,
    remove_external_lock_file, remove_external_lock_file_with_prefix,
};
pub use fair::{FairLock, FairLocks};
pub use file::{DEFAULT_DIRECTORY_MODE, lock_directory_mode, set_lock_directory_mode};
pub use lock::{AsyncLockGuard, LOG_TARGET, LockBuilder, LockGuard, lock};
pub use oslo::{internal_fair_lock, internal_lock};
pub use queue::Wait;
pub use registry::Named;
pub use rwlock::{AsyncReadGuard, AsyncWriteGuard, Owner, ReadGuard, ReaderWriterLock, WriteGuard};
pub use semaphore::{NamedSemaphore, Semaphore, SemaphoreGuard, Semaphores};
