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
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// A background thread renews the lease while `wal` is set.
    renewing: bool,
    /// Connections (open database handles) of this process using the entry.
    conns: u32,
    /// How many times this process took the lease after someone else's version
    /// ([`Acquire::Taken`]): another writer may have committed just before each.
    taken: u64,
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
        locked(&self.entries).retain(|_, e| Arc::strong_count(e) > 1);
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
    pub fn hold_for_wal(
        &self,
        db: &Arc<str>,
        locking: Locking,
        new_lease: impl FnOnce() -> Lease,
    ) -> Result<WalHold> {
        if locking == Locking::None {
            return Ok(WalHold::Held);
        }
        let entry = self.entry(db);
        let mut guard = locked(&entry);
        let e = &mut *guard;
        let lease = e.lease.get_or_insert_with(new_lease);
        if !lease.is_held() {
            if let Acquire::Busy(holder) = lease.acquire()? {
                return Ok(WalHold::Busy(holder));
            }
        }
        e.wal = true;
        if !e.renewing {
            e.renewing = true;
            let term = lease.term();
            let weak = Arc::downgrade(&entry);
            drop(guard);
            std::thread::spawn(move || renew_while_wal(weak, term));
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
    let writing = e.reserved || e.pending || e.exclusive;
    match e.lease.as_mut() {
        Some(lease) => {
            if writing {
                Ok(())
            } else {
                lease.release()
            }
        }
        None => Ok(()),
    }
}

/// The renewal thread of a lease held for WAL mode: renews it when a third of its term
/// has passed, until the process leaves WAL mode, the entry goes or the lease is lost.
fn renew_while_wal(entry: std::sync::Weak<Mutex<Entry>>, term: std::time::Duration) {
    let step = (term / 6).max(std::time::Duration::from_millis(20));
    loop {
        std::thread::sleep(step);
        let Some(entry) = entry.upgrade() else { return };
        let mut guard = locked(&entry);
        let e = &mut *guard;
        let wal = e.wal;
        let Some(lease) = e.lease.as_mut().filter(|_| wal) else {
            e.renewing = false;
            return;
        };
        if !lease.is_held() {
            e.renewing = false;
            return;
        }
        if let Err(err) = lease.ensure_held() {
            let lost = !lease.is_held();
            crate::logging::log(
                code::IOERR_LOCK,
                &format!(
                    "s3vfs: renewing the write lease of {} (WAL mode) failed: {err}{}",
                    lease.db_name(),
                    if lost {
                        "; the lease is lost: every later write to this database fails"
                    } else {
                        "; retrying"
                    }
                ),
            );
            if lost {
                e.renewing = false;
                return;
            }
        }
    }
}

impl Drop for Lock {
    /// The last connection of the process to close gives up a lease held for WAL mode.
    fn drop(&mut self) {
        // A connection closed without unlocking gives its locks (and a rollback writer's
        // lease) up here.
        if self.level > NONE {
            if let Err(err) = self.unlock(NONE) {
                crate::logging::log(
                    code::IOERR_UNLOCK,
                    &format!("{err} (unlocking at close; a lease left behind expires by itself)"),
                );
            }
        }
        let mut e = locked(&self.entry);
        e.conns = e.conns.saturating_sub(1);
        if e.conns == 0 && e.wal {
            if let Err(err) = end_wal(&mut e) {
                crate::logging::log(
                    code::IOERR_UNLOCK,
                    &format!(
                        "{err} (releasing the write lease at the last close; it expires by itself)"
                    ),
                );
            }
        }
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
        }
    }

    /// Raises the lock to `want`, following SQLite's rules. `new_lease` makes the lease
    /// object the first time a writer in this process needs it. `still_current` checks,
    /// after a lease was taken from another writer (or when this connection's view is
    /// older than such a take), that what this connection read is still the stored database; if not, it must start over (SQLite sees BUSY and, for a
    /// statement that has not read yet, retries with a fresh read).
    pub fn lock(
        &mut self,
        want: LockLevel,
        new_lease: impl FnOnce() -> Lease,
        still_current: impl FnOnce() -> Result<bool>,
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
            if e.reserved || e.pending || e.exclusive {
                return Ok(Outcome::Busy);
            }
            // In WAL mode the process holds the lease already (see `hold_for_wal`).
            let held_for_wal = e.wal && e.lease.as_ref().is_some_and(Lease::is_held);
            if self.locking != Locking::None && !held_for_wal {
                let e = &mut *e;
                let lease = e.lease.get_or_insert_with(new_lease);
                let got = lease.acquire()?;
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
                if (got == Acquire::Taken || self.seen < e.taken) && !still_current()? {
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
            if !e.wal {
                if let Some(lease) = e.lease.as_mut() {
                    released = lease.release();
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
        if e.reserved || e.pending || e.exclusive {
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
