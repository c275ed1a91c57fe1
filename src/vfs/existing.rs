//! What is stored at a main database's prefix, checked before SQLite reads it: something
//! that is not a SQLite database is refused with a message naming the prefix, and a
//! database stored in another block size with the setting that opens it.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::header::{header_size, is_database_start};
use crate::layout::block_key;
use crate::store::BlockFile;

/// Block 0 of a database must start with SQLite's header (or be all zeros, as SQLite
/// leaves a database it has not written yet). Anything else at the prefix is not ours to
/// read or overwrite: SQLite would only say "file is not a database" without saying where.
pub(super) fn check_header(header: &[u8], bucket: &str, name: &str) -> Result<()> {
    if is_database_start(header) {
        return Ok(());
    }
    Err(Error::Format(format!(
        "s3://{bucket}/{} does not start with a SQLite header: this prefix holds something other than a SQLite database; check the path (nothing was changed)",
        block_key(name, 0)
    )))
}

/// Reads block 0 of a main database (one GET, kept in the cache with its ETag for the
/// first read transaction's conditional GET): proves bucket, credentials and endpoint,
/// tells a new database from an existing one, and refuses a block size that does not
/// match the blocks stored. Block 1 is asked about (one HEAD) only when block 0 is shorter
/// than a block and its header does not say how large the database is. Never a listing,
/// whatever the database's size.
pub(super) fn check_existing(
    file: &mut BlockFile,
    cfg: &Config,
    name: &str,
    flags: i32,
) -> Result<()> {
    let b = cfg.block_size;
    let where_ = format!("s3://{}/{name}", cfg.target.bucket);
    let Some(first) = file.load_first_block()? else {
        if flags & crate::codes::open_flag::CREATE == 0 {
            return Err(Error::NotFound(format!(
                "no database at {where_} and this open may not create one (mode=ro or mode=rw): check the path, or open with mode=rwc"
            )));
        }
        file.set_size_hint(0);
        return Ok(());
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
        return Ok(());
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
    Ok(())
}
