"""Every page size x block size x journal mode behaves exactly like a local file.

Each case runs the same statements (including a rolled-back transaction) on a database in
S3 and on a local file, reopens the S3 one in a fresh connection, and compares query
results and the stored bytes with the local file's bytes.
"""

import sqlite3

import pytest

import sqlutil

PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
BLOCK_SIZES = [4095, 4096, 4097, 65536]
JOURNAL_MODES = ["DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"]


def workload(conn, page_size, journal_mode):
    conn.execute(f"pragma page_size={page_size}")
    conn.execute(f"pragma journal_mode={journal_mode}")
    conn.execute("create table t(id integer primary key, v text, n int)")
    conn.execute("create index t_n on t(n)")
    conn.execute("begin")
    for i in range(40):
        conn.execute("insert into t(v, n) values (?, ?)", ("x" * ((i * 37) % 600), i % 7))
    conn.execute("commit")
    conn.execute("begin")
    conn.execute("update t set v = 'rolled back' where n = 3")
    conn.execute("delete from t where n = 5")
    conn.execute("rollback")
    conn.execute("update t set v = upper(v) || 'y' where n = 2")
    conn.execute("delete from t where n = 6")
    conn.execute("insert into t(v, n) values (x'00ff', 99)")


def snapshot(conn):
    return conn.execute("select id, v, n from t order by id").fetchall()


@pytest.mark.parametrize("journal_mode", JOURNAL_MODES)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_matches_a_local_file(bucket, tmp_path, page_size, block_size, journal_mode):
    prefix = f"matrix/p{page_size}-b{block_size}-{journal_mode}.db"
    local_path = tmp_path / "local.db"
    local = sqlite3.connect(local_path, isolation_level=None)
    workload(local, page_size, journal_mode)
    expected = snapshot(local)
    local.close()

    remote = sqlutil.connect(prefix, bucket, block_size=block_size)
    workload(remote, page_size, journal_mode)
    assert snapshot(remote) == expected
    remote.close()

    reopened = sqlutil.connect(prefix, bucket, block_size=block_size)
    assert reopened.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert reopened.execute("pragma page_size").fetchone()[0] == page_size
    assert snapshot(reopened) == expected
    reopened.close()

    assert sqlutil.stored_bytes(bucket, prefix) == local_path.read_bytes()
