"""A small HTTP proxy in front of the local S3 server, for benchmarks and fault tests.

It forwards every request unchanged (the Host header too, so SigV4 signatures made for
the proxy's address still verify upstream), and can add a delay per request (to behave
like real S3's latency), count requests by kind, and fail requests on purpose.

    url, proxy = start("http://127.0.0.1:9000", delay=0.02)
    ... point clients at url ...
    proxy.counts  # {"GET": 3, "PUT": 2, "LIST": 1, ...}
    proxy.max_in_flight  # most requests held at once (parallelism, not time)
    proxy.round_trips  # the longest chain of requests each sent after the last one ended
    proxy.trace = []  # from now on, (round trip, method, path) of each request
    proxy.set(fail=lambda method, path, n: "reset" if n > 10 else None)
    proxy.stop()

A `fail` callback gets (method, path-with-query, request number) and returns None to
forward, "reset" to drop the connection, "lose-response" to forward the request and then
drop the connection before answering (the request took effect, the client cannot know),
an HTTP status (e.g. 503) to answer with an S3-style error instead of forwarding, or
"flip" to forward and flip one byte of the answer's body, "fake-ok" to answer a PUT 200
with an all-zero ETag without forwarding it, or ("hold", seconds) to keep the request that long and then forward it only if the client is
still waiting (a slow link: a request its client gave up on never reaches the server).

A `judge` callback gets (method, path-with-query, request headers) and returns None to go
on, or (status, S3 error XML) to answer with: it plays a check that moto does not make but
AWS S3 does (the signing region, the clock), with AWS's own error documents.
"""

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def classify(method, path):
    """The S3 operation a request is, for counting."""
    parts = urllib.parse.urlsplit(path)
    query = parts.query
    bucket_level = parts.path.strip("/").count("/") == 0  # path-style "/bucket"
    if method == "GET" and (bucket_level or "uploads" in query):
        return "LIST"
    if method == "POST" and "delete" in query:
        return "DELETE"
    if method == "POST" or "uploadId" in query or "partNumber" in query:
        return "MULTIPART"
    return method


class Proxy:
    def __init__(self, upstream, delay=0.0, fail=None, judge=None):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.delay = delay
        self.fail = fail
        self.judge = judge
        self.counts = {}
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # How many requests were in flight when each GET arrived (itself included).
        self.get_concurrency = []
        # Round trips on the critical path, from the order of events alone (no clock): a
        # request's depth is 1 + the greatest depth among the requests that had ended when it
        # arrived; round_trips is the greatest depth. Requests sent together share a depth.
        self.ended_depth = 0
        self.round_trips = 0
        self.lock = threading.Lock()
        self.server = None

    def set(self, **opts):
        for k, v in opts.items():
            setattr(self, k, v)

    def reset_counts(self):
        with self.lock:
            self.counts = {}
            self.max_in_flight = 0
            self.get_concurrency = []
            self.ended_depth = 0
            self.round_trips = 0

    def requests(self):
        with self.lock:
            return sum(self.counts.values())

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start(upstream, delay=0.0, fail=None, judge=None):
    """Starts a proxy on a free 127.0.0.1 port; returns (its URL, the Proxy)."""
    proxy = Proxy(upstream, delay, fail, judge)
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            with proxy.lock:
                proxy.in_flight += 1
                proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                if classify(self.command, self.path) == "GET":
                    proxy.get_concurrency.append(proxy.in_flight)
                depth = proxy.ended_depth + 1
                proxy.round_trips = max(proxy.round_trips, depth)
                if getattr(proxy, "trace", None) is not None:
                    proxy.trace.append((depth, self.command, self.path))
            try:
                self.handle_counted()
            finally:
                with proxy.lock:
                    proxy.in_flight -= 1
                    proxy.ended_depth = max(proxy.ended_depth, depth)

        def handle_counted(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with proxy.lock:
                proxy.total += 1
                n = proxy.total
                kind = classify(self.command, self.path)
                proxy.counts[kind] = proxy.counts.get(kind, 0) + 1
            if proxy.delay:
                time.sleep(proxy.delay)
            verdict = proxy.judge(self.command, self.path, self.headers) if proxy.judge else None
            if verdict is not None:
                status, payload = verdict
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            action = proxy.fail(self.command, self.path, n) if proxy.fail else None
            if isinstance(action, tuple) and action[0] == "hold":
                time.sleep(action[1])
                if self.client_gone():
                    self.close_connection = True
                    return
                action = None
            if action == "reset":
                self.close_connection = True
                self.connection.close()
                return
            if isinstance(action, int):
                payload = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                self.send_response(action)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if action == "fake-ok":
                self.send_response(200)
                self.send_header("ETag", '"00000000000000000000000000000000"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, headers, data = self.forward(body)
            if action == "flip" and data:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            if action == "lose-response":
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(status)
            # A HEAD answer has no body but the object's Content-Length, which must pass.
            keep_length = self.command == "HEAD"
            for k, v in headers:
                if k.lower() in ("transfer-encoding", "connection") or (k.lower() == "content-length" and not keep_length):
                    continue
                self.send_header(k, v)
            if not keep_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def client_gone(self):
            """True when the client closed its connection (it gave up on the request)."""
            import select
            import socket

            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def forward(self, body):
            for attempt in (1, 2):
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection(
                        proxy.upstream.hostname, proxy.upstream.port, timeout=120
                    )
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() != "connection":
                            conn.putheader(k, v)
                    conn.endheaders(body if body else None)
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        local.conn = None
                    return resp.status, resp.getheaders(), data
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt == 2:
                        raise

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", proxy
