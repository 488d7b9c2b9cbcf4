//! etcd lock costs over loopback, beside the bare round trips, in one run:
//! - `put_delete_round_trip`: a bare `put` then `delete` of one key (two raft writes, two
//!   round trips): the floor;
//! - `lock_external_backend`: `lock(name).external(true)` on etcd, acquire + release (lease
//!   grant, tooz's transaction, lease revoke: three writes);
//! - `lock_external_by_url`: the same with the backend selected by configuration;
//! - `handoff_lockutils_to_lockutils`: a holder releases, a waiter blocked on the watch has
//!   the lock: the time from the release's start to the waiter holding it.
//!
//! With a Python that has tooz (`LOCKUTILS_OSLO_PYTHON=$(scripts/oslo-venv)`), it also prints
//! the same handoff between two tooz processes (`benches/tooz_handoff.py`: tooz polls), and
//! writes it to `$LOCKUTILS_BENCH_OUT/etcd_tooz_handoff.json` for the report of
//! `scripts/bench-compare`, which runs this benchmark beside `scripts/etcd`.
//!
//! Needs a server: `scripts/etcd -- cargo bench -p lockutils-etcd`.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use lockutils::{
    ExternalBackend, ExternalCache, ExternalTarget, LockConfig, Mode, Wait, configure, lock,
};

fn main() {
    let Ok(url) = std::env::var("LOCKUTILS_TEST_ETCD_URL") else {
        eprintln!("skipped: no etcd server; run `scripts/etcd -- cargo bench -p lockutils-etcd`");
        return;
    };
    lockutils_etcd::install();
    let etcd = lockutils_etcd::backend(&url).unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("etcd_uncontended");

    g.bench_function("put_delete_round_trip", |b| {
        b.iter(|| {
            etcd.put_delete(black_box(b"/lockutils-bench/floor"))
                .unwrap()
        })
    });

    g.bench_function("lock_external_backend", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-etcd"))
                    .external(true)
                    .backend(etcd)
                    .do_log(false)
                    .acquire()
                    .unwrap(),
            )
        })
    });

    configure(LockConfig {
        backend_url: Some(url.clone()),
        ..LockConfig::default()
    });
    g.bench_function("lock_external_by_url", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-etcd-url"))
                    .external(true)
                    .do_log(false)
                    .acquire()
                    .unwrap(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("etcd_handoff");
    g.sample_size(20);
    g.bench_function("handoff_lockutils_to_lockutils", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += handoff(etcd);
            }
            total
        })
    });
    g.finish();
    c.final_summary();

    if let Some(python) = std::env::var_os("LOCKUTILS_OSLO_PYTHON") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/tooz_handoff.py");
        // scripts/bench-compare's smoke run checks the pipeline, not the figure.
        let rounds = if std::env::var_os("LOCKUTILS_BENCH_SMOKE").is_some() {
            "2"
        } else {
            "10"
        };
        let mut command = std::process::Command::new(python);
        command.arg(script).arg(&url).arg(rounds);
        if let Some(out) = std::env::var_os("LOCKUTILS_BENCH_OUT") {
            command.arg(std::path::Path::new(&out).join("etcd_tooz_handoff.json"));
        }
        let status = command.status().unwrap();
        assert!(status.success(), "tooz handoff: {status}");
    }
}

/// One handoff: a holder (straight through the backend, in this thread) and a waiter
/// (`lock()`, another thread) on one name; the time from the release's start until the
/// waiter holds the lock.
fn handoff(etcd: &'static lockutils_etcd::EtcdBackend) -> Duration {
    let target = ExternalTarget {
        name: "bench-etcd-handoff",
        prefix: None,
        lock_path: None,
        delay: Duration::from_millis(10),
        mode: Mode::Exclusive,
        fair: false,
    };
    let mut cache = ExternalCache::default();
    etcd.acquire(&target, &mut cache, Wait::Never).unwrap();
    let key = etcd.key(target.name, None).unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let guard = lock("bench-etcd-handoff")
            .external(true)
            .backend(etcd)
            .do_log(false)
            .acquire()
            .unwrap();
        tx.send(Instant::now()).unwrap();
        drop(guard);
    });
    while etcd.waiting(&key) == 0 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let released = Instant::now();
    etcd.release(target.name, &mut cache).unwrap();
    let got = rx.recv().unwrap();
    waiter.join().unwrap();
    got - released
}
