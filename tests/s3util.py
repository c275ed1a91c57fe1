"""S3-side helpers for the integration tests: the local server's settings, buckets, keys,
URIs, and running the sqlite3 shell with the extension loaded."""

import contextlib
import fcntl
import os
import shutil
import sqlite3
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / os.environ.get("S3_STATE_DIR", ".s3")
# Without the .so suffix: `.load` and load_extension add it, as users write it.
LIB = str(ROOT / "target" / "release" / "libs3vfs")
SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"


def read_env():
    """The `export K=V` lines that scripts/s3-server.sh wrote, as a dict."""
    out = {}
    for line in (STATE / "env").read_text().splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            out[k] = v
    return out


def endpoint():
    return os.environ["S3VFS_TEST_ENDPOINT"]


def server_endpoint():
    """The S3 server itself, behind no proxy, even under make test-faults: for a test
    whose own proxy injects the one fault it is about."""
    return read_env()["S3VFS_TEST_ENDPOINT"]


def boto3_client(**overrides):
    kw = dict(
        endpoint_url=endpoint(),
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        # The tests' own requests must survive make test-faults' flaky proxy too.
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 10}),
    )
    kw.update(overrides)
    return boto3.client("s3", **kw)


def new_bucket(hint="t"):
    name = f"{hint}-{uuid.uuid4().hex[:16]}"[:63].lower()
    boto3_client().create_bucket(Bucket=name)
    return name


def list_objects(bucket, prefix):
    """(key, size) of every object under prefix, all pages, sorted by key."""
    out = []
    for page in boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [(o["Key"], o["Size"]) for o in page.get("Contents", [])]
    return sorted(out)


def list_keys(bucket, prefix):
    return [k for k, _ in list_objects(bucket, prefix)]


def uri(prefix, bucket, **params):
    """`file:<prefix>?vfs=s3&bucket=..&endpoint=..&region=..` plus extra parameters."""
    query = {"vfs": "s3", "bucket": bucket, "endpoint": endpoint(), "region": "us-east-1"}
    query.update({k: str(v) for k, v in params.items()})
    return f"file:{urllib.parse.quote(prefix)}?{urllib.parse.urlencode(query)}"


_loaded = False


def load_ext():
    """Loads the extension into this process once; it stays (it loads permanently)."""
    global _loaded
    if not _loaded:
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(LIB)
        _loaded = True


def run_cli(script, env=None, timeout=300, cwd=None):
    """Runs the sqlite3 shell with the extension loaded and `script` on stdin."""
    return subprocess.run(
        [SQLITE3, "-batch"],
        input=f".load {LIB}\n{script}",
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock on `path`, so pytest-xdist workers take turns at a step that
    builds in place in the repository (pip in python/build/, npm pack into node/lib/)."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
