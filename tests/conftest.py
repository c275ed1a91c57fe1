"""Starts the local S3 server for the session (unless one is running) and gives each test
a fresh bucket, so tests can run in parallel."""

import os
import subprocess

import pytest

import s3util


def _server_alive():
    try:
        env = s3util.read_env()
        os.kill(int(env["S3VFS_TEST_PID"]), 0)
        return True
    except (OSError, KeyError, ValueError):
        return False


@pytest.fixture(scope="session", autouse=True)
def s3_server(worker_id, request):
    script = str(s3util.ROOT / "scripts" / "s3-server.sh")
    started = False
    if not _server_alive():
        if worker_id not in ("master", "gw0"):
            pytest.fail("start the server before running pytest -n (make test does)")
        subprocess.run([script, "start"], check=True)
        started = True
    for k, v in s3util.read_env().items():
        os.environ[k] = v
    flaky = None
    if os.environ.get("S3VFS_TEST_FAULTS"):
        # The whole suite on a flaky network: every request of the tests, of s3vfs in
        # them and of the processes they start goes through this worker's proxy.
        flaky = _start_flaky_proxy(os.environ["S3VFS_TEST_ENDPOINT"], worker_id)
        os.environ["S3VFS_TEST_ENDPOINT"] = os.environ["AWS_ENDPOINT_URL_S3"] = flaky[0]
    # Settings that would leak in from the developer's shell and change results.
    for k in ["S3VFS_BUCKET", "S3VFS_BLOCK_SIZE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"]:
        os.environ.pop(k, None)
    # make test-wheel runs only the files that test make wheel's output, which need no
    # native build (a fresh clone's `make wheel && make test-wheel` compiles nothing else).
    needs_lib = any(item.path.name not in WHEEL_TESTS for item in request.session.items)
    if needs_lib and not os.path.exists(s3util.LIB + ".so"):
        pytest.fail(f"{s3util.LIB}.so is missing: run `cargo build --release` (make test does)")
    yield
    if flaky:
        flaky[1].stop()
    if started:
        subprocess.run([script, "stop"], check=False)


WHEEL_TESTS = {"test_wheel.py", "test_lambda.py"}


FAULT_RATES = {"503": 0.05, "reset": 0.02}


def _start_flaky_proxy(upstream, worker_id):
    """A proxy that answers 5% of requests with 503 and resets 2% of connections."""
    import random
    import threading

    import proxy

    # S3VFS_TEST_FAULT_SEED varies which requests fail, to hunt a flake on purpose
    # (`S3VFS_TEST_FAULT_SEED=7 make test-faults`); unset, every run fails the same ones.
    seed = os.environ.get("S3VFS_TEST_FAULT_SEED", "")
    rng = random.Random(f"faults-{worker_id}{'-' + seed if seed else ''}")
    lock = threading.Lock()

    def flaky(method, path, n):
        with lock:
            r = rng.random()
        if r < FAULT_RATES["503"]:
            return 503
        if r < FAULT_RATES["503"] + FAULT_RATES["reset"]:
            return "reset"
        return None

    return proxy.start(upstream, fail=flaky)


def pytest_collection_modifyitems(config, items):
    """Under injected faults, retries change request counts: tests that pin exact
    counts are skipped (every other test must pass as on a clean network)."""
    if not os.environ.get("S3VFS_TEST_FAULTS"):
        return
    skip = pytest.mark.skip(reason="pins exact request counts; retries under injected faults add requests")
    for item in items:
        if item.get_closest_marker("exact_requests"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory, worker_id):
    """A directory of this pytest run that all its xdist workers share."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture
def bucket(request):
    return s3util.new_bucket(request.node.name.split("[")[0].replace("_", "-")[:30])
