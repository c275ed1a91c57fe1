"""The Python package installs into a fresh venv, and the README's Python examples run there.

The venv is made from Debian's /usr/bin/python3 (its sqlite3 module loads extensions), with
no system site-packages: `pip install ./python` from the repository root, plus apsw and
SQLAlchemy at the versions below. Each example in examples/ then runs in it as a user would
run it, with its settings in the environment, against the local S3 server.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

import s3util
import sqlutil

PYTHON = "/usr/bin/python3"
HOST_PACKAGES = ["apsw==3.54.1.0", "sqlalchemy==2.1.9"]
EXAMPLES = s3util.ROOT / "examples"


def make_venv(venv, env, *packages):
    """A venv from /usr/bin/python3 with ./python and `packages` installed; returns the
    seconds `pip install` took."""
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    start = time.monotonic()
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "./python", *packages],
        cwd=s3util.ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return time.monotonic() - start


@pytest.fixture(scope="session")
def host_python(shared_tmp):
    """The Python of a venv holding s3vfs (from the prebuilt library), apsw and SQLAlchemy:
    made once per test run and shared by the xdist workers."""
    venv = shared_tmp / "host-venv"
    with s3util.file_lock(shared_tmp / "python-package.lock"):
        if not (venv / "ready").exists():
            # A copy, as target/release/libs3vfs.so may be rebuilt while the tests run.
            shutil.copyfile(s3util.LIB + ".so", shared_tmp / "prebuilt.so")
            env = dict(os.environ, S3VFS_PREBUILT_LIB=str(shared_tmp / "prebuilt.so"))
            seconds = make_venv(venv, env, *HOST_PACKAGES)
            (venv / "ready").write_text(f"pip install took {seconds:.1f} s\n")
    print((venv / "ready").read_text())
    return str(venv / "bin" / "python")


def run(python, args, bucket, cwd):
    """Runs the venv's Python as a user would, with the settings the examples read."""
    env = dict(os.environ, S3VFS_BUCKET=bucket)  # plus AWS_* of the local server
    r = subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def run_example(python, name, bucket, cwd):
    return run(python, [str(EXAMPLES / name)], bucket, cwd)


def test_package_ships_the_prebuilt_library_inside_the_venv(
    host_python, shared_tmp, bucket, tmp_path
):
    script = "import s3vfs, sys; print(s3vfs.loadable_path()); print(sys.prefix)"
    out = run(host_python, ["-c", script], bucket, tmp_path)
    path, prefix = out
    assert path.startswith(prefix) and path.endswith("/site-packages/s3vfs/libs3vfs"), out
    with open(path + ".so", "rb") as shipped, open(shared_tmp / "prebuilt.so", "rb") as built:
        assert shipped.read() == built.read()


def test_load_turns_extension_loading_off_again_and_refuses_a_second_sqlite_library(
    host_python, bucket, tmp_path
):
    script = """
import apsw, sqlite3, s3vfs
boot = sqlite3.connect(":memory:")
s3vfs.load(boot)
s3vfs.load(sqlite3.connect(":memory:"))  # again into the same library: harmless
print(sqlite3.connect(":memory:").execute("select s3vfs_version()").fetchone()[0])
try:
    boot.execute("select load_extension('x')")
except sqlite3.OperationalError as e:
    print("sqlite3:", e)
try:
    s3vfs.load(apsw.Connection(":memory:"))
except RuntimeError as e:
    print("apsw:", e)
"""
    version, loading, mixing = run(host_python, ["-c", script], bucket, tmp_path)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert loading == "sqlite3: not authorized"
    assert mixing.startswith("apsw: s3vfs is already loaded into sqlite3's SQLite library"), mixing


@pytest.mark.parametrize("example, prefix", [
    ("python_sqlite3.py", "examples/notes.db"),
    ("apsw_example.py", "examples/apsw.db"),
])
def test_example_writes_to_s3_and_a_second_run_finds_the_first_runs_row(
    host_python, bucket, tmp_path, example, prefix
):
    first = run_example(host_python, example, bucket, tmp_path)
    second = run_example(host_python, example, bucket, tmp_path)
    assert first[0] == "notes: 1" and second[0] == "notes: 2"
    assert re.fullmatch(r"s3vfs \d+\.\d+\.\d+", first[1])
    assert f"{prefix}/0000000000" in s3util.list_keys(bucket, prefix + "/")
    assert list(tmp_path.iterdir()) == []  # nothing written to local disk


def test_sqlalchemy_example_does_crud_across_engine_restarts_in_place(
    host_python, bucket, tmp_path
):
    out = run_example(host_python, "sqlalchemy_app.py", bucket, tmp_path)
    assert out == [
        "created: [('write', False), ('test', False), ('ship', False)]",
        "after restart: [('write', False), ('test', False), ('ship', False)]",
        "after update and delete: [('write', True), ('test', False)]",
    ]
    assert list(tmp_path.iterdir()) == []
    # Another host (this process's sqlite3) reads what the ORM left in S3.
    conn = sqlutil.connect("examples/app.db", bucket)
    assert conn.execute("select id, title, done from tasks order by id").fetchall() == [
        (1, "write", 1),
        (2, "test", 0),
    ]
    # It starts from an empty table, so it can run again.
    assert run_example(host_python, "sqlalchemy_app.py", bucket, tmp_path) == out


def test_readme_python_examples_are_the_example_files():
    readme = (s3util.ROOT / "README.md").read_text()
    # Each "### Host: `examples/<file>.py`" heading, and the first python block after it.
    heading_then_block = r"^### [^\n]*`(examples/\w+\.py)`\n.*?```python\n(.*?)```"
    blocks = dict(re.findall(heading_then_block, readme, re.S | re.M))
    assert sorted(blocks) == [
        "examples/apsw_example.py",
        "examples/python_sqlite3.py",
        "examples/sqlalchemy_app.py",
    ]
    for name, block in blocks.items():
        source = (s3util.ROOT / name).read_text()
        # The README shows the file without its module docstring.
        code = source.split('"""', 2)[2].lstrip("\n")
        assert block == code, f"README.md's block for {name} differs from the file"


@pytest.mark.slow
def test_pip_install_without_a_prebuilt_library_compiles_the_crate(shared_tmp, bucket, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "S3VFS_PREBUILT_LIB"}
    # A target directory of its own, so cargo compiles everything and waits for no one.
    env["CARGO_TARGET_DIR"] = str(tmp_path / "target")
    with s3util.file_lock(shared_tmp / "python-package.lock"):
        seconds = make_venv(tmp_path / "venv", env)
    print(f"pip install ./python, compiling: {seconds:.0f} s")
    shutil.rmtree(tmp_path / "target")  # hundreds of MB; the venv has its own copy of the library
    python = str(tmp_path / "venv" / "bin" / "python")
    (tmp_path / "cwd").mkdir()
    assert run_example(python, "python_sqlite3.py", bucket, tmp_path / "cwd")[0] == "notes: 1"
