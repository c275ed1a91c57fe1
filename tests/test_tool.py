"""The `s3vfs` command: import, export, ls, info, rm and break-lease against a real S3
server, their exit codes and messages, and examples/cli.sh (with its copy in README.md)."""

import json
import os
import random
import re
import sqlite3
import subprocess
import time

import pytest

import s3util

TOOL = str(s3util.ROOT / "target" / "release" / "s3vfs")
COMMANDS = ["import", "export", "ls", "info", "rm", "break-lease"]


@pytest.fixture(autouse=True)
def _tool_built():
    if not os.path.exists(TOOL):
        pytest.fail(f"{TOOL} is missing: run `cargo build --release` (make test does)")


def tool(*args, input=None, env=None):
    """Runs the command; no output of any run may contain the secret key."""
    r = subprocess.run(
        [TOOL, *map(str, args)], input=input, env=env, capture_output=True, text=True, timeout=600
    )
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in r.stdout and secret not in r.stderr, "the secret key was printed"
    return r


def fails(r, code, *phrases):
    """The run exited with `code` and said each phrase on stderr, in one line."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for p in phrases:
        assert p in lines[0], (p, lines[0])


def local_db(path, megabytes, page_size=4096, seed=1, **pragmas):
    """A local SQLite file of about `megabytes` MB in rollback-journal mode."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    db.execute(f"pragma page_size={page_size}")
    for k, v in pragmas.items():
        db.execute(f"pragma {k}={v}")
    db.execute("create table t(id integer primary key, v text)")
    rows = int(megabytes * 1024 * 1024 // 115)
    db.executemany("insert into t(v) values (?)", ((rng.randbytes(50).hex(),) for _ in range(rows)))
    db.commit()
    db.close()
    return path.read_bytes()


def query(bucket, name, sql, **params):
    """Runs `sql` on a database in S3 through the VFS, in the sqlite3 shell."""
    r = s3util.run_cli(f".open '{s3util.uri(name, bucket, **params)}'\n{sql}\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def ls_rows(out):
    """`s3vfs ls` output as {database URL: (size, block size, page size, journal)}."""
    lines = out.strip().splitlines()
    assert lines[0].split() == ["SIZE", "BLOCK_SIZE", "PAGE_SIZE", "JOURNAL", "DATABASE"]
    return {f[4]: tuple(f[:4]) for f in (line.split() for line in lines[1:])}


def info_fields(out):
    return dict(line.split(":", 1) for line in out.strip().splitlines())


@pytest.mark.parametrize("block_size", [None, 65536])
def test_import_query_export_round_trips_byte_for_byte(bucket, tmp_path, block_size):
    data = local_db(tmp_path / "app.db", 3)
    url = f"s3://{bucket}/apps/app.db"
    extra = ["--block-size", block_size] if block_size else []
    r = tool("import", tmp_path / "app.db", url, *extra, "--progress")
    assert r.returncode == 0, r.stderr
    b = block_size or 4096
    assert f"blocks of {b} bytes" in r.stdout and f"{len(data)} bytes" in r.stdout
    # --progress off a terminal: plain lines, ending at 100%.
    assert r.stderr.strip().splitlines()[-1] == f"import: 100% ({len(data)} of {len(data)} bytes)"
    keys = s3util.list_objects(bucket, "")
    assert [k for k, _ in keys] == [f"apps/app.db/{i:010d}" for i in range(-(-len(data) // b))]
    assert all(size == b for _, size in keys[:-1])

    params = {"block_size": block_size} if block_size else {}
    rows = query(bucket, "apps/app.db", "select count(*), sum(length(v)) from t;\npragma integrity_check;", **params)
    n = 3 * 1024 * 1024 // 115
    assert rows == [f"{n}|{n * 100}", "ok"]

    assert ls_rows(tool("ls", f"s3://{bucket}").stdout) == {url: (str(len(data)), str(b), "4096", "-")}

    r = tool("export", url, tmp_path / "copy.db")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "copy.db").read_bytes() == data
    assert r.stderr == ""  # no progress off a terminal unless asked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db", "copy.db"]  # no temporary left


def test_ls_lists_only_databases_under_the_prefix(bucket, tmp_path):
    local_db(tmp_path / "a.db", 0.2)
    local_db(tmp_path / "big.db", 0.3, page_size=8192)
    for src, name, extra in [
        ("a.db", "apps/a.db", []),
        ("big.db", "apps/team/big.db", ["--block-size", 16384]),
        ("a.db", "other/c.db", []),
    ]:
        assert tool("import", tmp_path / src, f"s3://{bucket}/{name}", *extra).returncode == 0
    a_size = (tmp_path / "a.db").stat().st_size
    big_size = (tmp_path / "big.db").stat().st_size
    # A journal beside a.db, and a plain object: neither is a database of its own.
    client = s3util.boto3_client()
    client.put_object(Bucket=bucket, Key="apps/a.db-journal/0000000000", Body=b"\0" * 512)
    client.put_object(Bucket=bucket, Key="apps/notes.txt", Body=b"hello")

    r = tool("ls", f"s3://{bucket}/apps/")
    assert r.returncode == 0, r.stderr
    assert ls_rows(r.stdout) == {
        f"s3://{bucket}/apps/a.db": (str(a_size), "4096", "4096", "yes"),
        f"s3://{bucket}/apps/team/big.db": (str(big_size), "16384", "8192", "-"),
    }
    assert len(ls_rows(tool("ls", f"s3://{bucket}").stdout)) == 3
    r = tool("ls", f"s3://{bucket}/nothing/")
    assert (r.returncode, r.stdout) == (0, "")
    assert "no databases under" in r.stderr


def test_info_shows_the_header_and_a_live_writers_lease(bucket, tmp_path):
    data = local_db(tmp_path / "app.db", 0.5, user_version=7, application_id=1234)
    url = f"s3://{bucket}/apps/app.db"
    assert tool("import", tmp_path / "app.db", url, "--block-size", 8192).returncode == 0
    r = tool("info", url)
    assert r.returncode == 0, r.stderr
    f = {k: v.strip() for k, v in info_fields(r.stdout).items()}
    assert f["database"] == url
    assert f["size"] == f"{len(data)} bytes"
    assert f["page size"] == "4096"
    assert f["page count"] == str(len(data) // 4096)
    assert f["block size"] == f"8192 ({-(-len(data) // 8192)} blocks)"
    assert f["text encoding"] == "UTF-8"
    assert f["user_version"] == "7"
    assert f["application_id"] == "1234"
    assert f["journal mode"].startswith("rollback journal")
    assert f["journal"] == "none"
    assert f["lease"] == "none"

    # A sqlite3 process holds a write transaction open: it holds the lease.
    uri = s3util.uri("apps/app.db", bucket, block_size=8192)
    writer = subprocess.Popen(
        [s3util.SQLITE3, "-batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        writer.stdin.write(f".load {s3util.LIB}\n.open '{uri}'\nbegin immediate;\ninsert into t(v) values ('x');\n")
        writer.stdin.flush()
        lease, client = None, s3util.boto3_client()
        for _ in range(100):
            try:
                body = client.get_object(Bucket=bucket, Key="apps/app.db.s3vfs-lease")["Body"].read()
                lease = json.loads(body)
                if not lease["released"]:
                    break
            except client.exceptions.NoSuchKey:
                pass
            time.sleep(0.1)
        assert lease and not lease["released"], lease
        f = info_fields(tool("info", url).stdout)
        assert f["lease"].strip().startswith("held:"), f["lease"]
        assert f"pid {writer.pid}" in f["lease"] and f"owner {lease['owner']}" in f["lease"]
        assert f"host {lease['host']}" in f["lease"] and "expires" in f["lease"]

        # Nobody deletes or replaces a database under a live writer.
        before = s3util.list_objects(bucket, "")
        fails(tool("rm", "--yes", url), 4, "a writer holds its lease", f"pid {writer.pid}")
        fails(tool("import", "--replace", tmp_path / "app.db", url), 4, "a writer holds its lease")
        assert s3util.list_objects(bucket, "") == before
    finally:
        out, err = writer.communicate("rollback;\n.quit\n", timeout=60)
    assert writer.returncode == 0, err
    f = info_fields(tool("info", url).stdout)
    assert f["lease"].strip().startswith("free (last released by host"), f["lease"]


def test_info_names_a_hot_journal(bucket, tmp_path):
    local_db(tmp_path / "app.db", 0.1)
    url = f"s3://{bucket}/app.db"
    assert tool("import", tmp_path / "app.db", url).returncode == 0
    s3util.boto3_client().put_object(Bucket=bucket, Key="app.db-journal/0000000000", Body=b"\xd9\xd5\x05\xf9" + b"\1" * 508)
    f = info_fields(tool("info", url).stdout)
    assert f["journal"].strip().startswith("present and hot"), f["journal"]


def test_rm_asks_first_and_deletes_everything_of_the_database(bucket, tmp_path):
    local_db(tmp_path / "a.db", 0.2)
    url = f"s3://{bucket}/apps/a.db"
    for name in ["apps/a.db", "apps/a.dbx"]:  # a.dbx shares the name's first characters
        assert tool("import", tmp_path / "a.db", f"s3://{bucket}/{name}").returncode == 0
    client = s3util.boto3_client()
    client.put_object(Bucket=bucket, Key="apps/a.db-journal/0000000000", Body=b"\0" * 4096)
    client.put_object(Bucket=bucket, Key="apps/a.db.s3vfs-readers/1-someone", Body=b"")
    released = {"owner": "gone", "host": "h", "pid": 1, "expires_ms": 0, "released": True}
    client.put_object(Bucket=bucket, Key="apps/a.db.s3vfs-lease", Body=json.dumps(released))
    before = s3util.list_objects(bucket, "")

    for answer in ["n\n", "\n", "", "maybe\n"]:
        r = tool("rm", url, input=answer)
        assert r.returncode == 4, (answer, r.stderr)
        assert "[y/N]" in r.stderr and "nothing was deleted" in r.stderr
        assert s3util.list_objects(bucket, "") == before

    r = tool("rm", url, input="y\n")
    assert r.returncode == 0, r.stderr
    assert "deleted" in r.stdout and "its journal (1 block)" in r.stdout and "1 reader mark" in r.stdout
    assert all(k.startswith("apps/a.dbx/") for k in s3util.list_keys(bucket, ""))

    r = tool("rm", "--yes", f"s3://{bucket}/apps/a.dbx")
    assert r.returncode == 0, r.stderr
    assert s3util.list_keys(bucket, "") == []
    fails(tool("rm", "--yes", url), 3, "no database at", url)


def test_rm_deletes_only_the_databases_own_objects(bucket, tmp_path):
    local_db(tmp_path / "a.db", 0.1)
    for name in ["app", "app/nested.db"]:  # a database nested under another's name
        assert tool("import", tmp_path / "a.db", f"s3://{bucket}/{name}").returncode == 0
    client = s3util.boto3_client()
    others = [
        "app/photos/cat.jpg",  # a user's file
        "app/123",  # not a 10-digit block key
        "app/00000000001",  # 11 digits
        "app-journal/notes.txt",
        "app.s3vfs-readers/readme.txt",  # not a mark
    ]
    for key in others:
        client.put_object(Bucket=bucket, Key=key, Body=b"mine")
    client.put_object(Bucket=bucket, Key="app-journal/0000000000", Body=b"\0" * 512)
    client.put_object(Bucket=bucket, Key="app.s3vfs-readers/1700000000000-r1", Body=b"{}")
    nested = s3util.list_keys(bucket, "app/nested.db/")
    assert nested

    r = tool("rm", "--yes", f"s3://{bucket}/app")
    assert r.returncode == 0, r.stderr
    assert "its journal (1 block)" in r.stdout and "1 reader mark" in r.stdout, r.stdout
    # Under app/: the nested database's blocks and the three files.
    assert f"{len(nested) + 3} other objects under" in r.stdout and "left alone" in r.stdout, r.stdout
    assert sorted(s3util.list_keys(bucket, "")) == sorted(nested + others)
    # The nested database is whole and still listed.
    assert list(ls_rows(tool("ls", f"s3://{bucket}").stdout)) == [f"s3://{bucket}/app/nested.db"]
    assert query(bucket, "app/nested.db", "pragma integrity_check;") == ["ok"]


def test_rm_refuses_a_name_without_a_database(bucket):
    client = s3util.boto3_client()
    keys = ["docs/photos/cat.jpg", "docs/123", "docs/0000000001", "docs.s3vfs-readers/1-someone"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"mine")
    before = s3util.list_objects(bucket, "")
    for args in [["--yes"], []]:
        r = tool("rm", *args, f"s3://{bucket}/docs", input="y\n")
        fails(r, 3, "no database at", f"s3://{bucket}/docs", "the 3 objects under")
        assert "[y/N]" not in r.stderr
    assert s3util.list_objects(bucket, "") == before


def test_ls_lists_no_journal_as_a_database_and_ignores_non_block_keys(bucket, tmp_path):
    local_db(tmp_path / "x.db", 0.05)
    assert tool("import", tmp_path / "x.db", f"s3://{bucket}/x.db").returncode == 0
    client = s3util.boto3_client()
    # x.db's journal holds a block 0 (a database header, even); y.db's only block 1.
    client.put_object(Bucket=bucket, Key="x.db-journal/0000000000", Body=(tmp_path / "x.db").read_bytes()[:4096])
    assert tool("import", tmp_path / "x.db", f"s3://{bucket}/y.db").returncode == 0
    client.put_object(Bucket=bucket, Key="y.db-journal/0000000001", Body=b"\1" * 512)
    for key in ["z/123", "z/00000000000", "z/0000000000.bak", "z/0000000000/notes.txt", "0000000000"]:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    rows = ls_rows(tool("ls", f"s3://{bucket}").stdout)
    assert {k: v[3] for k, v in rows.items()} == {f"s3://{bucket}/x.db": "yes", f"s3://{bucket}/y.db": "yes"}


def lease_record(**fields):
    record = {"owner": "w1", "host": "far-host", "pid": 4242, "expires_ms": 99_999_999_999_999, "released": False}
    return json.dumps({**record, **fields})


def test_break_lease_asks_and_releases_a_stuck_lease(bucket, tmp_path):
    local_db(tmp_path / "app.db", 0.05)
    url = f"s3://{bucket}/app.db"
    assert tool("import", tmp_path / "app.db", url).returncode == 0
    fails(tool("break-lease", "--yes", url), 3, "no lease at", url)
    # A writer whose clock ran centuries ahead: its lease never expires by itself.
    client = s3util.boto3_client()
    client.put_object(Bucket=bucket, Key="app.db.s3vfs-lease", Body=lease_record())
    fails(tool("rm", "--yes", url), 4, "a writer holds its lease", "pid 4242")

    for answer in ["n\n", "", "later\n"]:
        r = tool("break-lease", url, input=answer)
        fails(r, 4, "not confirmed", "left as it is")
        assert "host far-host, pid 4242" in r.stderr and "[y/N]" in r.stderr
    assert json.loads(client.get_object(Bucket=bucket, Key="app.db.s3vfs-lease")["Body"].read()) == json.loads(lease_record())

    r = tool("break-lease", url, input="y\n")
    assert r.returncode == 0, r.stderr
    assert "broke the lease" in r.stdout and "pid 4242" in r.stdout
    lease = json.loads(client.get_object(Bucket=bucket, Key="app.db.s3vfs-lease")["Body"].read())
    assert lease["released"] and lease["owner"] == "broken:w1", lease
    assert info_fields(tool("info", url).stdout)["lease"].strip().startswith("free")
    # Free already: nothing to do, nothing asked.
    r = tool("break-lease", url)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert "free already" in r.stdout
    # Writers can write again.
    assert query(bucket, "app.db", "insert into t(v) values ('after');\nselect count(*) from t where v = 'after';") == ["1"]

    # --yes breaks without asking.
    client.put_object(Bucket=bucket, Key="app.db.s3vfs-lease", Body=lease_record(owner="w2"))
    r = tool("break-lease", "--yes", url)
    assert r.returncode == 0 and "[y/N]" not in r.stderr, r.stderr
    assert tool("rm", "--yes", url).returncode == 0
    assert s3util.list_keys(bucket, "") == []


def test_command_messages_name_options_not_uri_parameters(bucket, tmp_path):
    uri_terms = ["bucket=", "endpoint=", "region=", "profile=", "S3VFS_BUCKET"]

    def says(r, code, *phrases):
        fails(r, code, *phrases)
        assert not any(t in r.stderr for t in uri_terms), r.stderr

    says(tool("ls", f"s3://{bucket}", "--endpoint", "localhost:9"), 2, "expected e.g. --endpoint http://127.0.0.1:9000")
    says(tool("ls", f"s3://{bucket}", "--endpoint", "http://127.0.0.1:9"), 1, "check --endpoint / AWS_ENDPOINT_URL_S3")
    says(tool("info", "s3://no-such-bucket-s3vfs/x.db"), 2, "fix the bucket in the URL (and --endpoint / --region)")
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ENDPOINT_URL_S3": s3util.endpoint()}
    says(tool("ls", f"s3://{bucket}", "--profile", "nobody", env=bare), 2, "add profile [nobody]", "AWS_PROFILE or --profile")
    local_db(tmp_path / "a.db", 0.05)
    says(tool("import", tmp_path / "a.db", f"s3://{bucket}/a.db", "--block-size", "lots"), 2,
         "block_size 'lots' is not a positive integer", "set by --block-size or S3VFS_BLOCK_SIZE")
    says(tool("ls", f"s3://{bucket}", "--concurrency", "0"), 2, "concurrency '0' must be an integer in 1..=256", "--concurrency")


def test_refusals_change_nothing(bucket, tmp_path):
    data = local_db(tmp_path / "app.db", 0.3)
    small = local_db(tmp_path / "small.db", 0.05, seed=2)
    url = f"s3://{bucket}/app.db"
    assert tool("import", tmp_path / "app.db", url).returncode == 0
    before = s3util.list_objects(bucket, "")

    # Import over an existing database: only with --replace, which leaves no stale block.
    fails(tool("import", tmp_path / "small.db", url), 4, "already holds a database", "--replace")
    assert s3util.list_objects(bucket, "") == before
    assert tool("import", "--replace", tmp_path / "small.db", url).returncode == 0
    assert len(s3util.list_keys(bucket, "")) == len(small) // 4096

    # Export onto an existing file: only with --force.
    (tmp_path / "out.db").write_bytes(b"precious")
    fails(tool("export", url, tmp_path / "out.db"), 4, "already exists", "--force")
    assert (tmp_path / "out.db").read_bytes() == b"precious"
    assert tool("export", "--force", url, tmp_path / "out.db").returncode == 0
    assert (tmp_path / "out.db").read_bytes() == small

    # A stale journal beside the target would be applied to the copy by SQLite.
    (tmp_path / "new.db-journal").write_bytes(b"old")
    fails(tool("export", url, tmp_path / "new.db"), 4, "new.db-journal exists")
    assert not (tmp_path / "new.db").exists()

    # Files that are not SQLite databases, or not in a mode s3vfs can open.
    (tmp_path / "notes.csv").write_text("id,body\n1,hello\n" * 100)
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "cut.db").write_bytes(data[: len(data) // 2])
    local_db(tmp_path / "wal.db", 0.05, journal_mode="wal")
    for name, phrase in [
        ("notes.csv", "does not start with the SQLite header"),
        ("empty.db", "it is empty"),
        ("cut.db", "truncated"),
        ("wal.db", "WAL mode"),
    ]:
        r = tool("import", tmp_path / name, f"s3://{bucket}/new/{name}")
        fails(r, 4, "is not a SQLite database" if name != "wal.db" else "journal_mode=delete", phrase)
        assert "nothing was written" in r.stderr
    assert s3util.list_keys(bucket, "new/") == []


def test_usage_and_configuration_errors(bucket, tmp_path):
    local_db(tmp_path / "app.db", 0.05)
    db = tmp_path / "app.db"
    # Bad URLs and missing things.
    fails(tool("import", db, "http://example.com/x.db"), 2, "is not an S3 URL", "s3://bucket/path/to/db")
    fails(tool("info", "s3:///x.db"), 2, "names no bucket")
    fails(tool("info", f"s3://{bucket}/"), 2, "names no database")
    fails(tool("export", f"s3://{bucket}/dir/", tmp_path / "x.db"), 2, "names no database")
    fails(tool("import", tmp_path / "missing.db", f"s3://{bucket}/x.db"), 3, "missing.db does not exist")
    fails(tool("export", f"s3://{bucket}/nothing.db", tmp_path / "x.db"), 3, "no database at", "nothing.db")
    fails(tool("info", f"s3://{bucket}/nothing.db"), 3, "no database at")
    fails(tool("import", db, f"s3://{bucket}/x.db", "--block-size", "100"), 2, "block_size 100 is out of range")
    fails(tool("ls", f"s3://{bucket}", "--endpoint", "localhost:9"), 2, "invalid endpoint URL", "--endpoint")
    # Unknown bucket.
    fails(tool("info", "s3://no-such-bucket-s3vfs/x.db"), 2, "bucket 'no-such-bucket-s3vfs' does not exist", "--endpoint")
    fails(tool("import", db, "s3://no-such-bucket-s3vfs/x.db"), 2, "does not exist")
    # No credentials at all, then a wrong secret.
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ENDPOINT_URL_S3": s3util.endpoint()}
    fails(tool("ls", f"s3://{bucket}", env=bare), 2, "no S3 credentials found", "AWS_ACCESS_KEY_ID")
    wrong = dict(os.environ, AWS_SECRET_ACCESS_KEY="not-" + os.environ["AWS_SECRET_ACCESS_KEY"])
    r = subprocess.run([TOOL, "ls", f"s3://{bucket}"], env=wrong, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "secret key does not match" in r.stderr, r.stderr
    assert wrong["AWS_SECRET_ACCESS_KEY"] not in r.stdout + r.stderr
    # Unreachable endpoint: the operation failed.
    fails(tool("ls", f"s3://{bucket}", "--endpoint", "http://127.0.0.1:9"), 1, "cannot reach the S3 endpoint http://127.0.0.1:9")
    # clap: unknown command or option.
    assert tool("frobnicate").returncode == 2
    assert tool("import", "--bogus", db, f"s3://{bucket}/x.db").returncode == 2


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_exits_0_and_documents_the_exit_codes(command):
    r = tool(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    assert "Exit codes:" in r.stdout
    for line in ["0  ok", "1  the operation failed", "2  usage or configuration error", "3  not found", "4  refused"]:
        assert line in r.stdout, line


def test_the_example_session_runs(bucket):
    env = dict(os.environ, S3VFS_BUCKET=bucket)
    r = subprocess.run(["bash", "examples/cli.sh"], cwd=s3util.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 notes" in r.stdout.splitlines()
    assert "the export is byte-identical" in r.stdout
    assert f"s3://{bucket}/examples/cli.db" in r.stdout
    assert s3util.list_keys(bucket, "") == []


def test_readme_shows_the_example_session():
    readme = (s3util.ROOT / "README.md").read_text()
    blocks = re.findall(r"^### [^\n]*`examples/cli\.sh`\n.*?```sh\n(.*?)```", readme, re.S | re.M)
    assert len(blocks) == 1
    source = (s3util.ROOT / "examples" / "cli.sh").read_text()
    # The README shows the file from `set -euo pipefail` on, without its header comment.
    assert blocks[0] == source[source.index("set -euo pipefail"):]


@pytest.mark.slow
@pytest.mark.parametrize("megabytes,block_size", [(10, 4096), (50, 65536)])
def test_throughput(bucket, tmp_path, megabytes, block_size):
    """Not a check: prints import and export speed against the local server."""
    data = local_db(tmp_path / "src.db", megabytes)
    url = f"s3://{bucket}/bench.db"
    times = {}
    for step, args in [
        ("import", ["import", tmp_path / "src.db", url, "--block-size", block_size]),
        ("export", ["export", url, tmp_path / "out.db"]),
    ]:
        t = time.perf_counter()
        r = tool(*args)
        times[step] = time.perf_counter() - t
        assert r.returncode == 0, r.stderr
        requests = re.search(r"(\d+) requests", r.stdout).group(1)
        print(f"\n{step} {len(data) / 1e6:.1f} MB, {block_size}-byte blocks: {times[step]:.2f} s, "
              f"{len(data) / 1e6 / times[step]:.1f} MB/s, {requests} requests")
    assert (tmp_path / "out.db").read_bytes() == data
