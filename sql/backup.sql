-- Backup and restore the SQLite ways, between a local file and a database in S3
-- (sqlite3 shell, after `.load ./target/release/libs3vfs`; bucket from S3VFS_BUCKET;
-- the local files go to the current directory).

-- A local database to protect.
.open backup-example.db
create table if not exists items(id integer primary key, name text);
insert into items(name) values ('backed up with .backup');

-- The shell's online backup, into S3 ...
.backup 'file:examples/backup.db?vfs=s3'

-- ... and VACUUM INTO, which writes a compacted copy.
vacuum into 'file:examples/vacuumed.db?vfs=s3';

-- Restore from S3 into a fresh local database.
.open restore-example.db
.restore 'file:examples/backup.db?vfs=s3'
select 'restored rows', count(*) from items;
