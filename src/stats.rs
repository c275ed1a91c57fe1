//! Process-wide request counters, read by `s3vfs_stats()`.
//!
//! Counters are plain relaxed atomics: they are for monitoring and for tests that count
//! requests, not for synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The kinds of S3 request the client issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Delete,
    List,
    Head,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Delete => "DELETE",
            Op::List => "LIST",
            Op::Head => "HEAD",
        }
    }
}

#[derive(Default)]
struct Counters {
    get: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    head: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

static COUNTERS: Counters = Counters {
    get: AtomicU64::new(0),
    put: AtomicU64::new(0),
    delete: AtomicU64::new(0),
    list: AtomicU64::new(0),
    head: AtomicU64::new(0),
    bytes_up: AtomicU64::new(0),
    bytes_down: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    cache_hits: AtomicU64::new(0),
    cache_misses: AtomicU64::new(0),
};

/// Counts one request sent (each retry is counted again, and in `retries`).
pub fn request(op: Op, bytes_up: usize) {
    let c = match op {
        Op::Get => &COUNTERS.get,
        Op::Put => &COUNTERS.put,
        Op::Delete => &COUNTERS.delete,
        Op::List => &COUNTERS.list,
        Op::Head => &COUNTERS.head,
    };
    c.fetch_add(1, Relaxed);
    COUNTERS.bytes_up.fetch_add(bytes_up as u64, Relaxed);
}

pub fn bytes_down(n: usize) {
    COUNTERS.bytes_down.fetch_add(n as u64, Relaxed);
}

pub fn retry() {
    COUNTERS.retries.fetch_add(1, Relaxed);
}

pub fn cache_hit() {
    COUNTERS.cache_hits.fetch_add(1, Relaxed);
}

pub fn cache_miss() {
    COUNTERS.cache_misses.fetch_add(1, Relaxed);
}

pub fn error() {
    COUNTERS.errors.fetch_add(1, Relaxed);
}

/// A snapshot as JSON text.
pub fn json() -> String {
    let get = |a: &AtomicU64| a.load(Relaxed);
    let c = &COUNTERS;
    serde_json::json!({
        "get": get(&c.get),
        "put": get(&c.put),
        "delete": get(&c.delete),
        "list": get(&c.list),
        "head": get(&c.head),
        "requests": get(&c.get) + get(&c.put) + get(&c.delete) + get(&c.list) + get(&c.head),
        "bytes_up": get(&c.bytes_up),
        "bytes_down": get(&c.bytes_down),
        "retries": get(&c.retries),
        "errors": get(&c.errors),
        "cache_hits": get(&c.cache_hits),
        "cache_misses": get(&c.cache_misses),
    })
    .to_string()
}

pub fn reset() {
    let c = &COUNTERS;
    for a in [
        &c.get,
        &c.put,
        &c.delete,
        &c.list,
        &c.head,
        &c.bytes_up,
        &c.bytes_down,
        &c.retries,
        &c.errors,
        &c.cache_hits,
        &c.cache_misses,
    ] {
        a.store(0, Relaxed);
    }
}
