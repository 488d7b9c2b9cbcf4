//! The backend: connections (bounded round trips, a pool, Sentinel), taking, checking and
//! releasing locks (the `ExternalBackend` of `lock(..).external(true)`).

use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
use lockutils_core::AcquireFuture;
use lockutils_core::{
    Error, ExternalBackend, ExternalCache, ExternalTarget, HeldExternalLock, LOG_TARGET, Wait,
    redact_url,
};
use parking_lot::Mutex;
use redis::{
    Connection, ConnectionAddr, ConnectionLike, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use crate::keeper::{Keeper, Lease};
use crate::key::{channel_of, counter_key, full_name, glob_escape, lock_key, name_of_key};
use crate::options::{Endpoint, Options, parse};
use crate::{
    ANSWER_TIMEOUT_OPTION, IS_HELD_TIMEOUT, MAX_IDLE, POLL_INTERVAL, RELEASE_TIMEOUT, script,
};

/// Locks on one Redis (or Valkey) server, or the master that Sentinels name, with a pool of
/// connections and a thread that extends held locks. Cheap to clone: clones share both.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The URL without its password: what errors and logs show.
    pub(crate) target: String,
    pub(crate) options: Options,
    idle: Mutex<Vec<Connection>>,
    pub(crate) keeper: Keeper,
}

/// A lock held by this backend: what the [`ExternalCache`] keeps.
pub(crate) struct Held {
    pub(crate) lease: Arc<Lease>,
}

#[derive(Default)]
struct Slot {
    held: Option<Held>,
}

/// The outcome of one try.
pub(crate) enum Try {
    Taken(Arc<Lease>),
    /// Busy; the holder's key expires in this long (if it has an expiry).
    Busy(Option<Duration>),
}

impl RedisBackend {
    /// A backend on the server of `url` (see the crate docs for the URL's forms and options).
    /// Connects on first use, not here.
    pub fn new(url: &str) -> Result<Self, Error> {
        let target = redact_url(url);
        let options = parse(url).map_err(|reason| Error::backend("", target.clone(), reason))?;
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                options,
                idle: Mutex::new(Vec::new()),
                keeper: Keeper::default(),
            }),
        })
    }

    /// The server's URL, without its password.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The namespace of the keys (`_tooz` unless the URL sets `namespace`).
    pub fn namespace(&self) -> &str {
        &self.inner.options.namespace
    }

    /// The lock timeout: the expiry of a lock key, renewed every third of it while held.
    pub fn lock_timeout(&self) -> Duration {
        self.inner.options.lock_timeout
    }

    /// How long the server may take to answer a request.
    pub fn answer_timeout(&self) -> Duration {
        self.inner.options.answer_timeout
    }

    /// The key of `lock(name).prefix(prefix)` on this backend (see [`key`](mod@crate::key)).
    ///
    /// ```
    /// let redis = lockutils_redis::RedisBackend::new("redis://localhost")?;
    /// assert_eq!(redis.key("6f1c-delete_volume", Some("cinder"))?, "_tooz_cinder-6f1c-delete_volume_lock");
    /// # Ok::<(), lockutils::Error>(())
    /// ```
    pub fn key(&self, name: &str, prefix: Option<&str>) -> Result<String, Error> {
        Ok(lock_key(self.namespace(), &full_name(name, prefix)?))
    }

    /// Runs one command (its name and arguments) on a pooled connection and returns the
    /// server's answer, for tests and diagnostics.
    pub fn command(&self, args: &[&str]) -> Result<redis::Value, Error> {
        let (first, rest) = args
            .split_first()
            .ok_or_else(|| Error::backend("", self.inner.target.clone(), "no command given"))?;
        let mut cmd = redis::cmd(first);
        for arg in rest {
            cmd.arg(*arg);
        }
        let inner = &self.inner;
        inner.with_conn(
            "",
            "run a command",
            None,
            inner.options.answer_timeout,
            |con| cmd.query::<Value>(con),
        )
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &self.inner.target)
            .field("namespace", &self.inner.options.namespace)
            .finish_non_exhaustive()
    }
}

/// `d` to the millisecond, for messages.
pub(crate) fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `d` in whole milliseconds, at least 1, for `PX` and `PEXPIRE`.
pub(crate) fn px(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A random token: 16 random bytes as 32 hex digits (as redis-py's uuid hex).
pub(crate) fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `e` says that the connection is unusable (rather than that the server answered with
/// an error).
pub(crate) fn connection_failed(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// `e` in words, naming a script the server refuses as such.
pub(crate) fn explain(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let code = e.code().unwrap_or("");
    let lower = text.to_ascii_lowercase();
    if code == "NOPERM" && lower.contains("eval")
        || lower.contains("unknown command 'eval")
        || lower.contains("unknown command `eval")
    {
        return format!(
            "the server refuses Lua scripts (EVAL), which tooz's protocol needs \
             (renamed or disabled command, or an ACL user without +@scripting): {text}"
        );
    }
    if e.is_timeout() {
        return format!("no answer in time ({text})");
    }
    text
}

impl Inner {
    /// `text` with the URL's passwords hidden: the client's messages should not carry them,
    /// but an echo of a command might.
    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let sentinel = match &self.options.endpoint {
            Endpoint::Sentinel { password, .. } => password.as_deref(),
            _ => None,
        };
        for secret in [self.options.password.as_deref(), sentinel]
            .into_iter()
            .flatten()
        {
            if !secret.is_empty() {
                text = text.replace(secret, "***");
            }
        }
        text
    }

    /// The connection info of one server at `addr`, with the URL's credentials and database.
    fn info(&self, addr: ConnectionAddr) -> Result<redis::ConnectionInfo, redis::RedisError> {
        let o = &self.options;
        let mut redis = RedisConnectionInfo::default().set_db(o.db);
        if let Some(user) = &o.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &o.password {
            redis = redis.set_password(password);
        }
        Ok(addr
            .into_connection_info()?
            .set_redis_settings(redis)
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
    }

    /// A new connection (to the master, with Sentinel), set up within the connect timeout or
    /// until `deadline` if that comes first.
    pub(crate) fn connect(
        &self,
        name: &str,
        deadline: Option<Instant>,
    ) -> Result<Connection, Error> {
        let mut bound = self.options.connect_timeout;
        if let Some(deadline) = deadline {
            bound = bound.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
        }
        let result = match &self.options.endpoint {
            Endpoint::Tcp { host, port } => {
                self.connect_to(ConnectionAddr::Tcp(host.clone(), *port), bound)
            }
            Endpoint::Unix(path) => self.connect_to(ConnectionAddr::Unix(path.into()), bound),
            Endpoint::Sentinel { .. } => return self.connect_sentinel(name, bound),
        };
        result.map_err(|e| self.connect_error(name, &e, bound))
    }

    fn connect_to(
        &self,
        addr: ConnectionAddr,
        bound: Duration,
    ) -> Result<Connection, redis::RedisError> {
        #[cfg(feature = "tls")]
        if let (Some(tls), ConnectionAddr::Tcp(host, port)) = (&self.options.tls, &addr) {
            let addr = ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            };
            // The client builds its TLS configuration on the process's default provider:
            // ring's, unless the application installed another.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let info = self.info(addr)?;
            let client = match tls.certificates()? {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            };
            return client.get_connection_with_timeout(bound);
        }
        let info = self.info(addr)?;
        redis::Client::open(info)?.get_connection_with_timeout(bound)
    }

    pub(crate) fn connect_error(
        &self,
        name: &str,
        e: &redis::RedisError,
        bound: Duration,
    ) -> Error {
        let code = e.code().unwrap_or("");
        let reason = if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
            || e.to_string().contains("WRONGPASS")
            || e.kind() == redis::ErrorKind::AuthenticationFailed
        {
            format!(
                "the server refused the credentials: {}",
                self.redact(&e.to_string())
            )
        } else if e.is_timeout() {
            format!(
                "cannot connect to the server: no answer within {:?} (the URL's \
                 socket_connect_timeout sets how long it may take)",
                millis(bound)
            )
        } else {
            format!(
                "cannot connect to the server (is it running and reachable, is the URL right?): {}",
                self.redact(&e.to_string())
            )
        };
        Error::backend(name, self.target.clone(), reason)
    }

    fn connect_sentinel(&self, name: &str, bound: Duration) -> Result<Connection, Error> {
        let Endpoint::Sentinel {
            master,
            sentinels,
            username,
            password,
        } = &self.options.endpoint
        else {
            unreachable!("only for Sentinel URLs")
        };
        let mut reasons = Vec::new();
        for (host, port) in sentinels {
            let mut redis = RedisConnectionInfo::default();
            if let Some(user) = username {
                redis = redis.set_username(user);
            }
            if let Some(password) = password {
                redis = redis.set_password(password);
            }
            let asked = (|| -> Result<Option<(String, u16)>, redis::RedisError> {
                let info = ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()?
                    .set_redis_settings(redis);
                let mut con = redis::Client::open(info)?.get_connection_with_timeout(bound)?;
                con.set_read_timeout(Some(self.options.answer_timeout))?;
                con.set_write_timeout(Some(self.options.answer_timeout))?;
                let addr: Option<(String, String)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master)
                    .query(&mut con)?;
                Ok(addr.and_then(|(h, p)| p.parse().ok().map(|p| (h, p))))
            })();
            match asked {
                Ok(Some((mhost, mport))) => {
                    match self.connect_to(ConnectionAddr::Tcp(mhost.clone(), mport), bound) {
                        Ok(mut con) => {
                            // Only the master takes locks: a Sentinel's view may be stale.
                            let role: Result<Vec<Value>, _> = {
                                let _ = con.set_read_timeout(Some(self.options.answer_timeout));
                                redis::cmd("ROLE").query(&mut con)
                            };
                            match role {
                                Ok(role) if matches!(role.first(), Some(Value::BulkString(b)) if b == b"master") =>
                                {
                                    let _ = con.set_read_timeout(None);
                                    return Ok(con);
                                }
                                Ok(_) => reasons.push(format!("{mhost}:{mport} is not a master")),
                                Err(e) => reasons.push(format!(
                                    "{mhost}:{mport}: {}",
                                    self.redact(&e.to_string())
                                )),
                            }
                        }
                        Err(e) => {
                            return Err(self.connect_error(name, &e, bound));
                        }
                    }
                }
                Ok(None) => {
                    reasons.push(format!("Sentinel {host}:{port} knows no master {master:?}"))
                }
                Err(e) => reasons.push(format!(
                    "Sentinel {host}:{port}: {}",
                    self.redact(&e.to_string())
                )),
            }
        }
        Err(Error::backend(
            name,
            self.target.clone(),
            format!(
                "no Sentinel named the master {master:?}: {}",
                reasons.join("; ")
            ),
        ))
    }

    fn pop_idle(&self) -> Option<Connection> {
        loop {
            let con = self.idle.lock().pop()?;
            if con.is_open() {
                return Some(con);
            }
        }
    }

    fn checkin(&self, con: Connection) {
        if !con.is_open() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(con);
        }
    }

    /// Runs `op` on a connection (an idle one, or a new one), each read and write bounded by
    /// `bound`. A pooled connection that failed is replaced by a new one, once. A connection
    /// that failed or went silent is closed; one that answered goes back to the pool.
    pub(crate) fn with_conn<T>(
        &self,
        name: &str,
        action: &str,
        deadline: Option<Instant>,
        bound: Duration,
        mut op: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let (mut con, mut pooled) = match self.pop_idle() {
            Some(con) => (con, true),
            None => (self.connect(name, deadline)?, false),
        };
        loop {
            let bound = bound.max(Duration::from_millis(1));
            let outcome = con
                .set_read_timeout(Some(bound))
                .and_then(|()| con.set_write_timeout(Some(bound)))
                .and_then(|()| op(&mut con));
            match outcome {
                Ok(value) => {
                    self.checkin(con);
                    return Ok(value);
                }
                Err(e) if pooled && connection_failed(&e) && !e.is_timeout() => {
                    // An idle connection may have died (a server restart): once, a new one.
                    con = self.connect(name, deadline)?;
                    pooled = false;
                }
                Err(e) => {
                    if !connection_failed(&e) {
                        // The server answered: the connection is fine.
                        self.checkin(con);
                    }
                    return Err(self.failed(name, action, &e, bound));
                }
            }
        }
    }

    pub(crate) fn failed(
        &self,
        name: &str,
        action: &str,
        e: &redis::RedisError,
        bound: Duration,
    ) -> Error {
        let reason = if e.is_timeout() {
            format!(
                "the server did not answer within {:?} while trying to {action} (stopped or \
                 overloaded? the URL's `{ANSWER_TIMEOUT_OPTION}` sets how long it may take)",
                millis(bound)
            )
        } else if connection_failed(e) {
            format!(
                "the connection to the server failed while trying to {action}: {}",
                self.redact(&e.to_string())
            )
        } else {
            format!("the server failed to {action}: {}", explain(e))
        };
        Error::backend(name, self.target.clone(), reason)
    }

    /// The bound of a request of a timed acquire ending at `deadline`: the answer timeout, or
    /// what is left until the deadline plus a grace of one poll interval, if shorter.
    fn bound(&self, deadline: Option<Instant>) -> Duration {
        match deadline {
            None => self.options.answer_timeout,
            Some(deadline) => self
                .options
                .answer_timeout
                .min(deadline.saturating_duration_since(Instant::now()) + POLL_INTERVAL),
        }
    }

    /// One try at the lock `key` (full name `name`).
    pub(crate) fn try_take(
        &self,
        name: &str,
        key: &str,
        deadline: Option<Instant>,
    ) -> Result<Try, Error> {
        let token =
            new_token().map_err(|reason| Error::backend(name, self.target.clone(), reason))?;
        let ttl = self.options.lock_timeout;
        let counter = counter_key(&self.options.namespace);
        let mut started = Instant::now();
        let answer: (i64, i64) = self.with_conn(
            name,
            "take the lock",
            deadline,
            self.bound(deadline),
            |con| {
                started = Instant::now();
                redis::cmd("EVAL")
                    .arg(script::ACQUIRE)
                    .arg(2)
                    .arg(key)
                    .arg(&counter)
                    .arg(&token)
                    .arg(px(ttl))
                    .query(con)
            },
        )?;
        match answer {
            (1, fence) => Ok(Try::Taken(Arc::new(Lease::new(
                name.to_owned(),
                key.to_owned(),
                token,
                fence,
                ttl,
                started,
            )))),
            (_, pttl) => Ok(Try::Busy(
                u64::try_from(pttl).ok().map(Duration::from_millis),
            )),
        }
    }

    /// Takes the lock `key` (full name `name`) as `wait` allows: one try, then (if allowed)
    /// a wait on the release channel, trying again on each announcement, every
    /// [`POLL_INTERVAL`], and when the holder's key expires. `cancelled` ends the wait early
    /// (an awaited acquire that was dropped).
    pub(crate) fn take(
        self: &Arc<Self>,
        name: &str,
        key: &str,
        wait: Wait,
        deadline: Option<Instant>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Held, Error> {
        let mut expires_in = match self.try_take(name, key, deadline)? {
            Try::Taken(lease) => return Ok(self.hold(lease)),
            Try::Busy(expires_in) => expires_in,
        };
        let gave_up = || Error::acquire_failed(name, wait.waited());
        if matches!(wait, Wait::Never) || matches!(wait, Wait::For(d) if d.is_zero()) {
            return Err(gave_up());
        }
        // A connection of its own, subscribed to the release channel. Without one (a server
        // that refuses SUBSCRIBE), the wait polls.
        let mut sub_con = match self.connect(name, deadline) {
            Ok(con) => Some(con),
            Err(e) => {
                tracing::debug!(target: LOG_TARGET, lock = name, "waiting by polling only: {e}");
                None
            }
        };
        let channel = channel_of(key);
        let mut pubsub = sub_con.as_mut().and_then(|con| {
            let _ = con.set_read_timeout(Some(self.options.answer_timeout));
            let _ = con.set_write_timeout(Some(self.options.answer_timeout));
            let mut pubsub = con.as_pubsub();
            match pubsub.subscribe(&channel) {
                Ok(()) => Some(pubsub),
                Err(e) => {
                    tracing::debug!(target: LOG_TARGET, lock = name, "waiting by polling only: {e}");
                    None
                }
            }
        });
        let mut subscribed_try = pubsub.is_some();
        loop {
            if cancelled() {
                return Err(gave_up());
            }
            if subscribed_try {
                // Subscribed now: a release before this try is seen by the try, one after it
                // is announced.
                subscribed_try = false;
            } else {
                let left = match deadline {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(gave_up());
                        }
                        left
                    }
                    None => Duration::MAX,
                };
                let mut pause = POLL_INTERVAL.min(left);
                if let Some(expires_in) = expires_in {
                    pause = pause.min(expires_in + Duration::from_millis(1));
                }
                match pubsub.as_mut() {
                    Some(sub) => {
                        let heard = sub
                            .set_read_timeout(Some(pause.max(Duration::from_millis(1))))
                            .and_then(|()| sub.get_message());
                        if let Err(e) = heard
                            && !e.is_timeout()
                        {
                            tracing::debug!(target: LOG_TARGET, lock = name, "waiting by polling only: {e}");
                            pubsub = None;
                        }
                    }
                    None => std::thread::sleep(pause),
                }
            }
            match self.try_take(name, key, deadline)? {
                Try::Taken(lease) => return Ok(self.hold(lease)),
                Try::Busy(left) => expires_in = left,
            }
        }
    }

    /// Keeps `lease` extended from now on.
    pub(crate) fn hold(self: &Arc<Self>, lease: Arc<Lease>) -> Held {
        self.keeper.add(self, lease.clone());
        Held { lease }
    }

    /// Releases `held`: the token-checked delete (and announcement).
    pub(crate) fn release(&self, name: &str, held: Held) -> Result<(), Error> {
        let lease = held.lease;
        self.keeper.remove(&lease);
        let bound = RELEASE_TIMEOUT.min(self.options.answer_timeout);
        let channel = channel_of(&lease.key);
        let released: i64 = self
            .with_conn(name, "release the lock", None, bound, |con| {
                redis::cmd("EVAL")
                    .arg(script::RELEASE)
                    .arg(1)
                    .arg(&lease.key)
                    .arg(&lease.token)
                    .arg(&channel)
                    .query(con)
            })
            .map_err(|e| match e {
                Error::Backend {
                    name,
                    target,
                    reason,
                } => Error::Backend {
                    name,
                    target,
                    reason: format!("{reason}; the key expires by itself within the lock timeout"),
                },
                other => other,
            })?;
        if released == 1 {
            Ok(())
        } else {
            Err(Error::backend(
                name,
                self.target.clone(),
                format!(
                    "the key {} no longer held this holder's token at release: the lock was \
                     lost earlier ({})",
                    lease.key,
                    lease
                        .lost_reason()
                        .unwrap_or_else(|| "expired or deleted".to_owned())
                ),
            ))
        }
    }

    /// The locks held now in the namespace (by anyone): `SCAN` for `<namespace>_<prefix>*_lock`,
    /// with each key's `PTTL`.
    pub(crate) fn list_held(&self, prefix: Option<&str>) -> Result<Vec<HeldExternalLock>, Error> {
        let namespace = &self.options.namespace;
        let pattern = format!(
            "{}_{}*_lock",
            glob_escape(namespace),
            glob_escape(prefix.unwrap_or(""))
        );
        let bound = self.options.answer_timeout;
        let mut held = self.with_conn("*", "list the held locks", None, bound, |con| {
            let mut found = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(con)?;
                let keys: Vec<String> = keys
                    .into_iter()
                    .filter_map(|k| String::from_utf8(k).ok())
                    .filter(|k| name_of_key(namespace, k).is_some())
                    .collect();
                if !keys.is_empty() {
                    let mut pipe = redis::pipe();
                    for key in &keys {
                        pipe.cmd("PTTL").arg(key);
                    }
                    let ttls: Vec<i64> = pipe.query(con)?;
                    for (key, ttl) in keys.iter().zip(ttls) {
                        // -2: gone since the scan.
                        if ttl == -2 {
                            continue;
                        }
                        let name = name_of_key(namespace, key).expect("filtered above");
                        let mut lock =
                            HeldExternalLock::new(name).with_detail(format!("key {key}"));
                        if let Ok(ms) = u64::try_from(ttl) {
                            lock = lock.with_expires_in(Duration::from_millis(ms));
                        }
                        found.push(lock);
                    }
                }
                if next == 0 {
                    return Ok(found);
                }
                cursor = next;
            }
        })?;
        held.sort_by(|a, b| a.name.cmp(&b.name));
        held.dedup_by(|a, b| a.name == b.name);
        Ok(held)
    }

    /// Whether `held` is still held: not marked lost, not past its expiry, and the key still
    /// holds the token on the server.
    pub(crate) fn is_held(&self, name: &str, held: &Held) -> Result<bool, Error> {
        let lease = &held.lease;
        if !lease.valid_now() {
            return Ok(false);
        }
        let bound = IS_HELD_TIMEOUT.min(self.options.answer_timeout);
        let value: Option<String> = self.with_conn(name, "check the lock", None, bound, |con| {
            redis::cmd("GET").arg(&lease.key).query(con)
        })?;
        if value.as_deref() == Some(lease.token.as_str()) {
            Ok(lease.valid_now())
        } else {
            lease.mark_lost(match value {
                None => "the key is gone (expired or deleted)".to_owned(),
                Some(_) => "the key holds another holder's token".to_owned(),
            });
            Ok(false)
        }
    }
}

impl ExternalBackend for RedisBackend {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        wait: Wait,
    ) -> Result<(), Error> {
        let key = self.key(target.name, target.prefix)?;
        let held = self
            .inner
            .take(target.name, &key, wait, wait.deadline(), &|| false)?;
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
        let key = self.key(target.name, target.prefix)?;
        let slot = cache.get_or_insert_with(Slot::default);
        Ok(slot.held.as_ref().is_some_and(|held| held.lease.key == key))
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
            let key = self.key(target.name, target.prefix)?;
            let held =
                crate::asynchronous::take(&self.inner, target.name, key, wait, deadline).await?;
            cache.lock().get_or_insert_with(Slot::default).held = Some(held);
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.inner.target.clone()
    }

    fn list_held(&self, prefix: Option<&str>) -> Result<Vec<HeldExternalLock>, Error> {
        self.inner.list_held(prefix)
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
            .map(|held| held.lease.fence)
    }
}
