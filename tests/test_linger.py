"""The writer lease kept after a write transaction (the linger, issue 14): other processes
wait it out with a busy_timeout and are told who holds it; the last close and a normal
process exit give it up at once; only a process that dies without exiting keeps it."""

import json
import sqlite3
import subprocess
import sys

import pytest

import procs
import s3util
import sqlutil

# Writes once with a long linger, then ends as told: "close" (closes the connection and
# waits), "exit" (C exit(): atexit handlers run, Python's finalizers do not, so the
# connection is never closed), "_exit" (dies without exit handlers, like a kill).
WRITER = procs.script("""
    import ctypes, os
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("update c set n = n + 1")
    print("WROTE", flush=True)
    how = sys.stdin.readline().strip()
    if how == "close":
        db.close()
        print("CLOSED", flush=True)
        sys.stdin.readline()
    elif how == "exit":
        ctypes.CDLL(None).exit(0)
    else:
        os._exit(0)
""")


def counter(bucket, prefix):
    conn = sqlutil.connect(prefix, bucket)
    conn.execute("create table c(n integer)")
    conn.execute("insert into c values (0)")
    conn.close()


def lease(bucket, prefix):
    body = s3util.boto3_client().get_object(Bucket=bucket, Key=f"{prefix}.s3vfs-lease")["Body"].read()
    return json.loads(body)


def start_writer(bucket, prefix):
    uri = s3util.uri(prefix, bucket, lease_linger_ms=60000)
    w = subprocess.Popen(
        [sys.executable, "-c", WRITER, s3util.LIB, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert w.stdout.readline().strip() == "WROTE"
    return w


def tell(w, line):
    w.stdin.write(line + "\n")
    w.stdin.flush()


def test_another_process_is_told_who_lingers_and_writes_once_it_closes(bucket):
    counter(bucket, "linger/close.db")
    w = start_writer(bucket, "linger/close.db")
    try:
        held = lease(bucket, "linger/close.db")
        assert held["pid"] == w.pid and not held["released"], held
        other = sqlutil.connect("linger/close.db", bucket)
        other.execute("pragma busy_timeout = 200")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("update c set n = n + 10")
        msg = other.execute("select s3vfs_last_error()").fetchone()[0]
        assert f"pid {w.pid}" in msg and "busy_timeout" in msg, msg
        tell(w, "close")
        assert w.stdout.readline().strip() == "CLOSED"
        assert lease(bucket, "linger/close.db")["released"], "the last close gave it up"
        other.execute("pragma busy_timeout = 0")
        other.execute("update c set n = n + 10")
        assert other.execute("select n from c").fetchone()[0] == 11
    finally:
        tell(w, "")
        w.wait(timeout=30)


@pytest.mark.parametrize("how, released", [("exit", True), ("_exit", False)])
def test_exit_gives_the_lease_up_and_only_a_death_without_exit_keeps_it(bucket, how, released):
    prefix = f"linger/{how}.db"
    counter(bucket, prefix)
    w = start_writer(bucket, prefix)
    tell(w, how)
    assert w.wait(timeout=30) == 0
    record = lease(bucket, prefix)
    assert record["pid"] == w.pid and record["released"] == released, record
    other = sqlutil.connect(prefix, bucket)
    other.execute("pragma busy_timeout = 0")
    if released:
        other.execute("update c set n = n + 10")
        assert other.execute("select n from c").fetchone()[0] == 11
    else:
        # Until it expires (term plus grace): what a crashed or frozen process leaves.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("update c set n = n + 10")
