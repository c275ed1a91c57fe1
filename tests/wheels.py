"""What `make wheel` (scripts/build-wheels.sh) left in dist/: the manylinux wheels and the
portable libraries, for test_wheel.py, test_lambda.py and test_hosts_node.py."""

import platform
import re
import subprocess

import pytest

import s3util

DIST = s3util.ROOT / "dist"
# The npm package's directory name for each architecture (Node's process.platform-process.arch).
NPM_DIR = {"x86_64": "linux-x64", "aarch64": "linux-arm64"}
# This machine's architecture: the wheel the tests install and run (on an arm64 machine, the
# aarch64 one); the other is only inspected.
HOST = platform.machine()
MISSING = "no {what} in dist/: run `make wheel` (make test-wheel and make test do)"


def wheel(arch):
    """The manylinux wheel built for `arch`, or None."""
    found = sorted(DIST.glob(f"s3vfs-*-py3-none-*_{arch}.whl"))
    assert len(found) <= 1, f"more than one {arch} wheel in dist/: {found}"
    return found[0] if found else None


def require_wheel(arch=HOST):
    path = wheel(arch)
    if path is None:
        pytest.skip(MISSING.format(what=f"{arch} wheel"))
    return path


def portable_lib(arch):
    """dist/lib/<npm dir>/libs3vfs.so, the library inside `arch`'s wheel, or None."""
    path = DIST / "lib" / NPM_DIR[arch] / "libs3vfs.so"
    return path if path.is_file() else None


def glibc_ceiling(lib):
    """The highest GLIBC_x.y version `lib` needs, as a tuple, from `objdump -T` (Debian's
    objdump reads aarch64 libraries as generic ELF, symbol versions included)."""
    out = subprocess.run(["objdump", "-T", str(lib)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out)}
    assert versions, f"objdump -T {lib} names no GLIBC_ version"
    return max(versions)


def elf_machine(lib):
    out = subprocess.run(["readelf", "-h", str(lib)], capture_output=True, text=True, check=True).stdout
    return re.search(r"Machine:\s+(.*)", out).group(1).strip()
