//! Unit tests of whole-database transfers, against the in-memory store and local files.

use super::*;
use local::{create_temp_beside, O_NOFOLLOW};

fn header(page: u16, pages: u32) -> Vec<u8> {
    let mut h = vec![0u8; 100];
    h[..16].copy_from_slice(b"SQLite format 3\0");
    h[16..18].copy_from_slice(&page.to_be_bytes());
    h[24..28].copy_from_slice(&5u32.to_be_bytes());
    h[28..32].copy_from_slice(&pages.to_be_bytes());
    h[92..96].copy_from_slice(&5u32.to_be_bytes());
    h
}

#[test]
fn accepts_only_consistent_sqlite_files() {
    assert!(check_sqlite_file(&header(4096, 3), 3 * 4096).is_ok());
    assert!(check_sqlite_file(&[], 0).unwrap_err().contains("empty"));
    assert!(check_sqlite_file(&header(4096, 3), 2 * 4096)
        .unwrap_err()
        .contains("truncated"));
    assert!(check_sqlite_file(&header(4096, 3), 3 * 4096 + 7)
        .unwrap_err()
        .contains("whole number"));
    assert!(check_sqlite_file(&header(1000, 3), 3000)
        .unwrap_err()
        .contains("power of two"));
    let mut junk = header(4096, 3);
    junk[0] = b'X';
    assert!(check_sqlite_file(&junk, 3 * 4096)
        .unwrap_err()
        .contains("does not start"));
}

#[test]
fn parts_are_whole_blocks_and_stay_under_the_part_limit() {
    assert_eq!(part_size(50 << 20, 4096), 8 << 20);
    let huge = 200u64 << 30;
    let p = part_size(huge, 4096);
    assert_eq!(p % 4096, 0);
    assert!(huge.div_ceil(p) < 10_000);
    assert_eq!(part_size(1 << 20, 4097) % 4097, 0);
}

/// A location on an endpoint nothing listens on: any request would fail with
/// `Error::Transport`, so a refusal proves nothing was sent.
fn unreachable(key: &str) -> Location {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
        _ => None,
    };
    let uri = |k: &str| match k {
        "bucket" => Some("b".to_string()),
        "endpoint" => Some("http://127.0.0.1:9".to_string()),
        _ => None,
    };
    Location::s3(Arc::new(Config::resolve(&uri, &env).unwrap()), key)
}

#[test]
fn local_files_are_checked_before_any_request() {
    let dir = std::env::temp_dir().join(format!("s3vfs-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = unreachable("x.db");
    let refused = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        match import_file(&path, &db, false, &()) {
            Err(Error::Refused(msg)) => msg,
            other => panic!("{name}: {other:?}"),
        }
    };
    assert!(refused("a.csv", b"id,body\n1,x\n").contains("not a SQLite database"));
    let mut wal = header(4096, 1);
    wal.resize(4096, 0);
    wal[18] = 2;
    wal[19] = 2;
    assert!(refused("wal.db", &wal).contains("WAL mode"));
    let mut plain = header(4096, 1);
    plain.resize(4096, 0);
    std::fs::write(dir.join("hot.db-journal"), [0xd9u8; 28]).unwrap();
    assert!(refused("hot.db", &plain).contains("unfinished transaction"));
    assert!(matches!(
        import_file(&dir.join("missing.db"), &db, false, &()),
        Err(Error::NotFound(_))
    ));
    // Export: an existing file without `force`, and a journal beside the target.
    std::fs::write(dir.join("old.db"), b"keep").unwrap();
    let e = export_file(&db, &dir.join("old.db"), false, &()).unwrap_err();
    assert!(
        matches!(&e, Error::Refused(m) if m.contains("--force")),
        "{e}"
    );
    let e = export_file(&db, &dir.join("hot.db"), true, &()).unwrap_err();
    assert!(
        matches!(&e, Error::Refused(m) if m.contains("hot.db-journal exists")),
        "{e}"
    );
    assert_eq!(std::fs::read(dir.join("old.db")).unwrap(), b"keep");
    std::fs::remove_dir_all(dir).ok();
}

use crate::lease::{self, LeaseRecord};
use crate::object_store::memory::{Fault, MemoryStore};

/// A location in a memory store, with this block size (and `locking` when given).
fn in_memory(
    store: &Arc<MemoryStore>,
    key: &str,
    block_size: u64,
    locking: Option<&str>,
) -> Location {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
        _ => None,
    };
    let uri = |k: &str| match k {
        "bucket" => Some("b".to_string()),
        "endpoint" => Some("http://127.0.0.1:9".to_string()),
        "block_size" => Some(block_size.to_string()),
        "locking" => locking.map(str::to_string),
        _ => None,
    };
    Location {
        store: store.clone(),
        cfg: Arc::new(Config::resolve(&uri, &env).unwrap()),
        key: key.to_string(),
    }
}

/// A consistent database of `pages` 4096-byte pages, each filled with its own byte.
fn database(pages: u32, fill: u8) -> Vec<u8> {
    let mut db = vec![0u8; pages as usize * 4096];
    for (i, page) in db.chunks_mut(4096).enumerate() {
        page.fill(fill.wrapping_add(i as u8));
    }
    db[..100].copy_from_slice(&header(4096, pages));
    db
}

/// The blocks of `name` concatenated, as sqlite-s3vfs reads a database.
fn stored(store: &MemoryStore, name: &str) -> Vec<u8> {
    store
        .keys()
        .iter()
        .filter(|k| crate::layout::block_of(name, k).is_some())
        .flat_map(|k| store.peek(k).unwrap())
        .collect()
}

/// The requests that wrote or deleted under `prefix`, in order (the lease aside).
fn writes_under(store: &MemoryStore, prefix: &str) -> Vec<String> {
    store
        .requests()
        .into_iter()
        .filter(|r| {
            (r.starts_with("PUT ") || r.starts_with("DELETE"))
                && r.contains(prefix)
                && !r.contains(".s3vfs-lease")
        })
        .collect()
}

#[test]
fn an_interrupted_fresh_copy_leaves_no_block_0_and_block_0_is_stored_last() {
    let store = Arc::new(MemoryStore::default());
    store.poke("src.sqlite", &database(6, 1));
    let src = in_memory(&store, "src.sqlite", 4096, None);
    let db = in_memory(&store, "x.db", 4096, None);
    store.fail_next("PUT", "x.db/0000000003", Fault::Unavailable);
    assert!(deserialize(&src, &db, false).is_err());
    assert!(
        store.peek("x.db/0000000000").is_none(),
        "a half copy must not look like a database: {:?}",
        store.requests()
    );
    // The leftover blocks are named for what they are, and 'replace' finishes the job.
    let e = deserialize(&src, &db, false).unwrap_err().to_string();
    assert!(e.contains("no block 0") && e.contains("'replace'"), "{e}");
    store.clear_requests();
    assert_eq!(deserialize(&src, &db, true).unwrap(), 6);
    assert_eq!(stored(&store, "x.db"), database(6, 1));
    let puts: Vec<String> = writes_under(&store, "x.db/")
        .into_iter()
        .filter(|r| r.starts_with("PUT "))
        .collect();
    assert_eq!(puts.len(), 6, "{puts:?}");
    assert_eq!(puts.last().unwrap(), "PUT x.db/0000000000", "{puts:?}");

    // The same for a local file imported by the command.
    let dir = std::env::temp_dir().join(format!("s3vfs-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("local.db"), database(4, 9)).unwrap();
    let y = in_memory(&store, "y.db", 4096, None);
    store.fail_next("PUT", "y.db/0000000002", Fault::Unavailable);
    assert!(import_file(&dir.join("local.db"), &y, false, &()).is_err());
    assert!(store.peek("y.db/0000000000").is_none());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn replacing_deletes_the_old_block_0_first_and_stores_the_new_one_last() {
    let store = Arc::new(MemoryStore::default());
    store.poke("old.sqlite", &database(5, 1));
    store.poke("new.sqlite", &database(3, 7));
    let db = in_memory(&store, "x.db", 4096, None);
    deserialize(&in_memory(&store, "old.sqlite", 4096, None), &db, false).unwrap();
    store.poke("x.db-journal/0000000000", &[0xd9; 512]);
    let new = in_memory(&store, "new.sqlite", 4096, None);

    // Interrupted: the old database is no longer one, the new one not yet.
    store.clear_requests();
    store.fail_next("PUT", "x.db/0000000002", Fault::Unavailable);
    assert!(deserialize(&new, &db, true).is_err());
    assert!(store.peek("x.db/0000000000").is_none());
    let writes = writes_under(&store, "x.db");
    assert_eq!(writes[0], "DELETE x.db/0000000000", "{writes:?}");

    // Whole again (the interrupted copy is finished by 'replace'), then replaced.
    deserialize(&in_memory(&store, "old.sqlite", 4096, None), &db, true).unwrap();
    assert_eq!(stored(&store, "x.db"), database(5, 1));
    store.clear_requests();
    assert_eq!(deserialize(&new, &db, true).unwrap(), 3);
    let writes = writes_under(&store, "x.db");
    assert_eq!(
        writes.first().unwrap(),
        "DELETE x.db/0000000000",
        "{writes:?}"
    );
    assert_eq!(writes.last().unwrap(), "PUT x.db/0000000000", "{writes:?}");
    assert_eq!(stored(&store, "x.db"), database(3, 7));
    assert!(store.keys().iter().all(|k| !k.starts_with("x.db-journal/")));
}

#[test]
fn a_live_writer_lease_refuses_deserialize_and_import() {
    let store = Arc::new(MemoryStore::default());
    store.poke("src.sqlite", &database(2, 3));
    let src = in_memory(&store, "src.sqlite", 4096, None);
    let db = in_memory(&store, "x.db", 4096, None);
    let holder = LeaseRecord {
        owner: "someone-else".into(),
        host: "writer-host".into(),
        pid: 4242,
        expires_ms: lease::now_ms() + 60_000,
        released: false,
        pending: false,
        term_ms: 60_000,
    };
    store.poke("x.db.s3vfs-lease", &serde_json::to_vec(&holder).unwrap());
    store.clear_requests();
    let e = deserialize(&src, &db, true).unwrap_err();
    assert!(
        matches!(&e, Error::Busy(m) if m.contains("holds its lease") && m.contains("pid 4242")),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("s3vfs-lease-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("local.db"), database(2, 3)).unwrap();
    let e = import_file(&dir.join("local.db"), &db, true, &()).unwrap_err();
    assert!(
        matches!(&e, Error::Busy(m) if m.contains("pid 4242")),
        "{e}"
    );
    std::fs::remove_dir_all(dir).ok();
    assert_eq!(writes_under(&store, "x.db/"), Vec::<String>::new());

    // Once the writer is done, the copy takes the lease, and gives it back.
    store.remove("x.db.s3vfs-lease");
    store.clear_requests();
    assert_eq!(deserialize(&src, &db, false).unwrap(), 2);
    let reqs = store.requests();
    let taken = reqs
        .iter()
        .position(|r| r == "PUT_IF x.db.s3vfs-lease")
        .unwrap();
    let first_write = reqs
        .iter()
        .position(|r| r.starts_with("PUT x.db/"))
        .unwrap();
    assert!(taken < first_write, "{reqs:?}");
    // It created the lease object, so it leaves none behind.
    assert_eq!(store.peek("x.db.s3vfs-lease"), None, "{reqs:?}");
    // A lease object that was there is released, not deleted.
    store.poke(
        "x.db.s3vfs-lease",
        &serde_json::to_vec(&LeaseRecord {
            released: true,
            ..holder.clone()
        })
        .unwrap(),
    );
    assert_eq!(deserialize(&src, &db, true).unwrap(), 2);
    let after: LeaseRecord =
        serde_json::from_slice(&store.peek("x.db.s3vfs-lease").unwrap()).unwrap();
    assert!(after.released && after.owner != "someone-else");

    // locking=none coordinates nothing, so it takes no lease.
    store.poke("x.db.s3vfs-lease", &serde_json::to_vec(&holder).unwrap());
    let unlocked = in_memory(&store, "x.db", 4096, Some("none"));
    assert_eq!(deserialize(&src, &unlocked, true).unwrap(), 2);
}

#[test]
fn serialize_refuses_targets_that_belong_to_a_database() {
    let store = Arc::new(MemoryStore::default());
    store.poke("src.sqlite", &database(2, 3));
    let db = in_memory(&store, "x.db", 4096, None);
    deserialize(&in_memory(&store, "src.sqlite", 4096, None), &db, false).unwrap();
    store.poke("victim.db/0000000000", &database(1, 5));
    for target in [
        "victim.db/0000000003",
        "victim.db/0000000000",
        "other/0000000001",
        "victim.db-journal/0000000000",
        "victim.db.s3vfs-lease",
        "victim.db.s3vfs-lease-probe-1",
        "victim.db.s3vfs-readers/123-abc",
        "x.db",
        "x.db/copy.sqlite",
    ] {
        store.clear_requests();
        let e = serialize(&db, &in_memory(&store, target, 4096, None)).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(m) if m.contains("nothing was written")),
            "{target}: {e}"
        );
        assert_eq!(store.requests(), Vec::<String>::new(), "{target}");
    }
    assert_eq!(stored(&store, "victim.db"), database(1, 5));
    for fine in [
        "exports/x.sqlite",
        "x.db.backup",
        "backups/0000000001.sqlite",
    ] {
        serialize(&db, &in_memory(&store, fine, 4096, None)).unwrap();
        assert_eq!(store.peek(fine).unwrap(), database(2, 3), "{fine}");
    }
}

#[test]
fn export_never_follows_a_planted_symlink() {
    let store = Arc::new(MemoryStore::default());
    store.poke("src.sqlite", &database(3, 2));
    let db = in_memory(&store, "x.db", 4096, None);
    deserialize(&in_memory(&store, "src.sqlite", 4096, None), &db, false).unwrap();
    let dir = std::env::temp_dir().join(format!("s3vfs-symlink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    // Every name an attacker could predict: the pid, and pids around it.
    let pid = std::process::id();
    for p in pid.saturating_sub(3)..pid + 4 {
        let link = dir.join(format!(".out.db.s3vfs-export-{p}"));
        std::os::unix::fs::symlink(&victim, link).unwrap();
    }
    let out = dir.join("out.db");
    assert_eq!(export_file(&db, &out, false, &()).unwrap(), 3 * 4096);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!std::fs::symlink_metadata(&out).unwrap().is_symlink());
    assert_eq!(std::fs::read(&out).unwrap(), database(3, 2));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn temporary_files_are_new_unpredictable_and_never_through_a_link() {
    let dir = std::env::temp_dir().join(format!("s3vfs-tmpname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.join("out.db");
    let (tmp, _) = create_temp_beside(&out).unwrap();
    let (tmp2, _) = create_temp_beside(&out).unwrap();
    assert_ne!(tmp, tmp2);
    std::os::unix::fs::symlink(&victim, dir.join("planted")).unwrap();
    assert_eq!(tmp.parent(), Some(dir.as_path()));
    assert!(tmp.to_string_lossy().len() > out.to_string_lossy().len() + 30);
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(O_NOFOLLOW)
        .open(dir.join("planted"));
    assert!(e.is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    std::fs::remove_dir_all(dir).ok();
}
