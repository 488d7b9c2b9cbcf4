//! Awaited acquires: the blocking acquire on a thread of its own, whose outcome the task
//! awaits, so that no executor thread blocks on the server, whichever executor it is.
//! Dropping the future ends the wait at its next step, and a lock got after that is released
//! by the thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use lockutils_core::{Error, LOG_TARGET, Wait};
use parking_lot::Mutex;

use crate::backend::{Held, Inner};

/// The thread's outcome, and the task to wake for it.
type Outcome = (Option<Result<Held, Error>>, Option<Waker>);

struct Shared {
    outcome: Mutex<Outcome>,
    cancelled: AtomicBool,
}

struct Taking {
    shared: Arc<Shared>,
    inner: Arc<Inner>,
    name: String,
}

impl Future for Taking {
    type Output = Result<Held, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut outcome = self.shared.outcome.lock();
        match outcome.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                outcome.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        // A lock got but never handed over: released (on a thread: releasing blocks).
        if let Some(Ok(held)) = self.shared.outcome.lock().0.take() {
            let inner = self.inner.clone();
            let name = std::mem::take(&mut self.name);
            let _ = std::thread::Builder::new()
                .name("lockutils-redis-release".to_owned())
                .spawn(move || {
                    if let Err(e) = inner.release(&name, held) {
                        tracing::warn!(target: LOG_TARGET, lock = name.as_str(), "{e}");
                    }
                });
        }
    }
}

/// Takes the lock `key` for an awaiting task.
pub(crate) async fn take(
    inner: &Arc<Inner>,
    name: &str,
    key: String,
    wait: Wait,
    deadline: Option<Instant>,
) -> Result<Held, Error> {
    let shared = Arc::new(Shared {
        outcome: Mutex::new((None, None)),
        cancelled: AtomicBool::new(false),
    });
    let taking = Taking {
        shared: shared.clone(),
        inner: inner.clone(),
        name: name.to_owned(),
    };
    let thread_inner = inner.clone();
    let thread_name = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name("lockutils-redis-wait".to_owned())
        .spawn(move || {
            let cancelled = || shared.cancelled.load(Ordering::SeqCst);
            let result = thread_inner.take(&thread_name, &key, wait, deadline, &cancelled);
            let mut outcome = shared.outcome.lock();
            if cancelled() {
                drop(outcome);
                if let Ok(held) = result
                    && let Err(e) = thread_inner.release(&thread_name, held)
                {
                    tracing::warn!(target: LOG_TARGET, lock = thread_name.as_str(), "{e}");
                }
                return;
            }
            outcome.0 = Some(result);
            if let Some(waker) = outcome.1.take() {
                waker.wake();
            }
        });
    if let Err(e) = spawned {
        return Err(Error::backend(
            name,
            inner.target.clone(),
            format!("cannot start a thread for the Redis client: {e}"),
        ));
    }
    taking.await
}
