"""s3vfs_serialize / s3vfs_deserialize, backups and restores the SQLite ways, and the SQL
examples in sql/."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import proxy as proxymod
import s3util
import sqlutil

ROOT = s3util.ROOT


def local_db(path, megabytes, seed=1):
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("create table t(id integer primary key, v text)")
    rows = megabytes * 1024 * 1024 // 115
    db.executemany("insert into t(v) values (?)", ((rng.randbytes(50).hex(),) for _ in range(rows)))
    db.commit()
    db.close()
    return path.read_bytes()


def sql(query, *args, **uri_params):
    s3util.load_ext()
    conn = sqlite3.connect(":memory:")
    return conn.execute(query, args).fetchone()[0]


def get(bucket, key):
    return s3util.boto3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.exact_requests
def test_a_50_megabyte_database_round_trips_byte_for_byte(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    # 64 KiB blocks keep this at ~800 objects: the local moto server stores ~150 per second.
    monkeypatch.setenv("S3VFS_BLOCK_SIZE", "65536")
    data = local_db(tmp_path / "big.db", 50)
    s3util.boto3_client().put_object(Bucket=bucket, Key="src/big.sqlite", Body=data)

    s3util.load_ext()
    conn = sqlite3.connect(":memory:")
    conn.execute("select s3vfs_stats_reset()")
    t = time.perf_counter()
    blocks = conn.execute("select s3vfs_deserialize('src/big.sqlite', 'big.db')").fetchone()[0]
    t_de = time.perf_counter() - t
    de_stats = json.loads(conn.execute("select s3vfs_stats()").fetchone()[0])
    assert blocks == -(-len(data) // 65536)
    assert sqlutil.stored_bytes(bucket, "big.db") == data

    conn.execute("select s3vfs_stats_reset()")
    t = time.perf_counter()
    size = conn.execute("select s3vfs_serialize('big.db', 'out/big.sqlite')").fetchone()[0]
    t_ser = time.perf_counter() - t
    ser_stats = json.loads(conn.execute("select s3vfs_stats()").fetchone()[0])
    assert size == len(data)
    assert get(bucket, "out/big.sqlite") == data
    # 8 MiB parts: a multipart upload (create, parts, complete) of at least 3 parts.
    parts = -(-len(data) // (8 << 20))
    assert parts >= 3 and ser_stats["put"] == parts + 2, ser_stats
    mb = len(data) / 1e6
    print(f"\ndeserialize {mb:.1f} MB: {t_de:.2f} s = {mb / t_de:.1f} MB/s, {de_stats}")
    print(f"serialize   {mb:.1f} MB: {t_ser:.2f} s = {mb / t_ser:.1f} MB/s, {ser_stats}")

    reopened = sqlutil.connect("big.db", bucket)
    assert reopened.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_serialize_writes_what_the_vfs_stored_and_the_blob_form_agrees(bucket, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    conn = sqlutil.connect("small.db", bucket)
    conn.execute("create table t(x)")
    conn.execute("begin")
    conn.executemany("insert into t values (?)", ((i,) for i in range(3000)))
    conn.execute("commit")
    stored = sqlutil.stored_bytes(bucket, "small.db")
    assert conn.execute("select s3vfs_serialize('small.db', 's3://%s/exports/small.sqlite')" % bucket).fetchone()[0] == len(stored)
    assert get(bucket, "exports/small.sqlite") == stored
    assert conn.execute("select s3vfs_serialize('small.db')").fetchone()[0] == stored


BAD_SOURCES = {
    "corrupted": (lambda good: b"XQLite format 3\0" + good[16:], "does not start with the SQLite header"),
    "truncated": (lambda good: good[:-4096], "truncated"),
    "random": (lambda good: random.Random(7).randbytes(8192), "does not start with the SQLite header"),
    "empty": (lambda good: b"", "it is empty"),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_a_bad_source_is_refused_and_nothing_written(bucket, tmp_path, monkeypatch, case):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    make, expected = BAD_SOURCES[case]
    good = local_db(tmp_path / "good.db", 1)
    s3util.boto3_client().put_object(Bucket=bucket, Key="src/bad.sqlite", Body=make(good))
    with pytest.raises(sqlite3.OperationalError, match="is not a SQLite database") as e:
        sql("select s3vfs_deserialize('src/bad.sqlite', 'dst.db')")
    assert expected in str(e.value), str(e.value)
    assert s3util.list_keys(bucket, "dst") == []


def test_a_missing_source_or_bucket_is_refused_and_nothing_written(bucket, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    with pytest.raises(sqlite3.OperationalError, match="does not exist: check the key"):
        sql("select s3vfs_deserialize('src/missing.sqlite', 'dst.db')")
    with pytest.raises(sqlite3.OperationalError, match="bucket 'no-such-bucket-s3vfs' does not exist"):
        sql("select s3vfs_deserialize('s3://no-such-bucket-s3vfs/x.sqlite', 'dst.db')")
    assert s3util.list_keys(bucket, "") == []


def test_deserialize_refuses_an_existing_database_unless_replace_and_leaves_no_stale_block(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    client = s3util.boto3_client()
    long = local_db(tmp_path / "long.db", 2, seed=2)
    short = local_db(tmp_path / "short.db", 1, seed=3)
    client.put_object(Bucket=bucket, Key="src/long.sqlite", Body=long)
    client.put_object(Bucket=bucket, Key="src/short.sqlite", Body=short)
    sql("select s3vfs_deserialize('src/long.sqlite', 'x.db')")
    client.put_object(Bucket=bucket, Key="x.db-journal/0000000000", Body=b"\xd9\xd5\x05\xf9 stale journal")
    before = sqlutil.stored_bytes(bucket, "x.db")

    with pytest.raises(sqlite3.OperationalError, match="already holds a database: pass 'replace'"):
        sql("select s3vfs_deserialize('src/short.sqlite', 'x.db')")
    assert sqlutil.stored_bytes(bucket, "x.db") == before

    blocks = sql("select s3vfs_deserialize('src/short.sqlite', 'x.db', 'replace')")
    assert len(s3util.list_keys(bucket, "x.db/")) == blocks
    assert s3util.list_keys(bucket, "x.db-journal/") == []
    assert sqlutil.stored_bytes(bucket, "x.db") == short


def test_a_concurrent_writer_never_yields_a_torn_copy(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    conn = sqlutil.connect("busy.db", bucket)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", (("v" * 200,) for _ in range(2000)))
    conn.execute("commit")
    conn.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sqlite3, time
            boot = sqlite3.connect(":memory:"); boot.enable_load_extension(True); boot.load_extension({s3util.LIB!r})
            db = sqlite3.connect({s3util.uri("busy.db", bucket)!r}, uri=True, isolation_level=None, timeout=60)
            end = time.time() + 8
            while time.time() < end:
                db.execute("update t set v = hex(randomblob(100)) where id % 7 = 0")
        """)],
    )
    outcomes = {"ok": 0, "refused": 0}
    try:
        while writer.poll() is None:
            try:
                sql("select s3vfs_serialize('busy.db', 'snap.sqlite')")
            except sqlite3.OperationalError as e:
                assert "changed while it was being copied" in str(e) or "rollback journal is pending" in str(e), str(e)
                outcomes["refused"] += 1
                continue
            outcomes["ok"] += 1
            copy = tmp_path / f"snap{outcomes['ok']}.db"
            copy.write_bytes(get(bucket, "snap.sqlite"))
            assert sqlite3.connect(copy).execute("pragma integrity_check").fetchone()[0] == "ok"
    finally:
        writer.wait(timeout=60)
    assert sum(outcomes.values()) > 0, outcomes
    print(outcomes)


def test_a_failed_multipart_upload_is_aborted(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    monkeypatch.setenv("S3VFS_BLOCK_SIZE", "65536")
    # Few requests in flight: the copy's 4 parts × 32 GETs through the test's Python
    # proxy once stalled a GET past its timeout on CI's loaded machine; the abort is the
    # point here, not the speed.
    monkeypatch.setenv("S3VFS_CONCURRENCY", "4")
    data = local_db(tmp_path / "mp.db", 25)
    s3util.boto3_client().put_object(Bucket=bucket, Key="src/mp.sqlite", Body=data)
    sql("select s3vfs_deserialize('src/mp.sqlite', 'mp.db')")

    def fail_third_part(method, path, n):
        return 500 if method == "PUT" and "partNumber=3&" in path + "&" else None

    # Straight to the server: under make test-faults a GET retried past its budget on a
    # loaded machine would fail the copy before the part this test is about.
    url, px = proxymod.start(s3util.server_endpoint(), fail=fail_third_part)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
        with pytest.raises(sqlite3.OperationalError, match="UploadPart"):
            sql("select s3vfs_serialize('mp.db', 'out/mp.sqlite')")
    finally:
        px.stop()
    client = s3util.boto3_client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3util.list_keys(bucket, "out/") == []


def run_sql_example(name, bucket, cwd=None):
    env = dict(os.environ, S3VFS_BUCKET=bucket)
    r = s3util.run_cli((ROOT / "sql" / name).read_text(), env=env, cwd=cwd)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr
    return dict(line.split("|", 1) for line in r.stdout.splitlines() if "|" in line)


def test_the_serialize_example_runs(bucket):
    out = run_sql_example("serialize.sql", bucket)
    assert int(out["serialized bytes"]) > 0
    assert int(out["blocks written"]) >= 2
    assert out["copied rows"] == "1"
    assert out["blob bytes"] == out["serialized bytes"]


def test_the_backup_example_runs(bucket, tmp_path):
    out = run_sql_example("backup.sql", bucket, cwd=tmp_path)
    assert out["restored rows"] == "1"
    for prefix in ("examples/backup.db", "examples/vacuumed.db"):
        conn = sqlutil.connect(prefix, bucket)
        assert conn.execute("select name from items").fetchall() == [("backed up with .backup",)]


def test_python_backup_api_both_ways(bucket, tmp_path):
    local = sqlite3.connect(tmp_path / "src.db")
    local.execute("create table t(x)")
    local.executemany("insert into t values (?)", ((i,) for i in range(5000)))
    local.commit()
    remote = sqlutil.connect("py-backup.db", bucket)
    local.backup(remote)
    assert remote.execute("select count(*), sum(x) from t").fetchone() == (5000, sum(range(5000)))
    back = sqlite3.connect(tmp_path / "back.db")
    remote.backup(back)
    assert back.execute("select count(*), sum(x) from t").fetchone() == (5000, sum(range(5000)))
    assert back.execute("pragma integrity_check").fetchone()[0] == "ok"
