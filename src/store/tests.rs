//! Unit tests of the block arithmetic, against the in-memory store.

use super::*;
use crate::object_store::memory::{Fault, MemoryStore};

fn file(b: u64) -> (Arc<MemoryStore>, BlockFile) {
    let store = Arc::new(MemoryStore::default());
    let f = BlockFile::new(store.clone(), "db", b);
    (store, f)
}

/// A main database's file (whole blocks checked) named `name`, in 4 KiB blocks.
fn database(name: &str) -> (Arc<MemoryStore>, BlockFile) {
    let store = Arc::new(MemoryStore::default());
    let f = BlockFile::new(store.clone(), name, 4096).with_whole_blocks();
    (store, f)
}

fn sizes(store: &MemoryStore) -> Vec<(String, usize)> {
    store
        .keys()
        .into_iter()
        .map(|k| {
            let n = store.peek(&k).unwrap().len();
            (k, n)
        })
        .collect()
}

#[test]
fn blocks_are_full_except_a_short_last_one() {
    // 577,536 bytes at 65,536-byte blocks: 9 objects, the last one 53,248 bytes.
    let (store, mut f) = file(65536);
    let page = vec![7u8; 4096];
    for p in 0..141u64 {
        f.write(&page, p * 4096).unwrap();
    }
    f.flush().unwrap();
    let s = sizes(&store);
    assert_eq!(s.len(), 9);
    assert!(s[..8].iter().all(|(_, n)| *n == 65536));
    assert_eq!(s[8], ("db/0000000008".to_string(), 53248));
    f.forget_size();
    assert_eq!(f.listed_size().unwrap(), 577_536);
}

#[test]
fn unaligned_block_sizes_round_trip() {
    for b in [4095u64, 4096, 4097] {
        let (_, mut f) = file(b);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write(&data[..5000], 0).unwrap();
        f.write(&data[5000..], 5000).unwrap();
        let mut back = vec![0u8; 20_000];
        assert!(!f.read(&mut back, 0).unwrap());
        assert_eq!(back, data, "block size {b}");
        let mut past = vec![1u8; 100];
        assert!(
            f.read(&mut past, 19_950).unwrap(),
            "reading past the end is short"
        );
        assert_eq!(&past[..50], &data[19_950..]);
        assert!(past[50..].iter().all(|&x| x == 0));
    }
}

#[test]
fn holes_are_zero_filled_so_earlier_blocks_stay_full() {
    let (store, mut f) = file(4096);
    f.write(&[1u8; 100], 0).unwrap();
    f.write(&[2u8; 4096], 3 * 4096).unwrap();
    f.flush().unwrap();
    let s = sizes(&store);
    assert_eq!(
        s.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [4096, 4096, 4096, 4096]
    );
    let mut back = vec![9u8; 4096];
    f.read(&mut back, 4096).unwrap();
    assert!(back.iter().all(|&x| x == 0));
}

#[test]
fn a_long_flush_checks_its_lease_between_batches_and_stops_when_told() {
    let (store, f) = file(4096);
    let mut f = f.with_concurrency(2);
    f.write(&vec![3u8; 100 * 4096], 0).unwrap();
    let checks = std::sync::atomic::AtomicUsize::new(0);
    f.flush_with(&|| {
        checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    // 100 blocks in batches of 2 × FLUSH_ROUNDS_PER_CHECK = 32: 4 batches.
    assert_eq!(checks.into_inner(), 4);
    assert_eq!(f.dirty_bytes(), 0);
    assert_eq!(store.keys().len(), 100);
    f.write(&vec![4u8; 100 * 4096], 0).unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let lost = f.flush_with(&|| {
        if n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 2 {
            Err(crate::error::Error::Lease("lost".into()))
        } else {
            Ok(())
        }
    });
    assert!(lost.is_err());
    // The check before block 64 failed: blocks 64.. stay dirty, but the other worker may
    // have stored the one block it had already taken.
    let dirty = f.dirty_bytes() / 4096;
    assert!(
        (35..=36).contains(&dirty),
        "what was not stored stays dirty: {dirty}"
    );
}

#[test]
fn a_damaged_database_block_is_reported_with_its_key() {
    for damage in ["missing", "short", "long"] {
        let store = Arc::new(MemoryStore::default());
        let mut f = BlockFile::new(store.clone(), "db", 4096).with_whole_blocks();
        f.write(&vec![5u8; 3 * 4096], 0).unwrap();
        f.flush().unwrap();
        crate::cache::CACHE.drop_file(&f.file_id);
        match damage {
            "missing" => store.remove("db/0000000001"),
            "short" => store.poke("db/0000000001", &[5u8; 100]),
            _ => store.poke("db/0000000001", &[5u8; 5000]),
        }
        let mut back = vec![0u8; 4096];
        let err = f.read(&mut back, 4096).unwrap_err();
        assert!(
            matches!(&err, crate::error::Error::Corrupt(m) if m.contains("db/0000000001")),
            "{damage}: {err}"
        );
        let err = f.write(&[1u8; 10], 4096 + 7).unwrap_err();
        assert!(
            matches!(err, crate::error::Error::Corrupt(_)),
            "{damage}: writes fail too"
        );
    }
}

#[test]
fn a_missing_journal_block_reads_as_zeros_without_shifting() {
    let (store, mut f) = file(4096);
    f.write(&vec![5u8; 3 * 4096], 0).unwrap();
    f.flush().unwrap();
    crate::cache::CACHE.drop_file(&f.file_id);
    store.remove("db/0000000001");
    let mut back = vec![0u8; 3 * 4096];
    assert!(!f.read(&mut back, 0).unwrap());
    assert!(back[4096..8192].iter().all(|&x| x == 0));
    assert!(back[8192..].iter().all(|&x| x == 5));
}

#[test]
fn partial_writes_fetch_a_stored_block_at_most_once_and_flush_once() {
    let (store, mut f) = file(4096);
    f.write(&vec![1u8; 8192], 0).unwrap();
    f.write(&vec![2u8; 8192], 0).unwrap();
    assert!(store.keys().is_empty(), "writes wait for the flush");
    f.flush().unwrap();
    assert_eq!(sizes(&store).len(), 2);
    crate::cache::CACHE.drop_file(&f.file_id);
    let gets = || store.count("GET ");
    assert_eq!(gets(), 0, "whole-block writes need no fetch");
    f.write(&[3u8; 10], 100).unwrap();
    f.write(&[4u8; 10], 200).unwrap();
    assert_eq!(
        gets(),
        1,
        "the block is fetched once, then merged in memory"
    );
    f.flush().unwrap();
    let b0 = store.peek("db/0000000000").unwrap();
    assert_eq!((b0[99], b0[100], b0[200], b0[210]), (2, 3, 4, 2));
}

#[test]
fn reads_see_buffered_writes_and_sequential_reads_fetch_ahead() {
    let (store, mut f) = file(4096);
    f.write(&vec![7u8; 40 * 4096], 0).unwrap();
    let mut page = vec![0u8; 4096];
    f.read(&mut page, 5 * 4096).unwrap();
    assert!(
        page.iter().all(|&x| x == 7),
        "buffered bytes are readable before the flush"
    );
    f.flush().unwrap();
    crate::cache::CACHE.drop_file(&f.file_id);
    let gets = || store.count("GET ");
    for i in 0..40 {
        f.read(&mut page, i * 4096).unwrap();
    }
    assert!(
        gets() >= 40 - 1 && gets() <= 40,
        "each block fetched once: {}",
        gets()
    );
    let before = gets();
    for i in 0..40 {
        f.read(&mut page, i * 4096).unwrap();
    }
    assert_eq!(gets(), before, "the second scan is served by the cache");
}

#[test]
fn truncate_trims_and_deletes_in_index_order() {
    let (store, mut f) = file(4096);
    f.write(&vec![1u8; 12 * 4096], 0).unwrap();
    f.flush().unwrap();
    f.truncate(4096 + 10, false).unwrap();
    assert_eq!(
        sizes(&store),
        [
            ("db/0000000000".to_string(), 4096),
            ("db/0000000001".to_string(), 10)
        ]
    );
    f.truncate(0, false).unwrap();
    assert!(sizes(&store).is_empty());
    assert!(!f.exists().unwrap());
}

#[test]
fn writing_past_the_lock_byte_page_fills_it_with_zeros() {
    let (store, mut f) = file(65536);
    let page = vec![1u8; 65536];
    // Pretend the first GiB exists; only its last block is stored, to keep the test small.
    f.set_size_hint(LOCK_BYTE_OFFSET - 65536);
    f.write(&page, LOCK_BYTE_OFFSET - 65536).unwrap();
    f.write(&page, LOCK_BYTE_OFFSET + 65536).unwrap();
    f.flush().unwrap();
    let lock = store
        .peek("db/0000016384")
        .expect("the lock-byte block exists");
    assert_eq!(lock.len(), 65536);
    assert!(lock.iter().all(|&x| x == 0));
    assert_eq!(
        store.keys(),
        ["db/0000016383", "db/0000016384", "db/0000016385"]
    );
}

#[test]
fn revalidation_moves_nothing_when_block_0_is_unchanged() {
    let (store, mut f) = database("db");
    store.poke("db/0000000000", &[1u8; 4096]);
    store.poke("db/0000000001", &[2u8; 4096]);
    assert_eq!(f.load_first_block().unwrap().unwrap().len(), 4096);
    let mut page = vec![0u8; 4096];
    f.read(&mut page, 4096).unwrap();
    store.clear_requests();
    assert_eq!(f.revalidate().unwrap(), vec![1u8; 100]);
    f.read(&mut page, 4096).unwrap();
    assert_eq!(
        store.requests(),
        ["GET db/0000000000"],
        "answered 304, cache kept"
    );
    // Another writer changes block 0: the fresh copy comes back and the cache is dropped.
    store.poke("db/0000000000", &[3u8; 4096]);
    store.clear_requests();
    assert_eq!(f.revalidate().unwrap(), vec![3u8; 100]);
    f.read(&mut page, 4096).unwrap();
    assert_eq!(
        store.count("GET "),
        2,
        "block 1 fetched again after the change"
    );
    assert!(!f.first_block_exists().unwrap() || store.count("HEAD ") == 1);
}

#[test]
fn a_file_written_again_from_its_start_stores_block_0_first_then_drops_the_stale_blocks() {
    let (store, mut f) = file(4096);
    f.write(&vec![1u8; 5 * 4096], 0).unwrap();
    f.flush().unwrap();
    store.clear_requests();
    // A WAL restart: a new header at offset 0, then a frame after it.
    f.rewrite_from_start().unwrap();
    f.write(&[2u8; 32], 0).unwrap();
    f.write(&vec![3u8; 4096], 32).unwrap();
    assert_eq!(
        store.requests(),
        Vec::<String>::new(),
        "no stale block is fetched"
    );
    f.flush().unwrap();
    f.settle_deletes();
    assert_eq!(
        store.requests(),
        [
            "PUT db/0000000000",
            "PUT db/0000000001",
            "DELETE_MANY db/0000000002,db/0000000003,db/0000000004"
        ]
    );
    assert_eq!(
        sizes(&store),
        [("db/0000000000".into(), 4096), ("db/0000000001".into(), 32)]
    );
    // Appending after that is an ordinary flush: every block at once.
    store.clear_requests();
    f.write(&vec![4u8; 4096], 4128).unwrap();
    f.flush().unwrap();
    assert_eq!(
        store.requests(),
        ["PUT db/0000000001", "PUT db/0000000002"],
        "no block 0 first, no deletion"
    );
}

#[test]
fn a_restart_whose_block_0_was_not_stored_stores_nothing_after_it() {
    let (store, mut f) = file(4096);
    f.write(&vec![1u8; 3 * 4096], 0).unwrap();
    f.flush().unwrap();
    f.rewrite_from_start().unwrap();
    f.write(&vec![2u8; 2 * 4096], 0).unwrap();
    store.fail_next("PUT", "db/0000000000", Fault::Unavailable);
    assert!(f.flush().is_err());
    // The old header still leads old blocks only: a crash now replays the old WAL whole.
    assert_eq!(store.peek("db/0000000001").unwrap(), vec![1u8; 4096]);
    assert_eq!(store.peek("db/0000000002").unwrap(), vec![1u8; 4096]);
    f.flush().unwrap();
    f.settle_deletes();
    assert_eq!(store.peek("db/0000000000").unwrap(), vec![2u8; 4096]);
    assert_eq!(store.peek("db/0000000001").unwrap(), vec![2u8; 4096]);
    assert_eq!(store.peek("db/0000000002"), None, "past the new end");
}

#[test]
fn truncating_to_nothing_deletes_block_0_at_once_and_the_rest_in_the_background() {
    let (store, mut f) = file(4096);
    f.write(&vec![1u8; 4 * 4096], 0).unwrap();
    f.flush().unwrap();
    store.clear_requests();
    f.truncate_in_background(0).unwrap();
    assert_eq!(store.requests()[0], "DELETE db/0000000000");
    f.settle_deletes();
    assert_eq!(
        store.requests(),
        [
            "DELETE db/0000000000",
            "DELETE_MANY db/0000000001,db/0000000002,db/0000000003"
        ]
    );
    assert!(store.keys().is_empty());
    // Nothing old is stored: a new start goes in one round.
    store.clear_requests();
    f.write(&vec![5u8; 2 * 4096], 0).unwrap();
    f.flush().unwrap();
    assert_eq!(store.count("PUT "), 2);
    assert_eq!(store.count("GET "), 0);
}

#[test]
fn a_size_read_from_the_header_goes_stale_when_the_cache_is_dropped() {
    let store = Arc::new(MemoryStore::default());
    let mut f = BlockFile::new(store.clone(), "size-drops.db", 4096);
    store.poke("size-drops.db/0000000000", &crate::tests::page0(1, 1));
    assert_eq!(f.database_size().unwrap(), 4096);
    // Another process checkpoints a second page in (WAL mode: no change this process's
    // read transactions would notice) ...
    store.poke("size-drops.db/0000000000", &crate::tests::page0(1, 2));
    store.poke("size-drops.db/0000000001", &[2u8; 4096]);
    assert_eq!(
        f.database_size().unwrap(),
        4096,
        "nothing dropped: the size stands"
    );
    // ... and this one takes the lease over, dropping what it cached of the database.
    f.forget_cached_blocks();
    assert_eq!(f.database_size().unwrap(), 8192);
}

#[test]
fn a_transaction_that_found_no_block_0_reads_an_empty_database_while_another_creates_it() {
    let (store, mut f) = database("new.db");
    assert!(f.revalidate().unwrap().is_empty(), "no block 0 yet");
    // Another process's first commit stores its pages ...
    store.poke("new.db/0000000001", &[2u8; 4096]);
    store.poke("new.db/0000000000", &crate::tests::page0(1, 2));
    store.clear_requests();
    // ... while this transaction reads the change counter, then asks the size, as SQLite
    // does: both answer from the start's view, an empty database, and nothing is asked.
    let mut counter = [9u8; 16];
    assert!(f.read(&mut counter, 24).unwrap(), "short: nothing there");
    assert_eq!(counter, [0u8; 16]);
    assert_eq!(f.database_size().unwrap(), 0);
    assert!(store.requests().is_empty(), "{:?}", store.requests());
    // The next transaction sees the new database.
    f.forget_size();
    assert_eq!(f.revalidate().unwrap(), crate::tests::page0(1, 2)[..100]);
    assert_eq!(f.database_size().unwrap(), 8192);
}

#[test]
fn blocks_without_a_block_0_are_no_database_and_not_listed() {
    // What a first commit that stopped before storing block 0 leaves: not a database yet.
    let (store, mut f) = database("stray.db");
    store.poke("stray.db/0000000001", &[2u8; 4096]);
    store.poke("stray.db/0000000002", &[3u8; 4096]);
    assert_eq!(f.database_size().unwrap(), 0);
    assert_eq!(store.count("LIST "), 0, "{:?}", store.requests());
    // This process's own first commit then defines the size.
    f.write(&crate::tests::page0(1, 1), 0).unwrap();
    assert_eq!(f.database_size().unwrap(), 4096);
}

#[test]
fn a_block_0_known_to_exist_is_fetched_again_after_an_eviction() {
    let (store, mut f) = database("grown.db");
    assert!(f.revalidate().unwrap().is_empty(), "no block 0 yet");
    // Another connection of this process stores block 0 (a WAL checkpoint) ...
    let mut other = BlockFile::new(store.clone(), "grown.db", 4096).with_whole_blocks();
    other.write(&crate::tests::page0(1, 1), 0).unwrap();
    other.flush().unwrap();
    // ... and this one starts its next transaction on the cached copy, which the cache
    // then evicts: block 0 is read again from S3, not taken for absent.
    assert!(f.keep_header().is_some());
    f.forget_cached_blocks();
    let mut head = [0u8; 16];
    f.read(&mut head, 0).unwrap();
    assert_eq!(&head, b"SQLite format 3\0");
}
