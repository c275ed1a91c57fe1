"""Locking: SQLite's rules between connections of a process, and the writer lease in S3
between processes (conditional PUTs), so concurrent writers never corrupt a database."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

import proxy as proxymod
import procs
import s3util
import sqlutil

WORKER = procs.script("""
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

HOLDER = procs.script("""
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


CREATOR = procs.script("""
    import os, time
    while not os.path.exists(sys.argv[3]):  # every process starts at once
        time.sleep(0.002)
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=60)
    if not db.execute("select 1 from sqlite_master where name = 'notes'").fetchone():
        db.execute("begin immediate")
        db.execute("create table if not exists notes(body text)")
        db.execute("commit")
    db.execute("begin immediate")
    db.execute("insert into notes values (?)", (str(os.getpid()),))
    db.execute("commit")
    print("OK")
""")


def test_processes_that_create_the_same_new_database_at_once_all_commit(bucket, tmp_path):
    """Each sees an empty database, then waits for the lease while another one's first
    commit stores its blocks: its next look must see either no block 0 or the new database,
    never the new size over its old, empty first page ("file is not a database")."""
    rounds, processes = 6, 3
    for r in range(rounds):
        go = tmp_path / f"go{r}"
        uri = s3util.uri(f"lock/created{r}.db", bucket)
        creators = [
            subprocess.Popen([sys.executable, "-c", CREATOR, s3util.LIB, uri, str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(processes)
        ]
        go.touch()
        for c in creators:
            out, err = c.communicate(timeout=120)
            assert (c.returncode, out.strip()) == (0, "OK"), (r, err)
        conn = sqlutil.connect(f"lock/created{r}.db", bucket)
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert conn.execute("select count(*) from notes").fetchone()[0] == processes


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


# Moves money between accounts, each on a page of its own, so one transaction rewrites
# several pages far apart: a reader that saw some but not all of them would see the sum
# change.
MOVER = procs.script("""
    import random
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=120)
    rng = random.Random(int(sys.argv[4]))
    for _ in range(int(sys.argv[3])):
        ids = rng.sample(range(1, 65), 8)
        db.execute("begin immediate")
        db.execute("update accounts set balance = balance - 7 where id = ?", (ids[0],))
        for i in ids[1:]:
            db.execute("update accounts set balance = balance + 1 where id = ?", (i,))
        db.execute("commit")
    print("moved", flush=True)
""")

# Reads the total until told to stop (a line on stdin is not needed: it stops after the
# given number of seconds), printing how many reads it made and which went wrong.
AUDITOR = procs.script("""
    import json, time
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=120)
    reads, wrong, errors = 0, [], []
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        try:
            total, n = db.execute("select sum(balance), count(*) from accounts").fetchone()
            reads += 1
            if (total, n) != (64000, 64):
                wrong.append([total, n])
        except sqlite3.Error as e:
            errors.append(str(e))
    print(json.dumps({"reads": reads, "wrong": wrong, "errors": errors}), flush=True)
""")


def accounts_db(bucket, prefix, **params):
    conn = sqlutil.connect(prefix, bucket, **params)
    conn.execute("create table accounts(id integer primary key, balance integer, pad blob)")
    with_pad = [(i, 1000, b"\0" * 3000) for i in range(1, 65)]
    conn.execute("begin")
    conn.executemany("insert into accounts values (?, ?, ?)", with_pad)
    conn.execute("commit")
    return conn


def audit(bucket, prefix, locking, transfers=25, auditors=2, seconds=25):
    """Runs one mover process and `auditors` reader processes at once; returns the
    readers' reports."""
    accounts_db(bucket, prefix, locking=locking).close()
    uri = s3util.uri(prefix, bucket, locking=locking)
    readers = [
        subprocess.Popen([sys.executable, "-c", AUDITOR, s3util.LIB, uri, str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(auditors)
    ]
    mover = subprocess.run(
        [sys.executable, "-c", MOVER, s3util.LIB, uri, str(transfers), "7"], capture_output=True, text=True, timeout=600
    )
    assert mover.returncode == 0 and mover.stdout.strip() == "moved", mover.stderr
    reports = []
    for r in readers:
        out, _ = r.communicate(timeout=600)
        assert r.returncode == 0
        reports.append(json.loads(out))
    conn = sqlutil.connect(prefix, bucket)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select sum(balance) from accounts").fetchone()[0] == 64000
    return reports


def test_strict_readers_in_other_processes_never_see_half_a_transaction(bucket):
    reports = audit(bucket, "lock/strict.db", "strict")
    for r in reports:
        assert r["wrong"] == [] and r["errors"] == [], r
        # The readers really overlapped the writer: each read many times meanwhile.
        assert r["reads"] >= 10, r
    # Marks are gone once nobody reads.
    assert s3util.list_keys(bucket, "lock/strict.db.s3vfs-readers/") == []


def test_a_strict_writer_waits_for_a_reader_in_another_process(bucket):
    conn = accounts_db(bucket, "lock/wait.db", locking="strict")
    uri = s3util.uri("lock/wait.db", bucket, locking="strict")
    reader = subprocess.Popen(
        [sys.executable, "-c", READ_HOLDER, s3util.LIB, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "READING"
        marks = s3util.list_keys(bucket, "lock/wait.db.s3vfs-readers/")
        assert len(marks) == 1, marks
        conn.execute("pragma busy_timeout = 300")
        # RESERVED is fine (the journal is written), the commit's EXCLUSIVE is not.
        conn.execute("begin immediate")
        conn.execute("update accounts set balance = 0 where id = 1")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("commit")
        msg = conn.execute("select s3vfs_last_error()").fetchone()[0]
        assert "1 reader(s) in other processes" in msg, msg
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "1000"
        conn.execute("pragma busy_timeout = 10000")
        conn.execute("commit")
    finally:
        reader.wait(timeout=30)
    assert conn.execute("select balance from accounts where id = 1").fetchone()[0] == 0
    assert s3util.list_keys(bucket, "lock/wait.db.s3vfs-readers/") == []


# Holds a read transaction open until a line arrives on stdin, then reads once more in
# it (the value must still be the one from before the writer's commit).
READ_HOLDER = procs.script("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("begin")
    db.execute("select count(*) from accounts").fetchone()
    print("READING", flush=True)
    sys.stdin.readline()
    print(db.execute("select balance from accounts where id = 1").fetchone()[0], flush=True)
    db.execute("commit")
""")
