//! Unit tests of the S3 client: listings, URLs, integrity checks.

use super::*;

#[test]
fn parses_listing_blocks_in_order() {
    let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a/0000000001</Key><Size>10</Size></Contents><Contents><Key>a&amp;b</Key><Size>3</Size></Contents><NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
    let keys: Vec<_> = xml_blocks(xml, "Contents")
        .map(|c| xml_text(c, "Key").unwrap())
        .collect();
    assert_eq!(keys, ["a/0000000001", "a&b"]);
    assert_eq!(
        xml_text(xml, "NextContinuationToken").as_deref(),
        Some("t1")
    );
}

fn reply(etag: Option<&str>, sse: Option<&str>) -> Reply {
    Reply {
        status: 200,
        body: Vec::new(),
        content_length: None,
        etag: etag.map(str::to_string),
        bucket_region: None,
        sse: sse.map(str::to_string),
    }
}

#[test]
fn an_etag_contradicts_only_bytes_it_describes() {
    let body = b"block";
    let md5 = format!("\"{:x}\"", md5::compute(body));
    assert!(!reply(Some(&md5), None).etag_contradicts(body));
    assert!(reply(Some("\"00000000000000000000000000000000\""), None).etag_contradicts(body));
    assert!(
        reply(Some(&md5), None).etag_contradicts(b"blocK"),
        "a flipped byte"
    );
    // Multipart and KMS ETags are not MD5s of the bytes: they prove nothing either way.
    assert!(!reply(Some("\"abc-3\""), None).etag_contradicts(body));
    assert!(!reply(
        Some("\"00000000000000000000000000000000\""),
        Some("aws:kms")
    )
    .etag_contradicts(body));
    assert!(!reply(None, None).etag_contradicts(body));
}

#[test]
fn path_style_urls_keep_slashes_and_encode_queries() {
    let cfg = Target {
        bucket: "b".into(),
        endpoint: "http://127.0.0.1:9000".into(),
        path_style: true,
        region: "us-east-1".into(),
        credentials: crate::config::Credentials {
            access_key: "a".into(),
            secret_key: "s".into(),
            session_token: None,
        },
    };
    let c = S3Client::new(Arc::new(cfg.clone()));
    assert_eq!(
        c.url("my db/0000000001", &[]),
        "http://127.0.0.1:9000/b/my%20db/0000000001"
    );
    assert_eq!(
        c.url("", &[("prefix", "x/y".into())]),
        "http://127.0.0.1:9000/b?prefix=x%2Fy"
    );
    let v = S3Client::new(Arc::new(Target {
        path_style: false,
        endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
        ..cfg
    }));
    assert_eq!(v.url("k", &[]), "https://b.s3.eu-west-1.amazonaws.com/k");
}
