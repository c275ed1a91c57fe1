//! The write fence: how long this process may still send writes for a database.
//!
//! S3 cannot refuse a PUT from a writer whose lease another writer has taken over, so the
//! writer refuses to send it. The lease opens the fence until `sent + term - margin`,
//! where `sent` is when the request that stored (or renewed) our lease version was sent,
//! and closes it when the lease is released or found lost. The S3 client checks the fence
//! before every attempt of every write and cuts each attempt's timeout to what is left,
//! so no write of ours is sent, and no connection of ours is still writing, after the
//! deadline. A taker-over waits for the lease's expiry plus a grace period (see
//! `lease.rs`), so the margin and the grace together cover clock skew between machines
//! and a request still in flight at the deadline.
//!
//! What this cannot cover: a process frozen (SIGSTOP, a VM pause) *while one request is
//! in flight* whose bytes the network then delivers much later. That window is one request
//! wide and at most the margin plus the grace long; the README says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One database's fence in this process, shared by its files and its lease.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// One more than the microseconds after `base` until which writes may be sent;
    /// 0 = closed.
    until_us: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            base: Instant::now(),
            until_us: AtomicU64::new(0),
        }
    }
}

impl Fence {
    /// Opens (or extends) the fence until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        let us = deadline.saturating_duration_since(self.base).as_micros() as u64;
        self.until_us.store(us + 1, Ordering::Release);
    }

    /// Closes the fence: no write may be sent until the lease is taken again.
    pub fn close(&self) {
        self.until_us.store(0, Ordering::Release);
    }

    /// The time left for writes, or `None` when the fence is closed or its time is up.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until_us.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let until = until - 1;
        let now = self.base.elapsed().as_micros() as u64;
        (until > now).then(|| Duration::from_micros(until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_closed_until_opened_and_after_its_deadline() {
        let f = Fence::default();
        assert!(f.remaining().is_none());
        f.open_until(Instant::now() + Duration::from_secs(10));
        assert!(f.remaining().unwrap() > Duration::from_secs(9));
        f.open_until(Instant::now());
        assert!(f.remaining().is_none(), "a deadline in the past is closed");
        f.open_until(Instant::now() + Duration::from_secs(10));
        f.close();
        assert!(f.remaining().is_none());
    }
}
