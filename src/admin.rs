//! Whole-database operations for the `s3vfs` command: finding the databases under a
//! prefix (`ls`), describing one (`info`), deleting one (`rm`) and breaking its lease
//! (`break-lease`). The command only parses arguments and prints; what counts as a
//! database, which objects belong to it and in which order they go is decided here, from
//! the keys of [`crate::layout`] and the header of [`crate::header`].
//!
//! Only objects a database owns are ever deleted: exact 10-digit block keys directly
//! under `<name>/` and `<name>-journal/`, its lease object, and reader marks that parse
//! as marks. Anything else under those prefixes (another database nested in it, a user's
//! file, a key like `<name>/123`) is left alone.

use crate::codes::Locking;
use crate::error::{Error, Result};
use crate::header::{journal_may_be_hot, Header, HEADER_LEN};
use crate::layout::{block_key, block_of, journal_name, lease_key, mark_of, marks_dir};
use crate::layout::{blocks_prefix, split_block_key};
use crate::lease::{self, Acquire, ConditionalWrites, Lease, LeaseRecord};
use crate::object_store::{CondPut, Condition, ObjectInfo, ObjectStore};
use crate::parallel::par_map;
use crate::store::BlockFile;
use crate::transfer::Location;
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
/// and `<X>-journal` of a database `X` is its journal, not another database. Headers are
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
        .filter(|(name, blocks)| is_db(blocks) && files.contains_key(&journal_name(name)))
        .map(|(name, _)| journal_name(name))
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
    /// Its writer lease.
    pub lease: LeaseState,
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
    /// Its reader marks.
    pub marks: Vec<String>,
    /// Whether its lease object exists.
    pub lease: bool,
    /// Objects under `<name>/` that are not its blocks, left alone.
    pub others: usize,
    /// The lease object's key.
    pub lease_key: String,
}

impl RemovalPlan {
    /// Bytes of the database's blocks.
    pub fn bytes(&self) -> u64 {
        self.blocks.iter().map(|o| o.size).sum()
    }

    /// Objects deleted in all.
    pub fn objects(&self) -> usize {
        self.blocks.len() + self.journal.len() + self.marks.len() + usize::from(self.lease)
    }

    /// The deletes in order, each a batch: the journal's block 0 (a journal without it
    /// is never hot), the database's block 0 (without it there is no database), the rest
    /// in batches of [`DELETE_BATCH`], the lease last (it keeps writers out meanwhile).
    pub fn steps(&self) -> Vec<Vec<String>> {
        let firsts: Vec<&ObjectInfo> = [&self.journal, &self.blocks]
            .into_iter()
            .filter_map(|group| group.iter().find(|o| o.key.ends_with("/0000000000")))
            .collect();
        let mut steps: Vec<Vec<String>> = firsts.iter().map(|o| vec![o.key.clone()]).collect();
        let rest: Vec<String> = self
            .journal
            .iter()
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
    let marks: Vec<String> = store
        .list(&marks_dir(&db.key), None)?
        .into_iter()
        .filter(|o| mark_of(&db.key, &o.key).is_some())
        .map(|o| o.key)
        .collect();
    let lease_key = lease_key(&db.key);
    let lease = store.head(&lease_key)?.is_some();
    let block0 = block_key(&db.key, 0);
    if !blocks.iter().any(|o| o.key == block0) && journal.is_empty() && !lease {
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
        marks,
        lease,
        others: others.len(),
        lease_key,
    })
}

/// Deletes the database at `db` and returns what was deleted: refused while another
/// writer holds its lease; holds the lease itself while deleting (unless locking is
/// `none`, where the check is all there is); then lists again under the lease and deletes
/// in the order of [`RemovalPlan::steps`].
pub fn remove(db: &Location) -> Result<RemovalPlan> {
    plan_removal(db)?;
    refuse_if_written(db, "delete")?;
    if db.cfg.locking != Locking::None {
        if let Acquire::Busy(r) = lease_of(db).acquire()? {
            return Err(Error::Refused(format!(
                "will not delete {}: a writer took its lease just now ({}); nothing was deleted",
                db.url(),
                holder(&r)
            )));
        }
    }
    let plan = plan_removal(db)?;
    for step in plan.steps() {
        match step.as_slice() {
            [one] => db.store.delete(one)?,
            many => db.store.delete_many(many)?,
        }
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
        host: hostname(),
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

/// This machine's name, recorded in a broken lease.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::header::SQLITE_MAGIC;
    use crate::object_store::memory::MemoryStore;

    fn config(locking: &str) -> Arc<Config> {
        let uri = |n: &str| match n {
            "bucket" => Some("b".to_string()),
            "endpoint" => Some("http://127.0.0.1:9".to_string()),
            "locking" => Some(locking.to_string()),
            _ => None,
        };
        let env = |n: &str| match n {
            "AWS_ACCESS_KEY_ID" => Some("a".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
            _ => None,
        };
        Arc::new(Config::resolve(&uri, &env).unwrap())
    }

    fn at(store: &Arc<MemoryStore>, key: &str) -> Location {
        Location {
            store: store.clone(),
            cfg: config("lease"),
            key: key.to_string(),
        }
    }

    /// A header block of `len` bytes for a database of `pages` pages of 4096 bytes.
    fn block0(len: usize, pages: u32) -> Vec<u8> {
        let mut h = vec![0u8; len];
        h[..16].copy_from_slice(SQLITE_MAGIC);
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[18] = 1;
        h[19] = 1;
        h[24..28].copy_from_slice(&1u32.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        h[92..96].copy_from_slice(&1u32.to_be_bytes());
        h
    }

    /// A database of `blocks` 4096-byte blocks at `name`.
    fn put_db(store: &MemoryStore, name: &str, blocks: u64) {
        store.poke(&block_key(name, 0), &block0(4096, blocks as u32));
        for i in 1..blocks {
            store.poke(&block_key(name, i), &[1; 4096]);
        }
    }

    fn lease_json(expires_ms: u64, released: bool) -> Vec<u8> {
        serde_json::to_vec(&LeaseRecord {
            owner: "w1".into(),
            host: "h".into(),
            pid: 42,
            expires_ms,
            released,
            pending: false,
            term_ms: 60_000,
        })
        .unwrap()
    }

    #[test]
    fn discovery_counts_only_exact_block_keys_and_folds_journals_in() {
        let store = MemoryStore::default();
        put_db(&store, "apps/a.db", 3);
        store.poke("apps/a.db-journal/0000000000", &[0; 512]);
        put_db(&store, "apps/a.db/nested.db", 1);
        store.poke("apps/a.db/123", b"x");
        store.poke("apps/a.db/photos/cat.jpg", b"x");
        store.poke("apps/notes.txt", b"x");
        store.poke("apps/loose/0000000001", b"no block 0");
        store.poke("apps/long/00000000000", b"11 digits");
        store.poke("apps/x.db/0000000000", b"not sqlite");
        store.poke("0000000000", b"no name");
        let found = discover(&store, "apps/", 4).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["apps/a.db", "apps/a.db/nested.db", "apps/x.db"]);
        let a = &found[0];
        assert_eq!(
            (a.size, a.block_size, a.blocks, a.journal),
            (3 * 4096, 4096, 3, true)
        );
        assert_eq!(a.header.as_ref().map(|h| h.page_size), Some(4096));
        assert!(!found[1].journal && found[1].single_block());
        assert_eq!(found[2].header, None);
        assert!(discover(&store, "nothing/", 4).unwrap().is_empty());
    }

    #[test]
    fn a_journal_alone_is_listed_and_a_journal_of_a_database_is_not() {
        let store = MemoryStore::default();
        put_db(&store, "x-journal", 1);
        let found = discover(&store, "", 4).unwrap();
        assert_eq!(found.len(), 1, "without x, x-journal is all there is");
        put_db(&store, "x", 2);
        let found = discover(&store, "", 4).unwrap();
        assert_eq!(found.iter().map(|f| &f.name[..]).collect::<Vec<_>>(), ["x"]);
        assert!(found[0].journal);
    }

    #[test]
    fn removal_keeps_everything_that_is_not_the_databases() {
        let store = Arc::new(MemoryStore::default());
        put_db(&store, "app", 3);
        store.poke("app-journal/0000000000", &[0xd9; 512]);
        store.poke("app-journal/0000000001", &[1; 512]);
        store.poke(&format!("{}1700000000000-r1", marks_dir("app")), b"{}");
        store.poke("app.s3vfs-lease", &lease_json(1, true));
        let keep = [
            "app/nested.db/0000000000",
            "app/photos/cat.jpg",
            "app/123",
            "app/0000000000/0000000000",
            "app-journal/notes.txt",
            "app.s3vfs-readers/readme.txt",
            "app.dbx/0000000000",
            "apple/0000000000",
        ];
        for k in keep {
            store.poke(k, b"keep");
        }
        let plan = plan_removal(&at(&store, "app")).unwrap();
        assert_eq!(
            (plan.blocks.len(), plan.journal.len(), plan.marks.len()),
            (3, 2, 1)
        );
        assert!(plan.lease);
        assert_eq!(plan.others, 4);
        assert_eq!(plan.objects(), 7);
        assert_eq!(plan.bytes(), 3 * 4096);

        store.clear_requests();
        remove(&at(&store, "app")).unwrap();
        assert_eq!(store.keys(), {
            let mut k = keep.map(String::from).to_vec();
            k.sort();
            k
        });
        let deletes: Vec<String> = store
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("DELETE"))
            .filter(|r| !r.contains("probe"))
            .collect();
        assert_eq!(
            deletes,
            [
                "DELETE app-journal/0000000000",
                "DELETE app/0000000000",
                "DELETE_MANY app-journal/0000000001,app/0000000001,app/0000000002,app.s3vfs-readers/1700000000000-r1",
                "DELETE app.s3vfs-lease",
            ]
        );
    }

    #[test]
    fn a_name_without_a_database_is_refused_and_nothing_is_deleted() {
        let store = Arc::new(MemoryStore::default());
        for k in [
            "app/photos/cat.jpg",
            "app/123",
            "app/0000000001",
            "app.s3vfs-readers/1-x",
        ] {
            store.poke(k, b"x");
        }
        let before = store.keys();
        for result in [
            plan_removal(&at(&store, "app")).map(|_| ()),
            remove(&at(&store, "app")).map(|_| ()),
        ] {
            let e = result.unwrap_err();
            assert!(matches!(e, Error::NotFound(_)), "{e}");
            assert!(e.to_string().contains("no database at s3://b/app"), "{e}");
        }
        assert_eq!(store.keys(), before);
        assert_eq!(store.count("DELETE"), 0);
        assert_eq!(store.count("PUT"), 0, "not even a lease was taken");
    }

    #[test]
    fn a_journal_or_a_lease_alone_is_still_removable() {
        let store = Arc::new(MemoryStore::default());
        store.poke("app-journal/0000000003", b"j");
        assert_eq!(remove(&at(&store, "app")).unwrap().journal.len(), 1);
        store.poke("app.s3vfs-lease", &lease_json(1, true));
        assert!(remove(&at(&store, "app")).unwrap().lease);
        assert!(store.keys().is_empty());
    }

    #[test]
    fn deletes_go_in_batches_of_a_thousand() {
        let plan = RemovalPlan {
            blocks: (0..2500)
                .map(|i| ObjectInfo {
                    key: block_key("d", i),
                    size: 1,
                })
                .collect(),
            lease_key: lease_key("d"),
            ..RemovalPlan::default()
        };
        let sizes: Vec<usize> = plan.steps().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1000, 1000, 499]);
        assert_eq!(plan.steps()[0], ["d/0000000000"]);
    }

    #[test]
    fn a_live_lease_refuses_removal() {
        let store = Arc::new(MemoryStore::default());
        put_db(&store, "app", 1);
        store.poke(
            "app.s3vfs-lease",
            &lease_json(lease::now_ms() + 60_000, false),
        );
        let e = remove(&at(&store, "app")).unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(
            e.to_string().contains("a writer holds its lease") && e.to_string().contains("pid 42")
        );
        assert_eq!(store.keys().len(), 2);
    }

    #[test]
    fn describe_reads_the_header_journal_and_lease() {
        let store = Arc::new(MemoryStore::default());
        let db = at(&store, "app");
        assert!(matches!(describe(&db), Err(Error::NotFound(_))));
        put_db(&store, "app", 3);
        let info = describe(&db).unwrap();
        assert_eq!(
            (info.size, info.block_size, info.blocks()),
            (3 * 4096, 4096, 3)
        );
        assert_eq!(
            (info.journal, info.lease.clone()),
            (JournalState::None, LeaseState::None)
        );
        store.poke("app-journal/0000000000", &[0; 512]);
        assert_eq!(describe(&db).unwrap().journal, JournalState::NotHot);
        store.poke("app-journal/0000000000", &crate::header::JOURNAL_MAGIC);
        assert_eq!(describe(&db).unwrap().journal, JournalState::Hot);
        store.poke("app.s3vfs-lease", &lease_json(5, false));
        assert!(matches!(
            describe(&db).unwrap().lease,
            LeaseState::Expired(_)
        ));
        store.poke("app.s3vfs-lease", &lease_json(5, true));
        assert!(matches!(
            describe(&db).unwrap().lease,
            LeaseState::Released(_)
        ));
        store.poke(
            "app.s3vfs-lease",
            &lease_json(lease::now_ms() + 60_000, false),
        );
        assert!(matches!(describe(&db).unwrap().lease, LeaseState::Held(r) if r.pid == 42));
        store.poke("app/0000000000", b"not sqlite");
        assert!(matches!(describe(&db), Err(Error::Format(_))));
    }

    #[test]
    fn breaking_a_lease_releases_only_the_version_that_was_confirmed() {
        let store = Arc::new(MemoryStore::default());
        let db = at(&store, "app");
        assert!(matches!(break_lease(&db, "w1"), Err(Error::NotFound(_))));
        // Junk from a clock far ahead: held for ever unless broken.
        store.poke("app.s3vfs-lease", &lease_json(u64::MAX / 2, false));
        assert!(matches!(break_lease(&db, "w1").unwrap(), Broken::Broken(r) if r.pid == 42));
        let (after, _) = read_lease(&db).unwrap().unwrap();
        assert!(after.released && !after.live(lease::now_ms()));
        assert_eq!(after.owner, "broken:w1");
        assert!(matches!(
            break_lease(&db, "w1").unwrap(),
            Broken::AlreadyFree(_)
        ));

        // Another writer took it after the user confirmed w1: refused, untouched.
        let other = serde_json::to_vec(&LeaseRecord {
            owner: "w2".into(),
            ..serde_json::from_slice::<LeaseRecord>(&lease_json(lease::now_ms() + 60_000, false))
                .unwrap()
        })
        .unwrap();
        store.poke("app.s3vfs-lease", &other);
        assert!(matches!(break_lease(&db, "w1"), Err(Error::Refused(_))));
        assert_eq!(store.peek("app.s3vfs-lease").unwrap(), other);
    }

    #[test]
    fn a_lease_renewed_during_the_break_is_not_clobbered() {
        use crate::object_store::memory::Fault;
        let store = Arc::new(MemoryStore::default());
        let db = at(&store, "app");
        store.poke(
            "app.s3vfs-lease",
            &lease_json(lease::now_ms() + 60_000, false),
        );
        // The holder renews between our read and our conditional PUT.
        let renewed = lease_json(lease::now_ms() + 90_000, false);
        store.fail_next(
            "PUT_IF",
            "app.s3vfs-lease",
            Fault::Delay(std::time::Duration::from_millis(400)),
        );
        let renewer = {
            let (store, renewed) = (store.clone(), renewed.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                store.poke("app.s3vfs-lease", &renewed);
            })
        };
        let e = break_lease(&db, "w1").unwrap_err();
        renewer.join().unwrap();
        assert!(
            matches!(e, Error::Refused(_)) && e.to_string().contains("changed while"),
            "{e}"
        );
        assert_eq!(store.peek("app.s3vfs-lease").unwrap(), renewed);
    }
}
