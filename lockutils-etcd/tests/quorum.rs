//! A cluster that loses its quorum (2 of 3 members stopped): waiters fail and held locks are
//! counted lost, within their bounds, with errors naming the endpoint; nothing hangs. The test
//! runs itself again beside a cluster of 3 (`scripts/etcd --members 3`).

mod support;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockutils::{Wait, lock};
use support::{Raw, child, ctl, endpoint, unique, wait_until};

const TEST: &str = "losing_the_quorum_fails_waiters_and_loses_held_locks_within_bounds";

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn losing_the_quorum_fails_waiters_and_loses_held_locks_within_bounds() {
    if std::env::var("LOCKUTILS_TEST_ETCD_MEMBERS").as_deref() == Ok("3") {
        return in_a_cluster_of_three();
    }
    // Under the one-member server of scripts/etcd (or none): start a cluster of 3 and run
    // this test there.
    let Some(_) = support::url() else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/etcd");
    let out = Command::new(script)
        .args(["--members", "3", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--include-ignored", "--nocapture"])
        .output()
        .unwrap();
    // The inner run's own report is not repeated (it would count this test twice), only what
    // it measured, or everything if it failed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        for line in stderr.lines().filter(|l| l.contains(" after ")) {
            eprintln!("{line}");
        }
    } else {
        panic!("{}\n{stdout}\n{stderr}", out.status);
    }
}

fn in_a_cluster_of_three() {
    let base = std::env::var(support::URL_ENV).unwrap();
    let ttl = Duration::from_secs(3);
    let url = format!("{base}?lock_timeout=3&answer_timeout=1&connect_timeout=1");
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let name = unique("quorum");
    let mut holder = Raw::new(etcd, &name, None);
    holder.acquire(Wait::Never).unwrap();
    let key = holder.key();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            let err = lock(&name)
                .external(true)
                .backend(etcd)
                .acquire()
                .unwrap_err();
            tx.send(()).unwrap();
            err
        })
    };
    wait_until("the waiter watching the key", || etcd.waiting(&key) == 1);

    ctl("stop 2");
    ctl("stop 3");
    let lost = Instant::now();

    // The waiter's lease refresh (every TTL/3) gets no answer within the answer timeout.
    rx.recv_timeout(child::PATIENCE)
        .expect("the waiter gives up");
    let waiter_failed = lost.elapsed();
    let err = waiter.join().unwrap().to_string();
    eprintln!("waiter failed after {waiter_failed:?}: {err}");
    assert!(err.contains(&endpoint()), "{err}");
    assert!(
        waiter_failed < ttl / 3 + Duration::from_secs(2),
        "{waiter_failed:?}"
    );

    // A new acquire is an error (not "busy"), within the answer timeout (and some).
    let started = Instant::now();
    let err = lock(&unique("quorum-new"))
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(!err.is_acquire_failed(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");

    // The holder is never told it holds; once a TTL has passed without a refresh, it is lost.
    wait_until("the held lock counted lost", || match holder.is_held() {
        Ok(true) => panic!("held without a quorum"),
        Ok(false) => true,
        Err(e) => {
            assert!(e.to_string().contains(&endpoint()), "{e}");
            false
        }
    });
    let counted_lost = lost.elapsed();
    eprintln!("held lock counted lost after {counted_lost:?}");
    assert!(
        counted_lost < ttl + Duration::from_secs(3),
        "{counted_lost:?}"
    );

    // The quorum back: the release says the lock was lost, and the lock is free again.
    ctl("start 2");
    let err = holder.release().unwrap_err().to_string();
    assert!(err.contains("lost"), "{err}");
    let mut next = Raw::new(etcd, &name, None);
    next.acquire(Wait::For(ttl * 3)).unwrap();
    next.release().unwrap();
}
