//! PostgreSQL lock costs over loopback, beside the bare round trip, in one run:
//! - `select_1_round_trip`: `SELECT 1` on an open session (the floor: one round trip);
//! - `pg_lock_write_release`: the crate's own [`PgLock`]: lock, fencing token, unlock, on a
//!   pooled session (two round trips);
//! - `lock_external_backend`: `lock(name).external(true)` with the PostgreSQL backend
//!   (the in-process lock, then the same as above);
//! - `lock_external_by_url`: the same with the backend selected by `LOCKUTILS_BACKEND_URL`-style
//!   configuration, with no backend named at the lock site.
//!
//! Needs a server: `scripts/postgres -- cargo bench -p lockutils-postgres`.

use std::hint::black_box;

use criterion::Criterion;
use lockutils::{LockConfig, configure, lock};

fn main() {
    let Ok(url) = std::env::var("LOCKUTILS_TEST_PG_URL") else {
        eprintln!(
            "skipped: no PostgreSQL server; run `scripts/postgres -- cargo bench -p \
             lockutils-postgres`"
        );
        return;
    };
    lockutils_postgres::install();
    let db = lockutils_postgres::backend(&url).unwrap();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("postgres_uncontended");

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    g.bench_function("select_1_round_trip", |b| {
        b.iter(|| black_box(client.simple_query("SELECT 1").unwrap()))
    });

    let own = db.lock("bench-pg-own", None).unwrap();
    g.bench_function("pg_lock_write_release", |b| {
        b.iter(|| own.write().unwrap().release().unwrap())
    });

    g.bench_function("lock_external_backend", |b| {
        b.iter(|| {
            drop(
                lock(black_box("bench-pg"))
                    .external(true)
                    .backend(db)
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
                lock(black_box("bench-pg-url"))
                    .external(true)
                    .do_log(false)
                    .acquire()
                    .unwrap(),
            )
        })
    });
    g.finish();
    c.final_summary();
}
