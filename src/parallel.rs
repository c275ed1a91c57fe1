//! Parallel I/O without an async runtime: scoped std threads pulling from a shared index.
//!
//! S3 latency, not bandwidth, dominates small-object work, so a few dozen requests in
//! flight on one keep-alive agent is where the speed comes from.

use crate::error::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Requests in flight at once for one batch. Measured on the bench endpoint (20 ms per
/// request, bench/RESULTS.md): 32 keeps the cold scan, import and deserialize at 70-80 %
/// of concurrency × block size ÷ latency with peak memory inside cache + 64 MiB; 64 moves
/// more per second but reaches only 50-70 % of its limit there (the 2-core machine and the
/// endpoint saturate) and a 50 MB scan peaks over that memory bound; 16 leaves half the
/// speed unused. S3 takes thousands of requests per second per prefix, so any of them fits.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Applies `f` to every item, up to `concurrency` at a time, and returns the results in
/// input order, or the first error in input order.
pub fn par_map<T, R, F>(items: &[T], concurrency: usize, f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let threads = concurrency.max(1).min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every slot is filled before the scope ends")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn keeps_order_and_reports_first_error() {
        let items: Vec<u32> = (0..100).collect();
        let out = par_map(&items, 8, |x| Ok(x * 2)).unwrap();
        assert_eq!(out, (0..100).map(|x| x * 2).collect::<Vec<_>>());
        let err = par_map(&items, 8, |x| {
            if *x >= 40 {
                Err(Error::Format(format!("bad {x}")))
            } else {
                Ok(*x)
            }
        })
        .unwrap_err();
        assert_eq!(err, Error::Format("bad 40".into()));
    }
}
