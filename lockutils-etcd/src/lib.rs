//! # lockutils-etcd
//!
//! lockutils locks across hosts on etcd, as the same locks as OpenStack's `tooz`: a Rust
//! service and cinder, manila or any tooz user with `backend_url = etcd3+http://host:2379`
//! exclude each other on the same names.
//!
//! ```no_run
//! // Once, at start-up: etcd3+http:// and etcd3+https:// URLs now name this backend.
//! lockutils_etcd::install();
//! // With LOCKUTILS_BACKEND_URL=etcd3+http://etcd:2379 in the environment (or `backend_url`
//! // in [oslo_concurrency]), external locks are taken on etcd. This is the lock cinder takes
//! // with @coordination.synchronized('{volume.id}-delete_volume'):
//! let volume = "6f1c1b4a-2a5c-4d36-9d0f-4f2b8f6e1c2a";
//! let guard = lockutils::lock(&format!("{volume}-delete_volume"))
//!     .prefix("cinder")
//!     .external(true)
//!     .acquire()?;
//! assert!(guard.is_external_held()?);
//! let token = guard.fencing_token(); // Some(..): the key's create revision
//! # Ok::<(), lockutils::Error>(())
//! ```
//!
//! ## Names and keys
//! The key of a lock is the key prefix (the URL's `key_prefix`, default [`DEFAULT_KEY_PREFIX`],
//! `/tooz/locks`) followed **directly**, with no separator, by the lock's full name in UTF-8:
//! the name lockutils gives its lock file ([`lockutils::lock_file_name`](lockutils_core::lock_file_name)),
//! i.e. the name with each `/` turned into `_`, after the prefix and a `-` (unless the prefix
//! already ends in `-`). This is the name tooz sees for the same lock, and the key tooz's etcd
//! driver uses for it:
//!
//! | lockutils | full name | etcd key | tooz |
//! |---|---|---|---|
//! | `lock("<id>-delete_volume").prefix("cinder")` | `cinder-<id>-delete_volume` | `/tooz/lockscinder-<id>-delete_volume` | cinder's `coordination.synchronized('{volume.id}-delete_volume')` |
//! | `lock("<id>").prefix("manila-")` | `manila-<id>` | `/tooz/locksmanila-<id>` | `coordinator.get_lock(b"manila-<id>")` |
//! | `lock("a/b")` | `a_b` | `/tooz/locksa_b` | `get_lock(b"a_b")` |
//!
//! cinder and manila put their service name and a `-` before the name they format, as
//! `prefix("cinder")` does. [`key_of`] computes a key.
//!
//! ## How a lock is taken and held (tooz's protocol, improved compatibly)
//! - **One try** is tooz's: a lease, then one transaction: if the key's create revision is 0
//!   (no such key), put it with 16 random bytes as its value, attached to the lease;
//!   otherwise read it. tooz and lockutils thus exclude each other both ways.
//! - **One lease per acquire**, TTL = the URL's `lock_timeout` (else its `timeout`, else
//!   [`DEFAULT_TIMEOUT`], 30 s; etcd may raise a very short TTL to its minimum), granted once
//!   and kept across every retry (tooz grants one per try and never revokes them), revoked
//!   when the acquire gives up, and on release: revoking deletes the key, in one write.
//! - **Waiting watches the key** from the revision the failed try saw: when the holder
//!   deletes it (a release by lockutils or tooz, or its lease running out), the waiter tries
//!   again at once (tooz polls every second). The wait refreshes its lease meanwhile, which
//!   also checks that etcd still answers. Waiters are not queued: after a release, whoever
//!   tries first wins (also for `fair(true)`, which only orders this process's waiters).
//! - **Keep-alive**: while held, a task refreshes the lease every third of its TTL. When etcd
//!   says the lease is gone (revoked, expired), or no refresh succeeded for a whole TTL, the
//!   lock is marked lost and a warning logged; `is_external_held()` is then `Ok(false)`.
//!   `is_external_held()` otherwise asks etcd whether the key is still this acquisition's
//!   (same create revision and lease), waiting at most [`IS_HELD_TIMEOUT`].
//! - **Fencing token**: the key's create revision. etcd's revision grows with every write
//!   to the cluster, so each acquisition of any lock gets a larger token than every
//!   acquisition before it, by lockutils or tooz, as long as the cluster keeps its data
//!   (restoring a snapshot, or a new cluster, starts over).
//! - **A holder that dies** (crash, SIGKILL, a host gone) frees the lock when its lease
//!   expires: at most the TTL later.
//! - **`timeout(..)` bounds the wait**, never the lease: a lock is held until released (or
//!   lost). A timed acquire gives up at most [`TIMEOUT_GRACE`] after its timeout, also on a
//!   server that stops answering.
//! - **Shared locks**: tooz has none on etcd; `shared(true)` is refused with an error
//!   ([`ExternalBackend::supports_shared`] is `false`), never taken exclusively.
//!
//! ## Bad conditions
//! - **etcd down or unreachable**: an error naming the endpoint, within the connect timeout
//!   ([`DEFAULT_CONNECT_TIMEOUT`], URL option `connect_timeout`).
//! - **etcd silent** (frozen, lost quorum): each round trip waits at most the answer timeout
//!   ([`DEFAULT_ANSWER_TIMEOUT`], URL option `answer_timeout`); a waiter refreshes its lease
//!   every third of the TTL and fails when that refresh fails; a holder's lock is marked
//!   lost once refreshes failed for a whole TTL.
//! - **etcd restarted** while a lock is held: etcd keeps leases across restarts (and extends
//!   them), so a lock whose holder refreshes it again within its TTL is still held.
//! - **Wrong TLS settings**, unreadable certificate files, unknown URL options: errors that
//!   name the option (and file), never a key's content.
//!
//! ## URL
//! `etcd3+http://host:port?options` or `etcd3+https://host:port?options` (default port
//! 2379), as tooz takes them. tooz's options: `timeout`, `lock_timeout` (whole seconds),
//! `ca_cert`, `cert_key`, `cert_cert` (PEM files), `protocol`, `api_version` (`v3`, the
//! default, `v3beta` or `v3alpha`: the gateway's path). lockutils' own: `key_prefix`,
//! `connect_timeout`, `answer_timeout` (seconds, fractions allowed). Any other option is an
//! error.
//!
//! ## Async code
//! `acquire_async()` (and `#[synchronized]` on an `async fn`) runs the acquire on the crate's
//! runtime and awaits it from any executor: no executor thread is blocked while it waits, and
//! dropping the future ends the wait and revokes its lease (a lock got at that moment is let
//! go). Dropping a guard waits for etcd to confirm the release (one round trip, at most
//! [`RELEASE_TIMEOUT`] or the answer timeout); the blocking API blocks the calling thread,
//! also inside an async task.
//!
//! ## Transport
//! etcd's JSON gateway (`/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`), as tooz's `etcd3gw`
//! speaks it, over HTTP/1.1 with TLS through rustls: building needs nothing but Rust. The
//! client runs on one small runtime of this crate (threads named `lockutils-etcd-io`); the
//! blocking API waits for it, and `acquire_async()` awaits it from any executor without
//! blocking a thread. A held lock keeps a pooled connection busy only while it talks; a
//! waiter keeps one for its watch.

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockutils_core::{
    AcquireFuture, Error, ExternalBackend, ExternalCache, ExternalTarget, HeldExternalLock, Mode,
    Wait,
};
use parking_lot::Mutex;

mod gateway;
mod lock;
mod options;
mod tls;

use lock::{Held, Inner, block_on, runtime};
use options::Options;

/// tooz's key prefix: a lock's key is this followed directly by its full name.
pub const DEFAULT_KEY_PREFIX: &str = "/tooz/locks";
/// etcd's client port, when the URL names none.
pub const DEFAULT_PORT: u16 = 2379;
/// The lease TTL, in seconds, when the URL sets neither `lock_timeout` nor `timeout` (tooz's
/// default).
pub const DEFAULT_TIMEOUT: u64 = 30;
/// How long connecting may take, unless the URL sets `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long etcd may take to answer one request, unless the URL sets `answer_timeout`.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `is_external_held()` waits for etcd's answer (or the answer timeout, if shorter).
pub const IS_HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than its timeout a timed acquire waits for a round trip that got no answer
/// (or the answer timeout, if shorter), before it gives up on a silent server.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(1);
/// How long a release waits for etcd to confirm it (or the answer timeout, if shorter);
/// past it, the lease expires by itself within its TTL.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers this backend for `etcd3+http://` and `etcd3+https://` URLs (tooz's), so that a
/// `backend_url` (or `LOCKUTILS_BACKEND_URL`) naming an etcd server sends external locks there.
/// Call it once at start-up, before the first external lock.
pub fn install() {
    lockutils_core::install_backend(&["etcd3+http", "etcd3+https"], backend);
}

/// The backend of `url`, made on first use and kept for the life of the process (one client
/// per URL): what [`install`] registers, and what
/// [`LockBuilder::backend`](lockutils_core::LockBuilder::backend) takes.
///
/// ```no_run
/// let etcd = lockutils_etcd::backend("etcd3+http://127.0.0.1:2379?lock_timeout=10")?;
/// let guard = lockutils::lock("x").external(true).backend(etcd).acquire()?;
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn backend(url: &str) -> Result<&'static EtcdBackend, Error> {
    static BACKENDS: lockutils_core::BackendsByUrl<EtcdBackend> =
        lockutils_core::BackendsByUrl::new();
    BACKENDS.get_or_make(url, EtcdBackend::new)
}

/// The etcd key of lock `name` with `prefix` under `key_prefix` (see "Names and keys" in the
/// crate docs), and the full name it is made of.
///
/// ```
/// let (full, key) = lockutils_etcd::key_of("6f1c-delete_volume", Some("cinder"), "/tooz/locks")?;
/// assert_eq!(full, "cinder-6f1c-delete_volume");
/// assert_eq!(key, b"/tooz/lockscinder-6f1c-delete_volume");
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn key_of(
    name: &str,
    prefix: Option<&str>,
    key_prefix: impl AsRef<[u8]>,
) -> Result<(String, Vec<u8>), Error> {
    let full = lockutils_core::lock_file_name(name, prefix)?;
    let mut key = key_prefix.as_ref().to_vec();
    key.extend_from_slice(full.as_bytes());
    Ok((full, key))
}

/// A lock held on etcd, as [`EtcdBackend::held`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    /// The full lock name: the key without the key prefix (lossily decoded if not UTF-8).
    pub name: String,
    /// What is left of the holder's lease, `None` for a key without a lease (or a lease
    /// that just ended).
    pub ttl_left: Option<Duration>,
    /// The key's create revision: the holder's fencing token.
    pub revision: i64,
    /// The holder's lease id (0: none), as `etcdctl lease timetolive` takes it (in hex).
    pub lease: i64,
}

/// External locks on one etcd endpoint: what [`backend`] returns and [`install`] registers.
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

/// What the backend keeps in a lock's [`ExternalCache`].
#[derive(Default)]
struct Slot {
    held: Option<Held>,
}

impl EtcdBackend {
    /// A backend for `url` (see "URL" in the crate docs). Checks the URL and reads the TLS
    /// files; connects only when a lock is taken.
    pub fn new(url: &str) -> Result<EtcdBackend, Error> {
        let redacted = lockutils_core::redact_url(url);
        let options = Options::parse(url).map_err(|reason| {
            Error::backend(
                "",
                redacted.clone(),
                format!("not a valid etcd URL: {reason}"),
            )
        })?;
        let gw = gateway::Gateway::new(&options)
            .map_err(|reason| Error::backend("", options.target.clone(), reason))?;
        Ok(EtcdBackend {
            inner: Arc::new(Inner {
                gw,
                options,
                waiting: Mutex::default(),
            }),
        })
    }

    /// The URL without its options: what messages name.
    pub fn target(&self) -> &str {
        &self.inner.options.target
    }

    /// The lease TTL asked for each lock (etcd may raise a very short one).
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.inner.options.ttl)
    }

    /// The key prefix of every lock.
    pub fn key_prefix(&self) -> &[u8] {
        &self.inner.options.key_prefix
    }

    /// The etcd key of lock `name` with `prefix` on this backend.
    pub fn key(&self, name: &str, prefix: Option<&str>) -> Result<Vec<u8>, Error> {
        key_of(name, prefix, self.key_prefix()).map(|(_, key)| key)
    }

    /// The locks held under the key prefix, and under `name_prefix` within it if given (a
    /// full-name prefix such as `cinder-`), by lockutils or tooz, with their holders' TTL left.
    pub fn held(&self, name_prefix: Option<&str>) -> Result<Vec<HeldKey>, Error> {
        let inner = Arc::clone(&self.inner);
        let mut prefix = self.key_prefix().to_vec();
        prefix.extend_from_slice(name_prefix.unwrap_or_default().as_bytes());
        let what = name_prefix.unwrap_or_default().to_owned();
        let result = block_on(async move {
            let kvs = inner.gw.get_prefix(&prefix).await?;
            let mut out = Vec::with_capacity(kvs.len());
            let strip = inner.options.key_prefix.len();
            for kv in kvs {
                let ttl_left = match kv.lease {
                    0 => None,
                    lease => inner
                        .gw
                        .time_to_live(lease, inner.gw.answer_timeout)
                        .await?
                        .map(|s| Duration::from_secs(s.unsigned_abs())),
                };
                out.push(HeldKey {
                    name: String::from_utf8_lossy(&kv.key[strip..]).into_owned(),
                    ttl_left,
                    revision: kv.create_revision,
                    lease: kv.lease,
                });
            }
            Ok::<_, gateway::Fail>(out)
        })
        .map_err(|reason| Error::backend(&what, self.target().to_owned(), reason))?;
        result.map_err(|fail| self.inner.error(&what, &fail))
    }

    /// How many acquires of this process wait on etcd (watching the key) for the lock of
    /// `key` now: for tests and diagnostics.
    pub fn waiting(&self, key: &[u8]) -> usize {
        self.inner.waiting.lock().get(key).copied().unwrap_or(0)
    }

    /// One bare round trip pair, `put` then `delete` of `key` (no lease, no transaction): the
    /// floor a lock's cost is measured against.
    #[doc(hidden)]
    pub fn put_delete(&self, key: &[u8]) -> Result<(), Error> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_vec();
        block_on(async move {
            inner.gw.put(&key, b"x").await?;
            inner.gw.delete(&key).await
        })
        .map_err(|reason| Error::backend("", self.target().to_owned(), reason))?
        .map_err(|fail| self.inner.error("", &fail))
    }

    fn check_mode(&self, target: &ExternalTarget<'_>) -> Result<(), Error> {
        match target.mode {
            Mode::Exclusive => Ok(()),
            Mode::Shared => Err(Error::backend(
                target.name,
                self.target().to_owned(),
                "etcd locks have no shared side (tooz has none): take it exclusively, or use \
                 a backend with shared locks",
            )),
        }
    }
}

impl ExternalBackend for EtcdBackend {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error> {
        self.check_mode(target)?;
        let key = self.key(target.name, target.prefix)?;
        let inner = Arc::clone(&self.inner);
        let name = target.name.to_owned();
        let deadline = wait.deadline();
        let result = block_on(async move {
            inner
                .take(&name, key, wait, deadline, std::future::pending())
                .await
                .map_err(|stop| inner.stop_error(&name, stop, wait))
        })
        .map_err(|reason| Error::backend(target.name, self.target().to_owned(), reason))?;
        cache.get_or_insert_with(Slot::default).held = Some(result?);
        Ok(())
    }

    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        let Some(held) = cache.get_or_insert_with(Slot::default).held.take() else {
            return Ok(());
        };
        let inner = Arc::clone(&self.inner);
        let bound = RELEASE_TIMEOUT.min(inner.gw.answer_timeout);
        block_on(async move { inner.release(held, bound).await })
            .and_then(|r| r)
            .map_err(|reason| Error::backend(name, self.target().to_owned(), reason))
    }

    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error> {
        let key = self.key(target.name, target.prefix)?;
        let slot = cache.get_or_insert_with(Slot::default);
        Ok(slot.held.as_ref().is_some_and(|held| held.key == key))
    }

    fn acquire_async<'a>(
        &'a self,
        target: ExternalTarget<'a>,
        cache: &'a Mutex<ExternalCache>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> AcquireFuture<'a> {
        Box::pin(async move {
            self.check_mode(&target)?;
            let key = self.key(target.name, target.prefix)?;
            let runtime = runtime()
                .map_err(|reason| Error::backend(target.name, self.target().to_owned(), reason))?;
            let inner = Arc::clone(&self.inner);
            let name = target.name.to_owned();
            let (done, result) = tokio::sync::oneshot::channel();
            // Dropping this future drops `_cancel`, which ends the acquire on the runtime (its
            // lease revoked); a lock got just as this future went away is released there.
            let (_cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
            runtime.spawn(async move {
                let cancel = async {
                    let _ = cancelled.await;
                };
                let taken = inner
                    .take(&name, key, wait, deadline, cancel)
                    .await
                    .map_err(|stop| inner.stop_error(&name, stop, wait));
                if let Err(Ok(held)) = done.send(taken) {
                    let bound = RELEASE_TIMEOUT.min(inner.gw.answer_timeout);
                    let _ = inner.release(held, bound).await;
                }
            });
            let held = result.await.map_err(|_| {
                Error::backend(
                    target.name,
                    self.target().to_owned(),
                    "the etcd client's task ended without an answer",
                )
            })??;
            cache.lock().get_or_insert_with(Slot::default).held = Some(held);
            Ok(())
        })
    }

    fn supports_shared(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.target().to_owned()
    }

    fn is_held(&self, name: &str, cache: &mut ExternalCache) -> Result<bool, Error> {
        let slot = cache.get_or_insert_with(Slot::default);
        let Some(held) = slot.held.as_ref() else {
            return Ok(false);
        };
        // The check runs on the runtime, which needs what it reads for itself.
        let probe = held.probe();
        let inner = Arc::clone(&self.inner);
        let bound = IS_HELD_TIMEOUT.min(inner.gw.answer_timeout);
        let name_owned = name.to_owned();
        block_on(async move { inner.is_held(&name_owned, &probe, bound).await })
            .map_err(|reason| Error::backend(name, self.target().to_owned(), reason))?
    }

    fn list_held(&self, prefix: Option<&str>) -> Result<Vec<HeldExternalLock>, Error> {
        Ok(self
            .held(prefix)?
            .into_iter()
            .map(|held| {
                let detail = match held.lease {
                    0 => format!("no lease, fencing token {}", held.revision),
                    lease => format!("lease {lease:x}, fencing token {}", held.revision),
                };
                let listed = HeldExternalLock::new(held.name).with_detail(detail);
                match held.ttl_left {
                    Some(left) => listed.with_expires_in(left),
                    None => listed,
                }
            })
            .collect())
    }

    fn fencing_token(&self, cache: &mut ExternalCache) -> Option<i64> {
        cache
            .get_or_insert_with(Slot::default)
            .held
            .as_ref()
            .map(|held| held.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_toozs() {
        let (full, key) = key_of(
            "6f1c1b4a-vol-delete_volume",
            Some("cinder"),
            DEFAULT_KEY_PREFIX,
        )
        .unwrap();
        assert_eq!(full, "cinder-6f1c1b4a-vol-delete_volume");
        assert_eq!(key, b"/tooz/lockscinder-6f1c1b4a-vol-delete_volume");
        assert_eq!(
            key_of("x", Some("manila-"), "/p/").unwrap().1,
            b"/p/manila-x"
        );
        assert_eq!(
            key_of("a/b", None, "/tooz/locks").unwrap().1,
            b"/tooz/locksa_b"
        );
    }

    #[test]
    fn bad_urls_name_the_url_without_secrets() {
        let err = EtcdBackend::new("etcd3+http://u:s3cret@h?x=1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a valid etcd URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = EtcdBackend::new("etcd3+http://h?frobnicate=1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown option \"frobnicate\""), "{err}");
    }

    #[test]
    fn tls_files_that_are_missing_are_named() {
        let err = EtcdBackend::new("etcd3+https://h?ca_cert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("ca_cert") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }
}
