"""The lease fences a slow or frozen writer (issue 12, finding 1): no write of a writer is
sent after another writer could have taken its lease over.

A writer's writes are sent only until its lease's expiry minus a margin (a sixth of the
term), each attempt cut to the time left; a taker-over waits for the expiry plus a grace
period (another sixth). Before this, a writer whose page PUTs were delayed past its lease
had them land after a second writer's commit, and its own COMMIT returned OK: the second
writer's acknowledged row was lost.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import proxy as proxymod
import procs
import s3util
import sqlutil

TERM = 4  # seconds: margin and grace are 0.67 s each

WRITER = procs.script("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=30)
    try:
        db.execute("begin immediate")
        for i in range(int(sys.argv[4])):
            db.execute("insert into t(who, pad) values (?, ?)", (sys.argv[3], "p" * 900))
        print("WROTE", flush=True)
        db.execute("commit")
        print("COMMITTED", flush=True)
    except Exception as e:
        err = db.execute("select s3vfs_last_error()").fetchone()[0]
        print("FAILED", e, "|", err, flush=True)
""")


def spawn(uri_text, who, rows):
    env = dict(os.environ, S3VFS_LEASE_SECONDS=str(TERM), S3VFS_LOG="off")
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, s3util.LIB, uri_text, who, str(rows)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )


def setup_db(bucket, name):
    conn = sqlutil.connect(name, bucket)
    conn.execute("create table t(id integer primary key, who text, pad text)")
    conn.execute("insert into t(who, pad) values ('seed', 'x')")
    conn.close()


def final_state(bucket, name):
    conn = sqlutil.connect(name, bucket)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        return dict(conn.execute("select who, count(*) from t group by who").fetchall())
    finally:
        conn.close()


def test_a_writer_whose_page_writes_are_delayed_past_its_lease_stores_nothing(bucket):
    name = "fence/slow.db"
    setup_db(bucket, name)
    url, px = proxymod.start(s3util.endpoint())
    held = threading.Event()

    def hold_pages(method, path, n):
        # The database's page PUTs take 10 s to get through: longer than the lease.
        if method == "PUT" and f"/{bucket}/{name}/00000" in path:
            held.set()
            return ("hold", 10)
        return None

    px.set(fail=hold_pages)
    try:
        a = spawn(s3util.uri(name, bucket, endpoint=url), "A", 5)
        assert held.wait(30), "writer A never reached its page writes"
        b = spawn(s3util.uri(name, bucket), "B", 1)
        out_b = b.communicate(timeout=60)[0]
        out_a = a.communicate(timeout=60)[0]
        time.sleep(11)  # anything the proxy still holds has been dropped or forwarded
    finally:
        px.stop()
    assert "COMMITTED" in out_b, out_b
    assert "COMMITTED" not in out_a, f"the fenced writer must not report success: {out_a}"
    assert "lease" in out_a, out_a
    # B's acknowledged row is there; A's transaction is not, not even partly.
    assert final_state(bucket, name) == {"seed": 1, "B": 1}


def test_a_writer_frozen_mid_flush_and_continued_after_a_takeover_stores_nothing_more(bucket):
    name = "fence/frozen.db"
    setup_db(bucket, name)
    url, px = proxymod.start(s3util.endpoint())
    first_page = threading.Event()

    def see_pages(method, path, n):
        if method == "PUT" and f"/{bucket}/{name}/00000" in path:
            first_page.set()
        return None

    px.set(fail=see_pages, delay=0.05)
    try:
        # 300 rows of ~1 KB: about 80 pages, flushed in several batches at 50 ms each.
        a = spawn(s3util.uri(name, bucket, endpoint=url, concurrency=1), "A", 300)
        assert first_page.wait(60), "writer A never wrote a page"
        a.send_signal(signal.SIGSTOP)
        try:
            time.sleep(TERM + 1)  # A's lease runs out, grace included
            b = spawn(s3util.uri(name, bucket), "B", 1)
            out_b = b.communicate(timeout=60)[0]
        finally:
            a.send_signal(signal.SIGCONT)
        out_a = a.communicate(timeout=60)[0]
    finally:
        px.stop()
    assert "COMMITTED" in out_b, out_b
    assert "COMMITTED" not in out_a, out_a
    state = final_state(bucket, name)
    assert state == {"seed": 1, "B": 1}, f"A's transaction must not be half applied: {state}"
