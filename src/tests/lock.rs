//! SQLite's locks over the lock table (connections of one process) and the lease (other
//! processes).

use super::*;
use crate::codes::Locking;
use crate::lock::{Lock, LockTable, Outcome};
use LockLevel::{Exclusive, None as Unlocked, Pending, Reserved, Shared};

const DB: &str = "app.db";
const KEY: &str = "app.db.s3vfs-lease";

/// One process: its lock table (one entry per database) and its lease maker.
struct Process {
    table: LockTable,
    store: Arc<MemoryStore>,
    probes: Arc<ConditionalWrites>,
    locking: Locking,
}

impl Process {
    fn new(store: &Arc<MemoryStore>, probes: &Arc<ConditionalWrites>, locking: Locking) -> Process {
        Process {
            table: LockTable::default(),
            store: store.clone(),
            probes: probes.clone(),
            locking,
        }
    }

    fn conn(&self) -> Lock {
        Lock::new(self.table.entry(&Arc::from(DB)), self.locking)
    }

    fn lease(&self) -> impl FnOnce() -> Lease + '_ {
        move || lease(&self.store, DB, LONG, &self.probes)
    }

    fn lock(&self, c: &mut Lock, level: LockLevel) -> Outcome {
        c.lock(level, self.lease(), |_| Ok(true)).unwrap()
    }
}

fn setup(locking: Locking) -> (Arc<MemoryStore>, Process) {
    let s = store();
    let p = probed(&s);
    let proc = Process::new(&s, &p, locking);
    (s, proc)
}

#[test]
fn shared_locks_of_two_connections_coexist() {
    let (_, p) = setup(Locking::Lease);
    let (mut a, mut b) = (p.conn(), p.conn());
    assert_eq!(p.lock(&mut a, Shared), Outcome::Granted);
    assert_eq!(p.lock(&mut b, Shared), Outcome::Granted);
    assert_eq!((a.level, b.level), (Shared, Shared));
}

#[test]
fn one_reserved_lock_per_process_and_new_readers_still_enter() {
    let (_, p) = setup(Locking::Lease);
    let (mut a, mut b, mut c) = (p.conn(), p.conn(), p.conn());
    p.lock(&mut a, Shared);
    p.lock(&mut b, Shared);
    assert_eq!(p.lock(&mut a, Reserved), Outcome::Granted);
    assert_eq!(p.lock(&mut b, Reserved), Outcome::Busy);
    assert_eq!(b.level, Shared);
    assert_eq!(
        p.lock(&mut c, Shared),
        Outcome::Granted,
        "RESERVED admits readers"
    );
}

#[test]
fn pending_waits_for_readers_and_keeps_new_ones_out() {
    let (_, p) = setup(Locking::Lease);
    let (mut w, mut r, mut late) = (p.conn(), p.conn(), p.conn());
    p.lock(&mut w, Shared);
    p.lock(&mut r, Shared);
    p.lock(&mut w, Reserved);
    assert_eq!(p.lock(&mut w, Exclusive), Outcome::Busy);
    assert_eq!(w.level, Pending);
    assert_eq!(
        p.lock(&mut late, Shared),
        Outcome::Busy,
        "PENDING keeps new readers out"
    );
    r.unlock(Unlocked).unwrap();
    assert_eq!(p.lock(&mut w, Exclusive), Outcome::Granted);
    assert_eq!(w.level, Exclusive);
}

#[test]
fn exclusive_excludes_every_other_lock() {
    let (_, p) = setup(Locking::Lease);
    let (mut w, mut o) = (p.conn(), p.conn());
    p.lock(&mut w, Shared);
    p.lock(&mut w, Exclusive);
    assert_eq!(w.level, Exclusive);
    assert_eq!(p.lock(&mut o, Shared), Outcome::Busy);
    w.unlock(Shared).unwrap();
    assert_eq!(p.lock(&mut o, Shared), Outcome::Granted);
    assert_eq!(p.lock(&mut o, Reserved), Outcome::Granted);
}

#[test]
fn reserved_takes_the_lease_and_shared_does_not() {
    let (s, p) = setup(Locking::Lease);
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    assert!(
        s.requests().is_empty(),
        "SHARED costs no request: {:?}",
        s.requests()
    );
    p.lock(&mut a, Reserved);
    assert!(stored(&s, DB).live(now_ms()));
    assert_eq!(s.requests(), [format!("PUT_IF {KEY}")]);
}

#[test]
fn reserved_is_busy_elsewhere_while_another_process_holds_the_lease() {
    let s = store();
    let probes = probed(&s);
    let (p1, p2) = (
        Process::new(&s, &probes, Locking::Lease),
        Process::new(&s, &probes, Locking::Lease),
    );
    let (mut w, mut r, mut r2) = (p1.conn(), p2.conn(), p2.conn());
    p1.lock(&mut w, Shared);
    p1.lock(&mut w, Exclusive);
    let holder = stored(&s, DB).owner;
    p2.lock(&mut r, Shared);
    match p2.lock(&mut r, Reserved) {
        Outcome::BusyElsewhere(h) => assert_eq!(h.owner, holder),
        other => panic!("expected BusyElsewhere, got {other:?}"),
    }
    assert_eq!(r.level, Shared);
    // The failed attempt left nothing reserved in its own process.
    p2.lock(&mut r2, Shared);
    assert!(matches!(
        p2.lock(&mut r2, Reserved),
        Outcome::BusyElsewhere(_)
    ));
    w.unlock(Unlocked).unwrap();
    assert_eq!(p2.lock(&mut r, Reserved), Outcome::Granted);
}

#[test]
fn a_lease_taken_after_another_writers_commit_is_released_and_busy() {
    let (s, p) = setup(Locking::Lease);
    s.poke(KEY, &record("other", 0, true, false));
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    let got = a.lock(Reserved, p.lease(), |_| Ok(false)).unwrap();
    assert_eq!(got, Outcome::Busy);
    assert_eq!(a.level, Shared);
    let r = stored(&s, DB);
    assert!(r.released, "the lease goes back at once");
    // Nothing stays reserved: another connection may write.
    let mut b = p.conn();
    p.lock(&mut b, Shared);
    assert_eq!(
        b.lock(Reserved, p.lease(), |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
}

#[test]
fn a_stale_reader_retrying_in_the_same_transaction_is_checked_again() {
    // SQLite returns BUSY to a write in a read transaction without dropping SHARED; the
    // application may retry the statement. The lease is then our own released version,
    // but what this connection read is still stale: the retry is checked again.
    let (s, p) = setup(Locking::Lease);
    s.poke(KEY, &record("other", 0, true, false));
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    assert_eq!(
        a.lock(Reserved, p.lease(), |_| Ok(false)).unwrap(),
        Outcome::Busy
    );
    assert_eq!(
        a.lock(Reserved, p.lease(), |_| Ok(false)).unwrap(),
        Outcome::Busy,
        "a retry from the same stale view"
    );
    assert!(stored(&s, DB).released);
    // Once it has read afresh, it writes.
    a.unlock(Unlocked).unwrap();
    p.lock(&mut a, Shared);
    assert_eq!(
        a.lock(Reserved, p.lease(), |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
}

#[test]
fn a_reader_older_than_another_connections_take_is_checked_on_a_quick_take() {
    let (s, p) = setup(Locking::Lease);
    s.poke(KEY, &record("other", 0, true, false));
    let (mut old, mut new) = (p.conn(), p.conn());
    p.lock(&mut old, Shared);
    p.lock(&mut new, Shared);
    assert_eq!(
        p.lock(&mut new, Reserved),
        Outcome::Granted,
        "taken from the other writer"
    );
    new.unlock(Unlocked).unwrap();
    assert_eq!(
        old.lock(Reserved, p.lease(), |_| Ok(false)).unwrap(),
        Outcome::Busy,
        "the quick take is checked for a view older than the take"
    );
    // A connection whose read began after that take is not checked.
    let mut later = p.conn();
    p.lock(&mut later, Shared);
    let got = later.lock(Reserved, p.lease(), |_| panic!("no check needed"));
    assert_eq!(got.unwrap(), Outcome::Granted);
}

#[test]
fn our_own_released_lease_is_taken_back_without_the_freshness_check() {
    let (s, p) = setup(Locking::Lease);
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    p.lock(&mut a, Exclusive);
    a.unlock(Unlocked).unwrap();
    p.lock(&mut a, Shared);
    s.clear_requests();
    let got = a
        .lock(Reserved, p.lease(), |_| {
            panic!("nobody wrote since our release")
        })
        .unwrap();
    assert_eq!(got, Outcome::Granted);
    assert_eq!(s.requests(), [format!("PUT_IF {KEY}")]);
}

#[test]
fn unlocking_to_none_from_exclusive_releases_the_lease() {
    let (s, p) = setup(Locking::Lease);
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    p.lock(&mut a, Exclusive);
    assert!(!stored(&s, DB).released);
    a.unlock(Unlocked).unwrap();
    assert!(stored(&s, DB).released);
    assert_eq!(a.level, Unlocked);
}

#[test]
fn unlocking_to_shared_from_reserved_releases_the_lease_too() {
    let (s, p) = setup(Locking::Lease);
    let mut a = p.conn();
    p.lock(&mut a, Shared);
    p.lock(&mut a, Reserved);
    a.unlock(Shared).unwrap();
    assert!(stored(&s, DB).released);
    assert_eq!(a.level, Shared);
}

#[test]
fn reserved_anywhere_sees_another_processes_live_lease() {
    let (s, p) = setup(Locking::Lease);
    let a = p.conn();
    assert!(!a.reserved_anywhere(p.lease()).unwrap());
    poke_live(&s, DB, "writer-elsewhere");
    assert!(a.reserved_anywhere(p.lease()).unwrap());
}

#[test]
fn reserved_anywhere_ignores_an_expired_or_released_lease() {
    let (s, p) = setup(Locking::Lease);
    let a = p.conn();
    s.poke(KEY, &record("crashed", now_ms() - PAST_GRACE, false, false));
    assert!(!a.reserved_anywhere(p.lease()).unwrap());
    s.poke(KEY, &record("done", now_ms() + 60_000, true, false));
    assert!(!a.reserved_anywhere(p.lease()).unwrap());
}

#[test]
fn reserved_anywhere_sees_this_processes_writer_without_a_request() {
    let (s, p) = setup(Locking::Lease);
    let (mut w, r) = (p.conn(), p.conn());
    p.lock(&mut w, Shared);
    p.lock(&mut w, Reserved);
    s.clear_requests();
    assert!(r.reserved_anywhere(p.lease()).unwrap());
    assert!(s.requests().is_empty());
}

#[test]
fn locking_none_never_touches_the_store() {
    let (s, p) = setup(Locking::None);
    let (mut a, mut b) = (p.conn(), p.conn());
    let no_lease = || -> Lease { panic!("locking=none makes no lease") };
    assert_eq!(
        a.lock(Shared, no_lease, |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
    assert_eq!(
        b.lock(Shared, no_lease, |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
    assert_eq!(
        a.lock(Reserved, no_lease, |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
    assert_eq!(
        b.lock(Reserved, no_lease, |_| Ok(true)).unwrap(),
        Outcome::Busy,
        "still enforced in the process"
    );
    b.unlock(Unlocked).unwrap();
    assert_eq!(
        a.lock(Exclusive, no_lease, |_| Ok(true)).unwrap(),
        Outcome::Granted
    );
    a.ensure_writer().unwrap();
    a.keep_reading().unwrap();
    assert!(b.reserved_anywhere(no_lease).unwrap());
    a.unlock(Unlocked).unwrap();
    assert!(!b.reserved_anywhere(no_lease).unwrap());
    assert!(s.requests().is_empty(), "{:?}", s.requests());
    assert!(s.keys().is_empty());
}

#[test]
fn ensure_writer_fails_once_another_process_took_the_lease() {
    let s = store();
    let probes = probed(&s);
    let table = LockTable::default();
    let mut a = Lock::new(table.entry(&Arc::from(DB)), Locking::Lease);
    let short = || lease(&s, DB, Duration::from_millis(30), &probes);
    a.lock(Shared, short, |_| Ok(true)).unwrap();
    a.lock(Exclusive, short, |_| Ok(true)).unwrap();
    a.ensure_writer().unwrap();
    poke_live(&s, DB, "usurper");
    std::thread::sleep(Duration::from_millis(12));
    let err = a.ensure_writer().unwrap_err();
    assert!(matches!(err, crate::error::Error::Lease(_)), "{err:?}");
    a.unlock(Unlocked).unwrap();
    assert_eq!(
        stored(&s, DB).owner,
        "usurper",
        "the unlock stored nothing over it"
    );
}
