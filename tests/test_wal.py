"""WAL mode: the WAL index in process memory (xShm*), so every connection of a process
shares a WAL database in normal locking mode; the writer lease held by the process while it
has the database open in WAL mode, so another process waits (BUSY, naming the holder); the
ways in and out (the last close checkpoints and deletes the WAL, journal_mode=delete
converts back); commit and checkpoint request counts; a killed writer's committed WAL
frames survive.

Python here is the venv's (Debian's 3.11, SQLite 3.40.1, with extension loading)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import proxy as proxymod
import procs
import s3util
import sqlutil

ACCOUNTS = 10
TOTAL = 1000

OPEN = procs.script("""
    import time, json
    def last_error(db):
        return db.execute("select s3vfs_last_error()").fetchone()[0]
""")

READER = OPEN + textwrap.dedent("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=float(sys.argv[3]))
    t0 = time.time()
    try:
        n = db.execute("select count(*) from t").fetchone()[0]
        print(json.dumps({"ok": n, "mode": db.execute("pragma journal_mode").fetchone()[0],
                          "waited": time.time() - t0}))
    except sqlite3.OperationalError as e:
        print(json.dumps({"error": str(e), "why": last_error(db), "waited": time.time() - t0}))
""")


def wal_db(bucket, prefix, rows=0):
    conn = sqlutil.connect(prefix, bucket)
    conn.execute("pragma busy_timeout = 10000")
    assert conn.execute("pragma journal_mode = wal").fetchone()[0] == "wal"
    conn.execute("create table t(id integer primary key, v text)")
    for i in range(rows):
        conn.execute("insert into t(v) values (?)", (f"row {i}",))
    return conn


def wal_keys(bucket, prefix):
    return s3util.list_keys(bucket, prefix + "-wal/")


def lease(bucket, prefix):
    body = s3util.boto3_client().get_object(Bucket=bucket, Key=prefix + ".s3vfs-lease")["Body"].read()
    return json.loads(body)


def header_versions(bucket, prefix):
    block0 = s3util.boto3_client().get_object(Bucket=bucket, Key=prefix + "/0000000000")["Body"].read()
    return block0[18], block0[19]


def run_reader(uri, timeout, env=None):
    r = subprocess.run(
        [sys.executable, "-c", READER, s3util.LIB, uri, str(timeout)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_journal_mode_wal_works_in_normal_locking_mode_and_readers_do_not_block_the_writer(bucket):
    w = wal_db(bucket, "wal/basic.db", rows=3)
    assert header_versions(bucket, "wal/basic.db") == (2, 2)
    r = sqlutil.connect("wal/basic.db", bucket)
    assert r.execute("pragma journal_mode").fetchone()[0] == "wal"
    r.execute("begin")
    assert r.execute("select count(*) from t").fetchone()[0] == 3
    # The reader's snapshot is open; the writer commits at once (busy_timeout 0).
    w.execute("pragma busy_timeout = 0")
    w.execute("insert into t(v) values ('while reading')")
    assert r.execute("select count(*) from t").fetchone()[0] == 3, "snapshot isolation"
    r.execute("commit")
    assert r.execute("select count(*) from t").fetchone()[0] == 4
    # Two writers in one process: the second waits for the first (SQLite's WAL write lock).
    w.execute("begin immediate")
    r.execute("pragma busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        r.execute("begin immediate")
    w.execute("commit")
    r.execute("begin immediate")
    r.execute("insert into t(v) values ('second writer')")
    r.execute("commit")
    assert w.execute("select count(*) from t").fetchone()[0] == 5
    assert wal_keys(bucket, "wal/basic.db"), "the WAL is stored as blocks while open"
    r.close()
    w.close()


def test_a_pool_of_readers_never_sees_a_wrong_sum_while_a_writer_moves_values(bucket):
    prefix = "wal/pool.db"
    setup = wal_db(bucket, prefix)
    setup.execute("create table acct(id integer primary key, v integer)")
    setup.execute("begin")
    for i in range(ACCOUNTS):
        setup.execute("insert into acct values (?, ?)", (i, TOTAL // ACCOUNTS))
    setup.execute("commit")
    errors, sums_seen = [], []
    stop = threading.Event()
    moves = 40

    def reader():
        try:
            db = sqlutil.connect(prefix, bucket)
            db.execute("pragma busy_timeout = 20000")
            n = 0
            while not stop.is_set():
                db.execute("begin")
                s = db.execute("select sum(v) from acct").fetchone()[0]
                rows = db.execute("select v from acct").fetchall()
                db.execute("commit")
                if s != TOTAL or sum(v for (v,) in rows) != TOTAL:
                    errors.append(f"wrong sum {s}")
                n += 1
            sums_seen.append(n)
            db.close()
        except Exception as e:  # noqa: BLE001 - any failure is the test's failure
            errors.append(repr(e))

    def writer():
        try:
            db = sqlutil.connect(prefix, bucket)
            db.execute("pragma busy_timeout = 20000")
            for k in range(moves):
                a, b = k % ACCOUNTS, (k * 7 + 3) % ACCOUNTS
                db.execute("begin immediate")
                db.execute("update acct set v = v - 5 where id = ?", (a,))
                db.execute("update acct set v = v + 5 where id = ?", (b,))
                db.execute("commit")
            db.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            stop.set()

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:5]
    assert len(sums_seen) == 3 and all(n > 0 for n in sums_seen), sums_seen
    assert setup.execute("select sum(v) from acct").fetchone()[0] == TOTAL
    assert setup.execute("pragma integrity_check").fetchone()[0] == "ok"
    setup.close()
    assert wal_keys(bucket, prefix) == []


def test_another_process_gets_busy_naming_the_holder_then_waits_with_busy_timeout(bucket):
    prefix = "wal/contend.db"
    conn = wal_db(bucket, prefix, rows=2)
    uri = s3util.uri(prefix, bucket)
    held = lease(bucket, prefix)
    assert held["pid"] == os.getpid() and not held["released"], held
    got = run_reader(uri, timeout=0)
    assert "locked" in got["error"], got
    assert f"pid {os.getpid()}" in got["why"] and "WAL mode" in got["why"], got["why"]
    assert "memory" in got["why"], got["why"]
    # With a busy_timeout the other process waits until this one closes.
    waiter = subprocess.Popen(
        [sys.executable, "-c", READER, s3util.LIB, uri, "30"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    conn.close()
    out, _ = waiter.communicate(timeout=60)
    got = json.loads(out.strip().splitlines()[-1])
    assert got.get("ok") == 2 and got["mode"] == "wal", got
    assert got["waited"] > 1.0, got
    # The waiter closed too: its WAL is gone and the lease released.
    assert wal_keys(bucket, prefix) == []
    assert lease(bucket, prefix)["released"]


@pytest.mark.exact_requests
def test_a_wal_commit_is_one_round_trip_of_puts_and_a_checkpoint_is_counted(bucket):
    prefix = "wal/count.db"
    conn = wal_db(bucket, prefix, rows=2)
    conn.execute("select count(*) from t").fetchone()
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("insert into t(v) values ('x')")
    s = sqlutil.stats(conn)
    # One frame (24-byte header + 4096-byte page) spans two 4 KiB blocks of the WAL; the
    # block holding the previous commit's tail is in the cache (no GET). Both PUTs go at
    # once (one batch: one round trip); the lease is held and renewed in the background.
    assert (s["put"], s["get"], s["list"], s["delete"], s["head"]) == (2, 0, 0, 0, 0), s
    assert s["requests"] == 2, s
    for i in range(5):
        conn.execute("insert into t(v) values (?)", (f"more {i}",))
    conn.execute("select s3vfs_stats_reset()")
    busy, log, ckpt = conn.execute("pragma wal_checkpoint(passive)").fetchone()
    assert busy == 0 and log == ckpt, (busy, log, ckpt)
    s = sqlutil.stats(conn)
    # The two pages the WAL changed (page 1 and the table's leaf) go to the database in
    # one batch of PUTs (one round trip); the frames are read from the cache, and the
    # database needs no listing (its size is known).
    assert (s["put"], s["get"], s["list"], s["delete"], s["head"]) == (2, 0, 0, 0, 0), s
    conn.close()


@pytest.mark.exact_requests
def test_a_wal_commit_takes_one_round_trip_at_100_ms_per_request(bucket):
    url, px = proxymod.start(s3util.endpoint(), delay=0.1)
    try:
        prefix = "wal/latency.db"
        conn = sqlite3.connect(s3util.uri(prefix, bucket, endpoint=url), uri=True, isolation_level=None)
        conn.execute("pragma journal_mode = wal")
        conn.execute("create table t(v)")
        conn.execute("insert into t values (1)")
        times = []
        for i in range(3):
            t0 = time.monotonic()
            conn.execute("insert into t values (?)", (i,))
            times.append(time.monotonic() - t0)
        # One round trip is 0.1 s; two would be 0.2 s.
        assert min(times) < 0.19, times
        conn.close()
    finally:
        px.stop()


def test_the_last_close_checkpoints_and_leaves_no_wal_objects(bucket):
    prefix = "wal/close.db"
    conn = wal_db(bucket, prefix, rows=50)
    other = sqlutil.connect(prefix, bucket)
    assert other.execute("select count(*) from t").fetchone()[0] == 50
    conn.close()
    assert wal_keys(bucket, prefix), "another connection still uses the WAL"
    assert not lease(bucket, prefix)["released"]
    other.close()
    assert wal_keys(bucket, prefix) == []
    assert lease(bucket, prefix)["released"]
    assert header_versions(bucket, prefix) == (2, 2), "the database stays in WAL mode"
    # A fresh process reads it (taking the lease for as long as it has it open).
    got = run_reader(s3util.uri(prefix, bucket), timeout=5)
    assert got.get("ok") == 50 and got["mode"] == "wal", got
    assert wal_keys(bucket, prefix) == []


def test_s3vfs_info_shows_the_journal_mode_the_wal_and_the_holder(bucket):
    from test_tool import info_fields, tool

    prefix = "wal/info.db"
    url = f"s3://{bucket}/{prefix}"
    conn = wal_db(bucket, prefix, rows=3)
    r = tool("info", url)
    assert r.returncode == 0, r.stderr
    f = {k: v.strip() for k, v in info_fields(r.stdout).items()}
    assert f["journal mode"].startswith("WAL (header bytes 18-19 = 2)"), f
    blocks = s3util.list_objects(bucket, prefix + "-wal/")
    assert f["wal"] == (f"{len(blocks)} blocks, {sum(n for _, n in blocks)} bytes ({url}-wal/): "
                        "the lease holder has the database open"), f
    assert f["lease"].startswith("held: ") and f"pid {os.getpid()}" in f["lease"], f
    assert "in WAL mode" in f["lease"] and "SQLITE_BUSY" in f["lease"], f
    conn.close()
    f = {k: v.strip() for k, v in info_fields(tool("info", url).stdout).items()}
    assert f["journal mode"].startswith("WAL"), f
    assert f["wal"] == "none", f
    assert f["lease"].startswith("free (last released by host"), f


def wait_for_keys(bucket, prefix, expected, timeout=10):
    """The listing under `prefix` once it is `expected` (background deletions finish)."""
    deadline = time.monotonic() + timeout
    while (got := s3util.list_objects(bucket, prefix)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def wal_blocks(prefix, *sizes):
    return [(f"{prefix}-wal/{i:010d}", n) for i, n in enumerate(sizes)]


@pytest.mark.exact_requests
def test_restart_and_truncate_checkpoints_leave_only_the_wal_blocks_in_use(bucket):
    """RESTART copies the WAL into the database and leaves the WAL as it is; the next commit
    starts it over: its block 0 alone first (the old header must not stay in front of new
    frames), then the rest, and the blocks past its new end go in the background. TRUNCATE
    deletes the WAL: block 0 at once, the rest in the background."""
    prefix = "wal/restart.db"
    s3util.load_ext()
    puts = []
    url, px = proxymod.start(s3util.endpoint(), delay=0.05)
    px.set(fail=lambda method, path, n: puts.append((time.monotonic(), path)) if method == "PUT" else None)
    try:
        conn = sqlite3.connect(s3util.uri(prefix, bucket, endpoint=url), uri=True, isolation_level=None)
        assert conn.execute("pragma journal_mode = wal").fetchone()[0] == "wal"
        conn.execute("create table t(id integer primary key, v text)")
        for i in range(12):
            conn.execute("insert into t(v) values (?)", ("x" * 1000,))
        frames = conn.execute("pragma wal_checkpoint(passive)").fetchone()[1]
        wal_end = 32 + frames * (4096 + 24)
        full, last = divmod(wal_end, 4096)
        assert s3util.list_objects(bucket, prefix + "-wal/") == wal_blocks(prefix, *[4096] * full, last)

        conn.execute("select s3vfs_stats_reset()")
        assert conn.execute("pragma wal_checkpoint(restart)").fetchone() == (0, frames, frames)
        s = sqlutil.stats(conn)
        assert (s["put"], s["get"], s["delete"], s["list"], s["head"]) == (0, 0, 0, 0, 0), s
        assert len(s3util.list_keys(bucket, prefix + "-wal/")) == full + 1, "RESTART leaves the WAL"

        # The commit that starts the WAL over: one frame (header 32 + 24 + 4096 bytes).
        conn.execute("select s3vfs_stats_reset()")
        puts.clear()
        conn.execute("insert into t(v) values ('restarted')")
        assert [p.rsplit("/", 1)[1] for _, p in puts] == ["0000000000", "0000000001"], puts
        assert puts[1][0] - puts[0][0] >= 0.04, "block 1 goes once block 0 is stored"
        assert wait_for_keys(bucket, prefix + "-wal/", wal_blocks(prefix, 4096, 56)) == wal_blocks(prefix, 4096, 56)
        s = sqlutil.stats(conn)
        # Two PUTs, and the stale blocks 2.. in one DeleteObjects, off the commit's path.
        assert (s["put"], s["get"], s["delete"], s["list"], s["head"]) == (2, 0, 1, 0, 0), s

        # The next commit appends: one round trip of PUTs again.
        conn.execute("select s3vfs_stats_reset()")
        puts.clear()
        conn.execute("insert into t(v) values ('appended')")
        assert sorted(p.rsplit("/", 1)[1] for _, p in puts) == ["0000000001", "0000000002"], puts
        assert abs(puts[1][0] - puts[0][0]) < 0.04, "in parallel"
        assert s3util.list_objects(bucket, prefix + "-wal/") == wal_blocks(prefix, 4096, 4096, 80)

        conn.execute("select s3vfs_stats_reset()")
        assert conn.execute("pragma wal_checkpoint(truncate)").fetchone() == (0, 0, 0)
        assert wait_for_keys(bucket, prefix + "-wal/", []) == []
        s = sqlutil.stats(conn)
        # The last leaf page into the database; block 0 of the WAL, then blocks 1 and 2
        # in one DeleteObjects in the background.
        assert (s["put"], s["get"], s["delete"], s["list"], s["head"]) == (1, 0, 2, 0, 0), s

        # After TRUNCATE nothing old is stored: the new WAL's blocks go at once.
        puts.clear()
        conn.execute("insert into t(v) values ('after truncate')")
        assert sorted(p.rsplit("/", 1)[1] for _, p in puts) == ["0000000000", "0000000001"], puts
        assert abs(puts[1][0] - puts[0][0]) < 0.04, "in parallel"
        assert conn.execute("select count(*) from t").fetchone()[0] == 15
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        pages = conn.execute("pragma page_count").fetchone()[0]
        conn.close()
        # The last close checkpoints and deletes the WAL: the database's blocks and its
        # lease object are all that is left.
        listing = s3util.list_objects(bucket, prefix)
        assert listing[0][0] == f"{prefix}.s3vfs-lease", listing
        assert listing[1:] == [(f"{prefix}/{i:010d}", 4096) for i in range(pages)], listing
    finally:
        px.stop()


def test_journal_mode_delete_converts_back_and_a_fresh_process_opens_in_rollback_mode(bucket):
    prefix = "wal/back.db"
    conn = wal_db(bucket, prefix, rows=7)
    assert conn.execute("pragma journal_mode = delete").fetchone()[0] == "delete"
    assert wal_keys(bucket, prefix) == []
    assert header_versions(bucket, prefix) == (1, 1)
    # No WAL: the lease is no longer held for it, only kept for the linger (250 ms) after
    # the conversion, a write transaction of its own.
    deadline = time.monotonic() + 5
    while not lease(bucket, prefix)["released"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease(bucket, prefix)["released"], "no WAL, no lease held between transactions"
    conn.execute("insert into t(v) values ('after')")
    conn.close()
    got = run_reader(s3util.uri(prefix, bucket), timeout=5)
    assert got.get("ok") == 8 and got["mode"] == "delete", got
    # And the sqlite3 shell sees the same.
    r = s3util.run_cli(f".open '{s3util.uri(prefix, bucket)}'\npragma journal_mode;\npragma integrity_check;\n")
    assert r.returncode == 0 and r.stdout.split() == ["delete", "ok"], (r.stdout, r.stderr)


KILLED_WRITER = OPEN + textwrap.dedent("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("pragma journal_mode = wal")
    db.execute("create table t(id integer primary key, v text)")
    for i in range(int(sys.argv[3])):
        db.execute("insert into t(v) values (?)", ("row %d" % i,))
    print("COMMITTED", flush=True)
    time.sleep(600)
""")


def test_a_writer_killed_after_its_wal_commit_loses_nothing(bucket):
    prefix = "wal/killed.db"
    uri = s3util.uri(prefix, bucket)
    env = dict(os.environ, S3VFS_LEASE_SECONDS="1", S3VFS_LOG="off")
    w = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, s3util.LIB, uri, "20"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert w.stdout.readline().strip() == "COMMITTED"
    w.send_signal(signal.SIGKILL)
    w.wait()
    assert wal_keys(bucket, prefix), "the commits are in the WAL, not yet checkpointed"
    check = OPEN + textwrap.dedent("""
        db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None, timeout=30)
        print(json.dumps([db.execute("pragma integrity_check").fetchone()[0],
                          db.execute("select count(*), max(v) from t").fetchone(),
                          db.execute("pragma journal_mode").fetchone()[0]]))
    """)
    r = subprocess.run([sys.executable, "-c", check, s3util.LIB, uri], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["ok", [20, "row 9"], "wal"]
    assert wal_keys(bucket, prefix) == []


def test_info_names_a_dead_writers_wal_and_rm_deletes_it(bucket):
    from test_tool import info_fields, tool

    prefix = "wal/dead.db"
    url = f"s3://{bucket}/{prefix}"
    env = dict(os.environ, S3VFS_LEASE_SECONDS="1", S3VFS_LOG="off")
    w = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, s3util.LIB, s3util.uri(prefix, bucket), "5"],
                         stdout=subprocess.PIPE, text=True, env=env)
    assert w.stdout.readline().strip() == "COMMITTED"
    w.send_signal(signal.SIGKILL)
    w.wait()
    time.sleep(1.5)  # the dead writer's lease runs out
    blocks = s3util.list_objects(bucket, prefix + "-wal/")
    f = {k: v.strip() for k, v in info_fields(tool("info", url).stdout).items()}
    assert f["wal"].startswith(f"{len(blocks)} blocks, {sum(n for _, n in blocks)} bytes"), f
    assert "left by a process that stopped" in f["wal"], f
    assert f["lease"].startswith("free (expired"), f
    r = tool("rm", "--yes", url)
    assert r.returncode == 0, r.stderr
    assert s3util.list_objects(bucket, "") == []


@pytest.fixture
def crash_template(bucket):
    """A WAL database of 60 rows across several pages, closed (no WAL objects left), for
    the crash tests to copy: its prefix and its rows."""
    import test_crash

    template = "walcrash/template.db"
    conn = wal_db(bucket, template)
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"row {i} " + "x" * 500,) for i in range(60)))
    conn.execute("commit")
    before = test_crash.rows(conn)
    conn.close()
    assert wal_keys(bucket, template) == [] and header_versions(bucket, template) == (2, 2)
    return template, before


def kill_after_each_request(bucket, template, script, args, states, monkeypatch, gated=False):
    """Runs the writer `script` on copies of `template`, through a proxy: once to count its
    requests, then once per request k, the connection reset after k requests and the writer
    killed. A `gated` writer prints GATE when its setup is done and waits for a line on
    stdin; only the requests after it count, up to its DONE (then it exits without closing).
    After each kill another connection (of this process) opens the copy, waiting for the
    dead writer's lease: integrity_check must be ok, the rows one of `states`, and no WAL
    object left once it closed. Returns how many crash points ended in each state."""
    import test_crash

    env = dict(os.environ, S3VFS_LEASE_SECONDS="1", S3VFS_LOG="off")
    monkeypatch.setenv("S3VFS_LEASE_SECONDS", "1")  # for the checking connections here
    client = s3util.boto3_client()
    url, px = proxymod.start(s3util.endpoint())

    def start(prefix):
        w = subprocess.Popen([sys.executable, "-c", script, s3util.LIB,
                              s3util.uri(prefix, bucket, endpoint=url), *args],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
        if gated:
            assert w.stdout.readline().strip() == "GATE"
        return w

    def go(w):
        if gated:
            w.stdin.write("go\n")
            w.stdin.flush()

    try:
        test_crash.copy_prefix(client, bucket, template, f"{template}-count")
        w = start(f"{template}-count")
        base = px.total
        go(w)
        out = w.communicate(timeout=60)[0].split()
        assert out[-1] == "DONE", out
        total = px.total - base
        assert total >= 2, total
        outcomes = [0] * len(states)
        for k in range(1, total + 1):
            prefix = f"{template}-k{k}"
            test_crash.copy_prefix(client, bucket, template, prefix)
            cut = threading.Event()
            w = start(prefix)
            base = px.total

            def cut_after_k(method, path, n, base=base, k=k, cut=cut):
                if n - base > k:
                    cut.set()
                    return "reset"
                return None

            px.set(fail=cut_after_k)
            go(w)
            while w.poll() is None and not cut.wait(0.01):
                pass
            w.send_signal(signal.SIGKILL)
            w.wait(timeout=30)
            px.set(fail=None)

            check = sqlutil.connect(prefix, bucket)
            check.execute("pragma busy_timeout = 20000")  # the dead writer's lease runs out
            try:
                integrity = check.execute("pragma integrity_check").fetchone()[0]
            except Exception as e:
                integrity = f"{e}: {check.execute('select s3vfs_last_error()').fetchone()[0]}"
            assert integrity == "ok", (k, integrity)
            state = test_crash.rows(check)
            check.close()
            assert state in states, k
            assert wal_keys(bucket, prefix) == [], k
            outcomes[states.index(state)] += 1
        print(f"{total} crash points tried, all intact: {outcomes}")
        return outcomes
    finally:
        px.stop()


CUT_WRITER = OPEN + textwrap.dedent("""
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("update t set v = upper(v)")
    print("COMMITTED", flush=True)
    db.close()
    print("CLOSED", flush=True)
    print("DONE", flush=True)
""")


# Crash points are counted requests: retries under injected faults would move them.
@pytest.mark.exact_requests
def test_a_wal_writer_killed_after_any_request_leaves_the_state_before_or_after(
        bucket, crash_template, monkeypatch):
    """Every request of a WAL writer's life: taking the lease, finding the WAL, the commit's
    frame PUTs, the checkpoint at close, the WAL's deletion and the lease's release."""
    template, before = crash_template
    after = [(i, v.upper()) for i, v in before]
    outcomes = kill_after_each_request(bucket, template, CUT_WRITER, [], [before, after], monkeypatch)
    assert all(outcomes), outcomes


CHECKPOINT_WRITER = OPEN + textwrap.dedent("""
    import os
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    db.execute("update t set v = upper(v) where id <= 2 or id >= 59")  # first and last pages
    print("GATE", flush=True)
    sys.stdin.readline()
    mode = sys.argv[3]
    busy, log, done = db.execute("pragma wal_checkpoint(%s)" % mode).fetchone()
    assert busy == 0 and log == done, (busy, log, done)
    if mode in ("restart", "truncate"):
        db.execute("insert into t(v) values ('after the checkpoint')")  # starts the WAL over
        time.sleep(0.3)  # the blocks past the WAL's new end go in the background
    print("DONE", flush=True)
    os._exit(0)  # no close: its own checkpoint is the test above's
""")


@pytest.mark.exact_requests
@pytest.mark.parametrize("mode", ["passive", "full", "restart", "truncate"])
def test_a_wal_writer_killed_after_any_request_of_a_checkpoint_loses_no_commit(
        bucket, crash_template, monkeypatch, mode):
    """A commit in the WAL, then a checkpoint (and, after RESTART or TRUNCATE, the commit
    that starts the WAL over): killed after each of those requests, the database has the
    first commit, and the second one whole or not at all."""
    template, before = crash_template
    committed = [(i, v.upper() if i <= 2 or i >= 59 else v) for i, v in before]
    restarted = committed + [(61, "after the checkpoint")]
    states = [committed, restarted] if mode in ("restart", "truncate") else [committed]
    outcomes = kill_after_each_request(bucket, template, CHECKPOINT_WRITER, [mode], states,
                                       monkeypatch, gated=True)
    assert outcomes[0] > 0, outcomes
