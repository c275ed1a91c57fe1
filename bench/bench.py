"""`make bench`: s3vfs beside the Python package sqlite-s3vfs, in the same run, on the
benchmark's own S3 endpoint (bench/s3server: in-memory, thousands of requests/s, a delay
added inside every request, default 20 ms, about what a request to real S3 costs).

The endpoint is what makes the figures about the clients: it prints its own ceiling first
(requests/s with no delay), and it counts every request (by kind, bytes, the most in flight,
and the round trips on the critical path = time with at least one request in flight divided
by the delay). Every workload runs in a fresh worker process, so s3vfs's process-wide cache
starts cold; the worker does its process setup (loading the extension, or importing boto3 and making
sqlite-s3vfs's VFS; for writes, opening the database), prints READY, the main process resets
the endpoint's counters, and the worker runs the measured part.

Workloads (per database size unless noted):
  scan          cold `count(*)` with a LIKE filter over the whole table
  point_rowid   cold open + one row by rowid
  point_index   cold open + one row through an index
  aggregate     cold open + count/avg over 10% of an index (a covering index range scan)
  join          cold open + 200 rows of a small table joined to the big one by rowid
  serialize     the database as one plain SQLite object in S3 (s3vfs_serialize(prefix, key);
                sqlite-s3vfs: serialize_fileobj + boto3 upload_fileobj)
  deserialize   a plain SQLite object in S3 stored as blocks (s3vfs_deserialize;
                sqlite-s3vfs: deserialize_iter over the object's body)
  import        a local file stored as blocks (`s3vfs import`; sqlite-s3vfs: deserialize_iter)
  export        the database to a local file (`s3vfs export`; sqlite-s3vfs: serialize_iter)
Once per delay, in a fresh database:
  insert        100,000 rows (110 bytes each) in one transaction
  commit        1-row autocommit INSERT, median of N (requests are per commit)
  walcommit     the same in WAL mode (sqlite-s3vfs has none: its rollback commit)

sqlite-s3vfs sends one request at a time, so a workload it would need many minutes for is
stopped at --peer-cap seconds (default 60) and shown as "> cap" with the requests it made by
then. Cost: S3 Standard, PUT/COPY/POST/LIST $0.005 per 1,000, GET/HEAD $0.0004 per 1,000,
DELETE free (a multi-object delete counts as DELETE).

    source .s3-bench/env  # scripts/bench-server.sh start
    .venv/bin/python bench/bench.py [--delay-ms 20 | --delay-ms 5,20,50] [--sizes 5,50 | 5,50,500]
                                    [--peer-cap 60] [--quick] [--out bench/RESULTS.md]
"""

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB = str(ROOT / "target" / "release" / "libs3vfs")
CLI = str(ROOT / "target" / "release" / "s3vfs")
BLOCK = 4096
PRICE = {"PUT": 0.005, "COPY": 0.005, "POST": 0.005, "LIST": 0.005, "GET": 0.0004, "HEAD": 0.0004}
IMPLS = ("s3vfs", "sqlite-s3vfs")


# ---------------------------------------------------------------- worker side


_cache = {}


def ours_ext(spec=None):
    """The extension, loaded once per process (its VFS and cache are process-wide)."""
    if "ext" not in _cache:
        boot = sqlite3.connect(":memory:", isolation_level=None)
        boot.enable_load_extension(True)
        boot.load_extension(LIB)
        _cache["ext"] = boot
    return _cache["ext"]


def ours_conn(spec, prefix):
    ours_ext()
    uri = f"file:{prefix}?vfs=s3&bucket={spec['bucket']}&endpoint={spec['endpoint']}&region=us-east-1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    _cache.setdefault("conns", []).append(conn)
    return lambda sql, args=(): conn.execute(sql, args).fetchall()


def peer_vfs(spec):
    """sqlite-s3vfs's VFS on a boto3 resource, made once per process (the VFS must outlive
    its connections)."""
    if "vfs" not in _cache:
        import apsw  # noqa: F401  (sqlite-s3vfs needs it; imported here to fail early)
        import boto3
        import sqlite_s3vfs
        from botocore.config import Config

        s3 = boto3.resource(
            "s3", endpoint_url=spec["endpoint"], region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
        )
        vfs = sqlite_s3vfs.S3VFS(bucket=s3.Bucket(spec["bucket"]), block_size=BLOCK)
        _cache["vfs"] = (vfs, s3.Bucket(spec["bucket"]))
    return _cache["vfs"]


def peer_conn(spec, prefix):
    import apsw

    vfs, _ = peer_vfs(spec)
    conn = apsw.Connection(prefix, vfs=vfs.name)
    _cache.setdefault("conns", []).append(conn)
    return lambda sql, args=(): list(conn.cursor().execute(sql, args))


READS = {
    "scan": ("select count(*) from t where b like '%7%'", ()),
    "point_rowid": ("select b from t where id = ?", ("mid_id",)),
    "point_index": ("select id, b from t where k = ?", ("mid_k",)),
    "aggregate": ("select count(*), avg(k) from t where k < 100000", ()),
    "join": ("select count(*), sum(length(t.b)) from u join t on t.id = u.t_id where u.id <= 200", ()),
}


def worker(spec):
    """Runs one workload of one implementation; prints READY, waits for GO, prints the result."""
    ours = spec["impl"] == "s3vfs"
    work = spec["workload"]
    if spec.get("concurrency"):
        # Read by s3vfs at each open (and by the s3vfs command, which inherits it).
        os.environ["S3VFS_CONCURRENCY"] = str(spec["concurrency"])
    conn = ours_conn if ours else peer_conn
    os.environ["S3VFS_BUCKET"] = spec["bucket"]
    n = 1
    setup = None
    if work in ("insert", "commit", "walcommit"):
        q = conn(spec, spec["target"])
        if work == "walcommit" and ours:
            # sqlite-s3vfs has no WAL mode: it commits in its only one, rollback.
            assert q("pragma journal_mode=wal")[0][0] == "wal"
        q("create table t(id integer primary key, k integer, b text)")
        q("insert into t(k, b) values (0, 'first')")
    elif work in ("serialize", "deserialize") and ours:
        setup = ours_ext()
    elif not ours and work in ("serialize", "deserialize", "import", "export"):
        setup = peer_vfs(spec)
    elif work in READS:
        # Process setup outside the measured part (loading the extension; importing boto3 and
        # making its resource, which takes a second or more here): nothing is read from S3
        # yet, so the measured open and query still start cold.
        ours_ext() if ours else peer_vfs(spec)
    print("READY", flush=True)
    sys.stdin.readline()
    times = []
    t0 = time.perf_counter()
    if work in READS:
        sql, args = READS[work]
        q = conn(spec, spec["prefix"])
        result = q(sql, tuple(spec[a] for a in args))
        assert result and result[0][0] is not None, result
    elif work == "insert":
        rnd = random.Random(1)
        q("begin")
        for _ in range(spec["rows"]):
            q("insert into t(k, b) values (?, ?)", (rnd.randrange(1_000_000), "x" * 100))
        q("commit")
    elif work in ("commit", "walcommit"):
        n = spec["rows"]
        for i in range(n):
            t = time.perf_counter()
            q("insert into t(k, b) values (?, ?)", (i, f"one {i}"))
            times.append(time.perf_counter() - t)
    elif work == "serialize" and ours:
        setup.execute("select s3vfs_serialize(?, ?)", (spec["prefix"], spec["target"])).fetchall()
    elif work == "serialize":
        vfs, bucket = setup
        bucket.upload_fileobj(vfs.serialize_fileobj(spec["prefix"]), spec["target"])
    elif work == "deserialize" and ours:
        setup.execute("select s3vfs_deserialize(?, ?)", (spec["source"], spec["target"])).fetchall()
    elif work == "deserialize":
        vfs, bucket = setup
        vfs.deserialize_iter(spec["target"], bucket.Object(spec["source"]).get()["Body"].iter_chunks(65536))
    elif work == "import" and ours:
        cli(["import", spec["file"], f"s3://{spec['bucket']}/{spec['target']}"])
    elif work == "import":
        vfs, _ = setup
        with open(spec["file"], "rb") as f:
            vfs.deserialize_iter(spec["target"], iter(lambda: f.read(65536), b""))
    elif work == "export" and ours:
        cli(["export", "--force", f"s3://{spec['bucket']}/{spec['prefix']}", spec["file"]])
    elif work == "export":
        vfs, _ = setup
        with open(spec["file"], "wb") as f:
            for chunk in vfs.serialize_iter(spec["prefix"]):
                f.write(chunk)
    else:
        raise SystemExit(f"unknown workload {work}")
    total = time.perf_counter() - t0
    result = {"seconds": statistics.median(times) if times else total, "n": n, "total": total, "rss_mb": peak_rss_mb()}
    print(json.dumps(result), flush=True)


def peak_rss_mb():
    """The most resident memory this worker (or the s3vfs command it ran) ever had, in MiB:
    VmHWM of this process, ru_maxrss of its waited-for children."""
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(hwm, children) / 1024


def cli(args):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"s3vfs {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")


# ---------------------------------------------------------------- main side


class Endpoint:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def _call(self, path, post=False):
        req = urllib.request.Request(self.url + path, method="POST" if post else "GET", data=b"" if post else None)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stats(self):
        return self._call("/_stats")

    def reset(self):
        self._call("/_stats/reset", post=True)

    def delay(self, ms):
        self._call(f"/_config?delay_ms={ms}", post=True)


def ceiling(ep, endpoint, bucket, concurrency, seconds, delay_ms=0):
    """The endpoint's own ceiling: its built-in load generator (a separate process, signed
    requests on keep-alive connections) at the given concurrency; 4 KiB PUTs, then GETs."""
    ep.delay(delay_ms)
    out = subprocess.run(
        [
            os.environ["S3BENCH_BIN"],
            "load",
            "--endpoint",
            endpoint,
            "--access-key",
            os.environ["AWS_ACCESS_KEY_ID"],
            "--secret-key",
            os.environ["AWS_SECRET_ACCESS_KEY"],
            "--bucket",
            bucket,
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    ep.delay(0)
    return json.loads(out.stdout)


def make_db(path, megabytes):
    """t(id, k indexed, b 100 chars) of about `megabytes`, and u(id, t_id): 20,000 rows
    pointing at random rows of t, for the join."""
    rows = megabytes * 1024 * 1024 // 142
    rnd = random.Random(megabytes)
    db = sqlite3.connect(path)
    db.execute("create table t(id integer primary key, k integer, b text)")
    db.executemany(
        "insert into t(k, b) values (?, ?)", ((rnd.randrange(1_000_000), rnd.randbytes(50).hex()) for _ in range(rows))
    )
    db.execute("create index t_k on t(k)")
    db.execute("create table u(id integer primary key, t_id integer)")
    db.executemany("insert into u(t_id) values (?)", ((rnd.randrange(1, rows + 1),) for _ in range(20_000)))
    db.commit()
    mid_id = rows // 2
    mid_k = db.execute("select k from t where id = ?", (mid_id,)).fetchone()[0]
    db.close()
    return {"rows": rows, "mid_id": mid_id, "mid_k": mid_k, "bytes": os.path.getsize(path)}


def run(ep, spec, cap):
    """One workload in a fresh process; returns a result dict (stopped=True when capped)."""
    p = subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline().strip()
    if line != "READY":
        p.kill()
        raise SystemExit(f"{spec['impl']} {spec['workload']}: worker failed to start: {line} {p.stderr.read()[-2000:]}")
    ep.reset()
    t0 = time.perf_counter()
    p.stdin.write("GO\n")
    p.stdin.flush()
    try:
        out, err = p.communicate(timeout=cap)
        elapsed = time.perf_counter() - t0
        stats = ep.stats()
        if p.returncode != 0:
            return {"failed": (err or out).strip().splitlines()[-1:] or ["?"], "stats": stats, "seconds": elapsed}
        result = json.loads(out.strip().splitlines()[-1])
        result.update(stats=stats, stopped=False)
        return result
    except subprocess.TimeoutExpired:
        stats = ep.stats()
        p.kill()
        p.communicate()
        return {"seconds": cap, "total": cap, "n": 1, "stats": stats, "stopped": True}


def summarize(r, nbytes):
    s = r["stats"]
    n = r.get("n", 1)
    reqs = {k: v / n for k, v in s["requests"].items()}
    cost = sum(PRICE.get(k, 0) * v / 1000 for k, v in reqs.items())
    wire = (s["bytes_in"] + s["bytes_out"]) / n
    secs = r["seconds"]
    total = r.get("total", secs)
    return {
        "seconds": secs,
        "requests": reqs,
        "total_requests": sum(reqs.values()),
        "round_trips": (s["critical_path_round_trips"] or 0) / n if s["critical_path_round_trips"] is not None else None,
        "max_in_flight": s["max_in_flight"],
        # A stopped workload moved only part of the database: count what it moved.
        "mb_s": ((s["bytes_in"] + s["bytes_out"]) if r.get("stopped") else (nbytes or (s["bytes_in"] + s["bytes_out"])))
        / 1e6
        / total
        if total
        else 0,
        "wire_mb": wire / 1e6,
        "cost": cost,
        "stopped": r.get("stopped", False),
        "failed": r.get("failed"),
        "rss_mb": r.get("rss_mb"),
    }


def fmt_reqs(reqs):
    return " ".join(f"{k}={v:g}" if v == int(v) else f"{k}={v:.2f}" for k, v in sorted(reqs.items())) or "-"


def fmt_time(m):
    if m["failed"]:
        return "failed"
    if m["stopped"]:
        return f"> {m['seconds']:.0f} s (stopped)"
    return f"{m['seconds']:.3f} s" if m["seconds"] < 10 else f"{m['seconds']:.1f} s"


def fmt_cost(c):
    return f"${c:.6f}" if c < 0.01 else f"${c:.4f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delay-ms", default="20", help="per-request delay(s) in ms, e.g. 20 or 5,20,50")
    ap.add_argument("--sizes", default="5,50", help="database sizes in MB (500 is opt-in: 5,50,500)")
    ap.add_argument("--peer-cap", type=float, default=60, help="stop a sqlite-s3vfs workload after this many seconds")
    ap.add_argument("--cap", type=float, default=600, help="stop an s3vfs workload after this many seconds")
    ap.add_argument("--insert-rows", type=int, default=100_000)
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=64, help="load generator's connections for the ceiling")
    ap.add_argument("--quick", action="store_true", help="~3 minutes: 5 MB, 20 ms, 20,000-row insert, caps 20 s")
    ap.add_argument("--only", help="comma-separated workloads to run")
    ap.add_argument(
        "--sweep", default="16,32,64,128",
        help="s3vfs's concurrency settings to measure the scan and the bulk transfers at ('' to skip)",
    )
    ap.add_argument("--sweep-size", type=int, help="database size (MB) for the sweep (default: the largest of --sizes)")
    ap.add_argument("--out")
    if "--quick" in sys.argv:
        # Defaults only: options given beside --quick still win.
        ap.set_defaults(sizes="5", delay_ms="20", peer_cap=15, insert_rows=20_000, commits=5, sweep="16,64")
    args = ap.parse_args()
    delays = [float(d) for d in args.delay_ms.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    only = set(args.only.split(",")) if args.only else None

    for var in ("AWS_ENDPOINT_URL_S3", "S3BENCH_STATS_URL", "S3BENCH_BIN"):
        if var not in os.environ:
            raise SystemExit(f"{var} is not set: run scripts/bench-server.sh start and source .s3-bench/env")
    for f in (LIB + ".so", CLI):
        if not os.path.exists(f):
            raise SystemExit(f"{f} is missing: cargo build --release")
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    ep = Endpoint(os.environ["S3BENCH_STATS_URL"].rsplit("/_stats", 1)[0])
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"})
    )
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    started = time.time()
    load_before = os.getloadavg()

    print("endpoint ceiling (no delay, 4 KiB objects) ...", flush=True)
    ceil = ceiling(ep, endpoint, bucket, args.concurrency, 3)
    ceil16 = ceiling(ep, endpoint, bucket, 16, 2)
    ceil1 = ceiling(ep, endpoint, bucket, 1, 2)
    d0 = delays[0]
    ceil_d = ceiling(ep, endpoint, bucket, args.concurrency, 3, delay_ms=d0)
    ceiling_lines = [
        f"- no delay, {args.concurrency} connections: **{ceil['get_per_s']:,.0f} GET/s, {ceil['put_per_s']:,.0f} PUT/s**",
        f"- no delay, 16 connections: {ceil16['get_per_s']:,.0f} GET/s, {ceil16['put_per_s']:,.0f} PUT/s",
        f"- no delay, 1 connection: {ceil1['get_per_s']:,.0f} GET/s, {ceil1['put_per_s']:,.0f} PUT/s "
        f"(≈ {1000 / max(ceil1['get_per_s'], 1):.2f} ms per GET round trip)",
        f"- {d0:g} ms delay, {args.concurrency} connections: {ceil_d['get_per_s']:,.0f} GET/s, "
        f"{ceil_d['put_per_s']:,.0f} PUT/s (the delay alone allows {args.concurrency * 1000 / d0:,.0f}/s)",
    ]
    for line in ceiling_lines:
        print(line, flush=True)

    tmp = tempfile.TemporaryDirectory(prefix="s3vfs-bench-")
    dbs = {}
    ep.delay(0)
    for mb in sizes:
        path = os.path.join(tmp.name, f"seed-{mb}.db")
        t = time.perf_counter()
        info = make_db(path, mb)
        prefix = f"seed-{mb}.db"
        # Seeded with s3vfs's import at delay 0 (not measured): both clients read this layout.
        cli(["import", "--concurrency", "64", path, f"s3://{bucket}/{prefix}"])
        client.upload_file(path, bucket, f"plain/seed-{mb}.sqlite")
        info.update(path=path, prefix=prefix, plain=f"plain/seed-{mb}.sqlite")
        dbs[mb] = info
        print(
            f"seeded {prefix}: {info['bytes'] / 1e6:.1f} MB, {info['bytes'] // BLOCK} blocks, "
            f"{info['rows']:,} rows ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )

    rows_out = []

    def compare(delay, label, workload, size_bytes, spec_for):
        if only and workload not in only:
            return
        line = {"delay": delay, "workload": label}
        for impl in IMPLS:
            spec = {"impl": impl, "workload": workload, "bucket": bucket, "endpoint": endpoint}
            spec.update(spec_for(impl))
            r = run(ep, spec, args.cap if impl == "s3vfs" else args.peer_cap)
            m = summarize(r, size_bytes)
            line[impl] = m
            rt = "-" if m["round_trips"] is None else f"{m['round_trips']:.1f}"
            print(
                f"  {label:<34} {impl:<12} {fmt_time(m):>18}  rt {rt:>7}  in-flight {m['max_in_flight']:>3}  "
                f"{m['mb_s']:6.2f} MB/s  {fmt_cost(m['cost'])}  rss {m['rss_mb'] or 0:.0f} MiB  {fmt_reqs(m['requests'])}"
                + (f"  FAILED: {m['failed']}" if m["failed"] else ""),
                flush=True,
            )
        rows_out.append(line)

    def fresh(tag):
        return f"w/{tag}-{uuid.uuid4().hex[:8]}.db"

    sweep_rows = []
    sweep = [int(c) for c in args.sweep.split(",") if c.strip()]
    if sweep:
        mb = args.sweep_size or max(sizes)
        db = dbs[mb]
        ep.delay(d0)
        print(f"\nconcurrency sweep, {mb} MB, {d0:g} ms:", flush=True)
        sweep_work = [
            ("cold full scan", "scan", lambda: dict(prefix=db["prefix"], mid_id=0, mid_k=0)),
            ("serialize", "serialize", lambda: dict(prefix=db["prefix"], target=f"ser/{uuid.uuid4().hex}.sqlite")),
            ("deserialize", "deserialize", lambda: dict(source=db["plain"], target=fresh("deser"))),
            ("import", "import", lambda: dict(file=db["path"], target=fresh("import"))),
            ("export", "export", lambda: dict(prefix=db["prefix"], file=os.path.join(tmp.name, f"export-{uuid.uuid4().hex[:6]}.db"))),
        ]
        for label, workload, spec_for in sweep_work:
            for c in sweep:
                spec = {"impl": "s3vfs", "workload": workload, "bucket": bucket, "endpoint": endpoint, "concurrency": c}
                spec.update(spec_for())
                m = summarize(run(ep, spec, args.cap), db["bytes"])
                limit = c * BLOCK / (d0 / 1000) / 1e6
                sweep_rows.append({"workload": label, "concurrency": c, "limit_mb_s": limit, **m})
                print(
                    f"  {label:<16} c={c:<4} {fmt_time(m):>12}  {m['mb_s']:6.2f} MB/s of {limit:6.2f} "
                    f"({100 * m['mb_s'] / limit:3.0f} %)  in-flight {m['max_in_flight']:>3}  rt {m['round_trips'] or 0:7.1f}  "
                    f"rss {m['rss_mb'] or 0:.0f} MiB  {fmt_reqs(m['requests'])}",
                    flush=True,
                )

    for delay in delays:
        ep.delay(delay)
        print(f"\ndelay {delay:g} ms:", flush=True)
        for mb, db in dbs.items():
            size = db["bytes"]
            reads = dict(prefix=db["prefix"], mid_id=db["mid_id"], mid_k=db["mid_k"])
            compare(delay, f"cold full scan, {mb} MB", "scan", size, lambda i: reads)
            compare(delay, f"cold point query by rowid, {mb} MB", "point_rowid", 0, lambda i: reads)
            compare(delay, f"cold point query via index, {mb} MB", "point_index", 0, lambda i: reads)
            compare(delay, f"cold indexed aggregate (10%), {mb} MB", "aggregate", 0, lambda i: reads)
            compare(delay, f"cold join, 200 lookups, {mb} MB", "join", 0, lambda i: reads)
            compare(delay, f"serialize, {mb} MB", "serialize", size, lambda i: dict(prefix=db["prefix"], target=f"ser/{uuid.uuid4().hex}.sqlite"))
            compare(delay, f"deserialize, {mb} MB", "deserialize", size, lambda i: dict(source=db["plain"], target=fresh("deser")))
            compare(delay, f"import, {mb} MB", "import", size, lambda i: dict(file=db["path"], target=fresh("import")))
            compare(
                delay, f"export, {mb} MB", "export", size,
                lambda i: dict(prefix=db["prefix"], file=os.path.join(tmp.name, f"export-{uuid.uuid4().hex[:6]}.db")),
            )
        compare(delay, "5,000-row INSERT, one transaction", "insert", 0, lambda i: dict(target=fresh("insert5k"), rows=5_000))
        compare(delay, f"{args.insert_rows:,}-row INSERT, one transaction", "insert", 0, lambda i: dict(target=fresh("insert"), rows=args.insert_rows))
        compare(delay, f"1-row commit (median of {args.commits})", "commit", 0, lambda i: dict(target=fresh("commit"), rows=args.commits))
        compare(
            delay, f"1-row commit, WAL mode (median of {args.commits})", "walcommit", 0,
            lambda i: dict(target=fresh("walcommit"), rows=args.commits),
        )
    ep.delay(0)
    elapsed = time.time() - started

    header = (
        "| workload | s3vfs | sqlite-s3vfs | speed-up | s3vfs requests | sqlite-s3vfs requests "
        "| round trips (s3vfs / peer) | max in flight (s3vfs / peer) | MB/s (s3vfs / peer) | cost USD (s3vfs / peer) "
        "| peak RSS MiB (s3vfs / peer) |"
    )
    tables = []
    for delay in delays:
        tables += [f"### {delay:g} ms per request", "", header, "|---|---|---|---|---|---|---|---|---|---|---|"]
        for line in (r for r in rows_out if r["delay"] == delay):
            o, p = line["s3vfs"], line["sqlite-s3vfs"]
            if o["failed"] or p["failed"]:
                speed = "-"
            elif p["stopped"] and o["seconds"] >= p["seconds"]:
                speed = "? (peer stopped first)"
            elif p["stopped"]:
                speed = f"> {p['seconds'] / o['seconds']:.1f}×"
            else:
                speed = f"{p['seconds'] / o['seconds']:.1f}×"

            def rt(m):
                return "-" if m["round_trips"] is None else f"{m['round_trips']:.1f}"

            def rss(m):
                return "-" if m["rss_mb"] is None else f"{m['rss_mb']:.0f}"

            def reqs(m):
                return f"{m['total_requests']:g} ({fmt_reqs(m['requests'])})" + (" so far" if m["stopped"] else "")

            tables.append(
                f"| {line['workload']} | {fmt_time(o)} | {fmt_time(p)} | {speed} | {reqs(o)} | {reqs(p)} "
                f"| {rt(o)} / {rt(p)} | {o['max_in_flight']} / {p['max_in_flight']} "
                f"| {o['mb_s']:.2f} / {p['mb_s']:.2f} | {fmt_cost(o['cost'])} / {fmt_cost(p['cost'])} "
                f"| {rss(o)} / {rss(p)} |"
            )
        tables.append("")
    if sweep_rows:
        tables += [
            f"### s3vfs's concurrency setting, {args.sweep_size or max(sizes)} MB, {d0:g} ms per request",
            "",
            "Parallel limit = concurrency × 4 KiB ÷ the delay. Serialize and export upload or read "
            "4 parts at once, each with `concurrency` block GETs in flight, so they can pass it.",
            "",
            "| workload | concurrency | time | MB/s | parallel limit MB/s | % of limit | max in flight | round trips | requests | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in sweep_rows:
            tables.append(
                f"| {m['workload']} | {m['concurrency']} | {fmt_time(m)} | {m['mb_s']:.2f} | {m['limit_mb_s']:.2f} "
                f"| {100 * m['mb_s'] / m['limit_mb_s']:.0f} % | {m['max_in_flight']} | {m['round_trips'] or 0:.1f} "
                f"| {m['total_requests']:g} ({fmt_reqs(m['requests'])}) | {m['rss_mb'] or 0:.0f} |"
            )
        tables.append("")
    load_after = os.getloadavg()
    # The machine is shared: its load says how much CPU the Python clients (and the endpoint)
    # could get, which shows in the per-request overhead above the delay.
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; load average {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end"
    )
    report = "\n".join(
        [
            "# Benchmark: s3vfs vs sqlite-s3vfs",
            "",
            f"Measured by `make bench` on {time.strftime('%Y-%m-%d')} ({machine}; run took "
            f"{elapsed / 60:.1f} min; bench.py options: {' '.join(sys.argv[1:]) or '(defaults)'}).",
            "",
            "## The endpoint's ceiling",
            "",
            "bench/s3server (in-memory, SigV4, keep-alive, TCP_NODELAY) measured by its own load "
            "generator in a separate process (4 KiB PUTs, then GETs of them):",
            "",
            *ceiling_lines,
            "",
            "## Results",
            "",
            "Time: the measured part in a fresh process (cold cache); for the 1-row commit the median "
            "per commit, and requests, round trips and cost per commit. Requests, bytes, max in "
            "flight and round trips are counted by the endpoint. Round trips on the critical path = "
            "time during which at least one request was in flight ÷ the delay. MB/s = database "
            "bytes ÷ time for scan and transfers; S3 body bytes moved ÷ time for the others. "
            "\"> N s (stopped)\": sqlite-s3vfs was stopped at the cap; its requests are those made "
            "by then, its speed-up a lower bound.",
            "",
            *tables,
        ]
    )
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
        # The figures behind the tables, to re-render or compare runs.
        Path(args.out).with_suffix(".json").write_text(json.dumps({"ceiling": ceiling_lines, "rows": rows_out, "sweep": sweep_rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
    else:
        main()
