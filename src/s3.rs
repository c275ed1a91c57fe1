//! A small synchronous S3 client: SigV4 signing (rust-s3's `signing` module), HTTP over one
//! shared keep-alive ureq `Agent`, bounded retries, and just enough XML.
//!
//! Only the operations the block store needs exist. Every error carries the operation,
//! the key, the HTTP status and the S3 error code, and nothing secret: the signature and
//! the credentials never leave [`S3Client::send`].
//!
//! This file holds the operations; `request.rs` signs, sends and retries one request, and
//! `xml.rs` reads S3's answers.

use crate::config::Target;
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::stats::{self, Op};
use std::sync::Arc;

/// Keys per DeleteObjects call: the S3 API maximum.
pub const DELETE_BATCH: usize = 1000;

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
}

mod request;
mod xml;
#[cfg(test)]
use request::Reply;
use xml::{error_code, xml_blocks, xml_escape, xml_text};

mod versions;
pub use versions::{ObjectVersion, VersionListing, Versioning};

#[cfg(test)]
mod tests;
