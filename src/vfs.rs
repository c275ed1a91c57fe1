//! The VFS named `s3`: SQLite's C callbacks, converted to calls on [`BlockFile`].
//!
//! This file holds all of the crate's `unsafe` FFI. Every callback runs inside [`guard`],
//! so a panic becomes an error code instead of unwinding into SQLite, and every failure
//! goes through [`report`], which maps it to an extended code and logs it.
//!
//! What goes where:
//! - The main database, its rollback journal and super-journals live in S3 as blocks.
//!   The main database's URI parameters choose the bucket; its journals find the same
//!   settings through [`REGISTRY`], keyed by the database name.
//! - Temporary files (no name, or `SQLITE_OPEN_TEMP_*`, `SUBJOURNAL`, `TRANSIENT_DB`,
//!   `DELETEONCLOSE`) are opened by the default VFS in the same `sqlite3_file` memory,
//!   so they stay on local disk and never reach the bucket.
//! - There is no WAL support (no `xShm*`): `-wal` files never exist, and asking costs no
//!   request.
//!
//! Contracts kept here: reads past the end zero-fill and return `SQLITE_IOERR_SHORT_READ`;
//! writes are buffered and `xSync` returns only when every buffered block is stored, so
//! the journal is durable before SQLite writes a database page; a lock that is given up
//! flushes first (for `synchronous=OFF`, which never syncs); taking the first lock on a
//! database revalidates the shared block cache against the change counter in block 0.
//! Locks are recorded but not enforced across processes (one writer at a time is the
//! caller's job until the locking work lands).

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::journal::{self, SharedFile};
use crate::lease::Lease;
use crate::lock::{self, Lock, Outcome};
use crate::s3::S3Client;
use crate::store::{BlockFile, DIRTY_LIMIT, SQLITE_MAGIC};
use once_cell::sync::Lazy;
use sqlite3ext_sys::{
    sqlite3_api_routines, sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs,
};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

/// The VFS name used in `?vfs=s3`.
pub const VFS_NAME: &CStr = c"s3";

pub(crate) mod code {
    //! SQLite result codes as `c_int` (the bindings expose them as `u32`).
    use sqlite3ext_sys as s;
    pub const OK: i32 = s::SQLITE_OK as i32;
    pub const ERROR: i32 = s::SQLITE_ERROR as i32;
    pub const NOTFOUND: i32 = s::SQLITE_NOTFOUND as i32;
    pub const CANTOPEN: i32 = s::SQLITE_CANTOPEN as i32;
    pub const NOTADB: i32 = s::SQLITE_NOTADB as i32;
    pub const READONLY: i32 = s::SQLITE_READONLY as i32;
    pub const IOERR_READ: i32 = s::SQLITE_IOERR_READ as i32;
    pub const IOERR_SHORT_READ: i32 = s::SQLITE_IOERR_SHORT_READ as i32;
    pub const IOERR_WRITE: i32 = s::SQLITE_IOERR_WRITE as i32;
    pub const IOERR_TRUNCATE: i32 = s::SQLITE_IOERR_TRUNCATE as i32;
    pub const IOERR_FSTAT: i32 = s::SQLITE_IOERR_FSTAT as i32;
    pub const IOERR_DELETE: i32 = s::SQLITE_IOERR_DELETE as i32;
    pub const IOERR_ACCESS: i32 = s::SQLITE_IOERR_ACCESS as i32;
    pub const IOERR_FSYNC: i32 = s::SQLITE_IOERR_FSYNC as i32;
    pub const IOERR_LOCK: i32 = s::SQLITE_IOERR_LOCK as i32;
    pub const IOERR_UNLOCK: i32 = s::SQLITE_IOERR_UNLOCK as i32;
    pub const IOERR_CLOSE: i32 = s::SQLITE_IOERR_CLOSE as i32;
    pub const IOERR_CHECKRESERVEDLOCK: i32 = s::SQLITE_IOERR_CHECKRESERVEDLOCK as i32;
    pub const BUSY: i32 = s::SQLITE_BUSY as i32;
    pub const OPEN_MAIN_JOURNAL: i32 = s::SQLITE_OPEN_MAIN_JOURNAL as i32;
    pub const IOCAP_SEQUENTIAL: i32 = s::SQLITE_IOCAP_SEQUENTIAL as i32;
    pub const OPEN_MAIN_DB: i32 = s::SQLITE_OPEN_MAIN_DB as i32;
    pub const OPEN_CREATE: i32 = s::SQLITE_OPEN_CREATE as i32;
    pub const OPEN_READONLY: i32 = s::SQLITE_OPEN_READONLY as i32;
    pub const OPEN_LOCAL_ONLY: i32 = (s::SQLITE_OPEN_DELETEONCLOSE
        | s::SQLITE_OPEN_TEMP_DB
        | s::SQLITE_OPEN_TEMP_JOURNAL
        | s::SQLITE_OPEN_SUBJOURNAL
        | s::SQLITE_OPEN_TRANSIENT_DB) as i32;
    pub const ACCESS_EXISTS: i32 = s::SQLITE_ACCESS_EXISTS as i32;
}

/// The host's API table, kept from the entry point: a loadable extension must call SQLite
/// only through it (linking `sqlite3_*` symbols fails in Python and apsw).
static API: AtomicPtr<sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());
/// The VFS that was the default when we registered; temp files and OS services go there.
static DEFAULT_VFS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());
/// Settings of every main database opened, by name, so that its journals (opened,
/// checked and deleted by name alone) go to the same bucket with the same block size.
static REGISTRY: Lazy<Mutex<HashMap<String, Arc<Config>>>> = Lazy::new(Default::default);
/// The last error reported, for `s3vfs_last_error()`.
static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Stores the API table handed to the entry point.
/// Stores the API table handed to the entry point. The first one wins: the VFS lives in
/// that SQLite library, and a second SQLite library in the same process (apsw beside
/// Python's sqlite3) would mix two libraries' calls, so it is refused (`false`).
pub fn set_api(p_api: *mut sqlite3_api_routines) -> bool {
    match API.compare_exchange(
        std::ptr::null_mut(),
        p_api,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => true,
        Err(current) => current == p_api,
    }
}

/// The API table; the entry point stored it before any other code here can run.
pub fn api() -> &'static sqlite3_api_routines {
    let p = API.load(Ordering::Acquire);
    assert!(!p.is_null(), "s3vfs used before its entry point ran");
    // SAFETY: SQLite's API table is a static struct that lives as long as the process.
    unsafe { &*p }
}

/// Writes a message to SQLite's error log (`sqlite3_log`).
pub fn log(code: c_int, msg: &str) {
    let Some(log_fn) = api().log else { return };
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: "%s" with one NUL-terminated string argument matches sqlite3_log's format.
    unsafe { log_fn(code, c"%s".as_ptr(), text.as_ptr()) };
}

/// Logs an error, remembers it for `s3vfs_last_error()`, echoes it on stderr unless
/// `S3VFS_LOG=off` (hosts rarely install a log callback, and SQLite's own message for
/// the code alone, e.g. "unable to open database file", does not say what to fix), and
/// returns the code.
pub fn report(code: c_int, err: &Error) -> c_int {
    let msg = err.to_string();
    log(code, &msg);
    if config::process_env("S3VFS_LOG").as_deref() != Some("off") {
        eprintln!("{msg}");
    }
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    code
}

/// Logs a condition that is not an error of its own (a busy database: SQLite retries)
/// and keeps it for `s3vfs_last_error()`, without the stderr copy.
pub fn note(code: c_int, msg: &str) {
    log(code, msg);
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.to_string());
}

/// The message of the last error reported in this process, if any.
pub fn last_error() -> Option<String> {
    LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs a callback body, turning a panic into `on_panic` so it never unwinds into C.
fn guard(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            log(
                on_panic,
                "s3vfs: internal error (a bug; the operation was abandoned)",
            );
            on_panic
        }
    }
}

/// Settings for a file that is not a main database: those of the database it belongs
/// to when that database was opened here, else the environment's.
pub fn config_for(name: &str) -> Result<Arc<Config>> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let owner = [
        name.strip_suffix("-journal"),
        name.strip_suffix("-wal"),
        name.rfind("-mj").map(|i| &name[..i]),
    ]
    .into_iter()
    .flatten()
    .chain([name])
    .find_map(|n| registry.get(n).cloned());
    drop(registry);
    match owner {
        Some(c) => Ok(c),
        None => Ok(Arc::new(Config::resolve(
            &config::no_params,
            &config::process_env,
        )?)),
    }
}

fn block_file(cfg: Arc<Config>, name: &str) -> BlockFile {
    let (block_size, concurrency) = (cfg.block_size, cfg.concurrency);
    BlockFile::new(Arc::new(S3Client::new(cfg)), name, block_size).with_concurrency(concurrency)
}

/// What SQLite opened the file as; it decides how the size is learnt and truncation done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Database,
    Journal,
    Other,
}

/// The per-file state behind an open `sqlite3_file`.
struct Handle {
    /// Shared so that a database can flush its journal first (see `journal.rs`).
    file: SharedFile,
    name: String,
    kind: Kind,
    readonly: bool,
    cfg: Arc<Config>,
    /// SQLite's lock on a database (other files are covered by their database's lock).
    lock: Option<Lock>,
    /// The database header this connection's read transaction started from.
    snapshot: Vec<u8>,
}

/// Our `sqlite3_file` subclass. SQLite allocates `szOsFile` bytes for it.
#[repr(C)]
struct S3File {
    base: sqlite3_file,
    handle: *mut Handle,
}

/// # Safety
/// `f` must be a file this VFS opened with [`IO_METHODS`] and not yet closed.
unsafe fn handle<'a>(f: *mut sqlite3_file) -> &'a mut Handle {
    // SAFETY: per the contract, `f` is an `S3File` whose handle is a live Box.
    unsafe { &mut *(*(f as *mut S3File)).handle }
}

impl Handle {
    fn file(&self) -> std::sync::MutexGuard<'_, BlockFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes buffered writes; a database flushes its journal first.
    fn flush(&self) -> Result<()> {
        if let Some(lock) = &self.lock {
            if self.file().dirty_bytes() > 0 || journal::has_dirty_journal(&self.name) {
                lock.ensure_writer()?;
            }
        }
        let mut file = self.file();
        match self.kind {
            Kind::Database => journal::flush_database(&self.name, &mut file),
            _ => file.flush(),
        }
    }

    fn new_lease(&self) -> Lease {
        lease_for(&self.cfg, &self.name)
    }

    /// Starts a read transaction on a database: revalidates the cache through block 0
    /// and, at the same time, learns whether the journal exists, for the hot-journal
    /// check SQLite makes next.
    fn begin_read(&mut self) -> Result<()> {
        let jname = journal::journal_name(&self.name);
        journal::settle(&jname);
        let jfile = block_file(config_for(&jname)?, &jname);
        let (revalidated, exists) = std::thread::scope(|s| {
            let probe = s.spawn(|| jfile.exists());
            let r = self.file().revalidate();
            (r, probe.join())
        });
        self.snapshot = revalidated?;
        if self.kind == Kind::Database {
            check_header(&self.snapshot, &self.cfg.bucket, &self.name)?;
        }
        // A failed probe is not fatal: xAccess asks again.
        if let Ok(Ok(exists)) = exists {
            journal::hint_exists(&jname, exists);
        }
        Ok(())
    }
}

/// Block 0 of a database must start with SQLite's header (or be all zeros, as SQLite
/// leaves a database it has not written yet). Anything else at the prefix is not ours to
/// read or overwrite: SQLite would only say "file is not a database" without saying where.
fn check_header(header: &[u8], bucket: &str, name: &str) -> Result<()> {
    if header.is_empty() || header.starts_with(SQLITE_MAGIC) || header.iter().all(|&b| b == 0) {
        return Ok(());
    }
    Err(Error::Format(format!(
        "s3://{bucket}/{name}/0000000000 does not start with a SQLite header: this prefix holds something other than a SQLite database; check the path (nothing was changed)"
    )))
}

/// The lease object of a database, made the first time a writer in this process needs it.
fn lease_for(cfg: &Arc<Config>, name: &str) -> Lease {
    Lease::new(S3Client::new(cfg.clone()), name)
}

fn log_cleanup_error(e: &Error) {
    log(
        code::IOERR_DELETE,
        &format!("{e} (while removing the rest of a deleted file; leftovers are harmless)"),
    );
}

/// Opens the S3 side of a database or journal, checking at open time what can be
/// checked cheaply, so that wrong settings fail here with a clear message.
fn open_handle(z_name: *const c_char, name: &str, flags: c_int) -> Result<Handle> {
    let main = flags & code::OPEN_MAIN_DB != 0;
    let cfg = if main {
        config::check_db_name(name)?;
        config::check_uri_keys(&uri_keys(z_name))?;
        let uri = |p: &str| uri_parameter(z_name, p);
        let cfg = Arc::new(Config::resolve(&uri, &config::process_env)?);
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), cfg.clone());
        cfg
    } else {
        config_for(name)?
    };
    let mut file = block_file(cfg.clone(), name);
    let kind = if main {
        crate::cache::CACHE.set_capacity(cfg.cache_size);
        check_existing(&mut file, &cfg, name, flags)?;
        Kind::Database
    } else if flags & code::OPEN_MAIN_JOURNAL != 0 {
        // SQLite creates a journal only to write a new one (it never creates over a hot
        // journal: those are rolled back first), so it starts empty and whatever an older
        // journal left is overwritten, with no listing needed.
        journal::settle(name);
        if flags & code::OPEN_CREATE != 0 {
            file.set_size_hint(0);
        }
        Kind::Journal
    } else {
        Kind::Other
    };
    let lock =
        (kind == Kind::Database).then(|| Lock::new(lock::entry(&file.file_id()), cfg.locking));
    let file: SharedFile = Arc::new(Mutex::new(file));
    if kind == Kind::Journal {
        journal::opened(name, &file);
    }
    Ok(Handle {
        file,
        name: name.to_string(),
        kind,
        readonly: flags & code::OPEN_READONLY != 0,
        cfg,
        lock,
        snapshot: Vec::new(),
    })
}

/// Lists the first blocks of a main database: proves bucket, credentials and endpoint,
/// and refuses a block size that does not match the blocks already stored.
fn check_existing(file: &mut BlockFile, cfg: &Config, name: &str, flags: c_int) -> Result<()> {
    let first = file.first_blocks(2)?;
    let b = cfg.block_size;
    let where_ = format!("s3://{}/{name}", cfg.bucket);
    match first.as_slice() {
        [] if flags & code::OPEN_CREATE == 0 => Err(Error::NotFound(format!(
            "no database at {where_} and this open may not create one (mode=ro or mode=rw): check the path, or open with mode=rwc"
        ))),
        [] => {
            file.set_size_hint(0);
            Ok(())
        }
        [only] if only.index == 0 && only.len <= b => {
            file.set_size_hint(only.len);
            Ok(())
        }
        [first, ..] if first.index == 0 && first.len != b => {
            // Another block size, or not a database at all: only the content tells.
            if let Some(block) = file.get_block(0)? {
                check_header(&block[..block.len().min(100)], &cfg.bucket, name)?;
            }
            Err(Error::Format(format!(
            "the database at {where_} is stored in {}-byte blocks but block_size is {b}: open it with block_size={} (URI) or S3VFS_BLOCK_SIZE={}",
            first.len, first.len, first.len
        )))
        }
        _ => Ok(()),
    }
}

/// A URI parameter of the file SQLite is opening.
fn uri_parameter(z_name: *const c_char, param: &str) -> Option<String> {
    let f = api().uri_parameter?;
    let p = CString::new(param).ok()?;
    // SAFETY: `z_name` is the filename SQLite passed to xOpen for a main database, which
    // sqlite3_uri_parameter accepts; the result is NULL or a NUL-terminated string that
    // lives as long as that filename.
    let v = unsafe { f(z_name, p.as_ptr()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: non-NULL results are NUL-terminated strings owned by SQLite.
    Some(unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
}

/// The names of every URI parameter of the file SQLite is opening.
fn uri_keys(z_name: *const c_char) -> Vec<String> {
    let Some(key) = api().uri_key else {
        return Vec::new();
    };
    (0..)
        .map_while(|n| {
            // SAFETY: as for uri_parameter; NULL marks the end of the parameters.
            let k = unsafe { key(z_name, n) };
            // SAFETY: non-NULL results are NUL-terminated strings owned by SQLite.
            (!k.is_null()).then(|| unsafe { CStr::from_ptr(k) }.to_string_lossy().into_owned())
        })
        .collect()
}

fn default_vfs() -> *mut sqlite3_vfs {
    DEFAULT_VFS.load(Ordering::Acquire)
}

/// # Safety
/// `z` must be NULL or a NUL-terminated string.
unsafe fn name_of(z: *const c_char) -> String {
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(z) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn x_open(
    _vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    p_file: *mut sqlite3_file,
    flags: c_int,
    p_out_flags: *mut c_int,
) -> c_int {
    guard(code::CANTOPEN, || {
        if z_name.is_null() || flags & code::OPEN_LOCAL_ONLY != 0 {
            let d = default_vfs();
            // SAFETY: szOsFile covers the default VFS's file size, so it may open into
            // the same memory and install its own methods there.
            return unsafe {
                ((*d).xOpen.expect("default VFS has xOpen"))(d, z_name, p_file, flags, p_out_flags)
            };
        }
        // SAFETY: SQLite passes a valid file buffer; a NULL pMethods tells it there is
        // nothing to close if we fail below.
        unsafe { (*p_file).pMethods = std::ptr::null() };
        // SAFETY: a non-NULL zName from SQLite is NUL-terminated.
        let name = unsafe { name_of(z_name) };
        match open_handle(z_name, &name, flags) {
            Ok(h) => {
                let f = p_file as *mut S3File;
                // SAFETY: the buffer is at least size_of::<S3File>() (see szOsFile).
                unsafe {
                    (*f).handle = Box::into_raw(Box::new(h));
                    (*f).base.pMethods = &IO_METHODS;
                    if !p_out_flags.is_null() {
                        *p_out_flags = flags;
                    }
                }
                code::OK
            }
            Err(e) => report(code::CANTOPEN, &e),
        }
    })
}

unsafe extern "C" fn x_delete(
    _vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    guard(code::IOERR_DELETE, || {
        // SAFETY: SQLite passes a NUL-terminated name.
        let name = unsafe { name_of(z_name) };
        let r = config_for(&name)
            .and_then(|cfg| journal::delete(&name, block_file(cfg, &name), log_cleanup_error));
        match r {
            Ok(()) => code::OK,
            Err(e) => report(code::IOERR_DELETE, &e),
        }
    })
}

unsafe extern "C" fn x_access(
    _vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    p_res_out: *mut c_int,
) -> c_int {
    guard(code::IOERR_ACCESS, || {
        // SAFETY: SQLite passes a NUL-terminated name.
        let name = unsafe { name_of(z_name) };
        let exists = if name.ends_with("-wal") {
            Ok(false) // no xShm*: a WAL can never have been written in this layout
        } else if flags == code::ACCESS_EXISTS {
            match journal::take_exists_hint(&name) {
                Some(v) => Ok(v),
                None => {
                    journal::settle(&name);
                    config_for(&name).and_then(|cfg| block_file(cfg, &name).exists())
                }
            }
        } else {
            Ok(true) // READWRITE / READ: S3 has no per-file permissions to ask about
        };
        match exists {
            Ok(v) => {
                // SAFETY: SQLite passes a valid out pointer.
                unsafe { *p_res_out = v as c_int };
                code::OK
            }
            Err(e) => report(code::IOERR_ACCESS, &e),
        }
    })
}

/// Names are keys, not paths: the name is used exactly as given (sqlite-s3vfs does the
/// same, so both map a database to the same prefix).
unsafe extern "C" fn x_full_pathname(
    _vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    guard(code::CANTOPEN, || {
        // SAFETY: SQLite passes a NUL-terminated name and an output buffer of n_out bytes.
        unsafe {
            let bytes = CStr::from_ptr(z_name).to_bytes_with_nul();
            if bytes.len() > n_out as usize {
                return code::CANTOPEN;
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, z_out, bytes.len());
        }
        code::OK
    })
}

// OS services that have nothing to do with storage go to the default VFS.

unsafe extern "C" fn x_dl_open(_vfs: *mut sqlite3_vfs, z: *const c_char) -> *mut c_void {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xDlOpen.map_or(std::ptr::null_mut(), |f| f(d, z)) }
}

unsafe extern "C" fn x_dl_error(_vfs: *mut sqlite3_vfs, n: c_int, z: *mut c_char) {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe {
        if let Some(f) = (*d).xDlError {
            f(d, n, z)
        }
    }
}

unsafe extern "C" fn x_dl_sym(
    _vfs: *mut sqlite3_vfs,
    h: *mut c_void,
    z: *const c_char,
) -> Option<unsafe extern "C" fn(*mut sqlite3_vfs, *mut c_void, *const c_char)> {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xDlSym.and_then(|f| f(d, h, z)) }
}

unsafe extern "C" fn x_dl_close(_vfs: *mut sqlite3_vfs, h: *mut c_void) {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe {
        if let Some(f) = (*d).xDlClose {
            f(d, h)
        }
    }
}

unsafe extern "C" fn x_randomness(_vfs: *mut sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xRandomness.map_or(0, |f| f(d, n, z)) }
}

unsafe extern "C" fn x_sleep(_vfs: *mut sqlite3_vfs, micros: c_int) -> c_int {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xSleep.map_or(0, |f| f(d, micros)) }
}

unsafe extern "C" fn x_current_time(_vfs: *mut sqlite3_vfs, t: *mut f64) -> c_int {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xCurrentTime.map_or(code::ERROR, |f| f(d, t)) }
}

unsafe extern "C" fn x_get_last_error(_vfs: *mut sqlite3_vfs, n: c_int, z: *mut c_char) -> c_int {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xGetLastError.map_or(0, |f| f(d, n, z)) }
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut sqlite3_vfs, t: *mut sqlite3_int64) -> c_int {
    let d = default_vfs();
    // SAFETY: forwarding the same arguments to the default VFS.
    unsafe { (*d).xCurrentTimeInt64.map_or(code::ERROR, |f| f(d, t)) }
}

// The io methods of files stored in S3.

/// Flushes what is buffered (a file closed without a sync still keeps its writes, as a
/// local file would), then frees the handle.
unsafe extern "C" fn x_close(f: *mut sqlite3_file) -> c_int {
    guard(code::IOERR_CLOSE, || {
        let file = f as *mut S3File;
        // SAFETY: xClose is called once per successful xOpen; the Box is ours to free.
        let h = unsafe { Box::from_raw((*file).handle) };
        // SAFETY: as above; the handle is not used after this.
        unsafe { (*file).handle = std::ptr::null_mut() };
        let rc = match h.flush() {
            Ok(()) => code::OK,
            Err(e) => report(code::IOERR_CLOSE, &e),
        };
        match h.kind {
            Kind::Journal => journal::closed(&h.name, h.file().known_size()),
            // A process may exit right after closing its database: finish the journal
            // cleanup now rather than leave blocks behind (harmless, but untidy).
            Kind::Database => journal::settle(&journal::journal_name(&h.name)),
            Kind::Other => {}
        }
        rc
    })
}

unsafe extern "C" fn x_read(
    f: *mut sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: sqlite3_int64,
) -> c_int {
    guard(code::IOERR_READ, || {
        // SAFETY: SQLite passes an open file and a buffer of `amt` writable bytes.
        let (h, out) = unsafe {
            (
                handle(f),
                std::slice::from_raw_parts_mut(buf as *mut u8, amt as usize),
            )
        };
        if let Some(Err(e)) = h.lock.as_ref().map(|l| l.keep_reading()) {
            return report(code::IOERR_READ, &e);
        }
        let r = h.file().read(out, off as u64);
        match r {
            Ok(false) => code::OK,
            Ok(true) => code::IOERR_SHORT_READ,
            Err(e) => report(code::IOERR_READ, &e),
        }
    })
}

unsafe extern "C" fn x_write(
    f: *mut sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: sqlite3_int64,
) -> c_int {
    guard(code::IOERR_WRITE, || {
        // SAFETY: SQLite passes an open file and `amt` readable bytes.
        let (h, data) = unsafe {
            (
                handle(f),
                std::slice::from_raw_parts(buf as *const u8, amt as usize),
            )
        };
        if h.readonly {
            return report(
                code::READONLY,
                &Error::ReadOnly("the database was opened read-only".into()),
            );
        }
        let written = h.file().write(data, off as u64);
        // Bound the memory of a huge transaction; flushing early is always allowed
        // because a database flush stores its journal first.
        // (The size is read in its own statement: a guard held across the flush, which
        // locks the file again, would deadlock.)
        let over_limit = h.file().dirty_bytes() > DIRTY_LIMIT;
        let r = match (written, over_limit) {
            (Ok(()), true) => h.flush(),
            (r, _) => r,
        };
        match r {
            Ok(()) => code::OK,
            Err(e) => report(code::IOERR_WRITE, &e),
        }
    })
}

unsafe extern "C" fn x_truncate(f: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    guard(code::IOERR_TRUNCATE, || {
        // SAFETY: SQLite passes an open file.
        let h = unsafe { handle(f) };
        let r = h.file().truncate(size as u64, h.kind == Kind::Journal);
        match r {
            Ok(()) => code::OK,
            Err(e) => report(code::IOERR_TRUNCATE, &e),
        }
    })
}

/// Stores every buffered block (in parallel; a database's journal first) and returns
/// when S3 has acknowledged all of them; S3 is strongly consistent, so they are then
/// durable and visible.
unsafe extern "C" fn x_sync(f: *mut sqlite3_file, _flags: c_int) -> c_int {
    guard(code::IOERR_FSYNC, || {
        // SAFETY: SQLite passes an open file.
        let h = unsafe { handle(f) };
        match h.flush() {
            Ok(()) => code::OK,
            Err(e) => report(code::IOERR_FSYNC, &e),
        }
    })
}

unsafe extern "C" fn x_file_size(f: *mut sqlite3_file, p_size: *mut sqlite3_int64) -> c_int {
    guard(code::IOERR_FSTAT, || {
        // SAFETY: SQLite passes an open file and a valid out pointer.
        let h = unsafe { handle(f) };
        let size = match h.kind {
            Kind::Database => h.file().database_size(),
            _ => h.file().cached_size(),
        };
        match size {
            Ok(s) => {
                // SAFETY: as above.
                unsafe { *p_size = s as sqlite3_int64 };
                code::OK
            }
            Err(e) => report(code::IOERR_FSTAT, &e),
        }
    })
}

/// SQLite's locks, through the process's lock table and, for writers, the lease in S3
/// (`lock.rs`). Taking the first lock starts a read transaction: another writer may have
/// changed the file since the last one, so the size is forgotten and the block cache is
/// checked against block 0.
unsafe extern "C" fn x_lock(f: *mut sqlite3_file, level: c_int) -> c_int {
    guard(code::IOERR_LOCK, || {
        // SAFETY: SQLite passes an open file.
        let h = unsafe { handle(f) };
        // Borrowed field by field beside `h.lock`: nothing is cloned unless the lock
        // actually needs the lease or the snapshot check.
        let (cfg, name, file, snapshot) = (&h.cfg, &h.name, &h.file, &h.snapshot);
        let lease = || lease_for(cfg, name);
        let still_current = || {
            Ok(file
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revalidate()?
                == *snapshot)
        };
        let Some(lock) = h.lock.as_mut() else {
            return code::OK;
        };
        let starting = lock.level == lock::NONE;
        match lock.lock(level, lease, still_current) {
            Ok(Outcome::Granted) => {}
            Ok(Outcome::Busy) => return code::BUSY,
            Ok(Outcome::BusyElsewhere(holder)) => {
                note(
                    code::BUSY,
                    &format!(
                        "s3vfs: {} is being written by another process (host {}, pid {}, lease until {} ms since the epoch); set a busy_timeout to wait for it",
                        h.name, holder.host, holder.pid, holder.expires_ms
                    ),
                );
                return code::BUSY;
            }
            Ok(Outcome::ReadersElsewhere(n)) => {
                note(
                    code::BUSY,
                    &format!(
                        "s3vfs: {} has {n} reader(s) in other processes (locking=strict): the commit waits for them; set a busy_timeout longer than their read transactions",
                        h.name
                    ),
                );
                return code::BUSY;
            }
            Err(e) => return report(code::IOERR_LOCK, &e),
        }
        if starting {
            h.file().forget_size();
            if let Err(e) = h.begin_read() {
                let _ = h.lock.as_mut().map(|l| l.unlock(lock::NONE));
                let rc = match e {
                    Error::Format(_) => code::NOTADB,
                    _ => code::IOERR_LOCK,
                };
                return report(rc, &e);
            }
        }
        code::OK
    })
}

/// Flushes before giving the lock up: with `synchronous=OFF` SQLite never calls xSync,
/// and the next holder must see the writes.
unsafe extern "C" fn x_unlock(f: *mut sqlite3_file, level: c_int) -> c_int {
    guard(code::IOERR_UNLOCK, || {
        // SAFETY: SQLite passes an open file.
        let h = unsafe { handle(f) };
        if let Err(e) = h.flush() {
            return report(code::IOERR_UNLOCK, &e);
        }
        if level == lock::NONE {
            h.file().forget_size();
        }
        match h.lock.as_mut().map(|l| l.unlock(level)) {
            Some(Err(e)) => report(code::IOERR_UNLOCK, &e),
            _ => code::OK,
        }
    })
}

/// True when any connection, in this process or (with a lease) anywhere, may be writing:
/// then a journal is a live writer's, never a hot one to roll back.
unsafe extern "C" fn x_check_reserved_lock(f: *mut sqlite3_file, p_res_out: *mut c_int) -> c_int {
    guard(code::IOERR_CHECKRESERVEDLOCK, || {
        // SAFETY: SQLite passes an open file and a valid out pointer.
        let h = unsafe { handle(f) };
        let reserved = match &h.lock {
            Some(lock) => lock.reserved_anywhere(|| h.new_lease()),
            None => Ok(false),
        };
        match reserved {
            Ok(r) => {
                // SAFETY: as above.
                unsafe { *p_res_out = r as c_int };
                code::OK
            }
            Err(e) => report(code::IOERR_CHECKRESERVEDLOCK, &e),
        }
    })
}

unsafe extern "C" fn x_file_control(_f: *mut sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    code::NOTFOUND
}

/// 512, the value SQLite assumes for sqlite-s3vfs (which reports 0): the journal header
/// size follows from it, and equal values keep journals identical between the two.
unsafe extern "C" fn x_sector_size(_f: *mut sqlite3_file) -> c_int {
    512
}

/// Writes become durable in the order SQLite makes them, because a database flush
/// stores its journal first (see `journal.rs`); this lets SQLite skip its separate
/// journal syncs. The journal's bytes are the same as without it.
unsafe extern "C" fn x_device_characteristics(_f: *mut sqlite3_file) -> c_int {
    code::IOCAP_SEQUENTIAL
}

static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// SQLite makes a private temporary database of an empty name (and keeps `:memory:` in
/// memory), opening nothing through the VFS until it spills. With `vfs=s3` that is never
/// what was meant (`file:?vfs=s3`: the path was forgotten) and would silently keep the data
/// out of S3, so a new connection is checked here, from the auto-extension.
///
/// # Safety
/// `db` must be a connection SQLite is opening or has opened, not yet closed.
pub unsafe fn nameless_database(db: *mut sqlite_loadable::ext::sqlite3) -> Option<Error> {
    const FCNTL_VFS_POINTER: c_int = 27;
    let a = api();
    let (control, filename, find) = (a.file_control?, a.db_filename?, a.vfs_find?);
    let mut vfs: *mut sqlite3_vfs = std::ptr::null_mut();
    // SAFETY: `db` is the connection SQLite is opening; "main" always exists, and
    // FCNTL_VFS_POINTER writes one VFS pointer to the out address.
    let rc = unsafe {
        control(
            db,
            c"main".as_ptr(),
            FCNTL_VFS_POINTER,
            &mut vfs as *mut *mut sqlite3_vfs as *mut c_void,
        )
    };
    // SAFETY: a NUL-terminated name; the result is NULL or a VFS that lives for the process.
    let ours = unsafe { find(VFS_NAME.as_ptr()) };
    if rc != 0 || vfs.is_null() || vfs != ours {
        return None;
    }
    // SAFETY: as above; the result is NULL or a NUL-terminated string owned by SQLite.
    let name = unsafe { filename(db, c"main".as_ptr()) };
    // SAFETY: checked non-NULL first; reading its first byte only.
    let empty = name.is_null() || unsafe { *name } == 0;
    empty.then(|| {
        Error::Config(
            "the database name is empty (or :memory:): with vfs=s3 the URI's path is the key prefix in the bucket, as in file:apps/notes.db?vfs=s3&bucket=...; a nameless database would never reach S3".into(),
        )
    })
}

/// Registers the `s3` VFS once per process (not as the default).
pub fn register() -> std::result::Result<(), String> {
    static DONE: once_cell::sync::OnceCell<()> = once_cell::sync::OnceCell::new();
    DONE.get_or_try_init(|| {
        let api = api();
        let find = api.vfs_find.ok_or("this SQLite has no sqlite3_vfs_find")?;
        let reg = api
            .vfs_register
            .ok_or("this SQLite has no sqlite3_vfs_register")?;
        // SAFETY: NULL asks for the default VFS; the result is NULL or a VFS that lives
        // for the process.
        let default = unsafe { find(std::ptr::null()) };
        if default.is_null() {
            return Err("SQLite has no default VFS to keep temporary files on".to_string());
        }
        DEFAULT_VFS.store(default, Ordering::Release);
        // SAFETY: `default` is a live VFS.
        let default_size = unsafe { (*default).szOsFile };
        let vfs = Box::new(sqlite3_vfs {
            iVersion: 2,
            szOsFile: (std::mem::size_of::<S3File>() as c_int).max(default_size),
            mxPathname: 1024,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: the VFS struct is leaked, so it outlives every connection using it.
        let rc = unsafe { reg(Box::leak(vfs), 0) };
        if rc != code::OK {
            return Err(format!("sqlite3_vfs_register failed with code {rc}"));
        }
        Ok(())
    })
    .map(|_| ())
}
