//! Request counters for the side endpoint `/_stats`.
//!
//! Critical-path round trips: the server tracks the union of its busy time (every instant at
//! which at least one S3 request is in flight, the added delay included) and divides it by
//! the delay. N requests one after another give N; N requests all in flight together give
//! about 1; a client that idles between requests is not charged for the idle time. With no
//! delay the figure is not defined and reported as null.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest per-request log kept; beyond it requests are still counted, only not logged.
const LOG_CAP: usize = 2_000_000;

#[derive(Default, Clone, Copy)]
struct Kind {
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    errors: u64,
}

struct Record {
    kind: &'static str,
    start: Duration,
    end: Duration,
    bytes_in: u64,
    bytes_out: u64,
    status: u16,
}

struct Inner {
    epoch: Instant,
    kinds: BTreeMap<&'static str, Kind>,
    in_flight: u64,
    max_in_flight: u64,
    busy_since: Option<Instant>,
    busy: Duration,
    log: Vec<Record>,
    log_dropped: u64,
}

pub struct Stats {
    inner: Mutex<Inner>,
}

impl Stats {
    pub fn new() -> Self {
        let inner = Inner {
            epoch: Instant::now(),
            kinds: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: 0,
            busy_since: None,
            busy: Duration::ZERO,
            log: Vec::new(),
            log_dropped: 0,
        };
        Stats {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request arrived; returns its start time for `end`.
    pub fn begin(&self) -> Instant {
        let now = Instant::now();
        let mut s = self.lock();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        if s.in_flight == 1 {
            s.busy_since = Some(now);
        }
        now
    }

    pub fn end(
        &self,
        start: Instant,
        kind: &'static str,
        bytes_in: u64,
        bytes_out: u64,
        status: u16,
    ) {
        let now = Instant::now();
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            if let Some(since) = s.busy_since.take() {
                s.busy += now - since;
            }
        }
        let k = s.kinds.entry(kind).or_default();
        k.requests += 1;
        k.bytes_in += bytes_in;
        k.bytes_out += bytes_out;
        if status >= 400 {
            k.errors += 1;
        }
        // A request that began before the last reset is logged from the reset on.
        let epoch = s.epoch;
        if s.log.len() < LOG_CAP {
            let rec = Record {
                kind,
                start: start.saturating_duration_since(epoch),
                end: now - epoch,
                bytes_in,
                bytes_out,
                status,
            };
            s.log.push(rec);
        } else {
            s.log_dropped += 1;
        }
    }

    pub fn reset(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.epoch = now;
        s.kinds.clear();
        s.max_in_flight = s.in_flight;
        s.busy_since = (s.in_flight > 0).then_some(now);
        s.busy = Duration::ZERO;
        s.log = Vec::new();
        s.log_dropped = 0;
    }

    /// The counters as JSON; with `log`, every request since the reset as
    /// `[kind, start s, end s, bytes in, bytes out, status]`.
    pub fn json(&self, delay: Duration, log: bool) -> String {
        let now = Instant::now();
        let s = self.lock();
        let busy = s.busy + s.busy_since.map_or(Duration::ZERO, |b| now - b);
        let mut total = Kind::default();
        let mut out = String::from("{\"requests\":{");
        for (i, (name, k)) in s.kinds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{}", k.requests);
            total.requests += k.requests;
            total.bytes_in += k.bytes_in;
            total.bytes_out += k.bytes_out;
            total.errors += k.errors;
        }
        out.push_str("},\"bytes_in_by_kind\":{");
        for (i, (name, k)) in s.kinds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{}", k.bytes_in);
        }
        out.push_str("},\"bytes_out_by_kind\":{");
        for (i, (name, k)) in s.kinds.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{name}\":{}", k.bytes_out);
        }
        let round_trips = if delay.is_zero() {
            "null".to_owned()
        } else {
            format!("{:.2}", busy.as_secs_f64() / delay.as_secs_f64())
        };
        let _ = write!(
            out,
            "}},\"total_requests\":{},\"errors\":{},\"bytes_in\":{},\"bytes_out\":{},\"in_flight\":{},\
             \"max_in_flight\":{},\"busy_seconds\":{:.6},\"elapsed_seconds\":{:.6},\"delay_ms\":{},\
             \"critical_path_round_trips\":{round_trips},\"log_dropped\":{}",
            total.requests,
            total.errors,
            total.bytes_in,
            total.bytes_out,
            s.in_flight,
            s.max_in_flight,
            busy.as_secs_f64(),
            (now - s.epoch).as_secs_f64(),
            delay.as_secs_f64() * 1000.0,
            s.log_dropped,
        );
        if log {
            out.push_str(",\"log\":[");
            for (i, r) in s.log.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(
                    out,
                    "{sep}[\"{}\",{:.6},{:.6},{},{},{}]",
                    r.kind,
                    r.start.as_secs_f64(),
                    r.end.as_secs_f64(),
                    r.bytes_in,
                    r.bytes_out,
                    r.status
                );
            }
            out.push(']');
        }
        out.push('}');
        out
    }
}
