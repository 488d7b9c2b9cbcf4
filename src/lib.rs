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
//! ## Logs
//! With `do_log(true)` (the default) [`lock()`] writes oslo's DEBUG lines through `tracing`
//! on target [`LOG_TARGET`] (`"lockutils"`): `Acquiring lock "NAME"`, `Acquired lock "NAME"`,
//! `Releasing lock "NAME"`, with the name also in the structured field `lock`.

#![warn(missing_docs)]

pub use lockutils_core::{
    Error, FairLock, FairLocks, LOG_TARGET, LockBuilder, LockGuard, Named, NamedSemaphore, Owner,
    ReadGuard, ReaderWriterLock, Semaphore, SemaphoreGuard, Semaphores, WriteGuard,
    internal_fair_lock, internal_lock, lock,
};
