'use strict';
// prepack: puts the compiled extension into lib/, so `npm pack` ships it.
// Copies $S3VFS_PREBUILT_LIB (a relative path starts at the repository root, as for the
// Python package) or else ../target/release/libs3vfs.so, the output of `make build`.
// It never compiles: build the crate first (`make build` or `cargo build --release`).

const fs = require('fs');
const path = require('path');

const pkg = path.resolve(__dirname, '..');
const root = path.resolve(pkg, '..');
const given = process.env.S3VFS_PREBUILT_LIB;
const src = given
  ? path.resolve(root, given)
  : path.join(root, 'target', 'release', 'libs3vfs.so');

if (!fs.statSync(src, { throwIfNoEntry: false })?.isFile()) {
  const why = given
    ? `S3VFS_PREBUILT_LIB=${given} is not a file (looked at ${src})`
    : `${src} does not exist: build the extension first (make build, or cargo build --release ` +
      'at the repository root), or set S3VFS_PREBUILT_LIB to an already built libs3vfs.so';
  console.error(`s3vfs: ${why}`);
  process.exit(1);
}

const dest = path.join(pkg, 'lib', 'libs3vfs.so');
fs.mkdirSync(path.dirname(dest), { recursive: true });
fs.copyFileSync(src, dest);
fs.chmodSync(dest, 0o755);
console.error(`s3vfs: copied ${src} to ${dest}`);
