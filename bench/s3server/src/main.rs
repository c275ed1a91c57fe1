//! s3bench-server: an in-memory S3 endpoint for s3vfs's benchmark.
//!
//! It exists so that the benchmark measures the client, not the server: it answers several
//! thousand requests/s on two cores, adds a configurable delay inside each request (an async
//! sleep, so waiting requests cost no capacity, like the latency of a real S3), and counts
//! requests on a side endpoint outside the S3 namespace:
//!
//!   GET  /_stats            counters as JSON (`?log=1` adds every request)
//!   POST /_stats/reset      zero the counters
//!   POST /_config?delay_ms=N change the delay without a restart
//!
//! Usage:
//!   s3bench-server [--host 127.0.0.1] [--port 0] [--access-key K] [--secret-key S]
//!                  [--delay-ms D] [--bucket B]...
//!   s3bench-server load --endpoint URL --access-key K --secret-key S --bucket B
//!                  [--concurrency 64] [--seconds 3] [--size 4096]

mod load;
mod stats;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;

use stats::Stats;
use store::Mem;

struct App {
    s3: S3Service,
    stats: Stats,
    delay_us: AtomicU64,
}

impl App {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
}

/// The S3 request class a request is billed as (S3 Standard prices class A = PUT, COPY,
/// POST, LIST; class B = GET, HEAD; DELETE is free). A multi-object delete is a POST on the
/// wire but counted as DELETE, as S3 does not charge for deletes.
fn classify<B>(req: &Request<B>) -> &'static str {
    let path = req.uri().path().trim_start_matches('/');
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
    let bucket_level = !path.trim_end_matches('/').contains('/');
    match *req.method() {
        http::Method::GET if bucket_level || has("uploads") || has("uploadId") => "LIST",
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT if req.headers().contains_key("x-amz-copy-source") => "COPY",
        http::Method::PUT => "PUT",
        http::Method::POST if has("delete") => "DELETE",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn text(status: StatusCode, body: String) -> Response<s3s::Body> {
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The side endpoint: unauthenticated, so only for loopback peers.
fn side(app: &App, peer: SocketAddr, req: &Request<Incoming>) -> Response<s3s::Body> {
    if !peer.ip().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            "{\"error\":\"loopback only\"}".into(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/_stats") => text(
            StatusCode::OK,
            app.stats.json(app.delay(), query.contains("log=1")),
        ),
        (&http::Method::POST, "/_stats/reset") => {
            app.stats.reset();
            text(StatusCode::OK, "{\"reset\":true}".into())
        }
        (&http::Method::POST, "/_config") => {
            let ms = query
                .split('&')
                .find_map(|p| p.strip_prefix("delay_ms="))
                .and_then(|v| v.parse::<f64>().ok());
            match ms {
                Some(ms) if ms >= 0.0 => {
                    app.delay_us.store((ms * 1000.0) as u64, Ordering::Relaxed);
                    text(StatusCode::OK, format!("{{\"delay_ms\":{ms}}}"))
                }
                _ => text(
                    StatusCode::BAD_REQUEST,
                    "{\"error\":\"want ?delay_ms=N\"}".into(),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "{\"error\":\"unknown side endpoint\"}".into(),
        ),
    }
}

async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<s3s::Body>, s3s::HttpError> {
    // Bucket names cannot start with '_', so this prefix never shadows an S3 request.
    if req.uri().path().starts_with("/_") {
        return Ok(side(&app, peer, &req));
    }
    let kind = classify(&req);
    let bytes_in = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let start = app.stats.begin();
    let delay = app.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let resp = match app.s3.call(req.map(s3s::Body::from)).await {
        Ok(resp) => resp,
        // A protocol-level failure would otherwise drop the connection uncounted.
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"{e:?}\"}}").replace('\n', " "),
        ),
    };
    let bytes_out = resp.body().size_hint().exact().unwrap_or(0);
    app.stats
        .end(start, kind, bytes_in, bytes_out, resp.status().as_u16());
    Ok(resp)
}

struct Args {
    host: String,
    port: u16,
    access_key: String,
    secret_key: String,
    delay_ms: f64,
    buckets: Vec<String>,
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> String {
    args.next()
        .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
}

fn fail(msg: &str) -> ! {
    eprintln!("s3bench-server: {msg}");
    std::process::exit(2)
}

async fn serve(args: Args) -> std::io::Result<()> {
    let mem = Mem::default();
    for b in &args.buckets {
        mem.create(b);
    }
    let mut builder = S3ServiceBuilder::new(mem);
    builder.set_auth(SimpleAuth::from_single(
        args.access_key.clone(),
        args.secret_key.clone(),
    ));
    let app = Arc::new(App {
        s3: builder.build(),
        stats: Stats::new(),
        delay_us: AtomicU64::new((args.delay_ms * 1000.0) as u64),
    });
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    // The start script reads this line for the port.
    println!(
        "s3bench-server listening on http://{addr} (delay {} ms)",
        args.delay_ms
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Without it a response written as headers + body waits ~40 ms for a delayed ACK.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(app.clone(), peer, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    let is_load = argv.peek().map(String::as_str) == Some("load");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    if is_load {
        argv.next();
        let mut l = load::Load {
            endpoint: String::new(),
            access_key: "bench".into(),
            secret_key: "bench-secret".into(),
            bucket: "bench".into(),
            concurrency: 64,
            secs: 3.0,
            size: 4096,
        };
        while let Some(flag) = argv.next() {
            match flag.as_str() {
                "--endpoint" => l.endpoint = value(&mut argv, &flag),
                "--access-key" => l.access_key = value(&mut argv, &flag),
                "--secret-key" => l.secret_key = value(&mut argv, &flag),
                "--bucket" => l.bucket = value(&mut argv, &flag),
                "--concurrency" => {
                    l.concurrency = value(&mut argv, &flag)
                        .parse()
                        .unwrap_or_else(|_| fail("bad --concurrency"))
                }
                "--seconds" => {
                    l.secs = value(&mut argv, &flag)
                        .parse()
                        .unwrap_or_else(|_| fail("bad --seconds"))
                }
                "--size" => {
                    l.size = value(&mut argv, &flag)
                        .parse()
                        .unwrap_or_else(|_| fail("bad --size"))
                }
                _ => fail(&format!("unknown option {flag}")),
            }
        }
        if l.endpoint.is_empty() {
            fail("load needs --endpoint");
        }
        if let Err(e) = runtime.block_on(load::run(l)) {
            fail(&e);
        }
        return;
    }
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 0,
        access_key: "bench".into(),
        secret_key: "bench-secret".into(),
        delay_ms: 0.0,
        buckets: Vec::new(),
    };
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--host" => args.host = value(&mut argv, &flag),
            "--port" => {
                args.port = value(&mut argv, &flag)
                    .parse()
                    .unwrap_or_else(|_| fail("bad --port"))
            }
            "--access-key" => args.access_key = value(&mut argv, &flag),
            "--secret-key" => args.secret_key = value(&mut argv, &flag),
            "--delay-ms" => {
                args.delay_ms = value(&mut argv, &flag)
                    .parse()
                    .unwrap_or_else(|_| fail("bad --delay-ms"))
            }
            "--bucket" => args.buckets.push(value(&mut argv, &flag)),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//! ").trim_start_matches("//!"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                return;
            }
            _ => fail(&format!("unknown option {flag}")),
        }
    }
    if let Err(e) = runtime.block_on(serve(args)) {
        fail(&e.to_string());
    }
}
