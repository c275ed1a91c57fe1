//! Files as fixed-size blocks in an object store, in the layout of the Python package
//! `sqlite-s3vfs`: block `i` of file `F` is the object `F/<i as %010d>`, every block is
//! exactly `block_size` bytes except a shorter last one, and the file size is the sum of
//! the block sizes. Nothing else is ever written under `F/`.
//!
//! This layer knows offsets and blocks, not SQLite and not HTTP: it talks to an
//! [`ObjectStore`], which is S3 in production and a map in unit tests.

use crate::error::Result;
use crate::parallel::{par_map, DEFAULT_CONCURRENCY};
use crate::s3::{ObjectInfo, S3Client};
use std::sync::Arc;

/// The object operations the block layer needs.
pub trait ObjectStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    fn delete(&self, key: &str) -> Result<()>;
    fn delete_many(&self, keys: &[String]) -> Result<()>;
    /// Objects under `prefix`, at most `limit` of them, in any order.
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>>;
}

impl ObjectStore for S3Client {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        S3Client::get(self, key)
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        S3Client::put(self, key, data)
    }
    fn delete(&self, key: &str) -> Result<()> {
        S3Client::delete(self, key)
    }
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        S3Client::delete_many(self, keys)
    }
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
        S3Client::list(self, prefix, limit)
    }
}

/// Offset 1 GiB: SQLite never writes the page holding this byte (the lock-byte page), so
/// a database that grows past it leaves a hole that the layout must fill with zeros.
pub const LOCK_BYTE_OFFSET: u64 = 1 << 30;

/// Zero-fill writes are cut into pieces of this size so a large hole never needs one
/// huge buffer.
const ZERO_FILL_CHUNK: u64 = 1 << 20;

/// One file (a database or a journal) stored as blocks.
pub struct BlockFile {
    store: Arc<dyn ObjectStore>,
    name: String,
    block_size: u64,
    /// The size as of the last listing or this handle's own writes. Cleared whenever the
    /// handle gives up its lock, because another writer may change the file after that.
    size_hint: Option<u64>,
}

/// One stored block: its index and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub index: u64,
    pub len: u64,
}

impl BlockFile {
    pub fn new(store: Arc<dyn ObjectStore>, name: &str, block_size: u64) -> BlockFile {
        BlockFile {
            store,
            name: name.to_string(),
            block_size,
            size_hint: None,
        }
    }

    /// The key of block `index`.
    pub fn key(&self, index: u64) -> String {
        block_key(&self.name, index)
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Every block stored, sorted by index (listing order is not trusted).
    pub fn blocks(&self) -> Result<Vec<Block>> {
        self.listed(None)
    }

    /// The first `n` blocks in listing order (S3 lists keys lexicographically, which is
    /// index order for 10-digit names); enough to check a layout without listing it all.
    pub fn first_blocks(&self, n: usize) -> Result<Vec<Block>> {
        self.listed(Some(n))
    }

    fn listed(&self, limit: Option<usize>) -> Result<Vec<Block>> {
        let prefix = format!("{}/", self.name);
        let mut blocks: Vec<Block> = self
            .store
            .list(&prefix, limit)?
            .into_iter()
            .filter_map(|o| {
                let index = parse_block_index(o.key.strip_prefix(&prefix)?)?;
                Some(Block { index, len: o.size })
            })
            .collect();
        blocks.sort_by_key(|b| b.index);
        Ok(blocks)
    }

    /// The file size: the sum of the stored block sizes.
    pub fn size(&mut self) -> Result<u64> {
        let size = self.blocks()?.iter().map(|b| b.len).sum();
        self.size_hint = Some(size);
        Ok(size)
    }

    /// Forgets the cached size; the next size-dependent call lists again.
    pub fn forget_size(&mut self) {
        self.size_hint = None;
    }

    /// Records a size learnt elsewhere (for example from the open-time listing).
    pub fn set_size_hint(&mut self, size: u64) {
        self.size_hint = Some(size);
    }

    /// The size, listing only when no size is cached.
    pub fn cached_size(&mut self) -> Result<u64> {
        match self.size_hint {
            Some(s) => Ok(s),
            None => self.size(),
        }
    }

    /// True when at least one block exists (the `xAccess` rule of sqlite-s3vfs).
    pub fn exists(&self) -> Result<bool> {
        Ok(!self
            .store
            .list(&format!("{}/", self.name), Some(1))?
            .is_empty())
    }

    /// Fills `buf` from offset `off`. Missing bytes read as zeros; returns `true` when the
    /// read reached past the end of the stored data (SQLite's short read).
    pub fn read(&self, buf: &mut [u8], off: u64) -> Result<bool> {
        buf.fill(0);
        if buf.is_empty() {
            return Ok(false);
        }
        let end = off + buf.len() as u64;
        let b = self.block_size;
        let indices: Vec<u64> = (off / b..=(end - 1) / b).collect();
        let blocks = par_map(&indices, DEFAULT_CONCURRENCY, |&i| {
            self.store.get(&self.key(i))
        })?;
        let mut short = false;
        for (&i, data) in indices.iter().zip(blocks) {
            let data = data.unwrap_or_default();
            let block_start = i * b;
            let from = off.max(block_start) - block_start;
            let to = end.min(block_start + b) - block_start;
            let avail = (data.len() as u64).min(to);
            if avail > from {
                let dst = (block_start + from - off) as usize;
                buf[dst..dst + (avail - from) as usize]
                    .copy_from_slice(&data[from as usize..avail as usize]);
            }
            if i == *indices.last().expect("non-empty") && avail < to {
                short = true;
            }
        }
        Ok(short)
    }

    /// Writes `data` at `off`, zero-filling any hole between the current end and `off` so
    /// that every block before the last stays full.
    pub fn write(&mut self, data: &[u8], off: u64) -> Result<()> {
        let mut size = self.cached_size()?;
        while size < off {
            let n = (off - size).min(ZERO_FILL_CHUNK);
            self.write_blocks(&vec![0u8; n as usize], size, size)?;
            size += n;
            self.size_hint = Some(size);
        }
        self.write_blocks(data, off, size)?;
        self.size_hint = Some(size.max(off + data.len() as u64));
        Ok(())
    }

    /// Splices `data` into the blocks it touches, given the current file size. A block is
    /// fetched only when it holds bytes outside the written range that must be kept.
    fn write_blocks(&self, data: &[u8], off: u64, size: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let b = self.block_size;
        let end = off + data.len() as u64;
        let indices: Vec<u64> = (off / b..=(end - 1) / b).collect();
        par_map(&indices, DEFAULT_CONCURRENCY, |&i| {
            let block_start = i * b;
            let from = off.max(block_start) - block_start;
            let to = end.min(block_start + b) - block_start;
            let piece =
                &data[(block_start + from - off) as usize..(block_start + to - off) as usize];
            let existing = size.saturating_sub(block_start).min(b);
            let key = self.key(i);
            if from == 0 && to >= existing {
                return self.store.put(&key, piece);
            }
            let mut block = self.store.get(&key)?.unwrap_or_default();
            if (block.len() as u64) < to {
                block.resize(to as usize, 0);
            }
            block[from as usize..to as usize].copy_from_slice(piece);
            self.store.put(&key, &block)
        })?;
        Ok(())
    }

    /// Shrinks the file to `new_size` (growing is a no-op, as in sqlite-s3vfs).
    pub fn truncate(&mut self, new_size: u64) -> Result<()> {
        let blocks = self.blocks()?;
        let b = self.block_size;
        let mut doomed = Vec::new();
        let mut total = 0;
        for blk in &blocks {
            let start = blk.index * b;
            if start >= new_size {
                doomed.push(blk.index);
            } else if start + blk.len > new_size {
                let keep = (new_size - start) as usize;
                let key = self.key(blk.index);
                let mut data = self.store.get(&key)?.unwrap_or_default();
                data.resize(keep, 0);
                self.store.put(&key, &data)?;
                total += keep as u64;
            } else {
                total += blk.len;
            }
        }
        self.delete_blocks(&doomed)?;
        self.size_hint = Some(total);
        Ok(())
    }

    /// Deletes every block of the file.
    pub fn delete_all(&mut self) -> Result<()> {
        let indices: Vec<u64> = self.blocks()?.iter().map(|b| b.index).collect();
        self.delete_blocks(&indices)?;
        self.size_hint = Some(0);
        Ok(())
    }

    /// Deletes blocks, block 0 alone and first: a journal whose first block is gone reads
    /// as a zero header, which SQLite never treats as hot. A batch delete is not atomic,
    /// and could otherwise leave a valid header in front of missing records.
    fn delete_blocks(&self, indices: &[u64]) -> Result<()> {
        let mut rest: Vec<String> = Vec::with_capacity(indices.len());
        for &i in indices {
            if i == 0 {
                self.store.delete(&self.key(0))?;
            } else {
                rest.push(self.key(i));
            }
        }
        match rest.len() {
            0 => Ok(()),
            1 => self.store.delete(&rest[0]),
            _ => self.store.delete_many(&rest),
        }
    }
}

/// The object key of block `index` of file `name`.
pub fn block_key(name: &str, index: u64) -> String {
    format!("{name}/{index:010}")
}

/// The index of a block key's last component, if it is a block name (all digits).
pub fn parse_block_index(tail: &str) -> Option<u64> {
    if tail.is_empty() || !tail.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    tail.parse().ok()
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`ObjectStore`] for unit tests of the block arithmetic.
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryStore {
        pub objects: Mutex<BTreeMap<String, Vec<u8>>>,
        pub gets: std::sync::atomic::AtomicUsize,
    }

    impl ObjectStore for MemoryStore {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }
        fn put(&self, key: &str, data: &[u8]) -> Result<()> {
            self.objects
                .lock()
                .unwrap()
                .insert(key.into(), data.to_vec());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
        fn delete_many(&self, keys: &[String]) -> Result<()> {
            let mut m = self.objects.lock().unwrap();
            keys.iter().for_each(|k| {
                m.remove(k);
            });
            Ok(())
        }
        fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
            let m = self.objects.lock().unwrap();
            Ok(m.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .take(limit.unwrap_or(usize::MAX))
                .map(|(k, v)| ObjectInfo {
                    key: k.clone(),
                    size: v.len() as u64,
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryStore;
    use super::*;

    fn file(b: u64) -> (Arc<MemoryStore>, BlockFile) {
        let store = Arc::new(MemoryStore::default());
        let f = BlockFile::new(store.clone(), "db", b);
        (store, f)
    }

    fn sizes(store: &MemoryStore) -> Vec<(String, usize)> {
        store
            .objects
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    #[test]
    fn keys_are_ten_zero_padded_digits() {
        assert_eq!(
            block_key("my/path/cool.sqlite", 16384),
            "my/path/cool.sqlite/0000016384"
        );
        assert_eq!(parse_block_index("0000000002"), Some(2));
        assert_eq!(parse_block_index("lock"), None);
    }

    #[test]
    fn blocks_are_full_except_a_short_last_one() {
        // 577,536 bytes at 65,536-byte blocks: 9 objects, the last one 53,248 bytes.
        let (store, mut f) = file(65536);
        let page = vec![7u8; 4096];
        for p in 0..141u64 {
            f.write(&page, p * 4096).unwrap();
        }
        let s = sizes(&store);
        assert_eq!(s.len(), 9);
        assert!(s[..8].iter().all(|(_, n)| *n == 65536));
        assert_eq!(s[8], ("db/0000000008".to_string(), 53248));
        f.forget_size();
        assert_eq!(f.size().unwrap(), 577_536);
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
    fn a_missing_middle_block_reads_as_zeros_without_shifting() {
        let (store, mut f) = file(4096);
        f.write(&vec![5u8; 3 * 4096], 0).unwrap();
        store.objects.lock().unwrap().remove("db/0000000001");
        let mut back = vec![0u8; 3 * 4096];
        assert!(!f.read(&mut back, 0).unwrap());
        assert!(back[4096..8192].iter().all(|&x| x == 0));
        assert!(back[8192..].iter().all(|&x| x == 5));
    }

    #[test]
    fn overwriting_whole_blocks_needs_no_fetch() {
        let (store, mut f) = file(4096);
        f.write(&vec![1u8; 8192], 0).unwrap();
        f.write(&vec![2u8; 8192], 0).unwrap();
        assert_eq!(store.gets.load(std::sync::atomic::Ordering::Relaxed), 0);
        f.write(&[3u8; 10], 100).unwrap();
        assert_eq!(store.gets.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn truncate_trims_and_deletes_in_index_order() {
        let (store, mut f) = file(4096);
        f.write(&vec![1u8; 12 * 4096], 0).unwrap();
        f.truncate(4096 + 10).unwrap();
        assert_eq!(
            sizes(&store),
            [
                ("db/0000000000".to_string(), 4096),
                ("db/0000000001".to_string(), 10)
            ]
        );
        f.truncate(0).unwrap();
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
        let m = store.objects.lock().unwrap();
        let lock = m.get("db/0000016384").expect("the lock-byte block exists");
        assert_eq!(lock.len(), 65536);
        assert!(lock.iter().all(|&x| x == 0));
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            ["db/0000016383", "db/0000016384", "db/0000016385"]
        );
    }
}
