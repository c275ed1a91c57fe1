//! A built-in load generator, to measure the server's own ceiling: C tasks, each on its own
//! keep-alive connection with TCP_NODELAY, send SigV4-signed PUTs of `size` bytes for `secs`
//! seconds, then GETs of what they wrote for as long. It runs as its own process so the
//! figure is what a separate client sees (on 2 cores the two processes share the CPU, so the
//! ceiling printed is a lower bound).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::store::hex;

pub struct Load {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub concurrency: usize,
    pub secs: f64,
    pub size: usize,
}

/// Keys each task cycles through: bounded so the measurement does not fill memory.
const KEYS_PER_TASK: u64 = 32;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

struct Signer {
    access_key: String,
    secret_key: String,
    host: String,
}

impl Signer {
    /// Header-signed SigV4 with an unsigned payload (what boto3 does over plain HTTP when
    /// told so): the server verifies the signature exactly as for any client.
    fn sign(&self, method: &str, path: &str) -> [(&'static str, String); 4] {
        let now = time::OffsetDateTime::now_utc();
        let amz = now
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let date = &amz[..8];
        let canonical = format!(
            "{method}\n{path}\n\nhost:{}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz}\n\n\
             host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
            self.host
        );
        let scope = format!("{date}/us-east-1/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in ["us-east-1", "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let sig = hex(&hmac(&key, to_sign.as_bytes()));
        [
            ("host", self.host.clone()),
            ("x-amz-date", amz),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_owned()),
            (
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
                     Signature={sig}",
                    self.access_key
                ),
            ),
        ]
    }
}

/// Runs one phase; returns (successful requests, failed requests, seconds).
async fn phase(load: &Load, signer: Arc<Signer>, put: bool) -> Result<(u64, u64, f64), String> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let body = Bytes::from(vec![b'x'; load.size]);
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for task in 0..load.concurrency {
        let stream = TcpStream::connect(&signer.host)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let (ok, failed, stop, signer, body, bucket) = (
            ok.clone(),
            failed.clone(),
            stop.clone(),
            signer.clone(),
            body.clone(),
            load.bucket.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/{bucket}/load/t{task}/k{}", i % KEYS_PER_TASK);
                i += 1;
                let method = if put { "PUT" } else { "GET" };
                let mut req = http::Request::builder().method(method).uri(&path);
                for (name, value) in signer.sign(method, &path) {
                    req = req.header(name, value);
                }
                let req = req.body(Full::new(if put { body.clone() } else { Bytes::new() }));
                let Ok(req) = req else { break };
                // HTTP/1: the connection takes the next request only once the last response
                // is fully read; wait for that rather than fail.
                if send.ready().await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                match send.send_request(req).await {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        let drained = resp.into_body().collect().await.is_ok();
                        if good && drained { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                        if !drained {
                            break;
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(load.secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok((
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        secs,
    ))
}

/// Prints one JSON line: requests/s for PUT and GET at the given concurrency and size.
pub async fn run(load: Load) -> Result<(), String> {
    let host = load
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let signer = Arc::new(Signer {
        access_key: load.access_key.clone(),
        secret_key: load.secret_key.clone(),
        host,
    });
    let (put_ok, put_failed, put_secs) = phase(&load, signer.clone(), true).await?;
    let (get_ok, get_failed, get_secs) = phase(&load, signer, false).await?;
    println!(
        "{{\"concurrency\":{},\"size\":{},\"put_per_s\":{:.0},\"get_per_s\":{:.0},\"put_failed\":{put_failed},\
         \"get_failed\":{get_failed}}}",
        load.concurrency,
        load.size,
        put_ok as f64 / put_secs,
        get_ok as f64 / get_secs,
    );
    Ok(())
}
