//! The one storage seam: every layer above it (blocks, lease, reader marks, transfer, the
//! command) speaks to S3 through [`ObjectStore`], never through the HTTP client. In
//! production the store is an [`S3Client`]; unit tests use [`memory::MemoryStore`], which
//! can inject the failures S3 really produces (a refused precondition, an answer lost after
//! the write landed, a 503, a reset, a delay), so the protocols built on top are tested in
//! milliseconds and integration tests prove them again on a real server.

use crate::error::Result;
use crate::fence::Fence;
use crate::s3::S3Client;
pub use crate::s3::{CondPut, Condition, Fetched, ObjectInfo};
use std::sync::Arc;

/// The object operations s3vfs needs from a bucket.
pub trait ObjectStore: Send + Sync {
    /// Names the bucket (endpoint included): part of every database identity.
    fn id(&self) -> String;
    /// The bucket's name, for messages.
    fn bucket(&self) -> &str;
    /// An object's bytes; `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// An object's bytes and ETag; `None` when the key does not exist.
    fn get_with_etag(&self, key: &str) -> Result<Option<(Vec<u8>, String)>>;
    /// An object's bytes and ETag unless its ETag is still `known` (a conditional GET,
    /// `If-None-Match`, answered 304 with no body when nothing changed).
    /// (By default a plain GET whose ETag is compared here: no bytes saved, but stores
    /// that wrap another, as tests do, need nothing more.)
    fn get_if_changed(&self, key: &str, known: Option<&str>) -> Result<Fetched> {
        Ok(match self.get_with_etag(key)? {
            None => Fetched::Missing,
            Some((_, etag)) if known == Some(etag.as_str()) => Fetched::NotModified,
            Some((data, etag)) => Fetched::Found {
                data,
                etag: Some(etag),
            },
        })
    }
    /// Bytes `[start, end)` of an object (fewer at its end); `None` when it does not exist.
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Vec<u8>>>;
    /// An object's size; `None` when it does not exist.
    fn head(&self, key: &str) -> Result<Option<u64>>;
    /// Stores an object.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Stores an object only if `condition` holds (S3's compare-and-swap).
    fn put_if(&self, key: &str, data: &[u8], condition: Condition) -> Result<CondPut>;
    /// Deletes one object (a missing key is not an error).
    fn delete(&self, key: &str) -> Result<()>;
    /// Deletes many objects (not atomically).
    fn delete_many(&self, keys: &[String]) -> Result<()>;
    /// Objects under `prefix` in key order, at most `limit` of them.
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>>;
    /// Starts a multipart upload; returns its id.
    fn create_multipart(&self, key: &str) -> Result<String>;
    /// Uploads part `number` (1-based); returns its ETag.
    fn upload_part(&self, key: &str, upload_id: &str, number: usize, data: &[u8])
        -> Result<String>;
    /// Completes a multipart upload from its parts' ETags, in order.
    fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<()>;
    /// Abandons a multipart upload.
    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;
    /// The same store, sending writes (PUT, POST, DELETE) only while `fence` is open.
    fn fenced(&self, fence: Arc<Fence>) -> Arc<dyn ObjectStore>;
}

impl ObjectStore for S3Client {
    fn id(&self) -> String {
        self.target().id()
    }
    fn bucket(&self) -> &str {
        &self.target().bucket
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        S3Client::get(self, key)
    }
    fn get_with_etag(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        S3Client::get_versioned(self, key)
    }
    fn get_if_changed(&self, key: &str, known: Option<&str>) -> Result<Fetched> {
        S3Client::get_if_changed(self, key, known)
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        S3Client::get_range(self, key, start, end)
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        S3Client::head(self, key)
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        S3Client::put(self, key, data)
    }
    fn put_if(&self, key: &str, data: &[u8], condition: Condition) -> Result<CondPut> {
        S3Client::put_if(self, key, data, condition)
    }
    fn delete(&self, key: &str) -> Result<()> {
        S3Client::delete(self, key)
    }
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        S3Client::delete_many(self, keys)
    }
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
        S3Client::list(self, prefix, limit)
    }
    fn create_multipart(&self, key: &str) -> Result<String> {
        S3Client::create_multipart(self, key)
    }
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        data: &[u8],
    ) -> Result<String> {
        S3Client::upload_part(self, key, upload_id, number, data)
    }
    fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<()> {
        S3Client::complete_multipart(self, key, upload_id, etags)
    }
    fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        S3Client::abort_multipart(self, key, upload_id)
    }
    fn fenced(&self, fence: Arc<Fence>) -> Arc<dyn ObjectStore> {
        Arc::new(self.with_fence(fence))
    }
}

#[cfg(test)]
pub mod memory;
