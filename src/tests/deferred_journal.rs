//! The hot-journal question a read transaction defers to its first fetch (`vfs/read.rs`):
//! a warm transaction served from the cache is one request, the first fetch asks beside
//! its GETs, a crashed writer's journal stops the read before anything half written is
//! used or cached, and the next transaction lets SQLite roll it back.

use super::*;
use crate::layout::{block_key, lease_key};
use LockLevel::{None as Unlocked, Reserved, Shared};

const DB: &str = "app.db";
const J0: &str = "app.db-journal/0000000000";
/// Pages far past what reading pages 1 and 2 reads ahead.
const FAR: u64 = 250;

/// Requests that asked about the journal: a ranged GET of its block 0's header (the
/// deferred question), or a HEAD (the question asked at the start).
fn journal_asks(s: &MemoryStore) -> usize {
    s.count(&format!("GET {J0}")) + s.count(&format!("HEAD {J0}"))
}

fn journal_exists(vfs: &'static S3Vfs) -> bool {
    vfs.exists(NameRef {
        text: "app.db-journal",
        addr: companions(0)[0],
    })
    .unwrap()
}

/// A 300-page database and a connection past its open's reused answers that has read
/// pages 1 and 2 (cached, with some readahead); pages from [`FAR`] on are not cached.
fn warmed() -> (Arc<MemoryStore>, &'static S3Vfs, S3File) {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 300, 1);
    let mut db = open_db(vfs, DB, None, 0);
    // As in a process that did not write the database itself.
    db.forget_cached_blocks();
    for _ in 0..2 {
        granted(db.lock(Shared));
        db.unlock(Unlocked).unwrap();
    }
    granted(db.lock(Shared));
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, PAGE as u64).unwrap();
    db.read(&mut buf, 2 * PAGE as u64).unwrap();
    db.unlock(Unlocked).unwrap();
    s.clear_requests();
    (s, vfs, db)
}

/// A journal left by a writer that stopped mid-commit: its block 0, and its lease, held
/// by `owner` until `expires_ms`.
fn leave_journal(s: &MemoryStore, expires_ms: u64) {
    s.poke(J0, &journal_header());
    s.poke(&lease_key(DB), &record("crashed", expires_ms, false, false));
}

/// A read transaction that asks about the journal at its start: one question, and SQLite
/// sees the journal before any read (so it rolls a crashed writer's back at once).
fn asks_at_the_start(s: &MemoryStore, vfs: &'static S3Vfs, db: &mut S3File) {
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(journal_asks(s), 1, "{:?}", s.requests());
    assert!(journal_exists(vfs), "SQLite sees the journal at the start");
    db.unlock(Unlocked).unwrap();
}

fn read_page(db: &mut S3File, i: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; PAGE];
    db.read(&mut buf, i * PAGE as u64).map(|_| buf)
}

#[test]
fn a_warm_read_transaction_served_from_the_cache_is_one_conditional_get() {
    let (s, vfs, mut db) = warmed();
    granted(db.lock(Shared));
    assert!(!journal_exists(vfs), "SQLite is told: no journal");
    assert_eq!(read_page(&mut db, 1).unwrap(), vec![1u8; PAGE]);
    assert_eq!(read_page(&mut db, 2).unwrap(), vec![2u8; PAGE]);
    db.unlock(Unlocked).unwrap();
    assert_eq!(s.requests(), vec![format!("GET {}", block_key(DB, 0))]);
}

#[test]
fn the_first_fetch_asks_about_the_journal_beside_its_get_once() {
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    assert_eq!(read_page(&mut db, FAR).unwrap(), vec![FAR as u8; PAGE]);
    assert_eq!(journal_asks(&s), 1, "{:?}", s.requests());
    assert_eq!(
        read_page(&mut db, FAR + 20).unwrap(),
        vec![(FAR + 20) as u8; PAGE]
    );
    assert_eq!(journal_asks(&s), 1, "asked once per transaction");
    db.unlock(Unlocked).unwrap();
    // The next transaction asks again, at its first fetch.
    granted(db.lock(Shared));
    read_page(&mut db, 150).unwrap();
    assert_eq!(journal_asks(&s), 2, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_crashed_writers_journal_stops_the_first_fetch_and_the_next_transaction_asks_at_its_start() {
    let (s, vfs, mut db) = warmed();
    // A writer took the lease, stored its journal and one page (not block 0), and died;
    // its lease is past expiry and grace.
    leave_journal(&s, now_ms() - PAST_GRACE);
    s.poke(&block_key(DB, FAR), &vec![0xEE; PAGE]);
    granted(db.lock(Shared));
    // Cached blocks are the state before that commit: still served.
    assert_eq!(read_page(&mut db, 1).unwrap(), vec![1u8; PAGE]);
    let err = read_page(&mut db, FAR).unwrap_err();
    assert_eq!(err.kind(), "busy", "{err}");
    assert!(err.to_string().contains("retry"), "says what to do: {err}");
    db.unlock(Unlocked).unwrap();
    // The half-written page did not enter the cache.
    s.poke(&block_key(DB, FAR), &vec![FAR as u8; PAGE]);
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(
        journal_asks(&s),
        1,
        "asked at the start: {:?}",
        s.requests()
    );
    assert!(journal_exists(vfs), "SQLite sees the hot journal");
    assert!(
        !db.check_reserved().unwrap(),
        "and no live writer: it rolls back"
    );
    assert_eq!(read_page(&mut db, FAR).unwrap(), vec![FAR as u8; PAGE]);
    assert_eq!(journal_asks(&s), 1, "not asked twice");
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_live_writers_journal_lets_the_read_go_on_as_sqlites_own_check_would() {
    let (s, _, mut db) = warmed();
    leave_journal(&s, now_ms() + 60_000);
    granted(db.lock(Shared));
    assert_eq!(read_page(&mut db, FAR).unwrap(), vec![FAR as u8; PAGE]);
    assert_eq!(journal_asks(&s), 1);
    db.unlock(Unlocked).unwrap();
    // What it cached may be that writer's half-stored commit, which would pass for current
    // if the writer stopped before storing block 0: dropped, and the next transaction asks
    // at its start.
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(journal_asks(&s), 1, "{:?}", s.requests());
    read_page(&mut db, 1).unwrap();
    assert_eq!(
        s.count(&format!("GET {}", block_key(DB, 1))),
        1,
        "page 1 is fetched again"
    );
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_persist_journals_zeroed_header_left_by_a_dead_writer_lets_the_read_go_on() {
    let (s, _, mut db) = warmed();
    // journal_mode=PERSIST keeps journal block 0 between transactions, its header zeroed:
    // never hot, whoever held the lease.
    s.poke(J0, &vec![0u8; 512]);
    s.poke(
        &lease_key(DB),
        &record("gone", now_ms() - PAST_GRACE, false, false),
    );
    granted(db.lock(Shared));
    assert_eq!(read_page(&mut db, FAR).unwrap(), vec![FAR as u8; PAGE]);
    assert_eq!(journal_asks(&s), 1);
    db.unlock(Unlocked).unwrap();
}

#[test]
fn writing_after_a_takeover_without_having_asked_is_refused_until_the_journal_is_rolled_back() {
    let (s, _, mut db) = warmed();
    leave_journal(&s, now_ms() - PAST_GRACE);
    granted(db.lock(Shared));
    assert_eq!(read_page(&mut db, 1).unwrap(), vec![1u8; PAGE]);
    // The lease is taken over from the crashed writer: its journal must not be
    // overwritten by ours.
    assert_eq!(db.lock(Reserved).unwrap(), LockResult::Busy(None));
    assert_eq!(journal_asks(&s), 1, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(journal_asks(&s), 1, "the retry asks at its start");
    db.unlock(Unlocked).unwrap();
}

#[test]
fn writing_with_a_free_lease_needs_no_journal_question() {
    let (s, _, mut db) = warmed();
    granted(db.lock(Shared));
    granted(db.lock(Reserved));
    read_page(&mut db, FAR).unwrap();
    assert_eq!(journal_asks(&s), 0, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_connection_with_nothing_cached_asks_at_the_start_so_sqlite_rolls_back_at_once() {
    let (s, vfs, mut db) = warmed();
    leave_journal(&s, now_ms() - PAST_GRACE);
    db.forget_cached_blocks();
    asks_at_the_start(&s, vfs, &mut db);
}

#[test]
fn with_locking_none_the_journal_is_asked_about_at_the_start() {
    let s = store();
    let vfs = vfs_on(&s, &[("S3VFS_LOCKING", "none")]);
    create_db(vfs, DB, 3, 1);
    let mut db = open_db(vfs, DB, None, 0);
    db.forget_cached_blocks();
    for _ in 0..2 {
        granted(db.lock(Shared));
        db.unlock(Unlocked).unwrap();
    }
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(journal_asks(&s), 1, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
}

#[test]
fn a_fresh_connection_whose_open_answers_are_too_old_asks_at_its_start() {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 300, 1);
    let mut db = open_db(vfs, DB, None, 0);
    // A writer crashes between the open and the first statement, which a loaded machine
    // delays past the open's answers: block 0 is cached, but no question was asked at a
    // start yet, so SQLite is told about the journal before any read, and rolls it back.
    leave_journal(&s, now_ms() - PAST_GRACE);
    db.expire_open_check();
    asks_at_the_start(&s, vfs, &mut db);
}

#[test]
fn a_journal_seen_at_the_open_is_asked_about_at_the_start_when_its_answers_run_out() {
    let s = store();
    let vfs = vfs_on(&s, &[]);
    create_db(vfs, DB, 300, 1);
    leave_journal(&s, now_ms() - PAST_GRACE);
    let mut db = open_db(vfs, DB, None, 0);
    for _ in 0..2 {
        granted(db.lock(Shared));
        assert!(journal_exists(vfs), "the open's answer");
        db.unlock(Unlocked).unwrap();
    }
    asks_at_the_start(&s, vfs, &mut db);
    // Once a start found no journal (SQLite rolled it back), the question is deferred again.
    s.remove(J0);
    for _ in 0..2 {
        granted(db.lock(Shared));
        db.unlock(Unlocked).unwrap();
    }
    s.clear_requests();
    granted(db.lock(Shared));
    assert_eq!(journal_asks(&s), 0, "{:?}", s.requests());
    db.unlock(Unlocked).unwrap();
}
