//! Whole databases between the block layout and a local file, for the `s3vfs` command:
//! [`import_file`] checks the local file before the first write, [`export_file`] writes a
//! snapshot to an exclusive, unpredictable temporary file beside the target and renames it.

use super::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
    let hint = "pass --replace to overwrite it";
    if !replace {
        refuse_existing(db, replace, &dest, hint, Error::Refused)?;
    }
    let mut lease = WriteLease::take(db)?;
    let existing = refuse_existing(db, replace, &dest, hint, Error::Refused)?;
    store_blocks(db, len, &existing, &mut lease, progress, |start, end| {
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

/// `open(2)`'s O_NOFOLLOW: fail rather than follow a symbolic link (Linux x86_64 and
/// aarch64, and macOS, spell it differently; elsewhere O_EXCL alone already refuses one).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(super) const O_NOFOLLOW: i32 = 0o400000;
#[cfg(target_os = "macos")]
pub(super) const O_NOFOLLOW: i32 = 0x0100;
#[cfg(not(any(
    all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ),
    target_os = "macos"
)))]
pub(super) const O_NOFOLLOW: i32 = 0;

/// 64 unpredictable bits: from /dev/urandom, else from the process's randomly keyed
/// hasher over the time and a counter.
fn unpredictable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_ne_bytes(bytes);
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Creates a new temporary file beside `path` (same directory, so the final rename stays
/// on one file system) under an unpredictable name, exclusively and without following a
/// symbolic link: nothing planted in a shared directory can redirect the write.
pub(super) fn create_temp_beside(path: &Path) -> Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = path.with_file_name(format!(
            ".{name}.s3vfs-export-{}-{nanos:08x}{:016x}",
            std::process::id(),
            unpredictable()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(local_error(&tmp, "create", e)),
        }
    }
    let (tmp, e) = last.expect("the loop ran");
    Err(local_error(&tmp, "create", e))
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
    let (tmp, file) = create_temp_beside(path)?;
    let copy = |size: u64| -> Result<u64> {
        progress.start(size);
        file.set_len(0).map_err(|e| local_error(&tmp, "write", e))?;
        per_part(&db, size, progress, |_, start, data| {
            file.write_all_at(&data, start)
                .map_err(|e| local_error(&tmp, "write", e))
        })?;
        file.sync_all().map_err(|e| local_error(&tmp, "write", e))?;
        Ok(size)
    };
    let copied = with_snapshot(&db, copy, drop).and_then(|size| {
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| local_error(path, "write", e))?;
        Ok(size)
    });
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    copied
}
