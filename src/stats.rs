//! Process-wide request counters, read by `s3vfs_stats()`.
//!
//! Counters are plain relaxed atomics: they are for monitoring and for tests that count
//! requests, not for synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// Request prices in US dollars per 1,000 requests, by S3's request classes: class A
/// (PUT, COPY, POST, LIST) and class B (GET, HEAD, and the rest but DELETE, which is free).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prices {
    pub class_a: f64,
    pub class_b: f64,
}

impl Default for Prices {
    /// S3 Standard in us-east-1.
    fn default() -> Prices {
        Prices {
            class_a: 0.005,
            class_b: 0.0004,
        }
    }
}

static PRICES: OnceLock<Prices> = OnceLock::new();

/// Sets the price table `cost_usd` uses (once, from the process settings).
pub fn set_prices(p: Prices) {
    let _ = PRICES.set(p);
}

/// The price table in use.
pub fn prices() -> Prices {
    PRICES.get().copied().unwrap_or_default()
}

/// The estimated price of these requests: PUTs (and POSTs, counted with them) and LISTs
/// are class A, GETs and HEADs class B, DELETEs free.
pub fn cost_usd(p: Prices, put: u64, list: u64, get: u64, head: u64) -> f64 {
    ((put + list) as f64 * p.class_a + (get + head) as f64 * p.class_b) / 1000.0
}

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
    let p = prices();
    let cost = cost_usd(p, get(&c.put), get(&c.list), get(&c.get), get(&c.head));
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
        "cost_usd": cost,
        "price_per_1000": {"class_a": p.class_a, "class_b": p.class_b},
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_follows_the_request_classes() {
        let p = Prices::default();
        assert_eq!(cost_usd(p, 0, 0, 0, 0), 0.0);
        // 1,000 PUTs = $0.005; 1,000 LISTs the same; 1,000 GETs or HEADs = $0.0004.
        assert!((cost_usd(p, 1000, 1000, 500, 500) - 0.0104).abs() < 1e-12);
        let r2 = Prices {
            class_a: 0.0045,
            class_b: 0.00036,
        };
        assert!((cost_usd(r2, 2000, 0, 1000, 0) - 0.00936).abs() < 1e-12);
    }
}
