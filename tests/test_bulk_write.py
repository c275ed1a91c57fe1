"""A large transaction commits at the parallel floor (issue 13, item 5), asserted by
requests and requests in flight, never by timing: the commit stores the journal, then the
database blocks `concurrency` at a time, then deletes journal block 0 (the lease is kept
for its linger), in ceil(journal blocks / concurrency) + ceil(database blocks / concurrency)
+ 3 round trips at most on the critical path: about ceil(dirty blocks / concurrency) + 3 (+ 1 when
the journal's last round and the database's first could have shared one).

Round trips are counted by the proxy from the order of events alone: a request sent after
another one ended is one round trip further down the chain (tests/proxy.py).
"""

import math

import pytest

import proxy as proxymod
import s3util
import sqlutil

pytestmark = pytest.mark.exact_requests

CONCURRENCY = 8


@pytest.fixture
def slow_proxy():
    # A delay well above moto's own time per request, so requests sent together are still
    # in flight together when the proxy sees them end (moto answers them one by one).
    url, px = proxymod.start(s3util.endpoint(), delay=0.15)
    yield url, px
    px.stop()


def test_a_large_transaction_commits_in_about_ceil_blocks_over_concurrency_plus_3_round_trips(bucket, slow_proxy):
    url, px = slow_proxy
    prefix = "bulk/big.db"
    conn = sqlutil.connect(prefix, bucket, endpoint=url, concurrency=CONCURRENCY)
    conn.execute("create table t(id integer primary key, k integer, b text)")
    conn.execute("insert into t(k, b) values (0, 'first')")
    conn.execute("begin")
    for i in range(6_000):
        conn.execute("insert into t(k, b) values (?, ?)", (i, "x" * 100))
    # Everything so far is buffered (the lease is taken, the journal written in memory):
    # the commit alone is measured.
    px.reset_counts()
    px.trace = []
    conn.execute("commit")
    counts, round_trips, in_flight = dict(px.counts), px.round_trips, px.max_in_flight
    blocks = len(s3util.list_keys(bucket, prefix + "/"))
    conn.close()

    puts = counts.get("PUT", 0)
    assert counts.get("LIST", 0) == 0 and counts.get("GET", 0) == 0, counts
    # The database blocks (all new but a few) and a journal of the few old pages changed;
    # the lease is kept for its linger (no request), given back at the close.
    assert blocks - 5 <= puts <= blocks + 6, (counts, blocks)
    assert in_flight == CONCURRENCY, "the PUTs go out `concurrency` at a time"
    journal = sum(1 for _, m, path in px.trace if m == "PUT" and "/big.db-journal/" in path)
    database = sum(1 for _, m, path in px.trace if m == "PUT" and "/big.db/" in path)
    assert journal + database == puts, "no lease request on the commit's path"
    # The journal is stored before any database block (the rollback protocol), then the
    # database blocks through one pool of CONCURRENCY workers; then journal block 0 is
    # deleted (the commit point). The rest of the journal is left to the next journal or
    # the lease's release.
    floor = math.ceil(journal / CONCURRENCY) + math.ceil(database / CONCURRENCY)
    assert round_trips <= floor + 3, (round_trips, journal, database, counts)
    assert round_trips >= math.ceil(puts / CONCURRENCY), round_trips
    last_journal = max(d for d, m, path in px.trace if "/big.db-journal/" in path and m == "PUT")
    first_db = min(d for d, m, path in px.trace if "/big.db/" in path and m == "PUT")
    assert last_journal < first_db, "the journal is stored first"
    check = sqlutil.connect(prefix, bucket)
    assert check.execute("select count(*) from t").fetchone()[0] == 6_001
    assert check.execute("pragma integrity_check").fetchone()[0] == "ok"
