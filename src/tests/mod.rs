//! Protocol tests against the in-memory store: one test per race or rule of the code where
//! a bug loses data (the lease, the locks, the strict-mode handshake, the commit order,
//! cache revalidation, database identity). They run in milliseconds; the integration suite
//! proves the same protocols again against a real S3 server.

mod cache;
mod deferred_journal;
mod journal_order;
mod lease;
mod linger;
mod lock;
mod readers;
mod versions;
mod vfs;
mod wal;

use crate::codes::{open_flag, LockLevel};
use crate::config::ProcessSettings;
use crate::error::Result;
use crate::header::{JOURNAL_MAGIC, SQLITE_MAGIC};
use crate::layout::lease_key;
use crate::lease::{now_ms, ConditionalWrites, Lease, LeaseRecord};
use crate::object_store::memory::MemoryStore;
use crate::object_store::{CondPut, Condition, ObjectInfo, ObjectStore};
use crate::vfs::{LockResult, NameRef, OpenRequest, S3File, S3Vfs};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A lease term no test outlives.
pub const LONG: Duration = Duration::from_secs(30);

/// A fresh bucket.
pub fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::default())
}

/// Probes that already know `store` honours conditional writes, with the probe's requests
/// forgotten, so a test counts only the protocol's own requests.
pub fn probed(store: &Arc<MemoryStore>) -> Arc<ConditionalWrites> {
    let probes = Arc::new(ConditionalWrites::default());
    probes.check(store.as_ref(), "probe").unwrap();
    store.clear_requests();
    probes
}

/// A lease on `db` in `store` (one "process": its own owner id).
pub fn lease(
    store: &Arc<MemoryStore>,
    db: &str,
    term: Duration,
    probes: &Arc<ConditionalWrites>,
) -> Lease {
    Lease::new(store.clone(), db, term, probes.clone())
}

/// The lease term of the other processes these tests play (their grace is a sixth of it).
pub const HOLDER_TERM_MS: u64 = 60_000;

/// How long before now an expired lease of another process must have expired for a
/// takeover: its expiry plus the grace period.
pub const PAST_GRACE: u64 = HOLDER_TERM_MS / 6 + 1_000;

/// A lease record as another process would store it.
pub fn record(owner: &str, expires_ms: u64, released: bool, pending: bool) -> Vec<u8> {
    serde_json::to_vec(&LeaseRecord {
        owner: owner.into(),
        host: "elsewhere".into(),
        pid: 4242,
        expires_ms,
        released,
        pending,
        term_ms: HOLDER_TERM_MS,
    })
    .unwrap()
}

/// Another process's live lease on `db`.
pub fn poke_live(store: &MemoryStore, db: &str, owner: &str) {
    store.poke(
        &lease_key(db),
        &record(owner, now_ms() + 60_000, false, false),
    );
}

/// The lease record stored for `db`.
pub fn stored(store: &MemoryStore, db: &str) -> LeaseRecord {
    serde_json::from_slice(&store.peek(&lease_key(db)).expect("a lease is stored")).unwrap()
}

/// Index of the first request for which `pred` holds.
pub fn first(requests: &[String], pred: impl Fn(&str) -> bool) -> usize {
    requests
        .iter()
        .position(|r| pred(r))
        .unwrap_or_else(|| panic!("no such request in {requests:?}"))
}

/// Index of the last request for which `pred` holds.
pub fn last(requests: &[String], pred: impl Fn(&str) -> bool) -> usize {
    requests
        .iter()
        .rposition(|r| pred(r))
        .unwrap_or_else(|| panic!("no such request in {requests:?}"))
}

type Hook = Box<dyn FnOnce(&MemoryStore) + Send>;

/// A store in front of a [`MemoryStore`] that can run a hook right after a request (another
/// process acting between two of ours), or model a server that ignores conditions.
pub struct Hooked {
    pub inner: Arc<MemoryStore>,
    ignores_conditions: bool,
    after: Mutex<Vec<(&'static str, String, Hook)>>,
}

impl Hooked {
    pub fn new(inner: &Arc<MemoryStore>) -> Hooked {
        Hooked {
            inner: inner.clone(),
            ignores_conditions: false,
            after: Mutex::default(),
        }
    }

    /// A server that stores every conditional PUT, whatever its condition.
    pub fn ignoring_conditions(inner: &Arc<MemoryStore>) -> Hooked {
        Hooked {
            ignores_conditions: true,
            ..Hooked::new(inner)
        }
    }

    /// Runs `hook` once, right after the next request `op` whose key contains `key_part`.
    pub fn after(
        &self,
        op: &'static str,
        key_part: &str,
        hook: impl FnOnce(&MemoryStore) + Send + 'static,
    ) {
        self.after
            .lock()
            .unwrap()
            .push((op, key_part.into(), Box::new(hook)));
    }

    fn ran(&self, op: &'static str, key: &str) {
        let hook = {
            let mut after = self.after.lock().unwrap();
            let at = after
                .iter()
                .position(|(o, k, _)| *o == op && key.contains(k.as_str()));
            at.map(|i| after.remove(i).2)
        };
        if let Some(hook) = hook {
            hook(&self.inner);
        }
    }
}

impl ObjectStore for Hooked {
    fn id(&self) -> String {
        self.inner.id()
    }
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.inner.get(key);
        self.ran("GET", key);
        r
    }
    fn get_with_etag(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let r = self.inner.get_with_etag(key);
        self.ran("GET", key);
        r
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.inner.get_range(key, start, end)
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.inner.head(key)
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let r = self.inner.put(key, data);
        self.ran("PUT", key);
        r
    }
    fn put_if(&self, key: &str, data: &[u8], condition: Condition) -> Result<CondPut> {
        let r = if self.ignores_conditions {
            self.inner
                .put(key, data)
                .map(|()| CondPut::Stored("\"unconditional\"".into()))
        } else {
            self.inner.put_if(key, data, condition)
        };
        self.ran("PUT_IF", key);
        r
    }
    fn delete(&self, key: &str) -> Result<()> {
        let r = self.inner.delete(key);
        self.ran("DELETE", key);
        r
    }
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.inner.delete_many(keys)
    }
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
        let r = self.inner.list(prefix, limit);
        self.ran("LIST", prefix);
        r
    }
    fn create_multipart(&self, key: &str) -> Result<String> {
        self.inner.create_multipart(key)
    }
    fn upload_part(&self, key: &str, id: &str, number: usize, data: &[u8]) -> Result<String> {
        self.inner.upload_part(key, id, number, data)
    }
    fn complete_multipart(&self, key: &str, id: &str, etags: &[String]) -> Result<()> {
        self.inner.complete_multipart(key, id, etags)
    }
    fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(key, id)
    }
    fn versioning(&self) -> Result<crate::object_store::Versioning> {
        self.inner.versioning()
    }
    fn list_versions(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<crate::object_store::VersionListing> {
        self.inner.list_versions(prefix, limit)
    }
    fn delete_versions(&self, versions: &[crate::object_store::ObjectVersion]) -> Result<()> {
        self.inner.delete_versions(versions)
    }
    /// Only leases use a hooked store, and leases are never fenced: the inner bucket will do.
    fn fenced(&self, fence: Arc<crate::fence::Fence>) -> Arc<dyn ObjectStore> {
        self.inner.fenced(fence)
    }
}

// Whole VFS objects over memory buckets.

/// A VFS whose buckets are the given memory stores (the first is the default bucket),
/// with extra environment variables (`S3VFS_LOCKING`, `S3VFS_LEASE_SECONDS`, ...). The
/// lease goes as each write transaction ends (no linger) unless `S3VFS_LEASE_LINGER_MS`
/// says otherwise: each test plays one rule, and `linger.rs` plays the linger's.
pub fn vfs_over(buckets: &[(&str, &Arc<MemoryStore>)], extra: &[(&str, &str)]) -> &'static S3Vfs {
    let mut env: HashMap<String, String> = [
        ("AWS_ACCESS_KEY_ID", "AK"),
        ("AWS_SECRET_ACCESS_KEY", "SK"),
        ("HOME", "/nonexistent"),
        ("S3VFS_BUCKET", buckets[0].0),
        ("S3VFS_LEASE_LINGER_MS", "0"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.retain(|_, v| !v.is_empty());
    let stores: HashMap<String, Arc<MemoryStore>> = buckets
        .iter()
        .map(|(b, s)| (b.to_string(), (*s).clone()))
        .collect();
    Box::leak(Box::new(S3Vfs::with_parts(
        ProcessSettings {
            trace: false,
            stderr_errors: false,
            prices: Default::default(),
        },
        Box::new(move |k| env.get(k).cloned()),
        Box::new(move |t| {
            let s: Arc<dyn ObjectStore> = stores[&t.bucket].clone();
            s
        }),
    )))
}

/// A VFS over one bucket named `b`.
pub fn vfs_on(store: &Arc<MemoryStore>, extra: &[(&str, &str)]) -> &'static S3Vfs {
    vfs_over(&[("b", store)], extra)
}

/// The addresses SQLite would give a database's journal and WAL names; any distinct
/// values do, as long as the journal is opened with the first.
pub fn companions(n: usize) -> [usize; 2] {
    [1000 + 2 * n, 1001 + 2 * n]
}

/// Opens (creating if needed) the main database `name`, in `bucket` when given.
pub fn open_db(vfs: &'static S3Vfs, name: &str, bucket: Option<&str>, n: usize) -> S3File {
    let bucket = bucket.map(str::to_string);
    let uri = move |p: &str| (p == "bucket").then(|| bucket.clone()).flatten();
    vfs.open(OpenRequest {
        name: NameRef {
            text: name,
            addr: 1,
        },
        flags: open_flag::MAIN_DB | open_flag::CREATE,
        uri: &uri,
        uri_keys: Vec::new(),
        companions: companions(n),
    })
    .unwrap()
}

/// Opens the journal of the database opened with companions `n`, as SQLite does to write one.
pub fn open_journal(vfs: &'static S3Vfs, db: &str, n: usize) -> S3File {
    let name = format!("{db}-journal");
    vfs.open(OpenRequest {
        name: NameRef {
            text: &name,
            addr: companions(n)[0],
        },
        flags: open_flag::MAIN_JOURNAL | open_flag::CREATE,
        uri: &crate::config::no_params,
        uri_keys: Vec::new(),
        companions: [0, 0],
    })
    .unwrap()
}

/// Deletes the journal of the database opened with companions `n` (SQLite's commit).
pub fn delete_journal(vfs: &'static S3Vfs, db: &str, n: usize) -> Result<()> {
    let name = format!("{db}-journal");
    vfs.delete(NameRef {
        text: &name,
        addr: companions(n)[0],
    })
}

/// Page size of the databases the tests write (one page per block).
pub const PAGE: usize = 4096;

/// A database page 0: SQLite's header with this change counter and page count.
pub fn page0(counter: u32, pages: u32) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    p[..16].copy_from_slice(SQLITE_MAGIC);
    p[16..18].copy_from_slice(&(PAGE as u16).to_be_bytes());
    p[18] = 1;
    p[19] = 1;
    p[24..28].copy_from_slice(&counter.to_be_bytes());
    p[28..32].copy_from_slice(&pages.to_be_bytes());
    p[92..96].copy_from_slice(&counter.to_be_bytes());
    p
}

/// A journal's first bytes, as SQLite writes them (the magic makes it possibly hot).
pub fn journal_header() -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..8].copy_from_slice(&JOURNAL_MAGIC);
    h
}

pub fn granted(r: Result<LockResult>) {
    assert_eq!(r.unwrap(), LockResult::Granted);
}

/// Creates `name` as a database of `pages` pages (page 0 with change counter 1, page `i`
/// filled with byte `i`), committed without a journal as SQLite does for a new file.
pub fn create_db(vfs: &'static S3Vfs, name: &str, pages: u32, n: usize) {
    let mut db = open_db(vfs, name, None, n);
    granted(db.lock(LockLevel::Shared));
    granted(db.lock(LockLevel::Reserved));
    granted(db.lock(LockLevel::Exclusive));
    db.write(&page0(1, pages), 0).unwrap();
    for i in 1..pages {
        db.write(&vec![i as u8; PAGE], i as u64 * PAGE as u64)
            .unwrap();
    }
    db.sync().unwrap();
    db.unlock(LockLevel::None).unwrap();
    db.close().unwrap();
}

/// Page `i` as stored.
pub fn page(store: &MemoryStore, name: &str, i: u64) -> Option<Vec<u8>> {
    store.peek(&crate::layout::block_key(name, i))
}

/// A rollback transaction up to the point where the database pages are buffered: locks to
/// RESERVED, writes the journal (header + original page 1) and new page 1 and page 0 with
/// counter `counter`, and takes EXCLUSIVE. Returns the journal for the caller to finish.
pub fn begin_commit(
    db: &mut S3File,
    vfs: &'static S3Vfs,
    name: &str,
    n: usize,
    counter: u32,
    fill: u8,
) -> S3File {
    granted(db.lock(LockLevel::Shared));
    let mut head = vec![0u8; 100];
    db.read(&mut head, 0).unwrap();
    granted(db.lock(LockLevel::Reserved));
    let mut j = open_journal(vfs, name, n);
    j.write(&journal_header(), 0).unwrap();
    let mut old = vec![0u8; PAGE];
    db.read(&mut old, PAGE as u64).unwrap();
    j.write(&old, 512).unwrap();
    db.write(&vec![fill; PAGE], PAGE as u64).unwrap();
    let pages = u32::from_be_bytes(head[28..32].try_into().unwrap());
    db.write(&page0(counter, pages), 0).unwrap();
    granted(db.lock(LockLevel::Exclusive));
    j
}
