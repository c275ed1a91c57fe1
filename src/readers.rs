//! Reader marks for `locking=strict`: SQLite's SHARED lock, over S3.
//!
//! A process reading a database keeps one small object under `<name>.s3vfs-readers/`
//! while any of its connections is in a read transaction. A writer, at PENDING, first
//! flags its lease as pending and then lists the marks; it writes database pages only when
//! no other process's mark is live. A reader stores its mark first and then reads the
//! lease. With S3's read-after-write consistency one of the two always sees the other:
//! either the reader sees the pending flag and backs off (BUSY), or the writer sees the
//! mark and waits. This is the same handshake as SQLite's PENDING byte on a local file.
//!
//! The expiry is part of the key (`<expires_ms>-<owner>`), so a writer needs one LIST and
//! no GETs to know which marks are live; a crashed reader's mark stops counting after the
//! lease term and is deleted by the next writer that sees it.

use crate::error::{Error, Result};
pub use crate::layout::marks_dir;
use crate::object_store::ObjectStore;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits a mark's key into its expiry and owner. Only keys s3vfs writes parse: 13 digits,
/// a dash and an owner id without '/' (anything else under the folder is not ours).
fn parse(key: &str, dir: &str) -> Option<(u64, String)> {
    let (expires, owner) = key.strip_prefix(dir)?.split_once('-')?;
    if expires.len() != 13 || !expires.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if owner.is_empty() || owner.contains('/') {
        return None;
    }
    Some((expires.parse().ok()?, owner.to_string()))
}

/// This process's mark on one database.
pub struct Mark {
    client: Arc<dyn ObjectStore>,
    term: Duration,
    dir: String,
    owner: String,
    key: String,
    renewed: Instant,
}

impl Mark {
    /// Stores a fresh mark. It must be stored before the caller looks for a pending writer.
    pub fn register(
        client: Arc<dyn ObjectStore>,
        db_name: &str,
        owner: &str,
        term: Duration,
    ) -> Result<Mark> {
        let dir = marks_dir(db_name);
        let key = store(client.as_ref(), &dir, owner, term)?;
        Ok(Mark {
            client,
            term,
            dir,
            owner: owner.to_string(),
            key,
            renewed: Instant::now(),
        })
    }

    /// Renews the mark when a third of its term has passed. A read transaction that kept
    /// no live mark (the process stalled past the term) may have overlapped a writer's
    /// page writes, so it fails rather than answer from a possibly torn view.
    pub fn keep_alive(&mut self) -> Result<()> {
        let age = self.renewed.elapsed();
        if age < self.term / 3 {
            return Ok(());
        }
        if age >= self.term {
            return Err(Error::Lease(format!(
                "this read transaction outlived its reader mark in {} ({} s without renewal): a writer may have changed the database under it; run it again",
                self.dir,
                age.as_secs()
            )));
        }
        let fresh = store(self.client.as_ref(), &self.dir, &self.owner, self.term)?;
        let old = std::mem::replace(&mut self.key, fresh);
        self.renewed = Instant::now();
        // A leftover old mark only delays writers until it expires.
        let _ = self.client.delete(&old);
        Ok(())
    }

    /// Deletes the mark: this process has no read transaction on the database any more.
    pub fn remove(self) -> Result<()> {
        self.client.delete(&self.key)
    }
}

fn store(client: &dyn ObjectStore, dir: &str, owner: &str, term: Duration) -> Result<String> {
    let expires = now_ms() + term.as_millis() as u64;
    let key = format!("{dir}{expires:013}-{owner}");
    let body = format!(
        "{{\"pid\":{},\"expires_ms\":{expires}}}",
        std::process::id()
    );
    client.put(&key, body.as_bytes())?;
    Ok(key)
}

/// How many other processes hold a live read mark on `db_name`. Expired marks (of
/// crashed readers) are deleted on the way; objects under the folder that are not marks
/// (a user's file, another database stored there) are neither counted nor touched.
pub fn live_others(client: &dyn ObjectStore, db_name: &str, own_owner: &str) -> Result<usize> {
    let dir = marks_dir(db_name);
    let now = now_ms();
    let mut live = 0;
    let mut expired = Vec::new();
    for o in client.list(&dir, None)? {
        match parse(&o.key, &dir) {
            Some((_, owner)) if owner == own_owner => {}
            Some((expires, _)) if expires > now => live += 1,
            Some(_) => expired.push(o.key),
            None => {}
        }
    }
    if !expired.is_empty() {
        let _ = client.delete_many(&expired);
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::memory::MemoryStore;

    #[test]
    fn a_writer_deletes_only_expired_marks_never_other_objects() {
        let store = MemoryStore::default();
        let dir = marks_dir("db");
        store.poke(&format!("{dir}0000000000001-dead"), b"{}");
        store.poke(&format!("{dir}9999999999999-alive"), b"{}");
        store.poke(&format!("{dir}photos/cat.jpg"), b"user file");
        store.poke(&format!("{dir}other.db/0000000000"), b"SQLite format 3\0");
        assert_eq!(live_others(&store, "db", "me").unwrap(), 1);
        let left = store.keys();
        assert!(!left.iter().any(|k| k.ends_with("-dead")), "{left:?}");
        for kept in [
            "9999999999999-alive",
            "photos/cat.jpg",
            "other.db/0000000000",
        ] {
            assert!(left.contains(&format!("{dir}{kept}")), "{kept}: {left:?}");
        }
    }

    #[test]
    fn keys_carry_expiry_and_owner() {
        let dir = marks_dir("a/b.db");
        assert_eq!(dir, "a/b.db.s3vfs-readers/");
        assert_eq!(
            parse("a/b.db.s3vfs-readers/1700000000000-12-ab-3", &dir),
            Some((1_700_000_000_000, "12-ab-3".to_string()))
        );
        assert_eq!(parse("a/b.db.s3vfs-readers/garbage", &dir), None);
        assert_eq!(
            parse("a/b.db.s3vfs-readers/1700000000000-x/0000000000", &dir),
            None
        );
        assert_eq!(parse("a/b.db.s3vfs-readers/17-owner", &dir), None);
        assert_eq!(parse("other/0000000000", &dir), None);
    }
}
