"""Crash safety: a writer is cut off after its k-th request and killed with SIGKILL, for
every k through one multi-page commit, in each journal mode that keeps a journal in S3.
A fresh process then finds the database intact, in the state before or after the
transaction, never in between; so does a connection that was open and warm before the
crash (its read transactions ask about the journal only when they fetch a block).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import proxy as proxymod
import procs
import s3util
import sqlutil

LEASE_SECONDS = 2

WRITER = procs.script("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("pragma journal_mode = " + sys.argv[3])
    db.execute("update t set v = upper(v)")
    print("COMMITTED", flush=True)
""")


def rows(conn):
    return conn.execute("select id, v from t order by id").fetchall()


def copy_prefix(client, bucket, src, dst):
    keys = [k for k in s3util.list_keys(bucket, src + "/")]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.copy_object(Bucket=bucket, Key=dst + k[len(src):], CopySource={"Bucket": bucket, "Key": k}), keys))


def run_writer(uri, mode, env):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, s3util.LIB, uri, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def make_template(bucket, template, mode):
    """A 60-row database in journal mode `mode`; its rows, before and after WRITER."""
    conn = sqlutil.connect(template, bucket)
    conn.execute(f"pragma journal_mode = {mode}")
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"row {i} " + "x" * 500,) for i in range(60)))
    conn.execute("commit")
    before = rows(conn)
    conn.close()
    return before, [(i, v.upper()) for i, v in before]


def kill_after(px, url, bucket, prefix, mode, env, k):
    """Runs WRITER on `prefix` through the proxy, cuts it off after its k-th request and
    kills it with SIGKILL."""
    cut = threading.Event()
    base = px.total

    def cut_after_k(method, path, n):
        if n - base > k:
            cut.set()
            return "reset"
        return None

    px.set(fail=cut_after_k)
    w = run_writer(s3util.uri(prefix, bucket, endpoint=url), mode, env)
    while w.poll() is None and not cut.wait(0.01):
        pass
    w.send_signal(signal.SIGKILL)
    w.wait(timeout=30)
    px.set(fail=None)


# The crash points are counted requests: under make test-faults, retries move them, so the
# last point no longer falls after the commit. Faults during commits are test_network_faults'.
@pytest.mark.exact_requests
@pytest.mark.parametrize("mode", ["DELETE", "TRUNCATE", "PERSIST"])
def test_a_killed_writer_leaves_the_state_before_or_after(bucket, mode):
    template = f"crash/{mode}-template.db"
    before, after = make_template(bucket, template, mode)
    env = dict(os.environ, S3VFS_LEASE_SECONDS=str(LEASE_SECONDS), S3VFS_LOG="off")
    client = s3util.boto3_client()

    # How many requests one uncut run makes, from process start to exit.
    url, px = proxymod.start(s3util.endpoint())
    copy_prefix(client, bucket, template, f"crash/{mode}-count.db")
    w = run_writer(s3util.uri(f"crash/{mode}-count.db", bucket, endpoint=url), mode, env)
    assert w.communicate(timeout=60)[0].strip() == "COMMITTED"
    total = px.total
    assert total >= 8, total

    outcomes = {"before": 0, "after": 0}
    for k in range(1, total + 1):
        prefix = f"crash/{mode}-k{k}.db"
        copy_prefix(client, bucket, template, prefix)
        kill_after(px, url, bucket, prefix, mode, env, k)

        time.sleep(LEASE_SECONDS * 7 / 6 + 0.3)  # the dead writer's lease runs out, and its grace period
        check = sqlutil.connect(prefix, bucket)
        try:
            integrity = check.execute("pragma integrity_check").fetchone()[0]
        except Exception as e:
            integrity = f"{e}: {check.execute('select s3vfs_last_error()').fetchone()[0]}"
        assert integrity == "ok", (mode, k, integrity)
        state = rows(check)
        check.close()
        assert state in (before, after), (mode, k)
        outcomes["before" if state == before else "after"] += 1
    px.stop()
    print(f"{mode}: {total} crash points tried, all intact: {outcomes}")
    assert outcomes["before"] > 0 and outcomes["after"] > 0


@pytest.mark.exact_requests
def test_a_warm_reader_never_reads_a_crashed_writers_half_commit(bucket):
    """A reader opened before the crash has block 0 and one leaf cached, so its read
    transactions start with a conditional GET alone. The first block it then fetches asks
    about the journal beside it: a crashed writer's journal stops that read (nothing half
    written is used or cached), and the retry rolls the journal back."""
    template = "warmcrash/template.db"
    before, after = make_template(bucket, template, "DELETE")
    env = dict(os.environ, S3VFS_LEASE_SECONDS=str(LEASE_SECONDS), S3VFS_LOG="off")
    client = s3util.boto3_client()

    url, px = proxymod.start(s3util.endpoint())
    copy_prefix(client, bucket, template, "warmcrash/count.db")
    w = run_writer(s3util.uri("warmcrash/count.db", bucket, endpoint=url), "DELETE", env)
    assert w.communicate(timeout=60)[0].strip() == "COMMITTED"
    total = px.total

    readers = {}
    for k in range(1, total + 1):
        prefix = f"warmcrash/k{k}.db"
        copy_prefix(client, bucket, template, prefix)
        reader = sqlutil.connect(prefix, bucket)
        assert reader.execute("select v from t where id = 1").fetchone()[0] == before[0][1]
        readers[k] = reader
        kill_after(px, url, bucket, prefix, "DELETE", env, k)
    px.stop()

    time.sleep(LEASE_SECONDS * 7 / 6 + 0.3)  # every dead writer's lease runs out, and its grace
    outcomes = {"before": 0, "after": 0, "stopped": 0}
    for k, reader in readers.items():
        try:
            state = rows(reader)
        except sqlite3.OperationalError as e:
            last = reader.execute("select s3vfs_last_error()").fetchone()[0]
            assert "rollback journal that no live writer holds" in last and "retry" in last, (k, e, last)
            outcomes["stopped"] += 1
            state = rows(reader)
        assert reader.execute("pragma integrity_check").fetchone()[0] == "ok", k
        assert state in (before, after), k
        outcomes["before" if state == before else "after"] += 1
        reader.close()
    print(f"{total} crash points, warm readers: {outcomes}")
    # Some points leave a hot journal (after the journal, before its block 0 is deleted).
    assert outcomes["stopped"] > 0 and outcomes["before"] > 0 and outcomes["after"] > 0, outcomes
