"""A flaky network: 5% of requests answered 503 SlowDown-style and 2% of connections reset,
through the proxy. Retries (exponential backoff with jitter) hide every fault: the
workloads give the same results as on a clean network."""

import random
import threading

import pytest

import proxy as proxymod
import s3util
import sqlutil
import test_matrix


@pytest.fixture
def flaky_endpoint():
    rng = random.Random(20261124)
    lock = threading.Lock()

    def flaky(method, path, n):
        with lock:
            r = rng.random()
        if r < 0.05:
            return 503
        if r < 0.07:
            return "reset"
        return None

    url, px = proxymod.start(s3util.endpoint(), fail=flaky)
    yield url
    px.stop()


def test_bulk_write_and_reopen_survive_faults(bucket, flaky_endpoint):
    conn = sqlutil.connect("faults/bulk.db", bucket, endpoint=flaky_endpoint)
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"row {i}",) for i in range(10_000)))
    conn.execute("commit")
    for i in range(20):
        conn.execute("update t set v = 'changed' where id = ?", (i * 100 + 1,))
    stats = sqlutil.stats(conn)
    conn.close()
    again = sqlutil.connect("faults/bulk.db", bucket, endpoint=flaky_endpoint)
    assert again.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert again.execute("select count(*), sum(v = 'changed') from t").fetchone() == (10_000, 20)
    assert stats["retries"] > 0, stats


@pytest.mark.parametrize("journal_mode", test_matrix.JOURNAL_MODES)
def test_matrix_cases_survive_faults(bucket, tmp_path, flaky_endpoint, journal_mode, monkeypatch):
    # The matrix case itself, with its URIs pointing at the flaky proxy.
    real_uri = s3util.uri
    monkeypatch.setattr(s3util, "uri", lambda p, b, **kw: real_uri(p, b, **{"endpoint": flaky_endpoint, **kw}))
    test_matrix.test_matches_a_local_file(bucket, tmp_path, 4096, 4097, journal_mode)
