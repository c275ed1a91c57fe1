/**
 * The s3vfs SQLite extension (databases kept in S3), shipped for better-sqlite3.
 *
 * Require this package before the first `new Database()`: it sets SQLITE_USE_URI=1 (unless
 * the environment already sets it), which better-sqlite3 12.3.0+ reads when its native addon
 * loads, so that `file:...?vfs=s3` names are URIs.
 */

/** The part of a better-sqlite3 Database that `load` uses. */
export interface LoadableDatabase {
  loadExtension(path: string, entryPoint?: string): unknown;
  exec(source: string): unknown;
}

/**
 * The bundled extension's absolute path for the running platform,
 * `.../s3vfs/lib/linux-x64/libs3vfs.so` or `.../lib/linux-arm64/libs3vfs.so`.
 *
 * @throws Error on another platform, or when the package was packed without this platform's library.
 */
export function getLoadablePath(): string;

/**
 * Loads the extension into `db` (a better-sqlite3 Database), registering the `s3` VFS and
 * the `s3vfs_*` SQL functions for every connection in the process. Returns `db`.
 *
 * @throws Error on a platform without a library in the package (see getLoadablePath), or
 *   when SQLite's URI filenames are off
 *   (SQLITE_USE_URI was not "1" when better-sqlite3's addon loaded).
 * @throws TypeError when `db` is not a better-sqlite3 Database.
 */
export function load<T extends LoadableDatabase>(db: T): T;
