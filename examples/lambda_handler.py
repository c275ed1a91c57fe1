"""An AWS Lambda handler whose SQLite database lives in S3 and is read and written in place.

The s3vfs wheel is its only dependency (deploy it as a layer, see the README's "AWS Lambda"
section). Settings come from the function's environment: S3VFS_BUCKET, and APP_DB for the
key prefix (default lambda/app.db); Lambda itself sets AWS_REGION and the role's
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, which s3vfs reads.
Event: {"note": "text"} adds a note; any other event only reads. Returns the note count.
"""

import os
import sqlite3

import s3vfs

# Cold start, once per execution environment: register the "s3" VFS in this process.
s3vfs.load(sqlite3.connect(":memory:"))

DB = "file:" + os.environ.get("APP_DB", "lambda/app.db") + "?vfs=s3"
_conn = None


def connection():
    """The process's connection, kept across warm invocations: its block cache stays, and
    s3vfs re-checks it against S3 (one round trip) at the start of every transaction."""
    global _conn
    if _conn is None:
        # timeout= is SQLite's busy_timeout: while another invocation holds the writer
        # lease, a write waits for it (up to 30 s) instead of failing with "database is locked".
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT below.
        _conn = sqlite3.connect(DB, uri=True, timeout=30, isolation_level=None)
        # Checked first, so that a cold start on an existing database takes no writer lease.
        if not _conn.execute("select 1 from sqlite_master where name = 'notes'").fetchone():
            write(_conn, "create table if not exists notes(id integer primary key, body text not null)")
    return _conn


def write(conn, sql, params=()):
    """One write transaction. BEGIN IMMEDIATE takes the writer lease first, so a concurrent
    invocation's commit can never invalidate what this one read (that would be a BUSY that
    busy_timeout cannot wait out)."""
    conn.execute("begin immediate")
    try:
        cur = conn.execute(sql, params)
        conn.execute("commit")
        return cur.lastrowid
    except BaseException:
        if conn.in_transaction:  # SQLite has already rolled back after some errors
            conn.execute("rollback")
        raise


def handler(event, context):
    conn = connection()
    added = None
    if event.get("note"):
        added = write(conn, "insert into notes(body) values (?)", (event["note"],))
    count = conn.execute("select count(*) from notes").fetchone()[0]
    return {"added": added, "notes": count}
