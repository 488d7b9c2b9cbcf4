//! The Send/Sync shape of every public lock and guard, pinned (the opposite, `LockGuard` and
//! `ReadGuard` not being `Send`, is pinned by `tests/ui/guards_not_send.rs`).

fn check_send<T: Send>() {}
fn check_sync<T: Sync>() {}
fn check_send_sync<T: Send + Sync>() {}

#[test]
fn bounds() {
    // Locks are shared between threads.
    check_send_sync::<lockutils::Semaphore>();
    check_send_sync::<lockutils::Semaphores>();
    check_send_sync::<lockutils::FairLocks>();
    check_send_sync::<lockutils::FairLock>();
    check_send_sync::<lockutils::NamedSemaphore>();
    check_send_sync::<lockutils::ReaderWriterLock>();
    check_send_sync::<lockutils::InterProcessLock>();
    check_send_sync::<lockutils::InterProcessReaderWriterLock>();
    check_send_sync::<lockutils::Error>();
    // Guards of awaited locks travel with their task.
    check_send::<lockutils::AsyncLockGuard>();
    check_send::<lockutils::AsyncReadGuard<'static>>();
    check_send::<lockutils::AsyncWriteGuard<'static>>();
    check_send::<lockutils::SemaphoreGuard<'static>>();
    // Sharing a guard by reference between threads is fine where its lock is.
    check_sync::<lockutils::SemaphoreGuard<'static>>();
    // The raw locks: a guard of a lock held per process (not per thread) may move.
    check_send_sync::<lockutils::ReadSide>();
    check_send_sync::<lockutils::WriteSide>();
    check_send::<lockutils::RawGuard<'static, lockutils::InterProcessLock>>();
    check_send::<lockutils::RawGuard<'static, lockutils::Semaphore>>();
    check_send::<lockutils::InterProcessGuard<'static>>();
}
