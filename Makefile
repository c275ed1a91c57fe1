# s3vfs: build the extension, run the demo and the tests against a local S3 server.
SHELL := /bin/bash
PY := .venv/bin/python
LIB := target/release/libs3vfs.so

.PHONY: all build deps wheel test-wheel demo bench bench-server-start bench-server-stop test-bench-server test test-all test-faults test-unit test-integration fmt clippy lint server-start server-stop clean

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
	scripts/bench-server.sh stop
	cargo clean

# A benchmark, not a test: s3vfs beside sqlite-s3vfs on the benchmark's own S3 endpoint
# (bench/s3server: in-memory, thousands of requests/s, 20 ms added inside each request),
# every workload in a fresh process. Writes bench/RESULTS.md; about 20 minutes.
# BENCH_ARGS="--quick" for a ~3-minute run; "--delay-ms 5,20,50", "--sizes 5,50,500" for more.
# The first run builds the endpoint (5-8 min on 2 idle cores; 33 min measured on a busy machine).
bench: build
	scripts/bench-server.sh start
	trap 'scripts/bench-server.sh stop' EXIT; \
	  source .s3-bench/env && $(PY) bench/bench.py --out bench/RESULTS.md $(BENCH_ARGS)

# The benchmark endpoint's S3 semantics and counters (tests/test_bench_server.py). `make test`
# collects that file too but does not build the endpoint, so there it skips unless built;
# this target builds it. --noconftest: it needs neither moto nor the extension.
test-bench-server: deps
	scripts/bench-server.sh build
	$(PY) -m pytest --noconftest -q tests/test_bench_server.py

bench-server-start:
	scripts/bench-server.sh start

bench-server-stop:
	scripts/bench-server.sh stop
