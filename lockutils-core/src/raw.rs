//! The raw-lock abstraction: what every lock of the crate is underneath its guards.
//!
//! A raw lock is state only: [`lock`](RawLock::lock), [`try_lock`](RawLock::try_lock),
//! [`try_lock_until`](RawLock::try_lock_until) and an `unsafe` [`unlock`](RawLock::unlock).
//! The wait-forever / try-once / wait-until trio that every acquire chooses from is written
//! once, on top ([`RawLock::lock_with`]), and so is the guard ([`RawGuard`]), which releases
//! on drop and is `Send` or not as the lock's [`GuardMarker`](RawLock::GuardMarker) says.
//! Releasing by hand is `unsafe`: only the holder may, so a guard never meets a lock that
//! was released under it and never has to ignore a "not held".
//!
//! Implemented by the [`Semaphore`](crate::Semaphore) (one permit), both sides of the
//! [`ReaderWriterLock`](crate::ReaderWriterLock) ([`ReadSide`](crate::rwlock::ReadSide),
//! [`WriteSide`](crate::rwlock::WriteSide)) and the gated lock file of
//! [`InterProcessLock`](crate::InterProcessLock). External-lock backends implement the
//! same four operations in [`ExternalBackend`](crate::ExternalBackend) (`acquire` with a
//! [`Wait`], `release`), with the state of one name passed in.

use std::fmt;
use std::marker::PhantomData;
use std::time::Instant;

use crate::error::Error;
use crate::queue::Wait;

/// [`RawLock::GuardMarker`] of locks whose guards may move to another thread.
#[derive(Debug)]
pub struct GuardSend(());

/// [`RawLock::GuardMarker`] of locks held per thread: their guards are neither `Send` nor
/// `Sync`, and are released by the thread that took them.
#[derive(Debug)]
pub struct GuardNoSend(PhantomData<*const ()>);

/// A lock without a guard: take it, try it, try it until a deadline, release it.
///
/// # Safety
/// An implementation must exclude as it documents (one holder of an exclusive lock, only
/// sharers of a shared one) from a successful `lock`/`try_lock`/`try_lock_until` until the
/// matching [`unlock`](Self::unlock); and if its holding is tied to a thread, its
/// `GuardMarker` must be [`GuardNoSend`].
pub unsafe trait RawLock {
    /// [`GuardSend`] or [`GuardNoSend`]: whether a [`RawGuard`] of this lock is `Send`.
    type GuardMarker;

    /// Takes the lock, waiting as long as it takes.
    fn lock(&self) -> Result<(), Error>;

    /// Takes the lock if that needs no waiting; `Ok(false)` if it is busy.
    fn try_lock(&self) -> Result<bool, Error>;

    /// Takes the lock, waiting until `deadline` at the latest; `Ok(false)` if it was still
    /// busy then, with nothing held or queued.
    fn try_lock_until(&self, deadline: Instant) -> Result<bool, Error>;

    /// Releases one hold of the lock.
    ///
    /// # Safety
    /// The caller holds the lock (on this thread, for a [`GuardNoSend`] lock), through an
    /// acquisition that no guard stands for and that no one else releases.
    unsafe fn unlock(&self);

    /// Takes the lock as `wait` allows: the trio, written once. `Ok(false)` if it was busy
    /// (for [`Wait::Never`]) or stayed busy (for [`Wait::For`]), with nothing held.
    #[inline]
    fn lock_with(&self, wait: Wait) -> Result<bool, Error> {
        match wait {
            Wait::Never => self.try_lock(),
            Wait::Forever => self.lock().map(|()| true),
            Wait::For(timeout) => match Instant::now().checked_add(timeout) {
                Some(deadline) => self.try_lock_until(deadline),
                // A deadline past the end of time is no deadline.
                None => self.lock().map(|()| true),
            },
        }
    }
}

/// A held [`RawLock`], released when dropped (also during a panic): the guard type of every
/// lock built on the trait.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct RawGuard<'a, R: RawLock + ?Sized> {
    raw: &'a R,
    _marker: PhantomData<R::GuardMarker>,
}

impl<'a, R: RawLock + ?Sized> RawGuard<'a, R> {
    /// The guard of a hold of `raw`.
    ///
    /// # Safety
    /// The caller holds `raw` (on this thread, for a [`GuardNoSend`] lock) and hands that
    /// hold to the guard: nothing else will release it.
    #[inline]
    pub unsafe fn new(raw: &'a R) -> Self {
        RawGuard {
            raw,
            _marker: PhantomData,
        }
    }

    /// Takes `raw` as `wait` allows: `Ok(None)` if it was (or stayed) busy.
    #[inline]
    pub fn acquire(raw: &'a R, wait: Wait) -> Result<Option<Self>, Error> {
        // SAFETY: `lock_with` returned true: the lock is held, by this thread, and only the
        // guard will release it.
        Ok(raw.lock_with(wait)?.then(|| unsafe { Self::new(raw) }))
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a R {
        self.raw
    }
}

impl<R: RawLock + ?Sized> Drop for RawGuard<'_, R> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard stands for one hold of the lock (`new`'s contract), released only
        // here; a `GuardNoSend` guard cannot have left the thread that took it.
        unsafe { self.raw.unlock() }
    }
}

impl<R: RawLock + fmt::Debug + ?Sized> fmt::Debug for RawGuard<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawGuard").field("lock", &self.raw).finish()
    }
}
