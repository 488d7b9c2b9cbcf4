//! Awaitable locks on tokio-postgres (the `async` feature).

use std::sync::Arc;

use lockutils_core::{Error, Wait};
use tokio_postgres::{CancelToken, NoTls};

use crate::{Conn, Held, IS_HELD_TIMEOUT, Inner, MAX_IDLE, Mode, PgGuard, PgLock, last_value};
use crate::{
    held_sql, is_lock_timeout, lock_sql, session_gone, token_of, wait_millis, wait_waited,
};

/// Cancels the query running on a session when dropped before being disarmed: a cancelled
/// acquire must not leave its session queued on the server.
struct CancelOnDrop(Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = token.cancel_query(NoTls).await;
            });
        }
    }
}

impl Inner {
    fn runtime(&self, name: &str) -> Result<tokio::runtime::Handle, Error> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::backend(
                name,
                self.target.clone(),
                "awaiting a PostgreSQL lock needs a tokio runtime (the connection runs on it)",
            )
        })
    }

    async fn connect_async(&self, name: &str) -> Result<tokio_postgres::Client, Error> {
        let runtime = self.runtime(name)?;
        let (client, connection) = self
            .async_config
            .connect(NoTls)
            .await
            .map_err(|e| self.connect_error(name, &e))?;
        runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn checkout_async(&self, name: &str) -> Result<(tokio_postgres::Client, bool), Error> {
        loop {
            let Some(client) = self.idle_async.lock().pop() else {
                break;
            };
            if !client.is_closed() {
                return Ok((client, true));
            }
        }
        Ok((self.connect_async(name).await?, false))
    }

    pub(crate) fn checkin_async(&self, client: tokio_postgres::Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle_async.lock();
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }

    /// [`take`](Inner::take) for a task. Cancel-safe: a dropped wait cancels its query, and its
    /// session closes.
    pub(crate) async fn take_async(
        &self,
        name: &str,
        key: i64,
        mode: Mode,
        wait: Wait,
    ) -> Result<Held, Error> {
        let runtime = self.runtime(name)?;
        let (mut client, mut pooled) = self.checkout_async(name).await?;
        loop {
            match lock_on(&client, key, mode, wait).await {
                Ok(Some(token)) => {
                    return Ok(Held {
                        key,
                        mode,
                        token,
                        conn: Conn::Async(client, runtime),
                    });
                }
                Ok(None) => {
                    self.checkin_async(client);
                    return Err(Error::acquire_failed(name, wait_waited(wait)));
                }
                Err(e) if pooled && session_gone(&e) => {
                    client = self.connect_async(name).await?;
                    pooled = false;
                }
                Err(e) => return Err(self.query_error(name, "take the lock", &e)),
            }
        }
    }
}

/// [`lock_on`](crate::lock_on) on an async session.
async fn lock_on(
    client: &tokio_postgres::Client,
    key: i64,
    mode: Mode,
    wait: Wait,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let tried = token_of(&query(client, &lock_sql(key, mode, Wait::Never)).await?);
    if tried.is_some() || wait_millis(wait).is_none() {
        return Ok(tried);
    }
    match query(client, &lock_sql(key, mode, wait)).await {
        Ok(messages) => Ok(token_of(&messages)),
        Err(e) if is_lock_timeout(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `sql`, cancelling it on the server if the future is dropped before it completes.
async fn query(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error> {
    let mut cancel = CancelOnDrop(Some(client.cancel_token()));
    let outcome = client.simple_query(sql).await;
    cancel.0 = None;
    outcome
}

impl PgLock {
    /// [`acquire`](Self::acquire) for async code (on a tokio runtime), without blocking the
    /// thread. Cancel-safe.
    pub async fn acquire_async(&self, mode: Mode, wait: Wait) -> Result<PgGuard<'_>, Error> {
        let held = self
            .backend
            .inner
            .take_async(&self.name, self.key, mode, wait)
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
    /// [`IS_HELD_TIMEOUT`]) whether the session still holds the lock.
    pub async fn is_held_async(&self) -> Result<bool, Error> {
        let inner: &Arc<Inner> = &self.lock.backend.inner;
        let name = &self.lock.name;
        let held = self.held();
        let sql = held_sql(held.key, held.mode);
        match &held.conn {
            Conn::Async(client, _) => {
                match tokio::time::timeout(IS_HELD_TIMEOUT, client.simple_query(&sql)).await {
                    Ok(Ok(messages)) => Ok(last_value(&messages) == Some("t")),
                    Ok(Err(e)) if e.is_closed() || e.as_db_error().is_some() => Ok(false),
                    Ok(Err(e)) => Err(inner.query_error(name, "check the lock", &e)),
                    Err(_) => Err(Error::backend(
                        name,
                        inner.target.clone(),
                        format!(
                            "the server did not answer within {IS_HELD_TIMEOUT:?}: cannot tell \
                             whether the lock is still held (act as if it was lost)"
                        ),
                    )),
                }
            }
            Conn::Sync(_) => inner.is_held(name, held),
        }
    }
}
