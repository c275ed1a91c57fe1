"""SQLite-side helpers for the integration tests (s3util holds the S3 side)."""

import sqlite3

import s3util


def connect(prefix, bucket, **params):
    """A Python sqlite3 connection to a database kept in S3, in autocommit mode."""
    s3util.load_ext()
    return sqlite3.connect(s3util.uri(prefix, bucket, **params), uri=True, isolation_level=None)


def stored_bytes(bucket, prefix):
    """The database as sqlite-s3vfs defines it: every block under `prefix/`, in index order."""
    client = s3util.boto3_client()
    return b"".join(
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in s3util.list_keys(bucket, prefix + "/")
    )


def stats(conn):
    import json

    return json.loads(conn.execute("select s3vfs_stats()").fetchone()[0])
