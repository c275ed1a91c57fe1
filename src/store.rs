//! Files as fixed-size blocks in an object store, in the layout of the Python package
//! `sqlite-s3vfs`: block `i` of file `F` is the object `F/<i as %010d>`, every block is
//! exactly `block_size` bytes except a shorter last one, and the file size is the sum of
//! the block sizes. Nothing else is ever written under `F/`.
//!
//! Writes are buffered: they change an in-memory map of dirty blocks, and [`BlockFile::flush`]
//! PUTs all of them in parallel. The VFS flushes at `xSync` (SQLite's durability point,
//! which it reaches for the journal before it writes any database page) and before giving
//! up a lock, so the bytes reach S3 in the order SQLite's protocol needs. Clean blocks are
//! shared through the process-wide [`crate::cache`].
//!
//! This layer knows offsets and blocks, not SQLite and not HTTP: it talks to an
//! [`ObjectStore`], which is S3 in production and a map in unit tests.
//!
//! This file holds the file's state, its size, reading and revalidation; `write.rs` the
//! buffered writes, the flush, truncation and deletion.

use crate::cache::{Key, CACHE};
use crate::error::Result;
use crate::header::header_size;
use crate::layout::{block_key, block_of, blocks_prefix};
use crate::object_store::{Fetched, ObjectStore};
use crate::parallel::{par_map, DEFAULT_CONCURRENCY};
use crate::prefetch::{Geometry, Prefetcher};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Offset 1 GiB: SQLite never writes the page holding this byte (the lock-byte page), so
/// a database that grows past it leaves a hole that the layout must fill with zeros.
pub const LOCK_BYTE_OFFSET: u64 = 1 << 30;

/// Dirty bytes past which the VFS flushes before the next sync, so a huge transaction
/// does not hold the whole database in memory.
pub const DIRTY_LIMIT: usize = 32 << 20;

/// One file (a database or a journal) stored as blocks.
pub struct BlockFile {
    store: Arc<dyn ObjectStore>,
    name: String,
    /// Identity of this file in the shared cache.
    file_id: Arc<str>,
    block_size: u64,
    concurrency: usize,
    /// The logical size (stored blocks plus buffered writes), when known. Forgotten when
    /// the handle gives up its lock, because another writer may change the file then.
    size: Option<u64>,
    /// [`crate::cache::BlockCache::drops`] of this file when its size was read from the
    /// header: a later drop makes that size stale.
    size_drops: u64,
    /// Blocks written but not yet PUT: their complete new content.
    dirty: BTreeMap<u64, Vec<u8>>,
    dirty_bytes: usize,
    /// What to fetch ahead of the reads (see `prefetch.rs`).
    prefetch: Prefetcher,
    /// A main database: every block inside the size its header vouches for must be stored
    /// whole. (A journal may legitimately miss blocks after a crash: SQLite reads them as
    /// zeros and stops its playback there.)
    whole_blocks: bool,
    /// Written again from its start (see `rewrite.rs`).
    rewrite: rewrite::Rewrite,
    /// S3 said block 0 does not exist when this read transaction started: until the next
    /// one, block 0 reads as absent without asking again. Another process's first commit
    /// may store it meanwhile; SQLite reads the header twice at the start of a
    /// transaction (change counter, then size), and the two answers must agree, or it
    /// takes the new size with its old, empty page 1 for "file is not a database".
    first_absent: bool,
}

/// One stored block: its index and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub index: u64,
    pub len: u64,
}

impl BlockFile {
    pub fn new(store: Arc<dyn ObjectStore>, name: &str, block_size: u64) -> BlockFile {
        let file_id: Arc<str> = format!("{}|{name}", store.id()).into();
        BlockFile {
            store,
            name: name.to_string(),
            file_id,
            block_size,
            concurrency: DEFAULT_CONCURRENCY,
            size: None,
            size_drops: 0,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            prefetch: Prefetcher::default(),
            whole_blocks: false,
            rewrite: rewrite::Rewrite::default(),
            first_absent: false,
        }
    }

    /// Treats the file as a main database: a block missing or of the wrong length inside
    /// its size is reported as damage instead of being read as zeros.
    pub fn with_whole_blocks(mut self) -> BlockFile {
        self.whole_blocks = true;
        self.prefetch.btree = true;
        self
    }

    /// The error for a stored block that cannot be what the layout says.
    fn damaged(&self, index: u64, what: String) -> crate::error::Error {
        crate::error::Error::Corrupt(format!(
            "block s3://{}/{} is damaged: {what}; the database cannot be read safely — restore it from a copy (s3vfs export of an older snapshot, or the bucket's versions)",
            self.store.bucket(),
            self.key(index)
        ))
    }

    /// Sets how many requests a batch may have in flight.
    pub fn with_concurrency(mut self, n: usize) -> BlockFile {
        self.concurrency = n.max(1);
        self
    }

    /// The key of block `index`.
    pub fn key(&self, index: u64) -> String {
        block_key(&self.name, index)
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// One stored block, straight from the store (not the cache): for whole-file copies
    /// that must not mix in blocks cached before another process's commit.
    pub fn get_block(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.store.get(&self.key(index))
    }

    /// Drops this file's blocks from the process-wide cache (its content was replaced).
    pub fn forget_cached_blocks(&self) {
        CACHE.drop_file(&self.file_id);
    }

    /// This file's identity across connections: store (endpoint, bucket) and name.
    pub fn file_id(&self) -> Arc<str> {
        self.file_id.clone()
    }

    fn cache_key(&self, index: u64) -> Key {
        Key {
            file: self.file_id.clone(),
            index,
        }
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
        let mut blocks: Vec<Block> = self
            .store
            .list(&blocks_prefix(&self.name), limit)?
            .into_iter()
            .filter_map(|o| {
                let index = block_of(&self.name, &o.key)?;
                Some(Block { index, len: o.size })
            })
            .collect();
        blocks.sort_by_key(|b| b.index);
        Ok(blocks)
    }

    /// The size as stored (one listing): where the last block ends. In a well-formed
    /// layout that is the sum of the block sizes, as sqlite-s3vfs computes it; after a
    /// crash in the middle of a parallel flush a block may be missing, and the file reads
    /// like a sparse local file, the hole as zeros, instead of shrinking.
    pub fn listed_size(&mut self) -> Result<u64> {
        let size = self
            .blocks()?
            .last()
            .map_or(0, |b| b.index * self.block_size + b.len);
        self.size = Some(size);
        Ok(size)
    }

    /// The size, listing only when none is known.
    pub fn cached_size(&mut self) -> Result<u64> {
        match self.size {
            Some(s) => Ok(s),
            None => self.listed_size(),
        }
    }

    /// The size of a database file from its header (page count × page size) when the
    /// header vouches for it (version-valid-for equals the change counter, as SQLite
    /// itself requires), else from a listing; 0 without block 0. Costs no request when
    /// block 0 is cached.
    pub fn database_size(&mut self) -> Result<u64> {
        // The cached blocks were dropped since (a WAL lease taken over from another
        // process, which may have checkpointed pages in): the size came from a stale
        // header. Buffered writes define the size themselves.
        let drops = CACHE.drops(&self.file_id);
        if self.size_drops != drops && self.dirty.is_empty() {
            self.size = None;
        }
        if let Some(s) = self.size {
            return Ok(s);
        }
        let first = self.fetch(&[0], &[], None)?.pop().flatten();
        self.size_drops = drops;
        // No block 0, no database yet: other blocks under the prefix are a commit that
        // has not stored block 0 (a database's first, in progress in another process) or
        // what one that stopped left. Listing them would show a size whose first page
        // is zeros, which SQLite calls "file is not a database".
        let Some(first) = first else {
            self.size = Some(0);
            return Ok(0);
        };
        let mut header = [0u8; 100];
        let n = first.len().min(100);
        header[..n].copy_from_slice(&first[..n]);
        match header_size(&header) {
            Some(s) => {
                self.size = Some(s);
                Ok(s)
            }
            None => self.listed_size(),
        }
    }

    /// Drops the buffered writes of a transaction that cannot be stored (its lease is gone,
    /// or the server refuses them): they must never reach S3 later, under another lease.
    pub fn discard_dirty(&mut self) {
        self.dirty.clear();
        self.dirty_bytes = 0;
        self.size = None;
    }

    /// Forgets the size (kept while writes are buffered: they define it).
    pub fn forget_size(&mut self) {
        if self.dirty.is_empty() {
            self.size = None;
        }
    }

    /// Records a size learnt elsewhere (for example from the open-time listing).
    pub fn set_size_hint(&mut self, size: u64) {
        self.size = Some(size);
    }

    /// The size if known without a request.
    pub fn known_size(&self) -> Option<u64> {
        self.size
    }

    /// True when at least one block exists (the `xAccess` rule of sqlite-s3vfs).
    pub fn exists(&self) -> Result<bool> {
        Ok(!self
            .store
            .list(&blocks_prefix(&self.name), Some(1))?
            .is_empty())
    }

    /// True when block 0 exists (one HEAD). For a journal this is exactly what the
    /// hot-journal rule needs: without block 0 its header reads as zeros, never hot.
    pub fn first_block_exists(&self) -> Result<bool> {
        Ok(self.store.head(&self.key(0))?.is_some())
    }

    /// The first `n` bytes of block 0, `None` when it does not exist (one ranged GET,
    /// straight from the store): for a journal, what SQLite's hot-journal rule reads.
    pub fn first_bytes(&self, n: u64) -> Result<Option<Vec<u8>>> {
        self.store.get_range(&self.key(0), 0, n)
    }

    /// The length of block `index` if it exists (one HEAD).
    pub fn block_len(&self, index: u64) -> Result<Option<u64>> {
        self.store.head(&self.key(index))
    }

    /// Fetches block 0 (one GET) into the cache with its ETag, dropping this file's other
    /// cached blocks when it changed; `None` when there is no block 0. An answer without
    /// an ETag is not from S3 (a web server at the endpoint answers any GET with a page).
    pub fn load_first_block(&mut self) -> Result<Option<Arc<Vec<u8>>>> {
        match self.store.get_if_changed(&self.key(0), None)? {
            Fetched::Found { etag: None, .. } => Err(crate::error::Error::S3 {
                op: "GET",
                bucket: self.store.bucket().to_string(),
                key: self.key(0),
                status: 200,
                code: String::new(),
                message: "the answer has no ETag, which every S3 object has".into(),
            }),
            Fetched::Found {
                data,
                etag: Some(etag),
            } => Ok(Some(self.take_first_block(data, Some(etag.into())))),
            _ => {
                CACHE.drop_file(&self.file_id);
                self.prefetch.reset(true);
                self.first_absent = true;
                Ok(None)
            }
        }
    }

    /// Caches a fresh block 0, dropping the file's other cached blocks (and what the
    /// prefetcher knew) when its header differs from the cached one.
    fn take_first_block(&mut self, data: Vec<u8>, etag: Option<Arc<str>>) -> Arc<Vec<u8>> {
        let key = self.cache_key(0);
        let same = CACHE
            .get(&key)
            .is_some_and(|c| c.get(..100) == data.get(..100));
        if !same {
            CACHE.drop_file(&self.file_id);
        }
        self.first_absent = false;
        self.prefetch.reset(!same);
        let data = Arc::new(data);
        CACHE.insert_tagged(key, data.clone(), etag);
        data
    }

    /// Starts a read transaction: asks for block 0 unless it is still the cached version
    /// (a conditional GET: a 304 answer moves no body), and when its first 100 bytes
    /// (which hold the change counter) differ from the cached copy, drops this file's
    /// cached blocks. Returns those 100 bytes (fewer when block 0 is short or missing).
    pub fn revalidate(&mut self) -> Result<Vec<u8>> {
        let key = self.cache_key(0);
        let cached = CACHE.get(&key);
        let known = cached.as_ref().and_then(|_| CACHE.etag(&key));
        let fresh = match self.store.get_if_changed(&self.key(0), known.as_deref())? {
            Fetched::NotModified => {
                self.prefetch.reset(false);
                self.first_absent = false;
                cached
            }
            Fetched::Found { data, etag } => {
                Some(self.take_first_block(data, etag.map(Into::into)))
            }
            Fetched::Missing => {
                CACHE.drop_file(&self.file_id);
                self.prefetch.reset(true);
                self.first_absent = true;
                None
            }
        };
        Ok(fresh.map_or(Vec::new(), |f| f[..f.len().min(100)].to_vec()))
    }

    /// Starts a read transaction without asking S3 (the caller knows block 0 is current):
    /// the cached header, if block 0 is cached, and the scans' positions forgotten.
    pub fn reuse_header(&mut self) -> Option<Vec<u8>> {
        let header = self.keep_header()?;
        self.prefetch.reset(false);
        Some(header)
    }

    /// Starts a read transaction on the cached block 0 (the caller knows it is current:
    /// this process holds the writer lease), if cached; the scans go on.
    pub fn keep_header(&mut self) -> Option<Vec<u8>> {
        let header = self.cached_header()?;
        // It exists: an eviction later in the transaction must not make it read as absent.
        self.first_absent = false;
        Some(header)
    }

    /// The first 100 bytes of the cached block 0, if cached: the header as this process
    /// last stored or fetched it.
    pub fn cached_header(&self) -> Option<Vec<u8>> {
        CACHE
            .get(&self.cache_key(0))
            .map(|f| f[..f.len().min(100)].to_vec())
    }

    /// Blocks by index: buffered writes first, then the cache, then parallel GETs of the
    /// rest together with `ahead` (readahead: fetched into the cache, not returned).
    /// `check`, when given, runs beside those GETs if any are sent, and its failure keeps
    /// what they fetched out of the cache (see [`BlockFile::read_checked`]).
    fn fetch(
        &self,
        indices: &[u64],
        ahead: &[u64],
        check: Option<&dyn Fn() -> Result<()>>,
    ) -> Result<Vec<Option<Arc<Vec<u8>>>>> {
        let mut out: Vec<Option<Arc<Vec<u8>>>> = Vec::with_capacity(indices.len());
        let mut missing = Vec::new();
        for (pos, &i) in indices.iter().enumerate() {
            if let Some(d) = self.dirty.get(&i) {
                out.push(Some(Arc::new(d.clone())));
            } else if let Some(c) = CACHE.get(&self.cache_key(i)) {
                out.push(Some(c));
            } else if i == 0 && self.first_absent {
                out.push(None);
            } else {
                out.push(None);
                missing.push((pos, i));
            }
        }
        let wanted: Vec<u64> = missing
            .iter()
            .map(|&(_, i)| i)
            .chain(ahead.iter().copied().filter(|&i| {
                let absent = i == 0 && self.first_absent;
                !absent && !self.dirty.contains_key(&i) && !CACHE.contains(&self.cache_key(i))
            }))
            .collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        let get_all = || par_map(&wanted, self.concurrency, |&i| self.store.get(&self.key(i)));
        let fetched = match check {
            None => get_all()?,
            Some(check) => {
                let (fetched, checked) = std::thread::scope(|s| {
                    let gets = s.spawn(get_all);
                    let checked = check();
                    (gets.join(), checked)
                });
                checked?;
                fetched.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?
            }
        };
        for (&i, data) in wanted.iter().zip(fetched) {
            if let Some(why) = self.check_block(i, data.as_deref()) {
                return Err(self.damaged(i, why));
            }
            let Some(data) = data else { continue };
            let data = Arc::new(data);
            CACHE.insert(self.cache_key(i), data.clone());
            if let Some(&(pos, _)) = missing.iter().find(|&&(_, m)| m == i) {
                out[pos] = Some(data);
            }
        }
        Ok(out)
    }

    /// Why a fetched block cannot be right, if it cannot: longer than a block, or (for a
    /// main database, inside the size the header vouches for) missing or short.
    fn check_block(&self, index: u64, data: Option<&[u8]>) -> Option<String> {
        let b = self.block_size;
        let len = data.map(|d| d.len() as u64);
        if let Some(len) = len.filter(|&l| l > b) {
            return Some(format!("{len} bytes, more than the block size {b}"));
        }
        let size = self.size.filter(|_| self.whole_blocks)?;
        let start = index * b;
        if start >= size || self.dirty.contains_key(&index) {
            return None;
        }
        let expected = (size - start).min(b);
        match len {
            None => Some(format!(
                "missing, inside the database's {size} bytes (its header says so)"
            )),
            Some(l) if l < expected => Some(format!("{l} bytes where {expected} are expected")),
            _ => None,
        }
    }

    /// How this file's blocks are laid out, for the prefetcher.
    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            blocks: self.size.map(|s| s.div_ceil(self.block_size)),
            concurrency: self.concurrency,
            budget: (CACHE.capacity() as u64 / self.block_size / 4).max(1),
        }
    }

    /// Fills `buf` from offset `off`. Missing bytes read as zeros; returns `true` when the
    /// read reached past the end of the stored data (SQLite's short read).
    pub fn read(&mut self, buf: &mut [u8], off: u64) -> Result<bool> {
        self.read_with(buf, off, None)
    }

    /// [`BlockFile::read`], asking `check` first when the read has to fetch anything (its
    /// blocks or readahead): a read served from the cache does not ask. `check` runs in
    /// parallel with the GETs (no extra round trip); when it fails, the read fails and
    /// nothing it fetched enters the cache. Returns whether `check` was asked.
    pub fn read_checked(
        &mut self,
        buf: &mut [u8],
        off: u64,
        check: &dyn Fn() -> Result<()>,
    ) -> (Result<bool>, bool) {
        let asked = std::cell::Cell::new(false);
        let noted = || {
            asked.set(true);
            check()
        };
        let read = self.read_with(buf, off, Some(&noted));
        (read, asked.get())
    }

    fn read_with(
        &mut self,
        buf: &mut [u8],
        off: u64,
        check: Option<&dyn Fn() -> Result<()>>,
    ) -> Result<bool> {
        buf.fill(0);
        if buf.is_empty() {
            return Ok(false);
        }
        let end = off + buf.len() as u64;
        let b = self.block_size;
        let (first, last) = (off / b, (end - 1) / b);
        let indices: Vec<u64> = (first..=last).collect();
        let geometry = self.geometry();
        let ahead = self.prefetch.plan(off, buf.len(), first, last, geometry);
        let blocks = self.fetch(&indices, &ahead, check)?;
        let mut short = false;
        for (&i, data) in indices.iter().zip(blocks) {
            let data: &[u8] = data.as_deref().map_or(&[], |d| d.as_slice());
            let block_start = i * b;
            let from = off.max(block_start) - block_start;
            let to = end.min(block_start + b) - block_start;
            let avail = (data.len() as u64).min(to);
            if avail > from {
                let dst = (block_start + from - off) as usize;
                buf[dst..dst + (avail - from) as usize]
                    .copy_from_slice(&data[from as usize..avail as usize]);
            }
            // Past the end of the data, unless the size says this is a hole.
            if i == last && avail < to && self.size.is_none_or(|size| end > size) {
                short = true;
            }
        }
        self.prefetch.observe(off, buf);
        Ok(short)
    }
}

mod rewrite;
mod write;

#[cfg(test)]
mod tests;
