#!/usr/bin/env bash
# Starts, stops or checks a local S3 server (moto_server with signature checking) on
# 127.0.0.1. `start` writes $S3_STATE_DIR/env with the endpoint and a key pair the server
# accepts; tests and the demo source it.
#   S3_STATE_DIR   state folder (default .s3), so a second server can run beside the first
#   S3_PORT        port (default: a free one)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${S3_STATE_DIR:-.s3}
venv=.venv

ready() { "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2)' "$1" 2>/dev/null; }

alive() { [ -f "$state/server.pid" ] && kill -0 "$(cat "$state/server.pid")" 2>/dev/null; }

start() {
    if alive; then echo "s3-server: already running ($state/env)"; return; fi
    [ -x "$venv/bin/moto_server" ] || { echo "s3-server: run scripts/install-deps.sh first" >&2; exit 1; }
    mkdir -p "$state"
    port=${S3_PORT:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    endpoint="http://127.0.0.1:$port"
    # scripts/moto_server.py: moto_server with atomic conditional writes (see there).
    INITIAL_NO_AUTH_ACTION_COUNT=3 nohup "$venv/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$port" \
        >"$state/server.log" 2>&1 </dev/null &
    echo $! >"$state/server.pid"
    for _ in $(seq 1 120); do
        ready "$endpoint" && break
        alive || { echo "s3-server: moto_server exited; see $state/server.log" >&2; exit 1; }
        sleep 0.5
    done
    ready "$endpoint" || { echo "s3-server: not ready after 60 s; see $state/server.log" >&2; stop; exit 1; }
    keys=$("$venv/bin/python" scripts/moto_bootstrap.py "$endpoint")
    {
        echo "$keys"
        echo "export AWS_ENDPOINT_URL_S3=$endpoint"
        echo "export AWS_REGION=us-east-1"
        echo "export S3VFS_TEST_ENDPOINT=$endpoint"
        echo "export S3VFS_TEST_PID=$(cat "$state/server.pid")"
    } >"$state/env"
    echo "s3-server: moto_server on $endpoint (pid $(cat "$state/server.pid")); source $state/env"
}

stop() {
    if alive; then
        kill "$(cat "$state/server.pid")" 2>/dev/null || true
        for _ in $(seq 1 20); do alive || break; sleep 0.25; done
        alive && kill -9 "$(cat "$state/server.pid")" 2>/dev/null || true
    fi
    rm -f "$state/server.pid" "$state/env"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if alive; then echo running; else echo stopped; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
