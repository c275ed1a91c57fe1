//! Whole databases in and out of the block layout: `s3vfs_serialize` writes the database
//! stored as blocks under a prefix to one plain SQLite file object; `s3vfs_deserialize`
//! does the reverse.
//!
//! Both stream in chunks (blocks are fetched and stored in parallel), so memory stays
//! bounded by the part size times the parallelism, whatever the database size.
//!
//! [`import_file`] and [`export_file`] do the same between the block layout and a local
//! file, for the `s3vfs` command.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::header::{header_size, journal_may_be_hot, SQLITE_MAGIC};
use crate::layout::{block_key, journal_name};
use crate::object_store::ObjectStore;
use crate::parallel::par_map;
use crate::s3::S3Client;
use crate::store::{Block, BlockFile};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Smallest multipart part (S3 wants ≥ 5 MiB; larger parts mean fewer requests).
pub const MIN_PART: u64 = 8 << 20;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Parts uploaded at once (each fetches its blocks with the configured concurrency).
const PARALLEL_PARTS: usize = 4;
/// Attempts at a consistent copy before giving up on a database that keeps changing.
const SNAPSHOT_ATTEMPTS: usize = 3;
/// Largest database `s3vfs_serialize(prefix)` returns as a BLOB.
pub const MAX_BLOB: u64 = 256 << 20;

/// Hears how far a whole-database copy has got (the `s3vfs` command draws a bar).
pub trait Progress: Sync {
    /// A copy of `total` bytes starts (again, when a snapshot is retried).
    fn start(&self, total: u64);
    /// `bytes` more were copied.
    fn advance(&self, bytes: u64);
}

/// No progress reports.
impl Progress for () {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A place in S3: the store of its bucket, the settings to read it with, and the key or
/// prefix within it.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub cfg: Arc<Config>,
    pub key: String,
}

impl Location {
    /// A location in S3 with these settings.
    pub fn s3(cfg: Arc<Config>, key: &str) -> Location {
        Location {
            store: Arc::new(S3Client::new(cfg.target.clone())),
            cfg,
            key: key.to_string(),
        }
    }

    /// The bucket's name, for messages.
    pub fn bucket(&self) -> &str {
        &self.cfg.target.bucket
    }

    /// `s3://bucket/key`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket(), self.key)
    }
}

/// Checks a key given as `arg` (already resolved to `key` in the bucket of `cfg`) and
/// makes its location.
pub fn locate(cfg: Arc<Config>, key: &str, arg: &str) -> Result<Location> {
    if key.is_empty() || key.ends_with('/') {
        return Err(Error::Config(format!(
            "'{arg}' names no object (empty key or a trailing /)"
        )));
    }
    Ok(Location::s3(cfg, key))
}

/// The block file of a database prefix at a location.
fn blocks_at(loc: &Location) -> BlockFile {
    BlockFile::new(loc.store.clone(), &loc.key, loc.cfg.block_size)
        .with_concurrency(loc.cfg.concurrency)
}

/// The header (with the file change counter), or why a copy cannot start now. The header
/// is read before the journal is checked: a commit stores its journal before any page
/// and deletes it after the last one, so either the header read already saw the commit's
/// page 1 and the journal check catches the commit still in progress, or the commit
/// writes page 1 later and the header read after the copy differs.
fn quiet_header(db: &Location) -> Result<Vec<u8>> {
    let header = db
        .store
        .get_range(&block_key(&db.key, 0), 0, 100)?
        .unwrap_or_default();
    if header.len() < 100 || header_size(&header).is_none() {
        return Err(Error::Format(format!(
            "s3://{}/{}/ holds no SQLite database (its first block is missing or not a valid SQLite header)",
            db.bucket(),
            db.key
        )));
    }
    let journal = db
        .store
        .get_range(&block_key(&journal_name(&db.key), 0), 0, 28)?;
    if journal_may_be_hot(journal.as_deref()) {
        return Err(Error::Busy(format!(
            "a rollback journal is pending for s3://{}/{} (a writer is committing, or crashed): retry, or open the database once so SQLite rolls the journal back",
            db.bucket(),
            db.key
        )));
    }
    Ok(header)
}

/// Runs `copy` against a snapshot: the header (with its change counter) and the journal
/// are checked before and after, and a copy that overlapped a commit is discarded and
/// retried. `copy` gets the database size the header vouches for.
fn with_snapshot<T>(
    db: &Location,
    mut copy: impl FnMut(u64) -> Result<T>,
    discard: impl Fn(T),
) -> Result<T> {
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let before = quiet_header(db)?;
        let copied = copy(header_size(&before).expect("quiet_header checked it"))?;
        match quiet_header(db) {
            Ok(after) if after == before => return Ok(copied),
            Ok(_) | Err(Error::Busy(_)) => discard(copied),
            Err(e) => {
                discard(copied);
                return Err(e);
            }
        }
    }
    Err(Error::Busy(format!(
        "s3://{}/{} changed while it was being copied ({SNAPSHOT_ATTEMPTS} attempts): retry when writes pause",
        db.bucket(),
        db.key
    )))
}

/// Copies a database to one object (a snapshot, see [`with_snapshot`]) and returns its size.
pub fn serialize(db: &Location, target: &Location) -> Result<u64> {
    let copy = |size| upload_copy(db, target, size).map(|u| (u, size));
    let (upload, size) = with_snapshot(db, copy, |(u, _)| u.abandon())?;
    upload.finish()?;
    Ok(size)
}

/// The database as bytes in memory (for small databases: at most [`MAX_BLOB`]).
pub fn serialize_to_memory(db: &Location) -> Result<Vec<u8>> {
    let blocks = blocks_at(db);
    let concurrency = db.cfg.concurrency;
    let copy = |size| {
        if size > MAX_BLOB {
            return Err(Error::Format(format!(
                "the database is {size} bytes, more than the {MAX_BLOB} bytes s3vfs_serialize(prefix) returns as a BLOB: use s3vfs_serialize(prefix, target_key) to write it to an object"
            )));
        }
        read_span(&blocks, concurrency, 0, size, &())
    };
    with_snapshot(db, copy, drop)
}

/// An upload written but not yet made visible.
enum Upload<'a> {
    Single(&'a Location, Vec<u8>),
    Multipart(&'a Location, String, Vec<String>),
}

impl Upload<'_> {
    /// Makes the object visible.
    fn finish(self) -> Result<()> {
        match self {
            Upload::Single(t, data) => t.store.put(&t.key, &data),
            Upload::Multipart(t, id, etags) => {
                let done = t.store.complete_multipart(&t.key, &id, &etags);
                if done.is_err() {
                    let _ = t.store.abort_multipart(&t.key, &id);
                }
                done
            }
        }
    }

    fn abandon(self) {
        if let Upload::Multipart(t, id, _) = self {
            let _ = t.store.abort_multipart(&t.key, &id);
        }
    }
}

/// The part size for a database: at least [`MIN_PART`], a whole number of blocks, and
/// large enough to stay under S3's 10,000 parts.
pub fn part_size(size: u64, block_size: u64) -> u64 {
    let wanted = MIN_PART.max(size.div_ceil(MAX_PARTS - 1));
    wanted.div_ceil(block_size) * block_size
}

/// Reads the database's bytes `[start, end)` from its blocks, in parallel, reporting each
/// block fetched.
fn read_span(
    db: &BlockFile,
    concurrency: usize,
    start: u64,
    end: u64,
    progress: &dyn Progress,
) -> Result<Vec<u8>> {
    let b = db.block_size();
    let indices: Vec<u64> = (start / b..end.div_ceil(b)).collect();
    let blocks = par_map(&indices, concurrency, |&i| {
        let block = db.get_block(i)?;
        let wanted = (i * b).max(start)..((i + 1) * b).min(end);
        progress.advance(wanted.end - wanted.start);
        Ok(block)
    })?;
    let mut out = Vec::with_capacity((end - start) as usize);
    for (&i, block) in indices.iter().zip(blocks) {
        let block = block.ok_or_else(|| {
            Error::Format(format!(
                "block {i} of the database is missing: the layout is damaged"
            ))
        })?;
        let from = start.saturating_sub(i * b) as usize;
        let to = ((end - i * b).min(block.len() as u64)) as usize;
        if from < to {
            out.extend_from_slice(&block[from..to]);
        }
    }
    if out.len() as u64 != end - start {
        return Err(Error::Format(format!(
            "the stored blocks hold {} bytes where the header promises {}: the layout is damaged",
            out.len(),
            end - start
        )));
    }
    Ok(out)
}

/// Reads the first `size` bytes of the database at `db` in parts of [`part_size`], a few
/// parts at a time and each part's blocks in parallel, and hands each part to
/// `each(part number from 0, offset, bytes)`; returns what `each` returned, in part order.
fn per_part<T: Send>(
    db: &Location,
    size: u64,
    progress: &dyn Progress,
    each: impl Fn(u64, u64, Vec<u8>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let blocks = blocks_at(db);
    let concurrency = db.cfg.concurrency;
    let part = part_size(size, blocks.block_size());
    let parts: Vec<u64> = (0..size.div_ceil(part)).collect();
    par_map(&parts, PARALLEL_PARTS, |&p| {
        let (start, end) = (p * part, ((p + 1) * part).min(size));
        each(
            p,
            start,
            read_span(&blocks, concurrency, start, end, progress)?,
        )
    })
}

/// Uploads the copy: one PUT when it fits one part, else a parallel multipart upload
/// (aborted on any failure, so nothing is left behind).
fn upload_copy<'a>(db: &Location, target: &'a Location, size: u64) -> Result<Upload<'a>> {
    let blocks = blocks_at(db);
    let concurrency = db.cfg.concurrency;
    if size <= part_size(size, blocks.block_size()) {
        return Ok(Upload::Single(
            target,
            read_span(&blocks, concurrency, 0, size, &())?,
        ));
    }
    let id = target.store.create_multipart(&target.key)?;
    let uploaded = per_part(db, size, &(), |p, _, data| {
        target
            .store
            .upload_part(&target.key, &id, p as usize + 1, &data)
    });
    match uploaded {
        Ok(etags) => Ok(Upload::Multipart(target, id, etags)),
        Err(e) => {
            let _ = target.store.abort_multipart(&target.key, &id);
            Err(e)
        }
    }
}

/// Why a plain file's first 100 bytes and length are not a SQLite database, if they are not.
pub fn check_sqlite_file(header: &[u8], len: u64) -> std::result::Result<(), String> {
    if len == 0 {
        return Err("it is empty".into());
    }
    if len < 100 || header.len() < 100 {
        return Err(format!("it is {len} bytes, shorter than a SQLite header"));
    }
    if &header[..16] != SQLITE_MAGIC {
        return Err("it does not start with the SQLite header (\"SQLite format 3\")".into());
    }
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        p if p >= 512 && p.is_power_of_two() => u64::from(p),
        p => {
            return Err(format!(
                "its page size {p} is not a power of two from 512 to 65536"
            ))
        }
    };
    if !len.is_multiple_of(page) {
        return Err(format!(
            "its length {len} is not a whole number of {page}-byte pages (truncated?)"
        ));
    }
    if let Some(expected) = header_size(header) {
        if expected != len {
            return Err(format!(
                "its header says {expected} bytes ({} pages of {page}) but it is {len} bytes (truncated or corrupted?)",
                expected / page
            ));
        }
    }
    Ok(())
}

/// Stores a plain SQLite file object as blocks under a prefix and returns the number of
/// blocks written. Everything is checked before the first write.
pub fn deserialize(source: &Location, db: &Location, replace: bool) -> Result<u64> {
    let where_ = format!("s3://{}/{}", source.bucket(), source.key);
    let Some(len) = source.store.head(&source.key)? else {
        // HEAD answers a bare 404 for a missing bucket too; a listing names which it is.
        source.store.list("", Some(1))?;
        return Err(Error::NotFound(format!(
            "{where_} does not exist: check the key"
        )));
    };
    let header = if len == 0 {
        Vec::new()
    } else {
        source
            .store
            .get_range(&source.key, 0, len.min(100))?
            .unwrap_or_default()
    };
    check_sqlite_file(&header, len).map_err(|why| {
        Error::Format(format!(
            "{where_} is not a SQLite database: {why}; nothing was written"
        ))
    })?;
    let target = blocks_at(db);
    let dest = format!("s3://{}/{}", db.bucket(), db.key);
    let existing = target.blocks()?;
    if !existing.is_empty() && !replace {
        return Err(Error::Format(format!(
            "{dest}/ already holds a database: pass 'replace' as the third argument to overwrite it; nothing was written"
        )));
    }
    store_blocks(db, len, &existing, &(), |start, end| {
        source
            .store
            .get_range(&source.key, start, end)?
            .filter(|d| d.len() as u64 == end - start)
            .ok_or_else(|| {
                Error::Format(format!("{where_} changed while it was being read: retry"))
            })
    })
}

/// Stores `len` bytes, read in part-sized chunks by `read(start, end)`, as the blocks of
/// `db` (whose blocks before were `existing`), each chunk's blocks PUT in parallel; then
/// deletes blocks past the new end and any journal, so exactly the new database is left.
/// Returns the number of blocks written.
fn store_blocks(
    db: &Location,
    len: u64,
    existing: &[Block],
    progress: &dyn Progress,
    read: impl Fn(u64, u64) -> Result<Vec<u8>>,
) -> Result<u64> {
    let target = blocks_at(db);
    let b = target.block_size();
    let concurrency = db.cfg.concurrency;
    let chunk = part_size(len, b);
    let n_blocks = len.div_ceil(b);
    progress.start(len);
    for start in (0..len).step_by(chunk as usize) {
        let end = (start + chunk).min(len);
        let data = read(start, end)?;
        let indices: Vec<u64> = (start / b..end.div_ceil(b)).collect();
        par_map(&indices, concurrency, |&i| {
            let from = (i * b - start) as usize;
            let to = (((i + 1) * b).min(end) - start) as usize;
            db.store.put(&block_key(&db.key, i), &data[from..to])?;
            progress.advance((to - from) as u64);
            Ok(())
        })?;
    }
    // Stale blocks past the new end, and any journal, would corrupt the new database.
    let stale: Vec<String> = existing
        .iter()
        .filter(|blk| blk.index >= n_blocks)
        .map(|blk| block_key(&db.key, blk.index))
        .collect();
    if !stale.is_empty() {
        db.store.delete_many(&stale)?;
    }
    let mut journal = BlockFile::new(db.store.clone(), &journal_name(&db.key), b);
    journal.delete_all(None)?;
    target.forget_cached_blocks();
    Ok(n_blocks)
}

/// The block size a database is stored in, from its first blocks (one short listing): the
/// length of block 0 when there are more blocks. A database of one block reads the same with
/// any block size at least that long: the configured one, or that length. `None` when
/// nothing is stored under the prefix.
pub fn stored_block_size(db: &Location) -> Result<Option<u64>> {
    let first = blocks_at(db).first_blocks(2)?;
    Ok(match first.as_slice() {
        [] => None,
        [only] => Some(db.cfg.block_size.max(only.len)),
        [first, ..] => Some(first.len),
    })
}

/// The same location, with the block size its stored blocks have (see
/// [`stored_block_size`]), or [`Error::NotFound`] when nothing is stored there.
pub fn as_stored(db: &Location) -> Result<Location> {
    let Some(block_size) = stored_block_size(db)? else {
        let bucket = db.bucket();
        return Err(Error::NotFound(format!(
            "no database at s3://{bucket}/{}: nothing is stored under s3://{bucket}/{}/ (check the URL; `s3vfs ls s3://{bucket}/` lists the databases)",
            db.key, db.key
        )));
    };
    Ok(Location {
        cfg: Arc::new(Config {
            block_size,
            ..(*db.cfg).clone()
        }),
        ..db.clone()
    })
}

/// A local I/O failure as an [`Error`]: a missing file is [`Error::NotFound`].
fn local_error(path: &Path, doing: &str, e: std::io::Error) -> Error {
    let shown = path.display();
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("{shown} does not exist: check the path"))
        }
        _ => Error::Io(format!("cannot {doing} {shown}: {e}")),
    }
}

/// `<path><suffix>`, e.g. the `-journal` beside a database file.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Why the local database at `path` cannot be copied as it is, if it cannot: it is not
/// SQLite, it is in WAL mode (the `-wal` file may hold commits, and s3vfs opens no WAL
/// database), or a hot rollback journal beside it holds a half-done transaction.
fn check_local_database(path: &Path, file: &File, len: u64) -> Result<()> {
    let shown = path.display();
    let mut header = vec![0u8; len.min(100) as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| local_error(path, "read", e))?;
    check_sqlite_file(&header, len).map_err(|why| {
        Error::Refused(format!(
            "{shown} is not a SQLite database: {why}; nothing was written"
        ))
    })?;
    if header[18] == 2 || header[19] == 2 {
        return Err(Error::Refused(format!(
            "{shown} is in WAL mode, which s3vfs cannot open: switch it to a rollback journal first (sqlite3 {shown} 'pragma journal_mode=delete'); nothing was written"
        )));
    }
    let journal = beside(path, "-journal");
    if let Ok(j) = File::open(&journal) {
        let mut head = [0u8; 28];
        if j.read_exact_at(&mut head, 0).is_ok() && head.iter().any(|&b| b != 0) {
            return Err(Error::Refused(format!(
                "{} holds an unfinished transaction of {shown}: open the database once with sqlite3 so it rolls back (or wait for its writer); nothing was written",
                journal.display()
            )));
        }
    }
    Ok(())
}

/// Stores the local SQLite file `path` as blocks at `db` and returns the number of blocks
/// written. Everything is checked before the first write: the file is a SQLite database
/// in a rollback-journal mode with no hot journal, and `db` holds nothing unless
/// `replace`, which then also deletes stale blocks past the new end and any journal.
pub fn import_file(
    path: &Path,
    db: &Location,
    replace: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let file = File::open(path).map_err(|e| local_error(path, "open", e))?;
    let meta = file.metadata().map_err(|e| local_error(path, "read", e))?;
    if meta.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a directory, not a SQLite database; nothing was written",
            path.display()
        )));
    }
    let len = meta.len();
    check_local_database(path, &file, len)?;
    let dest = format!("s3://{}/{}", db.bucket(), db.key);
    let existing = blocks_at(db).blocks()?;
    if !existing.is_empty() && !replace {
        return Err(Error::Refused(format!(
            "{dest} already holds a database: pass --replace to overwrite it; nothing was written"
        )));
    }
    store_blocks(db, len, &existing, progress, |start, end| {
        let mut data = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut data, start).map_err(|e| {
            Error::Io(format!(
                "cannot read bytes {start}..{end} of {} ({e}): did it change while it was being read? Retry",
                path.display()
            ))
        })?;
        Ok(data)
    })
}

/// Copies the database at `db` to the local file `path` and returns its size: a snapshot
/// (see [`with_snapshot`]), read in parts with parallel GETs, written to a temporary file
/// beside `path` and renamed over it only when complete. An existing `path` is refused
/// unless `force`; a `-journal` or `-wal` file beside it always is, since SQLite would
/// apply it to the copy.
pub fn export_file(
    db: &Location,
    path: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let shown = path.display();
    if path.is_dir() {
        return Err(Error::Refused(format!(
            "{shown} is a directory: name the file to write; nothing was written"
        )));
    }
    if path.exists() && !force {
        return Err(Error::Refused(format!(
            "{shown} already exists: pass --force to overwrite it; nothing was written"
        )));
    }
    for side in ["-journal", "-wal"] {
        let side = beside(path, side);
        if side.exists() {
            return Err(Error::Refused(format!(
                "{} exists: SQLite would apply it to the exported copy; move it away first; nothing was written",
                side.display()
            )));
        }
    }
    let db = as_stored(db)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.s3vfs-export-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let copy = |size: u64| -> Result<u64> {
        progress.start(size);
        let file = File::create(&tmp).map_err(|e| local_error(&tmp, "create", e))?;
        per_part(&db, size, progress, |_, start, data| {
            file.write_all_at(&data, start)
                .map_err(|e| local_error(&tmp, "write", e))
        })?;
        file.sync_all().map_err(|e| local_error(&tmp, "write", e))?;
        Ok(size)
    };
    let copied = with_snapshot(&db, copy, drop).and_then(|size| {
        std::fs::rename(&tmp, path).map_err(|e| local_error(path, "write", e))?;
        Ok(size)
    });
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page: u16, pages: u32) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&page.to_be_bytes());
        h[24..28].copy_from_slice(&5u32.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        h[92..96].copy_from_slice(&5u32.to_be_bytes());
        h
    }

    #[test]
    fn accepts_only_consistent_sqlite_files() {
        assert!(check_sqlite_file(&header(4096, 3), 3 * 4096).is_ok());
        assert!(check_sqlite_file(&[], 0).unwrap_err().contains("empty"));
        assert!(check_sqlite_file(&header(4096, 3), 2 * 4096)
            .unwrap_err()
            .contains("truncated"));
        assert!(check_sqlite_file(&header(4096, 3), 3 * 4096 + 7)
            .unwrap_err()
            .contains("whole number"));
        assert!(check_sqlite_file(&header(1000, 3), 3000)
            .unwrap_err()
            .contains("power of two"));
        let mut junk = header(4096, 3);
        junk[0] = b'X';
        assert!(check_sqlite_file(&junk, 3 * 4096)
            .unwrap_err()
            .contains("does not start"));
    }

    #[test]
    fn parts_are_whole_blocks_and_stay_under_the_part_limit() {
        assert_eq!(part_size(50 << 20, 4096), 8 << 20);
        let huge = 200u64 << 30;
        let p = part_size(huge, 4096);
        assert_eq!(p % 4096, 0);
        assert!(huge.div_ceil(p) < 10_000);
        assert_eq!(part_size(1 << 20, 4097) % 4097, 0);
    }

    /// A location on an endpoint nothing listens on: any request would fail with
    /// `Error::Transport`, so a refusal proves nothing was sent.
    fn unreachable(key: &str) -> Location {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
            _ => None,
        };
        let uri = |k: &str| match k {
            "bucket" => Some("b".to_string()),
            "endpoint" => Some("http://127.0.0.1:9".to_string()),
            _ => None,
        };
        Location::s3(Arc::new(Config::resolve(&uri, &env).unwrap()), key)
    }

    #[test]
    fn local_files_are_checked_before_any_request() {
        let dir = std::env::temp_dir().join(format!("s3vfs-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = unreachable("x.db");
        let refused = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            match import_file(&path, &db, false, &()) {
                Err(Error::Refused(msg)) => msg,
                other => panic!("{name}: {other:?}"),
            }
        };
        assert!(refused("a.csv", b"id,body\n1,x\n").contains("not a SQLite database"));
        let mut wal = header(4096, 1);
        wal.resize(4096, 0);
        wal[18] = 2;
        wal[19] = 2;
        assert!(refused("wal.db", &wal).contains("WAL mode"));
        let mut plain = header(4096, 1);
        plain.resize(4096, 0);
        std::fs::write(dir.join("hot.db-journal"), [0xd9u8; 28]).unwrap();
        assert!(refused("hot.db", &plain).contains("unfinished transaction"));
        assert!(matches!(
            import_file(&dir.join("missing.db"), &db, false, &()),
            Err(Error::NotFound(_))
        ));
        // Export: an existing file without `force`, and a journal beside the target.
        std::fs::write(dir.join("old.db"), b"keep").unwrap();
        let e = export_file(&db, &dir.join("old.db"), false, &()).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(m) if m.contains("--force")),
            "{e}"
        );
        let e = export_file(&db, &dir.join("hot.db"), true, &()).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(m) if m.contains("hot.db-journal exists")),
            "{e}"
        );
        assert_eq!(std::fs::read(dir.join("old.db")).unwrap(), b"keep");
        std::fs::remove_dir_all(dir).ok();
    }
}
