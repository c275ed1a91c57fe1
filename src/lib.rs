//! s3vfs: a loadable SQLite extension that keeps databases in S3, readable and writable in
//! place, in the block layout of the Python package `sqlite-s3vfs`.
//!
//! Layers, each in its own file, data flowing one way (a module uses only those before it):
//!
//! 1. `codes` (SQLite's vocabulary), `error` (the one error type and its SQLite code),
//!    `logging` (where log lines go), `fence` (write deadlines), `stats`, `cache` (the
//!    process-wide block cache), `parallel`
//! 2. `config` (URI + environment + AWS files → where a database lives and its settings)
//! 3. `s3` (signed HTTP requests to one bucket)
//! 4. `object_store` (the storage seam: S3, or memory in unit tests)
//! 5. `layout` (every key of a database), `header` (the SQLite header), `prefetch`
//!    (which blocks to fetch ahead of SQLite's reads)
//! 6. `store` (files as blocks), `versions` (s3vfs's own old versions in a versioned
//!    bucket), `lease` (the writer lease), `readers` (reader marks)
//! 7. `lock` (SQLite's locks over the lease), `journal` (journal order and cleanup),
//!    `shm` (the WAL index of databases in WAL mode, in process memory)
//! 8. `vfs` (the safe VFS object: open files, identity, policy), `transfer`, `admin`
//! 9. `ffi` (the C callbacks: the only `unsafe` beside the entry point), `ext` (entry
//!    point and SQL functions)

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod admin;
pub mod cache;
pub mod codes;
pub mod config;
pub mod error;
pub mod ext;
pub mod fence;
pub mod ffi;
pub mod header;
pub mod journal;
pub mod layout;
pub mod lease;
pub mod lock;
pub mod logging;
pub mod object_store;
pub mod parallel;
pub mod prefetch;
pub mod readers;
pub mod s3;
pub mod shm;
pub mod stats;
pub mod store;
pub mod transfer;
pub mod versions;
pub mod vfs;

#[cfg(test)]
mod tests;
