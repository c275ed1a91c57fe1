//! The one error type of the extension.
//!
//! Every layer returns [`Error`]; the FFI edge turns it into a SQLite result code with
//! [`Error::sqlite_code`], the one mapping, given the failure code of the callback SQLite
//! called (only there is it known which operation SQLite asked for).
//! Messages are written for the person reading them in the `sqlite3` shell: they say what
//! failed and what to change. They never contain credentials or request signatures.

use crate::codes::code;
use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong between SQLite and S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting is missing or invalid; the message names the URI parameter or variable.
    Config(String),
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
            Error::Config(_) => "config",
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
    fn s3_hint(op: &str, code: &str, status: u16, bucket: &str) -> String {
        match code {
            "AccessDenied" if matches!(op, "PUT" | "DELETE" | "DeleteObjects" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload") => format!(
                "these credentials may not write to bucket '{bucket}' (s3:PutObject / s3:DeleteObject denied): use credentials that may, or open with mode=ro to only read (then nothing is ever written; with locking=strict readers write marks too, so read-only credentials need locking=lease)"
            ),
            "NoSuchBucket" => format!(
                "bucket '{bucket}' does not exist at this endpoint: create it, or fix bucket= / S3VFS_BUCKET (and endpoint= / region=)"
            ),
            "InvalidAccessKeyId" => "the server does not know this access key id: check AWS_ACCESS_KEY_ID or the profile in the shared credentials file".to_string(),
            "SignatureDoesNotMatch" => "the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY or the profile in the shared credentials file".to_string(),
            "InvalidToken" | "ExpiredToken" | "TokenRefreshRequired" => "the session token is invalid or expired: refresh AWS_SESSION_TOKEN (or unset it for long-term keys)".to_string(),
            "AccessDenied" => "the credentials lack permission: s3vfs needs s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on this bucket and prefix".to_string(),
            "RequestTimeTooSkewed" => "this machine's clock differs too much from the server's (SigV4 allows 15 minutes): fix the system time, e.g. with NTP".to_string(),
            "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException" => {
                format!("bucket '{bucket}' is in another region than the one requests are signed for: set region= (URI) or AWS_REGION to the bucket's region")
            }
            "SlowDown" | "ServiceUnavailable" | "InternalError" => {
                "the server is overloaded or failing: retry later".to_string()
            }
            "" if status == 404 => format!(
                "bucket '{bucket}' was not found (or the endpoint is not an S3 server): check bucket= and endpoint="
            ),
            "" => "the endpoint did not answer like an S3 server: check endpoint= / AWS_ENDPOINT_URL_S3".to_string(),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "s3vfs configuration error: {msg}"),
            Error::S3 {
                op,
                bucket,
                key,
                status,
                code,
                message,
            } => {
                write!(f, "s3vfs: S3 {op} s3://{bucket}/{key} failed: HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, " ({message})")?;
                }
                let hint = Error::s3_hint(op, code, *status, bucket);
                if !hint.is_empty() {
                    write!(f, ": {hint}")?;
                }
                Ok(())
            }
            Error::Transport {
                op,
                endpoint,
                detail,
            } => write!(
                f,
                "s3vfs: cannot reach the S3 endpoint {endpoint} ({op}: {detail}): check endpoint= / AWS_ENDPOINT_URL_S3 and that the server is running"
            ),
            Error::Format(msg)
            | Error::NotFound(msg)
            | Error::ReadOnly(msg)
            | Error::Lease(msg)
            | Error::Busy(msg)
            | Error::Refused(msg)
            | Error::Io(msg)
            | Error::Corrupt(msg) => write!(f, "s3vfs: {msg}"),
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
}
