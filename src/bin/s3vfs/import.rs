//! `s3vfs import`: a local SQLite file to blocks in S3.

use crate::options::{database, S3Options};
use crate::progress::{summary, Bar};
use s3vfs::admin;
use s3vfs::error::Result;
use s3vfs::transfer;
use std::path::Path;
use std::time::Instant;

pub fn run(
    s3: &S3Options,
    local: &Path,
    url: &str,
    block_size: Option<String>,
    replace: bool,
    progress: bool,
) -> Result<()> {
    let db = database(s3, url, block_size.as_deref())?;
    if replace {
        admin::refuse_if_written(&db, "replace")?;
    }
    let bar = Bar::new("import", progress);
    let started = Instant::now();
    let blocks = transfer::import_file(local, &db, replace, &bar)?;
    bar.done();
    let size = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
    println!(
        "imported {} to {}: {blocks} blocks of {} bytes, {}",
        local.display(),
        db.url(),
        db.cfg.block_size,
        summary(size, started)
    );
    Ok(())
}
