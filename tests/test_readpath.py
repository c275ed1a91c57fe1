"""The read path at its floor (issue 13, items 2, 4 and 6), asserted by counting requests
and requests in flight, never by timing:

- a fresh process opens a database and runs a point query in the b-tree path + 2
  requests, with no LIST: block 0 and a HEAD of journal block 0 at the open (which its
  first read transactions reuse), and exactly the b-tree path below page 1 (no readahead);
- a warm read transaction served from the cache is one request (a GET answered 304, no
  body); its hot-journal question waits for the first block it fetches;
- a read transaction costs nothing while this process holds the writer lease;
- a cold scan's GETs go out in parallel batches (a proxy records requests in flight);
- s3vfs_stats() prices the requests.
"""

import json
import os
import random

import pytest

import proxy as proxymod
import s3util
import sqlutil

pytestmark = pytest.mark.exact_requests

PAGE = 4096


def cli_json(script, env=None):
    r = s3util.run_cli(script + "\nselect s3vfs_stats();\n", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    return lines[:-1], json.loads(lines[-1])


def make_table(bucket, prefix, rows, width=100):
    conn = sqlutil.connect(prefix, bucket)
    conn.execute("create table t(a integer primary key, b text)")
    rng = random.Random(7)
    conn.execute("begin")
    conn.executemany(
        "insert into t(b) values (?)",
        (("".join(rng.choice("0123456789") for _ in range(width)),) for _ in range(rows)),
    )
    conn.execute("commit")
    conn.close()


def btree_path(image, root, rowid):
    """The pages a lookup of `rowid` reads in the table b-tree rooted at `root`."""

    def varint(buf, at):
        v = 0
        for i in range(9):
            b = buf[at + i]
            if i == 8:
                return (v << 8) | b
            v = (v << 7) | (b & 0x7F)
            if b < 0x80:
                return v

    path, page = [], root
    while True:
        path.append(page)
        data = image[(page - 1) * PAGE : page * PAGE]
        h = 100 if page == 1 else 0
        if data[h] == 0x0D:
            return path
        assert data[h] == 0x05, data[h]
        cells = int.from_bytes(data[h + 3 : h + 5], "big")
        child = int.from_bytes(data[h + 8 : h + 12], "big")
        for i in range(cells):
            at = int.from_bytes(data[h + 12 + 2 * i : h + 14 + 2 * i], "big")
            if rowid <= varint(data, at + 4):
                child = int.from_bytes(data[at : at + 4], "big")
                break
        page = child


@pytest.mark.parametrize("rows", [2_000, 60_000])
def test_a_fresh_process_point_query_lists_nothing_and_reads_only_its_path(bucket, rows):
    prefix = f"read/point-{rows}.db"
    make_table(bucket, prefix, rows)
    image = sqlutil.stored_bytes(bucket, prefix)
    conn = sqlutil.connect(prefix, bucket)
    root = conn.execute("select rootpage from sqlite_master where name = 't'").fetchone()[0]
    conn.close()
    target = rows * 2 // 3
    path = btree_path(image, root, target)
    below_page_1 = [p for p in path if p != 1]

    out, s = cli_json(f"""
select s3vfs_stats_reset();
.open '{s3util.uri(prefix, bucket)}'
select length(b) from t where a = {target};
""")
    assert out[-1] == "100"
    # Open: GET block 0 and, beside it, HEAD journal block 0. The two read transactions
    # that follow (the schema, then the query) reuse those answers. Then the path below
    # page 1, and nothing else: no LIST, no readahead. Depth + 2.
    assert s["list"] == 0, s
    assert s["head"] == 1, s
    assert s["get"] == 1 + len(below_page_1), (s, path)
    assert s["requests"] == len(below_page_1) + 2, (s, path)


def test_a_warm_read_transaction_is_one_conditional_get(bucket):
    make_table(bucket, "read/warm.db", 500)
    conn = sqlutil.connect("read/warm.db", bucket)
    conn.execute("select b from t where a = 250").fetchone()
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("select b from t where a = 250").fetchone()
    s = sqlutil.stats(conn)
    assert (s["get"], s["head"], s["list"], s["requests"]) == (1, 0, 0, 1), s
    assert s["bytes_down"] == 0, "nothing changed: the GET of block 0 is answered 304"


def test_a_read_transaction_that_fetches_asks_about_the_journal_beside_its_first_get(bucket):
    # Written by another process, so that this one has nothing cached.
    r = s3util.run_cli(
        f".open '{s3util.uri('read/fetch.db', bucket)}'\n"
        "create table t(a integer primary key, b text);\n"
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000)\n"
        "insert into t(b) select hex(randomblob(50)) from c;\n"
    )
    assert r.returncode == 0, r.stderr
    calls = []

    def record(method, path, n):
        calls.append((method, path.split("?")[0]))

    url, px = proxymod.start(s3util.endpoint(), fail=record)
    try:
        conn = sqlutil.connect("read/fetch.db", bucket, endpoint=url)
        conn.execute("select b from t where a = 1").fetchone()
        calls.clear()
        # A row far from the first: leaf pages not cached yet.
        conn.execute("select b from t where a = 1900").fetchone()
    finally:
        px.stop()
    # One ranged GET of the journal's header (what SQLite's hot-journal rule reads), no HEAD,
    # no LIST; the rest are block 0 (answered 304) and the path's GETs.
    journal = [c for c in calls if "fetch.db-journal" in c[1]]
    assert journal == [("GET", f"/{bucket}/read/fetch.db-journal/0000000000")], calls
    assert all(m == "GET" for m, _ in calls) and len(calls) >= 3, calls


def test_a_warm_read_transaction_sees_another_process_commit(bucket):
    make_table(bucket, "read/seen.db", 50)
    conn = sqlutil.connect("read/seen.db", bucket)
    assert conn.execute("select count(*) from t").fetchone()[0] == 50
    r = s3util.run_cli(f".open '{s3util.uri('read/seen.db', bucket)}'\ninsert into t(b) values ('new');\n")
    assert r.returncode == 0, r.stderr
    conn.execute("select s3vfs_stats_reset()")
    assert conn.execute("select count(*) from t").fetchone()[0] == 51
    s = sqlutil.stats(conn)
    assert s["bytes_down"] >= PAGE and s["list"] == 0, s


def test_reading_while_this_process_holds_the_writer_lease_costs_no_request(bucket):
    make_table(bucket, "read/lease.db", 200)
    writer = sqlutil.connect("read/lease.db", bucket)
    reader = sqlutil.connect("read/lease.db", bucket)
    assert reader.execute("select count(*) from t").fetchone()[0] == 200
    writer.execute("begin immediate")  # takes the writer lease
    writer.execute("insert into t(b) values ('w')")
    reader.execute("select s3vfs_stats_reset()")
    for _ in range(3):
        assert reader.execute("select count(*) from t").fetchone()[0] == 200
    s = sqlutil.stats(reader)
    assert s["requests"] == 0, s
    writer.execute("commit")
    assert reader.execute("select count(*) from t").fetchone()[0] == 201


def test_locking_none_still_revalidates(bucket):
    make_table(bucket, "read/none.db", 50)
    conn = sqlutil.connect("read/none.db", bucket, locking="none")
    conn.execute("select count(*) from t").fetchone()
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("begin immediate")
    conn.execute("commit")
    conn.execute("select count(*) from t").fetchone()
    s = sqlutil.stats(conn)
    # No lease: every read transaction asks S3 at its start, for block 0 and for the
    # journal's header (a ranged GET of journal block 0), two transactions here.
    assert s["get"] >= 4 and s["list"] == 0, s


@pytest.fixture
def slow_proxy():
    url, px = proxymod.start(s3util.endpoint(), delay=0.03)
    yield url, px
    px.stop()


def test_a_cold_scan_fetches_in_parallel_batches(bucket, slow_proxy):
    url, px = slow_proxy
    make_table(bucket, "read/scan.db", 30_000)  # about 900 pages, in 4 KiB blocks
    blocks = len(s3util.list_keys(bucket, "read/scan.db/"))
    px.reset_counts()
    out, s = cli_json(f"""
.open '{s3util.uri('read/scan.db', bucket, endpoint=url)}'
select count(*) > 0 from t where b like '%7%';
""")
    assert out[-1] == "1"
    gets = px.get_concurrency
    assert len(gets) <= blocks + 6, (len(gets), blocks)
    # Parallel batches of up to `concurrency` (32): one GET at a time only at the start
    # of each interior page's run of children.
    assert px.max_in_flight >= 12, px.max_in_flight
    parallel = sum(1 for n in gets if n >= 4)
    assert parallel >= 0.8 * len(gets), (parallel, len(gets))
    assert s["list"] == 0, s


def test_a_point_query_through_the_proxy_triggers_no_readahead(bucket, slow_proxy):
    url, px = slow_proxy
    make_table(bucket, "read/pq.db", 30_000)
    px.reset_counts()
    out, s = cli_json(f"""
.open '{s3util.uri('read/pq.db', bucket, endpoint=url)}'
select length(b) from t where a = 12345;
""")
    assert out[-1] == "100"
    assert px.max_in_flight <= 2, "nothing fetched beside the block SQLite waits for"
    assert px.counts.get("LIST", 0) == 0 and s["get"] <= 1 + 2 + 3, (px.counts, s)


def test_stats_price_the_requests_and_the_prices_can_be_overridden(bucket):
    make_table(bucket, "read/cost.db", 10)
    db = s3util.uri("read/cost.db", bucket)
    for env, a, b in [({}, 0.005, 0.0004), ({"S3VFS_PRICE_CLASS_A": "0.0045", "S3VFS_PRICE_CLASS_B": "0.00036"}, 0.0045, 0.00036)]:
        _, s = cli_json(f"select s3vfs_stats_reset();\n.open '{db}'\ninsert into t(b) values ('x');\nselect count(*) from t;", env={**os.environ, **env})
        assert s["price_per_1000"] == {"class_a": a, "class_b": b}
        expected = ((s["put"] + s["list"]) * a + (s["get"] + s["head"]) * b) / 1000
        assert s["cost_usd"] == pytest.approx(expected), s
        assert s["cost_usd"] > 0
