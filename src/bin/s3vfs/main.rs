//! `s3vfs`: the command beside the extension. It moves SQLite databases in and out of the
//! block layout in S3 (`import`, `export`), looks at what is stored (`ls`, `info`) and
//! deletes a database or breaks its lease (`rm`, `break-lease`), with the same settings
//! as the extension: the environment and AWS's shared files (`src/config.rs`), plus
//! `--endpoint`, `--region` and `--profile` ([`options`]).
//!
//! The work is the library's: copying in `transfer` (`import_file` / `export_file`),
//! discovery, description, deletion and lease breaking in `admin`. This command parses
//! arguments, draws progress, asks before deleting, and turns each [`Error`] into one line
//! on stderr, in the command's terms ([`Terms::Command`]), and an exit code that scripts
//! can rely on (see [`EXIT_CODES`]).

mod export;
mod import;
mod info;
mod lease;
mod ls;
mod options;
mod progress;
mod rm;

use clap::{Parser, Subcommand};
use options::S3Options;
use s3vfs::error::{Error, Result, Terms};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Shown at the end of every `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  the operation failed (an S3 or local I/O error)
  2  usage or configuration error (bad URL or option, missing credentials, unknown bucket)
  3  not found (no database at that URL, no lease to break, local file missing)
  4  refused, nothing changed (would overwrite, a live lease held by another writer,
     not a SQLite database, rm or break-lease not confirmed)

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
    /// Delete a database: its blocks, its journal's blocks, its reader marks and its lease
    /// (nothing else under its name: not a database nested in it, not other files)
    #[command(after_help = EXIT_CODES)]
    Rm {
        /// The database: s3://bucket/path/to/db
        url: String,
        /// Do not ask for confirmation on stdin
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Release a database's writer lease held by another process (a crashed writer whose
    /// lease expires far in the future, a stuck one): its transaction fails at its next write
    #[command(after_help = EXIT_CODES)]
    BreakLease {
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
            eprintln!("{}", e.message(Terms::Command));
            ExitCode::from(exit_code(&e))
        }
    }
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
        } => import::run(s3, &local, &url, block_size, replace, progress),
        Command::Export {
            url,
            local,
            force,
            progress,
        } => export::run(s3, &url, &local, force, progress),
        Command::Ls { url } => ls::run(s3, &url),
        Command::Info { url } => info::run(s3, &url),
        Command::Rm { url, yes } => rm::run(s3, &url, yes),
        Command::BreakLease { url, yes } => lease::run(s3, &url, yes),
    }
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

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bad = s3vfs::config::parse_block_size(Some("7".into())).unwrap_err();
        assert_eq!(exit_code(&bad), 2);
    }

    #[test]
    fn library_messages_speak_of_options() {
        let e = Error::S3 {
            op: "LIST",
            bucket: "b".into(),
            key: "x".into(),
            status: 404,
            code: "NoSuchBucket".into(),
            message: String::new(),
        };
        let text = e.message(Terms::Command);
        assert!(
            text.contains("--endpoint") && !text.contains("bucket="),
            "{text}"
        );
    }

    #[test]
    fn words_count() {
        assert_eq!(count(1, "block"), "1 block");
        assert_eq!(count(2, "block"), "2 blocks");
    }
}
