//! The io methods of files stored in S3 (`sqlite3_io_methods`): each converts its
//! arguments, calls the [`S3File`] inside [`FileWrapper`] under [`guard`], and writes the
//! answer back; every `unsafe` block says why it is sound.

use super::{fallible, guard, FileWrapper};
use crate::codes::{code, LockLevel};
use crate::vfs::LockResult;
use sqlite3ext_sys::{sqlite3_file, sqlite3_int64, sqlite3_io_methods};
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering;

unsafe extern "C" fn x_close(f: *mut sqlite3_file) -> c_int {
    guard(code::IOERR_CLOSE, || {
        let w = f as *mut FileWrapper;
        // SAFETY: xClose is called once per successful xOpen; the Box is ours to free.
        let file = unsafe { Box::from_raw((*w).file) };
        // SAFETY: as above; the pointer is not used after this.
        unsafe { (*w).file = std::ptr::null_mut() };
        let vfs = file.vfs();
        match file.close() {
            Ok(()) => code::OK,
            Err(e) => vfs.report(e.sqlite_code(code::IOERR_CLOSE), &e),
        }
    })
}

unsafe extern "C" fn x_read(
    f: *mut sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a buffer of `amt` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, amt as usize) };
    fallible(code::IOERR_READ, f, |file| {
        Ok(match file.read(out, off as u64)? {
            false => code::OK,
            true => code::IOERR_SHORT_READ,
        })
    })
}

unsafe extern "C" fn x_write(
    f: *mut sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes `amt` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amt as usize) };
    fallible(code::IOERR_WRITE, f, |file| {
        file.write(data, off as u64).map(|()| code::OK)
    })
}

unsafe extern "C" fn x_truncate(f: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    fallible(code::IOERR_TRUNCATE, f, |file| {
        file.truncate(size as u64).map(|()| code::OK)
    })
}

unsafe extern "C" fn x_sync(f: *mut sqlite3_file, _flags: c_int) -> c_int {
    fallible(code::IOERR_FSYNC, f, |file| file.sync().map(|()| code::OK))
}

unsafe extern "C" fn x_file_size(f: *mut sqlite3_file, p_size: *mut sqlite3_int64) -> c_int {
    fallible(code::IOERR_FSTAT, f, |file| {
        let size = file.size()?;
        // SAFETY: SQLite passes a valid out pointer.
        unsafe { *p_size = size as sqlite3_int64 };
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_lock(f: *mut sqlite3_file, level: c_int) -> c_int {
    fallible(code::IOERR_LOCK, f, |file| {
        Ok(match file.lock(LockLevel::from_c(level))? {
            LockResult::Granted => code::OK,
            LockResult::Busy(why) => {
                if let Some(why) = why {
                    file.vfs().note(code::BUSY, &why);
                }
                code::BUSY
            }
        })
    })
}

unsafe extern "C" fn x_unlock(f: *mut sqlite3_file, level: c_int) -> c_int {
    fallible(code::IOERR_UNLOCK, f, |file| {
        file.unlock(LockLevel::from_c(level)).map(|()| code::OK)
    })
}

unsafe extern "C" fn x_check_reserved_lock(f: *mut sqlite3_file, p_res_out: *mut c_int) -> c_int {
    fallible(code::IOERR_CHECKRESERVEDLOCK, f, |file| {
        let reserved = file.check_reserved()?;
        // SAFETY: SQLite passes a valid out pointer.
        unsafe { *p_res_out = reserved as c_int };
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_file_control(_f: *mut sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    code::NOTFOUND
}

/// 512, the value SQLite assumes for sqlite-s3vfs (which reports 0): the journal header
/// size follows from it, and equal values keep journals identical between the two.
unsafe extern "C" fn x_sector_size(_f: *mut sqlite3_file) -> c_int {
    512
}

/// Writes become durable in the order SQLite makes them, because a database flush
/// stores its journal first (see `journal.rs`); this lets SQLite skip its separate
/// journal syncs. The journal's bytes are the same as without it.
///
/// Overwrites are power-safe: a block is replaced whole by one PUT that carries the bytes
/// around the written range unchanged, or not at all. SQLite reads this from the database
/// file when it opens a WAL, and then does not pad each commit to a sector with repeated
/// frames. (For a rollback journal it changes nothing: the sector size SQLite assumes
/// with it is 512, the value `xSectorSize` gives anyway.)
unsafe extern "C" fn x_device_characteristics(_f: *mut sqlite3_file) -> c_int {
    code::IOCAP_SEQUENTIAL | code::IOCAP_POWERSAFE_OVERWRITE
}

// The WAL index ("shared memory") of a database in WAL mode: in this process's memory,
// per database identity (`shm.rs`). SQLite calls these on the main database's file only.

unsafe extern "C" fn x_shm_map(
    f: *mut sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    fallible(code::IOERR_SHMMAP, f, |file| {
        let p = file.shm_map(region.max(0) as usize, size.max(0) as usize, extend != 0)?;
        // SAFETY: SQLite passes a valid out pointer. The address is of a region owned by
        // the process's WAL index of this database, `size` bytes of interior-mutable
        // memory that neither moves nor is freed while this connection has it mapped
        // (only its xShmUnmap or xClose, after which SQLite no longer uses it, can drop
        // the last mapping).
        unsafe { *pp = p.map_or(std::ptr::null_mut(), |p| p as *mut c_void) };
        Ok(code::OK)
    })
}

unsafe extern "C" fn x_shm_lock(
    f: *mut sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    fallible(code::IOERR_SHMLOCK, f, |file| {
        if offset < 0 || n < 0 {
            return Ok(code::IOERR_SHMLOCK);
        }
        Ok(match file.shm_lock(offset as usize, n as usize, flags)? {
            crate::shm::ShmLock::Granted => code::OK,
            crate::shm::ShmLock::Busy => code::BUSY,
            crate::shm::ShmLock::Invalid => code::IOERR_SHMLOCK,
        })
    })
}

unsafe extern "C" fn x_shm_barrier(_f: *mut sqlite3_file) {
    std::sync::atomic::fence(Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(f: *mut sqlite3_file, _delete: c_int) -> c_int {
    fallible(code::IOERR_SHMMAP, f, |file| {
        file.shm_unmap();
        Ok(code::OK)
    })
}

pub(super) static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};
