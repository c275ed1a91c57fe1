//! The writer lease: one small JSON object next to a database (`<name>.s3vfs-lease`,
//! outside `<name>/` and `<name>-journal/`, so the sqlite-s3vfs layout is untouched),
//! taken and handed over with S3's conditional PUTs.
//!
//! - Taking it: `PUT If-None-Match: *`. If an object is there, read it: if it is ours (a
//!   retried PUT whose first attempt succeeded), we hold it; if it is released or
//!   expired, take it over with `PUT If-Match: <its ETag>`; otherwise the database is busy.
//! - Holding it: the lease says when it expires; the holder renews it (`If-Match` on its
//!   own ETag) before writing when a third of its time has passed, so it never writes on a
//!   lease another writer may have taken over. A failed renewal means the lease was lost:
//!   the write fails instead of racing the new holder.
//! - Giving it up: `PUT If-Match` with `released: true`, so only our own version is ever
//!   released.
//!
//! - Fencing: holding the lease opens this database's write fence (`fence.rs`) until the
//!   time our version was sent plus the term minus a margin (a sixth of the term); the S3
//!   client sends no write past it. A taker-over waits a grace period (another sixth) past
//!   the expiry written in the lease, so a slow or frozen writer's last request is out of
//!   the network before anyone else writes.
//!
//! Expiry compares wall clocks of different machines: margin and grace (5 s each at the
//! default 30-second term) cover ordinary clock skew, not clocks that are minutes apart.
//! An expiry further ahead than one term plus the grace cannot have been written by a
//! genuine holder with a sane clock; such a lease is treated as expired and logged, so junk
//! or a runaway clock cannot lock a database for ever.
//!
//! Versioned buckets: the first take in a bucket also asks whether it keeps versions (in
//! parallel with the conditional-write probe, one GET per bucket and process). If so, a
//! lease that stored [`SWEEP_AFTER`] versions starts a cleanup of the database's own
//! bookkeeping (`versions.rs`) in the background when it is released, and a lease that
//! stored any runs one when it is dropped (its database's last connection closed): the
//! old versions of the lease, journal, marks and probes never pile up, and a bucket without
//! versioning costs nothing beyond that one question.

use crate::codes::code;
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::layout::{lease_key, probe_key};
use crate::object_store::{CondPut, Condition, ObjectStore, Versioning};
use crate::versions::{self, Cleaned};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The object stored at the lease key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: u64,
    pub released: bool,
    /// The holder waits to write pages (`locking=strict`): new readers must wait.
    #[serde(default)]
    pub pending: bool,
    /// The holder's lease term in milliseconds: others compute the grace period from the
    /// holder's term, not their own (0 in leases written before it was recorded).
    #[serde(default)]
    pub term_ms: u64,
}

impl LeaseRecord {
    /// Held, and not expired at `now_ms` (milliseconds since the Unix epoch).
    pub fn live(&self, now_ms: u64) -> bool {
        !self.released && self.expires_ms > now_ms
    }

    /// Whether this lease keeps another writer out at `now_ms`, for a lease of `term`:
    /// held, and not past its expiry plus the grace period, unless its expiry is too far
    /// ahead to be genuine (see the module comment).
    pub fn blocks_takeover(&self, now_ms: u64, term: Duration) -> bool {
        let term = self.holders_term(term);
        let grace = grace(term).as_millis() as u64;
        !self.released && self.expires_ms + grace > now_ms && !self.implausible(now_ms, term)
    }

    /// The term the holder wrote, else `ours`.
    fn holders_term(&self, ours: Duration) -> Duration {
        match self.term_ms {
            0 => ours,
            ms => Duration::from_millis(ms),
        }
    }

    /// An expiry more than one term plus the grace ahead of `now_ms`.
    pub fn implausible(&self, now_ms: u64, term: Duration) -> bool {
        let term = self.holders_term(term);
        self.expires_ms > now_ms + (term + grace(term)).as_millis() as u64
    }
}

/// Lease versions (two per write transaction: take and release) a lease stores in a
/// versioned bucket before its release starts a cleanup.
pub const SWEEP_AFTER: u32 = 32;

/// How much earlier than its written expiry a holder stops writing.
pub fn margin(term: Duration) -> Duration {
    term / 6
}

/// How much later than its written expiry another writer may take a lease over.
pub fn grace(term: Duration) -> Duration {
    term / 6
}

/// The wall clock in milliseconds since the Unix epoch, as leases count time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A process-unique owner id: pid, start time and a counter.
fn new_owner() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// This machine's name, as lease records carry it.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// What an attempt to take the lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire {
    /// Taken back from our own release: nobody has written since, so whatever this
    /// process read since then is current.
    Quick,
    /// Taken, but another writer may have committed since this process last looked.
    Taken,
    /// Another live holder has it.
    Busy(LeaseRecord),
}

/// A lease on one database, held or not, by this process.
pub struct Lease {
    client: Arc<dyn ObjectStore>,
    probes: Arc<ConditionalWrites>,
    term: Duration,
    key: String,
    db_name: String,
    owner: String,
    /// ETag of our stored version while held.
    etag: Option<String>,
    /// ETag of the released version we last stored: the next acquire tries it first,
    /// one request when nobody wrote in between.
    released_etag: Option<String>,
    renewed: Instant,
    /// When the last PUT of our version was sent: the fence counts from there.
    sent: Instant,
    /// Our stored version says pending (see `set_pending`).
    pending: bool,
    /// The database's write fence, opened while we hold the lease.
    fence: Arc<Fence>,
    /// The last take was over a holder that never released it (it expired): that writer
    /// may have stopped mid-commit and left a hot journal.
    took_unreleased: bool,
    /// Versions of the lease object stored since the last cleanup began.
    unswept: u32,
    /// The cleanup running in the background, if any.
    sweeping: Option<JoinHandle<()>>,
}

impl Lease {
    /// A lease object for `db_name` in `client`'s bucket, not yet taken. `probes`
    /// remembers which buckets honour conditional writes (checked before the first take).
    pub fn new(
        client: Arc<dyn ObjectStore>,
        db_name: &str,
        term: Duration,
        probes: Arc<ConditionalWrites>,
    ) -> Lease {
        Lease {
            client,
            probes,
            term,
            key: lease_key(db_name),
            db_name: db_name.to_string(),
            owner: new_owner(),
            etag: None,
            released_etag: None,
            renewed: Instant::now(),
            sent: Instant::now(),
            pending: false,
            took_unreleased: false,
            fence: Arc::default(),
            unswept: 0,
            sweeping: None,
        }
    }

    /// Uses `fence` as the database's write fence (shared with its files' stores).
    pub fn with_fence(mut self, fence: Arc<Fence>) -> Lease {
        self.fence = fence;
        self
    }

    /// The write fence this lease opens while held.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// PUTs our version of the lease (held or released) under `condition`, noting when
    /// it was sent.
    fn put_ours(&mut self, released: bool, condition: Condition) -> Result<CondPut> {
        let body = self.record(released);
        self.sent = Instant::now();
        let stored = self.client.put_if(&self.key, &body, condition)?;
        if let CondPut::Stored(_) = stored {
            self.unswept += 1;
        }
        Ok(stored)
    }

    /// The lease was found taken by someone else: nothing more may be written.
    fn lost(&mut self) -> Error {
        self.etag = None;
        self.pending = false;
        self.fence.close();
        Error::Lease(format!(
            "the write lease {} expired and another writer took it: this transaction cannot commit; retry it",
            self.key
        ))
    }

    /// This process's id in lease and reader-mark objects.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The database this lease is for.
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// The store the lease lives in (reader marks go beside it).
    pub fn client(&self) -> &Arc<dyn ObjectStore> {
        &self.client
    }

    /// How long the lease lasts without renewal.
    pub fn term(&self) -> Duration {
        self.term
    }

    pub fn is_held(&self) -> bool {
        self.etag.is_some()
    }

    fn record(&self, released: bool) -> Vec<u8> {
        let r = LeaseRecord {
            owner: self.owner.clone(),
            host: hostname(),
            pid: std::process::id(),
            expires_ms: now_ms() + self.term.as_millis() as u64,
            released,
            pending: self.pending && !released,
            term_ms: self.term.as_millis() as u64,
        };
        serde_json::to_vec(&r).expect("a lease record always serializes")
    }

    /// Reads the current lease, if any, with its ETag.
    pub fn read(&self) -> Result<Option<(LeaseRecord, String)>> {
        Ok(self.client.get_with_etag(&self.key)?.map(|(body, etag)| {
            let record = serde_json::from_slice(&body).unwrap_or(LeaseRecord {
                // Unreadable: treat as an expired lease of nobody's, so it can be taken over.
                owner: String::new(),
                host: String::new(),
                pid: 0,
                expires_ms: 0,
                released: true,
                pending: false,
                term_ms: 0,
            });
            (record, etag)
        }))
    }

    /// Tries to take the lease.
    pub fn acquire(&mut self) -> Result<Acquire> {
        self.probes.check(self.client.as_ref(), &self.db_name)?;
        self.took_unreleased = false;
        if let Some(etag) = self.released_etag.take() {
            if let CondPut::Stored(etag) = self.put_ours(false, Condition::Matches(&etag))? {
                self.took(etag);
                return Ok(Acquire::Quick);
            }
        }
        // Two rounds: the lease may vanish or change between our PUT and our read.
        for _ in 0..2 {
            if let CondPut::Stored(etag) = self.put_ours(false, Condition::Absent)? {
                self.took(etag);
                return Ok(Acquire::Taken);
            }
            let Some((current, etag)) = self.read()? else {
                continue;
            };
            if current.owner == self.owner && !current.released {
                self.took(etag); // a retried PUT whose first attempt got through
                return Ok(Acquire::Taken);
            }
            let now = now_ms();
            if current.blocks_takeover(now, self.term) {
                return Ok(Acquire::Busy(current));
            }
            if current.implausible(now, self.term) {
                crate::logging::log(
                    code::BUSY,
                    &format!(
                        "s3vfs: {} says it expires at {} ms since the epoch, more than a term ahead of this machine's clock: not a genuine lease (junk, or a holder with a runaway clock); taking it over",
                        self.key, current.expires_ms
                    ),
                );
            }
            if let CondPut::Stored(etag) = self.put_ours(false, Condition::Matches(&etag))? {
                self.took(etag);
                self.took_unreleased = !current.released;
                return Ok(Acquire::Taken);
            }
        }
        Ok(match self.read()? {
            Some((r, _)) if r.blocks_takeover(now_ms(), self.term) => Acquire::Busy(r),
            _ => Acquire::Busy(LeaseRecord {
                owner: String::new(),
                host: "unknown (the lease kept changing)".into(),
                pid: 0,
                expires_ms: 0,
                released: false,
                pending: false,
                term_ms: 0,
            }),
        })
    }

    /// Whether the last take was over a holder that never released the lease (see
    /// [`Lease::acquire`]): only such a writer can have left a hot journal.
    pub fn took_unreleased(&self) -> bool {
        self.took_unreleased
    }

    fn took(&mut self, etag: String) {
        self.etag = Some(etag);
        self.renewed = Instant::now();
        self.fence
            .open_until(self.sent + self.term - margin(self.term));
    }

    /// Renews the lease when a third of its term has passed; an error when it was lost.
    pub fn ensure_held(&mut self) -> Result<()> {
        let Some(etag) = self.etag.clone() else {
            return Err(Error::Lease(format!(
                "writing to {} without holding its lease",
                self.key
            )));
        };
        // A batch of writes starts only with at least a third of the term ahead of it;
        // otherwise the lease is renewed first (which also revives a fence that ran out
        // while this process was paused, if nobody took the lease meanwhile).
        let ahead = self.fence.remaining().unwrap_or_default();
        if self.renewed.elapsed() < self.term / 3 && ahead >= self.term / 3 {
            return Ok(());
        }
        self.renew(&etag)
    }

    fn renew(&mut self, etag: &str) -> Result<()> {
        match self.put_ours(false, Condition::Matches(etag))? {
            CondPut::Stored(etag) => {
                self.took(etag);
                Ok(())
            }
            CondPut::Refused => Err(self.lost()),
        }
    }

    /// Marks our held lease as pending (`locking=strict`): from now on new readers in
    /// other processes wait, and the ones already reading are waited for. Renews too.
    pub fn set_pending(&mut self) -> Result<()> {
        if self.pending {
            return self.ensure_held();
        }
        let Some(etag) = self.etag.clone() else {
            return Err(Error::Lease(format!(
                "writing to {} without holding its lease",
                self.key
            )));
        };
        self.pending = true;
        match self.renew(&etag) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.pending = false;
                Err(e)
            }
        }
    }

    /// The live holder of the lease when it is another process waiting to write pages.
    pub fn pending_writer(&self) -> Result<Option<LeaseRecord>> {
        Ok(self
            .read()?
            .map(|(r, _)| r)
            .filter(|r| r.pending && r.owner != self.owner && r.live(now_ms())))
    }

    /// Gives the lease up (only our own version: `If-Match`).
    pub fn release(&mut self) -> Result<()> {
        self.pending = false;
        // Nothing more is written once we let go, whatever the release's answer.
        self.fence.close();
        if let Some(etag) = self.etag.take() {
            if let CondPut::Stored(etag) = self.put_ours(true, Condition::Matches(&etag))? {
                self.released_etag = Some(etag);
            }
        }
        self.sweep_if_due();
        Ok(())
    }

    /// In a versioned bucket, once [`SWEEP_AFTER`] versions of the lease were stored,
    /// starts a cleanup in the background (unless one still runs): the commit that just
    /// ended does not wait for it.
    fn sweep_if_due(&mut self) {
        let running = self.sweeping.as_ref().is_some_and(|t| !t.is_finished());
        if self.unswept < SWEEP_AFTER || running || !self.probes.versioned(self.client.as_ref()) {
            return;
        }
        self.unswept = 0;
        let (client, db, probes) = (
            self.client.clone(),
            self.db_name.clone(),
            self.probes.clone(),
        );
        self.sweeping = Some(std::thread::spawn(move || {
            if let Err(e) = sweep(client.as_ref(), &db, &probes) {
                log_sweep_error(&e, &db);
            }
        }));
    }

    /// Waits for a background cleanup, then, if this lease stored versions since the last
    /// one began and the bucket keeps versions, runs a cleanup now: what it deleted, or
    /// `None` when there was nothing to do.
    pub fn sweep_now(&mut self) -> Result<Option<Cleaned>> {
        if let Some(t) = self.sweeping.take() {
            let _ = t.join();
        }
        if self.unswept == 0 || !self.probes.versioned(self.client.as_ref()) {
            return Ok(None);
        }
        self.unswept = 0;
        sweep(self.client.as_ref(), &self.db_name, &self.probes).map(Some)
    }
}

impl Drop for Lease {
    /// A lease is dropped when its database's last connection in this process closes, and
    /// a process often exits right after: its last cleanup runs now, not in a thread that
    /// the exit would cut short.
    fn drop(&mut self) {
        if let Err(e) = self.sweep_now() {
            log_sweep_error(&e, &self.db_name);
        }
    }
}

/// One cleanup pass over `db`'s bookkeeping; a server that refuses it for good (no
/// permission, no versioning API) is not asked again by this process.
fn sweep(client: &dyn ObjectStore, db: &str, probes: &ConditionalWrites) -> Result<Cleaned> {
    versions::clean(client, db).inspect_err(|e| {
        let refused = matches!(e, Error::S3 { status, code, .. }
            if matches!(status, 403 | 405 | 501) || code == "AccessDenied" || code == "NotImplemented");
        if refused {
            probes.stop_sweeping(client);
        }
    })
}

/// A failed cleanup never fails a commit: it is logged, and the next one tries again.
fn log_sweep_error(e: &Error, db: &str) {
    crate::logging::log(
        code::IOERR_DELETE,
        &format!(
            "{e} (while removing old versions of the lease, journal and reader marks of {db} in a versioned bucket; the database is not affected. The next cleanup tries again, unless the server refused it: then allow s3:ListBucketVersions and s3:DeleteObjectVersion, or expire noncurrent versions with a lifecycle rule)"
        ),
    );
}

/// What the first lease take in each bucket (by endpoint and bucket) learns, once per
/// process: whether the bucket honours conditional writes (locking cannot work otherwise)
/// and whether it keeps versions (then s3vfs cleans its own old versions there).
#[derive(Default)]
pub struct ConditionalWrites {
    known: Mutex<HashMap<String, bool>>,
    versioned: Mutex<HashMap<String, bool>>,
}

impl ConditionalWrites {
    /// Verifies once per bucket that the server honours `If-None-Match: *` (a second
    /// conditional PUT on a probe key must be refused).
    pub fn check(&self, client: &dyn ObjectStore, db_name: &str) -> Result<()> {
        let id = client.id();
        let known = locked(&self.known).get(&id).copied();
        let ok = match known {
            Some(ok) => ok,
            None => {
                // Asked beside the probe, so the first take waits one round trip less.
                let (ok, versioning) = std::thread::scope(|s| {
                    let versioning = s.spawn(|| client.versioning());
                    (probe(client, db_name), versioning.join())
                });
                let ok = ok?;
                let versioned = match versioning {
                    Ok(Ok(v)) => v == Versioning::Enabled,
                    Ok(Err(e)) => {
                        crate::logging::log(
                            code::IOERR_DELETE,
                            &format!(
                                "{e} (asking whether bucket '{}' keeps versions: s3vfs will not remove old versions of its own lease, journal and reader marks there; if versioning is on, allow s3:GetBucketVersioning, s3:ListBucketVersions and s3:DeleteObjectVersion, or expire noncurrent versions with a lifecycle rule)",
                                client.bucket()
                            ),
                        );
                        false
                    }
                    Err(_) => false,
                };
                locked(&self.versioned).insert(id.clone(), versioned);
                locked(&self.known).insert(id, ok);
                ok
            }
        };
        if ok {
            Ok(())
        } else {
            let endpoint = client.id();
            let endpoint = endpoint.rsplit_once('|').map_or("", |(e, _)| e);
            Err(Error::Config(format!(
                "the S3 server at {endpoint} ignores conditional writes (If-None-Match), so s3vfs cannot lock databases in bucket '{}': use a server that supports them, or open with locking=none (S3VFS_LOCKING=none) to write without locking, as sqlite-s3vfs does — then only one writer at a time is safe",
                client.bucket()
            )))
        }
    }

    /// Whether `client`'s bucket keeps versions, as the first take there found (false
    /// before any take, and after the server refused a cleanup).
    pub fn versioned(&self, client: &dyn ObjectStore) -> bool {
        locked(&self.versioned)
            .get(&client.id())
            .copied()
            .unwrap_or(false)
    }

    /// Stops cleaning old versions in `client`'s bucket (the server refused it).
    fn stop_sweeping(&self, client: &dyn ObjectStore) {
        locked(&self.versioned).insert(client.id(), false);
    }
}

/// Checks that a second `If-None-Match: *` PUT on a fresh probe key is refused.
fn probe(client: &dyn ObjectStore, db_name: &str) -> Result<bool> {
    let probe = probe_key(db_name, &new_owner());
    client.put_if(&probe, b"probe", Condition::Absent)?;
    let second = client.put_if(&probe, b"probe", Condition::Absent)?;
    client.delete(&probe)?;
    // Only the second answer tells: the first may read Refused when a retry followed a
    // lost answer, but a server that honours the condition must refuse the second.
    Ok(second == CondPut::Refused)
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
