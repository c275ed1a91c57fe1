//! SQLite's locks (SHARED, RESERVED, PENDING, EXCLUSIVE) for databases kept in S3.
//!
//! Within a process, every connection to the same database shares one [`Entry`], like
//! the unix VFS's per-inode lock table, so two connections behave exactly as they would on
//! a local file. Across processes and machines, RESERVED and above also need the writer
//! lease (`lease.rs`): at most one writer anywhere, and `xCheckReservedLock` sees it, so
//! no reader ever mistakes a live writer's journal for a hot one.
//!
//! With `locking=lease`, readers in other processes take no lock in S3: they may read
//! while a writer stores pages, and see a mix of old and new pages for that moment. SQLite
//! then sees an inconsistent page and reports an error (typically "database disk image is
//! malformed") for that read, which a retry fixes; nothing stored is ever damaged by it.
//! With `locking=strict`, a process in a read transaction keeps a reader mark in S3 and a
//! writer at PENDING waits for other processes' marks to go (`readers.rs`), so readers
//! anywhere see only whole transactions, at the price of a few requests per transaction.

use crate::codes::{code, LockLevel, Locking};
use crate::error::Result;
use crate::fence::Fence;
use crate::lease::{Acquire, Lease, LeaseRecord};
use crate::readers::{self, Mark};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use LockLevel::{
    Exclusive as EXCLUSIVE, None as NONE, Pending as PENDING, Reserved as RESERVED,
    Shared as SHARED,
};

/// The shared lock state of one database in this process.
#[derive(Default)]
pub struct Entry {
    shared: u32,
    reserved: bool,
    pending: bool,
    exclusive: bool,
    lease: Option<Lease>,
    /// This process's reader mark (`locking=strict`), while `shared` > 0.
    mark: Option<Mark>,
    /// The database's write fence, opened by the lease while this process holds it.
    fence: Arc<Fence>,
    /// The process holds the lease because the database is in WAL mode here (from the
    /// first WAL open to the WAL's deletion or the last connection's close).
    wal: bool,
    /// Connections (open database handles) of this process using the entry.
    conns: u32,
    /// How many times this process took the lease after someone else's version
    /// ([`Acquire::Taken`]): another writer may have committed just before each.
    taken: u64,
    /// The lease is kept after the last write transaction ended, until then (the
    /// linger): a stream of autocommit writes takes it once, not once per commit.
    linger_until: Option<Instant>,
    /// A keeper thread (see [`keep`]) is looking after this entry's lease: for WAL mode or
    /// for the linger.
    keeper: bool,
    /// Waits for this process's background cleanup of the database's last journal: done
    /// before the lease is given up, so that cleanup can never delete blocks of the next
    /// writer's journal (see `journal.rs`).
    settle: Option<Settle>,
}

/// See [`Entry::settle`].
pub type Settle = Arc<dyn Fn() + Send + Sync>;

impl Entry {
    fn writing(&self) -> bool {
        self.reserved || self.pending || self.exclusive
    }

    /// Gives up a lease kept after its last write (the linger), whatever is left of it.
    fn end_linger(&mut self) -> Result<()> {
        if self.linger_until.take().is_none() || self.writing() {
            return Ok(());
        }
        self.release()
    }

    /// Gives the lease up, once the last journal's cleanup is done.
    fn release(&mut self) -> Result<()> {
        if let Some(settle) = &self.settle {
            settle();
        }
        match self.lease.as_mut() {
            Some(lease) => lease.release(),
            None => Ok(()),
        }
    }
}

/// A database's lock entry, shared by its connections in this process.
pub type SharedEntry = Arc<Mutex<Entry>>;

/// The process's lock table, like the unix VFS's per-inode table: one entry per database
/// identity (endpoint, bucket, name), shared by every connection to it. Owned by the VFS.
#[derive(Default)]
pub struct LockTable {
    entries: Mutex<HashMap<Arc<str>, SharedEntry>>,
}

impl LockTable {
    /// The lock entry of a database, by its identity.
    pub fn entry(&self, db: &Arc<str>) -> SharedEntry {
        locked(&self.entries).entry(db.clone()).or_default().clone()
    }

    /// The write fence of a database: its files' stores send writes only while it is open.
    pub fn fence(&self, db: &Arc<str>) -> Arc<Fence> {
        locked(&self.entry(db)).fence.clone()
    }

    /// How many databases have an entry (tests: state is freed when unused).
    pub fn len(&self) -> usize {
        locked(&self.entries).len()
    }

    /// True when no database has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets entries no connection uses any more (a process that opens many databases
    /// in turn must not keep one entry per name for ever).
    pub fn prune(&self) {
        let mut unused = Vec::new();
        locked(&self.entries).retain(|_, e| {
            let used = Arc::strong_count(e) > 1;
            if !used {
                unused.push(e.clone());
            }
            used
        });
        // Dropped outside the table's lock: a lease's last cleanup in a versioned bucket
        // sends requests (`lease.rs`), and no other database waits for them.
        drop(unused);
    }

    /// Gives up the lease of `db` if it is kept only for its linger.
    pub fn end_linger(&self, db: &Arc<str>) {
        let entry = locked(&self.entries).get(db).cloned();
        if let Some(entry) = entry {
            if let Err(err) = locked(&entry).end_linger() {
                log_release_failure(&err);
            }
        }
    }

    /// Gives up every lease kept only for its linger (the process is exiting: the next
    /// writer elsewhere must not wait for the lease to expire). Entries another thread
    /// is using are skipped rather than waited for.
    pub fn end_lingering(&self) {
        let entries: Vec<SharedEntry> = locked(&self.entries).values().cloned().collect();
        for entry in entries {
            if let Ok(mut e) = entry.try_lock() {
                if let Err(err) = e.end_linger() {
                    log_release_failure(&err);
                }
            }
        }
    }
}

fn log_release_failure(err: &crate::error::Error) {
    crate::logging::log(
        code::IOERR_UNLOCK,
        &format!("{err} (giving up a lease kept after its last write; it expires by itself)"),
    );
}

/// The keeper of a database's lease in this process: one thread that renews the lease
/// when a third of its term has passed, while the process holds it with no rollback write
/// transaction renewing it on its own path:
/// - for WAL mode (see [`LockTable::hold_for_wal`]), until the process leaves WAL mode or
///   the lease is lost (every later write then fails, and says so);
/// - for the linger after a write transaction, until the linger runs out: then it gives
///   the lease up. During a write transaction the writer renews on its own path, before
///   each batch of writes: a writer whose requests hang or whose process is frozen must
///   lose the lease to the next writer, not keep it alive from here; its unlock starts a
///   keeper again.
///
/// It holds only a weak reference: the entry's last user going ends it.
fn keep(entry: Weak<Mutex<Entry>>) {
    loop {
        let Some(strong) = entry.upgrade() else {
            return;
        };
        let wait = {
            let mut guard = locked(&strong);
            let e = &mut *guard;
            let writing = e.writing();
            let wal = e.wal;
            let Some(lease) = e.lease.as_mut().filter(|l| l.is_held()) else {
                e.keeper = false;
                e.linger_until = None;
                return;
            };
            let now = Instant::now();
            if !wal && writing {
                // The writer's business (see above).
                e.keeper = false;
                return;
            }
            if !wal && e.linger_until.is_none_or(|t| t <= now) {
                // No write transaction and no linger left: let go.
                e.linger_until = None;
                if let Err(err) = e.release() {
                    log_release_failure(&err);
                }
                e.keeper = false;
                return;
            }
            let renew_in = lease.term() / 6;
            if let Err(err) = lease.ensure_held() {
                // Lost (the next write fails and says so), or not renewed this time (a
                // later round, or the writer itself, tries again).
                let lost = !lease.is_held();
                let why = match (wal, lost) {
                    (true, true) => "; the lease is lost: every later write to this database fails",
                    (false, true) => "; it was only kept after the last write: the next write transaction takes it again",
                    (_, false) => "; retrying",
                };
                crate::logging::log(
                    code::IOERR_LOCK,
                    &format!(
                        "s3vfs: renewing the write lease of {} failed: {err}{why}",
                        lease.db_name()
                    ),
                );
                if lost {
                    e.keeper = false;
                    e.linger_until = None;
                    return;
                }
            }
            // In WAL mode there is no linger (`hold_for_wal` ended it).
            match e.linger_until {
                Some(t) => t.saturating_duration_since(now).min(renew_in),
                None => renew_in,
            }
        };
        drop(strong);
        std::thread::sleep(wait.max(Duration::from_millis(1)));
    }
}

impl Drop for Lock {
    /// A connection closed without unlocking gives its locks (and a rollback writer's
    /// lease) up here. The last connection of this process to a database gives up a
    /// lease held for WAL mode or kept for its linger: a short-lived process must not
    /// leave the next writer waiting.
    fn drop(&mut self) {
        if self.level > NONE {
            if let Err(err) = self.unlock(NONE) {
                log_release_failure(&err);
            }
        }
        let mut e = locked(&self.entry);
        e.conns = e.conns.saturating_sub(1);
        if e.conns == 0 {
            // A lease held for WAL mode, or kept for its linger, goes with the last
            // connection.
            if let Err(err) = end_wal(&mut e).and_then(|()| e.end_linger()) {
                log_release_failure(&err);
            }
            // The last cleanup of a versioned bucket's bookkeeping runs now, while the
            // process surely lives (the lease's own drop may come later, or never, if a
            // keeper thread still holds the entry when the process exits).
            if let Some(lease) = e.lease.as_mut() {
                if let Err(err) = lease.sweep_now() {
                    crate::logging::log(
                        code::IOERR_DELETE,
                        &format!("{err} (cleaning up old versions of this database's bookkeeping; the next writer tries again)"),
                    );
                }
            }
        }
    }
}

/// How holding the lease for WAL mode came out.
#[derive(Debug, PartialEq, Eq)]
pub enum WalHold {
    /// The process holds the lease (or locking is off: nothing to hold).
    Held,
    /// Another process holds it.
    Busy(LeaseRecord),
}

impl LockTable {
    /// The database `db` is used in WAL mode by this process (its WAL is being opened):
    /// takes the writer lease, if this process does not hold it yet, and keeps it, renewed
    /// in the background, until [`LockTable::wal_done`] or the last connection's close.
    ///
    /// `taken_over` runs when the lease was taken from another writer's version: that
    /// writer may have checkpointed pages without changing block 0 (in WAL mode SQLite
    /// bumps the change counter only in commits that touch page 1), so nothing this
    /// process cached of the database can be trusted.
    pub fn hold_for_wal(
        &self,
        db: &Arc<str>,
        locking: Locking,
        new_lease: impl FnOnce() -> Lease,
        taken_over: impl FnOnce(),
    ) -> Result<WalHold> {
        if locking == Locking::None {
            return Ok(WalHold::Held);
        }
        let entry = self.entry(db);
        let mut guard = locked(&entry);
        let e = &mut *guard;
        e.linger_until = None;
        let lease = e.lease.get_or_insert_with(new_lease);
        if !lease.is_held() {
            match lease.acquire()? {
                Acquire::Busy(holder) => return Ok(WalHold::Busy(holder)),
                Acquire::Taken => {
                    e.taken += 1;
                    taken_over();
                }
                Acquire::Quick => {}
            }
        }
        e.wal = true;
        // A keeper that was looking after the linger goes on for WAL mode.
        if !e.keeper {
            e.keeper = true;
            let weak = Arc::downgrade(&entry);
            drop(guard);
            std::thread::spawn(move || keep(weak));
        }
        Ok(WalHold::Held)
    }

    /// The WAL of `db` was deleted (checkpointed away at the last close, or the database
    /// went back to a rollback journal): the lease goes, unless a connection is writing
    /// in rollback mode right now (it goes when that connection unlocks).
    pub fn wal_done(&self, db: &Arc<str>) -> Result<()> {
        let entry = self.entry(db);
        let mut e = locked(&entry);
        end_wal(&mut e)
    }

    /// Whether this process holds `db`'s lease for WAL mode.
    pub fn is_wal(&self, db: &Arc<str>) -> bool {
        locked(&self.entry(db)).wal
    }

    /// Before a WAL write: the lease held for WAL mode must still be ours (renewed if a
    /// third of its term has passed).
    pub fn ensure_wal_writer(&self, db: &Arc<str>) -> Result<()> {
        let entry = self.entry(db);
        let mut e = locked(&entry);
        if !e.wal {
            return Ok(());
        }
        match e.lease.as_mut() {
            Some(lease) => lease.ensure_held(),
            None => Ok(()),
        }
    }
}

/// Leaves WAL mode in `e`: releases the lease unless a connection is a writer.
fn end_wal(e: &mut Entry) -> Result<()> {
    if !e.wal {
        return Ok(());
    }
    e.wal = false;
    if e.writing() {
        Ok(())
    } else {
        e.release()
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection's view: its level and the shared entry.
pub struct Lock {
    entry: SharedEntry,
    pub level: LockLevel,
    locking: Locking,
    /// The entry's `taken` count when this connection's view was last known current (its
    /// read transaction began, or the check after a take passed).
    seen: u64,
    /// How long the lease is kept after this connection's write transaction ends.
    linger: Duration,
}

/// The result of asking for a lock.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    /// Another connection of this process holds a conflicting lock.
    Busy,
    /// Another process holds the writer lease.
    BusyElsewhere(LeaseRecord),
    /// `locking=strict`: this many readers in other processes must finish first.
    ReadersElsewhere(usize),
}

impl Lock {
    pub fn new(entry: SharedEntry, locking: Locking) -> Lock {
        locked(&entry).conns += 1;
        Lock {
            entry,
            level: NONE,
            locking,
            seen: 0,
            linger: Duration::ZERO,
        }
    }

    /// Keeps the lease `linger` after each write transaction (see [`Entry::linger_until`]).
    pub fn with_linger(mut self, linger: Duration) -> Lock {
        self.linger = linger;
        self
    }

    /// Waits with `settle` before giving the lease up (see [`Entry::settle`]).
    pub fn with_settle(self, settle: Settle) -> Lock {
        locked(&self.entry).settle.get_or_insert(settle);
        self
    }

    /// Raises the lock to `want`, following SQLite's rules. `new_lease` makes the lease
    /// object the first time a writer in this process needs it. `still_current` checks,
    /// after a lease was taken from another writer (or when this connection's view is
    /// older than such a take), that what this connection read is still the stored
    /// database; if not, it must start over (SQLite sees BUSY and, for a statement that
    /// has not read yet, retries with a fresh read). It is told whether that writer never
    /// released the lease (it may have left a hot journal).
    pub fn lock(
        &mut self,
        want: LockLevel,
        new_lease: impl FnOnce() -> Lease,
        still_current: impl FnOnce(bool) -> Result<bool>,
    ) -> Result<Outcome> {
        if self.level >= want {
            return Ok(Outcome::Granted);
        }
        let mut e = locked(&self.entry);
        if want == SHARED {
            if e.pending || e.exclusive {
                return Ok(Outcome::Busy);
            }
            if self.locking == Locking::Strict && e.mark.is_none() {
                let lease = e.lease.get_or_insert_with(new_lease);
                let mark = Mark::register(
                    lease.client().clone(),
                    lease.db_name(),
                    lease.owner(),
                    lease.term(),
                )?;
                // The mark is stored: a writer that flags pending from now on waits for
                // us; one that flagged it before is seen here.
                if let Some(holder) = lease.pending_writer()? {
                    let _ = mark.remove();
                    return Ok(Outcome::BusyElsewhere(holder));
                }
                e.mark = Some(mark);
            }
            e.shared += 1;
            self.seen = e.taken;
            self.level = SHARED;
            return Ok(Outcome::Granted);
        }
        // RESERVED, or EXCLUSIVE straight from SHARED (as for a hot-journal rollback):
        // both make this connection the writer.
        if self.level < RESERVED {
            if e.writing() {
                return Ok(Outcome::Busy);
            }
            // In WAL mode the process holds the lease already (see `hold_for_wal`).
            let held_for_wal = e.wal && e.lease.as_ref().is_some_and(Lease::is_held);
            if self.locking != Locking::None && !held_for_wal {
                let e = &mut *e;
                e.linger_until = None;
                let lease = e.lease.get_or_insert_with(new_lease);
                // Still held from this process's last write (the linger): nobody else can
                // have written since, as long as it is still ours.
                let kept = lease.is_held() && lease.ensure_held().is_ok();
                let got = if kept {
                    Acquire::Quick
                } else {
                    lease.acquire()?
                };
                if let Acquire::Busy(holder) = got {
                    return Ok(Outcome::BusyElsewhere(holder));
                }
                if got == Acquire::Taken {
                    e.taken += 1;
                }
                // Quick (our own release, nobody wrote since) needs no check, unless this
                // connection's view predates a take from another writer: it may still
                // read what that writer replaced (a retry in the read transaction that
                // just got Busy here, or a reader older than another connection's take).
                if (got == Acquire::Taken || self.seen < e.taken)
                    && !still_current(lease.took_unreleased())?
                {
                    lease.release()?;
                    return Ok(Outcome::Busy);
                }
                self.seen = e.taken;
            }
            e.reserved = true;
            self.level = RESERVED;
        }
        if want >= PENDING {
            e.pending = true;
            self.level = PENDING;
            // Our own SHARED lock is among the readers counted.
            if e.shared > 1 {
                return Ok(Outcome::Busy);
            }
            // The lease exists: this connection took it at RESERVED.
            if let (Locking::Strict, Some(lease)) = (self.locking, e.lease.as_mut()) {
                lease.set_pending()?;
                let others =
                    readers::live_others(lease.client().as_ref(), lease.db_name(), lease.owner())?;
                if others > 0 {
                    return Ok(Outcome::ReadersElsewhere(others));
                }
            }
            e.exclusive = true;
            self.level = EXCLUSIVE;
        }
        Ok(Outcome::Granted)
    }

    /// Lowers the lock to `to` (SHARED or NONE), giving the lease up when leaving RESERVED.
    pub fn unlock(&mut self, to: LockLevel) -> Result<()> {
        if self.level <= to {
            return Ok(());
        }
        let mut e = locked(&self.entry);
        if self.level >= PENDING {
            e.pending = false;
            e.exclusive = false;
        }
        let mut released = Ok(());
        if self.level >= RESERVED && to < RESERVED {
            e.reserved = false;
            if e.wal {
                // Kept while the database is in WAL mode here (see `hold_for_wal`).
            } else if self.linger.is_zero() {
                released = e.release();
            } else if e.lease.as_ref().is_some_and(Lease::is_held) {
                // The keeper gives it up when the linger runs out.
                e.linger_until = Some(Instant::now() + self.linger);
                if !e.keeper {
                    e.keeper = true;
                    let weak = Arc::downgrade(&self.entry);
                    std::thread::spawn(move || keep(weak));
                }
            }
        }
        if to == NONE && self.level >= SHARED {
            e.shared = e.shared.saturating_sub(1);
            if e.shared == 0 {
                if let Some(mark) = e.mark.take() {
                    // A mark left behind only delays writers until it expires.
                    if let Err(err) = mark.remove() {
                        crate::logging::log(
                            code::IOERR_UNLOCK,
                            &format!("{err} (removing a reader mark; it expires by itself)"),
                        );
                    }
                }
            }
        }
        self.level = to;
        released
    }

    /// Whether any connection, here or (with a lease) anywhere, holds RESERVED or more.
    pub fn reserved_anywhere(&self, new_lease: impl FnOnce() -> Lease) -> Result<bool> {
        let mut e = locked(&self.entry);
        if e.writing() {
            return Ok(true);
        }
        if self.locking == Locking::None {
            return Ok(false);
        }
        let lease = e.lease.get_or_insert_with(new_lease);
        let term = lease.term();
        // Within the grace period after expiry the holder may still have a request in
        // flight: its journal is not hot yet.
        Ok(lease
            .read()?
            .is_some_and(|(r, _)| r.blocks_takeover(crate::lease::now_ms(), term)))
    }

    /// During a read transaction (`locking=strict`): keeps this process's reader mark
    /// alive, or fails if it lapsed.
    pub fn keep_reading(&self) -> Result<()> {
        if self.locking != Locking::Strict || self.level == NONE {
            return Ok(());
        }
        match locked(&self.entry).mark.as_mut() {
            Some(mark) => mark.keep_alive(),
            None => Ok(()),
        }
    }

    /// Before a writer stores anything: the lease must still be ours (renewed if a third
    /// of its term has passed). Readers and `locking=none` have nothing to check.
    pub fn ensure_writer(&self) -> Result<()> {
        if self.locking == Locking::None || self.level < RESERVED {
            return Ok(());
        }
        match locked(&self.entry).lease.as_mut() {
            Some(lease) => lease.ensure_held(),
            None => Ok(()),
        }
    }
}
