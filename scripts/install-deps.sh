#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test s3vfs. Idempotent and quick when
# everything is already there. Runs as root on CI (Debian); needs only Debian's packages
# and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# sqlite-loadable's bindgen loads libclang at build time.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
/usr/bin/python3 -c "import ensurepip, venv" 2>/dev/null || need_apt+=(python3-venv)
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
