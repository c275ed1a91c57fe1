"""The manylinux wheels of `make wheel` (issue 15): named and tagged manylinux_2_17, their
library needing at most glibc 2.17, refused by auditwheel when the library needs more, and
installed offline into a fresh venv from Debian's /usr/bin/python3 (whose sqlite3 loads
extensions), where `s3vfs.load` and one S3 round trip work.

`make test-wheel` (and `make test`) build the wheels first; run alone without them, these
tests are skipped and say so.
"""

import os
import re
import subprocess
import time
import zipfile

import pytest

import s3util
import wheels

PYTHON = "/usr/bin/python3"
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (s3util.ROOT / "Cargo.toml").read_text(), re.M).group(1)
MACHINE = {"x86_64": "Advanced Micro Devices X86-64", "aarch64": "AArch64"}


def skip_unless_built(arch):
    """The wheel, or a skip: an aarch64 wheel is missing where rustup could not install the
    target (build-wheels.sh printed why), an x86_64 one only without `make wheel`."""
    path = wheels.wheel(arch)
    if path is None:
        reason = wheels.MISSING.format(what=f"{arch} wheel")
        if arch == "aarch64" and wheels.wheel("x86_64") and wheels.HOST == "x86_64":
            reason = ("no aarch64 wheel: `rustup target add aarch64-unknown-linux-gnu` failed on "
                      "this machine, so make wheel skipped it (it printed a SKIPPED line)")
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_wheel_is_manylinux_2_17_and_its_library_needs_at_most_glibc_2_17(arch, tmp_path):
    whl = skip_unless_built(arch)
    # PEP 600's tag, and manylinux2014 (its older alias) for pip before 20.3.
    assert whl.name == f"s3vfs-{VERSION}-py3-none-manylinux2014_{arch}.manylinux_2_17_{arch}.whl"
    with zipfile.ZipFile(whl) as z:
        names = sorted(z.namelist())
        info = f"s3vfs-{VERSION}.dist-info/"
        assert names == sorted(["s3vfs/", "s3vfs/__init__.py", "s3vfs/libs3vfs.so", info, info + "METADATA",
                                info + "RECORD", info + "WHEEL", info + "top_level.txt"])
        tags = re.findall(r"^Tag: (.*)$", z.read(info + "WHEEL").decode(), re.M)
        assert sorted(tags) == [f"py3-none-manylinux2014_{arch}", f"py3-none-manylinux_2_17_{arch}"]
        assert z.read("s3vfs/__init__.py") == (s3util.ROOT / "python/s3vfs/__init__.py").read_bytes()
        lib = tmp_path / "libs3vfs.so"
        lib.write_bytes(z.read("s3vfs/libs3vfs.so"))
    ceiling = wheels.glibc_ceiling(lib)
    print(f"{whl.name}: {whl.stat().st_size / 2**20:.2f} MiB, library needs GLIBC_"
          + ".".join(map(str, ceiling)))
    assert ceiling <= (2, 17)
    assert wheels.elf_machine(lib) == MACHINE[arch]
    # The npm package ships the same library (dist/lib/, copied by its prepack).
    assert lib.read_bytes() == wheels.portable_lib(arch).read_bytes()


def test_auditwheel_refuses_a_library_that_needs_a_newer_glibc(shared_tmp, tmp_path):
    """The gate of build-wheels.sh: the library of a plain `cargo build` (linked against this
    machine's glibc) cannot be tagged manylinux_2_17."""
    skip_unless_built(wheels.HOST)
    native = s3util.LIB + ".so"
    if not os.path.exists(native):
        pytest.skip(f"{native} is missing: run `cargo build --release` (make test does)")
    if wheels.glibc_ceiling(native) <= (2, 17):
        pytest.skip("this machine's glibc is 2.17 or older: every library it links passes")
    venv = s3util.ROOT / ".venv-wheel"
    with s3util.file_lock(shared_tmp / "python-package.lock"):  # pip builds python/ in place
        r = subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "wheel", "-q", "--no-deps",
             "--no-build-isolation", "--no-index", "-w", str(tmp_path / "native"), "./python"],
            cwd=s3util.ROOT, env={"PATH": "/usr/bin:/bin", "S3VFS_PREBUILT_LIB": native},
            capture_output=True, text=True, timeout=300,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    [native_whl] = (tmp_path / "native").iterdir()
    r = subprocess.run(
        [str(venv / "bin/auditwheel"), "repair", "--plat", f"manylinux_2_17_{wheels.HOST}",
         "-w", str(tmp_path / "repaired"), str(native_whl)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode != 0
    assert "too-recent versioned symbols" in r.stderr, r.stderr
    assert not (tmp_path / "repaired").exists() or not any((tmp_path / "repaired").iterdir())


ROUND_TRIP = """
import sqlite3, sys
import s3vfs

s3vfs.load(sqlite3.connect(":memory:"))
uri = sys.argv[1]
db = sqlite3.connect(uri, uri=True)
with db:
    db.execute("create table t(id integer primary key, body text)")
    db.execute("insert into t(body) values ('written from the wheel')")
db.close()
again = sqlite3.connect(uri, uri=True)  # a new connection reads it back from S3
print(again.execute("select id, body from t").fetchall())
print(s3vfs.loadable_path())
"""


def test_wheel_installs_offline_into_a_fresh_venv_and_round_trips_through_s3(bucket, tmp_path):
    whl = skip_unless_built(wheels.HOST)
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    start = time.monotonic()
    r = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
         str(whl)],
        capture_output=True, text=True, timeout=300,
    )
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Successfully installed s3vfs-{VERSION}" in r.stdout, r.stdout
    print(f"pip install --no-index {whl.name}: {seconds:.1f} s")
    (tmp_path / "cwd").mkdir()
    r = subprocess.run([str(venv / "bin/python"), "-c", ROUND_TRIP, s3util.uri("wheel/rt.db", bucket)],
                       cwd=tmp_path / "cwd", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rows, path = r.stdout.splitlines()
    assert rows == "[(1, 'written from the wheel')]"
    assert path.startswith(str(venv)) and path.endswith("/site-packages/s3vfs/libs3vfs")
    assert wheels.glibc_ceiling(path + ".so") <= (2, 17)
    assert "wheel/rt.db/0000000000" in s3util.list_keys(bucket, "wheel/rt.db/")
    assert list((tmp_path / "cwd").iterdir()) == []  # nothing written to local disk
