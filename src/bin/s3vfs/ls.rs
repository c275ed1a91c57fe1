//! `s3vfs ls`: the databases under a prefix, as [`admin::discover`] finds them.

use crate::options::{prefix, S3Options};
use s3vfs::admin;
use s3vfs::error::Result;

pub fn run(s3: &S3Options, url: &str) -> Result<()> {
    let at = prefix(s3, url)?;
    let found = admin::discover(at.store.as_ref(), &at.key, at.cfg.concurrency)?;
    if found.is_empty() {
        eprintln!("s3vfs: no databases under {url}");
        return Ok(());
    }
    println!(
        "{:>14}  {:>10}  {:>9}  {:>7}  DATABASE",
        "SIZE", "BLOCK_SIZE", "PAGE_SIZE", "JOURNAL"
    );
    for f in found {
        let block_size = match f.single_block() {
            true => format!(">={}", f.block_size),
            false => f.block_size.to_string(),
        };
        let page_size = f
            .header
            .as_ref()
            .map_or("not-sqlite".to_string(), |h| h.page_size.to_string());
        let journal = if f.journal { "yes" } else { "-" };
        println!(
            "{:>14}  {block_size:>10}  {page_size:>9}  {journal:>7}  s3://{}/{}",
            f.size,
            at.bucket(),
            f.name
        );
    }
    Ok(())
}
