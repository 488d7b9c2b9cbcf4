//! etcd stopped, restarted and frozen under held and awaited locks, and leases that must not
//! leak. These tests stop the shared test server, so they live in a test binary of their own
//! (cargo runs test binaries one after another) and run one at a time.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockutils::{Wait, lock};
use lockutils_etcd::EtcdBackend;
use parking_lot::Mutex;
use support::child;
use support::{Raw, ctl, endpoint, unique, wait_until};

/// One test at a time: each stops or counts on the whole server.
static SERIAL: Mutex<()> = Mutex::new(());

fn backend(options: &str) -> Option<&'static EtcdBackend> {
    let base = support::url()?;
    let base = base.split('?').next().unwrap().to_owned();
    Some(lockutils_etcd::backend(&format!("{base}?{options}")).unwrap())
}

/// The ids of the leases the server knows now.
fn leases() -> std::collections::BTreeSet<String> {
    let text = support::post("v3/lease/leases", "{}");
    text.split("\"ID\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The leases of `now` that were not there `before`.
fn new_leases(
    before: &std::collections::BTreeSet<String>,
    now: &std::collections::BTreeSet<String>,
) -> usize {
    now.difference(before).count()
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_lock_held_across_an_etcd_restart_stays_held() {
    let _serial = SERIAL.lock();
    let Some(etcd) = backend("lock_timeout=5") else {
        return;
    };
    let name = unique("restart");
    let guard = lock(&name).external(true).backend(etcd).acquire().unwrap();
    ctl("restart");
    // etcd keeps (and extends) leases across a restart; the keep-alive goes on.
    assert!(guard.is_external_held().unwrap());
    let mut other = Raw::new(etcd, &name, None);
    assert!(other.acquire(Wait::Never).unwrap_err().is_acquire_failed());
    drop(guard);
    other.acquire(Wait::Never).unwrap();
    other.release().unwrap();
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_lock_whose_server_stays_away_past_the_ttl_is_lost() {
    let _serial = SERIAL.lock();
    let Some(etcd) = backend("lock_timeout=2&answer_timeout=1&connect_timeout=1") else {
        return;
    };
    let name = unique("gone");
    let mut held = Raw::new(etcd, &name, None);
    held.acquire(Wait::Never).unwrap();
    ctl("stop");
    // Never "held" while the server is away: unknown (an error) until the TTL has passed
    // since the last refresh, then lost.
    wait_until("the lock counted lost", || match held.is_held() {
        Ok(true) => panic!("held while etcd is stopped"),
        Ok(false) => true,
        Err(e) => {
            assert!(e.to_string().contains("cannot reach etcd"), "{e}");
            false
        }
    });
    ctl("start");
    assert!(!held.is_held().unwrap());
    let err = held.release().unwrap_err().to_string();
    assert!(err.contains("lost before its release"), "{err}");
    // Its lease revoked on release: free at once.
    let mut next = Raw::new(etcd, &name, None);
    next.acquire(Wait::Never).unwrap();
    next.release().unwrap();
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn a_waiter_fails_when_etcd_stops_or_freezes() {
    let _serial = SERIAL.lock();
    let Some(etcd) = backend("lock_timeout=3&answer_timeout=1&connect_timeout=1") else {
        return;
    };
    for (stop, resume) in [("stop", "start"), ("pause", "resume")] {
        let name = unique(stop);
        let mut holder = Raw::new(etcd, &name, None);
        holder.acquire(Wait::Never).unwrap();
        let key = holder.key();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let name = name.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let err = lock(&name)
                    .external(true)
                    .backend(etcd)
                    .acquire()
                    .unwrap_err();
                tx.send(()).unwrap();
                (err, started.elapsed())
            })
        };
        wait_until("the waiter watching the key", || etcd.waiting(&key) == 1);
        let stopped = Instant::now();
        ctl(stop);
        rx.recv_timeout(child::PATIENCE)
            .expect("the waiter gives up");
        let failed_after = stopped.elapsed();
        let (err, _) = waiter.join().unwrap();
        ctl(resume);
        let text = err.to_string();
        assert!(text.contains(&endpoint()), "{text}");
        eprintln!("{stop}: waiter failed after {failed_after:?}: {text}");
        // A stopped server ends the watch at once; a frozen one is noticed by the lease
        // refresh (every TTL/3) not answering within the answer timeout.
        assert!(failed_after < Duration::from_secs(4), "{failed_after:?}");
        // Resumed: the holder still holds (a restart keeps leases), and lets go.
        let _ = holder.release();
        wait_until("the lock free again", || {
            let mut probe = Raw::new(etcd, &name, None);
            probe.acquire(Wait::Never).is_ok() && probe.release().is_ok()
        });
    }
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn no_lease_outlives_its_acquire() {
    let _serial = SERIAL.lock();
    let Some(etcd) = backend("lock_timeout=30") else {
        return;
    };
    // Leases of earlier tests (killed holders, tooz) may run out meanwhile: only new ones
    // count.
    let before = leases();
    let name = unique("leases");
    let mut holder = Raw::new(etcd, &name, None);
    holder.acquire(Wait::Never).unwrap();
    assert_eq!(new_leases(&before, &leases()), 1);
    // A failed try, a timed-out wait, and a waiter through several handoffs.
    assert!(
        lock(&name)
            .external(true)
            .backend(etcd)
            .blocking(false)
            .acquire()
            .is_err()
    );
    assert!(
        lock(&name)
            .external(true)
            .backend(etcd)
            .timeout(Duration::from_millis(100))
            .acquire()
            .is_err()
    );
    let key = holder.key();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            drop(lock(&name).external(true).backend(etcd).acquire().unwrap());
        })
    };
    wait_until("the waiter watching", || etcd.waiting(&key) == 1);
    for _ in 0..3 {
        // Someone else takes it between two tries of the waiter: it waits again, on the
        // same lease.
        holder.release().unwrap();
        let _ = holder.acquire(Wait::Forever);
        if waiter.is_finished() {
            break;
        }
    }
    holder.release().unwrap();
    waiter.join().unwrap();
    // Revocations of given-up leases run in the background: wait for them.
    wait_until("every lease of these acquires revoked", || {
        new_leases(&before, &leases()) == 0
    });
}
