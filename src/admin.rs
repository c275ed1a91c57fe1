//! Whole-database operations for the `s3vfs` command: finding the databases under a
//! prefix (`ls`), describing one (`info`), deleting one (`rm`) and breaking its lease
//! (`break-lease`). The command only parses arguments and prints; what counts as a
//! database, which objects belong to it and in which order they go is decided here, from
//! the keys of [`crate::layout`] and the header of [`crate::header`].
//!
//! Only objects a database owns are ever deleted: exact 10-digit block keys directly
//! under `<name>/`, `<name>-journal/` and `<name>-wal/`, its lease object, and reader
//! marks that parse as marks. Anything else under those prefixes (another database nested
//! in it, a user's file, a key like `<name>/123`) is left alone.

use crate::codes::Locking;
use crate::error::{Error, Result};
use crate::header::{journal_may_be_hot, Header, HEADER_LEN};
use crate::layout::{block_key, block_of, journal_name, lease_key, mark_of, marks_dir, wal_name};
use crate::layout::{blocks_prefix, split_block_key};
use crate::lease::{self, Acquire, ConditionalWrites, Lease, LeaseRecord};
use crate::object_store::{CondPut, Condition, ObjectInfo, ObjectStore};
use crate::parallel::par_map;
use crate::store::BlockFile;
use crate::transfer::Location;
use crate::versions::Cleaned;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys deleted per DeleteObjects request (S3's limit).
pub const DELETE_BATCH: usize = 1000;

/// Bytes of the journal header that decide whether it is hot.
const JOURNAL_HEADER: u64 = 28;

/// A database found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDb {
    /// Its name (the key prefix of its blocks, without the trailing `/`).
    pub name: String,
    /// Bytes, from the listing: the last block's offset plus its length.
    pub size: u64,
    /// Length of block 0: the block size, or at least it when the database is one block.
    pub block_size: u64,
    /// Blocks listed.
    pub blocks: usize,
    /// Whether blocks of its journal (`<name>-journal/`) are stored.
    pub journal: bool,
    /// Its header, `None` when block 0 does not start with a SQLite header.
    pub header: Option<Header>,
}

impl FoundDb {
    /// One block only: any block size at least its length reads it.
    pub fn single_block(&self) -> bool {
        self.blocks == 1
    }
}

/// The databases under `prefix` (a raw key prefix: `apps/` or `apps/a`), in key order. A
/// database is a name with a block `0000000000`; only exact 10-digit block keys count,
/// and `<X>-journal` and `<X>-wal` of a database `X` are its journal and WAL, not other
/// databases. Headers are
/// read `concurrency` at a time.
pub fn discover(store: &dyn ObjectStore, prefix: &str, concurrency: usize) -> Result<Vec<FoundDb>> {
    // Per name: (index, length) of each block.
    let mut files: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for o in store.list(prefix, None)? {
        if let Some((name, index)) = split_block_key(&o.key) {
            files
                .entry(name.to_string())
                .or_default()
                .push((index, o.size));
        }
    }
    let is_db = |blocks: &Vec<(u64, u64)>| blocks.iter().any(|&(i, _)| i == 0);
    let journals: Vec<String> = files
        .iter()
        .filter(|(_, blocks)| is_db(blocks))
        .flat_map(|(name, _)| [journal_name(name), wal_name(name)])
        .filter(|companion| files.contains_key(companion))
        .collect();
    let mut found: Vec<FoundDb> = files
        .iter()
        .filter(|(name, blocks)| is_db(blocks) && !journals.contains(name))
        .map(|(name, blocks)| {
            let first = blocks
                .iter()
                .find(|b| b.0 == 0)
                .expect("a database has block 0");
            let last = blocks.iter().max_by_key(|b| b.0).expect("not empty");
            FoundDb {
                name: name.clone(),
                size: last.0 * first.1 + last.1,
                block_size: first.1,
                blocks: blocks.len(),
                journal: files.contains_key(&journal_name(name)),
                header: None,
            }
        })
        .collect();
    let headers = par_map(&found, concurrency, |f| read_header(store, &f.name))?;
    for (f, h) in found.iter_mut().zip(headers) {
        f.header = h;
    }
    Ok(found)
}

/// The header of database `name`, if block 0 starts with one.
fn read_header(store: &dyn ObjectStore, name: &str) -> Result<Option<Header>> {
    Ok(store
        .get_range(&block_key(name, 0), 0, HEADER_LEN as u64)?
        .and_then(|h| Header::parse(&h)))
}

/// The state of a database's rollback journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalState {
    /// No journal blocks are stored.
    None,
    /// Its header would be played back: a writer is committing, or crashed.
    Hot,
    /// Stored, but zeroed or partly deleted: never played back.
    NotHot,
}

/// The state of a database's writer lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// No lease object.
    None,
    /// A writer holds it and it has not expired.
    Held(LeaseRecord),
    /// Its last holder released it.
    Released(LeaseRecord),
    /// Its holder did not release it, and it expired (a crashed writer).
    Expired(LeaseRecord),
}

/// What `info` shows about one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its SQLite header.
    pub header: Header,
    /// Bytes: the header's page count × page size, else from the listing.
    pub size: u64,
    /// Length of block 0 (the block size, or at least it when `single_block`).
    pub block_size: u64,
    /// The database is one block only.
    pub single_block: bool,
    /// Its rollback journal.
    pub journal: JournalState,
    /// Its WAL's blocks, when any are stored.
    pub wal: Option<WalFile>,
    /// Its writer lease.
    pub lease: LeaseState,
}

/// The blocks stored under a database's `<name>-wal/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFile {
    /// How many blocks.
    pub blocks: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl Info {
    /// Blocks the database takes at its block size.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size.max(1))
    }
}

/// Describes the database at `db`: [`Error::NotFound`] when nothing is stored under its
/// block prefix, [`Error::Format`] when its block 0 is not a SQLite header.
pub fn describe(db: &Location) -> Result<Info> {
    let name = db.url();
    let first = BlockFile::new(db.store.clone(), &db.key, 4096).first_blocks(2)?;
    if first.is_empty() {
        return Err(Error::NotFound(format!(
            "no database at {name}: nothing is stored under {name}/ (check the URL; `s3vfs ls` lists the databases under a prefix)"
        )));
    }
    let header = read_header(db.store.as_ref(), &db.key)?.ok_or_else(|| {
        Error::Format(format!(
            "{name}/ holds no SQLite database: its block 0 is missing or does not start with the SQLite header"
        ))
    })?;
    let size = match header.size() {
        Some(s) => s,
        None => BlockFile::new(db.store.clone(), &db.key, first[0].len).listed_size()?,
    };
    Ok(Info {
        header,
        size,
        block_size: first[0].len,
        single_block: first.len() == 1,
        journal: journal_state(db)?,
        wal: wal_file(db)?,
        lease: lease_state(db)?,
    })
}

/// The state of the journal of the database at `db`.
pub fn journal_state(db: &Location) -> Result<JournalState> {
    let journal = journal_name(&db.key);
    let stored = db
        .store
        .list(&blocks_prefix(&journal), None)?
        .iter()
        .any(|o| block_of(&journal, &o.key).is_some());
    if !stored {
        return Ok(JournalState::None);
    }
    let first = db
        .store
        .get_range(&block_key(&journal, 0), 0, JOURNAL_HEADER)?;
    Ok(match journal_may_be_hot(first.as_deref()) {
        true => JournalState::Hot,
        false => JournalState::NotHot,
    })
}

/// The blocks of the WAL of the database at `db`, if any are stored.
pub fn wal_file(db: &Location) -> Result<Option<WalFile>> {
    let wal = wal_name(&db.key);
    let blocks: Vec<ObjectInfo> = db
        .store
        .list(&blocks_prefix(&wal), None)?
        .into_iter()
        .filter(|o| block_of(&wal, &o.key).is_some())
        .collect();
    Ok((!blocks.is_empty()).then(|| WalFile {
        blocks: blocks.len(),
        bytes: blocks.iter().map(|o| o.size).sum(),
    }))
}

/// A lease handle for `db` (not taken).
fn lease_of(db: &Location) -> Lease {
    Lease::new(
        db.store.clone(),
        &db.key,
        db.cfg.lease_term,
        Arc::new(ConditionalWrites::default()),
    )
}

/// The lease object of `db` with its ETag, if there is one.
pub fn read_lease(db: &Location) -> Result<Option<(LeaseRecord, String)>> {
    lease_of(db).read()
}

/// The state of the writer lease of `db`.
pub fn lease_state(db: &Location) -> Result<LeaseState> {
    Ok(match read_lease(db)? {
        None => LeaseState::None,
        Some((r, _)) if r.live(lease::now_ms()) => LeaseState::Held(r),
        Some((r, _)) if r.released => LeaseState::Released(r),
        Some((r, _)) => LeaseState::Expired(r),
    })
}

/// A Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms after the epoch"),
    }
}

/// Who holds a lease, for people: owner, host, pid, expiry.
pub fn holder(r: &LeaseRecord) -> String {
    let left = r.expires_ms.saturating_sub(lease::now_ms()).div_ceil(1000);
    format!(
        "owner {}, host {}, pid {}, expires {} (in {left} s){}",
        r.owner,
        r.host,
        r.pid,
        utc(r.expires_ms),
        if r.pending {
            ", waiting to write pages"
        } else {
            ""
        }
    )
}

/// Refuses to `what` (a verb: "delete", "replace") the database at `db` while another
/// writer holds its lease.
pub fn refuse_if_written(db: &Location, what: &str) -> Result<()> {
    match lease_state(db)? {
        LeaseState::Held(r) => Err(Error::Refused(format!(
            "will not {what} {}: a writer holds its lease ({}); retry when it is done",
            db.url(),
            holder(&r)
        ))),
        _ => Ok(()),
    }
}

/// The objects of one database, in the groups `rm` reports and deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalPlan {
    /// Its blocks (exact 10-digit keys directly under `<name>/`).
    pub blocks: Vec<ObjectInfo>,
    /// Its journal's blocks (under `<name>-journal/`).
    pub journal: Vec<ObjectInfo>,
    /// Its WAL's blocks (under `<name>-wal/`).
    pub wal: Vec<ObjectInfo>,
    /// Its reader marks.
    pub marks: Vec<String>,
    /// Whether its lease object exists.
    pub lease: bool,
    /// Objects under `<name>/` that are not its blocks, left alone.
    pub others: usize,
    /// The lease object's key.
    pub lease_key: String,
    /// In a versioned bucket, the old versions and delete markers of its lease, journal,
    /// marks and probes deleted after the objects (the versions of its blocks are kept).
    pub swept: Option<Cleaned>,
}

impl RemovalPlan {
    /// Bytes of the database's blocks.
    pub fn bytes(&self) -> u64 {
        self.blocks.iter().map(|o| o.size).sum()
    }

    /// Objects deleted in all.
    pub fn objects(&self) -> usize {
        self.blocks.len()
            + self.journal.len()
            + self.wal.len()
            + self.marks.len()
            + usize::from(self.lease)
    }

    /// The deletes in order, each a batch: the journal's block 0 (a journal without it
    /// is never hot), the WAL's (a WAL without its header is no WAL), the database's block
    /// 0 (without it there is no database), the rest in batches of [`DELETE_BATCH`], the
    /// lease last (it keeps writers out meanwhile).
    pub fn steps(&self) -> Vec<Vec<String>> {
        let firsts: Vec<&ObjectInfo> = [&self.journal, &self.wal, &self.blocks]
            .into_iter()
            .filter_map(|group| group.iter().find(|o| o.key.ends_with("/0000000000")))
            .collect();
        let mut steps: Vec<Vec<String>> = firsts.iter().map(|o| vec![o.key.clone()]).collect();
        let rest: Vec<String> = self
            .journal
            .iter()
            .chain(&self.wal)
            .chain(&self.blocks)
            .map(|o| o.key.clone())
            .chain(self.marks.iter().cloned())
            .filter(|k| !firsts.iter().any(|f| &f.key == k))
            .collect();
        steps.extend(rest.chunks(DELETE_BATCH).map(<[String]>::to_vec));
        if self.lease {
            steps.push(vec![self.lease_key.clone()]);
        }
        steps
    }
}

/// Lists what deleting the database at `db` would delete. [`Error::NotFound`] when the
/// name holds no database: no block 0, no journal and no lease.
pub fn plan_removal(db: &Location) -> Result<RemovalPlan> {
    let store = db.store.as_ref();
    let (blocks, others): (Vec<ObjectInfo>, Vec<ObjectInfo>) = store
        .list(&blocks_prefix(&db.key), None)?
        .into_iter()
        .partition(|o| block_of(&db.key, &o.key).is_some());
    let journal_name = journal_name(&db.key);
    let journal: Vec<ObjectInfo> = store
        .list(&blocks_prefix(&journal_name), None)?
        .into_iter()
        .filter(|o| block_of(&journal_name, &o.key).is_some())
        .collect();
    let wal_key = wal_name(&db.key);
    let wal: Vec<ObjectInfo> = store
        .list(&blocks_prefix(&wal_key), None)?
        .into_iter()
        .filter(|o| block_of(&wal_key, &o.key).is_some())
        .collect();
    let marks: Vec<String> = store
        .list(&marks_dir(&db.key), None)?
        .into_iter()
        .filter(|o| mark_of(&db.key, &o.key).is_some())
        .map(|o| o.key)
        .collect();
    let lease_key = lease_key(&db.key);
    let lease = store.head(&lease_key)?.is_some();
    let block0 = block_key(&db.key, 0);
    if !blocks.iter().any(|o| o.key == block0) && journal.is_empty() && wal.is_empty() && !lease {
        let name = db.url();
        // Blocks without a block 0 are no database's either (a copy interrupted early).
        let left = match blocks.len() + others.len() {
            0 => String::new(),
            1 => format!("; the one object under {name}/ is no database's and is left alone"),
            n => format!("; the {n} objects under {name}/ are no database's and are left alone"),
        };
        return Err(Error::NotFound(format!(
            "no database at {name}: nothing to delete (no block 0000000000, journal or lease{left}; check the URL; `s3vfs ls` lists the databases under a prefix)"
        )));
    }
    Ok(RemovalPlan {
        blocks,
        journal,
        wal,
        marks,
        lease,
        others: others.len(),
        lease_key,
        swept: None,
    })
}

/// Deletes the database at `db` and returns what was deleted: refused while another
/// writer holds its lease; holds the lease itself while deleting (unless locking is
/// `none`, where the check is all there is); then lists again under the lease and deletes
/// in the order of [`RemovalPlan::steps`]. In a versioned bucket (learnt when taking the
/// lease) the old versions of the database's bookkeeping go too, and every version of its
/// blocks stays: deleting only adds a delete marker to each block, so the database can
/// still be restored from its versions.
pub fn remove(db: &Location) -> Result<RemovalPlan> {
    plan_removal(db)?;
    refuse_if_written(db, "delete")?;
    let mut lease = None;
    if db.cfg.locking != Locking::None {
        let mut ours = lease_of(db);
        if let Acquire::Busy(r) = ours.acquire()? {
            return Err(Error::Refused(format!(
                "will not delete {}: a writer took its lease just now ({}); nothing was deleted",
                db.url(),
                holder(&r)
            )));
        }
        lease = Some(ours);
    }
    let mut plan = plan_removal(db)?;
    for step in plan.steps() {
        match step.as_slice() {
            [one] => db.store.delete(one)?,
            many => db.store.delete_many(many)?,
        }
    }
    if let Some(lease) = lease.as_mut() {
        plan.swept = lease.sweep_now()?;
    }
    Ok(plan)
}

/// What [`break_lease`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// The live lease (this record) was replaced by a released one.
    Broken(LeaseRecord),
    /// The lease was released or expired already; nothing was written.
    AlreadyFree(LeaseRecord),
}

/// Breaks the lease of `db` deliberately, if it is still held by `owner` (the holder the
/// user confirmed): replaces it by a released record with a conditional PUT on the ETag
/// just read, so a lease renewed or taken over in between is never clobbered. The holder
/// learns at its next renewal that it lost the lease, and its transaction fails.
pub fn break_lease(db: &Location, owner: &str) -> Result<Broken> {
    let url = db.url();
    let key = lease_key(&db.key);
    let Some((current, etag)) = read_lease(db)? else {
        return Err(Error::NotFound(format!(
            "no lease at {url}: there is no object s3://{}/{key}; nothing to break",
            db.bucket()
        )));
    };
    if !current.live(lease::now_ms()) {
        return Ok(Broken::AlreadyFree(current));
    }
    if current.owner != owner {
        return Err(Error::Refused(format!(
            "the lease of {url} changed hands since it was read: now {}; nothing was changed (run break-lease again)",
            holder(&current)
        )));
    }
    let released = LeaseRecord {
        owner: format!("broken:{}", current.owner),
        host: lease::hostname(),
        pid: std::process::id(),
        expires_ms: lease::now_ms(),
        released: true,
        pending: false,
        term_ms: current.term_ms,
    };
    let body = serde_json::to_vec(&released).expect("a lease record always serializes");
    match db.store.put_if(&key, &body, Condition::Matches(&etag))? {
        CondPut::Stored(_) => Ok(Broken::Broken(current)),
        CondPut::Refused => Err(Error::Refused(format!(
            "the lease of {url} changed while it was being broken (renewed or taken over); nothing was changed (run break-lease again)"
        ))),
    }
}

#[cfg(test)]
mod tests;
