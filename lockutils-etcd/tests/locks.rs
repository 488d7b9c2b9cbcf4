//! lockutils-etcd against a real etcd (`scripts/etcd`): exclusion across threads and
//! processes, waiting, timeouts, lost leases, fencing tokens, async acquires.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockutils::{Error, Wait, lock, synchronized};
use support::child::{self, wait_for_stdin_close};
use support::{Raw, TTL, etcd, spawn, unique, wait_until};

fn play(role: &str, args: &[String]) -> i32 {
    lockutils_etcd::install();
    let arg = |i: usize| args[i].as_str();
    match role {
        "count" => {
            let path = arg(0).to_owned();
            let n: usize = arg(1).parse().unwrap();
            child::ready_then_go();
            child::in_threads(2, n, || bump(&path).unwrap());
            println!("done");
            0
        }
        "hold" => {
            let guard = lock(arg(0))
                .prefix(arg(1))
                .external(true)
                .acquire()
                .unwrap();
            println!("held {}", guard.fencing_token().unwrap());
            wait_for_stdin_close();
            drop(guard);
            println!("released");
            0
        }
        "count-async" => {
            let path = arg(0).to_owned();
            let n: usize = arg(1).parse().unwrap();
            child::ready_then_go();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let path = path.clone();
                        tokio::spawn(async move {
                            for _ in 0..n / 2 {
                                bump_async(&path).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
            println!("done");
            0
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn child() {
    child::main(play);
}

/// One increment of the counter in the file at `path`, as a separate read and write: only
/// mutual exclusion across the processes keeps the count exact.
#[synchronized("lockutils-test-counter", prefix = "cinder", external = true)]
fn bump(path: &str) -> Result<(), Error> {
    child::increment_counter_file(path);
    Ok(())
}

/// The same increment from async code: the attribute awaits the lock (`acquire_async`).
#[synchronized("lockutils-test-counter", prefix = "cinder", external = true)]
async fn bump_async(path: &str) -> Result<(), Error> {
    let value: u64 = tokio::fs::read_to_string(path)
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A yield between the read and the write: only the lock keeps another task out.
    tokio::task::yield_now().await;
    tokio::fs::write(path, (value + 1).to_string())
        .await
        .unwrap();
    Ok(())
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_held_lock_is_toozs_key_and_its_release_deletes_it() {
    let Some(etcd) = etcd() else { return };
    let volume = unique("6f1c1b4a");
    let name = format!("{volume}-delete_volume");
    let guard = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap();
    assert!(guard.is_external_held().unwrap());
    let token = guard.fencing_token().expect("a fencing token");
    let full = format!("cinder-{volume}-delete_volume");
    assert_eq!(
        etcd.key(&name, Some("cinder")).unwrap(),
        format!("/tooz/locks{full}").into_bytes()
    );
    let held = etcd.held(Some(&full)).unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].name, full);
    assert_eq!(held[0].revision, token);
    assert_ne!(held[0].lease, 0);
    let left = held[0].ttl_left.expect("a lease");
    assert!(left <= Duration::from_secs(TTL), "{left:?}");
    drop(guard);
    assert!(etcd.held(Some(&full)).unwrap().is_empty());
    // Revoked on release: the lease is gone, not left to expire.
    let again = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap();
    assert!(again.fencing_token().unwrap() > token);
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_busy_lock_refuses_tries_and_timeouts_bound_the_wait() {
    let Some(etcd) = etcd() else { return };
    let name = unique("busy");
    let mut holder = Raw::new(etcd, &name, None);
    holder.acquire(Wait::Never).unwrap();
    let err = lock(&name)
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    let started = Instant::now();
    let err = lock(&name)
        .external(true)
        .backend(etcd)
        .timeout(Duration::from_millis(300))
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_acquire_failed(), "{err}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // Nothing is left waiting, and the holder still holds.
    assert_eq!(etcd.waiting(&holder.key()), 0);
    assert!(holder.is_held().unwrap());
    holder.release().unwrap();
    let guard = lock(&name)
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap();
    drop(guard);
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn shared_locks_are_refused_with_a_clear_error() {
    let Some(etcd) = etcd() else { return };
    let err = lock(&unique("shared"))
        .external(true)
        .backend(etcd)
        .shared(true)
        .acquire()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("shared"), "{text}");
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_waiter_watches_and_takes_the_lock_at_the_release() {
    let Some(etcd) = etcd() else { return };
    let name = unique("handoff");
    let mut holder = Raw::new(etcd, &name, None);
    holder.acquire(Wait::Never).unwrap();
    let first = holder.token().unwrap();
    let key = holder.key();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            let guard = lock(&name).external(true).backend(etcd).acquire().unwrap();
            tx.send((Instant::now(), guard.fencing_token().unwrap()))
                .unwrap();
            drop(guard);
        })
    };
    wait_until("the waiter watching the key", || etcd.waiting(&key) == 1);
    // Still waiting: it has not taken the lock.
    assert!(rx.try_recv().is_err());
    let released = Instant::now();
    holder.release().unwrap();
    let (got, token) = rx.recv_timeout(child::PATIENCE).unwrap();
    waiter.join().unwrap();
    assert!(token > first);
    let handoff = got - released;
    eprintln!("handoff lockutils -> lockutils: {handoff:?}");
    // No polling: the watch reports the deletion (generous bound; see the benchmark).
    assert!(handoff < Duration::from_millis(500), "{handoff:?}");
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_timeout_too_long_to_represent_waits_like_no_timeout() {
    let Some(etcd) = etcd() else { return };
    let name = unique("max-timeout");
    let mut holder = Raw::new(etcd, &name, None);
    holder.acquire(Wait::Never).unwrap();
    let key = holder.key();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            lock(&name)
                .external(true)
                .backend(etcd)
                .timeout(Duration::MAX)
                .acquire()
                .map(drop)
        })
    };
    wait_until("the waiter watching the key", || etcd.waiting(&key) == 1);
    holder.release().unwrap();
    waiter.join().unwrap().unwrap();
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn many_threads_exclude_each_other() {
    let Some(etcd) = etcd() else { return };
    let name = unique("threads");
    let inside = std::sync::atomic::AtomicUsize::new(0);
    let holders = 4;
    let rounds = 10;
    std::thread::scope(|s| {
        for i in 0..holders {
            let (name, inside) = (&name, &inside);
            s.spawn(move || {
                // Half contend through lock() (the in-process lock first), half straight
                // through the backend: etcd alone excludes those.
                let mut raw = Raw::new(etcd, name, None);
                for _ in 0..rounds {
                    if i % 2 == 0 {
                        let _guard = lock(name).external(true).backend(etcd).acquire().unwrap();
                        assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        raw.acquire(Wait::Forever).unwrap();
                        assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        raw.release().unwrap();
                    }
                }
            });
        }
    });
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_blocking_and_an_async_process_count_exactly_under_one_lock() {
    let Some(_etcd) = etcd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    std::fs::write(&path, "0").unwrap();
    let path = path.to_str().unwrap();
    let n = 40;
    let mut children: Vec<_> = ["count", "count-async"]
        .into_iter()
        .map(|role| spawn(role, &[path, &n.to_string()]))
        .collect();
    for c in &mut children {
        c.expect("ready");
    }
    for c in &mut children {
        c.send("go");
    }
    for mut c in children {
        c.expect("done");
        assert_eq!(c.code(), 0);
    }
    assert_eq!(std::fs::read_to_string(path).unwrap(), (2 * n).to_string());
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_killed_holder_frees_the_lock_after_its_ttl() {
    let Some(etcd) = etcd() else { return };
    let volume = unique("killed");
    let mut holder = spawn("hold", &[&volume, "cinder"]);
    let token: i64 = holder.expect_prefixed("held ").parse().unwrap();
    let killed = Instant::now();
    holder.kill();
    let mut next = Raw::new(etcd, &volume, Some("cinder"));
    // The lease outlives the process: busy until it expires.
    assert!(next.acquire(Wait::Never).unwrap_err().is_acquire_failed());
    next.acquire(Wait::Forever).unwrap();
    let freed = killed.elapsed();
    eprintln!("lock of a SIGKILLed holder free after {freed:?}");
    assert!(
        freed <= Duration::from_secs(TTL) + Duration::from_secs(1),
        "{freed:?}"
    );
    assert!(next.token().unwrap() > token);
    next.release().unwrap();
}

/// The lease id of the key of `raw`'s lock, from a listing.
fn lease_of(raw: &Raw) -> i64 {
    let full = lockutils::lock_file_name(&raw.name, raw.prefix.as_deref()).unwrap();
    let held = raw.etcd.held(Some(&full)).unwrap();
    held.iter().find(|h| h.name == full).expect("listed").lease
}

/// Revokes lease `id` from outside, as an operator (`etcdctl lease revoke`) would.
fn revoke(id: i64) {
    support::post("v3/lease/revoke", &format!("{{\"ID\":\"{id}\"}}"));
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_revoked_lease_is_a_lost_lock_and_its_token_is_stale() {
    let Some(etcd) = etcd() else { return };
    let name = unique("revoked");
    let guard = lock(&name).external(true).backend(etcd).acquire().unwrap();
    let stale = guard.fencing_token().unwrap();
    let probe = Raw::new(etcd, &name, None);
    revoke(lease_of(&probe));
    assert!(!guard.is_external_held().unwrap());
    // Another holder takes it at once, with a greater token.
    let mut next = Raw::new(etcd, &name, None);
    next.acquire(Wait::Never).unwrap();
    assert!(next.token().unwrap() > stale);
    assert!(!guard.is_external_held().unwrap());
    // Dropping the lost lock's guard does not free the new holder's.
    drop(guard);
    assert!(next.is_held().unwrap());
    // Releasing a lost lock says so.
    revoke(lease_of(&next));
    let err = next.release().unwrap_err().to_string();
    assert!(err.contains("lost before its release"), "{err}");
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn the_keep_alive_holds_a_lock_past_its_ttl() {
    let Some(etcd) = etcd() else { return };
    let name = unique("kept");
    let guard = lock(&name).external(true).backend(etcd).acquire().unwrap();
    let key = etcd.key(&name, None).unwrap();
    let mut other = Raw::new(etcd, &name, None);
    // Wait for the lease to be refreshed past its first TTL (etcd's TTL left going up again
    // proves a refresh; the watch of a waiter would see the key go).
    let full = lockutils::lock_file_name(&name, None).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(TTL) + Duration::from_millis(500) {
        let err = other.acquire(Wait::Never).unwrap_err();
        assert!(err.is_acquire_failed(), "{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(guard.is_external_held().unwrap());
    assert_eq!(etcd.held(Some(&full)).unwrap().len(), 1);
    assert_eq!(etcd.waiting(&key), 0);
    drop(guard);
}

#[test]
fn an_unreachable_server_is_an_error_naming_the_endpoint() {
    // A port with nothing listening (bound, then closed): connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd3+http://127.0.0.1:{port}?connect_timeout=1");
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let started = Instant::now();
    let err = lock("down")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("cannot reach etcd"), "{text}");
}

/// A server that accepts connections and never answers (a frozen server behind a live
/// kernel): its port, and what stops it.
fn silent_server() -> (u16, impl FnOnce()) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut kept = Vec::new();
        while stop_rx.try_recv().is_err() {
            if let Ok((socket, _)) = listener.accept() {
                kept.push(socket);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (port, move || {
        stop_tx.send(()).unwrap();
        server.join().unwrap();
    })
}

#[test]
fn a_silent_server_is_an_error_within_the_answer_timeout() {
    let (port, stop) = silent_server();
    let url = format!("etcd3+http://127.0.0.1:{port}?answer_timeout=0.5");
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let started = Instant::now();
    let err = lock("silent")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    stop();
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let text = err.to_string();
    assert!(text.contains("did not answer within"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[test]
fn a_timed_acquire_on_a_silent_server_gives_up_after_its_timeout_and_the_grace() {
    let (port, stop) = silent_server();
    // The answer timeout (10 s) is far longer than the lock's timeout.
    let url = format!("etcd3+http://127.0.0.1:{port}");
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let started = Instant::now();
    let err = lock("silent-timed")
        .external(true)
        .backend(etcd)
        .timeout(Duration::from_millis(200))
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    stop();
    let bound = Duration::from_millis(200) + lockutils_etcd::TIMEOUT_GRACE;
    assert!(
        waited >= bound && waited < bound + Duration::from_secs(1),
        "{waited:?}"
    );
    let text = err.to_string();
    assert!(text.contains("did not answer within"), "{text}");
}

#[test]
fn a_server_that_is_not_etcd_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf);
        let _ = socket.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found");
    });
    let url = format!("etcd3+http://127.0.0.1:{port}");
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let err = lock("not-etcd")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap_err();
    server.join().unwrap();
    let text = err.to_string();
    assert!(text.contains("not JSON"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
async fn an_awaited_acquire_leaves_the_executor_free_while_it_waits() {
    let Some(etcd) = etcd() else { return };
    let name = unique("async");
    let holder = std::sync::Arc::new(parking_lot::Mutex::new(Raw::new(etcd, &name, None)));
    let key = holder.lock().key();
    holder.lock().acquire(Wait::Never).unwrap();
    let first = holder.lock().token().unwrap();
    let waiter = tokio::spawn({
        let name = name.clone();
        async move {
            let guard = lock(&name)
                .external(true)
                .backend(etcd)
                .acquire_async()
                .await
                .unwrap();
            guard.fencing_token().unwrap()
        }
    });
    // This one-thread executor keeps running other tasks while the waiter waits.
    while etcd.waiting(&key) == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let releaser = holder.clone();
    tokio::task::spawn_blocking(move || releaser.lock().release().unwrap())
        .await
        .unwrap();
    let token = tokio::time::timeout(child::PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(token > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
async fn a_dropped_awaited_acquire_takes_nothing() {
    let Some(etcd) = etcd() else { return };
    let name = unique("async-drop");
    let mut holder = Raw::new(etcd, &name, None);
    let key = holder.key();
    holder.acquire(Wait::Never).unwrap();
    {
        let pending = lock(&name).external(true).backend(etcd).acquire_async();
        tokio::pin!(pending);
        tokio::select! {
            _ = &mut pending => panic!("acquired a held lock"),
            () = async {
                while etcd.waiting(&key) == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            } => {}
        }
    }
    // Dropped: the acquire stops waiting, and the lock stays free once the holder lets go.
    tokio::task::block_in_place(|| {
        wait_until("the dropped acquire stops", || etcd.waiting(&key) == 0);
        holder.release().unwrap();
        let mut third = Raw::new(etcd, &name, None);
        third.acquire(Wait::Never).unwrap();
        third.release().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
async fn awaited_timeouts_and_tries() {
    let Some(etcd) = etcd() else { return };
    let name = unique("async-timeout");
    let mut holder = Raw::new(etcd, &name, None);
    tokio::task::block_in_place(|| holder.acquire(Wait::Never).unwrap());
    let err = lock(&name)
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire_async()
        .await
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    let started = Instant::now();
    let err = lock(&name)
        .external(true)
        .backend(etcd)
        .timeout(Duration::from_millis(200))
        .acquire_async()
        .await
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    tokio::task::block_in_place(|| holder.release().unwrap());
    let guard = lock(&name)
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire_async()
        .await
        .unwrap();
    assert!(guard.fencing_token().is_some());
}
