//! # lockutils-postgres
//!
//! lockutils locks across hosts, on PostgreSQL session advisory locks.
//!
//! ```no_run
//! // Once, at start-up: postgres:// URLs now name this backend.
//! lockutils_postgres::install();
//! // With LOCKUTILS_BACKEND_URL=postgres://app:secret@db/locks in the environment (or
//! // `backend_url` in [oslo_concurrency]), every external lock is taken on the server:
//! let guard = lockutils::lock("instance-42").external(true).acquire()?;
//! assert!(guard.is_external_held()?);
//! let token = guard.fencing_token(); // Some(..): grows with every acquisition
//! # Ok::<(), lockutils::Error>(())
//! ```
//!
//! ## How a lock is held
//! - **One session per held lock.** `lock(name).external(true)` takes the in-process lock of
//!   `name` first (so one process never asks the server twice for a name), then a connection
//!   of the backend's pool (or a new one), on which it runs `pg_advisory_lock(key)`. The lock
//!   lives exactly as long as that session: released with `pg_advisory_unlock(key)`, after
//!   which the connection goes back to the pool (at most [`MAX_IDLE`] idle ones are kept), or
//!   by the server the moment the session ends — a crashed holder frees the lock for the next
//!   waiter at once.
//! - **Waiting is the server's.** A blocking acquire waits in the server's lock queue (no
//!   polling of the lock: its place in the queue is kept, and a release hands the lock on at
//!   once); a timed one sets `lock_timeout`, and the server gives up (SQLSTATE 55P03, turned
//!   into [`Error::AcquireLockFailed`]); a non-blocking one is `pg_try_advisory_lock`. While
//!   it waits, the server's liveness is checked (see "A server that stops answering").
//! - **Keys** are a documented 64-bit hash of the full lock name (see [`key`](mod@key)), so
//!   that other clients — Python, SQL — take the same lock.
//! - **Shared locks** (`pg_advisory_lock_shared`) through [`PgLock::read`].
//! - **Fencing tokens.** Each acquisition runs `pg_current_xact_id()` once it holds the lock:
//!   a transaction id, strictly greater than that of any acquisition before it on the same
//!   server (of any lock). Pass it to storage that refuses writes with a token older than one
//!   it has seen, and a holder that lost its lock unnoticed cannot overwrite its successor's
//!   work. Each acquisition consumes a transaction id.
//!
//!   Tokens grow along one primary's history only. A standby promoted after a failover
//!   continues from the last transaction id *it* received: with asynchronous replication (or
//!   `synchronous_commit = off`) that may be behind the old primary, and the new primary can
//!   hand out tokens equal to or lower than ones already given. Where tokens must survive a
//!   failover, either replicate synchronously (`synchronous_commit = on` or stronger, with
//!   `synchronous_standby_names` covering the standby that will be promoted), or compare
//!   tokens together with the server's timeline, which grows with every promotion: order by
//!   (timeline, token), and refuse any write from an older timeline. The current timeline is
//!   the first eight hex digits of `pg_walfile_name(pg_current_wal_lsn())`;
//!   `SELECT timeline_id FROM pg_control_checkpoint()` shows it too, but only once the
//!   first checkpoint after the promotion is done.
//! - **Lock loss** is visible: [`LockGuard::is_external_held`](lockutils_core::LockGuard::is_external_held) and
//!   [`PgGuard::is_held`] ask the server whether the session still holds the lock, waiting
//!   at most [`IS_HELD_TIMEOUT`] (or the answer timeout, if shorter) for the answer.
//!
//! ## Async code
//! With the `async` feature, the connections of awaited locks run on one small runtime of
//! this crate (a thread named `lockutils-pg-io`), whichever executor awaits them: a session
//! pooled by one runtime serves any other, and a runtime that stops being driven strands no
//! lock. Dropping a guard of an awaited lock waits for the server to confirm the release (one
//! round trip), so that the in-process lock is not free while the server still holds the
//! lock; a server that does not answer within [`RELEASE_TIMEOUT`] (or the answer timeout, if
//! shorter) has the session closed, which frees the lock as soon as the server notices. The
//! blocking API releases the same way.
//!
//! The blocking API works inside async tasks too (each blocking session blocks on a
//! current-thread runtime of its own, which cannot run on a thread that drives another
//! runtime: there, each blocking call, and each close of a session, moves to a thread of its
//! own), but it blocks the executor's thread while it waits: in async code prefer
//! `acquire_async()`.
//!
//! ## Connections
//! Unless the URL says otherwise, connections time out after [`DEFAULT_CONNECT_TIMEOUT`]
//! (the blocking API bounds the socket's connect by it; awaited locks, the whole set-up),
//! send TCP keepalives after [`DEFAULT_KEEPALIVES_IDLE`] of silence (every
//! [`DEFAULT_KEEPALIVES_INTERVAL`], [`DEFAULT_KEEPALIVES_RETRIES`] times), give up on data
//! unacknowledged for [`DEFAULT_TCP_USER_TIMEOUT`], and set `application_name=lockutils`: a
//! client notices a vanished host within about 30 s, also while it waits for a lock. The
//! connect timeout bounds the whole set-up (socket, authentication, settings), not only the
//! socket's connect. A timed acquire bounds its connecting by what remains of its timeout as
//! well (if that is shorter), so that an unreachable server does not make it wait longer than
//! asked. How fast
//! a vanished *client* host is noticed — and its lock given to the next waiter — is up to the
//! server: `tcp_keepalives_idle`,
//! `tcp_keepalives_interval`, `tcp_keepalives_count` and `tcp_user_timeout` bound it (by
//! default Linux waits two hours!); a client process that dies on a live host is noticed at
//! once (the kernel closes its socket). `idle_session_timeout`, if set on the server, ends
//! the session of a lock held without queries for longer than that: leave it unset (0) for
//! lock users, or hold locks for less.
//!
//! A blocking wait sets `statement_timeout = 0` for itself: on the server, its only bound is
//! the lock's own timeout (`lock_timeout`). A URL listing several hosts should say
//! `target_session_attrs=read-write`: a standby cannot give fencing tokens, and refuses.
//!
//! ## A server that stops answering
//! A server whose processes are stopped or stuck (SIGSTOP, a hung disk, a frozen VM seen
//! through a live proxy) still has its kernel accept and acknowledge TCP: neither the connect
//! timeout on the socket nor keepalives nor `tcp_user_timeout` fire. So every call is also
//! bounded by the client, with the **answer timeout** ([`DEFAULT_ANSWER_TIMEOUT`], 10 s,
//! unless the URL sets `answer_timeout`, in seconds: `?answer_timeout=2.5`):
//! - **Connecting** (the whole set-up) takes at most the connect timeout.
//! - **Every round trip that does not wait in the lock queue** — the try (with its fencing
//!   token), a release, a check, [`PgBackend::query`] — waits at most the answer timeout
//!   ([`RELEASE_TIMEOUT`] and [`IS_HELD_TIMEOUT`], 5 s, bound releases and checks if
//!   shorter).
//! - **A timed acquire** (`timeout(d)`) gives up at most `d` plus [`TIMEOUT_GRACE`] (1 s, or
//!   the answer timeout if shorter) after it starts: each of its round trips is bounded by what
//!   is left of that too. A non-blocking one, by the connect timeout (a new session) and the
//!   answer timeout (the try).
//! - **A wait in the server's queue** says nothing until the lock is granted, so it cannot be
//!   bounded by itself. Every half answer timeout of waiting, the waiter asks the server for
//!   an empty query on another session (an idle one of the pool, or a new one), bounded by the
//!   answer timeout (or connect timeout); the wait goes on in its place in the queue if the
//!   server answers, and fails if it does not. A blocking acquire with no timeout thus notices
//!   a server that stopped answering within **1.5 × the answer timeout** (15 s by default):
//!   a check after at most half of it, and that check's bound. The check costs one round trip
//!   per waiter every 5 s (by default), and nothing on the handoff: the waiting statement is
//!   never interrupted.
//!
//! A server that did not answer is an [`Error::Backend`] naming the lock, the server (no
//! password) and the cause ("the server did not answer within …"). A session given up on
//! while taking or releasing a lock is closed at once (its statement may still be queued on
//! the server, which ends it when it reads again); a check given up on leaves the session to
//! its guard. Lower `answer_timeout` to notice sooner; raise it for a server that may pause
//! for long (its waits are checked, not cut: only a server that answers nothing in that time
//! fails them).
//!
//! ## Not supported
//! - Transaction pooling (PgBouncer's `pool_mode = transaction` or `statement`): session
//!   advisory locks need the session to stay the client's. Use session pooling or connect to
//!   the server directly.
//! - Reentrancy across processes: two processes never share a lock, even with the same name
//!   and process id.

#![warn(missing_docs)]

pub mod key;

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
use lockutils_core::AcquireFuture;
use lockutils_core::{
    Error, ExternalBackend, ExternalCache, ExternalTarget, LOG_TARGET, Wait, redact_url,
    register_backend,
};
use parking_lot::Mutex;
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::{NoTls, SimpleQueryMessage};

pub use key::{key_of, key_sql, lock_key};

/// How long connecting may take, unless the URL sets `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after which the client's TCP keepalives start, unless the URL sets
/// `keepalives_idle`.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
/// Time between keepalive probes, unless the URL sets `keepalives_interval`.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes after which the connection is dead, unless the URL sets
/// `keepalives_retries`.
pub const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection counts as dead, unless the
/// URL sets `tcp_user_timeout`: bounds a release or check sent to a host that vanished.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to answer a round trip that does not wait in its lock queue
/// (taking a free lock, the fencing token, a release, a check), and how often a session that
/// waits in the queue has the server's liveness checked, unless the URL sets
/// `answer_timeout` (seconds, e.g. `?answer_timeout=2.5`; see the crate docs).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The URL option (a lockutils one, not libpq's) that sets the answer timeout.
pub const ANSWER_TIMEOUT_OPTION: &str = "answer_timeout";
/// How much longer than its timeout a timed acquire waits for the server to report that the
/// lock's timeout ran out (or the answer timeout, if shorter), before it gives up on a server
/// that does not answer.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(1);
/// How long [`PgGuard::is_held`] (and `is_external_held`) waits for the server's answer before
/// reporting that it cannot tell (or the answer timeout, if shorter).
pub const IS_HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections a backend keeps for later locks, at most.
pub const MAX_IDLE: usize = 16;
/// How long dropping (or releasing) a guard waits for the server to confirm the release (or
/// the answer timeout, if shorter); past it, the session is closed (which frees the lock on
/// the server as soon as the server sees the connection end) and the release reported as
/// failed.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared (read) or exclusive (write) side of an advisory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `pg_advisory_lock_shared`: any number of shared holders, no exclusive one.
    Shared,
    /// `pg_advisory_lock`: one holder.
    Exclusive,
}

impl Mode {
    fn suffix(self) -> &'static str {
        match self {
            Mode::Shared => "_shared",
            Mode::Exclusive => "",
        }
    }

    fn pg_locks_mode(self) -> &'static str {
        match self {
            Mode::Shared => "ShareLock",
            Mode::Exclusive => "ExclusiveLock",
        }
    }
}

/// Registers this backend for `postgres://` and `postgresql://` URLs, so that a
/// `backend_url` (or `LOCKUTILS_BACKEND_URL`) naming a PostgreSQL server sends external locks
/// there. Call it once at start-up, before the first external lock.
pub fn install() {
    fn factory(url: &str) -> Result<&'static dyn ExternalBackend, String> {
        match backend(url) {
            Ok(backend) => Ok(backend),
            Err(Error::Backend { reason, .. }) => Err(reason),
            Err(other) => Err(other.to_string()),
        }
    }
    register_backend("postgres", factory);
    register_backend("postgresql", factory);
}

/// The backend of `url`, made on first use and kept for the life of the process (one pool
/// per URL): what [`install`] registers, and what [`LockBuilder::backend`](lockutils_core::LockBuilder::backend)
/// takes.
///
/// ```no_run
/// let db = lockutils_postgres::backend("postgres://app@db/locks")?;
/// let guard = lockutils::lock("x").external(true).backend(db).acquire()?;
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn backend(url: &str) -> Result<&'static PgBackend, Error> {
    static BACKENDS: LazyLock<Mutex<HashMap<String, &'static PgBackend>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut backends = BACKENDS.lock();
    if let Some(backend) = backends.get(url) {
        return Ok(backend);
    }
    let backend: &'static PgBackend = Box::leak(Box::new(PgBackend::new(url)?));
    backends.insert(url.to_owned(), backend);
    Ok(backend)
}

/// Locks on one PostgreSQL server (or cluster of hosts the URL lists), with a pool of
/// sessions. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL without its password: what errors and logs show.
    target: String,
    config: tokio_postgres::Config,
    /// See [`DEFAULT_ANSWER_TIMEOUT`].
    answer_timeout: Duration,
    idle: Mutex<Vec<SyncClient>>,
    #[cfg(feature = "async")]
    idle_async: Mutex<Vec<asynchronous::AsyncSession>>,
}

/// Sets the defaults this crate documents on a parsed configuration of either client.
macro_rules! apply_defaults {
    ($config:expr, $url:expr) => {{
        let config = $config;
        let given = |option: &str| $url.contains(option);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if !given("keepalives_idle") {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        if !given("keepalives=") {
            config.keepalives(true);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("lockutils");
        }
    }};
}

/// `url` without the options of this crate (which the client would refuse), and the answer
/// timeout it sets, if any.
fn own_options(url: &str) -> Result<(String, Option<Duration>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut kept = Vec::new();
    let mut answer_timeout = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((ANSWER_TIMEOUT_OPTION, value)) => {
                let seconds: f64 = value.parse().map_err(|_| {
                    format!("{ANSWER_TIMEOUT_OPTION} must be a number of seconds, not {value:?}")
                })?;
                let timeout = Duration::try_from_secs_f64(seconds)
                    .ok()
                    .filter(|timeout| *timeout >= Duration::from_millis(1))
                    .ok_or_else(|| {
                        format!(
                            "{ANSWER_TIMEOUT_OPTION} must be a positive number of seconds \
                             (at least 0.001), not {value:?}"
                        )
                    })?;
                answer_timeout = Some(timeout);
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, answer_timeout))
}

impl PgBackend {
    /// A backend on the server of `url` (`postgres://user:password@host:port/dbname?options`,
    /// with the options of libpq URLs that the `postgres` crate knows, and this crate's
    /// `answer_timeout`). Connects on first use, not here.
    pub fn new(url: &str) -> Result<Self, Error> {
        let target = redact_url(url);
        let bad_url = |e: tokio_postgres::Error| {
            Error::backend(
                "",
                target.clone(),
                format!("not a valid PostgreSQL URL: {}", explain(&e)),
            )
        };
        let (url, answer_timeout) =
            own_options(url).map_err(|reason| Error::backend("", target.clone(), reason))?;
        let mut config: tokio_postgres::Config = url.parse().map_err(bad_url)?;
        apply_defaults!(&mut config, url);
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                config,
                answer_timeout: answer_timeout.unwrap_or(DEFAULT_ANSWER_TIMEOUT),
                idle: Mutex::new(Vec::new()),
                #[cfg(feature = "async")]
                idle_async: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The server's URL, without its password.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// How long the server may take to answer (see [`DEFAULT_ANSWER_TIMEOUT`]).
    pub fn answer_timeout(&self) -> Duration {
        self.inner.answer_timeout
    }

    /// Connections kept idle for later locks now.
    pub fn idle_connections(&self) -> usize {
        let idle = self.inner.idle.lock().len();
        #[cfg(feature = "async")]
        let idle = idle + self.inner.idle_async.lock().len();
        idle
    }

    /// Closes the idle connections (held locks keep theirs).
    pub fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.inner.idle.lock());
        // Closing a session blocks: off an async executor's thread, all at once.
        if off_runtime(|| drop(idle)).is_err() {
            tracing::error!(target: LOG_TARGET, "cannot close idle PostgreSQL sessions");
        }
        #[cfg(feature = "async")]
        self.inner.idle_async.lock().clear();
    }

    /// A lock of this backend: `name` with `prefix`, named and keyed as
    /// `lock(name).prefix(prefix).external(true)` would be (see [`key_of`]).
    pub fn lock(&self, name: &str, prefix: Option<&str>) -> Result<PgLock, Error> {
        let (full_name, key) = key_of(name, prefix)?;
        Ok(PgLock {
            backend: self.clone(),
            name: full_name,
            key,
        })
    }

    /// Runs `sql` (simple query protocol), for tests and diagnostics, on a new session that
    /// is closed afterwards: whatever the SQL leaves behind in the session (an open
    /// transaction, advisory locks, settings) ends with it, and never reaches a lock.
    /// Returns the first column of each row.
    pub fn query(&self, sql: &str) -> Result<Vec<Option<String>>, Error> {
        let inner = &self.inner;
        let messages = off_runtime(|| {
            let mut client = inner.connect("", None)?;
            client.query(sql, inner.answer_timeout).map_err(|fail| {
                client.abandon();
                inner.failed("", "run a query", fail)
            })
        })
        .map_err(|e| inner.thread_error("", &e))??;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                _ => None,
            })
            .collect())
    }
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// A held advisory lock: its session and what it took.
struct Held {
    key: i64,
    mode: Mode,
    token: i64,
    conn: Conn,
}

enum Conn {
    /// In a mutex for checks ([`Inner::is_held`]), which need the session but not the guard.
    Sync(Box<Mutex<SyncClient>>),
    #[cfg(feature = "async")]
    Async(asynchronous::AsyncSession),
}

/// The connection of a session, as tokio-postgres makes it: a future that does the session's
/// I/O whenever it is polled.
type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// A session of the blocking API: a tokio-postgres client whose connection is driven by the
/// calling thread, on a current-thread runtime of the session's own (as the `postgres` crate
/// does), only while the thread waits for an answer, so that every wait can be bounded
/// ([`query`](Self::query)) and a session given up on closes at once.
struct Session {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    /// `None` once it ended.
    connection: Option<Pin<Box<Connection>>>,
    /// Set when a statement may still be running (its answer was not awaited to the end): the
    /// session is then closed without waiting for the server, never pooled.
    abandoned: bool,
}

/// Why a round trip of a [`Session`] failed.
enum Fail {
    /// The client's error (the server's, or the connection's).
    Pg(tokio_postgres::Error),
    /// No answer within this bound.
    Silent(Duration),
    /// Another failure, already an error (the runtime of awaited sessions).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Other(Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

/// Polls `future` (and the session's `connection`, which does its I/O) on `runtime` until it
/// completes, at most `bound`: `None` past it. A connection that ends fails the queries
/// waiting on it.
fn drive<F: Future>(
    runtime: &tokio::runtime::Runtime,
    connection: &mut Option<Pin<Box<Connection>>>,
    mut future: Pin<&mut F>,
    bound: Option<Duration>,
) -> Option<F::Output> {
    runtime.block_on(async {
        let work = std::future::poll_fn(|cx| {
            if let Some(running) = connection.as_mut()
                && running.as_mut().poll(cx).is_ready()
            {
                *connection = None;
            }
            future.as_mut().poll(cx)
        });
        match bound {
            None => Some(work.await),
            Some(bound) => tokio::time::timeout(bound, work).await.ok(),
        }
    })
}

impl Session {
    fn is_closed(&self) -> bool {
        self.connection.is_none() || self.client.is_closed()
    }

    /// Runs `sql` (simple query protocol), waiting at most `bound` for the answer. A query
    /// given up on may still run: the caller closes the session ([`abandon`](Self::abandon)),
    /// or knows that the statement is harmless.
    fn query(&mut self, sql: &str, bound: Duration) -> Result<Vec<SimpleQueryMessage>, Fail> {
        let query = pin!(self.client.simple_query(sql));
        match drive(&self.runtime, &mut self.connection, query, Some(bound)) {
            Some(outcome) => Ok(outcome?),
            None => Err(Fail::Silent(bound)),
        }
    }

    /// Marks the session to be closed at once, without a word to the server.
    fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Ends the session: politely (a Terminate message, at most `bound`) unless it was
    /// abandoned; then the socket is closed, which ends the session on the server too.
    fn close(self, bound: Duration) {
        let Session {
            runtime,
            client,
            mut connection,
            abandoned,
        } = self;
        drop(client);
        if !abandoned && let Some(running) = connection.as_mut() {
            let _ = drive(&runtime, &mut None, running.as_mut(), Some(bound));
        }
        drop(connection);
        drop(runtime);
    }
}

/// A [`Session`] that may be used, and dropped, anywhere: a session blocks on a runtime of its
/// own (also to close when dropped), which tokio refuses to do on a thread that drives a
/// runtime (it panics). There, the drop happens on another thread.
struct SyncClient {
    session: Option<Session>,
    /// How long closing may wait for the server.
    close_bound: Duration,
}

impl std::ops::Deref for SyncClient {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for SyncClient {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("present until dropped")
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        let mut session = self.session.take();
        if session.is_none() {
            return;
        }
        let bound = self.close_bound;
        if let Err(e) = off_runtime(|| {
            if let Some(session) = session.take() {
                session.close(bound);
            }
        }) {
            // Dropping it here would panic: leave its socket open until the process ends.
            tracing::error!(
                target: LOG_TARGET,
                "cannot close a PostgreSQL session: no thread to close it on: {e}"
            );
            std::mem::forget(session.take());
        }
    }
}

/// Runs `op` at once, or, on a thread that drives a tokio runtime (where the `postgres`
/// client cannot block), on a thread of its own, waiting for it. An error when that thread
/// cannot be started (`op` was not run then); a panic in `op` goes on in the caller.
fn off_runtime<T: Send>(op: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(op());
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("lockutils-pg".to_owned())
            .spawn_scoped(scope, op)?;
        match thread.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What the backend keeps in a name's [`ExternalCache`].
#[derive(Default)]
struct Slot {
    held: Option<Held>,
}

fn lock_sql(key: i64, mode: Mode, wait: Wait) -> String {
    let suffix = mode.suffix();
    match wait_millis(wait) {
        None => format!(
            "SELECT CASE WHEN pg_try_advisory_lock{suffix}({key}) \
             THEN pg_current_xact_id()::text::bigint END"
        ),
        Some(ms) => format!(
            "SET lock_timeout = {ms}; SET statement_timeout = 0; \
             SELECT pg_advisory_lock{suffix}({key}); SELECT pg_current_xact_id()::text::bigint"
        ),
    }
}

/// The `lock_timeout` of a wait (0: none), or `None` for one try.
fn wait_millis(wait: Wait) -> Option<u64> {
    match wait {
        Wait::Never => None,
        Wait::Forever => Some(0),
        Wait::For(timeout) if timeout.is_zero() => None,
        Wait::For(timeout) => {
            // Rounded up: a server that gives up earlier than asked would be wrong.
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            Some(
                u64::try_from(ms)
                    .unwrap_or(i32::MAX as u64)
                    .clamp(1, i32::MAX as u64),
            )
        }
    }
}

fn unlock_sql(key: i64, mode: Mode) -> String {
    format!("SELECT pg_advisory_unlock{}({key})", mode.suffix())
}

/// Whether this session holds the lock: a bigint advisory lock shows in `pg_locks` with the
/// key's high 32 bits in `classid`, its low ones in `objid`, and `objsubid = 1`.
fn held_sql(key: i64, mode: Mode) -> String {
    let bits = key as u64;
    let (high, low) = (bits >> 32, bits & 0xffff_ffff);
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
         AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
         AND classid = '{high}'::oid AND objid = '{low}'::oid AND mode = '{}')",
        mode.pg_locks_mode()
    )
}

/// The first column of the last row of a simple query's answer.
fn last_value(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0)),
        _ => None,
    })?
}

/// The outcome of a lock statement: the fencing token, or `None` when the lock was busy.
fn token_of(messages: &[SimpleQueryMessage]) -> Option<i64> {
    last_value(messages).and_then(|v| v.parse().ok())
}

fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Whether `e` says that the session is gone (connection lost, server shut down or crashed),
/// rather than that a statement failed on a live session.
fn session_gone(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || match e.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        }
}

/// `e` with its causes: the client's own text says little ("db error").
pub(crate) fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn db_error(e: &tokio_postgres::Error) -> Option<&DbError> {
    e.as_db_error()
}

/// Why connecting failed.
enum ConnectFail {
    /// The client's error (the server's, or the socket's).
    Pg(tokio_postgres::Error),
    /// No answer within `bound`, which is what was left of the lock's timeout if `by_lock`
    /// (the connect timeout otherwise).
    Silent { bound: Duration, by_lock: bool },
    /// No runtime for the session.
    Runtime(String),
}

/// `d` to the millisecond, for messages.
fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Inner {
    /// The bound of a round trip that does not wait in the lock queue: the answer timeout, or
    /// what is left of a timed acquire's timeout (ending at `deadline`) and its grace, if that
    /// is shorter.
    fn bound(&self, deadline: Option<Instant>) -> Duration {
        match deadline {
            None => self.answer_timeout,
            Some(deadline) => self.answer_timeout.min(self.until_given_up(deadline)),
        }
    }

    /// How much longer than its timeout a timed acquire waits for the server's answer.
    fn grace(&self) -> Duration {
        TIMEOUT_GRACE.min(self.answer_timeout)
    }

    /// From now until a timed acquire ending at `deadline` gives up on the server.
    fn until_given_up(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now()) + self.grace()
    }

    /// How long a wait in the server's queue goes on before the next check that the server
    /// answers, and whether that is the last stretch of a timed acquire (past it, the server
    /// failed to report the lock's timeout in time).
    fn stretch(&self, deadline: Option<Instant>) -> (Duration, bool) {
        let every = self.answer_timeout / 2;
        match deadline.map(|deadline| self.until_given_up(deadline)) {
            Some(rest) if rest <= every => (rest, true),
            _ => (every, false),
        }
    }

    /// A new session. Connecting — the whole set-up: socket, authentication, settings — takes
    /// at most the configured connect timeout, or until `deadline` if that comes first.
    fn try_connect(&self, deadline: Option<Instant>) -> Result<SyncClient, ConnectFail> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (bound, by_lock) = match deadline {
            Some(deadline) => {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                if left < limit {
                    (left, true)
                } else {
                    (limit, false)
                }
            }
            None => (limit, false),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ConnectFail::Runtime(format!(
                    "cannot build the runtime of a PostgreSQL session: {e}"
                ))
            })?;
        let connect = pin!(self.config.connect(NoTls));
        match drive(&runtime, &mut None, connect, Some(bound)) {
            Some(Ok((client, connection))) => Ok(SyncClient {
                session: Some(Session {
                    runtime,
                    client,
                    connection: Some(Box::pin(connection)),
                    abandoned: false,
                }),
                close_bound: self.answer_timeout,
            }),
            Some(Err(e)) => Err(ConnectFail::Pg(e)),
            None => Err(ConnectFail::Silent { bound, by_lock }),
        }
    }

    /// [`try_connect`](Self::try_connect), failing with an error naming lock `name`.
    fn connect(&self, name: &str, deadline: Option<Instant>) -> Result<SyncClient, Error> {
        self.try_connect(deadline).map_err(|fail| match fail {
            ConnectFail::Pg(e) => self.connect_error(name, &e),
            ConnectFail::Silent { bound, by_lock } => self.connect_silent(name, bound, by_lock),
            ConnectFail::Runtime(reason) => Error::backend(name, self.target.clone(), reason),
        })
    }

    pub(crate) fn connect_silent(&self, name: &str, bound: Duration, by_lock: bool) -> Error {
        let which = if by_lock {
            "the lock's timeout"
        } else {
            "the connect timeout"
        };
        Error::backend(
            name,
            self.target.clone(),
            format!(
                "cannot connect to the server: the server did not answer within {which} ({:?})",
                millis(bound)
            ),
        )
    }

    fn connect_error(&self, name: &str, e: &tokio_postgres::Error) -> Error {
        let reason = match e.code() {
            Some(code)
                if *code == SqlState::INVALID_PASSWORD
                    || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                format!("the server refused the credentials: {}", explain(e))
            }
            Some(_) => format!("the server refused the connection: {}", explain(e)),
            None => format!(
                "cannot connect to the server (is it running and reachable, is the URL right?): \
                 {}",
                explain(e)
            ),
        };
        Error::backend(name, self.target.clone(), reason)
    }

    fn query_error(&self, name: &str, action: &str, e: &tokio_postgres::Error) -> Error {
        let reason = if e.is_closed() || db_error(e).is_none() {
            format!(
                "the connection to the server failed while trying to {action}: {}",
                explain(e)
            )
        } else {
            format!("the server failed to {action}: {}", explain(e))
        };
        Error::backend(name, self.target.clone(), reason)
    }

    /// The error of a round trip to `action` that failed with `fail` (a session given up on
    /// is closed).
    fn failed(&self, name: &str, action: &str, fail: Fail) -> Error {
        match fail {
            Fail::Pg(e) => self.query_error(name, action, &e),
            Fail::Silent(bound) => self.silent(name, action, bound),
            Fail::Other(e) => e,
        }
    }

    fn silent(&self, name: &str, action: &str, bound: Duration) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!(
                "the server did not answer within {:?} while trying to {action} (stopped or \
                 overloaded? the URL's `{ANSWER_TIMEOUT_OPTION}` sets how long it may take): the \
                 session was closed",
                millis(bound)
            ),
        )
    }

    fn thread_error(&self, name: &str, e: &std::io::Error) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!("cannot start a thread for the PostgreSQL client: {e}"),
        )
    }

    fn unanswered(&self, name: &str, bound: Duration) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!(
                "the server did not answer within {:?}: cannot tell whether the lock is still \
                 held (act as if it was lost)",
                millis(bound)
            ),
        )
    }

    fn unconfirmed(&self, name: &str, bound: Duration) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!(
                "the server did not answer within {:?}: it did not confirm the release; the \
                 session was closed, which frees the lock once the server notices",
                millis(bound)
            ),
        )
    }

    /// An idle session of the pool, if there is one that is still open.
    fn pop_idle(&self) -> Option<SyncClient> {
        loop {
            let client = self.idle.lock().pop()?;
            if !client.is_closed() {
                return Some(client);
            }
        }
    }

    /// An idle connection, or a new one (see [`connect`](Self::connect)); `true` if it came
    /// from the pool.
    fn checkout(&self, name: &str, deadline: Option<Instant>) -> Result<(SyncClient, bool), Error> {
        match self.pop_idle() {
            Some(client) => Ok((client, true)),
            None => Ok((self.connect(name, deadline)?, false)),
        }
    }

    fn checkin(&self, client: SyncClient) {
        if client.is_closed() || client.abandoned {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }

    /// Whether the server still answers, asked with an empty query on another session (an
    /// idle one, or a new one), within [`bound`](Self::bound): the check of a wait in the
    /// server's queue, whose own session says nothing until the lock is granted. `Err(bound)`
    /// only when the server did not answer in time; other failures (a pooled session that
    /// died, a refused connection) leave the verdict to the waiting session itself.
    fn check_alive(&self, deadline: Option<Instant>) -> Result<(), Duration> {
        let bound = self.bound(deadline);
        let mut client = match self.pop_idle() {
            Some(client) => client,
            None => match self.try_connect(Instant::now().checked_add(bound)) {
                Ok(client) => client,
                Err(ConnectFail::Silent { .. }) => return Err(bound),
                Err(_) => return Ok(()),
            },
        };
        match client.query("", bound) {
            Ok(_) => {
                self.checkin(client);
                Ok(())
            }
            Err(Fail::Silent(bound)) => {
                client.abandon();
                Err(bound)
            }
            Err(Fail::Pg(_) | Fail::Other(_)) => Ok(()),
        }
    }

    /// Takes the lock on `session`: the fencing token, or `None` if `wait` ran out (the
    /// server's `lock_timeout`; a timed wait ends at `deadline`). An uncontended lock takes one
    /// round trip: a try, which the server refuses while others are queued, so that it never
    /// jumps the queue; only then the wait, in the server's queue, checking every half answer
    /// timeout that the server still answers ([`check_alive`](Self::check_alive)).
    fn lock_on(
        &self,
        session: &mut Session,
        key: i64,
        mode: Mode,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Option<i64>, Fail> {
        let try_sql = lock_sql(key, mode, Wait::Never);
        let tried = token_of(&session.query(&try_sql, self.bound(deadline))?);
        if tried.is_some() || wait_millis(wait).is_none() {
            return Ok(tried);
        }
        let sql = lock_sql(key, mode, wait);
        let started = Instant::now();
        let Session {
            runtime,
            client,
            connection,
            ..
        } = session;
        let mut waiting = pin!(client.simple_query(&sql));
        loop {
            let (stretch, last) = self.stretch(deadline);
            match drive(runtime, connection, waiting.as_mut(), Some(stretch)) {
                Some(Ok(messages)) => return Ok(token_of(&messages)),
                Some(Err(e)) if is_lock_timeout(&e) => return Ok(None),
                Some(Err(e)) => return Err(Fail::Pg(e)),
                None if last => return Err(Fail::Silent(started.elapsed())),
                None => self.check_alive(deadline).map_err(Fail::Silent)?,
            }
        }
    }

    /// Takes the lock `key` on a session of its own.
    fn take(&self, name: &str, key: i64, mode: Mode, wait: Wait) -> Result<Held, Error> {
        off_runtime(|| self.take_here(name, key, mode, wait))
            .map_err(|e| self.thread_error(name, &e))?
    }

    fn take_here(&self, name: &str, key: i64, mode: Mode, wait: Wait) -> Result<Held, Error> {
        let deadline = wait.deadline();
        let (mut client, mut pooled) = self.checkout(name, deadline)?;
        loop {
            match self.lock_on(&mut client, key, mode, wait.remaining(deadline), deadline) {
                Ok(Some(token)) => {
                    return Ok(Held {
                        key,
                        mode,
                        token,
                        conn: Conn::Sync(Box::new(Mutex::new(client))),
                    });
                }
                Ok(None) => {
                    self.checkin(client);
                    return Err(Error::acquire_failed(name, wait.waited()));
                }
                // A pooled session may have died while idle (a server restart): once, a new one.
                Err(Fail::Pg(e)) if pooled && session_gone(&e) => {
                    client = self.connect(name, deadline)?;
                    pooled = false;
                }
                Err(fail) => {
                    // A statement given up on may still be queued on the server: closing the
                    // session takes it out (once the server reads again).
                    client.abandon();
                    return Err(self.failed(name, "take the lock", fail));
                }
            }
        }
    }

    /// Releases `held`; its session goes back to the pool if all went well.
    fn release(self: &Arc<Self>, name: &str, held: Held) -> Result<(), Error> {
        let sql = unlock_sql(held.key, held.mode);
        match held.conn {
            Conn::Sync(client) => {
                let mut client = Some(client);
                off_runtime(|| self.release_sync(name, client.take(), &sql))
                    .map_err(|e| self.thread_error(name, &e))?
            }
            #[cfg(feature = "async")]
            Conn::Async(session) => self.release_async(name, session, sql),
        }
    }

    /// How long a release waits for the server's confirmation.
    fn release_bound(&self) -> Duration {
        RELEASE_TIMEOUT.min(self.answer_timeout)
    }

    /// How long a check waits for the server's answer.
    fn is_held_bound(&self) -> Duration {
        IS_HELD_TIMEOUT.min(self.answer_timeout)
    }

    fn release_sync(
        &self,
        name: &str,
        client: Option<Box<Mutex<SyncClient>>>,
        sql: &str,
    ) -> Result<(), Error> {
        let Some(client) = client else {
            return Ok(());
        };
        let mut client = client.into_inner();
        match client.query(sql, self.release_bound()) {
            Ok(messages) if last_value(&messages) == Some("t") => {
                self.checkin(client);
                Ok(())
            }
            Ok(_) => Err(self.lost(name)),
            Err(Fail::Pg(e)) => Err(Error::backend(
                name,
                self.target.clone(),
                format!(
                    "the session holding the lock failed before the release, which may \
                     have lost the lock earlier: {}",
                    explain(&e)
                ),
            )),
            Err(Fail::Silent(bound)) => {
                client.abandon();
                Err(self.unconfirmed(name, bound))
            }
            Err(Fail::Other(e)) => Err(e),
        }
    }

    fn lost(&self, name: &str) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            "the session no longer held the lock at release: it was lost earlier",
        )
    }

    /// Whether the session of `held` still holds it, asking the server; at most
    /// [`IS_HELD_TIMEOUT`] (or the answer timeout, if shorter). A check given up on leaves
    /// the session as it is: its answer, if it ever comes, is skipped by the next query.
    fn is_held(&self, name: &str, held: &Held) -> Result<bool, Error> {
        let sql = held_sql(held.key, held.mode);
        match &held.conn {
            Conn::Sync(client) => {
                let bound = self.is_held_bound();
                let outcome = off_runtime(|| {
                    let mut client = client.lock();
                    if client.is_closed() {
                        return Ok(None);
                    }
                    client
                        .query(&sql, bound)
                        .map(|messages| Some(last_value(&messages) == Some("t")))
                })
                .map_err(|e| self.thread_error(name, &e))?;
                match outcome {
                    Ok(None) => Ok(false),
                    Ok(Some(held)) => Ok(held),
                    Err(Fail::Pg(e)) if e.is_closed() || db_error(&e).is_some() => Ok(false),
                    Err(Fail::Pg(e)) => Err(self.query_error(name, "check the lock", &e)),
                    Err(Fail::Silent(bound)) => Err(self.unanswered(name, bound)),
                    Err(Fail::Other(e)) => Err(e),
                }
            }
            #[cfg(feature = "async")]
            Conn::Async(session) => self.is_held_blocking(name, session, sql),
        }
    }
}

#[cfg(feature = "async")]
mod asynchronous;

impl ExternalBackend for PgBackend {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error> {
        let (_, key) = key_of(target.name, target.prefix)?;
        let held = self.inner.take(target.name, key, Mode::Exclusive, wait)?;
        cache.get_or_insert_with(Slot::default).held = Some(held);
        Ok(())
    }

    fn release(&self, name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        match cache.get_or_insert_with(Slot::default).held.take() {
            Some(held) => self.inner.release(name, held),
            None => Ok(()),
        }
    }

    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error> {
        let (_, key) = key_of(target.name, target.prefix)?;
        let slot = cache.get_or_insert_with(Slot::default);
        Ok(slot.held.as_ref().is_some_and(|held| held.key == key))
    }

    #[cfg(feature = "async")]
    fn acquire_async<'a>(
        &'a self,
        target: ExternalTarget<'a>,
        cache: &'a Mutex<ExternalCache>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> AcquireFuture<'a> {
        Box::pin(async move {
            let (_, key) = key_of(target.name, target.prefix)?;
            let held = self
                .inner
                .take_async(target.name, key, Mode::Exclusive, wait, deadline)
                .await?;
            cache.lock().get_or_insert_with(Slot::default).held = Some(held);
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.inner.target.clone()
    }

    fn is_held(&self, name: &str, cache: &mut ExternalCache) -> Result<bool, Error> {
        match &cache.get_or_insert_with(Slot::default).held {
            Some(held) => self.inner.is_held(name, held),
            None => Ok(false),
        }
    }

    fn fencing_token(&self, cache: &mut ExternalCache) -> Option<i64> {
        cache
            .get_or_insert_with(Slot::default)
            .held
            .as_ref()
            .map(|held| held.token)
    }
}

/// One advisory lock of a [`PgBackend`], with shared and exclusive sides: the crate's own API,
/// without the in-process lock of [`lockutils::lock`](lockutils_core::lock()). Each guard holds the lock in a session
/// of its own, so guards exclude each other within the process too (the server arbitrates).
///
/// ```no_run
/// let db = lockutils_postgres::PgBackend::new("postgres://app@db/locks")?;
/// let lock = db.lock("catalog", Some("glance"))?;
/// let readers = (lock.read()?, lock.read()?); // shared
/// assert!(lock.try_write().is_err());        // the writer is excluded
/// drop(readers);
/// let writer = lock.write()?;
/// assert!(writer.is_held()?);
/// println!("fencing token {}", writer.fencing_token());
/// # Ok::<(), lockutils::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgLock {
    backend: PgBackend,
    name: String,
    key: i64,
}

impl PgLock {
    /// The full name (prefix included) that the key is the hash of.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The advisory-lock key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Takes the lock in `mode` as `wait` allows.
    pub fn acquire(&self, mode: Mode, wait: Wait) -> Result<PgGuard<'_>, Error> {
        let held = self.backend.inner.take(&self.name, self.key, mode, wait)?;
        Ok(PgGuard {
            lock: self,
            held: Some(held),
        })
    }

    /// The exclusive side, waiting as long as it takes.
    pub fn write(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::Forever)
    }

    /// The exclusive side if it is free now ([`Error::AcquireLockFailed`] otherwise).
    pub fn try_write(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::Never)
    }

    /// The exclusive side, waiting at most `timeout` (the server's `lock_timeout`).
    pub fn try_write_for(&self, timeout: Duration) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Exclusive, Wait::For(timeout))
    }

    /// The shared side, waiting as long as it takes.
    pub fn read(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::Forever)
    }

    /// The shared side if it is free now.
    pub fn try_read(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::Never)
    }

    /// The shared side, waiting at most `timeout`.
    pub fn try_read_for(&self, timeout: Duration) -> Result<PgGuard<'_>, Error> {
        self.acquire(Mode::Shared, Wait::For(timeout))
    }
}

/// A held [`PgLock`]; released when dropped (a failed release is logged), or with
/// [`release`](Self::release) to see the outcome. Either waits for the server to confirm
/// the release (for a guard of an awaited acquire, at most [`RELEASE_TIMEOUT`]).
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct PgGuard<'a> {
    lock: &'a PgLock,
    held: Option<Held>,
}

impl PgGuard<'_> {
    /// The side held.
    pub fn mode(&self) -> Mode {
        self.held().mode
    }

    /// The fencing token of this acquisition: greater than that of every acquisition before
    /// it on the server.
    pub fn fencing_token(&self) -> i64 {
        self.held().token
    }

    /// Whether the lock's session still holds it, asking the server (at most
    /// [`IS_HELD_TIMEOUT`]). `Ok(false)` when the session is gone (server restarted,
    /// connection lost); an error when it cannot tell. Either way, stop acting as the holder.
    pub fn is_held(&self) -> Result<bool, Error> {
        self.lock
            .backend
            .inner
            .is_held(&self.lock.name, self.held())
    }

    /// Releases the lock; an error says that the session failed or no longer held it (the
    /// lock is not held after this either way).
    pub fn release(mut self) -> Result<(), Error> {
        let held = self.held.take().expect("held until release");
        self.lock.backend.inner.release(&self.lock.name, held)
    }

    fn held(&self) -> &Held {
        self.held.as_ref().expect("held until release")
    }
}

impl Drop for PgGuard<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Err(e) = self.lock.backend.inner.release(&self.lock.name, held)
        {
            tracing::warn!(target: LOG_TARGET, lock = self.lock.name.as_str(), "{e}");
        }
    }
}

impl std::fmt::Debug for PgGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGuard")
            .field("name", &self.lock.name)
            .field("mode", &self.mode())
            .field("fencing_token", &self.fencing_token())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_documented_defaults_unless_they_set_them() {
        let backend = PgBackend::new("postgres://app:s3cret@db:5433/locks").unwrap();
        assert_eq!(backend.target(), "postgres://app:***@db:5433/locks");
        let config = &backend.inner.config;
        assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            config.get_keepalives_interval(),
            Some(DEFAULT_KEEPALIVES_INTERVAL)
        );
        assert_eq!(
            config.get_keepalives_retries(),
            Some(DEFAULT_KEEPALIVES_RETRIES)
        );
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        assert_eq!(config.get_application_name(), Some("lockutils"));

        let backend = PgBackend::new(
            "postgres://db/locks?connect_timeout=1&keepalives_idle=60&application_name=nova",
        )
        .unwrap();
        let config = &backend.inner.config;
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_application_name(), Some("nova"));

        let err = PgBackend::new("postgres://app:s3cret@db:notaport/locks").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a valid PostgreSQL URL"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn the_answer_timeout_is_an_option_of_the_url_with_a_default() {
        let backend = PgBackend::new("postgres://app:s3cret@db/locks").unwrap();
        assert_eq!(backend.answer_timeout(), DEFAULT_ANSWER_TIMEOUT);
        let backend =
            PgBackend::new("postgres://db/locks?connect_timeout=2&answer_timeout=1.5&user=app")
                .unwrap();
        assert_eq!(backend.answer_timeout(), Duration::from_millis(1500));
        assert_eq!(
            backend.inner.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(backend.inner.config.get_user(), Some("app"));
        assert_eq!(
            own_options("postgres://db/locks?answer_timeout=3").unwrap(),
            (
                "postgres://db/locks".to_owned(),
                Some(Duration::from_secs(3))
            )
        );
        for bad in ["0", "-1", "soon", "NaN"] {
            let url = format!("postgres://app:s3cret@db/locks?answer_timeout={bad}");
            let text = PgBackend::new(&url).unwrap_err().to_string();
            assert!(text.contains("answer_timeout"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn waits_become_lock_timeouts_rounded_up() {
        assert_eq!(wait_millis(Wait::Never), None);
        assert_eq!(wait_millis(Wait::For(Duration::ZERO)), None);
        assert_eq!(wait_millis(Wait::Forever), Some(0));
        assert_eq!(wait_millis(Wait::For(Duration::from_nanos(1))), Some(1));
        assert_eq!(wait_millis(Wait::For(Duration::from_micros(1500))), Some(2));
        assert_eq!(wait_millis(Wait::For(Duration::from_secs(2))), Some(2000));
        assert_eq!(
            wait_millis(Wait::For(Duration::from_secs(u64::MAX))),
            Some(i32::MAX as u64)
        );
        assert!(lock_sql(5, Mode::Shared, Wait::Never).contains("pg_try_advisory_lock_shared(5)"));
        assert!(lock_sql(-5, Mode::Exclusive, Wait::Forever).contains("pg_advisory_lock(-5)"));
    }

    #[test]
    fn timed_waits_shrink_to_what_is_left_of_them() {
        assert_eq!(Wait::deadline(Wait::Never), None);
        assert_eq!(Wait::deadline(Wait::Forever), None);
        assert_eq!(Wait::deadline(Wait::For(Duration::MAX)), None);
        assert_eq!(Wait::remaining(Wait::Forever, None), Wait::Forever);
        let deadline = Wait::deadline(Wait::For(Duration::from_secs(60))).unwrap();
        match Wait::remaining(Wait::For(Duration::from_secs(60)), Some(deadline)) {
            Wait::For(rest) => assert!(rest <= Duration::from_secs(60) && !rest.is_zero()),
            other => panic!("{other:?}"),
        }
        // Past the deadline: one try, no wait.
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        let rest = Wait::remaining(Wait::For(Duration::from_secs(1)), Some(past));
        assert_eq!(rest, Wait::For(Duration::ZERO));
        assert_eq!(wait_millis(rest), None);
    }

    #[test]
    fn blocking_work_leaves_a_runtime_thread_and_stays_otherwise() {
        let here = std::thread::current().id();
        assert_eq!(off_runtime(|| std::thread::current().id()).unwrap(), here);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let there = runtime.block_on(async { off_runtime(|| std::thread::current().id()) });
        assert_ne!(there.unwrap(), here);
        let panicked = std::panic::catch_unwind(|| {
            runtime.block_on(async { off_runtime(|| panic!("in the op")) })
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn pg_locks_shows_keys_as_two_halves() {
        let sql = held_sql(-1, Mode::Exclusive);
        assert!(sql.contains("classid = '4294967295'::oid AND objid = '4294967295'::oid"));
        let sql = held_sql(0x1_0000_0002, Mode::Shared);
        assert!(sql.contains("classid = '1'::oid AND objid = '2'::oid AND mode = 'ShareLock'"));
    }
}
