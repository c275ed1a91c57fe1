#!/usr/bin/env bash
# A short sqlite3 shell session against the local S3 server, then the objects it created.
# Expects the extension built and the server started (make demo does both).
set -euo pipefail
cd "$(dirname "$0")/.."
source "${S3_STATE_DIR:-.s3}/env"
bucket=s3vfs-demo
.venv/bin/python - "$bucket" <<'PY'
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
try:
    s3.create_bucket(Bucket=sys.argv[1])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY

db="file:demo/app.db?vfs=s3&bucket=$bucket&endpoint=$AWS_ENDPOINT_URL_S3"
echo "== sqlite3 session on $db"
sqlite3 -batch -echo <<SQL
.load ./target/release/libs3vfs
select 'extension', s3vfs_version();
.open '$db'
create table if not exists notes(id integer primary key, body text, at text default current_timestamp);
insert into notes(body) values ('kept in S3'), ('read and written in place'), ('by any SQLite');
select id, body from notes;
pragma integrity_check;
select s3vfs_stats();
SQL

echo "== objects in s3://$bucket"
.venv/bin/python - "$bucket" <<'PY'
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
    for o in page.get("Contents", []):
        print(f"{o['Size']:>8}  {o['Key']}")
PY
