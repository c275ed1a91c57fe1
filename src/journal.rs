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
//!   block 0 is gone; anything touching that journal name again waits for the cleanup.
//! - **Hot-journal check.** The start of a read transaction asks for block 0 of the
//!   database and whether the journal exists. Both are fetched at once when the lock is
//!   taken; the answer about the journal is handed to the `xAccess` call that follows.

use crate::error::Result;
use crate::store::BlockFile;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A block file shared between its handle and the database that orders flushes by it.
pub type SharedFile = Arc<Mutex<BlockFile>>;

/// How long a prefetched existence answer stays usable: SQLite asks right after taking
/// the lock, so anything older belongs to a lock that was not followed by the check.
const HINT_TTL: Duration = Duration::from_secs(2);

static OPEN: Lazy<Mutex<HashMap<String, Weak<Mutex<BlockFile>>>>> = Lazy::new(Default::default);
static CLOSED_SIZES: Lazy<Mutex<HashMap<String, u64>>> = Lazy::new(Default::default);
static CLEANUPS: Lazy<Mutex<HashMap<String, JoinHandle<()>>>> = Lazy::new(Default::default);
static EXISTS_HINTS: Lazy<Mutex<HashMap<String, (bool, Instant)>>> = Lazy::new(Default::default);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The rollback journal's name for a database name (SQLite's own rule).
pub fn journal_name(db: &str) -> String {
    format!("{db}-journal")
}

/// Records an open journal so its database can flush it first.
pub fn opened(name: &str, file: &SharedFile) {
    locked(&OPEN).insert(name.to_string(), Arc::downgrade(file));
}

/// Records a closed journal's size, so deleting it needs no listing.
pub fn closed(name: &str, size: Option<u64>) {
    locked(&OPEN).remove(name);
    if let Some(size) = size {
        locked(&CLOSED_SIZES).insert(name.to_string(), size);
    }
}

/// True when the database's open journal has writes waiting.
pub fn has_dirty_journal(db_name: &str) -> bool {
    let journal = locked(&OPEN)
        .get(&journal_name(db_name))
        .and_then(Weak::upgrade);
    journal.is_some_and(|j| locked(&j).dirty_bytes() > 0)
}

/// Flushes the database's open journal, then the database.
pub fn flush_database(db_name: &str, db: &mut BlockFile) -> Result<()> {
    let journal = locked(&OPEN)
        .get(&journal_name(db_name))
        .and_then(Weak::upgrade);
    if let Some(j) = journal {
        locked(&j).flush()?;
    }
    db.flush()
}

/// Waits for a background cleanup of `name`, if one is running.
pub fn settle(name: &str) {
    let pending = locked(&CLEANUPS).remove(name);
    if let Some(t) = pending {
        let _ = t.join();
    }
}

/// Deletes a file: block 0 now, the rest in the background (see the module comment).
pub fn delete(name: &str, mut file: BlockFile, on_error: fn(&crate::error::Error)) -> Result<()> {
    settle(name);
    let known = locked(&CLOSED_SIZES).remove(name);
    file.delete_first()?;
    let cleanup = std::thread::spawn(move || {
        if let Err(e) = file.delete_rest(known) {
            on_error(&e);
        }
    });
    locked(&CLEANUPS).insert(name.to_string(), cleanup);
    Ok(())
}

/// Remembers whether a journal exists, for the `xAccess` call that follows.
pub fn hint_exists(name: &str, exists: bool) {
    locked(&EXISTS_HINTS).insert(name.to_string(), (exists, Instant::now()));
}

/// Takes a fresh remembered answer, once.
pub fn take_exists_hint(name: &str) -> Option<bool> {
    let (exists, at) = locked(&EXISTS_HINTS).remove(name)?;
    (at.elapsed() < HINT_TTL).then_some(exists)
}
