//! The runtime of [lockutils](https://docs.rs/lockutils): named in-process locks with the names
//! and behaviour of OpenStack's `oslo_concurrency.lockutils`.
//!
//! Depend on the `lockutils` facade crate rather than on this one; it re-exports everything
//! here and holds the user documentation.
//!
//! # Layout
//! The modules stand on floors, each using only those below it (`ARCHITECTURE.md` at the
//! repository's root draws them; `scripts/check-layers` keeps them):
//! 0. `queue` (the one fair waiter queue, [`Wait`]), `timer`, [`error`];
//! 1. `registry`, [`semaphore`], [`rwlock`], [`fair`];
//! 2. [`config`] (options, INI files, lock file paths, durations);
//! 3. `file` (lock files, their directories, descriptor limits), `file_wait`, [`lock_dir`]
//!    (Linux), `interprocess` ([`InterProcessLock`], [`InterProcessReaderWriterLock`]);
//! 4. [`backend`] (the [`ExternalBackend`] trait, the file backend, selection);
//! 5. [`lock`](mod@lock) (the [`lock()`] builder, its guards, oslo's log lines);
//! 6. `oslo` (oslo's helpers), [`external`] (the external-lock API gathered).

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
pub mod raw;
mod registry;
pub mod rwlock;
pub mod semaphore;
mod sync;
mod timer;

pub use backend::{
    BackendFactory, BackendsByUrl, HeldExternalLock, backend_for_url, external_backend,
    install_backend, register_backend, set_external_backend,
};
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
pub use queue::{Mode, Wait};
pub use raw::{GuardNoSend, GuardSend, RawGuard, RawLock};
pub use registry::Named;
pub use rwlock::{
    AsyncReadGuard, AsyncWriteGuard, Owner, ReadGuard, ReadSide, ReaderWriterLock, WriteGuard,
    WriteSide,
};
pub use semaphore::{NamedSemaphore, Semaphore, SemaphoreGuard, Semaphores};
