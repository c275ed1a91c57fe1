//! WAL mode's hold on the writer lease (`lock.rs`): a process that has a database open in
//! WAL mode holds its lease from the WAL's opening to its deletion or the last close, renewed
//! in the background, and every other process is kept out, readers too (the WAL index is in
//! the holder's memory).

use super::*;
use crate::codes::Locking;
use crate::lock::{Lock, LockTable, Outcome, WalHold};
use LockLevel::{Exclusive, None as Unlocked, Reserved, Shared};

const DB: &str = "wal.db";

/// One process: its lock table and how it makes the database's lease.
struct Process {
    table: LockTable,
    store: Arc<MemoryStore>,
    probes: Arc<ConditionalWrites>,
    term: Duration,
    /// The database's fence, fetched once: leases are made with the entry locked.
    fence: Arc<crate::fence::Fence>,
}

impl Process {
    fn new(store: &Arc<MemoryStore>, term: Duration) -> Process {
        let table = LockTable::default();
        let fence = table.fence(&Arc::from(DB));
        Process {
            table,
            store: store.clone(),
            probes: probed(store),
            term,
            fence,
        }
    }

    fn db(&self) -> Arc<str> {
        Arc::from(DB)
    }

    fn new_lease(&self) -> Lease {
        lease(&self.store, DB, self.term, &self.probes).with_fence(self.fence.clone())
    }

    /// Opening the WAL.
    fn hold(&self) -> WalHold {
        self.table
            .hold_for_wal(&self.db(), Locking::Lease, || self.new_lease(), || {})
            .unwrap()
    }

    fn conn(&self) -> Lock {
        Lock::new(self.table.entry(&self.db()), Locking::Lease)
    }

    fn lock(&self, c: &mut Lock, level: LockLevel) -> Outcome {
        c.lock(level, || self.new_lease(), |_| Ok(true)).unwrap()
    }
}

#[test]
fn a_process_in_wal_mode_holds_the_lease_and_another_one_is_told_who() {
    let s = store();
    let (a, b) = (Process::new(&s, LONG), Process::new(&s, LONG));
    let _conn = a.conn();
    assert_eq!(a.hold(), WalHold::Held);
    let held = stored(&s, DB);
    assert!(!held.released && held.pid == std::process::id());
    assert!(a.table.is_wal(&a.db()));
    // Opening the WAL again (a second connection) costs nothing.
    s.clear_requests();
    assert_eq!(a.hold(), WalHold::Held);
    assert_eq!(s.requests(), Vec::<String>::new());
    // Another process, reader or writer, is refused with the holder's record.
    match b.hold() {
        WalHold::Busy(holder) => assert_eq!(holder.owner, held.owner),
        WalHold::Held => panic!("two processes hold one WAL database"),
    }
    a.table.wal_done(&a.db()).unwrap();
    assert!(stored(&s, DB).released);
    assert_eq!(b.hold(), WalHold::Held);
}

#[test]
fn writers_in_a_wal_process_take_no_lease_request_and_unlocking_keeps_the_lease() {
    let s = store();
    let a = Process::new(&s, LONG);
    let mut c = a.conn();
    assert_eq!(a.hold(), WalHold::Held);
    s.clear_requests();
    for level in [Shared, Reserved, Exclusive] {
        assert_eq!(a.lock(&mut c, level), Outcome::Granted);
    }
    c.unlock(Unlocked).unwrap();
    assert_eq!(
        s.requests(),
        Vec::<String>::new(),
        "the lease is held already"
    );
    assert!(
        !stored(&s, DB).released,
        "WAL mode keeps the lease between transactions"
    );
}

#[test]
fn the_last_connection_to_close_gives_the_wal_lease_up() {
    let s = store();
    let a = Process::new(&s, LONG);
    let (first, second) = (a.conn(), a.conn());
    assert_eq!(a.hold(), WalHold::Held);
    drop(first);
    assert!(
        !stored(&s, DB).released,
        "another connection still uses the WAL"
    );
    drop(second);
    assert!(stored(&s, DB).released);
    assert!(!a.table.is_wal(&a.db()));
}

#[test]
fn leaving_wal_mode_during_a_rollback_write_keeps_the_lease_until_it_unlocks() {
    let s = store();
    let a = Process::new(&s, LONG);
    let mut c = a.conn();
    assert_eq!(a.hold(), WalHold::Held);
    assert_eq!(a.lock(&mut c, Shared), Outcome::Granted);
    assert_eq!(a.lock(&mut c, Reserved), Outcome::Granted);
    // journal_mode=delete deletes the WAL while this connection writes the header.
    a.table.wal_done(&a.db()).unwrap();
    assert!(!stored(&s, DB).released, "the writer still needs it");
    c.unlock(Unlocked).unwrap();
    assert!(stored(&s, DB).released);
}

#[test]
fn the_wal_lease_is_renewed_in_the_background() {
    let s = store();
    let term = Duration::from_millis(300);
    let a = Process::new(&s, term);
    let _c = a.conn();
    assert_eq!(a.hold(), WalHold::Held);
    let first = stored(&s, DB);
    std::thread::sleep(term * 3);
    let now = stored(&s, DB);
    assert_eq!(now.owner, first.owner);
    assert!(!now.released && now.expires_ms > now_ms(), "{now:?}");
    assert!(now.expires_ms > first.expires_ms + 500);
    a.table.ensure_wal_writer(&a.db()).unwrap();
}

#[test]
fn a_wal_lease_taken_over_fails_the_next_write_and_stops_renewing() {
    let s = store();
    let term = Duration::from_millis(300);
    let a = Process::new(&s, term);
    let _c = a.conn();
    assert_eq!(a.hold(), WalHold::Held);
    // Another process takes the lease (as after a pause longer than the term).
    poke_live(&s, DB, "someone else");
    std::thread::sleep(term / 2);
    assert!(a.table.ensure_wal_writer(&a.db()).is_err());
    assert_eq!(
        a.table.fence(&a.db()).remaining(),
        None,
        "no write gets out"
    );
    std::thread::sleep(term);
    s.clear_requests();
    std::thread::sleep(term);
    assert_eq!(s.count("PUT_IF"), 0, "the renewal thread gave up");
    assert_eq!(stored(&s, DB).owner, "someone else");
}

#[test]
fn a_wal_hold_taken_from_another_process_says_so_and_forgets_nothing_of_its_own() {
    // In WAL mode SQLite bumps the change counter only in commits that touch page 1, so
    // another holder's checkpoint may leave block 0 as it was: a process taking the
    // lease over must drop what it cached (the VFS does, through this callback).
    let s = store();
    let (a, b) = (Process::new(&s, LONG), Process::new(&s, LONG));
    let hold = |p: &Process| {
        let taken = std::cell::Cell::new(false);
        let r = p
            .table
            .hold_for_wal(
                &p.db(),
                Locking::Lease,
                || p.new_lease(),
                || taken.set(true),
            )
            .unwrap();
        assert_eq!(r, WalHold::Held);
        taken.get()
    };
    let (_ca, _cb) = (a.conn(), b.conn());
    assert!(
        hold(&a),
        "the first take is from nobody's version: nothing known"
    );
    a.table.wal_done(&a.db()).unwrap();
    assert!(
        !hold(&a),
        "our own release, nobody wrote since: the cache stays"
    );
    a.table.wal_done(&a.db()).unwrap();
    assert!(hold(&b), "taken from a's version");
    b.table.wal_done(&b.db()).unwrap();
    assert!(hold(&a), "b may have checkpointed anything");
}
