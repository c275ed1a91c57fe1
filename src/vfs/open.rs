//! Opening a main database, in one round trip that also serves its first read transactions.
//!
//! xOpen GETs block 0 (it proves bucket, credentials and endpoint, tells a new database
//! from an existing one, and checks the block size) and, at the same time, HEADs block 0
//! of the journal. A fresh connection's first read transactions follow within
//! milliseconds (SQLite reads the schema in one, runs the statement in the next), and
//! each would ask S3 exactly these two questions again: is block 0 still this version, and
//! is there a journal (hot-journal check)? The first [`OPEN_CHECK_USES`] read
//! transactions (the first statement's) take the open's answers instead, when they start
//! within [`OPEN_CHECK_REUSE`] of the open sending its requests, so a fresh process's first
//! point query costs the b-tree path + 2 requests.
//!
//! The price, and why it is small: a commit by another process that completes within
//! that time after the open may be missed by those first transactions, exactly as if the
//! connection had started its first read at the open. Nothing else changes: any later
//! read transaction, and every connection that was not just opened, checks S3 as before;
//! this process's own commits go through the shared cache and are always seen; a writer
//! still takes the lease, which fails on a version it has not seen.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::header::{header_size, is_database_start};
use crate::layout::block_key;
use crate::store::BlockFile;
use std::time::{Duration, Instant};

/// How long the answers of an open serve the new connection's read transactions.
pub const OPEN_CHECK_REUSE: Duration = Duration::from_millis(500);
/// How many read transactions they serve: a first statement's two (SQLite reads the
/// schema in a read transaction of its own, then runs the statement in another).
pub const OPEN_CHECK_USES: u8 = 2;

/// What an open learnt about the database, for its connection's first read transactions.
pub struct OpenCheck {
    sent: Instant,
    journal_exists: bool,
    uses_left: u8,
}

impl OpenCheck {
    /// Whether the journal existed, if the answer may still be reused (it counts a use).
    pub fn take(&mut self) -> Option<bool> {
        if self.uses_left == 0 || self.sent.elapsed() >= OPEN_CHECK_REUSE {
            return None;
        }
        self.uses_left -= 1;
        Some(self.journal_exists)
    }

    /// Makes the answers too old to reuse, as on a loaded machine (tests).
    #[cfg(test)]
    pub fn expire(&mut self) {
        self.sent = Instant::now() - OPEN_CHECK_REUSE;
    }
}

/// Checks the database at open (see [`check_existing`]) and, in parallel, whether its
/// journal exists. `None` when there is nothing to reuse (no block 0 yet, or the journal's
/// HEAD failed: the first read transaction then asks again).
pub fn open_database(
    file: &mut BlockFile,
    journal: &BlockFile,
    cfg: &Config,
    name: &str,
    flags: i32,
) -> Result<Option<OpenCheck>> {
    let sent = Instant::now();
    let (checked, journal) = std::thread::scope(|s| {
        let probe = s.spawn(|| journal.first_block_exists());
        (check_existing(file, cfg, name, flags), probe.join())
    });
    let found = checked?;
    Ok(match journal {
        Ok(Ok(journal_exists)) if found => Some(OpenCheck {
            sent,
            journal_exists,
            uses_left: OPEN_CHECK_USES,
        }),
        _ => None,
    })
}

/// Block 0 of a database must start with SQLite's header (or be all zeros, as SQLite
/// leaves a database it has not written yet). Anything else at the prefix is not ours to
/// read or overwrite: SQLite would only say "file is not a database" without saying where.
pub fn check_header(header: &[u8], bucket: &str, name: &str) -> Result<()> {
    if is_database_start(header) {
        return Ok(());
    }
    Err(Error::Format(format!(
        "s3://{bucket}/{} does not start with a SQLite header: this prefix holds something other than a SQLite database; check the path (nothing was changed)",
        block_key(name, 0)
    )))
}

/// Reads block 0 of a main database (one GET, kept in the cache with its ETag for later
/// conditional GETs): proves bucket, credentials and endpoint, tells a new database from
/// an existing one (`true` when block 0 exists), and refuses a block size that does not
/// match the blocks stored. Block 1 is asked about (one HEAD) only when block 0 is shorter
/// than a block and its header does not say how large the database is. Never a listing,
/// whatever the database's size.
fn check_existing(file: &mut BlockFile, cfg: &Config, name: &str, flags: i32) -> Result<bool> {
    let b = cfg.block_size;
    let where_ = format!("s3://{}/{name}", cfg.target.bucket);
    let Some(first) = file.load_first_block()? else {
        if flags & crate::codes::open_flag::CREATE == 0 {
            return Err(Error::NotFound(format!(
                "no database at {where_} and this open may not create one (mode=ro or mode=rw): check the path, or open with mode=rwc"
            )));
        }
        file.set_size_hint(0);
        return Ok(false);
    };
    let len = first.len() as u64;
    let header = &first[..first.len().min(100)];
    let mismatch = || {
        Err(Error::Format(format!(
            "the database at {where_} is stored in {len}-byte blocks but block_size is {b}: open it with block_size={len} (URI) or S3VFS_BLOCK_SIZE={len}"
        )))
    };
    if len > b {
        // Another block size, or not a database at all: only the content tells.
        check_header(header, &cfg.target.bucket, name)?;
        return mismatch();
    }
    if len == b || !is_database_start(header) {
        // A full block fits; something that is not a database is refused by the first
        // read transaction, which says so.
        return Ok(true);
    }
    // Shorter than a block: the last block, unless the database goes on past it.
    let more = match header_size(header) {
        Some(size) => size > len,
        None => file.block_len(1)?.is_some(),
    };
    if more {
        return mismatch();
    }
    file.set_size_hint(len);
    Ok(true)
}
