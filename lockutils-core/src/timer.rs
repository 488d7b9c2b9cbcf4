//! A runtime-agnostic timer for async timeouts: one background thread wakes the tasks whose
//! deadline has passed. lockutils depends on no async runtime, so it cannot borrow one's timer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

struct Timer {
    /// Pending deadlines, by (deadline, registration number).
    wakers: Mutex<BTreeMap<(Instant, u64), Waker>>,
    /// Signalled when an earlier deadline than the thread's current one is registered.
    changed: Condvar,
    next_id: std::sync::atomic::AtomicU64,
}

static TIMER: LazyLock<&'static Timer> = LazyLock::new(|| {
    let timer: &'static Timer = Box::leak(Box::new(Timer {
        wakers: Mutex::new(BTreeMap::new()),
        changed: Condvar::new(),
        next_id: std::sync::atomic::AtomicU64::new(0),
    }));
    std::thread::Builder::new()
        .name("lockutils-timer".into())
        .spawn(move || timer.run())
        .expect("spawn the lockutils timer thread");
    timer
});

impl Timer {
    fn run(&self) {
        let mut due = Vec::new();
        let mut wakers = self.wakers.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                // Woken without the lock: a waker may drop its task's `Sleep`, which takes it.
                drop(wakers);
                due.drain(..).for_each(Waker::wake);
                wakers = self.wakers.lock();
                continue;
            }
            match wakers.keys().next() {
                Some(&(deadline, _)) => {
                    self.changed.wait_until(&mut wakers, deadline);
                }
                None => self.changed.wait(&mut wakers),
            }
        }
    }
}

/// Completes at `deadline`. Cancel-safe: dropping it unregisters it.
pub(crate) struct Sleep {
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            key: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let timer = *TIMER;
        let mut wakers = timer.wakers.lock();
        let key = match self.key {
            Some(key) => key,
            None => {
                let id = timer
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = (self.deadline, id);
                self.key = Some(key);
                if wakers.keys().next().is_none_or(|first| key < *first) {
                    timer.changed.notify_one();
                }
                key
            }
        };
        wakers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            TIMER.wakers.lock().remove(&key);
        }
    }
}

/// `future` with a deadline: `Some(output)`, or `None` once the deadline passed (the future
/// is then dropped by the caller, which cancels it).
pub(crate) struct Deadline<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future + Unpin> Deadline<F> {
    pub(crate) fn new(future: F, deadline: Instant) -> Self {
        Self {
            future,
            sleep: Sleep::until(deadline),
        }
    }
}

impl<F: Future + Unpin> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = Pin::new(&mut self.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        Pin::new(&mut self.sleep).poll(cx).map(|()| None)
    }
}
