//! SQLite's vocabulary, typed: result codes, lock levels, what a file was opened as, and
//! the locking mode. The bottom layer: everything may use it, it uses nothing of ours.
//!
//! The bindings expose SQLite's constants as `u32`; the C API takes `c_int`, so they are
//! converted once here.

use sqlite3ext_sys as s;

/// SQLite result codes (primary and extended) as the C API's `int`.
pub mod code {
    use super::s;
    pub const OK: i32 = s::SQLITE_OK as i32;
    pub const ERROR: i32 = s::SQLITE_ERROR as i32;
    pub const NOTFOUND: i32 = s::SQLITE_NOTFOUND as i32;
    pub const CANTOPEN: i32 = s::SQLITE_CANTOPEN as i32;
    pub const NOTADB: i32 = s::SQLITE_NOTADB as i32;
    pub const READONLY: i32 = s::SQLITE_READONLY as i32;
    pub const BUSY: i32 = s::SQLITE_BUSY as i32;
    pub const CORRUPT: i32 = s::SQLITE_CORRUPT as i32;
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
    pub const IOERR_SHMMAP: i32 = s::SQLITE_IOERR_SHMMAP as i32;
    pub const IOERR_SHMLOCK: i32 = s::SQLITE_IOERR_SHMLOCK as i32;
    pub const IOCAP_SEQUENTIAL: i32 = s::SQLITE_IOCAP_SEQUENTIAL as i32;
    pub const IOCAP_POWERSAFE_OVERWRITE: i32 = s::SQLITE_IOCAP_POWERSAFE_OVERWRITE as i32;
    pub const ACCESS_EXISTS: i32 = s::SQLITE_ACCESS_EXISTS as i32;
}

/// SQLite's open flags that this VFS reads.
pub mod open_flag {
    use super::s;
    pub const MAIN_DB: i32 = s::SQLITE_OPEN_MAIN_DB as i32;
    pub const MAIN_JOURNAL: i32 = s::SQLITE_OPEN_MAIN_JOURNAL as i32;
    pub const WAL: i32 = s::SQLITE_OPEN_WAL as i32;
    pub const SUPER_JOURNAL: i32 = 0x0000_4000;
    pub const CREATE: i32 = s::SQLITE_OPEN_CREATE as i32;
    pub const READONLY: i32 = s::SQLITE_OPEN_READONLY as i32;
    /// Files that never belong in the bucket: SQLite's temporary files.
    pub const LOCAL_ONLY: i32 = (s::SQLITE_OPEN_DELETEONCLOSE
        | s::SQLITE_OPEN_TEMP_DB
        | s::SQLITE_OPEN_TEMP_JOURNAL
        | s::SQLITE_OPEN_SUBJOURNAL
        | s::SQLITE_OPEN_TRANSIENT_DB) as i32;
}

/// SQLite's lock levels on a database file, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockLevel {
    None = 0,
    Shared = 1,
    Reserved = 2,
    Pending = 3,
    Exclusive = 4,
}

impl LockLevel {
    /// The level SQLite passes to xLock / xUnlock (an unknown value is the nearest lower).
    pub fn from_c(level: i32) -> LockLevel {
        match level {
            i32::MIN..=0 => LockLevel::None,
            1 => LockLevel::Shared,
            2 => LockLevel::Reserved,
            3 => LockLevel::Pending,
            _ => LockLevel::Exclusive,
        }
    }
}

/// What SQLite opened a file as: it decides where the file's settings come from, how its
/// size is learnt and how it is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenKind {
    /// A main database: its URI parameters say where it lives.
    Database,
    /// A database's rollback journal (`<db>-journal`).
    Journal,
    /// A database's write-ahead log (`<db>-wal`).
    Wal,
    /// A super-journal of a multi-database transaction (`<db>-mjXXXXXXXX`).
    SuperJournal,
    /// Anything else SQLite names (kept in the bucket of the database it belongs to).
    Other,
}

impl OpenKind {
    /// The kind of a file from xOpen's flags.
    pub fn from_flags(flags: i32) -> OpenKind {
        if flags & open_flag::MAIN_DB != 0 {
            OpenKind::Database
        } else if flags & open_flag::MAIN_JOURNAL != 0 {
            OpenKind::Journal
        } else if flags & open_flag::WAL != 0 {
            OpenKind::Wal
        } else if flags & open_flag::SUPER_JOURNAL != 0 {
            OpenKind::SuperJournal
        } else {
            OpenKind::Other
        }
    }
}

/// How writers coordinate across processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locking {
    /// A writer lease in S3 (conditional PUTs): one writer anywhere.
    Lease,
    /// The lease, plus reader marks: a writer waits for readers in other processes.
    Strict,
    /// No coordination across processes, as sqlite-s3vfs: for mixed deployments with it.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_levels_order_as_sqlite_numbers_them() {
        assert!(LockLevel::None < LockLevel::Shared && LockLevel::Pending < LockLevel::Exclusive);
        for n in 0..=4 {
            assert_eq!(LockLevel::from_c(n) as i32, n);
        }
    }

    #[test]
    fn open_kind_follows_the_flags() {
        assert_eq!(OpenKind::from_flags(open_flag::MAIN_DB), OpenKind::Database);
        assert_eq!(
            OpenKind::from_flags(open_flag::MAIN_JOURNAL | open_flag::CREATE),
            OpenKind::Journal
        );
        assert_eq!(OpenKind::from_flags(open_flag::WAL), OpenKind::Wal);
        assert_eq!(
            OpenKind::from_flags(open_flag::SUPER_JOURNAL),
            OpenKind::SuperJournal
        );
    }
}
