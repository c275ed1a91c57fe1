"""One identity per database (issue 11): everything s3vfs keeps for a database is keyed by
where it lives (endpoint, bucket, name), and a journal finds its database from its own
name. The same path in two buckets, or on two endpoints, open in one process, are two
databases: each one's journal lands beside it, and a writer killed mid-commit leaves each
one intact.

Before the fix, the journal of `main` (bucket A) went to the bucket of the last database of
that name opened (B, through `attach`), and a crash rolled A's pages into B.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import proxy as proxymod
import procs
import s3util
import sqlutil

LEASE_SECONDS = 2

# Opens `main` at argv[2], attaches argv[3] as b, and updates main in one transaction.
WRITER = procs.script("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("attach database ? as b", (sys.argv[3],))
    db.execute("select count(*) from b.t").fetchone()
    db.execute("update main.t set v = upper(v)")
    print("COMMITTED", flush=True)
""")


def make_db(uri_text, label):
    s3util.load_ext()
    conn = sqlutil.sqlite3.connect(uri_text, uri=True, isolation_level=None)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"{label} row {i} " + "x" * 300,) for i in range(40)))
    conn.execute("commit")
    rows = conn.execute("select id, v from t order by id").fetchall()
    conn.close()
    return rows


def rows_of(uri_text):
    s3util.load_ext()
    conn = sqlutil.sqlite3.connect(uri_text, uri=True, isolation_level=None)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        return conn.execute("select id, v from t order by id").fetchall()
    finally:
        conn.close()


def journal_keys(client, bucket, name):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=name + "-journal/")
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def trace_commit(a_uri, b_uri):
    """Runs the writer with S3VFS_TRACE=1 and returns its trace lines."""
    env = dict(os.environ, S3VFS_TRACE="1", S3VFS_LOG="off")
    out = subprocess.run(
        [sys.executable, "-c", WRITER, s3util.LIB, a_uri, b_uri],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.stdout.strip() == "COMMITTED", out.stderr[-2000:]
    return [l for l in out.stderr.splitlines() if l.startswith("s3vfs: ")]


def crash_after_journal(a_uri_for_proxy, b_uri, a_block_marker, px):
    """Runs the writer through `px` and kills it at its first write of a page of the main
    database: its journal is stored by then (the journal is always stored first)."""
    cut = threading.Event()

    def at_first_page(method, path, n):
        if method == "PUT" and a_block_marker in path:
            cut.set()
            return "reset"
        return None

    px.set(fail=at_first_page)
    env = dict(os.environ, S3VFS_LEASE_SECONDS=str(LEASE_SECONDS), S3VFS_LOG="off")
    w = subprocess.Popen(
        [sys.executable, "-c", WRITER, s3util.LIB, a_uri_for_proxy, b_uri],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    while w.poll() is None and not cut.wait(0.01):
        pass
    w.send_signal(signal.SIGKILL)
    w.wait(timeout=30)
    px.set(fail=None)
    assert cut.is_set(), "the writer never wrote a page of the main database"
    time.sleep(LEASE_SECONDS * 7 / 6 + 0.3)  # the dead writer's lease runs out, and its grace period


def test_the_same_path_in_two_buckets_keeps_each_journal_at_home(bucket):
    other = s3util.new_bucket("identity-b")
    a_uri, b_uri = s3util.uri("apps/app.db", bucket), s3util.uri("apps/app.db", other)
    a_before = make_db(a_uri, "A")
    b_before = make_db(b_uri, "B")
    lines = trace_commit(a_uri, b_uri)
    journal_puts = [l for l in lines if " PUT " in l and "app.db-journal" in l]
    assert journal_puts, "the commit stores a journal"
    assert all(f"/{bucket}/apps/app.db-journal/" in l for l in journal_puts), journal_puts
    assert not any(f"/{other}/" in l and ("PUT" in l or "DELETE" in l) for l in lines), (
        "nothing is written to the attached database's bucket"
    )
    assert rows_of(b_uri) == b_before
    assert rows_of(a_uri) == [(i, v.upper()) for i, v in a_before]


def test_a_writer_killed_mid_commit_leaves_both_buckets_intact(bucket):
    other = s3util.new_bucket("identity-crash")
    name = "apps/app.db"
    a_before = make_db(s3util.uri(name, bucket), "A")
    b_before = make_db(s3util.uri(name, other), "B")
    url, px = proxymod.start(s3util.endpoint())
    try:
        crash_after_journal(
            s3util.uri(name, bucket, endpoint=url),
            s3util.uri(name, other, endpoint=url),
            f"/{bucket}/{name}/00000",
            px,
        )
    finally:
        px.stop()
    client = s3util.boto3_client()
    assert journal_keys(client, other, name) == [], "no journal of A was stored in B"
    assert journal_keys(client, bucket, name), "A's hot journal is beside A"
    # B first, with its own URI: before the fix this rolled A's pages into B.
    assert rows_of(s3util.uri(name, other)) == b_before
    assert rows_of(s3util.uri(name, bucket)) == a_before
    assert not any(k.endswith("/0000000000") for k in journal_keys(client, bucket, name)), (
        "A's rollback finished with its journal's block 0 deleted"
    )


@pytest.fixture
def second_endpoint(tmp_path):
    """A second S3 server (moto without signature checks, so the same keys work), with a
    bucket of the same name as the test's bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    log = open(tmp_path / "moto2.log", "w")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    client = None
    for _ in range(120):
        try:
            client = s3util.boto3_client(endpoint_url=endpoint)
            client.list_buckets()
            break
        except Exception:
            time.sleep(0.5)
    yield endpoint, client
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_the_same_bucket_and_path_on_two_endpoints_are_two_databases(bucket, second_endpoint):
    endpoint2, client2 = second_endpoint
    client2.create_bucket(Bucket=bucket)
    name = "apps/app.db"
    a_uri, b_uri = s3util.uri(name, bucket), s3util.uri(name, bucket, endpoint=endpoint2)
    a_before = make_db(a_uri, "A")
    b_before = make_db(b_uri, "B")
    lines = trace_commit(a_uri, b_uri)
    assert not any(endpoint2 in l and ("PUT" in l or "DELETE" in l) for l in lines), lines
    assert rows_of(b_uri) == b_before
    assert rows_of(a_uri) == [(i, v.upper()) for i, v in a_before]
    # And killed mid-commit (fresh databases: the update above already upper-cased these):
    # the second endpoint never sees a journal, and both reopen as they were.
    name = "apps/crash.db"
    a_uri, b_uri = s3util.uri(name, bucket), s3util.uri(name, bucket, endpoint=endpoint2)
    a_before = make_db(a_uri, "A")
    b_before = make_db(b_uri, "B")
    url, px = proxymod.start(s3util.endpoint())
    try:
        crash_after_journal(s3util.uri(name, bucket, endpoint=url), b_uri, f"/{bucket}/{name}/00000", px)
    finally:
        px.stop()
    assert journal_keys(client2, bucket, name) == []
    assert rows_of(b_uri) == b_before
    assert rows_of(a_uri) == a_before


def test_serialize_and_deserialize_use_the_settings_of_the_bucket_given(bucket, monkeypatch):
    other = s3util.new_bucket("identity-ser")
    # `p` is open in `bucket` with 4095-byte blocks while the other bucket is written.
    held = sqlutil.connect("p", bucket, block_size=4095)
    held.execute("create table t(x)")
    held.execute("insert into t values (1)")
    src = sqlutil.connect("src", other)
    src.execute("create table t(x)")
    src.executemany("insert into t values (?)", ((i,) for i in range(2000)))
    monkeypatch.setenv("S3VFS_BLOCK_SIZE", "4096")
    monkeypatch.setenv("S3VFS_BUCKET", other)
    size = src.execute("select s3vfs_serialize(?, ?)", (f"s3://{other}/src", f"s3://{other}/src.sqlite")).fetchone()[0]
    assert size > 8192
    src.execute("select s3vfs_deserialize(?, ?, 'replace')", (f"s3://{other}/src.sqlite", f"s3://{other}/p"))
    sizes = {s for k, s in s3util.list_objects(other, "p/")}
    assert max(sizes) == 4096, sizes
    copy = sqlutil.connect("p", other, block_size=4096)
    assert copy.execute("select count(*) from t").fetchone()[0] == 2000
    assert held.execute("select count(*) from t").fetchone()[0] == 1
