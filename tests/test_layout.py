"""The stored layout: temp files stay local, and the lock-byte page is zero-filled."""

import sqlutil
import s3util


def test_vacuum_leaves_nothing_outside_the_prefix(bucket):
    conn = sqlutil.connect("layout/vac.db", bucket)
    conn.execute("create table t(id integer primary key, v text)")
    conn.execute("begin")
    conn.executemany("insert into t(v) values (?)", (("v" * 300,) for _ in range(2000)))
    conn.execute("commit")
    conn.execute("delete from t where id % 2 = 0")
    before = len(s3util.list_keys(bucket, "layout/vac.db/"))
    conn.execute("vacuum")
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select count(*) from t").fetchone()[0] == 1000
    conn.close()
    keys = s3util.list_keys(bucket, "")
    outside = [k for k in keys if not k.startswith("layout/vac.db/")]
    assert keys and outside == ["layout/vac.db.s3vfs-lease"], outside
    assert len(keys) < before, "vacuum shrank the database"


def test_a_database_past_the_lock_byte_page_round_trips(bucket):
    """1 GiB is the lock-byte page; SQLite never writes it, the layout needs it as zeros."""
    prefix = "layout/big.db"
    conn = sqlutil.connect(prefix, bucket, block_size=65536)
    conn.execute("pragma page_size=65536")
    conn.execute("pragma journal_mode=off")
    conn.execute("create table t(id integer primary key, b blob)")
    conn.execute("begin")
    # 1,080 rows of 1,000,000 bytes: about 1.08 GB, past the 1 GiB offset.
    conn.execute(
        "with recursive c(x) as (select 1 union all select x + 1 from c where x < 1080) "
        "insert into t(b) select randomblob(1000000) from c"
    )
    conn.execute("commit")
    marker = conn.execute("select hex(substr(b, 1, 16)) from t where id = 1080").fetchone()[0]
    pages = conn.execute("pragma page_count").fetchone()[0]
    conn.close()
    assert pages * 65536 > 1 << 30

    reopened = sqlutil.connect(prefix, bucket, block_size=65536)
    assert reopened.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert reopened.execute("select count(*), sum(length(b)) from t").fetchone() == (1080, 1_080_000_000)
    assert reopened.execute("select hex(substr(b, 1, 16)) from t where id = 1080").fetchone()[0] == marker
    reopened.close()

    client = s3util.boto3_client()
    lock_block = client.get_object(Bucket=bucket, Key=f"{prefix}/0000016384")["Body"].read()
    assert lock_block == bytes(65536)
    sizes = [o for o in s3util.list_objects(bucket, prefix + "/")]
    assert len(sizes) == pages
    assert all(size == 65536 for _, size in sizes)
