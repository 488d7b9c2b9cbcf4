//! Garbage-collected maps from lock names to locks, behind [`Semaphores`](crate::Semaphores)
//! and [`FairLocks`](crate::FairLocks).
//!
//! # Design
//! - The map is split into [`SHARDS`] shards, each behind its own mutex and on its own cache
//!   line, so threads using different names rarely meet on one mutex.
//! - A name is hashed once, with [`NameHasher`]: a keyed multiply-fold hash (the construction
//!   of wyhash and foldhash) whose 128-bit key is drawn at random per registry, so that names
//!   cannot be chosen offline to pile into one shard. It costs a few nanoseconds where SipHash
//!   costs about fifteen, which matters on a path whose whole budget is sixty. That hash picks
//!   the shard and is the map key; names whose hashes collide share a bucket and are told
//!   apart by comparing names.
//! - An entry is an `Arc`. Handles are clones of it, and are only ever cloned under the
//!   shard's mutex. An entry is idle when, under that mutex, its strong count is 1 *and* its
//!   lock is free: then nobody holds it, waits on it or keeps a handle, and nobody can get one
//!   without the mutex.
//! - The uncontended paths of the process-wide registries (semaphores and fair locks) take no
//!   reference count
//!   ([`Registry::take`]): it takes the lock while holding the shard's mutex and keeps a
//!   [`Pinned`] pointer to the entry. The entry cannot be swept while its lock is held.
//!   [`Pinned::release`] makes the release the holder's last touch of the entry: a release
//!   that has to go through the queue (waiters present) first takes a reference count,
//!   while the lock still pins the entry. That saves two atomic read-modify-writes, a third
//!   of the cost of `lock(name)`. It is only sound for locks whose every release goes
//!   through a guard that took the permit: releasing a fair lock's level by hand
//!   (`release_write`) is `unsafe`, and excluded for the levels guards stand for.
//! - Releasing a lock does not touch the map (the uncontended path must not insert and remove
//!   on every use). Idle entries are swept instead: when a shard has grown to twice what it
//!   held after its last sweep, and whenever the registry's length is asked for. Memory thus
//!   stays proportional to the names in use, and `len()` counts exactly those.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

/// Number of shards per registry (a power of two).
const SHARDS: usize = 64;
/// A shard is swept no more often than once per this many insertions.
const MIN_SWEEP: usize = 32;

/// Locks a registry can hold. (Public only so that [`Named`] may name it in its bound; the
/// module is private, so nothing outside the crate can implement or use it.)
pub trait Create {
    /// What the registry keeps beside the lock for each name, for the layers above it (the
    /// lock layer keeps a name's external-lock state there). The registry never looks
    /// inside.
    type Extra: Default + Send + Sync;

    /// The lock for a name seen for the first time.
    fn create(name: &Arc<str>) -> Self;

    /// Whether the lock is neither held nor waited on, exactly as [`create`](Self::create)
    /// made it. Read under the shard's mutex; a `true` must be final unless the lock is taken
    /// through the registry again.
    fn is_free(&self) -> bool;
}

/// A shared handle to the lock a registry holds for one name.
///
/// The entry stays in its registry, and keeps its state, while any handle (or a guard or a
/// waiter made from one) exists. Cloning a handle is cheap. It dereferences to the lock.
pub struct Named<T: Create> {
    entry: Arc<Entry<T>>,
}

struct Entry<T: Create> {
    name: Arc<str>,
    value: T,
    /// What the layers above keep for this name, as long as the entry.
    extra: T::Extra,
}

impl<T: Create> Named<T> {
    /// The name this lock was looked up by.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// What the layers above keep for this name.
    pub(crate) fn extra(&self) -> &T::Extra {
        &self.entry.extra
    }

    /// The entry's address: identifies the lock while this handle lives.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.entry) as usize
    }

    /// Whether two handles refer to the same lock.
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        Arc::ptr_eq(&this.entry, &other.entry)
    }
}

impl<T: Create> Clone for Named<T> {
    fn clone(&self) -> Self {
        Self {
            entry: self.entry.clone(),
        }
    }
}

impl<T: Create> Deref for Named<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T: Create + fmt::Debug> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named")
            .field("name", &self.name())
            .field("lock", &self.entry.value)
            .finish()
    }
}

/// Hashes lock names with a per-registry random key.
struct NameHasher {
    k0: u64,
    k1: u64,
}

/// The high and low halves of the full product, folded together.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The 1 to 7 bytes of `tail` in one word, read without a byte copy (a `memcpy` call would
/// cost as much as the rest of the hash). Overlapping reads cover every byte, so for a given
/// length (which the hash also takes in) distinct tails give distinct words.
#[inline]
fn tail_word(tail: &[u8]) -> u64 {
    let n = tail.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let lo = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(tail[n - 4..].try_into().expect("4 bytes"));
        u64::from(lo) | (u64::from(hi) << 32)
    } else {
        u64::from(tail[0]) | (u64::from(tail[n / 2]) << 8) | (u64::from(tail[n - 1]) << 16)
    }
}

/// `a == b` for names, inlined for the short names locks usually have: a `memcmp` call
/// costs more than comparing one or two overlapping words.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    match n {
        // Two overlapping words cover all of 8 to 16 bytes.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

impl NameHasher {
    fn random() -> Self {
        // std's RandomState is seeded from the OS; two of its outputs make a 128-bit key.
        let state = RandomState::new();
        Self {
            k0: state.hash_one(0x243f_6a88_85a3_08d3_u64),
            k1: state.hash_one(0x1319_8a2e_0370_7344_u64) | 1,
        }
    }

    #[inline]
    fn hash(&self, name: &str) -> u64 {
        const M: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes = name.as_bytes();
        let mut h = self.k0 ^ (bytes.len() as u64).wrapping_mul(M);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
            h = fold_mul(h ^ word, self.k1);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            h = fold_mul(h ^ tail_word(tail), self.k1 ^ M);
        }
        fold_mul(h, self.k1.rotate_left(32) ^ M)
    }
}

/// The map key is already a hash: hash it no further.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed");
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

enum Bucket<T: Create> {
    One(Arc<Entry<T>>),
    /// Distinct names whose 64-bit hashes are equal.
    Many(Vec<Arc<Entry<T>>>),
}

fn is_idle<T: Create>(entry: &Arc<Entry<T>>) -> bool {
    Arc::strong_count(entry) == 1 && entry.value.is_free()
}

/// A lock taken from a process-wide registry, held without a reference count.
///
/// Valid for as long as its lock stays held: the registry only drops entries whose lock is
/// free. The lock must be released only through [`release`](Self::release), and only the
/// permit this `Pinned` stands for: nothing else may free that permit.
pub(crate) struct Pinned<T: Create + 'static> {
    /// `Arc::as_ptr` of the entry.
    entry: NonNull<Entry<T>>,
}

impl<T: Create> Pinned<T> {
    fn entry(&self) -> &Entry<T> {
        // SAFETY: the lock is held (the type's contract), so the entry has not been swept.
        unsafe { self.entry.as_ref() }
    }

    /// Releases the lock: `fast` either releases it as its very last touch of the lock and
    /// returns `true`, or does nothing and returns `false`; then `slow` releases it while a
    /// reference count taken beforehand keeps the entry alive.
    pub(crate) fn release(self, fast: impl FnOnce(&T) -> bool, slow: impl FnOnce(&T)) {
        if fast(&self.entry().value) {
            return;
        }
        let ptr = self.entry.as_ptr().cast_const();
        // SAFETY: `ptr` came from `Arc::as_ptr`, and the lock is still held (`fast` did
        // nothing), so the entry is not swept and its strong count is at least the map's 1.
        let entry = unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        };
        slow(&entry.value);
    }
}

/// A registry's lock reached either way: pinned (by [`Registry::take`], which took the lock)
/// or through a counted handle (the caller takes the lock with it, or already has).
pub(crate) enum Taken<T: Create + 'static> {
    /// The lock is held and pins the entry.
    Pinned(Pinned<T>),
    /// A counted handle keeps the entry.
    Handle(Named<T>),
    /// A handle kept forever (in a `static`) keeps the entry.
    Static(&'static Named<T>),
}

impl<T: Create> Taken<T> {
    fn entry(&self) -> &Entry<T> {
        match self {
            Taken::Pinned(pinned) => pinned.entry(),
            Taken::Handle(handle) => &handle.entry,
            Taken::Static(handle) => &handle.entry,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.entry().name
    }

    /// What the layers above keep for this name.
    pub(crate) fn extra(&self) -> &T::Extra {
        &self.entry().extra
    }
}

impl<T: Create> Deref for Taken<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry().value
    }
}

struct Shard<T: Create> {
    buckets: HashMap<u64, Bucket<T>, BuildHasherDefault<PassThrough>>,
    /// Entries in `buckets`, collisions included.
    entries: usize,
    /// Sweep when `entries` reaches this.
    sweep_at: usize,
}

impl<T: Create> Shard<T> {
    #[inline]
    fn find(&self, hash: u64, name: &str) -> Option<&Arc<Entry<T>>> {
        match self.buckets.get(&hash)? {
            Bucket::One(entry) => same_name(&entry.name, name).then_some(entry),
            Bucket::Many(entries) => entries.iter().find(|e| same_name(&e.name, name)),
        }
    }

    /// Calls `f` with the entry for `name`, created if missing.
    #[inline]
    fn with_entry<R>(&mut self, hash: u64, name: &str, f: impl FnOnce(&Arc<Entry<T>>) -> R) -> R {
        if let Some(entry) = self.find(hash, name) {
            return f(entry);
        }
        f(self.create(hash, name))
    }

    #[cold]
    fn create(&mut self, hash: u64, name: &str) -> &Arc<Entry<T>> {
        if self.entries >= self.sweep_at {
            self.sweep();
        }
        let name: Arc<str> = Arc::from(name);
        let entry = Arc::new(Entry {
            value: T::create(&name),
            name,
            extra: T::Extra::default(),
        });
        self.insert(hash, entry)
    }

    fn insert(&mut self, hash: u64, entry: Arc<Entry<T>>) -> &Arc<Entry<T>> {
        self.entries += 1;
        let bucket = match self.buckets.remove(&hash) {
            None => Bucket::One(entry),
            Some(Bucket::One(first)) => Bucket::Many(vec![first, entry]),
            Some(Bucket::Many(mut entries)) => {
                entries.push(entry);
                Bucket::Many(entries)
            }
        };
        match self.buckets.entry(hash).insert_entry(bucket).into_mut() {
            Bucket::One(entry) => entry,
            Bucket::Many(entries) => entries.last().expect("a Many bucket is never empty"),
        }
    }

    /// Drops idle entries and gives back memory the map no longer needs.
    fn sweep(&mut self) {
        self.buckets.retain(|_, bucket| match bucket {
            Bucket::One(entry) => !is_idle(entry),
            Bucket::Many(entries) => {
                entries.retain(|e| !is_idle(e));
                !entries.is_empty()
            }
        });
        self.entries = self
            .buckets
            .values()
            .map(|b| match b {
                Bucket::One(_) => 1,
                Bucket::Many(entries) => entries.len(),
            })
            .sum();
        self.sweep_at = (self.entries * 2).max(MIN_SWEEP);
        if self.buckets.capacity() > 4 * self.buckets.len() + 2 * MIN_SWEEP {
            self.buckets.shrink_to(self.buckets.len() * 2);
        }
    }
}

/// Pads a shard to its own cache lines so that two threads on two shards do not share one.
#[repr(align(128))]
struct Padded<T: Create>(Mutex<Shard<T>>);

/// A sharded, garbage-collected map from names to `T`.
pub(crate) struct Registry<T: Create> {
    hasher: NameHasher,
    shards: Box<[Padded<T>]>,
}

impl<T: Create> Registry<T> {
    pub(crate) fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    buckets: HashMap::default(),
                    entries: 0,
                    sweep_at: MIN_SWEEP,
                }))
            })
            .collect();
        Self {
            hasher: NameHasher::random(),
            shards,
        }
    }

    /// The handle for `name`, creating its entry on first use.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Named<T> {
        let hash = self.hasher.hash(name);
        let mut shard = self.shard(hash).lock();
        shard.with_entry(hash, name, |entry| Named {
            entry: entry.clone(),
        })
    }

    /// Looks `name` up and calls `try_take` on its lock under the shard's mutex. If that took
    /// the lock, the entry comes back [`Pinned`] with no reference count taken; otherwise
    /// (`Err`) a handle to wait with. Only for registries that live forever, which pins rely on.
    #[inline]
    pub(crate) fn take(
        &'static self,
        name: &str,
        try_take: impl FnOnce(&T) -> bool,
    ) -> Result<Pinned<T>, Named<T>> {
        let hash = self.hasher.hash(name);
        let mut shard = self.shard(hash).lock();
        shard.with_entry(hash, name, |entry| {
            if try_take(&entry.value) {
                Ok(Pinned {
                    entry: NonNull::from(&**entry),
                })
            } else {
                Err(Named {
                    entry: entry.clone(),
                })
            }
        })
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<T>> {
        // The map uses the low bits (bucket index) and the top seven (control bytes) of the
        // hash; the shard comes from bits in between, so it does not bias either.
        &self.shards[(hash >> 48) as usize % SHARDS].0
    }

    /// Calls `f` with what the layers above keep for every name (one shard locked at a time;
    /// `f` must not wait for a name's lock, only try it).
    pub(crate) fn for_each_extra(&self, f: &mut impl FnMut(&T::Extra)) {
        for shard in &self.shards {
            let shard = shard.0.lock();
            for bucket in shard.buckets.values() {
                match bucket {
                    Bucket::One(entry) => f(&entry.extra),
                    Bucket::Many(entries) => entries.iter().for_each(|e| f(&e.extra)),
                }
            }
        }
    }

    /// Number of names in use (held, waited on, or with a live handle). Sweeps idle entries.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.0.lock();
                shard.sweep();
                shard.entries
            })
            .sum()
    }

    /// Map slots allocated across all shards (for memory tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().buckets.capacity())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(Arc<str>);

    impl Create for Probe {
        type Extra = ();
        fn create(name: &Arc<str>) -> Self {
            Probe(name.clone())
        }

        fn is_free(&self) -> bool {
            true
        }
    }

    #[test]
    fn same_name_same_entry_and_idle_entries_go() {
        let registry = Registry::<Probe>::new();
        let a = registry.get("a");
        let a2 = registry.get("a");
        let b = registry.get("b");
        assert!(Named::ptr_eq(&a, &a2));
        assert!(!Named::ptr_eq(&a, &b));
        assert_eq!(&*a.0, "a");
        assert_eq!(a.name(), "a");
        assert_eq!(registry.len(), 2);
        drop(a);
        assert_eq!(registry.len(), 2, "a2 still holds the entry");
        drop((a2, b));
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn name_hash_spreads_similar_names_over_shards_and_bits() {
        let hasher = NameHasher::random();
        let mut shards = [0usize; SHARDS];
        let mut ones = [0usize; 64];
        let n = 64_000;
        for i in 0..n {
            let h = hasher.hash(&format!("instance-{i}"));
            shards[(h >> 48) as usize % SHARDS] += 1;
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += ((h >> bit) & 1) as usize;
            }
        }
        // 1000 expected per shard; a poor spread would leave some far off.
        assert!(
            shards.iter().all(|&c| (700..1300).contains(&c)),
            "{shards:?}"
        );
        assert!(
            ones.iter()
                .all(|&c| (n * 45 / 100..n * 55 / 100).contains(&c)),
            "{ones:?}"
        );
        assert_ne!(
            hasher.hash("a"),
            hasher.hash("a\0"),
            "length is part of the hash"
        );
        assert_ne!(
            hasher.hash(""),
            NameHasher::random().hash(""),
            "keys are random"
        );
    }

    #[test]
    fn names_compare_equal_exactly_when_their_bytes_do() {
        let base: Vec<u8> = (b'a'..=b'z').collect();
        for n in 0..=24 {
            let a = std::str::from_utf8(&base[..n]).unwrap();
            assert!(same_name(a, a), "{a:?}");
            // A change at any position, and any other length, is seen.
            for at in 0..n {
                let mut other = base[..n].to_vec();
                other[at] = b'_';
                assert!(
                    !same_name(a, std::str::from_utf8(&other).unwrap()),
                    "{a:?} at {at}"
                );
            }
            if n > 0 {
                assert!(!same_name(a, &a[..n - 1]));
            }
        }
    }

    #[test]
    fn tail_words_differ_for_different_tails_of_one_length() {
        for n in 1..8 {
            let mut seen = std::collections::HashSet::new();
            // Every tail with one byte changed from the base, and the base itself.
            let base = [7u8; 7];
            assert!(seen.insert(tail_word(&base[..n])));
            for at in 0..n {
                for v in [0u8, 1, 255] {
                    let mut t = base;
                    t[at] = v;
                    assert!(seen.insert(tail_word(&t[..n])), "n {n} at {at} v {v}");
                }
            }
        }
    }

    #[test]
    fn colliding_hashes_keep_names_apart() {
        let mut shard = Shard::<Probe> {
            buckets: HashMap::default(),
            entries: 0,
            sweep_at: MIN_SWEEP,
        };
        let entry = |n: &str| {
            let name: Arc<str> = Arc::from(n);
            Arc::new(Entry {
                value: Probe(name.clone()),
                name,
                extra: (),
            })
        };
        let (x, y, z) = (entry("x"), entry("y"), entry("z"));
        for e in [&x, &y, &z] {
            shard.insert(7, e.clone());
        }
        assert!(Arc::ptr_eq(shard.find(7, "y").unwrap(), &y));
        assert!(Arc::ptr_eq(shard.find(7, "z").unwrap(), &z));
        assert!(shard.find(7, "w").is_none());
        assert!(shard.find(8, "x").is_none());
        drop(y);
        shard.sweep();
        assert_eq!(shard.entries, 2);
        assert!(shard.find(7, "y").is_none());
        assert!(Arc::ptr_eq(shard.find(7, "x").unwrap(), &x));
    }

    #[test]
    fn a_million_names_leave_nothing_behind() {
        let registry = Registry::<Probe>::new();
        let keep = registry.get("kept");
        for i in 0..1_000_000u32 {
            let handle = registry.get(&format!("name-{i}"));
            assert_eq!(handle.name().len(), format!("name-{i}").len());
        }
        // Sweeps ran as shards grew: the map never held more than a few idle names per shard.
        assert!(
            registry.capacity() < SHARDS * 8 * MIN_SWEEP,
            "capacity {}",
            registry.capacity()
        );
        assert_eq!(registry.len(), 1);
        drop(keep);
        assert_eq!(registry.len(), 0);
    }
}
