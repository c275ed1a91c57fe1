//! `s3vfs export`: a database in S3 to a local SQLite file (a consistent snapshot).

use crate::options::{database, S3Options};
use crate::progress::{summary, Bar};
use s3vfs::error::Result;
use s3vfs::transfer;
use std::path::Path;
use std::time::Instant;

pub fn run(s3: &S3Options, url: &str, local: &Path, force: bool, progress: bool) -> Result<()> {
    let db = database(s3, url, None)?;
    let bar = Bar::new("export", progress);
    let started = Instant::now();
    let size = transfer::export_file(&db, local, force, &bar)?;
    bar.done();
    println!(
        "exported {} to {}: {}",
        db.url(),
        local.display(),
        summary(size, started)
    );
    Ok(())
}
