//! One open file's writes and what makes them durable: buffering, the flush (a database's
//! journal first), truncation, the size SQLite asks for, and close.

use super::S3File;
use crate::codes::{LockLevel, OpenKind};
use crate::error::{Error, Result};
use crate::store::DIRTY_LIMIT;

impl S3File {
    /// Flushes buffered writes; a database flushes its journal first.
    pub(super) fn flush(&self) -> Result<()> {
        // The journal is the writer's: a reader's unlock must not store another
        // connection's buffered journal (it would cost PUTs while that one still writes).
        let writer = self
            .lock
            .as_ref()
            .is_none_or(|l| l.level >= LockLevel::Reserved);
        if let Some(lock) = &self.lock {
            let journal_dirty = writer && self.vfs.journals.has_dirty(&self.journal);
            if self.file().dirty_bytes() > 0 || journal_dirty {
                lock.ensure_writer()?;
            }
        }
        self.ensure_wal_writer()?;
        // Between batches of a long flush the writer's lease is renewed as needed.
        let keep_going = || match &self.lock {
            Some(lock) => lock.ensure_writer(),
            None => Ok(()),
        };
        if self.kind == OpenKind::Journal {
            // The previous journal's cleanup must not delete blocks this one stores.
            self.vfs.journals.settle(&self.id.key());
        }
        let mut file = self.file();
        match self.kind {
            OpenKind::Database if writer => {
                self.vfs
                    .journals
                    .flush_database(&self.journal, &mut file, &keep_going)
            }
            _ => file.flush(),
        }
    }

    /// Buffers a write; flushes early when the buffer passes the dirty limit, which is
    /// always allowed because a database flush stores its journal first.
    pub fn write(&mut self, data: &[u8], off: u64) -> Result<()> {
        if self.readonly {
            return Err(Error::ReadOnly("the database was opened read-only".into()));
        }
        match self.kind {
            // A write needs the file's size; a database's comes from its header (no
            // request when block 0 is cached) rather than from a listing.
            OpenKind::Database => {
                self.file().database_size()?;
            }
            OpenKind::Wal => self.wal_write(off)?,
            _ => {}
        }
        self.file().write(data, off)?;
        // The size is read in its own statement: a guard held across the flush, which
        // locks the file again, would deadlock.
        let over_limit = self.file().dirty_bytes() > DIRTY_LIMIT;
        if over_limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Shrinks the file.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        // A checkpoint "truncates" the database to the size it already has: nothing to
        // cut, and no listing needed to find out.
        if self.kind == OpenKind::Database && self.file().known_size().is_some_and(|s| size >= s) {
            return Ok(());
        }
        match self.kind {
            OpenKind::Wal => self.truncate_wal(size),
            kind => self.file().truncate(size, kind == OpenKind::Journal),
        }
    }

    /// Stores every buffered block (in parallel; a database's journal first) and returns
    /// when S3 has acknowledged all of them.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()
    }

    /// The file's size: a database's from its header when it vouches for it.
    pub fn size(&mut self) -> Result<u64> {
        match self.kind {
            OpenKind::Database => self.file().database_size(),
            _ => self.file().cached_size(),
        }
    }

    /// Flushes what is buffered (a file closed without a sync still keeps its writes, as
    /// a local file would) and forgets the file.
    pub fn close(mut self) -> Result<()> {
        let flushed = self.flush();
        // The lock entry is shared by identity; dropping ours first lets the table forget
        // a database no connection uses any more.
        self.lock = None;
        match self.kind {
            OpenKind::Journal => {
                let size = self.file().known_size();
                self.vfs.journals.closed(&self.id.key(), size);
            }
            OpenKind::Database => {
                // A process may exit right after closing its database: finish the journal
                // cleanup now rather than leave blocks behind (harmless, but untidy).
                self.vfs.journals.settle(&self.journal);
                self.vfs.journals.forget(&self.journal);
                self.vfs.closed_database(self.handle, &self.id.key());
            }
            _ => {}
        }
        flushed
    }
}
