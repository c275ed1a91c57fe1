"""The serverless recipe (issue 15): examples/lambda_handler.py, with the wheel of this
machine's architecture as its only dependency, installed as the README's "AWS Lambda" section builds a layer.

Each invocation runs as Lambda runs it: a fresh process (a cold start) of Debian's
/usr/bin/python3 in isolated mode without site-packages (-I -S), whose sys.path gets the
layer's python/ directory (Lambda's /opt/python) and the handler's directory (/var/task),
then calls handler(event, context) once per event; later events in the same process are
warm starts. Settings come from the environment, as Lambda gives them: S3VFS_BUCKET, APP_DB
and the AWS_* of the local S3 server.
"""

import json
import os
import re
import subprocess
import time
import zipfile

import pytest

import s3util
import wheels

PYTHON = "/usr/bin/python3"
HANDLER = s3util.ROOT / "examples" / "lambda_handler.py"
README = (s3util.ROOT / "README.md").read_text()
SECTION = README.split("\n## AWS Lambda\n", 1)[-1].split("\n## ", 1)[0]

# What the Lambda runtime does around the handler, plus the numbers the test reads: per
# invocation the result, the S3 requests it made (s3vfs_stats) and its time.
RUNTIME = r"""
import json, os, sys, time
layer, task, go, events = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
sys.path[:0] = [layer, task]
start = time.monotonic()
import lambda_handler  # the cold start's init phase: loads the extension
import sqlite3
init = time.monotonic() - start
stats = sqlite3.connect(":memory:")  # the extension stays loaded: s3vfs_stats() works here

def requests():
    return json.loads(stats.execute("select s3vfs_stats()").fetchone()[0])["requests"]

print(json.dumps({"init_seconds": init}), flush=True)
while go != "-" and not os.path.exists(go):  # both concurrent processes start together
    time.sleep(0.005)
for event in events:
    before, t = requests(), time.monotonic()
    result = lambda_handler.handler(event, None)
    print(json.dumps({"result": result, "requests": requests() - before,
                      "seconds": time.monotonic() - t}), flush=True)
"""


def readme_block(lang, after):
    """The first ```lang block of the README's AWS Lambda section after the text `after`."""
    m = re.search(re.escape(after) + r".*?```" + lang + r"\n(.*?)```", SECTION, re.S)
    assert m, f"README.md's AWS Lambda section has no {lang} block after {after!r}"
    return m.group(1)


@pytest.fixture(scope="session")
def layers(shared_tmp):
    """The README's layer recipe run as written (with dist/ from make wheel): a directory
    holding layer-<arch>/python and s3vfs-layer-<arch>.zip; made once per test run."""
    wheels.require_wheel()
    work = shared_tmp / "lambda-layers"
    with s3util.file_lock(shared_tmp / "lambda-layers.lock"):
        if not (work / "ready").exists():
            work.mkdir(exist_ok=True)
            (work / "dist").symlink_to(wheels.DIST)
            script = readme_block("sh", "To build the layers")
            # Its `pip` is a user's: the test venv's (made from Debian's python3, like any).
            env = dict(os.environ, PATH=f"{s3util.ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
            # make wheel ran already (make test-wheel and make test run it first).
            script = script.replace("make wheel", ": make wheel", 1)
            start = time.monotonic()
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
            (work / "ready").write_text(f"the layer recipe took {time.monotonic() - start:.1f} s\n")
    print((work / "ready").read_text())
    return work


def test_readme_layer_recipe_builds_a_layer_per_architecture_from_the_wheels(layers):
    for arch in ["x86_64", "aarch64"]:
        if wheels.wheel(arch) is None:
            assert arch != wheels.HOST, f"make wheel built no {arch} wheel"
            print(f"no {arch} wheel (make wheel skipped it), so no {arch} layer")
            continue
        lib = layers / f"layer-{arch}" / "python" / "s3vfs" / "libs3vfs.so"
        assert lib.read_bytes() == wheels.portable_lib(arch).read_bytes()
        with zipfile.ZipFile(layers / f"s3vfs-layer-{arch}.zip") as z:
            names = z.namelist()
        # Lambda unpacks a layer into /opt, and puts /opt/python on sys.path.
        assert "python/s3vfs/__init__.py" in names and "python/s3vfs/libs3vfs.so" in names
        assert all(n.startswith("python/") for n in names), names


def test_readme_handler_block_is_the_example_file():
    block = readme_block("python", "examples/lambda_handler.py")
    # The README shows the file without its module docstring.
    assert block == HANDLER.read_text().split('"""', 2)[2].lstrip("\n")


def start_runtime(layers, bucket, db, events, go="-"):
    env = dict(os.environ, S3VFS_BUCKET=bucket, APP_DB=db)
    return subprocess.Popen(
        [PYTHON, "-I", "-S", "-c", RUNTIME, str(layers / f"layer-{wheels.HOST}" / "python"),
         str(HANDLER.parent), go, json.dumps(events)],
        cwd=layers, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc):
    """What the process printed from here on, one JSON object a line."""
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    return [json.loads(line) for line in out.splitlines()]


def invoke(layers, bucket, db, events):
    """One execution environment: a fresh process handling `events` in turn; returns the
    init phase's seconds and each invocation's result, requests and seconds."""
    first, *calls = finish(start_runtime(layers, bucket, db, events))
    return first["init_seconds"], calls


READ_BACK = """
import json, sqlite3, sys
sys.path.insert(0, sys.argv[1])
import s3vfs
s3vfs.load(sqlite3.connect(":memory:"))
conn = sqlite3.connect(f"file:{sys.argv[2]}?vfs=s3&mode=ro", uri=True)
print(conn.execute("pragma integrity_check").fetchone()[0])
print(json.dumps(conn.execute("select id, body from notes order by id").fetchall()))
"""


def notes(layers, bucket, db):
    """The stored notes, read by another process (the wheel's library, read-only); checks
    the database's integrity first."""
    r = subprocess.run([PYTHON, "-I", "-S", "-c", READ_BACK, str(layers / f"layer-{wheels.HOST}" / "python"), db],
                       env=dict(os.environ, S3VFS_BUCKET=bucket), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    check, rows = r.stdout.splitlines()
    assert check == "ok"
    return [tuple(row) for row in json.loads(rows)]


def test_cold_start_then_warm_starts_keep_the_database_in_s3(layers, bucket):
    db = "lambda/app.db"
    init, calls = invoke(layers, bucket, db, [{"note": "cold"}, {"note": "warm"}, {}])
    assert [c["result"] for c in calls] == [
        {"added": 1, "notes": 1},  # cold: the process's first invocation creates the table
        {"added": 2, "notes": 2},  # warm: same process, same connection
        {"added": None, "notes": 2},  # warm, read only
    ]
    cold, warm, read = calls
    print(f"cold start: init {init * 1000:.0f} ms, first invocation {cold['requests']} requests "
          f"in {cold['seconds'] * 1000:.0f} ms; warm write {warm['requests']} requests in "
          f"{warm['seconds'] * 1000:.0f} ms; warm read {read['requests']} requests")
    # A new execution environment (another cold start) finds what the first one stored.
    init, [again] = invoke(layers, bucket, db, [{}])
    assert again["result"] == {"added": None, "notes": 2}
    print(f"cold start on the existing database, read only: {again['requests']} requests "
          f"in {(init + again['seconds']) * 1000:.0f} ms with init")
    assert notes(layers, bucket, db) == [(1, "cold"), (2, "warm")]
    # Nothing of the database on local disk (Lambda's only writable place would be /tmp).
    assert not any(p.name.startswith(("lambda", "app.db")) for p in layers.iterdir())


@pytest.mark.exact_requests
def test_warm_invocations_cost_fewer_requests_than_the_cold_start(layers, bucket):
    _, (cold, warm, read) = invoke(layers, bucket, "lambda/counts.db",
                                   [{"note": "a"}, {"note": "b"}, {}])
    # The cold start opens the database and creates the table besides the insert; a warm
    # write is the insert alone; a warm read revalidates the cache and reads from it.
    assert warm["requests"] < cold["requests"]
    assert read["requests"] <= 2, read


def test_two_concurrent_invocations_both_commit_with_the_lease_deciding(layers, bucket, tmp_path):
    """Two execution environments started together, each adding 5 notes: the writer lease
    lets one write at a time, the other waits (busy_timeout), and no note is lost."""
    db = "lambda/busy.db"
    go = tmp_path / "go"
    procs = {
        name: start_runtime(layers, bucket, db, [{"note": f"{name}{i}"} for i in range(5)], str(go))
        for name in "ab"
    }
    for p in procs.values():  # both past their init phase
        assert json.loads(p.stdout.readline())["init_seconds"] >= 0
    go.touch()
    results = {name: finish(p) for name, p in procs.items()}
    added = sorted(c["result"]["added"] for calls in results.values() for c in calls)
    assert added == list(range(1, 11))
    for calls in results.values():
        counts = [c["result"]["notes"] for c in calls]
        assert counts == sorted(counts) and counts[-1] <= 10 and len(set(counts)) == 5
    stored = notes(layers, bucket, db)
    assert sorted(body for _, body in stored) == sorted(f"{n}{i}" for n in "ab" for i in range(5))
    print("concurrent invocations, requests each: "
          + "; ".join(f"{n}: {[c['requests'] for c in calls]}" for n, calls in results.items()))
