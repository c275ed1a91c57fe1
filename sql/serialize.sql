-- Whole databases in and out of S3 with SQL (run in the sqlite3 shell after
-- `.load ./target/release/libs3vfs`; the bucket comes from S3VFS_BUCKET, the endpoint
-- and credentials from the usual AWS variables).

-- A database kept in S3 as blocks under the prefix examples/notes.db/
.open 'file:examples/notes.db?vfs=s3'
create table if not exists notes(id integer primary key, body text);
insert into notes(body) values ('exported with s3vfs_serialize');

-- Write it as one plain SQLite file object (returns its size in bytes).
select 'serialized bytes', s3vfs_serialize('examples/notes.db', 'exports/notes.sqlite');

-- Seed another database from that file (returns the number of blocks written);
-- 'replace' overwrites a database already at the prefix.
select 'blocks written', s3vfs_deserialize('exports/notes.sqlite', 'examples/copy.db', 'replace');

-- The copy opens like any other database kept in S3.
.open 'file:examples/copy.db?vfs=s3'
select 'copied rows', count(*) from notes;

-- A small database can also come back as a BLOB.
select 'blob bytes', length(s3vfs_serialize('examples/copy.db'));
