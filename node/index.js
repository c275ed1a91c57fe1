'use strict';
/**
 * The s3vfs SQLite extension, shipped as an npm package for better-sqlite3.
 *
 * s3vfs keeps a SQLite database in S3 and reads and writes it in place. This package carries
 * the compiled extension for each platform it supports (lib/linux-x64/libs3vfs.so and
 * lib/linux-arm64/libs3vfs.so, both needing glibc 2.17 or later), and loads the one of the
 * running platform into a better-sqlite3 connection:
 *
 *     const s3vfs = require('s3vfs');             // first: turns SQLite's URI filenames on
 *     const Database = require('better-sqlite3');
 *
 *     s3vfs.load(new Database(':memory:'));      // registers the "s3" VFS for the process
 *     const db = new Database('file:apps/notes.db?vfs=s3&bucket=my-bucket');
 *
 * Why the order matters: better-sqlite3 (12.3.0 and later) compiles SQLite with
 * SQLITE_USE_URI=0 and turns URI filenames on only when the environment variable
 * SQLITE_USE_URI is "1" at the moment its native addon loads (the first `new Database`).
 * Without URIs, `file:apps/notes.db?vfs=s3` is a plain file name: SQLite would create a
 * local file of that name and never use the s3 VFS. Requiring this package sets
 * SQLITE_USE_URI=1 unless the environment already says otherwise, and `load` refuses a
 * connection whose SQLite has URIs off, rather than let it write local files.
 *
 * The extension loads permanently: after one `load`, every connection of that SQLite
 * library in the process (every better-sqlite3 Database) can open `?vfs=s3` URIs and call
 * the `s3vfs_*` SQL functions.
 */

const fs = require('fs');
const path = require('path');
const { isMainThread } = require('worker_threads');

if (process.env.SQLITE_USE_URI === undefined) {
  // Node passes this to setenv(), where better-sqlite3's addon reads it with getenv().
  process.env.SQLITE_USE_URI = '1';
}

/** The platforms (`${process.platform}-${process.arch}`) a library can be packed for. */
const PLATFORMS = ['linux-x64', 'linux-arm64'];

/**
 * The bundled extension's absolute path for the running platform, with its suffix
 * (`.../s3vfs/lib/linux-x64/libs3vfs.so`).
 *
 * better-sqlite3's `loadExtension` takes it as is (SQLite also accepts it without `.so`,
 * the form the sqlite3 shell's `.load` is usually given).
 *
 * Throws on a platform the package has no library for, and when this copy of the package
 * was packed without the running platform's library.
 */
function getLoadablePath() {
  const platform = `${process.platform}-${process.arch}`;
  const packed = PLATFORMS.filter((p) => fs.existsSync(libraryOf(p)));
  if (!PLATFORMS.includes(platform)) {
    throw new Error(
      `s3vfs: no library for ${platform}: this package carries the extension for ` +
        `${packed.join(' and ') || 'no platform'} only (Linux with glibc 2.17 or later). ` +
        'Elsewhere, build it from source (cargo build --release in the s3vfs repository) ' +
        'and pass its path to db.loadExtension()'
    );
  }
  const file = libraryOf(platform);
  if (!fs.existsSync(file)) {
    throw new Error(
      `s3vfs: ${file} is missing: this copy of the package was packed without the ${platform} ` +
        `library (it has ${packed.join(', ') || 'none'}). npm pack runs scripts/copy-lib.js, ` +
        'which copies dist/lib/<platform>/libs3vfs.so from make wheel, $S3VFS_PREBUILT_LIB_' +
        `${platform.toUpperCase().replace('-', '_')}, or for the machine packing it ` +
        '$S3VFS_PREBUILT_LIB or target/release/libs3vfs.so'
    );
  }
  return file;
}

function libraryOf(platform) {
  return path.join(__dirname, 'lib', platform, 'libs3vfs.so');
}

/**
 * Loads the extension into `db`, a better-sqlite3 Database, and returns `db`.
 *
 * Throws on a platform the package has no library for, when the running platform's library
 * is missing from the package (see getLoadablePath), and when `db`'s SQLite has URI
 * filenames off (see SQLITE_USE_URI above): `file:...?vfs=s3` would then name a local file.
 * Loading again (into any connection of the same process) does no harm.
 */
function load(db) {
  if (!db || typeof db.loadExtension !== 'function' || typeof db.exec !== 'function') {
    throw new TypeError('s3vfs.load(db): db must be a better-sqlite3 Database');
  }
  const file = getLoadablePath();
  if (!urisAreOn(db)) {
    const now = process.env.SQLITE_USE_URI;
    let why =
      now === '1'
        ? 'SQLITE_USE_URI is "1" now, so it was set after the addon had loaded, or this ' +
          'better-sqlite3 is older than 12.3.0'
        : `SQLITE_USE_URI is ${now === undefined ? 'unset' : JSON.stringify(now)} here`;
    if (!isMainThread) {
      // A worker's process.env is its own copy: setting it there never reaches getenv().
      why += ' (in a worker thread, whose process.env native code does not see: require ' +
        's3vfs in the main thread before starting workers)';
    }
    throw new Error(
      "s3vfs: URI filenames are off in this better-sqlite3's SQLite, so " +
        "'file:...?vfs=s3' would open a local file of that name, not the s3 VFS. " +
        'better-sqlite3 (12.3.0 or later) turns them on only if SQLITE_USE_URI=1 is in the ' +
        `environment when its native addon loads, at the first new Database(); ${why}. ` +
        'Require s3vfs before better-sqlite3 opens its first database (require("s3vfs") ' +
        'sets SQLITE_USE_URI=1 unless it is set already), or start node with SQLITE_USE_URI=1.'
    );
  }
  db.loadExtension(file);
  return db;
}

/**
 * Whether `db`'s SQLite parses `file:` names as URIs. better-sqlite3 opens without
 * SQLITE_OPEN_URI, so ATTACH follows the same global setting as `new Database`. With URIs
 * on, `mode=memory` attaches an in-memory database; with them off, the whole string is a
 * relative path under a directory `file:` that does not exist, so nothing is created.
 */
function urisAreOn(db) {
  const probe = 'file:/s3vfs-uri-probe-nonexistent/probe?mode=memory';
  try {
    db.exec(`ATTACH '${probe}' AS s3vfs_uri_probe`);
  } catch (e) {
    // URIs off: SQLite could not open the literal path. Any other failure (a transaction
    // open, too many attached databases) says nothing about URIs: report it as it is.
    if (e.code === 'SQLITE_CANTOPEN') return false;
    throw new Error(`s3vfs.load(db): could not check SQLite's URI setting: ${e.message}`);
  }
  db.exec('DETACH s3vfs_uri_probe');
  return true;
}

module.exports = { getLoadablePath, load };
