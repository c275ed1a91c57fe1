//! The writer lease: take, renew, expiry takeover, loss, release, retried conditional PUTs,
//! races and the conditional-write probe.

use super::*;
use crate::error::Error;
use crate::lease::Acquire;
use crate::object_store::memory::Fault;
use std::sync::Barrier;

const DB: &str = "app.db";
const KEY: &str = "app.db.s3vfs-lease";

#[test]
fn an_absent_lease_is_taken_with_one_conditional_put() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, LONG, &p);
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
    assert_eq!(s.requests(), [format!("PUT_IF {KEY}")]);
    let r = stored(&s, DB);
    assert_eq!(r.owner, l.owner());
    assert!(r.live(now_ms()) && !r.pending);
    assert!(l.is_held());
}

#[test]
fn a_live_lease_of_another_owner_is_busy_and_names_its_holder() {
    let s = store();
    let p = probed(&s);
    let mut a = lease(&s, DB, LONG, &p);
    let mut b = lease(&s, DB, LONG, &p);
    a.acquire().unwrap();
    let before = s.peek(KEY);
    match b.acquire().unwrap() {
        Acquire::Busy(holder) => assert_eq!(holder.owner, a.owner()),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(!b.is_held());
    assert_eq!(s.peek(KEY), before, "a busy acquire stores nothing");
}

#[test]
fn an_expired_lease_is_taken_over_with_if_match_on_its_etag() {
    let s = store();
    let p = probed(&s);
    s.poke(KEY, &record("crashed", now_ms() - PAST_GRACE, false, false));
    let mut l = lease(&s, DB, LONG, &p);
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
    assert_eq!(
        s.requests(),
        [
            format!("PUT_IF {KEY}"),
            format!("GET {KEY}"),
            format!("PUT_IF {KEY}")
        ]
    );
    assert_eq!(stored(&s, DB).owner, l.owner());
}

#[test]
fn a_takeover_loses_to_a_renewal_between_its_read_and_its_put() {
    // The expired holder wakes up and renews right after we read its lease: our If-Match
    // on the ETag we read must fail, and the renewed holder keeps the lease.
    let s = store();
    let p = probed(&s);
    s.poke(KEY, &record("sleeper", now_ms() - PAST_GRACE, false, false));
    let hooked = Arc::new(Hooked::new(&s));
    hooked.after("GET", KEY, |s| {
        s.poke(KEY, &record("sleeper", now_ms() + 60_000, false, false))
    });
    let mut l = Lease::new(hooked, DB, LONG, p);
    match l.acquire().unwrap() {
        Acquire::Busy(holder) => assert_eq!(holder.owner, "sleeper"),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(!l.is_held());
    assert_eq!(stored(&s, DB).owner, "sleeper");
}

#[test]
fn a_released_lease_of_another_owner_is_taken_over() {
    let s = store();
    let p = probed(&s);
    let mut a = lease(&s, DB, LONG, &p);
    let mut b = lease(&s, DB, LONG, &p);
    a.acquire().unwrap();
    a.release().unwrap();
    assert!(stored(&s, DB).released);
    assert_eq!(b.acquire().unwrap(), Acquire::Taken);
    let r = stored(&s, DB);
    assert_eq!(r.owner, b.owner());
    assert!(!r.released);
}

#[test]
fn a_released_lease_is_taken_back_in_one_request() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, LONG, &p);
    l.acquire().unwrap();
    l.release().unwrap();
    s.clear_requests();
    assert_eq!(l.acquire().unwrap(), Acquire::Quick);
    assert_eq!(s.requests(), [format!("PUT_IF {KEY}")]);
    assert!(!stored(&s, DB).released);
}

#[test]
fn a_lease_another_writer_held_since_our_release_is_not_taken_back_quickly() {
    // Quick means "nobody wrote since our release": after another writer's turn, the
    // caller must check that what it read is still current.
    let s = store();
    let p = probed(&s);
    let mut a = lease(&s, DB, LONG, &p);
    let mut b = lease(&s, DB, LONG, &p);
    a.acquire().unwrap();
    a.release().unwrap();
    b.acquire().unwrap();
    b.release().unwrap();
    assert_eq!(a.acquire().unwrap(), Acquire::Taken);
}

#[test]
fn a_fresh_lease_is_not_renewed_before_a_third_of_its_term() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, LONG, &p);
    l.acquire().unwrap();
    s.clear_requests();
    for _ in 0..5 {
        l.ensure_held().unwrap();
    }
    assert!(s.requests().is_empty(), "{:?}", s.requests());
}

#[test]
fn the_lease_is_renewed_after_a_third_of_its_term() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, Duration::from_millis(90), &p);
    l.acquire().unwrap();
    let first = stored(&s, DB).expires_ms;
    std::thread::sleep(Duration::from_millis(35));
    s.clear_requests();
    l.ensure_held().unwrap();
    assert_eq!(s.requests(), [format!("PUT_IF {KEY}")]);
    assert!(
        stored(&s, DB).expires_ms > first,
        "the renewal extends the lease"
    );
    l.ensure_held().unwrap();
    assert_eq!(s.requests().len(), 1, "just renewed: no second request");
}

#[test]
fn a_lease_lost_to_another_owner_fails_on_renewal_and_is_never_written_again() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, Duration::from_millis(30), &p);
    l.acquire().unwrap();
    poke_live(&s, DB, "usurper");
    std::thread::sleep(Duration::from_millis(12));
    let err = l.ensure_held().unwrap_err();
    assert!(matches!(err, Error::Lease(_)), "{err:?}");
    assert!(!l.is_held());
    s.clear_requests();
    assert!(matches!(l.ensure_held(), Err(Error::Lease(_))));
    l.release().unwrap();
    assert!(s.requests().is_empty(), "{:?}", s.requests());
    assert_eq!(stored(&s, DB).owner, "usurper");
}

#[test]
fn releasing_a_lease_no_longer_ours_stores_nothing_over_the_new_holder() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, LONG, &p);
    l.acquire().unwrap();
    poke_live(&s, DB, "usurper");
    let theirs = s.peek(KEY);
    l.release().unwrap();
    assert_eq!(s.peek(KEY), theirs);
    assert!(
        matches!(l.acquire().unwrap(), Acquire::Busy(h) if h.owner == "usurper"),
        "a refused release leaves no quick way back"
    );
}

#[test]
fn a_retried_conditional_put_that_landed_is_recognised_as_ours() {
    let s = store();
    let p = probed(&s);
    s.fail_next("PUT_IF", KEY, Fault::AnswerLost);
    let mut l = lease(&s, DB, Duration::from_millis(60), &p);
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
    assert_eq!(
        s.requests(),
        [format!("PUT_IF {KEY}"), format!("GET {KEY}")]
    );
    // The ETag it learnt is the stored one: the renewal's If-Match holds.
    std::thread::sleep(Duration::from_millis(25));
    l.ensure_held().unwrap();
    assert_eq!(stored(&s, DB).owner, l.owner());
}

#[test]
fn a_takeover_whose_answer_was_lost_is_recognised_as_ours() {
    let s = store();
    let p = probed(&s);
    s.poke(KEY, &record("crashed", 0, false, false));
    let hooked = Arc::new(Hooked::new(&s));
    // The second conditional PUT (the takeover) lands but its answer is lost.
    hooked.after("GET", KEY, |s| {
        s.fail_next("PUT_IF", KEY, Fault::AnswerLost)
    });
    let mut l = Lease::new(hooked, DB, LONG, p);
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
    assert!(l.is_held());
    assert_eq!(stored(&s, DB).owner, l.owner());
}

#[test]
fn a_renewal_whose_answer_was_lost_fails_safe_and_the_lease_is_taken_back() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, Duration::from_millis(30), &p);
    l.acquire().unwrap();
    std::thread::sleep(Duration::from_millis(12));
    s.fail_next("PUT_IF", KEY, Fault::AnswerLost);
    assert!(matches!(l.ensure_held(), Err(Error::Lease(_))));
    assert_eq!(
        l.acquire().unwrap(),
        Acquire::Taken,
        "the stored lease is ours"
    );
    assert!(l.is_held());
}

#[test]
fn unreadable_lease_json_is_treated_as_expired() {
    let s = store();
    let p = probed(&s);
    s.poke(KEY, b"{not json");
    let mut l = lease(&s, DB, LONG, &p);
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
    assert_eq!(stored(&s, DB).owner, l.owner());
}

#[test]
fn of_racing_acquirers_exactly_one_wins() {
    for round in 0..10 {
        let s = store();
        let p = probed(&s);
        if round % 2 == 1 {
            // Half the rounds race for an expired lease instead of an absent one.
            s.poke(KEY, &record("crashed", 0, false, false));
        }
        let n = 6;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let mut l = lease(&s, DB, LONG, &p);
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let got = l.acquire().unwrap();
                    (got, l.owner().to_string())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results
            .iter()
            .filter(|(a, _)| *a == Acquire::Taken)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(stored(&s, DB).owner, winners[0].1);
        assert!(results
            .iter()
            .all(|(a, _)| matches!(a, Acquire::Taken | Acquire::Busy(_))));
    }
}

#[test]
fn the_probe_refuses_a_server_that_ignores_if_none_match() {
    let s = store();
    let probes = Arc::new(ConditionalWrites::default());
    let mut l = Lease::new(Arc::new(Hooked::ignoring_conditions(&s)), DB, LONG, probes);
    let err = l.acquire().unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("conditional writes") && m.contains("locking=none")),
        "{err}"
    );
    assert!(!l.is_held());
    assert!(
        s.keys().is_empty(),
        "no lease and no probe left: {:?}",
        s.keys()
    );
    // The verdict is remembered: no second probe.
    s.clear_requests();
    assert!(l.acquire().is_err());
    assert!(s.requests().is_empty(), "{:?}", s.requests());
}

#[test]
fn the_probe_runs_once_per_bucket() {
    let (a, b) = (store(), store());
    let probes = Arc::new(ConditionalWrites::default());
    for (s, db) in [(&a, "x.db"), (&a, "y.db"), (&b, "x.db"), (&a, "x.db")] {
        let mut l = lease(s, db, LONG, &probes);
        assert_eq!(l.acquire().unwrap(), Acquire::Taken);
        l.release().unwrap();
    }
    let probe_puts = |s: &MemoryStore| {
        s.requests()
            .iter()
            .filter(|r| r.starts_with("PUT_IF") && r.contains("-probe-"))
            .count()
    };
    assert_eq!(probe_puts(&a), 2, "{:?}", a.requests());
    assert_eq!(probe_puts(&b), 2, "{:?}", b.requests());
    for s in [&a, &b] {
        assert!(
            s.keys().iter().all(|k| !k.contains("-probe-")),
            "{:?}",
            s.keys()
        );
    }
}

#[test]
fn an_unavailable_store_during_acquire_is_an_error_and_holds_nothing() {
    let s = store();
    let p = probed(&s);
    s.fail_next("PUT_IF", KEY, Fault::Unavailable);
    let mut l = lease(&s, DB, LONG, &p);
    let err = l.acquire().unwrap_err();
    assert!(matches!(err, Error::S3 { status: 503, .. }), "{err:?}");
    assert!(!l.is_held());
    assert!(s.peek(KEY).is_none());
    assert!(matches!(l.ensure_held(), Err(Error::Lease(_))));
    assert_eq!(
        l.acquire().unwrap(),
        Acquire::Taken,
        "a later attempt works"
    );
}

#[test]
fn a_reset_during_a_takeover_is_an_error_and_holds_nothing() {
    let s = store();
    let p = probed(&s);
    let expired = record("crashed", 0, false, false);
    s.poke(KEY, &expired);
    let hooked = Arc::new(Hooked::new(&s));
    hooked.after("GET", KEY, |s| s.fail_next("PUT_IF", KEY, Fault::Reset));
    let mut l = Lease::new(hooked, DB, LONG, p);
    let err = l.acquire().unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(!l.is_held());
    assert_eq!(s.peek(KEY).unwrap(), expired, "the old lease is untouched");
    assert_eq!(l.acquire().unwrap(), Acquire::Taken);
}

#[test]
fn set_pending_is_stored_and_release_clears_it() {
    let s = store();
    let p = probed(&s);
    let mut l = lease(&s, DB, LONG, &p);
    let other = lease(&s, DB, LONG, &p);
    l.acquire().unwrap();
    l.set_pending().unwrap();
    assert!(stored(&s, DB).pending);
    assert_eq!(other.pending_writer().unwrap().unwrap().owner, l.owner());
    assert_eq!(l.pending_writer().unwrap(), None, "never our own");
    l.release().unwrap();
    let r = stored(&s, DB);
    assert!(r.released && !r.pending);
    assert_eq!(other.pending_writer().unwrap(), None);
}
