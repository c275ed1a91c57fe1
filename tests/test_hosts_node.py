"""The Node package installs into a fresh project, and the README's Node example runs there.

`npm pack` packs node/ with the portable libraries `make wheel` left in dist/lib/ (one per
platform, through S3VFS_PREBUILT_LIB_LINUX_X64 / _LINUX_ARM64, as a release would), or with
target/release's library when that one is newer (a developer who rebuilt the crate without
`make wheel` tests the code they built), and `npm install --offline` installs that tarball
into a fresh project, as a user installs it. better-sqlite3 is the one scripts/install-deps.sh compiled into node/node_modules
(the package's devDependency), linked into the project: nothing is downloaded at test time.
Each Node program runs from a directory of its own inside the project, as a user's script
would, with its settings in the environment, against the local S3 server.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

import s3util
import sqlutil
import wheels

NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"
PACKAGE = s3util.ROOT / "node"
BETTER_SQLITE3 = PACKAGE / "node_modules" / "better-sqlite3"
EXAMPLE = s3util.ROOT / "examples" / "node_better_sqlite3.js"


def npm(args, cwd, env=None):
    r = subprocess.run([NPM, *args], cwd=cwd, env=env or os.environ, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"npm {' '.join(args)}:\n{r.stdout}{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def node_app(shared_tmp):
    """A fresh npm project with the packed s3vfs installed and better-sqlite3 linked in:
    made once per test run and shared by the xdist workers."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.fail("node and npm are missing: run scripts/install-deps.sh (make test does)")
    if not (BETTER_SQLITE3 / "build" / "Release" / "better_sqlite3.node").is_file():
        pytest.fail(f"{BETTER_SQLITE3} is not built: run scripts/install-deps.sh (make test does)")
    app = shared_tmp / "node-app"
    with s3util.file_lock(shared_tmp / "node-package.lock"):
        if not (app / "ready").exists():
            packs = shared_tmp / "node-pack"
            packs.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith("S3VFS_PREBUILT_LIB")}
            # Copies, as the libraries may be rebuilt while the tests run.
            for platform, lib in packed_libraries().items():
                shutil.copyfile(lib, packs / f"{platform}.so")
                env["S3VFS_PREBUILT_LIB_" + platform.upper().replace("-", "_")] = str(packs / f"{platform}.so")
            start = time.monotonic()
            [packed] = json.loads(npm(["pack", "--json", "--pack-destination", str(packs)],
                                      PACKAGE, env))
            pack_seconds = time.monotonic() - start
            (packs / "files.json").write_text(json.dumps(sorted(f["path"] for f in packed["files"])))
            app.mkdir()
            (app / "package.json").write_text('{"name": "app", "private": true}\n')
            start = time.monotonic()
            npm(["install", "--offline", "--no-audit", "--no-fund", str(packs / packed["filename"])], app)
            install_seconds = time.monotonic() - start
            # After the install: npm would remove a package its package.json does not list.
            (app / "node_modules" / "better-sqlite3").symlink_to(BETTER_SQLITE3)
            (app / "ready").write_text(
                f"npm pack took {pack_seconds:.1f} s, npm install of the tarball {install_seconds:.1f} s\n"
            )
    print((app / "ready").read_text())
    return app


def packed_libraries():
    """{npm platform: library} to pack: dist/lib/'s portable ones, unless target/release's
    library is newer (then it alone, for this machine's platform)."""
    native = s3util.ROOT / "target" / "release" / "libs3vfs.so"
    here = wheels.NPM_DIR[wheels.HOST]
    portable = {wheels.NPM_DIR[a]: wheels.portable_lib(a) for a in wheels.NPM_DIR if wheels.portable_lib(a)}
    if here in portable and portable[here].stat().st_mtime >= native.stat().st_mtime:
        return portable
    print(f"packing {native}: dist/lib/{here} is missing or older (make wheel makes it)")
    return {here: native}


@pytest.fixture
def run_dir(node_app):
    """An empty directory in the project, where a test's programs run and nothing may stay."""
    d = node_app / "runs" / uuid.uuid4().hex
    d.mkdir(parents=True)
    return d


def run_node(args, cwd, bucket=None, env=None):
    """Runs node as a user would, with the local server's settings (AWS_*) in the
    environment, S3VFS_BUCKET if given, and `env` on top; returns the completed process."""
    # SQLITE_USE_URI from the developer's shell would change what require('s3vfs') does.
    env = {k: v for k, v in os.environ.items() if k != "SQLITE_USE_URI"} | (env or {})
    if bucket:
        env["S3VFS_BUCKET"] = bucket
    r = subprocess.run([NODE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def run_js(code, cwd, *argv, **kw):
    """Runs `code` as a script file in `cwd` (so require() finds the project's packages),
    then removes the file; returns the lines it printed."""
    script = cwd / f"script-{uuid.uuid4().hex[:8]}.js"
    script.write_text(code)
    try:
        return run_node([script.name, *argv], cwd, **kw).stdout.splitlines()
    finally:
        script.unlink()


def leftovers(d):
    return sorted(p.name for p in d.iterdir())


def test_pack_ships_the_built_library_and_load_finds_it_in_the_installed_package(
    node_app, shared_tmp, run_dir
):
    files = json.loads((shared_tmp / "node-pack" / "files.json").read_text())
    platforms = sorted(p.stem for p in (shared_tmp / "node-pack").glob("*.so"))
    here = wheels.NPM_DIR[wheels.HOST]
    assert here in platforms
    assert files == sorted(["README.md", "index.d.ts", "index.js", "package.json"]
                           + [f"lib/{p}/libs3vfs.so" for p in platforms])
    out = run_js("""
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
console.log(require.resolve('s3vfs'));
console.log(s3vfs.getLoadablePath());
const db = s3vfs.load(new Database(':memory:'));
console.log(db.prepare('select s3vfs_version()').pluck().get());
console.log(require('better-sqlite3/package.json').version, db.prepare('select sqlite_version()').pluck().get());
""", run_dir)
    resolved, path, version, host = out
    installed = node_app / "node_modules" / "s3vfs"
    assert resolved == str(installed / "index.js")
    assert path == str(installed / "lib" / here / "libs3vfs.so")
    for platform in platforms:
        with open(installed / "lib" / platform / "libs3vfs.so", "rb") as shipped, \
                open(shared_tmp / "node-pack" / f"{platform}.so", "rb") as built:
            assert shipped.read() == built.read()
    print(f"packed for {', '.join(platforms)}; {here} needs GLIBC_"
          + ".".join(map(str, wheels.glibc_ceiling(path))))
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    # The versions the README says were tested are the ones installed here.
    better_sqlite3, sqlite = host.split()
    readme = (s3util.ROOT / "README.md").read_text()
    assert f"better-sqlite3 {better_sqlite3} (SQLite {sqlite})" in readme, host


def test_example_does_crud_across_a_reopen_and_a_new_process_reads_the_result(
    node_app, run_dir, bucket
):
    shutil.copyfile(EXAMPLE, run_dir / EXAMPLE.name)  # the user's copy of the example
    out = run_node([EXAMPLE.name], run_dir, bucket).stdout.splitlines()
    assert out[:3] == [
        'created: [["write",0],["test",0],["ship",0]]',
        'after reopen: [["write",0],["test",0],["ship",0]]',
        'after update and delete: [["write",1],["test",0]]',
    ]
    assert re.fullmatch(r"s3vfs \d+\.\d+\.\d+", out[3]) and len(out) == 4, out
    assert leftovers(run_dir) == [EXAMPLE.name]  # nothing of the database on local disk
    assert "examples/todo.db/0000000000" in s3util.list_keys(bucket, "examples/todo.db/")
    # Another Node process finds what the first one left in S3.
    rows = run_js("""
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
s3vfs.load(new Database(':memory:'));
const db = new Database('file:examples/todo.db?vfs=s3', { readonly: true });
console.log(JSON.stringify(db.prepare('select id, title, done from todos order by id').raw().all()));
""", run_dir, bucket=bucket)
    assert rows == ['[[1,"write",1],[2,"test",0]]']
    # It starts from an empty table, so it can run again.
    assert run_node([EXAMPLE.name], run_dir, bucket).stdout.splitlines() == out


WRITE_FROM_NODE = """
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
s3vfs.load(new Database(':memory:'));
const db = new Database(process.argv[2]);
db.exec('create table t(id integer primary key, body text, data blob)');
const insert = db.prepare('insert into t(body, data) values (?, ?)');
db.transaction(() => {
  for (let i = 1; i <= 300; i++) insert.run(`row ${i}`, Buffer.alloc(100 + i, i % 256));
})();
db.close();
"""


def test_a_database_written_from_node_is_read_by_the_sqlite3_shell(node_app, run_dir, bucket):
    uri = s3util.uri("interop/from-node.db", bucket)
    run_js(WRITE_FROM_NODE, run_dir, uri)
    r = s3util.run_cli(f"""
.open '{uri}'
select count(*), sum(id), min(body), max(body), sum(length(data)) from t;
select hex(substr(data, 1, 4)), length(data) from t where id in (1, 255, 256) order by id;
pragma integrity_check;
""")
    assert r.returncode == 0, r.stderr
    total = sum(100 + i for i in range(1, 301))
    assert r.stdout.split("\n") == [
        f"300|45150|row 1|row 99|{total}",
        "01010101|101",
        "FFFFFFFF|355",
        "00000000|356",
        "ok",
        "",
    ]
    assert leftovers(run_dir) == []


def test_a_database_written_by_the_sqlite3_shell_is_read_and_changed_from_node(
    node_app, run_dir, bucket
):
    uri = s3util.uri("interop/from-cli.db", bucket)
    w = s3util.run_cli(f"""
.open '{uri}'
create table t(id integer primary key, body text);
with recursive c(x) as (select 1 union all select x + 1 from c where x < 500)
insert into t(body) select printf('cli %03d', x) from c;
""")
    assert w.returncode == 0, w.stderr
    out = run_js("""
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
s3vfs.load(new Database(':memory:'));
const db = new Database(process.argv[2]);
console.log(JSON.stringify(db.prepare('select count(*), min(body), max(body) from t').raw().get()));
db.prepare("update t set body = 'node' where id = 7").run();
console.log(db.pragma('integrity_check', { simple: true }));
db.close();
""", run_dir, uri)
    assert out == ['[500,"cli 001","cli 500"]', "ok"]
    r = s3util.run_cli(f".open '{uri}'\nselect body from t where id in (6, 7, 8) order by id;\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == ["cli 006", "node", "cli 008", ""]


def test_local_files_and_memory_databases_still_work_beside_s3_ones(node_app, run_dir, bucket):
    out = run_js("""
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
const mem = s3vfs.load(new Database(':memory:'));
const s3 = new Database('file:mixed/remote.db?vfs=s3');
const local = new Database('local.db');
for (const db of [mem, s3, local]) {
  db.exec("create table t(x); insert into t values ('hello')");
}
s3.close();
local.close();
const again = new Database('local.db', { fileMustExist: true });
console.log(again.prepare('select x from t').pluck().get(), mem.prepare('select x from t').pluck().get());
""", run_dir, bucket=bucket)
    assert out == ["hello hello"]
    # local.db is an ordinary SQLite file (read here without the extension), next to nothing
    # else: no stray file named after the s3 URI.
    assert leftovers(run_dir) == ["local.db"]
    import sqlite3

    with contextlib.closing(sqlite3.connect(run_dir / "local.db")) as plain:
        assert plain.execute("select x from t").fetchall() == [("hello",)]
    keys = s3util.list_keys(bucket, "")
    assert "mixed/remote.db/0000000000" in keys
    assert all(k.startswith("mixed/remote.db") for k in keys), keys
    assert sqlutil.connect("mixed/remote.db", bucket).execute("select x from t").fetchall() == [("hello",)]


# What `load` says when the SQLite it is given reads `file:` names as plain paths.
URIS_OFF = "s3vfs: URI filenames are off in this better-sqlite3's SQLite, so 'file:...?vfs=s3' would open a local file of that name"


@pytest.mark.parametrize("env, code, why", [
    pytest.param(
        {"SQLITE_USE_URI": "0"},
        "const s3vfs = require('s3vfs');\nconst Database = require('better-sqlite3');\n"
        "const db = new Database(':memory:');\n",
        'SQLITE_USE_URI is "0" here.',
        id="SQLITE_USE_URI=0",
    ),
    pytest.param(
        {},
        "const Database = require('better-sqlite3');\nconst db = new Database(':memory:');\n"
        "const s3vfs = require('s3vfs');\n",
        'SQLITE_USE_URI is "1" now, so it was set after the addon had loaded',
        id="s3vfs-required-after-the-first-database",
    ),
])
def test_load_refuses_a_sqlite_with_uri_filenames_off(node_app, run_dir, env, code, why):
    script = code + """
try {
  s3vfs.load(db);
  console.log('loaded');
} catch (e) {
  console.log(e.constructor.name + ': ' + e.message);
}
// What the check protects from: the URI is a plain file name here.
new Database('file:guarded.db?vfs=s3').close();
"""
    out = run_js(script, run_dir, env=env)
    assert len(out) == 1 and out[0].startswith("Error: " + URIS_OFF), out
    assert why in out[0], out
    assert "start node with SQLITE_USE_URI=1" in out[0]
    assert leftovers(run_dir) == ["file:guarded.db?vfs=s3"]


WORKER = """
const { Worker, isMainThread, parentPort } = require('worker_threads');
if (isMainThread) {
  if (process.argv[2] === 'main-requires-s3vfs') require('s3vfs');
  new Worker(__filename).on('message', (m) => console.log(m));
} else {
  const s3vfs = require('s3vfs');
  const Database = require('better-sqlite3');
  try {
    s3vfs.load(new Database(':memory:'));
    const db = new Database('file:worker/w.db?vfs=s3');
    db.exec('create table t(x); insert into t values (1)');
    parentPort.postMessage('worker wrote ' + db.prepare('select count(*) from t').pluck().get());
  } catch (e) {
    parentPort.postMessage(e.message);
  }
}
"""


def test_a_worker_thread_needs_s3vfs_required_by_the_main_thread(node_app, run_dir, bucket):
    # A worker's process.env is a copy that better-sqlite3's getenv() never sees.
    [alone] = run_js(WORKER, run_dir, bucket=bucket)
    assert alone.startswith(URIS_OFF) and "in a worker thread" in alone, alone
    assert run_js(WORKER, run_dir, "main-requires-s3vfs", bucket=bucket) == ["worker wrote 1"]
    assert "worker/w.db/0000000000" in s3util.list_keys(bucket, "worker/w.db/")
    assert leftovers(run_dir) == []


@pytest.mark.parametrize("platform, arch", [("linux", "riscv64"), ("darwin", "arm64")])
def test_an_unsupported_platform_gets_an_error_naming_the_platforms_packed(
    node_app, shared_tmp, run_dir, platform, arch
):
    out = run_js(f"""
Object.defineProperty(process, 'platform', {{ value: '{platform}' }});
Object.defineProperty(process, 'arch', {{ value: '{arch}' }});
const s3vfs = require('s3vfs');
const Database = require('better-sqlite3');
for (const f of [() => s3vfs.getLoadablePath(), () => s3vfs.load(new Database(':memory:'))]) {{
  try {{ f(); console.log('no error'); }} catch (e) {{ console.log(e.constructor.name + ': ' + e.message); }}
}}
""", run_dir)
    packed = " and ".join(p.stem for p in sorted((shared_tmp / "node-pack").glob("*.so"),
                                                   key=lambda p: ["linux-x64", "linux-arm64"].index(p.stem)))
    want = (f"Error: s3vfs: no library for {platform}-{arch}: this package carries the extension "
            f"for {packed} only (Linux with glibc 2.17 or later).")
    assert len(out) == 2 and all(line.startswith(want) for line in out), out


def test_load_rejects_what_is_not_a_better_sqlite3_database(node_app, run_dir):
    out = run_js("""
try { require('s3vfs').load({}); } catch (e) { console.log(e.constructor.name + ': ' + e.message); }
""", run_dir)
    assert out == ["TypeError: s3vfs.load(db): db must be a better-sqlite3 Database"]


def test_readme_node_example_is_the_example_file():
    readme = (s3util.ROOT / "README.md").read_text()
    # Each "### Host: `examples/<file>.js`" heading, and the first js block after it.
    heading_then_block = r"^### [^\n]*`(examples/\w+\.js)`\n.*?```js\n(.*?)```"
    blocks = dict(re.findall(heading_then_block, readme, re.S | re.M))
    assert sorted(blocks) == ["examples/node_better_sqlite3.js"]
    source = EXAMPLE.read_text()
    # The README shows the file without its header comment.
    code = source.split("*/\n", 1)[1].lstrip("\n")
    assert blocks["examples/node_better_sqlite3.js"] == code, "README.md's Node block differs from the file"
