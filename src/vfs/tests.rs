//! Unit tests of the VFS object over an in-memory bucket.

use super::*;
use crate::codes::{open_flag, LockLevel};
use crate::object_store::memory::MemoryStore;

/// A VFS over one in-memory bucket, leaked as the FFI leaks the real one.
fn memory_vfs() -> &'static S3Vfs {
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::default());
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
        "S3VFS_BUCKET" => Some("b".to_string()),
        _ => None,
    };
    Box::leak(Box::new(S3Vfs::with_parts(
        ProcessSettings {
            trace: false,
            stderr_errors: false,
            prices: Default::default(),
        },
        Box::new(env),
        Box::new(move |_| store.fenced_view()),
    )))
}

fn open_db(vfs: &'static S3Vfs, name: &str, addr: usize) -> S3File {
    vfs.open(OpenRequest {
        name: NameRef { text: name, addr },
        flags: open_flag::MAIN_DB | open_flag::CREATE,
        uri: &|_| None,
        uri_keys: Vec::new(),
        companions: [addr + 1, addr + 2],
    })
    .unwrap()
}

#[test]
fn nothing_is_kept_per_name_once_databases_close() {
    let vfs = memory_vfs();
    for i in 0..50 {
        let mut db = open_db(vfs, &format!("db{i}.sqlite"), 1000 + 10 * i);
        assert_eq!(db.lock(LockLevel::Shared).unwrap(), LockResult::Granted);
        db.unlock(LockLevel::None).unwrap();
        db.close().unwrap();
    }
    assert_eq!(vfs.tracked(), 0, "per-name state must be freed");
}

#[test]
fn a_journal_belongs_to_the_database_whose_name_address_it_has() {
    let vfs = memory_vfs();
    let a = open_db(vfs, "app.db", 10);
    let (owner, _) = vfs
        .owner(NameRef {
            text: "app.db-journal",
            addr: 11,
        })
        .unwrap();
    assert_eq!(owner, a.id().clone());
    a.close().unwrap();
}
