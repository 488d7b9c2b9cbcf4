//! The backend: a URL's options, its pool of idle sessions, and taking, checking and
//! releasing locks on its sessions (the `ExternalBackend` of `lock(..).external(true)`).

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
use lockutils_core::AcquireFuture;
use lockutils_core::{
    Error, ExternalBackend, ExternalCache, ExternalTarget, LOG_TARGET, Wait, redact_url,
};
use parking_lot::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::*;

/// Locks on one PostgreSQL server (or cluster of hosts the URL lists), with a pool of
/// sessions. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The URL without its password: what errors and logs show.
    pub(crate) target: String,
    pub(crate) config: tokio_postgres::Config,
    /// See [`DEFAULT_ANSWER_TIMEOUT`].
    pub(crate) answer_timeout: Duration,
    pub(crate) idle: Mutex<Vec<SyncClient>>,
    #[cfg(feature = "async")]
    pub(crate) idle_async: Mutex<Vec<asynchronous::AsyncSession>>,
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
pub(crate) fn own_options(url: &str) -> Result<(String, Option<Duration>), String> {
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

impl Inner {
    /// The bound of a round trip that does not wait in the lock queue: the answer timeout, or
    /// what is left of a timed acquire's timeout (ending at `deadline`) and its grace, if that
    /// is shorter.
    pub(crate) fn bound(&self, deadline: Option<Instant>) -> Duration {
        match deadline {
            None => self.answer_timeout,
            Some(deadline) => self.answer_timeout.min(self.until_given_up(deadline)),
        }
    }

    /// How much longer than its timeout a timed acquire waits for the server's answer.
    pub(crate) fn grace(&self) -> Duration {
        TIMEOUT_GRACE.min(self.answer_timeout)
    }

    /// From now until a timed acquire ending at `deadline` gives up on the server.
    pub(crate) fn until_given_up(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now()) + self.grace()
    }

    /// How long a wait in the server's queue goes on before the next check that the server
    /// answers, and whether that is the last stretch of a timed acquire (past it, the server
    /// failed to report the lock's timeout in time).
    pub(crate) fn stretch(&self, deadline: Option<Instant>) -> (Duration, bool) {
        let every = self.answer_timeout / 2;
        match deadline.map(|deadline| self.until_given_up(deadline)) {
            Some(rest) if rest <= every => (rest, true),
            _ => (every, false),
        }
    }

    /// A new session. Connecting — the whole set-up: socket, authentication, settings — takes
    /// at most the configured connect timeout, or until `deadline` if that comes first.
    pub(crate) fn try_connect(&self, deadline: Option<Instant>) -> Result<SyncClient, ConnectFail> {
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
    pub(crate) fn connect(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<SyncClient, Error> {
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

    pub(crate) fn connect_error(&self, name: &str, e: &tokio_postgres::Error) -> Error {
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

    pub(crate) fn query_error(&self, name: &str, action: &str, e: &tokio_postgres::Error) -> Error {
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
    pub(crate) fn failed(&self, name: &str, action: &str, fail: Fail) -> Error {
        match fail {
            Fail::Pg(e) => self.query_error(name, action, &e),
            Fail::Silent(bound) => self.silent(name, action, bound),
            Fail::Other(e) => e,
        }
    }

    pub(crate) fn silent(&self, name: &str, action: &str, bound: Duration) -> Error {
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

    pub(crate) fn thread_error(&self, name: &str, e: &std::io::Error) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            format!("cannot start a thread for the PostgreSQL client: {e}"),
        )
    }

    pub(crate) fn unanswered(&self, name: &str, bound: Duration) -> Error {
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

    pub(crate) fn unconfirmed(&self, name: &str, bound: Duration) -> Error {
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
    pub(crate) fn pop_idle(&self) -> Option<SyncClient> {
        loop {
            let client = self.idle.lock().pop()?;
            if !client.is_closed() {
                return Some(client);
            }
        }
    }

    /// An idle connection, or a new one (see [`connect`](Self::connect)); `true` if it came
    /// from the pool.
    pub(crate) fn checkout(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<(SyncClient, bool), Error> {
        match self.pop_idle() {
            Some(client) => Ok((client, true)),
            None => Ok((self.connect(name, deadline)?, false)),
        }
    }

    pub(crate) fn checkin(&self, client: SyncClient) {
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
    pub(crate) fn check_alive(&self, deadline: Option<Instant>) -> Result<(), Duration> {
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
    pub(crate) fn lock_on(
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
    pub(crate) fn take(&self, name: &str, key: i64, mode: Mode, wait: Wait) -> Result<Held, Error> {
        off_runtime(|| self.take_here(name, key, mode, wait))
            .map_err(|e| self.thread_error(name, &e))?
    }

    pub(crate) fn take_here(
        &self,
        name: &str,
        key: i64,
        mode: Mode,
        wait: Wait,
    ) -> Result<Held, Error> {
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
    pub(crate) fn release(self: &Arc<Self>, name: &str, held: Held) -> Result<(), Error> {
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
    pub(crate) fn release_bound(&self) -> Duration {
        RELEASE_TIMEOUT.min(self.answer_timeout)
    }

    /// How long a check waits for the server's answer.
    pub(crate) fn is_held_bound(&self) -> Duration {
        IS_HELD_TIMEOUT.min(self.answer_timeout)
    }

    pub(crate) fn release_sync(
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

    pub(crate) fn lost(&self, name: &str) -> Error {
        Error::backend(
            name,
            self.target.clone(),
            "the session no longer held the lock at release: it was lost earlier",
        )
    }

    /// Whether the session of `held` still holds it, asking the server; at most
    /// [`IS_HELD_TIMEOUT`] (or the answer timeout, if shorter). A check given up on leaves
    /// the session as it is: its answer, if it ever comes, is skipped by the next query.
    pub(crate) fn is_held(&self, name: &str, held: &Held) -> Result<bool, Error> {
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

impl ExternalBackend for PgBackend {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error> {
        let (_, key) = key_of(target.name, target.prefix)?;
        let held = self.inner.take(target.name, key, target.mode, wait)?;
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
                .take_async(target.name, key, target.mode, wait, deadline)
                .await?;
            cache.lock().get_or_insert_with(Slot::default).held = Some(held);
            Ok(())
        })
    }

    fn supports_shared(&self) -> bool {
        true
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
