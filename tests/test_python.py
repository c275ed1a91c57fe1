"""Python's sqlite3 module loads the extension with load_extension and uses ?vfs=s3 URIs."""

import subprocess
import sys
import textwrap

import pytest

import s3util
import sqlutil


def test_python_writes_10000_rows_and_a_new_process_reads_them(bucket):
    conn = sqlutil.connect("py/app.db", bucket)
    conn.execute("create table t(id integer primary key, body text)")
    conn.execute("begin")
    conn.executemany("insert into t(body) values (?)", ((f"row {i:05d}",) for i in range(1, 10001)))
    conn.execute("commit")
    conn.close()

    script = textwrap.dedent(f"""
        import sqlite3
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension({s3util.LIB!r})
        db = sqlite3.connect({s3util.uri("py/app.db", bucket)!r}, uri=True)
        print(db.execute("select count(*), min(body), max(body) from t").fetchone())
        print(db.execute("pragma integrity_check").fetchone()[0])
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["(10000, 'row 00001', 'row 10000')", "ok"]


def test_functions_exist_on_connections_opened_after_loading(bucket):
    s3util.load_ext()
    import sqlite3

    fresh = sqlite3.connect(":memory:")
    version = fresh.execute("select s3vfs_version()").fetchone()[0]
    assert version.count(".") == 2


@pytest.mark.exact_requests
def test_one_row_autocommit_insert_request_count(bucket):
    """Records the request cost of the smallest write; the speed work lowers it."""
    conn = sqlutil.connect("py/count.db", bucket)
    conn.execute("create table t(id integer primary key, body text)")
    conn.execute("insert into t(body) values ('warm')")
    conn.execute("select s3vfs_stats_reset()")
    conn.execute("insert into t(body) values ('x')")
    s = sqlutil.stats(conn)
    print("1-row autocommit INSERT:", s)
    assert 0 < s["requests"] <= 11, s
    assert s["errors"] == 0 and s["put"] >= 2


def test_a_second_sqlite_library_in_the_process_is_refused_clearly():
    """apsw bundles its own SQLite; the VFS lives in the library that loaded it first."""
    script = textwrap.dedent(f"""
        import sqlite3, apsw
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension({s3util.LIB!r})
        a = apsw.Connection(":memory:")
        a.enable_load_extension(True)
        try:
            a.load_extension({s3util.LIB!r})
            print("LOADED")
        except Exception as e:
            print("REFUSED", e)
        print(sqlite3.connect(":memory:").execute("select s3vfs_version()").fetchone()[0])
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first.startswith("REFUSED") and "already loaded into another SQLite library" in first, first
    assert second.count(".") == 2
