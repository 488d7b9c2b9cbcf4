//! Awaitable locks on tokio-postgres (the `async` feature).
//!
//! Every session's connection task runs on one runtime of this crate ([`io_runtime`]), a
//! current-thread runtime driven by a thread of its own: the client's requests are channel
//! messages, so they can be awaited from any executor, while the connection keeps running
//! whatever becomes of the runtime (or thread) that asked for it. A session pooled by one
//! runtime thus serves any other, and a release never depends on its caller's runtime being
//! driven afterwards.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lockutils_core::{Error, Wait};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_postgres::{CancelToken, NoTls, SimpleQueryMessage};

use crate::{Conn, Held, Inner, MAX_IDLE, Mode, PgGuard, PgLock, last_value};
use crate::{ConnectFail, Fail, explain, held_sql, is_lock_timeout, lock_sql, session_gone};
use crate::{token_of, wait_millis};

/// The name of the thread that drives [`io_runtime`].
const IO_THREAD: &str = "lockutils-pg-io";

/// How much longer than its own bound a blocking caller waits for a task of [`io_runtime`]
/// (which applies the bound itself) before giving up on it.
const GRACE: Duration = Duration::from_secs(1);

/// The runtime of every async session's connection, started on first use.
fn io_runtime() -> Result<&'static Handle, String> {
    static RUNTIME: LazyLock<Result<Handle, String>> = LazyLock::new(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build the runtime of PostgreSQL sessions: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(IO_THREAD.to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the thread of PostgreSQL sessions: {e}"))?;
        Ok(handle)
    });
    RUNTIME.as_ref().map_err(Clone::clone)
}

/// A session of an awaitable lock: its client, and the task of its connection on
/// [`io_runtime`].
pub(crate) struct AsyncSession {
    /// Shared with checks running on [`io_runtime`] for the time of one query.
    client: Arc<tokio_postgres::Client>,
    connection: AbortHandle,
}

impl AsyncSession {
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// A task of [`io_runtime`], awaited from any executor; aborted if dropped first.
struct Task<T>(JoinHandle<T>);

impl<T> Future for Task<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|outcome| match outcome {
            Ok(value) => Ok(value),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(format!("the task of the PostgreSQL session ended: {e}")),
        })
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels the query running on a session when dropped before being disarmed: a cancelled
/// acquire must not leave its session queued on the server.
struct CancelOnDrop(Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take()
            && let Ok(runtime) = io_runtime()
        {
            runtime.spawn(async move {
                let _ = token.cancel_query(NoTls).await;
            });
        }
    }
}

impl Inner {
    fn runtime_error(&self, name: &str, reason: String) -> Error {
        Error::backend(name, self.target.clone(), reason)
    }

    /// Runs `future` on [`io_runtime`], awaited from the caller's executor.
    async fn on_io<T: Send + 'static>(
        &self,
        name: &str,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Error> {
        let runtime = io_runtime().map_err(|e| self.runtime_error(name, e))?;
        Task(runtime.spawn(future))
            .await
            .map_err(|e| self.runtime_error(name, e))
    }

    /// Runs `future` on [`io_runtime`] and blocks the calling thread until it is done, at
    /// most `bound` (`None` past it: the task is aborted).
    fn block_on_io<T: Send + 'static>(
        &self,
        name: &str,
        future: impl Future<Output = T> + Send + 'static,
        bound: Duration,
    ) -> Result<Option<T>, Error> {
        if std::thread::current().name() == Some(IO_THREAD) {
            return Err(self.runtime_error(
                name,
                "cannot wait for a PostgreSQL session on the thread that runs it".to_owned(),
            ));
        }
        let runtime = io_runtime().map_err(|e| self.runtime_error(name, e))?;
        let (tx, rx) = sync_channel(1);
        let task = runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        match rx.recv_timeout(bound) {
            Ok(value) => Ok(Some(value)),
            Err(RecvTimeoutError::Timeout) => {
                task.abort();
                Ok(None)
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.runtime_error(
                name,
                "the task of the PostgreSQL session ended without an answer".to_owned(),
            )),
        }
    }

    /// `future`, or `None` if it is not done within `bound`: timed on [`io_runtime`], since
    /// the caller's executor may have no timer.
    async fn within<F: Future>(
        &self,
        name: &str,
        bound: Duration,
        future: F,
    ) -> Result<Option<F::Output>, Error> {
        let runtime = io_runtime().map_err(|e| self.runtime_error(name, e))?;
        let mut timer = Task(runtime.spawn(tokio::time::sleep(bound)));
        let mut future = pin!(future);
        Ok(std::future::poll_fn(|cx| {
            if let Poll::Ready(value) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(value));
            }
            Pin::new(&mut timer).poll(cx).map(|_| None)
        })
        .await)
    }

    /// A new session, its connection on [`io_runtime`]; connecting (the whole set-up) takes
    /// at most until `deadline` (if any), or the configured connect timeout if that comes
    /// first.
    async fn try_connect_async(
        &self,
        deadline: Option<Instant>,
    ) -> Result<AsyncSession, ConnectFail> {
        let config = self.config.clone();
        let limit = config
            .get_connect_timeout()
            .and_then(|timeout| Instant::now().checked_add(*timeout));
        let bound = match (deadline, limit) {
            (Some(deadline), Some(limit)) => Some(deadline.min(limit)),
            (deadline, limit) => deadline.or(limit),
        };
        let started = Instant::now();
        let connecting = async move {
            let connect = config.connect(NoTls);
            let connected = match bound {
                None => connect.await.map_err(Some),
                Some(bound) => match tokio::time::timeout_at(bound.into(), connect).await {
                    Ok(connected) => connected.map_err(Some),
                    Err(_) => Err(None),
                },
            };
            connected.map(|(client, connection)| {
                let connection = tokio::spawn(async move {
                    let _ = connection.await;
                });
                (client, connection.abort_handle())
            })
        };
        let runtime = io_runtime().map_err(ConnectFail::Runtime)?;
        match Task(runtime.spawn(connecting))
            .await
            .map_err(ConnectFail::Runtime)?
        {
            Ok((client, connection)) => Ok(AsyncSession {
                client: Arc::new(client),
                connection,
            }),
            Err(Some(e)) => Err(ConnectFail::Pg(e)),
            Err(None) => Err(ConnectFail::Silent {
                bound: bound.map_or(Duration::ZERO, |bound| {
                    bound.saturating_duration_since(started)
                }),
                by_lock: bound != limit,
            }),
        }
    }

    /// [`try_connect_async`](Self::try_connect_async), failing with an error naming `name`.
    async fn connect_async(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<AsyncSession, Error> {
        match self.try_connect_async(deadline).await {
            Ok(session) => Ok(session),
            Err(ConnectFail::Pg(e)) => Err(self.connect_error(name, &e)),
            Err(ConnectFail::Silent { bound, by_lock }) => {
                Err(self.connect_silent(name, bound, by_lock))
            }
            Err(ConnectFail::Runtime(reason)) => Err(self.runtime_error(name, reason)),
        }
    }

    /// An idle session of the pool, if there is one that is still open.
    fn pop_idle_async(&self) -> Option<AsyncSession> {
        loop {
            let session = self.idle_async.lock().pop()?;
            if !session.is_closed() {
                return Some(session);
            }
        }
    }

    /// [`check_alive`](Inner::check_alive) for awaited waits.
    async fn check_alive_async(&self, name: &str, deadline: Option<Instant>) -> Result<(), Fail> {
        let bound = self.bound(deadline);
        let session = match self.pop_idle_async() {
            Some(session) => session,
            None => match self
                .try_connect_async(Instant::now().checked_add(bound))
                .await
            {
                Ok(session) => session,
                Err(ConnectFail::Silent { .. }) => return Err(Fail::Silent(bound)),
                Err(_) => return Ok(()),
            },
        };
        match self
            .within(name, bound, session.client.simple_query(""))
            .await
            .map_err(Fail::Other)?
        {
            Some(Ok(_)) => {
                self.checkin_async(session);
                Ok(())
            }
            Some(Err(_)) => Ok(()),
            None => {
                session.connection.abort();
                Err(Fail::Silent(bound))
            }
        }
    }

    /// [`lock_on`](Inner::lock_on) on an awaited session.
    async fn lock_on_async(
        &self,
        name: &str,
        client: &tokio_postgres::Client,
        key: i64,
        mode: Mode,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Option<i64>, Fail> {
        let try_sql = lock_sql(key, mode, Wait::Never);
        let bound = self.bound(deadline);
        let tried = match self
            .within(name, bound, query(client, &try_sql))
            .await
            .map_err(Fail::Other)?
        {
            Some(answer) => token_of(&answer?),
            None => return Err(Fail::Silent(bound)),
        };
        if tried.is_some() || wait_millis(wait).is_none() {
            return Ok(tried);
        }
        let sql = lock_sql(key, mode, wait);
        let started = Instant::now();
        let mut waiting = pin!(query(client, &sql));
        loop {
            let (stretch, last) = self.stretch(deadline);
            match self
                .within(name, stretch, waiting.as_mut())
                .await
                .map_err(Fail::Other)?
            {
                Some(Ok(messages)) => return Ok(token_of(&messages)),
                Some(Err(e)) if is_lock_timeout(&e) => return Ok(None),
                Some(Err(e)) => return Err(Fail::Pg(e)),
                None if last => return Err(Fail::Silent(started.elapsed())),
                None => self.check_alive_async(name, deadline).await?,
            }
        }
    }

    async fn checkout_async(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<(AsyncSession, bool), Error> {
        match self.pop_idle_async() {
            Some(session) => Ok((session, true)),
            None => Ok((self.connect_async(name, deadline).await?, false)),
        }
    }

    fn checkin_async(&self, session: AsyncSession) {
        // A check that gave up may still hold the client: such a session is not reused.
        if session.is_closed() || Arc::strong_count(&session.client) != 1 {
            return;
        }
        let mut idle = self.idle_async.lock();
        if idle.len() < MAX_IDLE {
            idle.push(session);
        }
    }

    /// [`take`](Inner::take) for a task, on any executor. Cancel-safe: a dropped wait cancels
    /// its query, and its session closes. `wait` is what is left of the lock's timeout, which
    /// ends at `deadline`.
    pub(crate) async fn take_async(
        &self,
        name: &str,
        key: i64,
        mode: Mode,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Held, Error> {
        let deadline = deadline.or_else(|| wait.deadline());
        let (mut session, mut pooled) = self.checkout_async(name, deadline).await?;
        loop {
            let waited = wait.remaining(deadline);
            match self
                .lock_on_async(name, &session.client, key, mode, waited, deadline)
                .await
            {
                Ok(Some(token)) => {
                    return Ok(Held {
                        key,
                        mode,
                        token,
                        conn: Conn::Async(session),
                    });
                }
                Ok(None) => {
                    self.checkin_async(session);
                    return Err(Error::acquire_failed(name, wait.waited()));
                }
                Err(Fail::Pg(e)) if pooled && session_gone(&e) => {
                    session = self.connect_async(name, deadline).await?;
                    pooled = false;
                }
                Err(fail) => {
                    if matches!(fail, Fail::Silent(_)) {
                        // Its statement may still be queued on the server: closing the
                        // session takes it out (once the server reads again).
                        session.connection.abort();
                    }
                    return Err(self.failed(name, "take the lock", fail));
                }
            }
        }
    }

    /// Releases the lock of `session` (`sql` unlocks it), waiting for the server's answer (at
    /// most [`RELEASE_TIMEOUT`](crate::RELEASE_TIMEOUT), or the answer timeout if shorter): the caller frees the in-process lock right after, which must
    /// not happen while the server still holds the lock. The session goes back to the pool
    /// if all went well, and is closed otherwise.
    pub(crate) fn release_async(
        &self,
        name: &str,
        session: AsyncSession,
        sql: String,
    ) -> Result<(), Error> {
        let connection = session.connection.clone();
        let bound = self.release_bound();
        let releasing = async move {
            let answer = tokio::time::timeout(bound, session.client.simple_query(&sql)).await;
            (session, answer)
        };
        let outcome = self.block_on_io(name, releasing, bound + GRACE);
        let failed = |reason: String| {
            connection.abort();
            Err(Error::backend(name, self.target.clone(), reason))
        };
        match outcome {
            Ok(Some((session, Ok(Ok(messages))))) if last_value(&messages) == Some("t") => {
                self.checkin_async(session);
                Ok(())
            }
            Ok(Some((_, Ok(Ok(_))))) => Err(self.lost(name)),
            Ok(Some((_, Ok(Err(e))))) => failed(format!(
                "the session holding the lock failed before the release, which may have lost \
                 the lock earlier: {}",
                explain(&e)
            )),
            Ok(Some((_, Err(_)))) | Ok(None) => {
                connection.abort();
                Err(self.unconfirmed(name, bound))
            }
            Err(e) => {
                connection.abort();
                Err(e)
            }
        }
    }

    /// [`is_held`](Inner::is_held) of an async session, from a blocking caller.
    pub(crate) fn is_held_blocking(
        &self,
        name: &str,
        session: &AsyncSession,
        sql: String,
    ) -> Result<bool, Error> {
        if session.is_closed() {
            return Ok(false);
        }
        let bound = self.is_held_bound();
        let checking = check(Arc::clone(&session.client), sql, bound);
        match self.block_on_io(name, checking, bound + GRACE)? {
            Some(outcome) => self.checked(name, outcome, bound),
            None => Err(self.unanswered(name, bound)),
        }
    }

    fn checked(
        &self,
        name: &str,
        outcome: Option<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>>,
        bound: Duration,
    ) -> Result<bool, Error> {
        match outcome {
            Some(Ok(messages)) => Ok(last_value(&messages) == Some("t")),
            Some(Err(e)) if e.is_closed() || e.as_db_error().is_some() => Ok(false),
            Some(Err(e)) => Err(self.query_error(name, "check the lock", &e)),
            None => Err(self.unanswered(name, bound)),
        }
    }
}

/// The lock check `sql` on `client`, bounded by `bound` (`None` past it); to run on
/// [`io_runtime`].
async fn check(
    client: Arc<tokio_postgres::Client>,
    sql: String,
    bound: Duration,
) -> Option<Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>> {
    tokio::time::timeout(bound, client.simple_query(&sql))
        .await
        .ok()
}

/// Runs `sql`, cancelling it on the server if the future is dropped before it completes.
async fn query(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
    let mut cancel = CancelOnDrop(Some(client.cancel_token()));
    let outcome = client.simple_query(sql).await;
    cancel.0 = None;
    outcome
}

impl PgLock {
    /// [`acquire`](Self::acquire) for async code, without blocking the thread; any executor
    /// may await it. Cancel-safe. Dropping the guard waits for the server to confirm the
    /// release (see the crate docs).
    pub async fn acquire_async(&self, mode: Mode, wait: Wait) -> Result<PgGuard<'_>, Error> {
        let held = self
            .backend
            .inner
            .take_async(&self.name, self.key, mode, wait, None)
            .await?;
        Ok(PgGuard {
            lock: self,
            held: Some(held),
        })
    }

    /// [`write`](Self::write) for async code.
    pub async fn write_async(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire_async(Mode::Exclusive, Wait::Forever).await
    }

    /// [`read`](Self::read) for async code.
    pub async fn read_async(&self) -> Result<PgGuard<'_>, Error> {
        self.acquire_async(Mode::Shared, Wait::Forever).await
    }
}

impl PgGuard<'_> {
    /// [`is_held`](Self::is_held) for async code: asks the server (at most
    /// [`IS_HELD_TIMEOUT`](crate::IS_HELD_TIMEOUT), or the answer timeout if shorter) whether the session still holds the lock. A guard from the
    /// blocking API is checked as [`is_held`](Self::is_held) does, blocking the thread.
    pub async fn is_held_async(&self) -> Result<bool, Error> {
        let inner: &Inner = &self.lock.backend.inner;
        let name = &self.lock.name;
        let held = self.held();
        match &held.conn {
            Conn::Async(session) => {
                if session.is_closed() {
                    return Ok(false);
                }
                let bound = inner.is_held_bound();
                let sql = held_sql(held.key, held.mode);
                let checking = check(Arc::clone(&session.client), sql, bound);
                let outcome = inner.on_io(name, checking).await?;
                inner.checked(name, outcome, bound)
            }
            Conn::Sync(_) => inner.is_held(name, held),
        }
    }
}
