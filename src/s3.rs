//! A small synchronous S3 client: SigV4 signing (rust-s3's `signing` module), HTTP over one
//! shared keep-alive ureq `Agent`, bounded retries, and just enough XML.
//!
//! Only the operations the block store needs exist. Every error carries the operation,
//! the key, the HTTP status and the S3 error code, and nothing secret: the signature and
//! the credentials never leave [`S3Client::send`].

use crate::config::Target;
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::stats::{self, Op};
use hmac::Mac;
use once_cell::sync::Lazy;
use s3::signing;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Attempts per request for transient failures (5xx, resets, timeouts). Six, not the SDKs'
/// usual three or four: one commit or copy may send tens of thousands of requests, and at a
/// few percent of failures four attempts still lose one request in a 1 GB copy.
const MAX_ATTEMPTS: u32 = 6;
/// No new attempt starts after this long, so a failing server surfaces as an error in
/// bounded time rather than after every attempt's full timeout.
const RETRY_BUDGET: Duration = Duration::from_secs(20);
/// Keys per DeleteObjects call: the S3 API maximum.
pub const DELETE_BATCH: usize = 1000;

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

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A bucket on an endpoint, with the credentials to sign for it.
#[derive(Clone, Debug)]
pub struct S3Client {
    cfg: Arc<Target>,
    /// When set, writes are sent only while the fence is open, each attempt cut to the
    /// time it has left (see `fence.rs`).
    fence: Option<Arc<Fence>>,
}

struct Reply {
    status: u16,
    body: Vec<u8>,
    content_length: Option<u64>,
    etag: Option<String>,
    /// `x-amz-bucket-region`, which AWS sends with a wrong-region answer.
    bucket_region: Option<String>,
    /// `x-amz-server-side-encryption`: with KMS (or a customer key) the ETag is not the MD5.
    sse: Option<String>,
}

impl Reply {
    /// Whether the ETag contradicts `body`: S3's ETag of an object stored in one PUT is
    /// the MD5 of its bytes (unless encrypted with KMS or a customer key, or multipart,
    /// which the ETag's form or the encryption header tells). An ETag that says nothing
    /// about the bytes never contradicts them.
    fn etag_contradicts(&self, body: &[u8]) -> bool {
        let Some(etag) = self.etag.as_deref().map(|e| e.trim_matches('"')) else {
            return false;
        };
        let plain_md5 = etag.len() == 32 && etag.bytes().all(|c| c.is_ascii_hexdigit());
        let md5_etag = matches!(self.sse.as_deref(), None | Some("AES256"));
        plain_md5 && md5_etag && !etag.eq_ignore_ascii_case(&format!("{:x}", md5::compute(body)))
    }
}

/// Attempts at a request whose answer contradicts what was sent or read (a body damaged
/// in transit, a PUT acknowledged without storing the bytes).
const INTEGRITY_ATTEMPTS: u32 = 3;

/// The `Content-MD5` header of a body: S3 refuses to store bytes that do not match it.
fn content_md5(body: &[u8]) -> (&'static str, String) {
    use base64::Engine as _;
    (
        "content-md5",
        base64::engine::general_purpose::STANDARD.encode(md5::compute(body).0),
    )
}

/// What a conditional GET (`If-None-Match`) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the ETag given (HTTP 304, no body).
    NotModified,
    /// No object at the key.
    Missing,
    /// The object's bytes and ETag (`None` when the server sent none).
    Found { data: Vec<u8>, etag: Option<String> },
}

/// The precondition of a conditional PUT (S3's compare-and-swap).
#[derive(Clone, Copy, Debug)]
pub enum Condition<'a> {
    /// `If-None-Match: *`: only if no object exists at the key.
    Absent,
    /// `If-Match: <etag>`: only if the object is still this version.
    Matches(&'a str),
}

/// What a conditional PUT did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CondPut {
    /// Stored; the new version's ETag.
    Stored(String),
    /// The precondition failed (HTTP 412, or 409 for a racing conditional request).
    Refused,
}

impl S3Client {
    /// A client for one bucket: where it is and how to sign, nothing about databases.
    pub fn new(target: Arc<Target>) -> S3Client {
        S3Client {
            cfg: target,
            fence: None,
        }
    }

    /// The same client, sending writes only while `fence` is open.
    pub fn with_fence(&self, fence: Arc<Fence>) -> S3Client {
        S3Client {
            cfg: self.cfg.clone(),
            fence: Some(fence),
        }
    }

    /// The bucket, endpoint and credentials this client speaks to.
    pub fn target(&self) -> &Target {
        &self.cfg
    }

    /// GET an object; `Ok(None)` when the key does not exist. A body that contradicts
    /// its ETag (damaged in transit) is fetched again, then reported as corrupt.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        for _ in 0..INTEGRITY_ATTEMPTS {
            let r = self.send(Op::Get, "GET", key, &[], &[], &[])?;
            match r.status {
                200 if r.etag_contradicts(&r.body) => stats::retry(),
                200 => return Ok(Some(r.body)),
                404 if error_code(&r.body) == "NoSuchKey" => return Ok(None),
                _ => return Err(self.s3_error("GET", key, &r)),
            }
        }
        stats::error();
        Err(Error::Corrupt(format!(
            "GET s3://{}/{key} returned bytes that do not match the object's ETag (MD5) {INTEGRITY_ATTEMPTS} times: the data is damaged between the server and this process (a proxy or network corrupting bodies?); nothing was read",
            self.cfg.bucket
        )))
    }

    /// PUT an object with its `Content-MD5`, and check that the acknowledgement is for
    /// those bytes (its ETag): a PUT answered 200 that stored something else is sent again,
    /// then reported.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        for _ in 0..INTEGRITY_ATTEMPTS {
            let r = self.send(Op::Put, "PUT", key, &[], &[content_md5(body)], body)?;
            match r.status {
                200 if r.etag_contradicts(body) => stats::retry(),
                200 => return Ok(()),
                _ => return Err(self.s3_error("PUT", key, &r)),
            }
        }
        stats::error();
        Err(Error::Corrupt(format!(
            "PUT s3://{}/{key} was acknowledged with an ETag that is not the MD5 of the bytes sent, {INTEGRITY_ATTEMPTS} times: the server did not store them; this write failed",
            self.cfg.bucket
        )))
    }

    /// GET an object unless its ETag is still `known` (`If-None-Match`: a 304 answer has
    /// no body). A body that contradicts its ETag is fetched again, then reported.
    pub fn get_if_changed(&self, key: &str, known: Option<&str>) -> Result<Fetched> {
        let cond: Vec<(&str, String)> = known
            .map(|e| vec![("if-none-match", e.to_string())])
            .unwrap_or_default();
        for _ in 0..INTEGRITY_ATTEMPTS {
            let r = self.send(Op::Get, "GET", key, &[], &cond, &[])?;
            match r.status {
                304 => return Ok(Fetched::NotModified),
                200 if r.etag_contradicts(&r.body) => stats::retry(),
                200 => {
                    return Ok(Fetched::Found {
                        data: r.body,
                        etag: r.etag,
                    })
                }
                404 if error_code(&r.body) == "NoSuchKey" => return Ok(Fetched::Missing),
                _ => return Err(self.s3_error("GET", key, &r)),
            }
        }
        stats::error();
        Err(Error::Corrupt(format!(
            "GET s3://{}/{key} returned bytes that do not match the object's ETag (MD5) {INTEGRITY_ATTEMPTS} times: the data is damaged between the server and this process (a proxy or network corrupting bodies?); nothing was read",
            self.cfg.bucket
        )))
    }

    /// GET bytes `[start, end)` of an object (an HTTP Range request).
    pub fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        let range = [("range", format!("bytes={start}-{}", end - 1))];
        let r = self.send(Op::Get, "GET", key, &[], &range, &[])?;
        match r.status {
            200 | 206 => Ok(Some(r.body)),
            404 if error_code(&r.body) == "NoSuchKey" => Ok(None),
            // A range past the end of the object: nothing there.
            416 => Ok(Some(Vec::new())),
            _ => Err(self.s3_error("GET", key, &r)),
        }
    }

    /// Starts a multipart upload; returns its upload id.
    pub fn create_multipart(&self, key: &str) -> Result<String> {
        let r = self.send(
            Op::Put,
            "POST",
            key,
            &[("uploads", String::new())],
            &[],
            &[],
        )?;
        let id = xml_text(&String::from_utf8_lossy(&r.body), "UploadId");
        match (r.status, id) {
            (200, Some(id)) => Ok(id),
            _ => Err(self.s3_error("CreateMultipartUpload", key, &r)),
        }
    }

    /// Uploads part `number` (1-based) of a multipart upload; returns its ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        body: &[u8],
    ) -> Result<String> {
        let query = [
            ("partNumber", number.to_string()),
            ("uploadId", upload_id.to_string()),
        ];
        let r = self.send(Op::Put, "PUT", key, &query, &[], body)?;
        match (r.status, r.etag.clone()) {
            (200, Some(etag)) => Ok(etag),
            _ => Err(self.s3_error("UploadPart", key, &r)),
        }
    }

    /// Completes a multipart upload from its parts' ETags, in part order.
    pub fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<()> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml_escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let query = [("uploadId", upload_id.to_string())];
        let r = self.send(Op::Put, "POST", key, &query, &[], xml.as_bytes())?;
        // S3 may report a failure inside a 200 response.
        if r.status == 200 && !String::from_utf8_lossy(&r.body).contains("<Error>") {
            Ok(())
        } else {
            Err(self.s3_error("CompleteMultipartUpload", key, &r))
        }
    }

    /// Aborts a multipart upload, discarding its parts.
    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let query = [("uploadId", upload_id.to_string())];
        let r = self.send(Op::Delete, "DELETE", key, &query, &[], &[])?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.s3_error("AbortMultipartUpload", key, &r)),
        }
    }

    /// GET an object with its ETag; `Ok(None)` when the key does not exist.
    pub fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let r = self.send(Op::Get, "GET", key, &[], &[], &[])?;
        match r.status {
            200 => Ok(Some((r.body, r.etag.unwrap_or_default()))),
            404 if error_code(&r.body) == "NoSuchKey" => Ok(None),
            _ => Err(self.s3_error("GET", key, &r)),
        }
    }

    /// PUT an object only if `condition` holds. A server that ignores the condition
    /// answers 200 every time; the capability probe in `lease.rs` detects that.
    pub fn put_if(&self, key: &str, body: &[u8], condition: Condition) -> Result<CondPut> {
        let header = match condition {
            Condition::Absent => ("if-none-match", "*".to_string()),
            Condition::Matches(etag) => ("if-match", etag.to_string()),
        };
        let r = self.send(Op::Put, "PUT", key, &[], &[header, content_md5(body)], body)?;
        match r.status {
            200 => Ok(CondPut::Stored(r.etag.unwrap_or_default())),
            // 404: If-Match on a key that no longer exists (AWS and moto answer so).
            412 | 409 | 404 => Ok(CondPut::Refused),
            _ => Err(self.s3_error("PUT", key, &r)),
        }
    }

    /// DELETE one object (deleting a missing key succeeds, as in S3).
    pub fn delete(&self, key: &str) -> Result<()> {
        let r = self.send(Op::Delete, "DELETE", key, &[], &[], &[])?;
        match r.status {
            200 | 204 => Ok(()),
            _ => Err(self.s3_error("DELETE", key, &r)),
        }
    }

    /// HEAD an object: its size, or `None` when it does not exist.
    pub fn head(&self, key: &str) -> Result<Option<u64>> {
        let r = self.send(Op::Head, "HEAD", key, &[], &[], &[])?;
        match r.status {
            200 => Ok(Some(r.content_length.unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.s3_error("HEAD", key, &r)),
        }
    }

    /// Deletes many keys with DeleteObjects, up to [`DELETE_BATCH`] per call, and fails if
    /// the server reports an error for any single key.
    pub fn delete_many(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(DELETE_BATCH) {
            let mut xml = String::from("<Delete><Quiet>true</Quiet>");
            for k in chunk {
                xml.push_str("<Object><Key>");
                xml.push_str(&xml_escape(k));
                xml.push_str("</Key></Object>");
            }
            xml.push_str("</Delete>");
            use base64::Engine as _;
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(md5::compute(xml.as_bytes()).0);
            let headers = [
                ("content-md5", md5),
                ("content-type", "application/xml".to_string()),
            ];
            let r = self.send(
                Op::Delete,
                "POST",
                "",
                &[("delete", String::new())],
                &headers,
                xml.as_bytes(),
            )?;
            if r.status != 200 {
                return Err(self.s3_error("DeleteObjects", &chunk[0], &r));
            }
            let text = String::from_utf8_lossy(&r.body);
            let first_error = xml_blocks(&text, "Error").next().map(str::to_string);
            if let Some(err) = first_error {
                let err = err.as_str();
                let key = xml_text(err, "Key").unwrap_or_default();
                stats::error();
                return Err(Error::S3 {
                    op: "DeleteObjects",
                    bucket: self.cfg.bucket.clone(),
                    key,
                    status: r.status,
                    code: xml_text(err, "Code").unwrap_or_default(),
                    message: xml_text(err, "Message").unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// Lists every object under `prefix` (ListObjectsV2, following continuation tokens),
    /// or at most `limit` of them.
    pub fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(n) = limit {
                query.push(("max-keys", (n - out.len()).min(1000).to_string()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let r = self.send(Op::List, "GET", "", &query, &[], &[])?;
            if r.status != 200 {
                return Err(self.s3_error("LIST", prefix, &r));
            }
            let text = String::from_utf8_lossy(&r.body);
            if !text.contains("<ListBucketResult") {
                return Err(self.s3_error("LIST", prefix, &r));
            }
            for c in xml_blocks(&text, "Contents") {
                let key = xml_text(c, "Key").unwrap_or_default();
                let size = xml_text(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push(ObjectInfo { key, size });
            }
            token = match xml_text(&text, "IsTruncated").as_deref() {
                Some("true") => xml_text(&text, "NextContinuationToken"),
                _ => None,
            };
            let full = limit.is_some_and(|n| out.len() >= n);
            if token.is_none() || full {
                return Ok(out);
            }
        }
    }

    /// Builds the URL of `key` (or of the bucket when `key` is empty).
    fn url(&self, key: &str, query: &[(&str, String)]) -> String {
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
    fn send(
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

    fn s3_error(&self, op: &'static str, key: &str, r: &Reply) -> Error {
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

fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) | ureq::Error::BodyStalled | ureq::Error::Protocol(_) => true,
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

fn describe_transport(e: &ureq::Error) -> String {
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
fn backoff(attempt: u32) -> Duration {
    let base = (50u64 * 4u64.pow(attempt.saturating_sub(1).min(4))).min(2000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

/// The `<Code>` of an S3 error body, or "" when there is none.
fn error_code(body: &[u8]) -> String {
    xml_text(&String::from_utf8_lossy(body), "Code").unwrap_or_default()
}

/// The unescaped text of the first `<tag>…</tag>` in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml_unescape(&xml[start..end]))
}

/// The inner text of every `<tag>…</tag>` block, in document order.
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = start + rest[start..].find(&close)?;
        let block = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(block)
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

mod versions;
pub use versions::{ObjectVersion, VersionListing, Versioning};

#[cfg(test)]
mod tests;
