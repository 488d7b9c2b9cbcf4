// The guards of thread-owned locks must stay on the thread that took them: the fair lock and
// the reader/writer lock are reentrant per thread, so a guard moved to another thread would
// let two threads in. These must not compile.

fn require_send<T: Send>(_: &T) {}

fn main() {
    let guard = lockutils::lock("x").acquire().unwrap();
    require_send(&guard);

    let rw = lockutils::ReaderWriterLock::new();
    let read = rw.read();
    require_send(&read);
}
