//! Taking, keeping and letting go of one lock: tooz's key and transaction, one lease per
//! acquire, waiting on a watch, a keep-alive task per held lock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lockutils_core::{Error, Wait};
use parking_lot::Mutex;

use crate::TIMEOUT_GRACE;
use crate::gateway::{Change, Fail, Gateway, Try};
use crate::options::Options;

/// The pause before trying again after the server ended a watch by itself.
const WATCH_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What a backend shares with its tasks.
pub(crate) struct Inner {
    pub gw: Gateway,
    pub options: Options,
    /// Acquires of this backend waiting on a watch, per key.
    pub waiting: Mutex<HashMap<Vec<u8>, usize>>,
}

/// Counts one waiter of a key while it lives.
struct Waiting<'a> {
    inner: &'a Inner,
    key: &'a [u8],
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner, key: &'a [u8]) -> Self {
        *inner.waiting.lock().entry(key.to_vec()).or_default() += 1;
        Waiting { inner, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = self.inner.waiting.lock();
        if let Some(count) = waiting.get_mut(self.key) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(self.key);
            }
        }
    }
}

/// One lease of an acquire: granted once, refreshed while the acquire waits, attached to the
/// key once the lock is taken.
#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    /// Its TTL as etcd granted it.
    ttl: Duration,
    /// When the last grant or refresh that etcd confirmed was sent: the lease lives at least
    /// until this plus `ttl`.
    confirmed: Instant,
}

impl Lease {
    fn expires(&self) -> Instant {
        self.confirmed + self.ttl
    }

    /// How often to refresh it: a third of its TTL, as etcd's own clients do.
    fn period(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }
}

/// What the holder and its keep-alive task share.
pub(crate) struct Alive {
    lost: AtomicBool,
    confirmed: Mutex<Instant>,
}

/// A held lock.
pub(crate) struct Held {
    pub key: Vec<u8>,
    pub lease: i64,
    /// The key's create revision: the fencing token.
    pub revision: i64,
    pub ttl: Duration,
    alive: Arc<Alive>,
    keeper: tokio::task::JoinHandle<()>,
    /// Set until [`Inner::release`] takes it: a held lock dropped without a release (which
    /// lockutils never does) still has its lease revoked, rather than left to expire.
    gw: Option<Gateway>,
}

/// What a check of a held lock needs (the check runs on the runtime, apart from the guard).
pub(crate) struct Probe {
    key: Vec<u8>,
    lease: i64,
    revision: i64,
    ttl: Duration,
    alive: Arc<Alive>,
}

impl Held {
    pub fn probe(&self) -> Probe {
        Probe {
            key: self.key.clone(),
            lease: self.lease,
            revision: self.revision,
            ttl: self.ttl,
            alive: Arc::clone(&self.alive),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.keeper.abort();
        if let (Some(gw), Ok(runtime)) = (self.gw.take(), runtime()) {
            let lease = self.lease;
            runtime.spawn(async move {
                let _ = gw.revoke(lease, gw.answer_timeout).await;
            });
        }
    }
}

/// Why an acquire stopped without the lock.
pub(crate) enum Stop {
    Busy,
    Fail(Fail),
    Cancelled,
}

impl From<Fail> for Stop {
    fn from(f: Fail) -> Self {
        Stop::Fail(f)
    }
}

impl Inner {
    pub fn error(&self, name: &str, fail: &Fail) -> Error {
        Error::backend(
            name,
            self.options.target.clone(),
            fail.reason(&self.gw.endpoint),
        )
    }

    pub fn stop_error(&self, name: &str, stop: Stop, wait: Wait) -> Error {
        match stop {
            Stop::Busy => Error::AcquireLockFailed {
                name: name.to_owned(),
                waited: match wait {
                    Wait::For(d) => Some(d),
                    _ => None,
                },
            },
            Stop::Fail(fail) => self.error(name, &fail),
            Stop::Cancelled => Error::backend(
                name,
                self.options.target.clone(),
                "the acquire was cancelled",
            ),
        }
    }

    /// Takes the lock of `key` as `wait` allows (`deadline` ends a timed wait), unless
    /// `cancel` completes first. Whatever happens, a lease that does not end up holding the
    /// lock is revoked (in the background: it expires by itself anyway).
    pub async fn take(
        self: &Arc<Self>,
        name: &str,
        key: Vec<u8>,
        wait: Wait,
        deadline: Option<Instant>,
        cancel: impl Future<Output = ()>,
    ) -> Result<Held, Stop> {
        let mut value = [0u8; 16];
        getrandom::fill(&mut value).map_err(|e| {
            Stop::Fail(Fail::Protocol(format!(
                "no random bytes for the lock's value: {e}"
            )))
        })?;
        // A timed acquire gives up at most a grace after its deadline, also when a round trip
        // (not the wait itself, which its deadline ends) gets no answer.
        let started = Instant::now();
        let limit = match wait {
            Wait::For(_) => {
                deadline.and_then(|d| d.checked_add(TIMEOUT_GRACE.min(self.gw.answer_timeout)))
            }
            Wait::Never | Wait::Forever => None,
        };
        let mut lease: Option<Lease> = None;
        let outcome = {
            let work = async {
                let sent = Instant::now();
                let (id, ttl) = self.gw.grant(self.options.ttl).await?;
                let lease = lease.insert(Lease {
                    id,
                    ttl: Duration::from_secs(ttl),
                    confirmed: sent,
                });
                self.attempt(&key, &value, lease, wait, deadline).await
            };
            let bounded = async {
                match limit {
                    Some(limit) => tokio::time::timeout_at(limit.into(), work)
                        .await
                        .unwrap_or_else(|_| Err(Stop::Fail(Fail::Silent(limit - started)))),
                    None => work.await,
                }
            };
            tokio::pin!(bounded, cancel);
            tokio::select! {
                biased;
                () = &mut cancel => Err(Stop::Cancelled),
                outcome = &mut bounded => outcome,
            }
        };
        let Some(lease) = lease else {
            // No lease was granted: nothing to let go of.
            return Err(outcome.err().unwrap_or(Stop::Cancelled));
        };
        match outcome {
            Ok(revision) => {
                let alive = Arc::new(Alive {
                    lost: AtomicBool::new(false),
                    confirmed: Mutex::new(lease.confirmed),
                });
                let keeper = tokio::spawn(keep(
                    Arc::clone(self),
                    name.to_owned(),
                    lease,
                    Arc::clone(&alive),
                ));
                Ok(Held {
                    key,
                    lease: lease.id,
                    revision,
                    ttl: lease.ttl,
                    alive,
                    keeper,
                    gw: Some(self.gw.clone()),
                })
            }
            Err(stop) => {
                let inner = Arc::clone(self);
                tokio::spawn(async move {
                    let _ = inner.gw.revoke(lease.id, inner.gw.answer_timeout).await;
                });
                Err(stop)
            }
        }
    }

    /// Tries, and waits for the key's deletion between tries: the key's create revision once
    /// taken.
    async fn attempt(
        &self,
        key: &[u8],
        value: &[u8],
        lease: &mut Lease,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<i64, Stop> {
        loop {
            match self.gw.try_acquire(key, value, lease.id).await {
                Ok(Try::Acquired(revision)) => return Ok(revision),
                Ok(Try::Busy { revision }) => {
                    let out_of_time = match wait {
                        Wait::Never => true,
                        // No deadline: a timeout too long to represent, i.e. forever.
                        Wait::For(_) => deadline.is_some_and(|d| Instant::now() >= d),
                        Wait::Forever => false,
                    };
                    if out_of_time {
                        return Err(Stop::Busy);
                    }
                    let waited = self.wait_for_delete(key, revision, lease);
                    match deadline {
                        Some(deadline) if matches!(wait, Wait::For(_)) => {
                            match tokio::time::timeout_at(deadline.into(), waited).await {
                                Ok(result) => result?,
                                Err(_) => return Err(Stop::Busy),
                            }
                        }
                        _ => waited.await?,
                    }
                }
                // The lease ran out while the server could not be reached (or was revoked
                // from outside): nothing holds it, take a new one.
                Err(fail) if fail.lease_not_found() => {
                    let sent = Instant::now();
                    let (id, ttl) = self.gw.grant(self.options.ttl).await?;
                    *lease = Lease {
                        id,
                        ttl: Duration::from_secs(ttl),
                        confirmed: sent,
                    };
                }
                Err(fail) => return Err(Stop::Fail(fail)),
            }
        }
    }

    /// Waits until `key` is deleted after `revision` (the revision the failed try saw),
    /// keeping `lease` alive meanwhile (which also checks that the server still answers).
    async fn wait_for_delete(
        &self,
        key: &[u8],
        revision: i64,
        lease: &mut Lease,
    ) -> Result<(), Fail> {
        let mut watch = self.gw.watch(key, revision + 1).await?;
        let _waiting = Waiting::new(self, key);
        loop {
            let refresh_at = lease.confirmed + lease.period();
            tokio::select! {
                change = watch.next() => {
                    if change? == Change::Ended {
                        // The server ended the watch (its start was compacted away, or it
                        // cancelled it): try again, after a pause, so that a server that
                        // keeps doing so is not asked in a tight loop.
                        tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                    }
                    return Ok(());
                }
                () = tokio::time::sleep_until(refresh_at.into()) => {
                    let sent = Instant::now();
                    match self.gw.keep_alive(lease.id, self.gw.answer_timeout).await? {
                        0 => {
                            // Revoked from outside, or expired: the next try needs a new one.
                            let (id, ttl) = self.gw.grant(self.options.ttl).await?;
                            *lease = Lease { id, ttl: Duration::from_secs(ttl), confirmed: sent };
                        }
                        _ => lease.confirmed = sent,
                    }
                }
            }
        }
    }

    /// Lets go of a held lock: revoking its lease deletes the key (the lease holds nothing
    /// else). An error says the lock was lost before, or that etcd could not be told (the
    /// lease then expires within its TTL).
    pub async fn release(&self, mut held: Held, bound: Duration) -> Result<(), String> {
        held.keeper.abort();
        held.gw = None;
        let lost_before = held.alive.lost.load(Ordering::SeqCst);
        match self.gw.revoke(held.lease, bound).await {
            Ok(()) if !lost_before => Ok(()),
            Ok(()) => Err(lost_text(held.ttl)),
            Err(fail) if fail.lease_not_found() => Err(lost_text(held.ttl)),
            Err(fail) => Err(format!(
                "{}; the lock stays taken until its lease expires (at most {:?})",
                fail.reason(&self.gw.endpoint),
                held.ttl
            )),
        }
    }

    /// Whether `held` is still the key's holder: asks etcd, unless the lock is known lost.
    pub async fn is_held(&self, name: &str, held: &Probe, bound: Duration) -> Result<bool, Error> {
        if held.alive.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match self.gw.get(&held.key, bound).await {
            Ok(kv) => {
                let ours = kv.is_some_and(|kv| {
                    kv.create_revision == held.revision && kv.lease == held.lease
                });
                if !ours && !held.alive.lost.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        "lock {name} ({}): lost: its key is gone or another's (the lease was \
                         revoked or expired)",
                        self.options.target
                    );
                }
                Ok(ours)
            }
            // No answer, but the lease cannot have outlived its TTL since the last refresh.
            Err(_) if Instant::now() >= *held.alive.confirmed.lock() + held.ttl => Ok(false),
            Err(fail) => Err(self.error(name, &fail)),
        }
    }
}

fn lost_text(ttl: Duration) -> String {
    format!(
        "the lock was lost before its release: its lease (TTL {ttl:?}) had expired or been \
         revoked, and another holder may have taken it meanwhile"
    )
}

/// Keeps a held lock's lease alive every third of its TTL until aborted; marks the lock lost
/// (and logs it) when etcd says the lease is gone, or when no refresh succeeded for a whole
/// TTL.
async fn keep(inner: Arc<Inner>, name: String, mut lease: Lease, alive: Arc<Alive>) {
    let mut next = lease.confirmed + lease.period();
    loop {
        tokio::time::sleep_until(next.into()).await;
        let sent = Instant::now();
        let left = lease.expires().saturating_duration_since(sent);
        let bound = inner
            .gw
            .answer_timeout
            .min(left)
            .max(Duration::from_millis(100));
        let reason = match inner.gw.keep_alive(lease.id, bound).await {
            Ok(ttl) if ttl > 0 => {
                lease.confirmed = sent;
                *alive.confirmed.lock() = sent;
                next = sent + lease.period();
                continue;
            }
            Ok(_) => "etcd says its lease expired or was revoked".to_owned(),
            Err(fail) => {
                if Instant::now() < lease.expires() {
                    tracing::debug!(
                        "lock {name} ({}): keep-alive failed, trying again: {}",
                        inner.options.target,
                        fail.reason(&inner.gw.endpoint)
                    );
                    next = Instant::now() + (lease.period() / 4).max(Duration::from_millis(50));
                    continue;
                }
                format!(
                    "no keep-alive succeeded for the lease's whole TTL ({:?}): {}",
                    lease.ttl,
                    fail.reason(&inner.gw.endpoint)
                )
            }
        };
        if !alive.lost.swap(true, Ordering::SeqCst) {
            tracing::warn!("lock {name} ({}): lost: {reason}", inner.options.target);
        }
        return;
    }
}

/// The one runtime of this crate's connections, watches and keep-alive tasks (threads named
/// `lockutils-etcd-io`).
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: std::sync::LazyLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::LazyLock::new(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("lockutils-etcd-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the etcd client's runtime: {e}"))
        });
    RUNTIME.as_ref().map_err(Clone::clone)
}

/// Runs `future` on the crate's runtime and blocks this thread until it is done (from any
/// thread, also one of another runtime, which it then blocks).
pub(crate) fn block_on<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let runtime = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| "the etcd client's task ended without an answer".to_owned())
}
