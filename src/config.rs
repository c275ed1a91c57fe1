//! Where a database lives and how to sign for it: URI parameters first, then the environment
//! and AWS's shared files, then defaults.
//!
//! Resolution reads through two lookup functions (URI and environment) so that unit tests can
//! feed both without touching the process environment.

use crate::codes::Locking;
use crate::error::{Error, Problem, Result, Setting};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Default block size: the Python package `sqlite-s3vfs` uses 4096 too, and it must match
/// whatever wrote the blocks already stored.
pub const DEFAULT_BLOCK_SIZE: u64 = 4096;
/// Smallest accepted block size. Smaller blocks only multiply requests.
pub const MIN_BLOCK_SIZE: u64 = 512;
/// Largest accepted block size (16 MiB): each block is one request body held in memory.
pub const MAX_BLOCK_SIZE: u64 = 16 * 1024 * 1024;

/// Signing credentials. `Debug` is written by hand so the secret cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where a database lives and how to sign for it: all the S3 client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    /// Base URL without trailing slash, e.g. `http://127.0.0.1:9000` or
    /// `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Path-style (`endpoint/bucket/key`) or virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    pub region: String,
    pub credentials: Credentials,
}

impl Target {
    /// The store's identity (endpoint and bucket): part of every database's identity.
    pub fn id(&self) -> String {
        format!("{}|{}", self.endpoint, self.bucket)
    }

    /// The same endpoint and credentials, another bucket (`s3://other/...`).
    pub fn with_bucket(&self, bucket: &str) -> Target {
        Target {
            bucket: bucket.to_string(),
            ..self.clone()
        }
    }
}

/// Everything about one database: where it lives and how it is stored and locked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where (endpoint, region, bucket, addressing, credentials).
    pub target: std::sync::Arc<Target>,
    pub block_size: u64,
    /// Requests in flight at once for one batch (flush, readahead, multi-block reads).
    pub concurrency: usize,
    /// Bytes of the process-wide block cache (shared by all connections; last setting wins).
    pub cache_size: usize,
    /// How writers coordinate across processes.
    pub locking: Locking,
    /// How long a writer lease lasts without renewal.
    pub lease_term: Duration,
    /// How long a process keeps the lease after a write transaction, so the next one
    /// (a stream of autocommit writes) starts without taking it again.
    pub lease_linger: Duration,
}

/// Default requests in flight (see [`crate::parallel::DEFAULT_CONCURRENCY`] for why 32).
pub const DEFAULT_CONCURRENCY: usize = crate::parallel::DEFAULT_CONCURRENCY;
/// Bounds for `concurrency`.
pub const MAX_CONCURRENCY: usize = 256;

/// A source of named settings (URI parameters or environment variables).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, ignoring empty values as the AWS SDKs do.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A lookup that knows nothing (for callers without URI parameters).
pub fn no_params(_: &str) -> Option<String> {
    None
}

/// URI parameters that s3vfs reads; SQLite's own (`vfs`, `mode`, `cache`, ...) are not listed.
pub const URI_PARAMS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "block_size",
    "profile",
    "concurrency",
    "cache_size",
    "locking",
    "lease_linger_ms",
];

/// URI parameters SQLite itself reads; any other one is neither ours nor SQLite's.
const SQLITE_URI_PARAMS: &[&str] = &[
    "vfs",
    "mode",
    "cache",
    "psow",
    "nolock",
    "immutable",
    "modeof",
];

/// A database name becomes a key prefix: `<name>/0000000000`. Names that would make keys
/// other tools read differently, or that collide with the objects of another database's
/// layout, are refused before anything is sent:
/// - a trailing '/' (keys with an empty path segment, `a//0000000000`);
/// - `.` or `..` segments (S3 keys are not paths, but signing normalizes the URL path while
///   the request is sent as written, so the server would reject the signature);
/// - control characters (they cannot travel in the XML of a batch delete);
/// - a name ending in `-journal` or `-wal`, or one of s3vfs's own objects: those prefixes
///   are where database `X`'s journal, WAL, lease and reader marks live, so opening `X`
///   would take such a database for a hot journal and delete it.
pub fn check_db_name(name: &str) -> Result<()> {
    let refuse = |why: String| Err(Error::Config(why));
    if name.ends_with('/') {
        return refuse(format!(
            "the database name '{name}' ends with '/': name the database itself, as in file:apps/notes.db?vfs=s3 (its blocks go under apps/notes.db/)"
        ));
    }
    if name.split('/').any(|seg| seg == "." || seg == "..") {
        return refuse(format!(
            "the database name '{name}' has a '.' or '..' segment: S3 keys are not paths; write the key without them, as in file:apps/notes.db?vfs=s3"
        ));
    }
    if name.chars().any(char::is_control) {
        return refuse(format!(
            "the database name {name:?} contains a control character: use printable characters only"
        ));
    }
    for (suffix, what) in [
        ("-journal", "a rollback journal"),
        ("-wal", "a write-ahead log"),
        (".s3vfs-lease", "s3vfs's writer lease"),
    ] {
        if let Some(owner) = name.strip_suffix(suffix) {
            return refuse(format!(
                "the database name '{name}' ends with '{suffix}', where {what} of the database '{owner}' is kept: opening '{owner}' would take this database for its own and delete it; choose another name"
            ));
        }
    }
    if name.contains(".s3vfs-readers/") || name.contains(".s3vfs-lease-probe-") {
        return refuse(format!(
            "the database name '{name}' lies where s3vfs keeps its own objects (reader marks, probes): choose another name"
        ));
    }
    Ok(())
}

/// Refuses URI parameters that neither s3vfs nor SQLite knows: most are typos
/// (`bukcet=`) that would otherwise be silently ignored. `nolock=1` is refused too: SQLite
/// would then skip every lock call, and with them the writer lease and the cache
/// revalidation that make a database in S3 safe to share.
pub fn check_uri_keys(keys: &[String]) -> Result<()> {
    match keys
        .iter()
        .find(|k| !URI_PARAMS.contains(&k.as_str()) && !SQLITE_URI_PARAMS.contains(&k.as_str()))
    {
        Some(k) => Err(Error::Config(format!(
            "unknown URI parameter '{k}': s3vfs reads {}, SQLite reads {}",
            URI_PARAMS.join(", "),
            SQLITE_URI_PARAMS.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Refuses SQLite URI parameters whose meaning is unsafe for a shared database in S3.
pub fn check_uri_values(value: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let on = |v: Option<String>| {
        v.is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            !matches!(v.as_str(), "0" | "no" | "false" | "off")
        })
    };
    if on(value("nolock")) {
        return Err(Error::Config(
            "nolock=1 would turn off SQLite's locks, and with them the writer lease and the check for other processes' commits: this connection would serve stale data and could overwrite acknowledged writes. For no coordination with other writers (as sqlite-s3vfs), open with locking=none; to read a database nobody writes, use mode=ro or immutable=1".into(),
        ));
    }
    Ok(())
}

impl Config {
    /// Resolves the configuration, URI parameter beating environment beating default.
    pub fn resolve(uri: Lookup, env: Lookup) -> Result<Config> {
        let pick = |param: &str, vars: &[&str]| -> Option<String> {
            uri(param)
                .filter(|v| !v.is_empty())
                .or_else(|| vars.iter().find_map(|v| env(v)))
        };
        let bucket = pick("bucket", &["S3VFS_BUCKET"]).ok_or_else(|| {
            Error::Config(
                "no bucket configured: add bucket=NAME to the URI (file:path/db.sqlite?vfs=s3&bucket=NAME) or set S3VFS_BUCKET".into(),
            )
        })?;
        let profile = pick("profile", &["AWS_PROFILE"]).unwrap_or_else(|| "default".into());
        let shared = SharedFiles::load(env, &profile);
        let region = pick("region", &["AWS_REGION", "AWS_DEFAULT_REGION"])
            .or_else(|| shared.region.clone())
            .unwrap_or_else(|| "us-east-1".into());
        let (endpoint, path_style) =
            match pick("endpoint", &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]) {
                Some(e) => (parse_endpoint(&e)?, true),
                // Bucket names with dots break the wildcard TLS certificate of virtual-hosted URLs.
                None if bucket.contains('.') => {
                    (format!("https://s3.{region}.amazonaws.com"), true)
                }
                None => (format!("https://s3.{region}.amazonaws.com"), false),
            };
        let credentials = credentials(env, &shared, &profile)?;
        let block_size = parse_block_size(pick("block_size", &["S3VFS_BLOCK_SIZE"]))?;
        let concurrency = parse_count(
            Setting::Concurrency,
            pick("concurrency", &["S3VFS_CONCURRENCY"]),
            DEFAULT_CONCURRENCY as u64,
            1..=MAX_CONCURRENCY as u64,
        )? as usize;
        let cache_size = parse_count(
            Setting::CacheSize,
            pick("cache_size", &["S3VFS_CACHE_SIZE"]),
            crate::cache::DEFAULT_CAPACITY as u64,
            0..=u64::from(u32::MAX) * 16,
        )? as usize;
        let locking = match pick("locking", &["S3VFS_LOCKING"]).as_deref() {
            None | Some("lease") => Locking::Lease,
            Some("none") => Locking::None,
            Some("strict") => Locking::Strict,
            Some(other) => {
                return Err(Error::Config(format!(
                    "locking '{other}' is not a locking mode: use locking=lease (default: one writer anywhere, via a lease object in S3), locking=strict (also: writers wait for readers in other processes) or locking=none (no coordination, as sqlite-s3vfs)"
                )))
            }
        };
        let lease_term = Duration::from_secs(parse_count(
            Setting::LeaseSeconds,
            env("S3VFS_LEASE_SECONDS"),
            DEFAULT_LEASE_SECONDS,
            1..=3600,
        )?);
        let lease_linger = Duration::from_millis(parse_count(
            Setting::LeaseLinger,
            pick("lease_linger_ms", &["S3VFS_LEASE_LINGER_MS"]),
            default_linger_ms(env),
            0..=60_000,
        )?);
        Ok(Config {
            target: std::sync::Arc::new(Target {
                bucket,
                endpoint,
                path_style,
                region,
                credentials,
            }),
            block_size,
            concurrency,
            cache_size,
            locking,
            lease_term,
            lease_linger,
        })
    }

    /// The same settings for another bucket on the same endpoint.
    pub fn with_bucket(&self, bucket: &str) -> Config {
        Config {
            target: std::sync::Arc::new(self.target.with_bucket(bucket)),
            ..self.clone()
        }
    }
}

/// Default lease term: long enough for ordinary clock skew between machines and the
/// longest pause between a writer's requests, short enough that a crashed writer's
/// database is writable again within half a minute.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

/// Default linger of the lease after a write transaction: a quarter second keeps a burst of
/// autocommit writes (a web app, a worker) at three round trips per commit, and is short
/// enough for another process's busy_timeout. On AWS Lambda the process is frozen as soon
/// as a handler returns, with no time to give the lease up in the background: there the
/// lease goes as each write transaction ends.
pub const DEFAULT_LEASE_LINGER_MS: u64 = 250;

fn default_linger_ms(env: Lookup) -> u64 {
    if env("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        0
    } else {
        DEFAULT_LEASE_LINGER_MS
    }
}

/// Settings of the process rather than of one database, read once from the environment.
#[derive(Clone, Debug)]
pub struct ProcessSettings {
    /// `S3VFS_TRACE=1`: print every request (operation, URL, status) on stderr.
    pub trace: bool,
    /// `S3VFS_LOG=off`: no stderr copy of errors (they still go to `sqlite3_log`).
    pub stderr_errors: bool,
    /// `S3VFS_PRICE_CLASS_A` / `S3VFS_PRICE_CLASS_B`: US dollars per 1,000 requests of
    /// each class, for `s3vfs_stats()`'s `cost_usd` (default: S3 Standard, us-east-1).
    pub prices: crate::stats::Prices,
}

impl ProcessSettings {
    /// Resolves the process settings from an environment lookup.
    pub fn resolve(env: Lookup) -> ProcessSettings {
        ProcessSettings {
            trace: env("S3VFS_TRACE").is_some_and(|v| v != "0"),
            stderr_errors: env("S3VFS_LOG").as_deref() != Some("off"),
            prices: {
                let d = crate::stats::Prices::default();
                let price = |name: &str, default: f64| {
                    env(name)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|p| p.is_finite() && *p >= 0.0)
                        .unwrap_or(default)
                };
                crate::stats::Prices {
                    class_a: price("S3VFS_PRICE_CLASS_A", d.class_a),
                    class_b: price("S3VFS_PRICE_CLASS_B", d.class_b),
                }
            },
        }
    }
}

/// The process settings, from the process environment at first use.
pub fn process() -> &'static ProcessSettings {
    static SETTINGS: Lazy<ProcessSettings> = Lazy::new(|| {
        let s = ProcessSettings::resolve(&process_env);
        crate::stats::set_prices(s.prices);
        s
    });
    &SETTINGS
}

/// Parses a non-negative integer setting within `range`.
fn parse_count(
    setting: Setting,
    raw: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(Error::setting(
            setting,
            Problem::NotInRange {
                value: raw,
                min: *range.start(),
                max: *range.end(),
                default,
            },
        )),
    }
}

/// Checks an endpoint URL and returns it without a trailing slash.
fn parse_endpoint(raw: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::setting(
            Setting::Endpoint,
            Problem::BadUrl {
                value: raw.to_string(),
                why: why.to_string(),
            },
        )
    };
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment allowed"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// Parses and bounds-checks a block size setting.
pub fn parse_block_size(raw: Option<String>) -> Result<u64> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_BLOCK_SIZE);
    };
    let n: u64 = raw.trim().parse().map_err(|_| {
        Error::setting(
            Setting::BlockSize,
            Problem::NotBytes {
                value: raw.clone(),
                default: DEFAULT_BLOCK_SIZE,
            },
        )
    })?;
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&n) {
        return Err(Error::setting(
            Setting::BlockSize,
            Problem::BytesOutOfRange {
                value: n,
                min: MIN_BLOCK_SIZE,
                max: MAX_BLOCK_SIZE,
                default: DEFAULT_BLOCK_SIZE,
            },
        ));
    }
    Ok(n)
}

/// Credentials from the environment, else from the profile in the shared credentials file.
fn credentials(env: Lookup, shared: &SharedFiles, profile: &str) -> Result<Credentials> {
    if let (Some(access_key), Some(secret_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(Credentials {
            access_key,
            secret_key,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    if let Some(c) = &shared.credentials {
        return Ok(c.clone());
    }
    Err(Error::setting(
        Setting::Profile,
        Problem::NoCredentials {
            profile: profile.to_string(),
            path: shared.credentials_path.display().to_string(),
        },
    ))
}

/// What the AWS shared files say for one profile.
struct SharedFiles {
    credentials_path: PathBuf,
    credentials: Option<Credentials>,
    region: Option<String>,
}

impl SharedFiles {
    fn load(env: Lookup, profile: &str) -> SharedFiles {
        let home = env("HOME").map(PathBuf::from).unwrap_or_default();
        let credentials_path = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws/credentials"));
        let config_path = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws/config"));
        let creds_ini = read_ini(&credentials_path);
        let config_ini = read_ini(&config_path);
        let section = creds_ini.get(profile);
        let credentials = section.and_then(|s| {
            Some(Credentials {
                access_key: s.get("aws_access_key_id")?.clone(),
                secret_key: s.get("aws_secret_access_key")?.clone(),
                session_token: s.get("aws_session_token").cloned(),
            })
        });
        // ~/.aws/config names sections "profile NAME", except for "default".
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let region = config_ini
            .get(&config_section)
            .and_then(|s| s.get("region").cloned())
            .or_else(|| section.and_then(|s| s.get("region").cloned()));
        SharedFiles {
            credentials_path,
            credentials,
            region,
        }
    }
}

type Ini = HashMap<String, HashMap<String, String>>;

/// A forgiving reader for AWS's INI files; a missing or unreadable file is simply empty.
fn read_ini(path: &PathBuf) -> Ini {
    std::fs::read_to_string(path)
        .map(|text| parse_ini(&text))
        .unwrap_or_default()
}

fn parse_ini(text: &str) -> Ini {
    let mut out = Ini::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const KEYS: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];

    #[test]
    fn uri_parameters_beat_environment() {
        let uri = lookup(&[
            ("bucket", "from-uri"),
            ("region", "eu-west-1"),
            ("block_size", "65536"),
        ]);
        let mut env_pairs = KEYS.to_vec();
        env_pairs.extend([
            ("S3VFS_BUCKET", "from-env"),
            ("AWS_REGION", "us-west-2"),
            ("S3VFS_BLOCK_SIZE", "8192"),
        ]);
        let env = lookup(&env_pairs);
        let c = Config::resolve(&uri, &env).unwrap();
        assert_eq!(c.target.bucket, "from-uri");
        assert_eq!(c.target.region, "eu-west-1");
        assert_eq!(c.block_size, 65536);
        assert!(!c.target.path_style);
        assert_eq!(c.target.endpoint, "https://s3.eu-west-1.amazonaws.com");
    }

    #[test]
    fn custom_endpoint_means_path_style() {
        let uri = lookup(&[("endpoint", "http://127.0.0.1:9000/")]);
        let mut env_pairs = KEYS.to_vec();
        env_pairs.push(("S3VFS_BUCKET", "b"));
        let c = Config::resolve(&uri, &lookup(&env_pairs)).unwrap();
        assert!(c.target.path_style);
        assert_eq!(c.target.endpoint, "http://127.0.0.1:9000");
        assert_eq!(c.block_size, DEFAULT_BLOCK_SIZE);
    }

    #[test]
    fn missing_bucket_says_how_to_set_it() {
        let err = Config::resolve(&no_params, &lookup(KEYS)).unwrap_err();
        assert!(err.to_string().contains("S3VFS_BUCKET"), "{err}");
    }

    #[test]
    fn bad_block_sizes_are_refused() {
        for raw in ["0", "-4096", "abc", "511", "16777217"] {
            let err = parse_block_size(Some(raw.to_string())).unwrap_err();
            assert!(err.to_string().contains("block_size"), "{raw}: {err}");
        }
        assert_eq!(parse_block_size(Some("4097".into())).unwrap(), 4097);
    }

    #[test]
    fn unknown_uri_parameters_are_refused() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert!(check_uri_keys(&keys(&["vfs", "bucket", "mode", "block_size"])).is_ok());
        let err = check_uri_keys(&keys(&["vfs", "bukcet"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown URI parameter 'bukcet'") && err.contains("bucket"),
            "{err}"
        );
    }

    #[test]
    fn names_that_collide_with_the_layout_or_break_keys_are_refused() {
        for bad in [
            "a/",
            "a/../b.db",
            "./x.db",
            "a/./b",
            "tab\tname",
            "X-journal",
            "X-wal",
            "X.s3vfs-lease",
            "X.s3vfs-readers/m",
            "X.s3vfs-lease-probe-1",
        ] {
            assert!(check_db_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a.db",
            "apps/notes.db",
            "x..y",
            "journal",
            "my-journal.db",
            "a/.hidden",
        ] {
            assert!(check_db_name(good).is_ok(), "{good:?}");
        }
        let err = check_db_name("app-journal").unwrap_err().to_string();
        assert!(err.contains("'app'"), "{err}");
    }

    #[test]
    fn nolock_is_refused_and_points_to_locking_none() {
        let on = |v: &'static str| move |k: &str| (k == "nolock").then(|| v.to_string());
        for v in ["1", "yes", "true"] {
            let err = check_uri_values(&on(v)).unwrap_err().to_string();
            assert!(err.contains("locking=none"), "{err}");
        }
        assert!(check_uri_values(&on("0")).is_ok());
        assert!(check_uri_values(&|_: &str| None).is_ok());
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for raw in ["127.0.0.1:9000", "ftp://host", "http://", "not a url"] {
            assert!(parse_endpoint(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn profile_credentials_come_from_the_shared_file() {
        let dir = std::env::temp_dir().join(format!("s3vfs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let creds = dir.join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token=T\n",
        )
        .unwrap();
        let config = dir.join("config");
        std::fs::write(&config, "[profile work]\nregion = ap-south-1\n").unwrap();
        let env = lookup(&[
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_PROFILE", "work"),
            ("S3VFS_BUCKET", "b"),
        ]);
        let c = Config::resolve(&no_params, &env).unwrap();
        assert_eq!(c.target.credentials.access_key, "W");
        assert_eq!(c.target.credentials.session_token.as_deref(), Some("T"));
        assert_eq!(c.target.region, "ap-south-1");
        assert!(
            !format!("{c:?}").contains("WS"),
            "Debug must not show the secret"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_credentials_name_both_sources() {
        let env = lookup(&[("S3VFS_BUCKET", "b"), ("HOME", "/nonexistent")]);
        let err = Config::resolve(&no_params, &env).unwrap_err().to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID") && err.contains("/nonexistent/.aws/credentials"),
            "{err}"
        );
    }
}
