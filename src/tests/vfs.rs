//! Database identity: the same name in two buckets is two databases, with their own
//! journals, locks and leases; and a lost lease stops every write through the VFS.

use super::*;
use crate::error::Error;
use LockLevel::{Exclusive, None as Unlocked, Reserved, Shared};

const DB: &str = "app.db";

fn two_buckets() -> (Arc<MemoryStore>, Arc<MemoryStore>, &'static S3Vfs) {
    let (a, b) = (store(), store());
    let vfs = vfs_over(&[("A", &a), ("B", &b)], &[]);
    (a, b, vfs)
}

#[test]
fn the_same_name_in_two_buckets_keeps_its_journal_in_its_own_bucket() {
    let (a, b, vfs) = two_buckets();
    let mut da = open_db(vfs, DB, Some("A"), 0);
    let mut db = open_db(vfs, DB, Some("B"), 1);
    for (d, n) in [(&mut da, 0), (&mut db, 1)] {
        granted(d.lock(Shared));
        granted(d.lock(Exclusive));
        d.write(&page0(1, 2), 0).unwrap();
        d.write(&vec![n as u8 + 1; PAGE], PAGE as u64).unwrap();
        d.sync().unwrap();
        d.unlock(Unlocked).unwrap();
    }
    b.clear_requests();
    a.clear_requests();
    let j = begin_commit(&mut da, vfs, DB, 0, 2, 9);
    da.sync().unwrap();
    assert!(a.peek("app.db-journal/0000000000").is_some());
    assert!(
        b.keys().iter().all(|k| !k.contains("journal")),
        "{:?}",
        b.keys()
    );
    assert!(
        b.requests().iter().all(|r| !r.starts_with("PUT")),
        "{:?}",
        b.requests()
    );
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    da.unlock(Unlocked).unwrap();
    assert_eq!(page(&b, DB, 1).unwrap(), vec![2u8; PAGE], "B untouched");
    assert_eq!(page(&a, DB, 1).unwrap(), vec![9u8; PAGE]);
}

#[test]
fn the_same_name_in_two_buckets_keeps_separate_locks_and_leases() {
    let (a, b, vfs) = two_buckets();
    let mut da = open_db(vfs, DB, Some("A"), 0);
    let mut db = open_db(vfs, DB, Some("B"), 1);
    granted(da.lock(Shared));
    granted(da.lock(Exclusive));
    granted(db.lock(Shared));
    granted(db.lock(Reserved));
    assert!(stored(&a, DB).live(now_ms()) && stored(&b, DB).live(now_ms()));
    assert_ne!(stored(&a, DB).owner, stored(&b, DB).owner);
    db.unlock(Unlocked).unwrap();
    assert!(stored(&b, DB).released && !stored(&a, DB).released);
    da.unlock(Unlocked).unwrap();
}

#[test]
fn a_journal_named_only_by_text_is_refused_when_its_database_is_open_in_two_buckets() {
    let (a, b, vfs) = two_buckets();
    let _da = open_db(vfs, DB, Some("A"), 0);
    let _db = open_db(vfs, DB, Some("B"), 1);
    // Each open HEADs its own journal; what follows must not touch either.
    a.clear_requests();
    b.clear_requests();
    let unknown = NameRef {
        text: "app.db-journal",
        addr: 7,
    };
    let err = vfs.delete(unknown).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("more than one place")),
        "{err}"
    );
    assert!(vfs.exists(unknown).is_err());
    assert!(a
        .requests()
        .iter()
        .chain(b.requests().iter())
        .all(|r| !r.contains("journal")));
}

#[test]
fn two_connections_in_one_process_share_one_lock_entry() {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 2, 9);
    let mut w = open_db(vfs, DB, None, 0);
    let mut r = open_db(vfs, DB, None, 1);
    granted(w.lock(Shared));
    granted(r.lock(Shared));
    granted(w.lock(Reserved));
    assert!(r.check_reserved().unwrap());
    assert_eq!(
        r.lock(Reserved).unwrap(),
        crate::vfs::LockResult::Busy(None)
    );
    assert_eq!(
        w.lock(Exclusive).unwrap(),
        crate::vfs::LockResult::Busy(None),
        "r still reads"
    );
    r.unlock(Unlocked).unwrap();
    granted(w.lock(Exclusive));
    w.unlock(Unlocked).unwrap();
}

#[test]
fn a_writer_elsewhere_makes_reserved_busy_with_a_message_naming_it() {
    let s = store();
    let (p1, p2) = (vfs_on(&s, &[]), vfs_on(&s, &[]));
    create_db(p1, DB, 2, 9);
    let mut w = open_db(p1, DB, None, 0);
    let mut r = open_db(p2, DB, None, 0);
    granted(w.lock(Shared));
    granted(w.lock(Reserved));
    granted(r.lock(Shared));
    assert!(r.check_reserved().unwrap());
    match r.lock(Reserved).unwrap() {
        crate::vfs::LockResult::Busy(Some(why)) => {
            assert!(
                why.contains("another process") && why.contains("busy_timeout"),
                "{why}"
            )
        }
        other => panic!("expected a busy message, got {other:?}"),
    }
    w.unlock(Unlocked).unwrap();
    granted(r.lock(Reserved));
    r.unlock(Unlocked).unwrap();
}

#[test]
fn a_writer_whose_lease_was_taken_over_stores_no_page() {
    let s = store();
    let vfs = vfs_on(&s, &[("S3VFS_LEASE_SECONDS", "1")]);
    create_db(vfs, DB, 3, 1);
    let mut db = open_db(vfs, DB, None, 0);
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    // The process stalls past a third of its term; another writer takes the lease.
    poke_live(&s, DB, "usurper");
    std::thread::sleep(Duration::from_millis(340));
    s.clear_requests();
    let err = db.sync().unwrap_err();
    assert!(matches!(err, Error::Lease(_)), "{err:?}");
    let log = s.requests();
    assert!(
        log.iter().all(|r| !r.starts_with("PUT ")),
        "no block written: {log:?}"
    );
    assert!(matches!(db.sync(), Err(Error::Lease(_))), "nor on a retry");
    assert_ne!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
    assert_eq!(stored(&s, DB).owner, "usurper");
    drop(j);
}

#[test]
fn locking_none_commits_without_any_lease_or_mark_request() {
    let s = store();
    let vfs = vfs_on(&s, &[("S3VFS_LOCKING", "none")]);
    create_db(vfs, DB, 3, 1);
    let mut db = open_db(vfs, DB, None, 0);
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    db.sync().unwrap();
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(Unlocked).unwrap();
    assert!(!db.check_reserved().unwrap());
    db.close().unwrap();
    assert!(
        s.requests().iter().all(|r| !r.contains(".s3vfs-")),
        "{:?}",
        s.requests()
    );
    assert_eq!(page(&s, DB, 1).unwrap(), vec![9u8; PAGE]);
}
