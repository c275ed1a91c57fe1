//! A file written again from its start (a WAL after a restart), and blocks deleted in the
//! background.
//!
//! SQLite starts a WAL over once a checkpoint has copied all of it into the database: the
//! next writer writes a new header (new salts) at offset 0 and new frames after it, over
//! the old ones. Locally the header is synced before the frames unless the device is
//! `SEQUENTIAL`, as ours says it is; here a flush PUTs blocks in parallel, so the block
//! file keeps that order itself:
//!
//! - **Block 0 first.** While the old block 0 is stored, a flush that holds a new block 0
//!   and later blocks PUTs block 0 alone first. Otherwise a crash could leave the old
//!   header in front of new blocks, and recovery would replay a prefix of the old WAL: old
//!   page versions over a database that already holds newer ones.
//! - **Stale blocks go in the background.** Once the new start is stored, the old blocks
//!   past the new end are deleted on a background thread. They hold old frames that fail
//!   the new salts, so a crash before they go loses nothing.
//! - **Truncation to nothing** (the `TRUNCATE` checkpoint) deletes block 0 now and the
//!   rest in the background. Block 0 first: a WAL without its header is no WAL at all.
//!
//! Any later flush or truncation waits for a background deletion first, and so does dropping
//! the handle, so a delete never lands after a PUT of the same block.

use super::BlockFile;
use crate::codes::code;
use crate::error::Result;
use std::thread::JoinHandle;

/// What a file being written again from its start still has to do.
#[derive(Default)]
pub(super) struct Rewrite {
    /// The file was written again from offset 0 while this much was stored: the blocks
    /// up to here that the new content does not reach are stale.
    stale_end: Option<u64>,
    /// Blocks being deleted in the background.
    deleting: Option<JoinHandle<()>>,
}

/// A file handle dropped while its blocks are being deleted waits for them: the thread must
/// not outlive the handle and delete blocks that a later handle of the same file (the WAL
/// of the next open) has stored meanwhile.
impl Drop for BlockFile {
    fn drop(&mut self) {
        self.settle_deletes();
    }
}

impl BlockFile {
    /// The file is written again from its start (a new WAL header at offset 0): what is
    /// stored becomes stale, and the size starts again from nothing, so no old block is
    /// fetched to be spliced into. Whatever was buffered is dropped: SQLite restarts a WAL
    /// only when all of it was copied into the database.
    pub fn rewrite_from_start(&mut self) -> Result<()> {
        let old = self.cached_size()?;
        if old == 0 {
            return Ok(());
        }
        self.rewrite.stale_end = Some(old.max(self.rewrite.stale_end.unwrap_or(0)));
        self.dirty.clear();
        self.dirty_bytes = 0;
        self.size = Some(0);
        Ok(())
    }

    /// Waits for a background deletion of this file's blocks, if one is running.
    pub fn settle_deletes(&mut self) {
        if let Some(t) = self.rewrite.deleting.take() {
            let _ = t.join();
        }
    }

    /// Before a flush: waits for background deletions, then stores a new block 0 alone
    /// while an old one is stored (see the module comment).
    pub(super) fn before_flush(&mut self, keep_going: &dyn Fn() -> Result<()>) -> Result<()> {
        self.settle_deletes();
        if self.rewrite.stale_end.is_some() && self.dirty.len() > 1 && self.dirty.contains_key(&0) {
            keep_going()?;
            let rest = self.dirty.split_off(&1);
            let stored = self.flush_batch();
            self.dirty.extend(rest);
            stored?;
        }
        Ok(())
    }

    /// After a flush stored everything: the stale blocks past the new end go in the
    /// background.
    pub(super) fn after_flush(&mut self) {
        let (Some(stale_end), Some(size)) = (self.rewrite.stale_end, self.size) else {
            return;
        };
        self.rewrite.stale_end = None;
        let b = self.block_size;
        let stale: Vec<u64> = (size.div_ceil(b)..stale_end.div_ceil(b)).collect();
        self.delete_in_background(stale, false);
    }

    /// Shrinks the file; to nothing, block 0 goes now and the rest in the background.
    pub fn truncate_in_background(&mut self, new_size: u64) -> Result<()> {
        self.settle_deletes();
        if new_size > 0 {
            let trust = self.rewrite.stale_end.is_none();
            return self.truncate(new_size, trust);
        }
        let known = self
            .size
            .map(|s| s.max(self.rewrite.stale_end.unwrap_or(0)));
        self.delete_first()?;
        self.rewrite.stale_end = None;
        self.size = Some(0);
        match known {
            Some(k) => self.delete_in_background((1..k.div_ceil(self.block_size)).collect(), false),
            None => self.delete_in_background(Vec::new(), true),
        }
        Ok(())
    }

    /// Deletes `indices` (with `list_rest`, every block past block 0, found by a listing)
    /// on a background thread.
    fn delete_in_background(&mut self, indices: Vec<u64>, list_rest: bool) {
        if indices.is_empty() && !list_rest {
            return;
        }
        let mut doomed = BlockFile::new(self.store.clone(), &self.name, self.block_size)
            .with_concurrency(self.concurrency);
        self.rewrite.deleting = Some(std::thread::spawn(move || {
            let done = match list_rest {
                true => doomed.delete_rest(None),
                false => doomed.delete_blocks(&indices),
            };
            if let Err(e) = done {
                crate::logging::log(
                    code::IOERR_DELETE,
                    &format!(
                        "{e} (while deleting blocks past the end of a WAL; leftovers are harmless)"
                    ),
                );
            }
        }));
    }
}
