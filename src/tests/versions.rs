//! Versioned buckets: s3vfs removes the old versions of its own bookkeeping (lease,
//! journal, marks, probes) and nothing else, never changes what a key reads as, never
//! touches a database block's versions, and costs an unversioned bucket nothing.

use super::*;
use crate::layout::{block_key, journal_name, marks_dir, probe_key};
use crate::lease::SWEEP_AFTER;
use crate::object_store::memory::Fault;
use crate::object_store::{ObjectVersion, VersionListing};
use crate::versions::{clean, plan, Cleaned};
use LockLevel::None as Unlocked;

const DB: &str = "app.db";
const LEASE: &str = "app.db.s3vfs-lease";
const J0: &str = "app.db-journal/0000000000";
const J1: &str = "app.db-journal/0000000001";

/// A versioned bucket (when asked) with a 3-page database, and a connection to it.
fn setup(versioned: bool) -> (Arc<MemoryStore>, &'static S3Vfs, S3File) {
    let s = store();
    if versioned {
        s.enable_versioning();
    }
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 3, 1);
    let db = open_db(vfs, DB, None, 0);
    (s, vfs, db)
}

/// One whole write transaction through the VFS: journal, pages, commit, unlock.
fn commit(db: &mut S3File, vfs: &'static S3Vfs, counter: u32) {
    let j = begin_commit(db, vfs, DB, 0, counter, counter as u8);
    db.sync().unwrap();
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(Unlocked).unwrap();
}

/// How many versions and delete markers `key` has.
fn versions_of(s: &MemoryStore, key: &str) -> usize {
    s.versions(key).iter().filter(|v| v.key == key).count()
}

/// How many PUTs of `key` the store received (each one a version in a versioned bucket).
fn puts_of(s: &MemoryStore, key: &str) -> usize {
    let put = format!("PUT {key}");
    s.requests().iter().filter(|r| **r == put).count()
}

fn version(key: &str, id: &str, latest: bool, delete_marker: bool) -> ObjectVersion {
    ObjectVersion {
        key: key.into(),
        version_id: id.into(),
        latest,
        delete_marker,
    }
}

#[test]
fn an_unversioned_bucket_costs_one_question_per_process_and_no_cleanup() {
    let (s, vfs, mut db) = setup(false);
    for counter in 2..2 + 2 * SWEEP_AFTER {
        commit(&mut db, vfs, counter);
    }
    db.close().unwrap();
    // Asked once, beside the conditional-write probe of the first take; nothing after.
    assert_eq!(s.count("VERSIONING"), 1, "{:?}", s.requests());
    assert_eq!(s.count("LIST_VERSIONS"), 0);
    assert_eq!(s.count("DELETE_VERSIONS"), 0);
}

#[test]
fn a_versioned_bucket_keeps_the_lease_and_journal_bounded_and_every_block_version() {
    let (s, vfs, mut db) = setup(true);
    for counter in 2..2 + 3 * SWEEP_AFTER {
        commit(&mut db, vfs, counter);
    }
    db.close().unwrap();
    // Closing the last connection ran a last pass: only the current lease is left, and
    // nothing of the journal or the probe.
    assert_eq!(versions_of(&s, LEASE), 1, "{:?}", s.versions(LEASE));
    assert!(s.peek(LEASE).is_some(), "the current lease is kept");
    assert!(
        s.versions(&journal_name(DB)).is_empty(),
        "{:?}",
        s.versions(&journal_name(DB))
    );
    assert!(s.keys().iter().all(|k| !k.contains("-probe-")));
    assert!(s.versions(&format!("{LEASE}-probe-")).is_empty());
    // Every PUT of a block is still a version of it, and no delete touched a block.
    for i in 0..3 {
        let key = block_key(DB, i);
        assert_eq!(versions_of(&s, &key), puts_of(&s, &key), "{key}");
    }
    assert!(s.count("PUT app.db/0000000001") > 3 * SWEEP_AFTER as usize);
    assert!(
        s.requests()
            .iter()
            .filter(|r| r.starts_with("DELETE_VERSIONS"))
            .all(|r| !r.contains(&format!("{DB}/"))),
        "{:?}",
        s.requests()
    );
    assert!(s.visible_changes().is_empty(), "{:?}", s.visible_changes());
    // Each pass: three listings (lease, journal, marks), at most two DeleteObjects.
    let passes = s.count("LIST_VERSIONS") / 3;
    assert!(passes >= 2, "{:?}", s.requests());
    assert!(s.count("DELETE_VERSIONS") <= 2 * passes);
}

#[test]
fn a_release_after_sweep_after_lease_versions_cleans_in_the_background() {
    let s = store();
    s.enable_versioning();
    let p = Arc::new(ConditionalWrites::default());
    let mut l = lease(&s, DB, LONG, &p);
    for _ in 0..SWEEP_AFTER / 2 - 1 {
        l.acquire().unwrap();
        l.release().unwrap();
    }
    assert_eq!(versions_of(&s, LEASE), SWEEP_AFTER as usize - 2);
    assert_eq!(
        s.count("LIST_VERSIONS"),
        0,
        "no pass before SWEEP_AFTER versions"
    );
    l.acquire().unwrap();
    l.release().unwrap(); // the SWEEP_AFTER-th version: a pass starts in the background
    assert_eq!(
        l.sweep_now().unwrap(),
        None,
        "the background pass (joined here) left nothing owed"
    );
    assert_eq!(versions_of(&s, LEASE), 1);
    assert_eq!(
        stored(&s, DB).owner,
        l.owner(),
        "the current lease is ours, released"
    );
    assert!(stored(&s, DB).released);
    assert_eq!(
        s.count("LIST_VERSIONS"),
        3,
        "lease, journal and marks: {:?}",
        s.requests()
    );
}

#[test]
fn a_current_delete_marker_goes_only_after_every_older_version_of_its_key() {
    let s = store();
    s.enable_versioning();
    for _ in 0..3 {
        s.poke(J0, b"journal");
        s.remove(J0);
    }
    let done = clean(s.as_ref(), DB).unwrap();
    assert_eq!(
        done,
        Cleaned {
            superseded: 5,
            markers: 1
        }
    );
    let deletes: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("DELETE_VERSIONS"))
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert_eq!(
        deletes[0].matches('@').count(),
        5,
        "the older versions first"
    );
    assert_eq!(
        deletes[1],
        format!("DELETE_VERSIONS {J0}@v6"),
        "the marker last"
    );
    assert!(s.versions(J0).is_empty());
    assert!(s.peek(J0).is_none());
    assert!(s.visible_changes().is_empty(), "{:?}", s.visible_changes());
}

#[test]
fn the_memory_bucket_resurrects_what_a_current_marker_hid() {
    // The rule the cleanup is built around, as the store models it: deleting a current
    // marker while an older version exists makes that version readable again.
    let s = store();
    s.enable_versioning();
    s.poke(J0, b"old");
    s.remove(J0);
    let marker = s.versions(J0)[0].clone();
    assert!(marker.latest && marker.delete_marker);
    s.delete_versions(&[marker]).unwrap();
    assert_eq!(s.peek(J0).as_deref(), Some(&b"old"[..]));
    assert_eq!(s.visible_changes(), [J0]);
}

#[test]
fn a_failed_first_round_deletes_no_current_marker() {
    let s = store();
    s.enable_versioning();
    s.poke(J0, b"journal");
    s.remove(J0);
    s.fail_next("DELETE_VERSIONS", J0, Fault::Unavailable);
    assert!(clean(s.as_ref(), DB).is_err());
    assert_eq!(s.count("DELETE_VERSIONS"), 1, "{:?}", s.requests());
    assert_eq!(versions_of(&s, J0), 2);
    assert!(s.visible_changes().is_empty());
}

#[test]
fn a_live_writers_journal_and_lease_keep_their_current_versions() {
    let (s, vfs, mut db) = setup(true);
    commit(&mut db, vfs, 2);
    // A transaction in flight: its journal is stored, its lease held.
    let j = begin_commit(&mut db, vfs, DB, 0, 3, 3);
    db.sync().unwrap();
    let journal = [s.peek(J0).unwrap(), s.peek(J1).unwrap()];
    let lease = s.peek(LEASE).unwrap();
    // Another process cleans meanwhile.
    let done = clean(s.as_ref(), DB).unwrap();
    assert!(done.superseded > 0, "{done:?}");
    assert_eq!([s.peek(J0).unwrap(), s.peek(J1).unwrap()], journal);
    assert_eq!(s.peek(LEASE).unwrap(), lease);
    assert_eq!(versions_of(&s, J0), 1, "only the current version is left");
    assert!(s.visible_changes().is_empty(), "{:?}", s.visible_changes());
    // The writer commits as if nothing happened.
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(Unlocked).unwrap();
    assert_eq!(page(&s, DB, 1).unwrap(), vec![3u8; PAGE]);
    db.close().unwrap();
}

#[test]
fn blocks_and_objects_that_are_not_bookkeeping_keep_every_version() {
    let s = store();
    s.enable_versioning();
    let others = [
        block_key(DB, 0),
        block_key(DB, 1),
        "app.db-journal/notes.txt".to_string(),
        "app.db-journal/nested.db/0000000000".to_string(),
        format!("{}cat.jpg", marks_dir(DB)),
        "app.db.s3vfs-leasex".to_string(),
        "app.db.s3vfs-lease-probe-x/0000000000".to_string(),
    ];
    for k in &others {
        s.poke(k, b"one");
        s.poke(k, b"two");
        s.remove(k);
    }
    let mark = format!("{}1700000000000-r1", marks_dir(DB));
    let probe = probe_key(DB, "123-ab-0");
    for k in [&mark, &probe] {
        s.poke(k, b"x");
        s.remove(k);
    }
    let done = clean(s.as_ref(), DB).unwrap();
    assert_eq!(done.total(), 4, "the mark and the probe: {done:?}");
    for k in &others {
        assert_eq!(versions_of(&s, k), 3, "{k}");
    }
    assert_eq!(versions_of(&s, &mark) + versions_of(&s, &probe), 0);
    assert!(s.visible_changes().is_empty());
}

#[test]
fn a_database_stored_where_the_journal_goes_is_left_alone() {
    let s = store();
    s.enable_versioning();
    let header = page0(1, 2);
    for _ in 0..2 {
        s.poke(J0, &header);
        s.poke(J1, &[1; PAGE]);
    }
    clean(s.as_ref(), DB).unwrap();
    assert_eq!(versions_of(&s, J0), 2);
    assert_eq!(versions_of(&s, J1), 2);
}

#[test]
fn a_listing_cut_short_keeps_the_marker_of_its_last_key() {
    let listed = VersionListing {
        versions: vec![
            version(J0, "m2", true, true),
            version(J0, "v1", false, false),
            version(J1, "m4", true, true),
            version(J1, "v3", false, false),
        ],
        complete: false,
    };
    let p = plan(DB, &listed);
    assert_eq!(p.superseded.len(), 2);
    assert_eq!(p.markers, [version(J0, "m2", true, true)]);
    let complete = plan(
        DB,
        &VersionListing {
            complete: true,
            ..listed
        },
    );
    assert_eq!(complete.markers.len(), 2);
}

#[test]
fn a_key_listed_without_exactly_one_current_entry_is_not_touched() {
    let listed = VersionListing {
        versions: vec![
            version(J0, "v2", false, false),
            version(J0, "v1", false, false),
            version(J1, "v4", true, false),
            version(J1, "v3", true, false),
        ],
        complete: true,
    };
    assert_eq!(plan(DB, &listed), Default::default());
}

#[test]
fn a_refused_cleanup_never_fails_a_commit_and_is_not_asked_again() {
    let (s, vfs, mut db) = setup(true);
    s.clear_requests();
    s.fail_next("LIST_VERSIONS", "", Fault::Denied);
    for counter in 2..2 + 2 * SWEEP_AFTER {
        commit(&mut db, vfs, counter);
    }
    db.close().unwrap();
    assert_eq!(
        page(&s, DB, 1).unwrap(),
        vec![(1 + 2 * SWEEP_AFTER) as u8; PAGE]
    );
    assert_eq!(s.count("LIST_VERSIONS"), 1, "{:?}", s.requests());
    assert_eq!(s.count("DELETE_VERSIONS"), 0);
}

#[test]
fn a_failed_versioning_question_means_no_cleanup_not_a_failed_take() {
    let (s, vfs, db) = setup(true);
    db.close().unwrap();
    let fresh = vfs_on(&s, &[]);
    s.clear_requests();
    s.fail_next("VERSIONING", "", Fault::Denied);
    let mut db = open_db(fresh, DB, None, 0);
    commit(&mut db, fresh, 2);
    db.close().unwrap();
    let _ = vfs;
    assert_eq!(page(&s, DB, 1).unwrap(), vec![2u8; PAGE]);
    assert_eq!(s.count("VERSIONING"), 1);
    assert_eq!(s.count("LIST_VERSIONS"), 0, "{:?}", s.requests());
}
