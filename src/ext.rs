//! The extension's entry points and SQL functions.
//!
//! SQLite derives the entry-point name from the file name keeping only letters
//! (`libs3vfs.so` → `sqlite3_svfs_init`), so `sqlite3_extension_init` is exported too and
//! `.load ./libs3vfs` works without naming the entry point. The extension loads
//! permanently: the VFS must outlive the connection that loaded it.

#![allow(unsafe_code)]

use crate::{ffi, stats, transfer};
use sqlite_loadable::ext::{sqlite3, sqlite3_api_routines};
use sqlite_loadable::prelude::*;
use sqlite_loadable::{api, define_scalar_function, Error, FunctionFlags, Result};
use std::ffi::{c_char, c_int, c_uint};
use std::panic::{catch_unwind, AssertUnwindSafe};

const SQLITE_ERROR: c_uint = 1;

/// The entry point named after the library.
///
/// # Safety
/// Called by SQLite's extension loader with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_s3vfs_init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_uint {
    init(db, pz_err_msg, p_api)
}

/// The generic entry point SQLite tries when it cannot guess one from the file name.
///
/// # Safety
/// Called by SQLite's extension loader with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_uint {
    init(db, pz_err_msg, p_api)
}

fn init(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut sqlite3_api_routines,
) -> c_uint {
    catch_unwind(AssertUnwindSafe(|| {
        if !ffi::set_api(p_api) {
            refuse_second_library(pz_err_msg, p_api);
            return SQLITE_ERROR;
        }
        sqlite_loadable::entrypoints::register_entrypoint_load_permanently(
            db,
            pz_err_msg,
            p_api,
            |db| {
                ffi::register().map_err(Error::new_message)?;
                register_functions(db)?;
                register_on_future_connections()
            },
        )
    }))
    .unwrap_or(SQLITE_ERROR)
}

/// Explains, through the loading library's own allocator, why the load is refused.
fn refuse_second_library(pz_err_msg: *mut *mut c_char, p_api: *mut sqlite3_api_routines) {
    const MSG: &std::ffi::CStr = c"s3vfs is already loaded into another SQLite library in this process; the s3 VFS lives in that one: use one SQLite library (for example Python's sqlite3 or apsw, not both) per process";
    // SAFETY: p_api is the loader's valid API table; mprintf with "%s" and one C string
    // returns memory SQLite frees itself after reporting the message.
    unsafe {
        if let (false, Some(mprintf)) = (pz_err_msg.is_null(), (*p_api).mprintf) {
            *pz_err_msg = mprintf(c"%s".as_ptr(), MSG.as_ptr());
        }
    }
}

type AutoExtension =
    unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *const sqlite3_api_routines) -> c_int;

/// SQL functions are per connection; an auto-extension adds them to every connection
/// opened after loading, so they are there wherever the VFS is.
fn register_on_future_connections() -> Result<()> {
    static DONE: once_cell::sync::OnceCell<()> = once_cell::sync::OnceCell::new();
    DONE.get_or_try_init(|| {
        let auto = ffi::api()
            .auto_extension
            .ok_or_else(|| Error::new_message("this SQLite has no sqlite3_auto_extension"))?;
        let entry: unsafe extern "C" fn(
            *mut sqlite3,
            *mut *mut c_char,
            *const sqlite3_api_routines,
        ) -> c_int = on_new_connection;
        // SAFETY: SQLite calls auto-extensions with exactly this signature; the C API
        // declares the parameter as `void(*)(void)` and expects a cast.
        let rc = unsafe {
            auto(Some(std::mem::transmute::<
                AutoExtension,
                unsafe extern "C" fn(),
            >(entry)))
        };
        if rc != 0 {
            return Err(Error::new_message(format!(
                "sqlite3_auto_extension failed with code {rc}"
            )));
        }
        Ok(())
    })
    .map(|_| ())
}

/// An error from an auto-extension fails the open ("automatic extension loading failed:
/// <message>"), which is how a nameless s3 database is refused before it is used.
unsafe extern "C" fn on_new_connection(
    db: *mut sqlite3,
    pz_err_msg: *mut *mut c_char,
    _p_api: *const sqlite3_api_routines,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: SQLite calls auto-extensions with the connection it is opening.
        if let Some(e) = unsafe { ffi::nameless_database(db) } {
            if let Some(v) = ffi::vfs() {
                v.report(SQLITE_ERROR as c_int, &e);
            }
            set_error_message(pz_err_msg, &e.to_string());
            return SQLITE_ERROR as c_int;
        }
        match register_functions(db) {
            Ok(()) => 0,
            Err(_) => SQLITE_ERROR as c_int,
        }
    }))
    .unwrap_or(SQLITE_ERROR as c_int)
}

/// Hands SQLite an error message in memory from its own allocator, which it frees.
fn set_error_message(pz_err_msg: *mut *mut c_char, msg: &str) {
    let Some(mprintf) = ffi::api().mprintf else {
        return;
    };
    let text = std::ffi::CString::new(msg.replace('\0', " ")).unwrap_or_default();
    if !pz_err_msg.is_null() {
        // SAFETY: pz_err_msg is SQLite's out pointer; "%s" with one C string.
        unsafe { *pz_err_msg = mprintf(c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// Wraps a SQL function body so a panic becomes an SQL error rather than an abort.
fn guarded(
    f: fn(*mut sqlite3_context, &[*mut sqlite3_value]) -> Result<()>,
) -> impl Fn(*mut sqlite3_context, &[*mut sqlite3_value]) -> Result<()> {
    move |ctx, args| {
        catch_unwind(AssertUnwindSafe(|| f(ctx, args)))
            .unwrap_or_else(|_| Err(Error::new_message("s3vfs: internal error (a bug)")))
    }
}

fn register_functions(db: *mut sqlite3) -> Result<()> {
    let fixed = FunctionFlags::UTF8 | FunctionFlags::DETERMINISTIC;
    let volatile = FunctionFlags::UTF8;
    define_scalar_function(db, "s3vfs_version", 0, guarded(version), fixed)?;
    define_scalar_function(db, "s3vfs_stats", 0, guarded(stats_json), volatile)?;
    define_scalar_function(db, "s3vfs_stats_reset", 0, guarded(stats_reset), volatile)?;
    define_scalar_function(db, "s3vfs_last_error", 0, guarded(last_error), volatile)?;
    define_scalar_function(db, "s3vfs_serialize", 1, guarded(serialize_blob), volatile)?;
    define_scalar_function(db, "s3vfs_serialize", 2, guarded(serialize), volatile)?;
    define_scalar_function(db, "s3vfs_deserialize", 2, guarded(deserialize), volatile)?;
    define_scalar_function(db, "s3vfs_deserialize", 3, guarded(deserialize), volatile)?;
    Ok(())
}

/// A text argument, or an SQL error naming the argument (and kept for
/// `s3vfs_last_error()`): it must be non-empty UTF-8 text without a NUL byte (no S3 key
/// or SQLite name holds one, and an error message quoting it could not be returned).
fn text_arg<'a>(args: &[*mut sqlite3_value], i: usize, what: &str) -> Result<&'a str> {
    let refuse = |why: &str| {
        let msg = format!("s3vfs: argument {} ({what}) {why}", i + 1);
        the_vfs().note(1, &msg);
        Error::new_message(msg)
    };
    let text = api::value_text(&args[i])
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refuse("must be non-empty text"))?;
    match text.find('\0') {
        Some(at) => Err(refuse(&format!(
            "contains a NUL byte (at byte {at}): keys and names cannot hold one"
        ))),
        None => Ok(text),
    }
}

/// The process's VFS object (registered before any SQL function exists).
fn the_vfs() -> &'static crate::vfs::S3Vfs {
    ffi::vfs().expect("the VFS is registered before the SQL functions")
}

/// Locates a database prefix or object with the settings of the bucket it names: those of
/// the same database when it is open in this process, else the environment's.
fn locate(arg: &str) -> std::result::Result<transfer::Location, crate::error::Error> {
    let (cfg, key) = the_vfs().config_for_argument(arg)?;
    transfer::locate(cfg, &key, arg)
}

/// An SQL error carrying the message (in-band, so no stderr copy), also logged. A NUL
/// byte would make the message unreturnable ("unknown error"), so none is kept.
fn failed(e: crate::error::Error) -> Error {
    let msg = e.to_string().replace('\0', "\\0");
    the_vfs().note(1, &msg);
    Error::new_message(msg)
}

/// Starts an s3vfs SQL function call: `s3vfs_last_error()` then tells about this call
/// only, not about an earlier failure (of s3vfs, or of SQLite before s3vfs ran).
fn begin_call() {
    the_vfs().clear_last_error();
}

/// `s3vfs_serialize(prefix, target_key)`: the database as one plain SQLite file object;
/// returns its size in bytes.
fn serialize(ctx: *mut sqlite3_context, args: &[*mut sqlite3_value]) -> Result<()> {
    begin_call();
    let db = locate(text_arg(args, 0, "database prefix")?).map_err(failed)?;
    let target = locate(text_arg(args, 1, "target key")?).map_err(failed)?;
    let size = transfer::serialize(&db, &target).map_err(failed)?;
    api::result_int64(ctx, size as i64);
    Ok(())
}

/// `s3vfs_serialize(prefix)`: the database as a BLOB, up to [`transfer::MAX_BLOB`] bytes.
fn serialize_blob(ctx: *mut sqlite3_context, args: &[*mut sqlite3_value]) -> Result<()> {
    begin_call();
    let db = locate(text_arg(args, 0, "database prefix")?).map_err(failed)?;
    let bytes = transfer::serialize_to_memory(&db).map_err(failed)?;
    api::result_blob(ctx, &bytes);
    Ok(())
}

/// `s3vfs_deserialize(source_key, prefix [, 'replace'])`: stores a plain SQLite file
/// object as blocks; returns the number of blocks written.
fn deserialize(ctx: *mut sqlite3_context, args: &[*mut sqlite3_value]) -> Result<()> {
    begin_call();
    let source = locate(text_arg(args, 0, "source key")?).map_err(failed)?;
    let db = locate(text_arg(args, 1, "database prefix")?).map_err(failed)?;
    let replace = match args.get(2) {
        None => false,
        Some(_) => match text_arg(args, 2, "'replace'")? {
            "replace" => true,
            other => {
                let msg = format!(
                    "s3vfs: the third argument of s3vfs_deserialize must be 'replace', not '{other}'"
                );
                the_vfs().note(1, &msg);
                return Err(Error::new_message(msg));
            }
        },
    };
    let blocks = transfer::deserialize(&source, &db, replace).map_err(failed)?;
    api::result_int64(ctx, blocks as i64);
    Ok(())
}

/// `s3vfs_version()`: the extension's version.
fn version(ctx: *mut sqlite3_context, _: &[*mut sqlite3_value]) -> Result<()> {
    api::result_text(ctx, env!("CARGO_PKG_VERSION"))
}

/// `s3vfs_stats()`: request counters since load (or the last reset), as JSON.
fn stats_json(ctx: *mut sqlite3_context, _: &[*mut sqlite3_value]) -> Result<()> {
    // The process settings carry the price table for `cost_usd`.
    let _ = crate::config::process();
    api::result_text(ctx, stats::json())
}

/// `s3vfs_stats_reset()`: zeroes the counters.
fn stats_reset(ctx: *mut sqlite3_context, _: &[*mut sqlite3_value]) -> Result<()> {
    stats::reset();
    api::result_null(ctx);
    Ok(())
}

/// `s3vfs_last_error()`: the last error message s3vfs reported in this process, or NULL.
fn last_error(ctx: *mut sqlite3_context, _: &[*mut sqlite3_value]) -> Result<()> {
    match the_vfs().last_error() {
        Some(msg) => api::result_text(ctx, msg),
        None => {
            api::result_null(ctx);
            Ok(())
        }
    }
}
