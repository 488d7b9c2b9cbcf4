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
//! - [`error`]: the one [`Error`] type.

#![warn(missing_docs)]

pub mod error;
pub mod fair;
pub mod lock;
mod queue;
mod registry;
pub mod rwlock;
pub mod semaphore;
mod sync;

pub use error::Error;
pub use fair::{FairLock, FairLocks};
pub use lock::{LOG_TARGET, LockBuilder, LockGuard, internal_fair_lock, internal_lock, lock};
pub use registry::Named;
pub use rwlock::{Owner, ReadGuard, ReaderWriterLock, WriteGuard};
pub use semaphore::{NamedSemaphore, Semaphore, SemaphoreGuard, Semaphores};
