//! Where everything of a database lives in its bucket, in one place.
//!
//! The layout is sqlite-s3vfs's: block `i` of file `F` is the object `F/<i as %010d>`, a
//! database `D` keeps its rollback journal as the file `D-journal` and its WAL as `D-wal`.
//! s3vfs adds objects beside, never inside, those prefixes, so sqlite-s3vfs never sees them:
//! the writer lease `D.s3vfs-lease`, reader marks under `D.s3vfs-readers/`, and short-lived
//! probe objects `D.s3vfs-lease-probe-<owner>`.
//!
//! A database's identity is where it lives: endpoint, bucket and name ([`DbId`]). Every
//! piece of state kept for it (lock, cache, journal order) is keyed by that, never by the
//! bare name, so the same path in two buckets are two databases.

use crate::codes::OpenKind;
use std::fmt;
use std::sync::Arc;

/// Digits of a block number in a key.
pub const BLOCK_DIGITS: usize = 10;

/// Where a database (or any file of the layout) lives: endpoint, bucket, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbId {
    pub endpoint: String,
    pub bucket: String,
    pub name: String,
}

impl DbId {
    /// The identity of `name` in the store `store_id` (`endpoint|bucket`).
    pub fn new(store_id: &str, name: &str) -> DbId {
        let (endpoint, bucket) = store_id.rsplit_once('|').unwrap_or(("", store_id));
        DbId {
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            name: name.to_string(),
        }
    }

    /// The same place, another name (a database's journal or WAL).
    pub fn sibling(&self, name: &str) -> DbId {
        DbId {
            name: name.to_string(),
            ..self.clone()
        }
    }

    /// The identity as one string, the key of the process's maps and of the block cache.
    pub fn key(&self) -> Arc<str> {
        self.to_string().into()
    }
}

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}", self.endpoint, self.bucket, self.name)
    }
}

/// The object key of block `index` of file `name`.
pub fn block_key(name: &str, index: u64) -> String {
    format!("{name}/{index:010}")
}

/// The prefix of every block of file `name`.
pub fn blocks_prefix(name: &str) -> String {
    format!("{name}/")
}

/// The index of a block key's last component, if it is a block name (all digits).
pub fn parse_block_index(tail: &str) -> Option<u64> {
    if tail.is_empty() || !tail.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

/// The block index of `key` if it is exactly a block of file `name` (10 digits after
/// `name/`): the only keys under a database prefix that belong to the database.
pub fn block_of(name: &str, key: &str) -> Option<u64> {
    let tail = key.strip_prefix(name)?.strip_prefix('/')?;
    (tail.len() == BLOCK_DIGITS)
        .then(|| parse_block_index(tail))
        .flatten()
}

/// The file and block index of `key` if it is a block key of some file (its last component
/// exactly 10 digits, after a non-empty name): how databases are discovered.
pub fn split_block_key(key: &str) -> Option<(&str, u64)> {
    let (name, _) = key.rsplit_once('/')?;
    Some((name, block_of(name, key)?)).filter(|(n, _)| !n.is_empty())
}

/// The rollback journal's name for a database name (SQLite's own rule).
pub fn journal_name(db: &str) -> String {
    format!("{db}-journal")
}

/// The WAL's name for a database name (SQLite's own rule).
pub fn wal_name(db: &str) -> String {
    format!("{db}-wal")
}

/// The writer lease of a database.
pub fn lease_key(db: &str) -> String {
    format!("{db}.s3vfs-lease")
}

/// The folder of a database's reader marks.
pub fn marks_dir(db: &str) -> String {
    format!("{db}.s3vfs-readers/")
}

/// The expiry (ms) and owner of `key` if it is one of `db`'s reader marks
/// (`<db>.s3vfs-readers/<expiry digits>-<owner>`, the owner without a `/`).
pub fn mark_of<'k>(db: &str, key: &'k str) -> Option<(u64, &'k str)> {
    let tail = key.strip_prefix(db)?.strip_prefix(".s3vfs-readers/")?;
    let (expires, owner) = tail.split_once('-')?;
    let digits = !expires.is_empty() && expires.bytes().all(|c| c.is_ascii_digit());
    if !digits || owner.is_empty() || owner.contains('/') {
        return None;
    }
    Some((expires.parse().ok()?, owner))
}

/// A short-lived object that checks whether the server honours conditional writes.
pub fn probe_key(db: &str, owner: &str) -> String {
    format!("{}-probe-{owner}", lease_key(db))
}

/// The database a file belongs to by SQLite's naming rules, with the file's kind: for
/// names that reach the VFS as plain strings (a super-journal, or the child journals a
/// super-journal lists), where SQLite gives no URI to ask.
pub fn owner_of(name: &str) -> (&str, OpenKind) {
    if let Some(db) = name.strip_suffix("-journal") {
        return (db, OpenKind::Journal);
    }
    if let Some(db) = name.strip_suffix("-wal") {
        return (db, OpenKind::Wal);
    }
    // SQLite names super-journals `<main db>-mj` followed by 8 hex digits.
    if let Some(i) = name.rfind("-mj") {
        let tail = &name[i + 3..];
        if tail.len() == 8 && tail.bytes().all(|c| c.is_ascii_hexdigit()) {
            return (&name[..i], OpenKind::SuperJournal);
        }
    }
    (name, OpenKind::Database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ten_zero_padded_digits() {
        assert_eq!(
            block_key("my/path/cool.sqlite", 16384),
            "my/path/cool.sqlite/0000016384"
        );
        assert_eq!(parse_block_index("0000000002"), Some(2));
        assert_eq!(parse_block_index("lock"), None);
        assert_eq!(block_of("a", "a/0000000003"), Some(3));
        assert_eq!(block_of("a", "a/nested.db/0000000003"), None);
        assert_eq!(block_of("a", "a/123"), None);
        assert_eq!(block_of("a", "ab/0000000003"), None);
        assert_eq!(split_block_key("a/b.db/0000000007"), Some(("a/b.db", 7)));
        for not_a_block in [
            "0000000000",
            "/0000000000",
            "a/123",
            "a/00000000001",
            "a/cat.jpg",
        ] {
            assert_eq!(split_block_key(not_a_block), None, "{not_a_block}");
        }
    }

    #[test]
    fn marks_parse_only_as_marks() {
        let key = format!("{}1700000000000-12-ab", marks_dir("a.db"));
        assert_eq!(mark_of("a.db", &key), Some((1_700_000_000_000, "12-ab")));
        assert_eq!(
            mark_of("a.db", "a.db.s3vfs-readers/1-someone"),
            Some((1, "someone"))
        );
        for other in [
            "a.db.s3vfs-readers/notes.txt",
            "a.db.s3vfs-readers/-x",
            "a.db.s3vfs-readers/1-",
            "a.db.s3vfs-readers/1-x/y.db/0000000000",
            "b.db.s3vfs-readers/1-x",
        ] {
            assert_eq!(mark_of("a.db", other), None, "{other}");
        }
    }

    #[test]
    fn every_object_of_a_database_is_outside_its_block_prefix() {
        for key in [
            journal_name("d"),
            wal_name("d"),
            lease_key("d"),
            marks_dir("d"),
            probe_key("d", "o"),
        ] {
            assert!(!key.starts_with(&blocks_prefix("d")), "{key}");
        }
    }

    #[test]
    fn owners_follow_sqlite_naming() {
        assert_eq!(owner_of("a.db-journal"), ("a.db", OpenKind::Journal));
        assert_eq!(owner_of("a.db-wal"), ("a.db", OpenKind::Wal));
        assert_eq!(
            owner_of("a.db-mj0A1B2C3D"),
            ("a.db", OpenKind::SuperJournal)
        );
        assert_eq!(owner_of("a.db-mjx"), ("a.db-mjx", OpenKind::Database));
        assert_eq!(owner_of("a.db"), ("a.db", OpenKind::Database));
    }

    #[test]
    fn identities_differ_by_bucket_and_endpoint() {
        let a = DbId::new("http://h:1|A", "app.db");
        let b = DbId::new("http://h:1|B", "app.db");
        let c = DbId::new("http://other:1|A", "app.db");
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(a.sibling("app.db-journal").bucket, "A");
        assert_eq!(&*a.key(), "http://h:1|A|app.db");
    }
}
