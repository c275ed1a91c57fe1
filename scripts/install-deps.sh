#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test s3vfs. Idempotent and quick when
# everything is already there. Runs as root on CI (Debian); needs only Debian's packages,
# PyPI and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# sqlite-loadable's bindgen loads libclang at build time.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
/usr/bin/python3 -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3-venv)
# Node and a C++ toolchain: the Node package's test compiles better-sqlite3 with node-gyp.
if ! command -v node >/dev/null; then
    need_apt+=(nodejs npm)
elif ! command -v npm >/dev/null; then
    need_apt+=(npm)
fi
command -v make >/dev/null || need_apt+=(make)
command -v g++ >/dev/null || need_apt+=(g++)
if ((${#need_apt[@]})); then
    echo "install-deps: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Debian's python3, not the pyenv one first on PATH: only Debian's sqlite3 module has
# enable_load_extension.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install-deps: pip install -r tests/requirements.txt"
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" > "$stamp"
fi

# better-sqlite3 for the Node package's test (tests/test_hosts_node.py), at the versions of
# node/package-lock.json. Built from source: its prebuilt-binary download is skipped, and
# with Node's headers in /usr/include/node (nodesource's nodejs, Debian's libnode-dev)
# node-gyp downloads nothing either.
stamp=node/node_modules/.s3vfs-deps.sha
want=$(cat node/package.json node/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install-deps: npm ci in node/ (compiles better-sqlite3, about 2 minutes)"
    if [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
    (cd node && npm ci --build-from-source --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi
