//! The commit order through the VFS: the journal is stored before any database page, its
//! block 0 is deleted first (the commit point), failed flushes are retried, and the
//! hot-journal rule.

use super::*;
use crate::error::Error;
use crate::header::journal_may_be_hot;
use crate::object_store::memory::Fault;
use crate::store::BlockFile;
use LockLevel::{None as Unlocked, Shared};

const DB: &str = "app.db";
const J0: &str = "app.db-journal/0000000000";
const J1: &str = "app.db-journal/0000000001";

fn is_db_put(r: &str) -> bool {
    r.starts_with(&format!("PUT {DB}/"))
}

fn is_journal_put(r: &str) -> bool {
    r.starts_with(&format!("PUT {DB}-journal/"))
}

/// A VFS with a 3-page database, and a connection to it with company number 0.
fn setup() -> (Arc<MemoryStore>, &'static S3Vfs, S3File) {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 3, 1);
    let db = open_db(vfs, DB, None, 0);
    s.clear_requests();
    (s, vfs, db)
}

#[test]
fn a_database_sync_stores_the_whole_journal_before_any_database_page() {
    let (s, vfs, mut db) = setup();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    assert!(s.peek(J0).is_none(), "nothing is stored before the sync");
    db.sync().unwrap();
    let log = s.requests();
    let last_journal = last(&log, is_journal_put);
    let first_db = first(&log, is_db_put);
    assert!(last_journal < first_db, "{log:?}");
    assert_eq!(log.iter().filter(|r| is_journal_put(r)).count(), 2);
    assert_eq!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
    j.close().unwrap();
}

#[test]
fn committing_deletes_journal_block_0_first_and_the_rest_in_the_background() {
    let (s, vfs, mut db) = setup();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    db.sync().unwrap();
    j.close().unwrap();
    s.clear_requests();
    // Hold the background cleanup so the state between the two steps can be seen.
    s.fail_next("DELETE", J1, Fault::Delay(Duration::from_millis(150)));
    delete_journal(vfs, DB, 0).unwrap();
    assert!(s.peek(J0).is_none(), "block 0 is gone when delete returns");
    assert!(s.peek(J1).is_some(), "the rest goes later");
    db.unlock(Unlocked).unwrap();
    // The next read transaction waits for the cleanup.
    granted(db.lock(Shared));
    assert!(s.peek(J1).is_none());
    let log = s.requests();
    assert!(
        first(&log, |r| r == format!("DELETE {J0}")) < first(&log, |r| r == format!("DELETE {J1}")),
        "{log:?}"
    );
    db.unlock(Unlocked).unwrap();
    db.close().unwrap();
}

#[test]
fn a_failed_database_flush_keeps_its_pages_and_a_later_sync_stores_them() {
    let (s, vfs, mut db) = setup();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    s.fail_next("PUT", "app.db/0000000001", Fault::Unavailable);
    let err = db.sync().unwrap_err();
    assert!(matches!(err, Error::S3 { status: 503, .. }), "{err:?}");
    assert_ne!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
    assert!(s.peek(J0).is_some(), "the journal stays for a rollback");
    db.sync().unwrap();
    assert_eq!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
    assert_eq!(page(&s, DB, 0).unwrap(), page0(2, 3));
    j.close().unwrap();
}

#[test]
fn a_failed_journal_flush_stores_no_database_page() {
    let (s, vfs, mut db) = setup();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    s.fail_next("PUT", J1, Fault::Reset);
    assert!(db.sync().is_err());
    assert_eq!(
        s.requests().iter().filter(|r| is_db_put(r)).count(),
        0,
        "{:?}",
        s.requests()
    );
    db.sync().unwrap();
    assert!(s.peek(J1).is_some());
    assert_eq!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
    j.close().unwrap();
}

#[test]
fn a_journal_whose_block_0_is_gone_is_never_hot() {
    let (s, vfs, mut db) = setup();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    db.sync().unwrap();
    j.close().unwrap();
    let first_bytes = |f: &mut BlockFile| {
        let mut b = vec![0u8; 28];
        f.read(&mut b, 0).unwrap();
        b
    };
    let mut jf = BlockFile::new(s.clone(), "app.db-journal", 4096);
    assert!(
        journal_may_be_hot(Some(&first_bytes(&mut jf))),
        "stored and not deleted: hot if nobody holds the lease"
    );
    s.fail_next("DELETE", J1, Fault::Delay(Duration::from_millis(150)));
    delete_journal(vfs, DB, 0).unwrap();
    let mut jf = BlockFile::new(s.clone(), "app.db-journal", 4096);
    assert!(jf.exists().unwrap(), "its other blocks are still there");
    assert!(!journal_may_be_hot(Some(&first_bytes(&mut jf))));
    db.unlock(Unlocked).unwrap();
    db.close().unwrap();
}

#[test]
fn a_crashed_writers_journal_is_hot_only_once_its_lease_expired() {
    let s = store();
    let crashed = vfs_on(&s, &[]);
    create_db(crashed, DB, 3, 1);
    let mut w = open_db(crashed, DB, None, 0);
    let j = begin_commit(&mut w, crashed, DB, 0, 2, 9);
    w.sync().unwrap();
    // The writer dies here: journal and pages stored, lease held, nothing deleted.
    std::mem::forget((w, j));
    let other = vfs_on(&s, &[]);
    let mut r = open_db(other, DB, None, 0);
    granted(r.lock(Shared));
    assert!(other
        .exists(NameRef {
            text: "app.db-journal",
            addr: companions(0)[0]
        })
        .unwrap());
    assert!(
        r.check_reserved().unwrap(),
        "a live writer's journal is not hot"
    );
    let mut lease = stored(&s, DB);
    // Expired, and past the grace period the holder's term gives a takeover.
    lease.expires_ms = now_ms() - lease.term_ms / 6 - 1;
    s.poke(
        &crate::layout::lease_key(DB),
        &serde_json::to_vec(&lease).unwrap(),
    );
    assert!(!r.check_reserved().unwrap());
    assert!(
        journal_may_be_hot(s.peek(J0).as_deref()),
        "now SQLite plays it back"
    );
}

#[test]
fn a_journal_opened_to_write_starts_empty_without_a_listing() {
    let (s, vfs, mut db) = setup();
    granted(db.lock(Shared));
    granted(db.lock(LockLevel::Reserved));
    s.clear_requests();
    let mut j = open_journal(vfs, DB, 0);
    assert_eq!(j.size().unwrap(), 0);
    assert_eq!(s.count("LIST"), 0, "{:?}", s.requests());
    j.close().unwrap();
    db.unlock(Unlocked).unwrap();
}
