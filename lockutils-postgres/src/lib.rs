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
//!   polling); a timed one sets `lock_timeout`, and the server gives up (SQLSTATE 55P03, turned
//!   into [`Error::AcquireLockFailed`]); a non-blocking one is `pg_try_advisory_lock`.
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
//!   at most [`IS_HELD_TIMEOUT`] for the answer.
//!
//! ## Async code
//! With the `async` feature, the connections of awaited locks run on one small runtime of
//! this crate (a thread named `lockutils-pg-io`), whichever executor awaits them: a session
//! pooled by one runtime serves any other, and a runtime that stops being driven strands no
//! lock. Dropping a guard of an awaited lock waits for the server to confirm the release (one
//! round trip), so that the in-process lock is not free while the server still holds the
//! lock; a server that does not answer within [`RELEASE_TIMEOUT`] has the session closed,
//! which frees the lock as soon as the server notices.
//!
//! The blocking API works inside async tasks too (the `postgres` crate blocks on a runtime of
//! its own, which cannot run on a thread that drives another runtime: there, each blocking
//! call, and each close of a session, moves to a thread of its own), but it blocks the
//! executor's thread while it waits: in async code prefer `acquire_async()`.
//!
//! ## Connections
//! Unless the URL says otherwise, connections time out after [`DEFAULT_CONNECT_TIMEOUT`]
//! (the blocking API bounds the socket's connect by it; awaited locks, the whole set-up),
//! send TCP keepalives after [`DEFAULT_KEEPALIVES_IDLE`] of silence (every
//! [`DEFAULT_KEEPALIVES_INTERVAL`], [`DEFAULT_KEEPALIVES_RETRIES`] times), give up on data
//! unacknowledged for [`DEFAULT_TCP_USER_TIMEOUT`], and set `application_name=lockutils`: a
//! client notices a vanished server within about 30 s, also while it waits for a lock. A
//! timed acquire bounds its connecting by what remains of its timeout as well (if that is
//! shorter), so that an unreachable server does not make it wait longer than asked. How fast
//! a vanished *client* host is noticed — and its lock given to the next waiter — is up to the
//! server: `tcp_keepalives_idle`,
//! `tcp_keepalives_interval`, `tcp_keepalives_count` and `tcp_user_timeout` bound it (by
//! default Linux waits two hours!); a client process that dies on a live host is noticed at
//! once (the kernel closes its socket). `idle_session_timeout`, if set on the server, ends
//! the session of a lock held without queries for longer than that: leave it unset (0) for
//! lock users, or hold locks for less.
//!
//! A blocking wait sets `statement_timeout = 0` for itself: its only bound is the lock's own
//! timeout (`lock_timeout`). A URL listing several hosts should say
//! `target_session_attrs=read-write`: a standby cannot give fencing tokens, and refuses.
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
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
use lockutils_core::AcquireFuture;
use lockutils_core::{
    Error, ExternalBackend, ExternalCache, ExternalTarget, LOG_TARGET, Wait, redact_url,
    register_backend,
};
use parking_lot::Mutex;
use postgres::NoTls;
use postgres::error::SqlState;
use postgres::{SimpleQueryMessage, error::DbError};

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
/// How long [`PgGuard::is_held`] (and `is_external_held`) waits for the server's answer before
/// reporting that it cannot tell.
pub const IS_HELD_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections a backend keeps for later locks, at most.
pub const MAX_IDLE: usize = 16;
/// How long dropping (or releasing) a guard of an awaited lock (the `async` feature) waits for
/// the server to confirm the release; past it, the session is closed (which frees the lock on the server as soon as
/// the server sees the connection end) and the release reported as failed.
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
    config: postgres::Config,
    #[cfg(feature = "async")]
    async_config: tokio_postgres::Config,
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

impl PgBackend {
    /// A backend on the server of `url` (`postgres://user:password@host:port/dbname?options`,
    /// with the options of libpq URLs that the `postgres` crate knows). Connects on first use,
    /// not here.
    pub fn new(url: &str) -> Result<Self, Error> {
        let target = redact_url(url);
        let bad_url = |e: postgres::Error| {
            Error::backend(
                "",
                target.clone(),
                format!("not a valid PostgreSQL URL: {}", explain(&e)),
            )
        };
        let mut config: postgres::Config = url.parse().map_err(bad_url)?;
        apply_defaults!(&mut config, url);
        #[cfg(feature = "async")]
        let async_config = {
            let mut config: tokio_postgres::Config = url.parse().map_err(bad_url)?;
            apply_defaults!(&mut config, url);
            config
        };
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                config,
                #[cfg(feature = "async")]
                async_config,
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
            client
                .simple_query(sql)
                .map_err(|e| inner.query_error("", "run a query", &e))
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
    /// Shared with the thread of a check ([`Inner::is_held`]) that may outlive its caller's
    /// wait; otherwise only the guard's.
    Sync(Arc<Mutex<SyncClient>>),
    #[cfg(feature = "async")]
    Async(asynchronous::AsyncSession),
}

/// A `postgres` client that may be used, and dropped, anywhere: the client blocks on a
/// runtime of its own (also to close its session when dropped), which tokio refuses to start
/// on a thread that drives a runtime (it panics). There, the drop happens on another thread.
struct SyncClient(Option<postgres::Client>);

impl std::ops::Deref for SyncClient {
    type Target = postgres::Client;

    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for SyncClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        let mut client = self.0.take();
        if client.is_none() {
            return;
        }
        if let Err(e) = off_runtime(|| drop(client.take())) {
            // Dropping it here would panic: leave its socket open until the process ends.
            tracing::error!(
                target: LOG_TARGET,
                "cannot close a PostgreSQL session: no thread to close it on: {e}"
            );
            std::mem::forget(client.take());
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

/// Takes the lock on `client`'s session: the fencing token, or `None` if `wait` ran out (the
/// server's `lock_timeout`). An uncontended lock takes one round trip: a try, which the server
/// refuses while others are queued, so that it never jumps the queue; only then the wait.
fn lock_on(
    client: &mut postgres::Client,
    key: i64,
    mode: Mode,
    wait: Wait,
) -> Result<Option<i64>, postgres::Error> {
    let tried = token_of(&client.simple_query(&lock_sql(key, mode, Wait::Never))?);
    if tried.is_some() || wait_millis(wait).is_none() {
        return Ok(tried);
    }
    match client.simple_query(&lock_sql(key, mode, wait)) {
        Ok(messages) => Ok(token_of(&messages)),
        Err(e) if is_lock_timeout(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_lock_timeout(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

/// Whether `e` says that the session is gone (connection lost, server shut down or crashed),
/// rather than that a statement failed on a live session.
fn session_gone(e: &postgres::Error) -> bool {
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
pub(crate) fn explain(e: &postgres::Error) -> String {
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

fn db_error(e: &postgres::Error) -> Option<&DbError> {
    e.as_db_error()
}

impl Inner {
    /// A new session; connecting takes at most until `deadline` (if any), or the configured
    /// connect timeout if that comes first.
    fn connect(&self, name: &str, deadline: Option<Instant>) -> Result<SyncClient, Error> {
        let connected = match deadline {
            None => self.config.connect(NoTls),
            Some(deadline) => {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let configured = self.config.get_connect_timeout().copied();
                if configured.is_some_and(|configured| configured <= left) {
                    self.config.connect(NoTls)
                } else {
                    let mut config = self.config.clone();
                    config.connect_timeout(left);
                    config.connect(NoTls)
                }
            }
        };
        connected
            .map(|client| SyncClient(Some(client)))
            .map_err(|e| self.connect_error(name, &e))
    }

    fn connect_error(&self, name: &str, e: &postgres::Error) -> Error {
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

    fn query_error(&self, name: &str, action: &str, e: &postgres::Error) -> Error {
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

    fn thread_error(&self, name: &str, e: &std::io::Error) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!("cannot start a thread for the PostgreSQL client: {e}"),
        )
    }

    fn unanswered(&self, name: &str) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!(
                "the server did not answer within {IS_HELD_TIMEOUT:?}: cannot tell whether the \
                 lock is still held (act as if it was lost)"
            ),
        )
    }

    /// An idle connection, or a new one (see [`connect`](Self::connect)); `true` if it came
    /// from the pool.
    fn checkout(&self, name: &str, deadline: Option<Instant>) -> Result<(SyncClient, bool), Error> {
        loop {
            let Some(client) = self.idle.lock().pop() else {
                break;
            };
            if !client.is_closed() {
                return Ok((client, true));
            }
        }
        Ok((self.connect(name, deadline)?, false))
    }

    fn checkin(&self, client: SyncClient) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }

    /// Takes the lock `key` on a session of its own.
    fn take(&self, name: &str, key: i64, mode: Mode, wait: Wait) -> Result<Held, Error> {
        off_runtime(|| self.take_here(name, key, mode, wait))
            .map_err(|e| self.thread_error(name, &e))?
    }

    fn take_here(&self, name: &str, key: i64, mode: Mode, wait: Wait) -> Result<Held, Error> {
        let deadline = deadline_of(wait);
        let (mut client, mut pooled) = self.checkout(name, deadline)?;
        loop {
            match lock_on(&mut client, key, mode, left(wait, deadline)) {
                Ok(Some(token)) => {
                    return Ok(Held {
                        key,
                        mode,
                        token,
                        conn: Conn::Sync(Arc::new(Mutex::new(client))),
                    });
                }
                Ok(None) => {
                    self.checkin(client);
                    return Err(Error::acquire_failed(name, wait_waited(wait)));
                }
                // A pooled session may have died while idle (a server restart): once, a new one.
                Err(e) if pooled && session_gone(&e) => {
                    client = self.connect(name, deadline)?;
                    pooled = false;
                }
                Err(e) => return Err(self.query_error(name, "take the lock", &e)),
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

    fn release_sync(
        &self,
        name: &str,
        client: Option<Arc<Mutex<SyncClient>>>,
        sql: &str,
    ) -> Result<(), Error> {
        let Some(client) = client else {
            return Ok(());
        };
        // Waits for a check still running on the session (see `is_held`), if any.
        let outcome = client.lock().simple_query(sql);
        match outcome {
            Ok(messages) if last_value(&messages) == Some("t") => {
                if let Ok(client) = Arc::try_unwrap(client) {
                    self.checkin(client.into_inner());
                }
                Ok(())
            }
            Ok(_) => Err(self.lost(name)),
            Err(e) => Err(Error::backend(
                name,
                self.target.clone(),
                format!(
                    "the session holding the lock failed before the release, which may \
                     have lost the lock earlier: {}",
                    explain(&e)
                ),
            )),
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
    /// [`IS_HELD_TIMEOUT`].
    fn is_held(&self, name: &str, held: &Held) -> Result<bool, Error> {
        let sql = held_sql(held.key, held.mode);
        match &held.conn {
            Conn::Sync(client) => {
                // On a thread of its own, so that a server that stopped answering cannot keep
                // the caller past the bound (the thread ends when the connection gives up).
                let client = Arc::clone(client);
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                std::thread::Builder::new()
                    .name("lockutils-pg-check".to_owned())
                    .spawn(move || {
                        let mut client = client.lock();
                        let outcome = if client.is_closed() {
                            Ok(None)
                        } else {
                            client
                                .simple_query(&sql)
                                .map(|messages| Some(last_value(&messages) == Some("t")))
                        };
                        let _ = tx.send(outcome);
                    })
                    .map_err(|e| self.thread_error(name, &e))?;
                match rx.recv_timeout(IS_HELD_TIMEOUT) {
                    Ok(Ok(None)) => Ok(false),
                    Ok(Ok(Some(held))) => Ok(held),
                    Ok(Err(e)) if e.is_closed() || db_error(&e).is_some() => Ok(false),
                    Ok(Err(e)) => Err(self.query_error(name, "check the lock", &e)),
                    Err(_) => Err(self.unanswered(name)),
                }
            }
            #[cfg(feature = "async")]
            Conn::Async(session) => self.is_held_blocking(name, session, sql),
        }
    }
}

/// When a wait of `wait` ends, if it is timed.
fn deadline_of(wait: Wait) -> Option<Instant> {
    match wait {
        Wait::For(timeout) => Instant::now().checked_add(timeout),
        Wait::Never | Wait::Forever => None,
    }
}

/// What is left of `wait` at this moment, given its `deadline`.
fn left(wait: Wait, deadline: Option<Instant>) -> Wait {
    match (wait, deadline) {
        (Wait::For(_), Some(deadline)) => {
            Wait::For(deadline.saturating_duration_since(Instant::now()))
        }
        _ => wait,
    }
}

fn wait_waited(wait: Wait) -> Option<Duration> {
    match wait {
        Wait::For(timeout) => Some(timeout),
        Wait::Never | Wait::Forever => None,
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
        assert_eq!(deadline_of(Wait::Never), None);
        assert_eq!(deadline_of(Wait::Forever), None);
        assert_eq!(deadline_of(Wait::For(Duration::MAX)), None);
        assert_eq!(left(Wait::Forever, None), Wait::Forever);
        let deadline = deadline_of(Wait::For(Duration::from_secs(60))).unwrap();
        match left(Wait::For(Duration::from_secs(60)), Some(deadline)) {
            Wait::For(rest) => assert!(rest <= Duration::from_secs(60) && !rest.is_zero()),
            other => panic!("{other:?}"),
        }
        // Past the deadline: one try, no wait.
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        let rest = left(Wait::For(Duration::from_secs(1)), Some(past));
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
