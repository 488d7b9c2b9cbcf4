//! Support for the code `#[synchronized]` generates. Not a public API: it changes with the
//! macro.

use std::marker::PhantomData;
use std::time::Instant;

use tracing::Level;

use crate::error::Error;
use crate::lock::log::{log_acquiring, log_outcome, log_released};
use crate::lock::{AsyncLockGuard, LOG_TARGET, LockBuilder, LockGuard};
use crate::semaphore::NamedSemaphore;

pub use crate::lock::StaticLock;

/// The lock held by a `#[synchronized]` function, with what its logs need.
#[must_use]
pub struct Synchronized {
    inner: Held,
}

enum Held {
    Guard {
        guard: Option<LockGuard>,
        /// When the lock was taken, and the function's name: set when DEBUG logs are on.
        logged: Option<(Instant, &'static str)>,
    },
    /// The fast path: a literal name with no options, taken through its kept handle.
    Static(&'static NamedSemaphore),
}

/// `#[synchronized("literal")]` with no options: the global lock of the name, through the
/// handle kept in `site`, with no name lookup and no builder. Waits as long as it takes; fails
/// only when called from the body of a synchronized async fn of the same lock.
#[inline]
pub fn enter_static<F: Copy>(site: &'static StaticLock, here: F) -> Result<Synchronized, Error> {
    let in_async_body = TASK_HELD.with(|held| !held.borrow().is_empty());
    if in_async_body || tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return enter(site.lock(), here);
    }
    let sem = site.semaphore();
    sem.acquire_with(crate::queue::Wait::Forever);
    Ok(Synchronized {
        inner: Held::Static(sem),
    })
}

/// The qualified name of the function that defines `here` (a nested `fn`).
fn function_name<F>() -> &'static str {
    let name = std::any::type_name::<F>();
    name.strip_suffix("::__lockutils_here").unwrap_or(name)
}

/// Takes the lock as `builder` says, logging oslo's `synchronized` lines; `here` is a `fn`
/// item nested in the synchronized function, whose type names that function.
#[inline]
pub fn enter<F>(builder: LockBuilder<'_>, _here: F) -> Result<Synchronized, Error> {
    let builder = builder.do_log(false);
    // A blocking synchronized function called from the body of a synchronized async fn of
    // the same lock would block its thread forever.
    if held_by_current_task(|| builder.resolve().map_or(0, |lock| lock.id())) {
        return Err(held_by_this_task(builder.name()));
    }
    if !tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return builder.acquire().map(|guard| Synchronized {
            inner: Held::Guard {
                guard: Some(guard),
                logged: None,
            },
        });
    }
    let (name, func) = (builder.name(), function_name::<F>());
    let asked = log_acquiring(name, func);
    let result = builder.acquire();
    let logged = log_outcome(name, func, asked, result.as_ref().err());
    result.map(|guard| Synchronized {
        inner: Held::Guard {
            guard: Some(guard),
            logged,
        },
    })
}

impl Drop for Synchronized {
    #[inline]
    fn drop(&mut self) {
        let (guard, logged) = match &mut self.inner {
            Held::Static(sem) => return sem.release(),
            Held::Guard { guard, logged } => (guard.take(), *logged),
        };
        let (Some(guard), Some((taken, func))) = (guard, logged) else {
            return;
        };
        let name = guard.name().to_owned();
        drop(guard);
        log_released(&name, func, taken);
    }
}

/// What a synchronized function that cannot return an error does when it does not get its
/// lock.
#[cold]
#[track_caller]
pub fn lock_failed<F>(error: Error, _here: F) -> ! {
    panic!(
        "#[synchronized] function `{}` did not get its lock: {error}",
        function_name::<F>()
    )
}

/// The return type `R` of a `#[synchronized]` function, by which the type system (not the
/// macro, which sees only names) decides what a lock failure becomes:
///
/// - `Result<T, E>` with `E: From<Error>`: `Err(error.into())` ([`FailureAsErr`]);
/// - `Result<T, E>` otherwise: a compile error saying so ([`FailureWithoutFrom`]);
/// - any other type: a panic ([`FailureAsPanic`]).
///
/// The generated code calls `(&&Returns::<R>::new()).lock_failure(error, here)` with the three
/// traits in scope; method resolution tries `&&Returns<R>`, then `&Returns<R>`, then
/// `Returns<R>`, and takes the first impl whose where-clauses hold. Type aliases are seen
/// through, since the choice is made on the type, not on how it is written.
pub struct Returns<R>(PhantomData<fn() -> R>);

// By hand: `Copy` whatever `R` is, so that the last candidate can take it by value.
impl<R> Clone for Returns<R> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Returns<R> {}

impl<R> Default for Returns<R> {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Returns<R> {
    /// A marker for the return type `R`.
    #[inline]
    #[must_use]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

/// The error type of a function whose lock failures are returned as `Err(e.into())`.
#[diagnostic::on_unimplemented(
    message = "#[synchronized] returns a lock failure as `Err(e.into())`, but `{Self}` has no `From<lockutils::Error>`",
    label = "this function's error type `{Self}` cannot be made from a `lockutils::Error`",
    note = "implement `From<lockutils::Error> for {Self}`, or write `on_lock_error = \"panic\"` in `#[synchronized(...)]` to panic when the lock is not taken"
)]
pub trait FromLockError: Sized {
    /// `Self::from(error)`.
    fn from_lock_error(error: Error) -> Self;
}

impl<E: From<Error>> FromLockError for E {
    #[inline]
    fn from_lock_error(error: Error) -> Self {
        E::from(error)
    }
}

/// `Result<T, E>` with `E: From<Error>`: a lock failure is returned as `Err(error.into())`.
pub trait FailureAsErr {
    /// The function's return type.
    type Output;
    /// What the function returns when it does not get its lock.
    fn lock_failure<F>(self, error: Error, here: F) -> Self::Output;
}

impl<T, E: From<Error>> FailureAsErr for &&Returns<Result<T, E>> {
    type Output = Result<T, E>;
    #[inline]
    fn lock_failure<F>(self, error: Error, _here: F) -> Result<T, E> {
        Err(E::from(error))
    }
}

/// `Result<T, E>` without `E: From<Error>`: the bound on `lock_failure` fails, with
/// [`FromLockError`]'s message.
pub trait FailureWithoutFrom {
    /// The function's error type.
    type Error;
    /// The function's return type.
    type Output;
    /// Never callable: `Self::Error` has no `From<Error>`.
    fn lock_failure<F>(self, error: Error, here: F) -> Self::Output
    where
        Self::Error: FromLockError;
}

impl<T, E> FailureWithoutFrom for &Returns<Result<T, E>> {
    type Error = E;
    type Output = Result<T, E>;
    #[inline]
    fn lock_failure<F>(self, error: Error, _here: F) -> Result<T, E>
    where
        E: FromLockError,
    {
        Err(E::from_lock_error(error))
    }
}

/// Any other return type: a lock failure panics ([`lock_failed`]).
pub trait FailureAsPanic {
    /// The function's return type.
    type Output;
    /// Panics.
    fn lock_failure<F>(self, error: Error, here: F) -> Self::Output;
}

impl<R> FailureAsPanic for Returns<R> {
    type Output = R;
    #[track_caller]
    fn lock_failure<F>(self, error: Error, here: F) -> R {
        lock_failed(error, here)
    }
}

/// The return type of a function that must return its lock failures (`blocking = false`,
/// `timeout`, `on_lock_error = "return"`): `Result<T, E>` with `E: From<Error>`.
#[diagnostic::on_unimplemented(
    message = "#[synchronized] returns lock failures of this function as `Err(e.into())`, so it must return `Result<_, E>` with `E: From<lockutils::Error>`, not `{Self}`",
    label = "this makes not getting the lock an error the function returns",
    note = "`blocking = false`, `timeout` and `on_lock_error = \"return\"` need such a function; with `on_lock_error = \"panic\"` a function of any return type panics instead"
)]
pub trait ReturnsLockError: Sized {
    /// The function's error type, which must convert from [`Error`]: checked on `lock_error`
    /// rather than on the impl, so that a `Result` with another error type gets
    /// [`FromLockError`]'s message.
    type Error;
    /// `Err(error.into())`.
    fn lock_error(error: Error) -> Self
    where
        Self::Error: FromLockError;
}

impl<T, E> ReturnsLockError for Result<T, E> {
    type Error = E;
    #[inline]
    fn lock_error(error: Error) -> Self
    where
        E: FromLockError,
    {
        Err(E::from_lock_error(error))
    }
}

/// The lock held by a `#[synchronized]` `async fn`, with what its logs need. `Send`.
#[must_use]
pub struct SynchronizedAsync {
    guard: Option<AsyncLockGuard>,
    logged: Option<(Instant, &'static str)>,
}

thread_local! {
    /// Locks held by the `#[synchronized]` async functions whose bodies this thread is
    /// polling right now, outermost first: a body's poll runs the polls of what it awaits, so
    /// a lock on this stack is held by the very task asking for it again.
    static TASK_HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The body of a `#[synchronized]` `async fn`, polled with its lock on `TASK_HELD`.
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    lock: Option<usize>,
    body: F,
}

/// Runs `body` (the function's body) as the task holding `held`'s lock.
pub fn scoped<F: std::future::Future>(held: &SynchronizedAsync, body: F) -> Scoped<F> {
    Scoped {
        lock: held.guard.as_ref().map(AsyncLockGuard::id),
        body,
    }
}

impl<F: std::future::Future> std::future::Future for Scoped<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        /// Pops the lock even if the body panics.
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                TASK_HELD.with(|held| held.borrow_mut().pop());
            }
        }
        let lock = self.lock;
        // SAFETY: `body` is pinned structurally: it is never moved out of `Scoped`, which has
        // no `Drop` and is `Unpin` only if `F` is.
        let body = unsafe { self.map_unchecked_mut(|s| &mut s.body) };
        let Some(lock) = lock else {
            return body.poll(cx);
        };
        TASK_HELD.with(|held| held.borrow_mut().push(lock));
        let _pop = Pop;
        body.poll(cx)
    }
}

/// The error for a lock asked for again by the task that holds it.
fn held_by_this_task(name: &str) -> Error {
    Error::InvalidOptions {
        name: name.to_owned(),
        reason: "this task already holds this lock (a #[synchronized] call nested in a \
                 #[synchronized] async fn of the same lock): waiting would never end, and \
                 entering again could let sibling futures of the task in together",
    }
}

/// Whether the task being polled on this thread holds the lock `id` (see `TASK_HELD`).
fn held_by_current_task(id: impl FnOnce() -> usize) -> bool {
    TASK_HELD.with(|held| {
        let held = held.borrow();
        !held.is_empty() && held.contains(&id())
    })
}

/// [`enter`] for `async fn`: awaits the lock without blocking the thread.
///
/// Asked again by the task that holds it (a nested `#[synchronized]` call on the same lock,
/// fair or not), it fails at once instead of waiting for itself. Tasks are not reentrant:
/// re-entering would also let sibling futures of the task (`join!`) in together.
pub async fn enter_async<F>(
    builder: LockBuilder<'_>,
    _here: F,
) -> Result<SynchronizedAsync, Error> {
    let builder = builder.do_log(false);
    let lock = builder.resolve()?;
    if held_by_current_task(|| lock.id()) {
        return Err(held_by_this_task(builder.name()));
    }
    if !tracing::enabled!(target: LOG_TARGET, Level::DEBUG) {
        return builder
            .acquire_resolved(lock)
            .await
            .map(|guard| SynchronizedAsync {
                guard: Some(guard),
                logged: None,
            });
    }
    let (name, func) = (builder.name(), function_name::<F>());
    let asked = log_acquiring(name, func);
    let result = builder.acquire_resolved(lock).await;
    let logged = log_outcome(name, func, asked, result.as_ref().err());
    result.map(|guard| SynchronizedAsync {
        guard: Some(guard),
        logged,
    })
}

impl Drop for SynchronizedAsync {
    fn drop(&mut self) {
        let (Some(guard), Some((taken, func))) = (self.guard.take(), self.logged) else {
            return;
        };
        let name = guard.name().to_owned();
        drop(guard);
        log_released(&name, func, taken);
    }
}
