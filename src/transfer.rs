//! Whole databases in and out of the block layout: `s3vfs_serialize` writes the database
//! stored as blocks under a prefix to one plain SQLite file object; `s3vfs_deserialize`
//! does the reverse.
//!
//! Both stream in chunks (blocks are fetched and stored in parallel), so memory stays
//! bounded by the part size times the parallelism, whatever the database size.
//!
//! [`import_file`] and [`export_file`] do the same between the block layout and a local
//! file, for the `s3vfs` command.

use crate::codes::Locking;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::header::{header_size, journal_may_be_hot, SQLITE_MAGIC};
use crate::layout::{
    block_key, blocks_prefix, journal_name, lease_key, parse_block_index, BLOCK_DIGITS,
};
use crate::lease::{self, Acquire, ConditionalWrites, Lease, LeaseRecord};
use crate::object_store::ObjectStore;
use crate::parallel::par_map;
use crate::s3::S3Client;
use crate::store::{Block, BlockFile};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

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

/// The writer lease of a database, held while a whole-database copy writes it (as every
/// writer of a database holds it), and given up when dropped. Nothing is held with
/// `locking=none`, which coordinates no writers.
struct WriteLease {
    lease: Option<Lease>,
    /// No lease object existed before: giving it up deletes it (while still held, so no
    /// other writer can hold it then), leaving the bucket as the copy found it.
    created: bool,
}

impl WriteLease {
    /// Takes the lease of `db`, or [`Error::Busy`] naming the live writer that holds it.
    fn take(db: &Location) -> Result<WriteLease> {
        if db.cfg.locking == Locking::None {
            return Ok(WriteLease {
                lease: None,
                created: false,
            });
        }
        let created = db.store.head(&lease_key(&db.key))?.is_none();
        let mut lease = Lease::new(
            db.store.clone(),
            &db.key,
            db.cfg.lease_term,
            Arc::new(ConditionalWrites::default()),
        );
        match lease.acquire()? {
            Acquire::Quick | Acquire::Taken => Ok(WriteLease {
                lease: Some(lease),
                created,
            }),
            Acquire::Busy(holder) => Err(Error::Busy(format!(
                "will not write s3://{}/{}: a writer holds its lease ({}); retry when it is done; nothing was written",
                db.bucket(),
                db.key,
                describe_holder(&holder)
            ))),
        }
    }

    /// Renews the lease when due; an error when it was lost (nothing more may be written).
    fn renew(&mut self) -> Result<()> {
        match self.lease.as_mut() {
            Some(lease) => lease.ensure_held(),
            None => Ok(()),
        }
    }
}

impl Drop for WriteLease {
    fn drop(&mut self) {
        let Some(lease) = self.lease.as_mut() else {
            return;
        };
        // A lease not given back only delays the next writer until it expires. One this
        // copy created is deleted, but only while it is verifiably still ours (renewed
        // when due), so the deletion can never remove another writer's lease.
        if self.created && lease.ensure_held().is_ok() {
            let key = lease_key(lease.db_name());
            if lease.client().delete(&key).is_ok() {
                return;
            }
        }
        let _ = lease.release();
    }
}

/// Who holds a lease, for messages.
fn describe_holder(r: &LeaseRecord) -> String {
    let left = r.expires_ms.saturating_sub(lease::now_ms()).div_ceil(1000);
    format!(
        "host {}, pid {}, owner {}, expires in {left} s{}",
        r.host,
        r.pid,
        r.owner,
        if r.pending {
            ", waiting to write pages"
        } else {
            ""
        }
    )
}

/// Why `target` must not receive a copy of the database at `db`, if it must not: a key
/// that is (or could be) a block of a database or journal, a lease, a reader mark, or
/// inside the source database's own prefix would be corrupted by the copy.
fn check_target(db: &Location, target: &Location) -> Result<()> {
    let key = target.key.as_str();
    let last = key.rsplit('/').next().unwrap_or(key);
    let same_bucket = target.store.id() == db.store.id();
    let why = if same_bucket && (key == db.key || key.starts_with(&blocks_prefix(&db.key))) {
        Some("it is the source database's own prefix".to_string())
    } else if last.len() == BLOCK_DIGITS && parse_block_index(last).is_some() {
        Some(format!(
            "its last component '{last}' is a block name (10 digits): it would overwrite a block of a database or journal"
        ))
    } else if key.ends_with(".s3vfs-lease") || key.contains(".s3vfs-lease-probe-") {
        Some("it is a database's writer lease (.s3vfs-lease)".to_string())
    } else if key.contains(".s3vfs-readers/") {
        Some("it is under a database's reader marks (.s3vfs-readers/)".to_string())
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Refused(format!(
            "will not write the copy to {}: {why}; choose another key; nothing was written",
            target.url()
        ))),
        None => Ok(()),
    }
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
    check_target(db, target)?;
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
/// block fetched. Each block is copied into its place in the result as it arrives, so a
/// span costs its own size in memory, not twice that.
fn read_span(
    db: &BlockFile,
    concurrency: usize,
    start: u64,
    end: u64,
    progress: &dyn Progress,
) -> Result<Vec<u8>> {
    let b = db.block_size();
    let mut out = vec![0u8; (end - start) as usize];
    // One slot per block: the part of `out` that block fills.
    let mut slots = Vec::new();
    let mut rest = out.as_mut_slice();
    for i in start / b..end.div_ceil(b) {
        let len = (((i + 1) * b).min(end) - (i * b).max(start)) as usize;
        let (slot, tail) = rest.split_at_mut(len);
        slots.push((i, Mutex::new(slot)));
        rest = tail;
    }
    par_map(&slots, concurrency, |(i, slot)| {
        let i = *i;
        let block = db.get_block(i)?.ok_or_else(|| {
            Error::Format(format!(
                "block {i} of the database is missing: the layout is damaged"
            ))
        })?;
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        let from = start.saturating_sub(i * b) as usize;
        if block.len() < from + slot.len() {
            return Err(Error::Format(format!(
                "block {i} of the database holds {} bytes where the header promises {}: the layout is damaged",
                block.len(),
                from + slot.len()
            )));
        }
        let n = slot.len();
        slot.copy_from_slice(&block[from..from + n]);
        progress.advance(n as u64);
        Ok(())
    })?;
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
    let dest = format!("s3://{}/{}/", db.bucket(), db.key);
    let replace_hint = "pass 'replace' as the third argument to overwrite it";
    // Refused before the lease is taken (no request writes anything), and again under it.
    if !replace {
        refuse_existing(db, replace, &dest, replace_hint, Error::Format)?;
    }
    let mut lease = WriteLease::take(db)?;
    let existing = refuse_existing(db, replace, &dest, replace_hint, Error::Format)?;
    store_blocks(db, len, &existing, &mut lease, &(), |start, end| {
        source
            .store
            .get_range(&source.key, start, end)?
            .filter(|d| d.len() as u64 == end - start)
            .ok_or_else(|| {
                Error::Format(format!("{where_} changed while it was being read: retry"))
            })
    })
}

/// The blocks stored at `db`, or (unless `replace`) the refusal to write over them:
/// `refused` makes the error, `hint` says how to overwrite.
fn refuse_existing(
    db: &Location,
    replace: bool,
    dest: &str,
    hint: &str,
    refused: fn(String) -> Error,
) -> Result<Vec<Block>> {
    let existing = blocks_at(db).blocks()?;
    if existing.is_empty() || replace {
        return Ok(existing);
    }
    Err(refused(if existing[0].index == 0 {
        format!("{dest} already holds a database: {hint}; nothing was written")
    } else {
        format!(
            "{dest} holds {} blocks but no block 0 (an interrupted copy, not a database): {hint}; nothing was written",
            existing.len()
        )
    }))
}

/// Stores `len` bytes, read in part-sized chunks by `read(start, end)`, as the blocks of
/// `db` (whose blocks before were `existing`), each chunk's blocks PUT in parallel, so that
/// exactly the new database is left. Returns the number of blocks written. The caller
/// holds the writer `lease`, renewed before each step.
///
/// The order makes every interrupted copy visibly not a database, never a half one that
/// looks real (SQLite reads block 0 for the header, and `ls` and `info` look for it):
///
/// 1. the old block 0 is deleted, first and alone;
/// 2. the old blocks past the new end are deleted;
/// 3. any rollback journal is deleted (it belongs to the old database and must never be
///    played back into the new one);
/// 4. blocks 1.. are stored;
/// 5. block 0 is stored, last: the commit point.
///
/// Crash states: stopped before 1, the old database (or nothing) is intact. Stopped after
/// 1 and before 5, the prefix has no block 0: SQLite through s3vfs answers "file is not a
/// database", `s3vfs_serialize` and `export` refuse it, and a new deserialize or import
/// asks for 'replace' (it names the leftover blocks an interrupted copy). Stopped after
/// 5, the new database is complete; the lease, not given back, expires by itself.
fn store_blocks(
    db: &Location,
    len: u64,
    existing: &[Block],
    lease: &mut WriteLease,
    progress: &dyn Progress,
    read: impl Fn(u64, u64) -> Result<Vec<u8>>,
) -> Result<u64> {
    let target = blocks_at(db);
    let b = target.block_size();
    let concurrency = db.cfg.concurrency;
    let chunk = part_size(len, b);
    let n_blocks = len.div_ceil(b);
    progress.start(len);
    target.forget_cached_blocks();
    // 1. The old database stops being one.
    if existing.iter().any(|blk| blk.index == 0) {
        lease.renew()?;
        db.store.delete(&block_key(&db.key, 0))?;
    }
    // 2. Stale blocks past the new end would lengthen the new database.
    let stale: Vec<String> = existing
        .iter()
        .filter(|blk| blk.index > 0 && blk.index >= n_blocks)
        .map(|blk| block_key(&db.key, blk.index))
        .collect();
    if !stale.is_empty() {
        lease.renew()?;
        db.store.delete_many(&stale)?;
    }
    // 3. A journal would be played back into the new database.
    lease.renew()?;
    let mut journal = BlockFile::new(db.store.clone(), &journal_name(&db.key), b);
    journal.delete_all(None)?;
    // 4. Every block but block 0, whose bytes are kept for the end.
    let mut first: Option<Vec<u8>> = None;
    for start in (0..len).step_by(chunk as usize) {
        lease.renew()?;
        let end = (start + chunk).min(len);
        let data = read(start, end)?;
        let indices: Vec<u64> = (start / b..end.div_ceil(b)).collect();
        let span = |i: u64| {
            (
                (i * b - start) as usize,
                (((i + 1) * b).min(end) - start) as usize,
            )
        };
        if start == 0 {
            let (from, to) = span(0);
            first = Some(data[from..to].to_vec());
        }
        let rest: Vec<u64> = indices.into_iter().filter(|&i| i != 0).collect();
        par_map(&rest, concurrency, |&i| {
            let (from, to) = span(i);
            db.store.put(&block_key(&db.key, i), &data[from..to])?;
            progress.advance((to - from) as u64);
            Ok(())
        })?;
    }
    // 5. The commit point.
    let first = first.expect("a database has a block 0 (its length was checked)");
    lease.renew()?;
    db.store.put(&block_key(&db.key, 0), &first)?;
    progress.advance(first.len() as u64);
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

mod local;
pub use local::{export_file, import_file};

#[cfg(test)]
mod tests;
