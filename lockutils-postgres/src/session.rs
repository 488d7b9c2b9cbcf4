//! Sessions: a connection to the server driven on a runtime of its own, every round trip
//! bounded by the answer timeout.

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use lockutils_core::LOG_TARGET;
use parking_lot::Mutex;
use tokio_postgres::SimpleQueryMessage;

use crate::*;

/// A held advisory lock: its session and what it took.
pub(crate) struct Held {
    pub(crate) key: i64,
    pub(crate) mode: Mode,
    pub(crate) token: i64,
    pub(crate) conn: Conn,
}

pub(crate) enum Conn {
    /// In a mutex for checks ([`Inner::is_held`]), which need the session but not the guard.
    Sync(Box<Mutex<SyncClient>>),
    #[cfg(feature = "async")]
    Async(asynchronous::AsyncSession),
}

/// The connection of a session, as tokio-postgres makes it: a future that does the session's
/// I/O whenever it is polled.
pub(crate) type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// A session of the blocking API: a tokio-postgres client whose connection is driven by the
/// calling thread, on a current-thread runtime of the session's own (as the `postgres` crate
/// does), only while the thread waits for an answer, so that every wait can be bounded
/// ([`query`](Self::query)) and a session given up on closes at once.
pub(crate) struct Session {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) client: tokio_postgres::Client,
    /// `None` once it ended.
    pub(crate) connection: Option<Pin<Box<Connection>>>,
    /// Set when a statement may still be running (its answer was not awaited to the end): the
    /// session is then closed without waiting for the server, never pooled.
    pub(crate) abandoned: bool,
}

/// Polls `future` (and the session's `connection`, which does its I/O) on `runtime` until it
/// completes, at most `bound`: `None` past it. A connection that ends fails the queries
/// waiting on it.
pub(crate) fn drive<F: Future>(
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
    pub(crate) fn is_closed(&self) -> bool {
        self.connection.is_none() || self.client.is_closed()
    }

    /// Runs `sql` (simple query protocol), waiting at most `bound` for the answer. A query
    /// given up on may still run: the caller closes the session ([`abandon`](Self::abandon)),
    /// or knows that the statement is harmless.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        bound: Duration,
    ) -> Result<Vec<SimpleQueryMessage>, Fail> {
        let query = pin!(self.client.simple_query(sql));
        match drive(&self.runtime, &mut self.connection, query, Some(bound)) {
            Some(outcome) => Ok(outcome?),
            None => Err(Fail::Silent(bound)),
        }
    }

    /// Marks the session to be closed at once, without a word to the server.
    pub(crate) fn abandon(&mut self) {
        self.abandoned = true;
    }

    /// Ends the session: politely (a Terminate message, at most `bound`) unless it was
    /// abandoned; then the socket is closed, which ends the session on the server too.
    pub(crate) fn close(self, bound: Duration) {
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
pub(crate) struct SyncClient {
    pub(crate) session: Option<Session>,
    /// How long closing may wait for the server.
    pub(crate) close_bound: Duration,
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
pub(crate) fn off_runtime<T: Send>(op: impl FnOnce() -> T + Send) -> std::io::Result<T> {
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
pub(crate) struct Slot {
    pub(crate) held: Option<Held>,
}
