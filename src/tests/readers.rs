//! `locking=strict`: the reader-mark / pending-writer handshake.

use super::*;
use crate::codes::Locking;
use crate::error::Error;
use crate::layout::marks_dir;
use crate::lock::{Lock, LockTable, Outcome};
use crate::readers::{live_others, Mark};
use LockLevel::{Exclusive, None as Unlocked, Pending, Reserved, Shared};

const DB: &str = "app.db";
const KEY: &str = "app.db.s3vfs-lease";
const MARKS: &str = "app.db.s3vfs-readers/";

struct Process {
    table: LockTable,
    store: Arc<MemoryStore>,
    probes: Arc<ConditionalWrites>,
}

impl Process {
    fn new(store: &Arc<MemoryStore>, probes: &Arc<ConditionalWrites>) -> Process {
        Process {
            table: LockTable::default(),
            store: store.clone(),
            probes: probes.clone(),
        }
    }
    fn conn(&self) -> Lock {
        Lock::new(self.table.entry(&Arc::from(DB)), Locking::Strict)
    }
    fn lock(&self, c: &mut Lock, level: LockLevel) -> Outcome {
        c.lock(
            level,
            || lease(&self.store, DB, LONG, &self.probes),
            |_| Ok(true),
        )
        .unwrap()
    }
}

fn marks(s: &MemoryStore) -> Vec<String> {
    s.keys()
        .into_iter()
        .filter(|k| k.starts_with(MARKS))
        .collect()
}

fn two_processes() -> (Arc<MemoryStore>, Process, Process) {
    let s = store();
    let p = probed(&s);
    (s.clone(), Process::new(&s, &p), Process::new(&s, &p))
}

#[test]
fn a_reader_stores_its_mark_before_it_reads_the_lease() {
    let (s, reader, _) = two_processes();
    let mut r = reader.conn();
    assert_eq!(reader.lock(&mut r, Shared), Outcome::Granted);
    let log = s.requests();
    let mark = first(&log, |q| q.starts_with(&format!("PUT {MARKS}")));
    let read = first(&log, |q| q == format!("GET {KEY}"));
    assert!(mark < read, "{log:?}");
    assert_eq!(marks(&s).len(), 1);
}

#[test]
fn a_second_connection_of_a_reading_process_stores_no_second_mark() {
    let (s, reader, _) = two_processes();
    let (mut a, mut b) = (reader.conn(), reader.conn());
    reader.lock(&mut a, Shared);
    s.clear_requests();
    reader.lock(&mut b, Shared);
    assert!(s.requests().is_empty(), "{:?}", s.requests());
    a.unlock(Unlocked).unwrap();
    assert_eq!(marks(&s).len(), 1, "still reading in b");
    b.unlock(Unlocked).unwrap();
    assert!(marks(&s).is_empty(), "the last reader removes the mark");
}

#[test]
fn a_writer_at_pending_flags_its_lease_then_counts_other_readers() {
    let (s, writer, reader) = two_processes();
    let mut r = reader.conn();
    reader.lock(&mut r, Shared);
    let mut w = writer.conn();
    writer.lock(&mut w, Shared);
    writer.lock(&mut w, Reserved);
    s.clear_requests();
    assert_eq!(writer.lock(&mut w, Exclusive), Outcome::ReadersElsewhere(1));
    assert_eq!(w.level, Pending);
    assert!(stored(&s, DB).pending);
    let log = s.requests();
    let flag = first(&log, |q| q == format!("PUT_IF {KEY}"));
    let count = first(&log, |q| q == format!("LIST {MARKS}"));
    assert!(flag < count, "{log:?}");
}

#[test]
fn the_writer_proceeds_once_the_other_readers_are_gone() {
    let (s, writer, reader) = two_processes();
    let mut r = reader.conn();
    reader.lock(&mut r, Shared);
    let mut w = writer.conn();
    writer.lock(&mut w, Shared);
    writer.lock(&mut w, Reserved);
    assert_eq!(writer.lock(&mut w, Exclusive), Outcome::ReadersElsewhere(1));
    r.unlock(Unlocked).unwrap();
    assert_eq!(writer.lock(&mut w, Exclusive), Outcome::Granted);
    w.unlock(Unlocked).unwrap();
    let lease = stored(&s, DB);
    assert!(lease.released && !lease.pending);
    assert!(marks(&s).is_empty());
}

#[test]
fn a_reader_seeing_a_pending_writer_backs_off_and_removes_its_mark() {
    let (s, writer, reader) = two_processes();
    let mut w = writer.conn();
    writer.lock(&mut w, Shared);
    writer.lock(&mut w, Exclusive);
    assert!(stored(&s, DB).pending);
    let writers_own = marks(&s);
    s.clear_requests();
    let mut r = reader.conn();
    match reader.lock(&mut r, Shared) {
        Outcome::BusyElsewhere(h) => assert!(h.pending),
        other => panic!("expected BusyElsewhere, got {other:?}"),
    }
    assert_eq!(r.level, Unlocked);
    let log = s.requests();
    let put = first(&log, |q| q.starts_with(&format!("PUT {MARKS}")));
    let reader_mark = log[put].trim_start_matches("PUT ");
    assert!(log.contains(&format!("DELETE {reader_mark}")), "{log:?}");
    assert_eq!(marks(&s), writers_own, "only the writer's own mark is left");
    w.unlock(Unlocked).unwrap();
    assert_eq!(reader.lock(&mut r, Shared), Outcome::Granted);
}

#[test]
fn a_writer_not_yet_pending_lets_readers_in() {
    let (_, writer, reader) = two_processes();
    let mut w = writer.conn();
    writer.lock(&mut w, Shared);
    writer.lock(&mut w, Reserved);
    let mut r = reader.conn();
    assert_eq!(reader.lock(&mut r, Shared), Outcome::Granted);
}

#[test]
fn expired_marks_do_not_count_and_are_deleted_by_the_writer() {
    let s = store();
    let dir = marks_dir(DB);
    let crashed = format!("{dir}{:013}-crashed", now_ms() - 1);
    let live = format!("{dir}{:013}-alive", now_ms() + 60_000);
    let own = format!("{dir}{:013}-me", now_ms() + 60_000);
    for k in [&crashed, &live, &own] {
        s.poke(k, b"{}");
    }
    assert_eq!(live_others(s.as_ref(), DB, "me").unwrap(), 1);
    assert_eq!(s.keys(), [live.clone(), own.clone()]);
    assert_eq!(s.count("DELETE_MANY"), 1);
}

#[test]
fn a_reader_mark_is_kept_alive_after_a_third_of_its_term() {
    let s = store();
    let mut m = Mark::register(s.clone(), DB, "me", Duration::from_millis(90)).unwrap();
    let before = marks(&s);
    s.clear_requests();
    m.keep_alive().unwrap();
    assert!(s.requests().is_empty(), "too early to renew");
    std::thread::sleep(Duration::from_millis(35));
    m.keep_alive().unwrap();
    let log = s.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].starts_with(&format!("PUT {MARKS}")) && log[1] == format!("DELETE {}", before[0])
    );
    let after = marks(&s);
    assert_eq!(after.len(), 1);
    assert!(after[0] > before[0], "the new mark expires later");
    m.remove().unwrap();
    assert!(marks(&s).is_empty());
}

#[test]
fn a_read_transaction_that_outlived_its_mark_fails() {
    let s = store();
    let mut m = Mark::register(s.clone(), DB, "me", Duration::from_millis(20)).unwrap();
    std::thread::sleep(Duration::from_millis(25));
    s.clear_requests();
    assert!(matches!(m.keep_alive(), Err(Error::Lease(_))));
    assert!(s.requests().is_empty(), "no renewal of a lapsed mark");
}

#[test]
fn reads_through_a_strict_lock_fail_once_the_mark_lapsed() {
    let s = store();
    let probes = probed(&s);
    let table = LockTable::default();
    let mut r = Lock::new(table.entry(&Arc::from(DB)), Locking::Strict);
    let short = || lease(&s, DB, Duration::from_millis(20), &probes);
    r.lock(Shared, short, |_| Ok(true)).unwrap();
    r.keep_reading().unwrap();
    std::thread::sleep(Duration::from_millis(25));
    assert!(matches!(r.keep_reading(), Err(Error::Lease(_))));
}

#[test]
fn a_writer_that_lost_its_lease_cannot_flag_pending() {
    let (s, writer, _) = two_processes();
    let mut w = writer.conn();
    writer.lock(&mut w, Shared);
    writer.lock(&mut w, Reserved);
    poke_live(&s, DB, "usurper");
    let err = w
        .lock(Exclusive, || unreachable!(), |_| Ok(true))
        .unwrap_err();
    assert!(matches!(err, Error::Lease(_)), "{err:?}");
    assert_ne!(w.level, Exclusive);
    assert_eq!(stored(&s, DB).owner, "usurper");
}
