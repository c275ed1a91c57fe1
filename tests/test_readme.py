"""The README's inline examples (the sqlite3 shell sessions, the first Python snippet and the
WAL mode one) run as written, with only the bucket, endpoint and region pointed at the local
server. The host examples that are files in examples/ are checked by test_hosts_*.py."""

import re
import subprocess
import sys

import s3util
import sqlutil

README = (s3util.ROOT / "README.md").read_text()


def shell_sessions():
    """Each fenced block of `sqlite> ` lines that starts by loading the extension, as the
    statements a user would type (the backup session runs as sql/backup.sql)."""
    blocks = re.findall(r"^```\n(sqlite> \.load .*?)^```", README, re.S | re.M)
    return [[line[len("sqlite> "):] for line in b.splitlines()] for b in blocks]


def local(text, bucket):
    """The README's placeholders pointed at this test's bucket and server."""
    ep = s3util.endpoint()
    text = text.replace("./target/release/libs3vfs", s3util.LIB)
    text = text.replace("bucket=my-bucket", f"bucket={bucket}")
    text = text.replace("region=eu-west-1", f"region=us-east-1&endpoint={ep}")
    text = text.replace("https://ACCOUNT_ID.r2.cloudflarestorage.com", ep)
    return text.replace("endpoint=http://127.0.0.1:9000", f"endpoint={ep}")


def run_shell(lines, bucket, extra=""):
    script = local("\n".join(lines), bucket) + "\n" + extra
    r = subprocess.run([s3util.SQLITE3, "-batch"], input=script, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return r.stdout


def test_the_readme_has_the_shell_sessions_this_test_knows():
    sessions = shell_sessions()
    assert [s[1].split("?")[0] for s in sessions] == [".open 'file:apps/notes.db", ".open 'file:apps/notes.db"]
    assert all(s[0] == ".load ./target/release/libs3vfs" for s in sessions)
    assert len(re.findall(r"^sqlite> \.load ", README, re.M)) == len(sessions)


def test_the_first_shell_session_and_python_snippet_run_as_written(bucket):
    first = shell_sessions()[0]
    run_shell(first, bucket)
    conn = sqlutil.connect("apps/notes.db", bucket)
    assert conn.execute("select id, body from notes").fetchall() == [(1, "kept in S3")]
    conn.close()

    snippet = re.search(r"^### Python\n.*?```python\n(.*?)```", README, re.S | re.M).group(1)
    r = subprocess.run([sys.executable, "-c", local(snippet, bucket)], capture_output=True, text=True, timeout=120, cwd=s3util.ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "(1,)\n"


def test_the_r2_provider_example_opens_with_region_auto(bucket):
    """R2 signs with region `auto`; moto accepts any region, so this proves the URI parses
    and the session works, not R2 itself."""
    r2 = shell_sessions()[1]
    assert "region=auto" in r2[1]
    out = run_shell(r2, bucket, "create table t(x);\ninsert into t values ('via region=auto');\nselect x from t;\n")
    assert out == "via region=auto\n"
    assert s3util.list_keys(bucket, "apps/notes.db/") == ["apps/notes.db/0000000000", "apps/notes.db/0000000001"]


def test_the_wal_mode_example_runs_as_written_and_leaves_no_wal_object(bucket):
    snippet = re.search(r"^## WAL mode\n.*?```python\n(.*?)```", README, re.S | re.M).group(1)
    r = subprocess.run([sys.executable, "-c", local(snippet, bucket)], capture_output=True, text=True,
                       timeout=120, cwd=s3util.ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "wal\n1\n(0, 0, 0)\n"
    assert s3util.list_keys(bucket, "apps/orders.db-wal/") == []
    conn = sqlutil.connect("apps/orders.db", bucket)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert conn.execute("select item from orders").fetchall() == [("tea",)]
    conn.close()
