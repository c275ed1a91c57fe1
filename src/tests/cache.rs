//! Cache revalidation: a read transaction drops cached blocks when block 0 says another
//! process committed, and serves them without requests when it does not.

use super::*;
use LockLevel::{None as Unlocked, Reserved, Shared};

const DB: &str = "app.db";

fn gets_of(s: &MemoryStore, i: u64) -> usize {
    s.count(&format!("GET {}", crate::layout::block_key(DB, i)))
}

/// A 3-page database, one connection that read pages 1 and 2 in a finished read
/// transaction (so they are cached), and is past its first statement: its next read
/// transaction asks S3 (the first statement's two reuse the open's answers, `vfs/open.rs`).
fn warmed() -> (Arc<MemoryStore>, &'static S3Vfs, S3File) {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 3, 1);
    let mut db = open_db(vfs, DB, None, 0);
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    db.read(&mut buf, 2 * PAGE as u64).unwrap();
    db.unlock(Unlocked).unwrap();
    granted(db.lock(Shared));
    db.unlock(Unlocked).unwrap();
    s.clear_requests();
    (s, vfs, db)
}

#[test]
fn a_new_connections_first_statement_reuses_the_answers_of_its_open() {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 3, 1);
    s.clear_requests();
    let mut db = open_db(vfs, DB, None, 0);
    assert_eq!(s.requests().len(), 2, "GET block 0 + HEAD journal block 0");
    s.clear_requests();
    // The schema's read transaction and the statement's: nothing asked again.
    for _ in 0..2 {
        granted(db.lock(Shared));
        db.unlock(Unlocked).unwrap();
    }
    assert!(s.requests().is_empty(), "{:?}", s.requests());
    // The next one revalidates, as every later read transaction does: block 0 alone
    // (the journal question waits for a fetch, `vfs/read.rs`).
    granted(db.lock(Shared));
    db.unlock(Unlocked).unwrap();
    assert_eq!(gets_of(&s, 0), 1, "{:?}", s.requests());
    assert_eq!(s.requests().len(), 1, "{:?}", s.requests());
}

#[test]
fn an_unchanged_header_serves_cached_blocks_without_gets() {
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    assert_eq!(buf, vec![1u8; PAGE]);
    db.read(&mut buf, 2 * PAGE as u64).unwrap();
    assert_eq!(
        gets_of(&s, 0),
        1,
        "block 0 is fetched once per read transaction"
    );
    assert_eq!(
        (gets_of(&s, 1), gets_of(&s, 2)),
        (0, 0),
        "{:?}",
        s.requests()
    );
    db.unlock(Unlocked).unwrap();
}

#[test]
fn another_processes_commit_drops_cached_blocks_at_the_next_read_transaction() {
    let (s, _, mut db) = warmed();
    // Another process commits: new page 1 and a new change counter.
    s.poke("app.db/0000000001", &vec![7u8; PAGE]);
    s.poke("app.db/0000000000", &page0(2, 3));
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    assert_eq!(
        buf,
        vec![7u8; PAGE],
        "never the cached page of before the commit"
    );
    assert_eq!(gets_of(&s, 1), 1);
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_cached_page_stays_in_use_within_a_read_transaction() {
    // Within a read transaction nothing is revalidated: the view stays the one it began
    // with (a writer elsewhere must wait for it, or in lease mode SQLite detects a mix).
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    s.poke("app.db/0000000001", &vec![7u8; PAGE]);
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    assert_eq!(buf, vec![1u8; PAGE]);
    assert_eq!(gets_of(&s, 1), 0);
    db.unlock(Unlocked).unwrap();
}

#[test]
fn pages_this_process_committed_are_served_from_the_cache() {
    let (s, vfs, mut db) = warmed();
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    db.sync().unwrap();
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(Unlocked).unwrap();
    s.clear_requests();
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    assert_eq!(buf, vec![9u8; PAGE]);
    assert_eq!(gets_of(&s, 1), 0, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_writer_whose_snapshot_another_process_committed_over_must_start_over() {
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    // Another process takes the lease, commits and releases it while we read.
    s.poke("app.db/0000000001", &vec![7u8; PAGE]);
    s.poke("app.db/0000000000", &page0(2, 3));
    s.poke(
        "app.db.s3vfs-lease",
        &record("other", now_ms() + 60_000, true, false),
    );
    assert_eq!(
        db.lock(Reserved).unwrap(),
        crate::vfs::LockResult::Busy(None)
    );
    assert!(stored(&s, DB).released, "the lease is given back at once");
    // Starting over reads the other process's commit, and then the write may go ahead.
    db.unlock(Unlocked).unwrap();
    granted(db.lock(Shared));
    db.read(&mut buf, PAGE as u64).unwrap();
    assert_eq!(buf, vec![7u8; PAGE]);
    granted(db.lock(Reserved));
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_stale_writer_retrying_in_the_same_read_transaction_is_busy_again() {
    // SQLite returns BUSY to a write inside a read transaction without dropping SHARED,
    // and the application may run the statement again. The lease is then our own released
    // version, but this connection still reads the old database: no write may start.
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    s.poke("app.db/0000000000", &page0(2, 3));
    s.poke("app.db.s3vfs-lease", &record("other", 0, true, false));
    assert_eq!(
        db.lock(Reserved).unwrap(),
        crate::vfs::LockResult::Busy(None)
    );
    assert_eq!(
        db.lock(Reserved).unwrap(),
        crate::vfs::LockResult::Busy(None),
        "the retry from the same stale read transaction"
    );
    assert!(stored(&s, DB).released);
    db.unlock(Unlocked).unwrap();
    granted(db.lock(Shared));
    granted(db.lock(Reserved));
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_reader_older_than_a_commit_another_connection_saw_cannot_write() {
    // Connection `old` reads; another process commits; connection `new` of this process
    // reads the commit, takes the lease (checked: current) and gives it back. `old` must
    // not get the lease back "quickly": its pages predate that commit.
    let (s, vfs, mut old) = warmed();
    granted(old.lock(Shared));
    s.poke("app.db/0000000001", &vec![7u8; PAGE]);
    s.poke("app.db/0000000000", &page0(2, 3));
    s.poke("app.db.s3vfs-lease", &record("other", 0, true, false));
    let mut new = open_db(vfs, DB, None, 5);
    granted(new.lock(Shared));
    granted(new.lock(Reserved));
    new.unlock(Unlocked).unwrap();
    assert_eq!(
        old.lock(Reserved).unwrap(),
        crate::vfs::LockResult::Busy(None)
    );
    old.unlock(Unlocked).unwrap();
    granted(old.lock(Shared));
    granted(old.lock(Reserved));
    old.unlock(Unlocked).unwrap();
}
