//! The WAL index ("shared memory") of databases in WAL mode, in process memory.
//!
//! SQLite keeps a WAL database's index of frames in memory that every connection to the
//! database maps (`xShmMap`) and coordinates through eight lock slots (`xShmLock`). The unix
//! VFS puts that memory in a `-shm` file so that processes on one machine share it; a
//! database in S3 has no such file, so the index lives here, in this process, one [`Shm`]
//! per database identity. Other processes never see it: while a process has a WAL database
//! open it holds the database's writer lease, and everyone else waits (`vfs.rs`).
//!
//! - Regions are 32 KiB (SQLite's size) and allocated on demand, zeroed. Their memory never
//!   moves while mapped: SQLite keeps the pointers. A region is an array of `AtomicU8`, so
//!   the bytes SQLite reads and writes through those pointers from several threads are
//!   interior-mutable memory of ours (SQLite orders its own accesses with `xShmBarrier` and
//!   the lock slots).
//! - The memory is kept while any connection of the process has it mapped, and dropped
//!   when the last one unmaps (or closes): the next connection then starts from a zeroed
//!   index, which SQLite rebuilds from the WAL (its recovery), as it does for a fresh
//!   `-shm` file.
//! - Locks follow `unixShmLock`: a slot is held shared by any number of connections or
//!   exclusively by one; asking for what another connection holds in a conflicting way is
//!   `SQLITE_BUSY` at once (SQLite retries itself), and an exclusive request on several
//!   slots gets all of them or none.
//!
//! This file is safe code: it hands out addresses, and only `ffi.rs` gives them to SQLite.

use std::collections::HashMap;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, MutexGuard};

/// SQLite's number of WAL-index lock slots (`SQLITE_SHM_NLOCK`).
pub const NLOCK: usize = 8;

/// `xShmLock` flags (sqlite3.h).
pub mod flag {
    pub const UNLOCK: i32 = 1;
    pub const LOCK: i32 = 2;
    pub const SHARED: i32 = 4;
    pub const EXCLUSIVE: i32 = 8;
}

/// One connection (an open database file handle) as the WAL index knows it.
pub type Conn = u64;

/// What asking for an `xShmLock` came to.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ShmLock {
    Granted,
    /// Another connection holds the slot in a conflicting way.
    Busy,
    /// The request is not one SQLite makes (a range outside the slots, bad flags).
    Invalid,
}

/// The WAL index of one database in this process.
#[derive(Default)]
pub struct Shm {
    region_size: usize,
    regions: Vec<Box<[AtomicU8]>>,
    /// Connections that have mapped the index.
    mapped: Vec<Conn>,
    /// Per slot: how many connections hold it shared, and the exclusive holder.
    shared: [u32; NLOCK],
    exclusive: [Option<Conn>; NLOCK],
    /// Per connection: the slots it holds shared (bit i = slot i).
    shared_by: HashMap<Conn, u8>,
}

impl Shm {
    /// The address of region `index` for connection `conn`, allocating it (and any before
    /// it) when `extend`; `None` when it does not exist and may not be created. A region
    /// size other than the first one asked for is refused (`Err`): SQLite always uses one.
    pub fn map(
        &mut self,
        conn: Conn,
        index: usize,
        size: usize,
        extend: bool,
    ) -> Result<Option<*mut u8>, String> {
        if size == 0 {
            return Err("xShmMap with a region size of 0".into());
        }
        if self.regions.is_empty() {
            self.region_size = size;
        } else if size != self.region_size {
            return Err(format!(
                "xShmMap asked for {size}-byte regions after {}-byte ones",
                self.region_size
            ));
        }
        if !self.mapped.contains(&conn) {
            self.mapped.push(conn);
        }
        if index >= self.regions.len() {
            if !extend {
                return Ok(None);
            }
            while self.regions.len() <= index {
                self.regions
                    .push((0..size).map(|_| AtomicU8::new(0)).collect());
            }
        }
        // An `AtomicU8` has the size and alignment of a `u8`, and its bytes may be written
        // through shared references: this address is good for `size` bytes of reads and
        // writes from any thread for as long as the region lives.
        Ok(Some(self.regions[index].as_ptr() as *mut u8))
    }

    /// How many regions exist.
    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    /// `xShmLock` for connection `conn`: `n` slots from `offset`, with SQLite's flags.
    pub fn lock(&mut self, conn: Conn, offset: usize, n: usize, flags: i32) -> ShmLock {
        use flag::*;
        if n == 0 || offset + n > NLOCK {
            return ShmLock::Invalid;
        }
        let range = offset..offset + n;
        let mine = self.shared_by.get(&conn).copied().unwrap_or(0);
        match flags {
            f if f == UNLOCK | SHARED || f == UNLOCK | EXCLUSIVE => {
                let mut mask = mine;
                for i in range {
                    if mask & (1 << i) != 0 {
                        mask &= !(1 << i);
                        self.shared[i] -= 1;
                    }
                    if self.exclusive[i] == Some(conn) {
                        self.exclusive[i] = None;
                    }
                }
                self.set_shared_mask(conn, mask);
                ShmLock::Granted
            }
            f if f == LOCK | SHARED => {
                if n != 1 {
                    return ShmLock::Invalid;
                }
                let i = offset;
                if mine & (1 << i) != 0 || self.exclusive[i] == Some(conn) {
                    return ShmLock::Granted;
                }
                if self.exclusive[i].is_some() {
                    return ShmLock::Busy;
                }
                self.shared[i] += 1;
                self.set_shared_mask(conn, mine | (1 << i));
                ShmLock::Granted
            }
            f if f == LOCK | EXCLUSIVE => {
                for i in range.clone() {
                    let others_shared = self.shared[i] - u32::from(mine & (1 << i) != 0);
                    let other_excl = self.exclusive[i].is_some_and(|c| c != conn);
                    if others_shared > 0 || other_excl {
                        return ShmLock::Busy;
                    }
                }
                for i in range {
                    self.exclusive[i] = Some(conn);
                }
                ShmLock::Granted
            }
            _ => ShmLock::Invalid,
        }
    }

    fn set_shared_mask(&mut self, conn: Conn, mask: u8) {
        if mask == 0 {
            self.shared_by.remove(&conn);
        } else {
            self.shared_by.insert(conn, mask);
        }
    }

    /// Forgets connection `conn`: its locks and its mapping. True when no connection has
    /// the index mapped any more.
    pub fn unmap(&mut self, conn: Conn) -> bool {
        self.lock(conn, 0, NLOCK, flag::UNLOCK | flag::EXCLUSIVE);
        self.mapped.retain(|&c| c != conn);
        self.mapped.is_empty()
    }

    /// Whether connection `conn` has the index mapped.
    pub fn is_mapped_by(&self, conn: Conn) -> bool {
        self.mapped.contains(&conn)
    }
}

/// The WAL indexes of the process, by database identity. Owned by the VFS.
#[derive(Default)]
pub struct ShmTable {
    nodes: Mutex<HashMap<Arc<str>, Arc<Mutex<Shm>>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ShmTable {
    /// The WAL index of database `db`, made empty if it has none.
    pub fn get(&self, db: &Arc<str>) -> Arc<Mutex<Shm>> {
        locked(&self.nodes).entry(db.clone()).or_default().clone()
    }

    /// The WAL index of database `db`, if the process has one.
    pub fn existing(&self, db: &Arc<str>) -> Option<Arc<Mutex<Shm>>> {
        locked(&self.nodes).get(db).cloned()
    }

    /// Connection `conn` of database `db` unmaps (or closes): its locks go, and when it was
    /// the last connection mapping the index, the memory goes too. True when it did.
    pub fn unmap(&self, db: &Arc<str>, conn: Conn) -> bool {
        let mut nodes = locked(&self.nodes);
        let Some(node) = nodes.get(db).cloned() else {
            return false;
        };
        let last = locked(&node).unmap(conn);
        if last {
            nodes.remove(db);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::flag::*;
    use super::*;

    const SZ: usize = 32768;

    #[test]
    fn regions_are_made_on_demand_and_keep_their_address() {
        let mut s = Shm::default();
        assert_eq!(s.map(1, 0, SZ, false).unwrap(), None);
        let p0 = s.map(1, 0, SZ, true).unwrap().unwrap();
        let p2 = s.map(1, 2, SZ, true).unwrap().unwrap();
        assert_eq!(s.regions(), 3);
        for i in 3..20 {
            s.map(2, i, SZ, true).unwrap();
        }
        assert_eq!(s.map(2, 0, SZ, false).unwrap(), Some(p0), "never moves");
        assert_eq!(s.map(1, 2, SZ, false).unwrap(), Some(p2));
        assert!(s.map(1, 0, 4096, true).is_err(), "one region size");
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 3, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(2, 3, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(3, 3, 1, LOCK | EXCLUSIVE), ShmLock::Busy);
        assert_eq!(s.lock(1, 3, 1, UNLOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(3, 3, 1, LOCK | EXCLUSIVE), ShmLock::Busy);
        assert_eq!(s.lock(2, 3, 1, UNLOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(3, 3, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(1, 3, 1, LOCK | SHARED), ShmLock::Busy);
        assert_eq!(s.lock(3, 3, 1, UNLOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(1, 3, 1, LOCK | SHARED), ShmLock::Granted);
    }

    #[test]
    fn a_second_shared_lock_of_the_same_connection_counts_once() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 0, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(1, 0, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(1, 0, 1, UNLOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(2, 0, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
    }

    #[test]
    fn an_exclusive_range_is_all_or_nothing() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 5, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(2, 3, 5, LOCK | EXCLUSIVE), ShmLock::Busy);
        // Nothing of the range was taken: slot 3 is still free for others.
        assert_eq!(s.lock(1, 3, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(1, 3, 1, UNLOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(1, 5, 1, UNLOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(2, 3, 5, LOCK | EXCLUSIVE), ShmLock::Granted);
        for i in 3..8 {
            assert_eq!(s.lock(1, i, 1, LOCK | SHARED), ShmLock::Busy);
        }
        assert_eq!(s.lock(1, 2, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(2, 3, 5, UNLOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(1, 7, 1, LOCK | SHARED), ShmLock::Granted);
    }

    #[test]
    fn an_exclusive_lock_excludes_another_exclusive_one_but_not_its_holder() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 0, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(2, 0, 1, LOCK | EXCLUSIVE), ShmLock::Busy);
        assert_eq!(s.lock(1, 0, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(2, 1, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
    }

    #[test]
    fn a_connection_may_upgrade_its_own_shared_lock() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 4, 1, LOCK | SHARED), ShmLock::Granted);
        assert_eq!(s.lock(1, 4, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(2, 4, 1, LOCK | SHARED), ShmLock::Busy);
        assert_eq!(s.lock(1, 4, 1, UNLOCK | EXCLUSIVE), ShmLock::Granted);
        assert_eq!(s.lock(2, 4, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut s = Shm::default();
        assert_eq!(s.lock(1, 7, 2, LOCK | EXCLUSIVE), ShmLock::Invalid);
        assert_eq!(s.lock(1, 0, 2, LOCK | SHARED), ShmLock::Invalid);
        assert_eq!(s.lock(1, 0, 1, LOCK), ShmLock::Invalid);
        assert_eq!(s.lock(1, 0, 0, LOCK | SHARED), ShmLock::Invalid);
    }

    #[test]
    fn unmapping_drops_locks_and_the_last_one_drops_the_memory() {
        let t = ShmTable::default();
        let db: Arc<str> = "e|b|d".into();
        {
            let n = t.get(&db);
            let mut s = n.lock().unwrap();
            s.map(1, 0, SZ, true).unwrap();
            s.map(2, 0, SZ, true).unwrap();
            assert_eq!(s.lock(1, 0, 1, LOCK | EXCLUSIVE), ShmLock::Granted);
            assert_eq!(s.lock(1, 3, 1, LOCK | SHARED), ShmLock::Granted);
        }
        assert!(!t.unmap(&db, 1));
        {
            let n = t.get(&db);
            let mut s = n.lock().unwrap();
            assert_eq!(s.regions(), 1, "kept while connection 2 maps it");
            assert_eq!(s.lock(2, 0, 8, LOCK | EXCLUSIVE), ShmLock::Granted);
        }
        assert!(t.unmap(&db, 2));
        assert!(t.existing(&db).is_none());
        assert_eq!(t.get(&db).lock().unwrap().regions(), 0, "fresh and empty");
    }
}
