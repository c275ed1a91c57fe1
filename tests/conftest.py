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
def s3_server(worker_id):
    script = str(s3util.ROOT / "scripts" / "s3-server.sh")
    started = False
    if not _server_alive():
        if worker_id not in ("master", "gw0"):
            pytest.fail("start the server before running pytest -n (make test does)")
        subprocess.run([script, "start"], check=True)
        started = True
    for k, v in s3util.read_env().items():
        os.environ[k] = v
    # Settings that would leak in from the developer's shell and change results.
    for k in ["S3VFS_BUCKET", "S3VFS_BLOCK_SIZE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"]:
        os.environ.pop(k, None)
    if not os.path.exists(s3util.LIB + ".so"):
        pytest.fail(f"{s3util.LIB}.so is missing: run `cargo build --release` (make test does)")
    yield
    if started:
        subprocess.run([script, "stop"], check=False)


@pytest.fixture
def bucket(request):
    return s3util.new_bucket(request.node.name.split("[")[0].replace("_", "-")[:30])
