//! The one fair waiter queue under every in-process primitive.
//!
//! [`RawSemaphore`] is a counting semaphore whose waiters form a strict FIFO queue. The
//! semaphore, the fair lock and both sides of the reader/writer lock are thin layers over it
//! (a writer asks for all permits at once), so fairness, cancellation and wake-up are written
//! and model-checked once, here.
//!
//! # Design
//! - `state` packs the free permits (`state >> 1`) with a `QUEUED` bit. While the bit is clear
//!   the queue is empty and acquire/release are single compare-and-swaps on `state`, with no
//!   lock taken. While it is set, every change of `state` happens under the queue's mutex, and
//!   a try-acquire fails: nobody jumps the queue.
//! - Permits released while waiters queue are handed directly to the head of the queue, as
//!   many waiters as the permits cover, in order. Waiters never race for a permit after being
//!   woken, so there are no stampedes and no starvation.
//! - Invariant, under the mutex: either the queue is empty and `QUEUED` is clear, or the queue
//!   is non-empty, `QUEUED` is set, and the free permits do not cover the head's request.
//! - A waiter is woken through a [`Waker`]. A blocked thread uses a waker that unparks it; an
//!   async task (later) uses its own. Two ways to wait, one queue.
//! - A waiter that gives up (timeout, or a dropped future) leaves through [`RawSemaphore::cancel`],
//!   which either removes it from the queue or, if the permits were granted just before, reports
//!   that the caller now owns them.

use std::collections::VecDeque;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::sync::{
    Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Thread, current, park, park_timeout,
};
use crate::timer::Deadline;

const QUEUED: usize = 1;
const SHIFT: u32 = 1;

/// Rounds of [`RawSemaphore::spin_try_acquire`]: half busy-waiting with growing pauses, half
/// yielding the processor.
const SPIN_ROUNDS: u32 = 10;

/// The largest number of permits a [`RawSemaphore`] can hold.
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// One try.
    Never,
    /// Up to this long.
    For(Duration),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// The policy for oslo's `blocking` flag and an optional timeout (`blocking` wins).
    pub fn new(blocking: bool, timeout: Option<Duration>) -> Self {
        match (blocking, timeout) {
            (false, _) => Wait::Never,
            (true, Some(timeout)) => Wait::For(timeout),
            (true, None) => Wait::Forever,
        }
    }

    /// How long a caller that gave up under this policy waited, as errors report it.
    pub fn waited(self) -> Option<Duration> {
        match self {
            Wait::For(timeout) => Some(timeout),
            Wait::Never | Wait::Forever => None,
        }
    }

    /// The deadline of a wait under this policy that starts now: `Some` only for
    /// [`Wait::For`] (and `None` for a timeout too long to add to the clock).
    #[inline]
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Wait::For(timeout) => Instant::now().checked_add(timeout),
            Wait::Never | Wait::Forever => None,
        }
    }

    /// What is left of this policy, for a wait that started with `deadline` (from
    /// [`deadline`](Self::deadline)): [`Wait::For`] the time left (zero once it has passed);
    /// the policy itself otherwise. Each step of a multi-step acquire waits with this, so
    /// that the whole acquire keeps to one timeout.
    #[inline]
    pub fn remaining(self, deadline: Option<Instant>) -> Wait {
        match (self, deadline) {
            (Wait::For(_), Some(deadline)) => {
                Wait::For(deadline.saturating_duration_since(Instant::now()))
            }
            _ => self,
        }
    }

    /// Whether a wait under this policy that started with `deadline` is out of time: always
    /// for [`Wait::Never`] (after its one try), never for [`Wait::Forever`].
    #[inline]
    pub fn is_over(self, deadline: Option<Instant>) -> bool {
        match self {
            Wait::Never => true,
            Wait::For(_) => deadline.is_some_and(|d| Instant::now() >= d),
            Wait::Forever => false,
        }
    }
}

/// Which side of a lock: shared by any number of holders, or exclusive to one. One type for
/// every layer: the reader/writer side in-process, the read or write lock on a lock file,
/// a shared or exclusive lock on a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Many holders at once (a read lock), none exclusive.
    Shared,
    /// One holder (a write lock): the default.
    #[default]
    Exclusive,
}

/// A fair counting semaphore: the shared core of all in-process locks.
#[derive(Debug)]
pub(crate) struct RawSemaphore {
    state: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

/// One queued request for `needed` permits.
#[derive(Debug)]
pub(crate) struct Waiter {
    needed: usize,
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Waiter {
    /// Whether the permits have been handed to this waiter.
    pub(crate) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    /// Makes `waker` the one woken on the grant (a task may move between polls).
    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// Waits for `n` permits without blocking a thread: the async way to wait on the same queue.
///
/// Cancel-safe: dropped before it completes, it leaves the queue, and permits granted to it
/// in the meantime are given back. Once it returns `Ready`, the caller owns the permits.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Acquire<'a> {
    sem: &'a RawSemaphore,
    n: usize,
    waiter: Option<Arc<Waiter>>,
}

impl<'a> Acquire<'a> {
    pub(crate) fn new(sem: &'a RawSemaphore, n: usize) -> Self {
        Self {
            sem,
            n,
            waiter: None,
        }
    }
}

impl std::future::Future for Acquire<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(waiter) = &this.waiter else {
            if this.sem.try_acquire(this.n) {
                return Poll::Ready(());
            }
            return match this.sem.enqueue(this.n, cx.waker().clone()) {
                Ok(()) => Poll::Ready(()),
                Err(waiter) => {
                    this.waiter = Some(waiter);
                    Poll::Pending
                }
            };
        };
        if !waiter.is_granted() {
            // Register first, then look again: a grant in between either sees the new waker
            // or is seen here. (Granting sets the flag, then takes the waker.)
            waiter.register(cx.waker());
            if !waiter.is_granted() {
                return Poll::Pending;
            }
        }
        this.waiter = None;
        Poll::Ready(())
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take()
            && self.sem.cancel(&waiter)
        {
            // Granted just before the cancel: the permits are ours to give back.
            self.sem.release(self.n);
        }
    }
}

/// Permits held for a while (an in-process gate passed while something else is waited
/// for), given back when dropped: on an error, a cancelled future, or the step's end.
pub(crate) struct Permits<'a> {
    sem: &'a RawSemaphore,
    n: usize,
}

impl<'a> Permits<'a> {
    /// Stands for `n` permits of `sem` that the caller holds.
    pub(crate) fn taken(sem: &'a RawSemaphore, n: usize) -> Self {
        Permits { sem, n }
    }

    /// Keeps the permits held (they are the caller's again to release).
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Permits<'_> {
    fn drop(&mut self) {
        self.sem.release(self.n);
    }
}

/// Wakes a thread blocked in [`RawSemaphore::acquire`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

fn thread_waker() -> Waker {
    Waker::from(std::sync::Arc::new(ThreadWaker(current())))
}

impl RawSemaphore {
    /// A semaphore with `permits` free permits (at most [`MAX_PERMITS`]).
    pub(crate) fn new(permits: usize) -> Self {
        debug_assert!(permits <= MAX_PERMITS);
        Self {
            state: AtomicUsize::new(permits.min(MAX_PERMITS) << SHIFT),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Free permits right now (those not held and not yet handed to a waiter).
    pub(crate) fn available(&self) -> usize {
        self.state.load(Ordering::Acquire) >> SHIFT
    }

    /// Whether exactly `permits` permits are free and nobody queues: the state of a lock that
    /// nobody holds or waits on.
    pub(crate) fn is_untouched(&self, permits: usize) -> bool {
        self.state.load(Ordering::Acquire) == permits << SHIFT
    }

    /// Number of waiters queued right now.
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Takes `n` permits if they are free and nobody queues. Never waits.
    #[inline]
    pub(crate) fn try_acquire(&self, n: usize) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & QUEUED != 0 || state >> SHIFT < n {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state - (n << SHIFT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Tries for `n` permits for a short while without queueing, for as long as nobody is
    /// queued (a queued waiter goes first, so trying would be futile). Catches the release of a
    /// short critical section running on another core without the cost of parking.
    pub(crate) fn spin_try_acquire(&self, n: usize) -> bool {
        for round in 0..SPIN_ROUNDS {
            if self.try_acquire(n) {
                return true;
            }
            if self.state.load(Ordering::Relaxed) & QUEUED != 0 {
                return false;
            }
            if round < SPIN_ROUNDS / 2 {
                (0..2 << round).for_each(|_| std::hint::spin_loop());
            } else {
                std::thread::yield_now();
            }
        }
        false
    }

    /// Takes `n` permits, parking the calling thread in the queue until they are handed over.
    #[inline]
    pub(crate) fn acquire(&self, n: usize) {
        if !self.try_acquire(n) {
            self.acquire_slow(n);
        }
    }

    #[cold]
    fn acquire_slow(&self, n: usize) {
        if let Err(waiter) = self.enqueue(n, thread_waker()) {
            while !waiter.is_granted() {
                park();
            }
        }
    }

    /// Takes `n` permits, waiting as `wait` allows. Returns whether they were taken; on
    /// `false` nothing is held or queued.
    pub(crate) fn acquire_with(&self, n: usize, wait: Wait) -> bool {
        match wait {
            Wait::Never => self.try_acquire(n),
            Wait::Forever => {
                self.acquire(n);
                true
            }
            Wait::For(timeout) => match Instant::now().checked_add(timeout) {
                Some(deadline) => self.acquire_until(n, deadline),
                // A deadline past the end of time is no deadline.
                None => {
                    self.acquire(n);
                    true
                }
            },
        }
    }

    /// Takes `n` permits, waiting in the queue until `deadline` at the latest.
    /// Returns whether the permits were taken; on `false` nothing is held or queued.
    pub(crate) fn acquire_until(&self, n: usize, deadline: Instant) -> bool {
        if self.try_acquire(n) {
            return true;
        }
        let waiter = match self.enqueue(n, thread_waker()) {
            Ok(()) => return true,
            Err(waiter) => waiter,
        };
        loop {
            if waiter.is_granted() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return self.cancel(&waiter);
            }
            park_timeout(deadline - now);
        }
    }

    /// Takes `n` permits as `wait` allows, awaiting them without blocking the thread: the
    /// async trio, written once over the one [`Acquire`] future (a timed wait is that future
    /// under a [`Deadline`]). `deadline` is `wait.deadline()`, taken by the caller when its
    /// whole acquire started. Returns whether the permits were taken; on `false` nothing is
    /// held or queued. Cancel-safe, as [`Acquire`].
    pub(crate) async fn acquire_async(
        &self,
        n: usize,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> bool {
        match (wait, deadline) {
            (Wait::Never, _) => self.try_acquire(n),
            (Wait::For(_), Some(deadline)) => Deadline::new(Acquire::new(self, n), deadline)
                .await
                .is_some(),
            // No deadline: forever (a timeout past the end of time is none).
            (Wait::For(_), None) | (Wait::Forever, _) => {
                Acquire::new(self, n).await;
                true
            }
        }
    }

    /// Takes `n` permits now if that does not jump the queue; otherwise queues a waiter that
    /// `waker` wakes once the permits are granted to it.
    pub(crate) fn enqueue(&self, n: usize, waker: Waker) -> Result<(), Arc<Waiter>> {
        let mut queue = self.queue.lock();
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & QUEUED != 0 {
                // Permits cannot change while QUEUED is set and we hold the mutex; by the
                // invariant they do not cover the head, so we go behind it.
                break;
            }
            let next = if state >> SHIFT >= n {
                state - (n << SHIFT)
            } else {
                state | QUEUED
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next & QUEUED == 0 => return Ok(()),
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        let waiter = Arc::new(Waiter {
            needed: n,
            granted: AtomicBool::new(false),
            waker: Mutex::new(Some(waker)),
        });
        queue.push_back(waiter.clone());
        Err(waiter)
    }

    /// Returns `n` permits, handing them to queued waiters first.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if !self.try_release_fast(n) {
            self.release_slow(n);
        }
    }

    /// Returns `n` permits if nobody queues, and then touches `self` no more; `false` (having
    /// done nothing) if waiters queue and [`release_slow`](Self::release_slow) must hand the
    /// permits over.
    #[inline]
    pub(crate) fn try_release_fast(&self, n: usize) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        while state & QUEUED == 0 {
            match self.state.compare_exchange_weak(
                state,
                state + (n << SHIFT),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
        false
    }

    /// Returns `n` permits through the queue. Unlike the fast path, this touches `self` after
    /// the permits are visible (grants, the mutex): the caller must keep `self` alive.
    #[cold]
    pub(crate) fn release_slow(&self, n: usize) {
        let mut wake = Vec::new();
        {
            let mut queue = self.queue.lock();
            self.state.fetch_add(n << SHIFT, Ordering::AcqRel);
            self.grant(&mut queue, &mut wake);
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Withdraws a waiter that gives up. Returns `true` if its permits had already been
    /// granted, in which case the caller owns them (and must use or release them).
    pub(crate) fn cancel(&self, waiter: &Arc<Waiter>) -> bool {
        let mut wake = Vec::new();
        {
            let mut queue = self.queue.lock();
            // Granting happens under this mutex, so this answer is final.
            if waiter.is_granted() {
                return true;
            }
            if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                queue.remove(at);
            }
            // If the head left, those behind it may now be satisfiable; if the queue is
            // empty, QUEUED must be cleared.
            self.grant(&mut queue, &mut wake);
        }
        wake.into_iter().for_each(Waker::wake);
        false
    }

    /// Hands free permits to the head of the queue for as long as they cover it, then
    /// restores the invariant. Called with the queue's mutex held.
    fn grant(&self, queue: &mut VecDeque<Arc<Waiter>>, wake: &mut Vec<Waker>) {
        loop {
            let Some(head) = queue.front() else {
                self.state.fetch_and(!QUEUED, Ordering::AcqRel);
                return;
            };
            let state = self.state.load(Ordering::Acquire);
            if state >> SHIFT < head.needed {
                return;
            }
            self.state.fetch_sub(head.needed << SHIFT, Ordering::AcqRel);
            head.granted.store(true, Ordering::Release);
            if let Some(waker) = head.waker.lock().take() {
                wake.push(waker);
            }
            queue.pop_front();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn wait_for_queue(sem: &RawSemaphore, len: usize) {
        while sem.queue_len() != len {
            std::thread::yield_now();
        }
    }

    #[test]
    fn try_acquire_never_jumps_the_queue() {
        let sem = std::sync::Arc::new(RawSemaphore::new(1));
        assert!(sem.try_acquire(1));
        let (tx, rx) = mpsc::channel();
        let big = {
            let sem = sem.clone();
            std::thread::spawn(move || {
                sem.acquire(2);
                tx.send(()).unwrap();
                sem.release(2);
            })
        };
        wait_for_queue(&sem, 1);
        // Release one permit back: one is now free, but a waiter for two queues ahead.
        sem.release(1);
        assert_eq!(sem.available(), 1);
        assert!(!sem.try_acquire(1), "try_acquire jumped a queued waiter");
        // A second release covers the head, which gets both permits directly.
        sem.release(1);
        rx.recv().unwrap();
        big.join().unwrap();
        assert_eq!(sem.available(), 2);
        assert!(sem.try_acquire(2));
    }

    #[test]
    fn cancelled_head_lets_the_next_waiter_through() {
        let sem = std::sync::Arc::new(RawSemaphore::new(4));
        assert!(sem.try_acquire(1));
        // Three free permits; a request for four queues, then a request for one behind it.
        let big = sem.enqueue(4, Waker::noop().clone()).unwrap_err();
        let small = {
            let sem = sem.clone();
            std::thread::spawn(move || {
                sem.acquire(1);
                sem.release(1);
            })
        };
        wait_for_queue(&sem, 2);
        assert!(!sem.cancel(&big), "four permits were never free");
        small.join().unwrap();
        assert_eq!(sem.queue_len(), 0);
        assert_eq!(sem.available(), 3);
        sem.release(1);
        assert!(sem.try_acquire(4));
    }

    #[test]
    fn timed_acquire_gives_up_and_leaves_the_queue() {
        let sem = RawSemaphore::new(1);
        assert!(sem.try_acquire(1));
        assert!(!sem.acquire_until(1, Instant::now() + Duration::from_millis(5)));
        assert_eq!(sem.queue_len(), 0);
        sem.release(1);
        assert!(sem.acquire_until(1, Instant::now()));
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let sem = std::sync::Arc::new(RawSemaphore::new(1));
        assert!(sem.try_acquire(1));
        let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (mine, order) = (sem.clone(), order.clone());
                let handle = std::thread::spawn(move || {
                    mine.acquire(1);
                    order.lock().push(i);
                    mine.release(1);
                });
                wait_for_queue(&sem, i + 1);
                handle
            })
            .collect();
        sem.release(1);
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>());
    }
}

/// Model checks of the queue: every interleaving of small cases (`RUSTFLAGS="--cfg loom"`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::thread;

    /// Explores every interleaving with up to `LOOM_MAX_PREEMPTIONS` (default 3) preemptions.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    #[test]
    fn mutual_exclusion_with_one_permit() {
        model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let cell = Arc::new(UnsafeCell::new(0usize));
            let other = {
                let (sem, cell) = (sem.clone(), cell.clone());
                thread::spawn(move || {
                    sem.acquire(1);
                    // loom reports a data race if two threads get here at once.
                    cell.with_mut(|v| unsafe { *v += 1 });
                    sem.release(1);
                })
            };
            sem.acquire(1);
            cell.with_mut(|v| unsafe { *v += 1 });
            sem.release(1);
            other.join().unwrap();
            assert_eq!(cell.with(|v| unsafe { *v }), 2);
            assert_eq!(sem.available(), 1);
            assert_eq!(sem.queue_len(), 0);
        });
    }

    #[test]
    fn three_threads_hand_one_permit_around() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            let cell = Arc::new(UnsafeCell::new(0usize));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (sem, cell) = (sem.clone(), cell.clone());
                    thread::spawn(move || {
                        sem.acquire(1);
                        cell.with_mut(|v| unsafe { *v += 1 });
                        sem.release(1);
                    })
                })
                .collect();
            // A try either gets the permit uncontended or leaves everything as it was.
            if sem.try_acquire(1) {
                cell.with_mut(|v| unsafe { *v += 1 });
                sem.release(1);
            }
            handles.into_iter().for_each(|h| h.join().unwrap());
            assert!(cell.with(|v| unsafe { *v }) >= 2);
            assert_eq!(sem.available(), 1);
            assert_eq!(sem.queue_len(), 0);
        });
    }

    #[test]
    fn a_dropped_async_acquire_loses_no_permit() {
        use std::future::Future;
        use std::task::{Context, Poll};
        model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            assert!(sem.try_acquire(1));
            let releaser = {
                let sem = sem.clone();
                thread::spawn(move || sem.release(1))
            };
            let waker = noop_waker();
            let mut cx = Context::from_waker(&waker);
            let mut acquire = Acquire::new(&sem, 1);
            let got = matches!(
                std::pin::Pin::new(&mut acquire).poll(&mut cx),
                Poll::Ready(())
            );
            // Cancelled at any point: before or after the release, queued or granted.
            drop(acquire);
            if got {
                sem.release(1);
            }
            releaser.join().unwrap();
            assert_eq!(sem.available(), 1);
            assert_eq!(sem.queue_len(), 0);
        });
    }

    #[test]
    fn an_async_waiter_is_woken_by_the_release() {
        model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            assert!(sem.try_acquire(1));
            let releaser = {
                let sem = sem.clone();
                thread::spawn(move || sem.release(1))
            };
            // A minimal executor: park until the waker fires. A lost wake-up is a deadlock,
            // which loom reports.
            use std::future::Future;
            let waker = thread_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            let mut acquire = Acquire::new(&sem, 1);
            while std::pin::Pin::new(&mut acquire).poll(&mut cx).is_pending() {
                park();
            }
            releaser.join().unwrap();
            assert_eq!(sem.available(), 0);
            sem.release(1);
        });
    }

    #[test]
    fn batch_waiter_blocks_later_small_requests() {
        model(|| {
            let sem = Arc::new(RawSemaphore::new(2));
            let reader = {
                let sem = sem.clone();
                thread::spawn(move || {
                    sem.acquire(1);
                    sem.release(1);
                })
            };
            let writer = {
                let sem = sem.clone();
                thread::spawn(move || {
                    sem.acquire(2);
                    // Holding everything: no one else can hold a permit now.
                    assert_eq!(sem.available(), 0);
                    sem.release(2);
                })
            };
            if sem.try_acquire(1) {
                sem.release(1);
            }
            reader.join().unwrap();
            writer.join().unwrap();
            assert_eq!(sem.available(), 2);
            assert_eq!(sem.queue_len(), 0);
        });
    }

    #[test]
    fn cancel_racing_release_loses_no_permit() {
        model(|| {
            let sem = Arc::new(RawSemaphore::new(1));
            assert!(sem.try_acquire(1));
            let waiter = match sem.enqueue(1, noop_waker()) {
                Ok(()) => unreachable!("the only permit is held"),
                Err(waiter) => waiter,
            };
            let releaser = {
                let sem = sem.clone();
                thread::spawn(move || sem.release(1))
            };
            if sem.cancel(&waiter) {
                // Granted just before the cancel: we own the permit and give it back.
                sem.release(1);
            }
            releaser.join().unwrap();
            assert_eq!(sem.available(), 1);
            assert_eq!(sem.queue_len(), 0);
            assert!(sem.try_acquire(1));
        });
    }

    #[test]
    fn cancelled_head_unblocks_the_next_waiter() {
        model(|| {
            let sem = Arc::new(RawSemaphore::new(2));
            assert!(sem.try_acquire(1));
            let big = match sem.enqueue(2, noop_waker()) {
                Ok(()) => unreachable!("only one permit is free"),
                Err(waiter) => waiter,
            };
            let small = {
                let sem = sem.clone();
                thread::spawn(move || {
                    sem.acquire(1);
                    sem.release(1);
                })
            };
            assert!(!sem.cancel(&big));
            small.join().unwrap();
            sem.release(1);
            assert_eq!(sem.available(), 2);
            assert_eq!(sem.queue_len(), 0);
        });
    }

    fn noop_waker() -> Waker {
        Waker::noop().clone()
    }
}
