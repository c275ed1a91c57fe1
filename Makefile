# s3vfs: build the extension, run the demo and the tests against a local S3 server.
SHELL := /bin/bash
PY := .venv/bin/python
LIB := target/release/libs3vfs.so

.PHONY: all build deps wheel test-wheel demo bench test test-all test-faults test-unit test-integration fmt clippy lint server-start server-stop clean

all: build

deps:
	scripts/install-deps.sh

build: deps
	cargo build --release

# Wheels of python/ that install anywhere with glibc 2.17+ (manylinux_2_17), for x86_64 and,
# where rustup can install the target, aarch64; and the same libraries in dist/lib/ for the
# npm package. See scripts/build-wheels.sh.
wheel: deps
	scripts/build-wheels.sh

# The wheels' names and glibc ceilings, an offline install into a fresh venv and an S3 round
# trip, and the Lambda recipe (layer, cold/warm/concurrent invocations). Needs no native build.
test-wheel: wheel
	scripts/s3-server.sh start
	trap 'scripts/s3-server.sh stop' EXIT; $(PY) -m pytest -q -s tests/test_wheel.py tests/test_lambda.py

# One release build serves the unit tests and the .so the integration tests load.
test-unit: build
	cargo test --release --lib --bins

# After `make wheel`: the suite includes test_wheel.py and test_lambda.py, and the Node test
# packs dist/lib/'s portable libraries.
test-integration: build wheel
	scripts/s3-server.sh start
	trap 'scripts/s3-server.sh stop' EXIT; $(PY) -m pytest -n 2 -q -m "not slow" tests

# Everything a change must pass: the lint (fmt, clippy -D warnings), unit tests, the integration suite, and the same suite on a
# flaky network (issue 5: the whole functional suite survives 5% 503s and 2% resets).
test: lint test-unit test-integration test-faults

# The whole functional suite again on a flaky network: each pytest worker puts a proxy in
# front of the server that answers 5% of requests with 503 and resets 2% of connections.
# Tests that pin exact request counts are skipped (retries add requests).
test-faults: build wheel
	scripts/s3-server.sh start
	trap 'scripts/s3-server.sh stop' EXIT; S3VFS_TEST_FAULTS=1 $(PY) -m pytest -n 2 -q -m "not slow" tests

# Everything, with the tests marked slow (a from-scratch `pip install ./python`).
test-all: build wheel test-unit
	scripts/s3-server.sh start
	trap 'scripts/s3-server.sh stop' EXIT; $(PY) -m pytest -n 2 -q tests

demo: build
	scripts/s3-server.sh start
	trap 'scripts/s3-server.sh stop' EXIT; scripts/demo.sh

fmt:
	cargo fmt --check

clippy:
	cargo clippy --release --all-targets -- -D warnings

lint: deps fmt clippy

server-start: deps
	scripts/s3-server.sh start

server-stop:
	scripts/s3-server.sh stop

clean:
	scripts/s3-server.sh stop
	cargo clean

# A benchmark, not a test: s3vfs vs sqlite-s3vfs behind a proxy adding latency, on its own
# server. Writes bench/RESULTS.md. BENCH_ARGS="--mb 10 --delay 0.005" for a quick run.
bench: build
	S3_STATE_DIR=.s3-bench scripts/s3-server.sh start
	trap 'S3_STATE_DIR=.s3-bench scripts/s3-server.sh stop' EXIT; \
	  source .s3-bench/env && $(PY) bench/bench.py --out bench/RESULTS.md $(BENCH_ARGS)
