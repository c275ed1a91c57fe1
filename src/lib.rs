//! s3vfs: a loadable SQLite extension that keeps databases in S3, readable and writable in
//! place, in the block layout of the Python package `sqlite-s3vfs`.
//!
//! Layers, each in its own file, data flowing one way:
//! `ext` (entry point, SQL functions) → `vfs` (all C callbacks) → `store` (blocks) →
//! `s3` (signed HTTP requests); `config` resolves settings and `error` is the one error type.

pub mod cache;
pub mod config;
pub mod error;
pub mod ext;
pub mod journal;
pub mod lease;
pub mod lock;
pub mod parallel;
pub mod readers;
pub mod s3;
pub mod stats;
pub mod store;
pub mod transfer;
pub mod vfs;
