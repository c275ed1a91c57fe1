"""Databases move both ways between s3vfs and the Python package sqlite-s3vfs."""

import os

import apsw
import boto3
import pytest
import sqlite_s3vfs
from botocore.config import Config

import sqlutil


def peer(bucket, block_size):
    """sqlite-s3vfs (APSW + boto3) on the same server and bucket."""
    s3 = boto3.resource(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 10}),
    )
    return sqlite_s3vfs.S3VFS(bucket=s3.Bucket(bucket), block_size=block_size)


def peer_rows(vfs, prefix):
    db = apsw.Connection(prefix, vfs=vfs.name)
    try:
        cur = db.cursor()
        assert cur.execute("pragma integrity_check").fetchall() == [("ok",)]
        return cur.execute("select id, v from t order by id").fetchall()
    finally:
        db.close()


def ours_rows(prefix, bucket, block_size):
    conn = sqlutil.connect(prefix, bucket, block_size=block_size)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        return conn.execute("select id, v from t order by id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("block_size", [4096, 65536])
def test_written_by_sqlite_s3vfs_then_read_and_written_by_s3vfs(bucket, block_size):
    prefix = f"interop/from-peer-{block_size}.db"
    vfs = peer(bucket, block_size)
    db = apsw.Connection(prefix, vfs=vfs.name)
    cur = db.cursor()
    cur.execute("create table t(id integer primary key, v text)")
    cur.execute("begin")
    for i in range(500):
        cur.execute("insert into t(v) values (?)", (f"peer {i} " + "p" * (i % 200),))
    cur.execute("commit")
    db.close()
    expected = peer_rows(vfs, prefix)

    assert ours_rows(prefix, bucket, block_size) == expected

    conn = sqlutil.connect(prefix, bucket, block_size=block_size)
    conn.execute("insert into t(v) values ('added by s3vfs')")
    conn.execute("update t set v = 'changed by s3vfs' where id = 7")
    conn.execute("delete from t where id between 100 and 150")
    after = conn.execute("select id, v from t order by id").fetchall()
    conn.close()

    assert peer_rows(vfs, prefix) == after

    db = apsw.Connection(prefix, vfs=vfs.name)
    db.cursor().execute("insert into t(v) values ('peer again')")
    db.close()
    assert ours_rows(prefix, bucket, block_size)[-1][1] == "peer again"


@pytest.mark.parametrize("block_size", [4096, 65536])
def test_written_by_s3vfs_then_read_by_sqlite_s3vfs(bucket, block_size):
    prefix = f"interop/from-s3vfs-{block_size}.db"
    conn = sqlutil.connect(prefix, bucket, block_size=block_size)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", ((f"ours {i} " + "o" * (i % 300),) for i in range(700)))
    conn.execute("commit")
    conn.execute("update t set v = 'updated' where id % 10 = 0")
    expected = conn.execute("select id, v from t order by id").fetchall()
    conn.close()

    vfs = peer(bucket, block_size)
    assert peer_rows(vfs, prefix) == expected
    assert vfs.serialize_fileobj(prefix).read() == sqlutil.stored_bytes(bucket, prefix)
