"""Every byte verified (issue 12, findings 5 and 11): bodies damaged in transit are fetched
again, a PUT acknowledged without storing the bytes is not counted as stored, and a
damaged block of a database is reported with its key instead of being read as zeros."""

import os
import subprocess
import sys

import proxy as proxymod
import procs
import s3util
import sqlutil


def fill(bucket, name, rows=50):
    conn = sqlutil.connect(name, bucket)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"row {i} " + "x" * 400,) for i in range(rows)))
    conn.execute("commit")
    conn.close()


READER = procs.script("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=30)
    try:
        print("SUM", db.execute("select count(*), sum(length(v)) from t").fetchone(), flush=True)
        if len(sys.argv) > 3:
            db.execute("insert into t(v) values ('new')")
            print("COMMITTED", flush=True)
    except Exception as e:
        print("FAILED", e, "|", db.execute("select s3vfs_last_error()").fetchone()[0], flush=True)
    print("STATS", db.execute("select s3vfs_stats()").fetchone()[0], flush=True)
""")


def run(uri_text, *extra):
    env = dict(os.environ, S3VFS_LOG="off")
    out = subprocess.run([sys.executable, "-c", READER, s3util.LIB, uri_text, *extra],
                         capture_output=True, text=True, env=env, timeout=120)
    return out.stdout


def test_a_body_damaged_in_transit_is_fetched_again(bucket):
    name = "integrity/flip.db"
    fill(bucket, name)
    url, px = proxymod.start(s3util.endpoint())
    flipped = []

    def flip_first_page_get(method, path, n):
        if method == "GET" and path.split("?")[0].endswith(f"/{name}/0000000003") and not flipped:
            flipped.append(path)
            return "flip"
        return None

    px.set(fail=flip_first_page_get)
    try:
        out = run(s3util.uri(name, bucket, endpoint=url))
    finally:
        px.stop()
    assert flipped, "the test flipped a byte"
    assert "SUM (50, " in out, out


def test_a_body_damaged_every_time_fails_clearly(bucket):
    name = "integrity/flip-always.db"
    fill(bucket, name)
    url, px = proxymod.start(s3util.endpoint())
    px.set(fail=lambda m, p, n: "flip" if m == "GET" and p.split("?")[0].endswith(f"/{name}/0000000003") else None)
    try:
        out = run(s3util.uri(name, bucket, endpoint=url))
    finally:
        px.stop()
    assert "FAILED" in out and f"{name}/0000000003" in out and "ETag" in out, out


def test_a_put_acknowledged_without_storing_is_not_a_commit(bucket):
    name = "integrity/fake-ok.db"
    fill(bucket, name)
    url, px = proxymod.start(s3util.endpoint())
    px.set(fail=lambda m, p, n: "fake-ok" if m == "PUT" and f"/{name}/00000" in p else None)
    try:
        out = run(s3util.uri(name, bucket, endpoint=url), "write")
    finally:
        px.stop()
    assert "COMMITTED" not in out and "FAILED" in out, out
    # Nothing half-done is left: another process reads the database as it was.
    out = run(s3util.uri(name, bucket))
    assert "SUM (50, " in out, out


def test_a_damaged_middle_block_is_reported_with_its_key(bucket):
    client = s3util.boto3_client()
    for damage in ("short", "long", "missing"):
        name = f"integrity/{damage}.db"
        fill(bucket, name, rows=200)
        key = f"{name}/0000000005"
        if damage == "missing":
            client.delete_object(Bucket=bucket, Key=key)
        else:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            client.put_object(Bucket=bucket, Key=key, Body=body[:100] if damage == "short" else body + b"tail")
        out = run(s3util.uri(name, bucket))
        assert "FAILED" in out and key in out and "damaged" in out, (damage, out)
