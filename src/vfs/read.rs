//! Read transactions on a database: what each one asks S3 at its start, and the
//! hot-journal question it defers.
//!
//! SQLite starts every read transaction by asking whether the journal exists (its
//! hot-journal check). Asked at the start, that is a HEAD of journal block 0 beside the
//! conditional GET of block 0: two requests for a warm query that reads only cached blocks.
//! But a journal matters to a reader only through blocks it has not cached: a crashed
//! writer's half-stored pages are all a hot journal can spoil, and every cached block was
//! fetched by an earlier transaction that asked, under the block 0 still current (a commit
//! changes block 0, and the conditional GET then drops the cache). So a read transaction
//! starts with the GET alone and tells SQLite "no journal"; the first blocks it fetches go
//! out beside a ranged GET of journal block 0's header, which costs a request but no round
//! trip. If a journal that may be hot is there (block 0 exists and its header is not all
//! zero, SQLite's rule: a `PERSIST` journal between transactions is zeroed):
//! - a live writer's (the lease is held): reading goes on, exactly as SQLite's own check
//!   would let it (`locking=lease` readers may see a torn view, see the README); what the
//!   transaction cached is dropped at its end (`end_read`), since that writer may yet stop
//!   before storing block 0, and the next transaction asks at its start;
//! - a crashed writer's: the read fails with `SQLITE_BUSY` before anything it fetched is
//!   cached, and the next read transaction asks at its start, so SQLite rolls it back.
//!
//! A connection's first question is asked at a start: by the open, whose answer its
//! first transactions reuse, or by the first transaction that cannot reuse it (a loaded
//! machine took too long). A journal seen at the open is asked about at the start again
//! when that answer runs out. So a fresh connection never meets a crashed writer's journal
//! as a failed read, only as SQLite's rollback. A connection with nothing cached asks at
//! the start too: it will fetch anyway.
//!
//! A transaction that upgrades to write without having asked asks when it takes the
//! lease over from another writer (see `S3File::lock`): only a writer that never released
//! its lease can have left a journal. With `locking=none` there is no lease to tell a live
//! writer from a crashed one, so SQLite gets its answer at the start, as before.

use super::open::{check_header, OpenCheck};
use super::{S3File, S3Vfs};
use crate::codes::Locking;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::header::journal_may_be_hot;
use crate::layout::journal_name;

/// The journal header bytes the hot-journal rule looks at (SQLite reads the first one;
/// the magic and the record count fill 12, the nonce and sizes the rest of 28).
const JOURNAL_HEADER_BYTES: u64 = 28;

impl S3File {
    /// Starts a read transaction on a database: revalidates the cache through block 0
    /// (a conditional GET, answered 304 with no body when nothing changed). Right after the
    /// open, which asked the same, and while this process holds the writer lease, it asks
    /// nothing.
    pub(super) fn begin_read(&mut self) -> Result<()> {
        self.journal_unchecked = false;
        self.journal_seen = false;
        // While this process holds the writer lease nobody else can have committed (the
        // lease is exclusive, and this process's own commits went through the shared
        // cache), and no journal can be hot (a writer holds RESERVED): no request at all.
        if self.cfg.locking != Locking::None && self.fence.remaining().is_some() {
            let cached = self.file().keep_header();
            if let Some(header) = cached {
                self.snapshot = header;
                self.vfs.journals.hint_exists(&self.journal, false);
                return Ok(());
            }
        }
        // Just opened: the open asked both questions a moment ago.
        let reused = self.open_check.as_mut().and_then(OpenCheck::take);
        if let Some(journal_exists) = reused {
            let cached = self.file().reuse_header();
            if let Some(header) = cached {
                check_header(&header, &self.cfg.target.bucket, &self.id.name)?;
                self.snapshot = header;
                self.vfs.journals.hint_exists(&self.journal, journal_exists);
                self.full_check_next = journal_exists;
                return Ok(());
            }
        }
        self.open_check = None;
        // The last journal's cleanup ends first: a HEAD of the journal must see it gone.
        self.vfs.journals.settle(&self.journal);
        // Deferred only on a warm connection (block 0 cached): a cold one fetches anyway,
        // and asking at the start lets SQLite roll a crashed writer's journal back at once
        // instead of failing the first read with "retry".
        let full = std::mem::take(&mut self.full_check_next);
        let warm = self.file().cached_header().is_some();
        if self.cfg.locking != Locking::None && !full && warm {
            let revalidated = self.file().revalidate();
            self.snapshot = revalidated?;
            check_header(&self.snapshot, &self.cfg.target.bucket, &self.id.name)?;
            self.vfs.journals.hint_exists(&self.journal, false);
            self.journal_unchecked = true;
            return Ok(());
        }
        let jfile = self.vfs.block_file(&self.cfg, &journal_name(&self.id.name));
        let (revalidated, first) = std::thread::scope(|s| {
            let probe = s.spawn(|| jfile.first_bytes(JOURNAL_HEADER_BYTES));
            let r = self.file().revalidate();
            (r, probe.join())
        });
        self.snapshot = revalidated?;
        check_header(&self.snapshot, &self.cfg.target.bucket, &self.id.name)?;
        // A failed probe is not fatal: xAccess asks again.
        if let Ok(Ok(first)) = first {
            self.vfs
                .journals
                .hint_exists(&self.journal, first.is_some());
            self.journal_seen = journal_may_be_hot(first.as_deref());
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `off`; `true` when the read was short (zero-filled).
    pub fn read(&mut self, buf: &mut [u8], off: u64) -> Result<bool> {
        if let Some(lock) = &self.lock {
            lock.keep_reading()?;
        }
        if !self.journal_unchecked {
            return self.file().read(buf, off);
        }
        let seen = std::cell::Cell::new(false);
        let check = || self.journal_allows_reading().map(|live| seen.set(live));
        let (read, asked) = self.file().read_checked(buf, off, &check);
        if asked {
            self.journal_unchecked = false;
            self.full_check_next = read.is_err();
            self.journal_seen = seen.get();
        }
        read
    }

    /// Ends a read transaction on a database. One that ran beside a live writer's journal
    /// may have cached blocks of a commit in progress (a torn view, see the README): if
    /// that writer then stopped before storing block 0, they would pass for current. They
    /// are dropped, and the next transaction asks about the journal at its start.
    pub(super) fn end_read(&mut self) {
        if std::mem::take(&mut self.journal_seen) {
            self.file().forget_cached_blocks();
            self.full_check_next = true;
        }
    }

    /// The deferred hot-journal question (see the module's comment): `false` when journal
    /// block 0 is absent or not hot, `true` when it may be hot and a live writer's; an
    /// error when a writer that stopped left it.
    fn journal_allows_reading(&self) -> Result<bool> {
        if !self.journal_may_be_hot()? {
            return Ok(false);
        }
        if self.check_reserved()? {
            return Ok(true);
        }
        Err(Error::Busy(format!(
            "s3://{}/{} has a rollback journal that no live writer holds: a writer stopped in the middle of a commit, so blocks not read before may be half written; this read stopped before using any; retry the statement (the next read transaction rolls the journal back)",
            self.cfg.target.bucket, self.id.name
        )))
    }

    /// Whether the journal may be hot by SQLite's rule: its first bytes exist and are not
    /// all zero (a `PERSIST` journal between transactions has a zeroed header). One ranged
    /// GET of journal block 0, the price of a HEAD.
    fn journal_may_be_hot(&self) -> Result<bool> {
        journal_of_may_be_hot(self.vfs, &self.cfg, &self.id.name)
    }

    /// Makes the open's answers too old to reuse, as on a loaded machine (tests).
    #[cfg(test)]
    pub fn expire_open_check(&mut self) {
        if let Some(check) = self.open_check.as_mut() {
            check.expire();
        }
    }

    /// Drops this file's cached blocks, as in a process that has not read them (tests).
    #[cfg(test)]
    pub fn forget_cached_blocks(&self) {
        self.file().forget_cached_blocks();
    }
}

/// [`S3File::journal_may_be_hot`] for database `db_name`, for callers that cannot borrow
/// the whole file.
pub(super) fn journal_of_may_be_hot(vfs: &S3Vfs, cfg: &Config, db_name: &str) -> Result<bool> {
    let journal = vfs.block_file(cfg, &journal_name(db_name));
    Ok(journal_may_be_hot(
        journal.first_bytes(JOURNAL_HEADER_BYTES)?.as_deref(),
    ))
}
