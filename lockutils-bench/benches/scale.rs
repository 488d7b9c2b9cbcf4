//! Scale: a million distinct names, each locked and released once.
//!
//! - criterion: the time per distinct name, beside the same loop that formats the names but
//!   locks one name (the difference is the registry entry made and swept per name);
//! - a fresh child process locks 1,000,000 names through the global registry and records
//!   the time, its peak resident set size, and the registry's size after (it must be 0).
//!
//! `cargo bench -p lockutils-bench --bench scale`

use std::fmt::Write as _;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use lockutils::{Semaphores, lock};
use lockutils_bench::{json, peak_rss, record};

const ROLE_ENV: &str = "LOCKUTILS_BENCH_CHILD";
const NAMES: u64 = 1_000_000;

/// Locks and releases `count` names `instance-{first}`, `instance-{first + 1}`, ...
fn lock_names(first: u64, count: u64, distinct: bool) {
    let mut name = String::with_capacity(24);
    for i in first..first + count {
        name.clear();
        write!(name, "instance-{}", if distinct { i } else { 0 }).unwrap();
        drop(lock(black_box(&name)).do_log(false).acquire().unwrap());
    }
}

fn names(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_name_formatted", |b| {
        b.iter_custom(|iters| {
            let began = Instant::now();
            lock_names(0, iters, false);
            began.elapsed()
        })
    });
    // Names never repeat across samples, so every lock makes a new registry entry.
    let mut next = 1_000_000_000;
    g.bench_function("distinct_names", |b| {
        b.iter_custom(|iters| {
            let began = Instant::now();
            lock_names(next, iters, true);
            next += iters;
            began.elapsed()
        })
    });
    g.finish();
}

/// The child: a million names in a process that has done nothing else.
fn million() {
    let start_rss = peak_rss().unwrap();
    let began = Instant::now();
    lock_names(0, NAMES, true);
    let elapsed = began.elapsed();
    println!(
        "{} {} {start_rss} {}",
        elapsed.as_nanos(),
        Semaphores::global().len(),
        peak_rss().unwrap()
    );
}

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        million();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    names(&mut c);
    c.final_summary();

    let out = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, "million")
        .output()
        .unwrap();
    assert!(out.status.success(), "the child failed: {out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let figures: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let [elapsed_ns, registry_len_after, start_peak_rss, peak_rss] = figures[..] else {
        panic!("unexpected child output {line:?}");
    };
    record(
        "scale_1m_names",
        json!({
            "names": NAMES,
            "elapsed_ns": elapsed_ns,
            "registry_len_after": registry_len_after,
            "peak_rss_bytes_at_start": start_peak_rss,
            "peak_rss_bytes": peak_rss,
        }),
    )
    .unwrap();
}
