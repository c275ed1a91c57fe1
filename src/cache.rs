//! A process-wide LRU of clean blocks, shared by every connection of the process.
//!
//! The cache never decides freshness itself. The rule, applied by the VFS at the start of
//! every read transaction on a main database: fetch block 0 (SQLite reads its change
//! counter next anyway) and, when its file change counter differs from the cached block
//! 0's, drop every cached block of that file. SQLite bumps the counter on every commit in
//! rollback-journal mode, so a block cached before another writer's commit is never
//! served after it. Blocks this process writes go into the cache as they are flushed.

use crate::stats;
use once_cell::sync::Lazy;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Default capacity: 64 MiB of block data.
pub const DEFAULT_CAPACITY: usize = 64 * 1024 * 1024;

/// The process's block cache.
pub static CACHE: Lazy<BlockCache> = Lazy::new(|| BlockCache::new(DEFAULT_CAPACITY));

/// A cached block's identity: the file (store identity + name) and the block index.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub file: Arc<str>,
    pub index: u64,
}

pub struct BlockCache {
    inner: Mutex<Inner>,
}

/// A cached block, its last-use tick and its ETag.
type Entry = (Arc<Vec<u8>>, u64, Option<Arc<str>>);

struct Inner {
    /// Block, last-use tick, and the stored object's ETag when known (for a conditional
    /// GET that moves no bytes when the block has not changed).
    map: HashMap<Key, Entry>,
    /// Last-use tick → key; the smallest tick is evicted first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    capacity: usize,
    /// How many times each file's blocks were dropped (see [`BlockCache::drops`]).
    drops: HashMap<Arc<str>, u64>,
}

impl BlockCache {
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                bytes: 0,
                capacity,
                drops: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Changes the capacity (the last setting wins: the cache is shared by all files).
    pub fn set_capacity(&self, bytes: usize) {
        let mut inner = self.lock();
        inner.capacity = bytes;
        inner.evict();
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Vec<u8>>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some((data, old, _)) = inner.map.get_mut(key) else {
            stats::cache_miss();
            return None;
        };
        let data = data.clone();
        let old = std::mem::replace(old, tick);
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        stats::cache_hit();
        Some(data)
    }

    /// True when the block is cached, without counting a hit or touching its age.
    pub fn contains(&self, key: &Key) -> bool {
        self.lock().map.contains_key(key)
    }

    pub fn insert(&self, key: Key, data: Arc<Vec<u8>>) {
        self.insert_tagged(key, data, None);
    }

    /// The ETag recorded with a cached block, without counting a hit or touching its age.
    pub fn etag(&self, key: &Key) -> Option<Arc<str>> {
        self.lock().map.get(key).and_then(|(_, _, e)| e.clone())
    }

    /// Caches a block with the ETag of the object it came from (when known).
    pub fn insert_tagged(&self, key: Key, data: Arc<Vec<u8>>, etag: Option<Arc<str>>) {
        let mut inner = self.lock();
        if data.len() > inner.capacity {
            return;
        }
        inner.remove(&key);
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += data.len();
        inner.order.insert(tick, key.clone());
        inner.map.insert(key, (data, tick, etag));
        inner.evict();
    }

    pub fn remove(&self, key: &Key) {
        self.lock().remove(key);
    }

    /// How many times `file`'s blocks were dropped: what a connection derived from them
    /// (the size its header gave) is stale once this changes.
    pub fn drops(&self, file: &str) -> u64 {
        self.lock().drops.get(file).copied().unwrap_or(0)
    }

    /// Drops every block of one file.
    pub fn drop_file(&self, file: &str) {
        let mut inner = self.lock();
        *inner.drops.entry(Arc::from(file)).or_insert(0) += 1;
        let doomed: Vec<Key> = inner
            .map
            .keys()
            .filter(|k| &*k.file == file)
            .cloned()
            .collect();
        for k in doomed {
            inner.remove(&k);
        }
    }
}

impl Inner {
    fn remove(&mut self, key: &Key) {
        if let Some((data, tick, _)) = self.map.remove(key) {
            self.bytes -= data.len();
            self.order.remove(&tick);
        }
    }

    fn evict(&mut self) {
        while self.bytes > self.capacity {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((data, _, _)) = self.map.remove(&key) {
                self.bytes -= data.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(file: &str, index: u64) -> Key {
        Key {
            file: file.into(),
            index,
        }
    }

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let c = BlockCache::new(3000);
        c.insert(key("f", 0), Arc::new(vec![0; 1000]));
        c.insert(key("f", 1), Arc::new(vec![1; 1000]));
        c.insert(key("f", 2), Arc::new(vec![2; 1000]));
        assert!(c.get(&key("f", 0)).is_some()); // 0 is now the most recent
        c.insert(key("f", 3), Arc::new(vec![3; 1000]));
        assert!(c.contains(&key("f", 0)));
        assert!(
            !c.contains(&key("f", 1)),
            "the least recently used block goes first"
        );
        assert!(c.contains(&key("f", 3)));
    }

    #[test]
    fn drops_one_file_only() {
        let c = BlockCache::new(1 << 20);
        c.insert(key("a", 0), Arc::new(vec![1]));
        c.insert(key("b", 0), Arc::new(vec![2]));
        c.drop_file("a");
        assert!(!c.contains(&key("a", 0)));
        assert_eq!(c.get(&key("b", 0)).as_deref(), Some(&vec![2]));
    }
}
