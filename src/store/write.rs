//! Writing a file: buffered writes into the dirty blocks, the parallel flush that PUTs
//! them (checking, between rounds, that the writer may still write), truncation and
//! deletion. Block 0 of a file written again from its start goes first (`rewrite.rs`).

use super::{Block, BlockFile, CACHE};
use crate::error::Result;
use crate::parallel::par_map;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Zero-fill writes are cut into pieces of this size so a large hole never needs one
/// huge buffer.
const ZERO_FILL_CHUNK: u64 = 1 << 20;

/// Rounds of parallel PUTs between two lease checks in a long flush.
const FLUSH_ROUNDS_PER_CHECK: usize = 16;

impl BlockFile {
    /// Writes `data` at `off` into the buffer, zero-filling any hole between the current
    /// end and `off` so that every block before the last stays full.
    pub fn write(&mut self, data: &[u8], off: u64) -> Result<()> {
        let mut size = self.cached_size()?;
        while size < off {
            let n = (off - size).min(ZERO_FILL_CHUNK);
            self.write_blocks(&vec![0u8; n as usize], size, size)?;
            size += n;
            self.size = Some(size);
        }
        self.write_blocks(data, off, size)?;
        self.size = Some(size.max(off + data.len() as u64));
        Ok(())
    }

    /// Splices `data` into the dirty blocks it touches, given the current file size. A
    /// stored block is fetched only when it holds bytes outside the written range, and at
    /// most once per flush: after that it is dirty.
    fn write_blocks(&mut self, data: &[u8], off: u64, size: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let b = self.block_size;
        let end = off + data.len() as u64;
        let span = |i: u64| {
            let block_start = i * b;
            (
                off.max(block_start) - block_start,
                end.min(block_start + b) - block_start,
            )
        };
        let indices: Vec<u64> = (off / b..=(end - 1) / b).collect();
        let need_old: Vec<u64> = indices
            .iter()
            .copied()
            .filter(|&i| {
                let (from, to) = span(i);
                let existing = size.saturating_sub(i * b).min(b);
                !self.dirty.contains_key(&i) && existing > 0 && (from > 0 || to < existing)
            })
            .collect();
        let old = self.fetch(&need_old, &[], None)?;
        for (i, block) in need_old.iter().zip(old) {
            let block = block.map(|d| d.as_ref().clone()).unwrap_or_default();
            self.dirty_bytes += block.len();
            self.dirty.insert(*i, block);
        }
        // Block 0 is this writer's own from here on (see `first_absent`).
        if indices.first() == Some(&0) {
            self.first_absent = false;
        }
        for i in indices {
            let (from, to) = span(i);
            let piece = &data[(i * b + from - off) as usize..(i * b + to - off) as usize];
            let block = self.dirty.entry(i).or_default();
            let before = block.len();
            if (block.len() as u64) < to {
                block.resize(to as usize, 0);
            }
            block[from as usize..to as usize].copy_from_slice(piece);
            self.dirty_bytes += block.len() - before;
        }
        Ok(())
    }

    /// Bytes waiting for a flush.
    pub fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// PUTs every dirty block in parallel and returns when all are stored; on failure the
    /// blocks stay dirty, so a later flush retries them.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_with(&|| Ok(()))
    }

    /// Like [`Self::flush`], calling `keep_going` before the first block is sent and again
    /// every `concurrency` × [`FLUSH_ROUNDS_PER_CHECK`] blocks: a writer renews its lease there, so
    /// a flush longer than a lease term keeps its fence open (and stops, with the blocks not
    /// yet stored still dirty, if the lease was lost).
    ///
    /// All blocks go through one pool of `concurrency` workers: a check is made by the
    /// worker that reaches it while the others go on, so no round waits for the slowest PUT
    /// of the one before, and a large transaction takes about ceil(blocks / concurrency)
    /// round trips.
    pub fn flush_with(&mut self, keep_going: &(dyn Fn() -> Result<()> + Sync)) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        // A file written again from its start stores block 0 alone first (`rewrite.rs`).
        self.before_flush(keep_going)?;
        if self.dirty.is_empty() {
            self.after_flush();
            return Ok(());
        }
        // Before any block is sent, as every flush always did: a lease near its end is
        // renewed first, and a lost one stops the flush with nothing sent.
        keep_going()?;
        let check_every = self.concurrency * FLUSH_ROUNDS_PER_CHECK;
        let blocks: Vec<(u64, Vec<u8>)> = std::mem::take(&mut self.dirty).into_iter().collect();
        let order: Vec<usize> = (0..blocks.len()).collect();
        let stop = AtomicBool::new(false);
        let outcomes = par_map(&order, self.concurrency, |&n| {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let (i, data) = &blocks[n];
            let sent = if n > 0 && n % check_every == 0 {
                keep_going()
            } else {
                Ok(())
            };
            let sent = sent.and_then(|_| self.store.put(&self.key(*i), data));
            if sent.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            Ok(Some(sent))
        })?;
        let mut first_error = None;
        for ((i, data), outcome) in blocks.into_iter().zip(outcomes) {
            match outcome {
                Some(Ok(())) => {
                    self.dirty_bytes = self.dirty_bytes.saturating_sub(data.len());
                    // S3's ETag of a single-PUT object is the MD5 of its bytes: block 0
                    // is then revalidated with a 304. A wrong guess (KMS) only costs a
                    // full GET.
                    let etag = (i == 0).then(|| format!("\"{:x}\"", md5::compute(&data)).into());
                    CACHE.insert_tagged(self.cache_key(i), Arc::new(data), etag);
                }
                // Not stored: kept for a later flush (under a lease that still holds).
                failed => {
                    if let Some(Err(e)) = failed {
                        first_error.get_or_insert(e);
                    }
                    self.dirty.insert(i, data);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                self.after_flush();
                Ok(())
            }
        }
    }

    /// PUTs the dirty blocks in parallel, all or (on an error) none counted as stored:
    /// for a restarted file's block 0 alone (`rewrite.rs`).
    pub(super) fn flush_batch(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let blocks: Vec<(u64, Vec<u8>)> = std::mem::take(&mut self.dirty).into_iter().collect();
        let result = par_map(&blocks, self.concurrency, |(i, data)| {
            self.store.put(&self.key(*i), data)
        });
        match result {
            Ok(_) => {
                let stored: usize = blocks.iter().map(|(_, d)| d.len()).sum();
                self.dirty_bytes = self.dirty_bytes.saturating_sub(stored);
                for (i, data) in blocks {
                    let etag = (i == 0).then(|| format!("\"{:x}\"", md5::compute(&data)).into());
                    CACHE.insert_tagged(self.cache_key(i), Arc::new(data), etag);
                }
                Ok(())
            }
            Err(e) => {
                self.dirty = blocks.into_iter().collect();
                Err(e)
            }
        }
    }

    /// Shrinks the file to `new_size` (growing is a no-op, as in sqlite-s3vfs). With
    /// `trust_size`, the known size says which blocks exist and no listing is needed.
    pub fn truncate(&mut self, new_size: u64, trust_size: bool) -> Result<()> {
        let b = self.block_size;
        let keep_blocks = new_size.div_ceil(b);
        self.dirty.retain(|&i, _| i < keep_blocks);
        if let Some(last) = self.dirty.get_mut(&(keep_blocks.saturating_sub(1))) {
            last.truncate((new_size - (keep_blocks - 1) * b).min(b) as usize);
        }
        self.dirty_bytes = self.dirty.values().map(Vec::len).sum();
        self.flush()?;
        let blocks = match (trust_size, self.size) {
            (true, Some(size)) => {
                let n = size.div_ceil(b);
                (0..n)
                    .map(|index| Block {
                        index,
                        len: if index + 1 == n { size - index * b } else { b },
                    })
                    .collect()
            }
            _ => self.blocks()?,
        };
        let mut doomed = Vec::new();
        let mut total = 0;
        for blk in &blocks {
            let start = blk.index * b;
            if start >= new_size {
                doomed.push(blk.index);
            } else if start + blk.len > new_size {
                let keep = (new_size - start) as usize;
                let mut data = self
                    .fetch(&[blk.index], &[], None)?
                    .remove(0)
                    .map(|d| d.as_ref().clone())
                    .unwrap_or_default();
                data.resize(keep, 0);
                self.store.put(&self.key(blk.index), &data)?;
                CACHE.insert(self.cache_key(blk.index), Arc::new(data));
                total += keep as u64;
            } else {
                total += blk.len;
            }
        }
        self.delete_blocks(&doomed)?;
        self.size = Some(total);
        Ok(())
    }

    /// Deletes every block of the file, block 0 first (see [`Self::delete_rest`]).
    pub fn delete_all(&mut self, known_size: Option<u64>) -> Result<()> {
        self.delete_first()?;
        self.delete_rest(known_size)
    }

    /// Deletes block 0 alone. For a rollback journal this is the commit point: without
    /// block 0 the journal header reads as zeros, which SQLite never treats as hot, so
    /// the remaining blocks can go later, and a crash in between loses nothing.
    pub fn delete_first(&mut self) -> Result<()> {
        self.dirty.clear();
        self.dirty_bytes = 0;
        CACHE.remove(&self.cache_key(0));
        self.store.delete(&self.key(0))?;
        self.size = None;
        Ok(())
    }

    /// Deletes the blocks after block 0: those below `known_size` when given, else every
    /// listed one. A batch delete is not atomic; it is safe only once block 0 is gone.
    pub fn delete_rest(&mut self, known_size: Option<u64>) -> Result<()> {
        self.delete_from(1, known_size)
    }

    /// Deletes the blocks from index `first` on (at least 1: block 0 goes by
    /// [`Self::delete_first`]), below `known_size` when given, else every listed one.
    pub fn delete_from(&mut self, first: u64, known_size: Option<u64>) -> Result<()> {
        let first = first.max(1);
        let indices: Vec<u64> = match known_size {
            Some(size) => (first..size.div_ceil(self.block_size)).collect(),
            None => self
                .blocks()?
                .iter()
                .map(|b| b.index)
                .filter(|&i| i >= first)
                .collect(),
        };
        self.delete_blocks(&indices)?;
        self.size = Some(0);
        Ok(())
    }

    /// Deletes blocks, block 0 alone and first: a journal whose first block is gone reads
    /// as a zero header, which SQLite never treats as hot. A batch delete is not atomic,
    /// and could otherwise leave a valid header in front of missing records.
    pub(super) fn delete_blocks(&self, indices: &[u64]) -> Result<()> {
        let mut rest: Vec<String> = Vec::with_capacity(indices.len());
        for &i in indices {
            CACHE.remove(&self.cache_key(i));
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
