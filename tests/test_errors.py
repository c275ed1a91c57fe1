"""Bad settings fail at open with a message that says what to fix, and write nothing.

SQLite reports any failed open as "unable to open database file"; s3vfs adds its own
explanation on stderr (and in sqlite3_log and s3vfs_last_error()), which is what a person
sees in the sqlite3 shell and in a Python traceback's output.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import s3util
import sqlutil


def env_with(**changes):
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def open_in_cli(db_uri, env):
    return s3util.run_cli(f".open '{db_uri}'\ncreate table t(x);\n", env=env)


def open_in_python(db_uri, env):
    script = textwrap.dedent(f"""
        import sqlite3
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension({s3util.LIB!r})
        try:
            sqlite3.connect({db_uri!r}, uri=True).execute("create table t(x)")
        except sqlite3.Error as e:
            print("ERROR", type(e).__name__, e)
            print("LAST", boot.execute("select s3vfs_last_error()").fetchone()[0])
    """)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


HTML_ENDPOINT = []


@pytest.fixture(scope="module", autouse=True)
def html_server():
    """A web server that answers every request with an HTML page, as a wrong endpoint would."""
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    HTML_ENDPOINT.append(f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


def no_bucket_uri(bucket):
    return s3util.uri("errors/db", bucket).replace(f"bucket={bucket}&", "").replace(f"&bucket={bucket}", "")


CASES = {
    "missing bucket": (no_bucket_uri, {"S3VFS_BUCKET": None}, "no bucket configured"),
    "unknown bucket": (lambda b: s3util.uri("errors/db", "no-such-bucket-s3vfs"), {}, "bucket 'no-such-bucket-s3vfs' does not exist"),
    "unknown access key": (lambda b: s3util.uri("errors/db", b), {"AWS_ACCESS_KEY_ID": "AKIANOTAREALKEY00000"}, "does not know this access key"),
    "wrong secret": (lambda b: s3util.uri("errors/db", b), {"AWS_SECRET_ACCESS_KEY": "wrong-secret-value-123"}, "secret key does not match"),
    "unreachable endpoint": (
        lambda b: s3util.uri("errors/db", b, endpoint="http://127.0.0.1:9"),
        {},
        "cannot reach the S3 endpoint http://127.0.0.1:9",
    ),
    "invalid endpoint": (lambda b: s3util.uri("errors/db", b, endpoint="ftp://x"), {}, "invalid endpoint URL"),
    "bad block size": (lambda b: s3util.uri("errors/db", b, block_size="abc"), {}, "block_size 'abc' is not a positive integer"),
    "zero block size": (lambda b: s3util.uri("errors/db", b, block_size="0"), {}, "block_size 0 is out of range"),
    "huge block size": (lambda b: s3util.uri("errors/db", b, block_size="67108864"), {}, "block_size 67108864 is out of range"),
    "negative block size": (lambda b: s3util.uri("errors/db", b, block_size="-4096"), {}, "block_size '-4096' is not a positive integer"),
    "unknown URI parameter": (lambda b: s3util.uri("errors/db", b, bukcet="x"), {}, "unknown URI parameter 'bukcet'"),
    "endpoint is not S3": (lambda b: s3util.uri("errors/db", b, endpoint=HTML_ENDPOINT[0]), {}, "did not answer like an S3 server"),
    "missing credentials": (
        lambda b: s3util.uri("errors/db", b),
        {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_PROFILE": None, "HOME": "/nonexistent"},
        "no S3 credentials found",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_open_fails_clearly_in_cli_and_python(bucket, case):
    make_uri, changes, expected = CASES[case]
    env = env_with(**changes)
    db_uri = make_uri(bucket)

    cli = open_in_cli(db_uri, env)
    assert expected in cli.stderr, cli.stderr
    assert "unable to open database" in cli.stderr

    py = open_in_python(db_uri, env)
    assert expected in py.stderr, py.stderr
    assert "ERROR OperationalError unable to open database file" in py.stdout, py.stdout
    assert expected in py.stdout.split("LAST", 1)[1]

    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in cli.stderr + py.stderr + py.stdout
    assert s3util.list_keys(bucket, "") == []


def test_each_case_has_its_own_message():
    messages = [expected for _, _, expected in CASES.values()]
    assert len(set(messages)) == len(messages)


def test_block_size_that_does_not_match_the_stored_blocks_is_refused(bucket):
    conn = sqlutil.connect("errors/sized.db", bucket, block_size=4096)
    conn.execute("create table t(v)")
    conn.executemany("insert into t values (?)", (("z" * 1000,) for _ in range(20)))
    conn.close()
    before = sqlutil.stored_bytes(bucket, "errors/sized.db")

    cli = open_in_cli(s3util.uri("errors/sized.db", bucket, block_size=65536), dict(os.environ))
    assert "stored in 4096-byte blocks but block_size is 65536" in cli.stderr, cli.stderr
    assert "block_size=4096" in cli.stderr
    assert sqlutil.stored_bytes(bucket, "errors/sized.db") == before


def test_read_only_open_of_a_missing_database_says_so(bucket):
    cli = open_in_cli(s3util.uri("errors/absent.db", bucket, mode="ro"), dict(os.environ))
    assert "no database at s3://" in cli.stderr, cli.stderr
    assert s3util.list_keys(bucket, "") == []
