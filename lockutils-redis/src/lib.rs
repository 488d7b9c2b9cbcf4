//! # lockutils-redis
//!
//! lockutils locks across hosts, on Redis or Valkey: **the same locks as tooz's redis
//! driver**, so that a Rust service and a Python service using tooz exclude each other.
//!
//! ```no_run
//! // Once, at start-up: redis:// URLs now name this backend.
//! lockutils_redis::install();
//! // With LOCKUTILS_BACKEND_URL=redis://:secret@redis.example:6379 in the environment (or
//! // `backend_url` in [oslo_concurrency]), every external lock is taken on the server:
//! let guard = lockutils::lock("6f1c-delete_volume").prefix("cinder").external(true).acquire()?;
//! // ... the same lock as cinder's @coordination.synchronized('{volume.id}-delete_volume')
//! assert!(guard.is_external_held()?);
//! let token = guard.fencing_token(); // Some(..): grows with every acquisition
//! # Ok::<(), lockutils::Error>(())
//! ```
//!
//! ## The lock on the wire (tooz's)
//! - **Key**: `<namespace>_<full name>_lock`, namespace `_tooz` unless the URL sets
//!   `namespace` (see [`key`](mod@key) for the mapping from a lockutils name and prefix).
//!   **Value**: a random token of the holder (32 hex digits).
//! - **Acquire**: `SET key token NX PX <lock timeout>`, with the lock timeout (the key's expiry)
//!   from the URL's `lock_timeout`, else its `timeout`, else 30 s, as tooz.
//! - **Release**: a script deletes the key only if it still holds the holder's token.
//! - **Extension**: a script re-sets the expiry only if the key still holds the token.
//!
//! A tooz process and a lockutils process thus take turns on one key; neither deletes or
//! extends the other's lock.
//!
//! ## What lockutils adds
//! - **Extension in the background**: while a lock is held, a thread of the backend extends
//!   its expiry every third of the lock timeout. An extension that fails (no answer within
//!   the bound, a refused script, a lost connection that cannot be opened again) or is refused
//!   (the key no longer holds the token: it expired, was deleted, or another holder has it)
//!   marks the lock **lost** at once, logs it (a warning, target `lockutils`), and
//!   [`is_external_held`](lockutils_core::LockGuard::is_external_held) answers `false` from
//!   then on. `is_external_held` also compares the key with the token on the server, and
//!   counts a lock whose last extension is older than the lock timeout as lost without asking.
//! - **Fencing tokens**: the acquire script increments a counter of the namespace
//!   (`<namespace>_fencing_token`) in the same atomic step as the `SET`: the token of each
//!   acquisition is greater than that of every acquisition before it (of any lock of the
//!   namespace, by lockutils; tooz's acquisitions take none), **while the server keeps its
//!   data** — see "Limits".
//! - **Timeouts bound the wait, never the expiry**: `timeout(d)` gives up waiting after `d`;
//!   the lock, once held, is held until released (or lost).
//! - **Faster handoff**: the release script publishes on the channel `<key>:released`; a
//!   waiter subscribes to it and tries again the moment a lockutils holder releases. It also
//!   tries again every [`POLL_INTERVAL`] (0.1 s, tooz's pace) and when the holder's expiry
//!   comes, which is how it sees tooz's releases and expired keys.
//! - **Release never deletes another's lock** (token check), and a guard dropped after its
//!   lock was lost reports it (logged by the guard of `lock()`).
//! - **No fairness**, as in tooz: on a release, every lockutils waiter tries at once and one
//!   wins; tooz's waiters try at their next poll.
//!
//! ## Every lockutils form
//! Blocking (`acquire()`), non-blocking (`blocking(false)`), timed (`timeout(d)`),
//! awaited (`acquire_async()`, with the `async` feature), `#[synchronized(.., external =
//! true)]` and `lockutils run`. Shared locks (`shared(true)`) are refused with
//! [`Error::Backend`]: tooz has no shared Redis locks, and
//! this backend does not invent a layout that tooz would not respect.
//!
//! ## Bad conditions are errors
//! Every round trip is bounded: connecting by the connect timeout
//! ([`DEFAULT_CONNECT_TIMEOUT`], URL option `socket_connect_timeout`), every request by the
//! **answer timeout** ([`DEFAULT_ANSWER_TIMEOUT`], URL option `answer_timeout`, else tooz's
//! `socket_timeout`), and an extension also by a third of the lock timeout. A server that is
//! down, frozen, refuses the password, or refuses scripts (`rename-command EVAL ""`, an ACL
//! user without `+@scripting`) makes the acquire fail with
//! [`Error::Backend`] naming the lock, the server (its URL
//! without the password) and the cause; a waiter notices within one answer timeout, since it
//! asks the server at least every [`POLL_INTERVAL`]. A lost connection is opened again once
//! per request; if that fails too, the request fails.
//!
//! ## Limits (read before relying on it)
//! A Redis lock lives in the server's memory, as a key with an expiry. Three things can free
//! it while its holder still believes it holds it:
//! - **Failover.** Replication is asynchronous: a replica promoted by Sentinel (or by hand)
//!   may not have received the `SET` of a lock that was just taken, nor the latest increments
//!   of the fencing counter. After the failover a second holder can take the lock, and
//!   fencing tokens can repeat values already given. `WAIT` does not make it safe either (a
//!   replica that acknowledged can still lose the race to be promoted). The holder of the
//!   first lock learns of it at its next extension (at most a third of the lock timeout
//!   later) or `is_external_held()`.
//! - **Eviction.** A server with a `maxmemory` limit and an eviction policy other than
//!   `noeviction` may delete lock keys (with an expiry, they are the first candidates of
//!   `volatile-*` policies) and the fencing counter. Configure the server that holds locks
//!   with `maxmemory-policy noeviction`: when full it then refuses the `SET` (an error), but
//!   never drops a held lock.
//! - **A restart without persistence** (or with an RDB snapshot older than the lock) drops
//!   every lock and resets the fencing counter.
//!
//! This is why the **fencing token** matters: pass it with each write to the storage the lock
//! protects, and have the storage refuse a token lower than the highest it has seen. A holder
//! that lost its lock unnoticed (paused by the garbage collector of a VM, cut off, or after a
//! failover) then cannot overwrite its successor's work. Where tokens must survive a failover,
//! compare (epoch, token) where the epoch is something that grows with every failover (for
//! Sentinel, the `config-epoch` of the master), or keep the counter in storage that is not
//! lost. Redis Cluster is not supported (the acquire script touches two keys).
//!
//! ## URLs
//! `redis://[[user]:password@]host[:port][?options]` (tooz's), `redis:///path/to/socket`,
//! and Sentinel: `redis://sentinel-host:26379?sentinel=MASTER&sentinel_fallback=host2:26379`
//! (`sentinel_username`, `sentinel_password` for the Sentinels; the user information is the
//! master's). Options: `namespace`, `timeout` and `lock_timeout` (seconds), `db`,
//! `answer_timeout`, `socket_timeout`, `socket_connect_timeout`, `encoding` (only UTF-8);
//! tooz's `retry_on_timeout`, `socket_keepalive`, `health_check_interval` and
//! `membership_timeout` are accepted and change nothing. Any other option is refused (a
//! misspelt option is an error, not a default).
//!
//! **TLS** (the `tls` feature: rustls, with ring's cryptography): `rediss://host:port`, or
//! tooz's `redis://host:port?ssl=true`; `ssl_ca_certs=FILE` trusts the CA certificates in
//! that PEM file instead of the system's, `ssl_certfile=FILE&ssl_keyfile=FILE` present a
//! client certificate. With Sentinel, the Sentinels are asked in the clear and the master is
//! reached over TLS (`sentinel_ssl` is refused). Without the feature, a TLS URL is refused,
//! saying so.

#![warn(missing_docs)]

pub mod key;

#[cfg(feature = "async")]
mod asynchronous;
mod backend;
mod keeper;
mod options;
mod script;

use std::time::Duration;

use lockutils_core::Error;

pub use backend::RedisBackend;
pub use key::{full_name, lock_key};

/// The namespace of keys unless the URL sets `namespace` (tooz's default).
pub const DEFAULT_NAMESPACE: &str = "_tooz";
/// The lock timeout (the key's expiry) unless the URL sets `lock_timeout` or `timeout`
/// (tooz's default).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest lock timeout a URL may set (a held lock is extended every third of it).
pub const MIN_LOCK_TIMEOUT: Duration = Duration::from_millis(100);
/// The server's port unless the URL gives one.
pub const DEFAULT_PORT: u16 = 6379;
/// How long connecting (socket and authentication) may take, unless the URL sets
/// `socket_connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a request, unless the URL sets `answer_timeout`
/// (or tooz's `socket_timeout`).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The URL option (a lockutils one) that sets the answer timeout, in seconds.
pub const ANSWER_TIMEOUT_OPTION: &str = "answer_timeout";
/// The longest pause between two tries of a waiter (tooz's pace): how soon a waiter sees a
/// release that was not announced (a tooz holder's, an expiry).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a release waits for the server (or the answer timeout, if shorter); past it, the
/// lock is left to expire.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `is_external_held` waits for the server (or the answer timeout, if shorter).
pub const IS_HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections a backend keeps for later requests, at most.
pub const MAX_IDLE: usize = 16;

/// Registers this backend for `redis://` and `rediss://` URLs, so that a `backend_url` (or
/// `LOCKUTILS_BACKEND_URL`) naming a Redis server sends external locks there. Call it once at
/// start-up, before the first external lock.
pub fn install() {
    lockutils_core::install_backend(&["redis", "rediss"], backend);
}

/// The backend of `url`, made on first use and kept for the life of the process (one pool of
/// connections and one extension thread per URL): what [`install`] registers, and what
/// [`LockBuilder::backend`](lockutils_core::LockBuilder::backend) takes.
///
/// ```no_run
/// let redis = lockutils_redis::backend("redis://:secret@redis.example?lock_timeout=10")?;
/// let guard = lockutils::lock("x").external(true).backend(redis).acquire()?;
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn backend(url: &str) -> Result<&'static RedisBackend, Error> {
    static BACKENDS: lockutils_core::BackendsByUrl<RedisBackend> =
        lockutils_core::BackendsByUrl::new();
    BACKENDS.get_or_make(url, RedisBackend::new)
}

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
