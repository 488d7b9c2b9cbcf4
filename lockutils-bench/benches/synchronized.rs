//! `#[synchronized("literal")]` call overhead, beside the undecorated function and the
//! runtime's `lock()` around the same body, in one run; and the external variant.
//!
//! `cargo bench -p lockutils-bench --bench synchronized`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lockutils::{lock, synchronized};

#[inline(never)]
fn plain(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
#[synchronized("bench-literal")]
fn decorated(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
#[synchronized(format!("bench-{}", x % 2))]
fn decorated_dynamic(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
#[synchronized("bench-external", external = true)]
fn decorated_external(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
fn with_lock(x: u64) -> u64 {
    let _g = lock("bench-runtime").acquire().unwrap();
    black_box(x).wrapping_mul(3)
}

fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("synchronized");
    g.bench_function("undecorated", |b| b.iter(|| plain(black_box(7))));
    g.bench_function("literal_name", |b| b.iter(|| decorated(black_box(7))));
    g.bench_function("lock_builder", |b| b.iter(|| with_lock(black_box(7))));
    g.bench_function("format_name", |b| {
        b.iter(|| decorated_dynamic(black_box(7)))
    });
    // The lock directory comes from the defaults, as a service's configuration gives it.
    let dir = tempfile::tempdir().unwrap();
    lockutils::set_defaults(dir.path());
    g.bench_function("external_literal_name", |b| {
        b.iter(|| decorated_external(black_box(7)))
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
