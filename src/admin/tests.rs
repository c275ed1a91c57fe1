//! Unit tests of whole-database operations, against the in-memory store.

use super::*;
use crate::config::Config;
use crate::header::SQLITE_MAGIC;
use crate::object_store::memory::MemoryStore;

fn config(locking: &str) -> Arc<Config> {
    let uri = |n: &str| match n {
        "bucket" => Some("b".to_string()),
        "endpoint" => Some("http://127.0.0.1:9".to_string()),
        "locking" => Some(locking.to_string()),
        _ => None,
    };
    let env = |n: &str| match n {
        "AWS_ACCESS_KEY_ID" => Some("a".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
        _ => None,
    };
    Arc::new(Config::resolve(&uri, &env).unwrap())
}

fn at(store: &Arc<MemoryStore>, key: &str) -> Location {
    Location {
        store: store.clone(),
        cfg: config("lease"),
        key: key.to_string(),
    }
}

/// A header block of `len` bytes for a database of `pages` pages of 4096 bytes.
fn block0(len: usize, pages: u32) -> Vec<u8> {
    let mut h = vec![0u8; len];
    h[..16].copy_from_slice(SQLITE_MAGIC);
    h[16..18].copy_from_slice(&4096u16.to_be_bytes());
    h[18] = 1;
    h[19] = 1;
    h[24..28].copy_from_slice(&1u32.to_be_bytes());
    h[28..32].copy_from_slice(&pages.to_be_bytes());
    h[92..96].copy_from_slice(&1u32.to_be_bytes());
    h
}

/// A database of `blocks` 4096-byte blocks at `name`.
fn put_db(store: &MemoryStore, name: &str, blocks: u64) {
    store.poke(&block_key(name, 0), &block0(4096, blocks as u32));
    for i in 1..blocks {
        store.poke(&block_key(name, i), &[1; 4096]);
    }
}

fn lease_json(expires_ms: u64, released: bool) -> Vec<u8> {
    serde_json::to_vec(&LeaseRecord {
        owner: "w1".into(),
        host: "h".into(),
        pid: 42,
        expires_ms,
        released,
        pending: false,
        term_ms: 60_000,
    })
    .unwrap()
}

#[test]
fn discovery_counts_only_exact_block_keys_and_folds_journals_in() {
    let store = MemoryStore::default();
    put_db(&store, "apps/a.db", 3);
    store.poke("apps/a.db-journal/0000000000", &[0; 512]);
    store.poke("apps/a.db-wal/0000000000", &[0; 4096]);
    store.poke("apps/a.db-wal/0000000001", &[0; 64]);
    put_db(&store, "apps/a.db/nested.db", 1);
    store.poke("apps/a.db/123", b"x");
    store.poke("apps/a.db/photos/cat.jpg", b"x");
    store.poke("apps/notes.txt", b"x");
    store.poke("apps/loose/0000000001", b"no block 0");
    store.poke("apps/long/00000000000", b"11 digits");
    store.poke("apps/x.db/0000000000", b"not sqlite");
    store.poke("0000000000", b"no name");
    let found = discover(&store, "apps/", 4).unwrap();
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["apps/a.db", "apps/a.db/nested.db", "apps/x.db"]);
    let a = &found[0];
    assert_eq!(
        (a.size, a.block_size, a.blocks, a.journal),
        (3 * 4096, 4096, 3, true)
    );
    assert_eq!(a.header.as_ref().map(|h| h.page_size), Some(4096));
    assert!(!found[1].journal && found[1].single_block());
    assert_eq!(found[2].header, None);
    assert!(discover(&store, "nothing/", 4).unwrap().is_empty());
}

#[test]
fn a_journal_alone_is_listed_and_a_journal_of_a_database_is_not() {
    let store = MemoryStore::default();
    put_db(&store, "x-journal", 1);
    let found = discover(&store, "", 4).unwrap();
    assert_eq!(found.len(), 1, "without x, x-journal is all there is");
    put_db(&store, "x", 2);
    let found = discover(&store, "", 4).unwrap();
    assert_eq!(found.iter().map(|f| &f.name[..]).collect::<Vec<_>>(), ["x"]);
    assert!(found[0].journal);
}

#[test]
fn removal_keeps_everything_that_is_not_the_databases() {
    let store = Arc::new(MemoryStore::default());
    put_db(&store, "app", 3);
    store.poke("app-journal/0000000000", &[0xd9; 512]);
    store.poke("app-journal/0000000001", &[1; 512]);
    store.poke("app-wal/0000000000", &[2; 4096]);
    store.poke("app-wal/0000000001", &[2; 64]);
    store.poke(&format!("{}1700000000000-r1", marks_dir("app")), b"{}");
    store.poke("app.s3vfs-lease", &lease_json(1, true));
    let keep = [
        "app/nested.db/0000000000",
        "app/photos/cat.jpg",
        "app/123",
        "app/0000000000/0000000000",
        "app-journal/notes.txt",
        "app-wal/0000000002/x",
        "app.s3vfs-readers/readme.txt",
        "app.dbx/0000000000",
        "apple/0000000000",
    ];
    for k in keep {
        store.poke(k, b"keep");
    }
    let plan = plan_removal(&at(&store, "app")).unwrap();
    assert_eq!(
        (
            plan.blocks.len(),
            plan.journal.len(),
            plan.wal.len(),
            plan.marks.len()
        ),
        (3, 2, 2, 1)
    );
    assert!(plan.lease);
    assert_eq!(plan.others, 4);
    assert_eq!(plan.objects(), 9);
    assert_eq!(plan.bytes(), 3 * 4096);

    store.clear_requests();
    remove(&at(&store, "app")).unwrap();
    assert_eq!(store.keys(), {
        let mut k = keep.map(String::from).to_vec();
        k.sort();
        k
    });
    let deletes: Vec<String> = store
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .filter(|r| !r.contains("probe"))
        .collect();
    assert_eq!(
        deletes,
        [
            "DELETE app-journal/0000000000",
            "DELETE app-wal/0000000000",
            "DELETE app/0000000000",
            "DELETE_MANY app-journal/0000000001,app-wal/0000000001,app/0000000001,app/0000000002,app.s3vfs-readers/1700000000000-r1",
            "DELETE app.s3vfs-lease",
        ]
    );
}

#[test]
fn a_name_without_a_database_is_refused_and_nothing_is_deleted() {
    let store = Arc::new(MemoryStore::default());
    for k in [
        "app/photos/cat.jpg",
        "app/123",
        "app/0000000001",
        "app.s3vfs-readers/1-x",
    ] {
        store.poke(k, b"x");
    }
    let before = store.keys();
    for result in [
        plan_removal(&at(&store, "app")).map(|_| ()),
        remove(&at(&store, "app")).map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(e.to_string().contains("no database at s3://b/app"), "{e}");
    }
    assert_eq!(store.keys(), before);
    assert_eq!(store.count("DELETE"), 0);
    assert_eq!(store.count("PUT"), 0, "not even a lease was taken");
}

#[test]
fn a_journal_or_a_lease_alone_is_still_removable() {
    let store = Arc::new(MemoryStore::default());
    store.poke("app-journal/0000000003", b"j");
    assert_eq!(remove(&at(&store, "app")).unwrap().journal.len(), 1);
    store.poke("app.s3vfs-lease", &lease_json(1, true));
    assert!(remove(&at(&store, "app")).unwrap().lease);
    assert!(store.keys().is_empty());
}

#[test]
fn deletes_go_in_batches_of_a_thousand() {
    let plan = RemovalPlan {
        blocks: (0..2500)
            .map(|i| ObjectInfo {
                key: block_key("d", i),
                size: 1,
            })
            .collect(),
        lease_key: lease_key("d"),
        ..RemovalPlan::default()
    };
    let sizes: Vec<usize> = plan.steps().iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 1000, 1000, 499]);
    assert_eq!(plan.steps()[0], ["d/0000000000"]);
}

#[test]
fn a_live_lease_refuses_removal() {
    let store = Arc::new(MemoryStore::default());
    put_db(&store, "app", 1);
    store.poke(
        "app.s3vfs-lease",
        &lease_json(lease::now_ms() + 60_000, false),
    );
    let e = remove(&at(&store, "app")).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert!(e.to_string().contains("a writer holds its lease") && e.to_string().contains("pid 42"));
    assert_eq!(store.keys().len(), 2);
}

#[test]
fn describe_reads_the_header_journal_and_lease() {
    let store = Arc::new(MemoryStore::default());
    let db = at(&store, "app");
    assert!(matches!(describe(&db), Err(Error::NotFound(_))));
    put_db(&store, "app", 3);
    let info = describe(&db).unwrap();
    assert_eq!(
        (info.size, info.block_size, info.blocks()),
        (3 * 4096, 4096, 3)
    );
    assert_eq!(
        (info.journal, info.lease.clone()),
        (JournalState::None, LeaseState::None)
    );
    store.poke("app-journal/0000000000", &[0; 512]);
    assert_eq!(describe(&db).unwrap().journal, JournalState::NotHot);
    store.poke("app-journal/0000000000", &crate::header::JOURNAL_MAGIC);
    assert_eq!(describe(&db).unwrap().journal, JournalState::Hot);
    store.poke("app.s3vfs-lease", &lease_json(5, false));
    assert!(matches!(
        describe(&db).unwrap().lease,
        LeaseState::Expired(_)
    ));
    store.poke("app.s3vfs-lease", &lease_json(5, true));
    assert!(matches!(
        describe(&db).unwrap().lease,
        LeaseState::Released(_)
    ));
    store.poke(
        "app.s3vfs-lease",
        &lease_json(lease::now_ms() + 60_000, false),
    );
    assert!(matches!(describe(&db).unwrap().lease, LeaseState::Held(r) if r.pid == 42));
    store.poke("app/0000000000", b"not sqlite");
    assert!(matches!(describe(&db), Err(Error::Format(_))));
}

#[test]
fn breaking_a_lease_releases_only_the_version_that_was_confirmed() {
    let store = Arc::new(MemoryStore::default());
    let db = at(&store, "app");
    assert!(matches!(break_lease(&db, "w1"), Err(Error::NotFound(_))));
    // Junk from a clock far ahead: held for ever unless broken.
    store.poke("app.s3vfs-lease", &lease_json(u64::MAX / 2, false));
    assert!(matches!(break_lease(&db, "w1").unwrap(), Broken::Broken(r) if r.pid == 42));
    let (after, _) = read_lease(&db).unwrap().unwrap();
    assert!(after.released && !after.live(lease::now_ms()));
    assert_eq!(after.owner, "broken:w1");
    assert!(matches!(
        break_lease(&db, "w1").unwrap(),
        Broken::AlreadyFree(_)
    ));

    // Another writer took it after the user confirmed w1: refused, untouched.
    let other = serde_json::to_vec(&LeaseRecord {
        owner: "w2".into(),
        ..serde_json::from_slice::<LeaseRecord>(&lease_json(lease::now_ms() + 60_000, false))
            .unwrap()
    })
    .unwrap();
    store.poke("app.s3vfs-lease", &other);
    assert!(matches!(break_lease(&db, "w1"), Err(Error::Refused(_))));
    assert_eq!(store.peek("app.s3vfs-lease").unwrap(), other);
}

#[test]
fn a_lease_renewed_during_the_break_is_not_clobbered() {
    use crate::object_store::memory::Fault;
    let store = Arc::new(MemoryStore::default());
    let db = at(&store, "app");
    store.poke(
        "app.s3vfs-lease",
        &lease_json(lease::now_ms() + 60_000, false),
    );
    // The holder renews between our read and our conditional PUT.
    let renewed = lease_json(lease::now_ms() + 90_000, false);
    store.fail_next(
        "PUT_IF",
        "app.s3vfs-lease",
        Fault::Delay(std::time::Duration::from_millis(400)),
    );
    let renewer = {
        let (store, renewed) = (store.clone(), renewed.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            store.poke("app.s3vfs-lease", &renewed);
        })
    };
    let e = break_lease(&db, "w1").unwrap_err();
    renewer.join().unwrap();
    assert!(
        matches!(e, Error::Refused(_)) && e.to_string().contains("changed while"),
        "{e}"
    );
    assert_eq!(store.peek("app.s3vfs-lease").unwrap(), renewed);
}

#[test]
fn removal_in_a_versioned_bucket_keeps_every_block_version_and_no_bookkeeping() {
    let store = Arc::new(MemoryStore::default());
    store.enable_versioning();
    for _ in 0..3 {
        put_db(&store, "app", 2);
        store.poke("app-journal/0000000000", &[0xd9; 512]);
        store.remove("app-journal/0000000000");
        store.poke("app.s3vfs-lease", &lease_json(1, true));
    }
    let blocks_before = store.versions("app/");
    let done = remove(&at(&store, "app")).unwrap();
    let swept = done.swept.expect("a versioned bucket is cleaned");
    assert!(swept.total() >= 6, "{swept:?}");
    // Each block: its three versions, and the delete marker of `rm` on top.
    let blocks_after = store.versions("app/");
    for v in &blocks_before {
        assert!(
            blocks_after.iter().any(|a| a.version_id == v.version_id),
            "{v:?}"
        );
    }
    assert_eq!(blocks_after.len(), blocks_before.len() + 2);
    assert!(blocks_after
        .iter()
        .filter(|v| v.latest)
        .all(|v| v.delete_marker));
    // Nothing of the lease, journal or probe: not even a delete marker.
    for prefix in ["app.s3vfs-lease", "app-journal/", "app.s3vfs-readers/"] {
        assert!(
            store.versions(prefix).is_empty(),
            "{prefix}: {:?}",
            store.versions(prefix)
        );
    }
    assert!(store.visible_changes().is_empty());
}

#[test]
fn removal_in_an_unversioned_bucket_asks_once_and_cleans_nothing() {
    let store = Arc::new(MemoryStore::default());
    put_db(&store, "app", 2);
    assert_eq!(remove(&at(&store, "app")).unwrap().swept, None);
    assert_eq!(store.count("VERSIONING"), 1);
    assert_eq!(
        store.count("LIST_VERSIONS") + store.count("DELETE_VERSIONS"),
        0
    );
}
