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
            if self.locking != Locking::None {
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
            if let Some(lease) = e.lease.as_mut() {
                released = lease.release();
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
