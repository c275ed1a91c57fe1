//! The three requests of S3's versioning API that s3vfs uses, and nothing else of it:
//! whether a bucket keeps versions (GetBucketVersioning), which versions and delete
//! markers exist under a prefix (ListObjectVersions), and deleting given versions
//! (DeleteObjects with a `VersionId` per key). `versions.rs` decides what to delete; this
//! file only speaks HTTP and XML.
//!
//! Deleting a version by its id is permanent and never creates a delete marker; deleting
//! the current delete marker of a key makes its previous version current again, which is
//! why the caller orders its deletes (see `versions.rs`).

use super::{content_md5, xml_blocks, xml_escape, xml_text, S3Client, DELETE_BATCH};
use crate::error::{Error, Result};
use crate::stats::{self, Op};

/// A bucket's versioning state, as GetBucketVersioning reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versioning {
    /// Never turned on: a PUT replaces the object, a DELETE removes it.
    Off,
    /// Every PUT adds a version and every DELETE a delete marker; all are kept.
    Enabled,
    /// Turned off after having been on: new writes replace the `null` version, and the
    /// versions kept while it was on stay.
    Suspended,
}

/// One version or delete marker of a key, from ListObjectVersions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// The version's id (`null` for one written while versioning was off).
    pub version_id: String,
    /// The current version of its key (what a GET returns, or 404 for a marker).
    pub latest: bool,
    /// A delete marker rather than stored bytes.
    pub delete_marker: bool,
}

/// The versions under a prefix, in key order and newest first within a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionListing {
    pub versions: Vec<ObjectVersion>,
    /// False when the listing stopped at its limit: the versions of the last key listed
    /// may go on, and later keys are not listed at all.
    pub complete: bool,
}

impl S3Client {
    /// The bucket's versioning state (GET `?versioning`, one request).
    pub fn versioning(&self) -> Result<Versioning> {
        let query = [("versioning", String::new())];
        let r = self.send(Op::Get, "GET", "", &query, &[], &[])?;
        if r.status != 200 {
            return Err(self.s3_error("GetBucketVersioning", "", &r));
        }
        // AWS answers `<VersioningConfiguration>`, moto `<GetBucketVersioningResponse>`:
        // only the status matters, and an answer without one means versioning is off.
        Ok(parse_versioning(&String::from_utf8_lossy(&r.body)))
    }

    /// The versions and delete markers of keys under `prefix` (ListObjectVersions,
    /// following its markers), stopping after the page that reaches `limit` entries.
    pub fn list_versions(&self, prefix: &str, limit: usize) -> Result<VersionListing> {
        let mut out = VersionListing::default();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("versions", String::new()),
                ("prefix", prefix.to_string()),
                ("max-keys", "1000".to_string()),
            ];
            if let Some((key, version)) = &markers {
                query.push(("key-marker", key.clone()));
                query.push(("version-id-marker", version.clone()));
            }
            let r = self.send(Op::List, "GET", "", &query, &[], &[])?;
            let text = String::from_utf8_lossy(&r.body);
            if r.status != 200 || !text.contains("<ListVersionsResult") {
                return Err(self.s3_error("ListObjectVersions", prefix, &r));
            }
            out.versions.extend(parse_versions(&text));
            markers = match xml_text(&text, "IsTruncated").as_deref() {
                Some("true") => xml_text(&text, "NextKeyMarker").map(|k| {
                    (
                        k,
                        xml_text(&text, "NextVersionIdMarker").unwrap_or_default(),
                    )
                }),
                _ => None,
            };
            if markers.is_none() {
                out.complete = true;
                return Ok(out);
            }
            if out.versions.len() >= limit {
                return Ok(out);
            }
        }
    }

    /// Deletes the given versions for good (DeleteObjects with version ids, up to
    /// [`DELETE_BATCH`] per request, in the order given); fails naming the first key the
    /// server could not delete.
    pub fn delete_versions(&self, versions: &[ObjectVersion]) -> Result<()> {
        for chunk in versions.chunks(DELETE_BATCH) {
            let mut xml = String::from("<Delete><Quiet>true</Quiet>");
            for v in chunk {
                xml.push_str(&format!(
                    "<Object><Key>{}</Key><VersionId>{}</VersionId></Object>",
                    xml_escape(&v.key),
                    xml_escape(&v.version_id)
                ));
            }
            xml.push_str("</Delete>");
            let headers = [
                content_md5(xml.as_bytes()),
                ("content-type", "application/xml".to_string()),
            ];
            let query = [("delete", String::new())];
            let r = self.send(Op::Delete, "POST", "", &query, &headers, xml.as_bytes())?;
            if r.status != 200 {
                return Err(self.s3_error("DeleteObjects", &chunk[0].key, &r));
            }
            let text = String::from_utf8_lossy(&r.body);
            let first_error = xml_blocks(&text, "Error").next().map(str::to_string);
            if let Some(err) = first_error.as_deref() {
                stats::error();
                return Err(Error::S3 {
                    op: "DeleteObjects",
                    bucket: self.cfg.bucket.clone(),
                    key: xml_text(err, "Key").unwrap_or_default(),
                    status: r.status,
                    code: xml_text(err, "Code").unwrap_or_default(),
                    message: xml_text(err, "Message").unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}

/// The state in a GetBucketVersioning answer (no `<Status>`: never turned on).
fn parse_versioning(xml: &str) -> Versioning {
    match xml_text(xml, "Status").as_deref() {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => Versioning::Suspended,
        _ => Versioning::Off,
    }
}

/// The versions and delete markers of one ListObjectVersions page, in document order
/// (S3 interleaves them newest first per key; some servers list markers after versions,
/// so callers rely on `latest`, not on the order).
fn parse_versions(xml: &str) -> Vec<ObjectVersion> {
    let entry = |block: &str, delete_marker| ObjectVersion {
        key: xml_text(block, "Key").unwrap_or_default(),
        version_id: xml_text(block, "VersionId").unwrap_or_else(|| "null".into()),
        latest: xml_text(block, "IsLatest").as_deref() == Some("true"),
        delete_marker,
    };
    let mut out: Vec<(usize, ObjectVersion)> = Vec::new();
    for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
        let open = format!("<{tag}>");
        let mut at = 0;
        for block in xml_blocks(xml, tag) {
            // Where the block starts, so both kinds merge back into document order.
            at += xml[at..].find(&open).unwrap_or(0) + open.len();
            out.push((at, entry(block, marker)));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_versioning_state() {
        let on = "<VersioningConfiguration xmlns=\"x\"><Status>Enabled</Status></VersioningConfiguration>";
        assert_eq!(parse_versioning(on), Versioning::Enabled);
        let off = "<?xml version=\"1.0\"?><VersioningConfiguration xmlns=\"x\"/>";
        assert_eq!(parse_versioning(off), Versioning::Off);
        let suspended =
            "<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>";
        assert_eq!(parse_versioning(suspended), Versioning::Suspended);
        let moto = "<?xml version=\"1.0\"?><GetBucketVersioningResponse xmlns=\"x\"><Status>Enabled</Status></GetBucketVersioningResponse>";
        assert_eq!(parse_versioning(moto), Versioning::Enabled);
    }

    #[test]
    fn reads_versions_and_markers_in_document_order() {
        let xml = "<ListVersionsResult><IsTruncated>false</IsTruncated>\
            <DeleteMarker><Key>a&amp;b</Key><VersionId>m2</VersionId><IsLatest>true</IsLatest></DeleteMarker>\
            <Version><Key>a&amp;b</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><Size>3</Size></Version>\
            <Version><Key>c</Key><IsLatest>true</IsLatest></Version>\
            </ListVersionsResult>";
        let v = parse_versions(xml);
        let brief: Vec<_> = v
            .iter()
            .map(|v| {
                (
                    v.key.as_str(),
                    v.version_id.as_str(),
                    v.latest,
                    v.delete_marker,
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("a&b", "m2", true, true),
                ("a&b", "v1", false, false),
                ("c", "null", true, false)
            ]
        );
    }
}
