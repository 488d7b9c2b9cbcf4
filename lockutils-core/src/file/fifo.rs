//! First come, first served across processes on a lock file, with no daemon: a queue of
//! byte-range locks in a companion file (Linux's open-file-description locks).
//!
//! # Files
//! The companion of the lock file `DIR/F` is `DIR/.lockutils-fifo/F`: a path no oslo lock
//! name can produce (oslo replaces `/` in names, so its lock files are never in a
//! subdirectory). The directory is created with the lock directory mode, the file like a
//! lock file (`0666 & ~umask`); both are opened through their directory's descriptor,
//! without following links, and never inherited by child processes.
//!
//! Bytes `[0, 8)` hold the next ticket and `[8, 16)` the *floor* (little-endian); a write
//! lock on both is the *ticket lock*, held for a few system calls. From [`HEADER`] on,
//! [`SLOTS`] slots of [`SLOT`] bytes: ticket `t` uses slot `t % SLOTS`, stamped with `t` and
//! its state when it leaves. The floor is the ticket of the latest one to become first:
//! every ticket below it has left, so a walker never looks below it, and a slot is reused
//! only for a ticket whose predecessor in the slot is below it (else the enqueue waits:
//! [`Enqueue::Full`]). A queue nobody is in starts its tickets over.
//!
//! # The queue (a CLH queue lock made of byte-range locks)
//! - **Enqueue**, under the ticket lock: take ticket `t` (the next one), write-lock slot
//!   `t`, advance the next ticket.
//! - **Wait** for the predecessor `p = t - 1`: wait in the kernel for a lock on slot `p`.
//!   When it comes, `p` has left the queue. If it stamped the slot `(p, RELEASED)`, it held
//!   the lock and let it go: `t` is first. Otherwise (it gave up and stamped `ABANDONED`; or
//!   it died, waiting or holding, and stamped nothing, so the slot shows an older round's
//!   ticket or nothing), wait for `p`'s own predecessor instead. The walk back ends at a
//!   `RELEASED` stamp of the right ticket, at ticket 0, or [`SLOTS`] back.
//! - **Leave**: stamp the slot with the ticket and its state (`RELEASED` after holding the
//!   lock, `ABANDONED` after giving up), then unlock it: the successor wakes.
//!
//! The kernel drops a dead process's locks, so a holder or a waiter killed at any point
//! looks like one that gave up: the next waiter goes on at once, nothing stalls, nothing is
//! left to clean up.
//!
//! # Invariant
//! A ticket becomes first only when every earlier ticket has left the queue. (By induction:
//! the walk passes only slots that were let go, and stops at a `RELEASED` one, whose ticket
//! was first when it took the lock.) The first one then takes the lock file itself, as
//! oslo does, so processes that do not queue (oslo, non-fair lockutils users) still
//! exclude, and may come between two queued holders.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Dir, FileKind, fork_generation, lock_file_name_of};
use crate::error::Error;

/// The directory of the companion files, inside the lock directory.
pub(crate) const QUEUE_DIR: &str = ".lockutils-fifo";
/// Where the slots start: the ticket counter (and lock) comes first.
const HEADER: u64 = 64;
/// The size of a slot: its ticket, its state, padding.
const SLOT: u64 = 16;
/// The number of slots: a ring, reused as the queue's first moves on.
pub(crate) const SLOTS: u64 = 4096;

/// A slot whose ticket held the lock and let it go: its successor is first.
pub(crate) const RELEASED: u8 = 2;
/// A slot whose ticket gave up waiting (a timeout, a try, a cancelled task).
pub(crate) const ABANDONED: u8 = 3;

/// The ticket lock covers the header's next ticket and floor.
const TICKET_LOCK: u64 = 16;

/// The companion file of one lock file, open.
pub(crate) struct Queue {
    file: File,
    path: PathBuf,
    /// [`fork_generation`] when opened: a forked child never unlocks its parent's slots.
    generation: u64,
}

/// What an enqueue did.
#[derive(Debug)]
pub(crate) enum Enqueue {
    /// Took a ticket: the walk to the head starts here.
    Queued(Walk),
    /// The queue file was removed since it was opened: reopen it and enqueue there.
    Removed,
    /// Another process holds the ticket lock (only from [`Queue::try_enqueue`]).
    Busy,
    /// Every slot may still be needed ([`SLOTS`] tickets since the queue's first): try again
    /// once the queue has moved on.
    Full,
}

/// Where a waiter is in its walk back to the queue's head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk {
    ticket: u64,
    /// The earlier ticket it waits for to leave; `None` once first.
    waiting_for: Option<u64>,
    /// Whether, once first, it has raised the queue's floor to its ticket.
    first_noted: bool,
}

impl Walk {
    /// The ticket walking.
    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }
}

impl Queue {
    /// Opens (creating if needed) the companion of the lock file `lock_file`, named `name`
    /// in errors.
    pub(crate) fn open(name: &str, lock_file: &Path) -> Result<Queue, Error> {
        let dir = Dir::for_lock_file(name, lock_file)?;
        let file_name = lock_file_name_of(name, lock_file)?;
        let path = dir.path().join(QUEUE_DIR).join(file_name);
        let io_error = |what, e| Error::io(name, path.clone(), what, e);
        let sub = dir
            .open_subdir(OsStr::new(QUEUE_DIR), true)
            .map_err(|e| io_error("open the queue directory", e))?;
        let file = sub
            .open_data_file(file_name, true)
            .map_err(|e| io_error("open the queue file", e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error("inspect the queue file", e))?;
        if let Some(reason) = FileKind::of(&meta).refusal() {
            return Err(Error::UnsafeLockFile {
                name: name.to_owned(),
                path,
                reason,
            });
        }
        Ok(Queue {
            file,
            path,
            generation: fork_generation(),
        })
    }

    /// The companion file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this descriptor was opened by this process (not inherited through `fork`).
    pub(crate) fn is_own(&self) -> bool {
        self.generation == fork_generation()
    }

    /// Whether the companion file still has a name (was not removed since it was opened).
    pub(crate) fn is_linked(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.nlink() > 0)
    }

    /// Whether nobody (in any process) queues right now: no slot is locked, and nobody is
    /// taking a ticket (the ticket lock is free; a process waiting for it shows through
    /// the one holding it, and that one's slot is locked before the ticket lock is freed).
    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        self.probe(0, HEADER + SLOTS * SLOT)
    }

    /// Takes a ticket and its slot, waiting in the kernel for the ticket lock if another
    /// process holds it (for a few system calls).
    pub(crate) fn enqueue(&self) -> io::Result<Enqueue> {
        self.lock(0, TICKET_LOCK, true)?;
        self.enqueue_locked()
    }

    /// [`enqueue`](Self::enqueue) that does not wait for the ticket lock
    /// ([`Enqueue::Busy`]): for a task, which must not block its thread.
    pub(crate) fn try_enqueue(&self) -> io::Result<Enqueue> {
        if !self.try_lock_range(0, TICKET_LOCK)? {
            return Ok(Enqueue::Busy);
        }
        self.enqueue_locked()
    }

    /// The enqueue proper, holding the ticket lock, which it releases.
    fn enqueue_locked(&self) -> io::Result<Enqueue> {
        let result = self.take_ticket();
        let unlocked = self.unlock(0, TICKET_LOCK);
        let enqueued = result?;
        unlocked?;
        Ok(enqueued)
    }

    fn take_ticket(&self) -> io::Result<Enqueue> {
        if !self.is_linked()? {
            return Ok(Enqueue::Removed);
        }
        let mut header = [0u8; 16];
        let read = self.file.read_at(&mut header, 0)?;
        let word = |at: usize| {
            (read >= at + 8).then(|| u64::from_le_bytes(header[at..at + 8].try_into().expect("8")))
        };
        let mut ticket = word(0).unwrap_or(0);
        let floor = word(8).unwrap_or(0);
        // The slot of `ticket` last served `ticket - SLOTS`: reusable only once that ticket
        // is below the floor, which only a ticket that became first raises (so no walker
        // can still be waiting on that slot). Otherwise the ring is full of tickets that may
        // still be needed, live or given up.
        if ticket.checked_sub(SLOTS).is_some_and(|old| old >= floor) {
            if !self.probe(HEADER, SLOTS * SLOT)? {
                // Somebody still queues: one of them becomes first and raises the floor.
                return Ok(Enqueue::Full);
            }
            // Nobody queues (every live waiter holds its slot), so nobody walks either:
            // start the tickets over.
            self.file.write_all_at(&0u64.to_le_bytes(), 8)?;
            ticket = 0;
        }
        let at = slot_at(ticket);
        if !self.try_lock_range(at, SLOT)? {
            // Nobody probes a slot below the floor; should someone hold it all the same,
            // wait as for a full ring rather than hold the ticket lock.
            return Ok(Enqueue::Full);
        }
        // The slot keeps what its last owner wrote: a successor reads it only after this
        // ticket has left, when `leave` has stamped it (or not, if it died: then it is
        // taken as given up).
        if let Err(e) = self.file.write_all_at(&(ticket + 1).to_le_bytes(), 0) {
            let _ = self.unlock(at, SLOT);
            return Err(e);
        }
        Ok(Enqueue::Queued(Walk {
            ticket,
            waiting_for: ticket.checked_sub(1),
            first_noted: false,
        }))
    }

    /// Moves `walk` towards the head: with `block`, waits in the kernel until it is first;
    /// without, goes as far as it can now. Returns whether it is first.
    pub(crate) fn advance(&self, walk: &mut Walk, block: bool) -> io::Result<bool> {
        while let Some(earlier) = walk.waiting_for {
            if walk.ticket - earlier >= SLOTS
                || (earlier + 1 < walk.ticket && earlier < self.floor()?)
            {
                // A whole round back, or below the floor: gone, and every ticket before it.
                // (The floor is read only past the immediate predecessor, which cannot be
                // below it while this ticket waits; read after the probe that passed the
                // later ticket, it counts every head that came before.)
                walk.waiting_for = None;
                break;
            }
            let at = slot_at(earlier);
            // A read lock: granted once the slot's owner (write-locking it) has left; and,
            // unlike a write lock, never merged by the kernel with this waiter's own
            // (adjacent) slot lock, whose waiters a merge or split would wake for nothing.
            if block {
                self.fcntl(libc::F_OFD_SETLKW, libc::F_RDLCK, at, SLOT)?;
            } else if !self.try_read_range(at, SLOT)? {
                return Ok(false);
            }
            let mut slot = [0u8; SLOT as usize];
            let read = self.file.read_at(&mut slot, at);
            self.unlock(at, SLOT)?;
            let read = read?;
            let ticket = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
            walk.waiting_for = if read >= 9 && ticket == earlier && slot[8] == RELEASED {
                // Let go after holding: `earlier` is gone, and every ticket before it.
                None
            } else {
                // Gave up (stamped abandoned), or died waiting or holding (not stamped: the
                // slot still shows an older round's ticket, or nothing): wait for its own
                // predecessor instead.
                earlier.checked_sub(1)
            };
        }
        if !walk.first_noted {
            // First: every earlier ticket is gone. Their slots may be reused from now on.
            self.file.write_all_at(&walk.ticket.to_le_bytes(), 8)?;
            walk.first_noted = true;
        }
        Ok(true)
    }

    /// The floor: the ticket of the latest first of the queue. Every ticket below it is
    /// gone.
    fn floor(&self) -> io::Result<u64> {
        let mut floor = [0u8; 8];
        let read = self.file.read_at(&mut floor, 8)?;
        Ok(if read == 8 {
            u64::from_le_bytes(floor)
        } else {
            0
        })
    }

    /// Waits until `walk` is first, or until `deadline` (trying with growing pauses of up
    /// to `max_pause`: the kernel has no timed wait for a record lock). `false` at the
    /// deadline.
    pub(crate) fn advance_until(
        &self,
        walk: &mut Walk,
        deadline: Instant,
        max_pause: Duration,
    ) -> io::Result<bool> {
        let mut pause = Duration::from_micros(50);
        loop {
            if self.advance(walk, false)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(max_pause.max(pause));
        }
    }

    /// Leaves the queue: marks the slot of `ticket` with `state` ([`RELEASED`] or
    /// [`ABANDONED`]) and unlocks it, which wakes the successor. In a forked child (the
    /// slot is the parent's), does nothing.
    pub(crate) fn leave(&self, ticket: u64, state: u8) -> io::Result<()> {
        if !self.is_own() {
            return Ok(());
        }
        let at = slot_at(ticket);
        let mut stamp = [0u8; 9];
        stamp[..8].copy_from_slice(&ticket.to_le_bytes());
        stamp[8] = state;
        let marked = self.file.write_all_at(&stamp, at);
        // Unlocked even if the mark failed: a successor then takes the slot as given up,
        // and waits for the one before (never less safe).
        let unlocked = self.unlock(at, SLOT);
        marked.and(unlocked)
    }

    /// Removes the companion file, if nobody queues, while holding the ticket lock and
    /// every slot: `Ok(false)` (nothing removed) if somebody queues. `dir` is the queue
    /// directory; `file` the name in it.
    pub(crate) fn remove_if_idle(&self, dir: &Dir, file: &OsStr) -> io::Result<bool> {
        if !self.try_lock_range(0, HEADER + SLOTS * SLOT)? {
            return Ok(false);
        }
        let removed = match dir.identity_of(file) {
            Ok(Some(id)) if id == super::identity(&self.file.metadata()?) => {
                dir.unlink(file).map(|()| true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        let unlocked = self.unlock(0, HEADER + SLOTS * SLOT);
        let removed = removed?;
        unlocked?;
        Ok(removed)
    }

    /// Locks `[start, start + len)` for writing, waiting in the kernel if `wait`.
    fn lock(&self, start: u64, len: u64, wait: bool) -> io::Result<()> {
        let cmd = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        self.fcntl(cmd, libc::F_WRLCK, start, len).map(drop)
    }

    /// One try for a write lock on `[start, start + len)`; `false` if anyone holds a part.
    fn try_lock_range(&self, start: u64, len: u64) -> io::Result<bool> {
        match self.fcntl(libc::F_OFD_SETLK, libc::F_WRLCK, start, len) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One try for a read lock on `[start, start + len)`; `false` if anyone write-locks a
    /// part.
    fn try_read_range(&self, start: u64, len: u64) -> io::Result<bool> {
        match self.fcntl(libc::F_OFD_SETLK, libc::F_RDLCK, start, len) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a write lock on `[start, start + len)` could be taken now (nobody else holds
    /// a part), without taking it.
    fn probe(&self, start: u64, len: u64) -> io::Result<bool> {
        let lock = self.fcntl(libc::F_OFD_GETLK, libc::F_WRLCK, start, len)?;
        Ok(lock.l_type == libc::F_UNLCK as libc::c_short)
    }

    fn unlock(&self, start: u64, len: u64) -> io::Result<()> {
        self.fcntl(libc::F_OFD_SETLK, libc::F_UNLCK, start, len)
            .map(drop)
    }

    /// `fcntl(cmd)` with a lock of `kind` on `[start, start + len)`; retried on EINTR.
    fn fcntl(
        &self,
        cmd: libc::c_int,
        kind: libc::c_int,
        start: u64,
        len: u64,
    ) -> io::Result<libc::flock> {
        // SAFETY: `flock` is plain data; all-zero is a valid value (l_pid must be 0 for OFD
        // locks).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind as _;
        lock.l_whence = libc::SEEK_SET as _;
        lock.l_start = start as _;
        lock.l_len = len as _;
        loop {
            // SAFETY: a valid open descriptor and a valid, exclusively borrowed `flock`.
            let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut lock) };
            if rc != -1 {
                return Ok(lock);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Removes the companion of the lock file `file` of `lock_dir`, if it has one and nobody
/// queues on it (see [`Queue::remove_if_idle`]): what removing a lock file does.
/// `Ok(false)` if nothing was removed.
pub(crate) fn remove_queue_if_idle(lock_dir: &Dir, file: &OsStr) -> io::Result<bool> {
    let sub = match lock_dir.open_subdir(OsStr::new(QUEUE_DIR), false) {
        Ok(sub) => sub,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let file_handle = match sub.open_data_file(file, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let queue = Queue {
        file: file_handle,
        path: sub.path().join(file),
        generation: fork_generation(),
    };
    queue.remove_if_idle(&sub, file)
}

/// The offset of the slot of `ticket`.
fn slot_at(ticket: u64) -> u64 {
    HEADER + (ticket % SLOTS) * SLOT
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` descriptors of the queue of lock file `x` in `dir`: as many waiters.
    fn queues(dir: &Path, n: usize) -> Vec<Queue> {
        (0..n)
            .map(|_| Queue::open("x", &dir.join("x")).unwrap())
            .collect()
    }

    fn ticket(queue: &Queue) -> Walk {
        match queue.enqueue().unwrap() {
            Enqueue::Queued(walk) => walk,
            other => panic!("not queued: {other:?}"),
        }
    }

    #[test]
    fn tickets_are_served_in_order() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        assert!(q[0].is_empty().unwrap());
        let mut w: Vec<Walk> = q.iter().map(ticket).collect();
        assert!(!q[0].is_empty().unwrap());
        assert!(
            q[0].advance(&mut w[0], false).unwrap(),
            "the first has no predecessor"
        );
        assert!(!q[1].advance(&mut w[1], false).unwrap());
        assert!(!q[2].advance(&mut w[2], false).unwrap());
        q[0].leave(w[0].ticket(), RELEASED).unwrap();
        assert!(q[1].advance(&mut w[1], false).unwrap());
        assert!(
            !q[2].advance(&mut w[2], false).unwrap(),
            "the second still holds"
        );
        q[1].leave(w[1].ticket(), RELEASED).unwrap();
        assert!(q[2].advance(&mut w[2], false).unwrap());
        q[2].leave(w[2].ticket(), RELEASED).unwrap();
        assert!(q[0].is_empty().unwrap());
    }

    #[test]
    fn a_task_does_not_wait_for_the_ticket_lock() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 2);
        q[0].lock(0, 8, true).unwrap();
        assert!(matches!(q[1].try_enqueue().unwrap(), Enqueue::Busy));
        q[0].unlock(0, 8).unwrap();
        assert!(matches!(q[1].try_enqueue().unwrap(), Enqueue::Queued(_)));
    }

    #[test]
    fn a_waiter_that_gives_up_or_dies_is_passed_over_without_passing_its_predecessor() {
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 4);
        let mut w: Vec<Walk> = q.iter().map(ticket).collect();
        assert!(q[0].advance(&mut w[0], false).unwrap());
        // The second gives up, the third dies (its descriptor closed, as at its death).
        q[1].leave(w[1].ticket(), ABANDONED).unwrap();
        drop(q.remove(2));
        w.remove(2);
        // The last now waits for the first, which still holds.
        assert!(!q[2].advance(&mut w[2], false).unwrap());
        q[0].leave(w[0].ticket(), RELEASED).unwrap();
        assert!(q[2].advance(&mut w[2], false).unwrap());
    }

    #[test]
    fn a_holder_that_dies_hands_on_to_its_successor() {
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 2);
        let mut w: Vec<Walk> = q.iter().map(ticket).collect();
        assert!(q[0].advance(&mut w[0], false).unwrap());
        drop(q.remove(0));
        assert!(q[0].advance(&mut w[1], false).unwrap());
    }

    #[test]
    fn a_stamp_of_an_older_round_does_not_let_a_waiter_pass() {
        // A whole round of tickets, each released: every slot holds an old RELEASED stamp.
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 3);
        for _ in 0..SLOTS - 1 {
            let mut w = ticket(&q[0]);
            assert!(q[0].advance(&mut w, false).unwrap());
            q[0].leave(w.ticket(), RELEASED).unwrap();
        }
        // Then a holder, a waiter that dies (in a slot stamped by the previous round), and a
        // waiter behind it: that one must wait for the holder, not pass on the old stamp.
        let mut holder = ticket(&q[0]);
        assert!(q[0].advance(&mut holder, false).unwrap());
        let _dies = ticket(&q[1]);
        let mut last = ticket(&q[2]);
        assert_eq!(last.ticket(), SLOTS + 1);
        drop(q.remove(1));
        assert!(!q[1].advance(&mut last, false).unwrap());
        q[0].leave(holder.ticket(), RELEASED).unwrap();
        assert!(q[1].advance(&mut last, false).unwrap());
    }

    #[test]
    fn given_up_tickets_fill_the_ring_only_until_the_queue_moves_on() {
        // A holder, then a whole ring of tickets given up while it holds: a new ticket would
        // reuse the holder's slot, so the enqueue waits (Full), rather than fail or take it.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        let mut holder = ticket(&q[0]);
        assert!(q[0].advance(&mut holder, false).unwrap());
        for _ in 0..SLOTS - 1 {
            let given_up = ticket(&q[1]);
            q[1].leave(given_up.ticket(), ABANDONED).unwrap();
        }
        assert!(matches!(q[2].enqueue().unwrap(), Enqueue::Full));
        // The holder leaves: nobody queues any more, and the tickets start over.
        q[0].leave(holder.ticket(), RELEASED).unwrap();
        let mut next = ticket(&q[2]);
        assert_eq!(next.ticket(), 0);
        assert!(q[2].advance(&mut next, false).unwrap());
    }

    #[test]
    fn a_reused_slot_never_holds_up_the_waiter_that_still_needs_it() {
        // A holder, a live waiter W behind it, then given-up tickets up to a whole ring.
        // When the holder leaves, a newcomer must not take the holder's slot before W has
        // seen it released (W would wait on the newcomer, and the newcomer on W).
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 4);
        let mut holder = ticket(&q[0]);
        assert!(q[0].advance(&mut holder, false).unwrap());
        let mut w = ticket(&q[1]);
        for _ in 0..SLOTS - 2 {
            let given_up = ticket(&q[2]);
            q[2].leave(given_up.ticket(), ABANDONED).unwrap();
        }
        q[0].leave(holder.ticket(), RELEASED).unwrap();
        // The newcomer cannot take a ticket yet: W, still waiting, may need that slot.
        assert!(matches!(q[3].enqueue().unwrap(), Enqueue::Full));
        assert!(q[1].advance(&mut w, false).unwrap(), "W is first");
        // W first: the floor has moved, the newcomer queues behind W.
        let mut e = ticket(&q[3]);
        assert_eq!(e.ticket(), SLOTS);
        assert!(!q[3].advance(&mut e, false).unwrap());
        q[1].leave(w.ticket(), RELEASED).unwrap();
        assert!(q[3].advance(&mut e, false).unwrap());
    }

    #[test]
    fn the_queue_file_is_removed_only_when_nobody_queues() {
        let d = tempfile::tempdir().unwrap();
        let lock_dir = Dir::open(d.path()).unwrap();
        let q = queues(d.path(), 1);
        let w = ticket(&q[0]);
        let file = OsStr::new("x");
        assert!(!remove_queue_if_idle(&lock_dir, file).unwrap());
        assert!(d.path().join(QUEUE_DIR).join("x").exists());
        q[0].leave(w.ticket(), RELEASED).unwrap();
        assert!(remove_queue_if_idle(&lock_dir, file).unwrap());
        assert!(!d.path().join(QUEUE_DIR).join("x").exists());
        // A descriptor of the removed file sees it, and enqueues nowhere.
        assert!(matches!(q[0].enqueue().unwrap(), Enqueue::Removed));
        // Nothing to remove: fine.
        assert!(!remove_queue_if_idle(&lock_dir, OsStr::new("never")).unwrap());
    }

    #[test]
    fn a_link_planted_for_the_queue_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), d.path().join(QUEUE_DIR)).unwrap();
        let Err(err) = Queue::open("x", &d.path().join("x")) else {
            panic!("a linked queue directory was followed");
        };
        assert!(err.to_string().contains("queue directory"), "{err}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_queue_file_is_not_inherited_by_child_processes() {
        use std::os::fd::AsRawFd;
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 1);
        // SAFETY: F_GETFD on an open descriptor.
        let flags = unsafe { libc::fcntl(q[0].file.as_raw_fd(), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }
}
