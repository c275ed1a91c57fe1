"""Creates the IAM user and access key that a signature-checking moto_server accepts.

moto checks SigV4 only for keys made through its own IAM API, and lets the first
INITIAL_NO_AUTH_ACTION_COUNT actions through unauthenticated so that such a key can be made.
Prints shell `export` lines for the key pair. The key may also manage IAM users, so that
tests can make users with narrower rights (read-only credentials).
"""

import json
import sys

import boto3

endpoint = sys.argv[1]
iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
iam.create_user(UserName="s3vfs-test")
iam.put_user_policy(
    UserName="s3vfs-test",
    PolicyName="s3-all",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}]}
    ),
)
key = iam.create_access_key(UserName="s3vfs-test")["AccessKey"]
print(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}")
print(f"export AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
