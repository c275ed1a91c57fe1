'use strict';
// prepack: puts the compiled extension into lib/<platform>/, so `npm pack` ships one library
// per platform and index.js picks the running one's. It never compiles.
//
// For each platform (linux-x64, linux-arm64) the first that exists of:
//   $S3VFS_PREBUILT_LIB_LINUX_X64 / $S3VFS_PREBUILT_LIB_LINUX_ARM64
//   $S3VFS_PREBUILT_LIB          (only for the platform packing it, as before)
//   dist/lib/<platform>/libs3vfs.so, made by `make wheel`: linked against glibc 2.17, so it
//                                loads on any Linux the manylinux wheels install on
//   target/release/libs3vfs.so   (only for the platform packing it: `make build`'s, which
//                                needs this machine's glibc; a warning says so)
// Relative paths start at the repository root. A platform with none of them is left out
// with a line saying so; packing fails only when no platform has a library.

const fs = require('fs');
const path = require('path');

const pkg = path.resolve(__dirname, '..');
const root = path.resolve(pkg, '..');
const PLATFORMS = ['linux-x64', 'linux-arm64'];
const here = `${process.platform}-${process.arch}`;

const isFile = (p) => fs.statSync(p, { throwIfNoEntry: false })?.isFile();

function source(platform) {
  const envName = `S3VFS_PREBUILT_LIB_${platform.toUpperCase().replace('-', '_')}`;
  const candidates = [];
  if (process.env[envName]) candidates.push([envName, process.env[envName], true]);
  if (platform === here && process.env.S3VFS_PREBUILT_LIB) {
    candidates.push(['S3VFS_PREBUILT_LIB', process.env.S3VFS_PREBUILT_LIB, true]);
  }
  candidates.push(['make wheel', path.join('dist', 'lib', platform, 'libs3vfs.so'), false]);
  if (platform === here) {
    candidates.push(['make build', path.join('target', 'release', 'libs3vfs.so'), false]);
  }
  for (const [from, given, explicit] of candidates) {
    const file = path.resolve(root, given);
    if (isFile(file)) return { from, file };
    if (explicit) {
      // A variable naming no file is a mistake, not a reason to pick another library.
      console.error(`s3vfs: ${from}=${given} is not a file (looked at ${file})`);
      process.exit(1);
    }
  }
  return null;
}

// Nothing stale may be packed (a library from an earlier pack, or the old lib/libs3vfs.so).
fs.rmSync(path.join(pkg, 'lib'), { recursive: true, force: true });
let packed = 0;
for (const platform of PLATFORMS) {
  const src = source(platform);
  if (!src) {
    console.error(
      `s3vfs: no ${platform} library (run make wheel, or set ` +
        `S3VFS_PREBUILT_LIB_${platform.toUpperCase().replace('-', '_')}): the package will not load on ${platform}`
    );
    continue;
  }
  const dest = path.join(pkg, 'lib', platform, 'libs3vfs.so');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(src.file, dest);
  fs.chmodSync(dest, 0o755);
  packed++;
  console.error(`s3vfs: copied ${src.file} to ${dest} (${src.from})`);
  if (src.from === 'make build') {
    console.error(
      `s3vfs: warning: ${src.file} is linked against this machine's glibc and will not load ` +
        'on older Linux; make wheel builds the portable one (dist/lib/)'
    );
  }
}
if (!packed) {
  console.error(
    's3vfs: no library to pack: build the extension first (make wheel for the portable ' +
      'libraries, or make build), or set S3VFS_PREBUILT_LIB_LINUX_X64 / _LINUX_ARM64'
  );
  process.exit(1);
}
