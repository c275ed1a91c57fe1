//! What a database and its rollback journal need from each other, across the separate
//! `sqlite3_file` handles SQLite opens for them.
//!
//! - **Order.** The VFS reports `SQLITE_IOCAP_SEQUENTIAL`, so SQLite does not sync the
//!   journal on its own before writing database pages. Instead every flush of a database
//!   first flushes its open journal, and returns only when both are stored: the journal
//!   is durable before any database page is, which is the order the rollback protocol
//!   needs, in two round trips instead of three or four.
//! - **Commit point.** Deleting a journal deletes block 0 now and the other blocks on a
//!   background thread. Without block 0 a journal is never hot, so the commit is done when
//!   block 0 is gone. The cleanup ends before the next journal of that name is stored
//!   (its first flush waits), before the lease is given up, and before a read transaction
//!   that asks S3 whether the journal exists: a writer keeping its lease between commits
//!   (the linger) overlaps it with its next transaction instead of waiting for it.
//! - **Hot-journal check.** The start of a read transaction asks for block 0 of the
//!   database and whether the journal exists. Both are fetched at once when the lock is
//!   taken; the answer about the journal is handed to the `xAccess` call that follows.

use crate::error::{Error, Result};
use crate::store::BlockFile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A block file shared between its handle and the database that orders flushes by it.
pub type SharedFile = Arc<Mutex<BlockFile>>;

/// How long a prefetched existence answer stays usable: SQLite asks right after taking
/// the lock, so anything older belongs to a lock that was not followed by the check.
const HINT_TTL: Duration = Duration::from_secs(2);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the process knows about journals, keyed by each journal's identity (endpoint,
/// bucket, name): never by a bare name, so a journal is only ever found by its own
/// database. Owned by the VFS.
#[derive(Default)]
pub struct Journals {
    open: Mutex<HashMap<Arc<str>, Weak<Mutex<BlockFile>>>>,
    closed_sizes: Mutex<HashMap<Arc<str>, u64>>,
    cleanups: Mutex<HashMap<Arc<str>, JoinHandle<()>>>,
    /// Blocks a committed journal left while its writer keeps the lease (see `delete`).
    deferred: Mutex<HashMap<Arc<str>, Deferred>>,
    exists_hints: Mutex<HashMap<Arc<str>, (bool, Instant)>>,
}

/// A committed journal's blocks after block 0, not deleted yet.
struct Deferred {
    file: BlockFile,
    known_size: Option<u64>,
    on_error: fn(&Error),
}

impl Deferred {
    /// Deletes the blocks from `first` on, on a background thread.
    fn delete_from(mut self, first: u64) -> JoinHandle<()> {
        std::thread::spawn(move || {
            if let Err(e) = self.file.delete_from(first, self.known_size) {
                (self.on_error)(&e);
            }
        })
    }
}

impl Journals {
    /// Records an open journal so its database can flush it first.
    pub fn opened(&self, id: &Arc<str>, file: &SharedFile) {
        locked(&self.open).insert(id.clone(), Arc::downgrade(file));
    }

    /// Records a closed journal's size, so deleting it needs no listing.
    pub fn closed(&self, id: &Arc<str>, size: Option<u64>) {
        locked(&self.open).remove(id);
        if let Some(size) = size {
            locked(&self.closed_sizes).insert(id.clone(), size);
        }
    }

    fn open_journal(&self, id: &Arc<str>) -> Option<SharedFile> {
        locked(&self.open).get(id).and_then(Weak::upgrade)
    }

    /// True when the open journal `id` has writes waiting.
    pub fn has_dirty(&self, id: &Arc<str>) -> bool {
        self.open_journal(id)
            .is_some_and(|j| locked(&j).dirty_bytes() > 0)
    }

    /// Drops the open journal's buffered writes (its transaction failed).
    pub fn discard(&self, id: &Arc<str>) {
        if let Some(j) = self.open_journal(id) {
            locked(&j).discard_dirty();
        }
    }

    /// Flushes the open journal `journal` (if any), then the database.
    pub fn flush_database(
        &self,
        journal: &Arc<str>,
        db: &mut BlockFile,
        keep_going: &(dyn Fn() -> Result<()> + Sync),
    ) -> Result<()> {
        if let Some(j) = self.open_journal(journal) {
            let mut j = locked(&j);
            // The previous journal's cleanup must not delete blocks this one stores: a
            // running one ends first (it started a commit ago at least); deferred blocks
            // this journal overwrites are left to it, the others go beside its PUTs.
            self.join_cleanup(journal);
            let deferred = locked(&self.deferred).remove(journal);
            if let Some(d) = deferred {
                let ours = j.known_size().unwrap_or(0).div_ceil(j.block_size());
                locked(&self.cleanups).insert(journal.clone(), d.delete_from(ours));
            }
            j.flush_with(keep_going)?;
        }
        db.flush_with(keep_going)
    }

    /// Ends the cleanup of `id`: waits for a running one, deletes deferred blocks.
    pub fn settle(&self, id: &Arc<str>) {
        self.join_cleanup(id);
        let deferred = locked(&self.deferred).remove(id);
        if let Some(d) = deferred {
            let _ = d.delete_from(1).join();
        }
    }

    fn join_cleanup(&self, id: &Arc<str>) {
        let pending = locked(&self.cleanups).remove(id);
        if let Some(t) = pending {
            let _ = t.join();
        }
    }

    /// Deletes a file: block 0 now, the rest in the background (see the module comment),
    /// or, when `defer` (the writer keeps its lease after the commit), when the next
    /// journal is stored, the lease given up or the database closed.
    pub fn delete(
        &self,
        id: &Arc<str>,
        mut file: BlockFile,
        on_error: fn(&Error),
        defer: bool,
    ) -> Result<()> {
        self.settle(id);
        let known_size = locked(&self.closed_sizes).remove(id);
        file.delete_first()?;
        let rest = Deferred {
            file,
            known_size,
            on_error,
        };
        if defer {
            locked(&self.deferred).insert(id.clone(), rest);
        } else {
            locked(&self.cleanups).insert(id.clone(), rest.delete_from(1));
        }
        Ok(())
    }

    /// Forgets what is known of a journal whose database closed (its size and any stale
    /// hint): a process that opens many databases in turn keeps nothing per name.
    pub fn forget(&self, id: &Arc<str>) {
        if locked(&self.open)
            .get(id)
            .is_some_and(|w| w.strong_count() > 0)
        {
            return; // another connection's journal is open
        }
        locked(&self.open).remove(id);
        locked(&self.closed_sizes).remove(id);
        locked(&self.exists_hints).remove(id);
    }

    /// How many journals the process keeps anything for (tests: state is freed).
    pub fn tracked(&self) -> usize {
        locked(&self.open).len()
            + locked(&self.closed_sizes).len()
            + locked(&self.cleanups).len()
            + locked(&self.deferred).len()
            + locked(&self.exists_hints).len()
    }

    /// Remembers whether a journal exists, for the `xAccess` call that follows.
    pub fn hint_exists(&self, id: &Arc<str>, exists: bool) {
        locked(&self.exists_hints).insert(id.clone(), (exists, Instant::now()));
    }

    /// Takes a fresh remembered answer, once.
    pub fn take_exists_hint(&self, id: &Arc<str>) -> Option<bool> {
        let (exists, at) = locked(&self.exists_hints).remove(id)?;
        (at.elapsed() < HINT_TTL).then_some(exists)
    }
}
