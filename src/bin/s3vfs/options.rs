//! Where and how to reach S3: the URL (`s3://bucket/key`) and the global options, resolved
//! into the library's [`Config`] as the extension resolves a URI (options play the part
//! of URI parameters, then the environment, then defaults).

use clap::Args;
use s3vfs::config::{self, Config};
use s3vfs::error::{Error, Result};
use s3vfs::transfer::Location;
use std::sync::Arc;

/// Where and how to reach S3; each beats its environment variable.
#[derive(Args)]
pub struct S3Options {
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

/// Splits `s3://bucket/key` into bucket and key (which may be empty).
pub fn parse_url(url: &str) -> Result<(String, String)> {
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

/// The settings for a bucket: the options given, then the environment.
pub fn config(s3: &S3Options, bucket: &str, block_size: Option<&str>) -> Result<Arc<Config>> {
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

/// A prefix in a bucket (for `ls`): `s3://bucket` or `s3://bucket/some/prefix`.
pub fn prefix(s3: &S3Options, url: &str) -> Result<Location> {
    let (bucket, prefix) = parse_url(url)?;
    Ok(Location::s3(config(s3, &bucket, None)?, &prefix))
}

/// The database a URL names, with a client for its bucket.
pub fn database(s3: &S3Options, url: &str, block_size: Option<&str>) -> Result<Location> {
    let (bucket, key) = parse_url(url)?;
    if key.is_empty() || key.ends_with('/') {
        return Err(Error::Config(format!(
            "'{url}' names no database (empty path or a trailing /): write s3://{bucket}/path/to/db; its blocks go under path/to/db/"
        )));
    }
    config::check_db_name(&key)?;
    Ok(Location::s3(config(s3, &bucket, block_size)?, &key))
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
            assert!(matches!(parse_url(bad), Err(Error::Config(_))), "{bad}");
        }
    }
}
