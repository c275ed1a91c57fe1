"""Whole-database copies keep the safety promise (issue 12): a live writer's lease fences
s3vfs_deserialize and `s3vfs import` (item 4), s3vfs_serialize never writes over an object
of a database (item 8), and the SQL functions report argument errors and
s3vfs_last_error() clearly (item 14). The order of an interrupted copy (item 7) and the
export's temporary file (item 9) are unit-tested in src/transfer.rs."""

import random
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import s3util
import sqlutil

TOOL = str(s3util.ROOT / "target" / "release" / "s3vfs")


def local_db(path, rows, seed):
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute("create table t(id integer primary key, v text)")
    db.executemany("insert into t(v) values (?)", ((rng.randbytes(40).hex(),) for _ in range(rows)))
    db.commit()
    db.close()
    return path.read_bytes()


def memory_conn():
    s3util.load_ext()
    return sqlite3.connect(":memory:")


def sql(query, *args):
    return memory_conn().execute(query, args).fetchone()[0]


def remote_db(bucket, name, rows):
    """A database of `rows` rows stored through the VFS; returns a digest of its rows."""
    conn = sqlutil.connect(name, bucket)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", (("row %d" % i,) for i in range(rows)))
    conn.execute("commit")
    digest = rows_of(conn)
    conn.close()
    return digest


def rows_of(conn):
    return conn.execute("select count(*), sum(id), group_concat(v) from t").fetchone()


def assert_intact(bucket, name, digest):
    conn = sqlutil.connect(name, bucket)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert rows_of(conn) == digest
    conn.close()


class Writer:
    """A second process holding an open write transaction (`begin immediate`, so it holds
    the writer lease) on a database through the VFS, until it is told to roll back."""

    def __init__(self, bucket, name):
        script = textwrap.dedent(f"""
            import sqlite3, sys
            boot = sqlite3.connect(":memory:"); boot.enable_load_extension(True)
            boot.load_extension({s3util.LIB!r})
            db = sqlite3.connect({s3util.uri(name, bucket)!r}, uri=True, isolation_level=None)
            db.execute("begin immediate")
            print("ready", flush=True)
            sys.stdin.readline()
            db.execute("rollback")
        """)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def finish(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0


def test_deserialize_replace_is_refused_while_another_process_holds_a_write_transaction(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    digest = remote_db(bucket, "live.db", 300)
    s3util.boto3_client().put_object(Bucket=bucket, Key="src/other.sqlite", Body=local_db(tmp_path / "o.db", 500, 2))
    writer = Writer(bucket, "live.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="a writer holds its lease") as e:
            sql("select s3vfs_deserialize('src/other.sqlite', 'live.db', 'replace')")
        assert f"pid {writer.proc.pid}" in str(e.value), str(e.value)
        assert "nothing was written" in str(e.value)
    finally:
        writer.finish()
    assert_intact(bucket, "live.db", digest)
    # With the writer gone, the same call replaces the database.
    assert sql("select s3vfs_deserialize('src/other.sqlite', 'live.db', 'replace')") > 0
    assert sqlutil.connect("live.db", bucket).execute("select count(*) from t").fetchone()[0] == 500


def test_import_is_refused_while_another_process_holds_a_write_transaction(bucket, tmp_path):
    local_db(tmp_path / "local.db", 200, 3)
    writer = Writer(bucket, "fresh.db")
    try:
        r = subprocess.run(
            [TOOL, "import", str(tmp_path / "local.db"), f"s3://{bucket}/fresh.db"],
            capture_output=True, text=True, timeout=300,
        )
        assert r.returncode != 0, r.stdout
        assert "a writer holds its lease" in r.stderr and f"pid {writer.proc.pid}" in r.stderr, r.stderr
    finally:
        writer.finish()
    assert s3util.list_keys(bucket, "fresh.db/") == []


REFUSED_TARGETS = {
    "a block of another database": "victim.db/0000000003",
    "a journal block": "victim.db-journal/0000000000",
    "a lease": "victim.db.s3vfs-lease",
    "a reader mark": "victim.db.s3vfs-readers/1234-abcd",
    "the source's own prefix": "src.db/copy.sqlite",
    "a block of the source": "src.db/0000000001",
}


@pytest.mark.parametrize("case", list(REFUSED_TARGETS))
def test_serialize_refuses_a_target_that_belongs_to_a_database(bucket, monkeypatch, case):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    victim = remote_db(bucket, "victim.db", 300)
    source = remote_db(bucket, "src.db", 50)
    before = {k: s3util.boto3_client().get_object(Bucket=bucket, Key=k)["Body"].read() for k in s3util.list_keys(bucket, "")}
    target = REFUSED_TARGETS[case]
    with pytest.raises(sqlite3.OperationalError, match="will not write the copy to") as e:
        sql(f"select s3vfs_serialize('src.db', '{target}')")
    assert "nothing was written" in str(e.value)
    after = {k: s3util.boto3_client().get_object(Bucket=bucket, Key=k)["Body"].read() for k in s3util.list_keys(bucket, "")}
    assert after == before
    assert_intact(bucket, "victim.db", victim)
    assert_intact(bucket, "src.db", source)


@pytest.mark.parametrize(
    "query, argument",
    [
        ("select s3vfs_serialize(?)", 1),
        ("select s3vfs_serialize('x.db', ?)", 2),
        ("select s3vfs_deserialize(?, 'x.db')", 1),
        ("select s3vfs_deserialize('src.sqlite', ?)", 2),
    ],
)
def test_a_nul_byte_in_an_argument_is_named(bucket, monkeypatch, query, argument):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    conn = memory_conn()
    with pytest.raises(sqlite3.OperationalError) as e:
        conn.execute(query, ("a\0b",)).fetchone()
    msg = str(e.value)
    assert f"argument {argument}" in msg and "NUL byte" in msg, msg
    assert "unknown error" not in msg
    assert conn.execute("select s3vfs_last_error()").fetchone()[0] == msg
    assert s3util.list_keys(bucket, "") == []


def test_last_error_tells_about_the_latest_call_only(bucket, monkeypatch):
    monkeypatch.setenv("S3VFS_BUCKET", bucket)
    remote_db(bucket, "ok.db", 10)
    conn = memory_conn()
    with pytest.raises(sqlite3.OperationalError, match="does not exist"):
        conn.execute("select s3vfs_deserialize('src/missing.sqlite', 'x.db')").fetchone()
    assert "does not exist" in conn.execute("select s3vfs_last_error()").fetchone()[0]
    # SQLite itself fails (s3vfs never runs): that is no s3vfs error.
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.execute("select * from no_such_table")
    assert len(conn.execute("select s3vfs_serialize('ok.db')").fetchone()[0]) > 0
    assert conn.execute("select s3vfs_last_error()").fetchone()[0] is None
