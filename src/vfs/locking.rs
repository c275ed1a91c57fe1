//! SQLite's locks on an open file: through the process's lock table and, for a writer,
//! the lease in S3. Taking the first lock starts a read transaction (`read.rs`).

use super::{locked, read, LockResult, S3File};
use crate::codes::{LockLevel, Locking, OpenKind};
use crate::error::Result;
use crate::lock::Outcome;

impl S3File {
    /// SQLite's locks, through the process's lock table and, for writers, the lease in S3.
    /// Taking the first lock starts a read transaction: another writer may have changed
    /// the file since the last one, so the size is forgotten and the cache checked.
    pub fn lock(&mut self, level: LockLevel) -> Result<LockResult> {
        let (cfg, vfs, id, fence, file, snapshot) = (
            &self.cfg,
            self.vfs,
            &self.id,
            &self.fence,
            &self.file,
            &self.snapshot,
        );
        let lease = || S3File::new_lease(cfg, vfs, id, fence);
        // The journal is asked about when the lease was just taken over from a writer that
        // never released it (it may have stopped mid-commit) by a transaction that read
        // from the cache only and so has not asked yet (see `vfs/read.rs`).
        let unasked = self.journal_unchecked;
        let journal_found = std::cell::Cell::new(false);
        let still_current = |from_unreleased: bool| {
            if locked(file).revalidate()? != *snapshot {
                return Ok(false);
            }
            let hot =
                unasked && from_unreleased && read::journal_of_may_be_hot(vfs, cfg, &id.name)?;
            journal_found.set(hot);
            Ok(!hot)
        };
        let Some(lock) = self.lock.as_mut() else {
            return Ok(LockResult::Granted);
        };
        let starting = lock.level == LockLevel::None;
        let outcome = lock.lock(level, lease, still_current)?;
        if journal_found.get() {
            // The retry's read transaction asks at its start, so SQLite rolls it back.
            self.full_check_next = true;
        }
        if level >= LockLevel::Reserved && outcome == Outcome::Granted {
            self.journal_unchecked = false;
        }
        match outcome {
            Outcome::Granted => {}
            Outcome::Busy => return Ok(LockResult::Busy(None)),
            Outcome::BusyElsewhere(holder) => {
                return Ok(LockResult::Busy(Some(format!(
                    "s3vfs: {} is being written by another process (host {}, pid {}, lease until {} ms since the epoch); set a busy_timeout to wait for it",
                    self.id.name, holder.host, holder.pid, holder.expires_ms
                ))))
            }
            Outcome::ReadersElsewhere(n) => {
                return Ok(LockResult::Busy(Some(format!(
                    "s3vfs: {} has {n} reader(s) in other processes (locking=strict): the commit waits for them; set a busy_timeout longer than their read transactions",
                    self.id.name
                ))))
            }
        }
        if starting {
            self.file().forget_size();
            if let Err(e) = self.begin_read() {
                let _ = self.lock.as_mut().map(|l| l.unlock(LockLevel::None));
                return Err(e);
            }
            self.vfs.note_header(&self.id.key(), &self.snapshot);
        }
        Ok(LockResult::Granted)
    }

    /// Flushes before giving the lock up: with `synchronous=OFF` SQLite never calls xSync,
    /// and the next holder must see the writes.
    pub fn unlock(&mut self, level: LockLevel) -> Result<()> {
        let flushed = self.flush();
        if flushed.is_err() && self.kind == OpenKind::Database {
            // What could not be stored now must not be stored later under another lease:
            // SQLite treats the failed transaction as unfinished and rolls it back from
            // the journal (stored first) at its next read.
            self.file().discard_dirty();
            self.vfs.journals.discard(&self.journal);
        }
        if level == LockLevel::None {
            self.file().forget_size();
            if self.kind == OpenKind::Database {
                self.end_read();
            }
        }
        // The journal's cleanup is a writer's work: it ends before the lease is given up
        // (the lock waits for it then, see `Lock::with_settle`), so it can never delete
        // blocks of the next writer's journal. Without a lease, it ends here.
        let writer = self
            .lock
            .as_ref()
            .is_some_and(|l| l.level >= LockLevel::Reserved);
        if writer && level < LockLevel::Reserved && self.cfg.locking == Locking::None {
            self.vfs.journals.settle(&self.journal);
        }
        let unlocked = match self.lock.as_mut() {
            Some(l) => l.unlock(level),
            None => Ok(()),
        };
        flushed.and(unlocked)
    }

    /// True when any connection, in this process or (with a lease) anywhere, may be
    /// writing: then a journal is a live writer's, never a hot one to roll back.
    pub fn check_reserved(&self) -> Result<bool> {
        match &self.lock {
            Some(lock) => lock.reserved_anywhere(|| {
                S3File::new_lease(&self.cfg, self.vfs, &self.id, &self.fence)
            }),
            None => Ok(false),
        }
    }
}
