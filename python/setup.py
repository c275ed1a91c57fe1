"""Builds the s3vfs extension with cargo and puts the library inside the `s3vfs` package.

`pip install ./python` (from a checkout of the repository) runs
`cargo build --release --lib --no-default-features` on the crate one directory up, and copies
`libs3vfs.so` into the wheel: the library alone, without the `s3vfs` command and its
dependencies (the crate's default feature `cli`).
With S3VFS_PREBUILT_LIB naming an already built library it copies that one and compiles
nothing (CI builds the library once and reuses it).

The wheel is tagged `py3-none-<platform>`: the library is native code for one platform but
talks only to SQLite, never to Python, so any Python 3 can load it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
# pip builds ./python in place, so the crate is one directory up; S3VFS_CRATE_DIR says
# otherwise (for example when building from a copy of this directory).
CRATE = Path(os.environ.get("S3VFS_CRATE_DIR") or HERE.parent).resolve()
SUFFIX = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
# One name on every platform, so s3vfs.loadable_path() needs no platform logic.
LIB = "libs3vfs" + SUFFIX


def crate_version():
    manifest = CRATE / "Cargo.toml"
    if not manifest.is_file():
        sys.exit(
            f"s3vfs: no Rust crate at {CRATE} (Cargo.toml missing). Build from a checkout of "
            "the s3vfs repository (`pip install ./python`), or set S3VFS_CRATE_DIR to the "
            "directory holding its Cargo.toml."
        )
    # The first `version =` of Cargo.toml is the one under [package].
    return re.search(r'^version\s*=\s*"([^"]+)"', manifest.read_text(), re.M).group(1)


def prebuilt_lib():
    """S3VFS_PREBUILT_LIB as a path; a relative one is taken from the repository root."""
    value = os.environ.get("S3VFS_PREBUILT_LIB")
    if not value:
        return None
    path = (CRATE / value).resolve()
    if not path.is_file():
        sys.exit(f"s3vfs: S3VFS_PREBUILT_LIB={value} is not a file (looked at {path})")
    return path


def cargo_build():
    """Runs `cargo build --release --lib --no-default-features` (the extension without the
    `s3vfs` command's dependencies) and returns the path of the cdylib it made."""
    cmd = [
        "cargo", "build", "--release", "--lib", "--no-default-features",
        "--manifest-path", str(CRATE / "Cargo.toml"),
        "--message-format=json-render-diagnostics",
    ]
    print("s3vfs: " + " ".join(cmd), file=sys.stderr)
    try:
        # Progress and diagnostics go to stderr; stdout carries the JSON messages.
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    except FileNotFoundError:
        sys.exit("s3vfs: cargo not found. Install the Rust toolchain (https://rustup.rs), "
                 "or set S3VFS_PREBUILT_LIB to an already built libs3vfs" + SUFFIX)
    except subprocess.CalledProcessError as e:
        sys.exit(f"s3vfs: cargo build failed (exit code {e.returncode}); its messages are above. "
                 "Building needs the Rust toolchain and libclang, for bindgen (Debian: "
                 "apt-get install libclang-dev)")
    for line in out.splitlines():
        msg = json.loads(line)
        if (msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "s3vfs"
                and "cdylib" in msg["target"]["kind"]):
            for name in msg["filenames"]:
                if name.endswith(SUFFIX):
                    return Path(name)
    sys.exit("s3vfs: cargo build reported no cdylib for the s3vfs crate")


class BuildPyWithLibrary(build_py):
    """build_py, plus the extension library copied into the package."""

    def run(self):
        super().run()
        src = prebuilt_lib() or cargo_build()
        # An editable install imports the package from this directory.
        package = HERE / "s3vfs" if self.editable_mode else Path(self.build_lib) / "s3vfs"
        package.mkdir(parents=True, exist_ok=True)
        print(f"s3vfs: copying {src} to {package / LIB}", file=sys.stderr)
        shutil.copyfile(src, package / LIB)
        os.chmod(package / LIB, 0o755)


class PlatformWheel(bdist_wheel):
    """Tags the wheel py3-none-<platform>: native, but independent of the Python version."""

    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


class BinaryDistribution(Distribution):
    """Declares native content, so the wheel is platform-specific (platlib, platform tag)."""

    def has_ext_modules(self):
        return True


setup(
    version=crate_version(),
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    distclass=BinaryDistribution,
    zip_safe=False,
)
