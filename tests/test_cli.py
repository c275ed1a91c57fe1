"""The sqlite3 command-line shell loads the extension and keeps a database in S3."""

import subprocess

import s3util


def test_cli_writes_10000_rows_and_a_new_process_reads_them(bucket):
    db = s3util.uri("cli/app.db", bucket)
    write = s3util.run_cli(f"""
.open '{db}'
create table t(id integer primary key, body text);
begin;
with recursive c(x) as (select 1 union all select x + 1 from c where x < 10000)
insert into t(body) select printf('row %05d', x) from c;
commit;
""")
    assert write.returncode == 0, write.stderr
    read = s3util.run_cli(f"""
.open '{db}'
select count(*), min(body), max(body) from t;
pragma integrity_check;
""")
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["10000|row", "00001|row", "10000", "ok"]
    keys = s3util.list_keys(bucket, "")
    # Blocks, and the writer lease beside them (outside the sqlite-s3vfs layout).
    assert keys and all(k.startswith("cli/app.db/") or k == "cli/app.db.s3vfs-lease" for k in keys), keys


def test_load_needs_no_entry_point_name_and_reports_a_version():
    # `.load ./libs3vfs` makes SQLite guess `sqlite3_svfs_init`; the generic
    # `sqlite3_extension_init` export is what makes that work.
    r = s3util.run_cli("select s3vfs_version();")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().count(".") == 2


def test_vfs_outlives_the_connection_that_loaded_it(bucket):
    db = s3util.uri("cli/second.db", bucket)
    r = s3util.run_cli(f"""
.open ':memory:'
.open '{db}'
create table t(x);
insert into t values (42);
.open ':memory:'
.open '{db}'
select x from t;
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "42"


def test_the_vfs_is_not_the_default(tmp_path):
    path = tmp_path / "local.db"
    r = s3util.run_cli(f"""
.open '{path}'
create table t(x);
insert into t values (1);
""")
    assert r.returncode == 0, r.stderr
    assert path.stat().st_size > 0
    assert subprocess.run(["sqlite3", str(path), "select x from t"], capture_output=True, text=True).stdout.strip() == "1"
