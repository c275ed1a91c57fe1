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

import proxy as proxymod
import procs
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


AWS_FRONTS = {}
TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENthatTheServerRejects0123456789"


def _aws_error(code, message, **fields):
    extra = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>0</RequestId></Error>".encode()


def _signing_region(headers):
    # Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/s3/aws4_request, ...
    cred = headers.get("Authorization", "").split("Credential=", 1)[-1].split(",", 1)[0]
    parts = cred.split("/")
    return parts[2] if len(parts) > 2 else ""


def bucket_in_eu_west_1(method, path, headers):
    """AWS's answer to a request signed for the wrong region of a bucket in eu-west-1."""
    region = _signing_region(headers)
    if region == "eu-west-1":
        return None
    return 400, _aws_error(
        "AuthorizationHeaderMalformed",
        f"The authorization header is malformed; the region '{region}' is wrong; expecting 'eu-west-1'",
        Region="eu-west-1",
    )


def server_clock_an_hour_ahead(method, path, headers):
    """AWS's answer when the request's X-Amz-Date is more than 15 minutes from its clock."""
    import datetime

    server = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    sent = datetime.datetime.strptime(headers.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if abs((server - sent).total_seconds()) <= 900:
        return None
    return 403, _aws_error(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        RequestTime=sent.strftime("%Y%m%dT%H%M%SZ"),
        ServerTime=server.strftime("%Y-%m-%dT%H:%M:%SZ"),
        MaxAllowedSkewMilliseconds=900000,
    )


@pytest.fixture(scope="module", autouse=True)
def aws_fronts():
    """The local server behind proxies that make two checks moto does not make and AWS
    S3 does, answering as AWS does: the signing region of a bucket in eu-west-1, and the
    request time against a server clock that is an hour ahead."""
    started = []
    for name, judge in [("eu-west-1", bucket_in_eu_west_1), ("skewed", server_clock_an_hour_ahead)]:
        url, px = proxymod.start(s3util.endpoint(), judge=judge)
        AWS_FRONTS[name] = url
        started.append(px)
    yield
    for px in started:
        px.stop()


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
    "invalid session token": (lambda b: s3util.uri("errors/db", b), {"AWS_SESSION_TOKEN": TOKEN}, "the session token is invalid or expired"),
    "empty database name": (
        lambda b: s3util.uri("errors/db", b).replace("file:errors/db?", "file:?"),
        {},
        "the database name is empty",
    ),
    "name ending in a slash": (lambda b: s3util.uri("errors/db/", b), {}, "ends with '/'"),
    "bucket in another region": (
        lambda b: s3util.uri("errors/db", b, endpoint=AWS_FRONTS["eu-west-1"]),
        {},
        "the bucket is in region eu-west-1): bucket",
    ),
    "clock skew": (
        lambda b: s3util.uri("errors/db", b, endpoint=AWS_FRONTS["skewed"]),
        {},
        "clock differs too much from the server's",
    ),
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

    # SQLite words a refused open one of two ways: a failed xOpen, or (for a nameless
    # database, refused when the connection is made) a failed automatic extension.
    refused = ("unable to open database", "automatic extension loading failed")
    cli = open_in_cli(db_uri, env)
    assert expected in cli.stderr, cli.stderr
    assert any(r in cli.stderr for r in refused), cli.stderr

    py = open_in_python(db_uri, env)
    assert expected in py.stderr, py.stderr
    assert any(f"ERROR OperationalError {r}" in py.stdout for r in refused), py.stdout
    assert expected in py.stdout.split("LAST", 1)[1]

    for secret in [os.environ["AWS_SECRET_ACCESS_KEY"], TOKEN]:
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


def test_the_right_region_passes_where_the_wrong_one_is_refused(bucket):
    conn = sqlutil.connect("errors/eu.db", bucket, endpoint=AWS_FRONTS["eu-west-1"], region="eu-west-1")
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1)")
    assert conn.execute("select x from t").fetchone()[0] == 1


# Smaller than a block, the object passes the layout check at open and is caught when
# SQLite first reads the header; larger, it fails the layout check, whose message must then
# not blame the block size.
@pytest.mark.parametrize("rows,sqlite_says", [(10, "file is not a database"), (200, "unable to open database")])
def test_a_prefix_whose_first_block_is_not_sqlite_is_refused_and_left_alone(bucket, rows, sqlite_says):
    junk = b"id,name\n1,not a database\n" * rows
    s3util.boto3_client().put_object(Bucket=bucket, Key="errors/junk.db/0000000000", Body=junk)
    db_uri = s3util.uri("errors/junk.db", bucket)
    cli = s3util.run_cli(f".open '{db_uri}'\nselect count(*) from sqlite_master;\ncreate table t(x);\n", env=dict(os.environ))
    assert "errors/junk.db/0000000000 does not start with a SQLite header" in cli.stderr, cli.stderr
    assert sqlite_says in cli.stderr and "block_size" not in cli.stderr, cli.stderr
    py = open_in_python(db_uri, dict(os.environ))
    assert "does not start with a SQLite header" in py.stdout, py.stdout + py.stderr
    assert s3util.list_keys(bucket, "") == ["errors/junk.db/0000000000"]
    body = s3util.boto3_client().get_object(Bucket=bucket, Key="errors/junk.db/0000000000")["Body"].read()
    assert body == junk


def read_only_user():
    """A key pair that may list and read the bucket's objects, and nothing else."""
    import json
    import uuid

    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=s3util.endpoint(),
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName="read-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


STATS_AFTER = procs.script("""
    import json
    db = sqlite3.connect(sys.argv[2], uri=True, isolation_level=None)
    out = {"rows": db.execute("select count(*) from t").fetchone()[0]}
    try:
        db.execute("insert into t values ('x')")
    except sqlite3.Error as e:
        out["write_error"] = str(e)
    out["stats"] = json.loads(boot.execute("select s3vfs_stats()").fetchone()[0])
    print(json.dumps(out))
""")


def test_read_only_credentials_refuse_writes_clearly_and_mode_ro_never_writes(bucket):
    import json

    conn = sqlutil.connect("errors/ro.db", bucket)
    conn.execute("create table t(v)")
    conn.executemany("insert into t values (?)", (("r",) for _ in range(50)))
    conn.close()
    before = s3util.list_objects(bucket, "")
    before_bytes = sqlutil.stored_bytes(bucket, "errors/ro.db")
    key_id, secret = read_only_user()
    env = env_with(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)

    cli = s3util.run_cli(f".open '{s3util.uri('errors/ro.db', bucket)}'\nselect count(*) from t;\ninsert into t values ('w');\n", env=env)
    assert "50" in cli.stdout, cli.stdout + cli.stderr
    assert "these credentials may not write to bucket" in cli.stderr and "mode=ro" in cli.stderr, cli.stderr
    assert secret not in cli.stdout + cli.stderr

    ro = subprocess.run(
        [sys.executable, "-c", STATS_AFTER, s3util.LIB, s3util.uri("errors/ro.db", bucket, mode="ro")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert ro.returncode == 0, ro.stderr
    out = json.loads(ro.stdout)
    assert out["rows"] == 50
    assert "readonly" in out["write_error"], out
    assert out["stats"]["put"] == 0 and out["stats"]["delete"] == 0 and out["stats"]["get"] > 0, out
    assert s3util.list_objects(bucket, "") == before
    assert sqlutil.stored_bytes(bucket, "errors/ro.db") == before_bytes
