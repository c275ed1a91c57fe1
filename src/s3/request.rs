//! Sending one request: SigV4 signing (rust-s3's `signing` module) over the process's
//! shared keep-alive ureq `Agent`, bounded retries of transient failures with backoff, and
//! S3 error bodies turned into errors that name the operation, key, status and code. The
//! signature and the credentials never leave [`S3Client::send`].

use super::xml::{error_code, xml_text};
use super::S3Client;
use crate::error::{Error, Result};
use crate::stats::{self, Op};
use hmac::Mac;
use once_cell::sync::Lazy;
use s3::signing;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Attempts per request for transient failures (5xx, resets, timeouts). Six, not the SDKs'
/// usual three or four: one commit or copy may send tens of thousands of requests, and at a
/// few percent of failures four attempts still lose one request in a 1 GB copy.
const MAX_ATTEMPTS: u32 = 6;
/// No new attempt starts after this long, so a failing server surfaces as an error in
/// bounded time rather than after every attempt's full timeout.
const RETRY_BUDGET: Duration = Duration::from_secs(20);
/// Longest one attempt of a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One agent for the process, so that every thread reuses pooled connections.
static AGENT: Lazy<ureq::Agent> = Lazy::new(|| {
    ureq::Agent::config_builder()
        // S3 error bodies carry the error code; read them instead of getting a bare status.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(REQUEST_TIMEOUT))
        // As many as a batch may have in flight (up to `concurrency` 256, and serialize's 4
        // parts at once), so a batch never reconnects for want of a pooled connection.
        .max_idle_connections(512)
        .max_idle_connections_per_host(256)
        .user_agent(concat!("s3vfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
});

/// What one request got back.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) content_length: Option<u64>,
    pub(super) etag: Option<String>,
    /// `x-amz-bucket-region`, which AWS sends with a wrong-region answer.
    pub(super) bucket_region: Option<String>,
    /// `x-amz-server-side-encryption`: with KMS (or a customer key) the ETag is not the MD5.
    pub(super) sse: Option<String>,
}

impl Reply {
    /// Whether the ETag contradicts `body`: S3's ETag of an object stored in one PUT is
    /// the MD5 of its bytes (unless encrypted with KMS or a customer key, or multipart,
    /// which the ETag's form or the encryption header tells). An ETag that says nothing
    /// about the bytes never contradicts them.
    pub(super) fn etag_contradicts(&self, body: &[u8]) -> bool {
        let Some(etag) = self.etag.as_deref().map(|e| e.trim_matches('"')) else {
            return false;
        };
        let plain_md5 = etag.len() == 32 && etag.bytes().all(|c| c.is_ascii_hexdigit());
        let md5_etag = matches!(self.sse.as_deref(), None | Some("AES256"));
        plain_md5 && md5_etag && !etag.eq_ignore_ascii_case(&format!("{:x}", md5::compute(body)))
    }
}

impl S3Client {
    /// Builds the URL of `key` (or of the bucket when `key` is empty).
    pub(super) fn url(&self, key: &str, query: &[(&str, String)]) -> String {
        let c = &self.cfg;
        let path = signing::uri_encode(key, false);
        let mut url = if c.path_style {
            format!("{}/{}/{}", c.endpoint, c.bucket, path)
        } else {
            let (scheme, host) = c
                .endpoint
                .split_once("://")
                .unwrap_or(("https", &c.endpoint));
            format!("{scheme}://{}.{host}/{path}", c.bucket)
        };
        if path.is_empty() && c.path_style {
            url.pop(); // "/bucket" rather than "/bucket/" for bucket-level requests
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&signing::uri_encode(k, true));
            url.push('=');
            url.push_str(&signing::uri_encode(v, true));
        }
        url
    }

    /// Signs and sends one request, retrying transient failures with backoff and jitter.
    pub(super) fn send(
        &self,
        op: Op,
        method: &str,
        key: &str,
        query: &[(&str, String)],
        extra_headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Reply> {
        let url = self.url(key, query);
        let payload_hash = hex::encode(Sha256::digest(body));
        let mut attempt = 0;
        let started = std::time::Instant::now();
        let fenced = self
            .fence
            .as_ref()
            .filter(|_| method != "GET" && method != "HEAD");
        loop {
            attempt += 1;
            // A fenced write is sent only with lease time left, and never runs past it.
            let limit = match fenced {
                Some(fence) => Some(fence.remaining().ok_or_else(|| {
                    Error::Lease(format!(
                        "the write lease on s3://{}/{key} ran out or was lost before this write could be sent: nothing more is stored for this transaction (another writer may have taken over); retry the transaction",
                        self.cfg.bucket
                    ))
                })?),
                None => None,
            };
            stats::request(op, body.len());
            let outcome = self.send_once(method, &url, &payload_hash, extra_headers, body, limit);
            // `S3VFS_TRACE=1`: what a query costs. URLs carry no credentials.
            if crate::config::process().trace {
                let status = outcome
                    .as_ref()
                    .map_or_else(|e| e.to_string(), |r| r.status.to_string());
                eprintln!("s3vfs: {} {method} {url} -> {status}", op.name());
            }
            let transient = match &outcome {
                Ok(r) => matches!(r.status, 500 | 502 | 503 | 504),
                Err(e) => is_transient(e),
            };
            if !transient || attempt >= MAX_ATTEMPTS || started.elapsed() > RETRY_BUDGET {
                return match outcome {
                    Ok(r) => Ok(r),
                    Err(e) => {
                        stats::error();
                        Err(Error::Transport {
                            op: op.name(),
                            endpoint: self.cfg.endpoint.clone(),
                            detail: describe_transport(&e),
                        })
                    }
                };
            }
            stats::retry();
            std::thread::sleep(backoff(attempt));
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        payload_hash: &str,
        extra_headers: &[(&str, String)],
        body: &[u8],
        limit: Option<Duration>,
    ) -> std::result::Result<Reply, ureq::Error> {
        let parsed = url::Url::parse(url).map_err(|e| ureq::Error::BadUri(e.to_string()))?;
        let host = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_string(),
        };
        let now = time::OffsetDateTime::now_utc();
        let amz_date = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            now.month() as u8,
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let creds = &self.cfg.credentials;
        let mut headers = http::HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> std::result::Result<(), ureq::Error> {
            let v = http::HeaderValue::from_str(value)
                .map_err(|e| ureq::Error::BadUri(e.to_string()))?;
            headers.insert(name, v);
            Ok(())
        };
        put("host", &host)?;
        put("x-amz-date", &amz_date)?;
        put("x-amz-content-sha256", payload_hash)?;
        if let Some(token) = &creds.session_token {
            put("x-amz-security-token", token)?;
        }
        for (k, v) in extra_headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ureq::Error::BadUri(e.to_string()))?;
            let v =
                http::HeaderValue::from_str(v).map_err(|e| ureq::Error::BadUri(e.to_string()))?;
            headers.insert(name, v);
        }
        let authorization = self
            .authorization(method, &parsed, &headers, payload_hash, now)
            .map_err(|e| ureq::Error::BadUri(format!("signing failed: {e}")))?;

        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers.iter() {
            if name != "host" {
                req = req.header(name, value);
            }
        }
        let req = req
            .header("authorization", authorization)
            .body(body)
            .map_err(ureq::Error::Http)?;
        let mut resp = match limit {
            Some(limit) => {
                let req = AGENT
                    .configure_request(req)
                    .timeout_global(Some(limit.min(REQUEST_TIMEOUT)))
                    .build();
                AGENT.run(req)?
            }
            None => AGENT.run(req)?,
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_length = header("content-length").and_then(|v| v.parse().ok());
        let etag = header("etag");
        let bucket_region = header("x-amz-bucket-region");
        let sse = header("x-amz-server-side-encryption")
            .or_else(|| header("x-amz-server-side-encryption-customer-algorithm"));
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            let mut body = resp
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()?;
            // Reading grows the buffer by doubling: a 4 KiB block may sit in 8 KiB. The
            // cache counts blocks by their length, so its bound is only real if the
            // buffers are no larger (a 500 MB scan peaked at twice the cache without this).
            body.shrink_to_fit();
            body
        };
        stats::bytes_down(body.len());
        Ok(Reply {
            status,
            body,
            content_length,
            etag,
            bucket_region,
            sse,
        })
    }

    fn authorization(
        &self,
        method: &str,
        url: &url::Url,
        headers: &http::HeaderMap,
        payload_hash: &str,
        now: time::OffsetDateTime,
    ) -> std::result::Result<String, s3::error::S3Error> {
        let creds = &self.cfg.credentials;
        let region = s3::Region::Custom {
            region: self.cfg.region.clone(),
            endpoint: String::new(),
        };
        let canonical = signing::canonical_request(method, url, headers, payload_hash)?;
        let to_sign = signing::string_to_sign(&now, &region, &canonical)?;
        let key = signing::signing_key(&now, &creds.secret_key, &region, "s3")?;
        let mut mac =
            signing::HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length");
        mac.update(to_sign.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        signing::authorization_header(
            &creds.access_key,
            &now,
            &region,
            &signing::signed_header_string(headers),
            &signature,
        )
    }

    pub(super) fn s3_error(&self, op: &'static str, key: &str, r: &Reply) -> Error {
        stats::error();
        let text = String::from_utf8_lossy(&r.body);
        let looks_like_s3 =
            text.contains("<Error>") || text.contains("<ListBucketResult") || r.body.is_empty();
        let (code, message) = if looks_like_s3 {
            let code = error_code(&r.body);
            let mut message = xml_text(&text, "Message").unwrap_or_default();
            // The facts that make the remedy concrete: where the bucket really is, and
            // how far apart the clocks are.
            if let Some(region) = xml_text(&text, "Region").or_else(|| r.bucket_region.clone()) {
                message.push_str(&format!("; the bucket is in region {region}"));
            }
            if let (Some(ours), Some(theirs)) = (
                xml_text(&text, "RequestTime"),
                xml_text(&text, "ServerTime"),
            ) {
                message.push_str(&format!("; request time {ours}, server time {theirs}"));
            }
            (code, message)
        } else {
            (String::new(), "the response is not S3 XML".to_string())
        };
        Error::S3 {
            op,
            bucket: self.cfg.bucket.clone(),
            key: key.to_string(),
            status: r.status,
            code,
            message,
        }
    }
}

pub(super) fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) | ureq::Error::BodyStalled | ureq::Error::Protocol(_) => true,
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

pub(super) fn describe_transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".into()
        }
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => other.to_string(),
    }
}

/// Exponential backoff with jitter: ~50 ms, 200 ms, 800 ms, then 2 s, each plus up to 50%.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = (50u64 * 4u64.pow(attempt.saturating_sub(1).min(4))).min(2000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 2 + 1))
}
