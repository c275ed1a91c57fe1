//! An in-memory [`ObjectStore`] with S3's semantics where the protocols depend on them
//! (conditional PUTs with ETags, 404 on `If-Match` of a missing key, lexicographic
//! listings) and injectable faults, for unit tests of the block store, the lease, the
//! reader marks, the journal order and the cache.
//!
//! Every request is recorded (`"PUT key"`, `"DELETE key"`, ...), so a test can assert the
//! order in which a protocol stores and deletes objects.

use super::{CondPut, Condition, Fetched, ObjectInfo, ObjectStore};
use crate::error::{Error, Result};
use crate::fence::Fence;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A failure to inject into the next matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The server answers 503 (after all retries): nothing is stored.
    Unavailable,
    /// The connection resets before an answer: nothing is stored.
    Reset,
    /// The write lands but its answer is lost; the client's retry then sees the stored
    /// object (a conditional PUT is refused, a plain one succeeds again).
    AnswerLost,
    /// The request waits this long first (a slow network or a frozen process).
    Delay(Duration),
}

struct Injected {
    op: &'static str,
    key_part: String,
    fault: Fault,
}

/// A bucket in memory. Clones made by [`ObjectStore::fenced`] share the bucket.
pub struct MemoryStore {
    inner: Arc<Bucket>,
    /// Writes are refused (and never recorded: they would not reach S3) once it closes.
    fence: Option<Arc<Fence>>,
}

/// The bucket's state.
pub struct Bucket {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    faults: Mutex<Vec<Injected>>,
    log: Mutex<Vec<String>>,
    next_etag: AtomicUsize,
    id: usize,
}

impl std::ops::Deref for MemoryStore {
    type Target = Bucket;
    fn deref(&self) -> &Bucket {
        &self.inner
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        // Each store is its own bucket, so tests never share cache entries.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        MemoryStore {
            inner: Arc::new(Bucket {
                objects: Mutex::default(),
                faults: Mutex::default(),
                log: Mutex::default(),
                next_etag: AtomicUsize::new(1),
                id: NEXT.fetch_add(1, Ordering::Relaxed),
            }),
            fence: None,
        }
    }
}

impl Bucket {
    /// Injects `fault` into the next request of kind `op` ("GET", "PUT", "PUT_IF",
    /// "DELETE", "DELETE_MANY", "LIST", "HEAD") whose key contains `key_part`.
    pub fn fail_next(&self, op: &'static str, key_part: &str, fault: Fault) {
        self.faults.lock().unwrap().push(Injected {
            op,
            key_part: key_part.to_string(),
            fault,
        });
    }

    /// Every request so far, as `"OP key"`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.log.lock().unwrap().clear();
    }

    /// How many recorded requests start with `prefix` (e.g. `"GET "`).
    pub fn count(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }

    /// The stored keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// An object's bytes, read without a recorded request.
    pub fn peek(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(d, _)| d.clone())
    }

    /// Stores an object without a recorded request (another process's write).
    pub fn poke(&self, key: &str, data: &[u8]) {
        let etag = self.new_etag();
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), (data.to_vec(), etag));
    }

    /// Removes an object without a recorded request.
    pub fn remove(&self, key: &str) {
        self.objects.lock().unwrap().remove(key);
    }

    fn new_etag(&self) -> String {
        format!("\"e{}\"", self.next_etag.fetch_add(1, Ordering::Relaxed))
    }

    /// Records the request and takes the first fault injected for it.
    fn request(&self, op: &'static str, key: &str) -> Result<Option<Fault>> {
        self.log.lock().unwrap().push(format!("{op} {key}"));
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            let at = faults
                .iter()
                .position(|f| f.op == op && key.contains(&f.key_part));
            at.map(|i| faults.remove(i).fault)
        };
        match fault {
            Some(Fault::Delay(d)) => {
                std::thread::sleep(d);
                Ok(None)
            }
            Some(Fault::Unavailable) => Err(Error::S3 {
                op,
                bucket: self.bucket_name(),
                key: key.to_string(),
                status: 503,
                code: "ServiceUnavailable".into(),
                message: "injected".into(),
            }),
            Some(Fault::Reset) => Err(Error::Transport {
                op,
                endpoint: "memory".into(),
                detail: "connection reset (injected)".into(),
            }),
            other => Ok(other),
        }
    }

    fn bucket_name(&self) -> String {
        format!("memory-{}", self.id)
    }
}

impl MemoryStore {
    /// Another handle on the same bucket, as a trait object (a store factory's product).
    pub fn fenced_view(&self) -> Arc<dyn ObjectStore> {
        Arc::new(MemoryStore {
            inner: self.inner.clone(),
            fence: self.fence.clone(),
        })
    }

    /// Refuses a write once the fence is closed, as the S3 client does.
    fn check_fence(&self, key: &str) -> Result<()> {
        match &self.fence {
            Some(f) if f.remaining().is_none() => Err(Error::Lease(format!(
                "the write lease ran out before {key} could be written (memory store)"
            ))),
            _ => Ok(()),
        }
    }
}

impl ObjectStore for MemoryStore {
    fn fenced(&self, fence: Arc<Fence>) -> Arc<dyn ObjectStore> {
        Arc::new(MemoryStore {
            inner: self.inner.clone(),
            fence: Some(fence),
        })
    }
    fn id(&self) -> String {
        format!("memory|{}", self.bucket_name())
    }
    fn bucket(&self) -> &str {
        "memory"
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.request("GET", key)?;
        Ok(self.peek(key))
    }
    fn get_with_etag(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        self.request("GET", key)?;
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }
    fn get_if_changed(&self, key: &str, known: Option<&str>) -> Result<Fetched> {
        self.request("GET", key)?;
        Ok(match self.objects.lock().unwrap().get(key).cloned() {
            None => Fetched::Missing,
            Some((_, etag)) if known == Some(etag.as_str()) => Fetched::NotModified,
            Some((data, etag)) => Fetched::Found {
                data,
                etag: Some(etag),
            },
        })
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.request("GET", key)?;
        Ok(self.peek(key).map(|d| {
            let from = (start as usize).min(d.len());
            let to = (end as usize).min(d.len());
            d[from..to].to_vec()
        }))
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.request("HEAD", key)?;
        Ok(self.peek(key).map(|d| d.len() as u64))
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.check_fence(key)?;
        self.request("PUT", key)?;
        self.poke(key, data);
        Ok(())
    }
    fn put_if(&self, key: &str, data: &[u8], condition: Condition) -> Result<CondPut> {
        self.check_fence(key)?;
        let fault = self.request("PUT_IF", key)?;
        let mut objects = self.objects.lock().unwrap();
        let holds = match (condition, objects.get(key)) {
            (Condition::Absent, current) => current.is_none(),
            (Condition::Matches(etag), Some((_, current))) => current == etag,
            (Condition::Matches(_), None) => false,
        };
        if !holds {
            return Ok(CondPut::Refused);
        }
        let etag = self.new_etag();
        objects.insert(key.to_string(), (data.to_vec(), etag.clone()));
        Ok(match fault {
            // The retry of a landed conditional PUT finds its own object: refused.
            Some(Fault::AnswerLost) => CondPut::Refused,
            _ => CondPut::Stored(etag),
        })
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.check_fence(key)?;
        self.request("DELETE", key)?;
        self.remove(key);
        Ok(())
    }
    fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.check_fence(&keys.join(","))?;
        self.request("DELETE_MANY", &keys.join(","))?;
        let mut objects = self.objects.lock().unwrap();
        for k in keys {
            objects.remove(k);
        }
        Ok(())
    }
    fn list(&self, prefix: &str, limit: Option<usize>) -> Result<Vec<ObjectInfo>> {
        self.request("LIST", prefix)?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(k, (v, _))| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn create_multipart(&self, key: &str) -> Result<String> {
        self.check_fence(key)?;
        self.request("POST", key)?;
        Ok(format!("upload-{key}"))
    }
    fn upload_part(&self, key: &str, _: &str, number: usize, data: &[u8]) -> Result<String> {
        self.check_fence(key)?;
        self.request("PUT", &format!("{key}#{number}"))?;
        self.poke(&format!("{key}#part{number:05}"), data);
        Ok(format!("part{number}"))
    }
    fn complete_multipart(&self, key: &str, _: &str, etags: &[String]) -> Result<()> {
        self.check_fence(key)?;
        self.request("POST", key)?;
        let mut whole = Vec::new();
        for n in 1..=etags.len() {
            let part = format!("{key}#part{n:05}");
            whole.extend(self.peek(&part).unwrap_or_default());
            self.remove(&part);
        }
        self.poke(key, &whole);
        Ok(())
    }
    fn abort_multipart(&self, key: &str, _: &str) -> Result<()> {
        self.request("DELETE", key)?;
        let parts: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&format!("{key}#part")))
            .collect();
        for p in parts {
            self.remove(&p);
        }
        Ok(())
    }
}
