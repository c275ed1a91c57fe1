//! `s3vfs`: the command beside the extension. It moves SQLite databases in and out of the
//! block layout in S3 (`import`, `export`) and looks at what is stored (`ls`, `info`,
//! `rm`), with the same settings as the extension: the environment and AWS's shared files
//! (`src/config.rs`), plus `--endpoint`, `--region` and `--profile`.
//!
//! The copying is the library's (`transfer::import_file` / `export_file`): parallel PUTs
//! and GETs on std threads, no async runtime, and an export is a consistent snapshot as
//! `s3vfs_serialize` takes it. This file parses arguments, draws progress, asks before
//! deleting, and turns each [`Error`] into one line on stderr and an exit code that
//! scripts can rely on (see [`EXIT_CODES`]).

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use s3vfs::codes::Locking;
use s3vfs::config::{self, Config};
use s3vfs::error::{Error, Result};
use s3vfs::header::{header_size, SQLITE_MAGIC};
use s3vfs::layout::{block_key, journal_name, lease_key, marks_dir, parse_block_index};
use s3vfs::lease::{self, Acquire, ConditionalWrites, Lease, LeaseRecord};
use s3vfs::object_store::ObjectStore;
use s3vfs::parallel::par_map;
use s3vfs::s3::S3Client;
use s3vfs::store::BlockFile;
use s3vfs::transfer::{self, Location, Progress};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shown at the end of every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  the operation failed (an S3 or local I/O error)
  2  usage or configuration error (bad URL or option, missing credentials, unknown bucket)
  3  not found (no database at that URL, local file missing)
  4  refused, nothing changed (would overwrite, a live lease held by another writer,
     not a SQLite database, rm not confirmed)

Settings come from the environment as for the extension: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE (shared credentials file),
AWS_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, S3VFS_BLOCK_SIZE, S3VFS_CONCURRENCY.";

#[derive(Parser)]
#[command(
    name = "s3vfs",
    version,
    about = "Import, export, list, inspect and delete SQLite databases stored in S3 in the s3vfs (sqlite-s3vfs) block layout",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    s3: S3Options,
    #[command(subcommand)]
    command: Command,
}

/// Where and how to reach S3; each beats its environment variable.
#[derive(Args)]
struct S3Options {
    /// S3-compatible server, e.g. http://127.0.0.1:9000 [default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS]
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Signing region [default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, else us-east-1]
    #[arg(long, global = true)]
    region: Option<String>,
    /// Profile in the shared credentials file [default: AWS_PROFILE, else default]
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Requests in flight at once, 1..=256 [default: S3VFS_CONCURRENCY, else 16]
    #[arg(long, global = true, value_name = "N")]
    concurrency: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a local SQLite file as a database in S3 (parallel PUTs, one per block)
    #[command(after_help = EXIT_CODES)]
    Import {
        /// The local SQLite database file (rollback-journal mode, no hot journal)
        local: PathBuf,
        /// Where to store it: s3://bucket/path/to/db (blocks go under path/to/db/)
        url: String,
        /// Bytes per block, 512..=16777216 [default: S3VFS_BLOCK_SIZE, else 4096]; open the
        /// database with the same block_size
        #[arg(long, value_name = "BYTES")]
        block_size: Option<String>,
        /// Overwrite a database already stored at the URL (its journal and stale blocks are deleted)
        #[arg(long)]
        replace: bool,
        /// Draw progress on stderr even when it is not a terminal
        #[arg(long)]
        progress: bool,
    },
    /// Download a database from S3 to a local SQLite file (a consistent snapshot)
    #[command(after_help = EXIT_CODES)]
    Export {
        /// The database: s3://bucket/path/to/db
        url: String,
        /// The local file to write
        local: PathBuf,
        /// Overwrite the local file if it exists
        #[arg(long)]
        force: bool,
        /// Draw progress on stderr even when it is not a terminal
        #[arg(long)]
        progress: bool,
    },
    /// List the databases under a prefix: size, block size, page size
    #[command(after_help = EXIT_CODES)]
    Ls {
        /// s3://bucket, s3://bucket/ or s3://bucket/some/prefix
        url: String,
    },
    /// Show a database's header fields, block size, journal and lease holder
    #[command(after_help = EXIT_CODES)]
    Info {
        /// The database: s3://bucket/path/to/db
        url: String,
    },
    /// Delete a database: its blocks, journal, reader marks and lease
    #[command(after_help = EXIT_CODES)]
    Rm {
        /// The database: s3://bucket/path/to/db
        url: String,
        /// Do not ask for confirmation on stdin
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// The exit code for an error (see [`EXIT_CODES`]).
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Config(_) | Error::Setting(_) => 2,
        Error::NotFound(_) => 3,
        Error::Refused(_) => 4,
        Error::S3 { code, status, .. } => match code.as_str() {
            // The bucket, the credentials or the region are wrong: fix the settings.
            "NoSuchBucket"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "AuthorizationHeaderMalformed"
            | "PermanentRedirect"
            | "IllegalLocationConstraintException"
            | "InvalidBucketName" => 2,
            "" if *status == 404 => 2,
            _ => 1,
        },
        _ => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", in_command_terms(&e.to_string()));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The library's messages name URI parameters (`bucket=`, `endpoint=`); here the same
/// settings are the URL and options.
fn in_command_terms(message: &str) -> String {
    [
        (
            "fix bucket= / S3VFS_BUCKET (and endpoint= / region=)",
            "fix the bucket in the URL (and --endpoint / --region)",
        ),
        (
            "check bucket= and endpoint=",
            "check the bucket in the URL and --endpoint",
        ),
        (
            "set region= (URI) or AWS_REGION",
            "pass --region or set AWS_REGION",
        ),
        (
            "check endpoint= / AWS_ENDPOINT_URL_S3",
            "check --endpoint / AWS_ENDPOINT_URL_S3",
        ),
        ("expected e.g. endpoint=", "expected e.g. --endpoint "),
        ("AWS_PROFILE or profile=", "AWS_PROFILE or --profile"),
    ]
    .iter()
    .fold(message.to_string(), |m, (from, to)| m.replace(from, to))
}

fn run(cli: Cli) -> Result<()> {
    let s3 = &cli.s3;
    match cli.command {
        Command::Import {
            local,
            url,
            block_size,
            replace,
            progress,
        } => import(s3, &local, &url, block_size, replace, progress),
        Command::Export {
            url,
            local,
            force,
            progress,
        } => export(s3, &url, &local, force, progress),
        Command::Ls { url } => ls(s3, &url),
        Command::Info { url } => info(s3, &url),
        Command::Rm { url, yes } => rm(s3, &url, yes),
    }
}

/// Splits `s3://bucket/key` into bucket and key (which may be empty).
fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        Error::Config(format!(
            "'{url}' is not an S3 URL: write s3://bucket/path/to/db"
        ))
    })?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Config(format!(
            "'{url}' names no bucket: write s3://bucket/path/to/db"
        )));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// The settings for a bucket: the options given, then the environment, as the extension
/// resolves them (options play the part of URI parameters).
fn config(s3: &S3Options, bucket: &str, block_size: Option<&str>) -> Result<Arc<Config>> {
    let options = |name: &str| match name {
        "bucket" => Some(bucket.to_string()),
        "endpoint" => s3.endpoint.clone(),
        "region" => s3.region.clone(),
        "profile" => s3.profile.clone(),
        "concurrency" => s3.concurrency.clone(),
        "block_size" => block_size.map(str::to_string),
        _ => None,
    };
    Config::resolve(&options, &config::process_env).map(Arc::new)
}

/// The database a URL names, with a client for its bucket.
fn database(s3: &S3Options, url: &str, block_size: Option<&str>) -> Result<Location> {
    let (bucket, key) = parse_url(url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(Error::Config(format!(
            "'{url}' names no database (empty path or a trailing /): write s3://{bucket}/path/to/db; its blocks go under path/to/db/"
        )));
    }
    config::check_db_name(&key)?;
    Ok(Location::s3(config(s3, &bucket, block_size)?, &key))
}

fn url_of(db: &Location) -> String {
    db.url()
}

/// Requests sent so far by this process.
fn requests() -> u64 {
    serde_json::from_str::<serde_json::Value>(&s3vfs::stats::json())
        .ok()
        .and_then(|v| v["requests"].as_u64())
        .unwrap_or(0)
}

/// One summary line: size, time, throughput, requests.
fn summary(bytes: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    format!(
        "{bytes} bytes in {secs:.2} s ({:.1} MB/s, {} requests)",
        mb / secs.max(1e-9),
        requests()
    )
}

fn import(
    s3: &S3Options,
    local: &std::path::Path,
    url: &str,
    block_size: Option<String>,
    replace: bool,
    progress: bool,
) -> Result<()> {
    let db = database(s3, url, block_size.as_deref())?;
    if replace {
        refuse_if_written(&db, "replace")?;
    }
    let bar = Bar::new("import", progress);
    let started = Instant::now();
    let blocks = transfer::import_file(local, &db, replace, &bar)?;
    bar.done();
    let size = std::fs::metadata(local).map(|m| m.len()).unwrap_or(0);
    println!(
        "imported {} to {}: {blocks} blocks of {} bytes, {}",
        local.display(),
        url_of(&db),
        db.cfg.block_size,
        summary(size, started)
    );
    Ok(())
}

fn export(
    s3: &S3Options,
    url: &str,
    local: &std::path::Path,
    force: bool,
    progress: bool,
) -> Result<()> {
    let db = database(s3, url, None)?;
    let bar = Bar::new("export", progress);
    let started = Instant::now();
    let size = transfer::export_file(&db, local, force, &bar)?;
    bar.done();
    println!(
        "exported {} to {}: {}",
        url_of(&db),
        local.display(),
        summary(size, started)
    );
    Ok(())
}

/// The fields of a SQLite header that `ls` and `info` show.
struct Header {
    page_size: u64,
    write_version: u8,
    read_version: u8,
    change_counter: u32,
    page_count: u32,
    freelist_pages: u32,
    schema_format: u32,
    text_encoding: u32,
    user_version: u32,
    application_id: u32,
    sqlite_version: u32,
    /// Page count × page size, when the header vouches for it.
    size: Option<u64>,
}

impl Header {
    /// Parses the first 100 bytes of a database; `None` if they are not a SQLite header.
    fn parse(h: &[u8]) -> Option<Header> {
        if h.len() < 100 || &h[..16] != SQLITE_MAGIC {
            return None;
        }
        let be32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        Some(Header {
            page_size: match u16::from_be_bytes([h[16], h[17]]) {
                1 => 65536,
                p => u64::from(p),
            },
            write_version: h[18],
            read_version: h[19],
            change_counter: be32(24),
            page_count: be32(28),
            freelist_pages: be32(36),
            schema_format: be32(44),
            text_encoding: be32(56),
            user_version: be32(60),
            application_id: be32(68),
            sqlite_version: be32(96),
            size: header_size(h),
        })
    }

    fn encoding(&self) -> String {
        match self.text_encoding {
            1 => "UTF-8".into(),
            2 => "UTF-16le".into(),
            3 => "UTF-16be".into(),
            0 => "unset (no schema yet)".into(),
            n => format!("invalid ({n})"),
        }
    }

    fn journal_mode(&self) -> String {
        match (self.write_version, self.read_version) {
            (1, 1) => "rollback journal (header bytes 18-19 = 1: DELETE, TRUNCATE, PERSIST, MEMORY or OFF)".into(),
            (2, 2) => "WAL (header bytes 18-19 = 2): s3vfs cannot open it; switch it to journal_mode=delete".into(),
            (w, r) => format!("unknown (header bytes 18-19 = {w}, {r})"),
        }
    }
}

/// The first 100 bytes of a database, if block 0 exists.
fn read_header(client: &dyn ObjectStore, name: &str) -> Result<Option<Vec<u8>>> {
    client.get_range(&block_key(name, 0), 0, 100)
}

/// One database found by `ls`: its blocks' indices and lengths.
#[derive(Default)]
struct Found {
    blocks: Vec<(u64, u64)>,
    journal: bool,
}

fn ls(s3: &S3Options, url: &str) -> Result<()> {
    let (bucket, prefix) = parse_url(url)?;
    let cfg = config(s3, &bucket, None)?;
    let client = S3Client::new(cfg.target.clone());
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for o in client.list(&prefix, None)? {
        let Some((name, tail)) = o.key.rsplit_once('/') else {
            continue;
        };
        if let Some(i) = parse_block_index(tail).filter(|_| tail.len() == 10) {
            found
                .entry(name.to_string())
                .or_default()
                .blocks
                .push((i, o.size));
        }
    }
    // A database is a prefix with a block 0; `<db>-journal/` is its journal, not another.
    found.retain(|_, f| f.blocks.iter().any(|&(i, _)| i == 0));
    let journals: Vec<String> = found
        .keys()
        .filter(|n| {
            n.strip_suffix("-journal")
                .is_some_and(|db| found.contains_key(db))
        })
        .cloned()
        .collect();
    for j in journals {
        found.remove(&j);
        if let Some(db) = found.get_mut(j.trim_end_matches("-journal")) {
            db.journal = true;
        }
    }
    if found.is_empty() {
        eprintln!("s3vfs: no databases under {url}");
        return Ok(());
    }
    let names: Vec<&String> = found.keys().collect();
    let headers = par_map(&names, cfg.concurrency, |n| read_header(&client, n))?;
    println!(
        "{:>14}  {:>10}  {:>9}  {:>7}  DATABASE",
        "SIZE", "BLOCK_SIZE", "PAGE_SIZE", "JOURNAL"
    );
    for ((name, f), header) in found.iter().zip(headers) {
        let last = f
            .blocks
            .iter()
            .max_by_key(|b| b.0)
            .expect("block 0 is there");
        let first = f
            .blocks
            .iter()
            .find(|b| b.0 == 0)
            .expect("block 0 is there");
        let size = last.0 * first.1 + last.1;
        // One block only: any block size at least its length reads it.
        let block_size = if f.blocks.len() > 1 {
            first.1.to_string()
        } else {
            format!(">={}", first.1)
        };
        let page_size = header
            .as_deref()
            .and_then(Header::parse)
            .map_or("not-sqlite".to_string(), |h| h.page_size.to_string());
        let journal = if f.journal { "yes" } else { "-" };
        println!(
            "{size:>14}  {block_size:>10}  {page_size:>9}  {journal:>7}  s3://{bucket}/{name}"
        );
    }
    Ok(())
}

/// A Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms after the epoch"),
    }
}

/// Who holds a live lease, for messages.
fn holder(r: &LeaseRecord) -> String {
    let left = r.expires_ms.saturating_sub(lease::now_ms()).div_ceil(1000);
    format!(
        "owner {}, host {}, pid {}, expires {} (in {left} s){}",
        r.owner,
        r.host,
        r.pid,
        utc(r.expires_ms),
        if r.pending {
            ", waiting to write pages"
        } else {
            ""
        }
    )
}

/// The lease object of a database (not taken).
fn new_lease(db: &Location) -> Lease {
    Lease::new(
        db.store.clone(),
        &db.key,
        db.cfg.lease_term,
        Arc::new(ConditionalWrites::default()),
    )
}

/// The live lease on a database, if another writer holds one.
fn live_lease(db: &Location) -> Result<Option<LeaseRecord>> {
    let lease = new_lease(db);
    Ok(lease
        .read()?
        .map(|(r, _)| r)
        .filter(|r| r.live(lease::now_ms())))
}

/// Refuses to `what` a database while a writer holds its lease.
fn refuse_if_written(db: &Location, what: &str) -> Result<()> {
    match live_lease(db)? {
        Some(r) => Err(Error::Refused(format!(
            "will not {what} {}: a writer holds its lease ({}); retry when it is done",
            url_of(db),
            holder(&r)
        ))),
        None => Ok(()),
    }
}

fn info(s3: &S3Options, url: &str) -> Result<()> {
    let db = database(s3, url, None)?;
    let name = url_of(&db);
    let store = db.store.clone();
    let first = BlockFile::new(store.clone(), &db.key, 4096).first_blocks(2)?;
    if first.is_empty() {
        return Err(Error::NotFound(format!(
            "no database at {name}: nothing is stored under {name}/ (check the URL; `s3vfs ls` lists the databases under a prefix)"
        )));
    }
    let raw = read_header(db.store.as_ref(), &db.key)?.unwrap_or_default();
    let h = Header::parse(&raw).ok_or_else(|| {
        Error::Format(format!(
            "{name}/ holds no SQLite database: its block 0 is missing or does not start with the SQLite header"
        ))
    })?;
    let size = match h.size {
        Some(s) => s,
        None => BlockFile::new(store.clone(), &db.key, first[0].len).listed_size()?,
    };
    let block_size = match first.as_slice() {
        [only] => format!("{} or more (the database is one block)", only.len),
        [b0, ..] => format!("{} ({} blocks)", b0.len, size.div_ceil(b0.len)),
        [] => unreachable!("checked above"),
    };
    let v = h.sqlite_version;
    let journal_name = journal_name(&db.key);
    let journal = match db.store.list(&format!("{journal_name}/"), Some(1))?.first() {
        None => "none".to_string(),
        Some(_) => match db.store.get_range(&block_key(&journal_name, 0), 0, 28)? {
            Some(j) if j.iter().any(|&b| b != 0) => format!(
                "present and hot: a writer is committing, or crashed (the next writer rolls it back) ({name}-journal/)"
            ),
            _ => format!("present, not hot (a zeroed or partly deleted journal) ({name}-journal/)"),
        },
    };
    let lease = match new_lease(&db).read()? {
        None => "none".to_string(),
        Some((r, _)) if r.live(lease::now_ms()) => format!("held: {}", holder(&r)),
        Some((r, _)) if r.released => {
            format!("free (last released by host {}, pid {})", r.host, r.pid)
        }
        Some((r, _)) => format!(
            "free (expired {}, last holder host {}, pid {})",
            utc(r.expires_ms),
            r.host,
            r.pid
        ),
    };
    let rows: Vec<(&str, String)> = vec![
        ("database", name.clone()),
        ("size", format!("{size} bytes")),
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
        (
            "written by",
            format!("SQLite {}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000),
        ),
        ("journal", journal),
        ("lease", lease),
    ];
    for (k, v) in rows {
        println!("{:<16}{v}", format!("{k}:"));
    }
    Ok(())
}

fn rm(s3: &S3Options, url: &str, yes: bool) -> Result<()> {
    let db = database(s3, url, None)?;
    let name = url_of(&db);
    let client = &db.store;
    let blocks = client.list(&format!("{}/", db.key), None)?;
    let journal = client.list(&format!("{}/", journal_name(&db.key)), None)?;
    let marks = client.list(&marks_dir(&db.key), None)?;
    let lease_key = lease_key(&db.key);
    let has_lease = client.head(&lease_key)?.is_some();
    if blocks.is_empty() && journal.is_empty() && marks.is_empty() && !has_lease {
        return Err(Error::NotFound(format!(
            "no database at {name}: nothing to delete (check the URL; `s3vfs ls` lists the databases under a prefix)"
        )));
    }
    refuse_if_written(&db, "delete")?;
    let bytes: u64 = blocks.iter().map(|o| o.size).sum();
    let mut what = format!("{} ({bytes} bytes)", count(blocks.len(), "block"));
    if !journal.is_empty() {
        what += &format!(", its journal ({})", count(journal.len(), "block"));
    }
    if !marks.is_empty() {
        what += &format!(", {}", count(marks.len(), "reader mark"));
    }
    if has_lease {
        what += ", the lease object";
    }
    if !yes && !confirm(&format!("delete {name}: {what}? [y/N] ")) {
        return Err(Error::Refused(format!(
            "not confirmed: nothing was deleted from {name} (answer y, or pass --yes)"
        )));
    }
    // Keep writers out while deleting; without conditional writes (locking=none) the
    // check above is all there is.
    let mut lease = new_lease(&db);
    if db.cfg.locking != Locking::None {
        if let Acquire::Busy(r) = lease.acquire()? {
            return Err(Error::Refused(format!(
                "will not delete {name}: a writer took its lease just now ({}); nothing was deleted",
                holder(&r)
            )));
        }
    }
    // The journal's block 0 first (a journal without it is never hot), then the
    // database's block 0 (without it there is no database), then the rest in batches.
    let first_journal = block_key(&journal_name(&db.key), 0);
    let first_block = block_key(&db.key, 0);
    for first in [&first_journal, &first_block] {
        if journal.iter().chain(&blocks).any(|o| &o.key == first) {
            client.delete(first)?;
        }
    }
    let rest: Vec<String> = journal
        .iter()
        .chain(&blocks)
        .chain(&marks)
        .map(|o| o.key.clone())
        .filter(|k| k != &first_journal && k != &first_block)
        .collect();
    if !rest.is_empty() {
        client.delete_many(&rest)?;
    }
    client.delete(&lease_key)?;
    let objects = blocks.len() + journal.len() + marks.len() + usize::from(has_lease);
    println!("deleted {name}: {what}; {objects} objects in all");
    Ok(())
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

/// Asks on stderr and reads one line from stdin: only `y` or `yes` confirm.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Progress on stderr: a bar on a terminal; with `--progress` elsewhere (a log), a plain
/// line at most once a second; else nothing.
enum Bar {
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
    fn new(verb: &str, forced: bool) -> Bar {
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

    fn done(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(ok("s3://b/apps/x.db"), ("b".into(), "apps/x.db".into()));
        assert_eq!(ok("s3://b"), ("b".into(), String::new()));
        for bad in ["b/x.db", "https://b/x.db", "s3:///x.db", "s3://"] {
            assert_eq!(exit_code(&parse_url(bad).unwrap_err()), 2, "{bad}");
        }
    }

    #[test]
    fn exit_codes_follow_the_kind_of_error() {
        let s3 = |code: &str, status| Error::S3 {
            op: "LIST",
            bucket: "b".into(),
            key: "x".into(),
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(exit_code(&s3("NoSuchBucket", 404)), 2);
        assert_eq!(exit_code(&s3("SignatureDoesNotMatch", 403)), 2);
        assert_eq!(exit_code(&s3("", 404)), 2);
        assert_eq!(exit_code(&s3("InternalError", 500)), 1);
        assert_eq!(exit_code(&s3("AccessDenied", 403)), 1);
        assert_eq!(exit_code(&Error::NotFound("x".into())), 3);
        assert_eq!(exit_code(&Error::Refused("x".into())), 4);
        assert_eq!(exit_code(&Error::Io("x".into())), 1);
        assert_eq!(exit_code(&Error::Busy("x".into())), 1);
    }

    #[test]
    fn library_messages_speak_of_options() {
        let e = s3("NoSuchBucket");
        let text = in_command_terms(&e.to_string());
        assert!(
            text.contains("--endpoint") && !text.contains("bucket="),
            "{text}"
        );

        fn s3(code: &str) -> Error {
            Error::S3 {
                op: "LIST",
                bucket: "b".into(),
                key: "x".into(),
                status: 404,
                code: code.into(),
                message: String::new(),
            }
        }
    }

    #[test]
    fn headers_parse_their_fields() {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&1u16.to_be_bytes()); // 65536
        h[18] = 1;
        h[19] = 1;
        h[24..28].copy_from_slice(&9u32.to_be_bytes());
        h[28..32].copy_from_slice(&3u32.to_be_bytes());
        h[56..60].copy_from_slice(&2u32.to_be_bytes());
        h[60..64].copy_from_slice(&7u32.to_be_bytes());
        h[92..96].copy_from_slice(&9u32.to_be_bytes());
        let p = Header::parse(&h).unwrap();
        assert_eq!((p.page_size, p.page_count, p.user_version), (65536, 3, 7));
        assert_eq!(p.size, Some(3 * 65536));
        assert_eq!(p.encoding(), "UTF-16le");
        assert!(p.journal_mode().starts_with("rollback"));
        assert!(Header::parse(&h[..99]).is_none());
    }
}
