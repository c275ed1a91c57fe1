"""`make bench`: s3vfs against the Python package sqlite-s3vfs, in the same run, on the same
local S3 server, behind the same proxy that adds a delay to every request (default 20 ms,
about what a request to real S3 costs).

Every workload runs in a fresh worker process (so s3vfs's process-wide cache starts cold
where the workload says "fresh"), waits until the main process has reset the proxy's
request counters, then runs the measured part. Requests are counted by the proxy, so both
implementations are counted the same way.

    .venv/bin/python bench/bench.py [--delay 0.02] [--mb 50] [--out bench/RESULTS.md]
"""

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import proxy as proxymod  # noqa: E402

LIB = str(ROOT / "target" / "release" / "libs3vfs")
BLOCK = 4096
ROW = "r" * 100


# ---------------------------------------------------------------- worker side


def open_ours(prefix, bucket, endpoint):
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(LIB)
    uri = f"file:{prefix}?vfs=s3&bucket={bucket}&endpoint={endpoint}&region=us-east-1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    return lambda sql, args=(): conn.execute(sql, args).fetchall()


def open_peer(prefix, bucket, endpoint):
    import apsw
    import boto3
    import sqlite_s3vfs
    from botocore.config import Config

    s3 = boto3.resource(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    )
    vfs = sqlite_s3vfs.S3VFS(bucket=s3.Bucket(bucket), block_size=BLOCK)
    conn = apsw.Connection(prefix, vfs=vfs.name)
    open_peer.keep = vfs  # the VFS must outlive the connection
    return lambda sql, args=(): list(conn.cursor().execute(sql, args))


def worker(impl, workload, prefix, bucket, endpoint, arg):
    opener = open_ours if impl == "ours" else open_peer
    fresh = workload in ("point_fresh", "scan", "open_cost")
    q = None if fresh else opener(prefix, bucket, endpoint)
    if workload == "point_warm":
        q("select v from t where id = ?", (arg,))
    print("READY", flush=True)
    sys.stdin.readline()
    times = []
    t0 = time.perf_counter()
    if workload == "insert1":
        for i in range(20):
            t = time.perf_counter()
            q("insert into t(v) values (?)", (f"one {i}",))
            times.append(time.perf_counter() - t)
    elif workload == "bulk":
        q("begin")
        for i in range(10_000):
            q("insert into t(v) values (?)", (ROW,))
        q("commit")
    elif workload in ("point_fresh", "open_cost"):
        q = opener(prefix, bucket, endpoint)
        q("select v from t where id = ?", (arg,))
    elif workload == "point_warm":
        q("select v from t where id = ?", (arg,))
    elif workload == "scan":
        q = opener(prefix, bucket, endpoint)
        q("select count(*) from t where v like '%zz%'")
    total = time.perf_counter() - t0
    print(json.dumps({"seconds": statistics.median(times) if times else total}), flush=True)


# ---------------------------------------------------------------- main side


def run(impl, workload, prefix, bucket, endpoint, proxy, arg=0):
    p = subprocess.Popen(
        [sys.executable, __file__, "--worker", impl, workload, prefix, bucket, endpoint, str(arg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "READY"
    proxy.reset_counts()
    p.stdin.write("GO\n")
    p.stdin.flush()
    result = json.loads(p.stdout.readline())
    counts = dict(proxy.counts)
    p.wait(timeout=60)
    assert p.returncode == 0, f"{impl} {workload} failed"
    if workload == "insert1":
        counts = {k: v / 20 for k, v in counts.items()}
    return result["seconds"], counts


def s3_client(endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def seed(client, bucket, prefix, megabytes):
    """A database of about `megabytes` built locally and stored as 4 KiB blocks directly
    (not through the proxy); both implementations read the same layout."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.db"
        db = sqlite3.connect(path)
        db.execute("create table t(id integer primary key, v text)")
        rows = megabytes * 1024 * 1024 // 130
        db.executemany("insert into t(v) values (?)", ((ROW,) for _ in range(rows)))
        db.commit()
        db.close()
        data = path.read_bytes()
    blocks = [(i, data[i * BLOCK:(i + 1) * BLOCK]) for i in range((len(data) + BLOCK - 1) // BLOCK)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda b: client.put_object(Bucket=bucket, Key=f"{prefix}/{b[0]:010d}", Body=b[1]), blocks))
    return rows


def fmt_counts(c):
    return " ".join(f"{k}={v:g}" for k, v in sorted(c.items())) or "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--out")
    args = ap.parse_args()

    upstream = os.environ["AWS_ENDPOINT_URL_S3"]
    url, proxy = proxymod.start(upstream, delay=args.delay)
    client = s3_client(upstream)
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)

    print(f"seeding 1, 10 and {args.mb} MB databases ...", flush=True)
    sizes = sorted({1, 10, args.mb})
    rows = {mb: seed(client, bucket, f"seed-{mb}.db", mb) for mb in sizes}
    big = f"seed-{args.mb}.db"

    rows_out = []

    def compare(label, workload, prefix_for, arg=0):
        line = {"workload": label}
        for impl in ("ours", "peer"):
            secs, counts = run(impl, workload, prefix_for(impl), bucket, url, proxy, arg)
            line[impl] = (secs, counts)
            print(f"  {label:<44} {impl:<4} {secs:8.3f}s  {fmt_counts(counts)}", flush=True)
        rows_out.append(line)

    def fresh_table(impl):
        prefix = f"w-{impl}-{uuid.uuid4().hex[:8]}.db"
        q = open_ours(prefix, bucket, upstream) if impl == "ours" else open_peer(prefix, bucket, upstream)
        q("create table t(id integer primary key, v text)")
        q("insert into t(v) values ('first')")
        return prefix

    print("workloads:", flush=True)
    prefixes = {impl: fresh_table(impl) for impl in ("ours", "peer")}
    compare("1-row autocommit INSERT (median of 20)", "insert1", prefixes.get)
    prefixes = {impl: fresh_table(impl) for impl in ("ours", "peer")}
    compare("10,000-row INSERT in one transaction", "bulk", prefixes.get)
    mid = rows[args.mb] // 2
    compare(f"fresh-connection point query, {args.mb} MB", "point_fresh", lambda _: big, mid)
    compare(f"repeated point query, warm connection", "point_warm", lambda _: big, mid)
    compare(f"full scan (count(*) with filter), {args.mb} MB", "scan", lambda _: big)
    for mb in sizes:
        compare(f"open + first query, {mb} MB", "open_cost", lambda _, mb=mb: f"seed-{mb}.db", rows[mb] // 2)
    proxy.stop()

    table = [
        "| workload | s3vfs time | sqlite-s3vfs time | speed-up | s3vfs requests | sqlite-s3vfs requests | request ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for line in rows_out:
        (ot, oc), (pt, pc) = line["ours"], line["peer"]
        on, pn = sum(oc.values()), sum(pc.values())
        table.append(
            f"| {line['workload']} | {ot:.3f} s | {pt:.3f} s | {pt / ot:.1f}× | {on:g} ({fmt_counts(oc)}) "
            f"| {pn:g} ({fmt_counts(pc)}) | {pn / on if on else float('inf'):.1f}× |"
        )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; moto_server on 127.0.0.1 behind a proxy adding "
        f"{args.delay * 1000:g} ms per request"
    )
    report = "\n".join(
        [
            "# Benchmark: s3vfs vs sqlite-s3vfs",
            "",
            f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {machine}. "
            "Times are wall-clock seconds of the measured part in a fresh process; requests "
            "are counted by the proxy (LIST, GET, PUT, DELETE = DeleteObject or DeleteObjects).",
            "",
            *table,
            "",
        ]
    )
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, workload, prefix, bucket, endpoint, arg = sys.argv[2:8]
        worker(impl, workload, prefix, bucket, endpoint, int(arg))
    else:
        main()
