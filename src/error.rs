//! The one error type of the extension.
//!
//! Every layer returns [`Error`]; the FFI edge turns it into a SQLite result code with
//! [`Error::sqlite_code`], the one mapping, given the failure code of the callback SQLite
//! called (only there is it known which operation SQLite asked for).
//! Messages are written for the person reading them in the `sqlite3` shell: they say what
//! failed and what to change. They never contain credentials or request signatures.
//!
//! An error about a setting carries the [`Setting`] as data, and [`Error::message`] names
//! it in the [`Terms`] of the front end that shows it: a URI parameter or environment
//! variable in SQL (`Display`), an option or the URL in the `s3vfs` command.

use crate::codes::code;
use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong between SQLite and S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting is missing or invalid; the message names the URI parameter or variable.
    Config(String),
    /// A setting is invalid in a way each front end names in its own terms.
    Setting(SettingError),
    /// S3 answered with an error status.
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The endpoint could not be reached or did not answer in time.
    Transport {
        op: &'static str,
        endpoint: String,
        detail: String,
    },
    /// What is stored does not fit the configuration (block size, layout).
    Format(String),
    /// The database does not exist and the open did not ask to create it.
    NotFound(String),
    /// A write was attempted on a file opened read-only.
    ReadOnly(String),
    /// The writer lease could not be kept.
    Lease(String),
    /// The database is being written by someone else right now.
    Busy(String),
    /// An operation was refused to protect data: it would overwrite something, a live
    /// writer holds the lease, or the input is not a SQLite database. Nothing was changed.
    Refused(String),
    /// A local file could not be read or written (the `s3vfs` command's import and export).
    Io(String),
    /// What is stored (or what the server answered) is damaged: a block of the wrong
    /// length, a missing block inside the database, a body that does not match its
    /// checksum. The message names the object.
    Corrupt(String),
}

impl Error {
    /// A short, stable category name; used in stats and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) | Error::Setting(_) => "config",
            Error::S3 { .. } => "s3",
            Error::Transport { .. } => "transport",
            Error::Format(_) => "format",
            Error::NotFound(_) => "not_found",
            Error::ReadOnly(_) => "read_only",
            Error::Lease(_) => "lease",
            Error::Busy(_) => "busy",
            Error::Refused(_) => "refused",
            Error::Io(_) => "io",
            Error::Corrupt(_) => "corrupt",
        }
    }

    /// The SQLite result code for this error in a callback whose own failure code is
    /// `fallback` (the same S3 failure is `SQLITE_IOERR_READ` in xRead and
    /// `SQLITE_CANTOPEN` in xOpen). Kinds with a SQLite meaning of their own keep it, except
    /// in xOpen, where SQLite expects `SQLITE_CANTOPEN` for any failure.
    pub fn sqlite_code(&self, fallback: i32) -> i32 {
        if fallback == code::CANTOPEN {
            return code::CANTOPEN;
        }
        match self {
            Error::Busy(_) => code::BUSY,
            Error::ReadOnly(_) => code::READONLY,
            Error::Format(_) => code::NOTADB,
            Error::NotFound(_) => code::CANTOPEN,
            _ => fallback,
        }
    }

    /// The advice that goes with an S3 error code, when there is a well-known remedy.
    fn s3_hint(op: &str, code: &str, status: u16, bucket: &str, terms: Terms) -> String {
        match code {
            "AccessDenied" if matches!(op, "PUT" | "DELETE" | "DeleteObjects" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload") => format!(
                "these credentials may not write to bucket '{bucket}' (s3:PutObject / s3:DeleteObject denied): use credentials that may, or open with mode=ro to only read (then nothing is ever written; with locking=strict readers write marks too, so read-only credentials need locking=lease)"
            ),
            "NoSuchBucket" => format!(
                "bucket '{bucket}' does not exist at this endpoint: create it, or fix {} (and {} / {})",
                terms.with_env(Setting::Bucket),
                terms.name(Setting::Endpoint),
                terms.name(Setting::Region)
            ),
            "InvalidAccessKeyId" => "the server does not know this access key id: check AWS_ACCESS_KEY_ID or the profile in the shared credentials file".to_string(),
            "SignatureDoesNotMatch" => "the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY or the profile in the shared credentials file".to_string(),
            "InvalidToken" | "ExpiredToken" | "TokenRefreshRequired" => "the session token is invalid or expired: refresh AWS_SESSION_TOKEN (or unset it for long-term keys)".to_string(),
            "AccessDenied" => "the credentials lack permission: s3vfs needs s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on this bucket and prefix".to_string(),
            "RequestTimeTooSkewed" => "this machine's clock differs too much from the server's (SigV4 allows 15 minutes): fix the system time, e.g. with NTP".to_string(),
            "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException" => {
                format!("bucket '{bucket}' is in another region than the one requests are signed for: {} to the bucket's region", terms.how_to_set(Setting::Region))
            }
            "SlowDown" | "ServiceUnavailable" | "InternalError" => {
                "the server is overloaded or failing: retry later".to_string()
            }
            "" if status == 404 => format!(
                "bucket '{bucket}' was not found (or the endpoint is not an S3 server): check {} and {}",
                terms.name(Setting::Bucket),
                terms.name(Setting::Endpoint)
            ),
            "" => format!("the endpoint did not answer like an S3 server: check {}", terms.with_env(Setting::Endpoint)),
            _ => String::new(),
        }
    }
}

impl Error {
    /// An error about `setting`: `problem`.
    pub fn setting(setting: Setting, problem: Problem) -> Error {
        Error::Setting(SettingError { setting, problem })
    }

    /// The message, naming settings in `terms`: [`Terms::Uri`] for SQL (what `Display`
    /// shows), [`Terms::Command`] for the `s3vfs` command.
    pub fn message(&self, terms: Terms) -> String {
        match self {
            Error::Config(msg) => format!("s3vfs configuration error: {msg}"),
            Error::Setting(e) => format!("s3vfs configuration error: {}", e.message(terms)),
            Error::S3 {
                op,
                bucket,
                key,
                status,
                code,
                message,
            } => {
                let mut m = format!("s3vfs: S3 {op} s3://{bucket}/{key} failed: HTTP {status}");
                if !code.is_empty() {
                    m += &format!(" {code}");
                }
                if !message.is_empty() {
                    m += &format!(" ({message})");
                }
                let hint = Error::s3_hint(op, code, *status, bucket, terms);
                if !hint.is_empty() {
                    m += &format!(": {hint}");
                }
                m
            }
            Error::Transport {
                op,
                endpoint,
                detail,
            } => format!(
                "s3vfs: cannot reach the S3 endpoint {endpoint} ({op}: {detail}): check {} and that the server is running",
                terms.with_env(Setting::Endpoint)
            ),
            Error::Format(msg)
            | Error::NotFound(msg)
            | Error::ReadOnly(msg)
            | Error::Lease(msg)
            | Error::Busy(msg)
            | Error::Refused(msg)
            | Error::Io(msg)
            | Error::Corrupt(msg) => format!("s3vfs: {msg}"),
        }
    }
}

impl fmt::Display for Error {
    /// The message in SQL terms (URI parameters and environment variables).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(Terms::Uri))
    }
}

/// A setting a message can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Bucket,
    Endpoint,
    Region,
    Profile,
    BlockSize,
    Concurrency,
    CacheSize,
    Locking,
    LeaseSeconds,
}

impl Setting {
    /// The environment variable that sets it.
    pub fn env(self) -> &'static str {
        match self {
            Setting::Bucket => "S3VFS_BUCKET",
            Setting::Endpoint => "AWS_ENDPOINT_URL_S3",
            Setting::Region => "AWS_REGION",
            Setting::Profile => "AWS_PROFILE",
            Setting::BlockSize => "S3VFS_BLOCK_SIZE",
            Setting::Concurrency => "S3VFS_CONCURRENCY",
            Setting::CacheSize => "S3VFS_CACHE_SIZE",
            Setting::Locking => "S3VFS_LOCKING",
            Setting::LeaseSeconds => "S3VFS_LEASE_SECONDS",
        }
    }

    /// Its plain name, the subject of messages about its value: `block_size`, `endpoint`.
    pub fn word(self) -> &'static str {
        self.uri_param().unwrap_or(self.env())
    }

    /// The URI parameter that sets it, if there is one.
    pub fn uri_param(self) -> Option<&'static str> {
        Some(match self {
            Setting::Bucket => "bucket",
            Setting::Endpoint => "endpoint",
            Setting::Region => "region",
            Setting::Profile => "profile",
            Setting::BlockSize => "block_size",
            Setting::Concurrency => "concurrency",
            Setting::CacheSize => "cache_size",
            Setting::Locking => "locking",
            Setting::LeaseSeconds => return None,
        })
    }

    /// The `s3vfs` command's way to give it, if it has one besides the environment.
    pub fn command_option(self) -> Option<&'static str> {
        Some(match self {
            Setting::Bucket => "the bucket in the URL",
            Setting::Endpoint => "--endpoint",
            Setting::Region => "--region",
            Setting::Profile => "--profile",
            Setting::BlockSize => "--block-size",
            Setting::Concurrency => "--concurrency",
            Setting::CacheSize | Setting::Locking | Setting::LeaseSeconds => return None,
        })
    }
}

/// Whose words a message uses for settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terms {
    /// SQL and URIs: `bucket=` / `S3VFS_BUCKET`, `endpoint=` / `AWS_ENDPOINT_URL_S3`.
    Uri,
    /// The `s3vfs` command: the bucket in the URL, `--endpoint`, `--region`, `--profile`.
    Command,
}

impl Terms {
    /// Where to change it: `endpoint=` / `--endpoint`.
    pub fn name(self, s: Setting) -> String {
        match (self, s.uri_param()) {
            (Terms::Uri, Some(p)) => format!("{p}="),
            (Terms::Uri, None) => s.env().to_string(),
            (Terms::Command, _) => s.command_option().unwrap_or(s.env()).to_string(),
        }
    }

    /// Where to change it, with its variable: `endpoint= / AWS_ENDPOINT_URL_S3` /
    /// `--endpoint / AWS_ENDPOINT_URL_S3` (the command's bucket is only ever the URL's).
    pub fn with_env(self, s: Setting) -> String {
        match (self, s) {
            (Terms::Command, Setting::Bucket) => self.name(s),
            _ if self.name(s) == s.env() => self.name(s),
            _ => format!("{} / {}", self.name(s), s.env()),
        }
    }

    /// How to set it: `set region= (URI) or AWS_REGION` / `pass --region or set AWS_REGION`.
    pub fn how_to_set(self, s: Setting) -> String {
        if self.name(s) == s.env() {
            return format!("set {}", s.env());
        }
        match self {
            Terms::Uri => format!("set {} (URI) or {}", self.name(s), s.env()),
            Terms::Command => format!("pass {} or set {}", self.name(s), s.env()),
        }
    }

    /// The setting given a value: `endpoint=http://…` / `--endpoint http://…`.
    pub fn assign(self, s: Setting, value: &str) -> String {
        match (self, s.uri_param(), s.command_option()) {
            (Terms::Uri, Some(p), _) => format!("{p}={value}"),
            (Terms::Command, _, Some(o)) if o.starts_with("--") => format!("{o} {value}"),
            _ => format!("{}={value}", s.env()),
        }
    }
}

/// A setting that is wrong, with what is wrong: the message is made per front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting concerned.
    pub setting: Setting,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A URL that is not one s3vfs can use (`why`), for the endpoint.
    BadUrl { value: String, why: String },
    /// An integer setting that is not an integer in `min..=max`.
    NotInRange {
        value: String,
        min: u64,
        max: u64,
        default: u64,
    },
    /// A block size that is not a number of bytes.
    NotBytes { value: String, default: u64 },
    /// A block size outside `min..=max`.
    BytesOutOfRange {
        value: u64,
        min: u64,
        max: u64,
        default: u64,
    },
    /// No credentials: neither in the environment nor for `profile` in the file at `path`.
    NoCredentials { profile: String, path: String },
}

impl SettingError {
    /// The message (without the `s3vfs configuration error:` prefix) in `terms`.
    pub fn message(&self, terms: Terms) -> String {
        let word = self.setting.word();
        let text = match &self.problem {
            Problem::BadUrl { value, why } => {
                return format!(
                    "invalid {word} URL '{value}': {why}; expected e.g. {} or https://<account>.r2.cloudflarestorage.com",
                    terms.assign(self.setting, "http://127.0.0.1:9000")
                )
            }
            Problem::NoCredentials { profile, path } => {
                return format!(
                    "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile [{profile}] to {path} (choose the profile with {} or {})",
                    self.setting.env(),
                    terms.name(self.setting)
                )
            }
            Problem::NotInRange {
                value,
                min,
                max,
                default,
            } => format!("{word} '{value}' must be an integer in {min}..={max} (default {default})"),
            Problem::NotBytes { value, default } => format!(
                "{word} '{value}' is not a positive integer (bytes); the default is {default}"
            ),
            Problem::BytesOutOfRange {
                value,
                min,
                max,
                default,
            } => format!(
                "{word} {value} is out of range: use {min}..={max} bytes (ideally the database page size; default {default})"
            ),
        };
        // A value's message names the setting by its word; the command adds its option.
        match (terms, self.setting.command_option()) {
            (Terms::Command, Some(option)) => {
                format!("{text} (set by {option} or {})", self.setting.env())
            }
            _ => text,
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_name_the_fix() {
        let e = Error::S3 {
            op: "LIST",
            bucket: "nope".into(),
            key: "db/".into(),
            status: 404,
            code: "NoSuchBucket".into(),
            message: "The specified bucket does not exist".into(),
        };
        let text = e.to_string();
        assert!(text.contains("s3://nope/db/"), "{text}");
        assert!(text.contains("bucket 'nope' does not exist"), "{text}");
    }

    #[test]
    fn expired_tokens_and_read_only_writes_name_the_fix() {
        let s3 = |op: &'static str, code: &str| Error::S3 {
            op,
            bucket: "b".into(),
            key: "db/0000000000".into(),
            status: 400,
            code: code.into(),
            message: String::new(),
        };
        let expired = s3("GET", "ExpiredToken").to_string();
        assert!(
            expired.contains("session token is invalid or expired"),
            "{expired}"
        );
        let denied_write = s3("PUT", "AccessDenied").to_string();
        assert!(denied_write.contains("may not write") && denied_write.contains("mode=ro"));
        let denied_read = s3("GET", "AccessDenied").to_string();
        assert!(denied_read.contains("lack permission") && !denied_read.contains("may not write"));
    }

    #[test]
    fn kinds_with_a_sqlite_meaning_keep_it_except_in_xopen() {
        let busy = Error::Busy("b".into());
        assert_eq!(busy.sqlite_code(code::IOERR_LOCK), code::BUSY);
        assert_eq!(busy.sqlite_code(code::CANTOPEN), code::CANTOPEN);
        let ro = Error::ReadOnly("r".into());
        assert_eq!(ro.sqlite_code(code::IOERR_WRITE), code::READONLY);
        let fmt = Error::Format("f".into());
        assert_eq!(fmt.sqlite_code(code::IOERR_LOCK), code::NOTADB);
        let nf = Error::NotFound("n".into());
        assert_eq!(nf.sqlite_code(code::IOERR_READ), code::CANTOPEN);
        let io = Error::Lease("l".into());
        assert_eq!(io.sqlite_code(code::IOERR_FSYNC), code::IOERR_FSYNC);
    }

    #[test]
    fn transport_errors_name_the_endpoint() {
        let e = Error::Transport {
            op: "LIST",
            endpoint: "http://127.0.0.1:9".into(),
            detail: "connection refused".into(),
        };
        assert!(e
            .to_string()
            .contains("cannot reach the S3 endpoint http://127.0.0.1:9"));
    }

    fn s3(code: &str, status: u16) -> Error {
        Error::S3 {
            op: "LIST",
            bucket: "b".into(),
            key: "x".into(),
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn sql_terms_name_uri_parameters_and_variables() {
        let cases = [
            (s3("NoSuchBucket", 404), "fix bucket= / S3VFS_BUCKET (and endpoint= / region=)"),
            (s3("", 404), "check bucket= and endpoint="),
            (s3("PermanentRedirect", 301), "set region= (URI) or AWS_REGION to the bucket's region"),
            (s3("", 500), "check endpoint= / AWS_ENDPOINT_URL_S3"),
            (
                Error::Transport { op: "GET", endpoint: "http://h:9".into(), detail: "refused".into() },
                "check endpoint= / AWS_ENDPOINT_URL_S3 and that the server is running",
            ),
            (
                Error::setting(Setting::Endpoint, Problem::BadUrl { value: "h:9".into(), why: "no host".into() }),
                "invalid endpoint URL 'h:9': no host; expected e.g. endpoint=http://127.0.0.1:9000 or https://",
            ),
            (
                Error::setting(Setting::Profile, Problem::NoCredentials { profile: "p".into(), path: "/c".into() }),
                "add profile [p] to /c (choose the profile with AWS_PROFILE or profile=)",
            ),
            (
                Error::setting(Setting::Concurrency, Problem::NotInRange { value: "0".into(), min: 1, max: 256, default: 16 }),
                "s3vfs configuration error: concurrency '0' must be an integer in 1..=256 (default 16)",
            ),
            (
                Error::setting(Setting::BlockSize, Problem::BytesOutOfRange { value: 100, min: 512, max: 16, default: 4096 }),
                "block_size 100 is out of range: use 512..=16 bytes (ideally the database page size; default 4096)",
            ),
        ];
        for (e, phrase) in cases {
            let text = e.to_string();
            assert!(text.contains(phrase), "{text}");
            assert_eq!(text, e.message(Terms::Uri));
            assert!(!text.contains("--"), "{text}");
        }
    }

    #[test]
    fn command_terms_name_the_url_and_options() {
        let cases = [
            (s3("NoSuchBucket", 404), "fix the bucket in the URL (and --endpoint / --region)"),
            (s3("", 404), "check the bucket in the URL and --endpoint"),
            (s3("AuthorizationHeaderMalformed", 400), "pass --region or set AWS_REGION to the bucket's region"),
            (s3("", 500), "check --endpoint / AWS_ENDPOINT_URL_S3"),
            (
                Error::Transport { op: "GET", endpoint: "http://h:9".into(), detail: "refused".into() },
                "check --endpoint / AWS_ENDPOINT_URL_S3 and that",
            ),
            (
                Error::setting(Setting::Endpoint, Problem::BadUrl { value: "h:9".into(), why: "no host".into() }),
                "expected e.g. --endpoint http://127.0.0.1:9000 or",
            ),
            (
                Error::setting(Setting::Profile, Problem::NoCredentials { profile: "p".into(), path: "/c".into() }),
                "(choose the profile with AWS_PROFILE or --profile)",
            ),
            (
                Error::setting(Setting::BlockSize, Problem::NotBytes { value: "x".into(), default: 4096 }),
                "block_size 'x' is not a positive integer (bytes); the default is 4096 (set by --block-size or S3VFS_BLOCK_SIZE)",
            ),
        ];
        for (e, phrase) in cases {
            let text = e.message(Terms::Command);
            assert!(text.contains(phrase), "{text}");
            assert!(
                !text.contains("bucket=")
                    && !text.contains("endpoint=")
                    && !text.contains("region="),
                "{text}"
            );
        }
        assert_eq!(
            s3("AccessDenied", 403).message(Terms::Command),
            s3("AccessDenied", 403).to_string()
        );
    }
}
