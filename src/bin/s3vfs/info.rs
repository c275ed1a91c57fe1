//! `s3vfs info`: one database's header, size, block size, journal mode, journal, WAL and
//! lease, as [`admin::describe`] reads them.

use crate::options::{database, S3Options};
use s3vfs::admin::{self, JournalState, LeaseState};
use s3vfs::error::Result;

pub fn run(s3: &S3Options, url: &str) -> Result<()> {
    let db = database(s3, url, None)?;
    let name = db.url();
    let info = admin::describe(&db)?;
    let h = &info.header;
    let block_size = match info.single_block {
        true => format!("{} or more (the database is one block)", info.block_size),
        false => format!("{} ({} blocks)", info.block_size, info.blocks()),
    };
    let journal = match info.journal {
        JournalState::None => "none".to_string(),
        JournalState::Hot => format!(
            "present and hot: a writer is committing, or crashed (the next writer rolls it back) ({name}-journal/)"
        ),
        JournalState::NotHot => {
            format!("present, not hot (a zeroed or partly deleted journal) ({name}-journal/)")
        }
    };
    let wal_mode = h.is_wal();
    let wal = match info.wal {
        None => "none".to_string(),
        Some(w) => format!(
            "{} blocks, {} bytes ({name}-wal/): {}",
            w.blocks,
            w.bytes,
            match info.lease {
                LeaseState::Held(_) => "the lease holder has the database open",
                _ => "left by a process that stopped before its last close; the next one to open the database recovers its commits",
            }
        ),
    };
    let lease = match &info.lease {
        LeaseState::None => "none".to_string(),
        LeaseState::Held(r) if wal_mode => format!(
            "held: {} (in WAL mode: that process serves the database, other processes get SQLITE_BUSY until it closes it)",
            admin::holder(r)
        ),
        LeaseState::Held(r) => format!("held: {}", admin::holder(r)),
        LeaseState::Released(r) => {
            format!("free (last released by host {}, pid {})", r.host, r.pid)
        }
        LeaseState::Expired(r) => format!(
            "free (expired {}, last holder host {}, pid {})",
            admin::utc(r.expires_ms),
            r.host,
            r.pid
        ),
    };
    let rows: Vec<(&str, String)> = vec![
        ("database", name.clone()),
        ("size", format!("{} bytes", info.size)),
        ("page size", h.page_size.to_string()),
        ("page count", h.page_count.to_string()),
        ("block size", block_size),
        ("text encoding", h.encoding()),
        ("user_version", h.user_version.to_string()),
        ("application_id", h.application_id.to_string()),
        ("journal mode", h.journal_mode()),
        ("change counter", h.change_counter.to_string()),
        ("freelist pages", h.freelist_pages.to_string()),
        ("schema format", h.schema_format.to_string()),
        ("written by", format!("SQLite {}", h.written_by())),
        ("journal", journal),
        ("wal", wal),
        ("lease", lease),
    ];
    for (k, v) in rows {
        println!("{:<16}{v}", format!("{k}:"));
    }
    Ok(())
}
