//! Held locks and the thread that extends them: each held lock's expiry is re-set every third
//! of the lock timeout; an extension that fails or is refused marks the lock lost at once.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use lockutils_core::LOG_TARGET;
use parking_lot::{Condvar, Mutex};
use redis::{Connection, ConnectionLike};

use crate::backend::{Inner, connection_failed, explain, millis, px};
use crate::script;

/// One acquisition of a lock: its key, its token, and whether it is still held.
pub(crate) struct Lease {
    /// The lock's name (for logs).
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) fence: i64,
    pub(crate) ttl: Duration,
    state: Mutex<State>,
}

struct State {
    /// When the request that last set the expiry was sent: the key lives at most until this
    /// plus the lock timeout (by the client's clock).
    renewed: Instant,
    /// Why the lock was lost, once it was.
    lost: Option<String>,
    /// Released (or being released): no more extensions.
    stopped: bool,
}

impl Lease {
    pub(crate) fn new(
        name: String,
        key: String,
        token: String,
        fence: i64,
        ttl: Duration,
        sent: Instant,
    ) -> Self {
        Self {
            name,
            key,
            token,
            fence,
            ttl,
            state: Mutex::new(State {
                renewed: sent,
                lost: None,
                stopped: false,
            }),
        }
    }

    /// Not lost, and not past its expiry (which marks it lost).
    pub(crate) fn valid_now(&self) -> bool {
        let mut state = self.state.lock();
        if state.lost.is_some() {
            return false;
        }
        if state.renewed.elapsed() >= self.ttl {
            let reason = format!(
                "not extended within the lock timeout ({:?}): the key expired",
                millis(self.ttl)
            );
            tracing::warn!(target: LOG_TARGET, lock = self.name.as_str(), key = self.key.as_str(), "external lock lost: {reason}");
            state.lost = Some(reason);
            return false;
        }
        true
    }

    /// Marks the lock lost (once; logged).
    pub(crate) fn mark_lost(&self, reason: String) {
        let mut state = self.state.lock();
        if state.lost.is_none() && !state.stopped {
            tracing::warn!(target: LOG_TARGET, lock = self.name.as_str(), key = self.key.as_str(), "external lock lost: {reason}");
            state.lost = Some(reason);
        }
    }

    pub(crate) fn lost_reason(&self) -> Option<String> {
        self.state.lock().lost.clone()
    }

    /// No more extensions (the lock is being released).
    pub(crate) fn stop(&self) {
        self.state.lock().stopped = true;
    }

    /// When the next extension is due, or `None` if none is (lost or stopped).
    fn due(&self) -> Option<Instant> {
        let state = self.state.lock();
        if state.lost.is_some() || state.stopped {
            return None;
        }
        Some(state.renewed + self.ttl / 3)
    }
}

/// The extension thread of a backend (started with the first held lock) and its leases.
#[derive(Default)]
pub(crate) struct Keeper {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    leases: Mutex<Leases>,
    changed: Condvar,
}

#[derive(Default)]
struct Leases {
    list: Vec<Arc<Lease>>,
    started: bool,
    /// When the thread wakes next, if it waits for a time: a lease due later needs no wake-up
    /// (the thread would be woken for nothing, on every acquire).
    wakes_at: Option<Instant>,
}

impl Keeper {
    /// Keeps `lease` extended until it is stopped or lost.
    pub(crate) fn add(&self, inner: &Arc<Inner>, lease: Arc<Lease>) {
        let mut leases = self.shared.leases.lock();
        let due = lease.due();
        leases.list.push(lease);
        if !leases.started {
            let weak = Arc::downgrade(inner);
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("lockutils-redis-keeper".to_owned())
                .spawn(move || run(weak, shared));
            match spawned {
                Ok(_) => leases.started = true,
                Err(e) => {
                    // Without the thread, the lock expires after its timeout: say so now.
                    for lease in leases.list.drain(..) {
                        lease.mark_lost(format!("cannot start the extension thread: {e}"));
                    }
                }
            }
        }
        let sooner = match (due, leases.wakes_at) {
            (Some(due), Some(wakes)) => due < wakes,
            _ => true,
        };
        if sooner {
            self.shared.changed.notify_one();
        }
    }

    /// No longer keeps `lease` extended (it is being released).
    pub(crate) fn remove(&self, lease: &Arc<Lease>) {
        lease.stop();
        self.shared
            .leases
            .lock()
            .list
            .retain(|kept| !Arc::ptr_eq(kept, lease));
    }
}

fn run(inner: Weak<Inner>, shared: Arc<Shared>) {
    let mut con: Option<Connection> = None;
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut leases = shared.leases.lock();
            let mut next: Option<Instant> = None;
            leases.list.retain(|lease| match lease.due() {
                None => false,
                Some(at) if at <= now => {
                    due.push(lease.clone());
                    true
                }
                Some(at) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    true
                }
            });
            if due.is_empty() {
                // Nothing held: wait for a lock (or a minute, to see whether the backend is
                // still there).
                let at = next.unwrap_or(now + Duration::from_secs(60));
                leases.wakes_at = Some(at);
                shared.changed.wait_until(&mut leases, at);
                leases.wakes_at = None;
                continue;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        for lease in due {
            extend(&inner, &mut con, &lease);
        }
    }
}

/// Extends `lease` once (on the keeper's connection, opened again once if it failed).
fn extend(inner: &Inner, con: &mut Option<Connection>, lease: &Lease) {
    // The answer must come while the key still lives, and within the answer timeout.
    let bound = inner
        .options
        .answer_timeout
        .min(lease.ttl / 3)
        .max(Duration::from_millis(1));
    let mut last_error = None;
    for _attempt in 0..2 {
        if con.as_ref().is_none_or(|c| !c.is_open()) {
            let deadline = Instant::now() + bound;
            match inner.connect(&lease.name, Some(deadline)) {
                Ok(c) => *con = Some(c),
                Err(e) => {
                    last_error = Some(e.to_string());
                    break;
                }
            }
        }
        let c = con.as_mut().expect("connected above");
        let sent = Instant::now();
        let outcome: redis::RedisResult<i64> = c
            .set_read_timeout(Some(bound))
            .and_then(|()| c.set_write_timeout(Some(bound)))
            .and_then(|()| {
                redis::cmd("EVAL")
                    .arg(script::EXTEND)
                    .arg(1)
                    .arg(&lease.key)
                    .arg(&lease.token)
                    .arg(px(lease.ttl))
                    .query(c)
            });
        match outcome {
            Ok(1) => {
                let mut state = lease.state.lock();
                if state.lost.is_none() {
                    state.renewed = sent;
                }
                return;
            }
            Ok(_) => {
                lease.mark_lost(
                    "the extension was refused: the key no longer holds this holder's token \
                     (it expired, was deleted, or another holder took it)"
                        .to_owned(),
                );
                return;
            }
            Err(e) => {
                let timeout = e.is_timeout();
                if connection_failed(&e) {
                    *con = None;
                }
                last_error = Some(if timeout {
                    format!("no answer within {:?}", millis(bound))
                } else {
                    explain(&e)
                });
                if timeout || !connection_failed(&e) {
                    break;
                }
            }
        }
    }
    lease.mark_lost(format!(
        "the extension failed ({}): {}",
        inner.target,
        last_error.unwrap_or_default()
    ));
}
