#!/usr/bin/env bash
# `make wheel`: the portable library and the manylinux wheels of python/ (issue 15).
#
# The library built by `cargo build` needs this machine's glibc (2.34+ here), so it cannot
# load on Amazon Linux 2, Ubuntu 20.04 or RHEL 8. cargo-zigbuild links it with zig against
# glibc 2.17 symbols instead, for x86_64 and, where rustup can install the target, aarch64.
# auditwheel then tags each wheel manylinux_2_17_<arch>, and refuses (failing this script)
# if the library needs anything newer: such a wheel can never be shipped.
#
# Writes, for each architecture built:
#   dist/s3vfs-<version>-py3-none-manylinux_2_17_<arch>.whl
#   dist/lib/linux-<x64|arm64>/libs3vfs.so  (the same library, for the npm package's prepack)
# Idempotent: the tools are installed once (stamp file), cargo rebuilds only what changed.
#   WHEEL_ARCHES   architectures to build (default "x86_64 aarch64")
#   WHEEL_DIR      output directory (default dist)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=.venv-wheel
out=${WHEEL_DIR:-dist}
arches=${WHEEL_ARCHES:-x86_64 aarch64}
# A target directory of its own: zig's linker and the .2.17 target would otherwise change
# the fingerprints of `cargo build --release`'s units and make the two builds undo each other.
export CARGO_TARGET_DIR=$root/target/zig

# Debian's python3: install-deps.sh makes sure it has venv.
if [ ! -x $venv/bin/python ]; then
    /usr/bin/python3 -m venv $venv
fi
stamp=$venv/.requirements.sha
want=$(sha256sum scripts/requirements-wheel.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "wheel: pip install -r scripts/requirements-wheel.txt into $venv"
    $venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-wheel.txt
    echo "$want" > "$stamp"
fi
# cargo-zigbuild runs `zig`, or else `python3 -m ziglang`: the venv's python3 has ziglang.
export PATH=$root/$venv/bin:$PATH

# The highest GLIBC_x.y symbol version a library needs. readelf reads any architecture's ELF
# (this machine's objdump only knows x86's).
glibc_ceiling() {
    readelf -W --dyn-syms "$1" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1
}

mkdir -p "$out"
for arch in $arches; do
    case $arch in
        x86_64) npm_dir=linux-x64 ;;
        aarch64) npm_dir=linux-arm64 ;;
        *) echo "wheel: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 2 ;;
    esac
    triple=$arch-unknown-linux-gnu
    tag=manylinux_2_17_$arch
    # Nothing stale may be taken for this run's output (an old wheel, or an arm64 library
    # from a machine that could still install the target).
    rm -f "$out"/s3vfs-*-py3-none-*"$arch".whl
    rm -rf "${out:?}/lib/$npm_dir"
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
        if ! rustup target add "$triple" >/dev/null 2>&1; then
            echo "wheel: SKIPPED $arch: 'rustup target add $triple' failed here (the Rust" \
                 "toolchain server is not reachable?), so there is no $tag wheel and no" \
                 "lib/$npm_dir for the npm package; a release builds it where the target" \
                 "installs (README: \"arm64, and how a release builds it\")"
            continue
        fi
    fi
    start=$SECONDS
    # Run from the target directory: zig prints the include paths under its working directory
    # as relative ones, which cargo-zigbuild hands to bindgen (running in another directory)
    # as they are, and bindgen then finds no stdarg.h. Out of the venv's parent, they are absolute.
    mkdir -p "$CARGO_TARGET_DIR"
    (cd "$CARGO_TARGET_DIR" && cargo zigbuild --manifest-path "$root/Cargo.toml" --release --lib \
        --no-default-features --target "$triple.2.17")
    lib=$CARGO_TARGET_DIR/$triple/release/libs3vfs.so
    echo "wheel: $arch library built in $((SECONDS - start)) s; needs at most $(glibc_ceiling "$lib")"

    unrepaired=$(mktemp -d)
    trap 'rm -rf "$unrepaired"' EXIT
    # --no-build-isolation --no-index: setuptools comes from the venv, nothing is fetched.
    # --plat-name: the wheel describes the library's architecture, not this machine's.
    S3VFS_PREBUILT_LIB=$lib $venv/bin/python -m pip wheel -q --disable-pip-version-check \
        --no-deps --no-build-isolation --no-index -w "$unrepaired" \
        --config-settings=--build-option=--plat-name=linux_$arch ./python
    # repair checks every symbol version and library the .so needs against the policy.
    # Asked for $tag, it refuses a library that needs a newer glibc. Its --plat accepts only
    # this machine's architecture, so another one's wheel is tagged "auto" (the oldest policy
    # the library satisfies), and the name check below refuses anything but $tag.
    plat=auto
    [ "$arch" = "$(uname -m)" ] && plat=$tag
    auditwheel repair --plat "$plat" --only-plat -w "$out" "$unrepaired"/*.whl 2>&1 |
        grep -v '^INFO:' || true
    rm -rf "$unrepaired"
    trap - EXIT
    wheel=$(ls "$out"/s3vfs-*-py3-none-*"$arch".whl 2>/dev/null || true)
    if [ -z "$wheel" ]; then
        echo "wheel: auditwheel made no $tag wheel (its messages are above)" >&2
        exit 1
    fi
    case ${wheel##*/} in
        *[-.]$tag.whl|*[-.]$tag.*) ;;
        *) echo "wheel: $wheel is not tagged $tag: the library needs $(glibc_ceiling "$lib")" >&2
           rm -f "$wheel"; exit 1 ;;
    esac
    mkdir -p "$out/lib/$npm_dir"
    cp "$lib" "$out/lib/$npm_dir/libs3vfs.so"
    echo "wheel: $wheel ($(($(stat -c %s "$wheel") / 1024)) KiB; library $(($(stat -c %s "$lib") / 1024)) KiB, also in $out/lib/$npm_dir/)"
done
