"""Locking: SQLite's rules between connections of a process, and the writer lease in S3
between processes (conditional PUTs), so concurrent writers never corrupt a database."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import proxy as proxymod
import s3util
import sqlutil

WORKER = textwrap.dedent("""
    import sqlite3, sys
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(sys.argv[1])
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=120)
    done = 0
    for _ in range(int(sys.argv[3])):
        db.execute("begin immediate")
        n = db.execute("select n from c").fetchone()[0]
        db.execute("update c set n = ?", (n + 1,))
        db.execute("commit")
        done += 1
    print(done)
""")

HOLDER = textwrap.dedent("""
    import sqlite3, sys
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(sys.argv[1])
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("begin immediate")
    db.execute("update c set n = n + 100")
    print("HOLDING", flush=True)
    sys.stdin.readline()
    db.execute("commit")
    print("DONE", flush=True)
""")


def counter_db(bucket, prefix, **params):
    conn = sqlutil.connect(prefix, bucket, **params)
    conn.execute("create table c(n integer)")
    conn.execute("insert into c values (0)")
    return conn


def test_two_connections_in_one_process_follow_sqlite_locking(bucket):
    a = counter_db(bucket, "lock/inproc.db")
    b = sqlutil.connect("lock/inproc.db", bucket)
    b.execute("pragma busy_timeout = 0")
    a.execute("begin immediate")
    a.execute("update c set n = 1")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        b.execute("begin immediate")
    # A reader may still read the committed state while A only holds RESERVED.
    assert b.execute("select n from c").fetchone()[0] == 0
    b.execute("begin")
    b.execute("select n from c").fetchone()
    # A cannot commit while B holds a read transaction (PENDING waits for readers).
    a.execute("pragma busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        a.execute("commit")
    b.execute("commit")
    a.execute("commit")
    assert b.execute("select n from c").fetchone()[0] == 1


def test_a_writer_in_another_process_makes_us_busy_and_says_who(bucket):
    conn = counter_db(bucket, "lock/lease.db")
    uri = s3util.uri("lock/lease.db", bucket)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, s3util.LIB, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "HOLDING"
        lease = s3util.boto3_client().get_object(Bucket=bucket, Key="lock/lease.db.s3vfs-lease")["Body"].read()
        record = json.loads(lease)
        assert record["pid"] == holder.pid and not record["released"]
        conn.execute("pragma busy_timeout = 300")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("update c set n = n + 1")
        msg = conn.execute("select s3vfs_last_error()").fetchone()[0]
        assert "being written by another process" in msg and f"pid {holder.pid}" in msg, msg
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "DONE"
    finally:
        holder.wait(timeout=30)
    conn.execute("pragma busy_timeout = 5000")
    conn.execute("update c set n = n + 1")
    assert conn.execute("select n from c").fetchone()[0] == 101
    # Only the lease sits beside the database; the sqlite-s3vfs layout is untouched.
    keys = s3util.list_keys(bucket, "lock/lease.db")
    assert {k for k in keys if not k.startswith(("lock/lease.db/", "lock/lease.db-journal/"))} == {
        "lock/lease.db.s3vfs-lease"
    }


def test_concurrent_writer_processes_lose_no_increment(bucket):
    counter_db(bucket, "lock/count.db").close()
    uri = s3util.uri("lock/count.db", bucket)
    per_process, processes = 200, 3
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, s3util.LIB, uri, str(per_process)], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    committed = 0
    for w in workers:
        out, _ = w.communicate(timeout=600)
        assert w.returncode == 0
        committed += int(out.strip())
    conn = sqlutil.connect("lock/count.db", bucket)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select n from c").fetchone()[0] == committed == per_process * processes


def test_locking_none_writes_no_lease(bucket):
    conn = counter_db(bucket, "lock/none.db", locking="none")
    conn.execute("update c set n = 5")
    assert s3util.list_keys(bucket, "lock/none.db.") == []


def test_a_retried_lease_put_whose_first_attempt_landed_is_ours(bucket):
    counter_db(bucket, "lock/retry.db").close()
    state = {"lost": False}

    def lose_first_lease_put(method, path, n):
        if method == "PUT" and path.endswith("s3vfs-lease") and not state["lost"]:
            state["lost"] = True
            return "lose-response"
        return None

    url, px = proxymod.start(s3util.endpoint(), fail=lose_first_lease_put)
    try:
        conn = sqlutil.connect("lock/retry.db", bucket, endpoint=url)
        conn.execute("pragma busy_timeout = 0")
        conn.execute("update c set n = 7")
        assert state["lost"]
        assert conn.execute("select n from c").fetchone()[0] == 7
    finally:
        px.stop()


def test_a_server_that_ignores_conditional_writes_is_refused_before_writing(bucket):
    counter_db(bucket, "lock/nocas.db", locking="none").close()
    seen = {"probes": 0}

    def accept_every_probe(method, path, n):
        if method == "PUT" and "-probe-" in path:
            seen["probes"] += 1
            return 200 if seen["probes"] > 1 else None
        return None

    url, px = proxymod.start(s3util.endpoint(), fail=accept_every_probe)
    try:
        before = sqlutil.stored_bytes(bucket, "lock/nocas.db")
        conn = sqlutil.connect("lock/nocas.db", bucket, endpoint=url + "/")
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("update c set n = 1")
        msg = conn.execute("select s3vfs_last_error()").fetchone()[0]
        assert "ignores conditional writes" in msg and "locking=none" in msg, msg
        assert sqlutil.stored_bytes(bucket, "lock/nocas.db") == before
    finally:
        px.stop()
