//! Awaited Redis locks (the `async` feature): `lock(..).external(true).acquire_async()` waits
//! without blocking the executor, times out, and a dropped wait leaves nothing held.
#![cfg(all(target_os = "linux", feature = "async"))]

mod support;

use std::time::Duration;

use lockutils::{Error, lock};
use support::{get, redis, run, unique, wait_until, waiters};

/// Another holder of `key` (as a tooz process would be): the key set to its token.
fn hold_elsewhere(redis: &lockutils_redis::RedisBackend, key: &str) {
    run(redis, &["SET", key, "another-holder", "PX", "60000"]);
}

/// That holder releases, as a lockutils holder does: delete and announce.
fn release_elsewhere(redis: &lockutils_redis::RedisBackend, key: &str) {
    run(redis, &["DEL", key]);
    run(redis, &["PUBLISH", &format!("{key}:released"), ""]);
}

async fn until_waiting(key: String, n: i64) {
    let redis = redis("").unwrap();
    tokio::task::spawn_blocking(move || {
        wait_until("waiters subscribed", || waiters(redis, &key) == n)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
async fn an_awaited_lock_waits_without_blocking_the_executor_and_gets_it_on_release() {
    let Some(redis) = redis("") else { return };
    let name = unique("async-wait");
    let key = redis.key(&name, None).unwrap();
    hold_elsewhere(redis, &key);
    let name2 = name.clone();
    let waiter = tokio::spawn(async move {
        let guard = lock(&name2)
            .external(true)
            .backend(redis)
            .acquire_async()
            .await
            .unwrap();
        assert!(guard.is_external_held().unwrap());
        guard.fencing_token().unwrap()
    });
    // On a current-thread runtime: this task runs only because the waiter does not block it.
    until_waiting(key.clone(), 1).await;
    release_elsewhere(redis, &key);
    let token = waiter.await.unwrap();
    assert!(token > 0);
    assert_eq!(get(redis, &key), None, "released when the guard dropped");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
async fn an_awaited_timed_lock_gives_up_and_a_free_one_is_taken_at_once() {
    let Some(redis) = redis("") else { return };
    let name = unique("async-timeout");
    let key = redis.key(&name, None).unwrap();
    hold_elsewhere(redis, &key);
    let err = lock(&name)
        .external(true)
        .backend(redis)
        .timeout(Duration::from_millis(200))
        .acquire_async()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AcquireLockFailed { .. }), "{err}");
    run(redis, &["DEL", &key]);
    let guard = lock(&name)
        .external(true)
        .backend(redis)
        .acquire_async()
        .await
        .unwrap();
    assert!(guard.is_external_held().unwrap());
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs a Redis server: scripts/test runs it (scripts/redis, --include-ignored)"]
async fn a_dropped_wait_stops_waiting_and_leaves_nothing_held() {
    let Some(redis) = redis("") else { return };
    let name = unique("async-drop");
    let key = redis.key(&name, None).unwrap();
    hold_elsewhere(redis, &key);
    let waiting = tokio::spawn({
        let name = name.clone();
        async move {
            lock(&name)
                .external(true)
                .backend(redis)
                .acquire_async()
                .await
        }
    });
    until_waiting(key.clone(), 1).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    // The waiting thread sees the cancellation and leaves the channel.
    until_waiting(key.clone(), 0).await;
    release_elsewhere(redis, &key);
    // Nobody took it: a non-blocking acquire gets it.
    let guard = lock(&name)
        .external(true)
        .backend(redis)
        .blocking(false)
        .acquire_async()
        .await
        .unwrap();
    assert!(guard.is_external_held().unwrap());
}
