//! The lease kept after a write transaction (the linger): a stream of autocommit writes
//! takes it once; it is given up when the linger runs out, at the last close, and at exit;
//! nobody else writes meanwhile, and a lease lost during the linger is taken again with
//! the freshness check.

use super::*;
use crate::codes::Locking;
use crate::lock::{Lock, LockTable, Outcome};
use LockLevel::{Exclusive, None as Unlocked, Reserved, Shared};

const DB: &str = "app.db";
const KEY: &str = "app.db.s3vfs-lease";
const LINGER: Duration = Duration::from_millis(150);

struct Process {
    term: Duration,
    table: LockTable,
    store: Arc<MemoryStore>,
    probes: Arc<ConditionalWrites>,
}

impl Process {
    fn new(store: &Arc<MemoryStore>, probes: &Arc<ConditionalWrites>) -> Process {
        Process {
            term: LONG,
            table: LockTable::default(),
            store: store.clone(),
            probes: probes.clone(),
        }
    }

    fn maker(&self) -> impl FnOnce() -> Lease + '_ {
        move || lease(&self.store, DB, self.term, &self.probes)
    }

    fn conn(&self, linger: Duration) -> Lock {
        Lock::new(self.table.entry(&Arc::from(DB)), Locking::Lease).with_linger(linger)
    }

    /// One write transaction as SQLite runs it (SHARED, RESERVED, EXCLUSIVE, NONE);
    /// `fresh` answers the freshness check, and says whether it was asked.
    fn write(&self, c: &mut Lock, fresh: bool) -> (Outcome, bool) {
        let asked = std::cell::Cell::new(false);
        c.lock(Shared, self.maker(), |_| Ok(true)).unwrap();
        let got = c
            .lock(Exclusive, self.maker(), |_| {
                asked.set(true);
                Ok(fresh)
            })
            .unwrap();
        c.unlock(Unlocked).unwrap();
        (got, asked.get())
    }
}

fn lease_requests(s: &MemoryStore) -> Vec<String> {
    s.requests()
        .into_iter()
        .filter(|r| r.ends_with(KEY))
        .collect()
}

#[test]
fn a_stream_of_write_transactions_takes_the_lease_once() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let mut c = p.conn(LINGER);
    // The first take (no lease stored yet) checks freshness; the others keep the lease.
    assert_eq!(p.write(&mut c, true), (Outcome::Granted, true));
    for _ in 0..4 {
        assert_eq!(p.write(&mut c, true), (Outcome::Granted, false));
    }
    assert_eq!(lease_requests(&s), [format!("PUT_IF {KEY}")]);
    let r = stored(&s, DB);
    assert!(r.live(now_ms()), "still held during the linger: {r:?}");
}

#[test]
fn the_keeper_gives_the_lease_up_when_the_linger_runs_out() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let mut c = p.conn(LINGER);
    p.write(&mut c, true);
    assert!(!stored(&s, DB).released);
    std::thread::sleep(LINGER * 3);
    assert!(stored(&s, DB).released, "released by the keeper");
    // The next write takes it back with one request (our own release, nobody wrote).
    s.clear_requests();
    assert_eq!(p.write(&mut c, true), (Outcome::Granted, false));
    assert_eq!(lease_requests(&s), [format!("PUT_IF {KEY}")]);
}

#[test]
fn another_process_is_busy_during_the_linger_and_writes_after_it() {
    let s = store();
    let probes = probed(&s);
    let (p1, p2) = (Process::new(&s, &probes), Process::new(&s, &probes));
    let (mut a, mut b) = (p1.conn(LINGER), p2.conn(Duration::ZERO));
    p1.write(&mut a, true);
    assert!(matches!(
        p2.write(&mut b, true).0,
        Outcome::BusyElsewhere(_)
    ));
    std::thread::sleep(LINGER * 3);
    // Taken from someone else's release: the freshness check runs.
    assert_eq!(p2.write(&mut b, true), (Outcome::Granted, true));
    // And the first process, lingering no more, must check again too.
    assert_eq!(p1.write(&mut a, true), (Outcome::Granted, true));
}

#[test]
fn the_last_connection_to_close_gives_the_lease_up_at_once() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let (mut a, b) = (
        p.conn(Duration::from_secs(60)),
        p.conn(Duration::from_secs(60)),
    );
    p.write(&mut a, true);
    drop(a);
    assert!(!stored(&s, DB).released, "another connection still uses it");
    drop(b);
    assert!(stored(&s, DB).released, "the last close released it");
}

#[test]
fn exit_gives_lingering_leases_up_but_not_a_writers() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let (mut a, mut w) = (
        p.conn(Duration::from_secs(60)),
        p.conn(Duration::from_secs(60)),
    );
    p.write(&mut a, true);
    p.table.end_lingering();
    assert!(stored(&s, DB).released);
    // A connection in a write transaction keeps its lease: its journal is not hot yet.
    w.lock(Shared, p.maker(), |_| Ok(true)).unwrap();
    w.lock(Reserved, p.maker(), |_| Ok(true)).unwrap();
    p.table.end_lingering();
    assert!(!stored(&s, DB).released);
}

#[test]
fn a_lease_lost_during_the_linger_is_taken_again_with_the_freshness_check() {
    let s = store();
    let mut p = Process::new(&s, &probed(&s));
    p.term = Duration::from_millis(300);
    let mut c = p.conn(Duration::from_secs(60));
    p.write(&mut c, true);
    // Another writer took the lease over (as after this process froze past its expiry),
    // committed and released it; the keeper's next renewal finds it gone.
    s.poke(KEY, &record("other", 0, true, false));
    std::thread::sleep(Duration::from_millis(320));
    assert_eq!(
        p.write(&mut c, false),
        (Outcome::Busy, true),
        "stale view: start over"
    );
    // The transaction that starts over reads afresh: no check needed.
    assert_eq!(p.write(&mut c, true), (Outcome::Granted, false));
}

#[test]
fn a_writer_keeps_no_lease_without_linger() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let mut c = p.conn(Duration::ZERO);
    p.write(&mut c, true);
    assert!(stored(&s, DB).released);
}

#[test]
fn a_lingering_writers_next_commit_sends_only_journal_pages_and_the_commit_point() {
    let s = store();
    let vfs = vfs_on(&s, &[("S3VFS_LEASE_LINGER_MS", "60000")]);
    create_db(vfs, DB, 3, 1);
    let mut db = open_db(vfs, DB, None, 0);
    for (counter, fill) in [(2, 9), (3, 8)] {
        s.clear_requests();
        let j = begin_commit(&mut db, vfs, DB, 0, counter, fill);
        db.sync().unwrap();
        j.close().unwrap();
        delete_journal(vfs, DB, 0).unwrap();
        db.unlock(LockLevel::None).unwrap();
    }
    let log: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| r != "DELETE app.db-journal/0000000001")
        .collect();
    let mut kinds: Vec<&str> = log.iter().map(|r| r.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "DELETE app.db-journal/0000000000",
            "PUT app.db-journal/0000000000",
            "PUT app.db-journal/0000000001",
            "PUT app.db/0000000000",
            "PUT app.db/0000000001",
        ],
        "no lease request and no revalidation while the lease is kept: {log:?}"
    );
    assert!(stored(&s, DB).live(now_ms()));
    drop(db);
    assert!(stored(&s, DB).released, "the last close gives it up");
}

#[test]
fn a_copy_into_the_database_ends_this_processs_linger_first() {
    let s = store();
    let p = Process::new(&s, &probed(&s));
    let mut c = p.conn(Duration::from_secs(60));
    p.write(&mut c, true);
    p.table.end_linger(&Arc::from("other.db"));
    assert!(
        !stored(&s, DB).released,
        "another database's linger is left alone"
    );
    p.table.end_linger(&Arc::from(DB));
    assert!(stored(&s, DB).released);
}

#[test]
fn a_write_transaction_is_not_kept_alive_from_the_background() {
    let s = store();
    let mut p = Process::new(&s, &probed(&s));
    p.term = Duration::from_millis(300);
    let mut c = p.conn(Duration::from_secs(60));
    // A lingering lease first, so a keeper has run for this entry.
    p.write(&mut c, true);
    c.lock(Shared, p.maker(), |_| Ok(true)).unwrap();
    c.lock(Reserved, p.maker(), |_| Ok(true)).unwrap();
    s.clear_requests();
    // The writer hangs (or is frozen) past its term: only its own next write may renew,
    // and then only if nobody took the lease meanwhile.
    std::thread::sleep(Duration::from_millis(400));
    assert!(lease_requests(&s).is_empty(), "{:?}", s.requests());
    assert!(
        !stored(&s, DB).live(now_ms()),
        "expired: another writer may take over"
    );
}

/// A VFS whose writer lingers, with a 3-page database and a connection (companions 0).
fn lingering_vfs(s: &Arc<MemoryStore>) -> (&'static S3Vfs, S3File) {
    let vfs = vfs_on(s, &[("S3VFS_LEASE_LINGER_MS", "60000")]);
    create_db(vfs, DB, 3, 1);
    (vfs, open_db(vfs, DB, None, 0))
}

/// One commit of page 1 through the VFS, as SQLite runs it.
fn commit(vfs: &'static S3Vfs, db: &mut S3File, counter: u32, fill: u8) {
    let j = begin_commit(db, vfs, DB, 0, counter, fill);
    db.sync().unwrap();
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(LockLevel::None).unwrap();
}

const J0: &str = "app.db-journal/0000000000";
const J1: &str = "app.db-journal/0000000001";
const J2: &str = "app.db-journal/0000000002";

#[test]
fn a_lingering_writers_journal_blocks_are_left_to_its_next_journal() {
    let s = store();
    let (vfs, mut db) = lingering_vfs(&s);
    commit(vfs, &mut db, 2, 9);
    assert!(s.peek(J0).is_none(), "the commit point");
    assert!(
        s.peek(J1).is_some(),
        "left for the next journal to overwrite"
    );
    s.clear_requests();
    commit(vfs, &mut db, 3, 8);
    let mut log = s.requests();
    log.sort();
    assert_eq!(
        log,
        [
            format!("DELETE {J0}"),
            format!("PUT {J0}"),
            format!("PUT {J1}"),
            "PUT app.db/0000000000".to_string(),
            "PUT app.db/0000000001".to_string(),
        ],
        "journal, pages, commit point: nothing else, nothing to wait for"
    );
    assert_eq!(page(&s, DB, 1).unwrap(), vec![8u8; PAGE]);
}

#[test]
fn blocks_past_the_next_journals_end_go_beside_its_puts() {
    let s = store();
    let (vfs, mut db) = lingering_vfs(&s);
    // A journal of three blocks (header and two records)...
    let j = begin_commit(&mut db, vfs, DB, 0, 2, 9);
    let mut j = j;
    j.write(&vec![5u8; PAGE + 8], 512 + PAGE as u64 + 8)
        .unwrap();
    db.sync().unwrap();
    j.close().unwrap();
    delete_journal(vfs, DB, 0).unwrap();
    db.unlock(LockLevel::None).unwrap();
    assert!(s.peek(J2).is_some());
    // ...then one of two: block 2 goes, block 1 is overwritten.
    s.clear_requests();
    commit(vfs, &mut db, 3, 8);
    // The deletion of block 2 went out with the journal's PUTs, on its own thread.
    for _ in 0..500 {
        if s.peek(J2).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        s.peek(J2).is_none() && s.peek(J1).is_some(),
        "{:?}",
        s.requests()
    );
    drop(db);
    let log = s.requests();
    assert!(s.peek(J1).is_none(), "{log:?}");
    assert_eq!(
        log.iter().filter(|r| **r == format!("DELETE {J1}")).count(),
        1,
        "block 1 is deleted once, at the close, not before the journal that overwrote it: {log:?}"
    );
}

#[test]
fn the_lease_is_given_up_only_after_the_last_journals_blocks_are_gone() {
    let s = store();
    let (vfs, mut db) = lingering_vfs(&s);
    commit(vfs, &mut db, 2, 9);
    s.clear_requests();
    drop(db);
    let log = s.requests();
    let deleted = first(&log, |r| r == format!("DELETE {J1}"));
    let released = first(&log, |r| r == format!("PUT_IF {KEY}"));
    assert!(deleted < released, "{log:?}");
    assert!(s.peek(J1).is_none() && stored(&s, DB).released, "{log:?}");
}

#[test]
fn a_lingering_lease_held_on_for_wal_mode_is_renewed_past_the_linger_by_the_same_keeper() {
    let s = store();
    let mut p = Process::new(&s, &probed(&s));
    p.term = Duration::from_millis(600);
    let mut c = p.conn(LINGER);
    p.write(&mut c, true);
    // The database goes into WAL mode here while the lease lingers: one keeper goes on
    // for WAL mode, renewing it well past both the linger and the term.
    let held = p
        .table
        .hold_for_wal(&Arc::from(DB), Locking::Lease, p.maker(), || {})
        .unwrap();
    assert_eq!(held, crate::lock::WalHold::Held);
    std::thread::sleep(p.term * 2);
    let r = stored(&s, DB);
    assert!(
        r.live(now_ms()) && !r.released,
        "renewed for WAL mode: {r:?}"
    );
    // Leaving WAL mode gives it up.
    p.table.wal_done(&Arc::from(DB)).unwrap();
    assert!(stored(&s, DB).released);
}
