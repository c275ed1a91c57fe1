//! Progress on stderr while copying, and the summary line after it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use s3vfs::transfer::Progress;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Requests sent so far by this process.
fn requests() -> u64 {
    serde_json::from_str::<serde_json::Value>(&s3vfs::stats::json())
        .ok()
        .and_then(|v| v["requests"].as_u64())
        .unwrap_or(0)
}

/// One summary line: size, time, throughput, requests.
pub fn summary(bytes: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    format!(
        "{bytes} bytes in {secs:.2} s ({:.1} MB/s, {} requests)",
        mb / secs.max(1e-9),
        requests()
    )
}

/// Progress on stderr: a bar on a terminal; with `--progress` elsewhere (a log), a plain
/// line at most once a second; else nothing.
pub enum Bar {
    Off,
    Terminal(ProgressBar),
    Lines {
        verb: String,
        total: AtomicU64,
        done: AtomicU64,
        last: Mutex<Instant>,
    },
}

impl Bar {
    pub fn new(verb: &str, forced: bool) -> Bar {
        if !std::io::stderr().is_terminal() {
            return match forced {
                true => Bar::Lines {
                    verb: verb.to_string(),
                    total: AtomicU64::new(0),
                    done: AtomicU64::new(0),
                    last: Mutex::new(Instant::now()),
                },
                false => Bar::Off,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(verb.to_string());
        Bar::Terminal(bar)
    }

    pub fn done(&self) {
        match self {
            Bar::Terminal(b) => b.finish_and_clear(),
            Bar::Lines { .. } => self.line(),
            Bar::Off => {}
        }
    }

    fn line(&self) {
        if let Bar::Lines {
            verb, total, done, ..
        } = self
        {
            let (total, done) = (total.load(Relaxed), done.load(Relaxed));
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprintln!("{verb}: {pct}% ({done} of {total} bytes)");
        }
    }
}

impl Progress for Bar {
    fn start(&self, size: u64) {
        match self {
            Bar::Terminal(b) => {
                b.set_length(size);
                b.set_position(0);
            }
            Bar::Lines { total, done, .. } => {
                total.store(size, Relaxed);
                done.store(0, Relaxed);
            }
            Bar::Off => {}
        }
    }

    fn advance(&self, bytes: u64) {
        match self {
            Bar::Terminal(b) => b.inc(bytes),
            Bar::Lines { done, last, .. } => {
                done.fetch_add(bytes, Relaxed);
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed().as_secs() >= 1 {
                    *last = Instant::now();
                    self.line();
                }
            }
            Bar::Off => {}
        }
    }
}
