"""s3vfs from Python's sqlite3 module: a table kept in S3, written and read back.

Settings come from the environment: S3VFS_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
and for a server other than AWS S3, AWS_ENDPOINT_URL_S3 (AWS_REGION if not us-east-1).
They can go in the URI instead: file:examples/notes.db?vfs=s3&bucket=B&endpoint=URL&region=R.
Needs a sqlite3 module that can load extensions (Debian's /usr/bin/python3 has one).
"""

import sqlite3

import s3vfs

s3vfs.load(sqlite3.connect(":memory:"))  # registers the "s3" VFS for the whole process

db = sqlite3.connect("file:examples/notes.db?vfs=s3", uri=True)
db.execute("create table if not exists notes(id integer primary key, body text)")
with db:  # one transaction, committed to S3 at the end of the block
    db.execute("insert into notes(body) values (?)", ("kept in S3",))
print("notes:", db.execute("select count(*) from notes").fetchone()[0])
print("s3vfs", db.execute("select s3vfs_version()").fetchone()[0])
db.close()
