//! Versioned buckets: s3vfs's own bookkeeping must not pile up there.
//!
//! In a bucket that keeps versions, every write of an object adds a version and every
//! plain delete adds a delete marker, and all of them stay until deleted by id. Each write
//! transaction stores two versions of the lease (take, release), a version and a delete
//! marker of each journal block, and a reader's mark leaves one of each. MinIO refuses
//! writes to a key with 10,000 versions, so the lease would stop working after about
//! 5,000 transactions; AWS throttles a key with millions of versions.
//!
//! So a writer that finds its bucket versioned (`lease.rs` asks once per bucket, beside
//! the conditional-write probe) removes, now and then and off the commit path, the
//! superseded versions of the objects s3vfs keeps besides the database: the lease and its
//! probes, the journal's blocks and the reader marks ([`layout::is_bookkeeping`]). The
//! database's own blocks are never touched: their versions are the database's history,
//! the user's to keep or expire.
//!
//! What a pass deletes changes nothing anyone can read, whoever is writing meanwhile:
//! - Only versions that are not current, and delete markers: invisible to every GET,
//!   HEAD, listing and conditional PUT. A live writer's journal block or lease (the
//!   current version) is never deleted; a version written after the listing is newer
//!   than everything listed, so it stays current.
//! - A current delete marker is deleted only when every other version of its key was
//!   listed and deleted first, in an earlier request: deleting a current marker makes
//!   the previous version current again, so with none left the key simply stays absent
//!   and nothing is ever resurrected. (Had a writer stored a new version meanwhile, the
//!   marker is no longer current and deleting it changes nothing either.)
//! - `<name>-journal` holding a database rather than a journal (sqlite-s3vfs allows that
//!   name) is left alone: its blocks' versions would be that database's history.

use crate::error::Result;
use crate::header::SQLITE_MAGIC;
use crate::layout::{self, block_key, bookkeeping_prefixes, is_bookkeeping, journal_name};
use crate::object_store::{ObjectStore, ObjectVersion, VersionListing};
use std::collections::BTreeMap;

/// Versions listed per prefix in one pass, at most (about ten ListObjectVersions pages):
/// a backlog left by years of versioning without s3vfs cleaning it goes over several
/// passes, none of them long.
pub const LIST_LIMIT: usize = 10_000;

/// What a pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Versions and delete markers that were not current.
    pub superseded: usize,
    /// Current delete markers of keys left with no other version: those keys are gone.
    pub markers: usize,
}

impl Cleaned {
    /// Versions and markers deleted in all.
    pub fn total(&self) -> usize {
        self.superseded + self.markers
    }
}

/// The deletes of one prefix, in the order they must go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Versions and delete markers that are not current: deleted first.
    pub superseded: Vec<ObjectVersion>,
    /// Current delete markers whose keys' every other version is in `superseded`: deleted
    /// only once all of those are gone.
    pub markers: Vec<ObjectVersion>,
}

/// What to delete of `listed` (the versions under one of `db`'s bookkeeping prefixes):
/// only keys that are `db`'s bookkeeping, only keys listed with exactly one current
/// entry, and a current delete marker only when all its key's versions were listed.
pub fn plan(db: &str, listed: &VersionListing) -> Plan {
    let mut by_key: BTreeMap<&str, Vec<&ObjectVersion>> = BTreeMap::new();
    for v in &listed.versions {
        if is_bookkeeping(db, &v.key) {
            by_key.entry(&v.key).or_default().push(v);
        }
    }
    // The last key of a listing cut short may have older versions that were not listed.
    let unfinished = listed
        .versions
        .last()
        .filter(|_| !listed.complete)
        .map(|v| v.key.as_str());
    let mut plan = Plan::default();
    for (key, versions) in by_key {
        let current: Vec<&&ObjectVersion> = versions.iter().filter(|v| v.latest).collect();
        let [current] = current.as_slice() else {
            continue; // which one is current is not known: nothing of this key is touched
        };
        plan.superseded
            .extend(versions.iter().filter(|v| !v.latest).map(|v| (*v).clone()));
        if current.delete_marker && Some(key) != unfinished {
            plan.markers.push((**current).clone());
        }
    }
    plan
}

/// One pass over `db`'s bookkeeping prefixes: lists their versions (a request per prefix
/// and thousand versions: three between transactions) and deletes what [`plan`] says, in
/// two rounds of DeleteObjects (a request per thousand versions): first every superseded
/// version and marker, then, once all of those are gone, the current markers.
pub fn clean(store: &dyn ObjectStore, db: &str) -> Result<Cleaned> {
    let journal = layout::blocks_prefix(&journal_name(db));
    let mut all = Plan::default();
    for prefix in bookkeeping_prefixes(db) {
        let listed = store.list_versions(&prefix, LIST_LIMIT)?;
        if prefix == journal && journal_is_a_database(store, db, &listed)? {
            continue;
        }
        let plan = plan(db, &listed);
        all.superseded.extend(plan.superseded);
        all.markers.extend(plan.markers);
    }
    if !all.superseded.is_empty() {
        store.delete_versions(&all.superseded)?;
    }
    // Only now, with every other version of their keys gone, can removing a current
    // marker make nothing current.
    if !all.markers.is_empty() {
        store.delete_versions(&all.markers)?;
    }
    Ok(Cleaned {
        superseded: all.superseded.len(),
        markers: all.markers.len(),
    })
}

/// Whether the current block 0 under `<db>-journal/` is a database's first block rather
/// than a journal's (one ranged GET, made only when a block 0 is current: between
/// transactions the journal is deleted and nothing needs reading).
fn journal_is_a_database(
    store: &dyn ObjectStore,
    db: &str,
    listed: &VersionListing,
) -> Result<bool> {
    let first = block_key(&journal_name(db), 0);
    let current = listed
        .versions
        .iter()
        .any(|v| v.key == first && v.latest && !v.delete_marker);
    if !current {
        return Ok(false);
    }
    let head = store.get_range(&first, 0, SQLITE_MAGIC.len() as u64)?;
    Ok(head.is_some_and(|h| h.starts_with(SQLITE_MAGIC)))
}
