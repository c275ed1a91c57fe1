//! The S3 operations s3vfs, sqlite-s3vfs and boto3 use, on objects kept in memory.
//!
//! One mutex guards all buckets: every operation holds it only for a map lookup or insert
//! (bodies are read and hashed before it is taken), and holding it across the check and the
//! insert is what makes conditional PUTs atomic under racing writers.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

#[derive(Clone)]
struct Obj {
    data: Bytes,
    etag: String,
    modified: SystemTime,
}

struct Upload {
    bucket: String,
    key: String,
    parts: BTreeMap<i32, (Bytes, String)>,
}

#[derive(Default)]
pub struct Mem {
    buckets: Mutex<HashMap<String, BTreeMap<String, Obj>>>,
    uploads: Mutex<HashMap<String, Upload>>,
    next_upload: AtomicU64,
}

/// A poisoned lock only means another request panicked mid-operation; the maps are still
/// usable, and a benchmark server should keep answering.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

async fn read_body(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let Some(blob) = body else {
        return Ok(Bytes::new());
    };
    let mut body = s3s::Body::from(blob);
    body.store_all_limited(usize::MAX)
        .await
        .map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))
}

fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl Mem {
    pub fn create(&self, bucket: &str) {
        lock(&self.buckets).entry(bucket.to_owned()).or_default();
    }

    fn get(&self, bucket: &str, key: &str) -> S3Result<Obj> {
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?;
        b.get(key).cloned().ok_or_else(|| s3_error!(NoSuchKey))
    }

    /// Stores `obj` unless the conditions fail; checked and stored under one lock.
    fn put_if(
        &self,
        bucket: &str,
        key: &str,
        obj: Obj,
        if_none_match: Option<&ETagCondition>,
        if_match: Option<&ETagCondition>,
    ) -> S3Result<()> {
        let mut buckets = lock(&self.buckets);
        let b = buckets
            .get_mut(bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let old = b.get(key);
        if let (Some(cond), Some(old)) = (if_none_match, old) {
            if etag_matches(cond, &old.etag) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-None-Match: the object exists"
                ));
            }
        }
        if let Some(cond) = if_match {
            // Like AWS: If-Match on a missing key is a 404, not a 412.
            let old = old.ok_or_else(|| s3_error!(NoSuchKey))?;
            if !etag_matches(cond, &old.etag) {
                return Err(s3_error!(PreconditionFailed, "If-Match: the ETag differs"));
            }
        }
        b.insert(key.to_owned(), obj);
        Ok(())
    }
}

struct Page {
    contents: Vec<Object>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned, when there is more: the next page starts
    /// strictly after it.
    next: Option<String>,
    max_keys: i32,
}

impl Mem {
    /// One page of keys in order (at most 1,000, like S3), common prefixes folded in.
    fn list(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<String>,
        max_keys: Option<i32>,
    ) -> S3Result<Page> {
        let max_keys = max_keys.unwrap_or(1000).clamp(0, 1000);
        let prefix = prefix.unwrap_or("");
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let lower = match &after {
            Some(a) if a.as_str() >= prefix => Bound::Excluded(a.clone()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?;
        let mut page = Page {
            contents: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            next: None,
            max_keys,
        };
        let mut last: Option<String> = None;
        for (key, obj) in b.range((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let cp = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(cp) = &cp {
                // Keys under a common prefix already returned (in this page or, through the
                // token, in the one before) collapse into it.
                if page.prefixes.last() == Some(cp) || after.as_deref() == Some(cp.as_str()) {
                    continue;
                }
            }
            if page.contents.len() + page.prefixes.len() == max_keys as usize {
                page.truncated = true;
                page.next = last;
                break;
            }
            match cp {
                Some(cp) => {
                    last = Some(cp.clone());
                    page.prefixes.push(cp);
                }
                None => {
                    last = Some(key.clone());
                    page.contents.push(Object {
                        key: Some(key.clone()),
                        size: Some(obj.data.len() as i64),
                        e_tag: Some(ETag::Strong(obj.etag.clone())),
                        last_modified: Some(Timestamp::from(obj.modified)),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(page)
    }
}

#[async_trait::async_trait]
impl S3 for Mem {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let mut buckets = lock(&self.buckets);
        if buckets.contains_key(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        buckets.insert(req.input.bucket, BTreeMap::new());
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        if !lock(&self.buckets).contains_key(&req.input.bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let data = read_body(input.body).await?;
        let etag = md5_hex(&[&data]);
        let size = data.len() as i64;
        let obj = Obj {
            data,
            etag: etag.clone(),
            modified: SystemTime::now(),
        };
        self.put_if(
            &input.bucket,
            &input.key,
            obj,
            input.if_none_match.as_ref(),
            input.if_match.as_ref(),
        )?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let obj = self.get(&input.bucket, &input.key)?;
        if let Some(cond) = &input.if_match {
            if !etag_matches(cond, &obj.etag) {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        if let Some(cond) = &input.if_none_match {
            if etag_matches(cond, &obj.etag) {
                return Err(s3_error!(NotModified));
            }
        }
        let len = obj.data.len() as u64;
        let (body, content_range) = match &input.range {
            None => (obj.data, None),
            Some(r) => {
                let span = r.check(len).map_err(|_| s3_error!(InvalidRange))?;
                let body = obj.data.slice(span.start as usize..span.end as usize);
                (
                    body,
                    Some(format!(
                        "bytes {}-{}/{len}",
                        span.start,
                        span.end.saturating_sub(1)
                    )),
                )
            }
        };
        let out = GetObjectOutput {
            content_length: Some(body.len() as i64),
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(obj.etag)),
            last_modified: Some(Timestamp::from(obj.modified)),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let obj = self.get(&input.bucket, &input.key)?;
        if let Some(cond) = &input.if_match {
            if !etag_matches(cond, &obj.etag) {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        if let Some(cond) = &input.if_none_match {
            if etag_matches(cond, &obj.etag) {
                return Err(s3_error!(NotModified));
            }
        }
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(obj.data.len() as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(obj.etag)),
            last_modified: Some(Timestamp::from(obj.modified)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let mut buckets = lock(&self.buckets);
        let b = buckets
            .get_mut(&req.input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        b.remove(&req.input.key);
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let mut buckets = lock(&self.buckets);
        let b = buckets
            .get_mut(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        for id in input.delete.objects {
            b.remove(&id.key);
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(id.key),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        // The continuation token is the last key or common prefix returned.
        let after = input
            .continuation_token
            .clone()
            .or_else(|| input.start_after.clone());
        let page = self.list(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            after,
            input.max_keys,
        )?;
        let out = ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(page.max_keys),
            key_count: Some((page.contents.len() + page.prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(page.truncated),
            next_continuation_token: page.next,
            contents: Some(page.contents),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    /// ListObjects (v1): sqlite-s3vfs lists through boto3's `bucket.objects.filter`, which
    /// sends this one, with markers instead of continuation tokens.
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let page = self.list(
            &input.bucket,
            input.prefix.as_deref(),
            input.delimiter.as_deref(),
            input.marker.clone(),
            input.max_keys,
        )?;
        let out = ListObjectsOutput {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            marker: input.marker,
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.truncated),
            next_marker: page.next,
            contents: Some(page.contents),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "only bucket/key copy sources"));
        };
        let mut src = self.get(bucket, key)?;
        if let Some(cond) = &input.copy_source_if_match {
            if !etag_matches(cond, &src.etag) {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        src.modified = SystemTime::now();
        let result = CopyObjectResult {
            e_tag: Some(ETag::Strong(src.etag.clone())),
            last_modified: Some(Timestamp::from(src.modified)),
            ..Default::default()
        };
        self.put_if(&input.bucket, &input.key, src, None, None)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        if !lock(&self.buckets).contains_key(&input.bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        let id = format!("u{:016x}", self.next_upload.fetch_add(1, Ordering::Relaxed));
        let upload = Upload {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            parts: BTreeMap::new(),
        };
        lock(&self.uploads).insert(id.clone(), upload);
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let data = read_body(input.body).await?;
        let etag = md5_hex(&[&data]);
        let mut uploads = lock(&self.uploads);
        let up = uploads
            .get_mut(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        up.parts.insert(input.part_number, (data, etag.clone()));
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let up = lock(&self.uploads)
            .remove(&input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        if up.bucket != input.bucket || up.key != input.key {
            return Err(s3_error!(NoSuchUpload));
        }
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let mut data = BytesMut::new();
        let mut md5s = Vec::with_capacity(listed.len() * 16);
        for part in &listed {
            let n = part.part_number.unwrap_or(0);
            let (bytes, etag) = up
                .parts
                .get(&n)
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
            if let Some(want) = &part.e_tag {
                if want.value() != etag {
                    return Err(s3_error!(InvalidPart, "part {n}: ETag differs"));
                }
            }
            data.extend_from_slice(bytes);
            md5s.extend_from_slice(&Md5::digest(bytes));
        }
        // S3's multipart ETag: the MD5 of the parts' binary MD5s, then "-<part count>".
        let etag = format!("{}-{}", md5_hex(&[&md5s]), listed.len());
        let obj = Obj {
            data: data.freeze(),
            etag: etag.clone(),
            modified: SystemTime::now(),
        };
        self.put_if(
            &input.bucket,
            &input.key,
            obj,
            input.if_none_match.as_ref(),
            input.if_match.as_ref(),
        )?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        lock(&self.uploads)
            .remove(&req.input.upload_id)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
