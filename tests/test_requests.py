"""Request counts of the common operations (counted by s3vfs_stats(); not timed).

These pin the speed work: buffered writes flushed in parallel, the shared block cache,
the header-derived size and the journal handling. Each bound is what the design needs;
a regression that adds a request per page or a listing per transaction breaks them.
"""

import json
import sqlite3

import pytest

import s3util
import sqlutil

pytestmark = pytest.mark.exact_requests


def cli_stats(script):
    r = s3util.run_cli(script + "\nselect s3vfs_stats();\n")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def make_db(bucket, prefix, megabytes):
    conn = sqlutil.connect(prefix, bucket)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    rows = megabytes * 1024 * 1024 // 120
    conn.executemany("insert into t(v) values (?)", (("v" * 100,) for _ in range(rows)))
    conn.execute("commit")
    conn.close()
    return rows


def one_row_commit(bucket, prefix, **params):
    """The requests of one 1-row autocommit INSERT on a warm connection."""
    conn = sqlutil.connect(prefix, bucket, **params)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("insert into t(v) values ('warm')")
    conn.execute("select count(*) from t")  # lets the last journal cleanup finish
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("insert into t(v) values ('x')")
    return sqlutil.stats(conn)


def test_one_row_commit_without_linger_needs_ten_requests(bucket):
    s = one_row_commit(bucket, "req/commit.db", lease_linger_ms=0)
    # Transaction start: a conditional GET of block 0 (304) (was: a GET and a LIST; then
    # a HEAD of journal block 0 beside it, which waits now for a fetch that never comes:
    # the pages are cached); the writer lease (one conditional PUT to take it back, one
    # to release it); journal PUTs, database PUTs, and the DELETE of journal block 0 (the
    # rest of the journal goes in the background).
    assert s["list"] == 0 and s["get"] == 1 and s["head"] == 0, s
    assert s["put"] <= 7 and s["delete"] <= 2, s
    assert s["requests"] <= 10, s


def test_one_row_commit_while_the_lease_lingers_is_three_round_trips(bucket):
    # A long linger so that the test does not depend on how fast this machine is.
    s = one_row_commit(bucket, "req/linger.db", lease_linger_ms=60000)
    # No revalidation, no lease request: journal PUTs, then database PUTs, then the
    # DELETE of journal block 0 (the commit point; the rest of the journal goes in the
    # background): three dependent round trips.
    assert (s["get"], s["head"], s["list"]) == (0, 0, 0), s
    # 3 journal blocks (header and two pages) and 2 database blocks; journal block 0,
    # then the other journal blocks (in the background).
    assert s["put"] <= 5 and s["delete"] <= 3, s
    assert s["requests"] <= 7, s


def test_opening_and_querying_costs_the_same_at_1_and_10_megabytes(bucket):
    costs = []
    for mb in (1, 10):
        prefix = f"req/size-{mb}.db"
        rows = make_db(bucket, prefix, mb)
        db = s3util.uri(prefix, bucket)
        s = cli_stats(f"""
select s3vfs_stats_reset();
.open '{db}'
select v from t where id = {rows // 2};
""")
        costs.append(s)
    small, big = costs
    # A GET of block 0 at open (bucket, credentials, block size, size) and a HEAD of
    # journal block 0 beside it, which the first read transactions reuse (the schema is
    # read in its own): no listing at all (it was 3 LISTs before issue 13).
    assert small["list"] == big["list"] == 0, costs
    assert small["head"] == big["head"] == 1, costs
    # A fresh point query reads the B-tree path: one more level at 10 MB at most.
    assert big["get"] - small["get"] <= 1, costs


def test_a_warm_repeated_query_is_one_conditional_get(bucket):
    make_db(bucket, "req/warm.db", 1)
    conn = sqlutil.connect("req/warm.db", bucket)
    conn.execute("select v from t where id = 500").fetchone()
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("select v from t where id = 500").fetchone()
    s = sqlutil.stats(conn)
    # Block 0 (change counter) by a conditional GET answered 304 (no body); the
    # hot-journal question waits for a block to fetch, and there is none (was a GET of
    # the whole block and a LIST, then a HEAD of journal block 0 beside the GET).
    assert (s["get"], s["head"], s["list"], s["requests"]) == (1, 0, 0, 1), s
    assert s["bytes_down"] == 0, s


def test_a_full_scan_fetches_each_block_once(bucket):
    make_db(bucket, "req/scan.db", 4)
    conn = sqlutil.connect("req/scan.db", bucket, cache_size=64 << 20)
    blocks = len(s3util.list_keys(bucket, "req/scan.db/"))
    conn.execute("select s3vfs_stats_reset()")
    assert conn.execute("select count(*) from t where v like '%z%'").fetchone()[0] == 0
    s = sqlutil.stats(conn)
    assert s["get"] <= blocks + 1, (s, blocks)
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("select count(*) from t where v like '%z%'").fetchone()
    assert sqlutil.stats(conn)["get"] == 1, "a second scan is served by the cache"


def test_connections_and_processes_alternating_never_see_stale_data(bucket):
    prefix = "req/shared.db"
    a = sqlutil.connect(prefix, bucket)
    a.execute("create table c(n integer)")
    a.execute("insert into c values (0)")
    b = sqlutil.connect(prefix, bucket)
    db = s3util.uri(prefix, bucket)
    expected = 0
    for round_ in range(5):
        for conn in (a, b):
            assert conn.execute("select n from c").fetchone()[0] == expected
            conn.execute("update c set n = n + 1")
            expected += 1
        # The sqlite3 shell waits for no lock by default; the connections above keep the
        # writer lease for its linger after each commit.
        r = s3util.run_cli(f".open '{db}'\n.timeout 5000\nselect n from c;\nupdate c set n = n + 1;\n")
        assert r.returncode == 0, r.stderr
        assert int(r.stdout.split()[0]) == expected, (round_, r.stdout)
        expected += 1
    for conn in (a, b):
        assert conn.execute("select n from c").fetchone()[0] == expected
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
