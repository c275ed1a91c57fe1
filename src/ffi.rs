//! The C edge of the `s3` VFS: SQLite's callbacks, converted to calls on the safe
//! [`S3Vfs`] and [`S3File`]. With the entry point (`ext.rs`) this is the only code that
//! touches raw pointers; every `unsafe` block says why it is sound.
//!
//! - The [`S3Vfs`] lives in the `sqlite3_vfs`'s `pAppData` (leaked: a loaded VFS lives as
//!   long as the process), as SQLite's own memvfs keeps its state.
//! - Our `sqlite3_file` subclass [`FileWrapper`] holds a boxed [`S3File`].
//! - Every callback runs inside [`guard`]: a panic becomes an error code instead of
//!   unwinding into C, and every error is reported once and mapped by
//!   [`Error::sqlite_code`].
//! - Temporary files (no name, or SQLite's temp/transient flags) are opened by the default
//!   VFS in the same `sqlite3_file` memory, so they stay on local disk; OS services (time,
//!   randomness, sleep, dlopen) are forwarded to it too.
//! - A main database's journal and WAL names are found by address: SQLite derives them from
//!   the database's name in one allocation (`sqlite3_filename_journal` / `_wal`) and passes
//!   the same pointers to xOpen, xAccess and xDelete, so they reach their own database
//!   without any lookup by name. `sqlite3_uri_parameter` is called only on main-database
//!   names, the one place SQLite promises it is defined.
//!
//! The VFS's own methods are here; an open file's io methods in `ffi/io_methods.rs`.

#![allow(unsafe_code)]

use crate::codes::{code, open_flag};
use crate::error::Error;
use crate::logging;
use crate::vfs::{NameRef, OpenRequest, S3File, S3Vfs};
use sqlite3ext_sys::{sqlite3_api_routines, sqlite3_file, sqlite3_int64, sqlite3_vfs};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The VFS name used in `?vfs=s3`.
pub const VFS_NAME: &CStr = c"s3";

/// The host's API table, kept from the entry point: a loadable extension must call SQLite
/// only through it (linking `sqlite3_*` symbols fails in Python and apsw).
static API: AtomicPtr<sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());
/// The VFS that was the default when we registered; temp files and OS services go there.
static DEFAULT_VFS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());
/// Our registered VFS (its `pAppData` is the [`S3Vfs`]).
static OURS: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

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

/// Writes a message to SQLite's error log (`sqlite3_log`): the logging sink.
fn sqlite_log(code: i32, msg: &str) {
    let Some(log_fn) = api().log else { return };
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: "%s" with one NUL-terminated string argument matches sqlite3_log's format.
    unsafe { log_fn(code, c"%s".as_ptr(), text.as_ptr()) };
}

/// The process's VFS object, once registered.
pub fn vfs() -> Option<&'static S3Vfs> {
    let p = OURS.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is our leaked VFS struct; its pAppData is the leaked S3Vfs (see register).
    Some(unsafe { &*((*p).pAppData as *const S3Vfs) })
}

/// The VFS object behind a `sqlite3_vfs` SQLite hands us.
///
/// # Safety
/// `p` must be our registered VFS.
unsafe fn vfs_of(p: *mut sqlite3_vfs) -> &'static S3Vfs {
    // SAFETY: per the contract, pAppData is the leaked S3Vfs.
    unsafe { &*((*p).pAppData as *const S3Vfs) }
}

/// Runs a callback body, turning a panic into `on_panic` so it never unwinds into C.
fn guard(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            sqlite_log(
                on_panic,
                "s3vfs: internal error (a bug; the operation was abandoned)",
            );
            on_panic
        }
    }
}

/// Our `sqlite3_file` subclass. SQLite allocates `szOsFile` bytes for it.
#[repr(C)]
struct FileWrapper {
    base: sqlite3_file,
    file: *mut S3File,
}

/// # Safety
/// `f` must be a file this VFS opened with [`IO_METHODS`] and not yet closed.
unsafe fn file<'a>(f: *mut sqlite3_file) -> &'a mut S3File {
    // SAFETY: per the contract, `f` is a FileWrapper whose file is a live Box.
    unsafe { &mut *(*(f as *mut FileWrapper)).file }
}

/// Runs a file operation: errors are reported by the file's VFS and mapped to a code.
fn fallible(
    fallback: c_int,
    f: *mut sqlite3_file,
    op: impl FnOnce(&mut S3File) -> Result<c_int, Error>,
) -> c_int {
    guard(fallback, || {
        // SAFETY: SQLite passes a file this VFS opened and has not closed.
        let file = unsafe { file(f) };
        let vfs = file.vfs();
        match op(file) {
            Ok(rc) => rc,
            Err(e) => vfs.report(e.sqlite_code(fallback), &e),
        }
    })
}

fn default_vfs() -> *mut sqlite3_vfs {
    DEFAULT_VFS.load(Ordering::Acquire)
}

/// # Safety
/// `z` must be a NUL-terminated string.
unsafe fn name_of(z: *const c_char) -> String {
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(z) }.to_string_lossy().into_owned()
}

/// A URI parameter of a main database's name.
///
/// # Safety
/// `z_name` must be a main-database name SQLite passed to xOpen.
unsafe fn uri_parameter(z_name: *const c_char, param: &str) -> Option<String> {
    let f = api().uri_parameter?;
    let p = CString::new(param).ok()?;
    // SAFETY: per the contract sqlite3_uri_parameter accepts `z_name`; the result is NULL
    // or a NUL-terminated string that lives as long as that filename.
    let v = unsafe { f(z_name, p.as_ptr()) };
    // SAFETY: non-NULL results are NUL-terminated strings owned by SQLite.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
}

/// The names of every URI parameter of a main database's name.
///
/// # Safety
/// As for [`uri_parameter`].
unsafe fn uri_keys(z_name: *const c_char) -> Vec<String> {
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

/// The addresses of a main database's journal and WAL names (0 where this SQLite is too
/// old to say: then they are found by name).
///
/// # Safety
/// As for [`uri_parameter`].
unsafe fn companions(z_name: *const c_char) -> [usize; 2] {
    let a = api();
    // sqlite3_filename_journal/_wal exist since 3.31.0; older API tables are shorter.
    let new_enough = a.libversion_number.is_some_and(|v| {
        // SAFETY: sqlite3_libversion_number takes no arguments.
        unsafe { v() >= 3_031_000 }
    });
    if !new_enough {
        return [0, 0];
    }
    // SAFETY: per the contract, both accept a main-database name passed to xOpen.
    let j = a
        .filename_journal
        .map_or(0, |f| unsafe { f(z_name) } as usize);
    // SAFETY: as above.
    let w = a.filename_wal.map_or(0, |f| unsafe { f(z_name) } as usize);
    [j, w]
}

unsafe extern "C" fn x_open(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    p_file: *mut sqlite3_file,
    flags: c_int,
    p_out_flags: *mut c_int,
) -> c_int {
    guard(code::CANTOPEN, || {
        if z_name.is_null() || flags & open_flag::LOCAL_ONLY != 0 {
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
        // SAFETY: p_vfs is our VFS; a non-NULL zName from SQLite is NUL-terminated.
        let (vfs, name) = unsafe { (vfs_of(p_vfs), name_of(z_name)) };
        let main = flags & open_flag::MAIN_DB != 0;
        // Only a main database's name is handed to the URI functions.
        let uri = |p: &str| {
            if main {
                // SAFETY: `z_name` is a main-database name passed to xOpen.
                unsafe { uri_parameter(z_name, p) }
            } else {
                None
            }
        };
        let (keys, companions) = if main {
            // SAFETY: `z_name` is a main-database name passed to xOpen.
            unsafe { (uri_keys(z_name), companions(z_name)) }
        } else {
            (Vec::new(), [0, 0])
        };
        let req = OpenRequest {
            name: NameRef {
                text: &name,
                addr: z_name as usize,
            },
            flags,
            uri: &uri,
            uri_keys: keys,
            companions,
        };
        match vfs.open(req) {
            Ok(s3file) => {
                let w = p_file as *mut FileWrapper;
                // SAFETY: the buffer is at least size_of::<FileWrapper>() (see szOsFile).
                unsafe {
                    (*w).file = Box::into_raw(Box::new(s3file));
                    (*w).base.pMethods = &IO_METHODS;
                    if !p_out_flags.is_null() {
                        *p_out_flags = flags;
                    }
                }
                code::OK
            }
            // A WAL database in use by another process: SQLite's busy handler waits.
            Err(Error::Busy(why)) => {
                vfs.note(code::BUSY, &why);
                code::BUSY
            }
            Err(e) => vfs.report(e.sqlite_code(code::CANTOPEN), &e),
        }
    })
}

unsafe extern "C" fn x_delete(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    guard(code::IOERR_DELETE, || {
        // SAFETY: p_vfs is our VFS; SQLite passes a NUL-terminated name.
        let (vfs, name) = unsafe { (vfs_of(p_vfs), name_of(z_name)) };
        let r = vfs.delete(NameRef {
            text: &name,
            addr: z_name as usize,
        });
        match r {
            Ok(()) => code::OK,
            Err(e) => vfs.report(e.sqlite_code(code::IOERR_DELETE), &e),
        }
    })
}

unsafe extern "C" fn x_access(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    flags: c_int,
    p_res_out: *mut c_int,
) -> c_int {
    guard(code::IOERR_ACCESS, || {
        // SAFETY: p_vfs is our VFS; SQLite passes a NUL-terminated name.
        let (vfs, name) = unsafe { (vfs_of(p_vfs), name_of(z_name)) };
        let exists = if flags == code::ACCESS_EXISTS {
            vfs.exists(NameRef {
                text: &name,
                addr: z_name as usize,
            })
        } else {
            Ok(true) // READWRITE / READ: S3 has no per-file permissions to ask about
        };
        match exists {
            Ok(v) => {
                // SAFETY: SQLite passes a valid out pointer.
                unsafe { *p_res_out = v as c_int };
                code::OK
            }
            Err(e) => vfs.report(e.sqlite_code(code::IOERR_ACCESS), &e),
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
    let (control, filename) = (a.file_control?, a.db_filename?);
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
    if rc != 0 || vfs.is_null() || vfs != OURS.load(Ordering::Acquire) {
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

extern "C" {
    fn atexit(f: extern "C" fn()) -> c_int;
}

/// At process exit (after `main` returns, or `exit()`): gives up leases kept for their
/// linger. On a fresh thread, because the exiting thread's thread-locals (used by the
/// HTTP client) are already gone by the time exit handlers run.
extern "C" fn at_exit() {
    let _ = catch_unwind(|| {
        if let Some(vfs) = vfs() {
            let _ = std::thread::spawn(|| vfs.end_lingering()).join();
        }
    });
}

/// Registers the `s3` VFS once per process (not as the default), with a fresh
/// [`S3Vfs`] in its `pAppData`, and routes the lower layers' log lines to `sqlite3_log`.
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
        logging::set_sink(sqlite_log);
        // SAFETY: `default` is a live VFS.
        let default_size = unsafe { (*default).szOsFile };
        let state: &'static S3Vfs = Box::leak(Box::new(S3Vfs::new()));
        // SAFETY: atexit only records the function pointer; `at_exit` never unwinds.
        unsafe { atexit(at_exit) };
        let vfs = Box::leak(Box::new(sqlite3_vfs {
            iVersion: 2,
            szOsFile: (std::mem::size_of::<FileWrapper>() as c_int).max(default_size),
            mxPathname: 1024,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: state as *const S3Vfs as *mut c_void,
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
        }));
        OURS.store(vfs, Ordering::Release);
        // SAFETY: the VFS struct is leaked, so it outlives every connection using it.
        let rc = unsafe { reg(vfs, 0) };
        if rc != code::OK {
            return Err(format!("sqlite3_vfs_register failed with code {rc}"));
        }
        Ok(())
    })
    .map(|_| ())
}

mod io_methods;
use io_methods::IO_METHODS;
