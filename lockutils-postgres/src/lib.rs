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

use std::time::Duration;

use lockutils_core::Error;

pub use key::{key_of, key_sql, lock_key};

mod error;
mod lock;
mod pool;
mod session;
mod sql;

pub(crate) use error::*;
pub use lock::{PgGuard, PgLock};
pub use pool::PgBackend;
#[cfg(feature = "async")]
pub(crate) use pool::*;
pub(crate) use session::*;
pub(crate) use sql::*;

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

/// The shared (read) or exclusive (write) side of an advisory lock: lockutils' one
/// [`Mode`] (`pg_advisory_lock_shared` or `pg_advisory_lock`).
pub use lockutils_core::Mode;

/// Registers this backend for `postgres://` and `postgresql://` URLs, so that a
/// `backend_url` (or `LOCKUTILS_BACKEND_URL`) naming a PostgreSQL server sends external locks
/// there. Call it once at start-up, before the first external lock.
pub fn install() {
    lockutils_core::install_backend(&["postgres", "postgresql"], backend);
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
    static BACKENDS: lockutils_core::BackendsByUrl<PgBackend> =
        lockutils_core::BackendsByUrl::new();
    BACKENDS.get_or_make(url, PgBackend::new)
}

#[cfg(feature = "async")]
mod asynchronous;

#[cfg(test)]
mod tests {
    use super::*;
    use lockutils_core::Wait;

    use crate::pool::own_options;
    use std::time::{Duration, Instant};

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
