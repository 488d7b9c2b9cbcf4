//! Garbage-collected maps from lock names to locks, behind [`Semaphores`](crate::Semaphores)
//! and [`FairLocks`](crate::FairLocks).
//!
//! # Design
//! - The map is split into [`SHARDS`] shards, each behind its own mutex and on its own cache
//!   line, so threads using different names rarely meet on one mutex.
//! - A name is hashed once (SipHash with a per-registry random key, so names chosen by an
//!   attacker cannot pile into one shard); that hash picks the shard and is the map key.
//!   Names whose hashes collide share a bucket and are told apart by comparing names.
//! - An entry is an `Arc`. Handles are clones of it, and are only ever cloned under the
//!   shard's mutex, so an entry whose strong count is 1 under that mutex is idle: nobody
//!   holds it, waits on it or keeps a handle, and nobody can get one without the mutex.
//! - Releasing a lock does not touch the map (the uncontended path must not insert and remove
//!   on every use). Idle entries are swept instead: when a shard has grown to twice what it
//!   held after its last sweep, and whenever the registry's length is asked for. Memory thus
//!   stays proportional to the names in use, and `len()` counts exactly those.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;

/// Number of shards per registry (a power of two).
const SHARDS: usize = 64;
/// A shard is swept no more often than once per this many insertions.
const MIN_SWEEP: usize = 32;

/// Values a registry can create for a new name.
pub(crate) trait Create {
    /// The value for a name seen for the first time.
    fn create(name: &Arc<str>) -> Self;
}

/// A shared handle to the lock a registry holds for one name.
///
/// The entry stays in its registry, and keeps its state, while any handle (or a guard or a
/// waiter made from one) exists. Cloning a handle is cheap. It dereferences to the lock.
pub struct Named<T> {
    entry: Arc<Entry<T>>,
}

struct Entry<T> {
    name: Arc<str>,
    value: T,
}

impl<T> Named<T> {
    /// The name this lock was looked up by.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Whether two handles refer to the same lock.
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        Arc::ptr_eq(&this.entry, &other.entry)
    }
}

impl<T> Clone for Named<T> {
    fn clone(&self) -> Self {
        Self {
            entry: self.entry.clone(),
        }
    }
}

impl<T> Deref for Named<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Named")
            .field("name", &self.name())
            .field("lock", &self.entry.value)
            .finish()
    }
}

/// The map key is already a SipHash value: hash it no further.
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

enum Bucket<T> {
    One(Arc<Entry<T>>),
    /// Distinct names whose 64-bit hashes are equal.
    Many(Vec<Arc<Entry<T>>>),
}

fn is_idle<T>(entry: &Arc<Entry<T>>) -> bool {
    Arc::strong_count(entry) == 1
}

struct Shard<T> {
    buckets: HashMap<u64, Bucket<T>, BuildHasherDefault<PassThrough>>,
    /// Entries in `buckets`, collisions included.
    entries: usize,
    /// Sweep when `entries` reaches this.
    sweep_at: usize,
}

impl<T> Shard<T> {
    fn find(&self, hash: u64, name: &str) -> Option<&Arc<Entry<T>>> {
        match self.buckets.get(&hash)? {
            Bucket::One(entry) => (*entry.name == *name).then_some(entry),
            Bucket::Many(entries) => entries.iter().find(|e| *e.name == *name),
        }
    }

    fn insert(&mut self, hash: u64, entry: Arc<Entry<T>>) {
        match self.buckets.remove(&hash) {
            None => {
                self.buckets.insert(hash, Bucket::One(entry));
            }
            Some(Bucket::One(first)) => {
                self.buckets.insert(hash, Bucket::Many(vec![first, entry]));
            }
            Some(Bucket::Many(mut entries)) => {
                entries.push(entry);
                self.buckets.insert(hash, Bucket::Many(entries));
            }
        }
        self.entries += 1;
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
struct Padded<T>(Mutex<Shard<T>>);

/// A sharded, garbage-collected map from names to `T`.
pub(crate) struct Registry<T> {
    hasher: RandomState,
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
            hasher: RandomState::new(),
            shards,
        }
    }

    /// The handle for `name`, creating its entry on first use.
    pub(crate) fn get(&self, name: &str) -> Named<T> {
        let hash = self.hasher.hash_one(name);
        // The map uses the low bits (bucket index) and the top seven (control bytes) of the
        // hash; the shard comes from bits in between, so it does not bias either.
        let mut shard = self.shards[(hash >> 48) as usize % SHARDS].0.lock();
        if let Some(entry) = shard.find(hash, name) {
            return Named {
                entry: entry.clone(),
            };
        }
        if shard.entries >= shard.sweep_at {
            shard.sweep();
        }
        let name: Arc<str> = Arc::from(name);
        let entry = Arc::new(Entry {
            value: T::create(&name),
            name,
        });
        shard.insert(hash, entry.clone());
        Named { entry }
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
        fn create(name: &Arc<str>) -> Self {
            Probe(name.clone())
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
