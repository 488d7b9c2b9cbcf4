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
//! Bytes `[0, 16)` hold the next ticket (little-endian) and its complement; bytes
//! `[16, 24)` mark a file being removed; bytes `[32, 48)` hold the *floor* and its
//! complement. Both numbers are read without a lock, and a reading torn by a concurrent
//! write shows as such (the number and its complement disagree): a torn next ticket is read
//! again, a torn floor counts as 0 (all zero, never written, is 0 too). From [`HEADER`]
//! on, [`SLOTS`] slots of
//! [`SLOT`] bytes: ticket `t` write-locks slot `t % SLOTS` while it is in the queue. The
//! slots hold no data: all they say, they say with locks, which the kernel drops when
//! their owner dies.
//!
//! The floor is the ticket of the latest holder to let the lock file go: each holder writes
//! it just before, still holding the lock file, so floors are written in ticket order and
//! the floor only rises (until the queue starts over, which sets it to 0 holding every slot,
//! nobody queued). Every ticket below it has left, or has held the lock file and let
//! it go. A walker never looks below it, and a slot is reused only for a ticket whose
//! predecessor in the slot is below it, as the floor reads once the slot is held (else the
//! enqueue waits: [`Enqueue::Full`]). A queue nobody is in starts its tickets over (the one
//! who finds it so holds every slot meanwhile).
//!
//! # The queue (a CLH queue lock made of byte-range locks)
//! A slot has two halves: its *waiting* half is unlocked once its ticket holds the lock
//! file; the other half stays locked until the ticket leaves. Its owner is thus, as the
//! kernel shows it, waiting (both locked), holding (the second half locked: it holds the
//! lock file, or let it go and is leaving) or gone (neither).
//! - **Enqueue**, with no lock of its own: read the next ticket `t`, write-lock its slot,
//!   read the header again. Still `t` (and the slot not needed by the ring): `t` is taken,
//!   and nobody else can take it (they would need the slot); advance the next ticket (which
//!   only the owner of slot `t` does, so only one process at a time writes it). Not `t`
//!   (another took it, or it came and went while this one looked, its slot free again):
//!   unlock, and try again. So each ticket has one owner, whose slot is locked before the
//!   next ticket is issued.
//! - **Walk**: wait for the predecessor `e = t - 1` to hold or to leave.
//!   - Holding: every ticket before it has left, so `t` is *next*
//!     ([`Turn::Next`]): only the lock file is in its way, which it takes as soon as `e`
//!     lets it go.
//!   - Gone: if `e` had held the lock (the floor reached `e`), `t` is *first*
//!     ([`Turn::First`]) and takes the lock file. Otherwise (`e` gave up, or died before it
//!     held), walk on to `e - 1`. The walk back ends at a holder, at a ticket the floor
//!     reached, at ticket 0, or [`SLOTS`] back.
//! - **Hold**: once it holds the lock file, unlock the slot's waiting half: the successor
//!   learns that only the lock file is in its way.
//! - **Release**: raise the floor to `t`, let the lock file go, then leave: unlock the
//!   slot. A ticket that gives up just unlocks it.
//!
//! Waiting is watching, then sleeping (see [`Spin`]): the kernel wakes a sleeper in tens of
//! microseconds, so a short-held lock passes on fastest to waiters that are already awake.
//!
//! The kernel drops a dead process's locks, so a holder or a waiter killed at any point
//! looks like one that left, before or after holding: the next waiter goes on at once,
//! nothing stalls, nothing is left to clean up.
//!
//! # Invariant
//! A ticket takes the lock file only when every earlier ticket has left the queue, or has
//! held the lock file and let it go (a holder leaves just after). (By induction: the walk
//! passes only slots that were let go, by tickets that left, and stops at a ticket that
//! holds or held the lock file, a floor that was raised, or ticket 0. A ticket at or below
//! the floor held the lock, or was below one that did.) The lock file itself
//! is what excludes, as in oslo: processes that do not queue (oslo, non-fair lockutils
//! users) still exclude, and may come between two queued holders; and a queue that went
//! wrong could only serve out of order, never let two holders in.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Dir, FileKind, fork_generation, lock_file_name_of};
use crate::error::Error;

/// The directory of the companion files, inside the lock directory.
pub(crate) const QUEUE_DIR: &str = ".lockutils-fifo";
/// Where the slots start: the header comes first.
const HEADER: u64 = 64;
/// The size of a slot: its ticket, its state, padding.
const SLOT: u64 = 16;
/// The number of slots: a ring, reused as the queue's first moves on.
pub(crate) const SLOTS: u64 = 4096;

/// How many times an enqueue tries for the next ticket (see [`Queue::enqueue`]).
const TICKET_TRIES: u32 = 16;

/// Where a remover marks the file it is about to unlink, holding the whole file.
const REMOVING_AT: u64 = 16;
/// The mark of a file being removed.
const REMOVING: u64 = u64::from_le_bytes(*b"removing");
/// Where the floor is, followed by its complement (a check against torn readings).
const FLOOR_AT: u64 = 32;

/// A slot's first half, its *waiting* half: locked while its ticket waits, unlocked once it
/// is first. The second half stays locked until the ticket leaves.
const WAITING: u64 = SLOT / 2;

/// The longest a waiter watches for its turn before it sleeps in the kernel (see
/// [`Spin`]).
const SPIN: Duration = Duration::from_micros(200);

/// Where the owner of a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Waiting: the whole slot is locked.
    Waiting,
    /// Holding the lock file, or leaving after it: only the second half is locked.
    First,
    /// Gone: nothing is locked.
    Left,
}

/// How long to watch for something before sleeping in the kernel until it happens, learnt
/// from how long it took lately.
///
/// The kernel wakes a sleeping process in tens of microseconds (on a virtual machine an
/// idle processor must be woken too, which costs more): longer than a short hold of a lock,
/// so that a queue of sleepers would pass a short-held lock on no faster than one wake-up
/// at a time. Watching (a system call a look, the processor yielded in between) passes it
/// on at once; but a long wait is better slept through. So a waiter watches for up to
/// [`SPIN`] while the waits lately took about that or less, and sleeps at once when they
/// took longer: a queue of long holds wastes no processor time.
#[derive(Debug, Default)]
pub(crate) struct Spin {
    /// A moving average of the waits lately (nanoseconds; `0` before the first).
    mean_ns: AtomicU64,
}

impl Spin {
    /// How long to watch before sleeping, the next time.
    pub(crate) fn budget(&self) -> Duration {
        let mean = Duration::from_nanos(self.mean_ns.load(Ordering::Relaxed));
        if mean <= SPIN { SPIN } else { Duration::ZERO }
    }

    /// Counts a wait that took `waited` (watched or slept through).
    pub(crate) fn record(&self, waited: Duration) {
        let waited = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let mean = self.mean_ns.load(Ordering::Relaxed);
        // An average over about the last 8 waits; races between threads lose an update,
        // which does no harm.
        let next = mean - mean / 8 + waited / 8;
        self.mean_ns.store(next, Ordering::Relaxed);
    }
}

/// The companion file of one lock file, open.
pub(crate) struct Queue {
    file: File,
    path: PathBuf,
    /// [`fork_generation`] when opened: a forked child never unlocks its parent's slots.
    generation: u64,
    /// How long its waits for a turn in the queue took lately.
    queue_spin: Spin,
    /// How long its waits for the lock file took lately, once next (see [`Turn::Next`]).
    pub(crate) file_spin: Spin,
}

/// What an enqueue did.
#[derive(Debug)]
pub(crate) enum Enqueue {
    /// Took a ticket: the walk to the head starts here.
    Queued(Walk),
    /// The queue file was removed since it was opened: reopen it and enqueue there.
    Removed,
    /// Other processes took every ticket it tried for (or held the whole file): try
    /// again shortly.
    Busy,
    /// Every slot may still be needed ([`SLOTS`] tickets since the queue's first): try again
    /// once the queue has moved on.
    Full,
}

/// Whose turn it is, from [`Queue::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Not this waiter's yet (only when not blocking).
    NotYet,
    /// First: every earlier ticket has left, or has held the lock file and let it go. It
    /// takes the lock file (which only a process outside the queue may hold).
    First,
    /// Next: every earlier ticket has left but the one just before, which holds the lock
    /// file or is leaving after it. It takes the lock file as soon as that is let go.
    Next,
}

/// What the header says (see the module docs).
struct Header {
    /// The next ticket; `None` if the reading was torn by a write.
    next: Option<u64>,
    /// Whether a remover marked the file.
    removing: bool,
    /// The floor (`0` if never written, or torn twice).
    floor: u64,
}

/// Where a waiter is in its walk back to the queue's head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk {
    ticket: u64,
    /// The earlier ticket it waits for to leave; `None` once first.
    waiting_for: Option<u64>,
    /// Whether it holds the lock file and said so ([`Queue::hold`]).
    holding: bool,
    /// Whether it found an earlier ticket still in the queue (it did not get in first).
    waited: bool,
}

impl Walk {
    /// The walk of a ticket just taken: first in line to wait for is its predecessor.
    fn at(ticket: u64) -> Walk {
        Walk {
            ticket,
            waiting_for: ticket.checked_sub(1),
            holding: false,
            waited: false,
        }
    }

    /// The ticket walking.
    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Whether it found an earlier ticket still in the queue: the lock is contended.
    pub(crate) fn waited(&self) -> bool {
        self.waited
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
        Ok(Queue::of(file, path))
    }

    /// The queue in the open companion file `file`, at `path`.
    fn of(file: File, path: PathBuf) -> Queue {
        Queue {
            file,
            path,
            generation: fork_generation(),
            queue_spin: Spin::default(),
            file_spin: Spin::default(),
        }
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
        super::has_name(&self.file)
    }

    /// Whether nobody (in any process) queues right now: no slot is locked (nor the whole
    /// file, by a remover).
    pub(crate) fn is_empty(&self) -> io::Result<bool> {
        self.probe(0, HEADER + SLOTS * SLOT)
    }

    /// Takes a ticket and its slot. Another process taking a ticket at the same moment may
    /// hold the slot this one wants, for a few system calls: tried again up to
    /// [`TICKET_TRIES`] times, the processor yielded in between (to that process,
    /// perhaps), then [`Enqueue::Busy`].
    pub(crate) fn enqueue(&self) -> io::Result<Enqueue> {
        for tries in 1..=TICKET_TRIES {
            if let Some(enqueued) = self.take_ticket(tries == TICKET_TRIES)? {
                return Ok(enqueued);
            }
            if tries < TICKET_TRIES {
                std::thread::yield_now();
            }
        }
        Ok(Enqueue::Busy)
    }

    /// One try at the next ticket: `None` if another process took it meanwhile, is taking
    /// it, or holds the whole file (a remover, or a queue starting over). With `last`, a
    /// next ticket that still reads torn is taken for a damaged header (a write cut short,
    /// an older format): the queue starts over if nobody is in it.
    fn take_ticket(&self, last: bool) -> io::Result<Option<Enqueue>> {
        let header = self.header()?;
        if header.removing && !self.is_linked()? {
            return Ok(Some(Enqueue::Removed));
        }
        let Some(next) = header.next else {
            // Torn by the write of the process that just took a ticket: read again. (Only
            // a process that holds a slot writes it, so with nobody queued it is not a
            // write in progress; starting over repairs it.)
            return if last { self.start_over() } else { Ok(None) };
        };
        if ring_is_full(next, header.floor) {
            return self.start_over();
        }
        self.claim(next)
    }

    /// Takes `ticket`, read as the next one: locks its slot, then reads the next ticket
    /// again. Still `ticket`: nobody else can take it now (they would need the slot), so it
    /// is this one's, and the next ticket moves on. Otherwise it came and went while this
    /// process looked (its slot free again), or another took it: `None`, nothing kept.
    fn claim(&self, ticket: u64) -> io::Result<Option<Enqueue>> {
        let at = slot_at(ticket);
        if !self.try_lock_range(at, SLOT)? {
            return Ok(None);
        }
        let claimed = self.header().and_then(|header| {
            if header.next != Some(ticket) {
                return Ok(None);
            }
            // The ring, looked at again with the floor as it is now that the slot is held:
            // read before, the floor may be that of an older round (the tickets started over
            // since), with the same next ticket.
            if ring_is_full(ticket, header.floor) {
                return Ok(None);
            }
            if header.removing {
                if !self.is_linked()? {
                    return Ok(Some(Enqueue::Removed));
                }
                // Its remover died before the unlink, or the unlink failed (no remover is
                // at work while this slot is held): the file stays.
                self.file.write_all_at(&0u64.to_le_bytes(), REMOVING_AT)?;
            }
            self.file.write_all_at(&checked_record(ticket + 1), 0)?;
            Ok(Some(Enqueue::Queued(Walk::at(ticket))))
        });
        if let Ok(Some(Enqueue::Queued(_))) = claimed {
            return claimed;
        }
        let unlocked = self.unlock(at, SLOT);
        claimed.and_then(|claimed| unlocked.map(|()| claimed))
    }

    /// With the ring full: if nobody queues (every live waiter holds its slot), nobody walks
    /// either, and the tickets start over, this enqueue taking ticket 0. Otherwise
    /// [`Enqueue::Full`] (one of those queued holds, leaves and raises the floor).
    fn start_over(&self) -> io::Result<Option<Enqueue>> {
        if !self.try_lock_range(HEADER, SLOTS * SLOT)? {
            return Ok(Some(Enqueue::Full));
        }
        // Every slot held here: nobody claims one meanwhile, nobody raises the floor.
        let restarted = self.header().and_then(|header| {
            if header.removing && !self.is_linked()? {
                return Ok(Enqueue::Removed);
            }
            self.write_header(1, 0)?;
            Ok(Enqueue::Queued(Walk::at(0)))
        });
        // Slot 0 stays locked for ticket 0, if taken.
        let keep = match restarted {
            Ok(Enqueue::Queued(_)) => SLOT,
            _ => 0,
        };
        let unlocked = self.unlock(HEADER + keep, SLOTS * SLOT - keep);
        match (restarted, unlocked) {
            (Ok(restarted), Ok(())) => Ok(Some(restarted)),
            (Ok(Enqueue::Queued(_)), Err(e)) => {
                let _ = self.unlock(HEADER, SLOTS * SLOT);
                Err(e)
            }
            (Ok(_), Err(e)) | (Err(e), _) => Err(e),
        }
    }

    /// The header: the next ticket, the removal mark and the floor, in one read (which a
    /// concurrent write may tear: a torn next ticket reads as `None`; a torn floor is read
    /// again, and counts as 0 if torn twice).
    fn header(&self) -> io::Result<Header> {
        let mut header = [0u8; (FLOOR_AT + 16) as usize];
        let read = self.file.read_at(&mut header, 0)? as u64;
        // Past the end of a short file: never written, so 0 (a fresh file).
        let record =
            |at: u64, len: u64| (read >= at + len).then(|| &header[at as usize..][..len as usize]);
        let floor = match record(FLOOR_AT, 16).map_or(Some(0), checked_of) {
            Some(floor) => floor,
            None => self.floor()?,
        };
        Ok(Header {
            next: record(0, 16).map_or(Some(0), checked_of),
            removing: record(REMOVING_AT, 8) == Some(&REMOVING.to_le_bytes()[..]),
            floor,
        })
    }

    /// Writes the whole header in one write: the next ticket, no removal mark, the floor.
    fn write_header(&self, next: u64, floor: u64) -> io::Result<()> {
        let mut header = [0u8; (FLOOR_AT + 16) as usize];
        header[..16].copy_from_slice(&checked_record(next));
        header[FLOOR_AT as usize..].copy_from_slice(&checked_record(floor));
        self.file.write_all_at(&header, 0)
    }

    /// Moves `walk` towards the head: with `block`, waits until its turn comes (which may be
    /// [`Turn::Next`]); without, goes as far as it can now ([`Turn::NotYet`] or
    /// [`Turn::First`]).
    pub(crate) fn advance(&self, walk: &mut Walk, block: bool) -> io::Result<Turn> {
        // The floor as last read. Any value it had while this ticket waits is a safe one
        // (every ticket below it has left, or has held the lock and let it go), and it does
        // not go down while this ticket waits (holders raise it in ticket order): a stale
        // reading may make a walker look at a slot it could skip, never skip one it must
        // wait for.
        let mut floor = None;
        while let Some(earlier) = walk.waiting_for {
            let below_floor = earlier + 1 < walk.ticket
                && earlier
                    < match floor {
                        Some(floor) => floor,
                        None => *floor.insert(self.floor()?),
                    };
            if walk.ticket - earlier >= SLOTS || below_floor {
                // A whole round back, or below the floor: gone, and every ticket before it.
                // (The floor is read only past the immediate predecessor, which cannot be
                // below it while this ticket waits; read after the wait that passed the
                // later ticket, it counts every head that came before.)
                walk.waiting_for = None;
                break;
            }
            let at = slot_at(earlier);
            if block {
                let (state, waited) = self.await_first_or_gone(at)?;
                walk.waited |= waited;
                if state == SlotState::First {
                    walk.waited = true;
                    // It holds the lock file (it let its successor know only then), or
                    // held it and is leaving: every ticket before it has left.
                    walk.waiting_for = None;
                    return Ok(Turn::Next);
                }
            } else if !self.probe(at, SLOT)? {
                walk.waited = true;
                return Ok(Turn::NotYet);
            }
            // `earlier` has left. It had been first if the floor (read now, after it left)
            // reached it; then so had every ticket before it.
            walk.waiting_for = if earlier <= *floor.insert(self.floor()?) {
                None
            } else {
                // Gave up, or died, before it was first: wait for its own predecessor.
                earlier.checked_sub(1)
            };
        }
        Ok(Turn::First)
    }

    /// Notes that `walk`'s ticket holds the lock file: unlocks its slot's waiting half,
    /// which tells the successor that the lock file is the only thing still in its way.
    pub(crate) fn hold(&self, walk: &mut Walk) -> io::Result<()> {
        if !walk.holding {
            self.unlock(slot_at(walk.ticket), WAITING)?;
            walk.holding = true;
        }
        Ok(())
    }

    /// Waits until the owner of the slot at `at` holds the lock file ([`SlotState::First`])
    /// or has left the queue ([`SlotState::Left`]); also whether it had to wait at all.
    /// Watches the slot while [`Queue::queue_spin`] says so (yielding the processor
    /// between looks: the holder may need it), then sleeps in the kernel on the slot's
    /// waiting half.
    fn await_first_or_gone(&self, at: u64) -> io::Result<(SlotState, bool)> {
        let started = Instant::now();
        let spin_until = started + self.queue_spin.budget();
        let mut waited = false;
        loop {
            let state = self.slot_state(at)?;
            if state != SlotState::Waiting {
                if waited {
                    self.queue_spin.record(started.elapsed());
                }
                return Ok((state, waited));
            }
            waited = true;
            if Instant::now() >= spin_until {
                break;
            }
            std::thread::yield_now();
        }
        loop {
            // A read lock: granted once the owner (write-locking the half) unlocked it;
            // and, unlike a write lock, never merged by the kernel with this waiter's own
            // (adjacent) slot lock, whose waiters a merge or split would wake for nothing.
            self.fcntl(libc::F_OFD_SETLKW, libc::F_RDLCK, at, WAITING)?;
            self.unlock(at, WAITING)?;
            let state = self.slot_state(at)?;
            if state != SlotState::Waiting {
                self.queue_spin.record(started.elapsed());
                return Ok((state, true));
            }
        }
    }

    /// Where the owner of the slot at `at` is, as its locks show.
    fn slot_state(&self, at: u64) -> io::Result<SlotState> {
        // Asks for a read lock: only the owner's write lock conflicts (not another waiter's
        // read lock), and the kernel reports it.
        let lock = self.fcntl(libc::F_OFD_GETLK, libc::F_RDLCK, at, SLOT)?;
        Ok(if lock.l_type == libc::F_UNLCK as libc::c_short {
            SlotState::Left
        } else if lock.l_start as u64 >= at + WAITING {
            SlotState::First
        } else {
            SlotState::Waiting
        })
    }

    /// The floor: the ticket of the latest holder to let the lock file go (see the module
    /// docs). `0`, the safe value, for a fresh file, and for a reading that a concurrent
    /// write tore twice in a row (the word and its complement then disagree).
    fn floor(&self) -> io::Result<u64> {
        for _ in 0..2 {
            let mut record = [0u8; 16];
            if self.file.read_at(&mut record, FLOOR_AT)? < 16 {
                return Ok(0);
            }
            if let Some(floor) = checked_of(&record) {
                return Ok(floor);
            }
        }
        Ok(0)
    }

    /// Writes the floor and its complement in one write: a reader that sees them disagree
    /// knows its reading was torn by this write.
    fn write_floor(&self, floor: u64) -> io::Result<()> {
        self.file.write_all_at(&checked_record(floor), FLOOR_AT)
    }

    /// Waits until `walk` is first, or until `deadline` (trying with growing pauses of up
    /// to `max_pause`: the kernel has no timed wait for a record lock): [`Turn::First`], or
    /// [`Turn::NotYet`] at the deadline.
    pub(crate) fn advance_until(
        &self,
        walk: &mut Walk,
        deadline: Instant,
        max_pause: Duration,
    ) -> io::Result<Turn> {
        let mut pause = Duration::from_micros(50);
        loop {
            let turn = self.advance(walk, false)?;
            let now = Instant::now();
            if turn == Turn::First || now >= deadline {
                return Ok(turn);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(max_pause.max(pause));
        }
    }

    /// Raises the floor to `ticket`, which holds the lock file and is about to let it go.
    /// Written while the lock file is still held: the queue's holders hold it in ticket
    /// order, one at a time, so floors are written in that order too, and the floor only
    /// rises. (Written after, two holders leaving close together could write it out of
    /// order; a floor lowered below a slot already reused could send a walker to wait on a
    /// later ticket, which waits on the walker.) In a forked child (the place is the
    /// parent's), does nothing.
    pub(crate) fn raise_floor(&self, ticket: u64) -> io::Result<()> {
        if !self.is_own() {
            return Ok(());
        }
        self.write_floor(ticket)
    }

    /// Leaves the queue, after letting the lock file go or giving up: unlocks its slot,
    /// which wakes the successor. In a forked child (the slot is the parent's), does
    /// nothing.
    pub(crate) fn leave(&self, ticket: u64) -> io::Result<()> {
        if !self.is_own() {
            return Ok(());
        }
        self.unlock(slot_at(ticket), SLOT)
    }

    /// Removes the companion file, if nobody queues, while holding the whole file (header
    /// and every slot): `Ok(false)` (nothing removed) if somebody queues. `dir` is the
    /// queue directory; `file` the name in it.
    pub(crate) fn remove_if_idle(&self, dir: &Dir, file: &OsStr) -> io::Result<bool> {
        if !self.try_lock_range(0, HEADER + SLOTS * SLOT)? {
            return Ok(false);
        }
        let removed = match dir.identity_of(file) {
            Ok(Some(id)) if id == super::identity(&self.file.metadata()?) => {
                // Marked first, so that a process holding it open sees the removal when it
                // takes a ticket (without an `fstat` on every ticket).
                self.file
                    .write_all_at(&REMOVING.to_le_bytes(), REMOVING_AT)
                    .and_then(|()| dir.unlink(file))
                    .map(|()| true)
                    .inspect_err(|_| {
                        let _ = self.file.write_all_at(&0u64.to_le_bytes(), REMOVING_AT);
                    })
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        let unlocked = self.unlock(0, HEADER + SLOTS * SLOT);
        let removed = removed?;
        unlocked?;
        Ok(removed)
    }

    /// One try for a write lock on `[start, start + len)`; `false` if anyone holds a part.
    fn try_lock_range(&self, start: u64, len: u64) -> io::Result<bool> {
        match self.fcntl(libc::F_OFD_SETLK, libc::F_WRLCK, start, len) {
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
    let queue = Queue::of(file_handle, sub.path().join(file));
    queue.remove_if_idle(&sub, file)
}

/// The record of a number read without a lock (the next ticket, the floor): the number,
/// then its complement.
fn checked_record(value: u64) -> [u8; 16] {
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&value.to_le_bytes());
    record[8..].copy_from_slice(&(!value).to_le_bytes());
    record
}

/// The number in a record of [`checked_record`]; `None` if the number and its complement
/// disagree (a reading torn by a write), `Some(0)` for a record never written (all zero).
fn checked_of(record: &[u8]) -> Option<u64> {
    let word = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
    let value = word(0);
    (word(8) == !value || (value == 0 && word(8) == 0)).then_some(value)
}

/// Whether the slot of ticket `next` may still be needed: it last served `next - SLOTS`,
/// and is reusable only once that ticket is below the floor (every ticket below it has
/// left, or held the lock file and let it go; and no walker looks below it). Otherwise the
/// ring is full of tickets that may still be needed, live or given up.
fn ring_is_full(next: u64, floor: u64) -> bool {
    next.checked_sub(SLOTS).is_some_and(|old| old >= floor)
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

    /// Whether `walk` is first now; if so, it takes the lock (as the backend does once it
    /// holds the lock file).
    fn first(queue: &Queue, walk: &mut Walk) -> bool {
        match queue.advance(walk, false).unwrap() {
            Turn::First => {
                queue.hold(walk).unwrap();
                true
            }
            Turn::NotYet => false,
            Turn::Next => panic!("a walk that does not block is never told it is next"),
        }
    }

    /// Lets the lock go, as the backend does: the floor raised (holding the lock file),
    /// then the slot unlocked (once the lock file is let go).
    fn release(queue: &Queue, walk: &Walk) {
        queue.raise_floor(walk.ticket()).unwrap();
        queue.leave(walk.ticket()).unwrap();
    }

    fn give_up(queue: &Queue, walk: &Walk) {
        queue.leave(walk.ticket()).unwrap();
    }

    #[test]
    fn tickets_are_served_in_order() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        assert!(q[0].is_empty().unwrap());
        let mut w: Vec<Walk> = q.iter().map(ticket).collect();
        assert!(!q[0].is_empty().unwrap());
        assert!(first(&q[0], &mut w[0]), "the first has no predecessor");
        assert!(!first(&q[1], &mut w[1]));
        assert!(!first(&q[2], &mut w[2]));
        release(&q[0], &w[0]);
        assert!(first(&q[1], &mut w[1]));
        assert!(!first(&q[2], &mut w[2]), "the second still holds");
        release(&q[1], &w[1]);
        assert!(first(&q[2], &mut w[2]));
        release(&q[2], &w[2]);
        assert!(q[0].is_empty().unwrap());
    }

    #[test]
    fn a_slot_shows_its_owner_waiting_then_holding_then_gone() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        let mut w: Vec<Walk> = q.iter().take(2).map(ticket).collect();
        let at = slot_at(w[0].ticket());
        assert_eq!(q[2].slot_state(at).unwrap(), SlotState::Waiting);
        assert_eq!(q[0].advance(&mut w[0], true).unwrap(), Turn::First);
        assert_eq!(
            q[2].slot_state(at).unwrap(),
            SlotState::Waiting,
            "first, but not yet holding the lock file"
        );
        q[0].hold(&mut w[0]).unwrap();
        assert_eq!(q[2].slot_state(at).unwrap(), SlotState::First);
        // The successor, blocking, is told it is next: only the lock file is in its way.
        assert_eq!(q[1].advance(&mut w[1], true).unwrap(), Turn::Next);
        release(&q[0], &w[0]);
        assert_eq!(q[2].slot_state(at).unwrap(), SlotState::Left);
    }

    #[test]
    fn a_waiter_that_gives_up_or_dies_is_passed_over_without_passing_its_predecessor() {
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 4);
        let mut w: Vec<Walk> = q.iter().map(ticket).collect();
        assert!(first(&q[0], &mut w[0]));
        // The second gives up, the third dies (its descriptor closed, as at its death).
        give_up(&q[1], &w[1]);
        drop(q.remove(2));
        w.remove(2);
        // The last now waits for the first, which still holds.
        assert!(!first(&q[2], &mut w[2]));
        release(&q[0], &w[0]);
        assert!(first(&q[2], &mut w[2]));
    }

    #[test]
    fn a_first_that_gives_up_before_it_holds_lets_its_successor_on() {
        // First, but the lock file is held outside the queue until its timeout: it gives up.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        let mut before = ticket(&q[0]);
        assert!(first(&q[0], &mut before));
        release(&q[0], &before);
        let mut w: Vec<Walk> = q.iter().skip(1).map(ticket).collect();
        assert_eq!(q[1].advance(&mut w[0], false).unwrap(), Turn::First);
        assert!(!first(&q[2], &mut w[1]));
        give_up(&q[1], &w[0]);
        assert!(first(&q[2], &mut w[1]));
    }

    #[test]
    fn a_holder_that_dies_hands_on_to_its_successor() {
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 3);
        // An earlier round, so that the holder's ticket is not 0.
        let mut before = ticket(&q[2]);
        assert!(first(&q[2], &mut before));
        release(&q[2], &before);
        let mut w: Vec<Walk> = q.iter().take(2).map(ticket).collect();
        assert!(first(&q[0], &mut w[0]));
        assert!(!first(&q[1], &mut w[1]));
        drop(q.remove(0));
        assert!(first(&q[0], &mut w[1]));
    }

    #[test]
    fn a_waiter_dying_in_a_slot_of_an_older_round_does_not_let_its_successor_pass() {
        // A whole round of tickets, each first and released.
        let d = tempfile::tempdir().unwrap();
        let mut q = queues(d.path(), 3);
        for _ in 0..SLOTS - 1 {
            let mut w = ticket(&q[0]);
            assert!(first(&q[0], &mut w));
            release(&q[0], &w);
        }
        // Then a holder, a waiter that dies (in a slot whose last ticket had been first), and
        // a waiter behind it: that one must wait for the holder, not pass.
        let mut holder = ticket(&q[0]);
        assert!(first(&q[0], &mut holder));
        let _dies = ticket(&q[1]);
        let mut last = ticket(&q[2]);
        assert_eq!(last.ticket(), SLOTS + 1);
        drop(q.remove(1));
        assert!(!first(&q[1], &mut last));
        release(&q[0], &holder);
        assert!(first(&q[1], &mut last));
    }

    #[test]
    fn given_up_tickets_fill_the_ring_only_until_the_queue_moves_on() {
        // A holder, then a whole ring of tickets given up while it holds: a new ticket would
        // reuse the holder's slot, so the enqueue waits (Full), rather than fail or take it.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        let mut holder = ticket(&q[0]);
        assert!(first(&q[0], &mut holder));
        for _ in 0..SLOTS - 1 {
            let given_up = ticket(&q[1]);
            give_up(&q[1], &given_up);
        }
        assert!(matches!(q[2].enqueue().unwrap(), Enqueue::Full));
        // The holder leaves: nobody queues any more, and the tickets start over.
        release(&q[0], &holder);
        let mut next = ticket(&q[2]);
        assert_eq!(next.ticket(), 0);
        assert!(first(&q[2], &mut next));
    }

    #[test]
    fn a_reused_slot_never_holds_up_the_waiter_that_still_needs_it() {
        // A holder, a live waiter W behind it, then given-up tickets up to a whole ring.
        // When the holder leaves, a newcomer must not take the holder's slot before W has
        // seen it released (W would wait on the newcomer, and the newcomer on W).
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 4);
        let mut holder = ticket(&q[0]);
        assert!(first(&q[0], &mut holder));
        let mut w = ticket(&q[1]);
        for _ in 0..SLOTS - 2 {
            let given_up = ticket(&q[2]);
            give_up(&q[2], &given_up);
        }
        release(&q[0], &holder);
        // The newcomer cannot take a ticket yet: W, still waiting, may need that slot.
        assert!(matches!(q[3].enqueue().unwrap(), Enqueue::Full));
        assert!(first(&q[1], &mut w), "W is first");
        // W holds; once it has let go, the floor has moved, and the newcomer's ticket reuses
        // the first slot.
        assert!(matches!(q[3].enqueue().unwrap(), Enqueue::Full));
        release(&q[1], &w);
        let mut e = ticket(&q[3]);
        assert_eq!(e.ticket(), SLOTS);
        assert!(first(&q[3], &mut e));
    }

    #[test]
    fn a_holder_slow_to_leave_never_lowers_the_floor() {
        // Ticket 0 lets the lock file go (having raised the floor), then is slow to leave
        // (stopped, say) while 1 holds and leaves. Floors are raised by holders, holding
        // the lock file, so in ticket order: the floor says 1 from then on, and the walker
        // behind 1 is first at once.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 4);
        let mut w: Vec<Walk> = q.iter().take(3).map(ticket).collect();
        assert!(first(&q[0], &mut w[0]));
        q[0].raise_floor(w[0].ticket()).unwrap();
        assert_eq!(q[1].advance(&mut w[1], true).unwrap(), Turn::Next);
        q[1].hold(&mut w[1]).unwrap();
        release(&q[1], &w[1]);
        q[0].leave(w[0].ticket()).unwrap();
        assert_eq!(q[3].floor().unwrap(), w[1].ticket());
        assert!(first(&q[2], &mut w[2]));
        release(&q[2], &w[2]);
    }

    #[test]
    fn a_claim_looks_at_the_ring_again_once_it_holds_the_slot() {
        // A process read the header of an older round (next ticket SLOTS, the floor above
        // ticket 0) and stalled; since then the tickets started over and came round to
        // SLOTS again, with ticket 0 not below the floor: its slot may still be needed.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 2);
        q[0].write_header(SLOTS, 0).unwrap();
        assert!(
            q[1].claim(SLOTS).unwrap().is_none(),
            "took a slot that an earlier ticket may still need"
        );
        assert!(
            q[0].probe(slot_at(0), SLOT).unwrap(),
            "kept the slot it tried"
        );
        // Nobody queues: the tickets start over.
        let w = ticket(&q[1]);
        assert_eq!(w.ticket(), 0);
        give_up(&q[1], &w);
    }

    #[test]
    fn a_torn_next_ticket_is_read_again_not_taken() {
        // The process that holds slot 5 moves the next ticket on to 6, and a reader sees
        // its write half done (the word of the new value beside the complement of the old):
        // whatever that says, no ticket is taken on it.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 2);
        q[0].write_header(5, 0).unwrap();
        assert!(q[0].try_lock_range(slot_at(5), SLOT).unwrap());
        q[0].file.write_all_at(&6u64.to_le_bytes(), 0).unwrap();
        assert_eq!(q[1].header().unwrap().next, None);
        assert!(q[1].claim(6).unwrap().is_none());
        // (Somebody queues, so the queue does not start over either.)
        assert!(matches!(q[1].enqueue().unwrap(), Enqueue::Full));
        assert!(q[0].is_empty().unwrap(), "the reader kept a slot");
        q[0].file.write_all_at(&checked_record(6), 0).unwrap();
        let w = ticket(&q[1]);
        assert_eq!(w.ticket(), 6);
        give_up(&q[1], &w);
        give_up(&q[0], &Walk::at(5));
    }

    #[test]
    fn a_removal_mark_left_by_a_remover_that_failed_is_cleared() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 1);
        q[0].file
            .write_all_at(&REMOVING.to_le_bytes(), REMOVING_AT)
            .unwrap();
        // Still linked: the mark is stale, the ticket is taken, the mark cleared.
        let mut w = ticket(&q[0]);
        assert!(first(&q[0], &mut w));
        let mut mark = [0u8; 8];
        q[0].file.read_exact_at(&mut mark, REMOVING_AT).unwrap();
        assert_eq!(u64::from_le_bytes(mark), 0);
    }

    #[test]
    fn a_ticket_that_came_and_went_is_not_taken_again() {
        // A process read ticket 0 as the next one, then lost the processor while ticket 0
        // was taken, held and let go: slot 0 is free again, but ticket 0 is not the next
        // one any more. Taking it would put this process ahead of ticket 1.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        let mut w0 = ticket(&q[0]);
        assert!(first(&q[0], &mut w0));
        release(&q[0], &w0);
        let w1 = ticket(&q[1]);
        assert!(
            q[2].claim(0).unwrap().is_none(),
            "took a ticket that came and went"
        );
        assert!(
            q[1].probe(slot_at(0), SLOT).unwrap(),
            "kept the slot it tried"
        );
        let w2 = ticket(&q[2]);
        assert_eq!((w1.ticket(), w2.ticket()), (1, 2));
        give_up(&q[1], &w1);
        give_up(&q[2], &w2);
    }

    #[test]
    fn a_ticket_being_taken_by_another_is_tried_for_again_then_left_busy() {
        // Another process locked the next ticket's slot and has not yet moved the next
        // ticket on: this one tries again, a few times, then reports it busy (not an error,
        // and no ticket taken); once the other has moved on, it takes the following one.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 3);
        assert!(q[0].try_lock_range(slot_at(0), SLOT).unwrap());
        assert!(matches!(q[1].enqueue().unwrap(), Enqueue::Busy));
        assert!(
            q[2].probe(slot_at(1), SLOTS * SLOT - SLOT).unwrap(),
            "a busy enqueue kept a slot"
        );
        q[0].file.write_all_at(&checked_record(1), 0).unwrap();
        let w = ticket(&q[1]);
        assert_eq!(w.ticket(), 1);
        give_up(&q[1], &w);
        give_up(&q[0], &Walk::at(0));
    }

    #[test]
    fn a_damaged_next_ticket_is_repaired_once_nobody_queues() {
        // A next ticket without its complement (a header of an older format, or damaged):
        // it reads torn on every try. While somebody queues, the enqueue waits (Full);
        // once nobody does, the queue starts over rather than stay stuck.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 2);
        let mut queued = ticket(&q[0]);
        q[0].file.write_all_at(&5u64.to_le_bytes(), 0).unwrap();
        q[0].file.write_all_at(&0u64.to_le_bytes(), 8).unwrap();
        assert!(matches!(q[1].enqueue().unwrap(), Enqueue::Full));
        assert!(first(&q[0], &mut queued));
        release(&q[0], &queued);
        let w = ticket(&q[1]);
        assert_eq!(w.ticket(), 0);
        assert_eq!(q[1].header().unwrap().next, Some(1));
        give_up(&q[1], &w);
    }

    #[test]
    fn an_enqueue_finding_a_remover_at_work_tries_again_rather_than_fail() {
        // A remover holds the whole file for a few system calls: an enqueue meanwhile is
        // busy (to be tried again shortly), then takes its ticket.
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 2);
        assert!(q[0].try_lock_range(0, HEADER + SLOTS * SLOT).unwrap());
        assert!(matches!(q[1].enqueue().unwrap(), Enqueue::Busy));
        q[0].unlock(0, HEADER + SLOTS * SLOT).unwrap();
        let w = ticket(&q[1]);
        assert_eq!(w.ticket(), 0);
        give_up(&q[1], &w);
    }

    #[test]
    fn descriptors_taking_tickets_at_once_are_served_in_order_one_at_a_time() {
        // Threads with descriptors of their own contend as processes do (the locks belong
        // to the open file descriptions). Each takes tickets as fast as it can and gives
        // some up at random, early or while it waits; the others wait to be first and
        // record their ticket while they "hold". With no lock file at all, the queue alone
        // must let one holder in at a time, in ticket order, and serve every ticket not
        // given up.
        const THREADS: usize = 4;
        const ROUNDS: usize = 2000;
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), THREADS);
        let holding = std::sync::atomic::AtomicBool::new(false);
        let served = std::sync::Mutex::new(Vec::new());
        let given_up = AtomicU64::new(0);
        std::thread::scope(|s| {
            for (i, queue) in q.iter().enumerate() {
                let (holding, served, given_up) = (&holding, &served, &given_up);
                s.spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64 + 1);
                    let mut random = move || {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed
                    };
                    for _ in 0..ROUNDS {
                        let mut walk = loop {
                            match queue.enqueue().unwrap() {
                                Enqueue::Queued(walk) => break walk,
                                Enqueue::Busy | Enqueue::Full => std::thread::yield_now(),
                                Enqueue::Removed => panic!("nobody removes the file"),
                            }
                        };
                        // One in four gives up, after up to 3 looks.
                        let give_up_after = (random() % 4 == 0).then(|| random() % 4);
                        let mut looks = 0;
                        let held = loop {
                            if give_up_after == Some(looks) {
                                break false;
                            }
                            if first(queue, &mut walk) {
                                break true;
                            }
                            looks += 1;
                            std::thread::yield_now();
                        };
                        if !held {
                            given_up.fetch_add(1, Ordering::Relaxed);
                            give_up(queue, &walk);
                            continue;
                        }
                        assert!(!holding.swap(true, Ordering::SeqCst), "two holders");
                        served.lock().unwrap().push(walk.ticket());
                        holding.store(false, Ordering::SeqCst);
                        release(queue, &walk);
                    }
                });
            }
        });
        let served = served.into_inner().unwrap();
        assert!(
            served.windows(2).all(|w| w[0] < w[1]),
            "served out of order"
        );
        let given_up = given_up.into_inner() as usize;
        assert_eq!(served.len() + given_up, THREADS * ROUNDS);
        assert!(given_up > 0 && !served.is_empty());
    }

    #[test]
    fn a_torn_floor_reads_as_zero() {
        let d = tempfile::tempdir().unwrap();
        let q = queues(d.path(), 1);
        assert_eq!(q[0].floor().unwrap(), 0, "a fresh file");
        q[0].write_floor(7).unwrap();
        assert_eq!(q[0].floor().unwrap(), 7);
        // The word of one write beside the complement of another.
        q[0].file
            .write_all_at(&9u64.to_le_bytes(), FLOOR_AT)
            .unwrap();
        assert_eq!(q[0].floor().unwrap(), 0);
    }

    #[test]
    fn waits_are_watched_while_they_are_short_and_slept_through_once_long() {
        let spin = Spin::default();
        assert_eq!(spin.budget(), SPIN);
        for _ in 0..32 {
            spin.record(Duration::from_millis(5));
        }
        assert_eq!(spin.budget(), Duration::ZERO);
        for _ in 0..32 {
            spin.record(Duration::from_micros(10));
        }
        assert_eq!(spin.budget(), SPIN);
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
        release(&q[0], &w);
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
