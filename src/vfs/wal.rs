//! WAL mode, as the VFS object serves it: the parts of [`S3Vfs`] and [`S3File`] that only
//! a database in WAL mode uses.
//!
//! - **One process at a time.** Opening a database's WAL takes the database's writer lease
//!   for the process (`lock.rs` renews it in the background) and keeps it until the WAL is
//!   deleted: the WAL index lives in this process's memory (`shm.rs`), so no other process
//!   could read the WAL consistently. Another process gets `SQLITE_BUSY` with a message
//!   naming the holder.
//! - **One WAL file per process.** Every connection of the process shares one block file
//!   for the WAL, as connections share one inode locally: each sees the frames the others
//!   buffered.
//! - **Existence without a request.** SQLite asks whether the WAL exists at the start of
//!   every read transaction. Open here means yes; a database header just read in rollback
//!   mode means no; otherwise block 0 decides (deleting a WAL removes it first).
//! - **Restarts.** A write at offset 0 is a new WAL header: SQLite starts the WAL over
//!   after a complete checkpoint. The block file then stores the new block 0 before any
//!   later block and deletes the blocks past the new end in the background
//!   ([`BlockFile::rewrite_from_start`]); a truncation (the `TRUNCATE` checkpoint) deletes
//!   block 0 at once and the rest in the background.

use super::{locked, S3File, S3Vfs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::journal::SharedFile;
use crate::layout::DbId;
use crate::lease::LeaseRecord;
use crate::lock::WalHold;
use crate::shm::ShmLock;
use crate::store::BlockFile;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a database header's "not in WAL mode" stays usable for the `xAccess` of its
/// WAL that SQLite makes right after taking the lock.
const WAL_HINT_TTL: Duration = Duration::from_secs(2);

impl S3Vfs {
    /// Takes (or keeps) the writer lease for a database going into WAL mode here: its WAL
    /// index will live in this process's memory, so no other process may use it meanwhile.
    pub(super) fn hold_for_wal(&self, cfg: &Arc<Config>, db: &DbId) -> Result<()> {
        let fence = self.locks.fence(&db.key());
        let lease = || S3File::new_lease(cfg, self, db, &fence);
        // Taken from another writer: drop what this process cached of the database.
        let forget = || self.block_file(cfg, &db.name).forget_cached_blocks();
        match self
            .locks
            .hold_for_wal(&db.key(), cfg.locking, lease, forget)?
        {
            WalHold::Held => Ok(()),
            WalHold::Busy(holder) => Err(Error::Busy(wal_busy_message(&db.name, &holder))),
        }
    }

    /// The process's one WAL file of identity `id`, made from `file` if none is open.
    pub(super) fn shared_wal(&self, id: &Arc<str>, file: BlockFile) -> SharedFile {
        let mut wals = locked(&self.wals);
        wals.retain(|_, w| w.strong_count() > 0);
        if let Some(f) = wals.get(id).and_then(Weak::upgrade) {
            return f;
        }
        let f = Arc::new(Mutex::new(file));
        wals.insert(id.clone(), Arc::downgrade(&f));
        f
    }

    /// Whether a WAL is open in this process.
    fn wal_open(&self, id: &Arc<str>) -> bool {
        locked(&self.wals)
            .get(id)
            .is_some_and(|w| w.strong_count() > 0)
    }

    /// `xAccess` of a WAL (see the module comment).
    pub(super) fn wal_exists(
        &self,
        db: &DbId,
        cfg: &Config,
        id: &Arc<str>,
        name: &str,
    ) -> Result<bool> {
        if self.wal_open(id) {
            return Ok(true);
        }
        let hint = locked(&self.no_wal_hints).remove(&db.key());
        if hint.is_some_and(|at| at.elapsed() < WAL_HINT_TTL) {
            return Ok(false);
        }
        self.journals.settle(id);
        self.block_file(cfg, name).first_block_exists()
    }

    /// After deleting a file of `db`: when it was the WAL of a database this process holds
    /// in WAL mode, every block goes now, while the lease (which fences these deletes) is
    /// still held; then the lease goes. SQLite deletes a WAL when it was checkpointed
    /// completely and no connection uses it: at the last close, or on the way back to a
    /// rollback journal.
    pub(super) fn deleted_wal(&self, db: &DbId, id: &Arc<str>) -> Result<()> {
        if !self.locks.is_wal(&db.key()) {
            return Ok(());
        }
        self.journals.settle(id);
        self.locks.wal_done(&db.key())
    }

    /// A read transaction started from `header`: unless it says WAL mode (bytes 18 and 19
    /// are 2), the WAL SQLite asks about next does not exist.
    pub(super) fn note_header(&self, db: &Arc<str>, header: &[u8]) {
        if header.get(18..20) != Some(&[2, 2][..]) {
            locked(&self.no_wal_hints).insert(db.clone(), Instant::now());
        }
    }
}

/// Why a database in WAL mode in another process cannot be used here.
fn wal_busy_message(name: &str, holder: &LeaseRecord) -> String {
    format!(
        "s3vfs: {name} is in WAL mode and another process holds it (host {}, pid {}, lease until {} ms since the epoch): a WAL database is served by one process at a time, because its WAL index lives in that process's memory; no other process can read or write it until that one closes it (or converts it back with PRAGMA journal_mode=delete); set a busy_timeout to wait for it",
        holder.host, holder.pid, holder.expires_ms
    )
}

impl S3File {
    /// `xShmMap`: the address of region `index` of this database's WAL index, made when
    /// `extend`; `None` when it does not exist and may not be made.
    pub fn shm_map(&self, index: usize, size: usize, extend: bool) -> Result<Option<*mut u8>> {
        let node = self.vfs.shm.get(&self.db_key);
        let mut shm = locked(&node);
        shm.map(self.handle, index, size, extend)
            .map_err(|e| Error::Format(format!("s3vfs: {e} (for {})", self.id.name)))
    }

    /// `xShmLock` on this database's WAL index. Giving a slot up first stores what a
    /// checkpoint wrote to the database (with `synchronous=OFF` SQLite never syncs it, and
    /// the other connections of the process read the database from S3).
    pub fn shm_lock(&self, offset: usize, n: usize, flags: i32) -> Result<ShmLock> {
        if flags & crate::shm::flag::UNLOCK != 0 && self.file().dirty_bytes() > 0 {
            self.flush()?;
        }
        let node = self.vfs.shm.get(&self.db_key);
        let mut shm = locked(&node);
        Ok(shm.lock(self.handle, offset, n, flags))
    }

    /// `xShmUnmap`: this connection is done with the WAL index; the last one drops it.
    pub fn shm_unmap(&self) {
        self.vfs.shm.unmap(&self.db_key, self.handle);
    }

    /// A WAL write at offset 0 is a new WAL header: the WAL starts over (see the module
    /// comment). Called before the write is buffered.
    pub(super) fn wal_write(&self, off: u64) -> Result<()> {
        if off == 0 {
            self.file().rewrite_from_start()?;
        }
        Ok(())
    }

    /// Before storing what a WAL-mode database or its WAL buffered: the lease held for WAL
    /// mode must still be this process's (renewed if a third of its term has passed). The
    /// database's own lock stays SHARED in WAL mode, so it does not check this itself.
    pub(super) fn ensure_wal_writer(&self) -> Result<()> {
        if self.file().dirty_bytes() > 0 {
            self.vfs.locks.ensure_wal_writer(&self.db_key)?;
        }
        Ok(())
    }

    /// `xTruncate` of a WAL: to nothing (the `TRUNCATE` checkpoint) block 0 goes now and
    /// the rest in the background; a limit (`journal_size_limit`) cuts as any file.
    pub(super) fn truncate_wal(&self, size: u64) -> Result<()> {
        self.file().truncate_in_background(size)
    }
}
