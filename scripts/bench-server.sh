#!/usr/bin/env bash
# Starts or stops the benchmark's S3 endpoint (bench/s3server: in-memory, SigV4, a delay added
# inside each request, counters on /_stats) on 127.0.0.1 with a free port. `start` builds it
# with cargo when the binary is missing or older than its sources (5-8 min from scratch on
# 2 cores) and writes $S3_STATE_DIR/env, which bench/bench.py and its test source.
#   S3_STATE_DIR   state folder (default .s3-bench)
#   BENCH_DELAY_MS delay added to each request at start (default 0; bench.py sets it per run)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${S3_STATE_DIR:-.s3-bench}
manifest=bench/s3server/Cargo.toml
bin=bench/s3server/target/release/s3bench-server

alive() { [ -f "$state/server.pid" ] && kill -0 "$(cat "$state/server.pid")" 2>/dev/null; }

build() {
    if [ ! -x "$bin" ] || [ -n "$(find bench/s3server/src bench/s3server/Cargo.toml bench/s3server/Cargo.lock -newer "$bin" 2>/dev/null)" ]; then
        echo "bench-server: cargo build --release --manifest-path $manifest"
        cargo build --release --manifest-path "$manifest"
    fi
}

start() {
    if alive; then echo "bench-server: already running ($state/env)"; return; fi
    build
    mkdir -p "$state"
    key=bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    nohup "$bin" --host 127.0.0.1 --port 0 --access-key "$key" --secret-key "$secret" \
        --delay-ms "${BENCH_DELAY_MS:-0}" >"$state/server.log" 2>&1 </dev/null &
    echo $! >"$state/server.pid"
    endpoint=
    for _ in $(seq 1 100); do
        endpoint=$(sed -n 's/^s3bench-server listening on \(http:[^ ]*\).*/\1/p' "$state/server.log")
        [ -n "$endpoint" ] && break
        alive || { echo "bench-server: exited; see $state/server.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$endpoint" ] || { echo "bench-server: no address after 10 s; see $state/server.log" >&2; stop; exit 1; }
    {
        echo "export AWS_ENDPOINT_URL_S3=$endpoint"
        echo "export AWS_ACCESS_KEY_ID=$key"
        echo "export AWS_SECRET_ACCESS_KEY=$secret"
        echo "export AWS_REGION=us-east-1"
        echo "export AWS_DEFAULT_REGION=us-east-1"
        echo "export S3BENCH_STATS_URL=$endpoint/_stats"
        echo "export S3BENCH_BIN=$PWD/$bin"
        echo "export S3BENCH_PID=$(cat "$state/server.pid")"
    } >"$state/env"
    echo "bench-server: $endpoint (pid $(cat "$state/server.pid")); source $state/env"
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
    build) build ;;
    status) if alive; then echo running; else echo stopped; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status|build" >&2; exit 2 ;;
esac
