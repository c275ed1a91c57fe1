#!/usr/bin/env bash
# The s3vfs command in one session: a database made with the sqlite3 shell goes to S3,
# is listed, inspected and queried in place, comes back byte for byte, and is deleted.
# Run from the repository root after `cargo build --release`, with S3VFS_BUCKET, the
# credentials and (for a server other than AWS S3) AWS_ENDPOINT_URL_S3 set.
# tests/test_tool.py runs it; README.md shows it from `set -euo pipefail` on.

set -euo pipefail
s3vfs=target/release/s3vfs            # or `s3vfs` after `cargo install --path .`
db=s3://$S3VFS_BUCKET/examples/cli.db
work=$(mktemp -d)

sqlite3 "$work/notes.db" "create table notes(id integer primary key, body text);
  insert into notes(body) values ('kept in S3'), ('read in place');"

$s3vfs import --replace "$work/notes.db" "$db"   # --replace: the example runs again
$s3vfs ls "s3://$S3VFS_BUCKET/examples/"
$s3vfs info "$db"

# Query it in S3 through the VFS: the blocks are read in place, nothing is downloaded.
sqlite3 <<'SQL'
.load target/release/libs3vfs
.open 'file:examples/cli.db?vfs=s3'
select count(*) || ' notes' from notes;
SQL

$s3vfs export --force "$db" "$work/copy.db"
cmp "$work/notes.db" "$work/copy.db" && echo "the export is byte-identical"
$s3vfs rm --yes "$db"
rm -r "$work"
