//! lockutils-etcd and the real tooz (9.1.0, etcd3gw driver, from the project's virtualenv)
//! take the same locks on the same etcd: exclusion both ways, a shared counter, handoffs,
//! holders that die or stop refreshing their lease. Names are cinder's: tooz sees
//! `cinder-<volume>-delete_volume`, lockutils `lock("<volume>-delete_volume").prefix("cinder")`.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lockutils::{Error, Wait, lock, synchronized};
use support::child::{self, wait_for_stdin_close};
use support::{Raw, TTL, etcd, python, spawn, tooz, unique, wait_until};

fn play(role: &str, args: &[String]) -> i32 {
    lockutils_etcd::install();
    let arg = |i: usize| args[i].as_str();
    match role {
        "count" => {
            let path = arg(0).to_owned();
            let n: usize = arg(1).parse().unwrap();
            child::ready_then_go();
            for _ in 0..n {
                bump(&path).unwrap();
            }
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
            0
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn child() {
    child::main(play);
}

/// tooz's processes take `cinder-lockutils-tooz-counter`.
#[synchronized("lockutils-tooz-counter", prefix = "cinder", external = true)]
fn bump(path: &str) -> Result<(), Error> {
    child::increment_counter_file(path);
    Ok(())
}

/// A cinder-style volume id and the name tooz sees for its delete lock.
fn volume() -> (String, String) {
    let volume = unique("6f1c1b4a");
    let full = format!("cinder-{volume}-delete_volume");
    (format!("{volume}-delete_volume"), full)
}

#[test]
#[ignore = "needs etcd and tooz: scripts/test runs it (scripts/etcd, scripts/oslo-venv)"]
fn lockutils_and_tooz_exclude_each_other_both_ways() {
    let Some(etcd) = etcd() else { return };
    let Some(python) = python() else { return };
    let (name, full) = volume();
    let mut py = tooz(&python, &["heart"]);
    py.expect("ready");

    // lockutils holds: tooz's try fails; after the release it succeeds.
    let guard = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap();
    py.send(&format!("try {full}"));
    py.expect("busy");
    drop(guard);
    py.send(&format!("try {full}"));
    py.expect("acquired");

    // tooz holds: lockutils' try fails (and a timed wait gives up); after tooz's release it
    // succeeds.
    let err = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    let err = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .timeout(Duration::from_millis(200))
        .acquire()
        .unwrap_err();
    assert!(err.is_acquire_failed(), "{err}");
    py.send(&format!("release {full}"));
    py.expect("released True");
    let guard = lock(&name)
        .prefix("cinder")
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire()
        .unwrap();
    // And lockutils lists tooz's names as they are.
    assert_eq!(etcd.held(Some(&full)).unwrap()[0].name, full);
    drop(guard);
    assert_eq!(py.code(), 0);
}

#[test]
#[ignore = "needs etcd and tooz: scripts/test runs it (scripts/etcd, scripts/oslo-venv)"]
fn two_lockutils_and_two_tooz_processes_count_exactly() {
    let Some(_etcd) = etcd() else { return };
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counter");
    std::fs::write(&path, "0").unwrap();
    let path = path.to_str().unwrap();
    let n = 15;
    let mut rust: Vec<_> = (0..2)
        .map(|_| spawn("count", &[path, &n.to_string()]))
        .collect();
    let mut py: Vec<_> = (0..2).map(|_| tooz(&python, &["heart"])).collect();
    for c in rust.iter_mut().chain(py.iter_mut()) {
        c.expect("ready");
    }
    for c in &mut rust {
        c.send("go");
    }
    for c in &mut py {
        c.send(&format!("count cinder-lockutils-tooz-counter {path} {n}"));
    }
    for mut c in rust.into_iter().chain(py) {
        c.expect("done");
        assert_eq!(c.code(), 0);
    }
    assert_eq!(std::fs::read_to_string(path).unwrap(), (4 * n).to_string());
}

#[test]
#[ignore = "needs etcd and tooz: scripts/test runs it (scripts/etcd, scripts/oslo-venv)"]
fn a_lockutils_waiter_takes_the_lock_as_tooz_releases_it() {
    let Some(etcd) = etcd() else { return };
    let Some(python) = python() else { return };
    let (name, full) = volume();
    let mut py = tooz(&python, &["heart"]);
    py.expect("ready");
    py.send(&format!("try {full}"));
    py.expect("acquired");
    let key = etcd.key(&name, Some("cinder")).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let name = name.clone();
        std::thread::spawn(move || {
            let guard = lock(&name)
                .prefix("cinder")
                .external(true)
                .backend(etcd)
                .acquire()
                .unwrap();
            tx.send(Instant::now()).unwrap();
            drop(guard);
        })
    };
    wait_until("the waiter watching the key", || etcd.waiting(&key) == 1);
    assert!(rx.try_recv().is_err());
    let asked = Instant::now();
    py.send(&format!("release {full}"));
    py.expect("released True");
    let answered = Instant::now();
    let got = rx.recv_timeout(child::PATIENCE).unwrap();
    waiter.join().unwrap();
    // From the moment tooz reported its release: a few milliseconds (the watch); the bound is
    // generous for a loaded machine, and far below tooz's one-second polling.
    let after_release = got.saturating_duration_since(answered);
    eprintln!(
        "tooz release -> lockutils holder: {after_release:?} after tooz's answer, {:?} after asking",
        got - asked
    );
    assert!(
        after_release < Duration::from_millis(100),
        "{after_release:?}"
    );
    assert_eq!(py.code(), 0);
}

#[test]
#[ignore = "needs etcd and tooz: scripts/test runs it (scripts/etcd, scripts/oslo-venv)"]
fn tooz_takes_the_lock_of_a_killed_lockutils_holder_after_the_ttl() {
    let Some(_etcd) = etcd() else { return };
    let Some(python) = python() else { return };
    let (name, full) = volume();
    let mut py = tooz(&python, &["heart"]);
    py.expect("ready");
    let volume = name.trim_end_matches("-delete_volume").to_owned();
    let mut holder = spawn("hold", &[&format!("{volume}-delete_volume"), "cinder"]);
    holder.expect_prefixed("held ");
    holder.kill();
    let killed = Instant::now();
    py.send(&format!("try {full}"));
    py.expect("busy");
    py.send(&format!("acquire {full} 30"));
    py.expect("acquired");
    let freed = killed.elapsed();
    eprintln!("tooz got a SIGKILLed lockutils holder's lock after {freed:?}");
    // The TTL, plus up to one of tooz's one-second polls.
    assert!(freed <= Duration::from_secs(TTL + 2), "{freed:?}");
    py.send(&format!("release {full}"));
    py.expect("released True");
    assert_eq!(py.code(), 0);
}

#[test]
#[ignore = "needs etcd and tooz: scripts/test runs it (scripts/etcd, scripts/oslo-venv)"]
fn lockutils_takes_the_lock_of_a_tooz_holder_whose_heartbeat_stopped_after_the_ttl() {
    let Some(etcd) = etcd() else { return };
    let Some(python) = python() else { return };
    let (name, full) = volume();
    // No heartbeat: the lease of tooz's lock is never refreshed.
    let mut py = tooz(&python, &["noheart"]);
    py.expect("ready");
    py.send(&format!("try {full}"));
    py.expect("acquired");
    let taken = Instant::now();
    let mut raw = Raw::new(etcd, &name, Some("cinder"));
    assert!(raw.acquire(Wait::Never).unwrap_err().is_acquire_failed());
    raw.acquire(Wait::Forever).unwrap();
    let freed = taken.elapsed();
    eprintln!("lockutils got a silent tooz holder's lock after {freed:?}");
    assert!(freed <= Duration::from_secs(TTL + 1), "{freed:?}");
    // tooz's holder never noticed: its release fails quietly, and ours stands.
    py.send(&format!("release {full}"));
    py.expect("released False");
    assert!(raw.is_held().unwrap());
    raw.release().unwrap();
    assert_eq!(py.code(), 0);
}
