/**
 * s3vfs from Node with better-sqlite3: a table kept in S3, written, changed, and read back
 * after the database is closed and opened again.
 *
 * Settings come from the environment: S3VFS_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * and for a server other than AWS S3, AWS_ENDPOINT_URL_S3 (AWS_REGION if not us-east-1).
 * They can go in the URI instead: file:examples/todo.db?vfs=s3&bucket=B&endpoint=URL&region=R.
 * Needs the s3vfs npm package (node/ in the repository) and better-sqlite3 12.3.0 or later.
 */

// s3vfs first: it sets SQLITE_USE_URI=1, which better-sqlite3 reads when its SQLite starts.
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');

s3vfs.load(new Database(':memory:')); // registers the "s3" VFS for the whole process

const NAME = 'file:examples/todo.db?vfs=s3';

function show(db, when) {
  const rows = db.prepare('select title, done from todos order by id').all();
  console.log(when, JSON.stringify(rows.map((r) => [r.title, r.done])));
}

let db = new Database(NAME);
db.exec('drop table if exists todos'); // start every run from an empty table
db.exec('create table todos(id integer primary key, title text not null, done integer not null default 0)');
const insert = db.prepare('insert into todos(title) values (?)');
const insertAll = db.transaction((titles) => titles.forEach((t) => insert.run(t)));
insertAll(['write', 'test', 'ship']); // one transaction, committed to S3 at its end
show(db, 'created:');
db.close(); // nothing of the database stays on local disk

db = new Database(NAME); // opened again, as by a new process
show(db, 'after reopen:');
db.prepare('update todos set done = 1 where title = ?').run('write');
db.prepare('delete from todos where title = ?').run('ship');
show(db, 'after update and delete:');
console.log('s3vfs', db.prepare('select s3vfs_version()').pluck().get());
db.close();
