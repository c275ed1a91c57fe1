//! The VFS named `s3` as a safe object: [`S3Vfs`] owns everything the process keeps for
//! its databases, and [`S3File`] is one open file. The C edge (`ffi.rs`) converts SQLite's
//! callbacks into calls on these two and their errors into result codes; nothing here is
//! `unsafe` or knows a C pointer.
//!
//! What goes where:
//! - A main database lives where its URI parameters say. Its journal and WAL learn their
//!   database from their own name (the FFI passes the address SQLite gave the database's
//!   journal and WAL names, [`NameRef`]), so a journal is always stored beside its own
//!   database, whatever other database of the same name is open in another bucket.
//! - A super-journal (and the child journal names a super-journal lists) reaches the VFS as
//!   a plain string; it belongs to the one open database of its owner's name, and when
//!   that name is open in more than one place the operation is refused rather than guessed.
//! - Temporary files never get here: the FFI opens them with the default VFS.
//!
//! Contracts kept here: reads past the end zero-fill and report a short read; writes are
//! buffered and [`S3File::sync`] returns only when every buffered block is stored, the
//! journal first; a lock that is given up flushes first (for `synchronous=OFF`, which
//! never syncs); taking the first lock starts a read transaction, which revalidates the
//! shared block cache against block 0. Locks are enforced within the process by the lock
//! table and across processes by the writer lease (`lock.rs`).
//!
//! One open file's writes, flush, size and close are in `vfs/file.rs`; its locks in
//! `vfs/locking.rs`; a read transaction's start in `vfs/read.rs`; opening a main database
//! (and the checks of what is stored at its prefix) in `vfs/open.rs`; what only WAL mode
//! uses in `vfs/wal.rs`.

use crate::cache::CACHE;
use crate::codes::{code, Locking, OpenKind};
use crate::config::{self, Config, ProcessSettings, Target};
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::journal::{Journals, SharedFile};
use crate::layout::{self, journal_name, DbId};
use crate::lease::{ConditionalWrites, Lease};
use crate::lock::{Lock, LockTable};
use crate::logging;
use crate::object_store::ObjectStore;
use crate::s3::S3Client;
use crate::shm::ShmTable;
use crate::store::BlockFile;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// The environment a VFS resolves settings from (the process's, or a test's).
pub type Env = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Makes the store for a bucket: S3 in production, memory in unit tests.
pub type StoreFactory = Box<dyn Fn(&Arc<Target>) -> Arc<dyn ObjectStore> + Send + Sync>;

/// A file name as SQLite passed it: the text, and the address of the C string. The
/// address identifies a database's journal and WAL names exactly (SQLite derives them from
/// the database's name in one allocation and passes the same pointer each time).
#[derive(Clone, Copy, Debug)]
pub struct NameRef<'a> {
    pub text: &'a str,
    pub addr: usize,
}

/// What xOpen tells about the file to open.
pub struct OpenRequest<'a> {
    pub name: NameRef<'a>,
    pub flags: i32,
    /// For a main database: its URI parameters, the names given, and the addresses of its
    /// journal's and WAL's names.
    pub uri: &'a dyn Fn(&str) -> Option<String>,
    pub uri_keys: Vec<String>,
    pub companions: [usize; 2],
}

/// One open main database, as other files find it.
struct OpenDb {
    handle: u64,
    companions: [usize; 2],
    id: DbId,
    cfg: Arc<Config>,
}

/// The process's `s3` VFS: every piece of state it keeps, keyed by database identity.
pub struct S3Vfs {
    journals: Journals,
    locks: LockTable,
    probes: Arc<ConditionalWrites>,
    open: Mutex<Vec<OpenDb>>,
    /// WAL indexes of databases in WAL mode (`shm.rs`).
    shm: ShmTable,
    /// Open WAL files, by identity: every connection of the process shares one, as they
    /// would share one inode locally, so each sees the frames the others wrote.
    wals: Mutex<HashMap<Arc<str>, Weak<Mutex<BlockFile>>>>,
    /// Databases whose header, just read by a starting read transaction, says rollback
    /// mode: their WAL does not exist (see `exists`).
    no_wal_hints: Mutex<HashMap<Arc<str>, Instant>>,
    last_error: Mutex<Option<String>>,
    settings: ProcessSettings,
    env: Env,
    stores: StoreFactory,
    next_handle: AtomicU64,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl S3Vfs {
    /// The production VFS: S3 stores and the process environment.
    pub fn new() -> S3Vfs {
        S3Vfs::with_parts(
            config::process().clone(),
            Box::new(config::process_env),
            Box::new(|t| Arc::new(S3Client::new(t.clone()))),
        )
    }

    /// A VFS with its own settings, environment and stores (unit tests).
    pub fn with_parts(settings: ProcessSettings, env: Env, stores: StoreFactory) -> S3Vfs {
        S3Vfs {
            journals: Journals::default(),
            locks: LockTable::default(),
            probes: Arc::default(),
            open: Mutex::default(),
            shm: ShmTable::default(),
            wals: Mutex::default(),
            no_wal_hints: Mutex::default(),
            last_error: Mutex::default(),
            settings,
            env,
            stores,
            next_handle: AtomicU64::new(1),
        }
    }

    fn env_config(&self, bucket: Option<&str>) -> Result<Config> {
        let uri = |p: &str| {
            (p == "bucket")
                .then(|| bucket.map(str::to_string))
                .flatten()
        };
        Config::resolve(&uri, &*self.env)
    }

    fn block_file(&self, cfg: &Config, name: &str) -> BlockFile {
        BlockFile::new((self.stores)(&cfg.target), name, cfg.block_size)
            .with_concurrency(cfg.concurrency)
    }

    /// A file of database `db` that writes only while `db`'s fence is open (unless
    /// locking is off: then nothing coordinates writers and nothing is fenced).
    fn fenced_file(&self, cfg: &Config, db: &DbId, name: &str) -> BlockFile {
        let store = (self.stores)(&cfg.target);
        let store = match cfg.locking {
            Locking::None => store,
            _ => store.fenced(self.locks.fence(&db.key())),
        };
        BlockFile::new(store, name, cfg.block_size).with_concurrency(cfg.concurrency)
    }

    /// The database a non-main file belongs to: exactly, by the address of its name, when
    /// SQLite derived it from an open database; else by SQLite's naming rule among the
    /// open databases; else (nothing of that name open here) the environment's settings.
    fn owner(&self, name: NameRef) -> Result<(DbId, Arc<Config>)> {
        let open = locked(&self.open);
        if let Some(db) = open.iter().find(|d| d.companions.contains(&name.addr)) {
            return Ok((db.id.clone(), db.cfg.clone()));
        }
        let (db_name, _) = layout::owner_of(name.text);
        self.unique_open(&open, db_name, None)
            .transpose()
            .unwrap_or_else(|| {
                let cfg = Arc::new(self.env_config(None)?);
                Ok((DbId::new(&cfg.target.id(), db_name), cfg))
            })
    }

    /// The one open database named `name` (in `bucket`, when given).
    fn unique_open(
        &self,
        open: &[OpenDb],
        name: &str,
        bucket: Option<&str>,
    ) -> Result<Option<(DbId, Arc<Config>)>> {
        let mut found: Vec<&OpenDb> = open
            .iter()
            .filter(|d| d.id.name == name && bucket.is_none_or(|b| d.id.bucket == b))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((one.id.clone(), one.cfg.clone()))),
            [a, b, ..] => Err(Error::Config(format!(
                "'{name}' is open in more than one place (s3://{}/{name} at {}, s3://{}/{name} at {}), and SQLite gave no URI to tell which one this file belongs to: give the databases different names, or name the bucket (s3://bucket/{name})",
                a.id.bucket, a.id.endpoint, b.id.bucket, b.id.endpoint
            ))),
        }
    }

    /// Settings for a database named by an SQL function argument: `s3://bucket/key` or a
    /// plain key. An open database of that name (in that bucket) lends its settings, since
    /// it is the same database; otherwise the environment's, with the bucket given.
    pub fn config_for_argument(&self, arg: &str) -> Result<(Arc<Config>, String)> {
        let (bucket, key) = match arg.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() || key.is_empty() {
                    return Err(Error::Config(format!(
                        "'{arg}' is not of the form s3://bucket/key"
                    )));
                }
                (Some(bucket), key)
            }
            None => (None, arg),
        };
        let open = locked(&self.open);
        if let Some((_, cfg)) = self.unique_open(&open, key, bucket)? {
            return Ok((cfg, key.to_string()));
        }
        drop(open);
        Ok((Arc::new(self.env_config(bucket)?), key.to_string()))
    }

    /// Opens a database, journal, WAL or super-journal stored in S3.
    pub fn open(&'static self, req: OpenRequest) -> Result<S3File> {
        let kind = OpenKind::from_flags(req.flags);
        let name = req.name.text;
        let (id, db, cfg) = if kind == OpenKind::Database {
            config::check_db_name(name)?;
            config::check_uri_keys(&req.uri_keys)?;
            config::check_uri_values(req.uri)?;
            let cfg = Arc::new(Config::resolve(req.uri, &*self.env)?);
            let id = DbId::new(&cfg.target.id(), name);
            (id.clone(), id, cfg)
        } else {
            let (db, cfg) = self.owner(req.name)?;
            (db.sibling(name), db, cfg)
        };
        let mut file = self.fenced_file(&cfg, &db, name);
        let mut open_check = None;
        match kind {
            OpenKind::Database => {
                file = file.with_whole_blocks();
                CACHE.set_capacity(cfg.cache_size);
                let jname = journal_name(name);
                self.journals.settle(&id.sibling(&jname).key());
                let journal = self.block_file(&cfg, &jname);
                open_check = open_database(&mut file, &journal, &cfg, name, req.flags)?;
            }
            OpenKind::Wal => {
                // A WAL deleted a moment ago may still be losing its last blocks.
                self.journals.settle(&id.key());
                self.hold_for_wal(&cfg, &db)?;
            }
            OpenKind::Journal if req.flags & crate::codes::open_flag::CREATE != 0 => {
                // SQLite creates a journal only to write a new one (it never creates over
                // a hot journal: those are rolled back first), so it starts empty and
                // whatever an older journal left is overwritten, with no listing needed.
                // The older journal's cleanup may still run: its first flush waits for it.
                file.set_size_hint(0);
            }
            // A journal opened to be read (played back): the last cleanup ends first.
            OpenKind::Journal => self.journals.settle(&id.key()),
            _ => {}
        }
        let lock = (kind == OpenKind::Database).then(|| {
            let journal = db.sibling(&journal_name(&db.name)).key();
            let settle: crate::lock::Settle = Arc::new(move || self.journals.settle(&journal));
            Lock::new(self.locks.entry(&id.key()), cfg.locking)
                .with_linger(cfg.lease_linger)
                .with_settle(settle)
        });
        let file: SharedFile = match kind {
            OpenKind::Wal => self.shared_wal(&id.key(), file),
            _ => Arc::new(Mutex::new(file)),
        };
        if kind == OpenKind::Journal {
            self.journals.opened(&id.key(), &file);
        }
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        if kind == OpenKind::Database {
            locked(&self.open).push(OpenDb {
                handle,
                companions: req.companions,
                id: id.clone(),
                cfg: cfg.clone(),
            });
        }
        Ok(S3File {
            vfs: self,
            handle,
            file,
            journal: db.sibling(&journal_name(&db.name)).key(),
            db_key: db.key(),
            id,
            kind,
            readonly: req.flags & crate::codes::open_flag::READONLY != 0,
            fence: self.locks.fence(&db.key()),
            cfg,
            lock,
            snapshot: Vec::new(),
            open_check,
            journal_unchecked: false,
            // A new connection's first question is asked at a start (see `vfs/read.rs`).
            full_check_next: true,
            journal_seen: false,
        })
    }

    /// Deletes a file (a journal or WAL): block 0 now, the rest in the background.
    pub fn delete(&self, name: NameRef) -> Result<()> {
        let (db, cfg) = self.owner(name)?;
        let id = db.sibling(name.text);
        // Deleting journal block 0 is the commit point: it is a write like any other, sent
        // only while the lease's fence is open.
        let file = self.fenced_file(&cfg, &db, name.text);
        let wal = layout::owner_of(name.text).1 == OpenKind::Wal;
        // A writer that keeps its lease after the commit (the linger) leaves a journal's
        // other blocks to its next journal (which overwrites most of them) or its release.
        let defer = !wal && cfg.locking != Locking::None && !cfg.lease_linger.is_zero();
        self.journals
            .delete(&id.key(), file, log_cleanup_error, defer)?;
        if wal {
            self.deleted_wal(&db, &id.key())?;
        }
        Ok(())
    }

    /// Whether a file exists: whether its block 0 does (one HEAD). A journal without
    /// block 0 reads as a zero header, which SQLite never plays back, so for the hot-journal
    /// check this is exact; SQLite only asks to then read the header. The answer for a
    /// journal was usually fetched already, in parallel with block 0, by the read
    /// transaction that asks.
    pub fn exists(&self, name: NameRef) -> Result<bool> {
        let (db, cfg) = self.owner(name)?;
        let id = db.sibling(name.text).key();
        if layout::owner_of(name.text).1 == OpenKind::Wal {
            return self.wal_exists(&db, &cfg, &id, name.text);
        }
        if let Some(v) = self.journals.take_exists_hint(&id) {
            return Ok(v);
        }
        self.journals.settle(&id);
        self.block_file(&cfg, name.text).first_block_exists()
    }

    /// Logs an error (to `sqlite3_log` through the installed sink), keeps it for
    /// `s3vfs_last_error()`, echoes it on stderr unless `S3VFS_LOG=off` (hosts rarely
    /// install a log callback, and SQLite's message for the code alone does not say what to
    /// fix), and returns the code.
    pub fn report(&self, code: i32, err: &Error) -> i32 {
        let msg = err.to_string();
        logging::log(code, &msg);
        if self.settings.stderr_errors {
            eprintln!("{msg}");
        }
        *locked(&self.last_error) = Some(msg);
        code
    }

    /// Logs a condition that is not an error of its own (a busy database: SQLite retries)
    /// and keeps it for `s3vfs_last_error()`, without the stderr copy.
    pub fn note(&self, code: i32, msg: &str) {
        logging::log(code, msg);
        *locked(&self.last_error) = Some(msg.to_string());
    }

    /// The message of the last error reported, if any.
    pub fn last_error(&self) -> Option<String> {
        locked(&self.last_error).clone()
    }

    /// Forgets the last error (each SQL function call starts clean).
    pub fn clear_last_error(&self) {
        *locked(&self.last_error) = None;
    }

    /// How many per-database entries the VFS keeps (open databases, lock entries,
    /// journals): zero once every database is closed and its journal settled.
    pub fn tracked(&self) -> usize {
        locked(&self.open).len() + self.locks.len() + self.journals.tracked()
    }

    /// The process is exiting: leases kept only for their linger are given up now, so
    /// the next writer elsewhere does not wait for them to expire.
    pub fn end_lingering(&self) {
        self.locks.end_lingering();
    }

    /// Gives up the lease of database `name` (with `cfg`'s target) if this process keeps
    /// it only for its linger: a copy into that database takes the lease itself.
    pub fn end_linger(&self, cfg: &Config, name: &str) {
        self.locks
            .end_linger(&DbId::new(&cfg.target.id(), name).key());
    }

    fn closed_database(&self, handle: u64, db: &Arc<str>) {
        self.shm.unmap(db, handle);
        locked(&self.open).retain(|d| d.handle != handle);
        self.locks.prune();
    }
}

impl Default for S3Vfs {
    fn default() -> Self {
        S3Vfs::new()
    }
}

fn log_cleanup_error(e: &Error) {
    logging::log(
        code::IOERR_DELETE,
        &format!("{e} (while removing the rest of a deleted file; leftovers are harmless)"),
    );
}

/// What asking for a lock came to.
#[derive(Debug, PartialEq, Eq)]
pub enum LockResult {
    Granted,
    /// Busy; the message (when another process is the reason) says who and why.
    Busy(Option<String>),
}

/// One open file stored in S3: a main database, its journal, WAL or a super-journal.
pub struct S3File {
    vfs: &'static S3Vfs,
    handle: u64,
    /// Shared so that a database can flush its journal first (see `journal.rs`).
    file: SharedFile,
    /// This file's identity, and its database's journal's.
    id: DbId,
    journal: Arc<str>,
    /// The identity of this file's database (its own, for a database).
    db_key: Arc<str>,
    kind: OpenKind,
    readonly: bool,
    cfg: Arc<Config>,
    /// SQLite's lock on a database (other files are covered by their database's lock).
    lock: Option<Lock>,
    /// The database's write fence (shared with its lease and its journal's store).
    fence: Arc<Fence>,
    /// The database header this connection's read transaction started from.
    snapshot: Vec<u8>,
    /// What the open learnt, reused by the first read transactions (see `vfs/open.rs`).
    open_check: Option<OpenCheck>,
    /// This read transaction has not asked whether the journal exists yet: it asks with
    /// the first blocks it fetches (see `vfs/read.rs`).
    journal_unchecked: bool,
    /// The next read transaction asks about the journal at its start, as SQLite's
    /// hot-journal check needs: the deferred question found one, or none was asked yet.
    full_check_next: bool,
    /// This read transaction ran beside a journal that may be hot (see `end_read`).
    journal_seen: bool,
}

impl S3File {
    fn file(&self) -> MutexGuard<'_, BlockFile> {
        locked(&self.file)
    }

    /// What SQLite opened this file as.
    pub fn kind(&self) -> OpenKind {
        self.kind
    }

    /// The VFS this file belongs to (for reporting errors).
    pub fn vfs(&self) -> &'static S3Vfs {
        self.vfs
    }

    /// This file's identity.
    pub fn id(&self) -> &DbId {
        &self.id
    }

    /// The lease object of this file's database. Called with the lock entry held, so it
    /// takes the fence fetched at open rather than asking the lock table again.
    fn new_lease(cfg: &Config, vfs: &S3Vfs, db: &DbId, fence: &Arc<Fence>) -> Lease {
        Lease::new(
            (vfs.stores)(&cfg.target),
            &db.name,
            cfg.lease_term,
            vfs.probes.clone(),
        )
        .with_fence(fence.clone())
    }

    /// The locking mode of this file's database.
    pub fn locking(&self) -> Locking {
        self.cfg.locking
    }
}

mod file;
mod locking;
mod open;
mod read;
mod wal;
use open::{open_database, OpenCheck};

#[cfg(test)]
mod tests;
